/* attention.c — causal grouped-query attention by work unit (b, kh); see
 * attention.h. Products of one head are tiny (T x T x hd), so instead of many
 * small sgemm calls each row is done with vector registers:
 *   row·matrix  (scores, dP): the matrix is transposed once per unit into
 *               (hd, Tp) so the row's T results sit in vector lanes;
 *   weights·rows (P·V, dS·K and the column sums for dK, dV): the hd-wide
 *               result sits in vector registers across the loop over rows.
 * Only the causal triangle is computed (rounded up to whole vectors). */
#include "model/attention.h"

#include <math.h>
#include <string.h>

#include "model/pool.h"
#include "model/simd.h"

/* T rounded up to whole groups of 4 vectors, so row·matrix may always read 4. */
static size_t padded(size_t T) { return (T + 4 * VW - 1) / (4 * VW) * (4 * VW); }

size_t attn_scratch_floats(attn_dims a)
{
    size_t Tp = padded(a.T);
    return a.hd * Tp + Tp + a.T * a.T;
}

/* bt (hd, Tp) = transpose of the T rows src[s*ld + 0..hd), zero-padded. */
static void transpose(float *bt, const float *src, size_t ld, size_t T, size_t Tp, size_t hd)
{
    for (size_t i = 0; i < hd; i++) {
        float *r = bt + i * Tp;
        for (size_t s = 0; s < T; s++) r[s] = src[s * ld + i];
        for (size_t s = T; s < Tp; s++) r[s] = 0;
    }
}

/* out[j*VW + l] = Σ_i a[i] bt[i][j0*VW + ...] for M vectors starting at j0. */
static inline __attribute__((always_inline)) void rowdot_m(float *out, const float *a, const float *bt,
                                                           size_t hd, size_t Tp, size_t j0, int M)
{
    /* even and odd i in separate accumulators (two dependency chains), added last */
    vf acc[4] = { { 0 }, { 0 }, { 0 }, { 0 } }, acc2[4] = { { 0 }, { 0 }, { 0 }, { 0 } };
    const float *b = bt + j0 * VW;
    size_t i = 0;
    for (; i + 2 <= hd; i += 2, b += 2 * Tp) {
        vf a0 = vbcast(a[i]), a1 = vbcast(a[i + 1]);
        for (int m = 0; m < M; m++) {
            acc[m] += a0 * vload(b + m * VW);
            acc2[m] += a1 * vload(b + Tp + m * VW);
        }
    }
    if (i < hd) {
        vf a0 = vbcast(a[i]);
        for (int m = 0; m < M; m++) acc[m] += a0 * vload(b + m * VW);
    }
    for (int m = 0; m < M; m++) vstore(out + (j0 + (size_t)m) * VW, acc[m] + acc2[m]);
}

/* out[0..n) (and up to the next whole vector) = a · bt[:, 0..n) */
static void rowdot(float *out, const float *a, const float *bt, size_t hd, size_t Tp, size_t n)
{
    size_t nv = (n + VW - 1) / VW;
    for (size_t j0 = 0; j0 < nv; j0 += 4) {
        switch (nv - j0 >= 4 ? 4 : nv - j0) {
        case 4: rowdot_m(out, a, bt, hd, Tp, j0, 4); break;
        case 3: rowdot_m(out, a, bt, hd, Tp, j0, 3); break;
        case 2: rowdot_m(out, a, bt, hd, Tp, j0, 2); break;
        default: rowdot_m(out, a, bt, hd, Tp, j0, 1); break;
        }
    }
}

/* out[i0 .. i0 + M*VW) (+)= Σ_{s<n} w[s*ws] rows[s*ld + i0 + ...] */
static inline __attribute__((always_inline)) void rowacc_m(float *out, const float *w, size_t ws, size_t n,
                                                           const float *rows, size_t ld, size_t i0, int acc,
                                                           int M)
{
    /* even s into r (which starts from out when accumulating), odd s into r2 */
    vf r[4] = { { 0 }, { 0 }, { 0 }, { 0 } }, r2[4] = { { 0 }, { 0 }, { 0 }, { 0 } };
    if (acc)
        for (int m = 0; m < M; m++) r[m] = vload(out + i0 + (size_t)m * VW);
    const float *b = rows + i0;
    size_t s = 0;
    for (; s + 2 <= n; s += 2, b += 2 * ld) {
        vf x0 = vbcast(w[s * ws]), x1 = vbcast(w[(s + 1) * ws]);
        for (int m = 0; m < M; m++) {
            r[m] += x0 * vload(b + m * VW);
            r2[m] += x1 * vload(b + ld + m * VW);
        }
    }
    if (s < n) {
        vf x0 = vbcast(w[s * ws]);
        for (int m = 0; m < M; m++) r[m] += x0 * vload(b + m * VW);
    }
    for (int m = 0; m < M; m++) vstore(out + i0 + (size_t)m * VW, r[m] + r2[m]);
}

