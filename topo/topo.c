/* topo.c — the topology schema as a table, the generic walk over it that decodes
 * a JSON document into a topo struct (types, ranges, defaults, unknown keys), the
 * encoding of the struct back to canonical JSON for the topology hash, and
 * topo_load / topo_free. One table drives decoding, overrides (topo_set.c) and
 * encoding, so the three cannot drift apart. Cross-field rules (layer partition,
 * hosts, ports, schedule constraints) live in topo_check.c. */
#include "topo/topo.h"
#include "model/util.h"
#include "topo/topo_schema.h"

#include <errno.h>
#include <sys/stat.h>
#include <jansson.h>
#include <math.h>
#include <openssl/sha.h>
#include <stddef.h>

#define END { NULL, 0, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, 0, 0, 0 }
#define INT(S, f, r, l, h, d) { #f, T_INT, offsetof(S, f), r, l, h, 0, 0, d, NULL, NULL, NULL, 0, 0, 0 }
#define DBL(S, f, r, l, lo_o, h, h_o, d) { #f, T_DBL, offsetof(S, f), r, l, h, lo_o, h_o, d, NULL, NULL, NULL, 0, 0, 0 }
#define STR(S, f, r, sd, ch) { #f, T_STR, offsetof(S, f), r, 0, 0, 0, 0, 0, sd, ch, NULL, 0, 0, 0 }
#define PATH(S, f, fres) { #f, T_PATH, offsetof(S, f##_given), 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, offsetof(S, fres), 0, 0 }
#define OBJ(S, f, r, tbl) { #f, T_OBJ, offsetof(S, f), r, 0, 0, 0, 0, 0, NULL, NULL, tbl, 0, 0, 0 }

static const char *const data_formats[] = { "auto", "text", "bin", NULL };
static const char *const launch_kinds[] = { "local", "ssh", NULL };
static const char *const sync_kinds[] = { "allreduce", "ps", NULL };
/* in MODEL_RECOMPUTE_* order (topo_check.c turns the name into the id) */
const char *const topo_recompute_kinds[] = { "none", "selective", "full", NULL };

static const field model_fields[] = {
    INT(model_config, dim, 1, 1, 1 << 20, 0),
    INT(model_config, n_layers, 1, 1, 4096, 0),
    INT(model_config, n_heads, 1, 1, 65536, 0),
    INT(model_config, n_kv_heads, 0, 1, 65536, NAN),
    INT(model_config, ffn_dim, 1, 1, 1 << 22, 0),
    INT(model_config, vocab_size, 0, 1, 65536, 256),
    INT(model_config, seq_len, 1, 1, 1 << 20, 0),
    { "norm_eps", T_FLT, offsetof(model_config, norm_eps), 0, 0, 1, 1, 0, 1e-5, NULL, NULL, NULL, 0, 0, 0 },
    { "rope_theta", T_FLT, offsetof(model_config, rope_theta), 0, 0, 1e12, 1, 0, 10000, NULL, NULL, NULL, 0, 0, 0 },
    { "tie_embeddings", T_BOOL, offsetof(model_config, tie_embeddings), 0, 0, 1, 0, 0, 0, NULL, NULL, NULL, 0, 0, 0 },
    END
};

/* data.path has no _given twin in its name, so spell the entry out. */
static const field data_fields[] = {
    { "path", T_PATH, offsetof(topo_data, path_given), 0, 0, 0, 0, 0, 0, NULL, NULL, NULL,
      offsetof(topo_data, path), 0, 0 },
    STR(topo_data, format, 0, "auto", data_formats),
    DBL(topo_data, val_fraction, 0, 0, 0, 1, 1, 0.1),
    PATH(topo_data, tokenizer, tokenizer),
    END
};

