/* cli_schedule.c — `pipetrain schedule`: builds a schedule (a built-in kind or a
 * JSON/CSV file) for a topology or for --stages/--micro-batches, validates it,
 * simulates one step and prints the predicted step time, the bubble per stage and
 * overall and the peak activation memory per stage; then draws it (ASCII grid,
 * SVG, Chrome trace) or writes it as a schedule file. Time unit: milliseconds.
 * Costs come from --costs, from runs' measured costs.json (--calibrate, repeatable:
 * the median over the runs, topo_calib.h), or
 * from the topology's FLOP counts at --gflops per BLAS thread (default: this
 * machine's sgemm measured at the model's shapes, model/gemm_rate.h, times the
 * step efficiency). With replicas (the topology's, or --replicas) it adds each
 * stage's ring all-reduce of its gradient buckets (topo_allreduce_plan, or
 * --grad-bytes) and prints the exposed part. It runs nothing: the stage runtime
 * executes schedules. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli_schedule.h"
#include "model/gemm_rate.h"
#include "model/model.h"
#include "model/util.h"
#include "scheduler/sched.h"
#include "topo/topo.h"
#include "topo/topo_calib.h"

enum { FMT_ASCII, FMT_SVG, FMT_JSON, FMT_CSV, FMT_CHROME };
static const char *const fmt_names[] = { "ascii", "svg", "json", "csv", "chrome", NULL };

typedef struct {
    const char *topo, *kind, *file, *out;
    const char **calib;              /* --calibrate RUN_DIR, repeatable */
    int n_calib;
    int P, M, v;                     /* 0 = not given */
    int have_costs;
    double cost[3];                  /* F, B, W ms per micro-batch of one stage */
    int fmt, width;
    double gflops, latency, bandwidth, bytes, stash, burst;
    int have_bytes, have_stash, have_latency, have_burst;
    int R;                           /* --replicas; 0 = the topology's (else 1) */
    double ar_latency, ar_bandwidth, grad_bytes, bucket_mb;
    int have_ar_latency, have_ar_bandwidth, have_grad_bytes, have_bucket_mb;
    char **sets;
    int n_sets;
} opts;

static const char usage_text[] =
    "usage: pipetrain schedule (TOPOLOGY.json | --stages P --micro-batches M) [options]\n"
    "  --kind K              gpipe | 1f1b | interleaved | zb-h1 | zb-v | 2bw (default: the\n"
    "                        topology's, else 1f1b); 2bw (PipeDream-2BW) has no flush: the\n"
    "                        prediction is its steady-state step, the picture one such step\n"
    "  --schedule KIND|FILE  a built-in kind, or a schedule file (.json, or PyTorch's .csv)\n"
    "  --chunks V            virtual stages per stage for interleaved (default 2)\n"
    "  --costs F,B,W         ms per micro-batch of one stage's forward, input-grad and\n"
    "                        weight-grad (default: the topology's FLOPs, else 1,1,1); BW = B+W\n"
    "  --gflops G            GFLOP/s per BLAS thread for FLOP-derived costs (default:\n"
    "                        this machine's sgemm measured at the model's shapes, about\n"
    "                        150 ms once, cached in ~/.cache/pipetrain/sgemm.json, times\n"
    "                        the step efficiency 0.6; PIPETRAIN_NO_CACHE=1 measures again)\n"
    "  --calibrate RUN_DIR   F, B, W per virtual stage and the transfer latency measured\n"
    "                        in a pipeline run (RUN_DIR/costs.json, written beside\n"
    "                        trace.json; or a costs file's path). Repeatable: runs of\n"
    "                        one model and split (checked against their summary.json\n"
    "                        and the topology), the median of each cost over them (of\n"
    "                        an even count the mean of the middle two)\n"
    "  --latency MS          latency of each transfer between stages (default 0)\n"
    "  --bandwidth MB/S      bandwidth of each link (default: infinite)\n"
    "  --burst BYTES         token bucket of each link direction, as tc's tbf: bytes an\n"
    "                        idle link passes at once (default: the topology's\n"
    "                        links.burst, else 0 = pure rate)\n"
    "  --bytes N             bytes per transfer (default: the topology's, else 0)\n"
    "  --stash-bytes N       activation bytes a stage stashes per micro-batch in flight\n"
    "                        (default: the topology's)\n"
    "  --replicas R          data-parallel replicas per stage (default: the topology's,\n"
    "                        else 1); R > 1 adds each stage's ring all-reduce of its\n"
    "                        gradient buckets (the topology's, or --grad-bytes)\n"
    "  --allreduce-latency MS    latency of each ring step between replicas\n"
    "                        (default: --latency)\n"
    "  --allreduce-bandwidth MB/S  bandwidth of each replica link, 0 = infinite\n"
    "                        (default: --bandwidth)\n"
    "  --grad-bytes N        without a topology: gradient bytes of each stage (spread\n"
    "                        evenly over its chunks), cut into --bucket-mb buckets\n"
    "  --bucket-mb X         without a topology: largest bucket, MiB (default 4; with a\n"
    "                        topology use --set train.bucket_mb=X)\n"
    "  --format F            ascii | svg | json | csv | chrome (default ascii)\n"
    "  --out FILE            write the picture or file there (else stdout)\n"
    "  --width N             columns of the ASCII grid (default 120)\n"
    "  --set KEY=VALUE       override a topology field (repeatable)\n"
    "Exit status: 0 ok, 2 bad usage or input (including a schedule that fails validation).\n";

