/* bench_pipeline.c — `pipetrain bench pipeline`. Three real training runs of the
 * same model (the shakespeare-1stage topology's) with the same global batch and
 * M micro-batches, one at a time, each a `pipetrain run` child process on a
 * generated loopback topology in a temporary directory (no validation split):
 *   1. one stage, 1 BLAS thread (the baseline);
 *   2. two stages, 1 BLAS thread each, GPipe;
 *   3. the same under 1F1B;
 * in R rounds that interleave the three, each keeping its fastest run.
 * Throughput is the median step time from metrics.jsonl, skipping the warm-up
 * steps and the last one (which also evaluates and checkpoints); per-stage
 * compute, wait and optimizer times come from summary.json.
 *
 * The gap between the measured 2-stage step time T2 and the ideal T1/S (S =
 * P·M/(M+P−1)) is split with the pipeline model of a flush schedule, using c_k
 * = stage k's compute per micro-batch and o = the smaller per-step optimizer
 * time (the other stage's includes waiting for the last backward):
 *   balanced  Tb = (M+P−1)·mean(c) + o     free transfers, even split
 *   actual    Ti = (M−1)·max(c) + Σc + o   free transfers, the split as it is
 *   compute overhead = Tb − T1/S (the split's compute costing more than T1's)
 *   imbalance        = Ti − Tb
 *   transfer & waits = T2 − Ti (moving tensors, waking up, everything else).
 * The runs use a private copy of the binary, so a rebuild of the checkout
 * during the bench cannot mix two programs.
 * It asserts nothing: a benchmark, not a test. Not here: more than 2 stages,
 * interleaved schedules (`pipetrain schedule` simulates those). */
#include "bench/bench_pipeline.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "model/util.h"
#include "topo/topo.h"

enum { MAX_P = 2, N_RUNS = 3, MAX_ROUNDS = 20 };

typedef struct {
    int json, steps, warmup, batch, micro, split, keep, rounds;
    const char *topology, *data, *bin;
} opts;

typedef struct {
    char layers[64];
    double compute_s, wait_s, optim_s, wall_s, bytes_sent;
    long steps;
} stage_stat;

typedef struct {
    const char *name, *kind; /* file name, schedule */
    int P, micro;
    double step_ms, mean_ms, tok_s, final_loss;
    double cpu_s, run_wall_s;  /* the whole `pipetrain run` process tree */
    int n_steady;
    int n_stats;             /* stages with statistics in summary.json (0 for one stage) */
    stage_stat st[MAX_P];
    /* derived, 2-stage runs only */
    double speedup, ideal, ratio, imbalance, c_ms[MAX_P];
    double gap_ms, over_ms, imb_ms, xfer_ms;
} run_result;

typedef struct {
    opts o;
    topo t;
    json_t *base;
    char tmp[64], data[PATH_MAX], bin[96]; /* bin: the private copy in tmp */
    double load_before, load_after;
    run_result r[N_RUNS];
    double round_ms[N_RUNS][MAX_ROUNDS]; /* median step time of every round */
} bench;

static double now_s(void) { return base_now(); }

static double load1(void)
{
    double l[1] = { 0 };
    return getloadavg(l, 1) == 1 ? l[0] : NAN;
}

static void sleep_ms(int ms) { nanosleep(&(struct timespec){ ms / 1000, (long)(ms % 1000) * 1000000L }, NULL); }

/* n distinct free TCP ports on 127.0.0.1 (bound together, then released). */
static int free_ports(int n, int *ports, char *err)
{
    int fds[MAX_P], rc = 0;
    for (int i = 0; i < n; i++) fds[i] = -1;
    for (int i = 0; i < n && !rc; i++) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof a;
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&a, sizeof a) ||
            getsockname(fds[i], (struct sockaddr *)&a, &len))
            rc = seterr(err, "cannot pick a free port on 127.0.0.1: %s", strerror(errno));
        else ports[i] = ntohs(a.sin_port);
    }
    for (int i = 0; i < n; i++) if (fds[i] >= 0) close(fds[i]);
    return rc;
}

static void set_int(json_t *o, const char *key, long v) { json_object_set_new(o, key, json_integer(v)); }

/* The topology of one run: the base file's model and data, the bench's batch,
 * micro-batches and steps, P stages on loopback with 1 BLAS thread each. */