static const field train_fields[] = {
    INT(topo_train, steps, 1, 1, 1e9, 0),
    INT(topo_train, batch_size, 1, 1, 1 << 20, 0),
    INT(topo_train, micro_batches, 0, 1, 1 << 20, 1),
    DBL(topo_train, lr, 1, 0, 1, 10, 0, 0),
    DBL(topo_train, min_lr, 0, 0, 0, 10, 0, NAN),
    INT(topo_train, warmup_steps, 0, 0, 1e9, 0),
    DBL(topo_train, weight_decay, 0, 0, 0, 1000, 0, 0.1),
    DBL(topo_train, beta1, 0, 0, 0, 1, 1, 0.9),
    DBL(topo_train, beta2, 0, 0, 0, 1, 1, 0.95),
    DBL(topo_train, grad_clip, 0, 0, 0, 1e9, 0, 1.0),
    { "seed", T_I64, offsetof(topo_train, seed), 0, 0, 9007199254740992.0, 0, 0, 1337, NULL, NULL, NULL, 0, 0, 0 },
    INT(topo_train, eval_every, 0, 0, 1e9, 0),
    INT(topo_train, eval_batches, 0, 1, 1e6, 20),
    INT(topo_train, log_every, 0, 1, 1e9, 1),
    DBL(topo_train, bucket_mb, 0, 0, 1, 1024, 0, 4),
    INT(topo_train, zero, 0, 0, 1, 0),
    STR(topo_train, recompute, 0, "none", topo_recompute_kinds),
    END
};

static const field ckpt_fields[] = {
    STR(topo_checkpoint, dir, 0, "checkpoints", NULL),
    INT(topo_checkpoint, every, 0, 0, 1e9, 0),
    INT(topo_checkpoint, keep, 0, 0, 1e6, 0),
    END
};

const field topo_sched_fields[] = {
    STR(topo_schedule, kind, 0, NULL, sched_kinds) /* scheduler/sched_gen.c's table */,
    PATH(topo_schedule, file, file),
    INT(topo_schedule, chunks, 0, 0, 1024, 0),
    INT(topo_schedule, warmup_sync_steps, 0, 0, 1e9, -1), /* -1: absent (topo_check.c resolves it) */
    END
};

static const field coord_fields[] = {
    STR(topo_addr, host, 0, "127.0.0.1", NULL),
    INT(topo_addr, port, 0, 0, 65535, 29500),
    END
};

static const field replica_fields[] = {
    STR(topo_replica, host, 1, NULL, NULL),
    INT(topo_replica, port, 1, 1, 65535, 0),
    INT(topo_replica, threads, 0, 1, 1024, 1),
    END
};

/* host and port are required unless replicas is given, and threads defaults to 1
 * only then: absent they decode to NULL / 0 and topo_check.c's check_replicas
 * decides (the single-process form or the replicas form, never both). */
static const field stage_fields[] = {
    STR(topo_stage, host, 0, NULL, NULL),
    INT(topo_stage, port, 0, 1, 65535, NAN),
    STR(topo_stage, layers, 1, NULL, NULL),
    INT(topo_stage, threads, 0, 1, 1024, NAN),
    { "replicas", T_ARR, offsetof(topo_stage, replicas), 0, 0, 0, 0, 0, 0, NULL, NULL, replica_fields,
      offsetof(topo_stage, n_replicas), sizeof(topo_replica), 1024 },
    STR(topo_stage, recompute, 0, NULL, topo_recompute_kinds),
    END
};

/* A parameter server: unlike the coordinator, both fields are required. */
static const field server_fields[] = {
    STR(topo_addr, host, 1, NULL, NULL),
    INT(topo_addr, port, 1, 1, 65535, 0),
    END
};

static const field ps_fields[] = {
    INT(topo_ps, staleness, 0, -1, 1e9, 0),
    END
};

static const char *const wire_encs[] = { "fp32", "bf16", "fp16", "int8", NULL }; /* base/wire_codec.h order */

static const field wire_fields[] = {
    STR(topo_wire, activations, 0, "fp32", wire_encs),
    STR(topo_wire, gradients, 0, "fp32", wire_encs),
    END
};

