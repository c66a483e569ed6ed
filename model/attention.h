/* attention.h — private to model/: causal grouped-query attention split into
 * independent work units, one per (sequence b, key/value head kh), computed
 * FlashAttention-2 style (attention.c): the forward keeps only the output and
 * one log-sum-exp per query row, (B, H, T) floats, and the backward recomputes
 * the probabilities tile by tile, so memory grows linearly in T. A unit
 * writes only its own slices of out/lse (forward) and of dq/dk/dv (backward),
 * so units can run on any thread in any order and the result is the same bits:
 * every sum inside a unit runs in a fixed order. layers.c's layer_attention_*
 * run all units in turn; pass.c spreads them over the compute pool. */
#ifndef MODEL_ATTENTION_H
#define MODEL_ATTENTION_H

#include <stddef.h>

/* Sizes and row strides (in floats) of one call: q and dq rows are ldq apart,
 * k, v, dk, dv rows ldkv, out and dout rows ldo; a row holds all heads. The
 * plain layouts of layers.h are ldq = ldo = H·hd, ldkv = KVH·hd; pass.c reads
 * q, k, v straight out of the fused (N, C + 2·KV) projection. */
typedef struct {
    size_t B, T, H, KVH, hd;
    size_t ldq, ldkv, ldo;
} attn_dims;

/* Floats of scratch one unit needs (forward and backward): linear in T. */
size_t attn_scratch_floats(attn_dims a);

/* All units over the pool (pool.h), scratch per worker, on the calling thread
 * and the pool's. Forward: out (B, T, H, hd) rows overwritten, lse (B, H, T)
 * = log Σ_s exp(scale·q·k_s) per query row. Backward: dsum (B, H, T) is the
 * caller's scratch (D = rowsum(dout ⊙ out), all of it computed before any dq
 * row is written, so dq may be laid over out); dq, dk, dv: every row of every
 * head is overwritten. */
void attn_forward(float *out, float *lse, const float *q, const float *k, const float *v, attn_dims a);
void attn_backward(float *dq, float *dk, float *dv, float *dsum, const float *dout, const float *out,
                   const float *lse, const float *q, const float *k, const float *v, attn_dims a);

/* Forward of unit (b, kh): for every query head h of kh's group, lse rows of
 * (b, h) and out rows (b, ·, h). Layouts as layer_attention_forward, with the
 * row strides of a. */
void attn_forward_unit(float *out /* (B, T, H, hd) */, float *lse /* (B, H, T) */,
                       float *scratch /* attn_scratch_floats */, const float *q, const float *k,
                       const float *v, attn_dims a, size_t b, size_t kh);

/* dsum rows (b, h) for h in kh's group: D[t] = dout[t]·out[t] of head h. */
void attn_dsum_unit(float *dsum /* (B, H, T) */, const float *dout /* (B, T, H, hd) */,
                    const float *out /* (B, T, H, hd) */, attn_dims a, size_t b, size_t kh);

/* Backward of unit (b, kh) given the forward's lse and attn_dsum_unit's dsum:
 * overwrites dq rows (b, ·, h) for h in kh's group and dk, dv rows (b, ·, kh). */
void attn_backward_unit(float *dq /* (B, T, H, hd) */, float *dk /* (B, T, KVH, hd) */,
                        float *dv /* (B, T, KVH, hd) */, float *scratch /* attn_scratch_floats */,
                        const float *dout /* (B, T, H, hd) */, const float *lse /* (B, H, T) */,
                        const float *dsum /* (B, H, T) */, const float *q, const float *k, const float *v,
                        attn_dims a, size_t b, size_t kh);

#endif
