/* bench_sched_uneven.c — `pipetrain bench schedule --uneven`: does balancing
 * matter, measured? The 2-stage Shakespeare topology with a large vocabulary
 * (model.vocab_size, default 8192: the head's F+B+W then costs about four blocks'
 * in CPU time, so the even split by layer count puts 2 blocks + head against 2
 * blocks; at 2048 the head is about one block and no split gains) is
 *   1. trained once on the file's even split by layer count (embed,0-1 | 2-3,head)
 *      as the calibration run (its costs.json: per-stage and per-layer times);
 *   2. balanced by `pipetrain balance --calibrate` on that run (the balancer's own
 *      cost model and simulator give the predicted step time of both splits);
 *   3. trained R times on each split, alternately (even, balanced, balanced, even,
 *      ...: a drift of the machine's load hits both alike), same steps, same
 *      micro-batches, 1 BLAS thread per stage, trace on;
 * and prints per split the median measured step time (summary.json
 * timing.measured_step_ms: the median compute span of the steps after the first,
 * what the simulator predicts), its spread, balance's prediction and their
 * difference, the run's own-cost prediction, then the measured and predicted
 * gains, with the load average before and after (the machine is shared). Every
 * child is a `pipetrain run` of this binary; runs stay in the printed directory.
 * Helpers (spawn, load average) are copied from bench_sched_measured.c, whose
 * are file-local. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench_sched.h"

#define TOPO "topologies/shakespeare-2stage.json"
#define MAXREP 32

typedef struct {
    int steps, M, vocab;
    char sets[8][96];
} common;

/* The settings every child shares (the uneven model, the batch): "--set" pairs
 * into argv from n; returns the new n. */
static int add_common(common *c, char **argv, int n)
{
    snprintf(c->sets[0], 96, "model.vocab_size=%d", c->vocab);
    snprintf(c->sets[1], 96, "train.micro_batches=%d", c->M);
    for (int i = 0; i < 2; i++) {
        argv[n++] = "--set";
        argv[n++] = c->sets[i];
    }
    return n;
}

/* `pipetrain run` of split layers[2] into dir; 0 when it exits 0. */
static int run_split(const char *exe, common *c, char layers[2][64], int port, const char *dir)
{
    char s_steps[32], log[4300], l0[96], l1[96], p0[64], p1[64];
    snprintf(s_steps, sizeof s_steps, "%d", c->steps);
    snprintf(log, sizeof log, "%s.log", dir);
    snprintf(l0, sizeof l0, "stages.0.layers=%s", layers[0]);
    snprintf(l1, sizeof l1, "stages.1.layers=%s", layers[1]);
    snprintf(p0, sizeof p0, "stages.0.port=%d", port);
    snprintf(p1, sizeof p1, "stages.1.port=%d", port + 1);
    char *argv[48] = { (char *)exe, "run", TOPO, "--steps", s_steps, "--set", "train.eval_every=0", "--set",
                       "checkpoint.every=0", "--set", "train.log_every=1000000", "--set", "coordinator.port=0",
                       "--set", l0, "--set", l1, "--set", p0, "--set", p1, "--out", (char *)dir };
    int n = add_common(c, argv, 23);
    argv[n] = NULL;
    return bench_sched_spawn_wait(exe, argv, log);
}

/* A run with retries on other ports (a port another job holds fails it at
 * once); *measured and *own from its summary.json "timing". 0 or -1. */
static int measure(const char *exe, common *c, char layers[2][64], int port, const char *dir, double *measured,
                   double *own)
{
    for (int a = 0; a < 3; a++) {
        if (!run_split(exe, c, layers, port + 500 * a, dir)) {
            char path[4300];
            snprintf(path, sizeof path, "%s/summary.json", dir);
            json_t *root = json_load_file(path, 0, NULL), *t = json_object_get(root, "timing");
            int ok = json_is_object(t);
            if (ok) {
                *measured = json_number_value(json_object_get(t, "measured_step_ms"));
                *own = json_number_value(json_object_get(t, "predicted_step_ms"));
            }
            json_decref(root);
            if (ok) return 0;
        }
        char failed[4300];
        snprintf(failed, sizeof failed, "%s.failed-%d", dir, a);
        rename(dir, failed);
    }
    return -1;
}

