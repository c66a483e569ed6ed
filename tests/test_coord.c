/* test_coord.c — the coordinator (coord/coord.h) against fake stages: threads
 * of this process with their own net nodes that speak stage/proto.h by hand.
 * Checks the norm placement in global unit order (what keeps pipelines bitwise
 * equal to the one-stage trainer), the whole protocol and its outputs
 * (metrics.jsonl, summary.json, checkpoints), and that a stage that dies,
 * says FAIL or goes silent ends the run with a message naming it, its address
 * and the step. No timing thresholds: timeouts only bound the waits. */
#include "model/optim.h"
#include "model/util.h"
#include "coord/coord.h"
#include "run/run_metrics.h"
#include "stage/proto.h"
#include "stage/stage.h"
#include "tests/tests.h"

#include <math.h>
#include <pthread.h>
#include <unistd.h>

#define TOPO_3 "topologies/shakespeare-3stage-uneven.json"

static int load(topo *t, const char *path, int steps)
{
    char err[ERR_LEN], s1[64];
    snprintf(s1, sizeof s1, "train.steps=%d", steps);
    char *sets[] = { s1, "coordinator.port=0", "train.eval_every=2", "checkpoint.every=2", "train.warmup_steps=1" };
    if (topo_load(t, path, sets, 5, err)) {
        fprintf(stderr, "\n  %s\n", err);
        return -1;
    }
    return 0;
}

/* Deterministic, distinct, non-trivial per-unit squares. */
static double unit_sq(long step, int unit) { return 1.0 / 3.0 + (double)unit * 0.7071 + (double)step * 1e-3; }

static void test_place_norms_order(void)
{
    topo t;
    CU_ASSERT_FATAL(load(&t, TOPO_3, 4) == 0);
    int n = topo_n_units(&t);
    double sq[n], placed[n];
    for (int u = 0; u < n; u++) { sq[u] = unit_sq(3, u) * (u % 2 ? 1e-7 : 1e5); placed[u] = NAN; }
    uint8_t buf[4 + 8 * 64];
    char err[ERR_LEN];
    /* place in reverse stage order: the result must not depend on arrival order */
    for (int k = t.n_stages - 1; k >= 0; k--) {
        uint64_t len = coord_encode_norms(&t, k, sq, buf);
        CU_ASSERT_EQUAL(len, 4 + 8 * (uint64_t)t.stages[k].n_units);
        CU_ASSERT_EQUAL(get_u32le(buf), (uint32_t)t.stages[k].n_units);
        CU_ASSERT_EQUAL(coord_place_norms(&t, k, buf, len, placed, err), 0);
    }
    CU_ASSERT_EQUAL(memcmp(sq, placed, sizeof sq), 0);
    double a = optim_global_norm(sq, n), b = optim_global_norm(placed, n);
    CU_ASSERT_EQUAL(memcmp(&a, &b, sizeof a), 0);
    /* stage 1 holds "1-2": units 2 and 3, in that order on the wire */
    coord_encode_norms(&t, 1, sq, buf);
    CU_ASSERT_EQUAL(get_f64le(buf + 4), sq[2]);
    CU_ASSERT_EQUAL(get_f64le(buf + 12), sq[3]);
    topo_free(&t);
}

static void test_place_norms_rejects(void)
{
    topo t;
    CU_ASSERT_FATAL(load(&t, TOPO_3, 4) == 0);
    double sq[8] = { 0 };
    uint8_t buf[64];
    char err[ERR_LEN] = "";
    uint64_t len = coord_encode_norms(&t, 1, sq, buf);
    CU_ASSERT_EQUAL(coord_place_norms(&t, 1, buf, len - 1, sq, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "bytes"));
    put_u32le(buf, 3);
    CU_ASSERT_EQUAL(coord_place_norms(&t, 1, buf, len, sq, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "3 units"));
    CU_ASSERT_EQUAL(coord_place_norms(&t, 1, buf, 2, sq, err), -1);
    topo_free(&t);
}

/* ---- fake stages ---- */

enum { FAKE_OK = 0, FAKE_DIE, FAKE_FAIL, FAKE_SILENT, FAKE_BAD_NORM,
       FAKE_ABSENT,    /* never starts */
       FAKE_NO_JOIN }; /* connects and authenticates, sends no JOIN */

typedef struct {
    const topo *t;
    int k, port, mode;   /* FAKE_*: what happens at step bad_step */
    long bad_step;
    const char *out;
    uint64_t run_id;
    volatile int *stop;  /* set when the coordinator has returned */
    int errors;          /* protocol surprises seen by the fake */
    char what[256];
} fake;

