/* bench_ps.c — `pipetrain bench ps` (issue 12, "What asynchrony is for"). In
 * one invocation, 2 workers (one stage each, 1 BLAS thread) and 1 parameter
 * server on loopback train the same small model in 8 runs, one at a time:
 *   baseline, no straggler, staleness 0 and -1: the normal step time t (the
 *     workers' compute per step) and the per-step overhead of each protocol
 *     (step time minus t: push, apply, pull, the norm round trip);
 *   transient: each step, each worker independently pauses with probability
 *     0.25 for twice its normal step time (PIPETRAIN_STRAGGLE="*:0.25:2");
 *   persistent: worker 1 sleeps twice its step time every step, 3x slower
 *     (PIPETRAIN_STRAGGLE="1:1:2");
 * each of the two at staleness 0, 2 and -1. The pauses are sleeps (the
 * stage's straggler hook, stage/straggle.h), so the 2 cores are not what
 * limits the slow worker.
 *
 * Throughput is measured as ps/ps_model.h defines it: a worker's step k ends
 * at the sum of its step_ms in metrics.jsonl (the coordinator's clock, from
 * the common start); the window runs from the moment every worker has
 * finished its warm-up steps to the earliest end of any worker's last-but-one
 * step (the last checkpoints), and counts the samples of every worker-step
 * ending inside it (B/R each). When the workers never run at once past their
 * warm-up (a fast unbounded worker done first), the sum of each worker's rate
 * over its own window instead. Each configuration runs once per round (--rounds,
 * interleaved); its figures are those of its median run (by samples/s), and
 * the ratio to synchronous is also taken per round (a run against the
 * synchronous run of the same round, minutes apart at most) with its median
 * and range. Beside each figure, ps_model_rate's prediction fed with the run's
 * own measured compute per step and the baseline's overhead of its protocol
 * (synchronous or asynchronous); transient predictions average 16 pause
 * streams. On a shared machine the compute per step t moves from run to run
 * with the other jobs' load, and the ratios with it; so each ratio is also
 * given at equal compute: the run's rate x model(t_sync) / model(t_run), what
 * the model says the run would have reached at the synchronous run's t with
 * its own overhead (the pauses scale with t, the overhead does not; scaling by
 * t_run / t_sync alone would treat the overhead as if it scaled too), beside
 * the model's ratio at the synchronous run's t. It asserts nothing: a
 * benchmark.
 * Not here: convergence (bench_ps_conv.c). */
#include "bench/bench_ps.h"
#include "bench/bench_ps_int.h"

#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "ps/ps_model.h"

enum { N_RUNS = 8, R_WORKERS = 2, MAX_ROUNDS = 10 };

typedef struct {
    const char *name, *scenario, *straggle;
    long s;
    double slow1, pause_p; /* the model's view of the straggle */
    double rate, ratio, pred, pred_ratio;
    double eq_ratio, eq_pred_ratio; /* at equal compute: scaled to the synchronous run's t (header) */
    double pair_med, pair_lo, pair_hi; /* per-round ratio to the same round's synchronous run: median, range */
    double t_ms, comm_ms, wall_s;
    long pauses[R_WORKERS];
    double paused_s[R_WORKERS];
    int stale_max;
    double stale_mean;
} bps_result;

typedef struct {
    int dim, n_layers, n_heads, ffn, seq, batch, micro, warm;
} bps_shape;

static const bps_shape full_shape = { 128, 4, 4, 384, 64, 24, 2, 3 }; /* shakespeare-ps.json's model and batch */
static const bps_shape quick_shape = { 32, 2, 2, 96, 16, 4, 2, 1 };

