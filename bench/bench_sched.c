/* bench_sched.c — `pipetrain bench schedule`: for each built-in schedule at
 * P x M (default 1,024 x 4,096; interleaved with 2 chunks), the best-of-N wall
 * time to generate the action lists (the baseline: touching every action once),
 * to validate (static checks + dependency play) and to simulate (validation plus
 * timing, without and with a recorded timeline), and each time's ratio to the
 * baseline. The target is a simulation under one second; the CPU time of the
 * simulation is printed beside its wall time because the machine is shared.
 * --measured: predicted against measured runs (bench_sched_measured.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench_sched.h"
#include "scheduler/sched.h"

typedef struct {
    const char *kind;
    size_t actions;
    double gen, check, sim, sim_tl; /* wall seconds, best of repeat */
    double sim_cpu;                 /* CPU seconds of the best simulate: on a shared
                                     * machine the honest measure of the work */
    double step, bubble;
} row;

static double clock_s(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
static double now(void) { return clock_s(CLOCK_MONOTONIC); }
static double cpu_now(void) { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }

static double best(double a, double b) { return a < b ? a : b; }

/* Measures one kind; returns 0 or -1 with a message on stderr. */
static int measure(row *w, int P, int M, int repeat)
{
    char err[SCHED_ERR_LEN];
    w->gen = w->check = w->sim = w->sim_tl = w->sim_cpu = 1e30;
    for (int it = 0; it < repeat; it++) {
        double t0 = now();
        sched_schedule *s = sched_generate(w->kind, P, M, 0, err);
        double t1 = now();
        if (!s) { fprintf(stderr, "pipetrain bench schedule: %s\n", err); return -1; }
        w->gen = best(w->gen, t1 - t0);
        w->actions = 0;
        for (int st = 0; st < P; st++) w->actions += s->len[st];
        sched_costs *c = sched_costs_uniform(P, s->n_chunks, 1, 1, 1);
        sched_report *r = NULL;
        int rc = c ? 0 : -1;
        if (!rc) {
            t0 = now();
            rc = sched_check(s, NULL, err);
            t1 = now();
            w->check = best(w->check, t1 - t0);
        }
        for (int tl = 0; tl <= 1 && !rc; tl++) {
            double c0 = cpu_now();
            t0 = now();
            rc = sched_simulate(s, c, tl, &r, err);
            t1 = now();
            double c1 = cpu_now();
            if (tl) w->sim_tl = best(w->sim_tl, t1 - t0);
            else { w->sim = best(w->sim, t1 - t0); w->sim_cpu = best(w->sim_cpu, c1 - c0); }
            if (!rc) { w->step = r->step_time; w->bubble = r->bubble; }
            sched_report_free(r);
            r = NULL;
        }
        sched_costs_free(c);
        sched_free(s);
        if (rc) { fprintf(stderr, "pipetrain bench schedule: %s: %s\n", w->kind, c ? err : "out of memory"); return -1; }
    }
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: pipetrain bench schedule [--json] [--stages P (default 1024)] "
               "[--micro-batches M (default 4096)] [--repeat N (default 3)]\n"
               "       pipetrain bench schedule --measured [--json] [--steps N (default 60)] "
               "[--micro-batches M (default 4)]\n"
               "  --measured: trains the 2- and 4-stage Shakespeare topologies (run from the source tree)\n"
               "  under gpipe, 1f1b, zb-h1, interleaved and zb-v and prints measured vs predicted step time,\n"
               "  bubble and peak activation bytes per stage\n"
               "       pipetrain bench schedule --uneven [--json] [--steps N (default 20)] [--repeat R (default 5)]\n"
               "                                [--micro-batches M (default 4)] [--vocab V (default 8192)]\n"
               "  --uneven: the 2-stage Shakespeare model with vocabulary V, its even split against the one\n"
               "  `pipetrain balance --calibrate` chooses from one calibration run, R runs of each alternately:\n"
               "  measured vs predicted from the median costs of the R even runs (and from the one run)\n");
}