static json_t *make_topo(const bench *b, int P, const char *kind, char *err)
{
    const opts *o = &b->o;
    int ports[MAX_P], n = b->t.model.n_layers, h = P == 1 ? n : o->split;
    if (free_ports(P, ports, err)) return NULL;
    json_t *j = json_deep_copy(b->base);
    json_object_del(j, "secret_file");
    json_object_set_new(j, "description", json_string("bench pipeline (generated)"));
    json_t *data = json_object_get(j, "data");
    if (!json_is_object(data)) json_object_set_new(j, "data", data = json_object());
    json_object_set_new(data, "path", json_string(b->data));
    /* No validation split: the last step's evaluation covers all of it, which
     * would dominate the stages' wall time in a short run. */
    json_object_set_new(data, "val_fraction", json_real(0));
    json_t *tr = json_object_get(j, "train");
    set_int(tr, "steps", o->steps);
    set_int(tr, "batch_size", o->batch);
    set_int(tr, "micro_batches", o->micro);
    set_int(tr, "eval_every", 0);
    set_int(tr, "eval_batches", 1);
    set_int(tr, "log_every", 1);
    json_object_set_new(j, "checkpoint", json_pack("{s:s,s:i,s:i}", "dir", "checkpoints", "every", 0, "keep", 1));
    json_object_set_new(j, "schedule", json_pack("{s:s}", "kind", kind));
    json_object_set_new(j, "coordinator", json_pack("{s:s,s:i}", "host", "127.0.0.1", "port", 0));
    json_object_set_new(j, "launch", json_string("local"));
    json_t *st = json_array();
    for (int k = 0; k < P; k++) {
        char layers[64];
        if (P == 1) snprintf(layers, sizeof layers, "embed,0-%d,head", n - 1);
        else if (k == 0) snprintf(layers, sizeof layers, h > 1 ? "embed,0-%d" : "embed,%d", h > 1 ? h - 1 : 0);
        else if (h < n - 1) snprintf(layers, sizeof layers, "%d-%d,head", h, n - 1);
        else snprintf(layers, sizeof layers, "%d,head", h);
        json_array_append_new(st, json_pack("{s:s,s:i,s:s,s:i}", "host", "127.0.0.1", "port", ports[k], "layers",
                                            layers, "threads", 1));
    }
    json_object_set_new(j, "stages", st);
    return j;
}

/* Runs `BIN run TOPO --out OUT` with output in LOG; kills it after deadline_s.
 * Returns its exit status (or 1 on a signal or timeout, with err set); *cpu_s
 * and *wall_s: CPU time of the run and every process it reaped, and wall time. */
static int spawn_run(const bench *b, const char *topo_path, const char *out, const char *log, double deadline_s,
                     double *cpu_s, double *wall_s, char *err)
{
    pid_t pid = fork();
    if (pid < 0) return seterr(err, "fork: %s", strerror(errno)), 1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) _exit(127);
        char *argv[] = { (char *)b->bin, "run", (char *)topo_path, "--out", (char *)out, NULL };
        execv(b->bin, argv);
        _exit(127);
    }
    double t0 = now_s(), start = t0;
    int status = 0, killed = 0;
    struct rusage ru;
    for (;;) {
        pid_t w = wait4(pid, &status, WNOHANG, &ru);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) return seterr(err, "waitpid: %s", strerror(errno)), 1;
        if (!killed && now_s() - t0 > deadline_s) { kill(pid, SIGTERM); killed = 1; t0 = now_s(); deadline_s = 5; }
        else if (killed == 1 && now_s() - t0 > deadline_s) { kill(pid, SIGKILL); killed = 2; }
        sleep_ms(50);
    }
    *wall_s = now_s() - start;
    *cpu_s = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
             1e-6 * (double)ru.ru_stime.tv_usec;
    if (killed) return seterr(err, "still running after the deadline: killed"), 1;
    if (WIFSIGNALED(status)) return seterr(err, "killed by signal %d", WTERMSIG(status)), 1;
    if (WEXITSTATUS(status)) seterr(err, "exit status %d", WEXITSTATUS(status));
    return WEXITSTATUS(status);
}

/* Copies the executable src to dst (mode 0755), so that every run of the bench
 * uses the same program even if the checkout is rebuilt meanwhile. */