static const field links_fields[] = {
    STR(topo_links, bandwidth, 0, NULL, NULL),
    DBL(topo_links, latency_ms, 0, 0, 0, 1e6, 0, 0),
    DBL(topo_links, burst, 0, 0, 0, 1e15, 0, 0),
    END
};

const field topo_top_fields[] = {
    STR(topo, description, 0, NULL, NULL),
    OBJ(topo, model, 1, model_fields),
    OBJ(topo, data, 0, data_fields),
    OBJ(topo, train, 1, train_fields),
    OBJ(topo, checkpoint, 0, ckpt_fields),
    OBJ(topo, schedule, 0, topo_sched_fields),
    OBJ(topo, coordinator, 0, coord_fields),
    PATH(topo, init_from, init_from),
    PATH(topo, secret_file, secret_file),
    { "encrypt", T_BOOL, offsetof(topo, encrypt), 0, 0, 1, 0, 0, NAN, NULL, NULL, NULL, 0, 0, 0 },
    STR(topo, launch, 0, "local", launch_kinds),
    { "stages", T_ARR, offsetof(topo, stages), 1, 0, 0, 0, 0, 0, NULL, NULL, stage_fields,
      offsetof(topo, n_stages), sizeof(topo_stage), TOPO_MAX_STAGES },
    STR(topo, sync, 0, "allreduce", sync_kinds),
    { "parameter_servers", T_ARR, offsetof(topo, parameter_servers), 0, 0, 0, 0, 0, 0, NULL, NULL, server_fields,
      offsetof(topo, n_servers), sizeof(topo_addr), TOPO_MAX_SERVERS },
    OBJ(topo, ps, 0, ps_fields),
    OBJ(topo, wire, 0, wire_fields),
    OBJ(topo, links, 0, links_fields),
    END
};

/* ---------- messages ---------- */

#define MAX_STR 4096 /* longest string value accepted anywhere */

/* What a field expects, in words, for error messages. */
void topo_expected(const field *f, char *buf, size_t n)
{
    switch (f->type) {
    case T_INT: case T_I64:
        snprintf(buf, n, "an integer in %.0f..%.0f", f->lo, f->hi);
        break;
    case T_DBL: case T_FLT:
        snprintf(buf, n, "a number %s %g and %s %g", f->lo_open ? ">" : ">=", f->lo,
                 f->hi_open ? "<" : "<=", f->hi);
        break;
    case T_BOOL: snprintf(buf, n, "true or false"); break;
    case T_STR: case T_PATH:
        if (f->choices) {
            size_t k = (size_t)snprintf(buf, n, "one of");
            for (int i = 0; f->choices[i] && k < n; i++)
                k += (size_t)snprintf(buf + k, n - k, "%s \"%s\"", i ? "," : "", f->choices[i]);
        } else {
            snprintf(buf, n, "a non-empty string");
        }
        break;
    case T_OBJ: snprintf(buf, n, "an object"); break;
    case T_ARR: snprintf(buf, n, "a non-empty array of objects (at most %d)", f->max_n); break;
    }
}

/* A JSON value in words: the "found" half of an error message. */
static void describe(const json_t *v, char *buf, size_t n)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: snprintf(buf, n, "an object"); break;
    case JSON_ARRAY: snprintf(buf, n, "an array of %zu", json_array_size(v)); break;
    case JSON_STRING: snprintf(buf, n, "\"%.60s%s\"", json_string_value(v),
                               json_string_length(v) > 60 ? "..." : ""); break;
    case JSON_INTEGER: snprintf(buf, n, "%" JSON_INTEGER_FORMAT, json_integer_value(v)); break;
    case JSON_REAL: snprintf(buf, n, "%g", json_real_value(v)); break;
    case JSON_TRUE: snprintf(buf, n, "true"); break;
    case JSON_FALSE: snprintf(buf, n, "false"); break;
    default: snprintf(buf, n, "null"); break;
    }
}

