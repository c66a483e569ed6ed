/* part.c — a stage's slice of the model: parameter block, activation slots and
 * the forward / backward-input / backward-weight passes over its units.
 * Backward-input saves every gradient that backward-weight needs in the slot,
 * so the two can run at different times (zero-bubble schedules) and the fused
 * order gives bit-identical results. Nothing here allocates during a step. */
#include "model/layers.h"
#include "model/model.h"
#include "model/util.h"
#include "model/views.h"

#include <string.h>

static void unit_sizes(const model_config *c, int unit, dims d, size_t *act, size_t *grad)
{
    block_act ba; block_grad bg; head_act ha; head_grad hg;
    switch (model_unit_kind(c, unit)) {
    case UNIT_EMBED: *act = 0; *grad = d.N * d.C; break;
    case UNIT_HEAD: *act = head_act_view(&ha, NULL, d); *grad = head_grad_view(&hg, NULL, d); break;
    default: *act = block_act_view(&ba, NULL, d); *grad = block_grad_view(&bg, NULL, d); break;
    }
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

void model_part_free(model_part *p)
{
    if (!p) return;
    if (p->tied_w && p->tied_w != p->params) free(p->tied_w);
    free(p->tied_grad);
    free(p->units); free(p->unit_off); free(p->tensors);
    free(p->params); free(p->grads);
    free(p->rope_cos); free(p->rope_sin); free(p->ws);
    free(p->buf[0]); free(p->buf[1]);
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

size_t model_unit_slot_bytes(const model_config *cfg, int unit, size_t batch)
{
    dims d = dims_of(cfg, batch, (size_t)cfg->seq_len);
    size_t a, g;
    unit_sizes(cfg, unit, d, &a, &g);
    return (a + g) * sizeof(float) + (model_unit_kind(cfg, unit) != UNIT_BLOCK ? d.N * sizeof(int) : 0);
}

size_t model_slots_bytes(const model_part *p, int lo, int hi, size_t batch)
{
    size_t total = 0;
    for (int i = lo; i < hi; i++) total += model_unit_slot_bytes(&p->cfg, p->units[i], batch);
    return total;
}

model_slot *model_slots_new(const model_part *p, int lo, int hi, size_t batch)
{
    dims d = dims_of(&p->cfg, batch, (size_t)p->cfg.seq_len);
    size_t n = (size_t)(hi - lo);
    model_slot *s = xcalloc(1, n * sizeof(model_slot) + model_slots_bytes(p, lo, hi, batch) + 64);
    char *mem = (char *)(s + n);
    for (size_t i = 0; i < n; i++) {
        size_t a, g;
        unit_sizes(&p->cfg, p->units[lo + (int)i], d, &a, &g);
        s[i].act = a ? (float *)mem : NULL; mem += a * sizeof(float);
        s[i].grad = (float *)mem; mem += g * sizeof(float);
        if (model_unit_kind(&p->cfg, p->units[lo + (int)i]) != UNIT_BLOCK) {
            s[i].tokens = (int *)mem;
            mem += d.N * sizeof(int);
        }
    }
    return s;
}

void model_slots_free(model_slot *s) { free(s); }
