/* topo_limits.c — what a topology may ask for that the machinery cannot carry:
 * tensors larger than one transport payload, and run or checkpoint paths longer
 * than the kernel accepts. Everything else is sized from the topology; these
 * limits are real, so `check` refuses them up front, naming the field.
 * Not here: the schema and the partition (topo.c, topo_check.c). */
#include "topo/topo.h"
#include "model/util.h"
#include "net/net.h"

#include <limits.h>

static int decimal_digits(unsigned long v)
{
    int n = 1;
    while (v >= 10) { v /= 10; n++; }
    return n;
}

/* Longest name a run writes under the checkpoint root:
 * "/step-N/stage-K.optim.safetensors.tmp". */
static size_t ckpt_suffix(const topo *t)
{
    return strlen("/step-") + (size_t)decimal_digits((unsigned long)t->train.steps) + strlen("/stage-") +
           (size_t)decimal_digits((unsigned long)(t->n_stages > 0 ? t->n_stages - 1 : 0)) +
           strlen(".optim.safetensors.tmp");
}

int topo_check_paths(const topo *t, const char *out_dir, char *err)
{
    const char *cd = t->checkpoint.dir;
    size_t max = TOPO_PATH_MAX - 1, ck = ckpt_suffix(t);
    if (out_dir) {
        size_t out = strlen(out_dir);
        if (out + TOPO_OUT_SUFFIX_MAX > max)
            return seterr(err, "--out: the run directory's name is %zu bytes; the files in it need at most %zu "
                          "(paths are limited to %d bytes)", out, max - TOPO_OUT_SUFFIX_MAX, TOPO_PATH_MAX - 1);
    }
    if (!cd) return 0;
    size_t root = strlen(cd);
    if (cd[0] != '/') root += (out_dir ? strlen(out_dir) : 1) + 1; /* OUT/dir, or ./dir */
    if (root + ck > max)
        return seterr(err, "%s: checkpoint.dir: \"%.40s...\" gives checkpoint paths of %zu bytes%s; paths are "
                      "limited to %d bytes", t->path, cd, root + ck,
                      cd[0] != '/' && out_dir ? " under --out" : "", TOPO_PATH_MAX - 1);
    return 0;
}

int topo_check_limits(const topo *t, char *err)
{
    const uint64_t cap = NET_MAX_PAYLOAD_CAP;
    if (t->n_stages > 1) {
        uint64_t act = (uint64_t)topo_max_tensor_bytes(t);
        if (act > cap)
            return seterr(err, "%s: train.micro_batches: one micro-batch's activation (%d sequences x seq_len %d x "
                          "dim %d x 4 bytes = %llu bytes) exceeds the %llu bytes one transport message carries "
                          "(raise train.micro_batches or lower train.batch_size)", t->path, topo_micro_batch(t),
                          t->model.seq_len, t->model.dim, (unsigned long long)act, (unsigned long long)cap);
        int head = topo_stage_of_unit(t, t->model.n_layers + 1);
        uint64_t tied = (uint64_t)t->model.vocab_size * (uint64_t)t->model.dim * sizeof(float);
        if (t->model.tie_embeddings && head != 0 && tied > cap)
            return seterr(err, "%s: model.tie_embeddings: the tied embedding (vocab_size %d x dim %d x 4 bytes = "
                          "%llu bytes) goes between stage 0 and stage %d in one message, which carries at most "
                          "%llu bytes (untie it or keep the embedding and the head on one stage)", t->path,
                          t->model.vocab_size, t->model.dim, (unsigned long long)tied, head,
                          (unsigned long long)cap);
    }
    /* a collective's tag holds the bucket in 18 bits (stage/runtime_dp.c) */
    for (int k = 0; t->n_replicas > 1 && k < t->n_stages; k++) {
        size_t nb = topo_stage_bucket_count(t, k);
        if (nb > TOPO_MAX_BUCKETS)
            return seterr(err, "%s: train.bucket_mb: %g MiB cuts stage %d's gradients into %zu buckets, more than "
                          "%d (raise it)", t->path, t->train.bucket_mb, k, nb, TOPO_MAX_BUCKETS);
    }
    return topo_check_paths(t, NULL, err);
}