static int usage_err(const char *fmt, const char *arg)
{
    fprintf(stderr, "pipetrain schedule: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", usage_text);
    return 2;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *e;
    errno = 0;
    long v = strtol(s, &e, 10);
    if (errno || e == s || *e || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

static int parse_num(const char *s, double *out)
{
    char *e;
    errno = 0;
    double v = strtod(s, &e);
    if (errno || e == s || *e || !isfinite(v) || v < 0) return -1;
    *out = v;
    return 0;
}

static int parse_costs(const char *s, double c[3])
{
    char buf[128], *save = NULL;
    if (strlen(s) >= sizeof buf) return -1;
    strcpy(buf, s);
    int n = 0;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n == 3 || parse_num(tok, &c[n]) || c[n] > 1e9) return -1; /* a costs file's bound (ms) */
        n++;
    }
    return n == 3 ? 0 : -1;
}

static int is_kind(const char *s) { return sched_kind_find(s) >= 0; }

static int opt_int(const char *k, const char *v, int lo, int hi, int *out)
{
    if (!parse_int(v, lo, hi, out)) return 0;
    fprintf(stderr, "pipetrain schedule: %s: expected an integer %d..%d, got '%s'\n%s", k, lo, hi,
            v, usage_text);
    return 2;
}

static int opt_num(const char *k, const char *v, int positive, double *out)
{
    if (!parse_num(v, out) && (!positive || *out > 0)) return 0;
    fprintf(stderr, "pipetrain schedule: %s: expected a number %s 0, got '%s'\n%s", k,
            positive ? ">" : ">=", v, usage_text);
    return 2;
}

/* One option with a value; returns 0 handled, 1 not an option of ours, 2 error. */
static int parse_opt(opts *o, const char *k, const char *v)
{
    if (!strcmp(k, "--stages")) return opt_int(k, v, 1, 1 << 20, &o->P);
    if (!strcmp(k, "--micro-batches")) return opt_int(k, v, 1, 1 << 22, &o->M);
    if (!strcmp(k, "--chunks")) return opt_int(k, v, 1, 256, &o->v);
    if (!strcmp(k, "--width")) return opt_int(k, v, 20, 100000, &o->width);
    if (!strcmp(k, "--gflops")) return opt_num(k, v, 1, &o->gflops);
    if (!strcmp(k, "--latency")) { o->have_latency = 1; return opt_num(k, v, 0, &o->latency); }
    if (!strcmp(k, "--calibrate")) { o->calib[o->n_calib++] = v; return 0; }
    if (!strcmp(k, "--bandwidth")) return opt_num(k, v, 0, &o->bandwidth);
    if (!strcmp(k, "--burst")) { o->have_burst = 1; return opt_num(k, v, 0, &o->burst); }
    if (!strcmp(k, "--bytes")) { o->have_bytes = 1; return opt_num(k, v, 0, &o->bytes); }
    if (!strcmp(k, "--stash-bytes")) { o->have_stash = 1; return opt_num(k, v, 0, &o->stash); }
    if (!strcmp(k, "--out")) { o->out = v; return 0; }
    if (!strcmp(k, "--replicas")) return opt_int(k, v, 1, 1 << 16, &o->R);
    if (!strcmp(k, "--allreduce-latency")) { o->have_ar_latency = 1; return opt_num(k, v, 0, &o->ar_latency); }
    if (!strcmp(k, "--allreduce-bandwidth")) { o->have_ar_bandwidth = 1; return opt_num(k, v, 0, &o->ar_bandwidth); }
    if (!strcmp(k, "--grad-bytes")) { o->have_grad_bytes = 1; return opt_num(k, v, 0, &o->grad_bytes); }
    if (!strcmp(k, "--bucket-mb")) {
        o->have_bucket_mb = 1;
        if (opt_num(k, v, 1, &o->bucket_mb)) return 2;
        if (o->bucket_mb <= 1024) return 0;
        return usage_err("--bucket-mb: expected a number > 0 and <= 1024, got '%s'", v);
    }
    if (!strcmp(k, "--set")) { o->sets[o->n_sets++] = (char *)v; return 0; }
    if (!strcmp(k, "--kind")) {
        if (!is_kind(v))
            return usage_err("--kind: unknown schedule kind '%s' (expected gpipe, 1f1b, "
                             "interleaved or zb-h1)", v);
        o->kind = v;
        return 0;
    }
    if (!strcmp(k, "--schedule")) {
        if (is_kind(v)) o->kind = v;
        else o->file = v;
        return 0;
    }
    if (!strcmp(k, "--costs")) {
        o->have_costs = 1;
        if (!parse_costs(v, o->cost)) return 0;
        return usage_err("--costs: expected three numbers in 0..1e9 as F,B,W ms (e.g. 1,1,1), got '%s'", v);
    }
    if (!strcmp(k, "--format")) {
        for (int i = 0; fmt_names[i]; i++)
            if (!strcmp(v, fmt_names[i])) { o->fmt = i; return 0; }
        return usage_err("--format: expected ascii, svg, json, csv or chrome, got '%s'", v);
    }
    return 1;
}