/* snprintf through a va_list: JSON paths are short; truncation is harmless. */
void topo_fmt(char *buf, size_t n, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, n, f, ap);
    va_end(ap);
}

void topo_join_path(char *out, size_t n, const char *prefix, const char *name)
{
    if (prefix[0]) topo_fmt(out, n, "%s.%s", prefix, name);
    else topo_fmt(out, n, "%s", name);
}

static int bad_value(const char *file, const char *path, const field *f, const json_t *v, char *err)
{
    char want[160], got[96];
    topo_expected(f, want, sizeof want);
    describe(v, got, sizeof got);
    return seterr(err, "%s: %s: expected %s, found %s", file, path, want, got);
}

/* The known keys of a table, for "unknown key" messages. */
void topo_key_list(const field *tbl, char *buf, size_t n)
{
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; tbl[i].name && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%s", i ? ", " : "", tbl[i].name);
}

/* ---------- decoding ---------- */

typedef struct {
    const char *file;  /* for messages */
    const char *dir;   /* for resolving relative paths */
} dctx;

static char *resolve(const char *dir, const char *p)
{
    if (p[0] == '/' || !dir || !strcmp(dir, ".")) return xstrdup(p);
    size_t n = strlen(dir) + strlen(p) + 2;
    char *r = xmalloc(n);
    snprintf(r, n, "%s/%s", dir, p);
    return r;
}

/* A number as a double, or 0 when v is not a number. */
static int num_value(const json_t *v, double *out)
{
    if (json_is_integer(v)) *out = (double)json_integer_value(v);
    else if (json_is_real(v)) *out = json_real_value(v);
    else return 0;
    return 1;
}

static int in_range(const field *f, double x)
{
    if (!isfinite(x)) return 0;
    if (f->lo_open ? !(x > f->lo) : !(x >= f->lo)) return 0;
    if (f->hi_open ? !(x < f->hi) : !(x <= f->hi)) return 0;
    return 1;
}

static int decode_obj(const dctx *c, const field *tbl, json_t *obj, void *base,
                      const char *prefix, char *err);

static int decode_default(const field *f, char *base)
{
    switch (f->type) {
    case T_INT: *(int *)(base + f->off) = isnan(f->def) ? 0 : (int)f->def; break;
    case T_I64: *(int64_t *)(base + f->off) = (int64_t)f->def; break;
    case T_DBL: *(double *)(base + f->off) = f->def; break;
    case T_FLT: *(float *)(base + f->off) = (float)f->def; break;
    case T_BOOL: *(int *)(base + f->off) = isnan(f->def) ? -1 : f->def != 0; break; /* NAN: -1 when absent */
    case T_STR: *(char **)(base + f->off) = f->sdef ? xstrdup(f->sdef) : NULL; break;
    default: break; /* optional paths stay NULL */
    }
    return 0;
}

static int decode_string(const dctx *c, const field *f, json_t *v, char *base,
                         const char *path, char *err)
{
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    if (!s || !s[0] || json_string_length(v) != strlen(s) || strlen(s) > MAX_STR)
        return bad_value(c->file, path, f, v, err);
    if (f->choices) {
        int ok = 0;
        for (int i = 0; f->choices[i]; i++) ok |= !strcmp(f->choices[i], s);
        if (!ok) return bad_value(c->file, path, f, v, err);
    }
    *(char **)(base + f->off) = xstrdup(s);
    if (f->type == T_PATH) *(char **)(base + f->off2) = resolve(c->dir, s);
    return 0;
}

static int decode_array(const dctx *c, const field *f, json_t *v, char *base,
                        const char *path, char *err)
{
    size_t n = json_is_array(v) ? json_array_size(v) : 0;
    if (n == 0 || n > (size_t)f->max_n) return bad_value(c->file, path, f, v, err);
    char *arr = xcalloc(n, f->esize);
    *(char **)(base + f->off) = arr;
    *(int *)(base + f->off2) = (int)n;
    for (size_t i = 0; i < n; i++) {
        char sub[256];
        topo_fmt(sub, sizeof sub, "%s.%zu", path, i);
        if (decode_obj(c, f->sub, json_array_get(v, i), arr + i * f->esize, sub, err)) return -1;
    }
    return 0;
}

