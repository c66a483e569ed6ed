/* bench_compute_out.c — `pipetrain bench compute`: the presets, the options
 * (--preset, --set, --threads, --steps, --warmup, --json, --markdown) and the
 * three ways of printing what bench_compute.c measured. It measures nothing
 * itself. */
#include "bench/bench_compute.h"
#include "bench/bench_compute_int.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

/* The presets: the shakespeare recipe as the project has always benched it,
 * and llama2.c's stories15M and stories42M shapes (ffn_dim as llama2.c's
 * hidden_dim) with a byte vocabulary. Step counts keep one run of all three
 * near two minutes on 2 cores. */
typedef struct {
    const char *name;
    model_config cfg;
    size_t batch;
    int steps, warmup;
} preset;

static const preset presets[] = {
    { "recipe", { 128, 4, 4, 4, 384, 256, 64, 1e-5f, 10000, 0 }, 12, 50, 5 },
    { "15m", { 288, 6, 6, 6, 768, 256, 256, 1e-5f, 10000, 0 }, 8, 10, 2 },
    { "42m", { 512, 8, 8, 8, 1376, 256, 1024, 1e-5f, 10000, 0 }, 4, 3, 1 },
};
enum { N_PRESETS = sizeof presets / sizeof presets[0], MAX_THREADS_LIST = 4, MAX_SETS = 64 };

static double achieved(const bc_result *r) { return r->step_flops / (r->step_ms_mean * 1e-3) / 1e9; }
static double paired_ratio(const bc_result *r)
{
    return r->step_flops / (r->step_ms_median * 1e-3) / 1e9 / r->paired_gflops;
}
/* The paired ratio in CPU time: GFLOP per CPU second of the step (all its
 * threads, waiting and spinning included) against the same of a one-thread
 * sgemm after it: how much of one core's sgemm efficiency each core spends
 * on the step. Other processes stretch wall time but hardly CPU time, so on
 * a busy machine this is the steadiest figure. */
static double cpu_ratio(const bc_result *r)
{
    return r->step_flops / (r->cpu_ms_median * 1e-3) / 1e9 / r->paired_cpu_gflops;
}

static void print_table(const bc_result *r)
{
    const model_config *c = &r->cfg;
    double gf = achieved(r);
    printf("bench compute: %s (dim %d, %d layers, %d heads, ffn %d, vocab %d, T %d, batch %zu, recompute %s; "
           "%zu parameters), %d BLAS thread%s, %d steps after %d warm-up\n", r->preset, c->dim, c->n_layers,
           c->n_heads, c->ffn_dim, c->vocab_size, c->seq_len, r->batch, model_recompute_name(r->recompute),
           r->n_params, r->threads, r->threads == 1 ? "" : "s", r->steps, r->warmup);
    printf("  sgemm ceiling (%d^3, best of 10)   %8.1f GFLOP/s at %d thread%s, %.1f at 1 thread\n", r->ceil_n,
           r->ceil_gflops[0], r->threads, r->threads == 1 ? "" : "s", r->ceil_gflops[1]);
    printf("  sgemm at the step's shapes (N=%.0f) %8.1f GFLOP/s\n", r->tokens_per_step, r->shape_gflops);
    printf("  step                               %8.2f ms mean, %.2f median, %.2f best; %.2f ms CPU (all threads)\n",
           r->step_ms_mean, r->step_ms_median, r->step_ms_min, r->cpu_ms);
    printf("  tokens/s                           %8.0f\n", r->tokens_per_step / (r->step_ms_mean * 1e-3));
    printf("  FLOP per step                      %8.3f GFLOP\n", r->step_flops / 1e9);
    printf("  achieved                           %8.1f GFLOP/s\n", gf);
    printf("  ratio to sgemm ceiling             %8.1f %%\n", 100 * gf / r->ceil_gflops[0]);
    printf("  ratio to step-shape sgemm          %8.1f %%\n", 100 * gf / r->shape_gflops);
    printf("  ratio at the best step             %8.1f %%\n",
           100 * r->step_flops / (r->step_ms_min * 1e-3) / 1e9 / r->ceil_gflops[0]);
    printf("  paired ratio (load-robust)         %8.1f %%  median step vs median %d^3 sgemm run after each step"
           " (%.1f GFLOP/s)\n", 100 * paired_ratio(r), r->pair_n, r->paired_gflops);
    printf("  CPU-time ratio (load-robust)       %8.1f %%  GFLOP per CPU second, step (all threads) %.1f against"
           " a 1-thread sgemm %.1f\n", 100 * cpu_ratio(r), r->step_flops / (r->cpu_ms_median * 1e-3) / 1e9, r->paired_cpu_gflops);
    printf("  peak activation bytes              %8.1f MiB (one-stage run, as summary.json reports it; these "
           "split B/W steps hold %.1f MiB)\n", r->peak_act_bytes / 1048576.0, r->slots_bytes / 1048576.0);
    printf("  storing attention probabilities    %8.1f MiB (the peak is %.1f %% of it)\n",
           r->peak_act_bytes_probs / 1048576.0, 100.0 * (double)r->peak_act_bytes / (double)r->peak_act_bytes_probs);
    printf("  phases (ms/step):");
    for (int k = 0; k < PH_N; k++)
        printf(" %s %.2f (%.0f%%)%s", bc_phase_name[k], r->phase_ms[k], 100 * r->phase_ms[k] / r->step_ms_mean,
               k + 1 < PH_N ? "," : "\n");
    printf("  loss %.3f -> %.3f; load average %.2f (other processes make every figure noisy)\n", r->loss_first,
           r->loss_last, r->load1);
}

