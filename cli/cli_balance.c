/* cli_balance.c — `pipetrain balance`: chooses the layers of each stage (contiguous
 * ranges of the units embed, blocks, head) to minimise the simulated step time of
 * a one-chunk schedule under each stage's memory limit (scheduler/sched_balance.h),
 * prints the plan and writes the new topology. Also the imbalance warning of
 * `pipetrain check` (cli_balance_warn).
 *
 * Per-unit costs: FLOP-derived as `pipetrain schedule` (cli_schedule_rates), or
 * from runs' costs.json (--calibrate, repeatable: the median over the runs of
 * every cost, topo_calib.h): each stage's measured F, B, W spread over its units
 * (of the runs' split, from their summary.json, else the topology's) in
 * proportion to the units' times measured in the stages (costs.json "units"), or,
 * in a file without them, to their FLOPs (evenly over a stage without FLOPs), so
 * every unit gets its stage's measured speed. Memory per unit: weights and
 * gradients (8 bytes per parameter), the AdamW moments one process keeps
 * (topo_optim_bytes: 8 bytes per parameter, 1/R of them with train.zero, none
 * with sync "ps"), plus model_unit_mem's stash and work under train.recompute;
 * the simulator adds up the stash at the schedule's peak. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_balance.h"
#include "cli/cli_schedule.h"
#include "model/util.h"
#include "scheduler/sched_balance.h"
#include "topo/topo.h"
#include "topo/topo_calib.h"

#define BALANCE_MAX_LIST 20000 /* splits listed before the best --top are simulated (sched_balance_in.max_list) */

static const char balance_help[] =
    "usage: pipetrain balance TOPOLOGY.json --stages P [options]\n"
    "  --stages P            stages of the new split (required)\n"
    "  --calibrate RUN_DIR   per-layer costs from a run's measured costs.json (RUN_DIR/costs.json\n"
    "                        or a costs file): each stage's F, B, W spread over its layers by their\n"
    "                        measured times (\"units\"), or by FLOPs in a file without them.\n"
    "                        Repeatable: runs of one model and split (checked against their\n"
    "                        summary.json), the median of each cost over them (per stage, layer,\n"
    "                        kind F/B/W and link; of an even count the mean of the middle two).\n"
    "                        The runs' split may differ from TOPOLOGY.json's\n"
    "  --gflops G            FLOP-derived costs at G GFLOP/s per BLAS thread (default: this\n"
    "                        machine's sgemm, as `pipetrain schedule`)\n"
    "  --memory-limit BYTES  per stage: weights + gradients + AdamW moments + peak activations\n"
    "  --schedule KIND       gpipe | 1f1b | zb-h1 (default: the topology's)\n"
    "  --top N               simulate the N splits of least bottleneck (default 32)\n"
    "  --out NEW.json        write the balanced topology there (never over the input)\n"
    "  --set KEY=VALUE       override a topology field for the costs (repeatable; not written)\n"
    "Exit status: 0 ok, 1 run-time failure, 2 bad usage or input (a layer too large for the limit).\n";

typedef struct {
    const char *topo, *kind, *out;
    const char **calib; /* --calibrate RUN_DIR, repeatable */
    int n_calib;
    long P, top;
    double gflops, mem_limit;
    char **sets;
    int n_sets;
} bopts;

