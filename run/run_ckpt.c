/* run_ckpt.c — writing, verifying and loading checkpoints (see run_ckpt.h). */
#include "run/run_ckpt.h"
#include "model/safetensors.h"
#include "run/run_ckpt_int.h"
#include "model/util.h"
#include "run/run_metrics.h"

#include <cblas.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATHLEN 4096

/* out = a/b; paths longer than PATHLEN are cut (and then fail to open). */
static void join(char *out, const char *a, const char *b)
{
    if (snprintf(out, PATHLEN, "%s/%s", a, b) >= PATHLEN) out[PATHLEN - 1] = 0;
}

int run_sha256_file(const char *path, char hex[65], uint64_t *bytes, char *err)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return seterr(err, "%s: cannot open: %s", path, strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char buf[1 << 16], md[32];
    unsigned int mdlen = 0;
    uint64_t total = 0;
    ssize_t n;
    int rc = -1;
    if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) { seterr(err, "%s: SHA-256 unavailable", path); goto done; }
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        EVP_DigestUpdate(ctx, buf, (size_t)n);
        total += (uint64_t)n;
    }
    if (n < 0) { seterr(err, "%s: read failed: %s", path, strerror(errno)); goto done; }
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    base_hex(hex, md, 32);
    if (bytes) *bytes = total;
    rc = 0;
done:
    EVP_MD_CTX_free(ctx);
    close(fd);
    return rc;
}

/* Fault injection for the tests (issue #6): with PIPETRAIN_FAULT_CKPT=N in
 * the environment, the process SIGKILLs itself at the N-th point it passes
 * (counted over its life): before each shard file, before manifest.json,
 * before COMPLETE and before latest. Unset (always, outside tests): nothing. */
static void fault_point(void)
{
    static long left = -1;
    if (left < 0) {
        const char *e = getenv("PIPETRAIN_FAULT_CKPT");
        left = e && atol(e) > 0 ? atol(e) : 0;
    }
    if (left > 0 && --left == 0) raise(SIGKILL);
}

void ckpt_shard_names(char *params, char *optim, size_t n, int stage)
{
    snprintf(params, n, "stage-%d.safetensors", stage);
    snprintf(optim, n, "stage-%d.optim.safetensors", stage);
}

int run_ckpt_write_shard(const char *dir, int stage, const model_part *p, const optim_adamw *o,
                           const run_ckpt_state *st, char *err)
{
    return run_ckpt_write_shard_2bw(dir, stage, p, o, st, NULL, err);
}

typedef struct {
    run_ckpt_moments_fn fill;
    void *arg;
} moments_fill;

/* optim shard entry i: 2k + second is tensor k's moment (k < n), then prev's */
static int fill_entry(void *arg, int i, st_sink *s, char *err)
{
    const moments_fill *f = arg;
    return f->fill(f->arg, i / 2, i % 2, s, err);
}

static int write_shard(const char *dir, int stage, const model_part *p, const optim_adamw *o,
                       const moments_fill *mf, const run_ckpt_state *st, const float *prev, char *err);

int run_ckpt_write_shard_2bw(const char *dir, int stage, const model_part *p, const optim_adamw *o,
                             const run_ckpt_state *st, const float *prev, char *err)
{
    return write_shard(dir, stage, p, o, NULL, st, prev, err);
}

int run_ckpt_write_shard_fill(const char *dir, int stage, const model_part *p, run_ckpt_moments_fn fill, void *arg,
                              const run_ckpt_state *st, const float *prev, char *err)
{
    moments_fill mf = { fill, arg };
    return write_shard(dir, stage, p, NULL, &mf, st, prev, err);
}

