/* run.c — the run's lifecycle (see run.h): the start point, the cadence, the
 * optimizer step's parameters and the record of a run (metrics.jsonl, the
 * progress line, checkpoint commits, summary.json, loss.svg). */
#include "run/run.h"
#include "base/base.h"
#include "run/run_ckpt.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- where a run starts ---- */

static int log_event(const char *out, json_t *j, char *err)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text) return seterr(err, "%s/metrics.jsonl: cannot encode an event line", out);
    run_metrics *m = run_metrics_open(out, 1, err);
    int rc = !m || run_metrics_event(m, text, err);
    run_metrics_close(m);
    free(text);
    return rc ? -1 : 0;
}

/* A fresh run: another run's step directories and latest, moved as they are
 * into CKPT.set-aside-N. Returns 0 or 1 with err. */
static int set_aside_all(const char *root, const char *who, char *err)
{
    long *steps, newest = -1;
    long n = run_ckpt_scan(root, &steps, err);
    char latest[4200], aside[4400] = "";
    struct stat st;
    snprintf(latest, sizeof latest, "%s/latest", root);
    int has_latest = lstat(latest, &st) == 0, complete = 0, rc = n < 0;
    for (long i = 0; i < n; i++)
        if (run_ckpt_is_complete(root, steps[i])) { complete++; if (newest < 0) newest = steps[i]; }
    for (long i = 0; i < n && !rc; i++) {
        char name[64];
        snprintf(name, sizeof name, "step-%ld", steps[i]);
        rc = run_ckpt_set_aside(root, name, aside, sizeof aside, err) != 0;
    }
    if (!rc && has_latest) rc = run_ckpt_set_aside(root, "latest", aside, sizeof aside, err) != 0;
    free(steps);
    if (rc) return 1;
    if (!aside[0]) return 0;
    if (complete)
        fprintf(stderr, "%s: note: %s held checkpoints of another run (%d complete, the newest step-%ld): this run "
                "starts from step 0 and neither resumes nor overwrites them (--resume continues a run); moved to %s "
                "as they were\n", who, root, complete, newest, aside);
    else
        fprintf(stderr, "%s: note: %s held no complete checkpoint, only another run's unfinished step "
                "directories: moved to %s as they were; this run starts from step 0\n", who, root, aside);
    return 0;
}

/* 1 when the checkpoint in step directory dir is this run's to restart from:
 * written by it (o->writer) or the one it resumed (o->origin). */
static int ours(const char *dir, const run_start_opts *o, uint64_t *writer)
{
    char sha[65], e[ERR_LEN];
    if (run_ckpt_identity(dir, writer, sha, e)) return 0;
    return (o->writer && *writer == o->writer) || (o->origin && o->origin[0] && !strcmp(sha, o->origin));
}

/* A restart: this run's newest complete checkpoint, opened (with key) into c,
 * *have 1; *have 0 when there is none. The latest checkpoint is taken as
 * before when it is this run's; else the newest complete one of this run below
 * it, latest is pointed at that one (removed when none). Another run's
 * complete checkpoints above the one taken are set aside, each with a note.
 * Returns 0, 1 or 2 (a checkpoint unreadable) with err. */
