/* layers_naive.c — double-precision reference kernels (see layers_naive.h).
 * Written for clarity, straight from the formulas; speed does not matter. */
#include "model/layers_naive.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void layer_naive_matmul_forward(double *out, const double *in, const double *w, size_t N, size_t C, size_t OC)
{
    for (size_t n = 0; n < N; n++)
        for (size_t o = 0; o < OC; o++) {
            double s = 0;
            for (size_t c = 0; c < C; c++) s += in[n * C + c] * w[o * C + c];
            out[n * OC + o] = s;
        }
}

void layer_naive_matmul_backward(double *din, double *dw, const double *dout, const double *in,
                                 const double *w, size_t N, size_t C, size_t OC)
{
    for (size_t n = 0; n < N; n++)
        for (size_t o = 0; o < OC; o++) {
            double g = dout[n * OC + o];
            for (size_t c = 0; c < C; c++) {
                if (din) din[n * C + c] += g * w[o * C + c];
                if (dw) dw[o * C + c] += g * in[n * C + c];
            }
        }
}

void layer_naive_rmsnorm_forward(double *out, const double *x, const double *w, size_t N, size_t C, double eps)
{
    for (size_t n = 0; n < N; n++) {
        double ms = 0;
        for (size_t i = 0; i < C; i++) ms += x[n * C + i] * x[n * C + i];
        double r = 1.0 / sqrt(ms / C + eps);
        for (size_t i = 0; i < C; i++) out[n * C + i] = x[n * C + i] * r * w[i];
    }
}

void layer_naive_rmsnorm_backward(double *dx, double *dw, const double *dout, const double *x, const double *w,
                                  size_t N, size_t C, double eps)
{
    for (size_t n = 0; n < N; n++) {
        const double *xr = x + n * C, *g = dout + n * C;
        double ms = 0;
        for (size_t i = 0; i < C; i++) ms += xr[i] * xr[i];
        double r = 1.0 / sqrt(ms / C + eps);
        /* y_i = w_i x_i r;  ∂r/∂x_j = -r³ x_j / C */
        double s = 0;
        for (size_t i = 0; i < C; i++) s += g[i] * w[i] * xr[i];
        for (size_t j = 0; j < C; j++) {
            if (dx) dx[n * C + j] += g[j] * w[j] * r - s * r * r * r * xr[j] / C;
            if (dw) dw[j] += g[j] * xr[j] * r;
        }
    }
}

void layer_naive_rope(double *x, size_t B, size_t T, size_t heads, size_t hd, double theta, int inverse)
{
    size_t half = hd / 2;
    for (size_t b = 0; b < B; b++)
        for (size_t t = 0; t < T; t++)
            for (size_t h = 0; h < heads; h++) {
                double *v = x + ((b * T + t) * heads + h) * hd;
                for (size_t i = 0; i < half; i++) {
                    double a = t * pow(theta, -2.0 * i / hd) * (inverse ? -1 : 1);
                    double x1 = v[i], x2 = v[i + half];
                    v[i] = x1 * cos(a) - x2 * sin(a);
                    v[i + half] = x2 * cos(a) + x1 * sin(a);
                }
            }
}

/* P[b][h][t][s] for s <= t, computed fresh each call (slow, simple). */
static void probs_row(double *p, const double *q, const double *k, size_t b, size_t h, size_t t, size_t T,
                      size_t H, size_t KVH, size_t hd)
{
    size_t kh = h / (H / KVH);
    double mx = -INFINITY, sum = 0;
    for (size_t s = 0; s <= t; s++) {
        double d = 0;
        for (size_t i = 0; i < hd; i++) d += q[((b * T + t) * H + h) * hd + i] * k[((b * T + s) * KVH + kh) * hd + i];
        p[s] = d / sqrt((double)hd);
        if (p[s] > mx) mx = p[s];
    }
    for (size_t s = 0; s <= t; s++) sum += (p[s] = exp(p[s] - mx));
    for (size_t s = 0; s <= t; s++) p[s] /= sum;
}

void layer_naive_attention_forward(double *out, const double *q, const double *k, const double *v, size_t B,
                                   size_t T, size_t H, size_t KVH, size_t hd)
{
    double *p = malloc(T * sizeof(double));
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < H; h++)
            for (size_t t = 0; t < T; t++) {
                probs_row(p, q, k, b, h, t, T, H, KVH, hd);
                size_t kh = h / (H / KVH);
                for (size_t i = 0; i < hd; i++) {
                    double s = 0;
                    for (size_t u = 0; u <= t; u++) s += p[u] * v[((b * T + u) * KVH + kh) * hd + i];
                    out[((b * T + t) * H + h) * hd + i] = s;
                }
            }
    free(p);
}

void layer_naive_attention_backward(double *dq, double *dk, double *dv, const double *dout, const double *q,
                                    const double *k, const double *v, size_t B, size_t T, size_t H,
                                    size_t KVH, size_t hd)
{
    double *p = malloc(T * sizeof(double)), *dp = malloc(T * sizeof(double));
    double sc = 1.0 / sqrt((double)hd);
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < H; h++)
            for (size_t t = 0; t < T; t++) {
                size_t kh = h / (H / KVH);
                const double *go = dout + ((b * T + t) * H + h) * hd;
                probs_row(p, q, k, b, h, t, T, H, KVH, hd);
                double dot = 0;
                for (size_t s = 0; s <= t; s++) {
                    const double *vs = v + ((b * T + s) * KVH + kh) * hd;
                    dp[s] = 0;
                    for (size_t i = 0; i < hd; i++) {
                        dp[s] += go[i] * vs[i];
                        dv[((b * T + s) * KVH + kh) * hd + i] += p[s] * go[i];
                    }
                    dot += p[s] * dp[s];
                }
                for (size_t s = 0; s <= t; s++) {
                    double g = p[s] * (dp[s] - dot) * sc;
                    for (size_t i = 0; i < hd; i++) {
                        dq[((b * T + t) * H + h) * hd + i] += g * k[((b * T + s) * KVH + kh) * hd + i];
                        dk[((b * T + s) * KVH + kh) * hd + i] += g * q[((b * T + t) * H + h) * hd + i];
                    }
                }
            }
    free(p);
    free(dp);
}

void layer_naive_swiglu_forward(double *h, const double *gate, const double *up, size_t n)
{
    for (size_t i = 0; i < n; i++) h[i] = gate[i] / (1 + exp(-gate[i])) * up[i];
}

void layer_naive_swiglu_backward(double *dgate, double *dup, const double *dh, const double *gate,
                                 const double *up, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double s = 1 / (1 + exp(-gate[i]));
        dup[i] += dh[i] * gate[i] * s;
        dgate[i] += dh[i] * up[i] * (s + gate[i] * s * (1 - s));
    }
}

double layer_naive_xent(double *dlogits, const double *logits, const int *targets, size_t N, size_t V,
                        double scale)
{
    double loss = 0;
    for (size_t n = 0; n < N; n++) {
        const double *z = logits + n * V;
        double mx = z[0], sum = 0;
        for (size_t i = 1; i < V; i++) if (z[i] > mx) mx = z[i];
        for (size_t i = 0; i < V; i++) sum += exp(z[i] - mx);
        loss += -(z[targets[n]] - mx - log(sum));
        if (dlogits)
            for (size_t i = 0; i < V; i++)
                dlogits[n * V + i] += scale * (exp(z[i] - mx) / sum - (i == (size_t)targets[n]));
    }
    return loss;
}
