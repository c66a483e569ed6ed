/* test_model.c — the whole decoder: a double-precision reference model built
 * from the naive kernels is checked against finite differences, the float model
 * against the reference (weights, input gradients, loss), and the properties the
 * pipeline relies on: loss at init ≈ ln(vocab), causality, bitwise-equal results
 * when units are split into parts or B and W run apart or activations are
 * recomputed (selective, full), deterministic init. */
#include <math.h>

#include "model/kernels.h" /* the recompute test recomputes what NONE derives */
#include "model/layers_naive.h"
#include "model/model.h"
#include "model/util.h"
#include "model/views.h" /* the recompute test looks at a block's saved tensors */
#include "tests/tests.h"

static model_config tiny(int tie)
{
    model_config c = { .dim = 8, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .ffn_dim = 12,
                       .vocab_size = 11, .seq_len = 5, .norm_eps = 1e-5f, .rope_theta = 10000,
                       .tie_embeddings = tie };
    return c;
}
enum { TB = 2 }; /* sequences per micro-batch in these tests */

/* ---- double reference of the whole model ----
 * Parameters in the same flat layout as a model_part holding every unit. */
typedef struct {
    const model_part *p; /* for the tensor table and config */
    double *w, *g;       /* parameters and their gradient */
    const int *tok, *tgt;
    double *dx0;         /* gradient w.r.t. block 0's input (embedding output) */
} ref_model;

static double *tw(ref_model *r, const char *name, int grad)
{
    int i = model_part_find(r->p, name);
    if (i < 0 && !strcmp(name, "lm_head.weight")) i = model_part_find(r->p, "model.embed_tokens.weight");
    CU_ASSERT_FATAL(i >= 0);
    return (grad ? r->g : r->w) + r->p->tensors[i].offset;
}
static double *dz(size_t n) { return calloc(n, sizeof(double)); }

