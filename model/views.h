/* views.h — private to model/: the sizes of one micro-batch and the layout of a
 * unit's weights, saved activations and B→W gradients inside flat float buffers.
 * Each *_view function lays out views from base and returns the float count; with
 * base NULL it only counts (part.c sizes slots with it, pass.c uses the views). */
#ifndef MODEL_VIEWS_H
#define MODEL_VIEWS_H

#include "model/model.h"

typedef struct { size_t N, C, KV, F, V, H, KVH, hd, T, B; } dims;

static inline dims dims_of(const model_config *c, size_t B, size_t T)
{
    dims d;
    d.B = B; d.T = T; d.N = B * T; d.C = (size_t)c->dim; d.H = (size_t)c->n_heads;
    d.KVH = (size_t)c->n_kv_heads; d.hd = d.C / d.H; d.KV = d.KVH * d.hd;
    d.F = (size_t)c->ffn_dim; d.V = (size_t)c->vocab_size;
    return d;
}

/* Points *p at base[off] (NULL when only counting) and returns off + n. */
static inline size_t carve(float **p, float *base, size_t off, size_t n)
{
    *p = base ? base + off : NULL;
    return off + n;
}

/* A block's weights (and gradients: same layout), in model_unit_tensors order.
 * wq, wk, wv are consecutive, so wq is also the fused (C + 2·KV, C) matrix
 * [wq; wk; wv]; likewise wg is the fused (2·F, C) matrix [wg; wu]. pass.c runs
 * one sgemm per fused matrix (fewer, larger calls thread better). */
typedef struct { float *norm1, *wq, *wk, *wv, *wo, *norm2, *wg, *wu, *wd; } block_w;
static inline size_t block_w_view(block_w *w, float *b, dims d)
{
    size_t o = carve(&w->norm1, b, 0, d.C);
    o = carve(&w->wq, b, o, d.C * d.C);  o = carve(&w->wk, b, o, d.KV * d.C);
    o = carve(&w->wv, b, o, d.KV * d.C); o = carve(&w->wo, b, o, d.C * d.C);
    o = carve(&w->norm2, b, o, d.C);     o = carve(&w->wg, b, o, d.F * d.C);
    o = carve(&w->wu, b, o, d.F * d.C);
    return carve(&w->wd, b, o, d.C * d.F);
}

/* Row widths of the fused projections: q|k|v and gate|up side by side. */
static inline size_t qkv_width(dims d) { return d.C + 2 * d.KV; }

/* qkv (N, C + 2·KV): row n is q (C) | k (KV) | v (KV), RoPE applied to q, k.
 * gu (N, 2·F): row n is gate (F) | up (F). */
/* lse (B, H, T): attention's log-sum-exp per query row (attention.h), all the
 * backward needs besides q, k, v and att: no T x T probabilities. */
typedef struct { float *x, *rstd1, *xn1, *qkv, *lse, *att, *x2, *rstd2, *xn2, *gu, *h; } block_act;
enum { BA_X, BA_RSTD1, BA_XN1, BA_QKV, BA_LSE, BA_ATT, BA_X2, BA_RSTD2, BA_XN2, BA_GU, BA_H, BA_N };

/* NONE's derived tensors: the two RMSNorm outputs and the SwiGLU product are
 * elementwise functions of kept ones (xn1 of x, rstd1; xn2 of x2, rstd2; h of
 * gu), needed only by weight gradients, so NONE keeps none of them: its
 * forward writes each into the part's workspace (model_part.ws) just before
 * the projection that reads it, and its weight-gradient pass recomputes each
 * there with the forward's own arithmetic (kern_rmsnorm_apply,
 * kern_swiglu_forward), so the same bits. No matrix product is recomputed. */
static inline int block_act_derived(int mode, int f)
{
    return mode == MODEL_RECOMPUTE_NONE && (f == BA_XN1 || f == BA_XN2 || f == BA_H);
}

