/* gemm_rate.c — a short sgemm measurement at a model's shapes, cached per CPU
 * model, BLAS thread count and shapes (see gemm_rate.h). It does not model
 * attention or memory traffic: the caller applies MODEL_STEP_EFFICIENCY. */
#include "model/gemm_rate.h"
#include "model/util.h"

#include <cblas.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define BUDGET_S 0.15 /* measuring time, after one warm-up round */

static void add_shape(model_gemm_shape *out, size_t *n, size_t max, int m, int nn, int k)
{
    for (size_t i = 0; i < *n; i++)
        if (out[i].m == m && out[i].n == nn && out[i].k == k) return;
    if (*n < max) out[(*n)++] = (model_gemm_shape){ m, nn, k };
}

size_t model_gemm_shapes(const model_config *c, size_t rows, model_gemm_shape *out, size_t max)
{
    size_t n = 0;
    int N = (int)rows, C = c->dim, F = c->ffn_dim, KV = c->dim / c->n_heads * c->n_kv_heads;
    if (c->n_layers > 0) {
        add_shape(out, &n, max, N, C, C);  /* q, o */
        add_shape(out, &n, max, N, KV, C); /* k, v */
        add_shape(out, &n, max, N, F, C);  /* gate, up */
        add_shape(out, &n, max, N, C, F);  /* down */
    }
    add_shape(out, &n, max, N, c->vocab_size, C); /* lm_head */
    return n;
}

/* "CPU model" from /proc/cpuinfo, or "unknown CPU". */
static void cpu_model(char *buf, size_t n)
{
    snprintf(buf, n, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) || !colon) continue;
        colon += 1 + (colon[1] == ' ');
        colon[strcspn(colon, "\n")] = 0;
        snprintf(buf, n, "%s", colon);
        break;
    }
    if (f) fclose(f);
}

/* The cache file's path into p, creating its directory; -1 when there is no home. */
static int cache_path(char *p, size_t n)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char dir[4096];
    if (xdg && *xdg) snprintf(dir, sizeof dir, "%s", xdg);
    else if (home && *home) snprintf(dir, sizeof dir, "%s/.cache", home);
    else return -1;
    mkdir(dir, 0755);
    size_t len = strlen(dir);
    snprintf(dir + len, sizeof dir - len, "/pipetrain");
    if (mkdir(dir, 0755) && errno != EEXIST) return -1;
    return snprintf(p, n, "%s/sgemm.json", dir) < (int)n ? 0 : -1;
}

/* One round: every shape as forward, input-gradient and weight-gradient product. */
static double round_s(const model_gemm_shape *sh, size_t n, float *a, float *b, float *c, double *flops)
{
    double t0 = base_now();
    *flops = 0;
    for (size_t i = 0; i < n; i++) {
        int m = sh[i].m, nn = sh[i].n, k = sh[i].k;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, nn, k, 1.0f, a, k, b, k, 0.0f, c, nn);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, k, nn, 1.0f, c, nn, b, k, 0.0f, a, k);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nn, k, m, 1.0f, c, nn, a, k, 1.0f, b, k);
        *flops += 3 * 2.0 * m * nn * k;
    }
    return base_now() - t0;
}

static int cmp_dbl(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static double measure(const model_gemm_shape *sh, size_t n, int threads)
{
    size_t big = 1;
    for (size_t i = 0; i < n; i++) {
        size_t mk = (size_t)sh[i].m * sh[i].k, nk = (size_t)sh[i].n * sh[i].k, mn = (size_t)sh[i].m * sh[i].n;
        big = mk > big ? mk : big;
        big = nk > big ? nk : big;
        big = mn > big ? mn : big;
    }
    float *a = calloc(big, sizeof(float)), *b = calloc(big, sizeof(float)), *c = calloc(big, sizeof(float));
    double rates[256], flops, gf = 0;
    int nr = 0, old = openblas_get_num_threads();
    if (a && b && c) {
        for (size_t i = 0; i < big; i++) a[i] = b[i] = 1e-3f * (float)(i % 97);
        openblas_set_num_threads(threads);
        round_s(sh, n, a, b, c, &flops); /* warm-up: caches, thread pool */
        for (double t0 = base_now(); nr < 256 && (nr < 3 || base_now() - t0 < BUDGET_S);) {
            double dt = round_s(sh, n, a, b, c, &flops);
            if (dt > 0) rates[nr++] = flops / dt / 1e9;
        }
        openblas_set_num_threads(old);
        qsort(rates, (size_t)nr, sizeof *rates, cmp_dbl);
        gf = nr ? rates[nr * 3 / 4] : 0; /* upper quartile: a shared machine only slows rounds down */
    }
    free(a);
    free(b);
    free(c);
    return gf;
}

double model_sgemm_gflops(const model_gemm_shape *shapes, size_t n, int threads, char *where, size_t wn,
                          int *cached)
{
    char key[1024], cpu[256], path[4200];
    size_t len;
    int use_cache = !(getenv("PIPETRAIN_NO_CACHE") && !strcmp(getenv("PIPETRAIN_NO_CACHE"), "1"));
    if (cached) *cached = 0;
    if (n == 0 || threads < 1) return 0;
    cpu_model(cpu, sizeof cpu);
    len = (size_t)snprintf(key, sizeof key, "%s|threads=%d|", cpu, threads);
    for (size_t i = 0; i < n && len < sizeof key; i++)
        len += (size_t)snprintf(key + len, sizeof key - len, "%s%dx%dx%d", i ? "," : "", shapes[i].m, shapes[i].n,
                                shapes[i].k);
    if (use_cache && cache_path(path, sizeof path)) use_cache = 0;
    if (where) snprintf(where, wn, "%s", use_cache ? path : "not cached (PIPETRAIN_NO_CACHE=1 or no home)");
    json_t *root = use_cache ? json_load_file(path, 0, NULL) : NULL;
    if (!json_is_object(root)) { json_decref(root); root = json_object(); }
    json_t *hit = json_object_get(root, key);
    if (use_cache && json_is_number(hit) && json_number_value(hit) > 0) {
        double v = json_number_value(hit);
        json_decref(root);
        if (cached) *cached = 1;
        return v;
    }
    double gf = measure(shapes, n, threads);
    if (use_cache && gf > 0 && root) {
        char err[ERR_LEN];
        json_object_set_new(root, key, json_real(gf));
        char *text = json_dumps(root, JSON_INDENT(1) | JSON_SORT_KEYS);
        if (!text || base_write_durable(path, text, strlen(text), err))
            if (where) snprintf(where, wn, "not cached (%s)", text ? err : "out of memory");
        free(text);
    }
    json_decref(root);
    return gf;
}
