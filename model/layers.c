/* layers.c — fast float kernels of the decoder (see layers.h for contracts).
 * Matrix products go through cblas_sgemm; attention lives in attention.c (its
 * products are tiny, T x T x head_dim, and thousands of small sgemm calls cost
 * more in overhead than they compute). The other kernels are split into row
 * (or column) chunks that the pool (pool.h) spreads over the BLAS threads;
 * chunk boundaries depend only on the sizes, and every reduction runs in a
 * fixed order inside one chunk, so results are the same bits for any thread
 * count. Inner loops use the vector type of simd.h. */
#include "model/layers.h"
#include "model/attention.h"
#include "model/kernels.h"
#include "model/pool.h"
#include "model/simd.h"
#include "model/util.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* One product in the three shapes of a layer: mode 0 forward out (N, OC) =
 * in · wᵀ, 1 input gradient din (N, C) (+)= dout · w, 2 weight gradient
 * dw (OC, C) += doutᵀ · in. Rows [lo, hi) of the output (N rows for 0 and 1,
 * OC rows for 2), at OpenBLAS's thread count. */
static void matmul_rows(int mode, float *out, const float *x, const float *w, size_t N, size_t C, size_t OC,
                        int acc, size_t lo, size_t hi)
{
    const int m = (int)(hi - lo), c = (int)C, oc = (int)OC, n = (int)N;
    if (m <= 0) return;
    if (mode == 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, oc, c, 1.0f, x + lo * C, c, w, c, 0.0f,
                    out + lo * OC, oc);
    else if (mode == 1)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, c, oc, 1.0f, x + lo * OC, oc, w, c,
                    acc ? 1.0f : 0.0f, out + lo * C, c);
    else
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, c, n, 1.0f, x + lo, oc, w, c, 1.0f,
                    out + lo * C, c);
}

typedef struct {
    int mode, acc;
    float *out;
    const float *x, *w;
    size_t N, C, OC, rows, parts;
} mm_job;

static void mm_item(void *ctx, size_t i, int worker)
{
    (void)worker;
    const mm_job *j = ctx;
    /* part boundaries on whole 16-row tiles of the sgemm kernels */
    size_t tiles = (j->rows + 15) / 16, lo = tiles * i / j->parts * 16, hi = tiles * (i + 1) / j->parts * 16;
    if (hi > j->rows) hi = j->rows;
    matmul_rows(j->mode, j->out, j->x, j->w, j->N, j->C, j->OC, j->acc, lo, hi);
}

/* With several threads, the product is cut into one band of output rows per
 * thread, each run by single-threaded OpenBLAS on the compute pool's threads,
 * instead of on OpenBLAS's own: the stage then has one set of threads, not
 * two that spin for the cores in turn (OpenBLAS's workers busy-wait for
 * ~0.1 s after each product, through the pool's kernels that follow). Every
 * output element is the same sum in the same order whichever band holds it
 * (sgemm splits no dot product), so the bits do not depend on the threads.
 * Products too small to share stay whole. */
static void matmul(int mode, float *out, const float *x, const float *w, size_t N, size_t C, size_t OC, int acc)
{
    const int threads = openblas_get_num_threads();
    const size_t rows = mode == 2 ? OC : N;
    const double flops = 2.0 * (double)N * (double)C * (double)OC;
    size_t parts = (size_t)threads;
    if (parts > rows / 32) parts = rows / 32;
    if (threads <= 1 || parts <= 1 || flops < 4e6) {
        matmul_rows(mode, out, x, w, N, C, OC, acc, 0, rows);
        return;
    }
    mm_job j = { mode, acc, out, x, w, N, C, OC, rows, parts };
    openblas_set_num_threads(1);
    pool_for_threads(threads, parts, mm_item, &j);
    openblas_set_num_threads(threads);
}

void layer_matmul_forward(float *out, const float *in, const float *w, size_t N, size_t C, size_t OC)
{
    matmul(0, out, in, w, N, C, OC, 0);
}