static int fsend(struct net_node *n, uint16_t type, long step, const void *buf, uint64_t len)
{
    struct net_op *op = NULL;
    char e[NET_ERR_LEN];
    int st = net_send(n, net_coord_id(), (net_key){ type, (uint64_t)step, 0, 0 }, buf, len, 5000, &op, e);
    if (st == NET_OK) st = net_wait(op, 5000, e);
    net_op_free(op);
    return st;
}

static volatile int *fake_stop;

/* Receives from the coordinator, giving up once the test says it returned. */
static int frecv(struct net_node *n, uint16_t type, long step, void *buf, uint64_t cap)
{
    char e[NET_ERR_LEN];
    struct net_op *op = NULL;
    int st = net_recv_post(n, net_coord_id(), (net_key){ type, (uint64_t)step, 0, 0 }, buf, cap, &op, e);
    for (int i = 0; st == NET_OK && i < 400; i++) {
        st = net_wait(op, 50, e);
        if (st != NET_TIMEOUT || *fake_stop) break;
        st = NET_OK;
    }
    if (st == NET_OK && !net_op_len(op) && cap) st = NET_TIMEOUT; /* gave up */
    net_op_free(op);
    return st;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) { fputs(text, f); fclose(f); }
}

/* One step of a well-behaved stage k. */
static int fake_step(fake *f, struct net_node *n, long s)
{
    const topo *t = f->t;
    int nu = topo_n_units(t), last = t->n_stages - 1;
    double sq[nu], all = 0;
    uint8_t buf[4 + 8 * 64];
    for (int u = 0; u < nu; u++) sq[u] = unit_sq(s, u);
    for (int u = 0; u < nu; u++) all += sq[u];
    uint64_t len = coord_encode_norms(t, f->k, sq, buf);
    if (fsend(n, MSG_NORM, s, buf, len) || frecv(n, MSG_NORM_REPLY, s, buf, 8)) return -1;
    double want = optim_global_norm(sq, nu), got = get_f64le(buf);
    if (memcmp(&want, &got, 8)) { snprintf(f->what, sizeof f->what, "norm %.17g, want %.17g", got, want); f->errors++; }
    (void)all;
    if (f->k == last) {
        put_f64le(buf, 5.0 - 0.25 * (double)s);
        if (fsend(n, MSG_LOSS, s, buf, 8)) return -1;
        if (run_is_eval_step(t, s)) {
            put_f64le(buf, 6.0 - 0.25 * (double)s);
            put_u64le(buf + 8, 1234);
            if (fsend(n, MSG_VAL, s, buf, 16)) return -1;
        }
    }
    if (run_is_ckpt_step(t, s)) {
        char dir[512], path[600];
        snprintf(dir, sizeof dir, "%s/checkpoints/step-%ld", f->out, s + 1);
        char e[ERR_LEN];
        run_mkdirs(dir, e);
        snprintf(path, sizeof path, "%s/stage-%d.safetensors", dir, f->k);
        write_file(path, "params");
        snprintf(path, sizeof path, "%s/stage-%d.optim.safetensors", dir, f->k);
        write_file(path, "optim");
        if (fsend(n, MSG_CKPT_DONE, s, NULL, 0)) return -1;
    }
    return 0;
}

/* Misbehaves at step s as f->mode says; returns 1 when the fake should stop. */
static int fake_misbehave(fake *f, struct net_node *n, long s)
{
    if (f->mode == FAKE_OK || s != f->bad_step) return 0;
    if (f->mode == FAKE_FAIL) fsend(n, MSG_FAIL, s, "disk on fire", 12);
    if (f->mode == FAKE_SILENT) sleep(3); /* longer than the step timeout the test sets */
    if (f->mode == FAKE_BAD_NORM) {
        uint8_t buf[4 + 8 * 8] = { 0 };
        put_u32le(buf, (uint32_t)f->t->stages[f->k].n_units + 1);
        fsend(n, MSG_NORM, s, buf, 4 + 8 * (uint64_t)(f->t->stages[f->k].n_units + 1));
        frecv(n, MSG_NORM_REPLY, s, buf, 8); /* never comes: the coordinator gives up */
    }
    return 1;
}