static void print_json(const bc_result *r)
{
    const model_config *c = &r->cfg;
    double gf = achieved(r);
    printf("{\"preset\":\"%s\",\"threads\":%d,\"dim\":%d,\"n_layers\":%d,\"n_heads\":%d,\"n_kv_heads\":%d,"
           "\"ffn_dim\":%d,\"vocab_size\":%d,\"seq_len\":%d,\"batch\":%zu,\"tie_embeddings\":%d,\"recompute\":\"%s\","
           "\"params\":%zu,\"steps\":%d,\"warmup\":%d,",
           r->preset, r->threads, c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->ffn_dim, c->vocab_size,
           c->seq_len, r->batch, c->tie_embeddings, model_recompute_name(r->recompute), r->n_params, r->steps,
           r->warmup);
    printf("\"sgemm_n\":%d,\"sgemm_gflops\":%.3f,\"sgemm_gflops_1t\":%.3f,\"shape_sgemm_gflops\":%.3f,"
           "\"step_ms\":%.4f,\"step_ms_median\":%.4f,\"step_ms_best\":%.4f,\"step_cpu_ms\":%.4f,"
           "\"tokens_per_s\":%.1f,\"flops_per_step\":%.0f,\"achieved_gflops\":%.3f,\"ratio\":%.4f,"
           "\"ratio_shape\":%.4f,\"paired_sgemm_gflops\":%.3f,\"ratio_paired\":%.4f,\"step_cpu_ms_median\":%.4f,"
           "\"paired_sgemm_gflops_per_cpu_s\":%.3f,\"ratio_cpu\":%.4f,"
           "\"peak_act_bytes\":%zu,\"peak_act_bytes_storing_probs\":%zu,\"bench_act_bytes\":%zu,\"phases_ms\":{",
           r->ceil_n, r->ceil_gflops[0], r->ceil_gflops[1], r->shape_gflops, r->step_ms_mean, r->step_ms_median,
           r->step_ms_min, r->cpu_ms, r->tokens_per_step / (r->step_ms_mean * 1e-3), r->step_flops, gf,
           gf / r->ceil_gflops[0], gf / r->shape_gflops, r->paired_gflops, paired_ratio(r), r->cpu_ms_median,
           r->paired_cpu_gflops, cpu_ratio(r), r->peak_act_bytes, r->peak_act_bytes_probs,
           r->slots_bytes);
    for (int k = 0; k < PH_N; k++) printf("%s\"%s\":%.4f", k ? "," : "", bc_phase_name[k], r->phase_ms[k]);
    printf("},\"phases_share\":{");
    for (int k = 0; k < PH_N; k++)
        printf("%s\"%s\":%.4f", k ? "," : "", bc_phase_name[k], r->phase_ms[k] / r->step_ms_mean);
    printf("},\"loss_first\":%.4f,\"loss_last\":%.4f,\"loadavg_1m\":%.2f}", r->loss_first, r->loss_last, r->load1);
}

