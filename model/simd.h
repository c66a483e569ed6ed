/* simd.h — private to model/: a float vector type of the machine's widest
 * useful width (GCC/clang vector extensions, so no intrinsics and no ISA
 * #ifdefs beyond the width), with unaligned load/store and broadcast.
 * Lanes never interact unless a kernel says so, which keeps every sum in a
 * fixed order (no -ffast-math, no reassociation). */
#ifndef MODEL_SIMD_H
#define MODEL_SIMD_H

#include <string.h>

#if defined(__AVX512F__)
#define VW 16
#elif defined(__AVX__)
#define VW 8
#else
#define VW 4
#endif

typedef float vf __attribute__((vector_size(VW * sizeof(float))));

static inline vf vload(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf vbcast(float x) { return (vf){ 0 } + x; }

typedef int vi __attribute__((vector_size(VW * sizeof(int))));
typedef unsigned vu __attribute__((vector_size(VW * sizeof(unsigned))));

/* m ? a : b per lane, m from a vector comparison (all ones or all zeros). */
static inline vf vselect(vi m, vf a, vf b) { return (vf)((m & (vi)a) | (~m & (vi)b)); }

/* Lane i of the result is lane i + w of v (w = VW/2, VW/4, ...): the halving
 * steps of a horizontal reduction, in registers. GCC and clang spell vector
 * shuffles differently. */
#if defined(__clang__)
#define VSHUF(v, ...) __builtin_shufflevector((v), (v), __VA_ARGS__)
#else
#define VSHUF(v, ...) __builtin_shuffle((v), (vi){ __VA_ARGS__ })
#endif
#if VW == 16
#define VHALVE(v, op) do { \
    v = op(v, VSHUF(v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7)); \
    v = op(v, VSHUF(v, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3)); \
    v = op(v, VSHUF(v, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1)); \
    v = op(v, VSHUF(v, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0)); } while (0)
#elif VW == 8
#define VHALVE(v, op) do { \
    v = op(v, VSHUF(v, 4, 5, 6, 7, 0, 1, 2, 3)); \
    v = op(v, VSHUF(v, 2, 3, 0, 1, 2, 3, 0, 1)); \
    v = op(v, VSHUF(v, 1, 0, 1, 0, 1, 0, 1, 0)); } while (0)
#else
#define VHALVE(v, op) do { \
    v = op(v, VSHUF(v, 2, 3, 0, 1)); \
    v = op(v, VSHUF(v, 1, 0, 1, 0)); } while (0)
#endif
static inline vf vadd2(vf a, vf b) { return a + b; }
static inline vf vmax2(vf a, vf b) { return vselect(b > a, b, a); }
static inline float lane0f(vf v) { float r; memcpy(&r, &v, sizeof r); return r; }

/* Sum of the lanes, pairwise in a fixed order: lane i += lane i + w for
 * w = VW/2, ..., 1. */
static inline float vsum(vf v)
{
    VHALVE(v, vadd2);
    return lane0f(v);
}

/* Largest lane (NaN lanes are skipped unless lane 0 is NaN). */
static inline float vmax(vf v)
{
    VHALVE(v, vmax2);
    return lane0f(v);
}

/* e^x per lane (Cephes expf: range reduction by ln 2 in two parts, degree-6
 * polynomial; about 1 ulp). Inputs are clamped to [-87.3, 88]: below, the
 * result is FLT_MIN-sized instead of a denormal or 0; NaN stays NaN. */
static inline vf vexp(vf x)
{
    const vf lo = vbcast(-87.3365f), hi = vbcast(88.0f), magic = vbcast(12582912.0f);
    x = vselect(x < lo, lo, x);
    x = vselect(x > hi, hi, x);
    vf n = (x * 1.44269504088896341f + magic) - magic; /* round to nearest */
    vf r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    vf p = vbcast(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    /* 2^n built in the exponent bits; unsigned so that a NaN lane (whose n
     * converts to INT_MIN) wraps instead of overflowing */
    vu e = ((vu)__builtin_convertvector(n, vi) + 127u) << 23;
    return p * (vf)e;
}

#endif