/* The throughput topology: one stage (the whole model) x 2 replicas, 1 server. */
static json_t *make_topo(const bps *b, const bps_shape *m, long s, char *err)
{
    int ports[R_WORKERS + 1];
    if (bps_free_ports(R_WORKERS + 1, ports, err)) return NULL;
    char layers[32];
    snprintf(layers, sizeof layers, "embed,0-%d,head", m->n_layers - 1);
    json_t *reps = json_array();
    for (int r = 0; r < R_WORKERS; r++)
        json_array_append_new(reps, json_pack("{s:s,s:i,s:i}", "host", "127.0.0.1", "port", ports[r], "threads", 1));
    return json_pack(
        "{s:s, s:{s:i,s:i,s:i,s:i,s:i,s:i,s:i}, s:{s:s,s:f}, s:{s:i,s:i,s:i,s:f,s:i,s:i,s:i,s:i,s:I},"
        " s:{s:s,s:i,s:i}, s:{s:s}, s:{s:s,s:i}, s:s, s:[{s:s,s:o}], s:s, s:{s:I}, s:[{s:s,s:i}]}",
        "description", "bench ps (generated)",
        "model", "dim", m->dim, "n_layers", m->n_layers, "n_heads", m->n_heads, "n_kv_heads", m->n_heads, "ffn_dim",
        m->ffn, "vocab_size", 256, "seq_len", m->seq,
        "data", "path", b->data, "val_fraction", 0.0,
        "train", "steps", b->o.steps, "batch_size", m->batch, "micro_batches", m->micro, "lr", 1e-3,
        "warmup_steps", 5, "eval_every", 0, "eval_batches", 1, "log_every", 1, "seed", (json_int_t)1337,
        "checkpoint", "dir", "checkpoints", "every", 0, "keep", 1,
        "schedule", "kind", "gpipe",
        "coordinator", "host", "127.0.0.1", "port", 0,
        "launch", "local",
        "stages", "layers", layers, "replicas", reps,
        "sync", "ps",
        "ps", "staleness", (json_int_t)s,
        "parameter_servers", "host", "127.0.0.1", "port", ports[R_WORKERS]);
}

/* Samples/s over the window of the header comment, from the step rows. */
static double measured_rate(const bps_row *rows, size_t n, int batch, int warm, char *err)
{
    long K[R_WORKERS] = { 0 };
    double *fin = xcalloc(R_WORKERS * (n + 1), sizeof *fin), acc[R_WORKERS] = { 0 };
    int sync = rows[0].worker < 0;
    for (size_t i = 0; i < n; i++) {
        int w = rows[i].worker;
        if (w < -1 || w >= R_WORKERS || sync != (w < 0)) {
            free(fin);
            return seterr(err, "metrics.jsonl: unexpected worker %d", w), NAN;
        }
        for (int q = 0; q < R_WORKERS; q++) /* a synchronous step ends for every worker */
            if (w < 0 || q == w) {
                acc[q] += rows[i].step_ms * 1e-3;
                fin[(size_t)q * (n + 1) + (size_t)K[q]++] = acc[q];
            }
    }
    double lo = 0, hi = INFINITY;
    for (int q = 0; q < R_WORKERS; q++) {
        if (K[q] < warm + 2) {
            free(fin);
            return seterr(err, "metrics.jsonl: worker %d logged %ld steps, fewer than the warm-up + 2", q, K[q]), NAN;
        }
        lo = fmax(lo, fin[(size_t)q * (n + 1) + (size_t)(warm - 1)]);
        hi = fmin(hi, fin[(size_t)q * (n + 1) + (size_t)(K[q] - 2)]);
    }
    if (!(hi > lo)) {
        /* No common window: an unbounded fast worker finished before the
         * slow one was through its warm-up (short runs, --quick, a loaded
         * machine). The sum of each worker's own rate over its own window. */
        double rate = 0;
        for (int q = 0; q < R_WORKERS; q++) {
            double a = fin[(size_t)q * (n + 1) + (size_t)(warm - 1)], b = fin[(size_t)q * (n + 1) + (size_t)(K[q] - 2)];
            if (!(b > a)) {
                free(fin);
                return seterr(err, "metrics.jsonl: worker %d: an empty measuring window", q), NAN;
            }
            rate += (double)(K[q] - 1 - warm) * ((double)batch / R_WORKERS) / (b - a);
        }
        free(fin);
        return rate;
    }
    long done = 0;
    for (int q = 0; q < R_WORKERS; q++)
        for (long k = 0; k < K[q]; k++) {
            double f = fin[(size_t)q * (n + 1) + (size_t)k];
            done += f > lo && f <= hi;
        }
    free(fin);
    return (double)done * ((double)batch / R_WORKERS) / (hi - lo);
}

