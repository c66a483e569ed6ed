/* test_layers.c — every kernel: the double reference against central finite
 * differences (input and weight gradients), and the fast float kernel against
 * the double reference. */
#include <cblas.h>

#include "model/layers.h"
#include "model/layers_naive.h"
#include "model/util.h"
#include "tests/tests.h"

static rng_t R = { 42 };

static double *rnd(size_t n, double scale)
{
    double *a = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) a[i] = (rng_uniform(&R) * 2 - 1) * scale;
    return a;
}
static float *tof(const double *a, size_t n)
{
    float *f = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) f[i] = (float)a[i];
    return f;
}
static double *tod(const float *a, size_t n)
{
    double *d = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) d[i] = a[i];
    return d;
}
static double dotd(const double *a, const double *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* A scalar objective L = <f(x), r> for a fixed random r; f is evaluated by fn. */
typedef void (*fwd_fn)(double *out, void *ctx);

/* Central differences of L with respect to each element of x, compared with the
 * analytic gradient g. */
static int fd_check(const char *what, double *x, size_t n, const double *g, fwd_fn f, void *ctx,
                    double *out, const double *r, size_t nout)
{
    double *num = malloc(n * sizeof(double));
    const double h = 1e-6;
    for (size_t i = 0; i < n; i++) {
        double keep = x[i];
        x[i] = keep + h; f(out, ctx); double lp = dotd(out, r, nout);
        x[i] = keep - h; f(out, ctx); double lm = dotd(out, r, nout);
        x[i] = keep;
        num[i] = (lp - lm) / (2 * h);
    }
    int ok = tests_close(what, g, num, n, 1e-7, 1e-5);
    free(num);
    return ok;
}

enum { N_ = 6, C_ = 8, OC_ = 5 };

/* ---- matmul ---- */
static struct { double *in, *w; } mm;
static void mm_fwd(double *out, void *c) { (void)c; layer_naive_matmul_forward(out, mm.in, mm.w, N_, C_, OC_); }

static void test_matmul(void)
{
    mm.in = rnd(N_ * C_, 1); mm.w = rnd(OC_ * C_, 1);
    double *r = rnd(N_ * OC_, 1), out[N_ * OC_];
    double *din = calloc(N_ * C_, sizeof(double)), *dw = calloc(OC_ * C_, sizeof(double));
    layer_naive_matmul_backward(din, dw, r, mm.in, mm.w, N_, C_, OC_);
    CU_ASSERT(fd_check("matmul din", mm.in, N_ * C_, din, mm_fwd, NULL, out, r, N_ * OC_));
    CU_ASSERT(fd_check("matmul dw", mm.w, OC_ * C_, dw, mm_fwd, NULL, out, r, N_ * OC_));
    /* fast vs reference */
    float *fin = tof(mm.in, N_ * C_), *fw = tof(mm.w, OC_ * C_), *fr = tof(r, N_ * OC_);
    float fout[N_ * OC_], fdin[N_ * C_], fdw[OC_ * C_];
    layer_matmul_forward(fout, fin, fw, N_, C_, OC_);
    layer_naive_matmul_forward(out, mm.in, mm.w, N_, C_, OC_);
    double *d = tod(fout, N_ * OC_);
    CU_ASSERT(tests_close("matmul fwd fast", d, out, N_ * OC_, 1e-5, 1e-5)); free(d);
    layer_matmul_backward_input(fdin, fr, fw, N_, C_, OC_, 0);
    d = tod(fdin, N_ * C_);
    CU_ASSERT(tests_close("matmul din fast", d, din, N_ * C_, 1e-5, 1e-5)); free(d);
    for (int i = 0; i < OC_ * C_; i++) fdw[i] = 1.0f; /* adds into */
    layer_matmul_backward_weight(fdw, fr, fin, N_, C_, OC_);
    for (int i = 0; i < OC_ * C_; i++) dw[i] += 1.0;
    d = tod(fdw, OC_ * C_);
    CU_ASSERT(tests_close("matmul dw fast (accumulating)", d, dw, OC_ * C_, 1e-5, 1e-5)); free(d);
    free(mm.in); free(mm.w); free(r); free(din); free(dw); free(fin); free(fw); free(fr);
}

/* ---- rmsnorm ---- */
static struct { double *x, *w; } rn;
static void rn_fwd(double *out, void *c) { (void)c; layer_naive_rmsnorm_forward(out, rn.x, rn.w, N_, C_, 1e-5); }

static void test_rmsnorm(void)
{
    rn.x = rnd(N_ * C_, 2); rn.w = rnd(C_, 1);
    double *r = rnd(N_ * C_, 1), out[N_ * C_];
    double *dx = calloc(N_ * C_, sizeof(double)), *dw = calloc(C_, sizeof(double));
    layer_naive_rmsnorm_backward(dx, dw, r, rn.x, rn.w, N_, C_, 1e-5);
    CU_ASSERT(fd_check("rmsnorm dx", rn.x, N_ * C_, dx, rn_fwd, NULL, out, r, N_ * C_));
    CU_ASSERT(fd_check("rmsnorm dw", rn.w, C_, dw, rn_fwd, NULL, out, r, N_ * C_));
    float *fx = tof(rn.x, N_ * C_), *fw = tof(rn.w, C_), *fr = tof(r, N_ * C_);
    float fout[N_ * C_], rstd[N_], fdx[N_ * C_], fdw[C_] = { 0 };
    layer_rmsnorm_forward(fout, rstd, fx, fw, N_, C_, 1e-5f);
    rn_fwd(out, NULL);
    double *d = tod(fout, N_ * C_);
    CU_ASSERT(tests_close("rmsnorm fwd fast", d, out, N_ * C_, 1e-5, 1e-5)); free(d);
    layer_rmsnorm_backward_input(fdx, fr, fx, rstd, fw, N_, C_, 0);
    d = tod(fdx, N_ * C_);
    CU_ASSERT(tests_close("rmsnorm dx fast", d, dx, N_ * C_, 1e-5, 1e-4)); free(d);
    layer_rmsnorm_backward_weight(fdw, fr, fx, rstd, N_, C_);
    d = tod(fdw, C_);
    CU_ASSERT(tests_close("rmsnorm dw fast", d, dw, C_, 1e-5, 1e-4)); free(d);
    free(rn.x); free(rn.w); free(r); free(dx); free(dw); free(fx); free(fw); free(fr);
}

/* ---- attention (with GQA) ---- */
enum { AB = 2, AT = 5, AH = 4, AKV = 2, AHD = 4 };
#define QN (AB * AT * AH * AHD)
#define KN (AB * AT * AKV * AHD)
static struct { double *q, *k, *v; } at;
static void at_fwd(double *out, void *c) { (void)c; layer_naive_attention_forward(out, at.q, at.k, at.v, AB, AT, AH, AKV, AHD); }

static void test_attention(void)
{
    at.q = rnd(QN, 1); at.k = rnd(KN, 1); at.v = rnd(KN, 1);
    double *r = rnd(QN, 1), out[QN];
    double *dq = calloc(QN, sizeof(double)), *dk = calloc(KN, sizeof(double)), *dv = calloc(KN, sizeof(double));
    layer_naive_attention_backward(dq, dk, dv, r, at.q, at.k, at.v, AB, AT, AH, AKV, AHD);
    CU_ASSERT(fd_check("attention dq", at.q, QN, dq, at_fwd, NULL, out, r, QN));
    CU_ASSERT(fd_check("attention dk", at.k, KN, dk, at_fwd, NULL, out, r, QN));
    CU_ASSERT(fd_check("attention dv", at.v, KN, dv, at_fwd, NULL, out, r, QN));
    float *fq = tof(at.q, QN), *fk = tof(at.k, KN), *fv = tof(at.v, KN), *fr = tof(r, QN);
    float fout[QN], lse[AB * AH * AT], fdq[QN], fdk[KN], fdv[KN], scratch[AB * AH * AT];
    layer_attention_forward(fout, lse, fq, fk, fv, AB, AT, AH, AKV, AHD);
    at_fwd(out, NULL);
    double *d = tod(fout, QN);
    CU_ASSERT(tests_close("attention fwd fast", d, out, QN, 1e-5, 1e-5)); free(d);
    layer_attention_backward(fdq, fdk, fdv, scratch, fr, fout, lse, fq, fk, fv, AB, AT, AH, AKV, AHD);
    d = tod(fdq, QN); CU_ASSERT(tests_close("attention dq fast", d, dq, QN, 1e-5, 1e-4)); free(d);
    d = tod(fdk, KN); CU_ASSERT(tests_close("attention dk fast", d, dk, KN, 1e-5, 1e-4)); free(d);
    d = tod(fdv, KN); CU_ASSERT(tests_close("attention dv fast", d, dv, KN, 1e-5, 1e-4)); free(d);
    free(at.q); free(at.k); free(at.v); free(r); free(dq); free(dk); free(dv);
    free(fq); free(fk); free(fv); free(fr);
}

/* Causality: the output at position t does not depend on keys/values after t. */
static void test_attention_causal(void)
{
    double *q = rnd(QN, 1), *k = rnd(KN, 1), *v = rnd(KN, 1);
    float *fq = tof(q, QN), *fk = tof(k, KN), *fv = tof(v, KN);
    float a[QN], b[QN], lse[AB * AH * AT];
    layer_attention_forward(a, lse, fq, fk, fv, AB, AT, AH, AKV, AHD);
    size_t t = 3; /* change keys and values at the last positions */
    for (size_t bb = 0; bb < AB; bb++)
        for (size_t s = t; s < AT; s++)
            for (size_t i = 0; i < AKV * AHD; i++) {
                fk[(bb * AT + s) * AKV * AHD + i] += 1.0f;
                fv[(bb * AT + s) * AKV * AHD + i] -= 2.0f;
            }
    layer_attention_forward(b, lse, fq, fk, fv, AB, AT, AH, AKV, AHD);
    for (size_t bb = 0; bb < AB; bb++)
        for (size_t s = 0; s < AT; s++) {
            int same = !memcmp(a + (bb * AT + s) * AH * AHD, b + (bb * AT + s) * AH * AHD, AH * AHD * sizeof(float));
            if (s < t) CU_ASSERT(same) else CU_ASSERT(!same);
        }
    free(q); free(k); free(v); free(fq); free(fk); free(fv);
}

/* ---- rope ---- */
static void test_rope(void)
{
    enum { T = 9, HD = 8, NH = 2 };
    double *x = rnd(T * NH * HD, 1), *y = rnd(T * NH * HD, 1);
    double *rx = malloc(sizeof(double) * T * NH * HD), *ry = malloc(sizeof(double) * T * NH * HD);
    memcpy(rx, x, sizeof(double) * T * NH * HD); memcpy(ry, y, sizeof(double) * T * NH * HD);
    /* the backward is the transpose: <R x, y> = <x, R⁻¹ y> */
    layer_naive_rope(rx, 1, T, NH, HD, 10000, 0);
    layer_naive_rope(ry, 1, T, NH, HD, 10000, 1);
    CU_ASSERT(fabs(dotd(rx, y, T * NH * HD) - dotd(x, ry, T * NH * HD)) < 1e-12);
    /* fast matches reference, and inverse undoes forward */
    float *fx = tof(x, T * NH * HD), cosv[T * HD / 2], sinv[T * HD / 2];
    layer_rope_tables(cosv, sinv, T, HD, 10000);
    layer_rope(fx, cosv, sinv, 1, T, NH, HD, 0);
    double *d = tod(fx, T * NH * HD);
    CU_ASSERT(tests_close("rope fast", d, rx, T * NH * HD, 1e-6, 1e-5)); free(d);
    layer_rope(fx, cosv, sinv, 1, T, NH, HD, 1);
    d = tod(fx, T * NH * HD);
    CU_ASSERT(tests_close("rope inverse", d, x, T * NH * HD, 1e-6, 1e-5)); free(d);
    /* relative position: <R_m q, R_n k> depends only on m - n */
    double q[HD], k[HD], a[T * HD], b[T * HD];
    for (int i = 0; i < HD; i++) { q[i] = rng_uniform(&R) - 0.5; k[i] = rng_uniform(&R) - 0.5; }
    for (int t = 0; t < T; t++) { memcpy(a + t * HD, q, sizeof q); memcpy(b + t * HD, k, sizeof k); }
    layer_naive_rope(a, 1, T, 1, HD, 10000, 0);
    layer_naive_rope(b, 1, T, 1, HD, 10000, 0);
    for (int m = 2; m < T; m++) {
        double d1 = dotd(a + m * HD, b + (m - 2) * HD, HD), d0 = dotd(a + 2 * HD, b, HD);
        CU_ASSERT(fabs(d1 - d0) < 1e-12);
    }
    /* and rotate_half pairs element i with i + hd/2 (Hugging Face convention) */
    double e[HD] = { 0 };
    e[1] = 1;
    layer_naive_rope(e, 1, 1, 1, HD, 10000, 0); /* position 0: identity */
    CU_ASSERT(e[1] == 1 && e[1 + HD / 2] == 0);
    double e2[2 * HD] = { 0 };
    e2[HD + 1] = 1; /* position 1, element 1 */
    layer_naive_rope(e2, 1, 2, 1, HD, 10000, 0);
    double ang = pow(10000, -2.0 / HD);
    CU_ASSERT(fabs(e2[HD + 1] - cos(ang)) < 1e-12 && fabs(e2[HD + 1 + HD / 2] - sin(ang)) < 1e-12);
    free(x); free(y); free(rx); free(ry); free(fx);
}

/* ---- swiglu ---- */
static struct { double *g, *u; } sw;
static void sw_fwd(double *out, void *c) { (void)c; layer_naive_swiglu_forward(out, sw.g, sw.u, 20); }

static void test_swiglu(void)
{
    sw.g = rnd(20, 3); sw.u = rnd(20, 2);
    double *r = rnd(20, 1), out[20], dg[20] = { 0 }, du[20] = { 0 };
    layer_naive_swiglu_backward(dg, du, r, sw.g, sw.u, 20);
    CU_ASSERT(fd_check("swiglu dgate", sw.g, 20, dg, sw_fwd, NULL, out, r, 20));
    CU_ASSERT(fd_check("swiglu dup", sw.u, 20, du, sw_fwd, NULL, out, r, 20));
    float *fg = tof(sw.g, 20), *fu = tof(sw.u, 20), *fr = tof(r, 20), fh[20], fdg[20], fdu[20];
    layer_swiglu_forward(fh, fg, fu, 20);
    sw_fwd(out, NULL);
    double *d = tod(fh, 20); CU_ASSERT(tests_close("swiglu fwd fast", d, out, 20, 1e-6, 1e-5)); free(d);
    layer_swiglu_backward(fdg, fdu, fr, fg, fu, 20);
    d = tod(fdg, 20); CU_ASSERT(tests_close("swiglu dgate fast", d, dg, 20, 1e-6, 1e-5)); free(d);
    d = tod(fdu, 20); CU_ASSERT(tests_close("swiglu dup fast", d, du, 20, 1e-6, 1e-5)); free(d);
    free(sw.g); free(sw.u); free(r); free(fg); free(fu); free(fr);
}

/* ---- cross-entropy ---- */
static struct { double *z; int t[N_]; } xe;
static void xe_fwd(double *out, void *c) { (void)c; out[0] = layer_naive_xent(NULL, xe.z, xe.t, N_, 7, 1); }

static void test_xent(void)
{
    xe.z = rnd(N_ * 7, 3);
    for (int i = 0; i < N_; i++) xe.t[i] = (int)rng_below(&R, 7);
    double one = 1, out[1], *dz = calloc(N_ * 7, sizeof(double));
    layer_naive_xent(dz, xe.z, xe.t, N_, 7, 1);
    CU_ASSERT(fd_check("xent dlogits", xe.z, N_ * 7, dz, xe_fwd, NULL, out, &one, 1));
    float *fz = tof(xe.z, N_ * 7), fd[N_ * 7];
    double lf = layer_softmax_xent_forward(fz, xe.t, N_, 7); /* fz now holds probabilities */
    xe_fwd(out, NULL);
    CU_ASSERT(fabs(lf - out[0]) < 1e-5);
    layer_softmax_xent_backward(fd, fz, xe.t, N_, 7, 1.0f);
    double *d = tod(fd, N_ * 7);
    CU_ASSERT(tests_close("xent dlogits fast", d, dz, N_ * 7, 1e-6, 1e-5)); free(d);
    /* huge logits do not overflow or produce log(0) */
    float big[3] = { 1000, -1000, 0 };
    int tg = 1;
    double l = layer_softmax_xent_forward(big, &tg, 1, 3);
    CU_ASSERT(isfinite(l) && fabs(l - 2000) < 1e-3);
    free(xe.z); free(dz); free(fz);
}

/* ---- embedding ---- */
static void test_embedding(void)
{
    float wte[4 * 3], out[5 * 3], dw[4 * 3] = { 0 }, dout[5 * 3];
    int tok[5] = { 2, 0, 2, 3, 2 };
    for (int i = 0; i < 12; i++) wte[i] = (float)i;
    for (int i = 0; i < 15; i++) dout[i] = 0.5f * (float)i;
    layer_embedding_forward(out, tok, wte, 5, 3);
    for (int n = 0; n < 5; n++)
        for (int c = 0; c < 3; c++) CU_ASSERT_EQUAL(out[n * 3 + c], wte[tok[n] * 3 + c]);
    layer_embedding_backward_weight(dw, dout, tok, 5, 3);
    for (int c = 0; c < 3; c++) {
        CU_ASSERT_EQUAL(dw[2 * 3 + c], dout[0 * 3 + c] + dout[2 * 3 + c] + dout[4 * 3 + c]);
        CU_ASSERT_EQUAL(dw[1 * 3 + c], 0.0f);
        CU_ASSERT_EQUAL(dw[0 * 3 + c], dout[1 * 3 + c]);
    }
}

/* The products cut into row bands on the pool's threads (layers.c matmul):
 * every mode, with and without accumulation, the same bits at 1 and 2 threads
 * (and as one whole sgemm), on shapes whose bands end inside a 16-row tile. */
static void test_matmul_threads(void)
{
    enum { N = 203, C = 97, OC = 301 };
    static float x[N * OC], w[OC * C], in[N * C], out[3][2][N * OC];
    for (int i = 0; i < N * OC; i++) x[i] = (float)(((i * 7919) % 2003) - 1001) / 1001.0f;
    for (int i = 0; i < OC * C; i++) w[i] = (float)((int)(((long)i * 104729) % 4001) - 2000) / 2000.0f;
    for (int i = 0; i < N * C; i++) in[i] = (float)(((i * 31) % 503) - 251) / 251.0f;
    int saved = openblas_get_num_threads();
    for (int k = 0; k < 2; k++) {
        openblas_set_num_threads(2 - k);
        CU_ASSERT_EQUAL(openblas_get_num_threads(), 2 - k);
        layer_matmul_forward(out[0][k], in, w, N, C, OC);
        for (int i = 0; i < N * C; i++) out[1][k][i] = 0.5f;
        layer_matmul_backward_input(out[1][k], x, w, N, C, OC, 1);
        for (int i = 0; i < OC * C; i++) out[2][k][i] = 0.25f;
        layer_matmul_backward_weight(out[2][k], x, in, N, C, OC);
        CU_ASSERT_EQUAL(openblas_get_num_threads(), 2 - k); /* restored */
    }
    openblas_set_num_threads(saved);
    CU_ASSERT(memcmp(out[0][0], out[0][1], N * OC * sizeof(float)) == 0);
    CU_ASSERT(memcmp(out[1][0], out[1][1], N * C * sizeof(float)) == 0);
    CU_ASSERT(memcmp(out[2][0], out[2][1], OC * C * sizeof(float)) == 0);
    /* and each is the product: a few elements against a double dot product */
    double d0 = 0, d1 = 0.5, d2 = 0.25;
    for (int c = 0; c < C; c++) d0 += (double)in[5 * C + c] * w[7 * C + c];
    for (int o = 0; o < OC; o++) d1 += (double)x[200 * OC + o] * w[o * C + 3];
    for (int n = 0; n < N; n++) d2 += (double)x[n * OC + 290] * in[n * C + 96];
    CU_ASSERT(fabs(out[0][0][5 * OC + 7] - d0) < 1e-4);
    CU_ASSERT(fabs(out[1][0][200 * C + 3] - d1) < 1e-4);
    CU_ASSERT(fabs(out[2][0][290 * C + 96] - d2) < 1e-4);
}

/* The embedding over the pool: rows (forward) and columns (backward, as
 * tokens repeat) in chunks; at 1 and 2 threads the same bits as the serial
 * loop, row width not a whole number of vectors. */
static void test_embedding_threads(void)
{
    enum { V = 7, C = 77, N = 300 };
    static float wte[V * C], out[2][N * C], dw[3][V * C], dout[N * C];
    static int tok[N];
    for (int i = 0; i < V * C; i++) wte[i] = (float)i * 0.25f;
    for (int i = 0; i < N * C; i++) dout[i] = (float)(((i * 37) % 101) - 50) / 7.0f;
    for (int n = 0; n < N; n++) tok[n] = (n * n + 3 * n) % V;
    for (int i = 0; i < V * C; i++) dw[0][i] = dw[1][i] = dw[2][i] = 0.125f * (float)(i % 5);
    for (int n = 0; n < N; n++) /* the serial reference */
        for (int c = 0; c < C; c++) dw[2][tok[n] * C + c] += dout[n * C + c];
    int saved = openblas_get_num_threads();
    for (int k = 0; k < 2; k++) {
        openblas_set_num_threads(2 - k);
        CU_ASSERT_EQUAL(openblas_get_num_threads(), 2 - k); /* the pool follows it */
        layer_embedding_forward(out[k], tok, wte, N, C);
        layer_embedding_backward_weight(dw[k], dout, tok, N, C);
    }
    openblas_set_num_threads(saved);
    int ok = 1;
    for (int n = 0; n < N; n++) ok &= memcmp(out[0] + n * C, wte + tok[n] * C, C * sizeof(float)) == 0;
    CU_ASSERT(ok);
    CU_ASSERT(memcmp(out[0], out[1], sizeof out[0]) == 0);
    CU_ASSERT(memcmp(dw[0], dw[2], sizeof dw[0]) == 0);
    CU_ASSERT(memcmp(dw[1], dw[2], sizeof dw[0]) == 0);
}

/* The fast attention against the double-precision reference at one shape:
 * out, dq, dk, dv within float rounding (rtol 1e-3 on the gradients, which
 * sum T products). */
static void attention_vs_naive(const char *what, size_t B, size_t T, size_t H, size_t KVH, size_t HD)
{
    size_t qn = B * T * H * HD, kn = B * T * KVH * HD;
    double *q = rnd(qn, 1), *k = rnd(kn, 1), *v = rnd(kn, 1), *r = rnd(qn, 1);
    double *out = malloc(qn * sizeof(double)), *dq = calloc(qn, sizeof(double));
    double *dk = calloc(kn, sizeof(double)), *dv = calloc(kn, sizeof(double));
    layer_naive_attention_forward(out, q, k, v, B, T, H, KVH, HD);
    layer_naive_attention_backward(dq, dk, dv, r, q, k, v, B, T, H, KVH, HD);
    float *fq = tof(q, qn), *fk = tof(k, kn), *fv = tof(v, kn), *fr = tof(r, qn);
    float *fo = malloc(qn * 4), *lse = malloc(B * H * T * 4), *fdq = malloc(qn * 4);
    float *fdk = malloc(kn * 4), *fdv = malloc(kn * 4), *scratch = malloc(B * H * T * 4);
    char name[96];
    layer_attention_forward(fo, lse, fq, fk, fv, B, T, H, KVH, HD);
    layer_attention_backward(fdq, fdk, fdv, scratch, fr, fo, lse, fq, fk, fv, B, T, H, KVH, HD);
    double *d = tod(fo, qn);
    snprintf(name, sizeof name, "%s fwd", what);
    CU_ASSERT(tests_close(name, d, out, qn, 1e-5, 1e-4)); free(d);
    d = tod(fdq, qn); snprintf(name, sizeof name, "%s dq", what);
    CU_ASSERT(tests_close(name, d, dq, qn, 1e-5, 1e-3)); free(d);
    d = tod(fdk, kn); snprintf(name, sizeof name, "%s dk", what);
    CU_ASSERT(tests_close(name, d, dk, kn, 1e-5, 1e-3)); free(d);
    d = tod(fdv, kn); snprintf(name, sizeof name, "%s dv", what);
    CU_ASSERT(tests_close(name, d, dv, kn, 1e-5, 1e-3)); free(d);
    free(q); free(k); free(v); free(r); free(out); free(dq); free(dk); free(dv);
    free(fq); free(fk); free(fv); free(fr); free(fo); free(lse); free(fdq); free(fdk); free(fdv); free(scratch);
}

/* The fast kernels' vector paths (width 16) need rows wider than the tiny shapes
 * above: attention at head size 48 and 67 positions (two key tiles, the second
 * partial), at 200 positions (four tiles, head size 64, 2 query heads per kv
 * head), at head size 20 (a scalar tail in every row); norms and SwiGLU at odd
 * widths. */
static void test_wide_shapes(void)
{
    attention_vs_naive("wide attention", 2, 67, 4, 2, 48);
    attention_vs_naive("attention T=200", 1, 200, 2, 1, 64);
    attention_vs_naive("attention hd=20", 1, 130, 3, 3, 20);
    double *d;

    for (size_t C = 35; C <= 131; C += 48) { /* 35, 83, 131: tails of every length class */
        enum { N = 5 };
        double *x = rnd(N * C, 2), *w = rnd(C, 1), *g = rnd(N * C, 1), *o = malloc(N * C * sizeof(double));
        double *dx = calloc(N * C, sizeof(double)), *dw = calloc(C, sizeof(double));
        layer_naive_rmsnorm_forward(o, x, w, N, C, 1e-5);
        layer_naive_rmsnorm_backward(dx, dw, g, x, w, N, C, 1e-5);
        float *fx = tof(x, N * C), *fw = tof(w, C), *fg = tof(g, N * C), *fo2 = malloc(N * C * 4), rstd[N];
        float *fdx = malloc(N * C * 4), *fdw = calloc(C, 4);
        layer_rmsnorm_forward(fo2, rstd, fx, fw, N, C, 1e-5f);
        layer_rmsnorm_backward_input(fdx, fg, fx, rstd, fw, N, C, 0);
        layer_rmsnorm_backward_weight(fdw, fg, fx, rstd, N, C);
        d = tod(fo2, N * C); CU_ASSERT(tests_close("wide rmsnorm fwd", d, o, N * C, 1e-5, 1e-4)); free(d);
        d = tod(fdx, N * C); CU_ASSERT(tests_close("wide rmsnorm dx", d, dx, N * C, 1e-5, 1e-3)); free(d);
        d = tod(fdw, C); CU_ASSERT(tests_close("wide rmsnorm dw", d, dw, C, 1e-5, 1e-3)); free(d);
        /* SwiGLU over N*C elements */
        double *h = malloc(N * C * sizeof(double)), *dg = calloc(N * C, sizeof(double)), *du = calloc(N * C, sizeof(double));
        layer_naive_swiglu_forward(h, x, g, N * C);
        layer_naive_swiglu_backward(dg, du, o, x, g, N * C);
        float *fh = malloc(N * C * 4), *fdg = malloc(N * C * 4), *fdu = malloc(N * C * 4), *fo3 = tof(o, N * C);
        layer_swiglu_forward(fh, fx, fg, N * C);
        layer_swiglu_backward(fdg, fdu, fo3, fx, fg, N * C);
        d = tod(fh, N * C); CU_ASSERT(tests_close("wide swiglu fwd", d, h, N * C, 1e-5, 1e-4)); free(d);
        d = tod(fdg, N * C); CU_ASSERT(tests_close("wide swiglu dgate", d, dg, N * C, 1e-5, 1e-4)); free(d);
        d = tod(fdu, N * C); CU_ASSERT(tests_close("wide swiglu dup", d, du, N * C, 1e-5, 1e-4)); free(d);
        /* softmax cross-entropy over a C-wide vocabulary */
        int tg[N];
        for (int i = 0; i < N; i++) tg[i] = (int)rng_below(&R, C);
        double *dz = calloc(N * C, sizeof(double));
        double lref = layer_naive_xent(dz, x, tg, N, C, 1);
        float *fz = tof(x, N * C), *fdz = malloc(N * C * 4);
        double lf = layer_softmax_xent_forward(fz, tg, N, C);
        layer_softmax_xent_backward(fdz, fz, tg, N, C, 1.0f);
        CU_ASSERT(fabs(lf - lref) < 1e-4);
        d = tod(fdz, N * C); CU_ASSERT(tests_close("wide xent dlogits", d, dz, N * C, 1e-6, 1e-4)); free(d);
        free(x); free(w); free(g); free(o); free(dx); free(dw); free(fx); free(fw); free(fg); free(fo2);
        free(fdx); free(fdw); free(h); free(dg); free(du); free(fh); free(fdg); free(fdu); free(fo3);
        free(dz); free(fz); free(fdz);
    }
}

int main(void)
{
    CU_TestInfo tests[] = {
        { "matmul: FD and fast vs naive", test_matmul },
        { "rmsnorm: FD and fast vs naive", test_rmsnorm },
        { "attention (GQA): FD and fast vs naive", test_attention },
        { "attention is causal", test_attention_causal },
        { "rope: transpose, relative position, HF pairing", test_rope },
        { "swiglu: FD and fast vs naive", test_swiglu },
        { "cross-entropy: FD, fast vs naive, stability", test_xent },
        { "embedding forward and scatter-add", test_embedding },
        { "embedding over the pool: the serial bits at 1 and 2 threads", test_embedding_threads },
        { "matmul in row bands on the pool: the same bits at 1 and 2 threads, every mode", test_matmul_threads },
        { "vector paths: wide attention, norms, SwiGLU, softmax", test_wide_shapes },
        CU_TEST_INFO_NULL,
    };
    return tests_run("layers", tests);
}
