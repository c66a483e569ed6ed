/* train.c — the in-process trainer (see train.h). One step: draw the batch with
 * the seeded sampler, run forward, backward-input and backward-weight per
 * micro-batch in micro-batch order, combine per-unit squared norms in unit order,
 * clip, AdamW. The same order the pipeline runtime uses, so the numbers match. */
#include "stage/train.h"
#include "model/optim.h"
#include "model/safetensors.h"
#include "model/util.h"
#include "run/run_ckpt.h"
#include "run/run_metrics.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <time.h>

static volatile sig_atomic_t interrupted;
static void on_signal(int sig) { (void)sig; interrupted = 1; }

static double now_s(void) { return base_now(); }

double stage_eval(model_part *p, const data_set *d, size_t max_windows, size_t batch, size_t *tokens)
{
    size_t T = (size_t)p->cfg.seq_len, nw = data_val_windows(d, T);
    if (max_windows && max_windows < nw) nw = max_windows;
    if (batch > p->max_batch) batch = p->max_batch;
    model_slot *s = model_slots_new(p, 0, p->n_units, batch);
    int *tok = s[0].tokens, *tgt = s[p->n_units - 1].tokens;
    double sum = 0;
    for (size_t w = 0; w < nw; w += batch) {
        size_t b = nw - w < batch ? nw - w : batch;
        for (size_t i = 0; i < b; i++) data_val_window(d, w + i, tok + i * T, tgt + i * T, T);
        sum += model_forward(p, 0, p->n_units, s, NULL, NULL, b, T);
    }
    model_slots_free(s);
    *tokens = nw * T;
    return nw ? sum / (double)(nw * T) : NAN;
}

/* Everything one training run holds. */
typedef struct {
    const topo *t;
    data_set data;
    model_part *part;
    optim_adamw *opt;
    data_sampler sampler;
    model_slot *slots;
    int *x, *y;
    run_metrics *metrics;
    run_progress progress;
    size_t B, Bm, T;
    long first;            /* steps taken before this process (resumed from a checkpoint) */
} run;

/* One optimizer step; fills loss and the norm; returns the mean loss. */
static double train_step(run *r, long step, double *norm, double *lr)
{
    const topo *t = r->t;
    model_part *p = r->part;
    int n = p->n_units, M = t->train.micro_batches;
    size_t rows = r->Bm * r->T;
    data_sample_batch(&r->sampler, &r->data, r->x, r->y, r->B, r->T);
    model_part_zero_grad(p);
    double loss = 0;
    float scale = 1.0f / (float)(r->B * r->T);
    for (int mb = 0; mb < M; mb++) {
        memcpy(r->slots[0].tokens, r->x + (size_t)mb * rows, rows * sizeof(int));
        memcpy(r->slots[n - 1].tokens, r->y + (size_t)mb * rows, rows * sizeof(int));
        loss += model_forward(p, 0, n, r->slots, NULL, NULL, r->Bm, r->T);
        model_backward_input(p, 0, n, r->slots, NULL, NULL, r->Bm, r->T, scale);
        model_backward_weight(p, 0, n, r->slots, r->Bm, r->T);
    }
    model_part_reduce_tied(p);
    double sq[p->n_units];
    optim_unit_sqnorms(p, sq);
    *norm = optim_global_norm(sq, n);
    *lr = optim_lr(step, t->train.steps, t->train.warmup_steps, t->train.lr, t->train.min_lr);
    optim_hparams h = { (float)*lr, (float)t->train.beta1, (float)t->train.beta2, 1e-8f, (float)t->train.weight_decay };
    optim_adamw_step(r->opt, p, &h, optim_clip_scale(*norm, t->train.grad_clip));
    return loss / (double)(r->B * r->T);
}

static int save_checkpoint(run *r, const char *out, long step, char *err)
{
    char root[4096], dir[4200];
    const char *cd = r->t->checkpoint.dir;
    if (cd[0] == '/') snprintf(root, sizeof root, "%s", cd);
    else snprintf(root, sizeof root, "%s/%s", out, cd);
    snprintf(dir, sizeof dir, "%s/step-%ld", root, step);
    run_ckpt_state st = { step, data_sampler_get_state(&r->sampler) };
    if (run_ckpt_write_shard(dir, 0, r->part, r->opt, &st, err)) return -1;
    if (run_ckpt_commit(dir, r->t, step, err)) return -1;
    run_progress_note(&r->progress, "checkpoint: %s", dir);
    return run_ckpt_prune(root, r->t->checkpoint.keep, err);
}