/* o's moments, or (o NULL) mf's */
static int write_shard(const char *dir, int stage, const model_part *p, const optim_adamw *o,
                       const moments_fill *mf, const run_ckpt_state *st, const float *prev, char *err)
{
    char pn[64], on[64], path[PATHLEN], step[32], samp[32], stage_s[16], units[4096] = "";
    if (run_mkdirs(dir, err)) return -1;
    /* the metadata a reader checks against the manifest (issue 17) */
    json_t *mj = ckpt_model_json(&p->cfg);
    char *model = json_dumps(mj, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
    json_decref(mj);
    snprintf(stage_s, sizeof stage_s, "%d", stage);
    snprintf(step, sizeof step, "%ld", st->step);
    for (int i = 0; i < p->n_units; i++)
        snprintf(units + strlen(units), sizeof units - strlen(units), "%s%d", i ? "," : "", p->units[i]);
    const char *pmeta[] = { "format", "pipetrain-shard", "kind", "params", "stage", stage_s, "units", units,
                            "step", step, "model", model, NULL };
    ckpt_shard_names(pn, on, sizeof pn, stage);
    int n = p->n_tensors, rc = -1, per = prev ? 3 : 2;
    st_entry *e = xcalloc((size_t)n * 3, sizeof *e);
    char (*names)[96] = xcalloc((size_t)n * 3, sizeof *names);
    for (int i = 0; i < n; i++) {
        const model_tensor *t = &p->tensors[i];
        e[i] = (st_entry){ t->name, "F32", t->ndim, { (int64_t)t->shape[0], (int64_t)t->shape[1] }, p->params + t->offset };
    }
    join(path, dir, pn);
    fault_point();
    if (st_write(path, e, n, pmeta, err)) goto done;
    for (int i = 0; i < n; i++) {
        const model_tensor *t = &p->tensors[i];
        snprintf(names[2 * i], sizeof names[0], "%s.exp_avg", t->name);
        snprintf(names[2 * i + 1], sizeof names[0], "%s.exp_avg_sq", t->name);
        e[2 * i] = (st_entry){ names[2 * i], "F32", t->ndim, { (int64_t)t->shape[0], (int64_t)t->shape[1] }, o ? o->m + t->offset : NULL };
        e[2 * i + 1] = (st_entry){ names[2 * i + 1], "F32", t->ndim, { (int64_t)t->shape[0], (int64_t)t->shape[1] }, o ? o->v + t->offset : NULL };
        if (!prev) continue;
        /* 2bw: the previous weight version after the moments (readers that do
         * not know it look tensors up by name and skip it) */
        snprintf(names[2 * n + i], sizeof names[0], "%s.2bw_prev", t->name);
        e[2 * n + i] = (st_entry){ names[2 * n + i], "F32", t->ndim, { (int64_t)t->shape[0], (int64_t)t->shape[1] }, prev + t->offset };
    }
    snprintf(samp, sizeof samp, "%" PRIu64, st->sampler_state);
    const char *meta[] = { "format", "pipetrain-shard", "kind", "optim", "stage", stage_s, "units", units,
                           "step", step, "model", model, "sampler_state", samp, "adam_step", step,
                           prev ? "weight_versions" : NULL, "2", NULL };
    join(path, dir, on);
    fault_point();
    rc = o ? st_write(path, e, per * n, meta, err)
           : st_write_fill(path, e, per * n, meta, fill_entry, (void *)mf, err);
done:
    free(e);
    free(names);
    free(model);
    return rc;
}

json_t *ckpt_model_json(const model_config *c)
{
    return json_pack("{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:f,s:f,s:b}", "dim", c->dim, "n_layers", c->n_layers,
                     "n_heads", c->n_heads, "n_kv_heads", c->n_kv_heads, "ffn_dim", c->ffn_dim,
                     "vocab_size", c->vocab_size, "seq_len", c->seq_len, "norm_eps", (double)c->norm_eps,
                     "rope_theta", (double)c->rope_theta, "tie_embeddings", c->tie_embeddings);
}

/* Writes text durably to dir/name. */
static int write_text(const char *dir, const char *name, const char *text, char *err)
{
    char path[PATHLEN];
    join(path, dir, name);
    return base_write_durable(path, text, strlen(text), err);
}

int run_ckpt_commit(const char *dir, const topo *t, long step, const run_ckpt_key *key, char *err)
{
    return run_ckpt_commit_by(dir, t, step, key, 0, err);
}

int run_ckpt_commit_by(const char *dir, const topo *t, long step, const run_ckpt_key *key, uint64_t writer,
                       char *err)
{
    char hash[65], pn[64], on[64], path[PATHLEN];
    json_t *files = json_array(), *stages = json_array();
    int rc = -1;
    char *canon = topo_canonical_json(t), *text = NULL;
    json_t *topo_obj = canon ? json_loads(canon, 0, NULL) : NULL;
    if (!canon || !topo_obj || topo_hash_hex(t, hash)) {
        seterr(err, "%s: out of memory encoding the topology for manifest.json", dir);
        goto done;
    }
    for (int k = 0; k < t->n_stages; k++) {
        const topo_stage *s = &t->stages[k];
        json_t *units = json_array();
        for (int i = 0; i < s->n_units; i++) json_array_append_new(units, json_integer(s->units[i]));
        ckpt_shard_names(pn, on, sizeof pn, k);
        json_array_append_new(stages, json_pack("{s:i,s:s,s:o,s:i,s:s,s:s}", "stage", k, "layers", s->layers,
                                                "units", units, "threads", s->threads, "params", pn, "optim", on));
        const char *names[2] = { pn, on };
        for (int j = 0; j < 2; j++) {
            char sha[65];
            uint64_t bytes;
            join(path, dir, names[j]);
            if (run_sha256_file(path, sha, &bytes, err)) goto done;
            json_array_append_new(files, json_pack("{s:s,s:I,s:s}", "name", names[j], "bytes", (json_int_t)bytes, "sha256", sha));
        }
    }
    json_t *m = json_pack("{s:s,s:i,s:I,s:s,s:s,s:s,s:o,s:o,s:o,s:o}", "format", "pipetrain-checkpoint",
                          "version", 2, "step", (json_int_t)step, "pipetrain_version", PIPETRAIN_VERSION,
                          "openblas", openblas_get_config(), "topology_sha256", hash, "model", ckpt_model_json(&t->model),
                          "stages", stages, "files", files, "topology", topo_obj ? topo_obj : json_null());
    stages = files = topo_obj = NULL;
    if (m && writer) {
        char w[24];
        snprintf(w, sizeof w, "%016" PRIx64, writer);
        json_object_set_new(m, "writer", json_string(w));
    }
    text = m ? json_dumps(m, JSON_INDENT(2)) : NULL;
    json_decref(m);
    if (!text) {
        seterr(err, "%s/manifest.json: cannot encode the manifest (out of memory)", dir);
        goto done;
    }
    fault_point();
    if (write_text(dir, "manifest.json", text, err)) goto done;
    fault_point();
    if (ckpt_write_complete(dir, step, text, key, err)) goto done;
    /* latest lives beside the step directories */
    char parent[PATHLEN], base[PATHLEN + 2];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash) { snprintf(base, sizeof base, "%s\n", slash + 1); *slash = 0; }
    else { snprintf(base, sizeof base, "%s\n", parent); strcpy(parent, "."); }
    fault_point();
    rc = write_text(parent, "latest", base, err);
done:
    json_decref(files); json_decref(stages); json_decref(topo_obj);
    free(canon); free(text);
    return rc;
}

