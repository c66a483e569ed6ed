/* run_ckpt.h — checkpoints on disk. One directory per checkpoint:
 *
 *   CKPT/step-N/stage-K.safetensors        parameters of stage K (HF LLaMA names)
 *   CKPT/step-N/stage-K.optim.safetensors  AdamW moments "<name>.exp_avg",
 *                                          "<name>.exp_avg_sq"; metadata: step,
 *                                          sampler_state (everything to resume);
 *                                          a 2bw run adds "<name>.2bw_prev" and
 *                                          weight_versions "2" (README 2BW)
 *   CKPT/step-N/manifest.json              every file with size and SHA-256, the
 *                                          model, the canonical topology and its
 *                                          hash, pipetrain and OpenBLAS versions,
 *                                          threads per stage, and the id of the
 *                                          `run` that wrote it ("writer")
 *   CKPT/step-N/COMPLETE                   written last: without it the
 *                                          checkpoint does not exist. "step N",
 *                                          "manifest_sha256 HEX" and, when the
 *                                          run has a secret,
 *                                          "manifest_hmac_sha256 HEX"
 *   CKPT/latest                            "step-N", replaced atomically
 *
 * Every file is written to a temporary name, fsynced and renamed, and the
 * directory fsynced. Each shard's __metadata__ records format, kind, stage,
 * units, step and model. Readers (issue 17) check the manifest against
 * COMPLETE (and its HMAC with a key), that the manifest's stages partition
 * the model's units and its files are exactly the shards that layout implies
 * (nothing else in the directory), every file's size and SHA-256, and, for
 * each shard they read, its metadata and every tensor's name, dtype and
 * shape, before using anything. Tests can kill the writer at fixed points
 * (PIPETRAIN_FAULT_CKPT, see run_ckpt.c). Not here: deciding when to checkpoint (run/run.h does). */
#ifndef RUN_CKPT_H
#define RUN_CKPT_H

#include <jansson.h>
#include <stdint.h>

#include "model/model.h"
#include "model/optim.h"
#include "model/safetensors.h"
#include "topo/topo.h"

#define PIPETRAIN_VERSION "0.1.0"

/* The environment variable that may hold the run's secret (the same one the
 * transport reads, stage/proto.h's PROTO_SECRET_ENV). */
#define RUN_CKPT_SECRET_ENV "PIPETRAIN_SECRET"

/* The key that authenticates a checkpoint's manifest: HKDF-SHA256 of the
 * run's shared secret (salt "pipetrain checkpoint", info "manifest hmac v1").
 * have 0: no secret is configured, checkpoints carry no HMAC. */
typedef struct {
    int have;
    uint8_t k[32];
} run_ckpt_key;

/* Derives the key from a secret of len bytes. */
void run_ckpt_key_derive(run_ckpt_key *key, const uint8_t *secret, size_t len);
/* The key of a secret file (as net_secret_load checks it), else of
 * $PIPETRAIN_SECRET; neither: key->have = 0 and 0. Returns 0, or -1 with err
 * naming the file and what is wrong. Any thread. */
int run_ckpt_key_load(run_ckpt_key *key, const char *secret_file, char *err);
/* The key of t's secret (t->secret_file, else $PIPETRAIN_SECRET). */
int run_ckpt_key_for(run_ckpt_key *key, const topo *t, char *err);

/* The training state beside weights and moments. */
typedef struct {
    long step;              /* optimizer steps taken */
    uint64_t sampler_state; /* data_sampler state after those steps */
} run_ckpt_state;

/* Writes stage `stage`'s two shard files into dir (created if missing). */
int run_ckpt_write_shard(const char *dir, int stage, const model_part *p, const optim_adamw *o,
                           const run_ckpt_state *st, char *err);