static int write_summary(run *r, const char *out, long steps, double final_loss, double val_loss, double wall,
                         double tok_s, double train_s, int interrupted_, char *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/summary.json", out);
    /* the same shape as a pipeline's summary (stage/coord.c): one stage, in process */
    const topo_stage *st = &r->t->stages[0];
    json_t *stage = json_pack("{s:i,s:s,s:i,s:s,s:I,s:I,s:I,s:f,s:f}", "stage", 0, "host", st->host, "port",
                              st->port, "layers", st->layers, "peak_act_bytes",
                              (json_int_t)model_slots_bytes(r->part, 0, r->part->n_units, r->Bm), "peak_in_flight",
                              (json_int_t)1, "steps", (json_int_t)steps, "compute_s", train_s, "wait_s", 0.0);
    json_t *j = json_pack("{s:I,s:o,s:o,s:f,s:f,s:I,s:i,s:i,s:I,s:[o],s:b}", "steps", (json_int_t)steps,
                          "final_loss", isfinite(final_loss) ? json_real(final_loss) : json_null(),
                          "val_loss", isfinite(val_loss) ? json_real(val_loss) : json_null(), "wall_s", wall,
                          "tokens_per_s", tok_s, "params", (json_int_t)r->part->n_params,
                          "n_stages", 1, "restarts", 0, "first_step", (json_int_t)r->first, "stages", stage,
                          "interrupted", interrupted_);
    char *text = json_dumps(j, JSON_INDENT(2));
    json_decref(j);
    int rc = base_write_durable(path, text, strlen(text), err);
    free(text);
    return rc;
}

/* Loads the latest complete checkpoint of the run into r and trims
 * metrics.jsonl to it. 0, 2 with err (no usable checkpoint), 1 (metrics). */
static int resume(run *r, const char *out, char *err)
{
    char root[4096];
    run_ckpt c;
    run_ckpt_state st;
    run_ckpt_root(r->t, out, root, sizeof root);
    if (run_ckpt_open(&c, root, err)) return 2;
    char note[1200];
    int bad = run_ckpt_check_topology(&c, r->t, err) || run_ckpt_load_units(&c, r->part, r->opt, &st, err);
    if (!bad && st.step > r->t->train.steps)
        bad = seterr(err, "%s: the checkpoint is at step %ld, beyond train.steps %d", c.dir, st.step, r->t->train.steps);
    if (!bad) {
        data_sampler_set_state(&r->sampler, st.sampler_state);
        r->first = st.step;
        fprintf(stderr, "pipetrain: resuming from %s (step %ld)\n", c.dir, r->first);
        if (run_ckpt_split_note(&c, r->t, note, sizeof note)) fprintf(stderr, "pipetrain: note: %s\n", note);
    }
    run_ckpt_close(&c);
    if (bad) return 2;
    return run_ckpt_forget_after(root, r->first, err) || run_ckpt_trim_metrics(out, r->first, err) ? 1 : 0;
}

static int setup(run *r, const topo *t, const stage_train_opts *o, char *err)
{
    memset(r, 0, sizeof *r);
    r->t = t;
    if (!t->data.path) return seterr(err, "%s: data.path: no training data given (set it or pass --data FILE)", t->path);
    if (data_load(&r->data, t->data.path, t->data.format, t->model.vocab_size, t->data.val_fraction,
                  t->model.seq_len, err))
        return 2;
    openblas_set_num_threads(t->stages[0].threads);
    r->B = (size_t)t->train.batch_size;
    r->Bm = (size_t)topo_micro_batch(t);
    r->T = (size_t)t->model.seq_len;
    r->part = model_part_new(&t->model, t->stages[0].units, t->stages[0].n_units, r->Bm, (uint64_t)t->train.seed);
    r->opt = optim_new(r->part->n_params);
    data_sampler_init(&r->sampler, (uint64_t)t->train.seed);
    r->slots = model_slots_new(r->part, 0, r->part->n_units, r->Bm);
    r->x = xmalloc(r->B * r->T * sizeof(int));
    r->y = xmalloc(r->B * r->T * sizeof(int));
    if (o->resume) {
        int rc = resume(r, o->out_dir, err);
        if (rc) return rc;
    }
    if (!(r->metrics = run_metrics_open(o->out_dir, o->resume, err))) return 1;
    char ev[96];
    snprintf(ev, sizeof ev, "{\"event\":\"resume\",\"from_step\":%ld}", r->first);
    if (o->resume && r->first < t->train.steps && run_metrics_event(r->metrics, ev, err)) return 1;
    run_progress_init(&r->progress, o->progress, t->train.steps, t->train.log_every);
    return 0;
}

