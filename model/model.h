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

/* One named parameter tensor (Hugging Face LLaMA naming). Offsets count floats
 * from the start of the unit (model_unit_tensors) or of the part (model_part). */
#define MODEL_MAX_UNIT_TENSORS 9
typedef struct {
    char name[80];
    int unit;        /* global unit index */
    int ndim;        /* 1 or 2 */
    size_t shape[2]; /* (rows, cols) for 2-D, (n) for 1-D */
    size_t numel;
    size_t offset;
    int decay;       /* AdamW weight decay applies (2-D weights only) */
} model_tensor;

/* Fills out[] with the unit's tensors in layout order; returns how many. A tied
 * head lists only its norm (lm_head is model.embed_tokens.weight). */
int model_unit_tensors(const model_config *c, int unit, model_tensor *out);

/* Initialises one tensor deterministically from (seed, name): RMSNorm weights 1,
 * every other weight normal(0, 0.02), residual output projections (o_proj,
 * down_proj) scaled by 1/sqrt(2·n_layers). Independent of how the model is
 * later split into stages. */
void model_tensor_init(const model_config *c, const model_tensor *t, float *w, uint64_t seed);

/* Activation recomputation of a part's decoder blocks (model_part.recompute).
 * NONE recomputes no matrix product: it keeps every tensor a block's backward
 * reads from its forward to its weight-gradient pass but the two RMSNorm
 * outputs and the SwiGLU product h, which its weight-gradient pass derives
 * again, elementwise and bit for bit, from the kept input, rstd and gate|up
 * (views.h block_act_derived). FULL keeps only the block's input x and recomputes the
 * whole block forward (all but the down projection) at the start of its
 * backward-input pass. SELECTIVE keeps the block input and the outputs of the
 * two widest projections (q/k/v after RoPE, gate|up) and recomputes the rest:
 * RMSNorm outputs and rstd of both norms, attention's output and per-row
 * log-sum-exp (no mode keeps attention probabilities: every backward
 * recomputes them tile by tile, attention.h), the o projection with the
 * residual x2 after it, the SwiGLU product h. The recomputation runs the
 * forward's kernels on the same shapes, so it reproduces their bits. The
 * embedding and the head are never recomputed. */
enum { MODEL_RECOMPUTE_NONE = 0, MODEL_RECOMPUTE_SELECTIVE = 1, MODEL_RECOMPUTE_FULL = 2 };

/* Per micro-batch and unit: the activations forward keeps for backward (act:
 * the stash, from forward to backward-weight), the work memory of the backward
 * (grad: the gradients backward-input hands to backward-weight, followed by the
 * activations it recomputes; needed from backward-input to backward-weight
 * only, see model_slots_bind), and the tokens (embedding: inputs; head:
 * targets, or NULL when sampling). */
typedef struct {
    float *act;
    float *grad;
    int *tokens;
} model_slot;

/* Bytes one unit needs per micro-batch of `batch` sequences of cfg->seq_len
 * tokens under recompute mode `mode`: stash (act + tokens, forward to
 * backward-weight), work (grad, backward-input to backward-weight: the
 * gradients, then what a block recomputes but NONE's derived tensors), fwd_tmp
 * (during forward only: what forward computes but does not keep; 0 with NONE),
 * work_unit (model_backward_fused's work for the unit: a block lays what it
 * recomputes and its gradients over one another as they are consumed, so it
 * is less than its work). For a range (model_part_mem) stash and work add up,
 * fwd_tmp and work_unit are the largest unit's. */
typedef struct { size_t stash, work, fwd_tmp, work_unit; } model_mem;
model_mem model_unit_mem(const model_config *cfg, int unit, size_t batch, int mode);
/* Floating-point operations the recomputation adds to a unit's backward-input
 * pass under `mode` (counted as model_unit_flops counts; 0 for NONE, the
 * embedding and the head). */