static void *fake_main(void *arg)
{
    fake *f = arg;
    const topo *t = f->t;
    uint8_t secret[256], buf[PROTO_STATS_BYTES];
    char err[ERR_LEN];
    net_config cfg;
    if (f->mode == FAKE_ABSENT) return NULL;
    if (stage_net_config(&cfg, t, net_stage_id((uint16_t)f->k, 0), f->run_id, 1000, secret, err)) {
        f->errors++;
        return NULL;
    }
    struct net_node *n = net_node_new(&cfg, err);
    if (!n || net_connect(n, net_coord_id(), "127.0.0.1", f->port, err)) { f->errors++; net_node_free(n); return NULL; }
    if (f->mode == FAKE_NO_JOIN) {
        while (!*f->stop) usleep(20000);
        goto out;
    }
    put_u32le(buf, (uint32_t)f->k);
    put_u32le(buf + 4, 4242u + (uint32_t)f->k);
    put_u32le(buf + 8, (uint32_t)t->stages[f->k].n_units);
    long total = t->train.steps, s;
    if (fsend(n, MSG_JOIN, 0, buf, 12) || frecv(n, MSG_START, 0, buf, 16)) goto out;
    if (get_u64le(buf) != 0 || get_u64le(buf + 8) != (uint64_t)total) f->errors++;
    for (s = 0; s < total; s++) {
        if (fake_misbehave(f, n, s)) goto out;
        if (fake_step(f, n, s)) goto out;
    }
    proto_stats st = { 1000u * (uint64_t)(f->k + 1), (uint64_t)(t->n_stages - f->k), 0.5, 0.25, 0.125, 77, (uint64_t)total, 1.5, 0, 0, 0 };
    proto_stats_encode(buf, &st);
    if (fsend(n, MSG_STATS, total - 1, buf, PROTO_STATS_BYTES) || frecv(n, MSG_DONE, total - 1, NULL, 0)) f->errors++;
out:
    net_node_free(n);
    return NULL;
}

/* ---- the coordinator against the fakes ---- */

static int join_timeout_ms = 20000;

typedef struct {
    topo t;
    char out[64];
    fake f[8];
    char err[ERR_LEN];
    int rc, port;
    volatile int stop;
} harness;

/* Runs a coordinator over TOPO_3 for `steps` steps with fakes; stage bad
 * misbehaves (mode) at 0-based step bad_step. */
static void run_coord(harness *h, int steps, int bad, int mode, long bad_step, int step_timeout_ms)
{
    memset(h, 0, sizeof *h);
    h->rc = -1;
    fake_stop = &h->stop;
    CU_ASSERT_FATAL(load(&h->t, TOPO_3, steps) == 0);
    snprintf(h->out, sizeof h->out, "/tmp/test_coord.XXXXXX");
    CU_ASSERT_FATAL(mkdtemp(h->out) != NULL);
    coord_opts o;
    coord_opts_init(&o);
    o.out_dir = h->out;
    o.progress = NULL;
    o.run_id = 99;
    o.peer_timeout_ms = 1000;
    o.join_timeout_ms = join_timeout_ms;
    o.step_timeout_ms = step_timeout_ms;
    o.poll_ms = 50;
    coordinator *c = coord_new(&h->t, &o, h->err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    h->port = coord_port(c);
    CU_ASSERT(h->port > 0);
    pthread_t th[8];
    int n = h->t.n_stages;
    for (int k = 0; k < n; k++) {
        h->f[k] = (fake){ &h->t, k, h->port, k == bad ? mode : FAKE_OK, bad_step, h->out, 99, &h->stop, 0, "" };
        pthread_create(&th[k], NULL, fake_main, &h->f[k]);
    }
    h->rc = coord_run(c, h->err);
    /* freed while the surviving fakes are still connected, as a coordinator
     * with stages started by hand is */
    coord_free(c);
    h->stop = 1;
    for (int k = 0; k < n; k++) pthread_join(th[k], NULL);
}

static void done(harness *h)
{
    if (tests_rm_tree(h->out)) fprintf(stderr, "could not remove %s\n", h->out);
    topo_free(&h->t);
}

static char *slurp(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static void test_protocol(void)
{
    harness h;
    run_coord(&h, 4, -1, FAKE_OK, 0, 20000);
    if (h.rc) fprintf(stderr, "\n  coordinator: %s\n", h.err);
    CU_ASSERT_EQUAL(h.rc, 0);
    for (int k = 0; k < h.t.n_stages; k++) {
        if (h.f[k].errors) fprintf(stderr, "\n  fake stage %d: %d errors (%s)\n", k, h.f[k].errors, h.f[k].what);
        CU_ASSERT_EQUAL(h.f[k].errors, 0);
    }
    char *m = slurp(h.out, "metrics.jsonl"), *s = slurp(h.out, "summary.json"), *latest = slurp(h.out, "checkpoints/latest");
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    /* losses as the head sent them, val_loss on steps 2 and 4, lr from optim_lr */
    CU_ASSERT_PTR_NOT_NULL(strstr(m, "{\"step\": 1, \"loss\": 5.000000,"));
    CU_ASSERT_PTR_NOT_NULL(strstr(m, "{\"step\": 4, \"loss\": 4.250000,"));
    CU_ASSERT_PTR_NOT_NULL(strstr(m, "\"val_loss\": 5.750000}"));
    CU_ASSERT_PTR_NOT_NULL(strstr(m, "\"val_loss\": 5.250000}"));
    char lr[64];
    snprintf(lr, sizeof lr, "\"lr\": %.6g,", optim_lr(2, 4, h.t.train.warmup_steps, h.t.train.lr, h.t.train.min_lr));
    CU_ASSERT_PTR_NOT_NULL(strstr(m, lr));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "\"final_loss\": 4.25"));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "\"peak_act_bytes\": 3000"));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "\"pid\": 4243"));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "\"port\": 29542"));
    CU_ASSERT_PTR_NOT_NULL(latest);
    if (latest) CU_ASSERT_STRING_EQUAL(latest, "step-4\n");
    char *c2 = slurp(h.out, "checkpoints/step-2/COMPLETE"), *man = slurp(h.out, "checkpoints/step-2/manifest.json");
    CU_ASSERT_PTR_NOT_NULL(c2);
    CU_ASSERT(man && strstr(man, "stage-2.optim.safetensors"));
    free(m); free(s); free(latest); free(c2); free(man);
    done(&h);
}