static void print_markdown_head(void)
{
    printf("| preset | BLAS threads | tokens/s | step ms (median) | GFLOP/s | sgemm ceiling, this / 1 thread "
           "| ratio | paired ratio | CPU-time ratio | peak act. MiB | forward / B / W / AdamW | load |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
}

static void print_markdown(const bc_result *r)
{
    printf("| %s | %d | %.0f | %.1f | %.1f | %.1f / %.1f | %.1f%% | %.1f%% | %.1f%% | %.1f | ", r->preset,
           r->threads, r->tokens_per_step / (r->step_ms_mean * 1e-3), r->step_ms_median, achieved(r),
           r->ceil_gflops[0], r->ceil_gflops[1], 100 * achieved(r) / r->ceil_gflops[0], 100 * paired_ratio(r),
           100 * cpu_ratio(r), r->peak_act_bytes / 1048576.0);
    for (int k = 0; k < PH_N; k++)
        printf("%.0f%s", 100 * r->phase_ms[k] / r->step_ms_mean, k + 1 < PH_N ? " / " : "%");
    printf(" | %.2f |\n", r->load1);
}

static int usage(FILE *f, int rc)
{
    fprintf(f,
            "usage: pipetrain bench compute [--preset recipe|15m|42m|all ...] [--set KEY=VALUE ...]\n"
            "                               [--threads N[,N...] (default 2)] [--steps N] [--warmup N]\n"
            "                               [--json | --markdown] [--quick]\n"
            "  Measures the OpenBLAS sgemm ceiling (at N threads and at 1) and full training\n"
            "  steps (forward, backward, AdamW) of one-stage models on a built-in synthetic\n"
            "  token sequence (no files) at N BLAS threads; prints tokens/s, step ms, achieved\n"
            "  GFLOP/s, its ratio to the ceiling, the peak activation bytes and a per-phase\n"
            "  breakdown. Presets (byte vocabulary):\n"
            "    recipe  dim 128, 4 layers, 4 heads, ffn 384, T 64, batch 12   (50 steps)\n"
            "    15m     dim 288, 6 layers, 6 heads, ffn 768, T 256, batch 8   (10 steps)\n"
            "    42m     dim 512, 8 layers, 8 heads, ffn 1376, T 1024, batch 4 (3 steps)\n"
            "  Without --preset, all three (about two minutes on 2 cores). --set overrides a\n"
            "  field of every preset run: dim, n_layers, n_heads, n_kv_heads, ffn_dim,\n"
            "  vocab_size, seq_len, tie_embeddings (0/1), batch, recompute\n"
            "  (none|selective|full); a \"model.\" prefix is accepted. --steps and --warmup\n"
            "  override the presets' counts. --json prints one object with a \"runs\" list;\n"
            "  --markdown the README's table. --quick (for tests) shrinks the ceiling and\n"
            "  paired products to 256^3 and 128^3: its ratios mean nothing. Other processes\n"
            "  on the machine lower every figure; the paired ratio (step against a %d^3 sgemm\n"
            "  run after each step) and the CPU-time ratio (GFLOP per CPU second of the\n"
            "  step, all threads, against a 1-thread sgemm's) are the least sensitive.\n", BC_PAIR_N);
    return rc;
}

static int bad(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "pipetrain bench compute: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return 2;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

/* Applies one KEY=VALUE to r; 0, or 2 after printing what was wrong. */
static int apply_set(bc_result *r, const char *kv)
{
    static const struct { const char *key; size_t off; int lo, hi; } ints[] = {
        { "dim", offsetof(model_config, dim), 1, 1 << 16 },
        { "n_layers", offsetof(model_config, n_layers), 1, 4096 },
        { "n_heads", offsetof(model_config, n_heads), 1, 4096 },
        { "n_kv_heads", offsetof(model_config, n_kv_heads), 1, 4096 },
        { "ffn_dim", offsetof(model_config, ffn_dim), 1, 1 << 18 },
        { "vocab_size", offsetof(model_config, vocab_size), 1, 1 << 20 },
        { "seq_len", offsetof(model_config, seq_len), 1, 1 << 16 },
        { "tie_embeddings", offsetof(model_config, tie_embeddings), 0, 1 },
    };
    const char *eq = strchr(kv, '=');
    if (!eq) return bad("--set '%s'%s: expected KEY=VALUE", kv, "");
    char key[64];
    size_t kl = (size_t)(eq - kv);
    if (!strncmp(kv, "model.", 6) && kl > 6) { kv += 6; kl -= 6; }
    if (kl >= sizeof key) kl = sizeof key - 1;
    memcpy(key, kv, kl);
    key[kl] = 0;
    const char *val = eq + 1;
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        if (strcmp(key, ints[i].key)) continue;
        char range[64];
        snprintf(range, sizeof range, "an integer in %d..%d", ints[i].lo, ints[i].hi);
        if (parse_int(val, ints[i].lo, ints[i].hi, (int *)((char *)&r->cfg + ints[i].off)))
            return bad("--set %s: expected %s", key, range);
        return 0;
    }
    if (!strcmp(key, "batch")) {
        int b;
        if (parse_int(val, 1, 1 << 16, &b)) return bad("--set %s: expected %s", key, "an integer in 1..65536");
        r->batch = (size_t)b;
        return 0;
    }
    if (!strcmp(key, "recompute")) {
        for (int m = 0; model_recompute_name(m); m++)
            if (!strcmp(val, model_recompute_name(m))) { r->recompute = m; return 0; }
        return bad("--set %s: expected %s", key, "one of none, selective, full");
    }
    return bad("--set: unknown key '%s'%s (dim, n_layers, n_heads, n_kv_heads, ffn_dim, vocab_size, seq_len, "
               "tie_embeddings, batch, recompute)", key, "");
}

typedef struct {
    int json, markdown, quick, steps, warmup, n_threads, n_sets;
    int threads[MAX_THREADS_LIST], use[N_PRESETS];
    const char *sets[MAX_SETS];
} options;

static int parse_threads(options *o, const char *s)
{
    char buf[64];
    if (strlen(s) >= sizeof buf) return -1;
    strcpy(buf, s);
    o->n_threads = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (o->n_threads == MAX_THREADS_LIST || parse_int(t, 1, 256, &o->threads[o->n_threads++])) return -1;
    }
    return o->n_threads ? 0 : -1;
}

