/* sched_balance.c — the automatic stage balancer (see sched_balance.h): a DP over
 * split points for the least bottleneck under a memory bound, the near-optimal
 * splits listed from the same table, and the simulator choosing among them. */
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
    double *suf;     /* ((P+1) x (U+1)) least bottleneck of stages s.. on units i.. */
    double thr;
    int *cur;        /* (P+1) the split being listed */
    int *list;       /* (max_list x (P+1)) */
    double *list_bn; /* (max_list) */
    int n_list;
} bal;

static double speed(const bal *x, int s) { return x->in->speed ? x->in->speed[s] : 1.0; }

static double range_cost(const bal *x, int s, int a, int b) { return (x->pre[b] - x->pre[a]) / speed(x, s); }

/* The DP's memory bound of stage s holding [a, b) (see the header); 1 when it fits. */
static int fits(const bal *x, int s, int a, int b)
{
    if (x->in->mem_limit <= 0) return 1;
    double tmp = 0;
    for (int u = a; u < b; u++) tmp = fmax(tmp, x->in->fwd_tmp ? x->in->fwd_tmp[u] : 0);
    double m = x->pst[b] - x->pst[a] + x->peak[s] * (x->pstash[b] - x->pstash[a]) + x->pwork[b] - x->pwork[a] + tmp;
    return m <= x->in->mem_limit;
}

#define SUF(x, s, i) ((x)->suf[(size_t)(s) * (size_t)((x)->U + 1) + (size_t)(i)])

static void fill_suffix(bal *x)
{
    int P = x->P, U = x->U;
    for (size_t i = 0; i < (size_t)(P + 1) * (size_t)(U + 1); i++) x->suf[i] = INFINITY;
    SUF(x, P, U) = 0;
    for (int s = P - 1; s >= 0; s--)
        for (int i = s; i <= U - (P - s); i++)
            for (int j = i + 1; j <= U - (P - 1 - s); j++) {
                if (!isfinite(SUF(x, s + 1, j)) || !fits(x, s, i, j)) continue;
                double v = fmax(range_cost(x, s, i, j), SUF(x, s + 1, j));
                if (v < SUF(x, s, i)) SUF(x, s, i) = v;
            }
}

/* Lists the splits of stages s.. from unit i whose bottleneck stays <= thr. */
static void list_from(bal *x, int s, int i, double bn)
{
    int P = x->P, U = x->U;
    x->cur[s] = i;
    if (s == P) {
        if (i != U || x->n_list >= x->in->max_list) return;
        memcpy(x->list + (size_t)x->n_list * (size_t)(P + 1), x->cur, sizeof(int) * (size_t)(P + 1));
        x->list_bn[x->n_list++] = bn;
        return;
    }
    for (int j = U - (P - 1 - s); j > i && x->n_list < x->in->max_list; j--) {
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

static int by_bottleneck(const void *a, const void *b, void *ctx)
{
    const double *bn = ctx;
    int i = *(const int *)a, j = *(const int *)b;
    if (bn[i] != bn[j]) return bn[i] < bn[j] ? -1 : 1;
    return (i > j) - (i < j);
}

static void bal_free(bal *x)
{
    free(x->pre);
    free(x->pst);
    free(x->pstash);
    free(x->pwork);
    free(x->peak);
    free(x->suf);
    free(x->cur);
    free(x->list);
    free(x->list_bn);
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

static int prepare(bal *x, const sched_schedule *s, const sched_balance_in *in, char *err)
{
    int P = x->P = s->n_stages, U = x->U = in->n_units;
    x->in = in;
    x->pre = calloc((size_t)U + 1, sizeof(double));
    x->pst = calloc((size_t)U + 1, sizeof(double));
    x->pstash = calloc((size_t)U + 1, sizeof(double));
    x->pwork = calloc((size_t)U + 1, sizeof(double));
    x->suf = malloc(sizeof(double) * (size_t)(P + 1) * (size_t)(U + 1));
    x->cur = calloc((size_t)P + 1, sizeof(int));
    x->list = malloc(sizeof(int) * (size_t)in->max_list * (size_t)(P + 1));
    x->list_bn = malloc(sizeof(double) * (size_t)in->max_list);
    if (!x->pre || !x->pst || !x->pstash || !x->pwork || !x->suf || !x->cur || !x->list || !x->list_bn)
        return snprintf(err, SCHED_ERR_LEN, "out of memory"), -1;
    for (int u = 0; u < U; u++) {
        x->pre[u + 1] = x->pre[u] + in->f[u] + in->b[u] + in->w[u];
        x->pst[u + 1] = x->pst[u] + (in->static_bytes ? in->static_bytes[u] : 0);
        x->pstash[u + 1] = x->pstash[u] + (in->stash ? in->stash[u] : 0);
        x->pwork[u + 1] = x->pwork[u] + (in->work ? in->work[u] : 0);
    }
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
    if (prepare(&x, s, in, err)) goto done;
    fill_suffix(&x);
    double opt = SUF(&x, 0, 0);
    if (!isfinite(opt)) {
        no_fit(&x, bad_unit, err);
        goto done;
    }
    x.thr = opt * (1 + fmax(in->slack, 0)) * (1 + 1e-12);
    list_from(&x, 0, 0, 0);
    int *order = malloc(sizeof(int) * (size_t)x.n_list);
    if (!order) { snprintf(err, SCHED_ERR_LEN, "out of memory"); goto done; }
    for (int i = 0; i < x.n_list; i++) order[i] = i;
    qsort_r(order, (size_t)x.n_list, sizeof(int), by_bottleneck, x.list_bn);
    sched_balance_plan *best = NULL;
    int n_sim = 0;
    for (int i = 0; i < x.n_list && n_sim < in->top_k; i++) {
        sched_balance_plan *p = NULL;
        if (sched_balance_eval(s, in, x.list + (size_t)order[i] * (size_t)(x.P + 1), &p, err)) {
            sched_balance_plan_free(best);
            free(order);
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
    free(order);
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
    best->n_simulated = n_sim;
    *out = best;
    rc = 0;
done:
    bal_free(&x);
    return rc;
}
