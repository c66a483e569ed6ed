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

#endif
