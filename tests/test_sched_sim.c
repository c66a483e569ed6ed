/* test_sched_sim.c — the scheduler's numbers: the simulator against a slow,
 * obviously-correct reference on random schedules, measuring a run's events
 * (costs, bubble, timeline, the gaps after actions), deferring W to its
 * micro-batch's turn, and the costs file. Generators, validation, files and
 * renderers are in test_sched.c. No timing thresholds. */
#include "tests/tests.h"
#include "scheduler/sched.h"

#include <jansson.h>
#include <unistd.h>

static char err[SCHED_ERR_LEN];

/* ---- the simulator against a slow, obviously-correct reference ------------- */

static uint64_t rng_state = 88172645463325252ull;
static unsigned rnd(unsigned n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state % n);
}

/* A random schedule: each stage's list is a random interleaving of its actions in
 * a legal local order, with B+W or BW chosen at random. Often deadlocks. */
static sched_schedule *random_schedule(int P, int M, int v)
{
    sched_schedule *s = sched_new(P, v, M);
    int n = M * v;
    int *state = malloc((size_t)n * sizeof(int)), *split = malloc((size_t)n * sizeof(int));
    for (int st = 0; st < P; st++) {
        int left = 0;
        for (int j = 0; j < n; j++) { state[j] = 0; split[j] = (int)rnd(2); left += split[j] ? 3 : 2; }
        while (left) {
            int j = (int)rnd((unsigned)n);
            int done = split[j] ? 3 : 2;
            if (state[j] == done) continue;
            int op = state[j] == 0 ? SCHED_F : !split[j] ? SCHED_BW : state[j] == 1 ? SCHED_B : SCHED_W;
            sched_action a = { (uint32_t)(j % M), (uint16_t)(j / M), (uint8_t)op, 0 };
            sched_append(s, st, a);
            state[j]++;
            left--;
        }
    }
    free(state);
    free(split);
    return s;
}

/* Sweeps all stages until nothing moves, running each stage's next action when
 * its input exists. Links: one FIFO per ordered pair (src, dst). Fills start (per
 * stage, per action) and *step; returns -1 when some stage is stuck. */
static int ref_simulate(const sched_schedule *s, const sched_costs *c, double **start, double *step)
{
    int P = s->n_stages, K = P * s->n_chunks, M = s->n_micro;
    double *fa = malloc(sizeof(double) * (size_t)(K * M)), *ba = malloc(sizeof(double) * (size_t)(K * M));
    double *link = calloc((size_t)(P * P), sizeof(double)), *tfree = calloc((size_t)P, sizeof(double));
    size_t *cur = calloc((size_t)P, sizeof(size_t));
    for (int i = 0; i < K * M; i++) fa[i] = ba[i] = -1;
    for (int moved = 1; moved;) {
        moved = 0;
        for (int st = 0; st < P; st++)
            while (cur[st] < s->len[st]) {
                sched_action a = s->act[st][cur[st]];
                int k = a.chunk * P + st;
                double in = 0, d;
                if (a.op == SCHED_F && k > 0) in = fa[(k - 1) * M + (int)a.mb];
                if ((a.op == SCHED_B || a.op == SCHED_BW) && k < K - 1) in = ba[(k + 1) * M + (int)a.mb];
                if (in < 0) break;
                double t0 = in > tfree[st] ? in : tfree[st];
                d = a.op == SCHED_F ? c->f[k] : a.op == SCHED_B ? c->b[k] : a.op == SCHED_W ? c->w[k] : c->b[k] + c->w[k];
                start[st][cur[st]] = t0;
                tfree[st] = t0 + d;
                int peer = a.op == SCHED_F ? k + 1 : k - 1;
                if (a.op != SCHED_W && peer >= 0 && peer < K) {
                    int dst = peer % P;
                    double arr = tfree[st];
                    if (dst != st) {
                        double *l = &link[st * P + dst];
                        double go = arr > *l ? arr : *l;
                        double bytes = c->xfer_bytes[a.op == SCHED_F ? k : k - 1];
                        *l = go + (c->bandwidth > 0 ? bytes / c->bandwidth : 0);
                        arr = *l + c->latency;
                    }
                    (a.op == SCHED_F ? fa : ba)[k * M + (int)a.mb] = arr;
                }
                if (a.op == SCHED_F && k == K - 1) fa[k * M + (int)a.mb] = tfree[st];
                cur[st]++;
                moved = 1;
            }
    }
    int stuck = 0;
    *step = 0;
    for (int st = 0; st < P; st++) {
        stuck |= cur[st] < s->len[st];
        if (tfree[st] > *step) *step = tfree[st];
    }
    free(fa); free(ba); free(link); free(tfree); free(cur);
    return stuck ? -1 : 0;
}

static void test_simulator_vs_reference(void)
{
    int agree_ok = 0, agree_dead = 0;
    for (int it = 0; it < 600; it++) {
        int P = 1 + (int)rnd(4), M = 1 + (int)rnd(4), v = 1 + (int)rnd(2);
        sched_schedule *s = it % 3 ? random_schedule(P, M, v)
                                   : sched_generate(sched_kinds[it / 3 % 4], P, P * M, it / 3 % 4 == 2 ? 2 : 1, err);
        if (!s) continue; /* a generator's constraint refused this size */
        P = s->n_stages;
        sched_costs *c = sched_costs_new(P * s->n_chunks);
        for (int k = 0; k < c->n; k++) {
            c->f[k] = 0.5 + rnd(4);
            c->b[k] = 0.5 + rnd(4);
            c->w[k] = rnd(3);
            c->xfer_bytes[k] = rnd(3) * 8;
        }
        c->latency = rnd(3) * 0.25;
        c->bandwidth = rnd(2) ? 4 : 0;
        double **ref = malloc(sizeof(double *) * (size_t)P), step = 0;
        for (int st = 0; st < P; st++) ref[st] = malloc(sizeof(double) * (s->len[st] + 1));
        int rrc = ref_simulate(s, c, ref, &step);
        sched_report *r = NULL;
        int frc = sched_simulate(s, c, 1, &r, err);
        CU_ASSERT_EQUAL(frc, rrc);
        if (frc == 0 && rrc == 0) {
            CU_ASSERT_DOUBLE_EQUAL(r->step_time, step, 1e-9);
            for (int st = 0; st < P; st++)
                CU_ASSERT(tests_close("start times", r->start[st], ref[st], s->len[st], 1e-9, 0));
            agree_ok++;
        } else if (frc && rrc) {
            CU_ASSERT_PTR_NOT_NULL(strstr(err, "deadlock"));
            agree_dead++;
        }
        sched_report_free(r);
        for (int st = 0; st < P; st++) free(ref[st]);
        free(ref);
        sched_costs_free(c);
        sched_free(s);
    }
    fprintf(stderr, "\n  %d runnable and %d deadlocked schedules agree with the reference\n",
            agree_ok, agree_dead);
    CU_ASSERT(agree_ok > 150 && agree_dead > 100);
}

