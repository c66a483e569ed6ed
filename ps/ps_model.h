/* ps_model.h — the simple model `bench ps` prints beside its measurements
 * (issue 12): how many samples per second R data-parallel workers reach under a
 * consistency bound s when their step times vary (stragglers). No network, no
 * threads: a recurrence over step finish times.
 *
 * Worker w's k-th step (0-based) takes d_w(k) seconds and may start when its
 * own step k-1 has finished and, for s >= 0, when every worker has finished
 * step k-s-1 (the bounded-staleness rule of ps.h: a worker may start step t
 * when t - slowest clock <= s; s = 0 is BSP, each step waits for the slowest
 * worker's previous step); s = -1 never waits for others:
 *   start_w(k)  = max(finish_w(k-1), max_j finish_j(k-s-1))   (s >= 0)
 *   finish_w(k) = start_w(k) + d_w(k).
 * Push, apply and pull are folded into d (a constant `comm` per step).
 * Throughput over the horizon H = the earliest time any worker finishes its
 * last simulated step (so no worker has run out of steps before H): the
 * samples of every step finished by H (each worker step is B / R samples),
 * divided by H.
 *
 * Closed forms it reproduces (tests/test_ps_model.c): one worker 3x slower,
 * R = 2: BSP B/(3t), unbounded 2B/(3t) (2x), any finite s tends to BSP's
 * rate (the fast worker is at most s steps ahead: bounded staleness buys a
 * head start, not a rate); transient pauses (probability p, for f times the
 * step) at s = 0 cost E[max over workers], at s = -1 only the mean. */
#ifndef PS_PS_MODEL_H
#define PS_PS_MODEL_H

#include <stdint.h>

typedef struct {
    int workers;         /* R >= 1 */
    long staleness;      /* s >= 0, or -1 for no bound */
    double step_s;       /* a worker's normal step time t (seconds) */
    double slow[16];     /* persistent slowness: worker w's steps take t * slow[w] (0 or 1: normal); w < 16 */
    double pause_p;      /* transient: each worker step pauses with this probability ... */
    double pause_factor; /* ... for pause_factor * (its normal step time) extra */
    double comm_s;       /* added to every step (push + apply + pull) */
    long steps;          /* steps simulated per worker (>= 1) */
    uint64_t seed;       /* the pauses' random stream (xorshift64*, a pure function of the seed) */
} ps_model;

/* Samples per second for a global batch of `batch` samples per step (each
 * worker step trains batch / R), by the recurrence above. Returns a negative
 * value when m is out of range (workers < 1 or > 16, staleness < -1, steps < 1,
 * step_s <= 0). */
double ps_model_rate(const ps_model *m, double batch);

#endif