/* out[0..hd) = (acc ? out : 0) + Σ_{s<n} w[s*ws] · rows[s*ld + 0..hd): in whole
 * vectors as (init + Σ even s) + Σ odd s, in leftover lanes s ascending */
static void rowacc(float *out, const float *w, size_t ws, size_t n, const float *rows, size_t ld, size_t hd,
                   int acc)
{
    size_t nv = hd / VW, j = 0;
    while (j < nv) {
        size_t m = nv - j >= 4 ? 4 : nv - j;
        switch (m) {
        case 4: rowacc_m(out, w, ws, n, rows, ld, j * VW, acc, 4); break;
        case 3: rowacc_m(out, w, ws, n, rows, ld, j * VW, acc, 3); break;
        case 2: rowacc_m(out, w, ws, n, rows, ld, j * VW, acc, 2); break;
        default: rowacc_m(out, w, ws, n, rows, ld, j * VW, acc, 1); break;
        }
        j += m;
    }
    size_t i0 = nv * VW;
    for (size_t i = i0; i < hd; i++) { /* lanes left over: scalar, same order */
        float x = acc ? out[i] : 0.0f;
        for (size_t s = 0; s < n; s++) x += w[s * ws] * rows[s * ld + i];
        out[i] = x;
    }
}

static inline vi lane_ids(void)
{
    int ids[VW];
    for (int i = 0; i < VW; i++) ids[i] = i;
    vi v;
    memcpy(&v, ids, sizeof v);
    return v;
}

/* p[0..T) = causal softmax of scale·row[0..t] (zeros after t). row holds whole
 * vectors up to t and is used as scratch. The sum runs over lanes, then the
 * lanes are added pairwise: a fixed order. */
static void softmax_row(float *p, float *row, size_t t, size_t T, float scale)
{
    const size_t nv = (t + VW) / VW; /* vectors covering 0..t */
    const vi ids = lane_ids(), last = (vi){ 0 } + (int)t;
    vf vmx = vbcast(-INFINITY), acc = { 0 };
    for (size_t j = 0; j < nv; j++) {
        vi live = ids + (int)(j * VW) <= last;
        vf x = vselect(live, vload(row + j * VW) * scale, vbcast(-INFINITY));
        vstore(row + j * VW, x);
        vmx = vselect(x > vmx, x, vmx);
    }
    const float mx = vmax(vmx);
    for (size_t j = 0; j < nv; j++) {
        vi live = ids + (int)(j * VW) <= last;
        vf e = vselect(live, vexp(vload(row + j * VW) - mx), vbcast(0)); /* exp(-inf) would be FLT_MIN */
        vstore(row + j * VW, e);
        acc += e;
    }
    const float inv = 1.0f / vsum(acc);
    size_t s = 0;
    for (; s + VW <= T; s += VW) vstore(p + s, s < nv * VW ? vload(row + s) * inv : vbcast(0));
    for (; s < T; s++) p[s] = s <= t ? row[s] * inv : 0.0f;
}

void attn_forward_unit(float *out, float *probs, float *scratch, const float *q, const float *k,
                       const float *v, attn_dims a, size_t b, size_t kh)
{
    const size_t T = a.T, hd = a.hd, LQ = a.ldq, LK = a.ldkv, LO = a.ldo, group = a.H / a.KVH, Tp = padded(T);
    const float scale = 1.0f / sqrtf((float)hd);
    float *kt = scratch, *row = scratch + hd * Tp;
    const float *vb = v + b * T * LK + kh * hd;
    transpose(kt, k + b * T * LK + kh * hd, LK, T, Tp, hd);
    for (size_t h = kh * group; h < (kh + 1) * group; h++)
        for (size_t t = 0; t < T; t++) {
            const float *qt = q + (b * T + t) * LQ + h * hd;
            float *p = probs + ((b * a.H + h) * T + t) * T;
            rowdot(row, qt, kt, hd, Tp, t + 1);
            softmax_row(p, row, t, T, scale);
            rowacc(out + (b * T + t) * LO + h * hd, p, 1, t + 1, vb, LK, hd, 0);
        }
}

