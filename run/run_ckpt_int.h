/* run_ckpt_int.h — what run_ckpt.c (writing, loading) and run_ckpt_verify.c
 * (integrity: the COMPLETE marker, the manifest's layout, shard headers,
 * checkpoints/latest) share. Not a public header: run/ only. */
#ifndef RUN_CKPT_INT_H
#define RUN_CKPT_INT_H

#include "model/safetensors.h"
#include "run/run_ckpt.h"

#define CKPT_PATHLEN 4096

/* "stage-K.safetensors" and "stage-K.optim.safetensors". */
void ckpt_shard_names(char *params, char *optim, size_t n, int stage);
/* The model as the manifest and the shard metadata record it. */
json_t *ckpt_model_json(const model_config *c);
/* Parses and checks a model object (file, ctx name it in messages). */
int ckpt_parse_model(json_t *m, model_config *c, const char *file, const char *ctx, char *err);
/* The name of the first field where a and b differ, or NULL. */
const char *ckpt_model_diff(const model_config *a, const model_config *b, char *buf, size_t n);

/* Resolves a CHECKPOINT argument to a step directory (see run_ckpt_open): a
 * checkpoints/latest that is there but unusable (a symbolic link, not a
 * file, too long, not "step-N", naming a missing directory) is an error that
 * says so, never "no checkpoint". */
int ckpt_resolve(const char *path, char *out, size_t n, char *err);
/* Writes dir/COMPLETE for the manifest text written beside it. */
int ckpt_write_complete(const char *dir, long step, const char *manifest, const run_ckpt_key *key, char *err);
/* Reads dir/manifest.json (returned, malloc'ed, NUL-terminated) after checking
 * it against dir/COMPLETE: its SHA-256 and, with a key, its HMAC. Sets
 * *unverified when the marker has an HMAC but no key was given. */
char *ckpt_read_verified_manifest(const char *dir, const run_ckpt_key *key, long *marker_step, int *unverified,
                                  char *err);
/* After the manifest's fields are parsed into c: its stages are a partition
 * of the model's units, its files are exactly the shards that layout implies,
 * the directory holds nothing else, and the topology's model and the step
 * directory's name agree with it. */
int ckpt_check_layout(const run_ckpt *c, const char *mpath, char *err);
/* The shard of manifest stage k (optim: its AdamW file) agrees with the
 * manifest: format, kind, stage, units, step and model in its metadata, and
 * exactly the tensors its units imply, each F32 with the expected shape. */
int ckpt_check_shard(const run_ckpt *c, int k, int optim, const st_file *f, char *err);

#endif
