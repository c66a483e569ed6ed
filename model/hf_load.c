/* hf_load.c — config.json and (sharded) safetensors of a Hugging Face LLaMA
 * checkpoint into model parts (see hf_load.h). The safetensors headers are
 * validated by model/safetensors.c; here: which file holds a tensor, its dtype
 * and shape, and the conversion to f32. */
#include "model/hf_load.h"
#include "model/safetensors.h"
#include "model/util.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <sys/stat.h>

#define HF_MAX_JSON (64u << 20) /* config.json and the index are small; refuse absurd ones */
#define HF_MAX_SHARDS 1024

const char *const hf_config_keys[][2] = {
    { "dim", "hidden_size" },
    { "ffn_dim", "intermediate_size" },
    { "n_heads", "num_attention_heads" },
    { "n_kv_heads", "num_key_value_heads" },
    { "n_layers", "num_hidden_layers" },
    { "norm_eps", "rms_norm_eps" },
    { "rope_theta", "rope_theta" },
    { "vocab_size", "vocab_size" },
    { "tie_embeddings", "tie_word_embeddings" },
    { "seq_len", "max_position_embeddings" },
    { NULL, NULL },
};

/* ---- conversions ------------------------------------------------------------ */

static float f16_one(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, m = h & 0x3ff, bits;
    if (e == 0) { /* zero or subnormal: m * 2^-24, exact in f32 */
        float v = ldexpf((float)m, -24);
        return sign ? -v : v;
    }
    if (e == 31) bits = sign | 0x7f800000u | (m << 13); /* inf, or NaN with its payload */
    else bits = sign | ((e - 15 + 127) << 23) | (m << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

void hf_f16_to_f32(float *dst, const void *src, size_t n)
{
    const uint8_t *p = src;
    for (size_t i = 0; i < n; i++) dst[i] = f16_one((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
}

void hf_bf16_to_f32(float *dst, const void *src, size_t n)
{
    const uint8_t *p = src;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits = (uint32_t)(p[2 * i] | p[2 * i + 1] << 8) << 16;
        memcpy(&dst[i], &bits, 4);
    }
}

/* ---- small JSON files ------------------------------------------------------- */

static json_t *read_json(const char *path, char *err)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f) return seterr(err, "%s: cannot read: %s", path, strerror(errno)), NULL;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > HF_MAX_JSON) {
        fclose(f);
        return seterr(err, "%s: cannot read: not a regular file of at most %u bytes", path, HF_MAX_JSON), NULL;
    }
    json_error_t je;
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
    fclose(f);
    if (!root) return seterr(err, "%s:%d:%d: invalid JSON: %s", path, je.line, je.column, je.text), NULL;
    if (!json_is_object(root)) {
        json_decref(root);
        return seterr(err, "%s: expected a JSON object at the top level", path), NULL;
    }
    return root;
}

