/* sched_balance.c — the automatic stage balancer (see sched_balance.h): a DP over
 * split points for the least bottleneck under a memory bound, the near-optimal
 * splits listed from the same table, and the simulator choosing among them.
 *
 * The DP's cell SUF(s, i) = min over j of max(A(j), B(j)), A(j) the cost of
 * stage s on [i, j) (nondecreasing in j: prefix sums of non-negative costs),
 * B(j) = SUF(s + 1, j) (any shape: stage speeds and peaks differ, so B need not
 * be monotone), j up to the last j whose range fits (the memory bound only grows
 * with the range). That min equals min over k of max(A(k), min B(i+1 .. k)):
 * the max of a nondecreasing and a nonincreasing function of k, least where they
 * cross, found by binary search with range minima of B from a sparse table —
 * O(P·U·log U) instead of the O(P·U²) scan, and the same doubles (only
 * comparisons differ). Inputs the argument does not cover (a negative, NaN or
 * infinite cost, byte count or speed) and in->exhaustive take the plain scan. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/sched_balance.h"

typedef struct {
    const sched_balance_in *in;
    int P, U;
    double *pre;     /* (U+1) prefix sums of f+b+w */
    double *pst, *pstash, *pwork; /* (U+1) prefix sums of static, stash, work */
    int *peak;       /* (P) micro-batches in flight at the schedule's peak */
    double *suf;     /* ((P+1) x (U-P+1)) least bottleneck of stages s.. on units i.., for the
                      * i a split can reach, s <= i <= U-P+s (SUF); INFINITY elsewhere (suf_at) */
    double thr;
    int fast;        /* the O(P·U·log U) DP (see the top), else the plain scan */
    long long probes; /* split points the DP tried (plan's n_probes) */
    int lg;          /* levels of the sparse tables: 2^(lg-1) <= U + 1 */
    double *tmax;    /* (lg x U) sparse table of the largest fwd_tmp (fast with a limit) */
    double *bmin;    /* (lg x (U+1)) sparse table of the least SUF(s + 1, .) (fast) */
    int *cur;        /* (P+1) the split being listed */
    int n_list;      /* splits listed so far (at most max_list), in listing order */
    /* the top_k listed of least (bottleneck, listing index): a max-heap of slots,
     * each split stored as a bitset of its cut points (bit u: a stage starts at
     * unit u), so memory is top_k x U/8 bytes, not max_list x (P+1) ints */
    int cap, n_keep; /* slots (top_k), slots used */
    size_t kb;       /* bytes of one slot's bitset */
    int *heap;       /* (cap) slots, the largest key at 0 */
    double *keep_bn; /* (cap) each slot's bottleneck */
    int *keep_idx;   /* (cap) each slot's listing index */
    unsigned char *keep; /* (cap x kb) each slot's cut points */
} bal;

static double speed(const bal *x, int s) { return x->in->speed ? x->in->speed[s] : 1.0; }

static double range_cost(const bal *x, int s, int a, int b) { return (x->pre[b] - x->pre[a]) / speed(x, s); }

/* Level k of a sparse table of n entries: entry i covers [i, i + 2^k). */
#define SPT(t, n, k, i) ((t)[(size_t)(k) * (size_t)(n) + (size_t)(i)])

static int floor_log2(int n) { return 31 - __builtin_clz((unsigned)n); }

/* The largest fwd_tmp of units a .. b-1 (a < b), from the table. */
static double tmp_max(const bal *x, int a, int b)
{
    int k = floor_log2(b - a);
    return fmax(SPT(x->tmax, x->U, k, a), SPT(x->tmax, x->U, k, b - (1 << k)));
}

/* The DP's memory bound of stage s holding [a, b) (see the header); 1 when it fits. */
static int fits(const bal *x, int s, int a, int b)
{
    if (x->in->mem_limit <= 0) return 1;
    double tmp = 0;
    if (x->tmax) tmp = fmax(tmp, tmp_max(x, a, b));
    else
        for (int u = a; u < b; u++) tmp = fmax(tmp, x->in->fwd_tmp ? x->in->fwd_tmp[u] : 0);
    double m = x->pst[b] - x->pst[a] + x->peak[s] * (x->pstash[b] - x->pstash[a]) + x->pwork[b] - x->pwork[a] + tmp;
    return m <= x->in->mem_limit;
}

