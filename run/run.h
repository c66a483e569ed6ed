/* run.h — the run's lifecycle, with one owner: where a run starts (fresh,
 * --resume, a restart), when it evaluates and checkpoints, how the optimizer
 * step is applied, and what the run directory records (metrics.jsonl, the
 * progress line, checkpoints' commit, summary.json, loss.svg).
 *
 * Both ways of running use it: the one-stage trainer (stage/train.c), which
 * computes in this process, and a pipeline, where every stage applies the
 * optimizer step (stage/runtime.c) and the coordinator (coord/coord.c) keeps
 * the record. A one-stage run and a pipeline of the same topology therefore
 * decide the same things the same way and write summary.json with the same
 * keys.
 *
 * Not here: computing a step, moving tensors, processes. Checkpoint files
 * themselves are run_ckpt.h's; this module decides when and where. */
#ifndef RUN_RUN_H
#define RUN_RUN_H

#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "base/base.h"
#include "model/model.h"
#include "model/optim.h"
#include "run/run_ckpt.h"
#include "run/run_metrics.h"
#include "topo/topo.h"

/* ---- where a run starts ---- */

typedef struct {
    int resume;           /* --resume: a complete checkpoint is required */
    int restart;          /* n > 0: the n-th restart after a failure (this run's latest checkpoint, else step 0) */
    int max_restarts;     /* for the restart event */
    const char *cause;    /* restart: the failure that caused it */
    const char *who;      /* prefix of notes on stderr, e.g. "pipetrain run" */
    uint64_t writer;      /* restart: this run's id (run_log_opts.writer), which its checkpoints record */
    char *origin;         /* NULL, or 65 bytes: --resume stores the SHA-256 of the manifest of the
                           * checkpoint it resumes; a restart may resume that one too */
} run_start_opts;

/* Decides the 0-based step the run starts at in out_dir, and makes the
 * checkpoint directory hold only this run's timeline:
 *  - fresh (neither resume nor restart): step 0; whatever step-N directories
 *    and latest the checkpoint directory holds (another run's) are moved as
 *    they are into a new CKPT.set-aside-N beside it, with a note, so this run
 *    neither resumes nor overwrites, prunes or mixes with them. Nothing else is
 *    touched.
 *  - --resume: the latest complete checkpoint's step after checking it against
 *    t (the fields that may differ on resume are listed in run_ckpt.h); its
 *    manifest's SHA-256 goes into o->origin.
 *  - restart: the latest complete checkpoint written by this run (its manifest
 *    names o->writer) or the one it resumed (o->origin), else step 0 ("no
 *    checkpoint of this run yet"). Another run's complete checkpoints after
 *    that step are set aside as above, each with a note; latest is pointed at
 *    the checkpoint resumed (removed at step 0).
 * Then checkpoints after that step are forgotten and metrics.jsonl is cut to
 * it; a resume or a restart is logged as an event line
 * ({"event":"resume","from_step":N} or {"event":"restart",...}) unless the run
 * is already complete. Returns 0, 1 (metrics.jsonl or the checkpoint directory
 * could not be rewritten) or 2 (--resume without a usable checkpoint, or one of
 * another topology; a restart's checkpoint unreadable), with err. */
int run_start_point(const topo *t, const char *out_dir, const run_start_opts *o, long *first, char *err);

/* ---- cadence (s is the 0-based index of the step just taken) ---- */

/* 1 when step s ends with an evaluation: the last step, and every
 * train.eval_every steps. */
int run_is_eval_step(const topo *t, long s);
/* 1 when step s ends with a checkpoint: the last step, and every
 * checkpoint.every steps. */
int run_is_ckpt_step(const topo *t, long s);
/* Validation windows to score after step s out of `available`: all of them
 * after the last step, at most train.eval_batches * batch_size before. */
size_t run_eval_windows(const topo *t, long s, size_t available);

/* The directory of the checkpoint after `steps` steps: CKPT_ROOT/step-N,
 * with the root from run_ckpt_root. */
void run_ckpt_step_dir(const topo *t, const char *out_dir, long steps, char *dir, size_t n);

/* Writes process `stage`'s shard of the checkpoint after `steps` steps
 * (run_ckpt_write_shard into run_ckpt_step_dir); the commit is
 * run_log_checkpoint's, once every shard is durable. Returns 0 or -1 with err. */
int run_write_shard(const topo *t, const char *out_dir, int stage, long steps, const model_part *p,
                    const optim_adamw *o, uint64_t sampler_state, char *err);
/* Loads p's units and their AdamW moments from the complete checkpoint after
 * `steps` steps (by tensor name, whatever split wrote it) and returns the data
 * sampler's state. Returns 0 or -1 with err. */