/* An integer field in lo..hi; absent: def (def < 0: required). */
static int get_int(const char *path, json_t *o, const char *k, long lo, long hi, long def, long *out, char *err)
{
    json_t *v = json_object_get(o, k);
    if (!v) {
        if (def < 0) return seterr(err, "%s: %s: missing (required)", path, k);
        *out = def;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return seterr(err, "%s: %s: expected an integer in %ld..%ld", path, k, lo, hi);
    *out = (long)json_integer_value(v);
    return 0;
}

static int get_pos(const char *path, json_t *o, const char *k, double def, float *out, char *err)
{
    json_t *v = json_object_get(o, k);
    double x = v ? json_number_value(v) : def;
    if ((v && !json_is_number(v)) || !(x > 0) || !isfinite((float)x))
        return seterr(err, "%s: %s: expected a positive number", path, k);
    *out = (float)x;
    return 0;
}

/* What this loader does not implement: refused rather than loaded wrong. */
static int check_unsupported(const char *path, json_t *o, char *err)
{
    json_t *v;
    if ((v = json_object_get(o, "model_type")) && (!json_is_string(v) || strcmp(json_string_value(v), "llama")))
        return seterr(err, "%s: model_type: only \"llama\" is supported", path);
    if ((v = json_object_get(o, "rope_scaling")) && !json_is_null(v))
        return seterr(err, "%s: rope_scaling: not supported (must be null or absent)", path);
    if ((v = json_object_get(o, "attention_bias")) && !json_is_false(v))
        return seterr(err, "%s: attention_bias: not supported (must be false or absent)", path);
    if ((v = json_object_get(o, "mlp_bias")) && !json_is_false(v))
        return seterr(err, "%s: mlp_bias: not supported (must be false or absent)", path);
    if ((v = json_object_get(o, "hidden_act")) && (!json_is_string(v) || strcmp(json_string_value(v), "silu")))
        return seterr(err, "%s: hidden_act: only \"silu\" is supported", path);
    return 0;
}

int hf_config_load(const char *dir, model_config *c, long *max_pos, char *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *o = read_json(path, err);
    if (!o) return -1;
    long dim, ffn, nh, nkv, nl, V, mp, hd;
    int rc = -1;
    memset(c, 0, sizeof *c);
    if (check_unsupported(path, o, err) || get_int(path, o, "hidden_size", 1, 1 << 20, -1, &dim, err) ||
        get_int(path, o, "intermediate_size", 1, 1 << 22, -1, &ffn, err) ||
        get_int(path, o, "num_attention_heads", 1, 65536, -1, &nh, err) ||
        get_int(path, o, "num_key_value_heads", 1, 65536, nh, &nkv, err) ||
        get_int(path, o, "num_hidden_layers", 1, 4096, -1, &nl, err) ||
        get_int(path, o, "vocab_size", 1, 65536, -1, &V, err) ||
        get_int(path, o, "max_position_embeddings", 1, 1 << 20, 2048, &mp, err) ||
        get_int(path, o, "head_dim", 1, 1 << 20, dim / nh, &hd, err) ||
        get_pos(path, o, "rms_norm_eps", 1e-6, &c->norm_eps, err) ||
        get_pos(path, o, "rope_theta", 10000, &c->rope_theta, err))
        goto done;
    if (hd * nh != dim) {
        seterr(err, "%s: head_dim: %ld x num_attention_heads %ld != hidden_size %ld: not supported", path, hd, nh, dim);
        goto done;
    }
    json_t *tie = json_object_get(o, "tie_word_embeddings");
    if (tie && !json_is_boolean(tie)) {
        seterr(err, "%s: tie_word_embeddings: expected true or false", path);
        goto done;
    }
    c->dim = (int)dim; c->ffn_dim = (int)ffn; c->n_heads = (int)nh; c->n_kv_heads = (int)nkv;
    c->n_layers = (int)nl; c->vocab_size = (int)V; c->seq_len = (int)mp;
    c->tie_embeddings = json_is_true(tie);
    *max_pos = mp;
    char e2[ERR_LEN];
    if (model_config_check(c, e2)) {
        seterr(err, "%s: %s", path, e2);
        goto done;
    }
    rc = 0;
done:
    json_decref(o);
    return rc;
}

/* ---- the files of a checkpoint ---------------------------------------------- */

typedef struct {
    const char *dir;
    char index[4200];   /* the index's path when sharded */
    json_t *root;       /* the index, or NULL for one model.safetensors */
    json_t *map;        /* its weight_map */
    int n;
    char *names[HF_MAX_SHARDS]; /* files opened so far, by name */
    st_file *files[HF_MAX_SHARDS];
    hf_stats *st;
} src;

static int src_open(src *s, const char *dir, hf_stats *st, char *err)
{
    memset(s, 0, sizeof *s);
    s->dir = dir;
    s->st = st;
    struct stat sb;
    snprintf(s->index, sizeof s->index, "%s/model.safetensors.index.json", dir);
    if (stat(s->index, &sb) != 0) { s->index[0] = 0; return 0; } /* one file */
    if (!(s->root = read_json(s->index, err))) return -1;
    s->map = json_object_get(s->root, "weight_map");
    if (!json_is_object(s->map)) return seterr(err, "%s: weight_map: missing or not an object", s->index);
    return 0;
}

static void src_close(src *s)
{
    for (int i = 0; i < s->n; i++) { st_close(s->files[i]); free(s->names[i]); }
    json_decref(s->root);
}

/* The open file holding tensor `name` (opened on first use), or -1. */
static int src_file(src *s, const char *name, st_file **out, char *err)
{
    const char *fn = "model.safetensors";
    if (s->map) {
        json_t *v = json_object_get(s->map, name);
        if (!v) return seterr(err, "%s: weight_map: tensor %s missing", s->index, name);
        fn = json_string_value(v);
        /* a name from the file stays inside DIR */
        if (!fn || !fn[0] || strchr(fn, '/') || !strcmp(fn, "..") || !strcmp(fn, "."))
            return seterr(err, "%s: weight_map.%s: expected a file name in this directory", s->index, name);
    }
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->names[i], fn)) { *out = s->files[i]; return 0; }
    if (s->n == HF_MAX_SHARDS) return seterr(err, "%s: more than %d shard files", s->index, HF_MAX_SHARDS);
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", s->dir, fn);
    if (st_open_mapped(&s->files[s->n], path, err)) return -1;
    s->names[s->n] = xstrdup(fn);
    if (s->st) {
        size_t k = strlen(s->st->names);
        snprintf(s->st->names + k, sizeof s->st->names - k, "%s%s", k ? ", " : "", fn);
        s->st->files++;
    }
    *out = s->files[s->n++];
    return 0;
}

