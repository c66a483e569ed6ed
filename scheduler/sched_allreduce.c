/* sched_allreduce.c — the simulator's data-parallel part: after the pipeline's
 * actions are played, each stage's replicas all-reduce its gradient buckets
 * (costs->ar) on their ring, one bucket at a time in the order they become
 * ready, and the stage's optimizer step waits for the last one. The model and
 * its numbers are described at sched_allreduce in sched.h; this file only plays
 * it. It knows no layer and no socket: buckets and their readiness are plain data
 * the topology side computes. */
#include <stdlib.h>
#include <string.h>

#include "scheduler/sched_int.h"

typedef struct {
    double ready;
    size_t i;
} ready_at;

static int by_ready(const void *x, const void *y)
{
    const ready_at *a = x, *b = y;
    if (a->ready != b->ready) return a->ready < b->ready ? -1 : 1;
    return a->i < b->i ? -1 : a->i > b->i;
}

int sched_ar_check(const sched_schedule *s, const sched_allreduce *a, char *err)
{
    if (!a || a->replicas <= 1) return 0;
    if (!(a->latency >= 0 && a->bandwidth >= 0 && a->tied_bytes >= 0))
        return sched_seterr(err, "all-reduce latency, bandwidth and tied bytes must be >= 0");
    if (a->tied_from < -1 || a->tied_from >= s->n_stages)
        return sched_seterr(err, "all-reduce: tied gradient from stage %d, the schedule has %d stages",
                            a->tied_from, s->n_stages);
    for (size_t i = 0; i < a->n; i++) {
        const sched_bucket *b = &a->b[i];
        if (b->stage < 0 || b->stage >= s->n_stages || b->chunk < 0 || b->chunk >= s->n_chunks)
            return sched_seterr(err, "all-reduce bucket %zu: stage %d chunk %d is outside the schedule's "
                                     "%d stages x %d chunks", i, b->stage, b->chunk, s->n_stages, s->n_chunks);
        if (!(b->frac >= 0 && b->frac <= 1 && b->bytes >= 0))
            return sched_seterr(err, "all-reduce bucket %zu: frac must be in 0..1 and bytes >= 0", i);
    }
    return 0;
}

/* When bucket b's gradient is final. wl0/wl1: the W part of the last weight pass
 * run on each virtual stage; tfree: each stage's last action end. */
static double ready_time(const sched_schedule *s, const sched_costs *c, const sched_bucket *b,
                         const double *wl0, const double *wl1, const double *tfree)
{
    const sched_allreduce *a = c->ar;
    if (b->tied) {
        double t = tfree[b->stage];
        if (a->tied_from >= 0 && a->tied_from != b->stage) {
            double in = tfree[a->tied_from] + c->latency + (c->bandwidth > 0 ? a->tied_bytes / c->bandwidth : 0);
            if (in > t) t = in;
        }
        return t;
    }
    size_t k = sched_vstage(s, b->stage, b->chunk);
    return wl0[k] + b->frac * (wl1[k] - wl0[k]);
}

int sched_ar_play(const sched_schedule *s, const sched_costs *c, const double *wl0, const double *wl1,
                  const double *tfree, sched_report *r, char *err)
{
    const sched_allreduce *a = c->ar;
    size_t P = (size_t)s->n_stages, n = a->n;
    int R = a->replicas;
    ready_at *q = malloc((n ? n : 1) * sizeof *q);
    r->ar_n = n;
    r->ar_stage = malloc((n ? n : 1) * sizeof(int));
    r->ar_start = malloc((n ? n : 1) * sizeof(double));
    r->ar_end = malloc((n ? n : 1) * sizeof(double));
    r->ar_ready = malloc((n ? n : 1) * sizeof(double));
    r->ar_count = calloc(P, sizeof(size_t));
    r->ar_bytes = calloc(P, sizeof(double));
    r->ar_busy = calloc(P, sizeof(double));
    r->ar_exposed = calloc(P, sizeof(double));
    r->ar_done = calloc(P, sizeof(double));
    if (!q || !r->ar_stage || !r->ar_start || !r->ar_end || !r->ar_ready || !r->ar_count || !r->ar_bytes ||
        !r->ar_busy || !r->ar_exposed || !r->ar_done) {
        free(q);
        return sched_seterr(err, "out of memory simulating the all-reduce of %zu buckets", n);
    }
    for (size_t i = 0; i < n; i++) {
        r->ar_stage[i] = a->b[i].stage;
        r->ar_ready[i] = ready_time(s, c, &a->b[i], wl0, wl1, tfree);
    }
    for (size_t st = 0; st < P; st++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if ((size_t)a->b[i].stage == st) q[m++] = (ready_at){ r->ar_ready[i], i };
        qsort(q, m, sizeof *q, by_ready);
        /* with zero a bucket's ring steps in the backward pass are the reduce-scatter
         * only; the all-gather of every bucket follows the optimizer (gather) */
        double t = tfree[st], ring = 0, phases = a->zero ? 1.0 : 2.0, gather = 0;
        for (size_t j = 0; j < m; j++) {
            const sched_bucket *b = &a->b[q[j].i];
            double seg = a->bandwidth > 0 ? b->bytes / R / a->bandwidth : 0;
            double d = phases * (R - 1) * (a->latency + seg);
            double t0 = j == 0 || q[j].ready > ring ? q[j].ready : ring;
            ring = t0 + d;
            r->ar_start[q[j].i] = t0;
            r->ar_end[q[j].i] = ring;
            r->ar_busy[st] += a->zero ? 2 * d : d;
            r->ar_bytes[st] += b->bytes;
            if (a->zero) gather += d;
        }
        r->ar_count[st] = m;
        if (m && ring > t) t = ring;
        t += gather;
        r->ar_done[st] = t;
        r->ar_exposed[st] = t - tfree[st];
        if (t > r->step_time) r->step_time = t;
    }
    free(q);
    return 0;
}