/* Returns 0, 2 (usage error, printed) or -1 for --help. */
static int parse_args(opts *o, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return -1;
        if (a[0] == '-' && a[1] == '-') {
            if (i + 1 >= argc) return usage_err("%s needs a value", a);
            int rc = parse_opt(o, a, argv[i + 1]);
            if (rc == 1) return usage_err("unknown option '%s'", a);
            if (rc) return 2;
            i++;
        } else if (!o->topo) {
            o->topo = a;
        } else {
            return usage_err("unexpected argument '%s' (one topology file at most)", a);
        }
    }
    if (o->topo && (o->P || o->M))
        return usage_err("%s", "--stages and --micro-batches come from the topology; use --set to change them");
    if (!o->topo && !o->file && (!o->P || !o->M))
        return usage_err("%s", "give a TOPOLOGY.json, or --stages P and --micro-batches M, or --schedule FILE");
    if (o->kind && o->file)
        return usage_err("%s", "--kind and --schedule FILE are alternatives: give one");
    if (o->n_calib && o->have_costs)
        return usage_err("%s", "--costs and --calibrate are alternatives: give one");
    if (o->topo && (o->have_grad_bytes || o->have_bucket_mb))
        return usage_err("%s", "--grad-bytes and --bucket-mb come from the topology (use --set train.bucket_mb=X)");
    if (!o->topo && o->R > 1 && !o->have_grad_bytes)
        return usage_err("%s", "--replicas without a topology needs --grad-bytes N (each stage's gradient bytes)");
    return 0;
}

/* Costs per virtual stage from the topology's FLOPs. When the schedule's chunk
 * count differs from the topology's layout, each stage's totals are spread evenly
 * over the schedule's chunks (an approximation, reported). */
static sched_costs *topo_costs(const topo *t, int v, int place, const double *stage_gflops, int *spread)
{
    int P = t->n_stages;
    sched_costs *c = sched_costs_new(P * v);
    if (!c) return NULL;
    if (!(c->grad_bytes = calloc((size_t)(P * v), sizeof(double)))) {
        sched_costs_free(c);
        return NULL;
    }
    size_t batch = (size_t)topo_micro_batch(t), seq = (size_t)t->model.seq_len;
    *spread = v != t->chunks_per_stage;
    for (int st = 0; st < P; st++) {
        const topo_stage *ts = &t->stages[st];
        double per_ms = stage_gflops[st] * 1e6;
        for (int ci = 0; ci < ts->n_chunks; ci++) {
            const topo_chunk *ch = &ts->chunks[ci];
            double f = 0, b = 0, w = 0;
            double wb = 0; /* one weight version's bytes (2bw keeps a second) */
            for (int u = ch->first_unit; u < ch->first_unit + ch->n_units; u++) {
                wb += (double)model_unit_params(&t->model, u) * sizeof(float);
                model_flops fl = model_unit_flops(&t->model, u, batch, seq);
                f += fl.fwd;
                b += fl.bwd_input + model_unit_recompute_flops(&t->model, u, batch, seq, ts->recompute_id);
                w += fl.bwd_weight;
            }
            /* bytes on the wire with the topology's encodings (issue 14) */
            int last = ch->first_unit + ch->n_units - 1;
            double out = (double)topo_wire_bytes(t, last, 0), gout = (double)topo_wire_bytes(t, last, 1);
            (void)batch;
            model_mem mem = topo_chunk_mem(t, ts->recompute_id, ch, batch);
            int nk = *spread ? v : 1;
            for (int j = 0; j < nk; j++) {
                int k = *spread ? sched_place_vstage(place, P, st, j) : ch->virtual_stage;
                c->f[k] += f / per_ms / nk;
                c->b[k] += b / per_ms / nk;
                c->w[k] += w / per_ms / nk;
                c->stash_bytes[k] += (double)mem.stash / nk;
                c->f_tmp_bytes[k] += (double)mem.fwd_tmp / nk;
                c->b_bytes[k] += (double)mem.work / nk;
                c->bw_bytes[k] += (double)mem.work_unit / nk;
                c->weight_bytes[k] += wb / nk;
                c->xfer_bytes[k] = out > c->xfer_bytes[k] ? out : c->xfer_bytes[k];
                c->grad_bytes[k] = gout > c->grad_bytes[k] ? gout : c->grad_bytes[k];
            }
        }
    }
    return c;
}

typedef struct {
    const sched_schedule *s;
    const sched_report *r;
    int fmt, width;
    sched_sim_info info;  /* for the JSON form's "simulation" */
} render_ctx;

