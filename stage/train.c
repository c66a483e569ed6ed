/* train.c — the in-process trainer (see train.h). One step: draw the batch with
 * the seeded sampler, run forward, backward-input and backward-weight per
 * micro-batch in micro-batch order, combine per-unit squared norms in unit order,
 * clip, AdamW. The same order the pipeline runtime uses, so the numbers match.
 * With schedule.kind "2bw" (PipeDream-2BW, README): the step's micro-batches run
 * on the previous weight version W(t-1) and AdamW updates W(t) to W(t+1); the
 * one-process reference of the asynchronous pipeline's arithmetic. Its first
 * schedule.warmup_sync_steps steps are synchronous: both versions stay equal. */
#include "stage/train.h"
#include "model/hf_load.h"
#include "model/optim.h"
#include "model/safetensors.h"
#include "model/util.h"
#include "run/run.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t interrupted;
static void on_signal(int sig) { (void)sig; interrupted = 1; }


double stage_eval(model_part *p, const data_set *d, size_t max_windows, size_t batch, size_t *tokens)
{
    size_t T = (size_t)p->cfg.seq_len, nw = data_val_windows(d, T);
    if (max_windows && max_windows < nw) nw = max_windows;
    if (batch > p->max_batch) batch = p->max_batch;
    model_slot *s = model_stash_new(p, 0, p->n_units, batch); /* forward only: no backward work */
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

/* One tensor's 2bw AdamW update (stage_2bw_optim_apply): optim.c's
 * adamw_tensor with the first moment's Nesterov-form estimate
 * beta1 * m^ + (1 - beta1) * g in place of m^ (README "PipeDream-2BW"). */
static void adamw_2bw_tensor(float *restrict w, const float *restrict g, float *restrict m, float *restrict v,
                             size_t n, float grad_scale, float b1, float b2, float c1, float c2, float lr, float eps,
                             float wd)
{
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * grad_scale;
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        float mh = b1 * (m[i] * c1) + (1.0f - b1) * gi, vh = v[i] * c2;
        w[i] -= lr * (mh / (sqrtf(vh) + eps) + wd * w[i]);
    }
}

int stage_2bw_sync_step(const topo *t, long s) { return s < (long)t->schedule.warmup_sync_steps; }

void stage_2bw_optim_apply(const topo *t, model_part *p, optim_adamw *o, long s, double norm)
{
    if (stage_2bw_sync_step(t, s)) { /* the synchronous warm-up: 1f1b's AdamW */
        run_optim_apply(t, p, o, s, norm);
        return;
    }
    optim_hparams h = run_optim_hparams(t, s);
    float scale = optim_clip_scale(norm, t->train.grad_clip);
    o->step++;
    const float b1 = h.beta1, b2 = h.beta2;
    const float c1 = 1.0f / (1.0f - powf(b1, (float)o->step));
    const float c2 = 1.0f / (1.0f - powf(b2, (float)o->step));
    for (int k = 0; k < p->n_tensors; k++) {
        const model_tensor *ten = &p->tensors[k];
        adamw_2bw_tensor(p->params + ten->offset, p->grads + ten->offset, o->m + ten->offset, o->v + ten->offset,
                         ten->numel, scale, b1, b2, c1, c2, h.lr, h.eps, ten->decay ? h.weight_decay : 0.0f);
    }
}

/* Everything one training run holds. */
typedef struct {
    const topo *t;
    data_set data;
    model_part *part;
    optim_adamw *opt;
    data_sampler sampler;
    model_slot *slots;     /* one micro-batch's stash */
    float *work;           /* the backward's work, one unit at a time (model_backward_fused) */
    int *x, *y;
    double *sq;            /* (n_units) per-unit squared gradient norms */
    run_log *log;
    size_t B, Bm, T;
    long first;            /* steps taken before this process (resumed from a checkpoint) */
    float *prev;           /* 2bw: W(t-1), the version step t computes with; NULL otherwise */
} run;

/* Points the part at weights w (the tied head reads the embedding it holds). */
static void use_weights(model_part *p, float *w)
{
    if (p->tied_w == p->params) p->tied_w = w;
    p->params = w;
}

/* One optimizer step; returns the mean loss and the global norm. The order of
 * every sum is the pipeline runtime's, so the numbers match bit for bit. */