double model_unit_recompute_flops(const model_config *c, int unit, size_t batch, size_t seq, int mode);
/* The mode's name ("none", "selective", "full"), or NULL for a bad mode. */
const char *model_recompute_name(int mode);

/* Per-unit timing of the passes (model_part.unit_time), for measured per-layer
 * costs: sample k of held unit i's op (0 forward, 1 backward-input, 2
 * backward-weight; a fused backward's B and W stretches summed per unit) is at
 * t[(3i + op) * cap + k % cap], n[3i + op] counting the calls (the last cap
 * are kept). The caller allocates t (3 * n_units * cap) and n (3 * n_units).
 * Seconds of wall time, or with cpu != 0 of the calling thread's CPU time (right
 * when the kernels run in that thread, 1 BLAS thread: a preemption by other
 * processes then costs nothing, where wall time grows with the call's length). */
typedef struct model_unit_timer {
    int cap;
    double *t;
    unsigned long *n;
    int cpu;
} model_unit_timer;

/* A contiguous slice of units held by one stage (or the whole model): one
 * allocation each for parameters and gradients, plus workspace sized for
 * micro-batches of up to max_batch sequences of up to seq_len tokens. */
typedef struct {
    model_config cfg;
    int n_units;
    int *units;              /* global unit indices, ascending (consecutive within a chunk) */
    size_t *unit_off;        /* per held unit: offset of its first float in params */
    size_t n_params;
    float *params, *grads;
    int n_tensors;
    model_tensor *tensors;   /* offsets relative to params */
    float *tied_w;           /* tied head only: the embedding weights it reads */
    float *tied_grad;        /* tied head only: lm_head's gradient, added into the
                                embedding's by model_part_reduce_tied */
    size_t max_batch;
    float *rope_cos, *rope_sin;
    float *ws;               /* backward workspace */
    float *buf[2];           /* activations between units inside the part */
    int recompute;           /* MODEL_RECOMPUTE_*: set by model_part_set_recompute */
    float *fwd_tmp;          /* recompute: one block's tensors forward does not keep */
    struct model_unit_timer *unit_time; /* NULL (the default: nothing timed) or the caller's
                                per-unit timer (below): the passes record each held unit's
                                wall seconds of every forward, backward-input and
                                backward-weight call in it (the calling thread's) */
} model_part;

/* Builds a part holding units[0..n) (ascending) and initialises its
 * parameters from seed. Exits via xmalloc on allocation failure. */
model_part *model_part_new(const model_config *c, const int *units, int n_units, size_t max_batch,
                           uint64_t seed);
void model_part_free(model_part *p);
/* Bytes model_part_new(c, units, n_units, max_batch, ·) allocates, by
 * arithmetic alone: weights (the units' parameters, plus a tied head's copy of
 * the embedding when the embedding is elsewhere), grads (their gradients, plus
 * a tied head's lm_head gradient) and fixed (rope tables, the backward
 * workspace, the two activation buffers between units, and `threads` workers'
 * attention scratch). model_part_set_recompute's forward scratch is not in
 * fixed: it is an activation (model_mem.fwd_tmp). params: the units' own
 * parameter bytes (what an optimizer covers). Any thread. */
typedef struct { size_t params, weights, grads, fixed; } model_part_size;
model_part_size model_part_bytes(const model_config *c, const int *units, int n_units, size_t max_batch,
                                 int threads);
/* Index of the part's tensor with this name, or -1. */
int model_part_find(const model_part *p, const char *name);
/* Zeroes every gradient (once per step). */
void model_part_zero_grad(model_part *p);
/* With a tied head and the embedding both held: embedding grad += tied_grad. */
void model_part_reduce_tied(model_part *p);

/* Sets the part's recompute mode (MODEL_RECOMPUTE_*; NONE after
 * model_part_new) and sizes its forward scratch. Slots made before the change
 * do not fit the new mode: call it before model_slots_new / model_stash_new.
 * Exits via xmalloc on allocation failure. */