static int restart_choice(const char *root, const run_start_opts *o, const run_ckpt_key *key, const char *who,
                          run_ckpt *c, int *have, char *err)
{
    char latest[4200], aside[4400] = "", dir[4200] = "";
    uint64_t w;
    *have = 0;
    snprintf(latest, sizeof latest, "%s/latest", root);
    if (access(latest, F_OK) != 0) return 0;
    if (run_ckpt_open(c, root, key, err)) return 2;
    int mine = ours(c->dir, o, &w);
    long top = mine ? c->step : -1;
    if (!mine) run_ckpt_close(c);
    long *steps;
    long n = run_ckpt_scan(root, &steps, err);
    int rc = n < 0;
    for (long i = 0; i < n && !rc && !dir[0] && steps[i] > top; i++) {
        char sd[4200], name[64];
        if (!run_ckpt_is_complete(root, steps[i])) continue; /* forgotten after the step taken */
        snprintf(name, sizeof name, "step-%ld", steps[i]);
        snprintf(sd, sizeof sd, "%s/%s", root, name);
        if (ours(sd, o, &w)) {
            if (!mine) snprintf(dir, sizeof dir, "%s", sd);
            continue; /* above latest: forgotten as before */
        }
        rc = run_ckpt_set_aside(root, name, aside, sizeof aside, err) != 0;
        char whose[48] = "no writer recorded";
        if (w) snprintf(whose, sizeof whose, "its writer %016llx", (unsigned long long)w);
        if (!rc)
            fprintf(stderr, "%s: note: %s was not written by this run (%s, this run %016llx) nor is it the "
                    "checkpoint it resumed: not resumed; moved to %s as it was\n", who, sd, whose,
                    (unsigned long long)o->writer, aside);
    }
    free(steps);
    if (rc) {
        if (mine) run_ckpt_close(c);
        return 1;
    }
    if (mine) return *have = 1, 0;
    if (!dir[0]) {
        if (unlink(latest) && errno != ENOENT) return seterr(err, "%s: cannot remove: %s", latest, strerror(errno)), 1;
        return 0;
    }
    char text[80];
    snprintf(text, sizeof text, "%s\n", strrchr(dir, '/') + 1);
    if (base_write_durable(latest, text, strlen(text), err)) return 1;
    if (run_ckpt_open(c, dir, key, err)) return 2;
    *have = 1;
    return 0;
}

int run_start_point(const topo *t, const char *out, const run_start_opts *o, long *first, char *err)
{
    char root[4096];
    const char *who = o->who ? o->who : "pipetrain";
    *first = 0;
    run_ckpt_root(t, out, root, sizeof root);
    if (!o->resume && o->restart <= 0) return set_aside_all(root, who, err);
    run_ckpt c;
    run_ckpt_key key;
    int have = 1;
    if (run_ckpt_key_for(&key, t, err)) return 2;
    if (o->resume) {
        if (run_ckpt_open(&c, root, &key, err)) {
            snprintf(err + strlen(err), ERR_LEN - strlen(err), " (--resume needs a complete checkpoint)");
            return 2;
        }
    } else {
        int rc = restart_choice(root, o, &key, who, &c, &have, err);
        if (rc) return rc;
    }
    if (have) {
        int bad = run_ckpt_check_topology(&c, t, err);
        if (!bad && c.step > t->train.steps)
            bad = seterr(err, "%s: the checkpoint is at step %ld, beyond train.steps %d", c.dir, c.step, t->train.steps);
        if (!bad && o->resume && o->origin) {
            uint64_t w;
            if (run_ckpt_identity(c.dir, &w, o->origin, err)) bad = -1;
        }
        if (!bad) {
            char note[1200];
            *first = c.step;
            fprintf(stderr, "%s: resuming from %s (step %ld)\n", who, c.dir, c.step);
            if (o->resume && run_ckpt_split_note(&c, t, note, sizeof note)) fprintf(stderr, "%s: note: %s\n", who, note);
        }
        run_ckpt_close(&c);
        if (bad) return 2;
    }
    if (run_ckpt_forget_after(root, *first, err) || run_ckpt_trim_metrics(out, *first, err)) return 1;
    if (*first == t->train.steps) return 0; /* complete: nothing will run, nothing to mark */
    json_t *ev;
    if (o->restart > 0) {
        fprintf(stderr, "%s: restart %d of %d from step %ld%s after: %s\n", who, o->restart, o->max_restarts, *first,
                have ? "" : " (no checkpoint of this run yet)", o->cause ? o->cause : "");
        ev = json_pack("{s:s,s:i,s:i,s:I,s:s}", "event", "restart", "restart", o->restart, "max_restarts",
                       o->max_restarts, "from_step", (json_int_t)*first, "cause", o->cause ? o->cause : "");
    } else {
        ev = json_pack("{s:s,s:I}", "event", "resume", "from_step", (json_int_t)*first);
    }
    return log_event(out, ev, err) ? 1 : 0;
}