void layer_matmul_backward_input(float *din, const float *dout, const float *w, size_t N, size_t C,
                                 size_t OC, int acc)
{
    matmul(1, din, dout, w, N, C, OC, acc);
}

void layer_matmul_backward_weight(float *dw, const float *dout, const float *in, size_t N, size_t C,
                                  size_t OC)
{
    matmul(2, dw, dout, in, N, C, OC, 0);
}

/* One parallel kernel call: pointers and sizes for the row function, which
 * handles rows [lo, hi) of chunk `item`. Field meaning is per kernel. */
typedef struct job job;
struct job {
    void (*rows)(job *j, size_t lo, size_t hi, size_t item);
    float *o0, *o1, *o2;
    const float *a, *b, *c, *d, *e;
    const int *tok;
    size_t N, C, chunks, T, hd, ld;
    float f;
    int flag;
    double part[64]; /* per-chunk partial sums (pool_chunks makes at most 64) */
};

static void job_item(void *ctx, size_t i, int worker)
{
    (void)worker;
    job *j = ctx;
    size_t lo, hi;
    pool_chunk_range(j->N, j->chunks, i, &lo, &hi);
    j->rows(j, lo, hi, i);
}

/* Runs j->rows over j->N rows in chunks of about `elems` elements of `width`. */
static void run_rows(job *j, size_t width, size_t elems)
{
    size_t min_rows = width ? elems / width : elems;
    j->chunks = pool_chunks(j->N, min_rows ? min_rows : 1);
    pool_for(j->chunks, job_item, j);
}

/* Σ a[i]·b[i] in VW lanes, lanes then tail added in a fixed order. */
static inline float dotv(const float *a, const float *b, size_t n)
{
    vf acc = { 0 };
    size_t i = 0;
    for (; i + VW <= n; i += VW) acc += vload(a + i) * vload(b + i);
    float s = vsum(acc);
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* ---- RMSNorm ---- one output row o = x·r·w: the forward's and
 * kern_rmsnorm_apply's one expression, so a recomputed row has the same bits */
static inline void rmsnorm_row(float *o, const float *xr, float r, const float *w, size_t C)
{
    size_t i = 0;
    for (; i + VW <= C; i += VW) vstore(o + i, vload(xr + i) * r * vload(w + i));
    for (; i < C; i++) o[i] = xr[i] * r * w[i];
}

/* o0 out, o1 rstd, a x, b w; f eps */
static void rmsnorm_fwd_rows(job *j, size_t lo, size_t hi, size_t item)
{
    (void)item;
    const size_t C = j->C;
    for (size_t n = lo; n < hi; n++) {
        const float *xr = j->a + n * C;
        float r = 1.0f / sqrtf(dotv(xr, xr, C) / (float)C + j->f);
        j->o1[n] = r;
        rmsnorm_row(j->o0 + n * C, xr, r, j->b, C);
    }
}

/* o0 out, a x, b w, c rstd (kept from the forward) */
static void rmsnorm_apply_rows(job *j, size_t lo, size_t hi, size_t item)
{
    (void)item;
    for (size_t n = lo; n < hi; n++) rmsnorm_row(j->o0 + n * j->C, j->a + n * j->C, j->c[n], j->b, j->C);
}

void kern_rmsnorm_apply(float *out, const float *x, const float *rstd, const float *w, size_t N, size_t C)
{
    job j = { .rows = rmsnorm_apply_rows, .o0 = out, .a = x, .b = w, .c = rstd, .N = N, .C = C };
    run_rows(&j, C, 4096);
}

/* o2 y (in: y, out: y + x), a x, then rmsnorm_fwd_rows of y into o0 out, o1 rstd; b w, f eps */
static void add_rmsnorm_rows(job *j, size_t lo, size_t hi, size_t item)
{
    const size_t C = j->C;
    for (size_t n = lo; n < hi; n++) {
        float *y = j->o2 + n * C;
        const float *x = j->a + n * C;
        size_t i = 0;
        for (; i + VW <= C; i += VW) vstore(y + i, vload(y + i) + vload(x + i));
        for (; i < C; i++) y[i] += x[i];
    }
    job k = *j;
    k.a = j->o2;
    rmsnorm_fwd_rows(&k, lo, hi, item);
}

void kern_add_rmsnorm(float *y, float *out, float *rstd, const float *x, const float *w, size_t N, size_t C,
                      float eps)
{
    job j = { .rows = add_rmsnorm_rows, .o0 = out, .o1 = rstd, .o2 = y, .a = x, .b = w, .N = N, .C = C,
              .f = eps };
    run_rows(&j, C, 4096);
}

/* o0 y += a x, rows of C */
static void add_rows(job *j, size_t lo, size_t hi, size_t item)
{
    (void)item;
    float *y = j->o0;
    const float *x = j->a;
    size_t i = lo * j->C, end = hi * j->C;
    for (; i + VW <= end; i += VW) vstore(y + i, vload(y + i) + vload(x + i));
    for (; i < end; i++) y[i] += x[i];
}

void kern_add(float *y, const float *x, size_t N, size_t C)
{
    job j = { .rows = add_rows, .o0 = y, .a = x, .N = N, .C = C };
    run_rows(&j, C, 8192);
}

void layer_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, size_t N, size_t C,
                           float eps)
{
    job j = { .rows = rmsnorm_fwd_rows, .o0 = out, .o1 = rstd, .a = x, .b = w, .N = N, .C = C, .f = eps };
    run_rows(&j, C, 4096);
}

