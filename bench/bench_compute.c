/* bench_compute.c — `pipetrain bench compute`. In one run, at one BLAS thread
 * count, measures:
 *   1. the OpenBLAS sgemm ceiling (large square product, best of several reps);
 *   2. the sgemm rate at the training step's own matmul shapes (N = batch·seq
 *      rows against dim × dim / ffn_dim weights, all three transposition cases),
 *      the realistic ceiling for a model this small;
 *   3. full training steps of the shakespeare-1stage model (zero_grad, forward,
 *      backward-input, backward-weight, grad norm, AdamW) on a built-in noisy
 *      counter sequence, with achieved FLOP/s from model_unit_flops, a per-phase
 *      breakdown, and a 1024^3 sgemm after every step for a load-robust ratio.
 * It reads no files. It is a benchmark, not a test: it asserts nothing. */
#include "bench/bench_compute.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/model.h"
#include "model/optim.h"
#include "model/util.h"

enum { PH_FWD, PH_BWD_IN, PH_BWD_W, PH_OPT, PH_N };
static const char *const phase_name[PH_N] = { "forward", "backward_input", "backward_weight", "optimizer" };

typedef struct {
    int threads, steps, warmup, json;
    double ceil_gflops, ceil_ms;   /* square sgemm */
    size_t ceil_n;
    double shape_gflops;           /* step-shaped sgemm set */
    double step_flops;             /* per step, from model_unit_flops */
    double step_ms_mean, step_ms_min, step_ms_median, phase_ms[PH_N];
    double cpu_ms;                 /* process CPU time per step, all threads */
    double paired_gflops;          /* median rate of a PAIR_N^3 sgemm run right after each step */
    double load1;                  /* 1-minute load average at the end (noise hint) */
    double tokens_per_step, loss_first, loss_last;
    double act_bytes, act_bytes_probs; /* the step's activations (model_part_mem: stash + backward work of
                                        * every unit), and what they would be storing attention probabilities */
} bench_result;

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
static double sgemm_square(size_t n, int reps, double *best_ms)
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
    *best_ms = best * 1e3;
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

/* GFLOP/s of the step's own sgemm calls: per block q,k,v,o (C→C / C→KV),
 * gate, up (C→F), down (F→C), in each of the three modes, plus the head
 * (C→V); best of reps over the whole set. */