/* Returns mean loss; when r->g is set, fills the gradient of the mean loss. */
static double ref_loss(ref_model *r)
{
    const model_config *c = &r->p->cfg;
    size_t T = (size_t)c->seq_len, N = TB * T, C = (size_t)c->dim, F = (size_t)c->ffn_dim, V = (size_t)c->vocab_size;
    size_t H = (size_t)c->n_heads, KVH = (size_t)c->n_kv_heads, hd = C / H, KV = KVH * hd;
    int L = c->n_layers;
    char nm[96];
#define W(fmt, ...) (snprintf(nm, sizeof nm, fmt, __VA_ARGS__), tw(r, nm, 0))
#define G(fmt, ...) (snprintf(nm, sizeof nm, fmt, __VA_ARGS__), tw(r, nm, 1))
    double *xs[8], *xn1[8], *q[8], *k[8], *v[8], *att[8], *x2[8], *xn2[8], *ga[8], *up[8], *h[8];
    double *x = dz(N * C), *wte = W("%s", "model.embed_tokens.weight");
    for (size_t n = 0; n < N; n++) memcpy(x + n * C, wte + (size_t)r->tok[n] * C, C * sizeof(double));
    for (int l = 0; l < L; l++) {
        xs[l] = x;
        xn1[l] = dz(N * C); q[l] = dz(N * C); k[l] = dz(N * KV); v[l] = dz(N * KV); att[l] = dz(N * C);
        x2[l] = dz(N * C); xn2[l] = dz(N * C); ga[l] = dz(N * F); up[l] = dz(N * F); h[l] = dz(N * F);
        layer_naive_rmsnorm_forward(xn1[l], x, W("model.layers.%d.input_layernorm.weight", l), N, C, c->norm_eps);
        layer_naive_matmul_forward(q[l], xn1[l], W("model.layers.%d.self_attn.q_proj.weight", l), N, C, C);
        layer_naive_matmul_forward(k[l], xn1[l], W("model.layers.%d.self_attn.k_proj.weight", l), N, C, KV);
        layer_naive_matmul_forward(v[l], xn1[l], W("model.layers.%d.self_attn.v_proj.weight", l), N, C, KV);
        layer_naive_rope(q[l], TB, T, H, hd, c->rope_theta, 0);
        layer_naive_rope(k[l], TB, T, KVH, hd, c->rope_theta, 0);
        layer_naive_attention_forward(att[l], q[l], k[l], v[l], TB, T, H, KVH, hd);
        layer_naive_matmul_forward(x2[l], att[l], W("model.layers.%d.self_attn.o_proj.weight", l), N, C, C);
        for (size_t i = 0; i < N * C; i++) x2[l][i] += x[i];
        layer_naive_rmsnorm_forward(xn2[l], x2[l], W("model.layers.%d.post_attention_layernorm.weight", l), N, C, c->norm_eps);
        layer_naive_matmul_forward(ga[l], xn2[l], W("model.layers.%d.mlp.gate_proj.weight", l), N, C, F);
        layer_naive_matmul_forward(up[l], xn2[l], W("model.layers.%d.mlp.up_proj.weight", l), N, C, F);
        layer_naive_swiglu_forward(h[l], ga[l], up[l], N * F);
        x = dz(N * C);
        layer_naive_matmul_forward(x, h[l], W("model.layers.%d.mlp.down_proj.weight", l), N, F, C);
        for (size_t i = 0; i < N * C; i++) x[i] += x2[l][i];
    }
    double *xn = dz(N * C), *logits = dz(N * V);
    layer_naive_rmsnorm_forward(xn, x, W("%s", "model.norm.weight"), N, C, c->norm_eps);
    layer_naive_matmul_forward(logits, xn, W("%s", "lm_head.weight"), N, C, V);
    double *dlog = dz(N * V);
    double loss = layer_naive_xent(dlog, logits, r->tgt, N, V, 1.0 / N) / N;
    if (r->g) {
        double *dxn = dz(N * C), *dx = dz(N * C);
        layer_naive_matmul_backward(dxn, G("%s", "lm_head.weight"), dlog, xn, W("%s", "lm_head.weight"), N, C, V);
        layer_naive_rmsnorm_backward(dx, G("%s", "model.norm.weight"), dxn, x, W("%s", "model.norm.weight"), N, C, c->norm_eps);
        free(dxn);
        for (int l = L - 1; l >= 0; l--) {
            double *dh = dz(N * F), *dg = dz(N * F), *du = dz(N * F), *dx2 = dz(N * C), *dn = dz(N * C);
            double *datt = dz(N * C), *dq = dz(N * C), *dk = dz(N * KV), *dv = dz(N * KV), *dxi = dz(N * C);
            layer_naive_matmul_backward(dh, G("model.layers.%d.mlp.down_proj.weight", l), dx, h[l], W("model.layers.%d.mlp.down_proj.weight", l), N, F, C);
            layer_naive_swiglu_backward(dg, du, dh, ga[l], up[l], N * F);
            layer_naive_matmul_backward(dn, G("model.layers.%d.mlp.gate_proj.weight", l), dg, xn2[l], W("model.layers.%d.mlp.gate_proj.weight", l), N, C, F);
            layer_naive_matmul_backward(dn, G("model.layers.%d.mlp.up_proj.weight", l), du, xn2[l], W("model.layers.%d.mlp.up_proj.weight", l), N, C, F);
            memcpy(dx2, dx, N * C * sizeof(double));
            layer_naive_rmsnorm_backward(dx2, G("model.layers.%d.post_attention_layernorm.weight", l), dn, x2[l], W("model.layers.%d.post_attention_layernorm.weight", l), N, C, c->norm_eps);
            layer_naive_matmul_backward(datt, G("model.layers.%d.self_attn.o_proj.weight", l), dx2, att[l], W("model.layers.%d.self_attn.o_proj.weight", l), N, C, C);
            layer_naive_attention_backward(dq, dk, dv, datt, q[l], k[l], v[l], TB, T, H, KVH, hd);
            layer_naive_rope(dq, TB, T, H, hd, c->rope_theta, 1);
            layer_naive_rope(dk, TB, T, KVH, hd, c->rope_theta, 1);
            memset(dn, 0, N * C * sizeof(double));
            layer_naive_matmul_backward(dn, G("model.layers.%d.self_attn.q_proj.weight", l), dq, xn1[l], W("model.layers.%d.self_attn.q_proj.weight", l), N, C, C);
            layer_naive_matmul_backward(dn, G("model.layers.%d.self_attn.k_proj.weight", l), dk, xn1[l], W("model.layers.%d.self_attn.k_proj.weight", l), N, C, KV);
            layer_naive_matmul_backward(dn, G("model.layers.%d.self_attn.v_proj.weight", l), dv, xn1[l], W("model.layers.%d.self_attn.v_proj.weight", l), N, C, KV);
            memcpy(dxi, dx2, N * C * sizeof(double));
            layer_naive_rmsnorm_backward(dxi, G("model.layers.%d.input_layernorm.weight", l), dn, xs[l], W("model.layers.%d.input_layernorm.weight", l), N, C, c->norm_eps);
            free(dx); dx = dxi;
            free(dh); free(dg); free(du); free(dx2); free(dn); free(datt); free(dq); free(dk); free(dv);
        }
        double *gwte = G("%s", "model.embed_tokens.weight");
        for (size_t n = 0; n < N; n++)
            for (size_t i = 0; i < C; i++) gwte[(size_t)r->tok[n] * C + i] += dx[n * C + i];
        if (r->dx0) memcpy(r->dx0, dx, N * C * sizeof(double));
        free(dx);
    }
#undef W
#undef G
    for (int l = 0; l < L; l++) {
        free(xs[l]); free(xn1[l]); free(q[l]); free(k[l]); free(v[l]); free(att[l]); free(x2[l]);
        free(xn2[l]); free(ga[l]); free(up[l]); free(h[l]);
    }
    free(x); free(xn); free(logits); free(dlog);
    return loss;
}

static int *all_units(const model_config *c)
{
    int *u = malloc(sizeof(int) * (size_t)model_n_units(c));
    for (int i = 0; i < model_n_units(c); i++) u[i] = i;
    return u;
}