static int parse_args(bopts *o, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (a[0] != '-' || a[1] != '-') {
            if (o->topo) return cli_usage_error("balance", "unexpected argument '%s' (one topology file)", a);
            o->topo = a;
            continue;
        }
        if (!v) return cli_usage_error("balance", "%s needs a value", a);
        i++;
        if (!strcmp(a, "--stages")) { if (cli_parse_long("balance", a, v, 1, 4096, &o->P)) return 2; }
        else if (!strcmp(a, "--top")) { if (cli_parse_long("balance", a, v, 1, BALANCE_MAX_LIST, &o->top)) return 2; }
        else if (!strcmp(a, "--gflops")) { if (cli_parse_double("balance", a, v, 1e-6, 1e9, &o->gflops)) return 2; }
        else if (!strcmp(a, "--memory-limit")) {
            if (cli_parse_double("balance", a, v, 1, 1e18, &o->mem_limit)) return 2;
        } else if (!strcmp(a, "--calibrate")) o->calib[o->n_calib++] = v;
        else if (!strcmp(a, "--out")) o->out = v;
        else if (!strcmp(a, "--set")) o->sets[o->n_sets++] = (char *)v;
        else if (!strcmp(a, "--schedule")) {
            int k = sched_kind_find(v);
            if (k < 0 || sched_kind_table[k].min_chunks != 1)
                return cli_usage_error("balance", "--schedule: expected gpipe, 1f1b or zb-h1 (one chunk per "
                                       "stage), got '%s'", v);
            o->kind = v;
        } else return cli_usage_error("balance", "unknown option '%s'", a);
    }
    if (!o->topo) return cli_usage_error("balance", "give a TOPOLOGY.json");
    if (!o->P) return cli_usage_error("balance", "--stages P is required");
    if (o->n_calib && o->gflops > 0) return cli_usage_error("balance", "--gflops and --calibrate are alternatives");
    if (o->out && o->P > TOPO_MAX_STAGES) /* refused before the search, not after it printed a plan */
        return cli_usage_error("balance", "--stages %ld with --out: a topology holds at most %d stages (without "
                               "--out, up to 4096 are simulated)", o->P, TOPO_MAX_STAGES);
    return 0;
}

/* Per-unit arrays of sched_balance_in, filled here. */
typedef struct {
    double *f, *b, *w, *st, *stash, *work, *tmp, *wu, *out, *speed;
} unit_arrays;

static void ua_free(unit_arrays *a)
{
    double **p = (double **)a;
    for (size_t i = 0; i < sizeof *a / sizeof(double *); i++) free(p[i]);
}

static void ua_alloc(unit_arrays *a, int U, int P)
{
    double **p = (double **)a;
    for (size_t i = 0; i < sizeof *a / sizeof(double *); i++) p[i] = xcalloc((size_t)(U > P ? U : P), sizeof(double));
}

/* Memory and FLOPs of every unit for a split into P stages; flops[3*u..] = fwd,
 * bwd_input (+ recompute), bwd_weight. */
static void unit_model(const topo *t, int P, unit_arrays *a, double *flops)
{
    size_t batch = (size_t)topo_micro_batch(t), seq = (size_t)t->model.seq_len;
    int mode = t->train.recompute_id;
    for (int u = 0; u < topo_n_units(t); u++) {
        model_flops fl = model_unit_flops(&t->model, u, batch, seq);
        flops[3 * u] = fl.fwd;
        flops[3 * u + 1] = fl.bwd_input + model_unit_recompute_flops(&t->model, u, batch, seq, mode);
        flops[3 * u + 2] = fl.bwd_weight;
        model_mem m = model_unit_mem(&t->model, u, batch, mode);
        a->st[u] = 8.0 * (double)model_unit_params(&t->model, u) + topo_optim_bytes(t, &u, 1);
        a->stash[u] = (double)m.stash;
        a->work[u] = (double)m.work;
        a->tmp[u] = (double)m.fwd_tmp;
        a->wu[u] = (double)m.work_unit;
        a->out[u] = (double)model_unit_out_bytes(&t->model, u, batch, seq);
    }
    /* a tied head owns no parameters, but on another stage than the embedding (any
     * split of P >= 2 contiguous stages) it holds a copy of the embedding and its
     * lm_head gradient, 4·vocab·dim bytes each, as topo_mem counts them */
    if (t->model.tie_embeddings && P > 1)
        a->st[topo_n_units(t) - 1] += 8.0 * (double)t->model.vocab_size * (double)t->model.dim;
}