/* The run's compute per step (summary.json), its staleness histogram, and the
 * pauses each worker's log reports. */
static int read_run(const char *out, bps_result *r, char *err)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/summary.json", out);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) return seterr(err, "%s: %s", path, je.text);
    json_t *st = json_object_get(j, "stages"), *h = json_object_get(j, "staleness");
    double sum = 0;
    int n = 0;
    char lost[PATH_MAX + 96] = "";
    for (size_t k = 0; k < json_array_size(st); k++) {
        json_t *s = json_array_get(st, k);
        double c = bps_num(s, "compute_s"), steps = bps_num(s, "steps");
        if (steps > 0 && isfinite(c)) { sum += c / steps; n++; }
        else if (!lost[0]) /* a worker process lost at the end: the run's log names it and why */
            snprintf(lost, sizeof lost, " (stage %.0f replica %.0f has no statistics: see %s.log)",
                     bps_num(s, "stage"), bps_num(s, "replica"), out);
    }
    r->wall_s = bps_num(j, "wall_s");
    double cnt = 0, wsum = 0;
    r->stale_max = -1;
    for (size_t d = 0; d < json_array_size(h); d++) {
        double c = json_number_value(json_array_get(h, d));
        if (c > 0) r->stale_max = (int)d;
        cnt += c;
        wsum += c * (double)d;
    }
    r->stale_mean = cnt > 0 ? wsum / cnt : NAN;
    json_decref(j);
    if (n != R_WORKERS)
        return seterr(err, "%s: %d stage rows with compute_s, expected %d%s", path, n, R_WORKERS, lost);
    r->t_ms = 1e3 * sum / n;
    for (int w = 0; w < R_WORKERS; w++) {
        snprintf(path, sizeof path, "%s/stage-0-replica-%d.log", out, w);
        FILE *f = fopen(path, "r");
        char line[512];
        r->pauses[w] = 0;
        r->paused_s[w] = 0;
        while (f && fgets(line, sizeof line, f)) {
            const char *p = strstr(line, "PIPETRAIN_STRAGGLE: ");
            long k;
            double s;
            if (p && sscanf(p, "PIPETRAIN_STRAGGLE: %ld pauses, %lf s paused", &k, &s) == 2) {
                r->pauses[w] = k;
                r->paused_s[w] = s;
            }
        }
        if (f) fclose(f);
    }
    return 0;
}

/* ps_model's samples/s for r with step time t_ms, overhead comm_ms, K steps;
 * the transient ones averaged over 16 pause streams. */
static double predict(const bps_result *r, double t_ms, double comm_ms, long K, int batch)
{
    ps_model m = { .workers = R_WORKERS, .staleness = r->s, .step_s = t_ms * 1e-3, .comm_s = comm_ms * 1e-3,
                   .pause_p = r->pause_p, .pause_factor = r->pause_p > 0 ? 2.0 : 0.0, .steps = K };
    m.slow[1] = r->slow1;
    int seeds = r->pause_p > 0 && r->pause_p < 1 ? 16 : 1;
    double sum = 0;
    for (int i = 0; i < seeds; i++) {
        m.seed = 1000 + (uint64_t)i;
        sum += ps_model_rate(&m, batch);
    }
    return sum / seeds;
}

typedef struct {
    bps *b;
    const bps_shape *m;
    bps_result r[N_RUNS];
    double comm_sync_ms, comm_async_ms, t_base_ms, load0[3], load1[3];
    double round_rate[N_RUNS][MAX_ROUNDS]; /* samples/s of every round */
    bps_result all[N_RUNS][MAX_ROUNDS];    /* every round's run */
    double long_s2_ratio; /* persistent, staleness 2 / 0 over 100000 steps (the model, same t and overhead) */
} bps_tp;