static void random_tokens(int *tok, int *tgt, size_t n, int V, uint64_t seed)
{
    rng_t r = { seed };
    for (size_t i = 0; i < n; i++) { tok[i] = (int)rng_below(&r, (uint64_t)V); tgt[i] = (int)rng_below(&r, (uint64_t)V); }
}

/* Float model: one forward + backward over every unit; returns mean loss. */
static double float_step(model_part *p, const int *tok, const int *tgt, float *dx0)
{
    size_t N = TB * (size_t)p->cfg.seq_len;
    model_slot *s = model_slots_new(p, 0, p->n_units, TB);
    memcpy(s[0].tokens, tok, N * sizeof(int));
    memcpy(s[p->n_units - 1].tokens, tgt, N * sizeof(int));
    double loss = model_forward(p, 0, p->n_units, s, NULL, NULL, TB, (size_t)p->cfg.seq_len);
    model_backward_input(p, 0, p->n_units, s, NULL, NULL, TB, (size_t)p->cfg.seq_len, 1.0f / (float)N);
    if (dx0) memcpy(dx0, s[0].grad, N * p->cfg.dim * sizeof(float)); /* embedding's incoming gradient */
    model_backward_weight(p, 0, p->n_units, s, TB, (size_t)p->cfg.seq_len);
    model_part_reduce_tied(p);
    model_slots_free(s);
    return loss / (double)N;
}

static void check_whole_model(int tie)
{
    model_config c = tiny(tie);
    int *u = all_units(&c);
    model_part *p = model_part_new(&c, u, model_n_units(&c), TB, 7);
    /* larger weights than the init so every nonlinearity is exercised */
    rng_t rr = { 99 };
    for (size_t i = 0; i < p->n_params; i++) p->params[i] = (float)((rng_uniform(&rr) * 2 - 1) * 0.5);
    size_t N = TB * (size_t)c.seq_len, P = p->n_params;
    int tok[TB * 5], tgt[TB * 5];
    random_tokens(tok, tgt, N, c.vocab_size, 3);

    ref_model r = { p, malloc(P * sizeof(double)), calloc(P, sizeof(double)), tok, tgt, calloc(N * c.dim, sizeof(double)) };
    for (size_t i = 0; i < P; i++) r.w[i] = p->params[i];
    double lref = ref_loss(&r);

    /* reference vs finite differences on every parameter */
    double *num = malloc(P * sizeof(double)), *g = r.g;
    r.g = NULL;
    for (size_t i = 0; i < P; i++) {
        double keep = r.w[i], h = 1e-5;
        r.w[i] = keep + h; double lp = ref_loss(&r);
        r.w[i] = keep - h; double lm = ref_loss(&r);
        r.w[i] = keep;
        num[i] = (lp - lm) / (2 * h);
    }
    r.g = g;
    CU_ASSERT(tests_close("reference model grads vs finite differences", r.g, num, P, 1e-8, 1e-5));

    /* float model vs reference */
    float *fdx = malloc(N * c.dim * sizeof(float));
    double lf = float_step(p, tok, tgt, fdx);
    CU_ASSERT(fabs(lf - lref) < 1e-5);
    double *fg = malloc(P * sizeof(double)), *dx = malloc(N * c.dim * sizeof(double));
    for (size_t i = 0; i < P; i++) fg[i] = p->grads[i];
    for (size_t i = 0; i < N * (size_t)c.dim; i++) dx[i] = fdx[i];
    CU_ASSERT(tests_close("float model weight grads vs reference", fg, r.g, P, 2e-6, 2e-3));
    CU_ASSERT(tests_close("float model input grads vs reference", dx, r.dx0, N * c.dim, 2e-6, 2e-3));
    free(num); free(fg); free(dx); free(fdx); free(r.w); free(r.g); free(r.dx0); free(u);
    model_part_free(p);
}

static void test_whole_model_grad(void) { check_whole_model(0); }
static void test_whole_model_grad_tied(void) { check_whole_model(1); }

static model_config small(void)
{
    model_config c = { .dim = 32, .n_layers = 3, .n_heads = 4, .n_kv_heads = 2, .ffn_dim = 48,
                       .vocab_size = 256, .seq_len = 16, .norm_eps = 1e-5f, .rope_theta = 10000 };
    return c;
}

static void test_init_loss(void)
{
    model_config c = small();
    int *u = all_units(&c);
    model_part *p = model_part_new(&c, u, model_n_units(&c), TB, 1337);
    int tok[TB * 16], tgt[TB * 16];
    random_tokens(tok, tgt, TB * 16, 256, 5);
    double l = float_step(p, tok, tgt, NULL);
    CU_ASSERT(fabs(l - log(256.0)) < 0.05);
    model_part_free(p); free(u);
}

