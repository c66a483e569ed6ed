/* optim.c — AdamW, clipping and the learning-rate schedule (see optim.h).
 * The AdamW update and the per-unit sums of squares run over the compute pool
 * (pool.h); neither changes any element's arithmetic or any sum's order, so
 * the bits are those of one thread (the data-parallel and parameter-server
 * paths rely on optim_unit_sqnorms' element order). */
#include "model/optim.h"
#include "model/pool.h"
#include "model/util.h"

#include <math.h>

optim_adamw *optim_new(size_t n_params)
{
    optim_adamw *o = xcalloc(1, sizeof *o);
    o->n = n_params;
    o->m = xcalloc(n_params, sizeof(float));
    o->v = xcalloc(n_params, sizeof(float));
    return o;
}

void optim_free(optim_adamw *o)
{
    if (!o) return;
    free(o->m);
    free(o->v);
    free(o);
}

typedef struct { const model_part *p; double *out; } sqnorm_job;

/* One unit's sum, elements in layout order (one dependency chain: the order
 * is the contract, so it is not vectorised). Units are the pool's items. */
static void sqnorm_unit(void *ctx, size_t i, int worker)
{
    (void)worker;
    const sqnorm_job *j = ctx;
    const model_part *p = j->p;
    size_t lo = p->unit_off[i], hi = (i + 1 < (size_t)p->n_units) ? p->unit_off[i + 1] : p->n_params;
    double s = 0;
    for (size_t k = lo; k < hi; k++) s += (double)p->grads[k] * p->grads[k];
    j->out[i] = s;
}

void optim_unit_sqnorms(const model_part *p, double *out)
{
    sqnorm_job j = { p, out };
    pool_for((size_t)p->n_units, sqnorm_unit, &j);
}

double optim_global_norm(const double *sq, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += sq[i];
    return sqrt(s);
}

float optim_clip_scale(double norm, double max_norm)
{
    if (max_norm <= 0 || norm <= max_norm) return 1.0f;
    return (float)(max_norm / (norm + 1e-6));
}

/* One tensor's AdamW update. restrict, and the flags the Makefile gives this
 * file, let the compiler vectorize the loop; every element is computed alone
 * with the same operations in the same order, so the bits are those of the
 * scalar loop (no contraction into FMA under -std=c11). */
static void adamw_tensor(float *restrict w, const float *restrict g, float *restrict m, float *restrict v,
                         size_t n, float grad_scale, float b1, float b2, float c1, float c2, float lr, float eps,
                         float wd)
{
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * grad_scale;
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        float mh = m[i] * c1, vh = v[i] * c2;
        w[i] -= lr * (mh / (sqrtf(vh) + eps) + wd * w[i]);
    }
}

/* optim_adamw_step over the pool: item i is elements [i·ADAMW_CHUNK, ...) of
 * the part, cut further at tensor boundaries (weight decay is per tensor). */
enum { ADAMW_CHUNK = 1 << 16 };
typedef struct {
    optim_adamw *o;
    model_part *p;
    float grad_scale, b1, b2, c1, c2, lr, eps, wd;
} adamw_job;

static void adamw_chunk(void *ctx, size_t item, int worker)
{
    (void)worker;
    const adamw_job *j = ctx;
    model_part *p = j->p;
    size_t lo = item * ADAMW_CHUNK, hi = lo + ADAMW_CHUNK < p->n_params ? lo + ADAMW_CHUNK : p->n_params;
    for (int t = 0; t < p->n_tensors && lo < hi; t++) {
        const model_tensor *ten = &p->tensors[t];
        size_t a = ten->offset > lo ? ten->offset : lo;
        size_t b = ten->offset + ten->numel < hi ? ten->offset + ten->numel : hi;
        if (a >= b) continue;
        adamw_tensor(p->params + a, p->grads + a, j->o->m + a, j->o->v + a, b - a, j->grad_scale, j->b1, j->b2,
                     j->c1, j->c2, j->lr, j->eps, ten->decay ? j->wd : 0.0f);
    }
}

void optim_adamw_step(optim_adamw *o, model_part *p, const optim_hparams *h, float grad_scale)
{
    o->step++;
    const float b1 = h->beta1, b2 = h->beta2;
    adamw_job j = { o, p, grad_scale, b1, b2, 1.0f / (1.0f - powf(b1, (float)o->step)),
                    1.0f / (1.0f - powf(b2, (float)o->step)), h->lr, h->eps, h->weight_decay };
    pool_for((p->n_params + ADAMW_CHUNK - 1) / ADAMW_CHUNK, adamw_chunk, &j);
}

void optim_adamw_step_ranges(optim_adamw *o, model_part *p, const optim_hparams *h, float grad_scale,
                             const size_t *off, const size_t *len, int n)
{
    o->step++;
    const float b1 = h->beta1, b2 = h->beta2, lr = h->lr;
    const float c1 = 1.0f / (1.0f - powf(b1, (float)o->step));
    const float c2 = 1.0f / (1.0f - powf(b2, (float)o->step));
    size_t mo = 0;
    for (int i = 0; i < n; i++) {
        size_t lo = off[i], hi = off[i] + len[i];
        for (int t = 0; t < p->n_tensors && lo < hi; t++) {
            const model_tensor *ten = &p->tensors[t];
            size_t a = ten->offset > lo ? ten->offset : lo, b = ten->offset + ten->numel < hi ? ten->offset + ten->numel : hi;
            if (a >= b) continue;
            adamw_tensor(p->params + a, p->grads + a, o->m + mo + (a - lo), o->v + mo + (a - lo), b - a, grad_scale,
                         b1, b2, c1, c2, lr, h->eps, ten->decay ? h->weight_decay : 0.0f);
        }
        mo += len[i];
    }
}

double optim_lr(long step, long total, long warmup, double lr, double min_lr)
{
    if (step < warmup) return lr * (double)(step + 1) / (double)warmup;
    if (total <= warmup + 1) return lr;
    double t = (double)(step - warmup) / (double)(total - 1 - warmup);
    if (t > 1) t = 1;
    return min_lr + 0.5 * (1.0 + cos(M_PI * t)) * (lr - min_lr);
}
