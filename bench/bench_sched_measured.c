/* bench_sched_measured.c — `pipetrain bench schedule --measured`: trains the
 * Shakespeare model (1 BLAS thread per stage) for a few steps on 2 stages (4
 * blocks, M micro-batches) and on 4 stages (8 blocks, 2M micro-batches) under
 * gpipe, 1f1b, zb-h1, interleaved (2 chunks per stage, loop placement) and zb-v
 * (2 chunks per stage placed in a V), each as a child `pipetrain run` with the
 * trace on, and prints from each run's summary.json "timing" the measured step
 * time (median compute span of the steps after the first), the prediction
 * calibrated with the run's own costs, their difference, the measured and
 * predicted bubbles, and each stage's peak activation bytes measured (summary.json)
 * against predicted (`pipetrain schedule --format json` on the same layout), with
 * the machine's load average before and after (the machine is shared: the numbers
 * are only as quiet as it is). Runs stay in the printed directory. */
#include <fcntl.h>
#include <jansson.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench_sched.h"

extern char **environ;

#define MAXP 4

typedef struct {
    const char *kind;
    int P, ok;
    double measured, predicted, bubble, pbubble, bubble_stage[MAXP];
    double peak[MAXP], ppeak[MAXP]; /* measured and predicted peak activation bytes per stage */
} mrow;

/* One layout: the topology, its model and batch, and each kind's layers. */
typedef struct {
    const char *topo;
    int P, n_layers, batch, mmul;   /* micro-batches = mmul * M */
    const char *plain[MAXP], *loop2[MAXP], *v2[MAXP]; /* layers: 1 chunk, interleaved, zb-v */
} layout;

static const layout layouts[] = {
    { "topologies/shakespeare-2stage.json", 2, 4, 12, 1, { "embed,0-1", "2-3,head" },
      { "embed,0,2", "1,3,head" }, { "embed,0,3,head", "1|2" } },
    { "topologies/shakespeare-4stage.json", 4, 8, 16, 2, { "embed,0-1", "2-3", "4-5", "6-7,head" },
      { "embed,0,4", "1,5", "2,6", "3,7,head" }, { "embed,0,7,head", "1,6", "2,5", "3|4" } },
};

void bench_sched_loadavg(char *buf, size_t n)
{
    FILE *f = fopen("/proc/loadavg", "r");
    double a = 0, b = 0, c = 0;
    if (!f || fscanf(f, "%lf %lf %lf", &a, &b, &c) != 3) snprintf(buf, n, "?");
    else snprintf(buf, n, "%.2f %.2f %.2f", a, b, c);
    if (f) fclose(f);
}

int bench_sched_spawn_wait(const char *exe, char **argv, const char *log)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    int rc = posix_spawn(&pid, exe, &fa, NULL, argv, environ), st = 0;
    posix_spawn_file_actions_destroy(&fa);
    if (rc) return -1;
    while (waitpid(pid, &st, 0) < 0) {}
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* The topology settings of kind on layout L with M micro-batches: "--set" pairs
 * into argv from n (sets[] holds their text); returns the new n. */
static int layout_sets(const layout *L, const char *kind, int M, char sets[][96], char **argv, int n)
{
    int k = 0;
    const char *const *layers = !strcmp(kind, "interleaved") ? L->loop2 : !strcmp(kind, "zb-v") ? L->v2 : L->plain;
    snprintf(sets[k++], 96, "model.n_layers=%d", L->n_layers);
    snprintf(sets[k++], 96, "train.batch_size=%d", L->batch);
    snprintf(sets[k++], 96, "train.micro_batches=%d", M * L->mmul);
    snprintf(sets[k++], 96, "schedule.kind=%s", kind);
    for (int st = 0; st < L->P; st++) snprintf(sets[k++], 96, "stages.%d.layers=%s", st, layers[st]);
    for (int i = 0; i < k; i++) {
        argv[n++] = "--set";
        argv[n++] = sets[i];
    }
    return n;
}

