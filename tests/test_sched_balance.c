/* test_sched_balance.c — the automatic stage balancer (scheduler/sched_balance.h)
 * on synthetic costs: a known optimum, agreement with brute force over every
 * split (with and without a memory limit), a unit too large for any stage, and
 * the fast DP's plans identical to the plain scan's (in.exhaustive) on random
 * instances. */
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "scheduler/sched_balance.h"
#include "tests.h"

#define MAXU 9
#define MAXR 12    /* units of test_top_k_as_whole_list */
#define MAXALL 2048 /* its splits: at most C(11, 5) */

typedef struct {
    double f[MAXU], b[MAXU], w[MAXU], st[MAXU], stash[MAXU], zero[MAXU];
    sched_balance_in in;
} fixture;

static void fixture_init(fixture *x, int U, const double *cost)
{
    memset(x, 0, sizeof *x);
    for (int u = 0; u < U; u++) {
        x->f[u] = cost[u];
        x->b[u] = cost[u];
        x->w[u] = cost[u];
        x->st[u] = 100;
        x->stash[u] = 10;
    }
    x->in = (sched_balance_in){ U, x->f, x->b, x->w, x->st, x->stash, x->zero, x->zero, x->zero, x->zero, NULL,
                                0, 0, 1, 1, 0, 0.25, 8, 1000, 0 };
}

/* Every split of U units into P stages, simulated: the least step time among those
 * within the memory limit (0: none), its split in best_first. */
static double brute_force(const sched_schedule *s, const sched_balance_in *in, int *best_first)
{
    int P = s->n_stages, U = in->n_units, first[MAXU + 1];
    double best = INFINITY;
    for (unsigned mask = 0; mask < (1u << (U - 1)); mask++) { /* bit i: a cut after unit i */
        if (__builtin_popcount(mask) != P - 1) continue;
        int k = 0;
        first[k++] = 0;
        for (int i = 0; i < U - 1; i++)
            if (mask & (1u << i)) first[k++] = i + 1;
        first[P] = U;
        sched_balance_plan *p = NULL;
        char err[SCHED_ERR_LEN];
        CU_ASSERT_EQUAL_FATAL(sched_balance_eval(s, in, first, &p, err), 0);
        int ok = 1;
        for (int st = 0; st < P && in->mem_limit > 0; st++) ok &= p->mem[st] <= in->mem_limit;
        if (ok && p->step_time < best) {
            best = p->step_time;
            memcpy(best_first, first, sizeof(int) * (size_t)(P + 1));
        }
        sched_balance_plan_free(p);
    }
    return best;
}