/* ---- cadence ---- */

static int every(long s, long total, int n) { return s + 1 == total || (n > 0 && (s + 1) % n == 0); }

int run_is_eval_step(const topo *t, long s) { return every(s, t->train.steps, t->train.eval_every); }

int run_is_ckpt_step(const topo *t, long s) { return every(s, t->train.steps, t->checkpoint.every); }

size_t run_eval_windows(const topo *t, long s, size_t available)
{
    size_t cap = (size_t)t->train.eval_batches * (size_t)t->train.batch_size;
    return s + 1 == t->train.steps || cap >= available ? available : cap;
}

void run_ckpt_step_dir(const topo *t, const char *out_dir, long steps, char *dir, size_t n)
{
    char root[4096];
    run_ckpt_root(t, out_dir, root, sizeof root);
    snprintf(dir, n, "%s/step-%ld", root, steps);
}

int run_write_shard(const topo *t, const char *out_dir, int stage, long steps, const model_part *p,
                    const optim_adamw *o, uint64_t sampler_state, char *err)
{
    char dir[4200];
    run_ckpt_step_dir(t, out_dir, steps, dir, sizeof dir);
    run_ckpt_state st = { steps, sampler_state };
    return run_ckpt_write_shard(dir, stage, p, o, &st, err);
}

int run_resume_part(const topo *t, const char *out_dir, long steps, model_part *p, optim_adamw *o,
                    uint64_t *sampler_state, char *err)
{
    char dir[4200];
    run_ckpt c;
    run_ckpt_state st;
    run_ckpt_key key;
    run_ckpt_step_dir(t, out_dir, steps, dir, sizeof dir);
    if (run_ckpt_key_for(&key, t, err) || run_ckpt_open(&c, dir, &key, err)) return -1;
    int rc = run_ckpt_load_units(&c, p, o, &st, err);
    run_ckpt_close(&c);
    if (rc) return -1;
    if (st.step != steps) return seterr(err, "%s holds step %ld, not %ld", dir, st.step, steps);
    *sampler_state = st.sampler_state;
    return 0;
}

int run_write_shard_2bw(const topo *t, const char *out_dir, int stage, long steps, const model_part *p,
                        const optim_adamw *o, uint64_t sampler_state, const float *prev, char *err)
{
    char dir[4200];
    run_ckpt_step_dir(t, out_dir, steps, dir, sizeof dir);
    run_ckpt_state st = { steps, sampler_state };
    return run_ckpt_write_shard_2bw(dir, stage, p, o, &st, prev, err);
}

int run_write_shard_fill(const topo *t, const char *out_dir, int stage, long steps, const model_part *p,
                         run_ckpt_moments_fn fill, void *arg, uint64_t sampler_state, const float *prev, char *err)
{
    char dir[4200];
    run_ckpt_step_dir(t, out_dir, steps, dir, sizeof dir);
    run_ckpt_state st = { steps, sampler_state };
    return run_ckpt_write_shard_fill(dir, stage, p, fill, arg, &st, prev, err);
}

int run_resume_prev(const topo *t, const char *out_dir, long steps, const model_part *p, float *prev, char *err)
{
    char dir[4200];
    run_ckpt c;
    run_ckpt_key key;
    run_ckpt_step_dir(t, out_dir, steps, dir, sizeof dir);
    if (run_ckpt_key_for(&key, t, err) || run_ckpt_open(&c, dir, &key, err)) return -1;
    int rc = run_ckpt_load_prev(&c, p, prev, err);
    run_ckpt_close(&c);
    return rc;
}