static double sgemm_step_shapes(const model_config *c, size_t N, int reps)
{
    size_t C = (size_t)c->dim, F = (size_t)c->ffn_dim, V = (size_t)c->vocab_size;
    size_t KV = C / (size_t)c->n_heads * (size_t)c->n_kv_heads;
    size_t shp[][2] = { { C, C }, { C, KV }, { C, KV }, { C, C }, { C, F }, { C, F }, { F, C }, { C, V } };
    size_t ns = sizeof shp / sizeof shp[0], big = (F > V ? F : V) > C ? (F > V ? F : V) : C;
    float *x = rand_floats(N * big, 3), *w = rand_floats(big * big, 4), *o = xcalloc(N * big, sizeof(float));
    double flops = 0, best = 1e30;
    for (size_t i = 0; i < ns; i++) flops += 3 * 2.0 * (double)N * shp[i][0] * shp[i][1];
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

static model_config shakespeare_config(void)
{
    model_config c = { .dim = 128, .n_layers = 4, .n_heads = 4, .n_kv_heads = 4, .ffn_dim = 384,
                       .vocab_size = 256, .seq_len = 64, .norm_eps = 1e-5f, .rope_theta = 10000,
                       .tie_embeddings = 0 };
    return c;
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

enum { PAIR_N = 1024 };

static double median_of(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return v[n / 2];
}

/* A learnable synthetic sequence (a noisy counter), so the loss visibly moves:
 * inputs in the first unit's slot, the next token as target in the head's. */
static void fill_tokens(model_slot *s, int n_units, size_t N)
{
    rng_t rr = { 42 };
    for (size_t i = 0; i < N; i++) {
        int t = (int)((i * 7 + (rng_below(&rr, 4) == 0 ? rng_below(&rr, 256) : 0)) % 256);
        s[0].tokens[i] = t;
        if (i > 0) s[n_units - 1].tokens[i - 1] = t;
    }
    s[n_units - 1].tokens[N - 1] = 0;
}

/* r->steps timed steps, each followed by one PAIR_N^3 sgemm so the two see
 * the same load; fills the step and pairing fields of r. */
static void time_steps(bench_result *r, model_part *p, model_slot *s, optim_adamw *o, double *sq, size_t B,
                       size_t T)
{
    const int pn = PAIR_N;
    float *pa = rand_floats((size_t)pn * pn, 5), *pb = rand_floats((size_t)pn * pn, 6);
    float *pc = xcalloc((size_t)pn * pn, sizeof(float));
    double *times = xmalloc((size_t)r->steps * sizeof(double)), *pair = xmalloc((size_t)r->steps * sizeof(double));
    double ph[PH_N] = { 0 }, total = 0, best = 1e30, cpu = 0;
    for (int i = 0; i < r->steps; i++) {
        double before = ph[0] + ph[1] + ph[2] + ph[3], c0 = cpu_s();
        r->loss_last = train_step(p, s, o, sq, B, T, ph);
        cpu += cpu_s() - c0;
        double t = ph[0] + ph[1] + ph[2] + ph[3] - before;
        total += t;
        times[i] = t;
        if (t < best) best = t;
        double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, pn, pn, pn, 1.0f, pa, pn, pb, pn, 0.0f, pc, pn);
        pair[i] = 2.0 * pn * pn * pn / (now_s() - t0) / 1e9;
    }
    r->cpu_ms = cpu / r->steps * 1e3;
    r->step_ms_mean = total / r->steps * 1e3;
    r->step_ms_min = best * 1e3;
    r->step_ms_median = median_of(times, r->steps) * 1e3;
    r->paired_gflops = median_of(pair, r->steps);
    for (int k = 0; k < PH_N; k++) r->phase_ms[k] = ph[k] / r->steps * 1e3;
    free(times); free(pair); free(pa); free(pb); free(pc);
}

static void bench_model(bench_result *r)
{
    model_config c = shakespeare_config();
    const size_t B = 12, T = (size_t)c.seq_len, N = B * T;
    int n = model_n_units(&c);
    int *units = xmalloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) units[i] = i;
    model_part *p = model_part_new(&c, units, n, B, 1337);
    model_slot *s = model_slots_new(p, 0, n, B);
    optim_adamw *o = optim_new(p->n_params);
    double *sq = xmalloc((size_t)n * sizeof(double)), ph[PH_N] = { 0 };
    fill_tokens(s, n, N);
    r->step_flops = 0;
    for (int u = 0; u < n; u++) {
        model_flops f = model_unit_flops(&c, u, B, T);
        r->step_flops += f.fwd + f.bwd_input + f.bwd_weight;
    }
    r->tokens_per_step = (double)N;
    model_mem mem = model_part_mem(p, 0, n, B);
    r->act_bytes = (double)(mem.stash + mem.work);
    r->act_bytes_probs = r->act_bytes + (double)c.n_layers * B * c.n_heads * T * (T - 1) * sizeof(float);
    for (int i = 0; i < r->warmup; i++) {
        double l = train_step(p, s, o, sq, B, T, ph);
        if (i == 0) r->loss_first = l;
    }
    time_steps(r, p, s, o, sq, B, T);
    free(sq); optim_free(o); model_slots_free(s); model_part_free(p); free(units);
}

static void print_table(const bench_result *r)
{
    double gf = r->step_flops / (r->step_ms_mean * 1e-3) / 1e9;
    printf("bench compute: shakespeare-1stage (dim 128, 4 layers, ffn 384, vocab 256, T 64, batch 12), "
           "%d BLAS thread%s, %d steps after %d warm-up\n", r->threads, r->threads == 1 ? "" : "s", r->steps,
           r->warmup);
    printf("  sgemm ceiling (%zu^3, best of 10)   %8.1f GFLOP/s\n", r->ceil_n, r->ceil_gflops);
    printf("  sgemm at the step's shapes (N=%.0f)  %8.1f GFLOP/s\n", r->tokens_per_step, r->shape_gflops);
    printf("  step                               %8.2f ms mean, %.2f median, %.2f best; %.2f ms CPU (all threads)\n",
           r->step_ms_mean, r->step_ms_median, r->step_ms_min, r->cpu_ms);
    printf("  tokens/s                           %8.0f\n", r->tokens_per_step / (r->step_ms_mean * 1e-3));
    printf("  FLOP per step                      %8.3f GFLOP\n", r->step_flops / 1e9);
    printf("  achieved                           %8.1f GFLOP/s\n", gf);
    printf("  ratio to sgemm ceiling             %8.1f %%\n", 100 * gf / r->ceil_gflops);
    printf("  ratio to step-shape sgemm          %8.1f %%\n", 100 * gf / r->shape_gflops);
    printf("  ratio at the best step             %8.1f %%\n",
           100 * r->step_flops / (r->step_ms_min * 1e-3) / 1e9 / r->ceil_gflops);
    printf("  paired ratio (load-robust)         %8.1f %%  median step vs median %d^3 sgemm run after each step"
           " (%.1f GFLOP/s)\n", 100 * r->step_flops / (r->step_ms_median * 1e-3) / 1e9 / r->paired_gflops,
           PAIR_N, r->paired_gflops);
    printf("  phases (ms/step):");
    for (int k = 0; k < PH_N; k++)
        printf(" %s %.2f (%.0f%%)%s", phase_name[k], r->phase_ms[k], 100 * r->phase_ms[k] / r->step_ms_mean,
               k + 1 < PH_N ? "," : "\n");
    printf("  activation bytes                   %8.0f  (stash + backward work; %.0f storing attention"
           " probabilities: %.1f%%)\n", r->act_bytes, r->act_bytes_probs, 100 * r->act_bytes / r->act_bytes_probs);
    printf("  loss %.3f -> %.3f; load average %.2f (other processes make every figure noisy)\n",
           r->loss_first, r->loss_last, r->load1);
}

