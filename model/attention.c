/* attention.c — causal grouped-query attention by work unit (b, kh), in the
 * FlashAttention-2 way: nothing of size T x T is ever stored. The forward
 * walks key tiles of TB positions with an online softmax (a running maximum
 * m and sum l per query row, the output rescaled as m grows) and keeps only
 * the output and each row's log-sum-exp m + log l; the backward recomputes
 * the probabilities tile by tile from q, k and the log-sum-exp. Tiles wholly
 * above the diagonal are skipped. See attention.h.
 *
 * Products of one head are tiny (TB x TB x hd), so instead of many small
 * sgemm calls each row is done with vector registers:
 *   row·matrix  (scores, dP): k and v are transposed once per unit into
 *               (hd, Tp) so a row's TB results sit in vector lanes;
 *   weights·rows (P·V, dS·K and the column sums for dK, dV): the hd-wide
 *               result sits in vector registers across the loop over rows.
 * A key tile (TB x hd of k transposed, and of v) stays in L1 across the TB
 * query rows of a tile. Every sum runs in an order fixed by the shapes alone.
 * Not here: dropout, masks other than causal, sequences of unequal length. */
#include "model/attention.h"

#include <math.h>
#include <string.h>

#include "model/pool.h"
#include "model/simd.h"

/* Query rows and key positions per tile: a multiple of 4 vectors (VW <= 16),
 * so query and key tiles share their boundaries and only the diagonal tile is
 * partly masked. */
enum { TB = 64 };

/* T rounded up to whole groups of 4 vectors, so row·matrix may always read 4. */
static size_t padded(size_t T) { return (T + 4 * VW - 1) / (4 * VW) * (4 * VW); }