/* o0 dx = (e ? e : 0) + ∂/∂x, a dout, b x, c rstd, d w; e may be dx itself */
static void rmsnorm_bwd_in_rows(job *j, size_t lo, size_t hi, size_t item)
{
    (void)item;
    const size_t C = j->C;
    const float *w = j->d;
    for (size_t n = lo; n < hi; n++) {
        const float *xr = j->b + n * C, *g = j->a + n * C, *base = j->e ? j->e + n * C : NULL;
        float *d = j->o0 + n * C, r = j->c[n];
        vf acc = { 0 };
        size_t i = 0;
        for (; i + VW <= C; i += VW) acc += vload(g + i) * vload(w + i) * vload(xr + i);
        float s = vsum(acc);
        for (; i < C; i++) s += g[i] * w[i] * xr[i];
        float k = s * r * r * r / (float)C;
        for (i = 0; i + VW <= C; i += VW) {
            vf v = r * vload(w + i) * vload(g + i) - k * vload(xr + i);
            vstore(d + i, base ? vload(base + i) + v : v);
        }
        for (; i < C; i++) {
            float v = r * w[i] * g[i] - k * xr[i];
            d[i] = base ? base[i] + v : v;
        }
    }
}

void layer_rmsnorm_backward_input(float *dx, const float *dout, const float *x, const float *rstd,
                                  const float *w, size_t N, size_t C, int acc)
{
    kern_rmsnorm_backward_input_add(dx, acc ? dx : NULL, dout, x, rstd, w, N, C);
}

void kern_rmsnorm_backward_input_add(float *dx, const float *base, const float *dout, const float *x,
                                     const float *rstd, const float *w, size_t N, size_t C)
{
    job j = { .rows = rmsnorm_bwd_in_rows, .o0 = dx, .a = dout, .b = x, .c = rstd, .d = w, .e = base, .N = N,
              .C = C };
    run_rows(&j, C, 4096);
}

/* Columns [lo, hi) of dw, each summed over rows n = 0..T-1 in order.
 * o0 dw, a dout, b x, c rstd; C is the row length, N counts columns, T rows. */
static void rmsnorm_bwd_w_cols(job *j, size_t lo, size_t hi, size_t item)
{
    (void)item;
    const size_t C = j->C, rows = j->T;
    float *dw = j->o0;
    size_t i0 = lo;
    for (; i0 + VW <= hi; i0 += VW) { /* one vector of columns, kept in a register over the rows */
        vf acc = vload(dw + i0);
        for (size_t n = 0; n < rows; n++)
            acc += vload(j->a + n * C + i0) * vload(j->b + n * C + i0) * j->c[n];
        vstore(dw + i0, acc);
    }
    for (size_t n = 0; n < rows; n++) {
        const float *g = j->a + n * C, *xr = j->b + n * C;
        float r = j->c[n];
        for (size_t i = i0; i < hi; i++) dw[i] += g[i] * xr[i] * r;
    }
}