static int render(const render_ctx *x, FILE *f, char *err)
{
    switch (x->fmt) {
    case FMT_SVG: return sched_render_svg(x->s, x->r, f, "ms", err);
    case FMT_JSON: return sched_write_json_sim(x->s, x->r, &x->info, f, err);
    case FMT_CSV: return sched_write_csv(x->s, f, err);
    case FMT_CHROME: return sched_render_chrome(x->s, x->r, f, 1000.0, err);
    default: return sched_render_ascii(x->s, x->r, f, x->width, 256, "ms", err);
    }
}

/* Writes to path.tmp.PID, fsyncs, renames over path and fsyncs the directory, so
 * a failure never leaves a partial file under the final name. Returns 0, 2 when
 * the file cannot be created (a bad --out), -1 on a write error; err says why. */
static int write_file(const char *path, const render_ctx *x, char *err)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return seterr(err, "%s: path too long", path);
    struct stat st;
    if (!stat(path, &st) && S_ISDIR(st.st_mode))
        return seterr(err, "--out: %s is a directory: give the path of the file to write", path), 2;
    FILE *f = fopen(tmp, "w");
    if (!f) {
        seterr(err, "%s: cannot create the output file (as %s): %s", path, tmp, strerror(errno));
        return 2;
    }
    char why[ERR_LEN] = "";
    int rc = render(x, f, why);
    if (!rc && (fflush(f) || fsync(fileno(f)))) rc = seterr(why, "%s", strerror(errno));
    if (fclose(f) && !rc) rc = seterr(why, "%s", strerror(errno));
    if (!rc && rename(tmp, path)) rc = seterr(why, "rename: %s", strerror(errno));
    if (rc) {
        unlink(tmp);
        return seterr(err, "%s: cannot write: %s", path, why);
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    int fd = open(dirname(dir), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) { fsync(fd); close(fd); }
    return 0;
}

static void print_bytes(FILE *f, double b)
{
    if (b >= 1 << 30) fprintf(f, "%.2f GiB", b / (1 << 30));
    else if (b >= 1 << 20) fprintf(f, "%.2f MiB", b / (1 << 20));
    else if (b >= 1 << 10) fprintf(f, "%.2f KiB", b / (1 << 10));
    else fprintf(f, "%.0f B", b);
}

/* The replicas' all-reduce: the model's parameters and each stage's numbers. */
static void print_allreduce(FILE *f, const sched_schedule *s, const sched_report *r, const sched_costs *c)
{
    fprintf(f, "all-reduce: %d replicas per stage in a ring%s, latency %.4g ms per ring step, ", c->ar->replicas,
            c->ar->zero ? " (ZeRO-1: reduce-scatter, then all-gather after the optimizer)" : "", c->ar->latency);
    if (c->ar->bandwidth > 0) fprintf(f, "%.4g MB/s", c->ar->bandwidth / 1e3);
    else fputs("infinite bandwidth", f);
    fprintf(f, "; step time without it %.4f ms\n", r->compute_time);
    fprintf(f, "stage  buckets  gradient bytes  all-reduce ms  exposed ms\n");
    for (int st = 0; st < s->n_stages; st++) {
        fprintf(f, "%5d %8zu  %14.0f %14.3f %11.3f\n", st, r->ar_count[st], r->ar_bytes[st], r->ar_busy[st],
                r->ar_exposed[st]);
    }
}

static void print_summary(FILE *f, const sched_schedule *s, const sched_report *r,
                          const sched_costs *c, const char *cost_note, int have_stash)
{
    size_t n = 0;
    for (int st = 0; st < s->n_stages; st++) n += s->len[st];
    char note[SCHED_ERR_LEN + 64];
    fprintf(f, "schedule %s: %d stages x %d micro-batches, %d chunk%s per stage%s (%zu actions)\n",
            s->kind, s->n_stages, s->n_micro, s->n_chunks, s->n_chunks > 1 ? "s" : "",
            s->placement == SCHED_PLACE_V ? " placed in a V (stage s holds virtual stages s and 2P-1-s)" : "", n);
    if (sched_note(s, note, sizeof note)) fprintf(stderr, "pipetrain schedule: %s\n", note);
    double F = 0, B = 0, W = 0;
    for (int ch = 0; ch < s->n_chunks; ch++) {
        int k = sched_virtual_stage(s, 0, ch);
        F += c->f[k];
        B += c->b[k];
        W += c->w[k];
    }
    fprintf(f, "costs: %s; stage 0 per micro-batch: F %.4g ms, B %.4g ms, W %.4g ms\n", cost_note,
            F, B, W);
    if (c->latency > 0 || c->bandwidth > 0) {
        fprintf(f, "links: latency %.4g ms, ", c->latency);
        if (c->bandwidth > 0) fprintf(f, "%.4g MB/s", c->bandwidth / 1e3);
        else fprintf(f, "infinite bandwidth");
        if (c->bandwidth > 0 && c->burst > 0) fprintf(f, " with a %.0f-byte burst (token bucket)", c->burst);
        fprintf(f, ", %.0f bytes per transfer from stage 0", c->xfer_bytes[0]);
        if (c->grad_bytes && c->n > 1) fprintf(f, ", %.0f bytes per gradient back to it", c->grad_bytes[0]);
        fputc('\n', f);
    }
    fprintf(f, "predicted step time: %.4f ms%s\nbubble: %.1f%% overall\n", r->step_time,
            r->steps_simulated ? " (steady state without flush: 6 steps played minus 2, per step)" : "",
            100 * r->bubble);
    for (int st = 0; r->extra_weight_bytes && st < s->n_stages; st++) {
        fprintf(f, "%s", st ? ", " : "extra weights (2nd version + pending gradient): ");
        if (have_stash) print_bytes(f, r->extra_weight_bytes[st]);
        else fputs("-", f);
        if (st == s->n_stages - 1) fputc('\n', f);
    }
    if (r->ar_exposed) print_allreduce(f, s, r, c);
    if (s->n_chunks > 1)
        fprintf(f, "(peak micro-batches count (micro-batch, chunk) pairs; each holds one chunk's "
                   "activations)\n");
    fprintf(f, "stage   busy ms   bubble  peak micro-batches  peak activations\n");
    for (int st = 0; st < s->n_stages; st++) {
        fprintf(f, "%5d %9.3f %7.1f%% %19d  ", st, r->busy[st], 100 * r->bubble_stage[st], r->peak_mb[st]);
        if (have_stash) print_bytes(f, r->peak_bytes[st]);
        else fputs("-", f);
        fputc('\n', f);
    }
}

