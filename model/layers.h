/* layers.h — the numeric kernels of a LLaMA decoder, in float: matmul (through
 * cblas_sgemm), RMSNorm, rotary embeddings, causal grouped-query attention,
 * SwiGLU, embedding and cross-entropy. Each has a forward and, where the layer
 * has weights, a backward split into an input-gradient and a weight-gradient part.
 *
 * Conventions (llm.c): outputs first, then inputs, then weights, then sizes; a
 * shape comment on every pointer; N = batch*seq rows. Weight-gradient kernels ADD
 * into their gradient buffers (the caller zeroes once per step). Input-gradient
 * kernels OVERWRITE din unless the name says _acc.
 *
 * layers_naive.h holds slow double-precision references of every kernel. */
#ifndef MODEL_LAYERS_H
#define MODEL_LAYERS_H

#include <stddef.h>

/* out = in · wᵀ */
void layer_matmul_forward(float *out /* (N, OC) */, const float *in /* (N, C) */,
                          const float *w /* (OC, C) */, size_t N, size_t C, size_t OC);
/* din (+)= dout · w; acc = 0 overwrites, 1 adds */
void layer_matmul_backward_input(float *din /* (N, C) */, const float *dout /* (N, OC) */,
                                 const float *w /* (OC, C) */, size_t N, size_t C, size_t OC, int acc);
/* dw += doutᵀ · in */
void layer_matmul_backward_weight(float *dw /* (OC, C) */, const float *dout /* (N, OC) */,
                                  const float *in /* (N, C) */, size_t N, size_t C, size_t OC);

/* out = x / rms(x) * w, rstd = 1 / sqrt(mean(x²) + eps) per row */
void layer_rmsnorm_forward(float *out /* (N, C) */, float *rstd /* (N) */, const float *x /* (N, C) */,
                           const float *w /* (C) */, size_t N, size_t C, float eps);
/* dx (+)= ∂/∂x given dout; acc = 0 overwrites, 1 adds */
void layer_rmsnorm_backward_input(float *dx /* (N, C) */, const float *dout /* (N, C) */,
                                  const float *x /* (N, C) */, const float *rstd /* (N) */,
                                  const float *w /* (C) */, size_t N, size_t C, int acc);
/* dw += Σ_rows dout ⊙ x ⊙ rstd */
void layer_rmsnorm_backward_weight(float *dw /* (C) */, const float *dout /* (N, C) */,
                                   const float *x /* (N, C) */, const float *rstd /* (N) */,
                                   size_t N, size_t C);

/* Rotary tables for positions 0..T-1: cos/sin of pos·theta^(-2i/hd), i < hd/2. */
void layer_rope_tables(float *cosv /* (T, hd/2) */, float *sinv /* (T, hd/2) */,
                       size_t T, size_t hd, float theta);
/* In place on x laid out (B, T, heads, hd), Hugging Face rotate_half pairing
 * (i, i + hd/2). inverse = 1 rotates by -angle, which is the backward. */
void layer_rope(float *x /* (B, T, heads, hd) */, const float *cosv, const float *sinv,
                size_t B, size_t T, size_t heads, size_t hd, int inverse);

/* Causal softmax attention with grouped-query heads (H query heads share
 * KVH key/value heads, H % KVH == 0); scale 1/sqrt(hd). FlashAttention-2 on
 * the CPU (model/attention.c): the forward keeps, besides out, only the
 * log-sum-exp of each query row's scores (lse); the backward recomputes the
 * probabilities from q, k and lse. No T x T buffer anywhere. */
void layer_attention_forward(float *out /* (B, T, H, hd) */, float *lse /* (B, H, T) */,
                             const float *q /* (B, T, H, hd) */, const float *k /* (B, T, KVH, hd) */,
                             const float *v /* (B, T, KVH, hd) */, size_t B, size_t T, size_t H,
                             size_t KVH, size_t hd);
/* dq, dk, dv overwritten; out and lse from the forward. scratch: B·H·T floats. */
void layer_attention_backward(float *dq /* (B, T, H, hd) */, float *dk /* (B, T, KVH, hd) */,
                              float *dv /* (B, T, KVH, hd) */, float *scratch /* (B, H, T) */,
                              const float *dout /* (B, T, H, hd) */, const float *out /* (B, T, H, hd) */,
                              const float *lse /* (B, H, T) */, const float *q, const float *k,
                              const float *v, size_t B, size_t T, size_t H, size_t KVH, size_t hd);

/* h = silu(gate) ⊙ up */
void layer_swiglu_forward(float *h /* (n) */, const float *gate /* (n) */, const float *up /* (n) */, size_t n);
void layer_swiglu_backward(float *dgate /* (n) */, float *dup /* (n) */, const float *dh /* (n) */,
                           const float *gate /* (n) */, const float *up /* (n) */, size_t n);

/* out[n] = wte[tokens[n]] */
void layer_embedding_forward(float *out /* (N, C) */, const int *tokens /* (N) */,
                             const float *wte /* (V, C) */, size_t N, size_t C);
/* dwte[tokens[n]] += dout[n], rows in order n = 0..N-1 */
void layer_embedding_backward_weight(float *dwte /* (V, C) */, const float *dout /* (N, C) */,
                                     const int *tokens /* (N) */, size_t N, size_t C);

/* In place: logits → softmax probabilities; returns Σ_n -log p[n][targets[n]] in double. */
double layer_softmax_xent_forward(float *probs /* (N, V) in: logits */, const int *targets /* (N) */,
                                  size_t N, size_t V);
/* dlogits = (probs - onehot(targets)) · scale */
void layer_softmax_xent_backward(float *dlogits /* (N, V) */, const float *probs /* (N, V) */,
                                 const int *targets /* (N) */, size_t N, size_t V, float scale);

#endif
