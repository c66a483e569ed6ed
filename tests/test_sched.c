/* test_sched.c — the scheduler: golden bubbles and peaks (GPipe, 1F1B, ZB-H1,
 * interleaved), every generator validated over a grid of (P, M, v), hand-written
 * deadlocks explained, transfers in the simulator, JSON/CSV round trips, the
 * sample files in tests/data/sched, malformed files naming file and position,
 * and the renderers. The simulator against a reference, measuring runs and the
 * costs file are in test_sched_sim.c. No timing thresholds: speed is the
 * benchmark's job. */
#include "tests/tests.h"
#include "scheduler/sched.h"

#include <jansson.h>
#include <unistd.h>

static char err[SCHED_ERR_LEN];

/* Generates and simulates kind with uniform per-stage costs; NULL on failure. */
static sched_report *sim(const char *kind, int P, int M, int v, double f, double b, double w,
                         sched_schedule **out)
{
    sched_schedule *s = sched_generate(kind, P, M, v, err);
    if (!s) { fprintf(stderr, "\n  generate %s: %s\n", kind, err); return NULL; }
    sched_costs *c = sched_costs_uniform(P, s->n_chunks, f, b, w);
    sched_report *r = NULL;
    if (sched_simulate(s, c, 1, &r, err)) {
        fprintf(stderr, "\n  simulate %s: %s\n", kind, err);
        sched_report_free(r);
        r = NULL;
    }
    sched_costs_free(c);
    if (out) *out = s;
    else sched_free(s);
    return r;
}

/* Idle time of the busiest-idle stage: step time minus its compute. */
static double bubble_time(const sched_report *r)
{
    double worst = 0;
    for (int st = 0; st < r->n_stages; st++)
        if (r->step_time - r->busy[st] > worst) worst = r->step_time - r->busy[st];
    return worst;
}

static void test_golden_gpipe_1f1b(void)
{
    const char *kinds[] = { "gpipe", "1f1b" };
    for (int i = 0; i < 2; i++) {
        sched_report *r = sim(kinds[i], 4, 8, 1, 1, 2, 0, NULL);
        CU_ASSERT_PTR_NOT_NULL_FATAL(r);
        CU_ASSERT_DOUBLE_EQUAL(r->step_time, 33.0, 1e-9);
        CU_ASSERT_DOUBLE_EQUAL(r->bubble, 3.0 / 11.0, 1e-9);
        for (int st = 0; st < 4; st++) {
            CU_ASSERT_DOUBLE_EQUAL(r->bubble_stage[st], 3.0 / 11.0, 1e-9);
            CU_ASSERT_DOUBLE_EQUAL(r->busy[st], 24.0, 1e-9);
            int want = i == 0 ? 8 : 4 - st;
            if (r->peak_mb[st] != want)
                fprintf(stderr, "\n  %s stage %d peak %d, want %d\n", kinds[i], st, r->peak_mb[st], want);
            CU_ASSERT_EQUAL(r->peak_mb[st], want);
            CU_ASSERT_DOUBLE_EQUAL(r->peak_bytes[st], want, 1e-9); /* uniform costs stash 1 byte */
        }
        sched_report_free(r);
    }
}