/* Changing token t leaves the logits of every earlier position bit-identical. */
static void test_causal(void)
{
    model_config c = small();
    int *u = all_units(&c), n = model_n_units(&c);
    model_part *p = model_part_new(&c, u, n, 1, 1);
    model_slot *s = model_slots_new(p, 0, n, 1);
    size_t T = 16, V = 256;
    float *a = malloc(T * V * sizeof(float));
    for (size_t t = 0; t < T; t++) s[0].tokens[t] = (int)(t * 7 % 256);
    s[n - 1].tokens = NULL; /* logits, no loss */
    model_forward(p, 0, n, s, NULL, NULL, 1, T);
    memcpy(a, model_logits(p, &s[n - 1], 1, T), T * V * sizeof(float));
    s[0].tokens[10] = 99;
    model_forward(p, 0, n, s, NULL, NULL, 1, T);
    const float *b = model_logits(p, &s[n - 1], 1, T);
    CU_ASSERT(memcmp(a, b, 10 * V * sizeof(float)) == 0);
    CU_ASSERT(memcmp(a + 10 * V, b + 10 * V, V * sizeof(float)) != 0);
    free(a); model_slots_free(s); model_part_free(p); free(u);
}

/* Splitting the units into two parts, or running W long after B, changes no bit. */
static void test_split_bitwise(void)
{
    model_config c = small();
    c.tie_embeddings = 0;
    int *u = all_units(&c), n = model_n_units(&c);
    size_t N = TB * 16, C = 32;
    int tok[TB * 16], tgt[TB * 16];
    random_tokens(tok, tgt, N, 256, 8);
    model_part *whole = model_part_new(&c, u, n, TB, 21);
    model_part *a = model_part_new(&c, u, 2, TB, 21);         /* embed, block 0 */
    model_part *b = model_part_new(&c, u + 2, n - 2, TB, 21); /* blocks 1-2, head */
    CU_ASSERT(memcmp(whole->params, a->params, a->n_params * 4) == 0);
    CU_ASSERT(memcmp(whole->params + a->n_params, b->params, b->n_params * 4) == 0);
    double lw = 0, ls = 0;
    float *act = malloc(N * C * 4), *grad = malloc(N * C * 4);
    for (int mb = 0; mb < 2; mb++) { /* two micro-batches accumulate */
        model_slot *sw = model_slots_new(whole, 0, n, TB);
        model_slot *sa = model_slots_new(a, 0, 2, TB), *sb = model_slots_new(b, 0, n - 2, TB);
        memcpy(sw[0].tokens, tok, sizeof tok); memcpy(sw[n - 1].tokens, tgt, sizeof tgt);
        memcpy(sa[0].tokens, tok, sizeof tok); memcpy(sb[n - 3].tokens, tgt, sizeof tgt);
        lw += model_forward(whole, 0, n, sw, NULL, NULL, TB, 16);
        model_backward_input(whole, 0, n, sw, NULL, NULL, TB, 16, 0.01f);
        model_backward_weight(whole, 0, n, sw, TB, 16);              /* fused BW */
        model_forward(a, 0, 2, sa, NULL, act, TB, 16);
        ls += model_forward(b, 0, n - 2, sb, act, NULL, TB, 16);
        model_backward_input(b, 0, n - 2, sb, NULL, grad, TB, 16, 0.01f);
        model_backward_input(a, 0, 2, sa, grad, NULL, TB, 16, 0.01f);
        model_backward_weight(a, 0, 2, sa, TB, 16);                  /* W after both B */
        model_backward_weight(b, 0, n - 2, sb, TB, 16);
        model_slots_free(sw); model_slots_free(sa); model_slots_free(sb);
        tok[mb] ^= 1;
    }
    CU_ASSERT(lw == ls);
    CU_ASSERT(memcmp(whole->grads, a->grads, a->n_params * 4) == 0);
    CU_ASSERT(memcmp(whole->grads + a->n_params, b->grads, b->n_params * 4) == 0);
    free(act); free(grad); free(u);
    model_part_free(whole); model_part_free(a); model_part_free(b);
}

/* Activation recomputation: a block whose forward kept only part of its
 * tensors (selective, full) recomputes the rest in backward-input bit for bit;
 * the gradients B hands to W, the input gradient, the weight gradients and the
 * loss equal the stored path's (NONE) to the last bit, over two micro-batches,
 * with B and W split and with the fused unit-by-unit backward. GQA (4 heads,
 * 2 kv heads) and an odd ffn width exercise the kernels' tails. */