static double train_step(run *r, long step, double *norm)
{
    const topo *t = r->t;
    model_part *p = r->part;
    int n = p->n_units, M = t->train.micro_batches;
    size_t rows = r->Bm * r->T;
    data_sample_batch(&r->sampler, &r->data, r->x, r->y, r->B, r->T);
    model_part_zero_grad(p);
    double loss = 0;
    float scale = 1.0f / (float)(r->B * r->T), *cur = p->params;
    if (r->prev) use_weights(p, r->prev); /* 2bw: forward and backward on W(t-1) */
    for (int mb = 0; mb < M; mb++) {
        memcpy(r->slots[0].tokens, r->x + (size_t)mb * rows, rows * sizeof(int));
        memcpy(r->slots[n - 1].tokens, r->y + (size_t)mb * rows, rows * sizeof(int));
        loss += model_forward(p, 0, n, r->slots, NULL, NULL, r->Bm, r->T);
        model_backward_fused(p, 0, n, r->slots, r->work, NULL, NULL, r->Bm, r->T, scale, NULL, NULL);
    }
    if (r->prev) { /* W(t) becomes the previous version; AdamW makes W(t+1) from it */
        use_weights(p, cur);
        memcpy(r->prev, cur, p->n_params * sizeof(float));
    }
    model_part_reduce_tied(p);
    optim_unit_sqnorms(p, r->sq);
    *norm = optim_global_norm(r->sq, n);
    if (r->prev)
        stage_2bw_optim_apply(t, p, r->opt, step, *norm);
    else
        run_optim_apply(t, p, r->opt, step, *norm);
    /* 2bw's synchronous warm-up: the next step computes on W(t+1) (both versions) */
    if (r->prev && stage_2bw_sync_step(t, step)) memcpy(r->prev, p->params, p->n_params * sizeof(float));
    return loss / (double)(r->B * r->T);
}

/* The shard, then the commit: as a pipeline's stage and coordinator do it. */
static int save_checkpoint(run *r, const char *out, long steps, char *err)
{
    return run_write_shard_2bw(r->t, out, 0, steps, r->part, r->opt, data_sampler_get_state(&r->sampler), r->prev,
                               err) ||
                   run_log_checkpoint(r->log, steps, err)
               ? -1
               : 0;
}

/* Model, data, buffers and the start point. Returns 0, 1 or 2 with err. */
static int setup(run *r, const topo *t, const stage_train_opts *o, char *err)
{
    memset(r, 0, sizeof *r);
    r->t = t;
    if (!t->data.path) return seterr(err, "%s: data.path: no training data given (set it or pass --data FILE)", t->path), 2;
    if (data_load(&r->data, t->data.path, t->data.format, t->model.vocab_size, t->data.val_fraction,
                  t->model.seq_len, err))
        return 2;
    run_start_opts so = { o->resume, 0, 0, NULL, "pipetrain", 0, NULL };
    int rc = run_start_point(t, o->out_dir, &so, &r->first, err);
    if (rc) return rc;
    openblas_set_num_threads(t->stages[0].threads);
    r->B = (size_t)t->train.batch_size;
    r->Bm = (size_t)topo_micro_batch(t);
    r->T = (size_t)t->model.seq_len;
    r->part = model_part_new(&t->model, t->stages[0].units, t->stages[0].n_units, r->Bm, (uint64_t)t->train.seed);
    r->opt = optim_new(r->part->n_params);
    if (t->init_from && r->first == 0) { /* issue 16; AdamW starts from zero moments at step 0 */
        hf_stats hs;
        if (hf_load_part(t->init_from, r->part, &hs, err)) return 2;
        fprintf(stderr, "pipetrain: init-from %s: %d tensors, %llu bytes read from %s\n", t->init_from, hs.tensors,
                (unsigned long long)hs.bytes, hs.names);
    }
    r->sq = xcalloc((size_t)r->part->n_units, sizeof *r->sq);
    data_sampler_init(&r->sampler, (uint64_t)t->train.seed);
    model_part_set_recompute(r->part, t->stages[0].recompute_id);
    r->slots = model_stash_new(r->part, 0, r->part->n_units, r->Bm);
    r->work = xmalloc(model_part_mem(r->part, 0, r->part->n_units, r->Bm).work_unit);
    r->x = xmalloc(r->B * r->T * sizeof(int));
    r->y = xmalloc(r->B * r->T * sizeof(int));
    if (t->schedule.kind_id == SCHED_KIND_2BW) r->prev = xmalloc(r->part->n_params * sizeof(float));
    if (r->first > 0) {
        uint64_t sampler;
        if (run_resume_part(t, o->out_dir, r->first, r->part, r->opt, &sampler, err)) return 2;
        data_sampler_set_state(&r->sampler, sampler);
    }
    /* 2bw: W(-1) = W(0); resuming from a checkpoint of a synchronous run, both
     * versions start equal the same way (README "PipeDream-2BW") */
    if (r->prev) {
        int found = r->first > 0 ? run_resume_prev(t, o->out_dir, r->first, r->part, r->prev, err) : 0;
        if (found < 0) return 2;
        if (!found) memcpy(r->prev, r->part->params, r->part->n_params * sizeof(float));
    }
    run_log_opts lo = { o->out_dir, o->progress, r->first, o->resume, 0, 0 };
    if (!(r->log = run_log_open(t, &lo, err))) return 1;
    return 0;
}