/* Whether a block's forward keeps tensor BA_* under a recompute mode (model.h):
 * all but the derived ones (NONE), the input (FULL), the input and the outputs
 * of the q/k/v and gate|up projections (SELECTIVE). */
static inline int block_act_kept(int mode, int f)
{
    if (mode == MODEL_RECOMPUTE_NONE) return !block_act_derived(mode, f);
    if (mode == MODEL_RECOMPUTE_FULL) return f == BA_X;
    return f == BA_X || f == BA_QKV || f == BA_GU;
}

/* The part's workspace (model_part.ws): N·max(F, C) floats (dh; any one of
 * NONE's derived tensors), then N·C (datt). */
static inline size_t ws_head_floats(dims d) { return d.N * (d.F > d.C ? d.F : d.C); }

/* Each tensor's pointer in a (t[f]) and its float count (n[f]), in BA_ order. */
static inline void block_act_fields(block_act *a, dims d, float **t[BA_N], size_t n[BA_N])
{
    const size_t NC = d.N * d.C;
    float **tt[BA_N] = { &a->x, &a->rstd1, &a->xn1, &a->qkv, &a->lse, &a->att, &a->x2, &a->rstd2, &a->xn2,
                         &a->gu, &a->h };
    const size_t nn[BA_N] = { NC, d.N, NC, d.N * qkv_width(d), d.B * d.H * d.T, NC, NC, d.N, NC,
                              d.N * 2 * d.F, d.N * d.F };
    for (int f = 0; f < BA_N; f++) {
        t[f] = tt[f];
        n[f] = nn[f];
    }
}

/* Lays the kept tensors out from `kept` and the others from `other`, each in
 * BA_ order; returns the kept float count and sets *n_other (NULL bases only
 * count). NONE's derived tensors are in neither: their pointers are NULL. */
static inline size_t block_act_view(block_act *a, float *kept, float *other, dims d, int mode, size_t *n_other)
{
    float **t[BA_N];
    size_t n[BA_N], ok = 0, oo = 0;
    block_act_fields(a, d, t, n);
    for (int f = 0; f < BA_N; f++) {
        if (block_act_derived(mode, f)) *t[f] = NULL;
        else if (block_act_kept(mode, f)) ok = carve(t[f], kept, ok, n[f]);
        else oo = carve(t[f], other, oo, n[f]);
    }
    if (n_other) *n_other = oo;
    return ok;
}

/* The activations of a split backward (backward-input, then backward-weight
 * later: zero-bubble schedules, stages past the first) under recomputation:
 * the kept ones in the stash, the other recomputed ones in `work`, which
 * lives from backward-input to backward-weight, but NONE's derived tensors
 * (xn1, xn2, h): both passes derive them in turn at the workspace ws, as NONE
 * does (block_act_derived). So every mode holds from B to W what NONE holds
 * (its stash and the gradients), and less from F to B; holding the derived
 * ones too made FULL's peak exceed NONE's on zero-bubble stages. Returns the
 * floats in `work` (NULL bases only count). */
static inline size_t block_split_view(block_act *a, float *stash, float *work, float *ws, dims d, int mode)
{
    float **t[BA_N];
    size_t n[BA_N], ok = 0, ow = 0;
    block_act_fields(a, d, t, n);
    for (int f = 0; f < BA_N; f++) {
        if (block_act_derived(MODEL_RECOMPUTE_NONE, f)) *t[f] = ws;
        else if (block_act_kept(mode, f)) ok = carve(t[f], stash, ok, n[f]);
        else ow = carve(t[f], work, ow, n[f]);
    }
    return ow;
}

/* dgu and dqkv are laid out like gu and qkv. */
typedef struct { float *dout, *dgu, *dxn2, *dx2, *dqkv, *dxn1; } block_grad;
static inline size_t block_grad_view(block_grad *g, float *b, dims d)
{
    size_t o = carve(&g->dout, b, 0, d.N * d.C);
    o = carve(&g->dgu, b, o, d.N * 2 * d.F);
    o = carve(&g->dxn2, b, o, d.N * d.C);  o = carve(&g->dx2, b, o, d.N * d.C);
    o = carve(&g->dqkv, b, o, d.N * qkv_width(d));
    return carve(&g->dxn1, b, o, d.N * d.C);
}