/* ---- the optimizer step ---- */

double run_lr(const topo *t, long s)
{
    const topo_train *tr = &t->train;
    return optim_lr(s, tr->steps, tr->warmup_steps, tr->lr, tr->min_lr);
}

static optim_hparams hparams(const topo *t, long s)
{
    const topo_train *tr = &t->train;
    return (optim_hparams){ (float)run_lr(t, s), (float)tr->beta1, (float)tr->beta2, 1e-8f, (float)tr->weight_decay };
}

optim_hparams run_optim_hparams(const topo *t, long s) { return hparams(t, s); }

void run_optim_apply(const topo *t, model_part *p, optim_adamw *o, long s, double norm)
{
    optim_hparams h = hparams(t, s);
    optim_adamw_step(o, p, &h, optim_clip_scale(norm, t->train.grad_clip));
}

void run_optim_apply_ranges(const topo *t, model_part *p, optim_adamw *o, long s, double norm, const size_t *off,
                            const size_t *len, int n)
{
    optim_hparams h = hparams(t, s);
    optim_adamw_step_ranges(o, p, &h, optim_clip_scale(norm, t->train.grad_clip), off, len, n);
}

/* ---- the record ---- */

struct run_log {
    const topo *t;
    run_log_opts o;
    run_metrics *metrics;
    run_progress progress;
    double t0, train_s;      /* opened at; seconds of the steps recorded */
    long done;               /* steps taken (1-based), first_step included */
    double loss, val;        /* the last training and validation losses */
    run_ckpt_key key;        /* authenticates the checkpoints committed (from t's secret) */
    int n_proc;              /* processes of the grid: n_stages x n_replicas, in rank order */
    run_stage_stats *stats;  /* (n_proc) */
    long *pids;              /* (n_proc) */
    int n_servers;           /* sync "ps": parameter servers, else 0 */
    run_server_stats *sstats; /* (n_servers) */
    long *spids;             /* (n_servers) */
    json_t *timing;
    char *trace;             /* summary.json's "trace", or NULL: null */
};

run_log *run_log_open(const topo *t, const run_log_opts *o, char *err)
{
    run_ckpt_key key;
    if (run_ckpt_key_for(&key, t, err) || run_mkdirs(o->out_dir, err)) return NULL;
    run_metrics *m = run_metrics_open(o->out_dir, o->append, err);
    if (!m) return NULL;
    run_log *l = xcalloc(1, sizeof *l);
    l->t = t;
    l->o = *o;
    l->key = key;
    while (!l->o.writer && getrandom(&l->o.writer, sizeof l->o.writer, 0) != sizeof l->o.writer) {}
    l->metrics = m;
    l->t0 = base_now();
    l->done = o->first_step;
    l->loss = l->val = NAN;
    l->n_proc = t->n_stages * (t->n_replicas > 0 ? t->n_replicas : 1);
    l->stats = xcalloc((size_t)l->n_proc, sizeof *l->stats);
    l->pids = xcalloc((size_t)l->n_proc, sizeof *l->pids);
    l->n_servers = t->sync_id == TOPO_SYNC_PS ? t->n_servers : 0;
    l->sstats = xcalloc((size_t)l->n_servers + 1, sizeof *l->sstats);
    l->spids = xcalloc((size_t)l->n_servers + 1, sizeof *l->spids);
    run_progress_init(&l->progress, o->progress, t->train.steps, t->train.log_every);
    return l;
}

void run_log_note(run_log *l, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    run_progress_note(&l->progress, "%s", buf);
}