void attn_backward_unit(float *dq, float *dk, float *dv, float *scratch, const float *dout, const float *probs,
                        const float *q, const float *k, const float *v, attn_dims a, size_t b, size_t kh)
{
    const size_t T = a.T, hd = a.hd, LQ = a.ldq, LK = a.ldkv, LO = a.ldo, group = a.H / a.KVH, Tp = padded(T);
    const float scale = 1.0f / sqrtf((float)hd);
    float *vt = scratch, *row = scratch + hd * Tp, *dS = row + Tp;
    const float *kb = k + b * T * LK + kh * hd;
    transpose(vt, v + b * T * LK + kh * hd, LK, T, Tp, hd);
    for (size_t h = kh * group; h < (kh + 1) * group; h++) {
        const float *P = probs + (b * a.H + h) * T * T;
        const float *go = dout + b * T * LO + h * hd, *qh = q + b * T * LQ + h * hd;
        for (size_t t = 0; t < T; t++) {
            const float *p = P + t * T;
            float *ds = dS + t * T;
            rowdot(row, go + t * LO, vt, hd, Tp, t + 1); /* dP[t][s] = dO[t]·V[s] */
            float pdp = 0;
            for (size_t s = 0; s <= t; s++) pdp += p[s] * row[s];
            for (size_t s = 0; s <= t; s++) ds[s] = p[s] * (row[s] - pdp) * scale;
            rowacc(dq + (b * T + t) * LQ + h * hd, ds, 1, t + 1, kb, LK, hd, 0); /* dQ[t] = Σ dS[t][s] K[s] */
        }
        /* dK[s] (+)= Σ_{t≥s} dS[t][s] Q[t],  dV[s] (+)= Σ_{t≥s} P[t][s] dO[t]; heads in order */
        int acc = h != kh * group;
        for (size_t s = 0; s < T; s++) {
            float *dks = dk + (b * T + s) * LK + kh * hd, *dvs = dv + (b * T + s) * LK + kh * hd;
            rowacc(dks, dS + s * T + s, T, T - s, qh + s * LQ, LQ, hd, acc);
            rowacc(dvs, P + s * T + s, T, T - s, go + s * LO, LO, hd, acc);
        }
    }
}

/* ---- all units over the pool, one item per (b, kh), scratch per worker ---- */
typedef struct {
    float *out, *probs, *dq, *dk, *dv;
    const float *dout, *cprobs, *q, *k, *v;
    attn_dims a;
} attn_job;

static void fwd_item(void *ctx, size_t i, int worker)
{
    attn_job *j = ctx;
    float *scratch = pool_scratch(worker, attn_scratch_floats(j->a));
    attn_forward_unit(j->out, j->probs, scratch, j->q, j->k, j->v, j->a, i / j->a.KVH, i % j->a.KVH);
}

static void bwd_item(void *ctx, size_t i, int worker)
{
    attn_job *j = ctx;
    float *scratch = pool_scratch(worker, attn_scratch_floats(j->a));
    attn_backward_unit(j->dq, j->dk, j->dv, scratch, j->dout, j->cprobs, j->q, j->k, j->v, j->a, i / j->a.KVH,
                       i % j->a.KVH);
}

void attn_forward(float *out, float *probs, const float *q, const float *k, const float *v, attn_dims a)
{
    attn_job j = { .out = out, .probs = probs, .q = q, .k = k, .v = v, .a = a };
    pool_for(a.B * a.KVH, fwd_item, &j);
}

void attn_backward(float *dq, float *dk, float *dv, const float *dout, const float *probs, const float *q,
                   const float *k, const float *v, attn_dims a)
{
    attn_job j = { .dq = dq, .dk = dk, .dv = dv, .dout = dout, .cprobs = probs, .q = q, .k = k, .v = v, .a = a };
    pool_for(a.B * a.KVH, bwd_item, &j);
}