static void test_known_optimum(void)
{
    /* units 1,1,1,1,4,1,1 on 3 stages: the one split of bottleneck 3*4 is 0-3 | 4 | 5-6 */
    static const double cost[] = { 1, 1, 1, 1, 4, 1, 1 };
    fixture x;
    fixture_init(&x, 7, cost);
    char err[SCHED_ERR_LEN];
    sched_schedule *s = sched_generate("1f1b", 3, 8, 1, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    sched_balance_plan *p = NULL;
    int bad = 7;
    CU_ASSERT_EQUAL_FATAL(sched_balance(s, &x.in, &p, &bad, err), 0);
    CU_ASSERT_EQUAL(bad, -1);
    CU_ASSERT_EQUAL(p->first[0], 0);
    CU_ASSERT_EQUAL(p->first[1], 4);
    CU_ASSERT_EQUAL(p->first[2], 5);
    CU_ASSERT_EQUAL(p->first[3], 7);
    CU_ASSERT_DOUBLE_EQUAL(p->bottleneck, 12, 1e-12);
    /* stage 1, the bottleneck, is busy 8 x 12 = 96; 8 more of warm-up and
     * cool-down (the simulator's golden number, 1F1B with BW fused) */
    CU_ASSERT_DOUBLE_EQUAL(p->step_time, 104, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(p->busy[1], 8 * 12, 1e-9);
    /* 1F1B keeps P - s micro-batches in flight: stage 0 4 units x (100 + 3 x 10) */
    CU_ASSERT_DOUBLE_EQUAL(p->mem[0], 400 + 3 * 40, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(p->mem[1], 100 + 2 * 10, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(p->mem[2], 200 + 1 * 20, 1e-9);
    sched_balance_plan *even = NULL; /* by unit count: 0-2 | 3-4 | 5-6 */
    int ev[] = { 0, 3, 5, 7 };
    CU_ASSERT_EQUAL_FATAL(sched_balance_eval(s, &x.in, ev, &even, err), 0);
    CU_ASSERT_DOUBLE_EQUAL(even->step_time, 124, 1e-9);
    sched_balance_plan_free(even);
    sched_balance_plan_free(p);
    sched_free(s);
}

static void test_vs_brute_force(void)
{
    unsigned seed = 7;
    for (int trial = 0; trial < 40; trial++) {
        double cost[MAXU];
        int U = 4 + trial % 6, P = 2 + trial % 3;
        for (int u = 0; u < U; u++) cost[u] = 1 + (double)((seed = seed * 1103515245u + 12345u) >> 16) / 65536.0 * 9;
        fixture x;
        fixture_init(&x, U, cost);
        x.in.slack = 100; /* list every split: the simulator picks, as brute force */
        x.in.top_k = x.in.max_list = 1000;
        if (trial % 2) x.in.mem_limit = 100 * (U / P + 1) + 10 * P * (U / P + 1); /* some splits do not fit */
        char err[SCHED_ERR_LEN];
        sched_schedule *s = sched_generate(trial % 3 ? "1f1b" : "gpipe", P, 2 * P, 1, err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        int want[MAXU + 1];
        double bf = brute_force(s, &x.in, want);
        sched_balance_plan *p = NULL;
        int rc = sched_balance(s, &x.in, &p, NULL, err);
        if (!isfinite(bf)) {
            CU_ASSERT_EQUAL(rc, -1);
        } else {
            CU_ASSERT_EQUAL_FATAL(rc, 0);
            CU_ASSERT_DOUBLE_EQUAL(p->step_time, bf, 1e-9);
            for (int st = 0; st < P && x.in.mem_limit > 0; st++) CU_ASSERT(p->mem[st] <= x.in.mem_limit);
        }
        sched_balance_plan_free(p);
        sched_free(s);
    }
}

static void test_memory_limit(void)
{
    /* the optimum 0-3 | 4 | 5-6 needs 520 bytes on stage 0 (above); under 360 stage 0
     * holds at most 2 units (3: 300 + 3 x 30 = 390), stage 1 at most 3 (300 + 2 x 30):
     * 0-1 | 2-4 | 5-6 and 0-1 | 2-3 | 4-6 both have bottleneck 18, the first
     * simulates faster (146 against 148) */
    static const double cost[] = { 1, 1, 1, 1, 4, 1, 1 };
    fixture x;
    fixture_init(&x, 7, cost);
    x.in.mem_limit = 360;
    char err[SCHED_ERR_LEN];
    sched_schedule *s = sched_generate("1f1b", 3, 8, 1, err);
    sched_balance_plan *p = NULL;
    CU_ASSERT_EQUAL_FATAL(sched_balance(s, &x.in, &p, NULL, err), 0);
    CU_ASSERT_EQUAL(p->first[1], 2);
    CU_ASSERT_EQUAL(p->first[2], 5);
    CU_ASSERT_DOUBLE_EQUAL(p->step_time, 146, 1e-9);
    for (int st = 0; st < 3; st++) CU_ASSERT(p->mem[st] <= 360);
    sched_balance_plan_free(p);
    /* unit 4 alone holds 1000 static bytes: too large for any stage */
    x.st[4] = 1000;
    x.in.mem_limit = 500;
    int bad = -1;
    err[0] = 0;
    CU_ASSERT_EQUAL(sched_balance(s, &x.in, &p, &bad, err), -1);
    CU_ASSERT_PTR_NULL(p);
    CU_ASSERT_EQUAL(bad, 4);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "unit 4"));
    /* fits alone but no split of the rest does: no unit named */
    x.st[4] = 100;
    x.in.mem_limit = 250;
    bad = 9;
    CU_ASSERT_EQUAL(sched_balance(s, &x.in, &p, &bad, err), -1);
    CU_ASSERT_EQUAL(bad, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no split"));
    sched_free(s);
}

static void test_bad_args(void)
{
    static const double cost[] = { 1, 1 };
    fixture x;
    fixture_init(&x, 2, cost);
    char err[SCHED_ERR_LEN];
    sched_schedule *s = sched_generate("1f1b", 3, 3, 1, err), *v = sched_generate("interleaved", 2, 2, 2, err);
    sched_balance_plan *p = NULL;
    CU_ASSERT_EQUAL(sched_balance(s, &x.in, &p, NULL, err), -1); /* 3 stages, 2 units */
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "only 2 units"));
    CU_ASSERT_EQUAL(sched_balance(v, &x.in, &p, NULL, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "one chunk per stage"));
    CU_ASSERT_PTR_NULL(p);
    sched_free(s);
    sched_free(v);
}

/* The uneven model in miniature: a tiny embedding, 4 blocks of 1, a head of 5
 * (per op): on 2 stages the even split by count (embed,0-1 | 2-3,head: 6 | 21
 * per micro-batch) loses to embed,0-3 | head (12 | 15), whatever the FLOPs say. */
static void test_large_head(void)
{
    static const double cost[] = { 0.01, 1, 1, 1, 1, 5 };
    fixture x;
    fixture_init(&x, 6, cost);
    char err[SCHED_ERR_LEN];
    sched_schedule *s = sched_generate("1f1b", 2, 4, 1, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    sched_balance_plan *p = NULL, *even = NULL;
    CU_ASSERT_EQUAL_FATAL(sched_balance(s, &x.in, &p, NULL, err), 0);
    CU_ASSERT_EQUAL(p->first[1], 5);
    CU_ASSERT_DOUBLE_EQUAL(p->bottleneck, 15, 1e-12);
    int ev[] = { 0, 3, 6 };
    CU_ASSERT_EQUAL_FATAL(sched_balance_eval(s, &x.in, ev, &even, err), 0);
    CU_ASSERT_DOUBLE_EQUAL(even->bottleneck, 21, 1e-12);
    CU_ASSERT(p->step_time < 0.85 * even->step_time);
    sched_balance_plan_free(p);
    sched_balance_plan_free(even);
    sched_free(s);
}

/* costs.json's per-layer times ("units"): written, read back, absent in an older
 * file (0), and a malformed or mis-sized array refused naming the field (-1). */
static void test_costs_units(void)
{
    char path[] = "/tmp/test_sched_balance.XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    close(fd);
    sched_costs *c = sched_costs_uniform(2, 1, 1, 2, 3);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    const double uf[4] = { 0.5, 1, 2, 4 }, ub[4] = { 0, 1.5, 2.5, 8 }, uw[4] = { 0.25, 1, 1, 16 };
    char err[SCHED_ERR_LEN];
    FILE *f = fopen(path, "w");
    CU_ASSERT_EQUAL(sched_costs_write_json_units(c, 2, 1, 5, uf, ub, uw, 4, f, err), 0);
    fclose(f);
    double gf[4] = { 0 }, gb[4] = { 0 }, gw[4] = { 0 };
    CU_ASSERT_EQUAL(sched_costs_load_units(path, 4, gf, gb, gw, err), 1);
    CU_ASSERT(!memcmp(gf, uf, sizeof uf) && !memcmp(gb, ub, sizeof ub) && !memcmp(gw, uw, sizeof uw));
    int P = 0, v = 0;
    sched_costs *d = sched_costs_load(path, &P, &v, err); /* the per-stage part as before */
    CU_ASSERT_PTR_NOT_NULL(d);
    CU_ASSERT_EQUAL(P, 2);
    sched_costs_free(d);
    /* another model: 6 units */
    CU_ASSERT_EQUAL(sched_costs_load_units(path, 6, gf, gb, gw, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "\"units\".\"f\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
    /* an older file: no per-layer times, the arrays untouched */
    f = fopen(path, "w");
    CU_ASSERT_EQUAL(sched_costs_write_json(c, 2, 1, 5, f, err), 0);
    fclose(f);
    gf[0] = 42;
    CU_ASSERT_EQUAL(sched_costs_load_units(path, 4, gf, gb, gw, err), 0);
    CU_ASSERT_DOUBLE_EQUAL(gf[0], 42, 0);
    /* a negative time */
    f = fopen(path, "w");
    fputs("{\"stages\": 2, \"chunks\": 1, \"f\": [1, 1], \"b\": [1, 1], \"w\": [1, 1], \"units\": "
          "{\"f\": [1, 1, 1, 1], \"b\": [1, -1, 1, 1], \"w\": [1, 1, 1, 1]}}", f);
    fclose(f);
    CU_ASSERT_EQUAL(sched_costs_load_units(path, 4, gf, gb, gw, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "\"units\".\"b\"[1]"));
    /* not an object */
    f = fopen(path, "w");
    fputs("{\"units\": [1, 2]}", f);
    fclose(f);
    CU_ASSERT_EQUAL(sched_costs_load_units(path, 4, gf, gb, gw, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "\"units\": expected an object"));
    sched_costs_free(c);
    unlink(path);
}

static unsigned rnd(unsigned *seed) { return (*seed = *seed * 1103515245u + 12345u) >> 16; }

/* A value of kind k (seeded): small integers (ties everywhere), zeros, or spread reals. */
static double rnd_val(unsigned *seed, int k, double scale)
{
    if (k == 0) return (double)(rnd(seed) % 4);
    if (k == 1) return rnd(seed) % 3 ? 1 : 0;
    return (double)rnd(seed) / 65536.0 * scale;
}

/* The plain O(P·U²) DP of the least bottleneck without memory (the old check warning's). */
static double scan_bottleneck(int U, const double *cost, int P, const double *speed)
{
    double pre[201] = { 0 }, cur[201], nxt[201];
    for (int u = 0; u < U; u++) pre[u + 1] = pre[u] + cost[u];
    for (int i = 0; i <= U; i++) cur[i] = i == U ? 0 : INFINITY;
    for (int s = P - 1; s >= 0; s--) {
        for (int i = 0; i <= U; i++) {
            nxt[i] = INFINITY;
            for (int j = i + 1; j <= U; j++) nxt[i] = fmin(nxt[i], fmax((pre[j] - pre[i]) / speed[s], cur[j]));
        }
        memcpy(cur, nxt, sizeof cur);
    }
    return cur[0];
}

/* The selection as sched_balance made it when it kept the whole list (before
 * the top_k heap), written out by brute force: every split in listing order
 * (depth-first, later cuts first) whose stages fit the DP's memory bound and
 * whose bottleneck is within the slack of the least, the first max_list of
 * them, sorted by (bottleneck, listing index); the first top_k simulated, the
 * least step time wins. The same doubles: the same prefix sums and maxima. */
typedef struct {
    const sched_balance_in *in;
    int P, U, *peak, cur[MAXR + 1], n_all;
    double pre[MAXR + 1], pst[MAXR + 1], pstash[MAXR + 1], pwork[MAXR + 1];
    int all[MAXALL][MAXR + 1];
    double all_bn[MAXALL];
} ref;

static double ref_cost(const ref *r, int s, int a, int b)
{
    return (r->pre[b] - r->pre[a]) / (r->in->speed ? r->in->speed[s] : 1.0);
}

static int ref_fits(const ref *r, int s, int a, int b)
{
    if (r->in->mem_limit <= 0) return 1;
    double tmp = 0;
    for (int u = a; u < b; u++) tmp = fmax(tmp, r->in->fwd_tmp[u]);
    double m = r->pst[b] - r->pst[a] + r->peak[s] * (r->pstash[b] - r->pstash[a]) + r->pwork[b] - r->pwork[a] + tmp;
    return m <= r->in->mem_limit;
}

/* Every split of stages s.. from unit i whose stages fit, in listing order. */
static void ref_all(ref *r, int s, int i, double bn)
{
    r->cur[s] = i;
    if (s == r->P) {
        if (i != r->U) return;
        memcpy(r->all[r->n_all], r->cur, sizeof r->cur);
        r->all_bn[r->n_all++] = bn;
        return;
    }
    for (int j = r->U - (r->P - 1 - s); j > i; j--)
        if (ref_fits(r, s, i, j)) ref_all(r, s + 1, j, fmax(bn, ref_cost(r, s, i, j)));
}

/* 0 with the plan's first[], step time, listed and simulated counts; -1: none. */
static int ref_balance(const sched_schedule *s, const sched_balance_in *in, int *first, double *step, int *n_listed,
                       int *n_sim)
{
    static ref r;
    memset(&r, 0, sizeof r);
    r.in = in;
    r.P = s->n_stages;
    r.U = in->n_units;
    for (int u = 0; u < r.U; u++) {
        r.pre[u + 1] = r.pre[u] + in->f[u] + in->b[u] + in->w[u];
        r.pst[u + 1] = r.pst[u] + in->static_bytes[u];
        r.pstash[u + 1] = r.pstash[u] + in->stash[u];
        r.pwork[u + 1] = r.pwork[u] + in->work[u];
    }
    char err[SCHED_ERR_LEN];
    sched_report *rep = NULL;
    CU_ASSERT_EQUAL_FATAL(sched_check(s, &rep, err), 0);
    r.peak = rep->peak_mb;
    ref_all(&r, 0, 0, 0);
    double opt = INFINITY;
    for (int k = 0; k < r.n_all; k++) opt = fmin(opt, r.all_bn[k]);
    int rc = -1;
    if (isfinite(opt)) {
        double thr = opt * (1 + fmax(in->slack, 0)) * (1 + 1e-12);
        static int order[MAXALL];
        int n = 0;
        for (int k = 0; k < r.n_all && n < in->max_list; k++)
            if (r.all_bn[k] <= thr) order[n++] = k; /* k ascending: the listing order */
        for (int a = 1; a < n; a++) /* insertion sort by (bottleneck, listing index) */
            for (int b = a; b > 0 && r.all_bn[order[b]] < r.all_bn[order[b - 1]]; b--) {
                int t = order[b];
                order[b] = order[b - 1];
                order[b - 1] = t;
            }
        double best = INFINITY;
        int sim = 0;
        for (int k = 0; k < n && sim < in->top_k; k++, sim++) {
            sched_balance_plan *p = NULL;
            CU_ASSERT_EQUAL_FATAL(sched_balance_eval(s, in, r.all[order[k]], &p, err), 0);
            int ok = 1;
            for (int st = 0; st < r.P && in->mem_limit > 0; st++) ok &= p->mem[st] <= in->mem_limit;
            if (ok && (rc || p->step_time < best * (1 - 1e-12))) {
                best = p->step_time;
                memcpy(first, r.all[order[k]], sizeof(int) * (size_t)(r.P + 1));
                rc = 0;
            }
            sched_balance_plan_free(p);
        }
        *step = best;
        *n_listed = n;
        *n_sim = sim;
    }
    sched_report_free(rep);
    return rc;
}

/* sched_balance keeps only the top_k listed splits (a heap), not the list: the
 * same plan, listed and simulated counts as the whole list sorted (ref_balance)
 * on random instances with ties in the bottleneck, caps that cut the listing,
 * memory limits and uneven speeds. */
static void test_top_k_as_whole_list(void)
{
    static double f[MAXR], b[MAXR], w[MAXR], st[MAXR], stash[MAXR], work[MAXR], tmp[MAXR], wu[MAXR], out[MAXR],
        speed[MAXR];
    static const char *const kinds[] = { "gpipe", "1f1b", "zb-h1" };
    unsigned seed = 4242;
    int n_same = 0, n_ok = 0, n_capped = 0, n_cut = 0;
    for (int trial = 0; trial < 300; trial++) {
        int U = 2 + (int)(rnd(&seed) % (MAXR - 1)), P = 1 + (int)(rnd(&seed) % (U < 6 ? U : 6));
        int kc = (int)(rnd(&seed) % 3), M = P * (1 + (int)(rnd(&seed) % 2));
        for (int u = 0; u < U; u++) {
            f[u] = rnd_val(&seed, kc, 10);
            b[u] = rnd_val(&seed, kc, 10);
            w[u] = rnd_val(&seed, kc, 10);
            st[u] = rnd_val(&seed, 2, 1000);
            stash[u] = rnd_val(&seed, 2, 100);
            work[u] = rnd_val(&seed, 2, 100);
            tmp[u] = rnd_val(&seed, 2, 300);
            wu[u] = rnd_val(&seed, 2, 50);
            out[u] = rnd_val(&seed, 2, 10);
        }
        for (int s = 0; s < P; s++) speed[s] = trial % 3 ? 0.25 + (double)(rnd(&seed) % 8) / 4 : 1;
        sched_balance_in in = { U, f, b, w, st, stash, work, tmp, wu, out, speed, 0.1, 1e3, (int)(trial % 2), 1, 0,
                                trial % 5 ? 0.25 : 100, 1 + (int)(rnd(&seed) % 12), 0, (int)(trial % 7 == 0) };
        in.max_list = in.top_k + (int)(rnd(&seed) % 20);
        if (trial % 3 == 0) in.mem_limit = (double)(rnd(&seed) % 100 + 1) / 100 * (1000 * U / P + 500 * M);
        char err[SCHED_ERR_LEN];
        sched_schedule *s = sched_generate(kinds[trial % 3], P, M, 1, err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        int want[MAXR + 1], listed = 0, sim = 0;
        double step = 0;
        int rc_ref = ref_balance(s, &in, want, &step, &listed, &sim);
        sched_balance_plan *p = NULL;
        int rc = sched_balance(s, &in, &p, NULL, err);
        int same = rc == rc_ref;
        if (same && rc == 0) {
            same = !memcmp(p->first, want, sizeof(int) * (size_t)(P + 1)) && p->step_time == step &&
                   p->n_listed == listed && p->n_simulated == sim;
            n_ok++;
            n_capped += listed == in.max_list;
            n_cut += listed > in.top_k;
        }
        CU_ASSERT(same);
        if (!same) fprintf(stderr, "\n  trial %d (U %d, P %d): the kept top %d differ from the whole list's\n", trial,
                           U, P, in.top_k);
        n_same += same;
        sched_balance_plan_free(p);
        sched_free(s);
    }
    CU_ASSERT_EQUAL(n_same, 300);
    CU_ASSERT(n_ok > 100);
    CU_ASSERT(n_capped > 20); /* the listing cut at max_list */
    CU_ASSERT(n_cut > 50);    /* more listed than simulated: the heap dropped some */
}

/* The balancer's memory at `pipetrain balance --stages 2048` of the loader's
 * largest model (4098 units) with 20,000 splits listed: bounded by the DP's
 * table ((P+1) x (U-P+1) doubles, 34 MB; 67 MB while it held (P+1) x (U+1))
 * plus 16 MB (the program, the kept top_k: 2 MB seen), where the whole list
 * of P+1 cut points each added 20,000 x 2049 x 4 = 164 MB. Run in a child,
 * its peak RSS from wait4; a bound, not a timing. */
static void test_list_memory(void)
{
    enum { U = 4098, P = 2048 };
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        static double f[U], b[U], w[U], st[U], zero[U];
        unsigned seed = 99;
        for (int u = 0; u < U; u++) { /* as a calibrated run's per-layer times */
            f[u] = 1 + (double)rnd(&seed) / 65536.0;
            b[u] = 1 + 2 * (double)rnd(&seed) / 65536.0;
            w[u] = 0.5 + 0.5 * (double)rnd(&seed) / 65536.0;
            st[u] = 100;
        }
        sched_balance_in in = { U, f, b, w, st, zero, zero, zero, zero, zero, NULL, 0, 0, 1, 1, 0, 0.25, 32,
                                20000, 0 };
        char err[SCHED_ERR_LEN];
        sched_schedule *s = sched_generate("gpipe", P, 2, 1, err);
        sched_balance_plan *p = NULL;
        if (!s || sched_balance(s, &in, &p, NULL, err)) _exit(3);
        _exit(p->n_listed == 20000 && p->n_simulated == 32 ? 0 : 4);
    }
    struct rusage ru;
    int status = 0;
    pid_t got = 0;
    for (int i = 0; i < 1200 && got == 0; i++) { /* 120 s */
        got = wait4(pid, &status, WNOHANG, &ru);
        if (got == 0) nanosleep(&(struct timespec){ 0, 100000000 }, NULL);
    }
    if (got == 0) {
        fprintf(stderr, "\n  the balancer's child did not finish in 120 s: killed\n");
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    CU_ASSERT_FATAL(got == pid);
    CU_ASSERT_FATAL(WIFEXITED(status));
    CU_ASSERT_EQUAL(WEXITSTATUS(status), 0); /* 20,000 listed, 32 simulated */
    double table = (double)(P + 1) * (U - P + 1) * 8, peak = (double)ru.ru_maxrss * 1024;
    fprintf(stderr, "\n  balance of %d units on %d stages: peak RSS %.0f MB (DP table %.0f MB)\n", U, P, peak / 1e6,
            table / 1e6);
    CU_ASSERT(peak < table + 16e6);
}

/* The fast DP (binary searches over split points, sparse tables) against the
 * plain scan: the same plan, listing, error and bad unit on random instances
 * of every shape: ties, zeros, uneven speeds, memory limits that bind. */
static void test_fast_vs_scan(void)
{
    enum { N = 200 };
    static double f[N], b[N], w[N], st[N], stash[N], work[N], tmp[N], wu[N], out[N], speed[N], cost[N];
    static const char *const kinds[] = { "gpipe", "1f1b", "zb-h1" };
    unsigned seed = 12345;
    int n_same = 0, n_fail = 0, n_limit = 0;
    for (int trial = 0; trial < 400; trial++) {
        int U = 1 + (int)(rnd(&seed) % (trial < 300 ? 40 : N)), P = 1 + (int)(rnd(&seed) % (U < 12 ? U : 12));
        int kc = (int)(rnd(&seed) % 3), km = (int)(rnd(&seed) % 3), M = P * (1 + (int)(rnd(&seed) % 2));
        for (int u = 0; u < U; u++) {
            f[u] = rnd_val(&seed, kc, 10);
            b[u] = rnd_val(&seed, kc, 10);
            w[u] = rnd_val(&seed, kc, 10);
            st[u] = rnd_val(&seed, km, 1000);
            stash[u] = rnd_val(&seed, km, 100);
            work[u] = rnd_val(&seed, km, 100);
            tmp[u] = rnd_val(&seed, km, 300);
            wu[u] = rnd_val(&seed, km, 50);
            out[u] = rnd_val(&seed, km, 10);
            cost[u] = f[u] + b[u] + w[u];
        }
        for (int s = 0; s < P; s++) speed[s] = trial % 3 ? 0.25 + (double)(rnd(&seed) % 8) / 4 : 1;
        sched_balance_in in = { U, f, b, w, st, stash, work, tmp, wu, out, speed, 0.1, 1e3, (int)(trial % 2),
                                1, 0, 0.25, 1 + (int)(rnd(&seed) % 40), 0, 0 };
        in.max_list = in.top_k + (int)(rnd(&seed) % 300);
        if (trial % 4) { /* a limit between the smallest unit's need and the whole's */
            in.mem_limit = (double)(rnd(&seed) % 100 + 1) / 100 * (1000 * U / P + 500 * M);
            n_limit++;
        }
        char err[SCHED_ERR_LEN], err2[SCHED_ERR_LEN];
        sched_schedule *s = sched_generate(kinds[trial % 3], P, M, 1, err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        sched_balance_plan *fast = NULL, *scan = NULL;
        int bad_fast = -2, bad_scan = -2;
        int rc = sched_balance(s, &in, &fast, &bad_fast, err);
        in.exhaustive = 1;
        int rc2 = sched_balance(s, &in, &scan, &bad_scan, err2);
        CU_ASSERT_EQUAL(rc, rc2);
        CU_ASSERT_EQUAL(bad_fast, bad_scan);
        int same = rc == rc2 && bad_fast == bad_scan;
        if (rc == 0 && rc2 == 0) {
            same &= !memcmp(fast->first, scan->first, sizeof(int) * (size_t)(P + 1));
            same &= fast->step_time == scan->step_time && fast->bottleneck == scan->bottleneck;
            same &= fast->n_listed == scan->n_listed && fast->n_simulated == scan->n_simulated;
        } else {
            same &= !strcmp(err, err2);
            n_fail++;
        }
        CU_ASSERT(same);
        if (!same) fprintf(stderr, "\n  trial %d (U %d, P %d): fast and scan differ\n", trial, U, P);
        n_same += same;
        double want = scan_bottleneck(U, cost, P, speed), got = sched_balance_bottleneck(U, cost, P, speed);
        CU_ASSERT(got == want || (isinf(got) && isinf(want)));
        sched_balance_plan_free(fast);
        sched_balance_plan_free(scan);
        sched_free(s);
    }
    CU_ASSERT_EQUAL(n_same, 400);
    CU_ASSERT(n_fail > 10 && n_fail < 390); /* both outcomes exercised */
    CU_ASSERT(n_limit > 100);
}

/* The DP's work at the topology loader's largest sizes (4098 units: 4096
 * blocks; P = 2048): at most 4·P·U·log2(U) split points tried, where the plain
 * scan tried about P·U²/2 (over 4·10^9; it took minutes). Counted, not timed. */
static void test_fast_work(void)
{
    enum { U = 4098, P = 2048 };
    static double f[U], zero[U], st[U];
    for (int u = 0; u < U; u++) {
        f[u] = u == 0 || u == U - 1 ? 7 : 1;
        st[u] = 100;
    }
    sched_balance_in in = { U, f, zero, zero, st, zero, zero, zero, zero, zero, NULL, 0, 0, 1, 1, 1e9, 0.25, 4,
                            100, 0 };
    char err[SCHED_ERR_LEN];
    sched_schedule *s = sched_generate("gpipe", P, 2, 1, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    sched_balance_plan *p = NULL;
    CU_ASSERT_EQUAL_FATAL(sched_balance(s, &in, &p, NULL, err), 0);
    CU_ASSERT(p->n_probes > 0 && p->n_probes <= 4LL * P * U * 12);
    /* the least bottleneck is 7 (each heavy end alone); the list (100, later cuts first) holds 8s */
    CU_ASSERT(p->bottleneck >= 7 && p->bottleneck <= 7 * 1.25);
    sched_balance_plan_free(p);
    sched_free(s);
}

int main(void)
{
    CU_TestInfo tests[] = {
        { "known optimum on synthetic costs", test_known_optimum },
        { "agrees with brute force over every split", test_vs_brute_force },
        { "memory limit: forced split, a unit too large", test_memory_limit },
        { "bad arguments", test_bad_args },
        { "a large head: the uneven model in miniature", test_large_head },
        { "costs.json per-layer times", test_costs_units },
        { "the fast DP's plans are the plain scan's", test_fast_vs_scan },
        { "the DP's work at the loader's largest sizes", test_fast_work },
        { "the kept top_k are the whole list's", test_top_k_as_whole_list },
        { "memory bounded by the DP table, not the list", test_list_memory },
        CU_TEST_INFO_NULL,
    };
    return tests_run("sched_balance", tests);
}
