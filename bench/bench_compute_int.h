/* bench_compute_int.h — private to bench/: what bench_compute.c measures for
 * one preset at one thread count, and the measurement entry point;
 * bench_compute_out.c parses the options and prints the results. */
#ifndef BENCH_BENCH_COMPUTE_INT_H
#define BENCH_BENCH_COMPUTE_INT_H

#include <stddef.h>

#include "model/model.h"

enum { PH_FWD, PH_BWD_IN, PH_BWD_W, PH_OPT, PH_N };
extern const char *const bc_phase_name[PH_N];

enum {
    BC_CEIL_N = 1536, /* the square sgemm of the ceiling */
    BC_PAIR_N = 1024, /* the square sgemm run after each step */
    BC_QUICK_CEIL_N = 256, BC_QUICK_PAIR_N = 128 /* --quick (tests): figures meaningless */
};

typedef struct {
    /* in: what to measure */
    const char *preset;            /* "recipe", "15m", "42m" */
    model_config cfg;
    size_t batch;
    int recompute;                 /* MODEL_RECOMPUTE_* */
    int threads, steps, warmup;
    int ceil_n, pair_n;            /* BC_CEIL_N, BC_PAIR_N (or the quick sizes) */
    /* out */
    double ceil_gflops[2];         /* square sgemm at `threads`, at 1 thread */
    double shape_gflops;           /* step-shaped sgemm set at `threads` */
    double step_flops;             /* per step, from model_unit_flops (+ recomputation) */
    double step_ms_mean, step_ms_min, step_ms_median, phase_ms[PH_N];
    double cpu_ms, cpu_ms_median;  /* process CPU time per step, all threads: mean, median */
    double paired_gflops;          /* median rate of a pair_n^3 sgemm run right after each step */
    double paired_cpu_gflops;      /* median GFLOP per CPU second of the same sgemm on one thread */
    double load1;                  /* 1-minute load average at the end (noise hint) */
    double tokens_per_step, loss_first, loss_last;
    size_t n_params;
    size_t peak_act_bytes;         /* the model's figure for a one-stage run (summary.json's) */
    size_t peak_act_bytes_probs;   /* the same if attention kept each head's (T x T) probabilities */
    size_t slots_bytes;            /* what the bench's split B/W steps hold */
} bc_result;

/* Measures r's preset at r->threads (ceilings, shapes, steps); fills the out
 * fields. Sets the OpenBLAS thread count. Exits via xmalloc when out of memory. */
void bc_measure(bc_result *r);

#endif