/* FULL's forward scratch and fused backward work: what NONE keeps but x and
 * x2, laid out from `work` (rstd1, qkv, lse, att, rstd2, gu), with NONE's
 * derived tensors at ws and x2 after ws's first N·max(F, C) floats, datt's
 * place: the forward does not use it, and the fused backward reads x2 for the
 * last time (the post-attention norm's weight gradient) before it writes datt
 * there. Returns the float count. */
static inline size_t block_full_lay(block_act *a, float *work, float *ws, dims d)
{
    const size_t NC = d.N * d.C, QKV = d.N * qkv_width(d), FN = d.N * d.F, P = d.B * d.H * d.T;
    size_t o = carve(&a->att, work, carve(&a->lse, work, carve(&a->qkv, work, carve(&a->rstd1, work, 0, d.N), QKV), P), NC);
    a->xn1 = a->xn2 = a->h = ws;
    a->x2 = ws ? ws + ws_head_floats(d) : NULL;
    return carve(&a->gu, work, carve(&a->rstd2, work, o, d.N), 2 * FN);
}

/* The forward's scratch for the tensors a block does not keep (model_part.fwd_tmp).
 * SELECTIVE reuses it as they die (x2 | xn1, then lse and att, then xn2, then
 * h | rstd1, rstd2); FULL lays out what NONE keeps but x and x2 (block_full_lay);
 * NONE needs none: its derived tensors xn1, xn2, h each live at the workspace ws
 * (model_part.ws, which the forward does not otherwise use) from their kernel
 * to the projection that reads them, one after the other. Returns the
 * scratch's float count (NULL bases only count). */
static inline size_t block_fwd_view(block_act *a, float *stash, float *tmp, float *ws, dims d, int mode)
{
    size_t n;
    block_act_view(a, stash, tmp, d, mode, &n);
    if (mode == MODEL_RECOMPUTE_NONE) a->xn1 = a->xn2 = a->h = ws;
    if (mode == MODEL_RECOMPUTE_FULL) return block_full_lay(a, tmp, ws, d);
    if (mode != MODEL_RECOMPUTE_SELECTIVE) return n;
    const size_t NC = d.N * d.C, FN = d.N * d.F, P = d.B * d.H * d.T;
    size_t o = carve(&a->x2, tmp, 0, NC), r = o + NC;
    carve(&a->xn1, tmp, o, NC);
    carve(&a->att, tmp, carve(&a->lse, tmp, o, P), NC);     /* over xn1 */
    carve(&a->xn2, tmp, o, NC);                            /* over lse */
    carve(&a->h, tmp, o, FN);                              /* over xn2 */
    if (o + P + NC > r) r = o + P + NC;
    if (o + FN > r) r = o + FN;
    return carve(&a->rstd2, tmp, carve(&a->rstd1, tmp, r, d.N), d.N);
}

/* The fused backward of one block (model_backward_fused): its activations
 * (the kept ones in the stash, the others recomputed into the work) and the
 * gradients that run from one sub-layer to the next, each laid over tensors the
 * backward has consumed by then; dgu overwrites gu, wherever gu is. The order
 * (pass.c block_backward_fused): per sub-layer from the top, its input
 * gradient then its weight gradient; FULL recomputes the whole forward first
 * (what NONE keeps, into the work; xn1, xn2, h at ws as NONE's forward does,
 * x2 at ws after them: block_full_lay) and then runs NONE's backward (but
 * gate|up's weight gradient before its input gradient, dxn2 over xn2),
 * SELECTIVE each tensor just before its first use (h, then lse, att, x2,
 * xn2 once dgu is done, then xn1 once dqkv is). Returns the work's float count
 * (NULL work only counts). */