static int exists(const char *p) { struct stat s; return !stat(p, &s); }

static int get_int(json_t *o, const char *key, long *v, const char *file, const char *ctx, char *err)
{
    json_t *x = json_object_get(o, key);
    if (!json_is_integer(x)) return seterr(err, "%s: %s%s: expected an integer", file, ctx, key);
    *v = (long)json_integer_value(x);
    return 0;
}

int ckpt_parse_model(json_t *m, model_config *c, const char *file, const char *ctx, char *err)
{
    long v[7];
    static const char *keys[7] = { "dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "vocab_size", "seq_len" };
    if (!json_is_object(m)) return seterr(err, "%s: %.*s: expected an object", file, (int)strlen(ctx) - 1, ctx);
    for (int i = 0; i < 7; i++) {
        if (get_int(m, keys[i], &v[i], file, ctx, err)) return -1;
        if (v[i] < 0 || v[i] > 1L << 30) return seterr(err, "%s: %s%s: %ld is out of range", file, ctx, keys[i], v[i]);
    }
    json_t *eps = json_object_get(m, "norm_eps"), *th = json_object_get(m, "rope_theta"), *tie = json_object_get(m, "tie_embeddings");
    if (!json_is_number(eps) || !json_is_number(th) || !json_is_boolean(tie))
        return seterr(err, "%s: %snorm_eps, rope_theta (numbers) and tie_embeddings (boolean) are required", file, ctx);
    *c = (model_config){ (int)v[0], (int)v[1], (int)v[2], (int)v[3], (int)v[4], (int)v[5], (int)v[6],
                         (float)json_number_value(eps), (float)json_number_value(th), json_is_true(tie) };
    char e2[ERR_LEN];
    if (model_config_check(c, e2)) return seterr(err, "%s: %s", file, e2);
    return 0;
}

const char *ckpt_model_diff(const model_config *a, const model_config *b, char *buf, size_t n)
{
    const char *f = a->dim != b->dim ? "dim" : a->n_layers != b->n_layers ? "n_layers"
                  : a->n_heads != b->n_heads ? "n_heads" : a->n_kv_heads != b->n_kv_heads ? "n_kv_heads"
                  : a->ffn_dim != b->ffn_dim ? "ffn_dim" : a->vocab_size != b->vocab_size ? "vocab_size"
                  : a->seq_len != b->seq_len ? "seq_len" : a->norm_eps != b->norm_eps ? "norm_eps"
                  : a->rope_theta != b->rope_theta ? "rope_theta"
                  : a->tie_embeddings != b->tie_embeddings ? "tie_embeddings" : NULL;
    if (f) snprintf(buf, n, "%s", f);
    return f;
}

static int verify_files(const run_ckpt *c, const char *mpath, char *err)
{
    json_t *files = json_object_get(c->manifest, "files"), *f;
    size_t i;
    if (!json_is_array(files)) return seterr(err, "%s: files: expected an array", mpath);
    json_array_foreach(files, i, f) {
        const char *name = json_string_value(json_object_get(f, "name"));
        const char *sha = json_string_value(json_object_get(f, "sha256"));
        json_t *b = json_object_get(f, "bytes");
        if (!name || !sha || !json_is_integer(b) || strchr(name, '/'))
            return seterr(err, "%s: files.%zu: expected {name, bytes, sha256}", mpath, i);
        char path[PATHLEN], got[65];
        uint64_t bytes;
        snprintf(path, sizeof path, "%s/%s", c->dir, name);
        if (run_sha256_file(path, got, &bytes, err)) return -1;
        if (bytes != (uint64_t)json_integer_value(b))
            return seterr(err, "%s: size %" PRIu64 " bytes, manifest says %" PRId64, path, bytes, (int64_t)json_integer_value(b));
        if (strcmp(got, sha)) return seterr(err, "%s: SHA-256 mismatch: file has %s, manifest says %s", path, got, sha);
    }
    return 0;
}

int run_ckpt_open(run_ckpt *c, const char *path, const run_ckpt_key *key, char *err)
{
    char dir[PATHLEN], mpath[PATHLEN + 32];
    json_error_t je;
    long marker_step = -1;
    memset(c, 0, sizeof *c);
    if (ckpt_resolve(path, dir, sizeof dir, err)) return -1;
    /* the manifest is believed only once COMPLETE vouches for it (issue 17) */
    char *text = ckpt_read_verified_manifest(dir, key, &marker_step, &c->hmac_unverified, err);
    if (!text) return -1;
    c->dir = xstrdup(dir);
    snprintf(mpath, sizeof mpath, "%s/manifest.json", dir);
    c->manifest = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!c->manifest) { seterr(err, "%s:%d:%d: %s", mpath, je.line, je.column, je.text); goto fail; }
    const char *fmt = json_string_value(json_object_get(c->manifest, "format"));
    if (!fmt || strcmp(fmt, "pipetrain-checkpoint")) { seterr(err, "%s: format: expected \"pipetrain-checkpoint\"", mpath); goto fail; }
    long ver = 0, step = 0;
    if (get_int(c->manifest, "version", &ver, mpath, "", err) || get_int(c->manifest, "step", &step, mpath, "", err)) goto fail;
    if (ver == 1) { seterr(err, "%s: version 1: written by an older version of pipetrain, whose checkpoints this one cannot verify", mpath); goto fail; }
    if (ver != 2) { seterr(err, "%s: version %ld is not supported (this build reads 2)", mpath, ver); goto fail; }
    if (step < 0 || step != marker_step) { seterr(err, "%s: step %ld, but COMPLETE says step %ld", mpath, step, marker_step); goto fail; }
    c->step = step;
    if (ckpt_parse_model(json_object_get(c->manifest, "model"), &c->cfg, mpath, "model.", err)) goto fail;
    json_t *stages = json_object_get(c->manifest, "stages");
    int nu = model_n_units(&c->cfg);
    if (!json_is_array(stages) || !json_array_size(stages) || json_array_size(stages) > (size_t)nu) {
        seterr(err, "%s: stages: expected 1 to %d stages (the model has %d units)", mpath, nu, nu);
        goto fail;
    }
    c->n_stages = (int)json_array_size(stages);
    if (ckpt_check_layout(c, mpath, err) || verify_files(c, mpath, err)) goto fail;
    return 0;
fail:
    run_ckpt_close(c);
    return -1;
}

