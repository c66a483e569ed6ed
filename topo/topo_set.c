/* topo_set.c — `--set KEY=VALUE` overrides. The key is a dotted JSON path
 * (array elements by index, e.g. stages.1.threads); it is walked through the
 * schema table, not the document, so unknown keys are refused even where the file
 * leaves an object out, and the value text is parsed as the type the schema
 * expects there. The override edits the JSON tree before decoding, so an
 * overridden value is validated exactly like one written in the file. */
#include "topo/topo.h"
#include "model/util.h"
#include "topo/topo_schema.h"

#include <errno.h>
#include <math.h>

const field *topo_find_field(const field *tbl, const char *name)
{
    for (; tbl->name; tbl++)
        if (!strcmp(tbl->name, name)) return tbl;
    return NULL;
}

/* Parses an override's text as the JSON value field f expects; NULL if it cannot. */
static json_t *parse_value(const field *f, const char *s)
{
    char *end;
    errno = 0;
    switch (f->type) {
    case T_INT: case T_I64: {
        long long i = strtoll(s, &end, 10);
        if (*s && !*end && !errno) return json_integer(i);
        double d = strtod(s, &end); /* 2e3 is an integer too */
        if (*s && !*end && isfinite(d) && d == floor(d) && fabs(d) < 9e18) return json_integer((json_int_t)d);
        return NULL;
    }
    case T_DBL: case T_FLT: {
        double d = strtod(s, &end);
        if (!*s || *end || !isfinite(d)) return NULL;
        return json_real(d);
    }
    case T_BOOL:
        if (!strcmp(s, "true") || !strcmp(s, "1")) return json_true();
        if (!strcmp(s, "false") || !strcmp(s, "0")) return json_false();
        return NULL;
    case T_STR: case T_PATH:
        return json_string(s); /* NULL when not UTF-8 */
    default:
        return NULL;
    }
}

/* Where the walk down a key has got to. */
typedef struct {
    const char *file, *set;  /* for messages */
    const field *tbl;        /* table the next segment is looked up in */
    const field *f;          /* entry of the last segment, NULL after an index */
    json_t *cur;             /* JSON object holding f */
    char walked[256];        /* the path so far */
} walk;

/* Steps from an array entry into element `seg`. */
static int step_index(walk *w, const char *seg, char *err)
{
    char *end;
    long idx = strtol(seg, &end, 10);
    json_t *arr = json_object_get(w->cur, w->f->name);
    size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
    if (!*seg || *end || idx < 0 || (size_t)idx >= n || !json_is_object(json_array_get(arr, (size_t)idx)))
        return seterr(err, "%s: --set %.200s: %s has no element %.40s (it has %zu)", w->file, w->set,
                      w->walked, seg, n);
    w->cur = json_array_get(arr, (size_t)idx);
    w->tbl = w->f->sub;
    w->f = NULL;
    size_t len = strlen(w->walked);
    topo_fmt(w->walked + len, sizeof w->walked - len, ".%s", seg);
    return 0;
}

/* Steps to segment `seg`, creating a missing intermediate object. */
static int step(walk *w, const char *seg, char *err)
{
    if (w->f && w->f->type == T_ARR) return step_index(w, seg, err);
    if (w->f && w->f->type != T_OBJ)
        return seterr(err, "%s: --set %.200s: %s is a value and has no field \"%.40s\"", w->file,
                      w->set, w->walked, seg);
    if (w->f) {
        json_t *child = json_object_get(w->cur, w->f->name);
        if (!child) json_object_set_new(w->cur, w->f->name, child = json_object());
        if (!json_is_object(child))
            return seterr(err, "%s: --set %.200s: %s is not an object in the file", w->file, w->set, w->walked);
        w->cur = child;
        w->tbl = w->f->sub;
    }
    char next[256], keys[256];
    topo_join_path(next, sizeof next, w->walked, seg);
    topo_fmt(w->walked, sizeof w->walked, "%s", next);
    w->f = topo_find_field(w->tbl, seg);
    if (!w->f) {
        topo_key_list(w->tbl, keys, sizeof keys);
        return seterr(err, "%s: --set %.200s: unknown key %s (expected one of: %s)", w->file, w->set,
                      w->walked, keys);
    }
    return 0;
}

/* Stores the value text at the field the walk ended on. */
static int store(walk *w, const char *val, char *err)
{
    const field *f = w->f;
    if (!f || f->type == T_OBJ || f->type == T_ARR)
        return seterr(err, "%s: --set %.200s: %s is %s; set one of its fields", w->file, w->set, w->walked,
                      f && f->type == T_ARR ? "an array" : "an object");
    if (!*val && !f->req && (f->type == T_PATH || (f->type == T_STR && !f->sdef))) {
        json_object_del(w->cur, f->name); /* an empty value unsets an optional string */
        return 0;
    }
    json_t *v = parse_value(f, val);
    if (!v) {
        char want[160];
        topo_expected(f, want, sizeof want);
        return seterr(err, "%s: --set %.200s: %s expects %s, found \"%.60s\"", w->file, w->set, w->walked,
                      want, val);
    }
    /* schedule.kind and schedule.file are alternatives: setting one drops the other */
    if (w->tbl == topo_sched_fields && (f->type == T_PATH || !strcmp(f->name, "kind")))
        json_object_del(w->cur, f->type == T_PATH ? "kind" : "file");
    json_object_set_new(w->cur, f->name, v);
    return 0;
}

int topo_apply_set(json_t *root, const char *file, const char *set, char *err)
{
    const char *eq = strchr(set, '=');
    if (!eq || eq == set || (size_t)(eq - set) >= 256)
        return seterr(err, "%s: --set %.200s: expected KEY=VALUE (for example train.lr=3e-4)", file, set);
    char key[256];
    memcpy(key, set, (size_t)(eq - set));
    key[eq - set] = 0;
    if (key[0] == '.' || key[strlen(key) - 1] == '.' || strstr(key, ".."))
        return seterr(err, "%s: --set %.200s: malformed key \"%s\"", file, set, key);
    walk w = { file, set, topo_top_fields, NULL, root, "" };
    for (char *save = NULL, *seg = strtok_r(key, ".", &save); seg; seg = strtok_r(NULL, ".", &save))
        if (step(&w, seg, err)) return -1;
    return store(&w, eq + 1, err);
}