/* Prints the summary and writes the picture or file. Returns 0, or 1/2 with err. */
static int output(const opts *o, const sched_schedule *s, const sched_report *r,
                  const sched_costs *c, const char *note, int have_stash, char *err)
{
    if (o->fmt == FMT_CSV && sched_is_cross_step(s))
        return seterr(err, "--format csv: schedule %s runs the next step's forwards during a step (\"F0n\"); "
                      "PyTorch's CSV describes one step: use --format json", s->kind), 2;
    int data_on_stdout = !o->out && o->fmt != FMT_ASCII;
    print_summary(data_on_stdout ? stderr : stdout, s, r, c, note, have_stash);
    render_ctx x = { s, r, o->fmt, o->width, { "ms", note, have_stash } };
    if (o->out) {
        int wrc = write_file(o->out, &x, err);
        if (wrc) return wrc == 2 ? 2 : 1;
        printf("wrote %s (%s)\n", o->out, fmt_names[o->fmt]);
        return 0;
    }
    if (!data_on_stdout) putchar('\n');
    return render(&x, stdout, err) || fflush(stdout) ? 1 : 0;
}

/* Loads the topology with the --set overrides. A --kind (or --schedule KIND) is the
 * topology's schedule.kind when the topology takes it, as check and run's
 * --schedule: a V or non-adjacent layout is valid under its own kind, not under
 * the file's. A layout the kind refuses (one chunk per stage under interleaved)
 * loads as written, and build_schedule spreads each stage's units over the
 * kind's chunks. */
static int load_topo(topo *t, const opts *o, char *err)
{
    if (o->kind) {
        char set[64];
        char **sets = calloc((size_t)o->n_sets + 1, sizeof(char *));
        if (!sets) return seterr(err, "out of memory"), -1;
        memcpy(sets, o->sets, (size_t)o->n_sets * sizeof(char *));
        snprintf(set, sizeof set, "schedule.kind=%s", o->kind);
        sets[o->n_sets] = set;
        char e2[ERR_LEN];
        int rc = topo_load(t, o->topo, sets, o->n_sets + 1, e2);
        free(sets);
        if (rc == 0) return 0;
    }
    return topo_load(t, o->topo, o->sets, o->n_sets, err);
}

/* Builds the schedule from the options: with a topology, through the builder run
 * uses (topo_build_schedule; --kind/--schedule/--chunks depart from it); without,
 * from --stages/--micro-batches or the file alone. *detail gets a deadlock's listing. */
static sched_schedule *build_schedule(const opts *o, const topo *t, char **detail, char *err)
{
    const char *kind = o->kind, *file = o->file;
    int P = o->P, M = o->M, v = o->v;
    if (t) {
        topo_sched_opts so = { kind ? kind : file, v, detail };
        if (!so.schedule && v) so.schedule = t->schedule.file ? t->schedule.file : t->schedule.kind;
        sched_schedule *s = NULL;
        topo_build_schedule(t, &so, &s, err);
        return s;
    }
    if (file) {
        sched_schedule *s = sched_load_for(file, M, P, err);
        if (s && P && s->n_stages != P) {
            seterr(err, "%s: the schedule has %d stages (rows), expected %d", file, s->n_stages, P);
            sched_free(s);
            return NULL;
        }
        if (s && o->v && s->n_chunks != o->v) {
            seterr(err, "%s: the schedule has %d chunk(s) per stage, --chunks says %d", file,
                   s->n_chunks, o->v);
            sched_free(s);
            return NULL;
        }
        return s;
    }
    return sched_generate(kind ? kind : "1f1b", P, M, v, err);
}

/* The link rate (bytes per ms: --bandwidth MB/s x 1e3; 0 = none given) and token-bucket burst (bytes)
 * that --bandwidth / --burst or else the topology's "links" set. */
