/* kernels.h — private to model/: layouts of layers.h kernels that pass.c needs
 * for the fused projections (see views.h), implemented in layers.c. */
#ifndef MODEL_KERNELS_H
#define MODEL_KERNELS_H

#include <stddef.h>

/* layer_rope on rows ld floats apart: row (b, t) holds `heads` vectors of hd
 * floats starting at x + (b·T + t)·ld. */
void kern_rope(float *x, const float *cosv, const float *sinv, size_t B, size_t T, size_t heads, size_t hd,
               size_t ld, int inverse);
/* h (N, F) = silu(gate) ⊙ up with gu (N, 2F) rows gate | up. */
void kern_swiglu_forward(float *h, const float *gu, size_t N, size_t F);
/* dgu (N, 2F) rows dgate | dup, overwritten, from dh (N, F) and gu; dgu may
 * be gu (in place). */
void kern_swiglu_backward(float *dgu, const float *dh, const float *gu, size_t N, size_t F);

/* y += x, then out, rstd = layer_rmsnorm_forward of the new y (the residual
 * add and the norm after it in one pass). y, out: (N, C). */
void kern_add_rmsnorm(float *y, float *out, float *rstd, const float *x, const float *w, size_t N, size_t C,
                      float eps);
/* out (N, C) = the RMSNorm output of x with the rstd (N) its forward
 * (layer_rmsnorm_forward, kern_add_rmsnorm) computed: the same bits as that
 * forward's out, without its sums. */
void kern_rmsnorm_apply(float *out, const float *x, const float *rstd, const float *w, size_t N, size_t C);
/* dx = base + the RMSNorm input gradient (layer_rmsnorm_backward_input with a
 * separate addend; base NULL means 0, base == dx accumulates). */
void kern_rmsnorm_backward_input_add(float *dx, const float *base, const float *dout, const float *x,
                                     const float *rstd, const float *w, size_t N, size_t C);
/* y += x, (N, C) */
void kern_add(float *y, const float *x, size_t N, size_t C);

#endif