/* The failure message names the stage, its address and a step. */
static void expect_blame(harness *h, const char *who, const char *also)
{
    if (h->rc != 1 || !strstr(h->err, who) || !strstr(h->err, " at step ") || (also && !strstr(h->err, also)))
        fprintf(stderr, "\n  rc %d, message: %s\n", h->rc, h->err);
    CU_ASSERT_EQUAL(h->rc, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(h->err, who));
    CU_ASSERT_PTR_NOT_NULL(strstr(h->err, " at step "));
    if (also) CU_ASSERT_PTR_NOT_NULL(strstr(h->err, also));
}

static void test_stage_dies(void)
{
    harness h;
    run_coord(&h, 4, 1, FAKE_DIE, 2, 20000);
    expect_blame(&h, "stage 1 (127.0.0.1:29542) died", NULL);
    done(&h);
}

static void test_stage_fails(void)
{
    harness h;
    run_coord(&h, 4, 2, FAKE_FAIL, 1, 20000);
    expect_blame(&h, "stage 2 (127.0.0.1:29543) failed", "disk on fire");
    done(&h);
}

static void test_stage_silent(void)
{
    harness h;
    run_coord(&h, 4, 0, FAKE_SILENT, 1, 1000);
    expect_blame(&h, "stage 0 (127.0.0.1:29541) timed out", "at step 2: no NORM");
    done(&h);
}

static void test_bad_norm(void)
{
    harness h;
    run_coord(&h, 4, 1, FAKE_BAD_NORM, 1, 20000);
    expect_blame(&h, "stage 1 (127.0.0.1:29542) failed at step 2: NORM lists 3 units", NULL);
    done(&h);
}

/* Stages that do not join: the coordinator says what became of each (issue 17:
 * "when joins fail, say why"), not only that it is missing. */
static void expect_join_why(harness *h, const char *who, const char *why)
{
    if (h->rc != 1 || !strstr(h->err, who) || !strstr(h->err, why))
        fprintf(stderr, "\n  rc %d, message: %s\n", h->rc, h->err);
    CU_ASSERT_EQUAL(h->rc, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(h->err, who));
    CU_ASSERT_PTR_NOT_NULL(strstr(h->err, why));
}

static void test_join_why(void)
{
    harness h;
    join_timeout_ms = 1500;
    run_coord(&h, 4, 1, FAKE_NO_JOIN, 0, 20000);
    expect_join_why(&h, "stage 1 (127.0.0.1:29542) did not join within", "it connected but sent no JOIN");
    done(&h);
    run_coord(&h, 4, 2, FAKE_ABSENT, 0, 20000);
    expect_join_why(&h, "stage 2 (127.0.0.1:29543) did not join within", "no connection claiming to be it arrived");
    done(&h);
    join_timeout_ms = 20000;
}

int main(void)
{
    CU_TestInfo tests[] = {
        { "norms placed in global unit order", test_place_norms_order },
        { "bad NORM payloads refused", test_place_norms_rejects },
        { "whole protocol with fake stages", test_protocol },
        { "a stage that disconnects is named", test_stage_dies },
        { "a stage's FAIL reason is reported", test_stage_fails },
        { "a silent stage times out", test_stage_silent },
        { "a malformed NORM is refused, naming the stage", test_bad_norm },
        { "stages that do not join: what became of them", test_join_why },
        CU_TEST_INFO_NULL,
    };
    return tests_run("coord", tests);
}