static int parse_options(options *o, int argc, char **argv)
{
    int any = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout, 0) - 1;
        if (!strcmp(a, "--json")) { o->json = 1; continue; }
        if (!strcmp(a, "--markdown")) { o->markdown = 1; continue; }
        if (!strcmp(a, "--quick")) { o->quick = 1; continue; }
        static const char *const valued[] = { "--threads", "--steps", "--warmup", "--set", "--preset" };
        int known = 0;
        for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++) known |= !strcmp(a, valued[k]);
        if (!known) {
            fprintf(stderr, "pipetrain bench compute: unknown option '%s'\n", a);
            return usage(stderr, 2);
        }
        if (!v) return bad("option '%s'%s needs a value", a, "");
        i++;
        if (!strcmp(a, "--threads")) {
            if (parse_threads(o, v)) return bad("--threads: expected N or N,N,... (1..256, up to 4), got '%s'%s", v, "");
        } else if (!strcmp(a, "--steps") || !strcmp(a, "--warmup")) {
            int *dst = a[2] == 's' ? &o->steps : &o->warmup;
            if (parse_int(v, a[2] == 's', 1000000, dst)) return bad("%s: expected a count, got '%s'", a, v);
        } else if (!strcmp(a, "--set")) {
            if (o->n_sets == MAX_SETS) return bad("--set: more than 64%s%s", "", "");
            o->sets[o->n_sets++] = v;
        } else if (!strcmp(a, "--preset")) {
            int found = 0;
            for (int k = 0; k < N_PRESETS; k++)
                if (!strcmp(v, presets[k].name) || !strcmp(v, "all")) o->use[k] = found = 1;
            if (!found) return bad("--preset: unknown preset '%s'%s (recipe, 15m, 42m, all)", v, "");
            any = 1;
        }
    }
    if (o->json && o->markdown) return bad("--json and --markdown: choose one%s%s", "", "");
    if (!any)
        for (int k = 0; k < N_PRESETS; k++) o->use[k] = 1;
    return 0;
}

/* r for preset k with the options applied; 0, or 2 after a message. */
static int setup_run(bc_result *r, const options *o, int k, int threads)
{
    memset(r, 0, sizeof *r);
    r->preset = presets[k].name;
    r->cfg = presets[k].cfg;
    r->batch = presets[k].batch;
    r->steps = o->steps ? o->steps : presets[k].steps;
    r->warmup = o->warmup >= 0 ? o->warmup : presets[k].warmup;
    r->threads = threads;
    r->ceil_n = o->quick ? BC_QUICK_CEIL_N : BC_CEIL_N;
    r->pair_n = o->quick ? BC_QUICK_PAIR_N : BC_PAIR_N;
    for (int i = 0; i < o->n_sets; i++)
        if (apply_set(r, o->sets[i])) return 2;
    char err[ERR_LEN];
    if (model_config_check(&r->cfg, err)) return bad("--set: %s%s", err, "");
    return 0;
}

int bench_compute_main(int argc, char **argv)
{
    options o = { .warmup = -1, .n_threads = 1, .threads = { 2 } };
    int rc = parse_options(&o, argc, argv);
    if (rc) return rc < 0 ? 0 : (fprintf(stderr, "  (pipetrain bench compute --help)\n"), rc);
    /* every run's options are checked before the first one is measured */
    bc_result r;
    for (int k = 0; k < N_PRESETS; k++)
        if (o.use[k] && setup_run(&r, &o, k, o.threads[0])) return 2;
    if (o.json) printf("{\"bench\":\"compute\",\"runs\":[");
    if (o.markdown) print_markdown_head();
    int first = 1;
    for (int k = 0; k < N_PRESETS; k++) {
        if (!o.use[k]) continue;
        for (int t = 0; t < o.n_threads; t++) {
            setup_run(&r, &o, k, o.threads[t]);
            bc_measure(&r);
            if (o.json) { printf("%s", first ? "" : ","); print_json(&r); }
            else if (o.markdown) print_markdown(&r);
            else print_table(&r);
            first = 0;
            fflush(stdout);
        }
    }
    if (o.json) printf("]}\n");
    return 0;
}