static void given_links(const opts *o, const topo *t, double *bw, double *burst)
{
    *bw = o->bandwidth > 0 ? o->bandwidth * 1e3 : t && t->links.bandwidth_Bps > 0 ? t->links.bandwidth_Bps / 1e3 : 0;
    *burst = o->have_burst ? o->burst : t ? t->links.burst : 0;
}

/* Costs measured in a run (costs.json), for s's layout; transfer and stash
 * bytes from the topology when there is one. NULL with err. */
static sched_costs *calib_costs(const opts *o, const topo *t, const sched_schedule *s, char *note,
                                size_t nn, char *err)
{
    topo_calib cal;
    int rc = topo_calib_load(o->calib, o->n_calib, t, 1, &cal, err), P = cal.n_stages, v = cal.n_chunks, spread = 0;
    if (!rc && (P != s->n_stages || (v != s->n_chunks && v != 1))) {
        seterr(err, "%s: measured on %d stage(s) x %d chunk(s); the schedule has %d x %d", cal.paths[0], P, v,
               s->n_stages, s->n_chunks);
        rc = 2;
    }
    sched_costs *c = cal.costs;
    cal.costs = NULL; /* ours now */
    char path[4096];
    if (cal.n_runs == 1) snprintf(path, sizeof path, "%s", cal.paths[0]);
    else {
        size_t len = (size_t)snprintf(path, sizeof path, "the median of %d runs (per virtual stage, kind F, B, W and "
                                      "link; an even count takes the mean of the middle two):", cal.n_runs);
        for (int i = 0; i < cal.n_runs && len < sizeof path; i++)
            len += (size_t)snprintf(path + len, sizeof path - len, " %.200s", cal.paths[i]);
    }
    topo_calib_free(&cal);
    if (rc) {
        sched_costs_free(c);
        return NULL;
    }
    int spread_note = v != s->n_chunks;
    if (spread_note) { /* one chunk per stage measured: spread each stage's costs over v chunks */
        sched_costs *d = sched_costs_new(P * s->n_chunks);
        if (!d) { sched_costs_free(c); return seterr(err, "out of memory"), NULL; }
        for (int k = 0; k < d->n; k++) {
            int st = sched_stage_of(s, k, NULL);
            d->f[k] = c->f[st] / s->n_chunks;
            d->b[k] = c->b[st] / s->n_chunks;
            d->w[k] = c->w[st] / s->n_chunks;
        }
        d->latency = c->latency;
        d->bandwidth = c->bandwidth;
        d->bw_early = c->bw_early;
        d->w_in_order = c->w_in_order;
        sched_costs_free(c);
        c = d;
    }
    double *ones = t ? malloc((size_t)t->n_stages * sizeof(double)) : NULL; /* only the bytes are used */
    for (int k = 0; ones && k < t->n_stages; k++) ones[k] = 1;
    sched_costs *tc = ones ? topo_costs(t, s->n_chunks, s->placement, ones, &spread) : NULL;
    free(ones);
    for (int i = 0; tc && i < c->n; i++) {
        c->xfer_bytes[i] = tc->xfer_bytes[i];
        if (!c->grad_bytes) c->grad_bytes = calloc((size_t)c->n, sizeof(double));
        if (c->grad_bytes) c->grad_bytes[i] = tc->grad_bytes ? tc->grad_bytes[i] : tc->xfer_bytes[i];
        c->stash_bytes[i] = tc->stash_bytes[i];
        c->f_tmp_bytes[i] = tc->f_tmp_bytes[i];
        c->b_bytes[i] = tc->b_bytes[i];
        c->bw_bytes[i] = tc->bw_bytes[i];
        c->weight_bytes[i] = tc->weight_bytes[i];
    }
    sched_costs_free(tc);
    snprintf(note, nn, "calibrated from %.900s%s", path,
             spread_note ? " (each stage's measured costs spread evenly over the schedule's chunks)" : "");
    if (c->link_bandwidth) { /* what the run's sends saw: reported, not simulated (the measured
                              * latency already holds the transfers; --bandwidth or the
                              * topology's "links" set the link model) */
        size_t used = strlen(note);
        used += (size_t)snprintf(note + used, used < nn ? nn - used : 0, "; sends saw");
        /* the wrap-around link P-1 -> 0 carries only an interleaved loop's sends: 0 there is no link */
        for (int i = 0, first = 1; i < (P == 2 ? 1 : P) && used < nn; i++) {
            if (i == P - 1 && P > 2 && !(c->link_bandwidth[i] > 0)) continue;
            used += (size_t)snprintf(note + used, nn - used, "%s %.4g MB/s on link %d-%d", first ? "" : ",",
                                     c->link_bandwidth[i] / 1e3, i, (i + 1) % P);
            first = 0;
        }
        double bw, burst;
        given_links(o, t, &bw, &burst);
        if (bw > 0 && used < nn) /* a tbf-shaped link: sends above its rate are its burst's credit */
            snprintf(note + used, nn - used, burst > 0 ? " (the links' model: %.4g MB/s, a %.0f-byte burst)"
                                                       : " (the links' model: %.4g MB/s, no burst)", bw / 1e3, burst);
        free(c->link_bandwidth);
        c->link_bandwidth = NULL;
    }
    return c;
}