void run_ckpt_close(run_ckpt *c)
{
    if (!c) return;
    free(c->dir);
    json_decref(c->manifest);
    memset(c, 0, sizeof *c);
}

/* Units held by manifest stage k, as a JSON array. */
static json_t *stage_units(const run_ckpt *c, int k)
{
    return json_object_get(json_array_get(json_object_get(c->manifest, "stages"), (size_t)k), "units");
}
static int holds(json_t *units, int unit)
{
    size_t i;
    json_t *u;
    json_array_foreach(units, i, u) if (json_integer_value(u) == unit) return 1;
    return 0;
}
static int open_shard(const run_ckpt *c, int k, const char *key, st_file **f, char *err)
{
    const char *name = json_string_value(json_object_get(json_array_get(json_object_get(c->manifest, "stages"), (size_t)k), key));
    if (!name || strchr(name, '/')) return seterr(err, "%s/manifest.json: stages.%d.%s: expected a file name", c->dir, k, key);
    char path[PATHLEN];
    join(path, c->dir, name);
    if (st_open(f, path, err)) return -1;
    if (ckpt_check_shard(c, k, !strcmp(key, "optim"), *f, err)) {
        st_close(*f);
        *f = NULL;
        return -1;
    }
    return 0;
}

static int check_config(const run_ckpt *c, const model_part *p, char *err)
{
    if (memcmp(&c->cfg, &p->cfg, sizeof c->cfg))
        return seterr(err, "%s: the checkpoint's model (dim %d, n_layers %d, ...) differs from the one being loaded",
                      c->dir, c->cfg.dim, c->cfg.n_layers);
    return 0;
}