static void test_recompute_bitwise(void)
{
    model_config c = small();
    c.ffn_dim = 44;
    int *u = all_units(&c), n = model_n_units(&c);
    const size_t T = 16, N = TB * T;
    dims d = dims_of(&c, TB, T);
    block_grad bg;
    const size_t gfl = block_grad_view(&bg, NULL, d);
    int tok[TB * 16], tgt[TB * 16];
    model_part *p[4];
    float *din[4];
    size_t stash[3];
    for (int m = 0; m < 4; m++) { /* none, selective, full; [3] full through model_backward_fused */
        p[m] = model_part_new(&c, u + 1, n - 2, TB, 21); /* blocks 0-2: input and output gradient given */
        model_part_set_recompute(p[m], m == 3 ? MODEL_RECOMPUTE_FULL : m);
        rng_t rw = { 77 }; /* norm gains away from 1, larger weights: every path matters */
        for (size_t i = 0; i < p[m]->n_params; i++) p[m]->params[i] = (float)((rng_uniform(&rw) * 2 - 1) * 0.5);
        din[m] = malloc(N * c.dim * sizeof(float));
        if (m < 3) stash[m] = model_part_mem(p[m], 0, n - 2, TB).stash;
    }
    float *in = malloc(N * c.dim * sizeof(float)), *dout = malloc(N * c.dim * sizeof(float));
    float *out = malloc(N * c.dim * sizeof(float)), *out0 = malloc(N * c.dim * sizeof(float));
    float *work = malloc(model_part_mem(p[3], 0, n - 2, TB).work_unit);
    float *drv = malloc(N * (2 * (size_t)c.dim + (size_t)c.ffn_dim) * sizeof(float)); /* xn1, xn2, h */
    rng_t r = { 4 };
    int same_act = 1, same_work = 1, same_out = 1, same_din = 1;
    for (int mb = 0; mb < 2; mb++) {
        for (size_t i = 0; i < N * (size_t)c.dim; i++) in[i] = (float)(rng_uniform(&r) * 2 - 1);
        for (size_t i = 0; i < N * (size_t)c.dim; i++) dout[i] = (float)(rng_uniform(&r) * 2 - 1) * 0.01f;
        model_slot *s[4];
        for (int m = 0; m < 4; m++) {
            s[m] = m < 3 ? model_slots_new(p[m], 0, n - 2, TB) : model_stash_new(p[m], 0, n - 2, TB);
            model_forward(p[m], 0, n - 2, s[m], in, m ? out : out0, TB, T);
            if (m) same_out &= memcmp(out, out0, N * c.dim * sizeof(float)) == 0;
            if (m < 3) model_backward_input(p[m], 0, n - 2, s[m], dout, din[m], TB, T, 1.0f);
            else model_backward_fused(p[m], 0, n - 2, s[m], work, dout, din[m], TB, T, 1.0f, NULL, NULL);
            if (m) same_din &= memcmp(din[0], din[m], N * c.dim * sizeof(float)) == 0;
        }
        for (int m = 1; m < 3; m++)
            for (int i = 0; i < n - 2; i++) {
                block_act a0, am;
                block_act_view(&a0, s[0][i].act, NULL, d, MODEL_RECOMPUTE_NONE, NULL);
                /* the stash and the work (NULL: NONE's derived tensors, at ws) */
                block_split_view(&am, s[m][i].act, s[m][i].grad + gfl, NULL, d, m);
                float **t0 = &a0.x, **tm = &am.x; /* the fields in BA_ order */
                size_t len[BA_N] = { N * c.dim, N, N * c.dim, N * qkv_width(d), d.B * d.H * T, N * c.dim,
                                     N * c.dim, N, N * c.dim, N * 2 * d.F, N * d.F };
                /* NONE's derived tensors, recomputed from its stash as its W pass does */
                block_w bw;
                block_w_view(&bw, p[0]->params + p[0]->unit_off[i], d);
                a0.xn1 = drv; a0.xn2 = drv + N * c.dim; a0.h = drv + 2 * N * c.dim;
                kern_rmsnorm_apply(a0.xn1, a0.x, a0.rstd1, bw.norm1, N, (size_t)c.dim);
                kern_rmsnorm_apply(a0.xn2, a0.x2, a0.rstd2, bw.norm2, N, (size_t)c.dim);
                kern_swiglu_forward(a0.h, a0.gu, N, d.F);
                for (int f = 0; f < BA_N; f++) {
                    if (!tm[f]) continue;
                    int eq = memcmp(t0[f], tm[f], len[f] * sizeof(float)) == 0;
                    if (!eq) printf("\n  mode %d block %d: tensor %d differs\n", m, i, f);
                    same_act &= eq;
                }
                same_work &= memcmp(s[0][i].grad, s[m][i].grad, gfl * sizeof(float)) == 0;
            }
        for (int m = 0; m < 3; m++) model_backward_weight(p[m], 0, n - 2, s[m], TB, T);
        for (int m = 0; m < 4; m++) model_slots_free(s[m]);
    }
    CU_ASSERT(same_out);
    CU_ASSERT(same_act);
    CU_ASSERT(same_work);
    CU_ASSERT(same_din);
    for (int m = 1; m < 4; m++) CU_ASSERT(memcmp(p[0]->grads, p[m]->grads, p[0]->n_params * sizeof(float)) == 0);
    /* what each mode keeps: full < selective < none */
    CU_ASSERT(stash[2] < stash[1] && stash[1] < stash[0]);
    CU_ASSERT_EQUAL(stash[2], (size_t)(n - 2) * N * c.dim * sizeof(float));

    /* the whole model (embedding and head are never recomputed), one micro-batch */
    random_tokens(tok, tgt, N, 256, 8);
    model_part *w[2];
    double loss[2];
    for (int m = 0; m < 2; m++) {
        w[m] = model_part_new(&c, u, n, TB, 21);
        model_part_set_recompute(w[m], m ? MODEL_RECOMPUTE_SELECTIVE : MODEL_RECOMPUTE_NONE);
        model_slot *sl = model_stash_new(w[m], 0, n, TB);
        float *wk = malloc(model_part_mem(w[m], 0, n, TB).work_unit);
        memcpy(sl[0].tokens, tok, sizeof tok);
        memcpy(sl[n - 1].tokens, tgt, sizeof tgt);
        loss[m] = model_forward(w[m], 0, n, sl, NULL, NULL, TB, T);
        model_backward_fused(w[m], 0, n, sl, wk, NULL, NULL, TB, T, 0.01f, NULL, NULL);
        model_slots_free(sl);
        free(wk);
    }
    CU_ASSERT(loss[0] == loss[1]);
    CU_ASSERT(memcmp(w[0]->grads, w[1]->grads, w[0]->n_params * sizeof(float)) == 0);
    for (int m = 0; m < 4; m++) { model_part_free(p[m]); free(din[m]); }
    model_part_free(w[0]); model_part_free(w[1]);
    free(in); free(dout); free(out); free(out0); free(work); free(drv); free(u);
}

