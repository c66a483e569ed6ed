/* test_sched_balance.c — the automatic stage balancer (scheduler/sched_balance.h)
 * on synthetic costs: a known optimum, agreement with brute force over every
 * split (with and without a memory limit), and a unit too large for any stage. */
#include <unistd.h>

#include "scheduler/sched_balance.h"
#include "tests.h"

#define MAXU 9

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
                                0, 0, 1, 1, 0, 0.25, 8, 1000 };
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

int main(void)
{
    CU_TestInfo tests[] = {
        { "known optimum on synthetic costs", test_known_optimum },
        { "agrees with brute force over every split", test_vs_brute_force },
        { "memory limit: forced split, a unit too large", test_memory_limit },
        { "bad arguments", test_bad_args },
        { "a large head: the uneven model in miniature", test_large_head },
        { "costs.json per-layer times", test_costs_units },
        CU_TEST_INFO_NULL,
    };
    return tests_run("sched_balance", tests);
}
