/* bench_compute.c — `pipetrain bench compute`. For each model preset (the
 * shakespeare recipe, llama2.c's stories15M and stories42M shapes with a byte
 * vocabulary, any of them changed with --set) and BLAS thread count, in one run:
 *   1. the OpenBLAS sgemm ceiling (large square product, best of several
 *      reps, before and after the steps) at the step's thread count and at 1
 *      thread;
 *   2. the sgemm rate at the step's own matmul shapes (N = batch·seq rows
 *      against dim × dim / ffn_dim weights, all three transposition cases);
 *   3. full training steps (zero_grad, forward, backward-input,
 *      backward-weight, grad norm, AdamW) on a built-in noisy counter sequence,
 *      with achieved FLOP/s from model_unit_flops, a per-phase breakdown, the
 *      peak activation bytes the model reports, and a 1024^3 sgemm after every
 *      step for a load-robust (paired) ratio.
 * Options and output live in bench_compute_out.c. It reads no files. It is a
 * benchmark, not a test: it asserts nothing. */
#include "bench/bench_compute_int.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/optim.h"
#include "model/util.h"

const char *const bc_phase_name[PH_N] = { "forward", "backward_input", "backward_weight", "optimizer" };

static double now_s(void) { return base_now(); }

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *rand_floats(size_t n, uint64_t seed)
{
    rng_t r = { seed };
    float *x = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = (float)(rng_uniform(&r) - 0.5);
    return x;
}

/* Best GFLOP/s of reps square-ish products C(n,n) = A(n,n)·B(n,n)ᵀ. */
static double sgemm_square(size_t n, int reps)
{
    float *a = rand_floats(n * n, 1), *b = rand_floats(n * n, 2), *c = xcalloc(n * n, sizeof(float));
    double best = 1e30;
    for (int r = 0; r < reps + 1; r++) { /* the first rep warms threads and caches */
        double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)n, 1.0f, a, (int)n, b,
                    (int)n, 0.0f, c, (int)n);
        double t = now_s() - t0;
        if (r > 0 && t < best) best = t;
    }
    free(a); free(b); free(c);
    return 2.0 * (double)n * n * n / best / 1e9;
}

/* One sgemm shaped like a layer's product: mode 0 forward (in·wᵀ), 1 input grad
 * (dout·w), 2 weight grad (doutᵀ·in, accumulating). N rows, C in, OC out. */
static void shaped(int mode, float *out, const float *x, const float *w, size_t N, size_t C, size_t OC)
{
    int n = (int)N, c = (int)C, oc = (int)OC;
    if (mode == 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, oc, c, 1.0f, x, c, w, c, 0.0f, out, oc);
    else if (mode == 1)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, c, oc, 1.0f, x, oc, w, c, 0.0f, out, c);
    else
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, oc, c, n, 1.0f, x, oc, w, c, 1.0f, out, c);
}

/* GFLOP/s of the step's own sgemm calls as pass.c makes them: per block the
 * fused q|k|v (C → C + 2·KV), o (C → C), fused gate|up (C → 2F), down (F → C),
 * in each of the three modes, plus the head (C → V); best of up to 20 reps
 * over the whole set (fewer for big models: about 20 GFLOP in all). */
static double sgemm_step_shapes(const model_config *c, size_t N, int quick)
{
    size_t C = (size_t)c->dim, F = (size_t)c->ffn_dim, V = (size_t)c->vocab_size;
    size_t KV = C / (size_t)c->n_heads * (size_t)c->n_kv_heads;
    size_t shp[][2] = { { C, C + 2 * KV }, { C, C }, { C, 2 * F }, { F, C }, { C, V } };
    size_t ns = sizeof shp / sizeof shp[0], big = C + 2 * KV;
    if (2 * F > big) big = 2 * F;
    if (V > big) big = V;
    /* the weight-gradient mode reads w as (N, C) and writes (OC, C) */
    size_t rows = N > big ? N : big;
    float *x = rand_floats(rows * big, 3), *w = rand_floats(rows * big, 4), *o = xcalloc(rows * big, sizeof(float));
    double flops = 0, best = 1e30;
    for (size_t i = 0; i < ns; i++) flops += 3 * 2.0 * (double)N * shp[i][0] * shp[i][1];
    int reps = (int)(20e9 / flops);
    reps = quick ? 1 : reps < 2 ? 2 : reps > 20 ? 20 : reps;
    for (int r = 0; r < reps + 1; r++) {
        double t0 = now_s();
        for (int mode = 0; mode < 3; mode++)
            for (size_t i = 0; i < ns; i++) shaped(mode, o, x, w, N, shp[i][0], shp[i][1]);
        double t = now_s() - t0;
        if (r > 0 && t < best) best = t;
    }
    free(x); free(w); free(o);
    return flops / best / 1e9;
}