int run_log_step(run_log *l, long s, double loss, double lr, double norm, double val_loss, double dt, char *err)
{
    const topo *t = l->t;
    if (!isfinite(loss)) return seterr(err, "training diverged: loss is %f at step %ld", loss, s + 1), 1;
    double tokens = (double)t->train.batch_size * (double)t->model.seq_len;
    run_metrics_row row = { s + 1, loss, lr, norm, dt * 1e3, dt > 0 ? tokens / dt : 0, val_loss, 0 };
    l->train_s += dt;
    l->done = s + 1;
    l->loss = loss;
    if (!isnan(val_loss)) l->val = val_loss;
    long taken = l->done - l->o.first_step;
    run_progress_step(&l->progress, &row, l->train_s / (double)taken * (double)(t->train.steps - l->done));
    if (run_metrics_log(l->metrics, &row, err)) return 1;
    if (!isnan(val_loss) && run_metrics_write_svg(l->metrics, err)) return 1;
    return 0;
}

int run_log_worker_step(run_log *l, int w, long s, double loss, double lr, double norm, double val_loss, double dt,
                        double tokens, char *err)
{
    const topo *t = l->t;
    if (!isfinite(loss)) return seterr(err, "training diverged: loss is %f at step %ld of worker %d", loss, s + 1, w), 1;
    run_metrics_row row = { s + 1, loss, lr, norm, dt * 1e3, dt > 0 ? tokens / dt : 0, val_loss, w + 1 };
    if (s + 1 > l->done) l->done = s + 1;
    l->loss = loss;
    if (!isnan(val_loss)) l->val = val_loss;
    double el = base_now() - l->t0;
    l->train_s = el;
    long taken = l->done - l->o.first_step;
    run_progress_step(&l->progress, &row, taken > 0 ? el / (double)taken * (double)(t->train.steps - l->done) : 0);
    if (run_metrics_log(l->metrics, &row, err)) return 1;
    if (!isnan(val_loss) && run_metrics_write_svg(l->metrics, err)) return 1;
    return 0;
}

int run_log_event(run_log *l, json_t *ev, char *err)
{
    if (!ev) return 0;
    char *text = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    if (!text) return seterr(err, "%s/metrics.jsonl: cannot encode an event line", l->o.out_dir), 1;
    int rc = run_metrics_event(l->metrics, text, err);
    free(text);
    return rc ? 1 : 0;
}

int run_log_checkpoint(run_log *l, long steps, char *err)
{
    char root[4096], dir[4200], cerr[ERR_LEN];
    run_ckpt_root(l->t, l->o.out_dir, root, sizeof root);
    snprintf(dir, sizeof dir, "%s/step-%ld", root, steps);
    if (run_ckpt_commit_by(dir, l->t, steps, &l->key, l->o.writer, cerr) || run_ckpt_prune(root, l->t->checkpoint.keep, cerr))
        return seterr(err, "checkpoint at step %ld: %s", steps, cerr);
    run_progress_note(&l->progress, "checkpoint: %s", dir);
    return 0;
}

void run_log_stage(run_log *l, int k, const run_stage_stats *s, long pid)
{
    if (k < 0 || k >= l->n_proc) return;
    l->stats[k] = *s;
    l->pids[k] = pid;
}

void run_log_server(run_log *l, int j, const run_server_stats *s, long pid)
{
    if (j < 0 || j >= l->n_servers) return;
    l->sstats[j] = *s;
    l->spids[j] = pid;
}

void run_log_timing(run_log *l, json_t *timing)
{
    json_decref(l->timing);
    l->timing = json_incref(timing);
}

void run_log_trace(run_log *l, const char *status)
{
    free(l->trace);
    l->trace = status ? xstrdup(status) : NULL;
}

long run_log_done(const run_log *l) { return l->done; }

static double tokens_per_s(const run_log *l)
{
    const topo *t = l->t;
    long taken = l->done - l->o.first_step;
    return l->train_s > 0 ? (double)taken * t->train.batch_size * t->model.seq_len / l->train_s : 0;
}

