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
    f = fopen(path, "w");
    fputs("{\"stages\": 2, \"chunks\": 1, \"f\": [1, 2], \"b\": [1], \"w\": [1, 1]}", f);
    fclose(f);
    CU_ASSERT_PTR_NULL(sched_costs_load(path, &P, &v, err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "\"b\": expected an array of 2 numbers"));
    unlink(path);
    sched_costs_free(c);
    sched_costs_free(d);
}

int main(void)
{
    CU_TestInfo tests[] = {
        { "simulator agrees with a slow reference", test_simulator_vs_reference },
        { "measured events give back costs, bubble, timeline", test_measure },
        { "gaps after actions count in their costs", test_measure_overhead },
        { "w_in_order defers a W to its micro-batch turn", test_w_in_order },
        { "costs file round trip", test_costs_file },
        CU_TEST_INFO_NULL,
    };
    return tests_run("sched_sim", tests);
}