static void print_json(const bench_result *r)
{
    double gf = r->step_flops / (r->step_ms_mean * 1e-3) / 1e9;
    printf("{\"bench\":\"compute\",\"model\":\"shakespeare-1stage\",\"threads\":%d,\"steps\":%d,"
           "\"warmup\":%d,\"batch\":12,\"seq_len\":64,\"sgemm_n\":%zu,\"sgemm_gflops\":%.3f,"
           "\"shape_sgemm_gflops\":%.3f,\"step_ms\":%.4f,\"step_ms_median\":%.4f,\"step_ms_best\":%.4f,\"step_cpu_ms\":%.4f,\"tokens_per_s\":%.1f,"
           "\"flops_per_step\":%.0f,\"achieved_gflops\":%.3f,\"ratio\":%.4f,\"ratio_shape\":%.4f,\"paired_sgemm_gflops\":%.3f,\"ratio_paired\":%.4f,"
           "\"phases_ms\":{",
           r->threads, r->steps, r->warmup, r->ceil_n, r->ceil_gflops, r->shape_gflops, r->step_ms_mean,
           r->step_ms_median, r->step_ms_min, r->cpu_ms, r->tokens_per_step / (r->step_ms_mean * 1e-3), r->step_flops, gf,
           gf / r->ceil_gflops, gf / r->shape_gflops, r->paired_gflops,
           r->step_flops / (r->step_ms_median * 1e-3) / 1e9 / r->paired_gflops);
    for (int k = 0; k < PH_N; k++) printf("%s\"%s\":%.4f", k ? "," : "", phase_name[k], r->phase_ms[k]);
    printf("},\"act_bytes\":%.0f,\"act_bytes_storing_probs\":%.0f,\"loss_first\":%.4f,\"loss_last\":%.4f,"
           "\"loadavg_1m\":%.2f}\n", r->act_bytes, r->act_bytes_probs, r->loss_first, r->loss_last, r->load1);
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

static int usage(FILE *f, int rc)
{
    fprintf(f, "usage: pipetrain bench compute [--json] [--threads N (default 2)] [--steps N (default 50)]\n"
               "  Measures the OpenBLAS sgemm ceiling and full training steps (forward, backward,\n"
               "  AdamW) of the shakespeare-1stage model (batch 12, a built-in synthetic token\n"
               "  sequence, no files) at N BLAS threads; prints tokens/s, step ms, achieved GFLOP/s,\n"
               "  its ratio to the ceiling and a per-phase breakdown. Other processes on the\n"
               "  machine lower every figure; the paired ratio is the least sensitive to them.\n");
    return rc;
}

int bench_compute_main(int argc, char **argv)
{
    bench_result r = { .threads = 2, .steps = 50, .warmup = 5 };
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return usage(stdout, 0);
        if (!strcmp(argv[i], "--json")) { r.json = 1; continue; }
        int *dst = !strcmp(argv[i], "--threads") ? &r.threads : !strcmp(argv[i], "--steps") ? &r.steps : NULL;
        int hi = dst == &r.threads ? 256 : 1000000;
        if (!dst || i + 1 >= argc || parse_int(argv[i + 1], 1, hi, dst)) {
            fprintf(stderr, "pipetrain bench compute: bad option '%s'%s%s\n", argv[i], i + 1 < argc ? " " : "",
                    i + 1 < argc && dst ? argv[i + 1] : "");
            return usage(stderr, 2);
        }
        i++;
    }
    openblas_set_num_threads(r.threads);
    model_config c = shakespeare_config();
    /* ceilings before and after the steps, keeping the better: a burst of
     * load from other processes then spoils only one of the two */
    r.ceil_n = 1536;
    r.ceil_gflops = sgemm_square(r.ceil_n, 5, &r.ceil_ms);
    r.shape_gflops = sgemm_step_shapes(&c, 12 * (size_t)c.seq_len, 20);
    bench_model(&r);
    double ms, again = sgemm_square(r.ceil_n, 5, &ms), shape = sgemm_step_shapes(&c, 12 * (size_t)c.seq_len, 20);
    if (again > r.ceil_gflops) { r.ceil_gflops = again; r.ceil_ms = ms; }
    if (shape > r.shape_gflops) r.shape_gflops = shape;
    double la[1];
    r.load1 = getloadavg(la, 1) == 1 ? la[0] : -1;
    if (r.json) print_json(&r); else print_table(&r);
    return 0;
}