static void teardown(run *r)
{
    run_metrics_close(r->metrics);
    model_slots_free(r->slots);
    optim_free(r->opt);
    model_part_free(r->part);
    data_free(&r->data);
    free(r->x);
    free(r->y);
}

int stage_train_local(const topo *t, const stage_train_opts *o, char *err)
{
    if (t->n_stages != 1)
        return seterr(err, "%s: stages: this build trains one-stage topologies only (%d stages given)", t->path,
                      t->n_stages), 2;
    run r;
    int rc = setup(&r, t, o, err);
    if (!rc && r.first == t->train.steps)
        run_progress_note(&r.progress, "pipetrain: the run is complete (checkpoint at step %ld of %d): nothing to do",
                            r.first, t->train.steps);
    if (rc || r.first == t->train.steps) { teardown(&r); return rc; }
    run_progress_note(&r.progress, "pipetrain: %zu parameters, %zu train / %zu val tokens from %s, %d steps -> %s",
                        r.part->n_params, r.data.n_train, data_n_val(&r.data), t->data.path, t->train.steps, o->out_dir);
    interrupted = 0;
    struct sigaction sa = { .sa_handler = on_signal }, old_int, old_term;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    double t0 = now_s(), train_s = 0, loss = NAN, val = NAN;
    long step = r.first, total = t->train.steps;
    size_t eval_windows = (size_t)t->train.eval_batches * r.B, tokens;
    while (step < total && !interrupted) {
        double s0 = now_s(), norm, lr;
        loss = train_step(&r, step, &norm, &lr);
        double dt = now_s() - s0;
        train_s += dt;
        step++;
        if (!isfinite(loss)) {
            seterr(err, "training diverged: loss is %f at step %ld", loss, step);
            rc = 1;
            break;
        }
        run_metrics_row row = { step, loss, lr, norm, dt * 1e3, (double)(r.B * r.T) / dt, NAN };
        int last = step == total;
        if (last || (t->train.eval_every > 0 && step % t->train.eval_every == 0))
            val = row.val_loss = stage_eval(r.part, &r.data, last ? 0 : eval_windows, r.Bm, &tokens);
        run_progress_step(&r.progress, &row, train_s / (double)(step - r.first) * (double)(total - step));
        if (run_metrics_log(r.metrics, &row, err)) { rc = 1; break; }
        if (!isnan(row.val_loss) && run_metrics_write_svg(r.metrics, err)) { rc = 1; break; }
        if ((last || (t->checkpoint.every > 0 && step % t->checkpoint.every == 0)) && save_checkpoint(&r, o->out_dir, step, err)) {
            rc = 1;
            break;
        }
    }
    if (interrupted && !rc) {
        run_progress_note(&r.progress, "interrupted after step %ld: saving a checkpoint", step);
        if (step == r.first || !save_checkpoint(&r, o->out_dir, step, err))
            seterr(err, "interrupted at step %ld of %ld", step, total);
        rc = 1;
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    char err2[ERR_LEN];
    double tok_s = train_s > 0 ? (double)((step - r.first) * (long)(r.B * r.T)) / train_s : 0;
    if (write_summary(&r, o->out_dir, step, loss, val, now_s() - t0, tok_s, train_s, interrupted, err2) ||
        run_metrics_write_svg(r.metrics, err2)) {
        if (!rc) { memcpy(err, err2, ERR_LEN); rc = 1; }
    }
    if (!rc) run_progress_note(&r.progress, "done: %ld steps, loss %.4f, val_loss %.4f, %.0f tokens/s, %.1f s",
                                 step, loss, val, tok_s, now_s() - t0);
    teardown(&r);
    return rc;
}