static void print_table(const bps_tp *p)
{
    const bps_shape *m = p->m;
    const bps_opts *o = &p->b->o;
    printf("bench ps: 2 workers x 1 thread (one stage each), 1 parameter server, loopback; model dim %d x %d layers, "
           "seq %d, batch %d (%d per worker); %d steps per worker and run, median of %d rounds%s\n",
           m->dim, m->n_layers, m->seq, m->batch, m->batch / R_WORKERS, o->steps, o->rounds,
           o->quick ? " (--quick)" : "");
    printf("  normal step time t = %.1f ms of compute (baseline, mean of the 2 workers); overhead per step: "
           "synchronous %.1f ms, asynchronous %.1f ms\n", p->t_base_ms, p->comm_sync_ms, p->comm_async_ms);
    printf("  %-11s %5s %11s %7s %11s %7s %8s %7s %7s %17s %14s %10s\n", "scenario", "s", "samples/s", "x sync",
           "predicted", "x sync", "t ms", "=t x", "=t pr", "per round x", "pauses w0/w1", "staleness");
    for (int i = 0; i < N_RUNS; i++) {
        const bps_result *r = &p->r[i];
        char st[32];
        if (r->stale_max >= 0) snprintf(st, sizeof st, "%.2f/%d", r->stale_mean, r->stale_max);
        else snprintf(st, sizeof st, "-");
        char pr[48];
        snprintf(pr, sizeof pr, "%.2f (%.2f-%.2f)", r->pair_med, r->pair_lo, r->pair_hi);
        printf("  %-11s %5ld %11.1f %7.2f %11.1f %7.2f %8.1f %7.2f %7.2f %17s %6ld/%-7ld %10s\n", r->scenario, r->s,
               r->rate, r->ratio, r->pred, r->pred_ratio, r->t_ms, r->eq_ratio, r->eq_pred_ratio, pr, r->pauses[0],
               r->pauses[1], st);
    }
    const bps_result *t2 = &p->r[3], *pa = &p->r[7], *p2 = &p->r[6];
    printf("  (staleness: mean/max over worker-steps; s -1: no bound; t: the run's compute per step, pauses excluded;\n"
           "  =t x, =t pr: x sync measured and predicted at equal compute, as if the run's t were the synchronous\n"
           "  run's (measured x model(t_sync) / model(t_run)): a shared machine's load changes t from run to run;\n"
           "  per round x: the run / the same round's synchronous run, median (min-max) over the rounds)\n");
    printf("  target transient, s = 2 >= 1.20x synchronous: measured %.2fx (%s), %.2fx at equal compute (%s), "
           "per round %.2fx (%.2f-%.2f); predicted %.2fx, %.2fx\n", t2->ratio, t2->ratio >= 1.2 ? "met" : "NOT met",
           t2->eq_ratio, t2->eq_ratio >= 1.2 ? "met" : "NOT met", t2->pair_med, t2->pair_lo, t2->pair_hi,
           t2->pred_ratio, t2->eq_pred_ratio);
    printf("  target persistent, unbounded >= 1.80x synchronous: measured %.2fx (%s), %.2fx at equal compute (%s); "
           "predicted %.2fx, %.2fx\n", pa->ratio, pa->ratio >= 1.8 ? "met" : "NOT met", pa->eq_ratio,
           pa->eq_ratio >= 1.8 ? "met" : "NOT met", pa->pred_ratio, pa->eq_pred_ratio);
    printf("  persistent, s = 2: %.2fx measured, %.2fx predicted for %d steps, %.3fx in the long run (model, 100000\n"
           "  steps, both at the same step time and overhead): a bound of s steps buys the fast worker a head start\n"
           "  of s steps, not a rate\n",
           p2->ratio, p2->pred_ratio, o->steps, p->long_s2_ratio);
    printf("  load average (1, 5, 15 min) before %.2f %.2f %.2f, after %.2f %.2f %.2f\n", p->load0[0], p->load0[1],
           p->load0[2], p->load1[0], p->load1[1], p->load1[2]);
}

static json_t *num3(const double *v) { return json_pack("[f,f,f]", v[0], v[1], v[2]); }

