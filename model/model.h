/* model.h — the LLaMA-style decoder as pipeline units: configuration, parameter
 * layout, the unit API (forward; backward split into input-grad and weight-grad)
 * and FLOP accounting. See model/layers.h for the raw kernels.
 *
 * A model with n_layers blocks has n_layers + 2 units, indexed so:
 *   unit 0            embedding (model.embed_tokens.weight)
 *   unit 1 + i        decoder block i (model.layers.i.*)
 *   unit n_layers + 1 head: final RMSNorm, lm_head, mean cross-entropy
 * A stage holds an ordered list of units. Nothing here knows about stages. */
#ifndef MODEL_MODEL_H
#define MODEL_MODEL_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int dim;            /* model width C */
    int n_layers;       /* decoder blocks */
    int n_heads;        /* query heads; head_dim = dim / n_heads */
    int n_kv_heads;     /* key/value heads (grouped-query attention), divides n_heads */
    int ffn_dim;        /* SwiGLU hidden width */
    int vocab_size;     /* 256 for byte tokens */
    int seq_len;        /* context length T */
    float norm_eps;     /* RMSNorm epsilon */
    float rope_theta;   /* rotary base */
    int tie_embeddings; /* lm_head shares model.embed_tokens.weight */
} model_config;

/* Checks that a configuration is usable (positive sizes, heads divide dim, kv heads
 * divide heads, even head_dim for RoPE, sizes whose products fit in memory
 * arithmetic). Returns 0, or -1 with a message naming the field in err. */
int model_config_check(const model_config *c, char *err);

/* Number of units (n_layers + 2) and a unit's kind. */
enum { UNIT_EMBED = 0, UNIT_BLOCK = 1, UNIT_HEAD = 2 };
static inline int model_n_units(const model_config *c) { return c->n_layers + 2; }
static inline int model_unit_kind(const model_config *c, int u)
{
    return u == 0 ? UNIT_EMBED : (u == c->n_layers + 1 ? UNIT_HEAD : UNIT_BLOCK);
}

/* Floating-point operations of one unit for one micro-batch of `batch` sequences
 * of `seq` tokens: forward, gradient w.r.t. the input (B) and w.r.t. the weights
 * (W). Counts multiply-adds as 2 and includes attention's score and value products;
 * elementwise work (norms, softmax, activations) is not counted. */
typedef struct { double fwd, bwd_input, bwd_weight; } model_flops;
model_flops model_unit_flops(const model_config *c, int unit, size_t batch, size_t seq);

/* Number of trainable floats a unit owns (a tied head owns none). */
size_t model_unit_params(const model_config *c, int unit);

/* Bytes of the activation a unit sends forward (and of the gradient that comes
 * back) per micro-batch: batch*seq*dim floats for embed and blocks, 0 for the head. */
size_t model_unit_out_bytes(const model_config *c, int unit, size_t batch, size_t seq);

#endif