int run_ckpt_load_params(const run_ckpt *c, model_part *p, char *err)
{
    if (check_config(c, p, err)) return -1;
    int loaded = 0, want_tied = p->tied_w && p->tied_w != p->params;
    for (int k = 0; k < c->n_stages; k++) {
        json_t *units = stage_units(c, k);
        int any = want_tied && holds(units, 0);
        for (int i = 0; i < p->n_units && !any; i++) any = holds(units, p->units[i]);
        if (!any) continue;
        st_file *f;
        if (open_shard(c, k, "params", &f, err)) return -1;
        for (int i = 0; i < p->n_tensors; i++) {
            const model_tensor *t = &p->tensors[i];
            if (!holds(units, t->unit)) continue;
            if (st_read_f32(f, t->name, p->params + t->offset, t->numel, err)) { st_close(f); return -1; }
            loaded++;
        }
        if (want_tied && holds(units, 0)) {
            size_t n = (size_t)c->cfg.vocab_size * c->cfg.dim;
            if (st_read_f32(f, "model.embed_tokens.weight", p->tied_w, n, err)) { st_close(f); return -1; }
            want_tied = 0;
        }
        st_close(f);
    }
    if (loaded != p->n_tensors || want_tied)
        return seterr(err, "%s: the checkpoint does not hold every tensor requested (%d of %d found)", c->dir, loaded, p->n_tensors);
    return 0;
}