/* GFLOP/s of each stage for FLOP-derived costs: --gflops per BLAS thread, else this
 * machine's sgemm at the model's shapes (measured once per thread count, cached)
 * times MODEL_STEP_EFFICIENCY. note says which, with the numbers. -1 when the
 * measurement failed (note says why). */
static int stage_rates(const opts *o, const topo *t, double *rates, char *note, size_t nn)
{
    if (o->gflops > 0) {
        for (int st = 0; st < t->n_stages; st++) rates[st] = o->gflops * t->stages[st].threads;
        snprintf(note, nn, "from FLOPs at %g GFLOP/s per BLAS thread (--gflops)", o->gflops);
        return 0;
    }
    model_gemm_shape sh[8];
    size_t n = model_gemm_shapes(&t->model, (size_t)topo_micro_batch(t) * (size_t)t->model.seq_len, sh, 8);
    char where[4300] = "", rates_txt[200] = "";
    size_t len = 0;
    int any_measured = 0, no_cache = 0;
    for (int st = 0; st < t->n_stages; st++) {
        int th = t->stages[st].threads, prev = -1, cached = 1;
        for (int k = 0; k < st && prev < 0; k++)
            if (t->stages[k].threads == th) prev = k;
        double g = prev >= 0 ? rates[prev] / MODEL_STEP_EFFICIENCY : model_sgemm_gflops(sh, n, th, where, sizeof where, &cached);
        if (g <= 0) return seterr(note, "could not measure sgemm at the model's shapes: give --gflops"), -1;
        any_measured |= !cached;
        no_cache |= !strncmp(where, "not cached", 10);
        rates[st] = g * MODEL_STEP_EFFICIENCY;
        if (prev < 0 && len < sizeof rates_txt)
            len += (size_t)snprintf(rates_txt + len, sizeof rates_txt - len, "%s%.1f GFLOP/s at %d thread%s",
                                    len ? ", " : "", g, th, th > 1 ? "s" : "");
    }
    snprintf(note, nn, "from FLOPs, assuming %s measured sgemm (this model's shapes) x %.2f step efficiency; %s %.300s",
             rates_txt, MODEL_STEP_EFFICIENCY,
             no_cache ? "" : any_measured ? "measured now, cached in" : "cached in", where);
    return 0;
}

/* Buckets without a topology: each stage's --grad-bytes spread evenly over its
 * chunks, each chunk's cut into --bucket-mb buckets that become ready evenly
 * through its last weight pass. */
static sched_allreduce *flat_allreduce(const opts *o, const sched_schedule *s, char *err)
{
    double cap = (o->have_bucket_mb ? o->bucket_mb : 4) * 1048576.0, per = o->grad_bytes / s->n_chunks;
    double nbd = per > 0 ? ceil(per / cap) : 0;
    if (nbd * s->n_stages * s->n_chunks > 1e7)
        return seterr(err, "--grad-bytes %.0f in buckets of %g MiB (--bucket-mb): more than 10^7 buckets", o->grad_bytes,
                      cap / 1048576.0),
               NULL;
    size_t nb = (size_t)nbd, i = 0;
    sched_allreduce *a = sched_allreduce_new(nb * (size_t)s->n_stages * (size_t)s->n_chunks);
    if (!a) return seterr(err, "out of memory"), NULL;
    for (int st = 0; st < s->n_stages; st++)
        for (int ch = 0; ch < s->n_chunks; ch++)
            for (size_t b = 0; b < nb; b++)
                a->b[i++] = (sched_bucket){ st, ch, (double)(b + 1) / (double)nb, 0,
                                            b + 1 < nb ? cap : per - cap * (double)(nb - 1) };
    return a;
}

/* Hangs the replicas' all-reduce on c when R > 1: buckets from the topology (or
 * --grad-bytes), ring latency and bandwidth from --allreduce-* else the links'.
 * Returns 0, or -1 with err (out of memory, too many buckets). */
static int attach_allreduce(const opts *o, const topo *t, const sched_schedule *s, sched_costs *c, char *err)
{
    int R = o->R ? o->R : t ? t->n_replicas : 1;
    if (R <= 1) return 0;
    sched_allreduce *a = t ? topo_allreduce_plan(t, s->n_chunks, err) : flat_allreduce(o, s, err);
    if (!a) return -1;
    a->replicas = R;
    a->latency = o->have_ar_latency ? o->ar_latency : c->latency;
    a->bandwidth = o->have_ar_bandwidth ? o->ar_bandwidth * 1e3 : c->bandwidth;
    c->ar = a;
    return 0;
}