static int copy_exe(const char *src, const char *dst, char *err)
{
    int in = open(src, O_RDONLY | O_CLOEXEC), out = -1, rc = -1;
    char buf[1 << 16];
    if (in < 0) { seterr(err, "%s: %s", src, strerror(errno)); goto done; }
    if ((out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755)) < 0) {
        seterr(err, "%s: %s", dst, strerror(errno));
        goto done;
    }
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { seterr(err, "%s: %s", src, strerror(errno)); goto done; }
        if (n == 0) break;
        if (write(out, buf, (size_t)n) != n) { seterr(err, "%s: %s", dst, strerror(errno)); goto done; }
    }
    rc = 0;
done:
    if (in >= 0) close(in);
    if (out >= 0 && close(out) && !rc) rc = seterr(err, "%s: %s", dst, strerror(errno));
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median and mean step_ms of the steady steps in OUT/metrics.jsonl. */
static int read_metrics(const bench *b, const char *out, run_result *r, char *err)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    FILE *f = fopen(path, "r");
    if (!f) return seterr(err, "%s: %s", path, strerror(errno));
    size_t n = 0, cap = 0, lcap = 0;
    double *ms = NULL;
    char *line = NULL;
    while (getline(&line, &lcap, f) > 0) {
        json_t *j = json_loads(line, 0, NULL);
        json_t *v = json_object_get(j, "step_ms");
        if (json_is_number(json_object_get(j, "step")) && json_is_number(v)) {
            if (n == cap) ms = realloc(ms, (cap = cap ? 2 * cap : 256) * sizeof *ms);
            if (!ms) { json_decref(j); break; }
            ms[n++] = json_number_value(v);
        }
        json_decref(j);
    }
    free(line);
    fclose(f);
    /* steady: after the warm-up, without the last step (evaluation, checkpoint) */
    size_t lo = (size_t)b->o.warmup, hi = n > 0 ? n - 1 : 0;
    if (hi < lo + 3) { lo = n > 1 ? 1 : 0; hi = n; }
    if (!ms || hi <= lo) { free(ms); return seterr(err, "%s: no step rows with step_ms", path); }
    double sum = 0;
    for (size_t i = lo; i < hi; i++) sum += ms[i];
    r->n_steady = (int)(hi - lo);
    r->mean_ms = sum / r->n_steady;
    qsort(ms + lo, hi - lo, sizeof *ms, cmp_double);
    size_t m = hi - lo;
    r->step_ms = m % 2 ? ms[lo + m / 2] : 0.5 * (ms[lo + m / 2 - 1] + ms[lo + m / 2]);
    r->tok_s = (double)b->o.batch * (double)b->t.model.seq_len / (r->step_ms * 1e-3);
    free(ms);
    return 0;
}

static double num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* final_loss and the per-stage statistics of OUT/summary.json. */
static int read_summary(const char *out, run_result *r, char *err)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/summary.json", out);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) return seterr(err, "%s: %s", path, je.text);
    r->final_loss = num(j, "final_loss");
    json_t *a = json_object_get(j, "stages"); /* an array for multi-stage runs */
    r->n_stats = 0;
    for (size_t k = 0; json_is_array(a) && k < json_array_size(a) && k < MAX_P; k++) {
        json_t *s = json_array_get(a, k);
        stage_stat *st = &r->st[r->n_stats++];
        const char *layers = json_string_value(json_object_get(s, "layers"));
        snprintf(st->layers, sizeof st->layers, "%s", layers ? layers : "?");
        st->compute_s = num(s, "compute_s");
        st->wait_s = num(s, "wait_s");
        st->optim_s = num(s, "optim_s");
        st->wall_s = num(s, "wall_s");
        st->bytes_sent = num(s, "bytes_sent");
        st->steps = (long)num(s, "steps");
        if (st->steps <= 0) st->steps = 1;
    }
    json_decref(j);
    return 0;
}

/* Prints the last lines of a failed run's log on stderr. */
static void show_log(const char *log)
{
    FILE *f = fopen(log, "r");
    if (!f) return;
    char buf[4096];
    fseek(f, 0, SEEK_END);
    long size = ftell(f), from = size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0;
    fseek(f, from, SEEK_SET);
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    buf[got] = 0;
    fclose(f);
    fprintf(stderr, "--- last lines of %s:\n%s%s", log, buf, got && buf[got - 1] != '\n' ? "\n" : "");
}