typedef struct { int json, measured, steps, uneven, vocab; } extra_opts;

static int parse(int argc, char **argv, extra_opts *x, int *P, int *M, int *rep)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) { x->json = 1; continue; }
        if (!strcmp(argv[i], "--measured")) { x->measured = 1; continue; }
        if (!strcmp(argv[i], "--uneven")) { x->uneven = 1; continue; }
        if (!strcmp(argv[i], "--help")) { usage(stdout); return -1; }
        int *dst = !strcmp(argv[i], "--stages") ? P : !strcmp(argv[i], "--micro-batches") ? M
                 : !strcmp(argv[i], "--repeat") ? rep : !strcmp(argv[i], "--steps") ? &x->steps
                 : !strcmp(argv[i], "--vocab") ? &x->vocab : NULL;
        char *e = NULL;
        long v = dst && i + 1 < argc ? strtol(argv[i + 1], &e, 10) : 0;
        if (!dst || !e || *e || v < 1 || v > (1 << 22)) {
            fprintf(stderr, "pipetrain bench schedule: bad option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
        *dst = (int)v;
        i++;
    }
    return 0;
}

int bench_sched_main(int argc, char **argv)
{
    int P = 1024, M = 0, rep = 0;
    extra_opts x = { 0, 0, 0, 0, 8192 };
    int prc = parse(argc, argv, &x, &P, &M, &rep), json = x.json;
    if (prc) return prc < 0 ? 0 : prc;
    if (x.uneven) return bench_sched_uneven(x.steps ? x.steps : 20, M ? M : 4, rep ? rep : 5, x.vocab, json);
    if (!rep) rep = 3;
    if (x.measured) return bench_sched_measured(x.steps ? x.steps : 60, M ? M : 4, json);
    if (!M) M = 4096;
    row rows[8];
    int n = 0;
    for (int k = 0; sched_kinds[k] && n < 8; k++) {
        rows[n].kind = sched_kinds[k];
        if (measure(&rows[n], P, M, rep)) return 1;
        n++;
    }
    if (json) {
        printf("{\"bench\":\"schedule\",\"stages\":%d,\"micro_batches\":%d,\"repeat\":%d,\"kinds\":[", P, M, rep);
        for (int i = 0; i < n; i++)
            printf("%s{\"kind\":\"%s\",\"actions\":%zu,\"generate_s\":%.4f,\"check_s\":%.4f,"
                   "\"simulate_s\":%.4f,\"simulate_cpu_s\":%.4f,\"simulate_timeline_s\":%.4f,"
                   "\"simulate_over_generate\":%.2f,\"under_1s\":%s,\"step\":%.1f,\"bubble\":%.5f}",
                   i ? "," : "", rows[i].kind, rows[i].actions, rows[i].gen, rows[i].check,
                   rows[i].sim, rows[i].sim_cpu, rows[i].sim_tl,
                   rows[i].sim / rows[i].gen, rows[i].sim < 1 ? "true" : "false", rows[i].step,
                   rows[i].bubble);
        printf("]}\n");
        return 0;
    }
    printf("bench schedule: %d stages x %d micro-batches (interleaved: 2 chunks), F=B=W=1, best of %d\n",
           P, M, rep);
    printf("%-12s %10s %10s %10s %10s %10s %12s %9s %8s\n", "kind", "actions", "generate",
           "validate", "simulate", "(cpu)", "sim+timeline", "sim/gen", "bubble");
    for (int i = 0; i < n; i++)
        printf("%-12s %10zu %9.3fs %9.3fs %9.3fs %9.3fs %11.3fs %8.1fx %7.2f%%%s\n", rows[i].kind,
               rows[i].actions, rows[i].gen, rows[i].check, rows[i].sim, rows[i].sim_cpu, rows[i].sim_tl,
               rows[i].sim / rows[i].gen, 100 * rows[i].bubble,
               rows[i].sim < 1 ? "" : "  (over the 1 s target)");
    return 0;
}
