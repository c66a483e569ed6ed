/* part.c — a stage's slice of the model: parameter block, activation slots and
 * the forward / backward-input / backward-weight passes over its units.
 * Backward-input saves every gradient that backward-weight needs in the slot,
 * so the two can run at different times (zero-bubble schedules) and the fused
 * order gives bit-identical results. Nothing here allocates during a step. */
#include "model/attention.h"
#include "model/layers.h"
#include "model/model.h"
#include "model/util.h"
#include "model/views.h"

#include <string.h>

/* Floats of one unit's stash (act) and work (grad: gradients, then the
 * recomputed activations the weight-gradient pass reads, block_split_view)
 * under mode; `other`: the activations the forward does not keep. */
static void unit_sizes(const model_config *c, int unit, dims d, int mode, size_t *act, size_t *grad,
                       size_t *other)
{
    block_act ba; block_grad bg; head_act ha; head_grad hg;
    *other = 0;
    switch (model_unit_kind(c, unit)) {
    case UNIT_EMBED: *act = 0; *grad = d.N * d.C; break;
    case UNIT_HEAD: *act = head_act_view(&ha, NULL, d); *grad = head_grad_view(&hg, NULL, d); break;
    default:
        *act = block_act_view(&ba, NULL, NULL, d, mode, other);
        *grad = block_grad_view(&bg, NULL, d) + block_split_view(&ba, NULL, NULL, NULL, d, mode);
        break;
    }
}

/* Token ids a unit keeps: the embedding's inputs, the head's targets. */
static size_t unit_tokens(const model_config *c, int unit, dims d)
{
    return model_unit_kind(c, unit) != UNIT_BLOCK ? d.N : 0;
}

model_mem model_unit_mem(const model_config *cfg, int unit, size_t batch, int mode)
{
    dims d = dims_of(cfg, batch, (size_t)cfg->seq_len);
    size_t a, g, o;
    unit_sizes(cfg, unit, d, mode, &a, &g, &o);
    model_mem m;
    m.stash = a * sizeof(float) + unit_tokens(cfg, unit, d) * sizeof(int);
    m.work = m.work_unit = g * sizeof(float);
    m.fwd_tmp = o * sizeof(float);
    if (model_unit_kind(cfg, unit) == UNIT_BLOCK) { /* the forward's and model_backward_fused's own layouts */
        block_act a;
        block_fused f;
        m.fwd_tmp = block_fwd_view(&a, NULL, NULL, NULL, d, mode) * sizeof(float);
        m.work_unit = block_fused_view(&f, NULL, NULL, NULL, d, mode) * sizeof(float);
    }
    return m;
}

model_mem model_part_mem(const model_part *p, int lo, int hi, size_t batch)
{
    model_mem m = { 0, 0, 0, 0 };
    for (int i = lo; i < hi; i++) {
        model_mem u = model_unit_mem(&p->cfg, p->units[i], batch, p->recompute);
        m.stash += u.stash;
        m.work += u.work;
        if (u.fwd_tmp > m.fwd_tmp) m.fwd_tmp = u.fwd_tmp;
        if (u.work_unit > m.work_unit) m.work_unit = u.work_unit;
    }
    return m;
}

const char *model_recompute_name(int mode)
{
    static const char *const names[] = { "none", "selective", "full" };
    return mode >= 0 && mode <= MODEL_RECOMPUTE_FULL ? names[mode] : NULL;
}

double model_unit_recompute_flops(const model_config *c, int unit, size_t batch, size_t seq, int mode)
{
    if (mode == MODEL_RECOMPUTE_NONE || model_unit_kind(c, unit) != UNIT_BLOCK) return 0;
    model_flops f = model_unit_flops(c, unit, batch, seq);
    double N = (double)batch * (double)seq, down = 2 * N * c->ffn_dim * c->dim;
    double mm = f.bwd_weight, o = 2 * N * c->dim * c->dim; /* every projection once; the o projection */
    if (mode == MODEL_RECOMPUTE_FULL) return f.fwd - down;
    return f.fwd - mm + o; /* selective: attention's scores and weighted values, the o projection */
}

