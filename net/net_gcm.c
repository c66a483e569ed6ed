/* net_gcm.c — AES-256-GCM with VAES + VPCLMULQDQ on 512-bit registers (see
 * net_gcm.h). The design is the one of Intel's and OpenSSL 3.1's aes-gcm-avx512
 * and of Linux's aes-gcm-avx10: CTR keystream four blocks per zmm, 16 blocks
 * per iteration; GHASH over byte-reflected blocks with precomputed powers
 * H^1..H^16 (each multiplied by x^-1 so that a carry-less product needs no
 * shift) and one Montgomery-style reduction per 16 blocks. The counter is kept
 * byte-reflected too, so that a 32-bit lane add is exactly GCM's inc32.
 *
 * Only the functions marked GCM_TARGET use AVX-512 instructions; the rest of
 * the build keeps its flags, and nothing here runs unless net_gcm_available(). */
#include "net/net_gcm.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>

#define GCM_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,vaes,vpclmulqdq,aes,pclmul")))
#define AES_ROUNDS 14
#define GCM_MAX_TEXT ((UINT64_C(1) << 36) - 32) /* bytes per record (SP 800-38D): the 32-bit counter's range */

struct net_gcm {
    __m128i rk[AES_ROUNDS + 1]; /* AES-256 round keys */
    __m128i hp[16];             /* hp[i] = H^(i+1) * x^-1, byte-reflected */
    __m128i y;                  /* GHASH state, byte-reflected */
    __m128i ekj0;               /* E(K, J0): masks the tag */
    __m128i ctr0;               /* byte-reflected counter block: lane dword 0 = next counter */
    uint8_t ks[16];             /* keystream of the current partial block */
    uint8_t pb[16];             /* ciphertext bytes of the current partial block */
    unsigned pn;                /* bytes of the partial block done (0..15) */
    int enc;
    uint64_t aad_len, ct_len;   /* bytes */
};

int net_gcm_available(void)
{
    static int known = -1; /* every thread computes the same answer */
    int k = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (k >= 0) return k;
    unsigned a, b, c, d;
    int ok = 0;
    if (__get_cpuid(1, &a, &b, &c, &d) && (c & bit_OSXSAVE) && (c & bit_AES) && (c & bit_PCLMUL)) {
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        /* XMM, YMM, opmask, ZMM_Hi256, Hi16_ZMM state enabled by the OS */
        if ((lo & 0xe6) == 0xe6 && __get_cpuid_count(7, 0, &a, &b, &c, &d))
            ok = (b & bit_AVX512F) && (b & bit_AVX512BW) && (b & bit_AVX512VL) && (c & bit_VAES) &&
                 (c & bit_VPCLMULQDQ);
    }
    __atomic_store_n(&known, ok, __ATOMIC_RELAXED);
    return ok;
}

/* --- GHASH ---------------------------------------------------------------- */

/* x^128 + x^7 + x^2 + x + 1 in the reflected domain, as Linux's aes-gcm-avx10
 * uses it: high qword 0xc2 << 56, low qword 1. */
GCM_TARGET static inline __m128i gfpoly(void) { return _mm_set_epi64x((long long)0xc200000000000000ULL, 1); }

/* The 256-bit product lo + mi * 2^64 + hi * 2^128 reduced (Montgomery step). */
GCM_TARGET static inline __m128i reduce128(__m128i lo, __m128i mi, __m128i hi)
{
    __m128i p = gfpoly();
    __m128i t = _mm_clmulepi64_si128(p, lo, 0x01);
    mi = _mm_xor_si128(_mm_xor_si128(mi, t), _mm_shuffle_epi32(lo, 0x4e));
    t = _mm_clmulepi64_si128(p, mi, 0x01);
    return _mm_xor_si128(_mm_xor_si128(hi, t), _mm_shuffle_epi32(mi, 0x4e));
}

/* a * b where b is a preprocessed power of H (a * b * x in raw terms). */
GCM_TARGET static inline __m128i gmul(__m128i a, __m128i b)
{
    __m128i lo = _mm_clmulepi64_si128(a, b, 0x00);
    __m128i mi = _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x01), _mm_clmulepi64_si128(a, b, 0x10));
    __m128i hi = _mm_clmulepi64_si128(a, b, 0x11);
    return reduce128(lo, mi, hi);
}