static void test_zbh1_third_of_1f1b(void)
{
    sched_report *a = sim("1f1b", 4, 8, 1, 1, 1, 1, NULL);
    sched_report *z = sim("zb-h1", 4, 8, 1, 1, 1, 1, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(z);
    double ratio = bubble_time(z) / bubble_time(a);
    fprintf(stderr, "\n  zb-h1 bubble %.4f vs 1f1b %.4f (idle time ratio %.3f)\n", z->bubble,
            a->bubble, ratio);
    CU_ASSERT(ratio > 0.25 && ratio < 0.42);
    CU_ASSERT(z->bubble < a->bubble);
    int pa = 0, pz = 0;
    for (int st = 0; st < 4; st++) {
        if (a->peak_mb[st] > pa) pa = a->peak_mb[st];
        if (z->peak_mb[st] > pz) pz = z->peak_mb[st];
    }
    CU_ASSERT_EQUAL(pz, pa); /* same peak memory as 1F1B */
    sched_report_free(a);
    sched_report_free(z);
    /* Larger pipelines keep the ratio. */
    a = sim("1f1b", 8, 32, 1, 1, 1, 1, NULL);
    z = sim("zb-h1", 8, 32, 1, 1, 1, 1, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(z);
    ratio = bubble_time(z) / bubble_time(a);
    CU_ASSERT(ratio > 0.25 && ratio < 0.42);
    sched_report_free(a);
    sched_report_free(z);
}

static void test_interleaved_cuts_bubble(void)
{
    sched_report *a = sim("1f1b", 4, 8, 1, 1, 2, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    for (int v = 2; v <= 4; v++) {
        sched_report *r = sim("interleaved", 4, 8, v, 1, 2, 0, NULL);
        CU_ASSERT_PTR_NOT_NULL_FATAL(r);
        double ratio = bubble_time(r) / bubble_time(a);
        fprintf(stderr, "\n  interleaved v=%d: bubble %.4f, idle ratio to 1f1b %.3f (1/v = %.3f)",
                v, r->bubble, ratio, 1.0 / v);
        CU_ASSERT(fabs(ratio * v - 1) < 0.15);
        CU_ASSERT_DOUBLE_EQUAL(r->busy[0], a->busy[0], 1e-9); /* same total work */
        sched_report_free(r);
    }
    sched_report_free(a);
}

/* Backwards (W, or BW) of each chunk run in micro-batch order on every stage, so
 * weight gradients accumulate in micro-batch order. */
static int weights_in_order(const sched_schedule *s)
{
    for (int st = 0; st < s->n_stages; st++) {
        int next[256] = { 0 };
        for (size_t i = 0; i < s->len[st]; i++) {
            sched_action a = s->act[st][i];
            if (a.op != SCHED_W && a.op != SCHED_BW) continue;
            if ((int)a.mb != next[a.chunk]) return 0;
            next[a.chunk]++;
        }
    }
    return 1;
}

static void test_generators_grid(void)
{
    int checked = 0, refused = 0;
    for (int k = 0; sched_kinds[k]; k++)
        for (int P = 1; P <= 6; P++)
            for (int M = 1; M <= 13; M++)
                for (int v = 1; v <= 3; v++) {
                    const char *kind = sched_kinds[k];
                    int inter = !strcmp(kind, "interleaved"), zbv = !strcmp(kind, "zb-v");
                    int ok = inter ? (v >= 2 && M % P == 0)
                           : zbv   ? v == 2
                                   : (v == 1 && (!strcmp(kind, "gpipe") || M >= P));
                    sched_schedule *s = sched_generate(kind, P, M, v, err);
                    if (!ok) {
                        CU_ASSERT_PTR_NULL(s);
                        CU_ASSERT_PTR_NOT_NULL(strstr(err, kind));
                        sched_free(s);
                        refused++;
                        continue;
                    }
                    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
                    sched_report *r = NULL;
                    int rc = sched_check(s, &r, err);
                    if (rc) fprintf(stderr, "\n  %s P=%d M=%d v=%d: %s\n", kind, P, M, v, err);
                    CU_ASSERT_EQUAL(rc, 0);
                    CU_ASSERT(weights_in_order(s));
                    for (int st = 0; r && st < P; st++) {
                        CU_ASSERT(r->peak_mb[st] >= 1 && r->peak_mb[st] <= M * s->n_chunks);
                        if (!strcmp(kind, "1f1b")) CU_ASSERT_EQUAL(r->peak_mb[st], P - st);
                        if (!strcmp(kind, "zb-h1")) CU_ASSERT(r->peak_mb[st] <= P);
                    }
                    sched_report_free(r);
                    sched_free(s);
                    checked++;
                }
    /* gpipe 6*13, 1f1b and zb-h1 63 each (M >= P), interleaved 2 * 30 (M % P == 0),
     * zb-v 6*13 (v = 2, any M), 2bw 63 (M >= P). */
    CU_ASSERT_EQUAL(checked, 78 + 63 + 63 + 60 + 78 + 63);
    CU_ASSERT_EQUAL(checked + refused, 6 * 6 * 13 * 3);
    CU_ASSERT_PTR_NULL(sched_generate("pipedream", 2, 4, 1, err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "unknown schedule kind 'pipedream'"));
    CU_ASSERT_PTR_NULL(sched_generate("1f1b", 4, 2, 1, err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "2 micro-batches for 4 stages"));
    CU_ASSERT_PTR_NULL(sched_generate("interleaved", 4, 6, 2, err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "multiple of the number of stages"));
    /* A bigger grid point: every generator at P=32, M=128. */
    for (int k = 0; sched_kinds[k]; k++) {
        sched_schedule *s = sched_generate(sched_kinds[k], 32, 128, 0, err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        CU_ASSERT_EQUAL(sched_check(s, NULL, err), 0);
        sched_free(s);
    }
}

static void test_deadlock_explained(void)
{
    const char *path = "tests/data/sched/deadlock-2x4.json";
    sched_schedule *s = sched_load(path, 0, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s); /* statically fine: every action once, in local order */
    sched_report *r = NULL;
    CU_ASSERT_EQUAL(sched_check(s, &r, err), -1);
    fprintf(stderr, "\n  %s\n", err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "stage 0 waits for B(2) from stage 1"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "stage 1 waits for F(3) from stage 0"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r->detail);
    CU_ASSERT_PTR_NOT_NULL(strstr(r->detail, "stage 0: F0 F1 F2 BW0 BW1 [BW2] F3 BW3"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r->detail, "stage 1: F0 BW0 F1 BW1 F2 [F3] BW2 BW3"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r->detail, "stuck at action 5 of 8, stages[1][5]: waits for F(3)"));
    sched_report_free(r);
    /* The simulator refuses it the same way. */
    sched_costs *c = sched_costs_uniform(2, 1, 1, 2, 0);
    CU_ASSERT_EQUAL(sched_simulate(s, c, 1, &r, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "deadlock"));
    sched_report_free(r);
    sched_costs_free(c);
    sched_free(s);
    /* Interleaved chunks are named in the message. */
    const char *txt = "{\"stages\": [[\"F0\", \"F0c1\", \"BW0c1\", \"BW0\"], [\"F0c1\", \"F0\", \"BW0c1\", \"BW0\"]]}";
    s = sched_parse(txt, strlen(txt), "inline.json", 0, 0, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(s->n_chunks, 2);
    CU_ASSERT_EQUAL(sched_check(s, NULL, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "stage 0 waits for F(0, chunk 0) from stage 1"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "stage 1 waits for F(0, chunk 1) from stage 0"));
    sched_free(s);
}

static void test_transfers(void)
{
    /* P=2, M=1: F0 | send | F1, B1 | send | B0. Each send: 10 bytes at 10 B/unit + 0.5. */
    sched_schedule *s = sched_generate("gpipe", 2, 1, 1, err);
    sched_costs *c = sched_costs_uniform(2, 1, 1, 1, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    for (int k = 0; k < 2; k++) { c->xfer_bytes[k] = 10; c->stash_bytes[k] = 100; }
    c->latency = 0.5;
    c->bandwidth = 10;
    sched_report *r = NULL;
    CU_ASSERT_EQUAL_FATAL(sched_simulate(s, c, 1, &r, err), 0);
    CU_ASSERT_DOUBLE_EQUAL(r->step_time, 7.0, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(r->start[1][0], 2.5, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(r->peak_bytes[0], 100, 1e-9);
    sched_report_free(r);
    sched_free(s);
    /* Link serialisation: GPipe P=2, M=2: the second activation waits for the link. */
    s = sched_generate("gpipe", 2, 2, 1, err);
    c->bandwidth = 10.0 / 3; /* 3 units per transfer, F takes 1 */
    c->latency = 0;
    CU_ASSERT_EQUAL_FATAL(sched_simulate(s, c, 1, &r, err), 0);
    CU_ASSERT_DOUBLE_EQUAL(r->start[1][0], 4.0, 1e-9); /* F0 ends 1, link 1..4 */
    CU_ASSERT_DOUBLE_EQUAL(r->start[1][1], 7.0, 1e-9); /* F1 ends 2, link busy to 4, 4..7 */
    sched_report_free(r);
    sched_costs_free(c);
    /* Costs of the wrong size are refused. */
    c = sched_costs_uniform(3, 1, 1, 1, 0);
    CU_ASSERT_EQUAL(sched_simulate(s, c, 0, &r, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "3 virtual stages"));
    sched_costs_free(c);
    sched_free(s);
}

/* The memory model of activation recomputation: an F's transient, a B's work
 * held until its W, a BW's transient, on top of the stashes in flight. */
static void test_memory_model(void)
{
    const char *txt = "{\"stages\": [[\"F0\", \"F1\", \"B0\", \"W0\", \"B1\", \"W1\"], "
                      "[\"F0\", \"BW0\", \"F1\", \"BW1\"]]}";
    sched_schedule *s = sched_parse(txt, strlen(txt), "inline.json", 0, 0, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    sched_costs *c = sched_costs_uniform(2, 1, 1, 1, 1);
    for (int k = 0; k < 2; k++) {
        c->stash_bytes[k] = 100;
        c->f_tmp_bytes[k] = 7;
        c->b_bytes[k] = 40;
        c->bw_bytes[k] = 30;
    }
    sched_report *r = NULL;
    CU_ASSERT_EQUAL_FATAL(sched_simulate(s, c, 0, &r, err), 0);
    /* stage 0: F0 107, F1 207, B0 240 (two stashes + one work), W0 frees 140 */
    CU_ASSERT_DOUBLE_EQUAL(r->peak_bytes[0], 240, 1e-9);
    /* stage 1: F0 107, BW0 130 (its stash + the transient), then the same again */
    CU_ASSERT_DOUBLE_EQUAL(r->peak_bytes[1], 130, 1e-9);
    sched_report_free(r);
    c->f_tmp_bytes[0] = 150; /* a forward transient larger than the rest */
    CU_ASSERT_EQUAL_FATAL(sched_simulate(s, c, 0, &r, err), 0);
    CU_ASSERT_DOUBLE_EQUAL(r->peak_bytes[0], 350, 1e-9);
    sched_report_free(r);
    c->bw_bytes[1] = -1;
    CU_ASSERT_EQUAL(sched_simulate(s, c, 0, &r, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "must be >= 0"));
    sched_costs_free(c);
    sched_free(s);
}

static int same_schedule(const sched_schedule *a, const sched_schedule *b)
{
    if (a->n_stages != b->n_stages || a->n_chunks != b->n_chunks || a->n_micro != b->n_micro)
        return 0;
    for (int st = 0; st < a->n_stages; st++) {
        if (a->len[st] != b->len[st]) return 0;
        for (size_t i = 0; i < a->len[st]; i++)
            if (a->act[st][i].op != b->act[st][i].op || a->act[st][i].mb != b->act[st][i].mb ||
                a->act[st][i].chunk != b->act[st][i].chunk || a->act[st][i].next != b->act[st][i].next)
                return 0;
    }
    return 1;
}

static void test_round_trips(void)
{
    for (int k = 0; sched_kinds[k]; k++)
        for (int csv = 0; csv <= 1; csv++) {
            sched_schedule *s = sched_generate(sched_kinds[k], 3, 6, 0, err);
            CU_ASSERT_PTR_NOT_NULL_FATAL(s);
            char *buf = NULL;
            size_t n = 0;
            FILE *f = open_memstream(&buf, &n);
            if (csv && sched_is_cross_step(s)) { /* 2bw: no CSV form, said so */
                CU_ASSERT_EQUAL(sched_write_csv(s, f, err), -1);
                CU_ASSERT_PTR_NOT_NULL(strstr(err, "no CSV form"));
                fclose(f);
                free(buf);
                sched_free(s);
                continue;
            }
            CU_ASSERT_EQUAL(csv ? sched_write_csv(s, f, err) : sched_write_json(s, f, err), 0);
            fclose(f);
            sched_schedule *t = sched_parse(buf, n, csv ? "rt.csv" : "rt.json", csv, 0, err);
            if (!t) fprintf(stderr, "\n  %s: %s\n", sched_kinds[k], err);
            CU_ASSERT_PTR_NOT_NULL_FATAL(t);
            CU_ASSERT(same_schedule(s, t));
            if (!csv) CU_ASSERT_STRING_EQUAL(t->kind, sched_kinds[k]);
            sched_free(t);
            free(buf);
            sched_free(s);
        }
    /* The shipped samples equal the generators' output. */
    const char *files[] = { "tests/data/sched/1f1b-4x8.csv", "tests/data/sched/zb-h1-4x8.json",
                            "tests/data/sched/interleaved-4x8-v2.csv" };
    const char *kinds[] = { "1f1b", "zb-h1", "interleaved" };
    for (int i = 0; i < 3; i++) {
        sched_schedule *a = sched_load(files[i], 0, err);
        if (!a) fprintf(stderr, "\n  %s\n", err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(a);
        sched_schedule *b = sched_generate(kinds[i], 4, 8, 0, err);
        CU_ASSERT(same_schedule(a, b));
        sched_free(a);
        sched_free(b);
    }
    /* PyTorch's letters and idle cells: I = input grad, B = full backward. */
    sched_schedule *s = sched_load("tests/data/sched/pytorch-style-2x4.csv", 0, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(s->n_stages, 2);
    CU_ASSERT_EQUAL(s->n_micro, 4);
    CU_ASSERT_EQUAL(s->len[0], 12);
    CU_ASSERT_EQUAL(s->act[0][2].op, SCHED_B);
    CU_ASSERT_EQUAL(s->act[1][4].op, SCHED_BW);
    CU_ASSERT_EQUAL(sched_check(s, NULL, err), 0);
    sched_free(s);
}

/* Parses text as file `name` and expects failure with every needle in err. */
static void expect_bad(const char *name, const char *text, const char *n1, const char *n2)
{
    size_t nl = strlen(name);
    int csv = nl > 4 && !strcmp(name + nl - 4, ".csv");
    sched_schedule *s = sched_parse(text, strlen(text), name, csv, 0, err);
    int rc = s ? sched_check(s, NULL, err) : -1;
    sched_free(s);
    int ok = rc == -1 && strstr(err, name) && (!n1 || strstr(err, n1)) && (!n2 || strstr(err, n2));
    if (!ok) fprintf(stderr, "\n  %s: got \"%s\", want \"%s\" and \"%s\"\n", name, rc ? err : "(ok)",
                     n1 ? n1 : "", n2 ? n2 : "");
    CU_ASSERT(ok);
}

static void test_malformed_files(void)
{
    expect_bad("unknown.json", "{\"stages\": [[\"F0\", \"X0\"]]}", "stages[0][1]", "unknown action 'X0'");
    expect_bad("unknown.csv", "0F0,0Z0\n", "row 1, column 2", "unknown action type");
    expect_bad("send.csv", "0F0,0SEND_F0\n", "row 1, column 2", "not a compute action");
    expect_bad("nobwd.json", "{\"stages\": [[\"F0\", \"F1\", \"BW0\"]]}", "missing backward", "micro-batch 1");
    expect_bad("nobwd.csv", "0F0,0F1,0B1\n", "row 1", "missing backward for micro-batch 0");
    expect_bad("now.json", "{\"stages\": [[\"F0\", \"B0\"]]}", "missing weight gradient W(0)", NULL);
    expect_bad("dup.json", "{\"stages\": [[\"F0\", \"F0\", \"BW0\"]]}", "stages[0][1]", "duplicated forward");
    expect_bad("dup.csv", "0F0,0I0,0W0,0B0\n", "row 1, column 4", "duplicated backward");
    expect_bad("order.json", "{\"stages\": [[\"B0\", \"F0\", \"W0\"]]}", "stages[0][0]", "before the forward");
    expect_bad("order2.json", "{\"stages\": [[\"F0\", \"W0\", \"B0\"]]}", "stages[0][1]", "comes before B");
    expect_bad("mb.json", "{\"micro_batches\": 2, \"stages\": [[\"F0\", \"F5\"]]}", "stages[0][1]",
               "bad micro-batch index 5");
    expect_bad("mb2.json", "{\"stages\": [[\"F-1\"]]}", "stages[0][0]", "bad micro-batch index");
    expect_bad("mb.csv", "0F0,0Fx\n", "row 1, column 2", "bad micro-batch index");
    expect_bad("long.csv", "0F0,0F00000000000000000000000000000000000001\n", "row 1, column 2", "too long");
    expect_bad("rank.csv", "0F0,0B0\n1F0,2B0\n", "row 2, column 2", "virtual stage 2");
    expect_bad("gap.json", "{\"stages\": [[\"F0\", \"BW0\", \"F2\", \"BW2\"]]}", "missing forward F(1)", NULL);
    expect_bad("syntax.json", "{\"stages\": [[\"F0\",]]}", "invalid JSON", NULL);
    expect_bad("key.json", "{\"stage\": []}", "unknown key \"stage\"", NULL);
    expect_bad("num.json", "{\"stages\": [[0]]}", "stages[0][0]", "number");
    expect_bad("empty.csv", "\n\n", "empty schedule", NULL);
    expect_bad("deadlock.csv", "0F0,0B0,0F1,0B1\n1F1,1F0,1B0,1B1\n", "deadlock",
               "stage 0 waits for B(0) from stage 1; stage 1 waits for F(1) from stage 0");
    expect_bad("deadlock2.csv", "0F0,,0B0,0F1,0B1\n1F1,1F0,1B0,1B1\n", "row 1 column 3", "row 2 column 1");
    expect_bad("deadlock.json", "{\"stages\": [[\"F0\", \"BW0\", \"F1\", \"BW1\"], "
               "[\"F0\", \"F1\", \"BW0\", \"BW1\"]]}", "stage 1 waits for F(1) from stage 0",
               "stage 0 waits for B(0) from stage 1");
    /* A file that does not exist names itself. */
    CU_ASSERT_PTR_NULL(sched_load("tests/data/sched/no-such-file.json", 0, err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no-such-file.json"));
    /* Asking for a micro-batch count the file contradicts. */
    CU_ASSERT_PTR_NULL(sched_load("tests/data/sched/zb-h1-4x8.json", 4, err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "\"micro_batches\" is 8"));
    CU_ASSERT_PTR_NULL(sched_load("tests/data/sched/1f1b-4x8.csv", 4, err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "bad micro-batch index 4"));
}

static void test_action_strings(void)
{
    sched_action a;
    char buf[32];
    CU_ASSERT_EQUAL(sched_action_parse("BW12c1", &a, err), 0);
    CU_ASSERT(a.op == SCHED_BW && a.mb == 12 && a.chunk == 1);
    CU_ASSERT_STRING_EQUAL(sched_action_str(a, buf, sizeof buf), "BW12c1");
    CU_ASSERT_EQUAL(sched_action_parse("W3", &a, err), 0);
    CU_ASSERT_STRING_EQUAL(sched_action_str(a, buf, sizeof buf), "W3");
    CU_ASSERT_EQUAL(sched_action_parse("F3c", &a, err), -1);
    CU_ASSERT_EQUAL(sched_action_parse("F3x", &a, err), -1);
    CU_ASSERT_EQUAL(sched_action_parse("f3", &a, err), -1);
    CU_ASSERT_EQUAL(sched_action_parse("F1234567890", &a, err), -1);
}


/* Joins stage st's actions in the JSON form ("F0 F1 B0c1 ...") into buf. */
static char *stage_str(const sched_schedule *s, int st, char *buf, size_t n)
{
    size_t o = 0;
    buf[0] = 0;
    for (size_t i = 0; i < s->len[st] && o < n; i++) {
        char a[32];
        o += (size_t)snprintf(buf + o, n - o, "%s%s", i ? " " : "", sched_action_str(s->act[st][i], a, sizeof a));
    }
    return buf;
}

/* ZB-V, P = 2, M = 4, checked by hand. Stage 0 holds virtual stages 0 and 3
 * (chunk 1 ends in the loss), stage 1 holds 1 and 2 (the turn of the V is
 * local). With F = B = W = 1 per chunk the timeline played by hand is:
 *   stage 0: F0 F1 F2 [0,3]; F0c1 B0c1 W0c1 [3,6]; F1c1 waits for stage 1's
 *            F1c1 (ends 5) and runs [6,7], B1c1 W1c1 [7,9]; F3 [9,10]; B0 needs
 *            stage 1's B0 (ends 9) [10,11]; ... B3 [22,23], W3 [23,24];
 *   stage 1: idle [0,1]; F0 [1,2], F0c1 [2,3] (local), F1 [3,4], F1c1 [4,5],
 *            B0c1 needs stage 0's B0c1 (ends 5) [5,6]; ... W3 ends at 25.
 * Step 25, each stage busy 24 (3 x 4 x 2 actions): bubble 1 - 48/50 = 4%,
 * against 1F1B's (P-1)/(M+P-1) = 20% at the same per-stage costs; at most 4
 * (micro-batch, chunk) pairs in flight on either stage. */
static void test_zbv_golden(void)
{
    sched_schedule *s = NULL;
    sched_report *r = sim("zb-v", 2, 4, 0, 2, 2, 2, &s);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    char buf[1024];
    CU_ASSERT_EQUAL(s->n_chunks, 2);
    CU_ASSERT_EQUAL(s->placement, SCHED_PLACE_V);
    CU_ASSERT_STRING_EQUAL(stage_str(s, 0, buf, sizeof buf),
                           "F0 F1 F2 F0c1 B0c1 W0c1 F1c1 B1c1 W1c1 F3 B0 W0 F2c1 B2c1 W2c1 B1 W1 F3c1 B3c1 W3c1 "
                           "B2 W2 B3 W3");
    CU_ASSERT_STRING_EQUAL(stage_str(s, 1, buf, sizeof buf),
                           "F0 F0c1 F1 F1c1 B0c1 W0c1 F2 B0 W0 F2c1 B1c1 W1c1 F3 B1 W1 F3c1 B2c1 W2c1 B2 B3c1 "
                           "B3 W2 W3c1 W3");
    CU_ASSERT_DOUBLE_EQUAL(r->step_time, 25.0, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(r->bubble, 0.04, 1e-9);
    for (int st = 0; st < 2; st++) {
        CU_ASSERT_DOUBLE_EQUAL(r->busy[st], 24.0, 1e-9);
        CU_ASSERT_EQUAL(r->peak_mb[st], 4);
    }
    /* the hand-played times of a few actions */
    CU_ASSERT_DOUBLE_EQUAL(r->start[0][6], 6.0, 1e-9);  /* F1c1 on stage 0 */
    CU_ASSERT_DOUBLE_EQUAL(r->start[1][0], 1.0, 1e-9);  /* F0 on stage 1 */
    CU_ASSERT_DOUBLE_EQUAL(r->start[1][1], 2.0, 1e-9);  /* F0c1: local, no wait */
    CU_ASSERT_DOUBLE_EQUAL(r->start[1][4], 5.0, 1e-9);  /* B0c1 after stage 0's B0c1 */
    CU_ASSERT_DOUBLE_EQUAL(r->end[0][23], 24.0, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(r->end[1][23], 25.0, 1e-9);
    /* memory follows the placement: stashes of 1, 10, 100, 1000 bytes on virtual
     * stages 0..3; stage 0 (0 and 3) peaks with F0, F1, F2 and F0c1 live = 1003,
     * stage 1 (1 and 2) with two micro-batches on each chunk = 220 */
    sched_costs *mc = sched_costs_uniform(2, 2, 2, 2, 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mc);
    for (int k = 0; k < 4; k++) mc->stash_bytes[k] = k == 0 ? 1 : k == 1 ? 10 : k == 2 ? 100 : 1000;
    sched_report *mr = NULL;
    CU_ASSERT_EQUAL_FATAL(sched_simulate(s, mc, 0, &mr, err), 0);
    CU_ASSERT_DOUBLE_EQUAL(mr->peak_bytes[0], 1003, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(mr->peak_bytes[1], 220, 1e-9);
    sched_report_free(mr);
    sched_costs_free(mc);
    /* the CSV form names virtual stages in the V: row 1 holds 0 and 3 */
    char *csv = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&csv, &n);
    CU_ASSERT_EQUAL(sched_write_csv(s, f, err), 0);
    fclose(f);
    CU_ASSERT(!strncmp(csv, "0F0,0F1,0F2,3F0,3I0,3W0,3F1,3I1,3W1,0F3,0I0,0W0,", 48));
    CU_ASSERT_PTR_NOT_NULL(strstr(csv, "\n1F0,2F0,1F1,2F1,2I0,2W0,"));
    free(csv);
    /* transfers: stage 1's chunk 0 (virtual stage 1) hands its F to itself */
    int from, to;
    sched_action_peers(s, 1, (sched_action){ 0, 0, SCHED_F, 0 }, &from, &to);
    CU_ASSERT(from == 0 && to == 1);
    sched_action_peers(s, 0, (sched_action){ 0, 1, SCHED_F, 0 }, &from, &to);
    CU_ASSERT(from == 1 && to == -1);
    sched_action_peers(s, 0, (sched_action){ 0, 1, SCHED_B, 0 }, &from, &to);
    CU_ASSERT(from == -1 && to == 1);
    sched_report_free(r);
    sched_free(s);
    /* the placements and their inverses */
    for (int P = 1; P <= 5; P++)
        for (int pl = SCHED_PLACE_LOOP; pl <= SCHED_PLACE_V; pl++)
            for (int st = 0; st < P; st++)
                for (int c = 0; c < 2; c++) {
                    int k = sched_place_vstage(pl, P, st, c), c2 = -1;
                    CU_ASSERT(k >= 0 && k < 2 * P);
                    CU_ASSERT_EQUAL(sched_place_stage(pl, P, k, &c2), st);
                    CU_ASSERT_EQUAL(c2, c);
                    if (pl == SCHED_PLACE_V) CU_ASSERT_EQUAL(k, c ? 2 * P - 1 - st : st);
                }
    /* 4 stages, 8 micro-batches, F = B = W: zb-v's bubble is below zb-h1's and 1f1b's */
    sched_report *v = sim("zb-v", 4, 8, 0, 1, 1, 1, NULL), *h = sim("zb-h1", 4, 8, 1, 1, 1, 1, NULL),
                 *o = sim("1f1b", 4, 8, 1, 1, 1, 1, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    fprintf(stderr, "\n  P=4 M=8: bubble zb-v %.4f, zb-h1 %.4f, 1f1b %.4f\n", v->bubble, h->bubble, o->bubble);
    CU_ASSERT(v->bubble < h->bubble && h->bubble < o->bubble);
    sched_report_free(v);
    sched_report_free(h);
    sched_report_free(o);
}

/* PyTorch's CSV files as they are (written in its exact format by
 * torch.distributed.pipelining's schedules): a DualPipeV order with its V
 * placement and OVERLAP_F_B pairs, and the older ZB1P notation (B then W). */
static void test_pytorch_files(void)
{
    sched_schedule *s = sched_load("tests/data/sched/dualpipev-2x4.csv", 0, err);
    if (!s) fprintf(stderr, "\n  %s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(s->placement, SCHED_PLACE_V);
    CU_ASSERT(s->n_stages == 2 && s->n_chunks == 2 && s->n_micro == 4);
    CU_ASSERT_EQUAL(s->n_b_as_i, 0);
    /* row 1, column 8 is "(0F3;3B1)OVERLAP_F_B": F(3) on chunk 0 then BW(1) on chunk 1 */
    size_t i = 0;
    while (i < s->len[0] && s->src_col[0][i] != 7) i++;
    CU_ASSERT_FATAL(i + 1 < s->len[0]);
    CU_ASSERT(s->act[0][i].op == SCHED_F && s->act[0][i].mb == 3 && s->act[0][i].chunk == 0);
    CU_ASSERT(s->act[0][i + 1].op == SCHED_BW && s->act[0][i + 1].mb == 1 && s->act[0][i + 1].chunk == 1);
    CU_ASSERT_EQUAL(s->src_col[0][i + 1], 7);
    CU_ASSERT_EQUAL(sched_check(s, NULL, err), 0);
    char note[SCHED_ERR_LEN + 64];
    CU_ASSERT_PTR_NULL(sched_note(s, note, sizeof note));
    sched_free(s);
    s = sched_load("tests/data/sched/dualpipev-4x8.csv", 0, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT(s->placement == SCHED_PLACE_V && s->n_stages == 4 && s->n_micro == 8);
    CU_ASSERT_EQUAL(sched_check(s, NULL, err), 0);
    sched_free(s);
    /* the older notation: every "kBm" followed by "kWm" is read as I then W */
    s = sched_load("tests/data/sched/zb1p-style-2x4.csv", 0, err);
    if (!s) fprintf(stderr, "\n  %s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(s->placement, SCHED_PLACE_LOOP);
    CU_ASSERT_EQUAL(s->n_b_as_i, 16);
    for (int st = 0; st < 2; st++)
        for (size_t j = 0; j < s->len[st]; j++) CU_ASSERT(s->act[st][j].op != SCHED_BW);
    CU_ASSERT_EQUAL(s->src_col[1][0], 1); /* the leading idle cell is skipped */
    CU_ASSERT_EQUAL(sched_check(s, NULL, err), 0);
    CU_ASSERT_PTR_NOT_NULL(sched_note(s, note, sizeof note));
    CU_ASSERT_PTR_NOT_NULL(strstr(note, "zb1p-style-2x4.csv: note: 16 backward cell(s)"));
    sched_free(s);
    /* a B with its W and a separate full backward B still refuse a second W */
    expect_bad("twow.csv", "0F0,0B0,0W0,0W0\n", "row 1, column 4", "duplicated weight gradient");
    /* malformed pairs name the cell */
    expect_bad("pair.csv", "0F0,(0F1;)OVERLAP_F_B\n", "row 1, column 2", "not an overlapped pair");
    expect_bad("pair2.csv", "0F0,(0F1;0B0)OVERLAP\n", "row 1, column 2", "not an overlapped pair");
    /* a V file naming a stage outside the V */
    expect_bad("vbad.csv", "0F0,3F0,3B0,0B0,1F0\n1F0,2F0,2B0,1B0\n", "row 1, column 5",
               "places virtual stages in a V");
    /* JSON: the placement key */
    const char *vj = "{\"placement\": \"v\", \"stages\": [[\"F0\", \"F0c1\", \"BW0c1\", \"BW0\"], "
                     "[\"F0\", \"F0c1\", \"BW0c1\", \"BW0\"]]}";
    s = sched_parse(vj, strlen(vj), "v.json", 0, 0, err);
    if (!s) fprintf(stderr, "\n  %s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(s->placement, SCHED_PLACE_V);
    CU_ASSERT_EQUAL(sched_check(s, NULL, err), 0);
    sched_free(s);
    expect_bad("pl.json", "{\"placement\": \"zigzag\", \"stages\": [[\"F0\", \"BW0\"]]}", "\"placement\"",
               "expected \"loop\"");
}

static void test_action_peers(void)
{
    sched_schedule *s = sched_new(3, 2, 1); /* virtual stages 0..5: stage k % 3, chunk k / 3 */
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    struct { int st, chunk, op, from, to; } cases[] = {
        { 0, 0, SCHED_F, -1, 1 }, { 2, 0, SCHED_F, 1, 0 }, { 0, 1, SCHED_F, 2, 1 },
        { 2, 1, SCHED_F, 1, -1 }, { 2, 1, SCHED_B, -1, 1 }, { 2, 1, SCHED_BW, -1, 1 },
        { 0, 1, SCHED_B, 1, 2 }, { 0, 0, SCHED_BW, 1, -1 }, { 1, 0, SCHED_W, -1, -1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sched_action a = { 0, (uint16_t)cases[i].chunk, (uint8_t)cases[i].op, 0 };
        int from, to;
        sched_action_peers(s, cases[i].st, a, &from, &to);
        if (from != cases[i].from || to != cases[i].to)
            fprintf(stderr, "\n  case %zu: from %d to %d, want %d %d\n", i, from, to, cases[i].from, cases[i].to);
        CU_ASSERT(from == cases[i].from && to == cases[i].to);
    }
    CU_ASSERT_EQUAL(sched_virtual_stage(s, 2, 1), 5);
    sched_free(s);
    s = sched_new(1, 2, 1); /* one stage holding both chunks: its own neighbour */
    sched_action f1 = { 0, 1, SCHED_F, 0 };
    int from, to;
    sched_action_peers(s, 0, f1, &from, &to);
    CU_ASSERT(from == 0 && to == -1);
    sched_free(s);
}

static void test_renderers(void)
{
    sched_schedule *s = NULL;
    sched_report *r = sim("interleaved", 4, 8, 2, 1, 2, 0, &s);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    CU_ASSERT_EQUAL(sched_render_ascii(s, r, f, 100, 64, "ms", err), 0);
    fclose(f);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "stage   3 |"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "F0"));
    free(buf);
    f = open_memstream(&buf, &n);
    CU_ASSERT_EQUAL(sched_render_svg(s, r, f, "ms", err), 0);
    fclose(f);
    size_t rects = 0;
    for (char *p = buf; (p = strstr(p, "<rect")); p++) rects++;
    CU_ASSERT(!strncmp(buf, "<svg", 4));
    CU_ASSERT(rects >= 4 * 32); /* every action, plus rows and legend */
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "time (ms)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "</svg>"));
    free(buf);
    f = open_memstream(&buf, &n);
    CU_ASSERT_EQUAL(sched_render_chrome(s, r, f, 1000, err), 0);
    fclose(f);
    json_error_t je;
    json_t *j = json_loads(buf, 0, &je);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(j, "traceEvents")), 4 * 32 + 2 * 4);
    json_decref(j);
    free(buf);
    sched_report_free(r);
    /* Without a timeline the renderers refuse. */
    CU_ASSERT_EQUAL(sched_check(s, &r, err), 0);
    CU_ASSERT_EQUAL(sched_render_svg(s, r, stdout, "ms", err), -1);
    sched_report_free(r);
    sched_free(s);
}

/* The all-reduce in every picture: GPipe, P = 2, M = 2, F = B = W = 1 (BW = 2),
 * R = 2, one 4000-byte bucket per stage at 1000 bytes per ms after 0.25 per ring
 * step (4.5 each): stage 0 reduces [9, 13.5], stage 1 [7, 11.5]. */
static void test_render_allreduce(void)
{
    sched_schedule *s = sched_generate("gpipe", 2, 2, 1, err);
    sched_costs *c = sched_costs_uniform(2, 1, 1, 1, 1);
    c->ar = sched_allreduce_new(2);
    c->ar->replicas = 2;
    c->ar->latency = 0.25;
    c->ar->bandwidth = 1000;
    c->ar->b[0] = (sched_bucket){ 0, 0, 1, 0, 4000 };
    c->ar->b[1] = (sched_bucket){ 1, 0, 1, 0, 4000 };
    sched_report *r = NULL;
    CU_ASSERT_EQUAL_FATAL(sched_simulate(s, c, 1, &r, err), 0);
    CU_ASSERT_DOUBLE_EQUAL(r->step_time, 13.5, 1e-12);
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n); /* 27 columns: 2 per ms */
    CU_ASSERT_EQUAL(sched_render_ascii(s, r, f, 27, 64, "ms", err), 0);
    fclose(f);
    const char *want[] = { "\n    s0 AR |..................A0       |\n", "\n    s1 AR |..............A0       ....|\n" };
    for (int i = 0; i < 2; i++) {
        if (!strstr(buf, want[i])) fprintf(stderr, "\n  '%s' not in:\n%s", want[i], buf);
        CU_ASSERT_PTR_NOT_NULL(strstr(buf, want[i]));
    }
    free(buf);
    f = open_memstream(&buf, &n);
    CU_ASSERT_EQUAL(sched_render_svg(s, r, f, "ms", err), 0);
    fclose(f);
    size_t lanes = 0, boxes = 0, exposed = 0;
    for (char *p = buf; (p = strstr(p, ">all-reduce<")); p++) lanes++;
    for (char *p = buf; (p = strstr(p, "all-reduce of bucket")); p++) boxes++;
    for (char *p = buf; (p = strstr(p, "exposed all-reduce 4.5")); p++) exposed++;
    CU_ASSERT(lanes == 2 && boxes == 2 && exposed == 2);
    free(buf);
    f = open_memstream(&buf, &n);
    CU_ASSERT_EQUAL(sched_render_chrome(s, r, f, 1000, err), 0);
    fclose(f);
    json_error_t je;
    json_t *j = json_loads(buf, 0, &je);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(j, "traceEvents")), 8 + 2 + 3 * 2);
    json_decref(j);
    free(buf);
    f = open_memstream(&buf, &n);
    sched_sim_info info = { "ms", "test", 0 };
    CU_ASSERT_EQUAL(sched_write_json_sim(s, r, &info, f, err), 0);
    fclose(f);
    j = json_loads(buf, 0, &je);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    json_t *sim = json_object_get(j, "simulation"), *a1 = json_object_get(
        json_object_get(json_array_get(json_object_get(sim, "stages"), 1), "allreduce"), "optimizer_start");
    CU_ASSERT_DOUBLE_EQUAL(json_number_value(json_object_get(sim, "compute_time")), 9, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(json_number_value(a1), 11.5, 1e-9);
    json_decref(j);
    free(buf);
    sched_report_free(r);
    sched_costs_free(c);
    sched_free(s);
}

/* PipeDream-2BW, P = 2, M = 2, by hand (sched.h): stage 0 (w = 1) runs F1 BW0
 * F0n BW1 in the steady state, stage 1 (w = 0) F0 BW0 F1 BW1. Three steps of a run
 * unrolled (micro-batch j of step k numbered 2k + j): stage 0 F0 (the fill) F1 BW0
 * F2 BW1 | F3 BW2 F4 BW3 | F5 BW4 BW5 (the last step drops F0n). With F = B = W = 1
 * (BW = 2, its gradient leaving at its end) the play is:
 *   stage 0: F0 [0,1] F1 [1,2] BW0 [4,6] F2 [6,7] BW1 [7,9] F3 [9,10] BW2 [10,12]
 *            F4 [12,13] BW3 [13,15] F5 [15,16] BW4 [16,18] BW5 [19,21]
 *   stage 1: F0 [1,2] BW0 [2,4] F1 [4,5] BW1 [5,7] F2 [7,8] BW2 [8,10] F3 [10,11]
 *            BW3 [11,13] F4 [13,14] BW4 [14,16] F5 [16,17] BW5 [17,19]
 * so 3 steps take 21 and every step after the first adds 6 = M (F + B + W): no
 * bubble in the steady state, where 1f1b's step is 9 (bubble 1/3). */
static void test_2bw_golden(void)
{
    char b1[512];
    sched_schedule *s = sched_generate("2bw", 2, 2, 0, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT(sched_is_cross_step(s));
    CU_ASSERT_STRING_EQUAL(stage_str(s, 0, b1, sizeof b1), "F1 BW0 F0n BW1");
    CU_ASSERT_STRING_EQUAL(stage_str(s, 1, b1, sizeof b1), "F0 BW0 F1 BW1");
    /* one step of a run: the fill, the steady state, the drain, a one-step run */
    sched_action a[8];
    size_t n = sched_2bw_step(s, 0, 1, 0, a);
    CU_ASSERT_EQUAL(n, 5);
    CU_ASSERT(a[0].op == SCHED_F && a[0].mb == 0 && !a[0].next && a[3].next);
    CU_ASSERT_EQUAL(sched_2bw_step(s, 0, 0, 1, a), 3);
    CU_ASSERT_EQUAL(sched_2bw_step(s, 0, 1, 1, a), 4); /* = 1f1b's F0 F1 BW0 BW1 */
    CU_ASSERT(a[0].mb == 0 && a[1].mb == 1 && a[2].op == SCHED_BW && a[2].mb == 0 && a[3].mb == 1);
    sched_schedule *u = sched_unroll(s, 3, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(u);
    CU_ASSERT_EQUAL(u->n_micro, 6);
    CU_ASSERT_STRING_EQUAL(stage_str(u, 0, b1, sizeof b1), "F0 F1 BW0 F2 BW1 F3 BW2 F4 BW3 F5 BW4 BW5");
    CU_ASSERT_STRING_EQUAL(stage_str(u, 1, b1, sizeof b1), "F0 BW0 F1 BW1 F2 BW2 F3 BW3 F4 BW4 F5 BW5");
    sched_costs *c = sched_costs_uniform(2, 1, 1, 1, 1);
    sched_report *r = NULL;
    CU_ASSERT_EQUAL_FATAL(sched_simulate(u, c, 1, &r, err), 0);
    CU_ASSERT_DOUBLE_EQUAL(r->step_time, 21, 1e-9);
    double s0[] = { 0, 1, 4, 6, 7, 9, 10, 12, 13, 15, 16, 19 }, s1[] = { 1, 2, 4, 5, 7, 8, 10, 11, 13, 14, 16, 17 };
    for (int i = 0; i < 12; i++) {
        CU_ASSERT_DOUBLE_EQUAL(r->start[0][i], s0[i], 1e-9);
        CU_ASSERT_DOUBLE_EQUAL(r->start[1][i], s1[i], 1e-9);
    }
    sched_report_free(r);
    /* the steady state: 6 per step, no bubble; stage 0 holds 2 micro-batches */
    c->weight_bytes[0] = 100;
    c->weight_bytes[1] = 50;
    CU_ASSERT_EQUAL_FATAL(sched_simulate(s, c, 1, &r, err), 0);
    CU_ASSERT_DOUBLE_EQUAL(r->step_time, 6, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(r->bubble, 0, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(r->busy[0], 6, 1e-9);
    CU_ASSERT_EQUAL(r->peak_mb[0], 2);
    CU_ASSERT_EQUAL(r->peak_mb[1], 1);
    CU_ASSERT_EQUAL(r->steps_simulated, 6);
    CU_ASSERT_DOUBLE_EQUAL(r->extra_weight_bytes[0], 200, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(r->extra_weight_bytes[1], 100, 1e-9);
    /* the drawn step is the third of six (stage 0: F5 BW4 F6 BW5 at 15, 16, 18,
     * 19; stage 1: F4 BW4 F5 BW5 at 13, 14, 16, 17), from its first action at 13 */
    double d0[] = { 2, 3, 5, 6 }, d1[] = { 0, 1, 3, 4 };
    for (int i = 0; i < 4; i++) {
        CU_ASSERT_DOUBLE_EQUAL(r->start[0][i], d0[i], 1e-9);
        CU_ASSERT_DOUBLE_EQUAL(r->start[1][i], d1[i], 1e-9);
    }
    sched_report_free(r);
    sched_schedule *g = sched_generate("1f1b", 2, 2, 0, err);
    CU_ASSERT_EQUAL_FATAL(sched_simulate(g, c, 0, &r, err), 0);
    CU_ASSERT_DOUBLE_EQUAL(r->step_time, 9, 1e-9);
    sched_report_free(r);
    sched_free(g);
    /* sched_check plays it unrolled */
    CU_ASSERT_EQUAL(sched_check(s, &r, err), 0);
    CU_ASSERT_EQUAL(r->peak_mb[0], 2);
    sched_report_free(r);
    /* JSON keeps the next-step marks */
    char *buf = NULL;
    size_t bn = 0;
    FILE *f = open_memstream(&buf, &bn);
    CU_ASSERT_EQUAL(sched_write_json(s, f, err), 0);
    fclose(f);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "\"F0n\""));
    sched_schedule *t = sched_parse(buf, bn, "2bw.json", 0, 0, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT(same_schedule(s, t) && sched_is_cross_step(t));
    sched_free(t);
    free(buf);
    /* hand-written lists: a backward of the next step, a missing backward, a
     * deadlock found on the unrolled run */
    s->act[0][1].next = 1;
    CU_ASSERT_EQUAL(sched_check(s, NULL, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "only a forward may belong to the next step"));
    s->act[0][1].next = 0;
    s->act[0][1].mb = 1; /* BW1 twice, BW0 missing */
    CU_ASSERT_EQUAL(sched_check(s, NULL, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "duplicated"));
    s->act[0][1].mb = 0;
    sched_action x = s->act[1][0]; /* stage 1: BW0 F0 ...: its backward before its forward */
    s->act[1][0] = s->act[1][1];
    s->act[1][1] = x;
    CU_ASSERT_EQUAL(sched_check(s, NULL, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "2bw, unrolled over 3 steps: "));
    sched_free(u);
    sched_costs_free(c);
    sched_free(s);
}

static void test_kind_table(void)
{
    char err[SCHED_ERR_LEN], names[96];
    CU_ASSERT_EQUAL(sched_kind_find("zb-h1"), SCHED_KIND_ZBH1);
    CU_ASSERT_EQUAL(sched_kind_find("interleaved"), SCHED_KIND_INTERLEAVED);
    CU_ASSERT_EQUAL(sched_kind_find("pipedream"), -1);
    CU_ASSERT_EQUAL(sched_kind_find(NULL), -1);
    for (int k = 0; k < SCHED_N_KINDS; k++) CU_ASSERT_STRING_EQUAL(sched_kinds[k], sched_kind_table[k].name);
    CU_ASSERT_PTR_NULL(sched_kinds[SCHED_N_KINDS]);
    CU_ASSERT_STRING_EQUAL(sched_kind_names(names, sizeof names), "gpipe, 1f1b, interleaved, zb-h1, zb-v or 2bw");
    CU_ASSERT_EQUAL(sched_kind_find("2bw"), SCHED_KIND_2BW);
    CU_ASSERT_EQUAL(sched_kind_fit(SCHED_KIND_2BW, 4, 3, 1, err), SCHED_FIT_MICRO);
    CU_ASSERT_EQUAL(sched_kind_fit(SCHED_KIND_2BW, 2, 4, 2, err), SCHED_FIT_CHUNKS);
    CU_ASSERT_EQUAL(sched_kind_fit(SCHED_KIND_ZBH1, 4, 2, 1, err), SCHED_FIT_MICRO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "zb-h1"));
    CU_ASSERT_EQUAL(sched_kind_fit(SCHED_KIND_1F1B, 4, 4, 1, err), SCHED_FIT_OK);
    CU_ASSERT_EQUAL(sched_kind_fit(SCHED_KIND_INTERLEAVED, 4, 6, 2, err), SCHED_FIT_MICRO);
    CU_ASSERT_EQUAL(sched_kind_fit(SCHED_KIND_INTERLEAVED, 4, 8, 1, err), SCHED_FIT_CHUNKS);
    CU_ASSERT_EQUAL(sched_kind_fit(SCHED_KIND_GPIPE, 4, 1, 2, err), SCHED_FIT_CHUNKS);
    CU_ASSERT_EQUAL(sched_kind_fit(SCHED_KIND_GPIPE, 4, 1, 1, err), SCHED_FIT_OK);
    CU_ASSERT_EQUAL(sched_kind_fit(SCHED_N_KINDS, 4, 1, 1, err), SCHED_FIT_KIND);
}

int main(void)
{
    CU_TestInfo tests[] = {
        { "the kind table: lookups and constraints", test_kind_table },
        { "golden: gpipe and 1f1b bubble 3/11, peaks", test_golden_gpipe_1f1b },
        { "golden: zb-h1 has a third of 1f1b's bubble", test_zbh1_third_of_1f1b },
        { "golden: interleaved cuts the bubble v-fold", test_interleaved_cuts_bubble },
        { "every generator validates over a (P, M, v) grid", test_generators_grid },
        { "deadlocks are explained", test_deadlock_explained },
        { "transfers: latency, bandwidth, link order", test_transfers },
        { "memory model: stash, F transient, B work until W, BW transient", test_memory_model },
        { "JSON and CSV round trips, sample files", test_round_trips },
        { "malformed files name file and position", test_malformed_files },
        { "action strings", test_action_strings },
        { "transfers implied by actions", test_action_peers },
        { "golden: zb-v on 2 stages, by hand; placements", test_zbv_golden },
        { "golden: 2bw on 2 stages, by hand: no flush, steady state", test_2bw_golden },
        { "PyTorch's files: DualPipeV's V and overlapped pairs, B-then-W", test_pytorch_files },
        { "renderers", test_renderers },
        { "renderers draw the all-reduce", test_render_allreduce },
        CU_TEST_INFO_NULL,
    };
    return tests_run("sched", tests);
}