static json_t *stages_json(const run_log *l)
{
    json_t *a = json_array();
    int P = l->t->n_stages;
    for (int k = 0; k < l->n_proc; k++) { /* rank order: process k is stage k % P, replica k / P */
        const topo_stage *s = &l->t->stages[k % P];
        const char *host = s->replicas ? s->replicas[k / P].host : s->host;
        int port = s->replicas ? s->replicas[k / P].port : s->port;
        const run_stage_stats *st = &l->stats[k];
        json_array_append_new(a, json_pack("{s:i,s:i,s:s,s:i,s:s,s:I,s:I,s:I,s:I,s:f,s:f,s:f,s:I,s:f,s:f,s:f,s:I,s:I}",
                                           "stage", k % P, "replica", k / P, "host", host, "port", port, "layers",
                                           s->layers, "pid", (json_int_t)l->pids[k], "peak_act_bytes",
                                           (json_int_t)st->peak_act_bytes, "peak_in_flight",
                                           (json_int_t)st->peak_in_flight, "steps", (json_int_t)st->steps,
                                           "compute_s", st->compute_s, "wait_s", st->wait_s, "optim_s",
                                           st->optim_s, "bytes_sent", (json_int_t)st->bytes_sent, "wall_s",
                                           st->wall_s, "allreduce_s", st->allreduce_s, "exposed_s",
                                           st->exposed_s, "optim_bytes", (json_int_t)st->optim_bytes,
                                           "extra_weight_bytes", (json_int_t)st->extra_weight_bytes));
    }
    return a;
}

static json_t *servers_json(const run_log *l)
{
    json_t *a = json_array();
    for (int j = 0; j < l->n_servers; j++) {
        const run_server_stats *st = &l->sstats[j];
        const topo_addr *ad = &l->t->parameter_servers[j];
        json_t *h = json_array();
        int last = RUN_STALE_BUCKETS - 1;
        while (last > 0 && !st->staleness[last]) last--;
        for (int d = 0; d <= last; d++) json_array_append_new(h, json_integer((json_int_t)st->staleness[d]));
        json_array_append_new(a, json_pack("{s:i,s:s,s:i,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:o}", "server", j, "host",
                                           ad->host, "port", ad->port, "pid", (json_int_t)l->spids[j], "pushes",
                                           (json_int_t)st->pushes, "refused", (json_int_t)st->refused,
                                           "bytes_received", (json_int_t)st->bytes_received, "bytes_sent",
                                           (json_int_t)st->bytes_sent, "steps", (json_int_t)st->steps, "wall_s",
                                           st->wall_s, "staleness", h));
    }
    return a;
}

/* Per replica (a worker with parameter servers): steps, the slowest stage's
 * wall time and their ratio. */
static json_t *workers_json(const run_log *l)
{
    json_t *a = json_array();
    int P = l->t->n_stages, R = l->n_proc / (P > 0 ? P : 1);
    for (int r = 0; r < R; r++) {
        uint64_t steps = 0;
        double wall = 0;
        for (int k = 0; k < P; k++) {
            const run_stage_stats *st = &l->stats[r * P + k];
            if (st->wall_s > wall) wall = st->wall_s;
            if (k == 0 || st->steps < steps) steps = st->steps;
        }
        json_array_append_new(a, json_pack("{s:i,s:I,s:f,s:f}", "worker", r, "steps_taken", (json_int_t)steps, "wall_s",
                                           wall, "steps_per_s", wall > 0 ? (double)steps / wall : 0.0));
    }
    return a;
}

/* Every server's histogram added up (a worker-step counts once per server
 * that holds some of its pieces); trailing zeros dropped, [] without servers. */
static json_t *staleness_json(const run_log *l)
{
    uint64_t h[RUN_STALE_BUCKETS] = { 0 };
    int last = -1;
    for (int j = 0; j < l->n_servers; j++)
        for (int d = 0; d < RUN_STALE_BUCKETS; d++) {
            h[d] += l->sstats[j].staleness[d];
            if (h[d] && d > last) last = d;
        }
    json_t *a = json_array();
    for (int d = 0; d <= last; d++) json_array_append_new(a, json_integer((json_int_t)h[d]));
    return a;
}