GCM_TARGET static inline __m128i bswap128(__m128i x)
{
    return _mm_shuffle_epi8(x, _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
}

GCM_TARGET static inline __m512i bswap512(__m512i x)
{
    return _mm512_shuffle_epi8(
        x, _mm512_broadcast_i32x4(_mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)));
}

GCM_TARGET static inline __m128i hxor(__m512i z)
{
    __m256i t = _mm256_xor_si256(_mm512_castsi512_si256(z), _mm512_extracti64x4_epi64(z, 1));
    return _mm_xor_si128(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
}

/* powers for the zmm of blocks 4j..4j+3 out of n4 zmm (n4 * 4 blocks): lanes
 * H^(m), H^(m-1), H^(m-2), H^(m-3) with m = 4 * (n4 - j) */
GCM_TARGET static inline __m512i hpow4(const struct net_gcm *g, int m)
{
    return _mm512_inserti32x4(
        _mm512_inserti32x4(_mm512_inserti32x4(_mm512_castsi128_si512(g->hp[m - 1]), g->hp[m - 2], 1),
                           g->hp[m - 3], 2),
        g->hp[m - 4], 3);
}

/* --- AES-256 -------------------------------------------------------------- */

GCM_TARGET static inline __m128i expand_a(__m128i k, __m128i t)
{
    t = _mm_shuffle_epi32(t, 0xff);
    k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
    k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
    k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
    return _mm_xor_si128(k, t);
}

GCM_TARGET static inline __m128i expand_b(__m128i k, __m128i t)
{
    t = _mm_shuffle_epi32(t, 0xaa);
    k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
    k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
    k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
    return _mm_xor_si128(k, t);
}

GCM_TARGET static void expand_key(__m128i rk[AES_ROUNDS + 1], const uint8_t key[32])
{
    rk[0] = _mm_loadu_si128((const __m128i *)key);
    rk[1] = _mm_loadu_si128((const __m128i *)(key + 16));
#define EXPAND(i, rcon)                                                             \
    rk[i] = expand_a(rk[(i) - 2], _mm_aeskeygenassist_si128(rk[(i) - 1], rcon)); \
    rk[(i) + 1] = expand_b(rk[(i) - 1], _mm_aeskeygenassist_si128(rk[i], 0x00));
    EXPAND(2, 0x01)
    EXPAND(4, 0x02)
    EXPAND(6, 0x04)
    EXPAND(8, 0x08)
    EXPAND(10, 0x10)
    EXPAND(12, 0x20)
    rk[14] = expand_a(rk[12], _mm_aeskeygenassist_si128(rk[13], 0x40));
#undef EXPAND
}

GCM_TARGET static inline __m128i aes_block(const struct net_gcm *g, __m128i b)
{
    b = _mm_xor_si128(b, g->rk[0]);
    for (int r = 1; r < AES_ROUNDS; r++) b = _mm_aesenc_si128(b, g->rk[r]);
    return _mm_aesenclast_si128(b, g->rk[AES_ROUNDS]);
}

/* --- the context ---------------------------------------------------------- */

GCM_TARGET static void init_key(struct net_gcm *g, const uint8_t key[32])
{
    expand_key(g->rk, key);
    __m128i h = bswap128(aes_block(g, _mm_setzero_si128()));
    /* H * x^-1: a 128-bit left shift by one, folding the bit carried out back
     * in as the reflected polynomial (constant time: a mask, no branch) */
    uint64_t lo = (uint64_t)_mm_cvtsi128_si64(h), hi = (uint64_t)_mm_extract_epi64(h, 1);
    uint64_t top = 0 - (hi >> 63);
    hi = (hi << 1 | lo >> 63) ^ (top & 0xc200000000000000ULL);
    lo = (lo << 1) ^ (top & 1);
    g->hp[0] = _mm_set_epi64x((long long)hi, (long long)lo);
    for (int i = 1; i < 16; i++) g->hp[i] = gmul(g->hp[i - 1], g->hp[0]);
}

struct net_gcm *net_gcm_new(const uint8_t key[32])
{
    if (!net_gcm_available()) return NULL;
    struct net_gcm *g = aligned_alloc(64, (sizeof(struct net_gcm) + 63) / 64 * 64);
    if (!g) return NULL;
    memset(g, 0, sizeof *g);
    init_key(g, key);
    return g;
}

void net_gcm_free(struct net_gcm *g)
{
    if (!g) return;
    OPENSSL_cleanse(g, sizeof *g);
    free(g);
}

GCM_TARGET void net_gcm_begin(struct net_gcm *g, const uint8_t iv[12], const uint8_t *aad, size_t aad_len, int enc)
{
    uint8_t j0[16];
    memcpy(j0, iv, 12);
    j0[12] = j0[13] = j0[14] = 0;
    j0[15] = 1;
    __m128i j = _mm_loadu_si128((const __m128i *)j0);
    g->ekj0 = aes_block(g, j);
    /* byte-reflected J0 + 1: the 32-bit counter is dword 0 */
    g->ctr0 = _mm_add_epi32(bswap128(j), _mm_set_epi32(0, 0, 0, 1));
    g->y = _mm_setzero_si128();
    g->pn = 0;
    g->enc = enc != 0;
    g->aad_len = aad_len;
    g->ct_len = 0;
    for (size_t at = 0; at < aad_len; at += 16) {
        uint8_t blk[16] = { 0 };
        memcpy(blk, aad + at, aad_len - at < 16 ? aad_len - at : 16);
        g->y = gmul(_mm_xor_si128(g->y, bswap128(_mm_loadu_si128((const __m128i *)blk))), g->hp[0]);
    }
}

/* 16 blocks per iteration: keystream, xor, GHASH of the ciphertext. Written
 * out by hand (no arrays indexed in loops) so that every value stays in a zmm
 * register. GHASH multiplies by Karatsuba (three carry-less products per
 * block, hk = the two halves of each power xored) and reduces once; sealing,
 * it hashes the previous iteration's ciphertext in the middle of this one's
 * AES rounds, so the two chains overlap. */
#define GH_MUL(x, h, hk)                                                                              \
    do {                                                                                              \
        lo = _mm512_xor_si512(lo, _mm512_clmulepi64_epi128(x, h, 0x00));                              \
        hi = _mm512_xor_si512(hi, _mm512_clmulepi64_epi128(x, h, 0x11));                              \
        mi = _mm512_xor_si512(mi, _mm512_clmulepi64_epi128(                                           \
                                      _mm512_xor_si512(x, _mm512_shuffle_epi32(x, (_MM_PERM_ENUM)0x4e)), \
                                      hk, 0x00));                                                     \
    } while (0)
#define GHASH4(x0, x1, x2, x3)                                                                        \
    do {                                                                                              \
        __m512i lo = _mm512_setzero_si512(), mi = lo, hi = lo;                                        \
        __m512i xy_ = _mm512_xor_si512(x0, _mm512_zextsi128_si512(y));                                \
        GH_MUL(xy_, h0, hk0);                                                                         \
        GH_MUL(x1, h1, hk1);                                                                          \
        GH_MUL(x2, h2, hk2);                                                                          \
        GH_MUL(x3, h3, hk3);                                                                          \
        __m128i l_ = hxor(lo), h_ = hxor(hi);                                                         \
        y = reduce128(l_, _mm_xor_si128(_mm_xor_si128(hxor(mi), l_), h_), h_);                        \
    } while (0)
#define AES_ROUND(r)                                                                                  \
    do {                                                                                              \
        __m512i k_ = _mm512_broadcast_i32x4(g->rk[r]);                                                \
        c0 = _mm512_aesenc_epi128(c0, k_);                                                            \
        c1 = _mm512_aesenc_epi128(c1, k_);                                                            \
        c2 = _mm512_aesenc_epi128(c2, k_);                                                            \
        c3 = _mm512_aesenc_epi128(c3, k_);                                                            \
    } while (0)

GCM_TARGET static inline __m512i karatsuba_key(__m512i h)
{
    return _mm512_xor_si512(h, _mm512_shuffle_epi32(h, (_MM_PERM_ENUM)0x4e));
}

GCM_TARGET __attribute__((always_inline)) static inline void bulk16_body(struct net_gcm *g, uint8_t *out,
                                                                        const uint8_t *in, size_t nblk16,
                                                                        const int enc)
{
    const __m512i h0 = hpow4(g, 16), h1 = hpow4(g, 12), h2 = hpow4(g, 8), h3 = hpow4(g, 4);
    const __m512i hk0 = karatsuba_key(h0), hk1 = karatsuba_key(h1), hk2 = karatsuba_key(h2),
                  hk3 = karatsuba_key(h3);
    const __m512i four = _mm512_set_epi32(0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4);
    const __m512i k0 = _mm512_broadcast_i32x4(g->rk[0]), klast = _mm512_broadcast_i32x4(g->rk[AES_ROUNDS]);
    __m512i ctr = _mm512_add_epi32(_mm512_broadcast_i32x4(g->ctr0),
                                   _mm512_set_epi32(0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0));
    __m512i x0 = _mm512_setzero_si512(), x1 = x0, x2 = x0, x3 = x0; /* the text to hash */
    __m128i y = g->y;
    for (size_t b = 0; b < nblk16; b++, in += 256, out += 256) {
        __m512i c0 = _mm512_xor_si512(bswap512(ctr), k0);
        ctr = _mm512_add_epi32(ctr, four);
        __m512i c1 = _mm512_xor_si512(bswap512(ctr), k0);
        ctr = _mm512_add_epi32(ctr, four);
        __m512i c2 = _mm512_xor_si512(bswap512(ctr), k0);
        ctr = _mm512_add_epi32(ctr, four);
        __m512i c3 = _mm512_xor_si512(bswap512(ctr), k0);
        ctr = _mm512_add_epi32(ctr, four);
        const __m512i p0 = _mm512_loadu_si512((const void *)in), p1 = _mm512_loadu_si512((const void *)(in + 64)),
                      p2 = _mm512_loadu_si512((const void *)(in + 128)),
                      p3 = _mm512_loadu_si512((const void *)(in + 192));
        if (!enc) { /* opening: this iteration's ciphertext */
            x0 = bswap512(p0);
            x1 = bswap512(p1);
            x2 = bswap512(p2);
            x3 = bswap512(p3);
        }
        AES_ROUND(1); AES_ROUND(2); AES_ROUND(3); AES_ROUND(4); AES_ROUND(5); AES_ROUND(6);
        if (!enc || b) GHASH4(x0, x1, x2, x3);
        AES_ROUND(7); AES_ROUND(8); AES_ROUND(9); AES_ROUND(10); AES_ROUND(11); AES_ROUND(12); AES_ROUND(13);
        c0 = _mm512_xor_si512(_mm512_aesenclast_epi128(c0, klast), p0);
        c1 = _mm512_xor_si512(_mm512_aesenclast_epi128(c1, klast), p1);
        c2 = _mm512_xor_si512(_mm512_aesenclast_epi128(c2, klast), p2);
        c3 = _mm512_xor_si512(_mm512_aesenclast_epi128(c3, klast), p3);
        _mm512_storeu_si512((void *)out, c0);
        _mm512_storeu_si512((void *)(out + 64), c1);
        _mm512_storeu_si512((void *)(out + 128), c2);
        _mm512_storeu_si512((void *)(out + 192), c3);
        if (enc) { /* sealing: hashed during the next iteration */
            x0 = bswap512(c0);
            x1 = bswap512(c1);
            x2 = bswap512(c2);
            x3 = bswap512(c3);
        }
    }
    if (enc && nblk16) GHASH4(x0, x1, x2, x3);
    g->y = y;
    g->ctr0 = _mm_add_epi32(g->ctr0, _mm_set_epi32(0, 0, 0, (int)(uint32_t)(16 * nblk16)));
}
#undef GHASH4
#undef GH_MUL
#undef AES_ROUND

GCM_TARGET static void bulk16(struct net_gcm *g, uint8_t *out, const uint8_t *in, size_t nblk16)
{
    if (g->enc) bulk16_body(g, out, in, nblk16, 1);
    else bulk16_body(g, out, in, nblk16, 0);
}

/* One whole block. */
GCM_TARGET static inline void block1(struct net_gcm *g, uint8_t *out, const uint8_t *in)
{
    __m128i p = _mm_loadu_si128((const __m128i *)in);
    __m128i c = _mm_xor_si128(aes_block(g, bswap128(g->ctr0)), p);
    g->ctr0 = _mm_add_epi32(g->ctr0, _mm_set_epi32(0, 0, 0, 1));
    _mm_storeu_si128((__m128i *)out, c);
    g->y = gmul(_mm_xor_si128(g->y, bswap128(g->enc ? c : p)), g->hp[0]);
}

GCM_TARGET int net_gcm_update(struct net_gcm *g, uint8_t *out, const uint8_t *in, size_t n)
{
    if (n > GCM_MAX_TEXT - g->ct_len) return -1;
    g->ct_len += n;
    if (g->pn) { /* finish the partial block left by the last call */
        while (n && g->pn < 16) {
            uint8_t i = *in++, o = (uint8_t)(i ^ g->ks[g->pn]);
            g->pb[g->pn++] = g->enc ? o : i;
            *out++ = o;
            n--;
        }
        if (g->pn < 16) return 0;
        g->y = gmul(_mm_xor_si128(g->y, bswap128(_mm_loadu_si128((const __m128i *)g->pb))), g->hp[0]);
        g->pn = 0;
    }
    if (n >= 256) {
        size_t k = n / 256;
        bulk16(g, out, in, k);
        in += 256 * k;
        out += 256 * k;
        n -= 256 * k;
    }
    for (; n >= 16; n -= 16, in += 16, out += 16) block1(g, out, in);
    if (n) { /* a partial block: keep its keystream and text for the next call */
        _mm_storeu_si128((__m128i *)g->ks, aes_block(g, bswap128(g->ctr0)));
        g->ctr0 = _mm_add_epi32(g->ctr0, _mm_set_epi32(0, 0, 0, 1));
        for (size_t i = 0; i < n; i++) {
            uint8_t o = (uint8_t)(in[i] ^ g->ks[i]);
            g->pb[i] = g->enc ? o : in[i];
            out[i] = o;
        }
        g->pn = (unsigned)n;
    }
    return 0;
}

GCM_TARGET void net_gcm_tag(struct net_gcm *g, uint8_t tag[16])
{
    if (g->pn) {
        memset(g->pb + g->pn, 0, 16 - g->pn);
        g->y = gmul(_mm_xor_si128(g->y, bswap128(_mm_loadu_si128((const __m128i *)g->pb))), g->hp[0]);
        g->pn = 0;
    }
    /* the length block, byte-reflected: bits of AAD in the high qword */
    __m128i len = _mm_set_epi64x((long long)(g->aad_len * 8), (long long)(g->ct_len * 8));
    g->y = gmul(_mm_xor_si128(g->y, len), g->hp[0]);
    _mm_storeu_si128((__m128i *)tag, _mm_xor_si128(bswap128(g->y), g->ekj0));
    OPENSSL_cleanse(g->ks, sizeof g->ks);
}

#else /* not x86-64: net_seal.c uses libcrypto */

int net_gcm_available(void) { return 0; }
struct net_gcm *net_gcm_new(const uint8_t key[32])
{
    (void)key;
    return NULL;
}
void net_gcm_free(struct net_gcm *g) { (void)g; }
void net_gcm_begin(struct net_gcm *g, const uint8_t iv[12], const uint8_t *aad, size_t aad_len, int enc)
{
    (void)g, (void)iv, (void)aad, (void)aad_len, (void)enc;
}
int net_gcm_update(struct net_gcm *g, uint8_t *out, const uint8_t *in, size_t n)
{
    (void)g, (void)out, (void)in, (void)n;
    return -1;
}
void net_gcm_tag(struct net_gcm *g, uint8_t tag[16])
{
    (void)g;
    memset(tag, 0, 16);
}

#endif