/* model_backward_fused in every recompute mode stays inside exactly
 * model_part_mem(...).work_unit bytes (a canary after them is untouched) and
 * gives the split path's bits: the input gradient of each micro-batch and the
 * weight gradients over two equal NONE's model_backward_input then
 * model_backward_weight. */
static void fused_case(model_config c, size_t T)
{
    int *u = all_units(&c), n = model_n_units(&c), nb = n - 2; /* the blocks */
    const size_t N = TB * T, NC = N * (size_t)c.dim, CANARY = 4096;
    model_part *p[4]; /* [0] the split reference, [1 + m] fused in mode m */
    float *din[4];
    for (int k = 0; k < 4; k++) {
        p[k] = model_part_new(&c, u + 1, nb, TB, 21);
        model_part_set_recompute(p[k], k ? k - 1 : MODEL_RECOMPUTE_NONE);
        rng_t rw = { 78 };
        for (size_t i = 0; i < p[k]->n_params; i++) p[k]->params[i] = (float)((rng_uniform(&rw) * 2 - 1) * 0.5);
        din[k] = malloc(NC * sizeof(float));
    }
    float *in = malloc(NC * sizeof(float)), *dout = malloc(NC * sizeof(float)), *out = malloc(NC * sizeof(float));
    rng_t r = { 5 };
    int same_din = 1, canary_ok = 1;
    for (int mb = 0; mb < 2; mb++) {
        for (size_t i = 0; i < NC; i++) in[i] = (float)(rng_uniform(&r) * 2 - 1);
        for (size_t i = 0; i < NC; i++) dout[i] = (float)(rng_uniform(&r) * 2 - 1) * 0.01f;
        model_slot *s0 = model_slots_new(p[0], 0, nb, TB);
        model_forward(p[0], 0, nb, s0, in, out, TB, T);
        model_backward_input(p[0], 0, nb, s0, dout, din[0], TB, T, 1.0f);
        model_backward_weight(p[0], 0, nb, s0, TB, T);
        model_slots_free(s0);
        for (int k = 1; k < 4; k++) {
            size_t wu = model_part_mem(p[k], 0, nb, TB).work_unit / sizeof(float);
            float *work = malloc((wu + CANARY) * sizeof(float));
            memset(work + wu, 0x5a, CANARY * sizeof(float));
            model_slot *s = model_stash_new(p[k], 0, nb, TB);
            model_forward(p[k], 0, nb, s, in, out, TB, T);
            model_backward_fused(p[k], 0, nb, s, work, dout, din[k], TB, T, 1.0f, NULL, NULL);
            int ok = 1;
            for (size_t i = 0; i < CANARY * sizeof(float); i++) ok &= ((unsigned char *)(work + wu))[i] == 0x5a;
            if (!ok) printf("\n  mode %d wrote past its %zu floats of work\n", k - 1, wu);
            canary_ok &= ok;
            same_din &= memcmp(din[0], din[k], NC * sizeof(float)) == 0;
            model_slots_free(s);
            free(work);
        }
    }
    CU_ASSERT(canary_ok);
    CU_ASSERT(same_din);
    for (int k = 1; k < 4; k++) CU_ASSERT(memcmp(p[0]->grads, p[k]->grads, p[0]->n_params * sizeof(float)) == 0);
    for (int k = 0; k < 4; k++) { model_part_free(p[k]); free(din[k]); }
    free(in); free(dout); free(out); free(u);
}

/* ... for GQA with an odd SwiGLU width (attention probabilities as large as
 * two activations) and for a wide model with a short context and a narrow
 * SwiGLU (probabilities and h smaller than one activation). */
static void test_fused_backward(void)
{
    model_config c = small();
    c.ffn_dim = 44;
    fused_case(c, 16);
    model_config w = { .dim = 64, .n_layers = 2, .n_heads = 2, .n_kv_heads = 1, .ffn_dim = 24,
                       .vocab_size = 256, .seq_len = 8, .norm_eps = 1e-5f, .rope_theta = 10000 };
    fused_case(w, 8);
}