/* Row s of the table holds i = s .. U-P+s: before s units, stages 0..s-1 cannot
 * all hold one; after U-P+s, stages s..P-1 cannot. The band is all any caller
 * reads but bmin's fill, which takes suf_at. */
#define SUF_W(x) ((size_t)((x)->U - (x)->P + 1))
#define SUF(x, s, i) ((x)->suf[(size_t)(s) * SUF_W(x) + (size_t)((i) - (s))])

static double suf_at(const bal *x, int s, int i)
{
    return i >= s && (size_t)(i - s) < SUF_W(x) ? SUF(x, s, i) : INFINITY;
}

/* The least SUF(s + 1, j) over j in [a, b] (a <= b), from x->bmin. */
static double b_min(const bal *x, int a, int b)
{
    int k = floor_log2(b - a + 1);
    return fmin(SPT(x->bmin, x->U + 1, k, a), SPT(x->bmin, x->U + 1, k, b + 1 - (1 << k)));
}

/* The last j in (i, hi] with fits(s, i, j) (the bound grows with j), or i. */
static int last_fit(bal *x, int s, int i, int hi)
{
    if (x->in->mem_limit <= 0) return hi;
    int lo = i; /* fits(s, i, lo) holds, or lo == i; fits(s, i, hi + 1) does not */
    while (lo < hi) {
        x->probes++;
        int mid = lo + (hi - lo + 1) / 2;
        if (fits(x, s, i, mid)) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* SUF(s, i) = min over k in (i, kmax] of F(k) = max(A(k), min B(i+1 .. k)) (see the
 * top): the first k where A reaches the running minimum of B, or the one before. */
static double cell(bal *x, int s, int i, int kmax)
{
    int lo = i + 1, hi = kmax + 1; /* the first k with A(k) >= M(k), or kmax + 1 */
    while (lo < hi) {
        x->probes++;
        int mid = lo + (hi - lo) / 2;
        if (range_cost(x, s, i, mid) >= b_min(x, i + 1, mid)) hi = mid;
        else lo = mid + 1;
    }
    double v = INFINITY;
    if (lo <= kmax) v = fmax(range_cost(x, s, i, lo), b_min(x, i + 1, lo));
    if (lo - 1 > i) v = fmin(v, fmax(range_cost(x, s, i, lo - 1), b_min(x, i + 1, lo - 1)));
    return v;
}

static void fill_suffix(bal *x)
{
    int P = x->P, U = x->U, n = U + 1;
    for (size_t i = 0; i < (size_t)(P + 1) * SUF_W(x); i++) x->suf[i] = INFINITY;
    SUF(x, P, U) = 0;
    for (int s = P - 1; s >= 0; s--) {
        if (!x->fast) {
            for (int i = s; i <= U - (P - s); i++)
                for (int j = i + 1; j <= U - (P - 1 - s); j++) {
                    x->probes++;
                    if (!isfinite(SUF(x, s + 1, j)) || !fits(x, s, i, j)) continue;
                    double v = fmax(range_cost(x, s, i, j), SUF(x, s + 1, j));
                    if (v < SUF(x, s, i)) SUF(x, s, i) = v;
                }
            continue;
        }
        for (int j = 0; j < n; j++) SPT(x->bmin, n, 0, j) = suf_at(x, s + 1, j);
        for (int k = 1; k < x->lg; k++)
            for (int j = 0; j + (1 << k) <= n; j++)
                SPT(x->bmin, n, k, j) = fmin(SPT(x->bmin, n, k - 1, j), SPT(x->bmin, n, k - 1, j + (1 << (k - 1))));
        for (int i = s; i <= U - (P - s); i++) {
            int kmax = last_fit(x, s, i, U - (P - 1 - s));
            if (kmax > i) SUF(x, s, i) = cell(x, s, i, kmax);
        }
    }
}

/* The last j in (i, hi] whose range alone keeps stage s within thr, or i. */
static int last_within(const bal *x, int s, int i, int hi)
{
    int lo = i;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (range_cost(x, s, i, mid) <= x->thr) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* Slot a's key (bottleneck, listing index) is below slot b's: the simulation order. */
static int key_less(const bal *x, int a, int b)
{
    if (x->keep_bn[a] != x->keep_bn[b]) return x->keep_bn[a] < x->keep_bn[b];
    return x->keep_idx[a] < x->keep_idx[b];
}

static void heap_down(bal *x, int k)
{
    for (;;) {
        int l = 2 * k + 1, r = l + 1, m = k;
        if (l < x->n_keep && key_less(x, x->heap[m], x->heap[l])) m = l;
        if (r < x->n_keep && key_less(x, x->heap[m], x->heap[r])) m = r;
        if (m == k) return;
        int t = x->heap[k];
        x->heap[k] = x->heap[m];
        x->heap[m] = t;
        k = m;
    }
}

/* Keeps the split x->cur, the n_list-th listed, of bottleneck bn if it is among
 * the top_k least (bottleneck, listing index) listed so far. */
static void keep_split(bal *x, double bn)
{
    int slot, k;
    if (x->n_keep < x->cap) {
        slot = x->n_keep;
        k = x->n_keep++;
        x->heap[k] = slot;
    } else {
        slot = x->heap[0]; /* the largest key kept; a later index loses a tie */
        if (!(bn < x->keep_bn[slot])) return;
        k = -1;
    }
    x->keep_bn[slot] = bn;
    x->keep_idx[slot] = x->n_list;
    unsigned char *bits = x->keep + (size_t)slot * x->kb;
    memset(bits, 0, x->kb);
    for (int st = 0; st < x->P; st++) bits[x->cur[st] / 8] |= (unsigned char)(1u << (x->cur[st] % 8));
    if (k < 0) heap_down(x, 0);
    else
        for (; k > 0 && key_less(x, x->heap[(k - 1) / 2], x->heap[k]); k = (k - 1) / 2) {
            int t = x->heap[k];
            x->heap[k] = x->heap[(k - 1) / 2];
            x->heap[(k - 1) / 2] = t;
        }
}

/* The split of slot into first[0..P]. */
static void kept_split(const bal *x, int slot, int *first)
{
    const unsigned char *bits = x->keep + (size_t)slot * x->kb;
    int st = 0;
    for (int u = 0; u < x->U; u++)
        if (bits[u / 8] & (1u << (u % 8))) first[st++] = u;
    first[x->P] = x->U;
}

/* Lists the splits of stages s.. from unit i whose bottleneck stays <= thr. */
static void list_from(bal *x, int s, int i, double bn)
{
    int P = x->P, U = x->U;
    x->cur[s] = i;
    if (s == P) {
        if (i != U || x->n_list >= x->in->max_list) return;
        keep_split(x, bn);
        x->n_list++;
        return;
    }
    /* a larger j's stage alone exceeds thr (fast: the costs only grow with j) */
    int hi = x->fast ? last_within(x, s, i, U - (P - 1 - s)) : U - (P - 1 - s);
    for (int j = hi; j > i && x->n_list < x->in->max_list; j--) {
        double c = fmax(bn, range_cost(x, s, i, j));
        if (fmax(c, SUF(x, s + 1, j)) > x->thr || !fits(x, s, i, j)) continue;
        list_from(x, s + 1, j, c);
    }
}

void sched_balance_plan_free(sched_balance_plan *p)
{
    if (!p) return;
    free(p->first);
    free(p->busy);
    free(p->mem);
    free(p->static_mem);
    free(p);
}

/* The simulator's costs of one split: per stage the sums of its units, the
 * memory model as cli_schedule.c's chunk_mem (stash and work add up, the
 * forward transient is the largest unit's, a BW's work is the largest unit's on
 * the first stage, which sends no gradient, and the whole range's elsewhere). */
static sched_costs *split_costs(const sched_schedule *s, const sched_balance_in *in, const int *first)
{
    int P = s->n_stages;
    sched_costs *c = sched_costs_new(P);
    if (!c) return NULL;
    for (int st = 0; st < P; st++) {
        double sp = in->speed ? in->speed[st] : 1.0, wu = 0, tmp = 0;
        for (int u = first[st]; u < first[st + 1]; u++) {
            c->f[st] += in->f[u] / sp;
            c->b[st] += in->b[u] / sp;
            c->w[st] += in->w[u] / sp;
            if (in->stash) c->stash_bytes[st] += in->stash[u];
            if (in->work) c->b_bytes[st] += in->work[u];
            if (in->fwd_tmp) tmp = fmax(tmp, in->fwd_tmp[u]);
            if (in->work_unit) wu = fmax(wu, in->work_unit[u]);
        }
        c->f_tmp_bytes[st] = tmp;
        c->bw_bytes[st] = st > 0 ? c->b_bytes[st] : wu;
        c->xfer_bytes[st] = in->out_bytes ? in->out_bytes[first[st + 1] - 1] : 0;
    }
    c->latency = in->latency;
    c->bandwidth = in->bandwidth;
    c->bw_early = in->bw_early;
    c->w_in_order = in->w_in_order;
    return c;
}

int sched_balance_eval(const sched_schedule *s, const sched_balance_in *in, const int *first,
                       sched_balance_plan **out, char *err)
{
    int P = s->n_stages;
    *out = NULL;
    if (s->n_chunks != 1) return snprintf(err, SCHED_ERR_LEN, "balance: the schedule has %d chunks per stage; "
                                          "balancing handles one", s->n_chunks), -1;
    for (int st = 0; st < P; st++)
        if (first[st] >= first[st + 1] || first[0] != 0 || first[P] != in->n_units)
            return snprintf(err, SCHED_ERR_LEN, "balance: stage %d holds no unit", st), -1;
    sched_costs *c = split_costs(s, in, first);
    sched_report *r = NULL;
    if (!c) return snprintf(err, SCHED_ERR_LEN, "out of memory"), -1;
    if (sched_simulate(s, c, 0, &r, err)) {
        sched_costs_free(c);
        return -1;
    }
    sched_balance_plan *p = calloc(1, sizeof *p);
    if (p) {
        p->n_stages = P;
        p->first = malloc(sizeof(int) * (size_t)(P + 1));
        p->busy = calloc((size_t)P, sizeof(double));
        p->mem = calloc((size_t)P, sizeof(double));
        p->static_mem = calloc((size_t)P, sizeof(double));
    }
    if (!p || !p->first || !p->busy || !p->mem || !p->static_mem) {
        sched_balance_plan_free(p);
        sched_report_free(r);
        sched_costs_free(c);
        return snprintf(err, SCHED_ERR_LEN, "out of memory"), -1;
    }
    memcpy(p->first, first, sizeof(int) * (size_t)(P + 1));
    p->step_time = r->step_time;
    for (int st = 0; st < P; st++) {
        double stat = 0;
        for (int u = first[st]; u < first[st + 1]; u++) stat += in->static_bytes ? in->static_bytes[u] : 0;
        p->static_mem[st] = stat;
        p->mem[st] = stat + r->peak_bytes[st];
        p->busy[st] = r->busy[st];
        p->bottleneck = fmax(p->bottleneck, c->f[st] + c->b[st] + c->w[st]);
    }
    sched_report_free(r);
    sched_costs_free(c);
    *out = p;
    return 0;
}

static int by_key(const void *a, const void *b, void *ctx)
{
    int i = *(const int *)a, j = *(const int *)b;
    return key_less(ctx, i, j) ? -1 : key_less(ctx, j, i);
}

static void bal_free(bal *x)
{
    free(x->pre);
    free(x->pst);
    free(x->pstash);
    free(x->pwork);
    free(x->peak);
    free(x->suf);
    free(x->tmax);
    free(x->bmin);
    free(x->cur);
    free(x->heap);
    free(x->keep_bn);
    free(x->keep_idx);
    free(x->keep);
}

/* Why no split fits: a unit too large alone on every stage, or the whole. */
static int no_fit(bal *x, int *bad_unit, char *err)
{
    for (int u = 0; u < x->U; u++) {
        int any = 0;
        for (int s = 0; s < x->P && !any; s++) any = fits(x, s, u, u + 1);
        if (any) continue;
        if (bad_unit) *bad_unit = u;
        double need = x->pst[u + 1] - x->pst[u] + x->pwork[u + 1] - x->pwork[u];
        return snprintf(err, SCHED_ERR_LEN, "unit %d alone needs more than the memory limit %.0f bytes on "
                        "every stage (%.0f bytes of weights, gradients, optimizer state and backward work, "
                        "plus its stash)", u, x->in->mem_limit, need), -1;
    }
    if (x->in->mem_limit <= 0) /* no limit: the costs summed to no finite bottleneck */
        return snprintf(err, SCHED_ERR_LEN, "no split of %d units into %d stages has a finite bottleneck (the "
                        "per-unit costs are not finite)", x->U, x->P), -1;
    return snprintf(err, SCHED_ERR_LEN, "no split of %d units into %d stages fits the memory limit of %.0f bytes "
                    "per stage", x->U, x->P, x->in->mem_limit), -1;
}

/* The tables for P stages; s (NULL: no memory limit, no peaks) gives the peaks. */
static int prepare(bal *x, int P, const sched_schedule *s, const sched_balance_in *in, char *err)
{
    int U = x->U = in->n_units;
    x->P = P;
    x->in = in;
    x->pre = calloc((size_t)U + 1, sizeof(double));
    x->pst = calloc((size_t)U + 1, sizeof(double));
    x->pstash = calloc((size_t)U + 1, sizeof(double));
    x->pwork = calloc((size_t)U + 1, sizeof(double));
    x->suf = U >= P ? malloc(sizeof(double) * (size_t)(P + 1) * (size_t)(U - P + 1)) : NULL;
    x->cur = calloc((size_t)P + 1, sizeof(int));
    x->cap = in->top_k < in->max_list ? in->top_k : in->max_list;
    if (x->cap < 1) x->cap = 1;
    x->kb = (size_t)U / 8 + 1;
    x->heap = malloc(sizeof(int) * (size_t)x->cap);
    x->keep_bn = malloc(sizeof(double) * (size_t)x->cap);
    x->keep_idx = malloc(sizeof(int) * (size_t)x->cap);
    x->keep = malloc(x->kb * (size_t)x->cap);
    if (!x->pre || !x->pst || !x->pstash || !x->pwork || !x->suf || !x->cur || !x->heap || !x->keep_bn ||
        !x->keep_idx || !x->keep)
        return snprintf(err, SCHED_ERR_LEN, "out of memory"), -1;
    for (int u = 0; u < U; u++) {
        x->pre[u + 1] = x->pre[u] + in->f[u] + in->b[u] + in->w[u];
        x->pst[u + 1] = x->pst[u] + (in->static_bytes ? in->static_bytes[u] : 0);
        x->pstash[u + 1] = x->pstash[u] + (in->stash ? in->stash[u] : 0);
        x->pwork[u + 1] = x->pwork[u] + (in->work ? in->work[u] : 0);
    }
    /* the fast DP's argument needs costs that only grow with a range */
    x->fast = !in->exhaustive;
    for (int u = 0; u < U && x->fast; u++) {
        double v[] = { in->f[u], in->b[u], in->w[u], in->static_bytes ? in->static_bytes[u] : 0,
                       in->stash ? in->stash[u] : 0, in->work ? in->work[u] : 0, in->fwd_tmp ? in->fwd_tmp[u] : 0 };
        for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) x->fast &= isfinite(v[k]) && v[k] >= 0;
    }
    for (int s = 0; s < P && x->fast; s++) x->fast = isfinite(speed(x, s)) && speed(x, s) > 0;
    if (x->fast) {
        x->lg = floor_log2(U + 1) + 1;
        x->bmin = malloc(sizeof(double) * (size_t)x->lg * (size_t)(U + 1));
        if (in->mem_limit > 0) x->tmax = malloc(sizeof(double) * (size_t)x->lg * (size_t)U);
        if (!x->bmin || (in->mem_limit > 0 && !x->tmax)) return snprintf(err, SCHED_ERR_LEN, "out of memory"), -1;
        for (int u = 0; u < U && x->tmax; u++) SPT(x->tmax, U, 0, u) = in->fwd_tmp ? in->fwd_tmp[u] : 0;
        for (int k = 1; k < x->lg && x->tmax; k++)
            for (int u = 0; u + (1 << k) <= U; u++)
                SPT(x->tmax, U, k, u) = fmax(SPT(x->tmax, U, k - 1, u), SPT(x->tmax, U, k - 1, u + (1 << (k - 1))));
    }
    if (!s) return 0;
    sched_report *r = NULL;
    if (sched_check(s, &r, err)) {
        sched_report_free(r);
        return -1;
    }
    x->peak = r->peak_mb; /* taken over from the report */
    r->peak_mb = NULL;
    sched_report_free(r);
    return 0;
}

int sched_balance(const sched_schedule *s, const sched_balance_in *in, sched_balance_plan **out, int *bad_unit,
                  char *err)
{
    bal x;
    memset(&x, 0, sizeof x);
    *out = NULL;
    if (bad_unit) *bad_unit = -1;
    if (s->n_chunks != 1)
        return snprintf(err, SCHED_ERR_LEN, "balance: schedule %s has %d chunks per stage; balancing handles "
                        "one chunk per stage (gpipe, 1f1b, zb-h1)", s->kind, s->n_chunks), -1;
    if (in->n_units < s->n_stages)
        return snprintf(err, SCHED_ERR_LEN, "balance: %d stages but only %d units", s->n_stages, in->n_units), -1;
    if (in->top_k < 1 || in->max_list < in->top_k)
        return snprintf(err, SCHED_ERR_LEN, "balance: top_k %d, max_list %d", in->top_k, in->max_list), -1;
    int rc = -1;
    if (prepare(&x, s->n_stages, s, in, err)) goto done;
    fill_suffix(&x);
    double opt = SUF(&x, 0, 0);
    if (!isfinite(opt)) {
        no_fit(&x, bad_unit, err);
        goto done;
    }
    x.thr = opt * (1 + fmax(in->slack, 0)) * (1 + 1e-12);
    list_from(&x, 0, 0, 0);
    /* the kept splits are the top_k of the whole list by (bottleneck, index) */
    qsort_r(x.heap, (size_t)x.n_keep, sizeof(int), by_key, &x);
    int *first = malloc(sizeof(int) * (size_t)(x.P + 1));
    if (!first) { snprintf(err, SCHED_ERR_LEN, "out of memory"); goto done; }
    sched_balance_plan *best = NULL;
    int n_sim = 0;
    for (int i = 0; i < x.n_keep && n_sim < in->top_k; i++) {
        sched_balance_plan *p = NULL;
        kept_split(&x, x.heap[i], first);
        if (sched_balance_eval(s, in, first, &p, err)) {
            sched_balance_plan_free(best);
            free(first);
            goto done;
        }
        n_sim++;
        int ok = 1;
        for (int st = 0; st < x.P && in->mem_limit > 0; st++) ok &= p->mem[st] <= in->mem_limit;
        if (ok && (!best || p->step_time < best->step_time * (1 - 1e-12))) {
            sched_balance_plan_free(best);
            best = p;
        } else {
            sched_balance_plan_free(p);
        }
    }
    free(first);
    if (!best) {
        if (in->mem_limit <= 0)
            snprintf(err, SCHED_ERR_LEN, "no split of %d units into %d stages has a finite simulated step time",
                     x.U, x.P);
        else
            snprintf(err, SCHED_ERR_LEN, "no split of %d units into %d stages fits the memory limit of %.0f bytes "
                     "per stage in the simulation", x.U, x.P, in->mem_limit);
        goto done;
    }
    best->n_listed = x.n_list;
    best->n_probes = x.probes;
    best->n_simulated = n_sim;
    *out = best;
    rc = 0;
done:
    bal_free(&x);
    return rc;
}

double sched_balance_bottleneck(int n_units, const double *cost, int n_stages, const double *speed)
{
    double *zero = calloc((size_t)n_units + 1, sizeof(double)), r = INFINITY;
    sched_balance_in in;
    memset(&in, 0, sizeof in);
    in.n_units = n_units;
    in.f = cost;
    in.b = in.w = zero;
    in.speed = speed;
    in.max_list = 1;
    bal x;
    memset(&x, 0, sizeof x);
    char err[SCHED_ERR_LEN];
    if (zero && n_stages >= 1 && n_units >= n_stages && !prepare(&x, n_stages, NULL, &in, err)) {
        fill_suffix(&x);
        r = SUF(&x, 0, 0);
    }
    bal_free(&x);
    free(zero);
    return r;
}