static void print_json(const bps_tp *p)
{
    const bps_shape *m = p->m;
    json_t *runs = json_array();
    for (int i = 0; i < N_RUNS; i++) {
        const bps_result *r = &p->r[i];
        json_t *j = json_pack("{s:s,s:I,s:o,s:f,s:f,s:f,s:f,s:f,s:f,s:[I,I],s:[f,f],s:f}", "scenario", r->scenario,
                              "staleness", (json_int_t)r->s, "straggle", r->straggle ? json_string(r->straggle)
                                                                                     : json_null(),
                              "samples_per_s", r->rate, "ratio_to_sync", r->ratio, "predicted_samples_per_s", r->pred,
                              "predicted_ratio_to_sync", r->pred_ratio, "step_compute_ms", r->t_ms, "comm_ms",
                              r->comm_ms, "pauses", (json_int_t)r->pauses[0], (json_int_t)r->pauses[1], "paused_s",
                              r->paused_s[0], r->paused_s[1], "wall_s", r->wall_s);
        json_object_set_new(j, "ratio_to_sync_equal_compute", json_real(r->eq_ratio));
        json_object_set_new(j, "predicted_ratio_to_sync_equal_compute", json_real(r->eq_pred_ratio));
        json_object_set_new(j, "ratio_to_sync_per_round", json_pack("{s:f,s:f,s:f}", "median", r->pair_med, "min",
                                                                     r->pair_lo, "max", r->pair_hi));
        json_object_set_new(j, "staleness_max", r->stale_max >= 0 ? json_integer(r->stale_max) : json_null());
        json_object_set_new(j, "staleness_mean", isfinite(r->stale_mean) ? json_real(r->stale_mean) : json_null());
        json_t *a = json_array();
        for (int k = 0; k < p->b->o.rounds; k++) json_array_append_new(a, json_real(p->round_rate[i][k]));
        json_object_set_new(j, "rounds_samples_per_s", a);
        json_array_append_new(runs, j);
    }
    const bps_result *t2 = &p->r[3], *pa = &p->r[7], *p2 = &p->r[6];
    json_t *j = json_pack(
        "{s:s,s:b,s:i,s:i,s:i,s:i,s:{s:i,s:i,s:i,s:i},s:i,s:i,s:f,s:f,s:f,s:o,s:o,s:o,"
        "s:{s:f,s:b,s:f,s:f,s:b,s:f,s:f,s:f,s:f,s:f,s:b,s:f,s:b}}",
        "bench", "ps", "quick", p->b->o.quick, "workers", R_WORKERS, "servers", 1, "steps", p->b->o.steps, "rounds",
        p->b->o.rounds, "model",
        "dim", m->dim, "n_layers", m->n_layers, "seq_len", m->seq, "ffn_dim", m->ffn, "batch_size", m->batch,
        "warmup_steps_skipped", m->warm, "normal_step_ms", p->t_base_ms, "comm_sync_ms", p->comm_sync_ms,
        "comm_async_ms", p->comm_async_ms, "loadavg_before", num3(p->load0), "loadavg_after", num3(p->load1), "runs",
        runs, "targets", "transient_s2_ratio", t2->ratio, "transient_s2_met", t2->ratio >= 1.2,
        "transient_s2_predicted", t2->pred_ratio, "persistent_async_ratio", pa->ratio, "persistent_async_met",
        pa->ratio >= 1.8, "persistent_async_predicted", pa->pred_ratio, "persistent_s2_ratio", p2->ratio,
        "persistent_s2_predicted", p2->pred_ratio, "persistent_s2_long_run_predicted", p->long_s2_ratio,
        "transient_s2_ratio_equal_compute", t2->eq_ratio, "transient_s2_met_equal_compute", t2->eq_ratio >= 1.2,
        "persistent_async_ratio_equal_compute", pa->eq_ratio, "persistent_async_met_equal_compute",
        pa->eq_ratio >= 1.8);
    char *s = json_dumps(j, JSON_COMPACT);
    printf("%s\n", s);
    free(s);
    json_decref(j);
}

