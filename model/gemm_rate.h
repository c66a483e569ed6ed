/* gemm_rate.h — how fast this machine's sgemm runs a model's matrix products:
 * a short measurement (~150 ms) at the shapes a micro-batch's forward and
 * backward multiply, cached on disk so that the next call costs nothing. The
 * FLOP-derived cost model of `pipetrain schedule` uses it as its default rate.
 * It says nothing about attention, norms or the optimizer: MODEL_STEP_EFFICIENCY
 * is what a whole training step reaches of the sgemm rate, measured here. */
#ifndef MODEL_GEMM_RATE_H
#define MODEL_GEMM_RATE_H

#include <stddef.h>

#include "model/model.h"

/* Fraction of the measured sgemm rate a training step reaches (FLOPs of
 * model_unit_flops / step time): measured on the 2-stage and 4-stage Shakespeare
 * topologies, one BLAS thread per stage (README, "Schedules"). */
#define MODEL_STEP_EFFICIENCY 0.6

/* One product out (m, n) = in (m, k) x w^T (n, k), as layer_matmul_forward. */
typedef struct { int m, n, k; } model_gemm_shape;

/* The distinct matmul shapes of c's units for micro-batches of `rows` tokens
 * (projections, SwiGLU, lm_head), at most max of them, into out. Returns the count. */
size_t model_gemm_shapes(const model_config *c, size_t rows, model_gemm_shape *out, size_t max);

/* GFLOP/s of cblas_sgemm over shapes[0..n) (each as forward, input-gradient and
 * weight-gradient products, as a training step runs them) with `threads` BLAS
 * threads, the upper quartile of rounds over about 150 ms. The result is cached in
 * $XDG_CACHE_HOME/pipetrain/sgemm.json (else ~/.cache/pipetrain/sgemm.json),
 * keyed by CPU model, thread count and shapes; PIPETRAIN_NO_CACHE=1 neither reads
 * nor writes it. *where (may be NULL) gets the cache file's path, or a note why
 * none was used (wn bytes); *cached is 1 when the value came from the cache.
 * Returns the rate, or 0 when nothing could be measured. Sets the BLAS thread
 * count and restores it; call it from one thread. A cache that cannot be written
 * is not an error. */
double model_sgemm_gflops(const model_gemm_shape *shapes, size_t n, int threads, char *where, size_t wn,
                          int *cached);

#endif