/* `pipetrain balance --calibrate calib`: the balanced layers and balance's
 * predicted step times of both splits (parsed from its plan). 0 or -1. */
static int balance(const char *exe, common *c, const char *out, const char *calib, char layers[2][64],
                   double *pred_bal, double *pred_even, char *costs_note, size_t note_n)
{
    char log[4300], nw[4300];
    snprintf(log, sizeof log, "%s/balance.txt", out);
    snprintf(nw, sizeof nw, "%s/balanced.json", out);
    char *argv[32] = { (char *)exe, "balance", TOPO, "--stages", "2", "--calibrate", (char *)calib, "--out", nw };
    int n = add_common(c, argv, 9);
    argv[n] = NULL;
    if (bench_sched_spawn_wait(exe, argv, log)) return -1;
    FILE *f = fopen(log, "r");
    char line[2048];
    *pred_bal = *pred_even = NAN;
    while (f && fgets(line, sizeof line, f)) {
        double x;
        if (sscanf(line, "predicted step time: %lf ms", &x) == 1) *pred_bal = x;
        else if (sscanf(line, "the topology's split: predicted step time %lf ms", &x) == 1) *pred_even = x;
        else if (!strncmp(line, "costs: ", 7)) {
            snprintf(costs_note, note_n, "%.1000s", line + 7);
            costs_note[strcspn(costs_note, "\n")] = 0;
        }
    }
    if (f) fclose(f);
    json_t *root = json_load_file(nw, 0, NULL), *st = json_object_get(root, "stages");
    int ok = json_array_size(st) == 2 && isfinite(*pred_bal) && isfinite(*pred_even);
    for (int k = 0; ok && k < 2; k++) {
        const char *l = json_string_value(json_object_get(json_array_get(st, (size_t)k), "layers"));
        if (!l) ok = 0;
        else snprintf(layers[k], 64, "%s", l);
    }
    json_decref(root);
    return ok ? 0 : -1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
    double s[MAXREP];
    memcpy(s, v, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

static double vmin(const double *v, int n) { double m = v[0]; for (int i = 1; i < n; i++) m = fmin(m, v[i]); return m; }
static double vmax(const double *v, int n) { double m = v[0]; for (int i = 1; i < n; i++) m = fmax(m, v[i]); return m; }

int bench_sched_uneven(int steps, int M, int reps, int vocab, int json)
{
    char exe[4096], out[] = "/tmp/pipetrain-bench-uneven.XXXXXX", l0[64], l1[64], dir[4200], note[1100] = "";
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) { perror("pipetrain bench schedule: /proc/self/exe"); return 1; }
    exe[n] = 0;
    if (access(TOPO, R_OK)) {
        fprintf(stderr, "pipetrain bench schedule --uneven: run it from the source tree (needs %s)\n", TOPO);
        return 2;
    }
    if (reps > MAXREP) {
        fprintf(stderr, "pipetrain bench schedule --uneven: --repeat %d: at most %d\n", reps, MAXREP);
        return 2;
    }
    if (!mkdtemp(out)) { perror("pipetrain bench schedule: mkdtemp"); return 1; }
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    common c = { steps, M, vocab, { { 0 } } };
    char split[2][2][64] = { { "embed,0-1", "2-3,head" }, { "", "" } };
    double pred[2], meas[2][MAXREP], own[2][MAXREP];
    int port = 31000 + (int)(getpid() % 200) * 40;
    bench_sched_loadavg(l0, sizeof l0);
    snprintf(dir, sizeof dir, "%s/calibration", out);
    double cm, co;
    if (measure(exe, &c, split[0], port, dir, &cm, &co)) {
        fprintf(stderr, "pipetrain bench schedule --uneven: the calibration run failed: see %s.log\n", dir);
        return 1;
    }
    if (balance(exe, &c, out, dir, split[1], &pred[1], &pred[0], note, sizeof note)) {
        fprintf(stderr, "pipetrain bench schedule --uneven: pipetrain balance failed: see %s/balance.txt\n", out);
        return 1;
    }
    for (int r = 0; r < reps; r++)
        for (int i = 0; i < 2; i++) {
            int which = (r % 2) ? 1 - i : i; /* even, balanced, balanced, even, ... */
            snprintf(dir, sizeof dir, "%s/%s-%d", out, which ? "balanced" : "even", r + 1);
            if (measure(exe, &c, split[which], port + 2 + 2 * (2 * r + i), dir, &meas[which][r], &own[which][r])) {
                fprintf(stderr, "pipetrain bench schedule --uneven: a run failed: see %s.log\n", dir);
                return 1;
            }
        }
    bench_sched_loadavg(l1, sizeof l1);
    double med[2], omed[2];
    for (int k = 0; k < 2; k++) {
        med[k] = median(meas[k], reps);
        omed[k] = median(own[k], reps);
    }
    double gain = 1 - med[1] / med[0], pgain = 1 - pred[1] / pred[0];
    const char *name[2] = { "even", "balanced" };
    if (json) {
        printf("{\"bench\":\"schedule_uneven\",\"vocab_size\":%d,\"steps\":%d,\"micro_batches\":%d,\"repeat\":%d,"
               "\"load_before\":\"%s\",\"load_after\":\"%s\",\"runs\":\"%s\",\"calibration_step_ms\":%.3f,"
               "\"splits\":[", vocab, steps, M, reps, l0, l1, out, cm);
        for (int k = 0; k < 2; k++) {
            printf("%s{\"split\":\"%s\",\"layers\":[\"%s\",\"%s\"],\"measured_ms\":[", k ? "," : "", name[k],
                   split[k][0], split[k][1]);
            for (int r = 0; r < reps; r++) printf("%s%.3f", r ? "," : "", meas[k][r]);
            printf("],\"measured_median_ms\":%.3f,\"predicted_ms\":%.3f,\"error\":%.4f,\"own_prediction_median_ms\":"
                   "%.3f}", med[k], pred[k], (pred[k] - med[k]) / med[k], omed[k]);
        }
        printf("],\"measured_gain\":%.4f,\"predicted_gain\":%.4f}\n", gain, pgain);
        return 0;
    }
    printf("bench schedule --uneven: %s with model.vocab_size=%d, 2 stages, 1 BLAS thread each, M = %d, %d steps "
           "per run,\n%d runs of each split alternately; step = summary.json timing.measured_step_ms (median compute "
           "span of the steps after the first)\nprediction: pipetrain balance --calibrate on the even run (%.3f ms "
           "measured there); costs %s\n", TOPO, vocab, M, steps, reps, cm, note);
    printf("%-9s %-22s %12s %20s %12s %8s %12s\n", "split", "layers", "measured", "(min..max)", "predicted",
           "error", "own-costs");
    for (int k = 0; k < 2; k++) {
        char lay[160], mm[48];
        snprintf(lay, sizeof lay, "%.63s | %.63s", split[k][0], split[k][1]);
        snprintf(mm, sizeof mm, "(%.1f..%.1f)", vmin(meas[k], reps), vmax(meas[k], reps));
        double e = (pred[k] - med[k]) / med[k];
        printf("%-9s %-22s %9.1f ms %20s %9.1f ms %+7.1f%% %9.1f ms%s\n", name[k], lay, med[k], mm, pred[k], 100 * e,
               omed[k], fabs(e) > 0.1 ? "  (outside +-10%)" : "");
    }
    printf("balanced vs even: measured %.1f%% faster (target >= 15%%), predicted %.1f%% faster\n", 100 * gain,
           100 * pgain);
    printf("load average before: %s, after: %s (2 stages want 2 free cores); runs in %s\n", l0, l1, out);
    return 0;
}