void model_part_set_recompute(model_part *p, int mode);
/* model_mem of local units [lo, hi) under the part's mode. */
model_mem model_part_mem(const model_part *p, int lo, int hi, size_t batch);

/* Slots for local units [lo, hi) of one micro-batch with their stash and their
 * work bound (model_slots_bind), in one allocation. */
model_slot *model_slots_new(const model_part *p, int lo, int hi, size_t batch);
/* The same with the stash only: grad is NULL until model_slots_bind (a
 * forward-only slot, or one whose work is taken at backward-input time). */
model_slot *model_stash_new(const model_part *p, int lo, int hi, size_t batch);
void model_slots_free(model_slot *s);
/* Points the grad of slots[0 .. hi-lo) (units [lo, hi)) into work, which holds
 * model_part_mem(p, lo, hi, batch).work bytes; work NULL unbinds. The caller
 * owns work and keeps it from backward-input to backward-weight. */
void model_slots_bind(const model_part *p, int lo, int hi, model_slot *slots, float *work, size_t batch);
/* Bytes of a model_slots_new slot set (stash + work). */
size_t model_slots_bytes(const model_part *p, int lo, int hi, size_t batch);

/* Forward through local units [lo, hi) for `batch` sequences of `seq` tokens.
 * in: (batch·seq, dim), ignored when unit lo is the embedding (reads
 * slots[0].tokens). out: (batch·seq, dim), ignored when the last unit is the
 * head. Returns Σ cross-entropy over tokens when the head is included and has
 * targets, else 0. */
double model_forward(model_part *p, int lo, int hi, model_slot *slots, const float *in, float *out,
                     size_t batch, size_t seq);
/* Input-gradient pass backward through [lo, hi): dout is the gradient of the
 * range's output (ignored when the range ends in the head, which starts from
 * the loss with dL/dlogit scaled by loss_scale); din receives the gradient of
 * the range's input (not written when lo is the embedding). The slots' work
 * must be bound; with recomputation each block first recomputes what its
 * stash lacks into it. Saves in the slots what model_backward_weight needs. */
void model_backward_input(model_part *p, int lo, int hi, model_slot *slots, const float *dout, float *din,
                          size_t batch, size_t seq, float loss_scale);
/* Weight-gradient pass for [lo, hi): adds into p->grads (and tied_grad). Must
 * follow model_backward_input for the same slots. */
void model_backward_weight(model_part *p, int lo, int hi, model_slot *slots, size_t batch, size_t seq);
/* Backward-input and backward-weight of [lo, hi) fused unit by unit, from the
 * last unit down: unit i's input gradient, then its weight gradient, so only
 * one unit's work exists at a time (work: model_part_mem(...).work_unit
 * bytes; the slots' grad is left unbound). A block goes sub-layer by sub-layer
 * (input gradient, then weight gradient), recomputing what its stash lacks
 * only as its sub-layers need it, and turns its stashed gate|up into their
 * gradient in place (the stash is spent afterwards: release it). The same bits
 * as model_backward_input then model_backward_weight (a weight gradient touches
 * no other numbers), but din is complete only at the end. done(ctx, i, phase),
 * when not NULL, runs on the calling thread after each stretch of unit i's
 * input-gradient work (phase 0), each stretch of its weight-gradient work but
 * the last (phase 2), and the last (phase 1: unit i's weight gradient is
 * final); the embedding and the head report one stretch of each. */
void model_backward_fused(model_part *p, int lo, int hi, model_slot *slots, float *work, const float *dout,
                          float *din, size_t batch, size_t seq, float loss_scale,
                          void (*done)(void *ctx, int unit, int phase), void *ctx);
/* After a head forward without targets: the logits (batch·seq, vocab). */
const float *model_logits(const model_part *p, const model_slot *head_slot, size_t batch, size_t seq);

#endif
