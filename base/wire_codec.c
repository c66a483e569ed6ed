/* wire_codec.c — the tensor encodings of wire_codec.h. Each encoding is written
 * once as operations on 16 lanes of 32-bit integers or floats (GCC/clang vector
 * extensions: AVX-512, two AVX2 halves or four SSE quarters, whatever the
 * machine has) and once per element for the tail; both are the same integer
 * and float operations, so every element gets the same bits either way.
 * Rounding uses only the default mode (round to nearest even); each float
 * operation is its own statement so that no compiler contracts two into an
 * FMA. Not here: choosing an encoding (topo/), framing (net/). */
#include "base/wire_codec.h"

#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "wire_codec.c writes tensors in host order, which must be little-endian"
#endif

/* The 64-byte vector helpers are static and inlined: no ABI crosses a call,
 * so GCC's note that passing them changed ABI without AVX-512 does not apply. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#define L 16
typedef uint32_t vu __attribute__((vector_size(L * 4)));
typedef int32_t vi __attribute__((vector_size(L * 4)));
typedef float vf __attribute__((vector_size(L * 4)));
typedef uint16_t vh __attribute__((vector_size(L * 2)));
typedef int8_t vb __attribute__((vector_size(L)));

static const char *const names[WIRE_N_ENC] = { "fp32", "bf16", "fp16", "int8" };

const char *wire_enc_name(int enc) { return enc >= 0 && enc < WIRE_N_ENC ? names[enc] : NULL; }

int wire_enc_parse(const char *s)
{
    for (int i = 0; s && i < WIRE_N_ENC; i++)
        if (!strcmp(s, names[i])) return i;
    return -1;
}

uint64_t wire_encoded_bytes(int enc, uint64_t n)
{
    switch (enc) {
    case WIRE_FP32: return 4 * n;
    case WIRE_BF16: case WIRE_FP16: return 2 * n;
    case WIRE_INT8: return n + 4 * ((n + WIRE_INT8_BLOCK - 1) / WIRE_INT8_BLOCK);
    default: return 0;
    }
}

static inline uint32_t fbits(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static inline float bitsf(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }
/* m ? a : b, m all ones or all zeros per lane */
static inline vu vsel(vi m, vu a, vu b) { return ((vu)m & a) | (~(vu)m & b); }

/* ---- bf16 ---- */

uint16_t wire_bf16_ref(float x)
{
    uint32_t u = fbits(x), a = u & 0x7fffffffu;
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1)) >> 16;
    if (a < 0x7f800000u && (r & 0x7fffu) == 0x7f80u) r = (r & 0x8000u) | 0x7f7fu; /* finite stays finite */
    if (a > 0x7f800000u) r = (u >> 16) | 0x40u; /* NaN: quiet, sign kept */
    return (uint16_t)r;
}

static inline vu bf16_vec(vu u)
{
    vu a = u & 0x7fffffffu;
    vu r = (u + 0x7fffu + ((u >> 16) & 1)) >> 16;
    r = vsel((a < 0x7f800000u) & ((r & 0x7fffu) == 0x7f80u), (r & 0x8000u) | 0x7f7fu, r);
    return vsel(a > 0x7f800000u, (u >> 16) | 0x40u, r);
}

/* ---- fp16 (F. Giesen's float_to_half_fast3_rtne, with the clamp) ---- */

#define F16_MIN_NORMAL 0x38800000u /* 2^-14 */
#define F16_MAX_BITS 0x477fe000u   /* 65504 */
#define F16_DENORM_MAGIC 0x3f000000u /* 0.5f: adding it puts a subnormal half in the low bits */

uint16_t wire_fp16_ref(float x)
{
    uint32_t u = fbits(x), a = u & 0x7fffffffu, sign = (u >> 16) & 0x8000u, h;
    if (a > 0x7f800000u) h = 0x7e00u;
    else if (a == 0x7f800000u) h = 0x7c00u;
    else if (a > F16_MAX_BITS) h = 0x7bffu;
    else if (a < F16_MIN_NORMAL) {
        float f = bitsf(a);
        f = f + bitsf(F16_DENORM_MAGIC);
        h = fbits(f) - F16_DENORM_MAGIC;
    } else {
        h = (a + 0xc8000fffu + ((a >> 13) & 1)) >> 13;
    }
    return (uint16_t)(h | sign);
}