/* One run of r's configuration in round `round`, into r. */
static int run_one(bench *b, run_result *r, int round, char *err)
{
    char topo_path[128], out[128], log[128], e[ERR_LEN];
    snprintf(topo_path, sizeof topo_path, "%s/%s-%d.json", b->tmp, r->name, round);
    snprintf(out, sizeof out, "%s/%s-%d", b->tmp, r->name, round);
    snprintf(log, sizeof log, "%s/%s-%d.log", b->tmp, r->name, round);
    json_t *j = make_topo(b, r->P, r->kind, e);
    if (!j) return seterr(err, "%s: %s", r->name, e), 1;
    int rc = json_dump_file(j, topo_path, JSON_INDENT(2));
    json_decref(j);
    if (rc) return seterr(err, "%s: cannot write", topo_path), 1;
    if (!b->o.json)
        fprintf(stderr, "bench pipeline: round %d/%d: %s, %d steps\n", round + 1, b->o.rounds, r->name, b->o.steps);
    rc = spawn_run(b, topo_path, out, log, 120.0 + 2.0 * b->o.steps, &r->cpu_s, &r->run_wall_s, e);
    if (rc) {
        show_log(log);
        return seterr(err, "%s: pipetrain run failed: %s", r->name, e), 1;
    }
    if (read_metrics(b, out, r, e) || read_summary(out, r, e)) return seterr(err, "%s: %s", r->name, e), 1;
    return 0;
}

/* Speedup against the one-stage run and the gap decomposition (header comment). */
static void derive(const run_result *one, run_result *r, int M)
{
    int P = r->P;
    r->micro = M;
    r->speedup = one->step_ms / r->step_ms;
    r->ideal = (double)P * M / (M + P - 1);
    r->ratio = r->speedup / r->ideal;
    if (r->n_stats != P) { r->imbalance = NAN; return; }
    double sum = 0, mx = 0, o = INFINITY;
    for (int k = 0; k < P; k++) {
        const stage_stat *s = &r->st[k];
        r->c_ms[k] = 1e3 * s->compute_s / (double)s->steps / M;
        sum += r->c_ms[k];
        if (r->c_ms[k] > mx) mx = r->c_ms[k];
        double ok = 1e3 * s->optim_s / (double)s->steps;
        if (ok < o) o = ok;
    }
    double mean = sum / P, t_ideal = one->step_ms / r->ideal;
    double t_bal = (M + P - 1) * mean + o, t_imb = (M - 1) * mx + sum + o;
    r->imbalance = mx / mean;
    r->gap_ms = r->step_ms - t_ideal;
    r->over_ms = t_bal - t_ideal;
    r->imb_ms = t_imb - t_bal;
    r->xfer_ms = r->step_ms - t_imb;
}

/* 1 when some run got clearly less CPU than its stages ask for (one core each
 * while they compute): other processes were competing for the cores. */
static int contended(const bench *b)
{
    for (int i = 0; i < N_RUNS; i++) {
        const run_result *r = &b->r[i];
        double busy = r->cpu_s / r->run_wall_s, want = r->P == 1 ? 0.9 : 0.7 * r->P;
        if (busy < want) return 1;
    }
    return 0;
}