static int decode_field(const dctx *c, const field *f, json_t *v, char *base,
                        const char *path, char *err)
{
    double x;
    switch (f->type) {
    case T_INT: case T_I64:
        if (!num_value(v, &x) || x != floor(x) || !in_range(f, x))
            return bad_value(c->file, path, f, v, err);
        if (f->type == T_INT) *(int *)(base + f->off) = (int)x;
        else *(int64_t *)(base + f->off) = json_is_integer(v) ? json_integer_value(v) : (int64_t)x;
        return 0;
    case T_DBL: case T_FLT:
        if (!num_value(v, &x) || !in_range(f, x)) return bad_value(c->file, path, f, v, err);
        if (f->type == T_FLT && (!isfinite((float)x) || (f->lo_open && !((float)x > f->lo))))
            return bad_value(c->file, path, f, v, err);
        if (f->type == T_DBL) *(double *)(base + f->off) = x;
        else *(float *)(base + f->off) = (float)x;
        return 0;
    case T_BOOL:
        if (!json_is_boolean(v)) return bad_value(c->file, path, f, v, err);
        *(int *)(base + f->off) = json_is_true(v);
        return 0;
    case T_STR: case T_PATH:
        return decode_string(c, f, v, base, path, err);
    case T_OBJ:
        return decode_obj(c, f->sub, v, base + f->off, path, err);
    case T_ARR:
        return decode_array(c, f, v, base, path, err);
    }
    return 0;
}

/* Decodes obj (NULL = absent, all defaults) into base following tbl. */
static int decode_obj(const dctx *c, const field *tbl, json_t *obj, void *base,
                      const char *prefix, char *err)
{
    if (obj && !json_is_object(obj)) {
        char got[96];
        describe(obj, got, sizeof got);
        return seterr(err, "%s: %s: expected an object, found %s", c->file,
                      prefix[0] ? prefix : "(top level)", got);
    }
    const char *key;
    json_t *v;
    if (obj) json_object_foreach(obj, key, v) {
        int known = 0;
        for (int i = 0; tbl[i].name; i++) known |= !strcmp(tbl[i].name, key);
        if (!known) {
            char path[256], keys[256];
            topo_join_path(path, sizeof path, prefix, key);
            topo_key_list(tbl, keys, sizeof keys);
            return seterr(err, "%s: %s: unknown key (expected one of: %s)", c->file, path, keys);
        }
    }
    for (const field *f = tbl; f->name; f++) {
        char path[256];
        topo_join_path(path, sizeof path, prefix, f->name);
        json_t *fv = obj ? json_object_get(obj, f->name) : NULL;
        if (!fv && f->req) {
            char want[160];
            topo_expected(f, want, sizeof want);
            return seterr(err, "%s: %s: missing (required: %s)", c->file, path, want);
        }
        int rc = fv ? decode_field(c, f, fv, base, path, err)
                    : (f->type == T_OBJ ? decode_obj(c, f->sub, NULL, (char *)base + f->off, path, err)
                                        : decode_default(f, base));
        if (rc) return -1;
    }
    return 0;
}

/* ---------- encoding ---------- */