static void teardown(run *r)
{
    run_log_free(r->log);
    model_slots_free(r->slots);
    free(r->work);
    optim_free(r->opt);
    model_part_free(r->part);
    data_free(&r->data);
    free(r->sq);
    free(r->x);
    free(r->y);
    free(r->prev);
}

/* The steps from r->first; returns the steps taken in *step. 0 or 1 with err. */
static int train_loop(run *r, const stage_train_opts *o, long *step, run_stage_stats *st, char *err)
{
    const topo *t = r->t;
    size_t tokens;
    double t0 = base_now();
    for (*step = r->first; *step < t->train.steps && !interrupted; ) {
        long s = *step;
        double s0 = base_now(), norm;
        double loss = train_step(r, s, &norm), val = NAN;
        double dt = base_now() - s0;
        st->compute_s += dt;
        st->steps++;
        *step = s + 1;
        if (isfinite(loss) && run_is_eval_step(t, s))
            val = stage_eval(r->part, &r->data, run_eval_windows(t, s, data_val_windows(&r->data, r->T)), r->Bm, &tokens);
        if (run_log_step(r->log, s, loss, run_lr(t, s), norm, val, dt, err)) return 1;
        if (run_is_ckpt_step(t, s) && save_checkpoint(r, o->out_dir, s + 1, err)) return 1;
    }
    st->wall_s = base_now() - t0;
    return 0;
}

int stage_train_local(const topo *t, const stage_train_opts *o, char *err)
{
    if (t->n_stages != 1)
        return seterr(err, "%s: stages: this build trains one-stage topologies only (%d stages given)", t->path,
                      t->n_stages), 2;
    run r;
    int rc = setup(&r, t, o, err);
    if (!rc && r.first == t->train.steps)
        fprintf(o->progress, "pipetrain: the run is complete (checkpoint at step %ld of %d): nothing to do\n",
                r.first, t->train.steps);
    if (rc || r.first == t->train.steps) { teardown(&r); return rc; }
    run_log_note(r.log, "pipetrain: %zu parameters, %zu train / %zu val tokens from %s, %d steps -> %s",
                 r.part->n_params, r.data.n_train, data_n_val(&r.data), t->data.path, t->train.steps, o->out_dir);
    interrupted = 0;
    struct sigaction sa = { .sa_handler = on_signal }, old_int, old_term;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    run_stage_stats st = { 0 };
    /* the stash, plus the larger of the forward's transient and one unit's work */
    model_mem mem = model_part_mem(r.part, 0, r.part->n_units, r.Bm);
    st.peak_act_bytes = mem.stash + (mem.fwd_tmp > mem.work_unit ? mem.fwd_tmp : mem.work_unit);
    st.peak_in_flight = 1;
    st.optim_bytes = 2 * (uint64_t)r.part->n_params * sizeof(float); /* AdamW's two moments */
    if (r.prev) st.extra_weight_bytes = (uint64_t)r.part->n_params * sizeof(float); /* 2bw: W(t-1) */
    long step = r.first;
    rc = train_loop(&r, o, &step, &st, err);
    if (interrupted && !rc) {
        run_log_note(r.log, "interrupted after step %ld: saving a checkpoint", step);
        if (step == r.first || !save_checkpoint(&r, o->out_dir, step, err))
            seterr(err, "interrupted at step %ld of %d", step, t->train.steps);
        rc = 1;
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    run_log_stage(r.log, 0, &st, (long)getpid());
    char err2[ERR_LEN];
    if (run_log_finish(r.log, rc ? err : NULL, err2) && !rc) {
        memcpy(err, err2, ERR_LEN);
        rc = 1;
    }
    teardown(&r);
    return rc;
}
