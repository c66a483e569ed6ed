/* test_wire_codec.c — the tensor encodings of base/wire_codec.h against
 * independent references: bf16 round to nearest even (ties, overflow, NaN,
 * Inf), fp16 against the compiler's _Float16 conversion (IEEE RNE) with the
 * documented clamp at 65504, int8 blockwise absmax (tails shorter than a
 * block, all-zero blocks, non-finite blocks, the error bound), and the vector
 * paths against the per-element code on the same inputs (same bits). */
#include <float.h>
#include <math.h>
#include <stdint.h>

#include "base/base.h"
#include "base/wire_codec.h"
#include "tests/tests.h"

static uint32_t fb(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static float bf(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }

/* Encodes n floats and decodes them back through the public calls. */
static float *round_trip(const float *x, size_t n, int enc, uint8_t **wire)
{
    uint8_t *w = xmalloc(wire_encoded_bytes(enc, n) + 1);
    float *y = xmalloc(n * sizeof(float) + 1);
    wire_encode(w, x, n, enc);
    wire_decode(y, w, n, enc);
    if (wire) *wire = w;
    else free(w);
    return y;
}

/* Random floats over many magnitudes, plus the special values. */
static float *mixed(size_t n, uint32_t seed)
{
    float *x = xmalloc(n * sizeof(float));
    uint32_t s = seed;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = bf(s); /* any bit pattern: NaN, Inf, subnormals, huge */
        if (i % 3 == 0) x[i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * 8.0f;
    }
    return x;
}

static void test_names(void)
{
    CU_ASSERT_EQUAL(wire_enc_parse("int8"), WIRE_INT8);
    CU_ASSERT_EQUAL(wire_enc_parse("fp32"), WIRE_FP32);
    CU_ASSERT_EQUAL(wire_enc_parse("FP16"), -1);
    CU_ASSERT_EQUAL(wire_enc_parse(NULL), -1);
    CU_ASSERT_STRING_EQUAL(wire_enc_name(WIRE_BF16), "bf16");
    CU_ASSERT_PTR_NULL(wire_enc_name(7));
    CU_ASSERT_EQUAL(wire_encoded_bytes(WIRE_FP32, 10), 40);
    CU_ASSERT_EQUAL(wire_encoded_bytes(WIRE_FP16, 10), 20);
    CU_ASSERT_EQUAL(wire_encoded_bytes(WIRE_INT8, 64), 68);
    CU_ASSERT_EQUAL(wire_encoded_bytes(WIRE_INT8, 65), 65 + 8);
    CU_ASSERT_EQUAL(wire_encoded_bytes(WIRE_INT8, 0), 0);
    CU_ASSERT_EQUAL(wire_encoded_bytes(9, 10), 0);
}

static void test_bf16_rne(void)
{
    /* 1 + 2^-8 is exactly halfway between bf16 1.0 and 1+2^-7: even is 1.0 */
    CU_ASSERT_EQUAL(wire_bf16_ref(bf(0x3f808000u)), 0x3f80);
    /* (1 + 2^-7) + 2^-8: halfway, odd below, rounds up to even */
    CU_ASSERT_EQUAL(wire_bf16_ref(bf(0x3f818000u)), 0x3f82);
    /* just above halfway rounds up, just below rounds down */
    CU_ASSERT_EQUAL(wire_bf16_ref(bf(0x3f808001u)), 0x3f81);
    CU_ASSERT_EQUAL(wire_bf16_ref(bf(0x3f807fffu)), 0x3f80);
    CU_ASSERT_EQUAL(wire_bf16_ref(-1.0f), 0xbf80);
    /* overflow: FLT_MAX would round to Inf; it stays finite */
    CU_ASSERT_EQUAL(wire_bf16_ref(FLT_MAX), 0x7f7f);
    CU_ASSERT_EQUAL(wire_bf16_ref(-FLT_MAX), 0xff7f);
    CU_ASSERT_EQUAL(wire_bf16_ref(INFINITY), 0x7f80);
    CU_ASSERT_EQUAL(wire_bf16_ref(-INFINITY), 0xff80);
    /* a NaN with only low mantissa bits would truncate to Inf: still NaN */
    uint16_t h = wire_bf16_ref(bf(0x7f800001u));
    CU_ASSERT((h & 0x7f80) == 0x7f80 && (h & 0x7f) != 0);
    h = wire_bf16_ref(bf(0xffc00000u));
    CU_ASSERT_EQUAL(h, 0xffc0);
    /* against a double-precision reference on random values */
    uint32_t s = 7;
    for (int i = 0; i < 100000; i++) {
        s = s * 1664525u + 1013904223u;
        uint32_t u = s & 0x7f7fffffu; /* finite */
        if ((u & 0x7fffffffu) > 0x7f7f7fffu) continue;
        double x = bf(u);
        uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;
        double dl = fabs(x - bf(lo)), dh = fabs(bf(hi) - x);
        uint32_t want = dl < dh ? lo : dh < dl ? hi : ((lo >> 16) & 1) ? hi : lo;
        if (wire_bf16_ref((float)x) != (uint16_t)(want >> 16)) {
            CU_FAIL("bf16 differs from the RNE reference");
            fprintf(stderr, "\n  0x%08x -> 0x%04x, want 0x%04x\n", u, wire_bf16_ref((float)x), want >> 16);
            break;
        }
    }
}

#ifdef __FLT16_MAX__
/* _Float16 conversion is IEEE round to nearest even (overflow to Inf). */
static uint16_t f16_ieee(float x)
{
    _Float16 h = (_Float16)x;
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}
#endif

static void test_fp16_reference(void)
{
#ifndef __FLT16_MAX__
    fprintf(stderr, "\n  no _Float16 in this compiler: the reference comparison is skipped\n");
#else
    uint32_t s = 11;
    int bad = 0;
    for (uint64_t i = 0; i < 2000000 && bad < 3; i++) {
        s = s * 1664525u + 1013904223u;
        /* mostly within the half range, including subnormals */
        uint32_t u = (s & 0x807fffffu) | (((s >> 23) % 40 + 100) << 23);
        if (i % 5 == 0) u = s;
        float x = bf(u);
        uint32_t a = u & 0x7fffffffu;
        uint16_t want = f16_ieee(x);
        if (a > 0x7f800000u) want = (uint16_t)(((u >> 16) & 0x8000u) | 0x7e00u);
        else if (a < 0x7f800000u && a > 0x477fe000u) want = (uint16_t)(((u >> 16) & 0x8000u) | 0x7bffu);
        uint16_t got = wire_fp16_ref(x);
        if (got != want) {
            fprintf(stderr, "\n  fp16(0x%08x) = 0x%04x, want 0x%04x\n", u, got, want);
            bad++;
        }
        /* decoding every half is exact */
        _Float16 hv;
        memcpy(&hv, &got, 2);
        float back = wire_fp16_to_f32_ref(got);
        if (!(back == (float)hv || (isnan(back) && isnan((float)hv)))) {
            fprintf(stderr, "\n  decode(0x%04x) = %g, want %g\n", got, back, (double)(float)hv);
            bad++;
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
#endif
}

static void test_fp16_special(void)
{
    CU_ASSERT_EQUAL(wire_fp16_ref(65504.0f), 0x7bff);
    CU_ASSERT_EQUAL(wire_fp16_ref(65519.0f), 0x7bff);   /* RNE gives 65504 anyway */
    CU_ASSERT_EQUAL(wire_fp16_ref(65520.0f), 0x7bff);   /* IEEE: Inf; clamped */
    CU_ASSERT_EQUAL(wire_fp16_ref(1e30f), 0x7bff);
    CU_ASSERT_EQUAL(wire_fp16_ref(-1e30f), 0xfbff);
    CU_ASSERT_EQUAL(wire_fp16_ref(FLT_MAX), 0x7bff);
    CU_ASSERT_EQUAL(wire_fp16_ref(INFINITY), 0x7c00);
    CU_ASSERT_EQUAL(wire_fp16_ref(-INFINITY), 0xfc00);
    CU_ASSERT_EQUAL(wire_fp16_ref(NAN), 0x7e00);
    CU_ASSERT_EQUAL(wire_fp16_ref(-NAN), 0xfe00);
    CU_ASSERT_EQUAL(wire_fp16_ref(bf(0x7f800001u)), 0x7e00); /* low-payload NaN stays NaN */
    CU_ASSERT_EQUAL(wire_fp16_ref(1.0f + 1.0f / 2048), 0x3c00); /* tie to even (down) */
    CU_ASSERT_EQUAL(wire_fp16_ref(1.0f + 3.0f / 2048), 0x3c02); /* tie to even (up) */
    CU_ASSERT_EQUAL(wire_fp16_ref(ldexpf(1, -24)), 0x0001);    /* smallest subnormal */
    CU_ASSERT_EQUAL(wire_fp16_ref(ldexpf(1, -25)), 0x0000);    /* tie to even: 0 */
    CU_ASSERT_EQUAL(wire_fp16_ref(ldexpf(3, -25)), 0x0002);    /* tie to even: 2 */
    CU_ASSERT_EQUAL(wire_fp16_ref(-0.0f), 0x8000);
    float x[5] = { 1e6f, -1e6f, INFINITY, NAN, 0.5f }, *y = round_trip(x, 5, WIRE_FP16, NULL);
    CU_ASSERT(y[0] == 65504.0f && y[1] == -65504.0f && isinf(y[2]) && isnan(y[3]) && y[4] == 0.5f);
    free(y);
    float z[3] = { FLT_MAX, NAN, -INFINITY };
    y = round_trip(z, 3, WIRE_BF16, NULL);
    CU_ASSERT(isfinite(y[0]) && y[0] > 3.3e38f && isnan(y[1]) && isinf(y[2]) && y[2] < 0);
    free(y);
}

/* The vector path (16 at a time) and the per-element code give the same bits,
 * including around every tail length. */
static void test_vector_matches_scalar(void)
{
    for (size_t n = 1; n < 200; n += (n < 70 ? 1 : 37)) {
        float *x = mixed(n, (uint32_t)n);
        uint8_t *w;
        for (int enc = WIRE_BF16; enc <= WIRE_FP16; enc++) {
            float *y = round_trip(x, n, enc, &w);
            for (size_t i = 0; i < n; i++) {
                uint16_t h, want = enc == WIRE_BF16 ? wire_bf16_ref(x[i]) : wire_fp16_ref(x[i]);
                memcpy(&h, w + 2 * i, 2);
                float d = enc == WIRE_BF16 ? bf((uint32_t)want << 16) : wire_fp16_to_f32_ref(want);
                if (h != want || fb(y[i]) != fb(d)) {
                    fprintf(stderr, "\n  %s n=%zu [%zu] 0x%08x -> 0x%04x / 0x%08x, want 0x%04x / 0x%08x\n",
                            wire_enc_name(enc), n, i, fb(x[i]), h, fb(y[i]), want, fb(d));
                    CU_FAIL("vector and scalar differ");
                    break;
                }
            }
            free(y);
            free(w);
        }
        free(x);
    }
}

static void test_int8_blocks(void)
{
    /* 150 values: two full blocks (vector path) and a tail of 22 */
    size_t n = 150, nb = 3;
    float *x = mixed(n, 3);
    for (size_t i = 0; i < n; i++) if (!(fabsf(x[i]) < 2.9f)) x[i] = sinf((float)i);
    for (size_t i = 64; i < 128; i++) x[i] = 0; /* an all-zero block */
    x[64] = -0.0f;
    x[5] = 3.0f; x[6] = -3.0f; x[7] = 1.5f * 3.0f / 127.0f; /* 1.5 steps: tie */
    uint8_t *w;
    float *y = round_trip(x, n, WIRE_INT8, &w);
    CU_ASSERT_EQUAL(wire_encoded_bytes(WIRE_INT8, n), n + 4 * nb);
    float s[3];
    memcpy(s, w, sizeof s);
    const int8_t *q = (const int8_t *)(w + 4 * nb);
    CU_ASSERT_EQUAL(s[1], 0.0f);
    for (size_t i = 64; i < 128; i++) CU_ASSERT(q[i] == 0 && y[i] == 0.0f);
    for (size_t b = 0; b < nb; b++) {
        size_t off = b * 64, len = b == 2 ? 22 : 64;
        float ms = 0, rs;
        int8_t rq[64];
        for (size_t i = 0; i < len; i++) ms = fmaxf(ms, fabsf(x[off + i]));
        CU_ASSERT_EQUAL(s[b], ms);
        wire_int8_block_ref(&rs, rq, x + off, len);
        CU_ASSERT(fb(rs) == fb(s[b]) && !memcmp(rq, q + off, len));
        for (size_t i = 0; i < len; i++) {
            /* within half a step of the block's scale */
            CU_ASSERT(fabsf(y[off + i] - x[off + i]) <= ms / 127.0f * 0.5f * 1.0001f + 1e-30f);
            CU_ASSERT(q[off + i] >= -127 && q[off + i] <= 127);
        }
    }
    CU_ASSERT_EQUAL(q[5], 127);
    CU_ASSERT_EQUAL(q[6], -127);
    CU_ASSERT_EQUAL(y[5], 3.0f);
    CU_ASSERT(q[7] == 1 || q[7] == 2); /* x/3*127 lands within an ulp of 1.5 */
    free(x); free(y); free(w);

    /* a tail shorter than a block on its own (n < 64), exact ties */
    float t[5] = { 127.0f, 0.5f, 1.5f, 2.5f, -0.5f }, *z = round_trip(t, 5, WIRE_INT8, &w);
    q = (const int8_t *)(w + 4);
    CU_ASSERT(q[0] == 127 && q[1] == 0 && q[2] == 2 && q[3] == 2 && q[4] == 0);
    CU_ASSERT(z[0] == 127.0f && z[2] == 2.0f && z[3] == 2.0f);
    free(z); free(w);

    /* a non-finite value poisons its block (NaN scale, NaN values) only */
    float *u = xcalloc(130, sizeof(float));
    for (size_t i = 0; i < 130; i++) u[i] = (float)i;
    u[3] = INFINITY;
    u[70] = NAN;
    z = round_trip(u, 130, WIRE_INT8, NULL);
    int ok = 1;
    for (size_t i = 0; i < 128; i++) ok &= isnan(z[i]) != 0;
    CU_ASSERT(ok);
    CU_ASSERT(fabsf(z[128] - 128.0f) <= 129.0f / 127 / 2 && z[129] == 129.0f);
    free(z); free(u);
}

/* A block with a tiny (subnormal) absmax still quantises without NaN. */
static void test_int8_tiny(void)
{
    float x[64];
    for (int i = 0; i < 64; i++) x[i] = ldexpf((float)(i - 32), -140);
    float *y = round_trip(x, 64, WIRE_INT8, NULL);
    int ok = 1;
    for (int i = 0; i < 64; i++) ok &= isfinite(y[i]) && fabsf(y[i] - x[i]) <= ldexpf(1, -140);
    CU_ASSERT(ok);
    free(y);
}

int main(void)
{
    CU_TestInfo tests[] = {
        { "names and sizes", test_names },
        { "bf16 round to nearest even, overflow, NaN", test_bf16_rne },
        { "fp16 against _Float16 (IEEE RNE) with the clamp", test_fp16_reference },
        { "fp16 clamp, Inf, NaN, ties, subnormals", test_fp16_special },
        { "vector path equals the scalar code", test_vector_matches_scalar },
        { "int8 blocks, tails, zero and non-finite blocks", test_int8_blocks },
        { "int8 with a subnormal scale", test_int8_tiny },
        CU_TEST_INFO_NULL,
    };
    return tests_run("wire_codec", tests);
}