static json_t *encode_obj(const field *tbl, const char *base)
{
    json_t *o = json_object();
    for (const field *f = tbl; f->name; f++) {
        const char *p = base + f->off;
        json_t *v = NULL;
        switch (f->type) {
        case T_INT: v = json_integer(*(const int *)p); break;
        case T_I64: v = json_integer(*(const int64_t *)p); break;
        case T_DBL: v = json_real(*(const double *)p); break;
        case T_FLT: v = json_real((double)*(const float *)p); break;
        case T_BOOL: v = *(const int *)p < 0 ? NULL : json_boolean(*(const int *)p); break; /* absent stays absent */
        case T_STR: case T_PATH: {
            const char *s = *(char *const *)p;
            v = s ? json_string(s) : NULL;
            break;
        }
        case T_OBJ: v = encode_obj(f->sub, p); break;
        case T_ARR: {
            const char *arr = *(char *const *)p;
            int n = *(const int *)(base + f->off2);
            v = json_array();
            for (int i = 0; i < n; i++) json_array_append_new(v, encode_obj(f->sub, arr + (size_t)i * f->esize));
            break;
        }
        }
        if (v) json_object_set_new(o, f->name, v);
    }
    return o;
}

/* A stage is encoded in the form it was written: a replicated stage without
 * the replica-0 copies in host/port/threads, a single-process one without the
 * replicas array check_replicas derived, so the text reloads to itself and an
 * R = 1 topology hashes as it did before replicas existed. */
static void encode_stage_forms(json_t *o, const topo *t)
{
    json_t *arr = json_object_get(o, "stages");
    for (int s = 0; s < t->n_stages && s < (int)json_array_size(arr); s++) {
        json_t *st = json_array_get(arr, (size_t)s);
        if (t->stages[s].replicated) {
            json_object_del(st, "host");
            json_object_del(st, "port");
            json_object_del(st, "threads");
        } else {
            json_object_del(st, "replicas");
        }
    }
}

/* An all-reduce topology is encoded without the parameter-server keys (they
 * are only allowed with "sync": "ps"), so it hashes as it did before they
 * existed and its text reloads to itself. */
static void encode_sync_form(json_t *o, const topo *t)
{
    if (t->sync_id == TOPO_SYNC_PS) return;
    json_object_del(o, "sync");
    json_object_del(o, "parameter_servers");
    json_object_del(o, "ps");
}

/* train.recompute "none" (the default) is left out, so a topology without
 * recomputation hashes as it did before the key existed. */
static void encode_recompute_form(json_t *o, const topo *t)
{
    if (t->train.recompute_id) return;
    json_object_del(json_object_get(o, "train"), "recompute");
}

/* "wire" with both encodings fp32 (the default) is left out, so a topology
 * without compression hashes as it did before the key existed. */
static void encode_wire_form(json_t *o, const topo *t)
{
    if (t->wire.act_enc || t->wire.grad_enc) return;
    json_object_del(o, "wire");
}

/* "links" absent (no bandwidth, 0 ms, no burst) is left out, and so is a burst
 * of 0, so a topology without a link model (or without a token bucket) hashes
 * as it did before the key existed. */
static void encode_links_form(json_t *o, const topo *t)
{
    if (!(t->links.burst > 0)) json_object_del(json_object_get(o, "links"), "burst");
    if (t->links.bandwidth || t->links.latency_ms > 0 || t->links.burst > 0) return;
    json_object_del(o, "links");
}

/* schedule.warmup_sync_steps at its kind's default (topo_check.c) is left out,
 * so a topology that does not set it hashes as it did before the key existed. */
static void encode_warmup_form(json_t *o, const topo *t)
{
    if (t->schedule.warmup_sync_steps != topo_warmup_sync_default(t)) return;
    json_object_del(json_object_get(o, "schedule"), "warmup_sync_steps");
}

char *topo_canonical_json(const topo *t)
{
    json_t *o = encode_obj(topo_top_fields, (const char *)t);
    if (o) encode_stage_forms(o, t);
    if (o) encode_sync_form(o, t);
    if (o) encode_recompute_form(o, t);
    if (o) encode_wire_form(o, t);
    if (o) encode_links_form(o, t);
    if (o) encode_warmup_form(o, t);
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(o);
    return s; /* NULL: out of memory, the caller says so */
}