static void print_table(const bench *b)
{
    const opts *o = &b->o;
    const model_config *m = &b->t.model;
    printf("bench pipeline: %s model (dim %d, %d layers, ffn %d, vocab %d, seq %d), batch %d = %d micro-batches "
           "of %d, 1 BLAS thread per stage\n",
           b->t.path, m->dim, m->n_layers, m->ffn_dim, m->vocab_size, m->seq_len, o->batch, o->micro,
           o->batch / o->micro);
    printf("  %d steps per run, best of %d rounds; median step time over %d steady steps (first %d and last "
           "skipped); load average %.2f before, %.2f after\n", o->steps, o->rounds, b->r[0].n_steady, o->warmup,
           b->load_before, b->load_after);
    printf("  %-18s %10s %9s %9s %7s %9s\n", "", "tokens/s", "step ms", "speedup", "ideal", "of ideal");
    for (int i = 0; i < N_RUNS; i++) {
        const run_result *r = &b->r[i];
        char label[64];
        snprintf(label, sizeof label, r->P == 1 ? "1 stage" : "%d stages, %s", r->P, r->kind);
        printf("  %-18s %10.0f %9.2f", label, r->tok_s, r->step_ms);
        if (r->P > 1) printf(" %9.3f %7.3f %8.1f %%", r->speedup, r->ideal, 100 * r->ratio);
        else printf(" %9s %7s %10s", "", "", "");
        printf("   %.2f cores busy; rounds:", r->cpu_s / r->run_wall_s);
        for (int k = 0; k < o->rounds; k++) printf(" %.1f", b->round_ms[i][k]);
        printf(" ms\n");
    }
    for (int i = 1; i < N_RUNS; i++) {
        const run_result *r = &b->r[i];
        printf("  %s (the schedule's own bubble: %.1f%% of a stage's time waiting):\n", r->kind,
               100.0 * (r->P - 1) / (b->o.micro + r->P - 1));
        for (int k = 0; k < r->n_stats; k++) {
            const stage_stat *s = &r->st[k];
            printf("    stage %d (%-10s) compute %6.2f ms/step (%4.1f%%), waiting for tensors %4.1f%%, optimizer+norm "
                   "%4.1f%%, %.0f KiB sent/step\n",
                   k, s->layers, 1e3 * s->compute_s / s->steps, 100 * s->compute_s / s->wall_s,
                   100 * s->wait_s / s->wall_s, 100 * s->optim_s / s->wall_s, s->bytes_sent / s->steps / 1024);
        }
        if (isnan(r->imbalance)) { printf("    (no per-stage statistics in summary.json)\n"); continue; }
        printf("    imbalance (max/mean compute) %.3f; gap to ideal %+.2f ms/step = compute overhead %+.2f, "
               "imbalance %+.2f, transfers & waits %+.2f\n",
               r->imbalance, r->gap_ms, r->over_ms, r->imb_ms, r->xfer_ms);
    }
    printf("  final loss: %.4f (1 stage), %.4f (gpipe), %.4f (1f1b)\n", b->r[0].final_loss, b->r[1].final_loss,
           b->r[2].final_loss);
    if ((!isnan(b->r[1].xfer_ms) && b->r[1].xfer_ms < 0) || (!isnan(b->r[2].xfer_ms) && b->r[2].xfer_ms < 0))
        printf("  (a negative share: the model's bubble, from compute totals alone, exceeds what was measured;\n"
               "  that part costs less than the model's error)\n");
    if (contended(b))
        printf("  note: the runs did not get the cores they asked for (other processes were busy): the speedups\n"
               "  and the compute times understate what an idle machine gives; see `cores busy`\n");
}

static json_t *run_json(const run_result *r)
{
    json_t *j = json_pack("{s:o,s:i,s:f,s:f,s:f,s:i}", "schedule", r->P > 1 ? json_string(r->kind) : json_null(),
                          "stages", r->P, "tokens_per_s", r->tok_s, "step_ms", r->step_ms, "step_ms_mean",
                          r->mean_ms, "steady_steps", r->n_steady);
    json_object_set_new(j, "final_loss", isfinite(r->final_loss) ? json_real(r->final_loss) : json_null());
    json_object_set_new(j, "cpu_s", json_real(r->cpu_s));
    json_object_set_new(j, "run_wall_s", json_real(r->run_wall_s));
    if (r->P == 1) return j;
    json_object_set_new(j, "speedup", json_real(r->speedup));
    json_object_set_new(j, "ideal_speedup", json_real(r->ideal));
    json_object_set_new(j, "ratio", json_real(r->ratio));
    json_object_set_new(j, "bubble_frac", json_real((double)(r->P - 1) / (r->micro + r->P - 1)));
    json_t *a = json_array();
    for (int k = 0; k < r->n_stats; k++) {
        const stage_stat *s = &r->st[k];
        json_array_append_new(a, json_pack("{s:i,s:s,s:f,s:f,s:f,s:f,s:f}", "stage", k, "layers", s->layers,
                                           "compute_ms_per_step", 1e3 * s->compute_s / s->steps, "compute_frac",
                                           s->compute_s / s->wall_s, "wait_frac", s->wait_s / s->wall_s,
                                           "optim_frac", s->optim_s / s->wall_s, "bytes_sent_per_step",
                                           s->bytes_sent / s->steps));
    }
    json_object_set_new(j, "per_stage", a);
    if (!isnan(r->imbalance))
        json_object_set_new(j, "gap_ms", json_pack("{s:f,s:f,s:f,s:f,s:f}", "imbalance_ratio", r->imbalance, "total",
                                                   r->gap_ms, "compute_overhead", r->over_ms, "imbalance",
                                                   r->imb_ms, "transfer_and_waits", r->xfer_ms));
    return j;
}