int run_resume_part(const topo *t, const char *out_dir, long steps, model_part *p, optim_adamw *o,
                    uint64_t *sampler_state, char *err);

/* run_write_shard with PipeDream-2BW's previous weight version prev
 * (run_ckpt_write_shard_2bw; NULL: as run_write_shard). */
int run_write_shard_2bw(const topo *t, const char *out_dir, int stage, long steps, const model_part *p,
                        const optim_adamw *o, uint64_t sampler_state, const float *prev, char *err);
/* run_write_shard_2bw with the moments streamed by fill (run_ckpt_write_shard_fill). */
int run_write_shard_fill(const topo *t, const char *out_dir, int stage, long steps, const model_part *p,
                         run_ckpt_moments_fn fill, void *arg, uint64_t sampler_state, const float *prev, char *err);
/* After run_resume_part: the previous weight version from the same checkpoint
 * into prev (run_ckpt_load_prev: 1 found, 0 none, -1 with err). */
int run_resume_prev(const topo *t, const char *out_dir, long steps, const model_part *p, float *prev, char *err);

/* ---- the optimizer step ---- */

/* The learning rate of step s (warmup, then cosine to min_lr). */
double run_lr(const topo *t, long s);
/* The AdamW hyper-parameters of step s: run_lr(t, s) and the topology's betas
 * and weight decay, eps 1e-8 (what run_optim_apply uses; ps/ scales the
 * learning rate of an asynchronous push from it). Any thread. */
optim_hparams run_optim_hparams(const topo *t, long s);
/* Applies AdamW to p with step s's learning rate and the topology's
 * hyper-parameters, gradients clipped by the global norm `norm` (combined in
 * unit order over the whole model: optim_global_norm). The one place the
 * update is parameterised, for every stage and the one-stage trainer. */
void run_optim_apply(const topo *t, model_part *p, optim_adamw *o, long s, double norm);
/* The same on a shard of p (ZeRO-1; see optim_adamw_step_ranges). */
void run_optim_apply_ranges(const topo *t, model_part *p, optim_adamw *o, long s, double norm, const size_t *off,
                            const size_t *len, int n);

/* ---- the record ---- */

/* One process's statistics in summary.json's "stages" (what a pipeline stage
 * sends in STATS; the one-stage trainer fills the same). */
typedef struct {
    uint64_t peak_act_bytes;   /* peak activation bytes: stashes in flight, backward work,
                                * recomputation's transients (README: recomputation) */
    uint64_t peak_in_flight;   /* peak (micro-batch, chunk) pairs in flight */
    double compute_s;          /* time spent in F/B/W compute */
    double wait_s;             /* time blocked waiting for tensors */
    double optim_s;            /* norm exchange + AdamW */
    uint64_t bytes_sent;       /* tensor bytes sent */
    uint64_t steps;            /* steps run */
    double wall_s;             /* from the first step's start to the last step's end */
    /* data parallelism (replicas > 1; zeros otherwise) */
    double allreduce_s;        /* time the replica group's collectives ran (overlapping compute or not) */
    double exposed_s;          /* of it, time the compute thread waited for them: not hidden under compute */
    uint64_t optim_bytes;      /* AdamW state held by this process (moments; 1/R of them with train.zero) */
    uint64_t extra_weight_bytes; /* 2bw: the second weight version plus the pending gradient
                                  * (one-process: the second version only); 0 otherwise */
} run_stage_stats;

/* One parameter server's statistics in summary.json's "servers" (sync "ps",
 * issue 12; what a server sends in its STATS, ps/ps_proto.h). */
#define RUN_STALE_BUCKETS 64
typedef struct {
    uint64_t pushes;           /* gradient pushes accepted (one per worker, piece and step) */
    uint64_t refused;          /* pushes refused (each logged with its reason) */
    uint64_t bytes_received;   /* push bytes received */
    uint64_t bytes_sent;       /* weight and checkpoint bytes sent */
    uint64_t steps;            /* steps applied in this attempt */
    double wall_s;             /* from START to the last step's weights */
    uint64_t staleness[RUN_STALE_BUCKETS]; /* worker-steps by staleness (last bucket: that or more) */
} run_server_stats;

typedef struct {
    const char *out_dir;       /* the run directory (created if missing) */
    FILE *progress;            /* progress line and notes; NULL: silent */
    long first_step;           /* from run_start_point */
    int append;                /* keep metrics.jsonl (resume, restart) instead of truncating it */
    int restarts;              /* restarts before this attempt: summary.json */
    uint64_t writer;           /* recorded in every checkpoint's manifest ("writer"): the same for
                                * every attempt of one `run` (0: a random one for this log) */
} run_log_opts;

typedef struct run_log run_log;