static int meta_u64(const st_file *f, const char *key, uint64_t *v, char *err)
{
    const char *s = st_meta(f, key);
    char *end;
    errno = 0;
    if (!s || !*s) return seterr(err, "%s: metadata %s is missing", st_path(f), key);
    *v = strtoull(s, &end, 10);
    if (*end || errno) return seterr(err, "%s: metadata %s = \"%s\" is not an integer", st_path(f), key, s);
    return 0;
}

/* Reads the AdamW moments of p's tensors that shard k holds; counts them in *found. */
static int load_moments(const run_ckpt *c, int k, st_file *f, model_part *p, optim_adamw *o, int *found,
                        char *err)
{
    json_t *units = stage_units(c, k);
    char name[128];
    for (int i = 0; i < p->n_tensors; i++) {
        const model_tensor *t = &p->tensors[i];
        if (!holds(units, t->unit)) continue;
        snprintf(name, sizeof name, "%s.exp_avg", t->name);
        if (st_read_f32(f, name, o->m + t->offset, t->numel, err)) return -1;
        snprintf(name, sizeof name, "%s.exp_avg_sq", t->name);
        if (st_read_f32(f, name, o->v + t->offset, t->numel, err)) return -1;
        (*found)++;
    }
    return 0;
}

int run_ckpt_load_units(const run_ckpt *c, model_part *p, optim_adamw *o, run_ckpt_state *st, char *err)
{
    if (run_ckpt_load_params(c, p, err)) return -1;
    int found = 0, seen = -1, with_data = 0;
    uint64_t step = 0, samp = 0;
    for (int k = 0; k < c->n_stages; k++) {
        json_t *units = stage_units(c, k);
        int data = holds(units, 0); /* the embedding's stage draws the batches: its sampler */
        int any = data;
        for (int i = 0; i < p->n_tensors && !any; i++) any = holds(units, p->tensors[i].unit);
        if (!any) continue;
        st_file *f;
        uint64_t s;
        if (open_shard(c, k, "optim", &f, err)) return -1;
        int rc = load_moments(c, k, f, p, o, &found, err);
        if (!rc) rc = meta_u64(f, "step", &s, err);
        if (!rc && data) rc = meta_u64(f, "sampler_state", &samp, err);
        if (!rc && seen >= 0 && s != step)
            rc = seterr(err, "%s: stage %d's shard is at step %" PRIu64 ", stage %d's at step %" PRIu64, c->dir, k, s,
                        seen, step);
        st_close(f);
        if (rc) return -1;
        step = s;
        seen = k;
        with_data |= data;
    }
    if (found != p->n_tensors || !with_data)
        return seterr(err, "%s: the checkpoint does not hold %s", c->dir,
                      with_data ? "the AdamW moments of every tensor requested" : "a stage with the embedding");
    st->step = (long)step;
    st->sampler_state = samp;
    o->step = (long)step;
    return 0;
}