/* Costs measured in the runs of --calibrate, per unit: the median over the runs
 * of each stage's measured F, B, W (themselves medians of its actions) and of
 * each unit's (topo_calib.h), each stage's spread over its units in proportion to
 * the units' own measured times (costs.json "units", timed in the stages) when
 * every file has them, else to their FLOPs. The stages are the runs' own split
 * (their summary.json), else the topology's. *per_layer tells which spreading;
 * cal keeps what was read (the caller frees it). Returns 0, 1 or 2 with err. */
static int calib_units(const bopts *o, const topo *t, const double *flops, unit_arrays *a, double *latency,
                       int *per_layer, topo_calib *cal, char *err)
{
    int rc = topo_calib_load(o->calib, o->n_calib, t, 0, cal, err);
    if (rc) return rc;
    int P = cal->n_stages, v = cal->n_chunks, U = topo_n_units(t);
    if (v != 1 || (!cal->split && (P != t->n_stages || t->chunks_per_stage != 1))) {
        seterr(err, "%s: \"stages\", \"chunks\": measured on %d stage(s) x %d chunk(s); %s has %d x %d (balance needs "
               "runs of one chunk per stage, of this topology's split when the run has no summary.json)",
               cal->paths[0], P, v, t->path, t->n_stages, t->chunks_per_stage);
        return 2;
    }
    int have = cal->n_units == U;
    const double *ut[3] = { cal->uf, cal->ub, cal->uw };
    *per_layer = have;
    for (int s = 0; s < P; s++) {
        const int *units = cal->split ? cal->split[s] : t->stages[s].units;
        int nu = cal->split ? cal->split_n[s] : t->stages[s].n_units;
        const double *meas[3] = { cal->costs->f, cal->costs->b, cal->costs->w };
        double *dst[3] = { a->f, a->b, a->w };
        for (int op = 0; op < 3; op++) {
            double sum = 0, usum = 0;
            for (int i = 0; i < nu; i++) {
                sum += flops[3 * units[i] + op];
                usum += have ? ut[op][units[i]] : 0;
            }
            for (int i = 0; i < nu; i++) {
                int u = units[i];
                dst[op][u] = have && usum > 0 ? meas[op][s] * ut[op][u] / usum
                           : sum > 0 ? meas[op][s] * flops[3 * u + op] / sum : meas[op][s] / nu;
            }
        }
    }
    *latency = cal->costs->latency;
    return 0;
}

/* The costs line of the plan for calibration cal: how many runs, which, how. */
static void calib_note(const topo_calib *cal, int per_layer, char *note, size_t nn)
{
    size_t len = 0;
    if (cal->n_runs == 1) len = (size_t)snprintf(note, nn, "measured in %.1000s", cal->paths[0]);
    else {
        len = (size_t)snprintf(note, nn, "median of %d runs (per stage, layer and kind F, B, W, and link; an even "
                               "count takes the mean of the middle two):", cal->n_runs);
        for (int i = 0; i < cal->n_runs && len < nn; i++)
            len += (size_t)snprintf(note + len, nn - len, " %.200s", cal->paths[i]);
    }
    if (len < nn)
        len += (size_t)snprintf(note + len, nn - len, ", each stage's F, B, W spread over its layers %s",
                                per_layer ? "by their measured times (costs.json \"units\")"
                                          : "by FLOPs (no per-layer times)");
    if (len < nn && cal->split)
        snprintf(note + len, nn - len, "; the runs' split from %.300s", cal->split_from);
}

/* The layer notation of units [a, b). */
static void layers_of(const topo *t, int a, int b, char *buf, size_t n)
{
    int nl = t->model.n_layers, len = 0;
    buf[0] = 0;
    if (a == 0) len += snprintf(buf + len, n - (size_t)len, "embed");
    int lo = a < 1 ? 1 : a, hi = b - 1 > nl ? nl : b - 1; /* block units lo..hi */
    if (lo <= hi) {
        if (lo == hi) len += snprintf(buf + len, n - (size_t)len, "%s%d", len ? "," : "", lo - 1);
        else len += snprintf(buf + len, n - (size_t)len, "%s%d-%d", len ? "," : "", lo - 1, hi - 1);
    }
    if (b == nl + 2) snprintf(buf + len, n - (size_t)len, "%shead", len ? "," : "");
}