static int throughput(bps *b)
{
    bps_tp *p = xcalloc(1, sizeof *p);
    p->b = b;
    p->m = b->o.quick ? &quick_shape : &full_shape;
    static const struct { const char *name, *scenario, *straggle; long s; double slow1, p; } runs[N_RUNS] = {
        { "baseline-s0", "baseline", NULL, 0, 0, 0 },       { "baseline-async", "baseline", NULL, -1, 0, 0 },
        { "transient-s0", "transient", "*:0.25:2", 0, 0, 0.25 }, { "transient-s2", "transient", "*:0.25:2", 2, 0, 0.25 },
        { "transient-async", "transient", "*:0.25:2", -1, 0, 0.25 },
        { "persistent-s0", "persistent", "1:1:2", 0, 3, 0 }, { "persistent-s2", "persistent", "1:1:2", 2, 3, 0 },
        { "persistent-async", "persistent", "1:1:2", -1, 3, 0 },
    };
    char err[ERR_LEN], out[PATH_MAX];
    int rc = 0;
    getloadavg(p->load0, 3);
    /* Rounds interleave the configurations, so slow spells of a shared
     * machine hit all of them; each reports its median run. */
    for (int round = 0; round < b->o.rounds && !rc; round++)
        for (int i = 0; i < N_RUNS && !rc; i++) {
            bps_result r = { .name = runs[i].name, .scenario = runs[i].scenario, .straggle = runs[i].straggle,
                             .s = runs[i].s, .slow1 = runs[i].slow1, .pause_p = runs[i].p };
            if (!b->o.json)
                fprintf(stderr, "bench ps: round %d/%d, run %d/%d: %s, %d steps\n", round + 1, b->o.rounds, i + 1,
                        N_RUNS, r.name, b->o.steps);
            json_t *j = make_topo(b, p->m, r.s, err);
            size_t n = 0;
            bps_row *rows = NULL;
            char name[64];
            snprintf(name, sizeof name, "%s-%d", r.name, round);
            snprintf(out, sizeof out, "%s/%s", b->tmp, name);
            rc = !j || bps_run(b, b->tmp, name, j, r.straggle, 120.0 + 2.0 * b->o.steps, err) ||
                 !(rows = bps_read_rows(out, &n, err)) || read_run(out, &r, err) ||
                 isnan(r.rate = measured_rate(rows, n, p->m->batch, p->m->warm, err));
            json_decref(j);
            free(rows);
            if (rc) fprintf(stderr, "pipetrain bench ps: %s: %s\n", name, err);
            if (!rc) p->round_rate[i][round] = r.rate, p->all[i][round] = r;
        }
    getloadavg(p->load1, 3);
    if (!rc) {
        int B = p->m->batch, nr = b->o.rounds;
        for (int i = 0; i < N_RUNS; i++) { /* the median run; the per-round ratios */
            int sy = i < 2 ? 0 : i < 5 ? 2 : 5, rank[MAX_ROUNDS];
            double pr[MAX_ROUNDS];
            for (int k = 0; k < nr; k++) {
                rank[k] = k;
                pr[k] = p->round_rate[i][k] / p->round_rate[sy][k];
            }
            for (int a = 1; a < nr; a++) /* insertion sorts: a handful of rounds */
                for (int c = a; c > 0 && p->round_rate[i][rank[c]] < p->round_rate[i][rank[c - 1]]; c--) {
                    int x = rank[c]; rank[c] = rank[c - 1]; rank[c - 1] = x;
                }
            for (int a = 1; a < nr; a++)
                for (int c = a; c > 0 && pr[c] < pr[c - 1]; c--) {
                    double x = pr[c]; pr[c] = pr[c - 1]; pr[c - 1] = x;
                }
            p->r[i] = p->all[i][rank[(nr - 1) / 2]]; /* even: the lower middle */
            p->r[i].pair_med = nr % 2 ? pr[nr / 2] : 0.5 * (pr[nr / 2 - 1] + pr[nr / 2]);
            p->r[i].pair_lo = pr[0];
            p->r[i].pair_hi = pr[nr - 1];
        }
        p->t_base_ms = 0.5 * (p->r[0].t_ms + p->r[1].t_ms);
        p->comm_sync_ms = fmax(0, 1e3 * B / p->r[0].rate - p->r[0].t_ms);
        p->comm_async_ms = fmax(0, 1e3 * B / p->r[1].rate - p->r[1].t_ms);
        for (int i = 0; i < N_RUNS; i++) {
            bps_result *r = &p->r[i];
            r->comm_ms = r->s == 0 ? p->comm_sync_ms : p->comm_async_ms;
            r->pred = predict(r, r->t_ms, r->comm_ms, b->o.steps, B);
        }
        for (int i = 0; i < N_RUNS; i++) {
            bps_result *r = &p->r[i], *sync = &p->r[i < 2 ? 0 : i < 5 ? 2 : 5];
            r->ratio = r->rate / sync->rate;
            r->pred_ratio = r->pred / sync->pred;
            double at_sync_t = predict(r, sync->t_ms, r->comm_ms, b->o.steps, B);
            r->eq_ratio = r->ratio * (at_sync_t / r->pred);
            r->eq_pred_ratio = at_sync_t / sync->pred;
        }
        /* the bound alone: both at the same step time and overhead */
        bps_result l2 = p->r[6], l0 = p->r[5];
        p->long_s2_ratio = predict(&l2, l2.t_ms, l2.comm_ms, 100000, B) / predict(&l0, l2.t_ms, l2.comm_ms, 100000, B);
        if (b->o.json) print_json(p); else print_table(p);
    }
    free(p);
    return rc;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    remove(path);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: pipetrain bench ps [--json] [--steps N] [--rounds R] [--quick] [--bin PATH] [--keep]\n"
            "       pipetrain bench ps --convergence --out DIR [--steps N] [--topology FILE] [--json]\n"
            "\n"
            "Stragglers (default): 2 workers (one stage, 1 BLAS thread each) and 1 parameter server train\n"
            "a small model in 8 runs: a baseline without stragglers (synchronous and asynchronous), then\n"
            "transient pauses (each step, each worker pauses with probability 0.25 for twice its normal\n"
            "step time) and a persistent straggler (worker 1 3x slower), each at ps.staleness 0, 2 and -1.\n"
            "The pauses are sleeps (PIPETRAIN_STRAGGLE, see README). Prints samples/s, the ratio to\n"
            "synchronous and ps_model's prediction beside each.\n"
            "  --steps N      steps per worker and run (default 60; 8 with --quick)\n"
            "  --rounds R     rounds interleaving the 8 runs; each reports its median run and the\n"
            "                 per-round ratios to synchronous (default 3; 1 with --quick)\n"
            "  --quick        a tiny model and few steps (a functional check, figures not meaningful)\n"
            "Convergence (--convergence): the Shakespeare recipe (--topology, default\n"
            "topologies/shakespeare-ps.json: 2 stages x 2 workers, 2 servers) trained synchronously and\n"
            "with staleness 2 for N steps each (default 400); writes DIR/convergence.svg (both loss curves\n"
            "by samples seen), DIR/convergence.json and the two runs in DIR/sync and DIR/staleness-2.\n"
            "  --data FILE    training data (default the topology's)\n"
            "  --bin PATH     the pipetrain binary to run (default this program)\n"
            "  --keep         keep the temporary run directories and print where they are\n");
}