static void print_json(const bench *b)
{
    const opts *o = &b->o;
    json_t *runs = json_array();
    for (int i = 0; i < N_RUNS; i++) {
        json_t *r = run_json(&b->r[i]), *a = json_array();
        for (int k = 0; k < o->rounds; k++) json_array_append_new(a, json_real(b->round_ms[i][k]));
        json_object_set_new(r, "rounds_step_ms", a);
        json_array_append_new(runs, r);
    }
    json_t *j = json_pack("{s:s,s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:f,s:f,s:o}", "bench", "pipeline", "topology",
                          b->t.path, "n_layers", b->t.model.n_layers, "seq_len", b->t.model.seq_len, "batch_size",
                          o->batch, "micro_batches", o->micro, "steps", o->steps, "warmup", o->warmup, "rounds",
                          o->rounds,
                          "loadavg_1m_before", b->load_before, "loadavg_1m_after", b->load_after, "runs", runs);
    json_object_set_new(j, "contended", json_boolean(contended(b)));
    char *s = json_dumps(j, JSON_COMPACT);
    printf("%s\n", s);
    free(s);
    json_decref(j);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    remove(path);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: pipetrain bench pipeline [--json] [--steps N (default 60)] [--warmup N (default 5)]\n"
            "                                [--rounds R (default 3)]\n"
            "                                [--batch N (default 16)] [--micro M (default 8)] [--split N]\n"
            "                                [--topology FILE] [--data FILE] [--bin PATH] [--keep]\n"
            "\n"
            "Trains the model of --topology (default topologies/shakespeare-1stage.json) with one stage\n"
            "(1 BLAS thread), then with two stages (1 BLAS thread each) under GPipe and under 1F1B, the same\n"
            "global batch split into M micro-batches, each run a `pipetrain run` of its own on loopback, one\n"
            "at a time, in R rounds (each configuration keeps its fastest run). Prints tokens/s, the\n"
            "speedup, the ideal P*M/(M+P-1), their ratio, each stage's compute, wait and optimizer\n"
            "shares, and the gap to ideal split into compute overhead, stage imbalance and transfers\n"
            "& waits.\n"
            "  --split N    blocks on stage 0 (default half the layers)\n"
            "  --data FILE  training data (default the topology's)\n"
            "  --bin PATH   the pipetrain binary to run (default this program)\n"
            "  --keep       keep the temporary run directories and print where they are\n");
}

static int parse(opts *o, int argc, char **argv)
{
    *o = (opts){ .steps = 60, .warmup = 5, .rounds = 3, .batch = 16, .micro = 8, .split = -1,
                 .topology = "topologies/shakespeare-1stage.json", .bin = "/proc/self/exe" };
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int *iv = !strcmp(s, "--steps") ? &o->steps : !strcmp(s, "--warmup") ? &o->warmup
                : !strcmp(s, "--batch") ? &o->batch : !strcmp(s, "--micro") ? &o->micro
                : !strcmp(s, "--split") ? &o->split : !strcmp(s, "--rounds") ? &o->rounds : NULL;
        const char **sv = !strcmp(s, "--topology") ? &o->topology : !strcmp(s, "--data") ? &o->data
                        : !strcmp(s, "--bin") ? &o->bin : NULL;
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) { usage(stdout); return 1; }
        else if (!strcmp(s, "--json")) o->json = 1;
        else if (!strcmp(s, "--keep")) o->keep = 1;
        else if (iv || sv) {
            char *end = NULL;
            long n = v ? strtol(v, &end, 10) : 0;
            if (!v || (iv && (*end || end == v || n < 0 || n > 1000000))) {
                fprintf(stderr, "pipetrain bench pipeline: %s expects %s\n", s, iv ? "a number" : "a value");
                return 2;
            }
            if (iv) *iv = (int)n; else *sv = v;
            i++;
        } else {
            fprintf(stderr, "pipetrain bench pipeline: unknown option '%s'\n", s);
            usage(stderr);
            return 2;
        }
    }
    if (o->rounds < 1 || o->rounds > MAX_ROUNDS || o->steps < 4 || o->micro < 2 || o->batch % o->micro ||
        o->warmup >= o->steps - 2) {
        fprintf(stderr, "pipetrain bench pipeline: need --rounds 1..20, --steps >= 4 and > --warmup + 2, "
                        "--micro >= 2 dividing --batch\n");
        return 2;
    }
    return 0;
}