/* Finds tensor `name` of shape (rows, cols) (cols 0: 1-D) and checks it. */
static int src_tensor(src *s, const char *name, size_t rows, size_t cols, const st_tensor **out, char *err)
{
    st_file *f;
    if (src_file(s, name, &f, err)) return -1;
    const st_tensor *t = st_find(f, name);
    if (!t) return seterr(err, "%s: tensor %s missing", st_path(f), name);
    if (strcmp(t->dtype, "F32") && strcmp(t->dtype, "F16") && strcmp(t->dtype, "BF16"))
        return seterr(err, "%s: tensor %s: dtype %s not supported (F32, F16 or BF16)", st_path(f), name, t->dtype);
    int nd = cols ? 2 : 1;
    if (t->ndim != nd || (size_t)t->shape[0] != rows || (nd == 2 && (size_t)t->shape[1] != cols)) {
        char got[96] = "[";
        for (int i = 0; i < t->ndim && i < 4; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        strcat(got, t->ndim > 4 ? ", ...]" : "]");
        if (nd == 2) return seterr(err, "%s: tensor %s: shape %s, expected [%zu, %zu]", st_path(f), name, got, rows, cols);
        return seterr(err, "%s: tensor %s: shape %s, expected [%zu]", st_path(f), name, got, rows);
    }
    *out = t;
    return 0;
}

static void convert(float *dst, const st_tensor *t)
{
    if (!strcmp(t->dtype, "F32")) memcpy(dst, t->data, t->nbytes);
    else if (!strcmp(t->dtype, "F16")) hf_f16_to_f32(dst, t->data, t->numel);
    else hf_bf16_to_f32(dst, t->data, t->numel);
}

static int load_one(src *s, const model_tensor *mt, float *dst, char *err)
{
    const st_tensor *t;
    if (src_tensor(s, mt->name, mt->shape[0], mt->ndim == 2 ? mt->shape[1] : 0, &t, err)) return -1;
    convert(dst, t);
    if (s->st) { s->st->tensors++; s->st->bytes += t->nbytes; }
    return 0;
}

int hf_load_part(const char *dir, model_part *p, hf_stats *st, char *err)
{
    src s;
    if (st) memset(st, 0, sizeof *st);
    int rc = src_open(&s, dir, st, err);
    for (int i = 0; !rc && i < p->n_tensors; i++)
        rc = load_one(&s, &p->tensors[i], p->params + p->tensors[i].offset, err);
    if (!rc && p->tied_w && p->tied_w != p->params) { /* a head on its own stage: its copy of the embedding */
        model_tensor e;
        model_unit_tensors(&p->cfg, 0, &e);
        rc = load_one(&s, &e, p->tied_w, err);
    }
    src_close(&s);
    return rc;
}

int hf_check(const char *dir, const model_config *c, char *err)
{
    src s;
    int rc = src_open(&s, dir, NULL, err);
    for (int u = 0; !rc && u < model_n_units(c); u++) {
        model_tensor t[MODEL_MAX_UNIT_TENSORS];
        const st_tensor *x;
        int n = model_unit_tensors(c, u, t);
        for (int i = 0; !rc && i < n; i++)
            rc = src_tensor(&s, t[i].name, t[i].shape[0], t[i].ndim == 2 ? t[i].shape[1] : 0, &x, err);
    }
    src_close(&s);
    return rc;
}