static int parse(bps_opts *o, int argc, char **argv)
{
    *o = (bps_opts){ .steps = -1, .rounds = -1, .topology = "topologies/shakespeare-ps.json", .bin = "/proc/self/exe" };
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        const char **sv = !strcmp(s, "--topology") ? &o->topology : !strcmp(s, "--data") ? &o->data
                        : !strcmp(s, "--bin") ? &o->bin : !strcmp(s, "--out") ? &o->out : NULL;
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) { usage(stdout); return 1; }
        else if (!strcmp(s, "--json")) o->json = 1;
        else if (!strcmp(s, "--keep")) o->keep = 1;
        else if (!strcmp(s, "--quick")) o->quick = 1;
        else if (!strcmp(s, "--convergence")) o->convergence = 1;
        else if (!strcmp(s, "--steps") || !strcmp(s, "--rounds")) {
            char *end = NULL;
            int st = !strcmp(s, "--steps");
            long n = v ? strtol(v, &end, 10) : 0, lo = st ? 4 : 1, hi = st ? 1000000 : MAX_ROUNDS;
            if (!v || *end || end == v || n < lo || n > hi) {
                fprintf(stderr, "pipetrain bench ps: %s expects a number from %ld to %ld\n", s, lo, hi);
                return 2;
            }
            *(st ? &o->steps : &o->rounds) = (int)n;
            i++;
        } else if (sv) {
            if (!v) { fprintf(stderr, "pipetrain bench ps: %s expects a value\n", s); return 2; }
            *sv = v;
            i++;
        } else {
            fprintf(stderr, "pipetrain bench ps: unknown option '%s'\n", s);
            usage(stderr);
            return 2;
        }
    }
    if (o->convergence && !o->out) {
        fprintf(stderr, "pipetrain bench ps: --convergence needs --out DIR (where the picture goes)\n");
        return 2;
    }
    if (o->out && !o->convergence) {
        fprintf(stderr, "pipetrain bench ps: --out is for --convergence\n");
        return 2;
    }
    if (o->steps < 0) o->steps = o->convergence ? (o->quick ? 8 : 400) : o->quick ? 8 : 60;
    if (o->rounds < 0) o->rounds = o->quick ? 1 : 3;
    return 0;
}

