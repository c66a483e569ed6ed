/* layers.c — fast float kernels of the decoder (see layers.h for contracts).
 * Matrix products go through cblas_sgemm; attention lives in attention.c (its
 * products are tiny, T x T x head_dim, and thousands of small sgemm calls cost
 * more in overhead than they compute). Every reduction runs
 * in a fixed order, so results are reproducible for a given thread count. */
#include "model/layers.h"
#include "model/attention.h"
#include "model/util.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

void layer_matmul_forward(float *out, const float *in, const float *w, size_t N, size_t C, size_t OC)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)OC, (int)C, 1.0f, in, (int)C, w,
                (int)C, 0.0f, out, (int)OC);
}

void layer_matmul_backward_input(float *din, const float *dout, const float *w, size_t N, size_t C,
                                 size_t OC, int acc)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)C, (int)OC, 1.0f, dout, (int)OC,
                w, (int)C, acc ? 1.0f : 0.0f, din, (int)C);
}

void layer_matmul_backward_weight(float *dw, const float *dout, const float *in, size_t N, size_t C,
                                  size_t OC)
{
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)OC, (int)C, (int)N, 1.0f, dout, (int)OC,
                in, (int)C, 1.0f, dw, (int)C);
}

/* Dot product with 8 independent partial sums: the compiler keeps them in one
 * SIMD register. The summation order is fixed, so results are reproducible. */
static inline float dot(const float *a, const float *b, size_t n)
{
    float acc[8] = { 0 };
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* y += a * x */
static inline void axpy(float *y, float a, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] += a * x[i];
}

void layer_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, size_t N, size_t C,
                           float eps)
{
    for (size_t n = 0; n < N; n++) {
        const float *xr = x + n * C;
        float *o = out + n * C;
        float r = 1.0f / sqrtf(dot(xr, xr, C) / (float)C + eps);
        rstd[n] = r;
        for (size_t i = 0; i < C; i++) o[i] = xr[i] * r * w[i];
    }
}

void layer_rmsnorm_backward_input(float *dx, const float *dout, const float *x, const float *rstd,
                                  const float *w, size_t N, size_t C, int acc)
{
    for (size_t n = 0; n < N; n++) {
        const float *xr = x + n * C, *g = dout + n * C;
        float *d = dx + n * C, r = rstd[n];
        float s = 0;
        for (size_t i = 0; i < C; i++) s += g[i] * w[i] * xr[i];
        float k = s * r * r * r / (float)C;
        if (acc)
            for (size_t i = 0; i < C; i++) d[i] += r * w[i] * g[i] - k * xr[i];
        else
            for (size_t i = 0; i < C; i++) d[i] = r * w[i] * g[i] - k * xr[i];
    }
}

void layer_rmsnorm_backward_weight(float *dw, const float *dout, const float *x, const float *rstd,
                                   size_t N, size_t C)
{
    for (size_t n = 0; n < N; n++) {
        const float *xr = x + n * C, *g = dout + n * C;
        float r = rstd[n];
        for (size_t i = 0; i < C; i++) dw[i] += g[i] * xr[i] * r;
    }
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

void layer_rope(float *x, const float *cosv, const float *sinv, size_t B, size_t T, size_t heads,
                size_t hd, int inverse)
{
    size_t half = hd / 2;
    for (size_t b = 0; b < B; b++)
        for (size_t t = 0; t < T; t++) {
            const float *c = cosv + t * half, *s = sinv + t * half;
            for (size_t h = 0; h < heads; h++) {
                float *v = x + ((b * T + t) * heads + h) * hd;
                for (size_t i = 0; i < half; i++) {
                    float x1 = v[i], x2 = v[i + half], sn = inverse ? -s[i] : s[i];
                    v[i] = x1 * c[i] - x2 * sn;
                    v[i + half] = x2 * c[i] + x1 * sn;
                }
            }
        }
}

/* The public entry points run every (b, kh) unit in turn with their own
 * scratch; pass.c calls the units directly with workspace and threads. */
void layer_attention_forward(float *out, float *probs, const float *q, const float *k, const float *v,
                             size_t B, size_t T, size_t H, size_t KVH, size_t hd)
{
    attn_dims a = { B, T, H, KVH, hd };
    float *scratch = xmalloc(attn_scratch_floats(a) * sizeof(float));
    for (size_t b = 0; b < B; b++)
        for (size_t kh = 0; kh < KVH; kh++) attn_forward_unit(out, probs, scratch, q, k, v, a, b, kh);
    free(scratch);
}

void layer_attention_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout,
                              const float *probs, const float *q, const float *k, const float *v,
                              size_t B, size_t T, size_t H, size_t KVH, size_t hd)
{
    (void)scratch; /* the units need more than T floats */
    attn_dims a = { B, T, H, KVH, hd };
    float *ws = xmalloc(attn_scratch_floats(a) * sizeof(float));
    for (size_t b = 0; b < B; b++)
        for (size_t kh = 0; kh < KVH; kh++) attn_backward_unit(dq, dk, dv, ws, dout, probs, q, k, v, a, b, kh);
    free(ws);
}

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

void layer_swiglu_forward(float *h, const float *gate, const float *up, size_t n)
{
    for (size_t i = 0; i < n; i++) h[i] = gate[i] * sigmoidf(gate[i]) * up[i];
}

void layer_swiglu_backward(float *dgate, float *dup, const float *dh, const float *gate, const float *up,
                           size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float g = gate[i], s = sigmoidf(g), silu = g * s;
        dup[i] = dh[i] * silu;
        dgate[i] = dh[i] * up[i] * (s * (1.0f + g * (1.0f - s)));
    }
}

void layer_embedding_forward(float *out, const int *tokens, const float *wte, size_t N, size_t C)
{
    for (size_t n = 0; n < N; n++) memcpy(out + n * C, wte + (size_t)tokens[n] * C, C * sizeof(float));
}

void layer_embedding_backward_weight(float *dwte, const float *dout, const int *tokens, size_t N, size_t C)
{
    for (size_t n = 0; n < N; n++) axpy(dwte + (size_t)tokens[n] * C, 1.0f, dout + n * C, C);
}

double layer_softmax_xent_forward(float *probs, const int *targets, size_t N, size_t V)
{
    double loss = 0;
    for (size_t n = 0; n < N; n++) {
        float *p = probs + n * V;
        float zt = p[targets[n]], mx = p[0];
        for (size_t i = 1; i < V; i++) if (p[i] > mx) mx = p[i];
        float sum = 0;
        for (size_t i = 0; i < V; i++) sum += (p[i] = expf(p[i] - mx));
        float inv = 1.0f / sum;
        for (size_t i = 0; i < V; i++) p[i] *= inv;
        /* -log p from the logit and the sum, not from the rounded probability,
         * so a tiny p never turns into log(0) */
        loss += (double)(mx - zt) + log((double)sum);
    }
    return loss;
}

void layer_softmax_xent_backward(float *dlogits, const float *probs, const int *targets, size_t N, size_t V,
                                 float scale)
{
    for (size_t n = 0; n < N; n++) {
        const float *p = probs + n * V;
        float *d = dlogits + n * V;
        for (size_t i = 0; i < V; i++) d[i] = p[i] * scale;
        d[targets[n]] -= scale;
    }
}