/* The memory of the shakespeare topologies' blocks (micro-batch 3 x 64 tokens,
 * dim 128, ffn 384, 4 heads: N = 192 rows, NC = N·dim floats; attention's
 * log-sum-exp B·H·T = 4N, q|k|v 3·NC, gate|up 6·NC, h 3·NC), in floats: what
 * each mode stashes, what the fused backward needs at once and what a
 * recomputing forward holds while it runs; and stage 0 of 2 stages under 1F1B
 * (embedding and blocks 0-1, 2 micro-batches in flight: 2 stashes + the larger
 * transient). Issue 13's targets (full cuts >= 70%, selective >= 40%) were set
 * against `none` storing the B·H·T·T probabilities (7,970,304 bytes, OLD_NONE):
 * they still hold against it; against today's none (which stores no
 * probabilities either) selective cuts less. */
static void test_recompute_memory(void)
{
    model_config c = { .dim = 128, .n_layers = 4, .n_heads = 4, .n_kv_heads = 4, .ffn_dim = 384,
                       .vocab_size = 256, .seq_len = 64, .norm_eps = 1e-5f, .rope_theta = 10000 };
    const size_t B = 3, N = B * 64, NC = N * 128, f = sizeof(float), OLD_NONE = 7970304;
    model_mem m[3];
    for (int k = 0; k < 3; k++) m[k] = model_unit_mem(&c, 1, B, k);
    /* x att x2, qkv, gu; rstd1, rstd2, lse: not xn1, xn2 (5 NC), h (3 NC), derived at ws when needed */
    CU_ASSERT_EQUAL(m[0].stash, (12 * NC + 6 * N) * f);
    CU_ASSERT_EQUAL(m[0].work_unit, 0);                  /* dx2 | dqkv over the spent gu, the rest at ws */
    CU_ASSERT_EQUAL(m[0].fwd_tmp, 0);
    CU_ASSERT_EQUAL(m[1].stash, 10 * NC * f);            /* x, qkv, gu */
    CU_ASSERT_EQUAL(m[1].work_unit, (6 * NC + 2 * N) * f); /* xn1 | dx2 | dqkv; rstd2, rstd1 */
    CU_ASSERT_EQUAL(m[1].fwd_tmp, (4 * NC + 2 * N) * f);  /* x2 | h */
    CU_ASSERT_EQUAL(m[2].stash, NC * f);                 /* x */
    /* none's stash but x and x2, recomputed (xn1, xn2, h and x2 at the workspace); gradients over it */
    CU_ASSERT_EQUAL(m[2].work_unit, (10 * NC + 6 * N) * f);
    CU_ASSERT_EQUAL(m[2].fwd_tmp, (10 * NC + 6 * N) * f);
    /* a split backward (B, then W later: zb-h1, stages past the first) holds the
     * stash and the work from B to W: every mode what none holds, its stash and
     * the gradients (xn1, xn2, h derived again at the workspace); selective and
     * full held them too, 5 NC more than none, so full peaked above none on
     * zero-bubble stages */
    for (int k = 1; k < 3; k++) CU_ASSERT_EQUAL(m[k].stash + m[k].work, m[0].stash + m[0].work);
    CU_ASSERT(m[2].stash < m[1].stash && m[1].stash < m[0].stash);
    int u[3] = { 0, 1, 2 };
    size_t peak[3];
    for (int k = 0; k < 3; k++) {
        model_part *p = model_part_new(&c, u, 3, B, 1);
        model_part_set_recompute(p, k);
        model_mem s = model_part_mem(p, 0, 3, B);
        peak[k] = 2 * s.stash + (s.work_unit > s.fwd_tmp ? s.work_unit : s.fwd_tmp);
        model_part_free(p);
    }
    printf("\n  stage 0 of 2, 1F1B: none %zu (-%.1f%% vs storing probabilities), selective %zu (-%.1f%%), full"
           " %zu (-%.1f%%) bytes\n", peak[0], 100.0 * (1 - (double)peak[0] / OLD_NONE), peak[1],
           100.0 * (1 - (double)peak[1] / OLD_NONE), peak[2], 100.0 * (1 - (double)peak[2] / OLD_NONE));
    CU_ASSERT_EQUAL(peak[0], 4836864); /* 7196160 while none kept xn1, xn2 and h */
    CU_ASSERT(10 * peak[1] <= 6 * OLD_NONE);
    CU_ASSERT(10 * peak[2] <= 3 * OLD_NONE);
    /* full's cut holds against today's none too: 1480704 (69.4%) while its work held x2 */
    CU_ASSERT_EQUAL(peak[2], 1382400);
    CU_ASSERT(10 * peak[2] <= 3 * peak[0]);
}

/* Issue 15: attention memory grows linearly in T. A block's stash, backward
 * work and forward scratch at context 2T are twice those at T in every mode
 * (they were quadratic while the probabilities were kept). At the 42m shape
 * (dim 512, 8 layers, 8 heads, ffn 1376, T 1024, batch 4, one stage holding
 * every unit, one micro-batch: its stash + the largest transient) the peak of
 * each mode, against the same mode storing the B·H·T·T probabilities (the
 * figures model_unit_mem gave before issue 15, commit fbfe6c7). none was
 * 1142210560 bytes while blocks kept xn1, xn2 and h and the head its xn and a
 * separate dlogits (selective 700530688, full 214646784); without them it is
 * <= 40 % of storing the probabilities. full was 166936576 while its work held
 * x2 (now at the workspace). */