void model_part_set_recompute(model_part *p, int mode)
{
    p->recompute = mode;
    free(p->fwd_tmp);
    p->fwd_tmp = NULL;
    size_t most = model_part_mem(p, 0, p->n_units, p->max_batch).fwd_tmp;
    if (most) p->fwd_tmp = xmalloc(most);
}

model_part *model_part_new(const model_config *c, const int *units, int n_units, size_t max_batch,
                           uint64_t seed)
{
    model_part *p = xcalloc(1, sizeof *p);
    p->cfg = *c;
    p->n_units = n_units;
    p->units = xmalloc((size_t)n_units * sizeof(int));
    memcpy(p->units, units, (size_t)n_units * sizeof(int));
    p->unit_off = xmalloc((size_t)n_units * sizeof(size_t));
    p->tensors = xmalloc((size_t)n_units * MODEL_MAX_UNIT_TENSORS * sizeof(model_tensor));
    for (int i = 0; i < n_units; i++) {
        model_tensor *t = p->tensors + p->n_tensors;
        int n = model_unit_tensors(c, units[i], t);
        p->unit_off[i] = p->n_params;
        for (int j = 0; j < n; j++) t[j].offset += p->n_params;
        p->n_params += model_unit_params(c, units[i]);
        p->n_tensors += n;
    }
    p->params = xmalloc(p->n_params * sizeof(float));
    p->grads = xcalloc(p->n_params, sizeof(float));
    for (int i = 0; i < p->n_tensors; i++)
        model_tensor_init(c, &p->tensors[i], p->params + p->tensors[i].offset, seed);

    dims d = dims_of(c, max_batch, (size_t)c->seq_len);
    int has_head = model_unit_kind(c, units[n_units - 1]) == UNIT_HEAD;
    if (has_head && c->tie_embeddings) {
        p->tied_grad = xcalloc(d.V * d.C, sizeof(float));
        if (units[0] == 0) {
            p->tied_w = p->params; /* the embedding is unit 0, at offset 0 */
        } else {
            /* a head on another stage keeps its own copy, initialised identically */
            model_tensor e;
            model_unit_tensors(c, 0, &e);
            p->tied_w = xmalloc(e.numel * sizeof(float));
            model_tensor_init(c, &e, p->tied_w, seed);
        }
    }
    p->max_batch = max_batch;
    size_t half = d.hd / 2;
    p->rope_cos = xmalloc(d.T * half * sizeof(float));
    p->rope_sin = xmalloc(d.T * half * sizeof(float));
    layer_rope_tables(p->rope_cos, p->rope_sin, d.T, d.hd, c->rope_theta);
    /* workspace: dh (N,F) + datt (N,C); attention scratch is per pool worker */
    p->ws = xmalloc((d.N * (d.F > d.C ? d.F : d.C) + d.N * d.C) * sizeof(float));
    p->buf[0] = xmalloc(d.N * d.C * sizeof(float));
    p->buf[1] = xmalloc(d.N * d.C * sizeof(float));
    return p;
}

model_part_size model_part_bytes(const model_config *c, const int *units, int n_units, size_t max_batch,
                                 int threads)
{
    dims d = dims_of(c, max_batch, (size_t)c->seq_len);
    model_part_size z = { 0, 0, 0, 0 };
    for (int i = 0; i < n_units; i++) z.params += model_unit_params(c, units[i]) * sizeof(float);
    z.weights = z.grads = z.params;
    if (model_unit_kind(c, units[n_units - 1]) == UNIT_HEAD && c->tie_embeddings) {
        z.grads += d.V * d.C * sizeof(float);                         /* tied_grad */
        if (units[0] != 0) z.weights += d.V * d.C * sizeof(float);    /* tied_w */
    }
    attn_dims a = { d.B, d.T, d.H, d.KVH, d.hd, d.C, d.KV, d.C };
    z.fixed = (2 * d.T * (d.hd / 2) + d.N * (d.F > d.C ? d.F : d.C) + d.N * d.C + 2 * d.N * d.C +
               (size_t)(threads > 0 ? threads : 1) * attn_scratch_floats(a)) * sizeof(float);
    return z;
}