/* Runs `pipetrain run` for one kind into dir (log in dir.log); 0 when it exits 0. */
static int run_one(const char *exe, const layout *L, const char *kind, int steps, int M, int port, const char *dir)
{
    char s_steps[32], sets[8 + MAXP][96], ports[MAXP][64], log[4300];
    snprintf(s_steps, sizeof s_steps, "%d", steps);
    snprintf(log, sizeof log, "%s.log", dir);
    char *argv[64] = { (char *)exe, "run", (char *)L->topo, "--steps", s_steps, "--set", "train.eval_every=0", "--set",
                       "checkpoint.every=0", "--set", "train.log_every=1000000", "--set", "coordinator.port=0",
                       "--out", (char *)dir };
    int n = layout_sets(L, kind, M, sets, argv, 15);
    for (int st = 0; st < L->P; st++) {
        snprintf(ports[st], sizeof ports[st], "stages.%d.port=%d", st, port + st);
        argv[n++] = "--set";
        argv[n++] = ports[st];
    }
    argv[n] = NULL;
    return bench_sched_spawn_wait(exe, argv, log);
}

/* The predicted peak activation bytes of each stage: `pipetrain schedule` on the
 * same layout, JSON form, into dir.predicted.json. */
static void predict_peaks(const char *exe, const layout *L, const char *kind, int M, const char *dir, mrow *w)
{
    char sets[8 + MAXP][96], out[4300], log[4300];
    snprintf(out, sizeof out, "%s.predicted.json", dir);
    snprintf(log, sizeof log, "%s.predicted.log", dir);
    char *argv[48] = { (char *)exe, "schedule", (char *)L->topo, "--gflops", "1", "--format", "json", "--out", out };
    int n = layout_sets(L, kind, M, sets, argv, 9);
    argv[n] = NULL;
    if (bench_sched_spawn_wait(exe, argv, log)) return;
    json_t *root = json_load_file(out, 0, NULL);
    json_t *st = json_object_get(json_object_get(root, "simulation"), "stages");
    for (int k = 0; k < L->P; k++)
        w->ppeak[k] = json_number_value(json_object_get(json_array_get(st, (size_t)k), "peak_activation_bytes"));
    json_decref(root);
}

static double num(json_t *o, const char *k) { return json_number_value(json_object_get(o, k)); }

static void read_timing(mrow *w, const char *dir)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/summary.json", dir);
    json_t *root = json_load_file(path, 0, NULL), *t = json_object_get(root, "timing");
    if (json_is_object(t)) {
        w->ok = 1;
        w->measured = num(t, "measured_step_ms");
        w->predicted = num(t, "predicted_step_ms");
        w->bubble = num(t, "measured_bubble");
        w->pbubble = num(t, "predicted_bubble");
        json_t *bs = json_object_get(t, "measured_bubble_stage");
        for (int k = 0; k < w->P; k++) w->bubble_stage[k] = json_number_value(json_array_get(bs, (size_t)k));
    }
    json_t *st = json_object_get(root, "stages");
    for (int k = 0; k < w->P; k++)
        w->peak[k] = num(json_array_get(st, (size_t)k), "peak_act_bytes");
    json_decref(root);
}