static json_t *real_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static double val_tokens, val_bytes; /* run_set_val_bytes */

void run_set_val_bytes(double tokens, double bytes)
{
    val_tokens = tokens;
    val_bytes = bytes;
}

static int write_summary(const run_log *l, const char *error, char *err)
{
    const topo *t = l->t;
    size_t params = 0;
    for (int u = 0; u < topo_n_units(t); u++) params += model_unit_params(&t->model, u);
    json_t *j = json_pack("{s:I,s:o,s:o,s:f,s:f,s:I,s:i,s:s,s:i,s:i,s:I,s:b,s:o,s:o,s:O}", "steps",
                          (json_int_t)l->done, "final_loss", real_or_null(l->loss), "val_loss", real_or_null(l->val),
                          "wall_s", base_now() - l->t0, "tokens_per_s", tokens_per_s(l), "params",
                          (json_int_t)params, "n_stages", t->n_stages, "schedule",
                          t->schedule.kind ? t->schedule.kind : "file", "micro_batches", t->train.micro_batches,
                          "restarts", l->o.restarts, "first_step", (json_int_t)l->o.first_step, "interrupted",
                          error != NULL, "error", error ? json_string(error) : json_null(), "stages",
                          stages_json(l), "timing", l->timing ? l->timing : json_null());
    /* always the key (the same keys whatever the run): null without a trace */
    json_t *tr = l->trace ? json_string(l->trace) : NULL;
    if (j) json_object_set_new(j, "trace", tr ? tr : json_null());
    else json_decref(tr);
    if (j) { /* the data-parallel degree and ZeRO stage (1 and 0 without replicas) */
        json_object_set_new(j, "replicas", json_integer(t->n_replicas > 0 ? t->n_replicas : 1));
        json_object_set_new(j, "zero", json_integer(t->train.zero));
        /* parameter servers (issue 12): [] and "allreduce" without them */
        json_object_set_new(j, "sync", json_string(t->sync_id == TOPO_SYNC_PS ? "ps" : "allreduce"));
        json_object_set_new(j, "servers", servers_json(l));
        json_object_set_new(j, "workers", workers_json(l));
        json_object_set_new(j, "staleness", staleness_json(l));
        /* bits per byte, so byte-level and BPE runs compare (README "Tokenizer") */
        int known = val_tokens > 0 && val_bytes > 0;
        json_object_set_new(j, "val_bits_per_byte",
                            real_or_null(known ? l->val * val_tokens / val_bytes / log(2.0) : NAN));
        json_object_set_new(j, "val_bytes_per_token", real_or_null(known ? val_bytes / val_tokens : NAN));
    }
    char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
    json_decref(j);
    if (!text) return seterr(err, "%s/summary.json: cannot encode the summary", l->o.out_dir);
    char path[4200];
    snprintf(path, sizeof path, "%s/summary.json", l->o.out_dir);
    int rc = base_write_durable(path, text, strlen(text), err);
    free(text);
    return rc;
}

int run_log_finish(run_log *l, const char *error, char *err)
{
    if (write_summary(l, error, err) || run_metrics_write_svg(l->metrics, err)) return -1;
    if (!error)
        run_progress_note(&l->progress, "done: %ld steps, loss %.4f, val_loss %.4f, %.0f tokens/s, %.1f s", l->done,
                          l->loss, l->val, tokens_per_s(l), base_now() - l->t0);
    return 0;
}

void run_log_free(run_log *l)
{
    if (!l) return;
    run_metrics_close(l->metrics);
    json_decref(l->timing);
    free(l->trace);
    explicit_bzero(&l->key, sizeof l->key);
    free(l->stats);
    free(l->pids);
    free(l->sstats);
    free(l->spids);
    free(l);
}