/* The same with PipeDream-2BW's previous weight version prev (NULL: none):
 * W(step-1), the one the next step's micro-batches use (p->n_params floats in
 * p's layout), written as "<name>.2bw_prev" in the optim shard with metadata
 * "weight_versions": "2". Readers that do not ask for it ignore it. */
int run_ckpt_write_shard_2bw(const char *dir, int stage, const model_part *p, const optim_adamw *o,
                             const run_ckpt_state *st, const float *prev, char *err);
/* The moments streamed (ZeRO-1, whose moments are spread over the replicas):
 * the optim shard's "<name>.exp_avg" (second 0) and "<name>.exp_avg_sq"
 * (second 1) of p->tensors[tensor] are given by fill through st_sink_write
 * (model/safetensors.h), in pieces if it likes, in the file's order: tensors
 * ascending, exp_avg before exp_avg_sq. The files are byte for byte
 * run_ckpt_write_shard_2bw's with the same moments. Returns 0, or -1 with err. */
typedef int (*run_ckpt_moments_fn)(void *arg, int tensor, int second, st_sink *s, char *err);
int run_ckpt_write_shard_fill(const char *dir, int stage, const model_part *p, run_ckpt_moments_fn fill, void *arg,
                              const run_ckpt_state *st, const float *prev, char *err);
/* After every stage's shard is written: hashes the files, writes manifest.json,
 * then COMPLETE (the manifest's SHA-256, and its HMAC when key has one; key
 * may be NULL), then points dir/../latest at dir. */
int run_ckpt_commit(const char *dir, const topo *t, long step, const run_ckpt_key *key, char *err);
/* The same, recording in the manifest ("writer": 16 hex digits) the id of the
 * `run` that commits it (writer 0: none recorded). A restart resumes only a
 * checkpoint of its own writer, or the one the run resumed (run/run.h). */
int run_ckpt_commit_by(const char *dir, const topo *t, long step, const run_ckpt_key *key, uint64_t writer,
                       char *err);
/* Deletes complete checkpoints under ckpt_root beyond the `keep` newest (keep
 * <= 0 keeps all); never the newest complete one. */
int run_ckpt_prune(const char *ckpt_root, int keep, char *err);

/* An opened, verified checkpoint. */
typedef struct {
    char *dir;            /* the step directory */
    model_config cfg;
    long step;
    int n_stages;
    json_t *manifest;
    int hmac_unverified;  /* COMPLETE has an HMAC but no key was given */
} run_ckpt;

/* Resolves path (a step directory, a checkpoints directory with `latest`, or a
 * run directory holding checkpoints/) to a complete checkpoint and verifies it
 * (see the top of this file). With a key (key && key->have) the manifest's
 * HMAC is required and checked; without one an HMAC present is not checked
 * (c->hmac_unverified). Returns 0, or -1 with a message naming the file and
 * the field or problem. */
int run_ckpt_open(run_ckpt *c, const char *path, const run_ckpt_key *key, char *err);
/* Frees what run_ckpt_open allocated (c itself is the caller's). */
void run_ckpt_close(run_ckpt *c);
/* Fills p's parameters (any set of units) from the shards that hold them,
 * checking names, dtypes and shapes. */
int run_ckpt_load_params(const run_ckpt *c, model_part *p, char *err);
/* Fills p (any set of units), its AdamW moments o and st from the shards that
 * hold them: a checkpoint made with one split of the layers loads into
 * another. The sampler state comes from the shard of the stage that held the
 * embedding (the stages that draw batches all hold the same state); every
 * shard read must be at the same step. */
int run_ckpt_load_units(const run_ckpt *c, model_part *p, optim_adamw *o, run_ckpt_state *st, char *err);

/* The previous weight version of p's tensors (2bw, run_ckpt_write_shard_2bw) into
 * prev (p->n_params floats). Returns 1 when every shard holding p's units has
 * it, 0 when none has (a checkpoint of a synchronous run: prev untouched), -1
 * with err when only some have, or on a read error. */