static void print_rows(const mrow *r, int n, int steps, int M, const char *out, const char *l0, const char *l1,
                       int json)
{
    if (json) {
        printf("{\"bench\":\"schedule_measured\",\"steps\":%d,\"micro_batches\":%d,\"load_before\":\"%s\","
               "\"load_after\":\"%s\",\"runs\":\"%s\",\"kinds\":[", steps, M, l0, l1, out);
        for (int i = 0; i < n; i++) {
            printf("%s{\"stages\":%d,\"kind\":\"%s\",\"ok\":%s,\"measured_step_ms\":%.3f,\"predicted_step_ms\":%.3f,"
                   "\"error\":%.4f,\"measured_bubble\":%.4f,\"predicted_bubble\":%.4f,\"peak_act_bytes\":[",
                   i ? "," : "", r[i].P, r[i].kind, r[i].ok ? "true" : "false", r[i].measured, r[i].predicted,
                   r[i].measured > 0 ? (r[i].predicted - r[i].measured) / r[i].measured : 0, r[i].bubble,
                   r[i].pbubble);
            for (int k = 0; k < r[i].P; k++) printf("%s%.0f", k ? "," : "", r[i].peak[k]);
            printf("],\"predicted_peak_act_bytes\":[");
            for (int k = 0; k < r[i].P; k++) printf("%s%.0f", k ? "," : "", r[i].ppeak[k]);
            printf("]}");
        }
        printf("]}\n");
        return;
    }
    printf("bench schedule --measured: 1 BLAS thread per stage, %d steps; 2 stages: 4 blocks, M = %d; "
           "4 stages: 8 blocks, M = %d\n%-3s %-12s %10s %10s %7s %8s %9s  %-24s %s\n", steps, M, 2 * M, "P",
           "schedule", "measured", "predicted", "error", "bubble", "predicted", "bubble per stage",
           "peak activation MiB per stage, measured/predicted");
    for (int i = 0; i < n; i++) {
        if (!r[i].ok) { printf("%-3d %-12s run failed: see %s/%dstage-%s.log\n", r[i].P, r[i].kind, out, r[i].P, r[i].kind); continue; }
        char bs[64] = "", pk[160] = "";
        for (int k = 0, o = 0, q = 0; k < r[i].P; k++) {
            o += snprintf(bs + o, sizeof bs - (size_t)o, "%s%.1f%%", k ? " " : "", 100 * r[i].bubble_stage[k]);
            q += snprintf(pk + q, sizeof pk - (size_t)q, "%s%.2f/%.2f", k ? " " : "", r[i].peak[k] / 1048576.0,
                          r[i].ppeak[k] / 1048576.0);
        }
        double e = (r[i].predicted - r[i].measured) / r[i].measured;
        printf("%-3d %-12s %7.2f ms %7.2f ms %+6.1f%% %7.1f%% %8.1f%%  %-24s %s%s\n", r[i].P, r[i].kind, r[i].measured,
               r[i].predicted, 100 * e, 100 * r[i].bubble, 100 * r[i].pbubble, bs, pk,
               e > 0.1 || e < -0.1 ? "  (outside +-10%)" : "");
    }
    printf("load average before: %s, after: %s (P stages want P free cores); runs in %s\n", l0, l1, out);
}

int bench_sched_measured(int steps, int M, int json)
{
    static const char *kinds[] = { "gpipe", "1f1b", "zb-h1", "interleaved", "zb-v" };
    enum { NK = 5, NL = 2 };
    char exe[4096], out[] = "/tmp/pipetrain-bench-sched.XXXXXX", l0[64], l1[64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) { perror("pipetrain bench schedule: /proc/self/exe"); return 1; }
    exe[n] = 0;
    if (access(layouts[0].topo, R_OK) || access(layouts[1].topo, R_OK)) {
        fprintf(stderr, "pipetrain bench schedule --measured: run it from the source tree "
                        "(needs %s and %s)\n", layouts[0].topo, layouts[1].topo);
        return 2;
    }
    if (!mkdtemp(out)) { perror("pipetrain bench schedule: mkdtemp"); return 1; }
    bench_sched_loadavg(l0, sizeof l0);
    mrow rows[NL * NK];
    int port = 30000 + (int)(getpid() % 300) * 100;
    for (int l = 0; l < NL; l++)
        for (int i = 0; i < NK; i++) {
            mrow *w = &rows[l * NK + i];
            char dir[4200];
            snprintf(dir, sizeof dir, "%s/%dstage-%s", out, layouts[l].P, kinds[i]);
            memset(w, 0, sizeof *w);
            w->kind = kinds[i];
            w->P = layouts[l].P;
            /* a port another job holds fails the run at once: try twice more elsewhere */
            for (int a = 0; a < 3 && !w->ok; a++) {
                if (!run_one(exe, &layouts[l], kinds[i], steps, M, port + MAXP * (l * NK + i) + 1000 * a, dir)) {
                    read_timing(w, dir);
                    continue;
                }
                char failed[4300];
                snprintf(failed, sizeof failed, "%s.failed-%d", dir, a); /* kept for a post-mortem */
                rename(dir, failed);
            }
            predict_peaks(exe, &layouts[l], kinds[i], M, dir, w);
        }
    bench_sched_loadavg(l1, sizeof l1);
    print_rows(rows, NL * NK, steps, M, out, l0, l1, json);
    for (int i = 0; i < NL * NK; i++)
        if (!rows[i].ok) return 1;
    return 0;
}