/* Events of a simulated run: step `step` of schedule s as report r says, shifted
 * by off ms and stretched by k; a BW splits into B then W at its b cost; a wait
 * precedes every action that started after its stage was free. */
static size_t sim_events(const sched_schedule *s, const sched_report *r, const sched_costs *c, long step,
                         double off, double k, sched_event *ev)
{
    size_t n = 0;
    for (int st = 0; st < s->n_stages; st++) {
        double free_at = 0;
        for (size_t i = 0; i < s->len[st]; i++) {
            sched_action a = s->act[st][i];
            double t0 = (off + k * r->start[st][i]) / 1e3, t1 = (off + k * r->end[st][i]) / 1e3;
            if (a.op != SCHED_W && t0 - free_at > 1e-12)
                ev[n++] = (sched_event){ st, 1, a.op == SCHED_F ? SCHED_F : SCHED_B, a.chunk, a.mb, step, free_at, t0 };
            if (a.op == SCHED_BW) {
                double tb = t0 + k * c->b[a.chunk * s->n_stages + st] / 1e3;
                ev[n++] = (sched_event){ st, 0, SCHED_B, a.chunk, a.mb, step, t0, tb };
                ev[n++] = (sched_event){ st, 0, SCHED_W, a.chunk, a.mb, step, tb, t1 };
            } else {
                ev[n++] = (sched_event){ st, 0, a.op, a.chunk, a.mb, step, t0, t1 };
            }
            free_at = t1;
        }
    }
    return n;
}