static inline vu fp16_vec(vu u)
{
    vu a = u & 0x7fffffffu, sign = (u >> 16) & 0x8000u;
    vu hn = (a + 0xc8000fffu + ((a >> 13) & 1)) >> 13;
    vf f = (vf)a;
    f = f + bitsf(F16_DENORM_MAGIC);
    vu hs = (vu)f - F16_DENORM_MAGIC;
    vu h = vsel(a < F16_MIN_NORMAL, hs, hn);
    h = vsel(a > F16_MAX_BITS, (vu){ 0 } + 0x7bffu, h);
    h = vsel(a == 0x7f800000u, (vu){ 0 } + 0x7c00u, h);
    h = vsel(a > 0x7f800000u, (vu){ 0 } + 0x7e00u, h);
    return h | sign;
}

#define F16_MAGIC_DEC 0x38800000u /* 113 << 23 = 2^-14 as a float: takes the renormalising bit back off */

float wire_fp16_to_f32_ref(uint16_t hv)
{
    uint32_t h = hv, o = (h & 0x7fffu) << 13, exp = o & 0x0f800000u;
    o += (127u - 15u) << 23;
    if (exp == 0x0f800000u) {
        o += (128u - 16u) << 23; /* Inf / NaN */
    } else if (exp == 0) {
        o += 1u << 23; /* zero / subnormal: renormalise */
        float f = bitsf(o);
        f = f - bitsf(F16_MAGIC_DEC);
        o = fbits(f);
    }
    return bitsf(o | (h & 0x8000u) << 16);
}

static inline vf fp16_dec_vec(vu h)
{
    vu o = (h & 0x7fffu) << 13, exp = o & 0x0f800000u;
    o += (127u - 15u) << 23;
    o = vsel(exp == 0x0f800000u, o + ((128u - 16u) << 23), o);
    vf f = (vf)(o + (1u << 23));
    f = f - bitsf(F16_MAGIC_DEC);
    o = vsel(exp == 0, (vu)f, o);
    return (vf)(o | (h & 0x8000u) << 16);
}

/* ---- int8 blockwise absmax ---- */

#define RINT_MAGIC 12582912.0f /* 1.5 * 2^23: x + M - M rounds |x| < 2^22 to nearest even */

/* The block's scale: its largest |x| (compared as bits, exact for every
 * finite value), NaN when it holds a NaN or an infinity. */
static float block_scale(uint32_t maxbits)
{
    return maxbits >= 0x7f800000u ? bitsf(0x7fc00000u) : bitsf(maxbits);
}

static inline int8_t quant1(float x, float scale)
{
    float t = x / scale;
    t = t * 127.0f;
    t = t + RINT_MAGIC;
    t = t - RINT_MAGIC;
    return (int8_t)(int32_t)t;
}

void wire_int8_block_ref(float *scale, int8_t *q, const float *x, size_t n)
{
    uint32_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t a = fbits(x[i]) & 0x7fffffffu;
        if (a > m) m = a;
    }
    *scale = block_scale(m);
    for (size_t i = 0; i < n; i++) q[i] = m && m < 0x7f800000u ? quant1(x[i], *scale) : 0;
}

static void int8_block_vec(float *scale, int8_t *q, const float *x)
{
    vu v[WIRE_INT8_BLOCK / L], mx = { 0 };
    for (int j = 0; j < WIRE_INT8_BLOCK / L; j++) {
        memcpy(&v[j], x + j * L, sizeof v[j]);
        vu a = v[j] & 0x7fffffffu;
        mx = vsel(a > mx, a, mx);
    }
    uint32_t m = 0;
    for (int i = 0; i < L; i++) m = mx[i] > m ? mx[i] : m;
    *scale = block_scale(m);
    if (!m || m >= 0x7f800000u) {
        memset(q, 0, WIRE_INT8_BLOCK);
        return;
    }
    vf s = (vf){ 0 } + *scale;
    for (int j = 0; j < WIRE_INT8_BLOCK / L; j++) {
        vf t = (vf)v[j] / s;
        t = t * 127.0f;
        t = t + RINT_MAGIC;
        t = t - RINT_MAGIC;
        vb b = __builtin_convertvector(__builtin_convertvector(t, vi), vb);
        memcpy(q + j * L, &b, L);
    }
}

