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
    return 2 * a.hd * Tp + 2 * TB * TB + 8 * TB; /* forward: a.hd·Tp + 2·TB·TB + 2·TB */
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

/* Register tiles of R rows (R <= 4) x M vectors (M <= 4): one vector load
 * feeds R multiply-adds. Each (row, vector) accumulates in one chain, in a
 * fixed order (i or s ascending), whatever R and M are, so a row's result does
 * not depend on which rows share its tile. The loops over R and M are
 * unrolled whole, so the R·M accumulators live in vector registers (at -O2
 * GCC kept them in memory, a load and a store per multiply-add: attention ran
 * at a quarter of the sgemm rate); unrolling changes no operation nor its
 * order. */

/* Scores: out[r·TB + j0·VW + ...] = Σ_i a_r[i] · bt[i][j0·VW + ...] for rows
 * a_r = a + r·lda, M vectors from vector j0 of bt (hd, Tp). */
static inline __attribute__((always_inline)) void scores_rm(float *out, const float *a, size_t lda,
                                                            const float *bt, size_t hd, size_t Tp, size_t j0,
                                                            int R, int M)
{
    vf acc[4][4];
    _Pragma("GCC unroll 4")
    for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4")
        for (int m = 0; m < M; m++) acc[r][m] = vbcast(0);
    const float *b = bt + j0 * VW;
    for (size_t i = 0; i < hd; i++, b += Tp) {
        vf x[4];
        _Pragma("GCC unroll 4")
        for (int m = 0; m < M; m++) x[m] = vload(b + m * VW);
        _Pragma("GCC unroll 4")
        for (int r = 0; r < R; r++) {
            vf ar = vbcast(a[r * lda + i]);
            _Pragma("GCC unroll 4")
            for (int m = 0; m < M; m++) acc[r][m] += ar * x[m];
        }
    }
    _Pragma("GCC unroll 4")
    for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4")
        for (int m = 0; m < M; m++) vstore(out + r * TB + (j0 + (size_t)m) * VW, acc[r][m]);
}

#define RM_SWITCH(R, M, call) \
    switch ((R) * 4 + (M)) { \
    case 5: call(1, 1); break; case 6: call(1, 2); break; case 7: call(1, 3); break; case 8: call(1, 4); break; \
    case 9: call(2, 1); break; case 10: call(2, 2); break; case 11: call(2, 3); break; case 12: call(2, 4); break; \
    case 13: call(3, 1); break; case 14: call(3, 2); break; case 15: call(3, 3); break; \
    case 16: call(3, 4); break; case 17: call(4, 1); break; case 18: call(4, 2); break; \
    case 19: call(4, 3); break; default: call(4, 4); break; \
    }

/* Rows a_r = a + r·lda (r < R) against bt: out row r (TB floats apart), nv
 * vectors from the tile's start bt. */
static void scores(float *out, const float *a, size_t lda, const float *bt, size_t hd, size_t Tp, size_t nv, int R)
{
    for (size_t j0 = 0; j0 < nv; j0 += 4) {
        int M = nv - j0 >= 4 ? 4 : (int)(nv - j0);
#define SC(r, m) scores_rm(out, a, lda, bt, hd, Tp, j0, r, m)
        RM_SWITCH(R, M, SC)
#undef SC
    }
}

/* Weighted rows: out_r[i0 .. i0 + M·VW) = (init ? out_r : 0) + Σ_{s<n} w[r·wr +
 * s·ws] · rows[s·ld + i0 + ...] for out_r = out + r·ldo, r < R. */
static inline __attribute__((always_inline)) void wrows_rm(float *out, size_t ldo, const float *w, size_t wr,
                                                           size_t ws, size_t n, const float *rows, size_t ld,
                                                           size_t i0, int init, int R, int M)
{
    vf acc[4][4];
    _Pragma("GCC unroll 4")
    for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4")
        for (int m = 0; m < M; m++) acc[r][m] = init ? vload(out + r * ldo + i0 + (size_t)m * VW) : vbcast(0);
    const float *b = rows + i0;
    for (size_t s = 0; s < n; s++, b += ld) {
        vf x[4];
        _Pragma("GCC unroll 4")
        for (int m = 0; m < M; m++) x[m] = vload(b + m * VW);
        _Pragma("GCC unroll 4")
        for (int r = 0; r < R; r++) {
            vf wv = vbcast(w[r * wr + s * ws]);
            _Pragma("GCC unroll 4")
            for (int m = 0; m < M; m++) acc[r][m] += wv * x[m];
        }
    }
    _Pragma("GCC unroll 4")
    for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4")
        for (int m = 0; m < M; m++) vstore(out + r * ldo + i0 + (size_t)m * VW, acc[r][m]);
}

/* wrows_rm over a whole row of hd floats (4 vectors at a time, then the
 * lanes left over, scalar in the same order). */
