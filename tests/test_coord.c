/* test_coord.c — the coordinator (coord/coord.h) against fake stages: threads
 * of this process with their own net nodes that speak stage/proto.h by hand.
 * Checks the norm placement in global unit order (what keeps pipelines bitwise
 * equal to the one-stage trainer), with replicas the NORM partials' combination
 * and the grid's protocol (2 x 2, 1 x 3), the whole protocol and its outputs
 * (metrics.jsonl, summary.json, checkpoints), and that a stage that dies,
 * says FAIL or goes silent ends the run with a message naming it, its address
 * and the step. No timing thresholds: timeouts only bound the waits. */
#include "model/optim.h"
#include "model/util.h"
#include "coord/coord.h"
#include "run/run_metrics.h"
#include "stage/proto.h"
#include "stage/stage.h"
#include "tests/coord_fake.h"
#include "tests/tests.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <unistd.h>

#define TOPO_3 "topologies/shakespeare-3stage-uneven.json"
#define TOPO_2X2 "topologies/shakespeare-2x2.json"

/* A one-stage grid of 3 replicas (written by test_grid_1x3). */
static char topo_1x3[64];

static int load(topo *t, const char *path, int steps)
{
    char err[ERR_LEN], s1[64];
    snprintf(s1, sizeof s1, "train.steps=%d", steps);
    /* small gradient buckets: several per unit, so the partials' order matters */
    char *sets[] = { s1, "coordinator.port=0", "train.eval_every=2", "checkpoint.every=2", "train.warmup_steps=1",
                     "train.bucket_mb=0.01" };
    if (topo_load(t, path, sets, 6, err)) {
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

/* ---- data parallelism: NORM partials ---- */

/* Replica r's partial of unit u's bucket b at step s: magnitudes 1e8, 1 and
 * 1e-8 interleaved, so that another order of the additions rounds differently. */
static double part_val(long s, int u, int b, int r)
{
    static const double mag[3] = { 1e8, 1.0, 1e-8 };
    return mag[(b + 2 * r) % 3] * (1.0 / 3.0 + (double)u * 0.7071 + (double)b * 0.013 + (double)r * 0.11 + (double)s * 1e-3);
}

/* The global norm of step s as proto.h defines it, computed here by hand:
 * per unit 0.0 + part(b0, r0) + part(b0, r1) + ... + part(b1, r0) + ... */
static double want_grid_norm(const topo *t, long s)
{
    int n = topo_n_units(t);
    double sq[n];
    for (int u = 0; u < n; u++) {
        double acc = 0.0;
        for (int b = 0; b < topo_unit_buckets(t, u, -1, NULL, NULL); b++)
            for (int r = 0; r < t->n_replicas; r++) acc += part_val(s, u, b, r);
        sq[u] = acc;
    }
    return optim_global_norm(sq, n);
}

/* Process (k, r)'s NORM payload at step s, encoded by hand; returns its length. */
static uint64_t fake_partials(const topo *t, int k, int r, long s, uint8_t *out)
{
    uint8_t *q = out + 4;
    for (int i = 0; i < t->stages[k].n_units; i++) {
        int u = t->stages[k].units[i];
        for (int b = 0; b < topo_unit_buckets(t, u, -1, NULL, NULL); b++, q += 8) put_f64le(q, part_val(s, u, b, r));
    }
    put_u32le(out, (uint32_t)((q - out - 4) / 8));
    return (uint64_t)(q - out);
}

static void test_norm_partials(void)
{
    topo t;
    CU_ASSERT_FATAL(load(&t, TOPO_2X2, 4) == 0);
    CU_ASSERT_EQUAL_FATAL(t.n_replicas, 2);
    int n = topo_n_units(&t), R = t.n_replicas;
    size_t np = coord_norm_parts(&t), nb = 0;
    for (int u = 0; u < n; u++) nb += (size_t)topo_unit_buckets(&t, u, -1, NULL, NULL);
    CU_ASSERT_EQUAL(np, nb * (size_t)R);
    CU_ASSERT(nb > (size_t)n); /* several buckets per unit with bucket_mb 0.01 */
    double *parts = calloc(np, sizeof *parts), *again = calloc(np, sizeof *again), sq[n];
    uint8_t *buf = malloc(4 + 8 * nb), *buf2 = malloc(4 + 8 * nb);
    char err[ERR_LEN] = "";
    /* placed in reverse rank order: the result must not depend on arrival order */
    for (int p = t.n_stages * R - 1; p >= 0; p--) {
        int k = p % t.n_stages, r = p / t.n_stages;
        uint64_t len = fake_partials(&t, k, r, 3, buf);
        CU_ASSERT_EQUAL(coord_place_norm_partials(&t, k, r, buf, len, parts, err), 0);
        /* the encoder is the decoder's inverse */
        CU_ASSERT_EQUAL(coord_encode_norm_partials(&t, k, r, parts, buf2), len);
        CU_ASSERT_EQUAL(memcmp(buf, buf2, (size_t)len), 0);
    }
    coord_combine_norm_partials(&t, parts, sq);
    for (int u = 0; u < n; u++) { /* per unit, bitwise: buckets outer, replicas inner, from 0.0 */
        double acc = 0.0;
        for (int b = 0; b < topo_unit_buckets(&t, u, -1, NULL, NULL); b++)
            for (int r = 0; r < R; r++) acc += part_val(3, u, b, r);
        CU_ASSERT_EQUAL(memcmp(&acc, &sq[u], 8), 0);
    }
    double got = optim_global_norm(sq, n), want = want_grid_norm(&t, 3);
    if (memcmp(&got, &want, 8)) fprintf(stderr, "\n  norm %.17g, want %.17g\n", got, want);
    CU_ASSERT_EQUAL(memcmp(&got, &want, 8), 0);
    /* the test can tell the orders apart: replicas outer gives other bits */
    int differs = 0;
    for (int u = 0; u < n; u++) {
        int ub = topo_unit_buckets(&t, u, -1, NULL, NULL);
        double acc = 0.0;
        for (int r = 0; r < R; r++)
            for (int b = 0; b < ub; b++) acc += part_val(3, u, b, r);
        differs |= memcmp(&acc, &sq[u], 8) != 0;
    }
    CU_ASSERT(differs);
    /* malformed payloads */
    uint64_t len = fake_partials(&t, 1, 1, 3, buf);
    CU_ASSERT_EQUAL(coord_place_norm_partials(&t, 1, 1, buf, len - 8, again, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "bytes"));
    put_u32le(buf, get_u32le(buf) + 1);
    CU_ASSERT_EQUAL(coord_place_norm_partials(&t, 1, 1, buf, len + 8, again, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "partials"));
    CU_ASSERT_EQUAL(coord_place_norm_partials(&t, 1, 1, buf, 2, again, err), -1);
    free(parts); free(again); free(buf); free(buf2);
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
    int r;               /* its replica (process k + r * P) */
} fake;

/* The LOSS replica r of R sends at step s. R = 2: 3 - s/4 and 2 (the sum is
 * 5 - s/4 as with R = 1). R = 3: 5 - s/4, then 3e-16 twice: added in replica
 * order each rounds away (5 - s/4 exactly); any other order gives an ulp more. */
static double loss_of(int R, long s, int r)
{
    if (R == 1) return 5.0 - 0.25 * (double)s;
    if (R == 2) return r == 0 ? 3.0 - 0.25 * (double)s : 2.0;
    return r == 0 ? 5.0 - 0.25 * (double)s : 3e-16;
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

/* One step of a well-behaved process (stage k, replica r): with replicas,
 * partial NORMs, the replica's LOSS from every head, VAL and CKPT_DONE from
 * replica 0 only (stage/proto.h). */
static int fake_step(fake *f, struct net_node *n, long s)
{
    const topo *t = f->t;
    int nu = topo_n_units(t), last = t->n_stages - 1, R = t->n_replicas;
    double sq[nu], want;
    uint8_t buf[4 + 8 * 512];
    uint64_t len;
    for (int u = 0; u < nu; u++) sq[u] = unit_sq(s, u);
    if (R == 1) {
        len = coord_encode_norms(t, f->k, sq, buf);
        want = optim_global_norm(sq, nu);
    } else {
        len = fake_partials(t, f->k, f->r, s, buf);
        want = want_grid_norm(t, s);
    }
    if (fsend(n, MSG_NORM, s, buf, len) || frecv(n, MSG_NORM_REPLY, s, buf, 8)) return -1;
    double got = get_f64le(buf);
    if (memcmp(&want, &got, 8)) { snprintf(f->what, sizeof f->what, "norm %.17g, want %.17g", got, want); f->errors++; }
    if (f->k == last) {
        put_f64le(buf, loss_of(R, s, f->r));
        if (fsend(n, MSG_LOSS, s, buf, 8)) return -1;
        if (f->r == 0 && run_is_eval_step(t, s)) {
            put_f64le(buf, 6.0 - 0.25 * (double)s);
            put_u64le(buf + 8, 1234);
            if (fsend(n, MSG_VAL, s, buf, 16)) return -1;
        }
    }
    if (f->r == 0 && run_is_ckpt_step(t, s)) {
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
    if (stage_net_config(&cfg, t, net_stage_id((uint16_t)f->k, (uint16_t)f->r), f->run_id, 1000, secret, err)) {
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
    put_u32le(buf + 4, 4242u + (uint32_t)(f->k + f->r * t->n_stages));
    put_u32le(buf + 8, (uint32_t)t->stages[f->k].n_units);
    long total = t->train.steps, s;
    if (fsend(n, MSG_JOIN, 0, buf, 12) || frecv(n, MSG_START, 0, buf, 16)) goto out;
    if (get_u64le(buf) != 0 || get_u64le(buf + 8) != (uint64_t)total) f->errors++;
    for (s = 0; s < total; s++) {
        if (fake_misbehave(f, n, s)) goto out;
        if (fake_step(f, n, s)) goto out;
    }
    int p = f->k + f->r * t->n_stages;
    proto_stats st = { 1000u * (uint64_t)(f->k + 1), (uint64_t)(t->n_stages - f->k), 0.5, 0.25, 0.125, 77, (uint64_t)total, 1.5,
                       t->n_replicas > 1 ? 0.25 * (p + 1) : 0, t->n_replicas > 1 ? 0.125 * (p + 1) : 0,
                       t->n_replicas > 1 ? 5000u + (uint64_t)p : 0, 0 };
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
    int intruder_st;     /* what the intruder (a replica the grid lacks) saw: its net_wait_peer status */
} harness;

/* A process claiming replica R of stage 0, which the topology does not have:
 * it connects to the coordinator and tries to JOIN. */
static void *intruder_main(void *arg)
{
    harness *h = arg;
    uint8_t secret[256], buf[12];
    char err[ERR_LEN];
    net_config cfg;
    h->intruder_st = -100;
    if (stage_net_config(&cfg, &h->t, net_stage_id(0, (uint16_t)h->t.n_replicas), 99, 1000, secret, err)) return NULL;
    struct net_node *n = net_node_new(&cfg, err);
    if (!n) return NULL;
    if (!net_connect(n, net_coord_id(), "127.0.0.1", h->port, err)) {
        h->intruder_st = net_wait_peer(n, net_coord_id(), 5000, err);
        put_u32le(buf, 0);
        put_u32le(buf + 4, 666);
        put_u32le(buf + 8, (uint32_t)h->t.stages[0].n_units);
        if (h->intruder_st == NET_OK) fsend(n, MSG_JOIN, 0, buf, 12);
    }
    net_node_free(n);
    return NULL;
}

/* Runs a coordinator over topology `path` for `steps` steps with a fake per
 * process; process bad (rank) misbehaves (mode) at 0-based step bad_step;
 * with intruder, a process the grid lacks tries to join too. */
static void run_grid(harness *h, const char *path, int steps, int bad, int mode, long bad_step, int step_timeout_ms,
                     int intruder)
{
    memset(h, 0, sizeof *h);
    h->rc = -1;
    fake_stop = &h->stop;
    CU_ASSERT_FATAL(load(&h->t, path, steps) == 0);
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
    pthread_t th[8], intr;
    int n = h->t.n_stages * h->t.n_replicas;
    CU_ASSERT_FATAL(n <= 8);
    for (int k = 0; k < n; k++) {
        h->f[k] = (fake){ &h->t, k % h->t.n_stages, h->port, k == bad ? mode : FAKE_OK, bad_step, h->out, 99, &h->stop,
                          0, "", k / h->t.n_stages };
        pthread_create(&th[k], NULL, fake_main, &h->f[k]);
    }
    if (intruder) pthread_create(&intr, NULL, intruder_main, h);
    h->rc = coord_run(c, h->err);
    /* freed while the surviving fakes are still connected, as a coordinator
     * with stages started by hand is */
    coord_free(c);
    h->stop = 1;
    for (int k = 0; k < n; k++) pthread_join(th[k], NULL);
    if (intruder) pthread_join(intr, NULL);
}

static void run_coord(harness *h, int steps, int bad, int mode, long bad_step, int step_timeout_ms)
{
    run_grid(h, TOPO_3, steps, bad, mode, bad_step, step_timeout_ms, 0);
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

/* summary.json of a grid: P x R rows in rank order with stage, replica, the
 * process's own address, pid and data-parallel statistics; "replicas", "zero". */
static void check_grid_summary(const harness *h)
{
    char path[128];
    snprintf(path, sizeof path, "%s/summary.json", h->out);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    const topo *t = &h->t;
    int P = t->n_stages, R = t->n_replicas;
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "replicas")), R);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "zero")), 0);
    json_t *rows = json_object_get(j, "stages");
    CU_ASSERT_EQUAL(json_array_size(rows), (size_t)(P * R));
    for (int p = 0; p < P * R && p < (int)json_array_size(rows); p++) {
        json_t *row = json_array_get(rows, (size_t)p);
        const topo_replica *rp = &t->stages[p % P].replicas[p / P];
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(row, "stage")), p % P);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(row, "replica")), p / P);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(row, "port")), rp->port);
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(row, "host")), rp->host);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(row, "pid")), 4242 + p);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(row, "optim_bytes")), 5000 + p);
        CU_ASSERT_EQUAL(json_real_value(json_object_get(row, "allreduce_s")), 0.25 * (p + 1));
        CU_ASSERT_EQUAL(json_real_value(json_object_get(row, "exposed_s")), 0.125 * (p + 1));
    }
    /* the step's loss: the replicas' LOSSes summed in replica order */
    double want = loss_of(R, t->train.steps - 1, 0);
    for (int r = 1; r < R; r++) want += loss_of(R, t->train.steps - 1, r);
    double got = json_real_value(json_object_get(j, "final_loss"));
    if (memcmp(&got, &want, 8)) fprintf(stderr, "\n  final_loss %.17g, want %.17g\n", got, want);
    CU_ASSERT_EQUAL(memcmp(&got, &want, 8), 0);
    json_decref(j);
}