void model_part_free(model_part *p)
{
    if (!p) return;
    if (p->tied_w && p->tied_w != p->params) free(p->tied_w);
    free(p->tied_grad);
    free(p->units); free(p->unit_off); free(p->tensors);
    free(p->params); free(p->grads);
    free(p->rope_cos); free(p->rope_sin); free(p->ws);
    free(p->buf[0]); free(p->buf[1]);
    free(p->fwd_tmp);
    free(p);
}

int model_part_find(const model_part *p, const char *name)
{
    for (int i = 0; i < p->n_tensors; i++)
        if (!strcmp(p->tensors[i].name, name)) return i;
    return -1;
}

void model_part_zero_grad(model_part *p)
{
    memset(p->grads, 0, p->n_params * sizeof(float));
    if (p->tied_grad) memset(p->tied_grad, 0, (size_t)p->cfg.vocab_size * p->cfg.dim * sizeof(float));
}

void model_part_reduce_tied(model_part *p)
{
    if (!p->tied_grad || p->units[0] != 0) return;
    size_t n = (size_t)p->cfg.vocab_size * p->cfg.dim;
    for (size_t i = 0; i < n; i++) p->grads[i] += p->tied_grad[i];
}

size_t model_slots_bytes(const model_part *p, int lo, int hi, size_t batch)
{
    model_mem m = model_part_mem(p, lo, hi, batch);
    return m.stash + m.work;
}

/* Slots of [lo, hi) with their stash laid out from mem; returns the bytes used. */
static size_t lay_stash(const model_part *p, int lo, int hi, model_slot *s, char *mem, dims d)
{
    char *m0 = mem;
    for (int i = 0; i < hi - lo; i++) {
        size_t a, g, o, nt = unit_tokens(&p->cfg, p->units[lo + i], d);
        unit_sizes(&p->cfg, p->units[lo + i], d, p->recompute, &a, &g, &o);
        s[i].act = a ? (float *)mem : NULL; mem += a * sizeof(float);
        s[i].grad = NULL;
        s[i].tokens = nt ? (int *)mem : NULL; mem += nt * sizeof(int);
    }
    return (size_t)(mem - m0);
}

model_slot *model_stash_new(const model_part *p, int lo, int hi, size_t batch)
{
    dims d = dims_of(&p->cfg, batch, (size_t)p->cfg.seq_len);
    size_t n = (size_t)(hi - lo);
    model_slot *s = xcalloc(1, n * sizeof(model_slot) + model_part_mem(p, lo, hi, batch).stash + 64);
    lay_stash(p, lo, hi, s, (char *)(s + n), d);
    return s;
}

model_slot *model_slots_new(const model_part *p, int lo, int hi, size_t batch)
{
    dims d = dims_of(&p->cfg, batch, (size_t)p->cfg.seq_len);
    size_t n = (size_t)(hi - lo);
    model_slot *s = xcalloc(1, n * sizeof(model_slot) + model_slots_bytes(p, lo, hi, batch) + 64);
    char *mem = (char *)(s + n);
    mem += lay_stash(p, lo, hi, s, mem, d);
    /* the work starts on a float boundary: stash bytes are whole floats and ints */
    model_slots_bind(p, lo, hi, s, (float *)mem, batch);
    return s;
}

void model_slots_bind(const model_part *p, int lo, int hi, model_slot *slots, float *work, size_t batch)
{
    dims d = dims_of(&p->cfg, batch, (size_t)p->cfg.seq_len);
    for (int i = 0; i < hi - lo; i++) {
        size_t a, g, o;
        unit_sizes(&p->cfg, p->units[lo + i], d, p->recompute, &a, &g, &o);
        slots[i].grad = work;
        if (work) work += g;
    }
}

void model_slots_free(model_slot *s) { free(s); }
