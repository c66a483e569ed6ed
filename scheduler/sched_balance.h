/* sched_balance.h — the automatic stage balancer: cuts a chain of units (the
 * model's embedding, blocks and head, or any other chain) into P contiguous
 * ranges, one per stage, minimising the simulated step time of a one-chunk
 * schedule subject to each stage's memory.
 *
 * Search (exact for the bottleneck, then simulated):
 *   1. Dynamic programming over split points finds the least bottleneck (the
 *      largest per-micro-batch busy time F+B+W of a stage) among the splits whose
 *      every stage fits its memory bound (below), in O(P * U * log U) (binary
 *      searches over each cell's split point, see sched_balance.c; the plain
 *      O(P * U^2) scan for inputs with a negative or non-finite number), in a
 *      table of the (P+1) x (U-P+1) cells a split can reach.
 *   2. Every split whose bottleneck is within `slack` of that optimum is listed
 *      (depth-first, pruned with the same table: a prefix is dropped as soon as the
 *      best completion of it exceeds the threshold), up to max_list of them;
 *      only the top_k of least (bottleneck, listing index) are kept as they come
 *      (a heap of cut-point bitsets, top_k x U/8 bytes: the whole list was
 *      max_list x (P+1) ints, 330 MB at 4096 stages).
 *   3. The `top_k` with the least bottleneck are simulated with sched_simulate on
 *      the given schedule (its memory model gives each stage's peak activation
 *      bytes); a split whose simulated memory exceeds the limit is dropped, and the
 *      least simulated step time wins (ties: smaller bottleneck, then the first
 *      listed, which puts the later cuts earlier).
 * The memory bound of the DP, for stage s holding units [a, b): static(a,b) +
 * peak_mb[s] * stash(a,b) + work(a,b) + max fwd_tmp — the stash of the
 * micro-batches the schedule keeps in flight on s (sched_check's peak_mb), plus
 * one backward's work and one forward's transient: an upper bound on what the
 * simulator reports, so the DP never drops a split the simulator would keep.
 *
 * Pure: no model, no topology, no files; the caller turns units into numbers.
 * Returns 0 or -1 with a message in a caller-owned char err[SCHED_ERR_LEN]. */
#ifndef SCHEDULER_SCHED_BALANCE_H
#define SCHEDULER_SCHED_BALANCE_H

#include "scheduler/sched.h"

/* Per-unit numbers, all arrays of n_units entries, owned by the caller. Times
 * are per micro-batch at speed 1 (stage s runs them in time / speed[s]). */
typedef struct {
    int n_units;
    const double *f, *b, *w;      /* forward, input-gradient, weight-gradient time */
    const double *static_bytes;   /* weights + gradients + optimizer state */
    const double *stash;          /* bytes stashed per micro-batch in flight */
    const double *work;           /* backward work, B to W */
    const double *fwd_tmp;        /* forward transient */
    const double *work_unit;      /* a fused BW's work for the unit alone */
    const double *out_bytes;      /* bytes the unit sends on when a stage ends on it */
    const double *speed;          /* (P) relative speed of each stage; NULL = all 1 */
    double latency, bandwidth;    /* of the links, as sched_costs */
    int bw_early, w_in_order;     /* as sched_costs */
    double mem_limit;             /* bytes per stage: static + peak activations; 0 = none */
    double slack;                 /* 2.: list splits with bottleneck <= (1 + slack) * optimum */
    int top_k;                    /* 3.: simulate at most this many (>= 1) */
    int max_list;                 /* 2.: list at most this many (>= top_k) */
    int exhaustive;               /* 1.: the plain O(P * U^2) scan (tests' reference; same plans) */
} sched_balance_in;

/* The chosen split and what the simulator predicts for it. */
typedef struct {
    int n_stages;
    int *first;          /* (P + 1) stage s holds units first[s] .. first[s+1]-1 */
    double step_time;    /* simulated */
    double bottleneck;   /* largest stage F+B+W per micro-batch */
    double *busy;        /* (P) simulated busy time of each stage in one step */
    double *mem;         /* (P) static bytes + simulated peak activation bytes */
    double *static_mem;  /* (P) */
    int n_listed, n_simulated;
    long long n_probes;  /* 1.: split points the DP tried (U^2 P / 2 for the plain scan) */
} sched_balance_plan;

void sched_balance_plan_free(sched_balance_plan *p);

/* Balances in->n_units units over s->n_stages stages for schedule s (one chunk
 * per stage). On success returns 0 with a new plan in *out (caller frees). On
 * failure returns -1 with err; *bad_unit (may be NULL) is then the index of a
 * unit that alone exceeds the memory limit on every stage, else -1 (no split
 * fits, or a bad argument, or out of memory). Any thread. */
int sched_balance(const sched_schedule *s, const sched_balance_in *in, sched_balance_plan **out, int *bad_unit,
                  char *err);

/* Simulates one given split (first[0..P], first[0] = 0, first[P] = n_units) as
 * sched_balance does its candidates: returns 0 with a new plan, or -1 with err. */
int sched_balance_eval(const sched_schedule *s, const sched_balance_in *in, const int *first,
                       sched_balance_plan **out, char *err);

/* Step 1 alone, without memory: the least bottleneck of n_units units of
 * cost[u] over n_stages contiguous stages, stage s taking the sum of its costs
 * divided by speed[s] (NULL: 1); INFINITY when there is none (more stages than
 * units, out of memory). Any thread. */
double sched_balance_bottleneck(int n_units, const double *cost, int n_stages, const double *speed);

#endif
