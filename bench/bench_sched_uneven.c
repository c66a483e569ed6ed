/* bench_sched_uneven.c — `pipetrain bench schedule --uneven`: does balancing
 * matter, measured? The 2-stage Shakespeare topology with a large vocabulary
 * (model.vocab_size, default 8192: the head's F+B+W then costs about four blocks'
 * in CPU time, so the even split by layer count puts 2 blocks + head against 2
 * blocks; at 2048 the head is about one block and no split gains) is
 *   1. trained once on the file's even split by layer count (embed,0-1 | 2-3,head)
 *      as the calibration run (its costs.json: per-stage and per-layer times);
 *   2. balanced by `pipetrain balance --calibrate` on that run: the split is
 *      chosen before the runs that measure it (balanced.json; that run's
 *      predictions of both splits are the "1-run" column);
 *   3. trained R times on each split, alternately (even, balanced, balanced, even,
 *      ...: a drift of the machine's load hits both alike), same steps, same
 *      micro-batches, 1 BLAS thread per stage, trace on;
 *   4. predicted from the R even runs of the series (issue 13: one run is a poor
 *      sample on a shared machine): `pipetrain balance` with each of them as a
 *      --calibrate (the median of their costs) of the even topology and of
 *      balanced.json gives the two splits' predicted step times, and the split
 *      those medians would choose;
 * and prints per split the median measured step time (summary.json
 * timing.measured_step_ms: the median compute span of the steps after the first,
 * what the simulator predicts), its spread, the median-cost prediction and their
 * difference, the 1-run prediction and its, the run's own-cost prediction, then
 * the measured and predicted gains, with the load average before and after (the
 * machine is shared). Every child is a `pipetrain run` or `pipetrain balance` of
 * this binary; runs and plans stay in the printed directory. */
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

/* What one `pipetrain balance` said: its plan's layers and predicted step time,
 * the topology's own split's prediction, and its costs line. */
typedef struct {
    char layers[2][64];
    double best, topo_split;
    char note[1100];
} balance_out;

/* `pipetrain balance topo --calibrate calib[0] ... --calibrate calib[n-1] --out
 * out/name.json` (log out/name.txt), parsed into *b. 0 or -1. */