static sched_costs *build_costs(const opts *o, const topo *t, const sched_schedule *s,
                                char *note, size_t nn, char *err)
{
    sched_costs *c = NULL;
    int spread = 0;
    if (o->n_calib) {
        if (!(c = calib_costs(o, t, s, note, nn, err))) return NULL;
    } else if (o->have_costs || !t) {
        const double *k = o->have_costs ? o->cost : (const double[3]){ 1, 1, 1 };
        c = sched_costs_uniform(s->n_stages, s->n_chunks, k[0], k[1], k[2]);
        snprintf(note, nn, "%s", o->have_costs ? "--costs" : "default 1,1,1 ms (no --costs)");
        if (c) for (int i = 0; i < c->n; i++) c->stash_bytes[i] = 0;
    } else {
        double *rates = malloc((size_t)t->n_stages * sizeof(double));
        char rnote[1024];
        if (!rates || stage_rates(o, t, rates, rnote, sizeof rnote)) {
            free(rates);
            return seterr(err, "%s", rates ? rnote : "out of memory"), NULL;
        }
        c = topo_costs(t, s->n_chunks, s->placement, rates, &spread);
        free(rates);
        snprintf(note, nn, "%s%s", rnote, spread ? " (each stage's work spread evenly over the schedule's chunks)" : "");
    }
    if (!c) return seterr(err, "out of memory"), NULL;
    for (int i = 0; i < c->n; i++) {
        if (o->have_bytes) c->xfer_bytes[i] = o->bytes;
        if (o->have_bytes && c->grad_bytes) c->grad_bytes[i] = o->bytes;
        if (o->have_stash) { /* the whole memory model: N per micro-batch in flight */
            c->stash_bytes[i] = o->stash / s->n_chunks;
            c->f_tmp_bytes[i] = c->b_bytes[i] = c->bw_bytes[i] = 0;
        }
    }
    if (!o->n_calib || o->have_latency) c->latency = o->latency;
    /* the topology's "links" (issue 14) unless --latency / --bandwidth / --burst say
     * otherwise; a calibrated run keeps its costs file's bandwidth when none is given */
    if (t && !o->have_latency && t->links.latency_ms > 0) c->latency = t->links.latency_ms;
    double bw;
    given_links(o, t, &bw, &c->burst);
    if (!o->n_calib || bw > 0) c->bandwidth = bw;
    if (c->burst > 0 && !(c->bandwidth > 0)) { /* the topology's burst has its bandwidth (topo_validate) */
        seterr(err, "--burst %.0f: a token bucket needs a link rate: --bandwidth MB/S, or the topology's "
               "links.bandwidth", c->burst);
        sched_costs_free(c);
        return NULL;
    }
    if (attach_allreduce(o, t, s, c, err)) {
        sched_costs_free(c);
        return NULL;
    }
    return c;
}

int cli_schedule_main(int argc, char **argv)
{
    opts o = { .fmt = FMT_ASCII, .width = 120, .gflops = 0 /* 0: measured */ };
    char err[ERR_LEN];
    topo t;
    int have_topo = 0, rc = 2;
    sched_schedule *s = NULL;
    sched_costs *c = NULL;
    sched_report *r = NULL;
    char *detail = NULL;
    memset(&t, 0, sizeof t);
    o.sets = calloc((size_t)argc + 1, sizeof(char *));
    o.calib = calloc((size_t)argc + 1, sizeof(char *));
    if (!o.sets || !o.calib) {
        free(o.sets);
        free(o.calib);
        return 1;
    }
    int prc = parse_args(&o, argc, argv);
    if (prc) {
        if (prc < 0) { fputs(usage_text, stdout); rc = 0; }
        goto done;
    }
    if (o.topo) {
        if (load_topo(&t, &o, err)) goto fail;
        have_topo = 1;
    } else if (o.n_sets) {
        usage_err("%s", "--set needs a topology file");
        goto done;
    }
    if (!(s = build_schedule(&o, have_topo ? &t : NULL, &detail, err))) goto fail;
    char note[1200];
    if (!(c = build_costs(&o, have_topo ? &t : NULL, s, note, sizeof note, err))) {
        if (strstr(err, "out of memory")) rc = 1;
        goto fail;
    }
    int timeline = o.fmt == FMT_ASCII || o.fmt == FMT_SVG || o.fmt == FMT_CHROME;
    if (sched_simulate(s, c, timeline, &r, err)) {
        if (strstr(err, "out of memory")) rc = 1;
        goto fail;
    }
    if ((rc = output(&o, s, r, c, note, have_topo || o.have_stash, err))) goto fail;
    goto done;
fail:
    if ((r && r->detail) || detail) { /* err holds the summary line and the start of the listing */
        char *nl = strchr(err, '\n');
        if (nl) *nl = 0;
        fprintf(stderr, "pipetrain schedule: %s\n%s", err, detail ? detail : r->detail);
    } else {
        fprintf(stderr, "pipetrain schedule: %s\n", err);
    }
done:
    free(detail);
    sched_report_free(r);
    sched_costs_free(c);
    sched_free(s);
    if (have_topo) topo_free(&t);
    free(o.sets);
    free(o.calib);
    return rc;
}

int cli_schedule_rates(const topo *t, double gflops, double *rates, char *note, size_t nn)
{
    opts o = { .gflops = gflops };
    return stage_rates(&o, t, rates, note, nn);
}