static void measure_case(const char *kind, int P, int M, int v)
{
    sched_schedule *s = sched_generate(kind, P, M, v, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    int V = P * s->n_chunks;
    sched_costs *c = sched_costs_new(V);
    for (int i = 0; i < V; i++) c->f[i] = 1 + 0.25 * i, c->b[i] = 2 - 0.1 * i, c->w[i] = 0.5 + 0.2 * i;
    c->latency = 0.5;
    c->bw_early = 1; /* as the runtime: sim_events measures a BW's gradient from its B's end */
    sched_report *r = NULL;
    CU_ASSERT_EQUAL_FATAL(sched_simulate(s, c, 1, &r, err), 0);
    size_t per = 0;
    for (int st = 0; st < P; st++) per += 3 * s->len[st];
    sched_event *ev = calloc(3 * per, sizeof *ev);
    /* step 0 is slow (warm-up: left out), steps 1 and 2 as simulated; given in reverse */
    size_t n = sim_events(s, r, c, 2, 300, 1, ev);
    n += sim_events(s, r, c, 1, 100, 1, ev + n);
    n += sim_events(s, r, c, 0, 0, 3, ev + n);
    sched_measured *m = NULL;
    CU_ASSERT_EQUAL_FATAL(sched_measure(s, ev, n, &m, err), 0);
    CU_ASSERT_EQUAL(m->first_step, 1);
    CU_ASSERT_EQUAL(m->last_step, 2);
    CU_ASSERT(m->rep_step == 1 || m->rep_step == 2);
    CU_ASSERT_DOUBLE_EQUAL(m->step_time, r->step_time, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(m->bubble, r->bubble, 1e-6);
    CU_ASSERT(tests_close("bubble per stage", m->bubble_stage, r->bubble_stage, (size_t)P, 1e-6, 0));
    CU_ASSERT(tests_close("F costs", m->costs->f, c->f, (size_t)V, 1e-6, 0));
    CU_ASSERT(tests_close("B costs", m->costs->b, c->b, (size_t)V, 1e-6, 0));
    CU_ASSERT(tests_close("W costs", m->costs->w, c->w, (size_t)V, 1e-6, 0));
    CU_ASSERT(m->n_latency > 0);
    CU_ASSERT_DOUBLE_EQUAL(m->costs->latency, 0.5, 1e-6);
    for (int st = 0; st < P; st++) {
        CU_ASSERT(tests_close("measured starts", m->timeline->start[st], r->start[st], s->len[st], 1e-6, 0));
        CU_ASSERT(tests_close("measured ends", m->timeline->end[st], r->end[st], s->len[st], 1e-6, 0));
    }
    /* calibrated from the measurement, the simulator predicts the same step */
    sched_report *p = NULL;
    CU_ASSERT_EQUAL_FATAL(sched_simulate(s, m->costs, 0, &p, err), 0);
    CU_ASSERT_DOUBLE_EQUAL(p->step_time, r->step_time, 1e-6);
    /* an event the schedule does not have is refused, naming it */
    sched_measured *bad = NULL;
    ev[0].mb = (uint32_t)M + 5;
    ev[0].step = 1;
    CU_ASSERT_EQUAL(sched_measure(s, ev, n, &bad, err), 0); /* out of range: ignored */
    sched_measured_free(bad);
    sched_report_free(p);
    sched_measured_free(m);
    sched_report_free(r);
    sched_costs_free(c);
    free(ev);
    sched_free(s);
}

static void test_measure(void)
{
    measure_case("1f1b", 3, 6, 1);
    measure_case("zb-h1", 3, 6, 1);
    measure_case("interleaved", 2, 4, 2);
    measure_case("gpipe", 2, 3, 1);
    sched_measured *m = NULL;
    sched_schedule *s = sched_generate("1f1b", 2, 2, 1, err);
    CU_ASSERT_EQUAL(sched_measure(s, NULL, 0, &m, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no events"));
    /* a step with an action missing is refused, naming the action */
    sched_event one = { 0, 0, SCHED_F, 0, 0, 0, 0.0, 0.001 };
    CU_ASSERT_EQUAL(sched_measure(s, &one, 1, &m, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no measured time for F(1)"));
    sched_free(s);
}

/* A stage's gap after an action until its next event (posting a send, being
 * preempted) counts in the action's cost, not as a wait; costs are medians. */
static void test_measure_overhead(void)
{
    sched_schedule *s = sched_generate("gpipe", 1, 2, 1, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    /* F0 F1 BW0 BW1 on one stage, ms: F 1 + gap 0.5; B 2 + gap 0.25; W 1, no gap */
    sched_event ev[12];
    size_t n = 0;
    for (long step = 0; step < 2; step++) {
        double t = 100.0 * step;
        for (int mb = 0; mb < 2; mb++, t += 1.5) ev[n++] = (sched_event){ 0, 0, SCHED_F, 0, (uint32_t)mb, step, t / 1e3, (t + 1) / 1e3 };
        for (int mb = 0; mb < 2; mb++) {
            ev[n++] = (sched_event){ 0, 0, SCHED_B, 0, (uint32_t)mb, step, t / 1e3, (t + 2) / 1e3 };
            t += 2.25;
            ev[n++] = (sched_event){ 0, 0, SCHED_W, 0, (uint32_t)mb, step, t / 1e3, (t + 1) / 1e3 };
            t += 1;
        }
    }
    sched_measured *m = NULL;
    CU_ASSERT_EQUAL_FATAL(sched_measure(s, ev, n, &m, err), 0);
    CU_ASSERT_DOUBLE_EQUAL(m->costs->f[0], 1.5, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(m->costs->b[0], 2.25, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(m->costs->w[0], 1, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(m->step_time, 9.5, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(m->bubble, 0, 1e-9); /* the gaps are the actions' overhead, not bubble */
    CU_ASSERT_DOUBLE_EQUAL(m->timeline->bubble, 0, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(m->timeline->end[0][0], 1, 1e-9); /* boxes: the actions themselves */
    CU_ASSERT_EQUAL(m->n_latency, 0);
    sched_measured_free(m);
    sched_free(s);
    /* costs are medians: one preempted forward does not move them */
    s = sched_generate("gpipe", 1, 3, 1, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    double fd[3] = { 1, 5, 1 }, t = 0;
    n = 0;
    for (int mb = 0; mb < 3; t += fd[mb], mb++) ev[n++] = (sched_event){ 0, 0, SCHED_F, 0, (uint32_t)mb, 0, t / 1e3, (t + fd[mb]) / 1e3 };
    for (int mb = 0; mb < 3; mb++, t += 3) {
        ev[n++] = (sched_event){ 0, 0, SCHED_B, 0, (uint32_t)mb, 0, t / 1e3, (t + 2) / 1e3 };
        ev[n++] = (sched_event){ 0, 0, SCHED_W, 0, (uint32_t)mb, 0, (t + 2) / 1e3, (t + 3) / 1e3 };
    }
    CU_ASSERT_EQUAL_FATAL(sched_measure(s, ev, n, &m, err), 0);
    CU_ASSERT_EQUAL(m->n_steps, 1);
    CU_ASSERT_DOUBLE_EQUAL(m->costs->f[0], 1, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(m->step_time, 16, 1e-9);
    sched_measured_free(m);
    sched_free(s);
}

/* w_in_order: a W ahead of its micro-batch turn runs right after the W it waits
 * for, as the stage runtime runs it; measuring such a run gives the costs back. */
static void test_w_in_order(void)
{
    static const char text[] = "{\"stages\": [[\"F0\", \"F1\", \"F2\", \"B0\", \"F3\", \"B1\", \"W1\", "
                               "\"W0\", \"B2\", \"B3\", \"W3\", \"W2\"], [\"F0\", \"B0\", \"F1\", \"BW1\", "
                               "\"F2\", \"B2\", \"W0\", \"F3\", \"B3\", \"W2\", \"W3\"]]}";
    sched_schedule *s = sched_parse(text, strlen(text), "w.json", 0, 0, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    sched_costs *c = sched_costs_uniform(2, 1, 1, 1, 1);
    c->w_in_order = 1;
    sched_report *r = NULL;
    CU_ASSERT_EQUAL_FATAL(sched_simulate(s, c, 1, &r, err), 0);
    for (int st = 0; st < 2; st++) { /* W(mb) ends are increasing in mb, one W long apart */
        double wend[4] = { -1, -1, -1, -1 };
        for (size_t i = 0; i < s->len[st]; i++)
            if (s->act[st][i].op == SCHED_W) wend[s->act[st][i].mb] = r->end[st][i];
        for (int mb = 1; mb < 4; mb++)
            if (wend[mb] >= 0 && wend[mb - 1] >= 0) CU_ASSERT(wend[mb] > wend[mb - 1]);
    }
    /* stage 0: W1 waits for W0, which runs at once; both end by W0's end + 1 */
    CU_ASSERT_DOUBLE_EQUAL(r->end[0][6], r->end[0][7] + 1, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(r->start[0][6], r->end[0][7], 1e-9);
    /* stage 1: BW1 runs B1 only (W1 waits for W0); W0 runs W0, then W1 (not
     * drawn: BW1's box keeps its B), so F3 starts a W after W0's end at least */
    CU_ASSERT_DOUBLE_EQUAL(r->end[1][3] - r->start[1][3], 1, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(r->end[1][6] - r->start[1][6], 1, 1e-9);
    CU_ASSERT(r->start[1][7] >= r->end[1][6] + 1 - 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(r->busy[1], 12, 1e-9);
    sched_report *lst = NULL; /* as listed: W1 before W0 */
    c->w_in_order = 0;
    CU_ASSERT_EQUAL_FATAL(sched_simulate(s, c, 1, &lst, err), 0);
    CU_ASSERT(lst->end[0][6] < lst->end[0][7]);
    sched_report_free(lst);
    sched_report_free(r);
    sched_costs_free(c);
    sched_free(s);
}

static void test_costs_file(void)
{
    sched_costs *c = sched_costs_new(4);
    for (int i = 0; i < 4; i++) c->f[i] = 1.5 * i, c->b[i] = 0.1 + i, c->w[i] = 3.25;
    c->latency = 0.125;
    c->bw_early = 1;
    char path[] = "/tmp/test_sched_costs.XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    FILE *f = fdopen(fd, "w");
    CU_ASSERT_EQUAL(sched_costs_write_json(c, 2, 2, 7, f, err), 0);
    fclose(f);
    int P = 0, v = 0;
    sched_costs *d = sched_costs_load(path, &P, &v, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT(P == 2 && v == 2 && d->n == 4);
    CU_ASSERT(tests_close("f", d->f, c->f, 4, 0, 0) && tests_close("b", d->b, c->b, 4, 0, 0) &&
              tests_close("w", d->w, c->w, 4, 0, 0));
    CU_ASSERT_DOUBLE_EQUAL(d->latency, 0.125, 0);
    CU_ASSERT_EQUAL(d->bw_early, 1);
    CU_ASSERT_EQUAL(d->w_in_order, 0);
    CU_ASSERT_PTR_NULL(d->link_bandwidth); /* none written: none read */
    /* issue 14: the links' measured bandwidth, one per stage, round trips */
    sched_costs_free(d);
    c->link_bandwidth = calloc(2, sizeof(double));
    c->link_bandwidth[0] = 1234.5;
    f = fopen(path, "w");
    CU_ASSERT_EQUAL(sched_costs_write_json(c, 2, 2, 7, f, err), 0);
    fclose(f);
    d = sched_costs_load(path, &P, &v, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d->link_bandwidth);
    CU_ASSERT(tests_close("link_bandwidth", d->link_bandwidth, c->link_bandwidth, 2, 0, 0));
    f = fopen(path, "w");
    fputs("{\"stages\": 2, \"chunks\": 1, \"f\": [1, 2], \"b\": [1, 1], \"w\": [1, 1], \"link_bandwidth\": [1, -3]}", f);
    fclose(f);
    CU_ASSERT_PTR_NULL(sched_costs_load(path, &P, &v, err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "\"link_bandwidth\"[1]: expected a number >= 0"));
    f = fopen(path, "w");
    fputs("{\"stages\": 2, \"chunks\": 1, \"f\": [1, 2], \"b\": [1], \"w\": [1, 1]}", f);
    fclose(f);
    CU_ASSERT_PTR_NULL(sched_costs_load(path, &P, &v, err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "\"b\": expected an array of 2 numbers"));
    unlink(path);
    sched_costs_free(c);
    sched_costs_free(d);
}

/* ---- the replicas' all-reduce ------------------------------------------------ */

/* 2 stages, F = B = W = 1 per micro-batch, no transfer cost:
 *   stage 0: F0 [0,1] F1 [1,2] B0 [3,4] B1 [5,6] W0 [6,7] W1 [7,8]
 *   stage 1: F0 [1,2] B0 [2,3] F1 [3,4] B1 [4,5] W0 [5,6] W1 [6,7]
 * so the step's compute ends at 8 and each stage's last weight pass is its W1. */
static const char ar_sched[] = "{\"stages\": [[\"F0\",\"F1\",\"B0\",\"B1\",\"W0\",\"W1\"],"
                               "[\"F0\",\"B0\",\"F1\",\"B1\",\"W0\",\"W1\"]]}";

/* R = 2, ring latency 0.25 per step, 1000 bytes per time unit: a bucket of x bytes
 * takes 2(R-1)(0.25 + x/2/1000).
 *   stage 0: bucket a (2000 B, ready half-way through W1 at 7.5) [7.5, 10],
 *            bucket b (2000 B, ready at W1's end 8) [10, 12.5]: exposed 12.5 - 8 = 4.5
 *   stage 1: bucket c (200 B, ready a quarter into W1 at 6.25) [6.25, 6.95]: it
 *            ends before W1 does (7): exposed 0.
 * The step ends when stage 0's optimizer may start: 12.5. */
static sched_costs *ar_costs(int R)
{
    sched_costs *c = sched_costs_uniform(2, 1, 1, 1, 1);
    c->ar = sched_allreduce_new(3);
    c->ar->replicas = R;
    c->ar->latency = 0.25;
    c->ar->bandwidth = 1000;
    c->ar->b[0] = (sched_bucket){ 0, 0, 1.0, 0, 2000 }; /* listed first, ready second */
    c->ar->b[1] = (sched_bucket){ 1, 0, 0.25, 0, 200 };
    c->ar->b[2] = (sched_bucket){ 0, 0, 0.5, 0, 2000 };
    return c;
}

static void test_allreduce_by_hand(void)
{
    for (int in_order = 0; in_order < 2; in_order++) {
        /* w_in_order with W1 listed before W0: W1 is deferred and runs after W0,
         * so the last weight pass is still [7, 8] */
        const char *txt = in_order ? "{\"stages\": [[\"F0\",\"F1\",\"B0\",\"B1\",\"W1\",\"W0\"],"
                                     "[\"F0\",\"B0\",\"F1\",\"B1\",\"W0\",\"W1\"]]}" : ar_sched;
        sched_schedule *s = sched_parse(txt, strlen(txt), "ar.json", 0, 0, err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        sched_costs *c = ar_costs(2);
        c->w_in_order = in_order;
        sched_report *r = NULL;
        CU_ASSERT_EQUAL_FATAL(sched_simulate(s, c, 1, &r, err), 0);
        CU_ASSERT_DOUBLE_EQUAL(r->compute_time, 8, 1e-12);
        CU_ASSERT_DOUBLE_EQUAL(r->step_time, 12.5, 1e-12);
        CU_ASSERT_EQUAL_FATAL(r->ar_n, 3);
        CU_ASSERT_PTR_NOT_NULL_FATAL(r->ar_exposed);
        double ready[] = { 8, 6.25, 7.5 }, start[] = { 10, 6.25, 7.5 }, end[] = { 12.5, 6.95, 10 };
        CU_ASSERT(tests_close("ready", r->ar_ready, ready, 3, 1e-12, 0));
        CU_ASSERT(tests_close("start", r->ar_start, start, 3, 1e-12, 0));
        CU_ASSERT(tests_close("end", r->ar_end, end, 3, 1e-12, 0));
        CU_ASSERT(r->ar_stage[0] == 0 && r->ar_stage[1] == 1 && r->ar_stage[2] == 0);
        CU_ASSERT(r->ar_count[0] == 2 && r->ar_count[1] == 1);
        CU_ASSERT_DOUBLE_EQUAL(r->ar_bytes[0], 4000, 0);
        CU_ASSERT_DOUBLE_EQUAL(r->ar_bytes[1], 200, 0);
        CU_ASSERT_DOUBLE_EQUAL(r->ar_busy[0], 5, 1e-12);
        CU_ASSERT_DOUBLE_EQUAL(r->ar_busy[1], 0.7, 1e-12);
        CU_ASSERT_DOUBLE_EQUAL(r->ar_exposed[0], 4.5, 1e-12); /* does not hide */
        CU_ASSERT_DOUBLE_EQUAL(r->ar_exposed[1], 0, 0);       /* hides under W1 */
        CU_ASSERT_DOUBLE_EQUAL(r->ar_done[0], 12.5, 1e-12);
        CU_ASSERT_DOUBLE_EQUAL(r->ar_done[1], 7, 1e-12);
        /* the exposed time is idle: busy 6 per stage over a 12.5 step */
        CU_ASSERT_DOUBLE_EQUAL(r->bubble, 1 - 12.0 / 25, 1e-12);
        CU_ASSERT_DOUBLE_EQUAL(r->bubble_stage[0], 1 - 6 / 12.5, 1e-12);
        sched_report_free(r);
        sched_costs_free(c);
        sched_free(s);
    }
}

/* R = 4, ring latency 0.01, 40-byte buckets: each takes 6 (0.01 + 40/4/1000) = 0.12:
 * a [7.5, 7.62], b [8, 8.12] (ready at W1's end: exposed 0.12, the least a bucket
 * of the chunk's first unit can cost), c [6.25, 6.37]. */
static void test_allreduce_small(void)
{
    sched_schedule *s = sched_parse(ar_sched, strlen(ar_sched), "ar.json", 0, 0, err);
    sched_costs *c = ar_costs(4);
    c->ar->latency = 0.01;
    for (int i = 0; i < 3; i++) c->ar->b[i].bytes = 40;
    sched_report *r = NULL;
    CU_ASSERT_EQUAL_FATAL(sched_simulate(s, c, 0, &r, err), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r->ar_exposed);
    CU_ASSERT_DOUBLE_EQUAL(r->ar_exposed[0], 0.12, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(r->ar_exposed[1], 0, 0);
    CU_ASSERT_DOUBLE_EQUAL(r->step_time, 8.12, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(r->ar_busy[0], 0.24, 1e-12);
    sched_report_free(r);
    /* only bucket a on stage 0 (b moved to stage 1, ready at its W1's end 7):
     * stage 0's last bucket ends at 7.62 < 8, the whole all-reduce hides */
    c->ar->b[0].stage = 1;
    CU_ASSERT_EQUAL_FATAL(sched_simulate(s, c, 0, &r, err), 0);
    CU_ASSERT_DOUBLE_EQUAL(r->ar_exposed[0], 0, 0);
    CU_ASSERT_DOUBLE_EQUAL(r->ar_exposed[1], 0.12, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(r->ar_done[0], 8, 0);
    CU_ASSERT_DOUBLE_EQUAL(r->step_time, 8, 1e-12); /* stage 1's ring ends at 7.12 */
    sched_report_free(r);
    sched_costs_free(c);
    sched_free(s);
}

/* ZeRO-1 (ar->zero): a bucket is reduce-scattered when ready, (R-1) ring steps; the
 * stage's optimizer then updates its segments and all-gathers every bucket's new
 * weights, (R-1) ring steps each, after its last action and its last reduce-scatter:
 * that half can never hide under the backward pass. On ar_costs(2) (one ring step
 * of 0.25 + x/2/1000 per bucket and phase):
 *   stage 0: a RS [7.5, 8.75], b RS [8.75, 10], all-gather of a and b [10, 12.5]:
 *            exposed 4.5, as the all-reduce (nothing hid there anyway);
 *   stage 1: c RS [6.25, 6.6] under W1, all-gather [7, 7.35] after W1 ends at 7:
 *            exposed 0.35 where the all-reduce hid entirely. */
static void test_allreduce_zero(void)
{
    sched_schedule *s = sched_parse(ar_sched, strlen(ar_sched), "ar.json", 0, 0, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    sched_costs *c = ar_costs(2);
    c->ar->zero = 1;
    sched_report *r = NULL;
    CU_ASSERT_EQUAL_FATAL(sched_simulate(s, c, 0, &r, err), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r->ar_exposed);
    double start[] = { 8.75, 6.25, 7.5 }, end[] = { 10, 6.6, 8.75 };
    CU_ASSERT(tests_close("start", r->ar_start, start, 3, 1e-12, 0));
    CU_ASSERT(tests_close("end", r->ar_end, end, 3, 1e-12, 0));
    CU_ASSERT_DOUBLE_EQUAL(r->ar_busy[0], 5, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(r->ar_busy[1], 0.7, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(r->ar_exposed[0], 4.5, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(r->ar_exposed[1], 0.35, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(r->ar_done[0], 12.5, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(r->ar_done[1], 7.35, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(r->step_time, 12.5, 1e-12);
    sched_report_free(r);
    /* R = 4, small buckets (test_allreduce_small): the all-reduce hides on stage 1
     * (c ends 6.37 < 7); with ZeRO its all-gather, 3 x (0.01 + 40/4/1000) = 0.06,
     * follows W1's end */
    c->ar->replicas = 4;
    c->ar->latency = 0.01;
    for (int i = 0; i < 3; i++) c->ar->b[i].bytes = 40;
    CU_ASSERT_EQUAL_FATAL(sched_simulate(s, c, 0, &r, err), 0);
    CU_ASSERT_DOUBLE_EQUAL(r->ar_exposed[1], 0.06, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(r->ar_busy[1], 0.12, 1e-12);
    sched_report_free(r);
    sched_costs_free(c);
    sched_free(s);
}

/* A tied bucket waits for the stage's last action and for the tied gradient: on
 * stage 1 (compute ends 7) with the gradient from stage 0 (ends 8), over links of
 * latency 0 and infinite bandwidth, it is ready at 8. Bad buckets are refused. */
static void test_allreduce_tied_and_bad(void)
{
    sched_schedule *s = sched_parse(ar_sched, strlen(ar_sched), "ar.json", 0, 0, err);
    sched_costs *c = ar_costs(2);
    c->ar->b[1] = (sched_bucket){ 1, 0, 0.25, 1, 200 };
    c->ar->tied_from = 0;
    c->ar->tied_bytes = 1e6;
    sched_report *r = NULL;
    CU_ASSERT_EQUAL_FATAL(sched_simulate(s, c, 0, &r, err), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r->ar_ready);
    CU_ASSERT_DOUBLE_EQUAL(r->ar_ready[1], 8, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(r->ar_end[1], 8.7, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(r->ar_exposed[1], 1.7, 1e-12);
    sched_report_free(r);
    c->ar->b[2].chunk = 1;
    CU_ASSERT_EQUAL(sched_simulate(s, c, 0, &r, err), -1);
    CU_ASSERT_PTR_NULL(r);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "bucket 2"));
    c->ar->b[2].chunk = 0;
    c->ar->b[2].frac = 1.5;
    CU_ASSERT_EQUAL(sched_simulate(s, c, 0, &r, err), -1);
    sched_costs_free(c);
    sched_free(s);
}

/* R = 1: buckets change nothing, and the report has no all-reduce. */
static void test_allreduce_r1(void)
{
    sched_schedule *s = sched_generate("1f1b", 3, 6, 1, err);
    sched_costs *a = sched_costs_uniform(3, 1, 1, 2, 1.5), *b = sched_costs_uniform(3, 1, 1, 2, 1.5);
    b->ar = sched_allreduce_new(1);
    b->ar->replicas = 1;
    b->ar->b[0] = (sched_bucket){ 0, 0, 1, 0, 1e9 };
    sched_report *ra = NULL, *rb = NULL;
    CU_ASSERT_EQUAL_FATAL(sched_simulate(s, a, 1, &ra, err), 0);
    CU_ASSERT_EQUAL_FATAL(sched_simulate(s, b, 1, &rb, err), 0);
    CU_ASSERT_EQUAL(ra->step_time, rb->step_time);
    CU_ASSERT_EQUAL(ra->step_time, ra->compute_time);
    CU_ASSERT_EQUAL(ra->bubble, rb->bubble);
    CU_ASSERT(rb->ar_n == 0 && !rb->ar_exposed && !ra->ar_exposed);
    for (int st = 0; st < 3; st++)
        CU_ASSERT(tests_close("start", ra->start[st], rb->start[st], s->len[st], 0, 0));
    sched_report_free(ra);
    sched_report_free(rb);
    sched_costs_free(a);
    sched_costs_free(b);
    sched_free(s);
}

/* Issue 14: links with their own bandwidth and latency, gradients with their own
 * byte count. 2 stages (ar_sched), F = B = W = 1, activations 1000 B, gradients
 * 250 B (an encoded wire), the link 1000 B per time unit with latency 0.5: a
 * transfer takes 0.5 + bytes / 1000, its link busy for the bytes part.
 *   stage 0: F0 [0,1] -> sent [1,2] arrives 2.5; F1 [1,2] -> sent [2,3] arrives 3.5
 *   stage 1: F0 [2.5,3.5] B0 [3.5,4.5] -> [4.5,4.75] arrives 5.25; F1 [4.5,5.5]
 *            B1 [5.5,6.5] -> [6.5,6.75] arrives 7.25; W0 [6.5,7.5] W1 [7.5,8.5]
 *   stage 0: B0 [5.25,6.25] B1 [7.25,8.25] W0 [8.25,9.25] W1 [9.25,10.25]
 * With gradients as large as activations (grad_bytes NULL) B0's gradient arrives
 * at 4.5 + 1 + 0.5 = 6, B1's at 6.5 + 1 + 0.5 = 8: stage 0 ends at 11. */
static void test_links_by_hand(void)
{
    sched_schedule *s = sched_parse(ar_sched, strlen(ar_sched), "ar.json", 0, 0, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    for (int grad = 0; grad < 3; grad++) {
        sched_costs *c = sched_costs_uniform(2, 1, 1, 1, 1);
        for (int k = 0; k < 2; k++) c->xfer_bytes[k] = 1000;
        if (grad) {
            c->grad_bytes = calloc(2, sizeof(double));
            c->grad_bytes[0] = c->grad_bytes[1] = 250;
        }
        if (grad == 2) { /* per link; the globals must be ignored */
            c->link_latency = calloc(2, sizeof(double));
            c->link_bandwidth = calloc(2, sizeof(double));
            c->link_latency[0] = 0.5;
            c->link_bandwidth[0] = 1000;
            c->link_latency[1] = 99; /* with 2 stages entry 0 serves both ways */
            c->latency = 7;
            c->bandwidth = 1;
        } else {
            c->latency = 0.5;
            c->bandwidth = 1000;
        }
        sched_report *r = NULL;
        CU_ASSERT_EQUAL_FATAL(sched_simulate(s, c, 1, &r, err), 0);
        if (grad) {
            double s0[] = { 0, 1, 5.25, 7.25, 8.25, 9.25 }, s1[] = { 2.5, 3.5, 4.5, 5.5, 6.5, 7.5 };
            CU_ASSERT(tests_close("stage 0 starts", r->start[0], s0, 6, 1e-12, 0));
            CU_ASSERT(tests_close("stage 1 starts", r->start[1], s1, 6, 1e-12, 0));
            CU_ASSERT_DOUBLE_EQUAL(r->step_time, 10.25, 1e-12);
        } else {
            CU_ASSERT_DOUBLE_EQUAL(r->start[0][2], 6, 1e-12);
            CU_ASSERT_DOUBLE_EQUAL(r->start[0][3], 8, 1e-12);
            CU_ASSERT_DOUBLE_EQUAL(r->step_time, 11, 1e-12);
        }
        sched_report_free(r);
        sched_costs_free(c);
    }
    sched_free(s);
}

/* 3 stages, one micro-batch, 1000 B each way; link 0-1: infinite bandwidth,
 * latency 0.5; link 1-2: 100 B per unit, latency 0 (link 2-0 is never used):
 *   stage 0 F0 [0,1] arrives 1.5; stage 1 F0 [1.5,2.5] sent [2.5,12.5];
 *   stage 2 F0 [12.5,13.5] B0 [13.5,14.5] sent [14.5,24.5] W0 [14.5,15.5];
 *   stage 1 B0 [24.5,25.5] arrives 26 at stage 0; W0 [25.5,26.5];
 *   stage 0 B0 [26,27] W0 [27,28]. A negative link is refused. */
static void test_links_per_pair(void)
{
    const char *txt = "{\"stages\": [[\"F0\",\"B0\",\"W0\"],[\"F0\",\"B0\",\"W0\"],[\"F0\",\"B0\",\"W0\"]]}";
    sched_schedule *s = sched_parse(txt, strlen(txt), "p3.json", 0, 0, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    sched_costs *c = sched_costs_uniform(3, 1, 1, 1, 1);
    for (int k = 0; k < 3; k++) c->xfer_bytes[k] = 1000;
    c->link_latency = calloc(3, sizeof(double));
    c->link_bandwidth = calloc(3, sizeof(double));
    c->link_latency[0] = 0.5;
    c->link_bandwidth[1] = 100;
    c->link_bandwidth[2] = 1;
    sched_report *r = NULL;
    CU_ASSERT_EQUAL_FATAL(sched_simulate(s, c, 1, &r, err), 0);
    double s0[] = { 0, 26, 27 }, s1[] = { 1.5, 24.5, 25.5 }, s2[] = { 12.5, 13.5, 14.5 };
    CU_ASSERT(tests_close("stage 0", r->start[0], s0, 3, 1e-12, 0));
    CU_ASSERT(tests_close("stage 1", r->start[1], s1, 3, 1e-12, 0));
    CU_ASSERT(tests_close("stage 2", r->start[2], s2, 3, 1e-12, 0));
    CU_ASSERT_DOUBLE_EQUAL(r->step_time, 28, 1e-12);
    sched_report_free(r);
    r = NULL;
    c->link_bandwidth[1] = -1;
    CU_ASSERT_EQUAL(sched_simulate(s, c, 0, &r, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "link from stage 1"));
    sched_report_free(r);
    sched_costs_free(c);
    sched_free(s);
}

/* Issue 14: a token bucket on every link direction (costs->burst, as tc's tbf).
 * ar_sched, F = B = W = 1, activations 1000 B, gradients 250 B, the link 250 B
 * per time unit with latency 0.5 and a 1250-byte bucket, full at time 0:
 *   stage 0 F0 [0,1]: after the idle start the bucket covers the 1000 B: leaves
 *     at 1 (not 1 + 4), arrives 1.5; credit 250 at 1.
 *   F1 [1,2], back to back: credit 250 + 1 x 250 = 500, the other 500 B at the
 *     rate: leaves at 2 + 2 = 4, arrives 4.5; the bucket is empty at 4.
 *   stage 1 F0 [1.5,2.5] B0 [2.5,3.5]: its 250 B gradient fits the full bucket
 *     of direction 1 -> 0: arrives 4; credit 1000 at 3.5. F1 [4.5,5.5]
 *     B1 [5.5,6.5]: credit min(1250, 1000 + 3 x 250): arrives 7. W0 [6.5,7.5]
 *     W1 [7.5,8.5].
 *   stage 0 B0 [4,5] B1 [7,8] W0 [8,9] W1 [9,10]: the step ends at 10.
 * Without the bucket (burst 0, the pure-rate model) the same costs give F0 sent
 * [1,5] arriving 5.5, F1 [5,9] 9.5; stage 1 F0 [5.5,6.5] B0 [6.5,7.5] sent
 * [7.5,8.5] arriving 9, F1 [9.5,10.5] B1 [10.5,11.5] arriving 13, W0 [11.5,12.5]
 * W1 [12.5,13.5]; stage 0 B0 [9,10] B1 [13,14] W0 [14,15] W1 [15,16]. */
static void test_links_burst(void)
{
    sched_schedule *s = sched_parse(ar_sched, strlen(ar_sched), "ar.json", 0, 0, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    for (int burst = 0; burst < 2; burst++) {
        sched_costs *c = sched_costs_uniform(2, 1, 1, 1, 1);
        c->grad_bytes = calloc(2, sizeof(double));
        for (int k = 0; k < 2; k++) c->xfer_bytes[k] = 1000, c->grad_bytes[k] = 250;
        c->latency = 0.5;
        c->bandwidth = 250;
        c->burst = burst ? 1250 : 0;
        sched_report *r = NULL;
        CU_ASSERT_EQUAL_FATAL(sched_simulate(s, c, 1, &r, err), 0);
        if (burst) {
            double s0[] = { 0, 1, 4, 7, 8, 9 }, s1[] = { 1.5, 2.5, 4.5, 5.5, 6.5, 7.5 };
            CU_ASSERT(tests_close("stage 0 starts", r->start[0], s0, 6, 1e-12, 0));
            CU_ASSERT(tests_close("stage 1 starts", r->start[1], s1, 6, 1e-12, 0));
            CU_ASSERT_DOUBLE_EQUAL(r->step_time, 10, 1e-12);
        } else { /* exactly the pure-rate numbers */
            double s0[] = { 0, 1, 9, 13, 14, 15 }, s1[] = { 5.5, 6.5, 9.5, 10.5, 11.5, 12.5 };
            CU_ASSERT(tests_close("stage 0 starts", r->start[0], s0, 6, 0, 0));
            CU_ASSERT(tests_close("stage 1 starts", r->start[1], s1, 6, 0, 0));
            CU_ASSERT_EQUAL(r->step_time, 16);
        }
        sched_report_free(r);
        sched_costs_free(c);
    }
    sched_free(s);
}

/* A tensor larger than the bucket pays only for its excess: 2 stages, one
 * micro-batch, 2000 B each way, 250 B per time unit, no latency, burst 1250:
 * F0 [0,1] leaves at 1 + 750/250 = 4; stage 1 F0 [4,5] B0 [5,6] W0 [6,7]; B0's
 * gradient (a full bucket: idle since 0) leaves at 6 + 3 = 9; stage 0 B0 [9,10]
 * W0 [10,11]. With infinite bandwidth the bucket changes nothing (step 5: the
 * costs alone), and burst 0 gives 1 + 8 + 2 + 8 + 2 = 21. A negative or NaN
 * burst is refused. */
static void test_links_burst_large(void)
{
    const char *txt = "{\"stages\": [[\"F0\",\"B0\",\"W0\"],[\"F0\",\"B0\",\"W0\"]]}";
    sched_schedule *s = sched_parse(txt, strlen(txt), "b2.json", 0, 0, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    sched_costs *c = sched_costs_uniform(2, 1, 1, 1, 1);
    for (int k = 0; k < 2; k++) c->xfer_bytes[k] = 2000;
    c->bandwidth = 250;
    c->burst = 1250;
    double want[] = { 11, 5, 21 };
    for (int i = 0; i < 3; i++) {
        c->bandwidth = i == 1 ? 0 : 250;
        c->burst = i == 2 ? 0 : 1250;
        sched_report *r = NULL;
        CU_ASSERT_EQUAL_FATAL(sched_simulate(s, c, 1, &r, err), 0);
        CU_ASSERT_DOUBLE_EQUAL(r->step_time, want[i], 1e-12);
        if (i == 0) {
            double s0[] = { 0, 9, 10 }, s1[] = { 4, 5, 6 };
            CU_ASSERT(tests_close("stage 0 starts", r->start[0], s0, 3, 1e-12, 0));
            CU_ASSERT(tests_close("stage 1 starts", r->start[1], s1, 3, 1e-12, 0));
        }
        sched_report_free(r);
    }
    double bad[] = { -1, NAN, INFINITY };
    for (int i = 0; i < 3; i++) {
        sched_report *r = NULL;
        c->burst = bad[i];
        CU_ASSERT_EQUAL(sched_simulate(s, c, 0, &r, err), -1);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "burst"));
        sched_report_free(r);
    }
    sched_costs_free(c);
    sched_free(s);
}

/* Token buckets in the steady state: the step repeats back to back, so a
 * bucket starts with what the previous step left, refilled over the link's idle
 * time up to the next step's start (the step time), capped at the burst.
 * Saturated: 2 stages, 4 micro-batches, every cost 0, activations 1000 B,
 * gradients 0 B, 250 B per time unit, no latency, burst 1250. From a full
 * bucket F0 would leave at 0 (credit 250 left), F1 at 3, F2 at 7, F3 at 11:
 * the step would be 11, and its bucket ends empty at 11 = the next step's
 * start. Steady: empty at 0, so F0..F3 leave at 4, 8, 12, 16 and the step is
 * 4 x 1000 / 250 = 16, the rate bound (the pure-rate step, burst 0). */
static void test_links_burst_saturated(void)
{
    const char *txt = "{\"stages\": [[\"F0\",\"F1\",\"F2\",\"F3\",\"BW0\",\"BW1\",\"BW2\",\"BW3\"],"
                      "[\"F0\",\"F1\",\"F2\",\"F3\",\"BW0\",\"BW1\",\"BW2\",\"BW3\"]]}";
    sched_schedule *s = sched_parse(txt, strlen(txt), "sat.json", 0, 0, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    sched_costs *c = sched_costs_uniform(2, 1, 0, 0, 0);
    c->grad_bytes = calloc(2, sizeof(double));
    for (int k = 0; k < 2; k++) c->xfer_bytes[k] = 1000;
    c->bandwidth = 250;
    for (int burst = 0; burst < 2; burst++) {
        c->burst = burst ? 1250 : 0;
        sched_report *r = NULL;
        CU_ASSERT_EQUAL_FATAL(sched_simulate(s, c, 1, &r, err), 0);
        double s0[] = { 0, 0, 0, 0, 16, 16, 16, 16 }, s1[] = { 4, 8, 12, 16, 16, 16, 16, 16 };
        CU_ASSERT(tests_close("stage 0 starts", r->start[0], s0, 8, 1e-12, 0));
        CU_ASSERT(tests_close("stage 1 starts", r->start[1], s1, 8, 1e-12, 0));
        CU_ASSERT_DOUBLE_EQUAL(r->step_time, 16, 1e-12);
        sched_report_free(r);
    }
    sched_costs_free(c);
    sched_free(s);
}

/* The same bucket (250 B per time unit, burst 1250, no latency) with compute:
 * 2 stages, 2 micro-batches, F = 1, B = 0.5 on stage 0 and b1 on stage 1, W = 0,
 * activations 1000 B, gradients 0 B. From a full bucket: F0 [0,1] leaves at 1
 * (credit 250), F1 [1,2] has 500 at 2 and leaves at 2 + 500/250 = 4, the bucket
 * empty; stage 1 F0 [1,2] F1 [4,5], then its B0 B1.
 *  - b1 = 3, idle long enough: stage 1 B0 [5,8] B1 [8,11], stage 0 B0 [8,8.5]
 *    B1 [11,11.5]: the step is 11.5 and the bucket refills over 11.5 - 4 = 7.5
 *    (1875 B > 1250): full again, the full-bucket result.
 *  - b1 = 0.5, intermediate: stage 1 B0 [5,5.5] B1 [5.5,6], stage 0 B1 ends 6.5;
 *    the bucket refills over 2.5 to 625 B only. Steady, from 625: F0 at 1 has
 *    875, leaves at 1 + 125/250 = 1.5 (empty); F1 at 2 has 125, leaves at
 *    2 + 875/250 = 5.5; stage 1 F0 [1.5,2.5] F1 [5.5,6.5] B0 [6.5,7] B1 [7,7.5];
 *    stage 0 B0 [7,7.5] B1 [7.5,8]: step 8, refill over 8 - 5.5 = 2.5 to 625
 *    again (the fixed point). The full bucket said 6.5, the pure rate 11.5. */
static void test_links_burst_steady(void)
{
    const char *txt = "{\"stages\": [[\"F0\",\"F1\",\"B0\",\"B1\",\"W0\",\"W1\"],"
                      "[\"F0\",\"F1\",\"B0\",\"B1\",\"W0\",\"W1\"]]}";
    sched_schedule *s = sched_parse(txt, strlen(txt), "steady.json", 0, 0, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    sched_costs *c = sched_costs_uniform(2, 1, 1, 0.5, 0);
    c->grad_bytes = calloc(2, sizeof(double));
    for (int k = 0; k < 2; k++) c->xfer_bytes[k] = 1000;
    c->bandwidth = 250;
    c->burst = 1250;
    /* b1 = 3: refilled */
    c->b[1] = 3;
    sched_report *r = NULL;
    CU_ASSERT_EQUAL_FATAL(sched_simulate(s, c, 1, &r, err), 0);
    double s0[] = { 0, 1, 8, 11, 11.5, 11.5 }, s1[] = { 1, 4, 5, 8, 11, 11 };
    CU_ASSERT(tests_close("refilled: stage 0 starts", r->start[0], s0, 6, 1e-12, 0));
    CU_ASSERT(tests_close("refilled: stage 1 starts", r->start[1], s1, 6, 1e-12, 0));
    CU_ASSERT_DOUBLE_EQUAL(r->step_time, 11.5, 1e-12);
    sched_report_free(r);
    /* b1 = 0.5: partly refilled */
    c->b[1] = 0.5;
    r = NULL;
    CU_ASSERT_EQUAL_FATAL(sched_simulate(s, c, 1, &r, err), 0);
    double t0[] = { 0, 1, 7, 7.5, 8, 8 }, t1[] = { 1.5, 5.5, 6.5, 7, 7.5, 7.5 };
    CU_ASSERT(tests_close("partly refilled: stage 0 starts", r->start[0], t0, 6, 1e-12, 0));
    CU_ASSERT(tests_close("partly refilled: stage 1 starts", r->start[1], t1, 6, 1e-12, 0));
    CU_ASSERT_DOUBLE_EQUAL(r->step_time, 8, 1e-12);
    sched_report_free(r);
    sched_costs_free(c);
    sched_free(s);
}

int main(void)
{
    CU_TestInfo tests[] = {
        { "simulator agrees with a slow reference", test_simulator_vs_reference },
        { "measured events give back costs, bubble, timeline", test_measure },
        { "gaps after actions count in their costs", test_measure_overhead },
        { "w_in_order defers a W to its micro-batch turn", test_w_in_order },
        { "costs file round trip", test_costs_file },
        { "all-reduce: exposed and step time by hand", test_allreduce_by_hand },
        { "all-reduce: small buckets hide", test_allreduce_small },
        { "all-reduce: ZeRO-1's all-gather follows the optimizer", test_allreduce_zero },
        { "all-reduce: tied bucket, bad buckets", test_allreduce_tied_and_bad },
        { "all-reduce: R = 1 changes nothing", test_allreduce_r1 },
        { "links: encoded gradient bytes, per-link bandwidth and latency by hand", test_links_by_hand },
        { "links: per stage pair", test_links_per_pair },
        { "links: token bucket by hand (idle gap, back to back, burst 0 = pure rate)", test_links_burst },
        { "links: a tensor larger than the bucket, bad bursts", test_links_burst_large },
        { "links: steady-state bucket, saturated link = the rate bound", test_links_burst_saturated },
        { "links: steady-state bucket, refilled and partly refilled", test_links_burst_steady },
        CU_TEST_INFO_NULL,
    };
    return tests_run("sched_sim", tests);
}