int run_ckpt_load_prev(const run_ckpt *c, const model_part *p, float *prev, char *err);

/* ---- resuming (issue #6) ---- */

/* The checkpoint root of a run: t's checkpoint.dir, under out_dir (NULL: ".")
 * unless absolute. */
void run_ckpt_root(const topo *t, const char *out_dir, char *root, size_t n);
/* Compares the topology saved in c's manifest with t, ignoring what a resumed
 * run may change: description, launch, coordinator, checkpoint, secret_file,
 * encrypt, links (neither changes a number), wire (the steps after the seam only),
 * init_from (a resumed run starts from its checkpoint, not from init_from), train.steps (extends or shortens the run; the learning-rate schedule follows
 * the new total from the checkpoint on), train.log_every, train.eval_every,
 * train.eval_batches, train.bucket_mb, train.zero, the schedule (every
 * schedule gives the same numbers), the stages (how many, their layers,
 * replicas, threads, hosts and ports: the shards are re-split by layer, and
 * every replica holds the same weights) and sync, parameter_servers and ps
 * (all-reduce or parameter servers: checkpoints are by tensor name either way). Everything else — model, data, seed, optimizer, batch
 * and micro-batches — must be equal. Returns 0, or -1 with a message naming
 * the first JSON path that differs. */
int run_ckpt_check_topology(const run_ckpt *c, const topo *t, char *err);
/* When t has another replica count than the checkpoint's (the gradients are
 * then summed in another order), splits the layers otherwise, or gives a layer
 * another BLAS thread count on any replica (OpenBLAS's bits depend on it, so the run then
 * continues, but not bit for bit as it would have), or, with 3 or more
 * replicas, another train.bucket_mb (the ring's segments move), writes a one-line note
 * into note (cap n) and returns 1; else 0. */
int run_ckpt_split_note(const run_ckpt *c, const topo *t, char *note, size_t n);
/* Removes the step directories under root after `step` (the marker first),
 * complete or not: when a run resumes from step, they belong to the abandoned
 * timeline (e.g. a kill between a COMPLETE marker and the latest pointer).
 * Returns 0 or -1 with err. */
int run_ckpt_forget_after(const char *root, long step, char *err);
/* Rewrites out_dir/metrics.jsonl (durably) without the step lines after
 * `step` and without a torn last line, so a resumed run logs every step once;
 * event lines stay. A missing file is fine. Returns 0 or -1 with err. */
int run_ckpt_trim_metrics(const char *out_dir, long step, char *err);

/* Whose checkpoints (a restart resumes only its own run's, run/run.h). */

/* The N of every step-N directory under root, complete or not, newest first,
 * into *steps (malloc'ed, the caller frees it; NULL when none). Returns the
 * count (0 when root is missing), or -1 with err. */
long run_ckpt_scan(const char *root, long **steps, char *err);
/* 1 when root/step-N has its COMPLETE marker. */
int run_ckpt_is_complete(const char *root, long step);
/* The manifest's "writer" of the checkpoint in step directory dir (0 when it
 * has none: written by a one-off tool or an older pipetrain) and the
 * manifest's SHA-256 (what COMPLETE vouches for) as 64 hex digits. Nothing
 * is verified here. Returns 0, or -1 with err (no readable manifest). */
int run_ckpt_identity(const char *dir, uint64_t *writer, char sha[65], char *err);
/* Moves root/name (a step directory or latest) as it is into the directory
 * *aside: when aside is "" the first free ROOT.set-aside-N is created first and
 * its path stored into aside (cap bytes), so that calls with the same buffer
 * fill one directory. Both directories are fsynced. Returns 0 or -1 with err. */
int run_ckpt_set_aside(const char *root, const char *name, char *aside, size_t cap, char *err);

/* SHA-256 of a file as 64 hex digits. Returns 0 or -1 with err. */
int run_sha256_file(const char *path, char hex[65], uint64_t *bytes, char *err);

#endif