static void wrows(float *out, size_t ldo, const float *w, size_t wr, size_t ws, size_t n, const float *rows,
                  size_t ld, size_t hd, int init, int R)
{
    size_t nv = hd / VW;
    for (size_t j = 0; j < nv; j += 4) {
        int M = nv - j >= 4 ? 4 : (int)(nv - j);
#define WR(r, m) wrows_rm(out, ldo, w, wr, ws, n, rows, ld, j * VW, init, r, m)
        RM_SWITCH(R, M, WR)
#undef WR
    }
    for (int r = 0; r < R; r++)
        for (size_t i = nv * VW; i < hd; i++) {
            float x = init ? out[r * ldo + i] : 0.0f;
            for (size_t s = 0; s < n; s++) x += w[r * wr + s * ws] * rows[s * ld + i];
            out[r * ldo + i] = x;
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
 * readable): p[0..n) = exp(scale·s - m'), lanes from n up to vector nz 0,
 * where m' = max(*m, scale·s); *l = *l·α + Σ p with α = exp(*m - m') (0 on the
 * row's first tile); *m = m'. Returns α. Lane sums, then the lanes pairwise: a
 * fixed order. */
static float online_softmax(float *p, const float *s, size_t n, size_t nz, float scale, float *m, float *l)
{
    const size_t nv = (n + VW - 1) / VW;
    for (size_t j = nv; j < nz; j++) vstore(p + j * VW, vbcast(0));
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
    float *kt = scratch, *S = kt + hd * Tp, *p = S + TB * TB, *m = p + TB * TB, *l = m + TB;
    const float *vb = v + b * T * LK + kh * hd;
    transpose(kt, k + b * T * LK + kh * hd, LK, T, Tp, hd);
    for (size_t h = kh * group; h < (kh + 1) * group; h++)
        for (size_t i0 = 0; i0 < T; i0 += TB) {
            const size_t ni = min_sz(TB, T - i0);
            for (size_t r = 0; r < ni; r++) m[r] = -INFINITY, l[r] = 0;
            for (size_t j0 = 0; j0 <= i0; j0 += TB) /* key tiles after i0's are all masked */
                for (size_t r0 = 0; r0 < ni; r0 += 4) {
                    const int R = ni - r0 >= 4 ? 4 : (int)(ni - r0);
                    /* the group's last row sees the most keys */
                    const size_t nmax = min_sz(TB, i0 + r0 + (size_t)R - j0), nz = (nmax + VW - 1) / VW;
                    float *o = out + (b * T + i0 + r0) * LO + h * hd;
                    scores(S + r0 * TB, q + (b * T + i0 + r0) * LQ + h * hd, LQ, kt + j0, hd, Tp, nz, R);
                    for (int r = 0; r < R; r++) {
                        const size_t t = i0 + r0 + (size_t)r, n = min_sz(TB, t + 1 - j0);
                        float alpha = online_softmax(p + (r0 + (size_t)r) * TB, S + (r0 + (size_t)r) * TB, n, nz,
                                                     scale, m + r0 + r, l + r0 + r);
                        if (j0) scale_row(o + (size_t)r * LO, alpha, hd);
                    }
                    wrows(o, LO, p + r0 * TB, TB, 1, nmax, vb + j0 * LK, LK, hd, j0 != 0, R);
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
          *dp = s + 4 * TB;
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
                for (size_t r0 = 0; r0 < ni; r0 += 4) {
                    const int R = ni - r0 >= 4 ? 4 : (int)(ni - r0);
                    const size_t t0 = i0 + r0, nmax = min_sz(nj, t0 + (size_t)R - j0), nz = (nmax + VW - 1) / VW;
                    scores(s, qh + t0 * LQ, LQ, kt + j0, hd, Tp, nz, R);  /* S[t][s] = Q[t]·K[s] */
                    scores(dp, go + t0 * LO, LO, vt + j0, hd, Tp, nz, R); /* dP[t][s] = dO[t]·V[s] */
                    for (int r = 0; r < R; r++) {
                        const size_t t = t0 + (size_t)r, n = min_sz(nj, t + 1 - j0);
                        probs_dscores(P + (r0 + (size_t)r) * TB, dS + (r0 + (size_t)r) * TB, s + (size_t)r * TB,
                                      dp + (size_t)r * TB, n, scale, L[t], D[t]);
                    }
                    /* dQ[t] += Σ_s dS[t][s] K[s] */
                    wrows(dq + (b * T + t0) * LQ + h * hd, LQ, dS + r0 * TB, TB, 1, nmax, kb + j0 * LK, LK, hd, 1, R);
                }
                /* dK[s] += Σ_r dS[r][s] Q[r], dV[s] += Σ_r P[r][s] dO[r] over the rows r the
                 * causal mask leaves (from the group's first column on in the diagonal
                 * tile; P and dS are 0 above the diagonal) */
                for (size_t c = 0; c < nj; c += 4) {
                    const int R = nj - c >= 4 ? 4 : (int)(nj - c);
                    const size_t r0 = i0 == j0 ? c : 0;
                    if (r0 >= ni) continue;
                    float *dks = dk + (b * T + j0 + c) * LK + kh * hd, *dvs = dv + (b * T + j0 + c) * LK + kh * hd;
                    wrows(dks, LK, dS + r0 * TB + c, 1, TB, ni - r0, qh + (i0 + r0) * LQ, LQ, hd, 1, R);
                    wrows(dvs, LK, P + r0 * TB + c, 1, TB, ni - r0, go + (i0 + r0) * LO, LO, hd, 1, R);
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