static void expect_fakes_ok(const harness *h)
{
    if (h->rc) fprintf(stderr, "\n  coordinator: %s\n", h->err);
    CU_ASSERT_EQUAL(h->rc, 0);
    for (int p = 0; p < h->t.n_stages * h->t.n_replicas; p++) {
        if (h->f[p].errors) fprintf(stderr, "\n  fake process %d: %d errors (%s)\n", p, h->f[p].errors, h->f[p].what);
        CU_ASSERT_EQUAL(h->f[p].errors, 0);
    }
}

/* 2 stages x 2 replicas: every fake checks its NORM_REPLY bitwise against
 * the hand-computed combination; a process the grid lacks is refused. */
static void test_grid_2x2(void)
{
    harness h;
    run_grid(&h, TOPO_2X2, 4, -1, FAKE_OK, 0, 20000, 1);
    expect_fakes_ok(&h);
    if (h.intruder_st == NET_OK) fprintf(stderr, "\n  the coordinator admitted stage 0 replica 2\n");
    CU_ASSERT_NOT_EQUAL(h.intruder_st, NET_OK);
    CU_ASSERT_NOT_EQUAL(h.intruder_st, -100);
    char *m = slurp(h.out, "metrics.jsonl"), *latest = slurp(h.out, "checkpoints/latest");
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_PTR_NOT_NULL(strstr(m, "{\"step\": 1, \"loss\": 5.000000,"));
    CU_ASSERT_PTR_NOT_NULL(strstr(m, "{\"step\": 4, \"loss\": 4.250000,"));
    CU_ASSERT_PTR_NOT_NULL(strstr(m, "\"val_loss\": 5.750000}"));
    CU_ASSERT(latest && !strcmp(latest, "step-4\n"));
    check_grid_summary(&h);
    free(m); free(latest);
    done(&h);
}