/* Loads the recipe topology (data path; the model for --convergence). 0 or 2. */
static int setup(bps *b)
{
    char err[ERR_LEN];
    bps_opts *o = &b->o;
    if (topo_load(&b->t, o->topology, NULL, 0, err) || (o->data && topo_set_data_path(&b->t, o->data, err))) {
        fprintf(stderr, "pipetrain bench ps: %s\n", err);
        if (access(o->topology, R_OK)) fprintf(stderr, "HINT: run from the repository root or pass --topology FILE\n");
        return 2;
    }
    if (!b->t.data.path || !realpath(b->t.data.path, b->data)) {
        fprintf(stderr, "pipetrain bench ps: %s: data: %s\n", o->topology,
                b->t.data.path ? strerror(errno) : "none given (pass --data FILE)");
        return 2;
    }
    json_error_t je;
    if (!(b->base = json_load_file(o->topology, 0, &je))) {
        fprintf(stderr, "pipetrain bench ps: %s: %s\n", o->topology, je.text);
        return 2;
    }
    return 0;
}

/* Copies the executable src to dst (0755), so every run uses the same program
 * even if the checkout is rebuilt meanwhile. 0 or -1 with err. */
static int copy_exe(const char *src, const char *dst, char *err)
{
    FILE *in = fopen(src, "rb"), *out = in ? fopen(dst, "wb") : NULL;
    char buf[1 << 16];
    size_t n;
    int rc = 0;
    if (!in || !out) rc = seterr(err, "%s: %s", in ? dst : src, strerror(errno));
    while (!rc && (n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) rc = seterr(err, "%s: %s", dst, strerror(errno));
    if (!rc && ferror(in)) rc = seterr(err, "%s: read error", src);
    if (in) fclose(in);
    if (out && fclose(out) && !rc) rc = seterr(err, "%s: %s", dst, strerror(errno));
    if (!rc && chmod(dst, 0755)) rc = seterr(err, "%s: %s", dst, strerror(errno));
    return rc;
}

int bench_ps_main(int argc, char **argv)
{
    bps *b = xcalloc(1, sizeof *b);
    char err[ERR_LEN];
    int rc = parse(&b->o, argc, argv);
    if (rc) { free(b); return rc == 1 ? 0 : rc; }
    if ((rc = setup(b))) goto done;
    snprintf(b->tmp, sizeof b->tmp, "/tmp/pt-bench-ps.XXXXXX");
    if (!mkdtemp(b->tmp)) {
        fprintf(stderr, "pipetrain bench ps: mkdtemp: %s\n", strerror(errno));
        rc = 1;
        goto done;
    }
    snprintf(b->bin, sizeof b->bin, "%s/pipetrain", b->tmp);
    if (copy_exe(b->o.bin, b->bin, err)) {
        fprintf(stderr, "pipetrain bench ps: %s\n", err);
        rc = 2;
    } else {
        rc = b->o.convergence ? bps_convergence(b) : throughput(b);
    }
    if (b->o.keep) fprintf(stderr, "bench ps: run directories kept in %s\n", b->tmp);
    else nftw(b->tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
done:
    json_decref(b->base);
    topo_free(&b->t);
    free(b);
    return rc;
}