static int balance(const char *exe, common *c, const char *out, const char *name, const char *topo,
                   char **calib, int n, balance_out *b)
{
    char log[4300], nw[4300];
    snprintf(log, sizeof log, "%s/%s.txt", out, name);
    snprintf(nw, sizeof nw, "%s/%s.json", out, name);
    char *argv[2 * MAXREP + 32] = { (char *)exe, "balance", (char *)topo, "--stages", "2", "--out", nw };
    int k = 7;
    for (int i = 0; i < n; i++) {
        argv[k++] = "--calibrate";
        argv[k++] = calib[i];
    }
    k = add_common(c, argv, k);
    argv[k] = NULL;
    if (bench_sched_spawn_wait(exe, argv, log)) return -1;
    FILE *f = fopen(log, "r");
    char line[2048];
    b->best = b->topo_split = NAN;
    while (f && fgets(line, sizeof line, f)) {
        double x;
        if (sscanf(line, "predicted step time: %lf ms", &x) == 1) b->best = x;
        else if (sscanf(line, "the topology's split: predicted step time %lf ms", &x) == 1) b->topo_split = x;
        else if (!strncmp(line, "costs: ", 7)) {
            snprintf(b->note, sizeof b->note, "%.1000s", line + 7);
            b->note[strcspn(b->note, "\n")] = 0;
        }
    }
    if (f) fclose(f);
    json_t *root = json_load_file(nw, 0, NULL), *st = json_object_get(root, "stages");
    int ok = json_array_size(st) == 2 && isfinite(b->best) && isfinite(b->topo_split);
    for (int j = 0; ok && j < 2; j++) {
        const char *l = json_string_value(json_object_get(json_array_get(st, (size_t)j), "layers"));
        if (!l) ok = 0;
        else snprintf(b->layers[j], 64, "%s", l);
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

/* The series' figures: per split (0 even, 1 balanced) the runs' measured and
 * own-cost step times, and the predictions: pred1 from the calibration run (what
 * chose the balanced split), pred from the median costs of the series' even runs. */
typedef struct {
    int reps;
    char split[2][2][64];
    double meas[2][MAXREP], own[2][MAXREP], med[2], omed[2], pred1[2], pred[2], cm;
    balance_out choice, even_med, bal_med;
    char l0[64], l1[64], out[64];
} series;

/* The predictions from the median costs of the R even runs: `balance` of the
 * file's (even) split gives the even split's and the split the medians would
 * choose; `balance` of the balanced topology (balanced.json, the runs' split
 * placing their costs) gives the balanced split's. 0 or -1. */
static int predict_median(const char *exe, common *c, series *x)
{
    char dirs[MAXREP][4200], *calib[MAXREP], bal[4300];
    for (int r = 0; r < x->reps; r++) {
        snprintf(dirs[r], sizeof dirs[r], "%s/even-%d", x->out, r + 1);
        calib[r] = dirs[r];
    }
    snprintf(bal, sizeof bal, "%s/balanced.json", x->out);
    if (balance(exe, c, x->out, "balance-median-even", TOPO, calib, x->reps, &x->even_med) ||
        balance(exe, c, x->out, "balance-median-balanced", bal, calib, x->reps, &x->bal_med)) {
        fprintf(stderr, "pipetrain bench schedule --uneven: pipetrain balance on the even runs failed: see "
                "%s/balance-median-*.txt\n", x->out);
        return -1;
    }
    x->pred[0] = x->even_med.topo_split;
    x->pred[1] = x->bal_med.topo_split;
    return 0;
}

static void print_json(const common *c, const series *x)
{
    const char *name[2] = { "even", "balanced" };
    printf("{\"bench\":\"schedule_uneven\",\"vocab_size\":%d,\"steps\":%d,\"micro_batches\":%d,\"repeat\":%d,"
           "\"load_before\":\"%s\",\"load_after\":\"%s\",\"runs\":\"%s\",\"calibration_step_ms\":%.3f,"
           "\"prediction_runs\":%d,\"median_choice\":[\"%s\",\"%s\"],\"splits\":[", c->vocab, c->steps, c->M, x->reps,
           x->l0, x->l1, x->out, x->cm, x->reps, x->even_med.layers[0], x->even_med.layers[1]);
    for (int k = 0; k < 2; k++) {
        printf("%s{\"split\":\"%s\",\"layers\":[\"%s\",\"%s\"],\"measured_ms\":[", k ? "," : "", name[k],
               x->split[k][0], x->split[k][1]);
        for (int r = 0; r < x->reps; r++) printf("%s%.3f", r ? "," : "", x->meas[k][r]);
        printf("],\"measured_median_ms\":%.3f,\"predicted_ms\":%.3f,\"error\":%.4f,\"predicted_1run_ms\":%.3f,"
               "\"error_1run\":%.4f,\"own_prediction_median_ms\":%.3f}", x->med[k], x->pred[k],
               (x->pred[k] - x->med[k]) / x->med[k], x->pred1[k], (x->pred1[k] - x->med[k]) / x->med[k], x->omed[k]);
    }
    printf("],\"measured_gain\":%.4f,\"predicted_gain\":%.4f,\"predicted_gain_1run\":%.4f}\n", 1 - x->med[1] / x->med[0],
           1 - x->pred[1] / x->pred[0], 1 - x->pred1[1] / x->pred1[0]);
}

static void print_text(const common *c, const series *x)
{
    const char *name[2] = { "even", "balanced" };
    int same = !strcmp(x->even_med.layers[0], x->split[1][0]) && !strcmp(x->even_med.layers[1], x->split[1][1]);
    printf("bench schedule --uneven: %s with model.vocab_size=%d, 2 stages, 1 BLAS thread each, M = %d, %d steps "
           "per run,\n%d runs of each split alternately; step = summary.json timing.measured_step_ms (median compute "
           "span of the steps after the first)\nchoice: the balanced split is chosen before its runs by pipetrain "
           "balance --calibrate on one calibration run of the even split (%.3f ms measured there); its predictions "
           "are the 1-run column\nprediction: pipetrain balance with --calibrate each of the %d even runs of the "
           "series (the median of their costs), of the even and of the balanced topology; these medians would "
           "choose %s | %s%s\n", TOPO, c->vocab, c->M, c->steps, x->reps, x->cm, x->reps, x->even_med.layers[0],
           x->even_med.layers[1], same ? " (the same split)" : " (another split than the calibration run's)");
    printf("%-9s %-22s %12s %20s %12s %8s %12s %8s %12s\n", "split", "layers", "measured", "(min..max)", "predicted",
           "error", "1-run pred", "error", "own-costs");
    for (int k = 0; k < 2; k++) {
        char lay[160], mm[48];
        snprintf(lay, sizeof lay, "%.63s | %.63s", x->split[k][0], x->split[k][1]);
        snprintf(mm, sizeof mm, "(%.1f..%.1f)", vmin(x->meas[k], x->reps), vmax(x->meas[k], x->reps));
        double e = (x->pred[k] - x->med[k]) / x->med[k], e1 = (x->pred1[k] - x->med[k]) / x->med[k];
        printf("%-9s %-22s %9.1f ms %20s %9.1f ms %+7.1f%% %9.1f ms %+7.1f%% %9.1f ms%s\n", name[k], lay, x->med[k],
               mm, x->pred[k], 100 * e, x->pred1[k], 100 * e1, x->omed[k], fabs(e) > 0.1 ? "  (outside +-10%)" : "");
    }
    printf("balanced vs even: measured %.1f%% faster (target >= 15%%), predicted %.1f%% faster (1-run: %.1f%%)\n",
           100 * (1 - x->med[1] / x->med[0]), 100 * (1 - x->pred[1] / x->pred[0]),
           100 * (1 - x->pred1[1] / x->pred1[0]));
    printf("costs (median): %s\n", x->bal_med.note);
    printf("load average before: %s, after: %s (2 stages want 2 free cores); runs in %s\n", x->l0, x->l1, x->out);
}

int bench_sched_uneven(int steps, int M, int reps, int vocab, int json)
{
    char exe[4096], dir[4200];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) { perror("pipetrain bench schedule: /proc/self/exe"); return 1; }
    exe[n] = 0;
    if (access(TOPO, R_OK)) {
        fprintf(stderr, "pipetrain bench schedule --uneven: run it from the source tree (needs %s)\n", TOPO);
        return 2;
    }
    if (reps > MAXREP || reps < 1) {
        fprintf(stderr, "pipetrain bench schedule --uneven: --repeat %d: 1 to %d\n", reps, MAXREP);
        return 2;
    }
    series x;
    memset(&x, 0, sizeof x);
    x.reps = reps;
    snprintf(x.out, sizeof x.out, "/tmp/pipetrain-bench-uneven.XXXXXX");
    if (!mkdtemp(x.out)) { perror("pipetrain bench schedule: mkdtemp"); return 1; }
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    common c = { steps, M, vocab, { { 0 } } };
    snprintf(x.split[0][0], 64, "embed,0-1");
    snprintf(x.split[0][1], 64, "2-3,head");
    int port = 31000 + (int)(getpid() % 200) * 40;
    bench_sched_loadavg(x.l0, sizeof x.l0);
    snprintf(dir, sizeof dir, "%s/calibration", x.out);
    double co;
    if (measure(exe, &c, x.split[0], port, dir, &x.cm, &co)) {
        fprintf(stderr, "pipetrain bench schedule --uneven: the calibration run failed: see %s.log\n", dir);
        return 1;
    }
    char *calib[1] = { dir };
    if (balance(exe, &c, x.out, "balanced", TOPO, calib, 1, &x.choice)) {
        fprintf(stderr, "pipetrain bench schedule --uneven: pipetrain balance failed: see %s/balanced.txt\n", x.out);
        return 1;
    }
    memcpy(x.split[1], x.choice.layers, sizeof x.split[1]);
    x.pred1[0] = x.choice.topo_split;
    x.pred1[1] = x.choice.best;
    for (int r = 0; r < reps; r++)
        for (int i = 0; i < 2; i++) {
            int which = (r % 2) ? 1 - i : i; /* even, balanced, balanced, even, ... */
            snprintf(dir, sizeof dir, "%s/%s-%d", x.out, which ? "balanced" : "even", r + 1);
            if (measure(exe, &c, x.split[which], port + 2 + 2 * (2 * r + i), dir, &x.meas[which][r],
                        &x.own[which][r])) {
                fprintf(stderr, "pipetrain bench schedule --uneven: a run failed: see %s.log\n", dir);
                return 1;
            }
        }
    bench_sched_loadavg(x.l1, sizeof x.l1);
    if (predict_median(exe, &c, &x)) return 1;
    for (int k = 0; k < 2; k++) {
        x.med[k] = median(x.meas[k], reps);
        x.omed[k] = median(x.own[k], reps);
    }
    if (json) print_json(&c, &x);
    else print_text(&c, &x);
    return 0;
}