/* Loads the base topology (model, data) and checks the split. Returns 0 or 2. */
static int setup(bench *b)
{
    char err[ERR_LEN];
    opts *o = &b->o;
    if (topo_load(&b->t, o->topology, NULL, 0, err) || (o->data && topo_set_data_path(&b->t, o->data, err))) {
        fprintf(stderr, "pipetrain bench pipeline: %s\n", err);
        if (access(o->topology, R_OK)) fprintf(stderr, "HINT: run from the repository root or pass --topology FILE\n");
        return 2;
    }
    int n = b->t.model.n_layers;
    if (o->split < 0) o->split = n / 2;
    if (n < 2 || o->split < 1 || o->split > n - 1) {
        fprintf(stderr, "pipetrain bench pipeline: --split must be 1..%d (the model has %d layers)\n", n - 1, n);
        return 2;
    }
    if (!b->t.data.path || !realpath(b->t.data.path, b->data)) {
        fprintf(stderr, "pipetrain bench pipeline: %s: data: %s\n", o->topology,
                b->t.data.path ? strerror(errno) : "none given (pass --data FILE)");
        return 2;
    }
    json_error_t je;
    if (!(b->base = json_load_file(o->topology, 0, &je))) {
        fprintf(stderr, "pipetrain bench pipeline: %s: %s\n", o->topology, je.text);
        return 2;
    }
    return 0;
}

int bench_pipeline_main(int argc, char **argv)
{
    bench *b = xcalloc(1, sizeof *b);
    char err[ERR_LEN];
    int rc = parse(&b->o, argc, argv);
    if (rc) { free(b); return rc == 1 ? 0 : rc; }
    if ((rc = setup(b))) goto done;
    snprintf(b->tmp, sizeof b->tmp, "/tmp/pt-bench-pipeline.XXXXXX");
    if (!mkdtemp(b->tmp)) {
        fprintf(stderr, "pipetrain bench pipeline: mkdtemp: %s\n", strerror(errno));
        rc = 1;
        goto done;
    }
    snprintf(b->bin, sizeof b->bin, "%s/pipetrain", b->tmp);
    if (copy_exe(b->o.bin, b->bin, err)) {
        fprintf(stderr, "pipetrain bench pipeline: %s\n", err);
        rc = 2;
        goto clean;
    }
    b->r[0] = (run_result){ .name = "1stage", .kind = "gpipe", .P = 1 };
    b->r[1] = (run_result){ .name = "2stage-gpipe", .kind = "gpipe", .P = 2 };
    b->r[2] = (run_result){ .name = "2stage-1f1b", .kind = "1f1b", .P = 2 };
    b->load_before = load1();
    /* Rounds interleave the configurations, so slow spells of a shared machine
     * hit all of them; each keeps its fastest run (median step time). */
    for (int round = 0; round < b->o.rounds && !rc; round++)
        for (int i = 0; i < N_RUNS && !rc; i++) {
            run_result r = b->r[i];
            if ((rc = run_one(b, &r, round, err))) fprintf(stderr, "pipetrain bench pipeline: %s\n", err);
            else if (round == 0 || r.step_ms < b->r[i].step_ms) b->r[i] = r;
            b->round_ms[i][round] = r.step_ms;
        }
    b->load_after = load1();
    if (!rc) {
        for (int i = 1; i < N_RUNS; i++) derive(&b->r[0], &b->r[i], b->o.micro);
        if (b->o.json) print_json(b); else print_table(b);
    }
clean:
    if (b->o.keep) fprintf(stderr, "bench pipeline: run directories kept in %s\n", b->tmp);
    else nftw(b->tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
done:
    json_decref(b->base);
    topo_free(&b->t);
    free(b);
    return rc;
}
