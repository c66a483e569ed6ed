/* train.h — training a topology whose stages all live in this process (today:
 * one-stage topologies), evaluation and the pieces the pipeline runtime shares:
 * the per-step batch, the optimizer step and the run directory's outputs.
 * Not here: sockets, schedules across processes (stage runtime, issue #4). */
#ifndef STAGE_TRAIN_H
#define STAGE_TRAIN_H

#include <stdio.h>

#include "model/data.h"
#include "model/model.h"
#include "model/optim.h"
#include "topo/topo.h"

typedef struct {
    const char *out_dir;   /* run directory: metrics.jsonl, summary.json, loss.svg, checkpoints/ */
    FILE *progress;        /* where the progress line goes (stderr) */
    int resume;            /* continue from the latest complete checkpoint (issue #6) */
} stage_train_opts;

/* Trains t in this process. Returns 0 on success, 1 on a run-time failure
 * (non-finite loss, write error, interrupted), 2 on bad input (data file, or
 * with o->resume: no usable checkpoint, or one made with another topology, see
 * run_ckpt_check_topology); the message is in err. Whatever was logged and
 * checkpointed stays on disk. Resuming restores weights, AdamW moments and
 * step, and the sampler, and drops metrics.jsonl lines after the checkpoint,
 * so the result is bitwise what an uninterrupted run gives. */
int stage_train_local(const topo *t, const stage_train_opts *o, char *err);

/* Mean cross-entropy of a part holding every unit over the first max_windows
 * (0 = all) contiguous validation windows, `batch` sequences at a time. Writes
 * the number of tokens scored to *tokens. Deterministic. */
double stage_eval(model_part *p, const data_set *d, size_t max_windows, size_t batch, size_t *tokens);

/* One AdamW step of PipeDream-2BW (schedule.kind "2bw") on every parameter of
 * p, with the stale gradient's compensation (README "PipeDream-2BW"): as
 * run_optim_apply(t, p, o, s, norm) (run_optim_hparams(t, s), clipping by
 * norm, bias correction with the incremented o->step) except that the update
 * divides beta1 * m^ + (1 - beta1) * g, not m^, by sqrt(v^) + eps. A step of
 * the synchronous warm-up (stage_2bw_sync_step) is run_optim_apply itself,
 * bitwise 1f1b's. The one optimizer step of 2bw, in the one-process trainer
 * and in every stage, so their bits agree. Increments o->step. Any thread
 * (touches p and o only). */
void stage_2bw_optim_apply(const topo *t, model_part *p, optim_adamw *o, long s, double norm);

/* 1 when step s (0-based) of a 2bw run is in its synchronous warm-up
 * (s < schedule.warmup_sync_steps): the step computes on W(s), flushes like
 * 1f1b and ends with both weight versions equal to W(s+1), so the first
 * asynchronous step starts as step 0 does (W(s-1) = W(s)). 0 otherwise.
 * Pure; any thread. */
int stage_2bw_sync_step(const topo *t, long s);

#endif