/* One stage x 3 replicas: the loss sum's order shows (loss_of). */
static void test_grid_1x3(void)
{
    snprintf(topo_1x3, sizeof topo_1x3, "/tmp/test_coord_1x3.XXXXXX");
    int fd = mkstemp(topo_1x3);
    CU_ASSERT_FATAL(fd >= 0);
    close(fd);
    write_file(topo_1x3,
               "{\"model\": {\"dim\": 64, \"n_layers\": 2, \"n_heads\": 4, \"ffn_dim\": 128, \"seq_len\": 32},\n"
               " \"train\": {\"steps\": 4, \"batch_size\": 12, \"micro_batches\": 2, \"lr\": 0.001},\n"
               " \"schedule\": {\"kind\": \"gpipe\"},\n"
               " \"coordinator\": {\"host\": \"127.0.0.1\", \"port\": 29560},\n"
               " \"stages\": [{\"layers\": \"embed,0-1,head\", \"replicas\": [{\"host\": \"127.0.0.1\", \"port\": 29561},\n"
               "   {\"host\": \"127.0.0.1\", \"port\": 29562}, {\"host\": \"127.0.0.1\", \"port\": 29563}]}]}\n");
    harness h;
    run_grid(&h, topo_1x3, 4, -1, FAKE_OK, 0, 20000, 0);
    expect_fakes_ok(&h);
    CU_ASSERT_EQUAL(h.t.n_replicas, 3);
    CU_ASSERT_EQUAL(loss_of(3, 3, 0) + loss_of(3, 3, 1) + loss_of(3, 3, 2), 4.25); /* in replica order */
    CU_ASSERT_NOT_EQUAL(loss_of(3, 3, 0) + (loss_of(3, 3, 1) + loss_of(3, 3, 2)), 4.25); /* what another order gives */
    check_grid_summary(&h);
    done(&h);
    remove(topo_1x3);
}

/* A replica that dies is named by stage and replica and its own address. */
static void test_grid_replica_dies(void)
{
    harness h;
    run_grid(&h, TOPO_2X2, 4, 3, FAKE_DIE, 2, 20000, 0);
    expect_blame(&h, "stage 1 replica 1 (127.0.0.1:29554) died", NULL);
    done(&h);
    run_grid(&h, TOPO_2X2, 4, 2, FAKE_FAIL, 1, 20000, 0);
    expect_blame(&h, "stage 0 replica 1 (127.0.0.1:29553) failed", "disk on fire");
    done(&h);
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
        { "NORM partials combined buckets outer, replicas inner", test_norm_partials },
        { "2 x 2 grid: partial norms, replica losses, summary rows", test_grid_2x2 },
        { "1 x 3 grid: losses summed in replica order", test_grid_1x3 },
        { "a replica that dies or fails is named", test_grid_replica_dies },
        CU_TEST_INFO_NULL,
    };
    return tests_run("coord", tests);
}