void layer_rmsnorm_backward_weight(float *dw, const float *dout, const float *x, const float *rstd,
                                   size_t N, size_t C)
{
    job j = { .rows = rmsnorm_bwd_w_cols, .o0 = dw, .a = dout, .b = x, .c = rstd, .N = C, .C = C, .T = N };
    j.chunks = pool_chunks(C, 32);
    pool_for(j.chunks, job_item, &j);
}

void layer_rope_tables(float *cosv, float *sinv, size_t T, size_t hd, float theta)
{
    size_t half = hd / 2;
    for (size_t t = 0; t < T; t++)
        for (size_t i = 0; i < half; i++) {
            double freq = pow((double)theta, -2.0 * (double)i / (double)hd);
            double a = (double)t * freq;
            cosv[t * half + i] = (float)cos(a);
            sinv[t * half + i] = (float)sin(a);
        }
}

/* o0 x; a cos, b sin; row n = (b, t) holds `heads` vectors of hd floats at
 * o0 + n·ld (N = B·T rows, C = heads·hd); flag inverse */
static void rope_rows(job *j, size_t lo, size_t hi, size_t item)
{
    (void)item;
    const size_t T = j->T, hd = j->hd, half = hd / 2, heads = j->C / hd;
    const int inverse = j->flag;
    for (size_t n = lo; n < hi; n++) {
        const float *c = j->a + (n % T) * half, *s = j->b + (n % T) * half;
        for (size_t h = 0; h < heads; h++) {
            float *v = j->o0 + n * j->ld + h * hd;
            size_t i = 0;
            for (; i + VW <= half; i += VW) {
                vf x1 = vload(v + i), x2 = vload(v + i + half), cv = vload(c + i), sn = vload(s + i);
                if (inverse) sn = -sn;
                vstore(v + i, x1 * cv - x2 * sn);
                vstore(v + i + half, x2 * cv + x1 * sn);
            }
            for (; i < half; i++) {
                float x1 = v[i], x2 = v[i + half], sn = inverse ? -s[i] : s[i];
                v[i] = x1 * c[i] - x2 * sn;
                v[i + half] = x2 * c[i] + x1 * sn;
            }
        }
    }
}

void kern_rope(float *x, const float *cosv, const float *sinv, size_t B, size_t T, size_t heads, size_t hd,
               size_t ld, int inverse)
{
    job j = { .rows = rope_rows, .o0 = x, .a = cosv, .b = sinv, .N = B * T, .C = heads * hd, .T = T,
              .hd = hd, .ld = ld, .flag = inverse };
    run_rows(&j, heads * hd, 4096);
}

void layer_rope(float *x, const float *cosv, const float *sinv, size_t B, size_t T, size_t heads,
                size_t hd, int inverse)
{
    kern_rope(x, cosv, sinv, B, T, heads, hd, heads * hd, inverse);
}

/* ---- attention: attention.c, in its plain layout ---- */
void layer_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                             size_t B, size_t T, size_t H, size_t KVH, size_t hd)
{
    attn_dims a = { B, T, H, KVH, hd, H * hd, KVH * hd, H * hd };
    attn_forward(out, lse, q, k, v, a);
}

void layer_attention_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout,
                              const float *out, const float *lse, const float *q, const float *k,
                              const float *v, size_t B, size_t T, size_t H, size_t KVH, size_t hd)
{
    attn_dims a = { B, T, H, KVH, hd, H * hd, KVH * hd, H * hd };
    attn_backward(dq, dk, dv, scratch, dout, out, lse, q, k, v, a);
}

/* ---- SwiGLU (elementwise; N counts elements) ---- o0 h, a gate, b up */
static inline vf vsigmoid(vf x) { return 1.0f / (1.0f + vexp(-x)); }
/* Scalar tails use the same exp as the lanes, so a value never depends on
 * whether it fell in a full vector. */