/* One full training step; adds each phase's seconds into ph; returns mean loss. */
static double train_step(model_part *p, model_slot *s, optim_adamw *o, double *sq, size_t B, size_t T,
                         double ph[PH_N])
{
    int n = p->n_units;
    size_t N = B * T;
    optim_hparams h = { .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f, .weight_decay = 0.1f };
    double t0 = now_s();
    model_part_zero_grad(p);
    double loss = model_forward(p, 0, n, s, NULL, NULL, B, T);
    double t1 = now_s();
    model_backward_input(p, 0, n, s, NULL, NULL, B, T, 1.0f / (float)N);
    double t2 = now_s();
    model_backward_weight(p, 0, n, s, B, T);
    model_part_reduce_tied(p);
    double t3 = now_s();
    optim_unit_sqnorms(p, sq);
    float scale = optim_clip_scale(optim_global_norm(sq, n), 1.0);
    optim_adamw_step(o, p, &h, scale);
    double t4 = now_s();
    ph[PH_FWD] += t1 - t0; ph[PH_BWD_IN] += t2 - t1; ph[PH_BWD_W] += t3 - t2; ph[PH_OPT] += t4 - t3;
    return loss / (double)N;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_of(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return v[n / 2];
}

/* A learnable synthetic sequence (a noisy counter), so the loss visibly moves:
 * inputs in the first unit's slot, the next token as target in the head's. */
static void fill_tokens(model_slot *s, int n_units, size_t N, int V)
{
    rng_t rr = { 42 };
    for (size_t i = 0; i < N; i++) {
        int t = (int)((i * 7 + (rng_below(&rr, 4) == 0 ? rng_below(&rr, 256) : 0)) % (size_t)V);
        s[0].tokens[i] = t;
        if (i > 0) s[n_units - 1].tokens[i - 1] = t;
    }
    s[n_units - 1].tokens[N - 1] = 0;
}

/* r->steps timed steps, each followed by one pair_n^3 sgemm so the two see
 * the same load; fills the step and pairing fields of r. Steps are timed on
 * the wall clock and in process CPU time (all threads); the sgemm on the wall
 * clock at r->threads and in CPU time at one thread (a second product when
 * r->threads > 1). */
static void time_steps(bc_result *r, model_part *p, model_slot *s, optim_adamw *o, double *sq, size_t B, size_t T)
{
    const int pn = r->pair_n;
    const double pflops = 2.0 * pn * pn * pn;
    float *pa = rand_floats((size_t)pn * pn, 5), *pb = rand_floats((size_t)pn * pn, 6);
    float *pc = xcalloc((size_t)pn * pn, sizeof(float));
    size_t ns = (size_t)r->steps;
    double *times = xmalloc(ns * sizeof(double)), *pair = xmalloc(ns * sizeof(double));
    double *cpus = xmalloc(ns * sizeof(double)), *pair_cpu = xmalloc(ns * sizeof(double));
    double ph[PH_N] = { 0 }, total = 0, best = 1e30, cpu = 0;
    for (int i = 0; i < r->steps; i++) {
        double before = ph[0] + ph[1] + ph[2] + ph[3], c0 = cpu_s();
        r->loss_last = train_step(p, s, o, sq, B, T, ph);
        cpus[i] = cpu_s() - c0;
        cpu += cpus[i];
        double t = ph[0] + ph[1] + ph[2] + ph[3] - before;
        total += t;
        times[i] = t;
        if (t < best) best = t;
        double t0 = now_s(), pc0 = cpu_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, pn, pn, pn, 1.0f, pa, pn, pb, pn, 0.0f, pc, pn);
        pair_cpu[i] = pflops / (cpu_s() - pc0) / 1e9;
        pair[i] = pflops / (now_s() - t0) / 1e9;
        if (r->threads > 1) { /* the CPU-time reference is one thread's: nothing waits */
            openblas_set_num_threads(1);
            pc0 = cpu_s();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, pn, pn, pn, 1.0f, pa, pn, pb, pn, 0.0f, pc, pn);
            pair_cpu[i] = pflops / (cpu_s() - pc0) / 1e9;
            openblas_set_num_threads(r->threads);
        }
    }
    r->cpu_ms = cpu / r->steps * 1e3;
    r->cpu_ms_median = median_of(cpus, r->steps) * 1e3;
    r->step_ms_mean = total / r->steps * 1e3;
    r->step_ms_min = best * 1e3;
    r->step_ms_median = median_of(times, r->steps) * 1e3;
    r->paired_gflops = median_of(pair, r->steps);
    r->paired_cpu_gflops = median_of(pair_cpu, r->steps);
    for (int k = 0; k < PH_N; k++) r->phase_ms[k] = ph[k] / r->steps * 1e3;
    free(times); free(pair); free(cpus); free(pair_cpu); free(pa); free(pb); free(pc);
}