/* NONE works in the workspace ws (model_part.ws) and, once the SwiGLU's
 * gradient is spent, over gu's stash: h, then xn2, then the attention
 * backward's row scratch, then xn1 at ws; dxn2, then datt, then dxn1 after
 * ws's first N·max(F, C) floats; dx2 | dqkv over gu (2·N·F floats) when they
 * fit there, else in the work. */
typedef struct { block_act a; float *dxn2, *dx2, *dqkv, *dxn1; } block_fused;
static inline size_t block_fused_view(block_fused *f, float *stash, float *work, float *ws, dims d, int mode)
{
    const size_t NC = d.N * d.C, QKV = d.N * qkv_width(d), FN = d.N * d.F, P = d.B * d.H * d.T;
    block_act *a = &f->a;
    size_t o, at, end;
    float *base;
    block_act_view(a, stash, NULL, d, mode, NULL); /* the kept ones; the others are placed below */
    switch (mode) {
    case MODEL_RECOMPUTE_NONE:
        a->xn1 = a->xn2 = a->h = ws;
        f->dxn2 = f->dxn1 = ws ? ws + ws_head_floats(d) : NULL;
        base = NC + QKV <= 2 * FN ? a->gu : work;
        carve(&f->dqkv, base, carve(&f->dx2, base, 0, NC), QKV);
        return NC + QKV <= 2 * FN ? 0 : NC + QKV;
    case MODEL_RECOMPUTE_SELECTIVE:
        /* h first, alone; then lse (xn1 | dxn1 after it) | xn2, then dx2 |
         * att, x2, dxn2, then dqkv | rstd2, rstd1 */
        at = P > 2 * NC ? P : 2 * NC;
        carve(&a->lse, work, 0, P);
        carve(&f->dxn1, work, carve(&a->xn1, work, 0, NC), NC);
        carve(&a->xn2, work, at, NC);
        carve(&f->dx2, work, at, NC);
        o = at + NC;
        carve(&f->dxn2, work, carve(&a->x2, work, carve(&a->att, work, o, NC), NC), NC);
        carve(&f->dqkv, work, o, QKV);
        end = o + (QKV > 3 * NC ? QKV : 3 * NC);
        end = carve(&a->rstd1, work, carve(&a->rstd2, work, end, d.N), d.N);
        carve(&a->h, work, 0, FN);
        return FN > end ? FN : end;
    default: /* FULL: NONE's stash but x recomputed into the work (the derived tensors and x2 at ws), then
              * NONE's backward but for gate|up: xn2, its W, then dxn2 at ws (x2 is at dxn2's place in NONE) */
        o = block_full_lay(a, work, ws, d);
        f->dxn2 = ws;
        f->dxn1 = ws ? ws + ws_head_floats(d) : NULL;
        base = NC + QKV <= 2 * FN ? a->gu : work ? work + o : NULL;
        carve(&f->dqkv, base, carve(&f->dx2, base, 0, NC), QKV);
        return NC + QKV <= 2 * FN ? o : o + NC + QKV;
    }
}

/* The head keeps its input x, rstd and the (N, V) probabilities; its norm
 * output xn is derived like a block's (block_act_derived): written at the
 * workspace ws by the forward, recomputed there by the weight-gradient pass.
 * xn is NULL here: pass.c points it at ws. */
typedef struct { float *x, *rstd, *xn, *probs; } head_act;
static inline size_t head_act_view(head_act *a, float *b, dims d)
{
    size_t o = carve(&a->x, b, 0, d.N * d.C);
    o = carve(&a->rstd, b, o, d.N);
    a->xn = NULL;
    return carve(&a->probs, b, o, d.N * d.V);
}

/* dlogits overwrites the probabilities in the stash (their last reader,
 * pass.c); the work holds dxn alone. */
typedef struct { float *dxn; } head_grad;
static inline size_t head_grad_view(head_grad *g, float *b, dims d)
{
    return carve(&g->dxn, b, 0, d.N * d.C);
}

#endif
