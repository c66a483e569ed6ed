/* bench_sched_measured.c — `pipetrain bench schedule --measured`: trains the
 * 2-stage Shakespeare topology (1 BLAS thread per stage) for a few steps under
 * gpipe, 1f1b, zb-h1 and interleaved (2 chunks per stage: layers "embed,0,2"
 * and "1,3,head"), each as a child `pipetrain run` with the trace on, and prints
 * from each run's summary.json "timing" the measured step time (median compute
 * span of the steps after the first), the prediction calibrated with the run's
 * own costs, their difference, and the measured and predicted bubbles, with the
 * machine's load average before and after (the machine is shared: the numbers
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

typedef struct {
    const char *kind;
    int ok;
    double measured, predicted, bubble, pbubble, bubble_stage[2];
} mrow;

static void loadavg(char *buf, size_t n)
{
    FILE *f = fopen("/proc/loadavg", "r");
    double a = 0, b = 0, c = 0;
    if (!f || fscanf(f, "%lf %lf %lf", &a, &b, &c) != 3) snprintf(buf, n, "?");
    else snprintf(buf, n, "%.2f %.2f %.2f", a, b, c);
    if (f) fclose(f);
}

/* Runs `pipetrain run` for one kind into dir (log in dir.log); 0 when it exits 0. */
static int run_one(const char *exe, const char *topo, const char *kind, int steps, int M, int port, const char *dir)
{
    char s_steps[32], s_m[64], s_kind[64], s_p0[64], s_p1[64], log[4300];
    snprintf(s_steps, sizeof s_steps, "%d", steps);
    snprintf(s_m, sizeof s_m, "train.micro_batches=%d", M);
    snprintf(s_kind, sizeof s_kind, "schedule.kind=%s", kind);
    snprintf(s_p0, sizeof s_p0, "stages.0.port=%d", port);
    snprintf(s_p1, sizeof s_p1, "stages.1.port=%d", port + 1);
    snprintf(log, sizeof log, "%s.log", dir);
    char *argv[40] = { (char *)exe, "run", (char *)topo, "--steps", s_steps, "--set", s_m, "--set", s_kind,
                       "--set", "train.eval_every=0", "--set", "checkpoint.every=0", "--set",
                       "train.log_every=1000000", "--set", "coordinator.port=0", "--set", s_p0, "--set", s_p1,
                       "--out", (char *)dir };
    int n = 23;
    if (!strcmp(kind, "interleaved")) {
        argv[n++] = "--set";
        argv[n++] = "stages.0.layers=embed,0,2";
        argv[n++] = "--set";
        argv[n++] = "stages.1.layers=1,3,head";
    }
    argv[n] = NULL;
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
        for (int k = 0; k < 2; k++) w->bubble_stage[k] = json_number_value(json_array_get(bs, (size_t)k));
    }
    json_decref(root);
}

static void print_rows(const mrow *r, int n, int steps, int M, const char *out, const char *l0, const char *l1,
                       int json)
{
    if (json) {
        printf("{\"bench\":\"schedule_measured\",\"topology\":\"topologies/shakespeare-2stage.json\",\"steps\":%d,"
               "\"micro_batches\":%d,\"load_before\":\"%s\",\"load_after\":\"%s\",\"runs\":\"%s\",\"kinds\":[",
               steps, M, l0, l1, out);
        for (int i = 0; i < n; i++)
            printf("%s{\"kind\":\"%s\",\"ok\":%s,\"measured_step_ms\":%.3f,\"predicted_step_ms\":%.3f,"
                   "\"error\":%.4f,\"measured_bubble\":%.4f,\"predicted_bubble\":%.4f}", i ? "," : "", r[i].kind,
                   r[i].ok ? "true" : "false", r[i].measured, r[i].predicted,
                   r[i].measured > 0 ? (r[i].predicted - r[i].measured) / r[i].measured : 0, r[i].bubble,
                   r[i].pbubble);
        printf("]}\n");
        return;
    }
    printf("bench schedule --measured: topologies/shakespeare-2stage.json, 1 BLAS thread per stage, %d steps, "
           "M = %d\n%-12s %10s %10s %7s %9s %9s  %s\n", steps, M, "schedule", "measured", "predicted", "error",
           "bubble", "predicted", "bubble per stage");
    for (int i = 0; i < n; i++) {
        if (!r[i].ok) { printf("%-12s run failed: see %s/%s.log\n", r[i].kind, out, r[i].kind); continue; }
        printf("%-12s %7.2f ms %7.2f ms %+6.1f%% %8.1f%% %8.1f%%  %.1f%% %.1f%%%s\n", r[i].kind, r[i].measured,
               r[i].predicted, 100 * (r[i].predicted - r[i].measured) / r[i].measured, 100 * r[i].bubble,
               100 * r[i].pbubble, 100 * r[i].bubble_stage[0], 100 * r[i].bubble_stage[1],
               (r[i].predicted - r[i].measured) / r[i].measured > 0.1 ||
                       (r[i].predicted - r[i].measured) / r[i].measured < -0.1
                   ? "  (outside +-10%)" : "");
    }
    printf("load average before: %s, after: %s (2 stages want 2 free cores); runs in %s\n", l0, l1, out);
}

int bench_sched_measured(int steps, int M, int json)
{
    static const char *kinds[] = { "gpipe", "1f1b", "zb-h1", "interleaved" };
    char exe[4096], out[] = "/tmp/pipetrain-bench-sched.XXXXXX", l0[64], l1[64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) { perror("pipetrain bench schedule: /proc/self/exe"); return 1; }
    exe[n] = 0;
    if (access("topologies/shakespeare-2stage.json", R_OK)) {
        fprintf(stderr, "pipetrain bench schedule --measured: run it from the source tree "
                        "(needs topologies/shakespeare-2stage.json)\n");
        return 2;
    }
    if (!mkdtemp(out)) { perror("pipetrain bench schedule: mkdtemp"); return 1; }
    loadavg(l0, sizeof l0);
    mrow rows[4];
    int port = 30000 + (int)(getpid() % 300) * 100;
    for (int i = 0; i < 4; i++) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/%s", out, kinds[i]);
        memset(&rows[i], 0, sizeof rows[i]);
        rows[i].kind = kinds[i];
        if (!run_one(exe, "topologies/shakespeare-2stage.json", kinds[i], steps, M, port + 2 * i, dir))
            read_timing(&rows[i], dir);
    }
    loadavg(l1, sizeof l1);
    print_rows(rows, 4, steps, M, out, l0, l1, json);
    for (int i = 0; i < 4; i++)
        if (!rows[i].ok) return 1;
    return 0;
}