int run_ckpt_load_prev(const run_ckpt *c, const model_part *p, float *prev, char *err)
{
    int with = 0, without = 0;
    char name[128];
    for (int k = 0; k < c->n_stages; k++) {
        json_t *units = stage_units(c, k);
        int any = 0;
        for (int i = 0; i < p->n_tensors && !any; i++) any = holds(units, p->tensors[i].unit);
        if (!any) continue;
        st_file *f;
        if (open_shard(c, k, "optim", &f, err)) return -1;
        const char *wv = st_meta(f, "weight_versions");
        if (!wv || strcmp(wv, "2")) {
            without++;
            st_close(f);
            continue;
        }
        with++;
        for (int i = 0; i < p->n_tensors; i++) {
            const model_tensor *t = &p->tensors[i];
            if (!holds(units, t->unit)) continue;
            snprintf(name, sizeof name, "%s.2bw_prev", t->name);
            if (st_read_f32(f, name, prev + t->offset, t->numel, err)) { st_close(f); return -1; }
        }
        st_close(f);
    }
    if (with && without)
        return seterr(err, "%s: some shards hold the 2bw previous weight version (weight_versions 2) and others "
                      "do not: the checkpoint mixes runs", c->dir);
    return with ? 1 : 0;
}

/* ---- pruning ---- */

static int rm_tree(const char *dir, char *err)
{
    DIR *d = opendir(dir);
    if (!d) return seterr(err, "%s: cannot open: %s", dir, strerror(errno));
    struct dirent *e;
    char path[PATHLEN];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        join(path, dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    if (rmdir(dir)) return seterr(err, "%s: cannot remove: %s", dir, strerror(errno));
    return 0;
}

static int newest_first(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

static long *xrealloc_steps(long *p, size_t n)
{
    long *q = realloc(p, n * sizeof *q);
    if (!q) base_oom(n * sizeof *q, __FILE__, __LINE__);
    return q;
}

int run_ckpt_prune(const char *root, int keep, char *err)
{
    if (keep <= 0) return 0;
    DIR *d = opendir(root);
    if (!d) return seterr(err, "%s: cannot open: %s", root, strerror(errno));
    /* every complete checkpoint, however many train.steps / checkpoint.every
     * made: a fixed table would miss some, possibly the newest */
    size_t n = 0, cap = 64;
    long *steps = xmalloc(cap * sizeof *steps);
    struct dirent *e;
    char path[PATHLEN], marker[PATHLEN];
    while ((e = readdir(d))) {
        long s;
        char tail;
        if (sscanf(e->d_name, "step-%ld%c", &s, &tail) != 1) continue;
        join(path, root, e->d_name);
        join(marker, path, "COMPLETE");
        if (!exists(marker)) continue;
        if (n == cap) steps = xrealloc_steps(steps, cap *= 2);
        steps[n++] = s;
    }
    closedir(d);
    qsort(steps, n, sizeof *steps, newest_first);
    int rc = 0;
    for (size_t i = (size_t)keep; i < n && !rc; i++) {
        char name[64];
        snprintf(name, sizeof name, "step-%ld", steps[i]);
        join(path, root, name);
        /* the marker goes first, so a half-removed checkpoint no longer exists */
        join(marker, path, "COMPLETE");
        unlink(marker);
        if (rm_tree(path, err)) rc = -1;
    }
    free(steps);
    return rc;
}

/* ---- resuming ---- */

int run_ckpt_forget_after(const char *root, long step, char *err)
{
    DIR *d = opendir(root);
    if (!d) return errno == ENOENT ? 0 : seterr(err, "%s: cannot open: %s", root, strerror(errno));
    struct dirent *e;
    char path[PATHLEN], marker[PATHLEN];
    int rc = 0;
    while ((e = readdir(d)) && !rc) {
        long s;
        char tail;
        if (sscanf(e->d_name, "step-%ld%c", &s, &tail) != 1 || s <= step) continue;
        join(path, root, e->d_name);
        join(marker, path, "COMPLETE");
        if (unlink(marker) && errno != ENOENT) rc = seterr(err, "%s: cannot remove: %s", marker, strerror(errno));
        else rc = rm_tree(path, err);
    }
    closedir(d);
    return rc;
}