static inline float lane0(vf v)
{
    float r;
    memcpy(&r, &v, sizeof r);
    return r;
}
static inline float sigmoid1(float x) { return lane0(vsigmoid(vbcast(x))); }
static inline float exp1(float x) { return lane0(vexp(vbcast(x))); }

/* Rows of F elements: gate row r at a + r·T, up row at b + r·T, h / dh rows
 * at r·hd (T and hd hold the two row strides). o0 h. */
static void swiglu_fwd_rows(job *j, size_t lo, size_t hi, size_t item)
{
    (void)item;
    const size_t F = j->C;
    for (size_t r = lo; r < hi; r++) {
        const float *g = j->a + r * j->T, *u = j->b + r * j->T;
        float *h = j->o0 + r * j->hd;
        size_t i = 0;
        for (; i + VW <= F; i += VW) {
            vf x = vload(g + i);
            vstore(h + i, x * vsigmoid(x) * vload(u + i));
        }
        for (; i < F; i++) h[i] = g[i] * sigmoid1(g[i]) * u[i];
    }
}

void layer_swiglu_forward(float *h, const float *gate, const float *up, size_t n)
{
    job j = { .rows = swiglu_fwd_rows, .o0 = h, .a = gate, .b = up, .N = 1, .C = n, .T = n, .hd = n };
    run_rows(&j, n, 8192);
}

void kern_swiglu_forward(float *h, const float *gu, size_t N, size_t F)
{
    job j = { .rows = swiglu_fwd_rows, .o0 = h, .a = gu, .b = gu + F, .N = N, .C = F, .T = 2 * F, .hd = F };
    run_rows(&j, F, 8192);
}

/* o0 dgate, o1 dup (rows at r·T like gate and up), a dh (rows at r·hd), b gate, c up.
 * Every element reads gate[i] and up[i] before writing dgate[i] and dup[i], so
 * dgate, dup may be gate, up (in place). */
static void swiglu_bwd_rows(job *j, size_t lo, size_t hi, size_t item)
{
    (void)item;
    const size_t F = j->C;
    for (size_t r = lo; r < hi; r++) {
        const float *dh = j->a + r * j->hd, *gate = j->b + r * j->T, *up = j->c + r * j->T;
        float *dg = j->o0 + r * j->T, *du = j->o1 + r * j->T;
        size_t i = 0;
        for (; i + VW <= F; i += VW) {
            vf g = vload(gate + i), s = vsigmoid(g), d = vload(dh + i), u = vload(up + i);
            vstore(du + i, d * (g * s));
            vstore(dg + i, d * u * (s * (1.0f + g * (1.0f - s))));
        }
        for (; i < F; i++) {
            float g = gate[i], s = sigmoid1(g), u = up[i];
            du[i] = dh[i] * (g * s);
            dg[i] = dh[i] * u * (s * (1.0f + g * (1.0f - s)));
        }
    }
}

void layer_swiglu_backward(float *dgate, float *dup, const float *dh, const float *gate, const float *up,
                           size_t n)
{
    job j = { .rows = swiglu_bwd_rows, .o0 = dgate, .o1 = dup, .a = dh, .b = gate, .c = up, .N = 1, .C = n,
              .T = n, .hd = n };
    run_rows(&j, n, 8192);
}

void kern_swiglu_backward(float *dgu, const float *dh, const float *gu, size_t N, size_t F)
{
    job j = { .rows = swiglu_bwd_rows, .o0 = dgu, .o1 = dgu + F, .a = dh, .b = gu, .c = gu + F, .N = N, .C = F,
              .T = 2 * F, .hd = F };
    run_rows(&j, F, 8192);
}

/* ---- embedding ---- o0 out, a wte, tok tokens: rows [lo, hi) */
static void embed_fwd_rows(job *j, size_t lo, size_t hi, size_t item)
{
    (void)item;
    for (size_t n = lo; n < hi; n++) memcpy(j->o0 + n * j->C, j->a + (size_t)j->tok[n] * j->C, j->C * sizeof(float));
}

