/* hf_load.h — starting from a Hugging Face LLaMA checkpoint (`run --init-from
 * DIR`, issue 16): DIR/config.json (LlamaForCausalLM) and DIR/model.safetensors,
 * or the sharded form DIR/model.safetensors.index.json whose "weight_map" names
 * the shard file of every tensor. Tensors are F32, F16 or BF16 and are converted
 * to f32 on load (F16 subnormals, infinities and NaNs exactly; BF16 is the top
 * half of an f32). Names and layouts are `pipetrain export`'s, which are Hugging
 * Face's: 2-D weights (out_features, in_features), and q_proj / k_proj rows in
 * the rotate_half order HF's RoPE expects — the order model/ computes RoPE in —
 * so loading is a plain copy (no permutation), the exact inverse of export.
 *
 * A part loads only its own tensors: the files are mapped (st_open_mapped) and
 * only those tensors' bytes are touched; shards holding none of them are never
 * opened. Every error names the file and the tensor or field.
 *
 * Not here: rope_scaling, attention or MLP biases, activations other than
 * SiLU, a head_dim other than hidden_size / num_attention_heads (all refused by
 * hf_config_load), tokenizers, optimizer state (training starts it fresh). */
#ifndef MODEL_HF_LOAD_H
#define MODEL_HF_LOAD_H

#include <stdint.h>

#include "model/model.h"

/* Reads DIR/config.json into c (dim, ffn_dim, n_heads, n_kv_heads, n_layers,
 * norm_eps, rope_theta, vocab_size, tie_embeddings; seq_len = *max_pos =
 * max_position_embeddings). hidden_size, intermediate_size,
 * num_attention_heads, num_hidden_layers and vocab_size are required; the rest
 * take Hugging Face's LlamaConfig defaults (num_key_value_heads =
 * num_attention_heads, rms_norm_eps 1e-6, rope_theta 10000,
 * tie_word_embeddings false, max_position_embeddings 2048). Returns 0, or -1
 * with a message naming the file and the field (also for what is not supported:
 * model_type other than "llama", rope_scaling, attention_bias, mlp_bias,
 * hidden_act other than "silu", a different head_dim). Any thread. */
int hf_config_load(const char *dir, model_config *c, long *max_pos, char *err);

/* The config.json key of each model_config field hf_config_load fills, in the
 * order a topology's model section is compared with it: {topology key,
 * config.json key} pairs, ending with {NULL, NULL}. seq_len is compared as
 * "at most max_position_embeddings". */
extern const char *const hf_config_keys[][2];

/* What a load read. */
typedef struct {
    int tensors;        /* tensors copied (the tied copy counts) */
    uint64_t bytes;     /* bytes of tensor data read from the files */
    int files;          /* files opened (index and config.json not counted) */
    char names[512];    /* the files' names, comma-separated (truncated) */
} hf_stats;

/* Checks, from the headers only, that DIR holds every tensor of a model of
 * configuration c with a supported dtype and the right shape (lm_head.weight
 * is not needed when c ties embeddings). Opens every shard. Returns 0, or -1
 * with a message naming the file and the tensor. */
int hf_check(const char *dir, const model_config *c, char *err);

/* Overwrites p's parameters (and a tied head's copy of the embedding) with
 * DIR's tensors, converted to f32; p->cfg must match DIR's config.json (the
 * topology loader checks that). Gradients and optimizer state are untouched.
 * st (may be NULL) receives what was read. Returns 0, or -1 with a message
 * naming the file and the tensor (missing, dtype, shape, header offsets, or a
 * shard the index names that cannot be opened); p's parameters are then
 * partly overwritten. Any thread; one call per part at a time. */
int hf_load_part(const char *dir, model_part *p, hf_stats *st, char *err);

/* Conversions to f32 (exposed for tests): IEEE half (subnormals, ±inf, NaN
 * payloads kept) and bfloat16. n elements from src (little-endian bytes). */
void hf_f16_to_f32(float *dst, const void *src, size_t n);
void hf_bf16_to_f32(float *dst, const void *src, size_t n);

#endif