static void test_attention_memory_linear(void)
{
    model_config c = { .dim = 512, .n_layers = 8, .n_heads = 8, .n_kv_heads = 8, .ffn_dim = 1376,
                       .vocab_size = 256, .seq_len = 1024, .norm_eps = 1e-5f, .rope_theta = 10000 };
    const size_t B = 4;
    const size_t old[3] = { 2214903808u, 817971200u, 348733440u }, now_want[3] = { 785694720u, 692142080u,
                                                                                  158547968u };
    for (int mode = 0; mode < 3; mode++) {
        model_config h = c;
        h.seq_len = 512;
        model_mem a = model_unit_mem(&h, 1, B, mode), b = model_unit_mem(&c, 1, B, mode);
        CU_ASSERT_EQUAL(b.stash, 2 * a.stash);
        CU_ASSERT_EQUAL(b.work_unit, 2 * a.work_unit);
        CU_ASSERT_EQUAL(b.work, 2 * a.work);
        CU_ASSERT_EQUAL(b.fwd_tmp, 2 * a.fwd_tmp);
    }
    int n = model_n_units(&c), *u = all_units(&c);
    printf("\n  42m, 1 stage, 1 micro-batch of 4 x 1024, peak bytes now vs storing probabilities:");
    for (int mode = 0; mode < 3; mode++) {
        model_mem s = { 0, 0, 0, 0 };
        for (int i = 0; i < n; i++) {
            model_mem x = model_unit_mem(&c, u[i], B, mode);
            s.stash += x.stash;
            if (x.work_unit > s.work_unit) s.work_unit = x.work_unit;
            if (x.fwd_tmp > s.fwd_tmp) s.fwd_tmp = x.fwd_tmp;
        }
        size_t now = s.stash + (s.work_unit > s.fwd_tmp ? s.work_unit : s.fwd_tmp);
        printf(" %s %zu vs %zu (%.1f%%);", model_recompute_name(mode), now, old[mode], 100.0 * now / old[mode]);
        CU_ASSERT_EQUAL(now, now_want[mode]);
        if (mode == MODEL_RECOMPUTE_NONE) CU_ASSERT(10 * now <= 4 * old[mode]);
    }
    printf("\n");
    free(u);
}

/* Init depends on (seed, tensor name) only, and on the seed. */
static void test_init_deterministic(void)
{
    model_config c = small();
    int *u = all_units(&c), n = model_n_units(&c);
    model_part *x = model_part_new(&c, u, n, 1, 5), *y = model_part_new(&c, u + 3, n - 3, 1, 5);
    model_part *z = model_part_new(&c, u, n, 1, 6);
    int i = model_part_find(x, "model.layers.2.mlp.down_proj.weight"), j = model_part_find(y, "model.layers.2.mlp.down_proj.weight");
    CU_ASSERT_FATAL(i >= 0 && j >= 0);
    CU_ASSERT(memcmp(x->params + x->tensors[i].offset, y->params + y->tensors[j].offset, x->tensors[i].numel * 4) == 0);
    CU_ASSERT(memcmp(x->params, z->params, x->n_params * 4) != 0);
    /* std 0.02 / sqrt(2 n_layers) for residual projections, 0.02 elsewhere */
    double ss = 0;
    const model_tensor *t = &x->tensors[i];
    for (size_t k = 0; k < t->numel; k++) ss += (double)x->params[t->offset + k] * x->params[t->offset + k];
    CU_ASSERT(fabs(sqrt(ss / t->numel) - 0.02 / sqrt(6.0)) < 0.1 * 0.02 / sqrt(6.0));
    int e = model_part_find(x, "model.layers.0.input_layernorm.weight");
    CU_ASSERT(x->params[x->tensors[e].offset] == 1.0f);
    model_part_free(x); model_part_free(y); model_part_free(z); free(u);
}

int main(void)
{
    CU_TestInfo tests[] = {
        { "whole model: reference vs FD, float vs reference", test_whole_model_grad },
        { "whole model with tied embeddings", test_whole_model_grad_tied },
        { "loss at init is ln(256)", test_init_loss },
        { "changing a later token leaves earlier logits unchanged", test_causal },
        { "two parts and split B/W are bitwise equal to one part", test_split_bitwise },
        { "init is per (seed, name) and scaled", test_init_deterministic },
        { "recomputed blocks (selective, full) are bitwise equal to stored ones", test_recompute_bitwise },
        { "fused backward: every mode inside its work, bitwise equal to split B/W", test_fused_backward },
        { "recompute memory per block, and stage 0's cut on 2 stages", test_recompute_memory },
        { "attention memory is linear in T; 42m peak vs storing probabilities", test_attention_memory_linear },
        CU_TEST_INFO_NULL,
    };
    return tests_run("model", tests);
}