static const char *unit_label(const topo *t, int u, char *buf, size_t n)
{
    if (u == 0) snprintf(buf, n, "the embedding (embed)");
    else if (u == t->model.n_layers + 1) snprintf(buf, n, "the head (head)");
    else snprintf(buf, n, "block %d", u - 1);
    return buf;
}

static void human_bytes(double x, char *buf, size_t n)
{
    static const char *const suf[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    int i = 0;
    while (x >= 1024 && i < 4) { x /= 1024; i++; }
    snprintf(buf, n, i ? "%.2f %s" : "%.0f %s", x, suf[i]);
}

static void print_plan(const topo *t, const sched_schedule *s, const sched_balance_plan *p,
                       const sched_balance_plan *cur, const char *note, double limit)
{
    char mb[32], lim[32];
    printf("balance %s: %d stages, schedule %s, %d micro-batches\ncosts: %s\n", t->path, p->n_stages, s->kind,
           s->n_micro, note);
    if (limit > 0) human_bytes(limit, lim, sizeof lim);
    printf("search: least bottleneck %.4f ms per micro-batch (DP over split points); %d split(s) within 25%% "
           "listed, %d simulated; memory limit %s\n", p->bottleneck, p->n_listed, p->n_simulated,
           limit > 0 ? lim : "none");
    printf("%-5s %-20s %10s %10s %14s %14s\n", "stage", "layers", "F+B+W ms", "busy ms", "static", "memory");
    for (int st = 0; st < p->n_stages; st++) {
        char l[64], sb[32];
        layers_of(t, p->first[st], p->first[st + 1], l, sizeof l);
        human_bytes(p->static_mem[st], sb, sizeof sb);
        human_bytes(p->mem[st], mb, sizeof mb);
        printf("%-5d %-20s %10.4f %10.3f %14s %14s\n", st, l, p->busy[st] / s->n_micro, p->busy[st], sb, mb);
    }
    printf("predicted step time: %.4f ms\n", p->step_time);
    if (cur)
        printf("the topology's split: predicted step time %.4f ms (bottleneck %.4f ms per micro-batch): balanced "
               "is %.1f%% faster\n", cur->step_time, cur->bottleneck, 100 * (1 - p->step_time / cur->step_time));
}

/* The largest port named in the document (stages, replicas, coordinator). */
static long max_port(json_t *root)
{
    long mx = 0;
    json_t *c = json_object_get(root, "coordinator"), *sts = json_object_get(root, "stages"), *x;
    size_t i, j;
    if (json_is_integer(json_object_get(c, "port"))) mx = (long)json_integer_value(json_object_get(c, "port"));
    json_array_foreach(sts, i, x) {
        json_t *r, *reps = json_object_get(x, "replicas");
        if (json_is_integer(json_object_get(x, "port")) && json_integer_value(json_object_get(x, "port")) > mx)
            mx = (long)json_integer_value(json_object_get(x, "port"));
        json_array_foreach(reps, j, r)
            if (json_is_integer(json_object_get(r, "port")) && json_integer_value(json_object_get(r, "port")) > mx)
                mx = (long)json_integer_value(json_object_get(r, "port"));
    }
    return mx;
}

/* Stage objects for the plan: stage s copies the file's stage min(s, n-1); a new
 * one listens on fresh ports above every port of the file. */
static json_t *new_stages(const topo *t, json_t *root, const sched_balance_plan *p)
{
    json_t *old = json_object_get(root, "stages"), *arr = json_array();
    long next = max_port(root) + 1;
    size_t n = json_array_size(old);
    for (int st = 0; st < p->n_stages; st++) {
        json_t *x = json_deep_copy(json_array_get(old, (size_t)st < n ? (size_t)st : n - 1)), *r;
        char l[64];
        layers_of(t, p->first[st], p->first[st + 1], l, sizeof l);
        json_object_set_new(x, "layers", json_string(l));
        if ((size_t)st >= n) {
            size_t j;
            if (json_object_get(x, "port")) json_object_set_new(x, "port", json_integer(next++));
            json_array_foreach(json_object_get(x, "replicas"), j, r) json_object_set_new(r, "port", json_integer(next++));
        }
        json_array_append_new(arr, x);
    }
    return arr;
}

static int same_dir(const char *a, const char *b)
{
    char x[PATH_MAX], y[PATH_MAX], da[PATH_MAX], db[PATH_MAX];
    snprintf(da, sizeof da, "%s", a);
    snprintf(db, sizeof db, "%s", b);
    return realpath(dirname(da), x) && realpath(dirname(db), y) && !strcmp(x, y);
}

/* A relative path of the document (data.path, secret_file) made absolute when
 * the new file lives in another directory than the old one. */
static void absolutise(json_t *obj, const char *key, const char *resolved)
{
    json_t *v = json_object_get(obj, key);
    char abs[PATH_MAX];
    if (!json_is_string(v) || json_string_value(v)[0] == '/' || !resolved) return;
    if (realpath(resolved, abs)) json_object_set_new(obj, key, json_string(abs));
}

/* Writes the balanced topology to o->out through a temporary file that is loaded
 * back with topo_load before it is renamed. Returns 0, 1 or 2 with err. */
static int write_topology(const bopts *o, const topo *t, const sched_balance_plan *p, char *err)
{
    struct stat a, b;
    if (!stat(o->out, &b) && !stat(o->topo, &a) && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
        return seterr(err, "--out: %s is the input topology: write the balanced one elsewhere", o->out), 2;
    if (!stat(o->out, &b) && S_ISDIR(b.st_mode))
        return seterr(err, "--out: %s is a directory: give the path of the new topology file", o->out), 2;
    json_error_t je;
    json_t *root = json_load_file(o->topo, JSON_REJECT_DUPLICATES, &je);
    if (!root) return seterr(err, "%s: line %d: %s", o->topo, je.line, je.text), 2;
    json_object_set_new(root, "stages", new_stages(t, root, p));
    if (o->kind) {
        json_t *sc = json_object_get(root, "schedule");
        if (!json_is_object(sc)) json_object_set_new(root, "schedule", sc = json_object());
        json_object_del(sc, "file");
        json_object_del(sc, "chunks");
        json_object_set_new(sc, "kind", json_string(o->kind));
    }
    if (!same_dir(o->topo, o->out)) {
        absolutise(json_object_get(root, "data"), "path", t->data.path);
        absolutise(root, "secret_file", t->secret_file);
    }
    char tmp[PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld.json", o->out, (long)getpid());
    int rc = 0;
    if (json_dump_file(root, tmp, JSON_INDENT(2) | JSON_PRESERVE_ORDER)) {
        rc = seterr(err, "%s: cannot write (as %s): %s", o->out, tmp, strerror(errno)) ? 2 : 2;
        unlink(tmp);
        json_decref(root);
        return rc;
    }
    json_decref(root);
    topo chk;
    char why[ERR_LEN];
    if (topo_load(&chk, tmp, NULL, 0, why)) {
        unlink(tmp);
        return seterr(err, "%s: the balanced topology does not load: %s", o->out, why), 2;
    }
    topo_free(&chk);
    int fd = open(tmp, O_RDONLY);
    if (fd >= 0) { fsync(fd); close(fd); }
    if (rename(tmp, o->out)) {
        unlink(tmp);
        return seterr(err, "%s: cannot write: rename: %s", o->out, strerror(errno)), 1;
    }
    char d[PATH_MAX];
    snprintf(d, sizeof d, "%s", o->out);
    if ((fd = open(dirname(d), O_RDONLY | O_DIRECTORY)) >= 0) { fsync(fd); close(fd); }
    return 0;
}

int cli_balance_main(int argc, char **argv)
{
    if (cli_wants_help(argc, argv, balance_help)) return 0;
    bopts o = { .top = 32 };
    o.sets = xcalloc((size_t)argc + 1, sizeof(char *));
    o.calib = xcalloc((size_t)argc + 1, sizeof(char *));
    topo_calib cal;
    memset(&cal, 0, sizeof cal);
    int rc = parse_args(&o, argc, argv), have_t = 0;
    char err[ERR_LEN] = "", note[1400] = "";
    topo t;
    sched_schedule *s = NULL;
    sched_balance_plan *plan = NULL, *cur = NULL;
    unit_arrays a;
    double *flops = NULL;
    memset(&a, 0, sizeof a);
    if (rc) goto done;
    rc = 2;
    if (topo_load(&t, o.topo, o.sets, o.n_sets, err)) goto fail;
    have_t = 1;
    const char *kind = o.kind ? o.kind : t.schedule.kind;
    if (!kind || sched_kind_table[sched_kind_find(kind)].min_chunks != 1) {
        seterr(err, "%s: schedule: balance handles one chunk per stage; this topology runs %s: give --schedule "
               "gpipe, 1f1b or zb-h1", o.topo, kind ? kind : "a schedule file");
        goto fail;
    }
    /* the balancer's unit arrays hold one mode: say so when stages differ from it
     * (the written stages keep their entries', position by position) */
    for (int st = 0; st < t.n_stages; st++)
        if (t.stages[st].recompute_id != t.train.recompute_id) {
            fprintf(stderr, "pipetrain balance: warning: %s: stages.%d.recompute \"%s\" differs from train.recompute "
                    "\"%s\": the plan models every stage in \"%s\", so the memory and times of a stage that keeps "
                    "its own mode (stage i of --out takes the i-th stage entry's settings) differ from the plan\n",
                    o.topo, st, t.stages[st].recompute ? t.stages[st].recompute : "?", t.train.recompute,
                    t.train.recompute);
            break;
        }
    int P = (int)o.P, U = topo_n_units(&t);
    if (P > U) {
        seterr(err, "--stages: %d stages but %s's model has %d units (embedding, %d blocks, head)", P, o.topo, U,
               t.model.n_layers);
        goto fail;
    }
    char why[SCHED_ERR_LEN];
    if (!(s = sched_generate(kind, P, t.train.micro_batches, 1, why))) {
        seterr(err, "%s: train.micro_batches: %s (--stages %d)", o.topo, why, P);
        goto fail;
    }
    ua_alloc(&a, U, P);
    flops = xcalloc(3 * (size_t)U, sizeof(double));
    unit_model(&t, P, &a, flops);
    double latency = 0;
    for (int st = 0; st < P; st++) a.speed[st] = 1;
    if (o.n_calib) {
        int per_layer = 0;
        if ((rc = calib_units(&o, &t, flops, &a, &latency, &per_layer, &cal, err))) goto fail;
        calib_note(&cal, per_layer, note, sizeof note);
    } else {
        double *rates = xcalloc((size_t)t.n_stages, sizeof(double));
        if (cli_schedule_rates(&t, o.gflops, rates, note, sizeof note)) {
            seterr(err, "%s", note);
            free(rates);
            rc = 1;
            goto fail;
        }
        for (int u = 0; u < U; u++) {
            a.f[u] = flops[3 * u] / (rates[0] * 1e6);
            a.b[u] = flops[3 * u + 1] / (rates[0] * 1e6);
            a.w[u] = flops[3 * u + 2] / (rates[0] * 1e6);
        }
        for (int st = 0; st < P; st++) a.speed[st] = rates[st < t.n_stages ? st : t.n_stages - 1] / rates[0];
        free(rates);
    }
    sched_balance_in in = { U, a.f, a.b, a.w, a.st, a.stash, a.work, a.tmp, a.wu, a.out, a.speed, latency, 0,
                            1, 1, o.mem_limit, 0.25, (int)o.top, BALANCE_MAX_LIST, 0 };
    int bad = -1;
    if (sched_balance(s, &in, &plan, &bad, why)) {
        char lab[64];
        if (bad >= 0)
            seterr(err, "%s: --memory-limit: %s does not fit on any stage: %s", o.topo,
                   unit_label(&t, bad, lab, sizeof lab), why);
        else seterr(err, "%s: %s", o.topo, why);
        rc = strstr(why, "out of memory") ? 1 : 2;
        goto fail;
    }
    if (P == t.n_stages && t.chunks_per_stage == 1) { /* the topology's own split, for comparison */
        int *first = xcalloc((size_t)P + 1, sizeof(int));
        for (int st = 0; st < P; st++) first[st + 1] = first[st] + t.stages[st].n_units;
        if (sched_balance_eval(s, &in, first, &cur, why)) cur = NULL;
        free(first);
    }
    print_plan(&t, s, plan, cur, note, o.mem_limit);
    rc = o.out ? write_topology(&o, &t, plan, err) : 0;
    if (!rc && o.out) printf("wrote %s\n", o.out);
    if (rc) goto fail;
    goto done;
fail:
    fprintf(stderr, "pipetrain balance: %s\n", err);
done:
    sched_balance_plan_free(plan);
    sched_balance_plan_free(cur);
    sched_free(s);
    ua_free(&a);
    free(flops);
    if (have_t) topo_free(&t);
    free(o.sets);
    free(o.calib);
    topo_calib_free(&cal);
    return rc;
}

/* The least bottleneck over contiguous splits of the units into t's stages (each
 * stage's cost divided by its threads); cost[u] per unit. */
static double best_bottleneck(const topo *t, const double *cost)
{
    double *th = xcalloc((size_t)t->n_stages, sizeof(double));
    for (int s = 0; s < t->n_stages; s++) th[s] = t->stages[s].threads > 0 ? t->stages[s].threads : 1;
    double r = sched_balance_bottleneck(topo_n_units(t), cost, t->n_stages, th);
    free(th);
    return r;
}

void cli_balance_warn(const topo *t, FILE *f)
{
    size_t batch = (size_t)topo_micro_batch(t), seq = (size_t)t->model.seq_len;
    int U = topo_n_units(t);
    double sum = 0, mx = 0, *cost = xcalloc((size_t)U, sizeof(double));
    int worst = 0;
    for (int st = 0; st < t->n_stages; st++) {
        double x = 0;
        for (int i = 0; i < t->stages[st].n_units; i++) {
            int u = t->stages[st].units[i];
            model_flops fl = model_unit_flops(&t->model, u, batch, seq);
            cost[u] = fl.fwd + fl.bwd_input + fl.bwd_weight +
                      model_unit_recompute_flops(&t->model, u, batch, seq, t->stages[st].recompute_id);
            x += cost[u];
        }
        x /= t->stages[st].threads > 0 ? t->stages[st].threads : 1;
        sum += x;
        if (x > mx) { mx = x; worst = st; }
    }
    double mean = sum / t->n_stages, best = t->chunks_per_stage == 1 ? best_bottleneck(t, cost) : mx;
    free(cost);
    if (t->n_stages < 2 || mean <= 0 || mx <= 1.2 * mean || best >= mx * (1 - 1e-9)) return;
    /* balance takes the topology's kind only when it is a one-chunk one; a schedule
     * file (one chunk here) needs --schedule, or the suggested command is refused */
    int k = t->schedule.kind ? sched_kind_find(t->schedule.kind) : -1;
    const char *sched = k >= 0 && sched_kind_table[k].min_chunks == 1 ? "" : " --schedule 1f1b";
    fprintf(f, "pipetrain check: warning: %s: stages are %.0f%% imbalanced (stage %d's forward+backward FLOPs per "
               "BLAS thread are %.2fx the mean of the stages; the best split of the layers brings the largest "
               "down by %.0f%%): `pipetrain balance %s --stages %d%s --out NEW.json` proposes it\n",
            t->path, 100 * (mx / mean - 1), worst, mx / mean, 100 * (1 - best / mx), t->path, t->n_stages, sched);
}
