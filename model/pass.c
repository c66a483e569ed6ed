/* pass.c — forward, backward-input and backward-weight over a range of a part's
 * units (see model.h). Activations between units inside the range flow through
 * the part's two ping-pong buffers. The q/k/v and gate/up projections each run
 * as one sgemm against the consecutive weights (views.h). */
#include "base/base.h"
#include "model/attention.h"
#include "model/kernels.h"
#include "model/layers.h"
#include "model/model.h"
#include "model/views.h"

#include <string.h>
#include <time.h>

static block_w block_weights(float *base, dims d) { block_w w; block_w_view(&w, base, d); return w; }
static block_grad block_grads(float *base, dims d) { block_grad g; block_grad_view(&g, base, d); return g; }
static size_t block_grad_floats(dims d) { block_grad g; return block_grad_view(&g, NULL, d); }
static head_act head_acts(float *base, dims d) { head_act a; head_act_view(&a, base, d); return a; }
static head_grad head_grads(float *base, dims d) { head_grad g; head_grad_view(&g, base, d); return g; }

/* Per-unit timing (model_part.unit_time): records dt as a call of unit i's op. */
static void unit_record(model_part *p, int i, int op, double dt)
{
    model_unit_timer *u = p->unit_time;
    size_t k = 3 * (size_t)i + (size_t)op;
    u->t[k * (size_t)u->cap + u->n[k] % (size_t)u->cap] = dt;
    u->n[k]++;
}
/* The timer's clock: wall or this thread's CPU seconds; 0 without a timer. */
static double unit_clock(const model_part *p)
{
    if (!p->unit_time) return 0;
    if (!p->unit_time->cpu) return base_now();
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
/* The time since *t as a call of unit i's op; *t becomes now. */
static void unit_tick(model_part *p, int i, int op, double *t)
{
    if (!p->unit_time) return;
    double now = unit_clock(p);
    unit_record(p, i, op, now - *t);
    *t = now;
}

static attn_dims attn_of(dims d)
{
    attn_dims a = { d.B, d.T, d.H, d.KVH, d.hd, qkv_width(d), qkv_width(d), d.C };
    return a;
}

/* Attention, the o projection, the residual add and the post-attention norm:
 * lse, att, x2, xn2, rstd2 from a.qkv and a.x. */
static void block_attn_forward(model_part *p, const block_w *w, block_act a, dims d)
{
    float *q = a.qkv, *k = a.qkv + d.C, *v = a.qkv + d.C + d.KV; /* k heads follow q heads */
    attn_forward(a.att, a.lse, q, k, v, attn_of(d));
    layer_matmul_forward(a.x2, a.att, w->wo, d.N, d.C, d.C);
    kern_add_rmsnorm(a.x2, a.xn2, a.rstd2, a.x, w->norm2, d.N, d.C, p->cfg.norm_eps);
}

/* A block's forward from a.x up to h (all but the down projection). The
 * forward runs it whole (all = 1), and so does FULL recomputation; SELECTIVE
 * recomputation (all = 0) skips the projections whose outputs it kept (qkv
 * after RoPE, gu). Same kernels, same shapes: same bits. */
static void block_forward_body(model_part *p, int i, block_act a, dims d, int all)
{
    block_w w = block_weights(p->params + p->unit_off[i], d);
    const size_t QKV = qkv_width(d);
    layer_rmsnorm_forward(a.xn1, a.rstd1, a.x, w.norm1, d.N, d.C, p->cfg.norm_eps);
    if (all) {
        layer_matmul_forward(a.qkv, a.xn1, w.wq, d.N, d.C, QKV); /* [wq; wk; wv] */
        kern_rope(a.qkv, p->rope_cos, p->rope_sin, d.B, d.T, d.H + d.KVH, d.hd, QKV, 0); /* q and k heads */
    }
    block_attn_forward(p, &w, a, d);
    if (all) layer_matmul_forward(a.gu, a.xn2, w.wg, d.N, d.C, 2 * d.F); /* [wg; wu] */
    kern_swiglu_forward(a.h, a.gu, d.N, d.F);
}

static void block_forward(model_part *p, int i, model_slot *s, const float *in, float *out, dims d)
{
    block_w w = block_weights(p->params + p->unit_off[i], d);
    block_act a;
    block_fwd_view(&a, s->act, p->fwd_tmp, p->ws, d, p->recompute);
    memcpy(a.x, in, d.N * d.C * sizeof(float));
    block_forward_body(p, i, a, d, 1);
    layer_matmul_forward(out, a.h, w.wd, d.N, d.F, d.C);
    kern_add(out, a.x2, d.N, d.C);
}

/* A split backward's activations (block_split_view): the stash, the slot's
 * work after the gradients, NONE's derived tensors at the workspace. */
static block_act block_split_acts(const model_part *p, model_slot *s, dims d)
{
    block_act a;
    block_split_view(&a, s->act, s->grad + block_grad_floats(d), p->ws, d, p->recompute);
    return a;
}

static void block_backward_input(model_part *p, int i, model_slot *s, const float *dout, float *din, dims d)
{
    block_w w = block_weights(p->params + p->unit_off[i], d);
    block_act a = block_split_acts(p, s, d);
    block_grad g = block_grads(s->grad, d);
    if (p->recompute != MODEL_RECOMPUTE_NONE)
        block_forward_body(p, i, a, d, p->recompute == MODEL_RECOMPUTE_FULL);
    float *dh = p->ws, *datt = p->ws + ws_head_floats(d);
    const size_t NC = d.N * d.C, QKV = qkv_width(d);
    float *dq = g.dqkv, *dk = g.dqkv + d.C, *dv = g.dqkv + d.C + d.KV;
    memcpy(g.dout, dout, NC * sizeof(float));
    layer_matmul_backward_input(dh, g.dout, w.wd, d.N, d.F, d.C, 0);
    kern_swiglu_backward(g.dgu, dh, a.gu, d.N, d.F);
    layer_matmul_backward_input(g.dxn2, g.dgu, w.wg, d.N, d.C, 2 * d.F, 0);
    kern_rmsnorm_backward_input_add(g.dx2, g.dout, g.dxn2, a.x2, a.rstd2, w.norm2, d.N, d.C); /* + residual */
    layer_matmul_backward_input(datt, g.dx2, w.wo, d.N, d.C, d.C, 0);
    attn_backward(dq, dk, dv, dh /* dead: D scratch */, datt, a.att, a.lse, a.qkv, a.qkv + d.C,
                  a.qkv + d.C + d.KV, attn_of(d));
    kern_rope(dq, p->rope_cos, p->rope_sin, d.B, d.T, d.H + d.KVH, d.hd, QKV, 1); /* dq and dk heads */
    layer_matmul_backward_input(g.dxn1, g.dqkv, w.wq, d.N, d.C, QKV, 0);
    kern_rmsnorm_backward_input_add(din, g.dx2, g.dxn1, a.x, a.rstd1, w.norm1, d.N, d.C);
}

static void block_backward_weight(model_part *p, int i, model_slot *s, dims d)
{
    block_w gw = block_weights(p->grads + p->unit_off[i], d), w = block_weights(p->params + p->unit_off[i], d);
    block_act a = block_split_acts(p, s, d); /* h, xn2, xn1 derived in turn at ws, in every mode */
    block_grad g = block_grads(s->grad, d);
    kern_swiglu_forward(a.h, a.gu, d.N, d.F);
    layer_matmul_backward_weight(gw.wd, g.dout, a.h, d.N, d.F, d.C);
    kern_rmsnorm_apply(a.xn2, a.x2, a.rstd2, w.norm2, d.N, d.C);
    layer_matmul_backward_weight(gw.wg, g.dgu, a.xn2, d.N, d.C, 2 * d.F);
    layer_rmsnorm_backward_weight(gw.norm2, g.dxn2, a.x2, a.rstd2, d.N, d.C);
    layer_matmul_backward_weight(gw.wo, g.dx2, a.att, d.N, d.C, d.C);
    kern_rmsnorm_apply(a.xn1, a.x, a.rstd1, w.norm1, d.N, d.C);
    layer_matmul_backward_weight(gw.wq, g.dqkv, a.xn1, d.N, d.C, qkv_width(d));
    layer_rmsnorm_backward_weight(gw.norm1, g.dxn1, a.x, a.rstd1, d.N, d.C);
}

/* Progress of a fused backward: done(ctx, unit, phase) after each stretch of
 * input-gradient work (0) and of weight-gradient work (2; 1 for the unit's
 * last, after which its weight gradient is final). */
typedef struct {
    void (*done)(void *ctx, int unit, int phase);
    void *ctx;
    int unit;
    model_part *p;
    double t, tb, tw; /* per-unit timing: the last report, B and W seconds so far */
} progress;
static void report(progress *pr, int phase)
{
    if (pr->p->unit_time) {
        double now = unit_clock(pr->p);
        *(phase ? &pr->tw : &pr->tb) += now - pr->t;
        pr->t = now;
        if (phase == 1) {
            unit_record(pr->p, pr->unit, 1, pr->tb);
            unit_record(pr->p, pr->unit, 2, pr->tw);
        }
    }
    if (pr->done) pr->done(pr->ctx, pr->unit, phase);
}

/* One block's backward-input and backward-weight in one pass over `work`
 * (block_fused_view): each sub-layer's input gradient then its weight
 * gradient, from the top down, so a recomputed tensor or a gradient is gone
 * once both have read it, and gu turns into dgu in place. SELECTIVE recomputes
 * each tensor just before its first use. The kernels and their operands are
 * block_backward_input's and block_backward_weight's, hence the same bits: only
 * the order of kernels writing different buffers changes. dout must stay
 * readable to the end. */
static void block_backward_fused(model_part *p, int i, model_slot *s, float *work, const float *dout, float *din,
                                 dims d, progress *pr)
{
    block_w w = block_weights(p->params + p->unit_off[i], d), gw = block_weights(p->grads + p->unit_off[i], d);
    block_fused f;
    block_fused_view(&f, s->act, work, p->ws, d, p->recompute);
    block_act a = f.a;
    float *dh = p->ws, *datt = p->ws + ws_head_floats(d), *dgu = a.gu;
    const size_t QKV = qkv_width(d);
    /* none: NONE's backward, which FULL runs too once it has recomputed NONE's stash */
    const int sel = p->recompute == MODEL_RECOMPUTE_SELECTIVE, none = !sel;
    const int full = p->recompute == MODEL_RECOMPUTE_FULL; /* x2 at ws after dh: block_full_lay */
    /* MLP: down, gate|up, the post-attention norm */
    if (full) block_forward_body(p, i, a, d, 1);
    if (none) { /* h (at ws) is spent before dh takes its place: the down projection's W, then its B */
        kern_swiglu_forward(a.h, a.gu, d.N, d.F);
        layer_matmul_backward_weight(gw.wd, dout, a.h, d.N, d.F, d.C);
        report(pr, 2);
        layer_matmul_backward_input(dh, dout, w.wd, d.N, d.F, d.C, 0);
        report(pr, 0);
    } else {
        layer_matmul_backward_input(dh, dout, w.wd, d.N, d.F, d.C, 0);
        if (sel) kern_swiglu_forward(a.h, a.gu, d.N, d.F);
        report(pr, 0);
        layer_matmul_backward_weight(gw.wd, dout, a.h, d.N, d.F, d.C);
        report(pr, 2);
    }
    kern_swiglu_backward(dgu, dh, a.gu, d.N, d.F);
    if (full) { /* x2 holds dxn2's place in NONE: xn2 over dh (spent), gate|up's W, then its B over xn2 */
        kern_rmsnorm_apply(a.xn2, a.x2, a.rstd2, w.norm2, d.N, d.C);
        layer_matmul_backward_weight(gw.wg, dgu, a.xn2, d.N, d.C, 2 * d.F);
        report(pr, 2);
        layer_matmul_backward_input(f.dxn2, dgu, w.wg, d.N, d.C, 2 * d.F, 0);
        report(pr, 0);
    } else {
        if (sel) block_attn_forward(p, &w, a, d);
        layer_matmul_backward_input(f.dxn2, dgu, w.wg, d.N, d.C, 2 * d.F, 0);
        report(pr, 0);
        if (none) kern_rmsnorm_apply(a.xn2, a.x2, a.rstd2, w.norm2, d.N, d.C); /* over dh, spent */
        layer_matmul_backward_weight(gw.wg, dgu, a.xn2, d.N, d.C, 2 * d.F);
        report(pr, 2);
    }
    kern_rmsnorm_backward_input_add(f.dx2, dout, f.dxn2, a.x2, a.rstd2, w.norm2, d.N, d.C); /* + residual */
    report(pr, 0);
    layer_rmsnorm_backward_weight(gw.norm2, f.dxn2, a.x2, a.rstd2, d.N, d.C);
    report(pr, 2);
    /* attention: o, q/k/v, the input norm */
    layer_matmul_backward_input(datt, f.dx2, w.wo, d.N, d.C, d.C, 0);
    report(pr, 0);
    layer_matmul_backward_weight(gw.wo, f.dx2, a.att, d.N, d.C, d.C);
    report(pr, 2);
    float *dq = f.dqkv, *dk = f.dqkv + d.C, *dv = f.dqkv + d.C + d.KV;
    attn_backward(dq, dk, dv, dh /* dead: D scratch */, datt, a.att, a.lse, a.qkv, a.qkv + d.C,
                  a.qkv + d.C + d.KV, attn_of(d));
    kern_rope(dq, p->rope_cos, p->rope_sin, d.B, d.T, d.H + d.KVH, d.hd, QKV, 1); /* dq and dk heads */
    if (sel) layer_rmsnorm_forward(a.xn1, a.rstd1, a.x, w.norm1, d.N, d.C, p->cfg.norm_eps);
    if (none) kern_rmsnorm_apply(a.xn1, a.x, a.rstd1, w.norm1, d.N, d.C); /* over the row scratch, spent */
    layer_matmul_backward_input(f.dxn1, f.dqkv, w.wq, d.N, d.C, QKV, 0);
    report(pr, 0);
    layer_matmul_backward_weight(gw.wq, f.dqkv, a.xn1, d.N, d.C, QKV);
    report(pr, 2);
    kern_rmsnorm_backward_input_add(din, f.dx2, f.dxn1, a.x, a.rstd1, w.norm1, d.N, d.C);
    report(pr, 0);
    layer_rmsnorm_backward_weight(gw.norm1, f.dxn1, a.x, a.rstd1, d.N, d.C);
    report(pr, 1);
}

/* The head's lm_head weight and its gradient (tied: the embedding's). */
static const float *head_w(const model_part *p, int i, dims d)
{
    return p->tied_w ? p->tied_w : p->params + p->unit_off[i] + d.C;
}

static double head_forward(model_part *p, int i, model_slot *s, const float *in, dims d)
{
    head_act a = head_acts(s->act, d);
    const float *norm = p->params + p->unit_off[i];
    a.xn = p->ws; /* derived: not kept (views.h) */
    memcpy(a.x, in, d.N * d.C * sizeof(float));
    layer_rmsnorm_forward(a.xn, a.rstd, a.x, norm, d.N, d.C, p->cfg.norm_eps);
    layer_matmul_forward(a.probs, a.xn, head_w(p, i, d), d.N, d.C, d.V);
    if (!s->tokens) return 0; /* sampling: leave the logits */
    return layer_softmax_xent_forward(a.probs, s->tokens, d.N, d.V);
}

static void head_backward_input(model_part *p, int i, model_slot *s, float *din, dims d, float scale)
{
    head_act a = head_acts(s->act, d);
    head_grad g = head_grads(s->grad, d);
    float *dlogits = a.probs, *dxn = g.dxn; /* dlogits in place: the probabilities' last reader */
    const float *norm = p->params + p->unit_off[i];
    layer_softmax_xent_backward(dlogits, a.probs, s->tokens, d.N, d.V, scale);
    layer_matmul_backward_input(dxn, dlogits, head_w(p, i, d), d.N, d.C, d.V, 0);
    layer_rmsnorm_backward_input(din, dxn, a.x, a.rstd, norm, d.N, d.C, 0);
}

static void head_backward_weight(model_part *p, int i, model_slot *s, dims d)
{
    head_act a = head_acts(s->act, d);
    head_grad g = head_grads(s->grad, d);
    const float *dlogits = a.probs, *dxn = g.dxn;
    float *gnorm = p->grads + p->unit_off[i];
    float *gw = p->tied_grad ? p->tied_grad : gnorm + d.C;
    a.xn = p->ws; /* derived again, with the forward's bits */
    kern_rmsnorm_apply(a.xn, a.x, a.rstd, p->params + p->unit_off[i], d.N, d.C);
    layer_matmul_backward_weight(gw, dlogits, a.xn, d.N, d.C, d.V);
    layer_rmsnorm_backward_weight(gnorm, dxn, a.x, a.rstd, d.N, d.C);
}

double model_forward(model_part *p, int lo, int hi, model_slot *slots, const float *in, float *out,
                     size_t batch, size_t seq)
{
    dims d = dims_of(&p->cfg, batch, seq);
    double loss = 0;
    const float *x = in;
    double t = unit_clock(p);
    for (int i = lo; i < hi; i++) {
        model_slot *s = &slots[i - lo];
        float *y = (i == hi - 1) ? out : p->buf[(i - lo) & 1];
        switch (model_unit_kind(&p->cfg, p->units[i])) {
        case UNIT_EMBED:
            layer_embedding_forward(y, s->tokens, p->params + p->unit_off[i], d.N, d.C);
            break;
        case UNIT_HEAD:
            loss = head_forward(p, i, s, x, d);
            break;
        default:
            block_forward(p, i, s, x, y, d);
        }
        unit_tick(p, i, 0, &t);
        x = y;
    }
    return loss;
}

void model_backward_input(model_part *p, int lo, int hi, model_slot *slots, const float *dout, float *din,
                          size_t batch, size_t seq, float loss_scale)
{
    dims d = dims_of(&p->cfg, batch, seq);
    const float *g = dout;
    double t = unit_clock(p);
    for (int i = hi - 1; i >= lo; i--) {
        model_slot *s = &slots[i - lo];
        float *dx = (i == lo) ? din : p->buf[(hi - 1 - i) & 1];
        switch (model_unit_kind(&p->cfg, p->units[i])) {
        case UNIT_EMBED:
            memcpy(s->grad, g, d.N * d.C * sizeof(float)); /* kept for the scatter in W */
            break;
        case UNIT_HEAD:
            head_backward_input(p, i, s, dx, d, loss_scale);
            break;
        default:
            block_backward_input(p, i, s, g, dx, d);
        }
        unit_tick(p, i, 1, &t);
        g = dx;
    }
}

void model_backward_weight(model_part *p, int lo, int hi, model_slot *slots, size_t batch, size_t seq)
{
    dims d = dims_of(&p->cfg, batch, seq);
    double t = unit_clock(p);
    for (int i = hi - 1; i >= lo; i--) {
        model_slot *s = &slots[i - lo];
        switch (model_unit_kind(&p->cfg, p->units[i])) {
        case UNIT_EMBED:
            layer_embedding_backward_weight(p->grads + p->unit_off[i], s->grad, s->tokens, d.N, d.C);
            break;
        case UNIT_HEAD:
            head_backward_weight(p, i, s, d);
            break;
        default:
            block_backward_weight(p, i, s, d);
        }
        unit_tick(p, i, 2, &t);
    }
}

void model_backward_fused(model_part *p, int lo, int hi, model_slot *slots, float *work, const float *dout,
                          float *din, size_t batch, size_t seq, float loss_scale,
                          void (*done)(void *ctx, int unit, int phase), void *ctx)
{
    const float *g = dout;
    dims d = dims_of(&p->cfg, batch, seq);
    for (int i = hi - 1; i >= lo; i--) {
        model_slot *s = &slots[i - lo];
        /* the ping-pong buffers model_backward_input would use over [lo, hi) */
        float *dx = (i == lo) ? din : p->buf[(hi - 1 - i) & 1];
        if (model_unit_kind(&p->cfg, p->units[i]) == UNIT_BLOCK) {
            progress pr = { done, ctx, i, p, unit_clock(p), 0, 0 };
            block_backward_fused(p, i, s, work, g, dx, d, &pr);
            g = dx;
            continue;
        }
        model_slots_bind(p, i, i + 1, s, work, batch);
        model_backward_input(p, i, i + 1, s, g, dx, batch, seq, loss_scale);
        if (done) done(ctx, i, 0);
        model_backward_weight(p, i, i + 1, s, batch, seq);
        if (done) done(ctx, i, 1);
        model_slots_bind(p, i, i + 1, s, NULL, batch);
        g = dx;
    }
}

const float *model_logits(const model_part *p, const model_slot *head_slot, size_t batch, size_t seq)
{
    dims d = dims_of(&p->cfg, batch, seq);
    return head_acts(head_slot->act, d).probs;
}
