/* optim.h — AdamW with decoupled weight decay (2-D weights only), gradient
 * clipping by global norm and the learning-rate schedule (linear warm-up, cosine
 * decay to a floor). The global norm is built from per-unit sums of squares in
 * double, combined in unit order, so it is the same number however the units
 * are split across stages. */
#ifndef MODEL_OPTIM_H
#define MODEL_OPTIM_H

#include <stddef.h>

#include "model/model.h"

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
} optim_hparams;

/* AdamW state for one part: first and second moments (one contiguous block each,
 * laid out like the part's parameters) and the number of steps taken. */
typedef struct {
    size_t n;
    float *m, *v;
    long step;
} optim_adamw;

optim_adamw *optim_new(size_t n_params);
void optim_free(optim_adamw *o);

/* out[i] = Σ grad² over local unit i, in double, elements in layout order. */
void optim_unit_sqnorms(const model_part *p, double *out);
/* sqrt of Σ sq[i] for i = 0..n-1, added in that order. */
double optim_global_norm(const double *sq, int n);
/* Multiplier for clipping to max_norm (1 when max_norm <= 0 or norm is small). */
float optim_clip_scale(double norm, double max_norm);

/* One AdamW step on every parameter of p with gradients multiplied by
 * grad_scale first. Increments o->step (bias correction uses the new value). */
void optim_adamw_step(optim_adamw *o, model_part *p, const optim_hparams *h, float grad_scale);

/* The same AdamW step on a shard of p's parameters (ZeRO-1): ranges i =
 * 0..n-1 are [off[i], off[i] + len[i]) of p->params, ascending and disjoint;
 * their moments are packed in o->m and o->v in range order (range i's at the
 * sum of the earlier lengths), so o->n >= the sum of len. Each element gets
 * the operations optim_adamw_step gives it (weight decay by its tensor), so the
 * bits are those of the unsharded step. Increments o->step. */
void optim_adamw_step_ranges(optim_adamw *o, model_part *p, const optim_hparams *h, float grad_scale,
                             const size_t *off, const size_t *len, int n);

/* Learning rate at step (0-based) of total: linear warm-up over `warmup` steps
 * to lr, then cosine decay to min_lr at the last step. */
double optim_lr(long step, long total, long warmup, double lr, double min_lr);

#endif