void layer_embedding_forward(float *out, const int *tokens, const float *wte, size_t N, size_t C)
{
    job j = { .rows = embed_fwd_rows, .o0 = out, .a = wte, .tok = tokens, .N = N, .C = C };
    run_rows(&j, C, 8192);
}

/* Columns [lo, hi) of every dwte row, rows n = 0..T-1 in order: each element
 * gets its additions in the order of the serial loop, so chunks (of columns,
 * as tokens repeat) change no bits. o0 dwte, a dout, tok; C row length, T rows. */
static void embed_bwd_cols(job *j, size_t lo, size_t hi, size_t item)
{
    (void)item;
    const size_t C = j->C;
    for (size_t n = 0; n < j->T; n++) {
        float *d = j->o0 + (size_t)j->tok[n] * C;
        const float *g = j->a + n * C;
        size_t i = lo;
        for (; i + VW <= hi; i += VW) vstore(d + i, vload(d + i) + vload(g + i));
        for (; i < hi; i++) d[i] += g[i];
    }
}

void layer_embedding_backward_weight(float *dwte, const float *dout, const int *tokens, size_t N, size_t C)
{
    job j = { .rows = embed_bwd_cols, .o0 = dwte, .a = dout, .tok = tokens, .N = C, .C = C, .T = N };
    j.chunks = pool_chunks(C, 2 * VW);
    pool_for(j.chunks, job_item, &j);
}

/* ---- softmax cross-entropy ---- o0 probs (in: logits), tok targets;
 * part[item] = Σ over the chunk's rows of -log p, in row order. */
static void xent_fwd_rows(job *j, size_t lo, size_t hi, size_t item)
{
    const size_t V = j->C;
    double loss = 0;
    for (size_t n = lo; n < hi; n++) {
        float *p = j->o0 + n * V;
        float zt = p[j->tok[n]], mx = p[0];
        for (size_t i = 1; i < V; i++) if (p[i] > mx) mx = p[i];
        vf acc = { 0 };
        size_t i = 0;
        for (; i + VW <= V; i += VW) {
            vf e = vexp(vload(p + i) - mx);
            vstore(p + i, e);
            acc += e;
        }
        float sum = vsum(acc);
        for (; i < V; i++) {
            p[i] = exp1(p[i] - mx);
            sum += p[i];
        }
        float inv = 1.0f / sum;
        for (i = 0; i + VW <= V; i += VW) vstore(p + i, vload(p + i) * inv);
        for (; i < V; i++) p[i] *= inv;
        /* -log p from the logit and the sum, not from the rounded probability,
         * so a tiny p never turns into log(0) */
        loss += (double)(mx - zt) + log((double)sum);
    }
    j->part[item] = loss;
}

double layer_softmax_xent_forward(float *probs, const int *targets, size_t N, size_t V)
{
    job j = { .rows = xent_fwd_rows, .o0 = probs, .tok = targets, .N = N, .C = V };
    run_rows(&j, V, 8192);
    double loss = 0;
    for (size_t c = 0; c < j.chunks; c++) loss += j.part[c];
    return loss;
}

/* o0 dlogits, a probs, tok targets, f scale */
static void xent_bwd_rows(job *j, size_t lo, size_t hi, size_t item)
{
    (void)item;
    const size_t V = j->C;
    for (size_t n = lo; n < hi; n++) {
        const float *p = j->a + n * V;
        float *d = j->o0 + n * V;
        size_t i = 0;
        for (; i + VW <= V; i += VW) vstore(d + i, vload(p + i) * j->f);
        for (; i < V; i++) d[i] = p[i] * j->f;
        d[j->tok[n]] -= j->f;
    }
}

void layer_softmax_xent_backward(float *dlogits, const float *probs, const int *targets, size_t N, size_t V,
                                 float scale)
{
    job j = { .rows = xent_bwd_rows, .o0 = dlogits, .a = probs, .tok = targets, .N = N, .C = V, .f = scale };
    run_rows(&j, V, 8192);
}