int topo_hash(const topo *t, unsigned char out[32])
{
    char *s = topo_canonical_json(t);
    memset(out, 0, 32);
    if (!s) return -1;
    SHA256((const unsigned char *)s, strlen(s), out);
    free(s);
    return 0;
}

int topo_hash_hex(const topo *t, char out[65])
{
    unsigned char h[32];
    out[0] = 0;
    if (topo_hash(t, h)) return -1;
    base_hex(out, h, 32);
    return 0;
}

/* ---------- load / free ---------- */

static void free_fields(const field *tbl, char *base)
{
    for (const field *f = tbl; f->name; f++) {
        char **p = (char **)(base + f->off);
        if (f->type == T_STR || f->type == T_PATH) { free(*p); *p = NULL; }
        if (f->type == T_PATH) { free(*(char **)(base + f->off2)); *(char **)(base + f->off2) = NULL; }
        if (f->type == T_OBJ) free_fields(f->sub, base + f->off);
        if (f->type == T_ARR && *p) {
            int n = *(int *)(base + f->off2);
            for (int i = 0; i < n; i++) free_fields(f->sub, *p + (size_t)i * f->esize);
            free(*p);
            *p = NULL;
        }
    }
}

void topo_free(topo *t)
{
    if (!t) return;
    for (int i = 0; t->stages && i < t->n_stages; i++) {
        free(t->stages[i].units);
        free(t->stages[i].chunks);
    }
    free_fields(topo_top_fields, (char *)t); /* frees the stages array too */
    free(t->path);
    free(t->dir);
    memset(t, 0, sizeof *t);
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return xstrdup(".");
    if (slash == path) return xstrdup("/");
    char *d = xmalloc((size_t)(slash - path) + 1);
    memcpy(d, path, (size_t)(slash - path));
    d[slash - path] = 0;
    return d;
}

#define MAX_FILE (1 << 20) /* a topology is a few kB; refuse anything absurd */

/* Reads and parses the file; NULL with a message on failure. */
static json_t *read_json(const char *path, char *err)
{
    FILE *f = fopen(path, "rb");
    struct stat st = { 0 };
    if (!f) return seterr(err, "%s: cannot read: %s", path, strerror(errno)), NULL;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode) || st.st_size > MAX_FILE) {
        seterr(err, "%s: cannot read: %s", path, !S_ISREG(st.st_mode) ? "not a regular file"
               : "larger than 1 MiB, too large for a topology");
        fclose(f);
        return NULL;
    }
    char *buf = xmalloc((size_t)st.st_size + 1);
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    int bad = ferror(f);
    fclose(f);
    json_error_t je;
    json_t *root = bad ? NULL : json_loadb(buf, n, JSON_REJECT_DUPLICATES, &je);
    free(buf);
    if (bad) seterr(err, "%s: cannot read: I/O error", path);
    else if (!root) seterr(err, "%s:%d:%d: invalid JSON: %s", path, je.line, je.column, je.text);
    return root;
}

int topo_load(topo *t, const char *path, char *const *sets, int n_sets, char *err)
{
    memset(t, 0, sizeof *t);
    json_t *root = read_json(path, err);
    if (!root) return -1;
    t->path = xstrdup(path);
    t->dir = dir_of(path);
    if (!json_is_object(root)) {
        char got[96];
        describe(root, got, sizeof got);
        seterr(err, "%s: (top level): expected an object, found %s", path, got);
        goto fail;
    }
    for (int i = 0; i < n_sets; i++)
        if (topo_apply_set(root, path, sets[i], err)) goto fail;
    if (topo_init_from_model(root, path, t->dir, err)) goto fail;
    dctx c = { path, t->dir };
    if (decode_obj(&c, topo_top_fields, root, t, "", err)) goto fail;
    t->ps_given = json_object_get(root, "ps") != NULL;
    if (topo_validate(t, err)) goto fail;
    json_decref(root);
    return 0;
fail:
    json_decref(root);
    topo_free(t);
    return -1;
}