static void bench_model(bc_result *r)
{
    const model_config *c = &r->cfg;
    const size_t B = r->batch, T = (size_t)c->seq_len, N = B * T;
    int n = model_n_units(c);
    int *units = xmalloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) units[i] = i;
    model_part *p = model_part_new(c, units, n, B, 1337);
    model_part_set_recompute(p, r->recompute);
    model_slot *s = model_slots_new(p, 0, n, B);
    optim_adamw *o = optim_new(p->n_params);
    double *sq = xmalloc((size_t)n * sizeof(double)), ph[PH_N] = { 0 };
    fill_tokens(s, n, N, c->vocab_size);
    r->n_params = p->n_params;
    /* the model's own figures: what a one-stage run reports as
     * peak_act_bytes in summary.json (stage/train.c: the stash, plus the
     * larger of the forward's transient and one unit's fused backward work),
     * and what these split B/W steps hold (every unit's stash and work) */
    model_mem mem = model_part_mem(p, 0, n, B);
    r->peak_act_bytes = mem.stash + (mem.fwd_tmp > mem.work_unit ? mem.fwd_tmp : mem.work_unit);
    r->slots_bytes = model_slots_bytes(p, 0, n, B) + mem.fwd_tmp;
    /* what the stash would hold keeping each head's probabilities (T x T, the
     * pre-FlashAttention kernels) instead of its log-sum-exp row (T) */
    r->peak_act_bytes_probs = r->peak_act_bytes + (size_t)c->n_layers * (size_t)B * (size_t)c->n_heads * (size_t)T *
                                                      (size_t)(T - 1) * sizeof(float);
    r->step_flops = 0;
    for (int u = 0; u < n; u++) {
        model_flops f = model_unit_flops(c, u, B, T);
        r->step_flops += f.fwd + f.bwd_input + f.bwd_weight;
        if (r->recompute) r->step_flops += model_unit_recompute_flops(c, u, B, T, r->recompute);
    }
    r->tokens_per_step = (double)N;
    for (int i = 0; i < r->warmup; i++) {
        double l = train_step(p, s, o, sq, B, T, ph);
        if (i == 0) r->loss_first = l;
    }
    time_steps(r, p, s, o, sq, B, T);
    if (!r->warmup) r->loss_first = r->loss_last;
    free(sq); optim_free(o); model_slots_free(s); model_part_free(p); free(units);
}

/* Ceilings at `threads` and at 1 thread, keeping the better of two
 * measurements (before and after the steps): a burst of load from other
 * processes then spoils only one of the two. */
static void ceilings(bc_result *r, int first)
{
    int ths[2] = { r->threads, 1 };
    for (int k = 0; k < (r->threads == 1 ? 1 : 2); k++) {
        openblas_set_num_threads(ths[k]);
        double g = sgemm_square((size_t)r->ceil_n, 5);
        if (first || g > r->ceil_gflops[k]) r->ceil_gflops[k] = g;
    }
    if (r->threads == 1) r->ceil_gflops[1] = r->ceil_gflops[0];
    openblas_set_num_threads(r->threads);
    double shape = sgemm_step_shapes(&r->cfg, r->batch * (size_t)r->cfg.seq_len, r->ceil_n < BC_CEIL_N);
    if (first || shape > r->shape_gflops) r->shape_gflops = shape;
}

void bc_measure(bc_result *r)
{
    ceilings(r, 1);
    openblas_set_num_threads(r->threads);
    bench_model(r);
    ceilings(r, 0);
    double la[1];
    r->load1 = getloadavg(la, 1) == 1 ? la[0] : -1;
}
