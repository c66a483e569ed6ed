/* runtime_straggle.c — the straggler hook in a stage process (stage/straggle.h:
 * PIPETRAIN_STRAGGLE, for `bench ps` and tests). A paused step sleeps at its
 * start, after the pull, for factor x the replica's own normal step time: the
 * median compute time of its latest steps (the sleep is not compute, so the
 * estimate is not inflated by it). The pause is a trace event of its own
 * ("pause" on the compute track of trace.json) and the count goes to the
 * stage's log at the end. Not here: the grammar and the draw (straggle.c). */
#include "stage/rt.h"
#include "stage/straggle.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int rt_straggle_setup(rt *r)
{
    char e[ERR_LEN];
    rt_straggle *g = &r->straggle;
    *g = (rt_straggle){ 0 };
    if (straggle_parse(getenv(STRAGGLE_ENV), r->rep, &g->p, &g->factor, e)) return seterr(r->err, "%s", e), 2;
    if (g->p > 0 && g->factor > 0)
        fprintf(stderr, "pipetrain stage %d replica %d: %s: pausing with probability %g for %g x the normal step "
                "time (a testing and benchmarking hook)\n", r->K, r->rep, STRAGGLE_ENV, g->p, g->factor);
    else g->p = 0;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void rt_straggle_begin(rt *r)
{
    rt_straggle *g = &r->straggle;
    if (g->p > 0 && g->n_recent > 0 && straggle_due((uint64_t)r->t->train.seed, r->rep, r->step, g->p)) {
        double v[9];
        memcpy(v, g->recent, sizeof v);
        qsort(v, (size_t)g->n_recent, sizeof *v, cmp_double);
        double normal = g->n_recent % 2 ? v[g->n_recent / 2] : 0.5 * (v[g->n_recent / 2 - 1] + v[g->n_recent / 2]);
        double d = g->factor * normal, t0 = rt_now();
        struct timespec ts = { (time_t)d, (long)((d - (double)(time_t)d) * 1e9) };
        while (nanosleep(&ts, &ts)) {}
        double t1 = rt_now();
        rt_event(r, PROTO_EV_PAUSE, 0, 0, 0, t0, t1);
        g->pauses++;
        g->paused_s += t1 - t0;
    }
    g->compute0 = r->stats.compute_s;
}

void rt_straggle_end(rt *r)
{
    rt_straggle *g = &r->straggle;
    if (!(g->p > 0)) return;
    g->recent[g->next] = r->stats.compute_s - g->compute0;
    g->next = (g->next + 1) % 9;
    if (g->n_recent < 9) g->n_recent++;
}

void rt_straggle_report(const rt *r)
{
    const rt_straggle *g = &r->straggle;
    if (g->p > 0)
        fprintf(stderr, "pipetrain stage %d replica %d: %s: %ld pauses, %.3f s paused in %llu steps\n", r->K, r->rep,
                STRAGGLE_ENV, g->pauses, g->paused_s, (unsigned long long)r->stats.steps);
}