size_t attn_scratch_floats(attn_dims a)
{
    size_t Tp = padded(a.T);
    return 2 * a.hd * Tp + 2 * TB * TB + 2 * TB;
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


static inline size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

/* One row's step of the online softmax over n scores s[0..n) (whole vectors
 * readable): p[0..n) = exp(scale·s - m'), lanes from n up to the next whole
 * vector 0, where m' = max(*m, scale·s); *l = *l·α + Σ p with α = exp(*m - m')
 * (0 on the row's first tile); *m = m'. Returns α. Lane sums, then the lanes
 * pairwise: a fixed order. */
static float online_softmax(float *p, const float *s, size_t n, float scale, float *m, float *l)
{
    const size_t nv = (n + VW - 1) / VW;
    const vi ids = lane_ids(), lim = (vi){ 0 } + (int)n;
    vf vmx = vbcast(-INFINITY), acc = { 0 };
    for (size_t j = 0; j < nv; j++) {
        vi live = ids + (int)(j * VW) < lim;
        vf x = vselect(live, vload(s + j * VW) * scale, vbcast(-INFINITY));
        vstore(p + j * VW, x);
        vmx = vselect(x > vmx, x, vmx);
    }
    const float mx = vmax(vmx), mo = *m, mn = mo > mx ? mo : mx;
    for (size_t j = 0; j < nv; j++) {
        vi live = ids + (int)(j * VW) < lim;
        vf e = vselect(live, vexp(vload(p + j * VW) - mn), vbcast(0)); /* exp(-inf) would be FLT_MIN */
        vstore(p + j * VW, e);
        acc += e;
    }
    const float alpha = mo == -INFINITY ? 0.0f : lane0f(vexp(vbcast(mo - mn)));
    *l = *l * alpha + vsum(acc);
    *m = mn;
    return alpha;
}

/* o[0..hd) *= f */
static void scale_row(float *o, float f, size_t hd)
{
    size_t i = 0;
    for (; i + VW <= hd; i += VW) vstore(o + i, vload(o + i) * f);
    for (; i < hd; i++) o[i] *= f;
}

/* a[0..n) · b[0..n): lanes, then the lanes pairwise, then the tail in order */
static float dot(const float *a, const float *b, size_t n)
{
    vf acc = { 0 };
    size_t i = 0;
    for (; i + VW <= n; i += VW) acc += vload(a + i) * vload(b + i);
    float r = vsum(acc);
    for (; i < n; i++) r += a[i] * b[i];
    return r;
}

void attn_forward_unit(float *out, float *lse, float *scratch, const float *q, const float *k, const float *v,
                       attn_dims a, size_t b, size_t kh)
{
    const size_t T = a.T, hd = a.hd, LQ = a.ldq, LK = a.ldkv, LO = a.ldo, group = a.H / a.KVH, Tp = padded(T);
    const float scale = 1.0f / sqrtf((float)hd);
    float *kt = scratch, *s = kt + hd * Tp, *p = s + TB, *m = p + TB, *l = m + TB;
    const float *vb = v + b * T * LK + kh * hd;
    transpose(kt, k + b * T * LK + kh * hd, LK, T, Tp, hd);
    for (size_t h = kh * group; h < (kh + 1) * group; h++)
        for (size_t i0 = 0; i0 < T; i0 += TB) {
            const size_t ni = min_sz(TB, T - i0);
            for (size_t r = 0; r < ni; r++) m[r] = -INFINITY, l[r] = 0;
            for (size_t j0 = 0; j0 <= i0; j0 += TB) /* key tiles after i0's are all masked */
                for (size_t r = 0; r < ni; r++) {
                    const size_t t = i0 + r, n = min_sz(TB, t + 1 - j0);
                    float *o = out + (b * T + t) * LO + h * hd;
                    rowdot(s, q + (b * T + t) * LQ + h * hd, kt + j0, hd, Tp, n);
                    float alpha = online_softmax(p, s, n, scale, m + r, l + r);
                    if (j0) scale_row(o, alpha, hd);
                    rowacc(o, p, 1, n, vb + j0 * LK, LK, hd, j0 != 0);
                }
            for (size_t r = 0; r < ni; r++) {
                const size_t t = i0 + r;
                scale_row(out + (b * T + t) * LO + h * hd, 1.0f / l[r], hd);
                lse[(b * a.H + h) * T + t] = m[r] + logf(l[r]);
            }
        }
}

void attn_dsum_unit(float *dsum, const float *dout, const float *out, attn_dims a, size_t b, size_t kh)
{
    const size_t T = a.T, hd = a.hd, group = a.H / a.KVH;
    for (size_t h = kh * group; h < (kh + 1) * group; h++)
        for (size_t t = 0; t < T; t++)
            dsum[(b * a.H + h) * T + t] =
                dot(dout + (b * T + t) * a.ldo + h * hd, out + (b * T + t) * a.ldo + h * hd, hd);
}

/* Row r of a (query tile, key tile) pair in the backward: P[0..n) =
 * exp(scale·s - lse), dS[0..n) = P ⊙ (dP - D)·scale, both 0 in the lanes from n
 * to the tile's end (TB). s and dp hold the raw scores and dO·Vᵀ. */
static void probs_dscores(float *P, float *dS, const float *s, const float *dp, size_t n, float scale,
                          float lse, float D)
{
    const vi ids = lane_ids(), lim = (vi){ 0 } + (int)n;
    for (size_t j = 0; j < TB / VW; j++) {
        vi live = ids + (int)(j * VW) < lim;
        if (j * VW >= n) {
            vstore(P + j * VW, vbcast(0));
            vstore(dS + j * VW, vbcast(0));
            continue;
        }
        vf e = vselect(live, vexp(vload(s + j * VW) * scale - lse), vbcast(0));
        vstore(P + j * VW, e);
        vstore(dS + j * VW, vselect(live, e * (vload(dp + j * VW) - D) * scale, vbcast(0)));
    }
}

void attn_backward_unit(float *dq, float *dk, float *dv, float *scratch, const float *dout, const float *lse,
                        const float *dsum, const float *q, const float *k, const float *v, attn_dims a, size_t b,
                        size_t kh)
{
    const size_t T = a.T, hd = a.hd, LQ = a.ldq, LK = a.ldkv, LO = a.ldo, group = a.H / a.KVH, Tp = padded(T);
    const float scale = 1.0f / sqrtf((float)hd);
    float *kt = scratch, *vt = kt + hd * Tp, *P = vt + hd * Tp, *dS = P + TB * TB, *s = dS + TB * TB,
          *dp = s + TB;
    const float *kb = k + b * T * LK + kh * hd;
    transpose(kt, kb, LK, T, Tp, hd);
    transpose(vt, v + b * T * LK + kh * hd, LK, T, Tp, hd);
    for (size_t t = 0; t < T; t++) {
        for (size_t h = kh * group; h < (kh + 1) * group; h++)
            memset(dq + (b * T + t) * LQ + h * hd, 0, hd * sizeof(float));
        memset(dk + (b * T + t) * LK + kh * hd, 0, hd * sizeof(float));
        memset(dv + (b * T + t) * LK + kh * hd, 0, hd * sizeof(float));
    }
    /* key tiles outer, so dK and dV of a tile are summed over (head, query
     * tile, row) in that order while they are hot; dQ rows over key tiles */
    for (size_t j0 = 0; j0 < T; j0 += TB) {
        const size_t nj = min_sz(TB, T - j0);
        for (size_t h = kh * group; h < (kh + 1) * group; h++) {
            const float *L = lse + (b * a.H + h) * T, *D = dsum + (b * a.H + h) * T;
            const float *go = dout + b * T * LO + h * hd, *qh = q + b * T * LQ + h * hd;
            for (size_t i0 = j0; i0 < T; i0 += TB) {
                const size_t ni = min_sz(TB, T - i0);
                for (size_t r = 0; r < ni; r++) {
                    const size_t t = i0 + r, n = min_sz(nj, t + 1 - j0);
                    rowdot(s, qh + t * LQ, kt + j0, hd, Tp, n);  /* S[t][s] = Q[t]·K[s] */
                    rowdot(dp, go + t * LO, vt + j0, hd, Tp, n); /* dP[t][s] = dO[t]·V[s] */
                    probs_dscores(P + r * TB, dS + r * TB, s, dp, n, scale, L[t], D[t]);
                    rowacc(dq + (b * T + t) * LQ + h * hd, dS + r * TB, 1, n, kb + j0 * LK, LK, hd, 1);
                }
                /* dK[s] += Σ_r dS[r][s] Q[r], dV[s] += Σ_r P[r][s] dO[r] over the rows r the
                 * causal mask leaves (from s on in the diagonal tile) */
                for (size_t c = 0; c < nj; c++) {
                    const size_t r0 = i0 == j0 ? c : 0;
                    if (r0 >= ni) continue;
                    float *dks = dk + (b * T + j0 + c) * LK + kh * hd, *dvs = dv + (b * T + j0 + c) * LK + kh * hd;
                    rowacc(dks, dS + r0 * TB + c, TB, ni - r0, qh + (i0 + r0) * LQ, LQ, hd, 1);
                    rowacc(dvs, P + r0 * TB + c, TB, ni - r0, go + (i0 + r0) * LO, LO, hd, 1);
                }
            }
        }
    }
}

/* ---- all units over the pool, one item per (b, kh), scratch per worker ---- */
typedef struct {
    float *out, *lse, *dq, *dk, *dv, *dsum;
    const float *dout, *cout, *clse, *q, *k, *v;
    attn_dims a;
} attn_job;

static void fwd_item(void *ctx, size_t i, int worker)
{
    attn_job *j = ctx;
    float *scratch = pool_scratch(worker, attn_scratch_floats(j->a));
    attn_forward_unit(j->out, j->lse, scratch, j->q, j->k, j->v, j->a, i / j->a.KVH, i % j->a.KVH);
}

static void dsum_item(void *ctx, size_t i, int worker)
{
    (void)worker;
    attn_job *j = ctx;
    attn_dsum_unit(j->dsum, j->dout, j->cout, j->a, i / j->a.KVH, i % j->a.KVH);
}

static void bwd_item(void *ctx, size_t i, int worker)
{
    attn_job *j = ctx;
    float *scratch = pool_scratch(worker, attn_scratch_floats(j->a));
    attn_backward_unit(j->dq, j->dk, j->dv, scratch, j->dout, j->clse, j->dsum, j->q, j->k, j->v, j->a,
                       i / j->a.KVH, i % j->a.KVH);
}

void attn_forward(float *out, float *lse, const float *q, const float *k, const float *v, attn_dims a)
{
    attn_job j = { .out = out, .lse = lse, .q = q, .k = k, .v = v, .a = a };
    pool_for(a.B * a.KVH, fwd_item, &j);
}

void attn_backward(float *dq, float *dk, float *dv, float *dsum, const float *dout, const float *out,
                   const float *lse, const float *q, const float *k, const float *v, attn_dims a)
{
    attn_job j = { .dq = dq, .dk = dk, .dv = dv, .dsum = dsum, .dout = dout, .cout = out, .clse = lse,
                   .q = q, .k = k, .v = v, .a = a };
    pool_for(a.B * a.KVH, dsum_item, &j); /* all of D first: dq may be laid over out (views.h) */
    pool_for(a.B * a.KVH, bwd_item, &j);
}