/* Opens the record of one attempt: metrics.jsonl, the progress display.
 * t and o->out_dir must outlive it. Returns NULL with err (the directory or
 * metrics.jsonl cannot be written). Any one thread. */
run_log *run_log_open(const topo *t, const run_log_opts *o, char *err);
/* Prints a note on the progress output. */
void run_log_note(run_log *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Records step s (0-based) taken in dt seconds: loss, lr, norm, val_loss (NAN
 * when it did not evaluate); updates the progress line, metrics.jsonl and, on
 * evaluation steps, loss.svg. Returns 0; 1 with err when the loss is not
 * finite ("training diverged: ...") or a file cannot be written. */
int run_log_step(run_log *l, long s, double loss, double lr, double norm, double val_loss, double dt, char *err);
/* Asynchronous parameter servers (issue 12): records worker w's step s
 * (0-based, its own count: each worker trains train.steps steps), one line
 * of metrics.jsonl per worker-step: "step" s + 1, "worker" w, its loss (the
 * mean over its share of the step's batch), lr, its own grad_norm, step_ms
 * (from the end of its previous step), tokens_per_s of its share
 * (`tokens` tokens) and val_loss when it evaluated. The progress line shows
 * it; loss.svg gets every worker's points. Returns as run_log_step. */
int run_log_worker_step(run_log *l, int w, long s, double loss, double lr, double norm, double val_loss, double dt,
                        double tokens, char *err);
/* Appends an event line to metrics.jsonl (ev is stolen; NULL: nothing);
 * e.g. {"event": "drop", ...}. Returns 0 or 1 with err. */
int run_log_event(run_log *l, json_t *ev, char *err);
/* Commits the checkpoint after `steps` steps once every shard is durable
 * (manifest.json, COMPLETE, latest), prunes old ones to checkpoint.keep and
 * notes it. Returns 0 or -1 with err. */
int run_log_checkpoint(run_log *l, long steps, char *err);
/* Sets process k's row of summary.json's "stages": k is the process index
 * (launcher rank, k < n_stages x n_replicas: stage k % P, replica k / P; the
 * stage with R = 1); its statistics and pid (0 when unknown). Rows are
 * written in rank order, each with its "stage", "replica", host and port;
 * missing rows are written as zeros. summary.json also holds "replicas" (R)
 * and "zero" (train.zero). */
void run_log_stage(run_log *l, int k, const run_stage_stats *s, long pid);
/* Sets parameter server j's row of summary.json's "servers" (sync "ps"; j <
 * t->n_servers, others ignored): its statistics and pid. Rows are written in
 * server order with "server", host, port, pid, pushes, refused,
 * bytes_received, bytes_sent, steps, wall_s and "staleness" (the histogram
 * with its trailing zeros dropped); missing rows as zeros. "servers" is []
 * without parameter servers. summary.json also holds "sync" and "workers":
 * per replica (worker) r its steps_taken, wall_s (the slowest of its stages)
 * and steps_per_s, from the stages' rows, and "staleness": every server's
 * histogram added up ([] without servers). */
void run_log_server(run_log *l, int j, const run_server_stats *s, long pid);
/* Attaches the measured schedule timing ("timing"; the object is referenced,
 * not stolen). NULL: "timing" is null. */
void run_log_timing(run_log *l, json_t *timing);
/* Records what became of the run's trace in summary.json's "trace":
 * "complete", or "partial: REASON" when a stage's events could not be
 * gathered (the run itself stands); status is copied. NULL (the default):
 * "trace" is null, as for a run without a trace (--no-trace, one stage): the
 * key is always there, like "timing". Any one thread. */
void run_log_trace(run_log *l, const char *status);
/* Writes summary.json (the one writer: the same keys whatever the stage
 * count; `error` NULL on success, else the failure and "interrupted": true)
 * and loss.svg, and on success prints the closing "done:" line. Returns 0 or
 * -1 with err when a file cannot be written. */
int run_log_finish(run_log *l, const char *error, char *err);
/* The validation split this process's run is scored on, for summary.json's
 * "val_bits_per_byte" (val_loss x tokens / bytes / ln 2) and
 * "val_bytes_per_token": `tokens` target tokens of the split's windows and the
 * bytes they decode to (bytes 0: unknown, both keys null). Process-wide, like
 * data_use_tokenizer: call from the main thread before the run starts (the
 * launcher: cli/cli_run.c); unset, both keys are null. */
void run_set_val_bytes(double tokens, double bytes);
/* Steps recorded so far (1-based count, first_step included). */
long run_log_done(const run_log *l);
/* Closes metrics.jsonl and frees l. NULL: no-op. */
void run_log_free(run_log *l);

#endif