static void int8_encode(uint8_t *out, const float *x, size_t n)
{
    size_t nb = (n + WIRE_INT8_BLOCK - 1) / WIRE_INT8_BLOCK;
    int8_t *q = (int8_t *)(out + 4 * nb);
    for (size_t b = 0; b < nb; b++) {
        size_t off = b * WIRE_INT8_BLOCK, len = n - off < WIRE_INT8_BLOCK ? n - off : WIRE_INT8_BLOCK;
        float s;
        if (len == WIRE_INT8_BLOCK) int8_block_vec(&s, q + off, x + off);
        else wire_int8_block_ref(&s, q + off, x + off, len);
        memcpy(out + 4 * b, &s, 4);
    }
}

static void int8_decode(float *x, const uint8_t *in, size_t n)
{
    size_t nb = (n + WIRE_INT8_BLOCK - 1) / WIRE_INT8_BLOCK;
    const int8_t *q = (const int8_t *)(in + 4 * nb);
    for (size_t b = 0; b < nb; b++) {
        size_t off = b * WIRE_INT8_BLOCK, len = n - off < WIRE_INT8_BLOCK ? n - off : WIRE_INT8_BLOCK;
        float s;
        memcpy(&s, in + 4 * b, 4);
        float d = s / 127.0f;
        size_t i = 0;
        for (; i + L <= len; i += L) {
            vb qb;
            memcpy(&qb, q + off + i, L);
            vf f = __builtin_convertvector(qb, vf) * d;
            memcpy(x + off + i, &f, sizeof f);
        }
        for (; i < len; i++) x[off + i] = (float)q[off + i] * d;
    }
}

/* ---- entry points ---- */

void wire_encode(void *outv, const float *x, size_t n, int enc)
{
    uint8_t *out = outv;
    size_t i = 0;
    switch (enc) {
    case WIRE_FP32:
        memcpy(out, x, n * 4);
        return;
    case WIRE_BF16:
    case WIRE_FP16:
        for (; i + L <= n; i += L) {
            vu u;
            memcpy(&u, x + i, sizeof u);
            vh h = __builtin_convertvector(enc == WIRE_BF16 ? bf16_vec(u) : fp16_vec(u), vh);
            memcpy(out + 2 * i, &h, sizeof h);
        }
        for (; i < n; i++) {
            uint16_t h = enc == WIRE_BF16 ? wire_bf16_ref(x[i]) : wire_fp16_ref(x[i]);
            memcpy(out + 2 * i, &h, 2);
        }
        return;
    case WIRE_INT8:
        int8_encode(out, x, n);
        return;
    }
}

void wire_decode(float *x, const void *inv, size_t n, int enc)
{
    const uint8_t *in = inv;
    size_t i = 0;
    switch (enc) {
    case WIRE_FP32:
        memcpy(x, in, n * 4);
        return;
    case WIRE_BF16:
    case WIRE_FP16:
        for (; i + L <= n; i += L) {
            vh h;
            memcpy(&h, in + 2 * i, sizeof h);
            vu u = __builtin_convertvector(h, vu);
            vf f = enc == WIRE_BF16 ? (vf)(u << 16) : fp16_dec_vec(u);
            memcpy(x + i, &f, sizeof f);
        }
        for (; i < n; i++) {
            uint16_t h;
            memcpy(&h, in + 2 * i, 2);
            x[i] = enc == WIRE_BF16 ? bitsf((uint32_t)h << 16) : wire_fp16_to_f32_ref(h);
        }
        return;
    case WIRE_INT8:
        int8_decode(x, in, n);
        return;
    }
}
