/* topo_init.c — the model section of a topology that starts from a Hugging Face
 * checkpoint ("init_from", `run --init-from DIR`): keys absent are taken from
 * the checkpoint's config.json, keys given must agree with it. Works on the
 * JSON document before decoding, so the decoded topology (and its hash) is the
 * same whether the keys were written or taken. Reads config.json only; the
 * tensors are checked by the CLI (hf_check) and loaded by the stages. */
#include "model/hf_load.h"
#include "model/util.h"
#include "topo/topo_schema.h"

#include <math.h>

/* The config's value of a topology model key, as JSON. */
static json_t *config_value(const model_config *c, const char *key)
{
    if (!strcmp(key, "dim")) return json_integer(c->dim);
    if (!strcmp(key, "ffn_dim")) return json_integer(c->ffn_dim);
    if (!strcmp(key, "n_heads")) return json_integer(c->n_heads);
    if (!strcmp(key, "n_kv_heads")) return json_integer(c->n_kv_heads);
    if (!strcmp(key, "n_layers")) return json_integer(c->n_layers);
    if (!strcmp(key, "norm_eps")) return json_real((double)c->norm_eps);
    if (!strcmp(key, "rope_theta")) return json_real((double)c->rope_theta);
    if (!strcmp(key, "vocab_size")) return json_integer(c->vocab_size);
    if (!strcmp(key, "tie_embeddings")) return json_boolean(c->tie_embeddings);
    return json_integer(c->seq_len);
}

/* 1 when the topology's value v agrees with the config's w for key (floats
 * compared as the f32 the model holds; seq_len at most the config's). A value
 * of the wrong type agrees here: decoding reports it. */
static int agrees(const char *key, const json_t *v, const json_t *w)
{
    if (json_is_boolean(w)) return !json_is_boolean(v) || json_is_true(v) == json_is_true(w);
    if (!json_is_number(v)) return 1;
    double x = json_number_value(v), y = json_number_value(w);
    if (!strcmp(key, "seq_len")) return x <= y;
    if (json_is_real(w)) return (float)x == (float)y;
    return x == y;
}

static void show(const json_t *v, char *buf, size_t n)
{
    if (json_is_boolean(v)) snprintf(buf, n, "%s", json_is_true(v) ? "true" : "false");
    else if (json_is_integer(v)) snprintf(buf, n, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else snprintf(buf, n, "%g", json_number_value(v));
}

int topo_init_from_model(json_t *root, const char *file, const char *dir, char *err)
{
    json_t *from = json_object_get(root, "init_from");
    if (!json_is_string(from) || !json_string_value(from)[0]) return 0;
    const char *given = json_string_value(from), *sync = json_string_value(json_object_get(root, "sync"));
    if (sync && !strcmp(sync, "ps"))
        return seterr(err, "%s: init_from: not supported with sync \"ps\" (the parameter servers start the weights)",
                      file);
    char resolved[4200], e2[ERR_LEN];
    if (given[0] == '/' || !dir || !strcmp(dir, ".")) snprintf(resolved, sizeof resolved, "%s", given);
    else snprintf(resolved, sizeof resolved, "%s/%s", dir, given);
    model_config c;
    long max_pos;
    if (hf_config_load(resolved, &c, &max_pos, e2)) return seterr(err, "%s: init_from: %s", file, e2);
    json_t *model = json_object_get(root, "model");
    if (!model) json_object_set_new(root, "model", model = json_object());
    if (!json_is_object(model)) return 0; /* decoding reports it */
    for (int i = 0; hf_config_keys[i][0]; i++) {
        const char *key = hf_config_keys[i][0];
        json_t *w = config_value(&c, key), *v = json_object_get(model, key);
        if (!v) {
            json_object_set_new(model, key, w);
            continue;
        }
        int ok = agrees(key, v, w);
        if (!ok) {
            char a[64], b[64];
            show(v, a, sizeof a);
            show(w, b, sizeof b);
            seterr(err, "%s: model.%s is %s but %s/config.json has %s %s%s", file, key, a, resolved,
                   hf_config_keys[i][1], b, strcmp(key, "seq_len") ? "" : " (seq_len may be at most that)");
        }
        json_decref(w);
        if (!ok) return -1;
    }
    return 0;
}
