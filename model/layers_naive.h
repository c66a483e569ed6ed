/* layers_naive.h — slow, obviously-correct double-precision references of every
 * kernel in layers.h (llm.c's matmul_forward_naive, in double). Tests check the
 * fast float kernels against these and these against finite differences.
 * Same argument order and semantics as layers.h; every backward here ADDS into
 * its outputs (din, dw alike), so composite references need no special cases. */
#ifndef MODEL_LAYERS_NAIVE_H
#define MODEL_LAYERS_NAIVE_H

#include <stddef.h>

void layer_naive_matmul_forward(double *out, const double *in, const double *w, size_t N, size_t C, size_t OC);
void layer_naive_matmul_backward(double *din, double *dw, const double *dout, const double *in,
                                 const double *w, size_t N, size_t C, size_t OC);
void layer_naive_rmsnorm_forward(double *out, const double *x, const double *w, size_t N, size_t C, double eps);
void layer_naive_rmsnorm_backward(double *dx, double *dw, const double *dout, const double *x, const double *w,
                                  size_t N, size_t C, double eps);
void layer_naive_rope(double *x, size_t B, size_t T, size_t heads, size_t hd, double theta, int inverse);
void layer_naive_attention_forward(double *out, const double *q, const double *k, const double *v, size_t B,
                                   size_t T, size_t H, size_t KVH, size_t hd);
void layer_naive_attention_backward(double *dq, double *dk, double *dv, const double *dout, const double *q,
                                    const double *k, const double *v, size_t B, size_t T, size_t H,
                                    size_t KVH, size_t hd);
void layer_naive_swiglu_forward(double *h, const double *gate, const double *up, size_t n);
void layer_naive_swiglu_backward(double *dgate, double *dup, const double *dh, const double *gate,
                                 const double *up, size_t n);
/* Returns Σ_n -log softmax(logits[n])[targets[n]]; dlogits += scale·∂/∂logits when non-NULL. */
double layer_naive_xent(double *dlogits, const double *logits, const int *targets, size_t N, size_t V,
                        double scale);

#endif
