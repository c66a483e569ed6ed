/* run_ckpt_resume.c — what resuming needs beside loading (see
 * run_ckpt.h): the checkpoint root of a run, comparing a checkpoint's
 * topology with the run's, and trimming metrics.jsonl to the checkpoint. */
#include "run/run_ckpt.h"
#include "model/safetensors.h"
#include "model/util.h"

#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATHLEN 4096

void run_ckpt_root(const topo *t, const char *out_dir, char *root, size_t n)
{
    const char *cd = t->checkpoint.dir;
    if (cd[0] == '/') snprintf(root, n, "%s", cd);
    else snprintf(root, n, "%s/%s", out_dir ? out_dir : ".", cd);
}

/* Topology fields a resumed run may change: they do not change the numbers of
 * the steps already taken nor the state saved (train.steps does change the
 * learning-rate schedule from the checkpoint on: extending a run is allowed;
 * the stages may split the layers otherwise: shards load by tensor name;
 * encrypt and links change no number, wire only the steps after the seam). */
static const char *const may_differ[] = { "description", "launch", "coordinator", "checkpoint", "secret_file",
                                          "encrypt", "links", "wire", "init_from", "train.steps", "train.log_every",
                                          "train.eval_every", "train.eval_batches", "train.bucket_mb", "train.zero", "schedule",
                                          "stages", "sync", "parameter_servers", "ps", NULL };

static void drop_path(json_t *o, const char *path)
{
    const char *dot = strchr(path, '.');
    if (!dot) { json_object_del(o, path); return; }
    char head[64];
    snprintf(head, sizeof head, "%.*s", (int)(dot - path), path);
    json_t *sub = json_object_get(o, head);
    if (json_is_object(sub)) json_object_del(sub, dot + 1);
}

/* Removes what may differ from a canonical topology object. */
static void strip_topology(json_t *o)
{
    for (int i = 0; may_differ[i]; i++) drop_path(o, may_differ[i]);
}

/* The first JSON path where a and b differ, into path (cap n). 1 when found. */
static int first_diff(json_t *a, json_t *b, char *path, size_t n)
{
    if (json_equal(a, b)) return 0;
    size_t len = strlen(path);
    if (json_is_object(a) && json_is_object(b)) {
        const char *k;
        json_t *v;
        json_object_foreach(a, k, v) {
            snprintf(path + len, n - len, "%s%s", len ? "." : "", k);
            json_t *w = json_object_get(b, k);
            if (!w || first_diff(v, w, path, n)) return 1;
        }
        json_object_foreach(b, k, v) {
            snprintf(path + len, n - len, "%s%s", len ? "." : "", k);
            if (!json_object_get(a, k)) return 1;
        }
        path[len] = 0;
        return 1;
    }
    if (json_is_array(a) && json_is_array(b) && json_array_size(a) == json_array_size(b)) {
        for (size_t i = 0; i < json_array_size(a); i++) {
            snprintf(path + len, n - len, "%s%zu", len ? "." : "", i);
            if (first_diff(json_array_get(a, i), json_array_get(b, i), path, n)) return 1;
        }
        path[len] = 0;
    }
    return 1;
}

/* The value at a dotted path ("train.lr", "stages.1.layers"), or NULL. */
static json_t *json_at(json_t *o, const char *path)
{
    char buf[512], *save = NULL;
    snprintf(buf, sizeof buf, "%s", path);
    for (char *k = strtok_r(buf, ".", &save); k && o; k = strtok_r(NULL, ".", &save))
        o = json_is_array(o) ? json_array_get(o, strtoul(k, NULL, 10)) : json_object_get(o, k);
    return o;
}

int run_ckpt_check_topology(const run_ckpt *c, const topo *t, char *err)
{
    json_t *saved = json_deep_copy(json_object_get(c->manifest, "topology"));
    char *canon = topo_canonical_json(t);
    json_t *now = canon ? json_loads(canon, 0, NULL) : NULL;
    free(canon);
    int rc = 0;
    if (!now) {
        rc = seterr(err, "%s: out of memory encoding the topology to compare it with %s", t->path, c->dir);
    } else if (!json_is_object(saved)) {
        rc = seterr(err, "%s/manifest.json: topology: missing, cannot compare it with %s", c->dir, t->path);
    } else {
        strip_topology(saved);
        strip_topology(now);
        char path[512] = "";
        if (first_diff(saved, now, path, sizeof path)) {
            char *was = json_dumps(json_at(saved, path), JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
            char *is = json_dumps(json_at(now, path), JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
            rc = seterr(err, "%s: the checkpoint was made with another topology: %s differs (%.80s in the checkpoint, "
                        "%.80s in %s; only description, launch, coordinator, checkpoint, secret_file, encrypt, links, wire, "
                        "init_from, train.steps, "
                        "train.log_every, train.eval_every, train.eval_batches, train.bucket_mb, train.zero, the "
                        "schedule, the stages (with their replicas), sync, parameter_servers and ps may change on "
                        "--resume)", c->dir, path[0] ? path : "(top level)",
                        was ? was : "nothing", is ? is : "nothing", t->path);
            free(was);
            free(is);
        }
    }
    json_decref(saved);
    json_decref(now);
    return rc;
}

/* The checkpoint's stage holding unit u: its index, and its BLAS threads in *threads. -1 when none. */
static int saved_stage_of(const run_ckpt *c, int u, int *threads)
{
    size_t k;
    json_t *s;
    json_array_foreach(json_object_get(c->manifest, "stages"), k, s) {
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(s, "units"), i, v) if (json_integer_value(v) == u) {
            *threads = (int)json_integer_value(json_object_get(s, "threads"));
            return (int)k;
        }
    }
    return -1;
}

/* "embed,0-1 | 2-3,head" for the checkpoint (t NULL) or for t. */
static void split_text(const run_ckpt *c, const topo *t, char *out, size_t n)
{
    size_t len = 0, k;
    json_t *s;
    out[0] = 0;
    if (t) {
        for (int i = 0; i < t->n_stages && len < n; i++)
            len += (size_t)snprintf(out + len, n - len, "%s%s", i ? " | " : "", t->stages[i].layers);
        return;
    }
    json_array_foreach(json_object_get(c->manifest, "stages"), k, s) if (len < n) {
        const char *layers = json_string_value(json_object_get(s, "layers"));
        len += (size_t)snprintf(out + len, n - len, "%s%s", k ? " | " : "", layers ? layers : "?");
    }
}

static int run_ckpt_split_note_layers(const run_ckpt *c, const topo *t, char *note, size_t n);

/* Replicas per stage in the checkpoint's topology (1 for the one-process form). */
static int saved_replicas(const run_ckpt *c)
{
    json_t *st = json_array_get(json_object_get(json_object_get(c->manifest, "topology"), "stages"), 0);
    json_t *reps = json_object_get(st, "replicas");
    return json_is_array(reps) && json_array_size(reps) > 0 ? (int)json_array_size(reps) : 1;
}

/* The checkpoint topology's train.bucket_mb (4, the default, when absent). */
static double saved_bucket_mb(const run_ckpt *c)
{
    json_t *tr = json_object_get(json_object_get(c->manifest, "topology"), "train");
    json_t *b = json_object_get(tr, "bucket_mb");
    return json_is_number(b) ? json_number_value(b) : 4.0;
}

/* With R >= 3 the ring adds a segment's R values in an order fixed by where the
 * segment falls inside its bucket, so other buckets round otherwise (README:
 * Data parallelism, Determinism); with R = 2 the order is moot. Appends a note
 * to note (length k so far); returns the new length. */
static int bucket_note(const run_ckpt *c, const topo *t, char *note, size_t n, int k)
{
    double was = saved_bucket_mb(c);
    if (t->n_replicas < 3 || was == t->train.bucket_mb || k < 0 || (size_t)k >= n) return k;
    return k + snprintf(note + k, n - (size_t)k, "%strain.bucket_mb is %g MiB and was %g MiB in the checkpoint: "
                        "with %d replicas the ring sums each bucket's segments in another grouping, so the run "
                        "continues, but not bit for bit as it would have", k ? "; " : "", t->train.bucket_mb, was,
                        t->n_replicas);
}

int run_ckpt_split_note(const run_ckpt *c, const topo *t, char *note, size_t n)
{
    int R0 = saved_replicas(c);
    if (R0 == t->n_replicas) {
        int k = run_ckpt_split_note_layers(c, t, note, n) ? (int)strlen(note) : 0;
        return bucket_note(c, t, note, n, k) > 0;
    }
    /* the global batch and the sampler are the same; only the summation
     * order of the gradients changes (float rounding) */
    int k = snprintf(note, n, "the checkpoint was made with %d replica(s) per stage and the run goes on with %d: "
                     "the same global batch, step by step, with gradients summed in another order (not bit "
                     "for bit)", R0, t->n_replicas);
    char rest[1024];
    if (k > 0 && (size_t)k < n && run_ckpt_split_note_layers(c, t, rest, sizeof rest))
        snprintf(note + k, n - (size_t)k, "; %s", rest);
    return 1;
}

/* BLAS threads of replica r of the checkpoint topology's stage k (the one-process
 * form's "threads"; 1, the default, when absent). */
static int saved_replica_threads(const run_ckpt *c, int k, int r)
{
    json_t *st = json_array_get(json_object_get(json_object_get(c->manifest, "topology"), "stages"), (size_t)k);
    json_t *reps = json_object_get(st, "replicas");
    json_t *th = json_object_get(json_is_array(reps) ? json_array_get(reps, (size_t)r) : st, "threads");
    return json_is_integer(th) ? (int)json_integer_value(th) : 1;
}

static int run_ckpt_split_note_layers(const run_ckpt *c, const topo *t, char *note, size_t n)
{
    int resplit = c->n_stages != t->n_stages, threads = 0, same_r = saved_replicas(c) == t->n_replicas;
    for (int k = 0; k < t->n_stages; k++)
        for (int i = 0; i < t->stages[k].n_units; i++) {
            int was = 0, u = t->stages[k].units[i], ks = saved_stage_of(c, u, &was);
            resplit |= ks != k;
            threads |= was != t->stages[k].threads;
            /* every replica computes its own gradient with its own BLAS threads */
            for (int r = 1; same_r && ks >= 0 && r < t->stages[k].n_replicas; r++)
                threads |= saved_replica_threads(c, ks, r) != t->stages[k].replicas[r].threads;
        }
    if (!resplit && !threads) return 0;
    char a[512], b[512];
    split_text(c, NULL, a, sizeof a);
    split_text(c, t, b, sizeof b);
    if (resplit)
        snprintf(note, n, "the checkpoint's %d stage(s) (%s) are re-split into %d (%s)%s", c->n_stages, a,
                 t->n_stages, b, threads ? "; " : "");
    else
        note[0] = 0;
    if (threads)
        snprintf(note + strlen(note), n - strlen(note), "%sBLAS threads per layer differ from the checkpoint's: "
                 "OpenBLAS's results depend on them, so the run continues, but not bit for bit as it would have",
                 resplit ? "and " : "");
    return 1;
}

/* Step of a metrics.jsonl line, or -1 for an event or unreadable line. */
static long line_step(const char *line)
{
    json_t *j = json_loads(line, 0, NULL);
    json_t *s = json_object_get(j, "step");
    long step = json_is_integer(s) && !json_object_get(j, "event") ? (long)json_integer_value(s) : -1;
    json_decref(j);
    return step;
}

int run_ckpt_trim_metrics(const char *out_dir, long step, char *err)
{
    char path[PATHLEN];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out_dir);
    FILE *f = fopen(path, "r");
    if (!f) return errno == ENOENT ? 0 : seterr(err, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *out = xmalloc(cap), *line = NULL;
    size_t lcap = 0;
    ssize_t n;
    errno = 0;
    while ((n = getline(&line, &lcap, f)) > 0) {
        if (line[n - 1] != '\n') break; /* a torn last line (killed mid-write) */
        if (line_step(line) > step) continue;
        while (len + (size_t)n + 1 > cap) {
            char *bigger = realloc(out, cap *= 2);
            if (!bigger) { free(out); free(line); fclose(f); return seterr(err, "%s: out of memory", path); }
            out = bigger;
        }
        memcpy(out + len, line, (size_t)n);
        len += (size_t)n;
    }
    /* -1 is the end of the file only when feof says so: a read error must not
     * become a rewrite that drops every line after it */
    int bad = n < 0 && (ferror(f) || !feof(f));
    int why = errno;
    free(line);
    fclose(f);
    if (bad) {
        free(out);
        return seterr(err, "%s: read failed: %s (left as it was)", path, why ? strerror(why) : "I/O error");
    }
    int rc = base_write_durable(path, out, len, err);
    free(out);
    return rc;
}

/* ---- whose checkpoints (restarts resume only their own) ---- */

static int newest_first(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

long run_ckpt_scan(const char *root, long **steps, char *err)
{
    *steps = NULL;
    DIR *d = opendir(root);
    if (!d) return errno == ENOENT ? 0 : seterr(err, "%s: cannot open: %s", root, strerror(errno));
    size_t n = 0, cap = 16;
    long *s = xmalloc(cap * sizeof *s);
    struct dirent *e;
    while ((e = readdir(d))) {
        long k;
        char tail;
        if (sscanf(e->d_name, "step-%ld%c", &k, &tail) != 1) continue;
        if (n == cap) {
            long *bigger = realloc(s, (cap *= 2) * sizeof *s);
            if (!bigger) base_oom(cap * sizeof *s, __FILE__, __LINE__);
            s = bigger;
        }
        s[n++] = k;
    }
    closedir(d);
    qsort(s, n, sizeof *s, newest_first);
    *steps = s;
    return (long)n;
}

int run_ckpt_is_complete(const char *root, long step)
{
    char path[PATHLEN];
    snprintf(path, sizeof path, "%s/step-%ld/COMPLETE", root, step);
    return access(path, F_OK) == 0;
}

int run_ckpt_identity(const char *dir, uint64_t *writer, char sha[65], char *err)
{
    char path[PATHLEN];
    json_error_t je;
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    *writer = 0;
    sha[0] = 0;
    if (run_sha256_file(path, sha, NULL, err)) return -1;
    json_t *m = json_load_file(path, 0, &je);
    if (!m) return seterr(err, "%s: %s", path, je.text);
    const char *w = json_string_value(json_object_get(m, "writer"));
    char *end = NULL;
    if (w && strlen(w) == 16) {
        unsigned long long v = strtoull(w, &end, 16);
        if (end && !*end) *writer = (uint64_t)v;
    }
    json_decref(m);
    return 0;
}

int run_ckpt_set_aside(const char *root, const char *name, char *aside, size_t cap, char *err)
{
    char from[PATHLEN], to[PATHLEN + 300], base[PATHLEN];
    /* beside root, not inside it: "ckpt/" gives ckpt.set-aside-N */
    snprintf(base, sizeof base, "%s", root);
    for (size_t n = strlen(base); n > 1 && base[n - 1] == '/'; n--) base[n - 1] = 0;
    for (int i = 1; !aside[0]; i++) {
        snprintf(to, sizeof to, "%s.set-aside-%d", base, i);
        if (!mkdir(to, 0755)) {
            snprintf(aside, cap, "%s", to);
            if (base_fsync_parent_dir(to, err)) return -1; /* its entry in root's parent */
        } else if (errno != EEXIST || i >= 100000) {
            return seterr(err, "%s: cannot create: %s", to, strerror(errno));
        }
    }
    snprintf(from, sizeof from, "%s/%s", root, name);
    snprintf(to, sizeof to, "%s/%s", aside, name);
    if (rename(from, to)) return seterr(err, "cannot move %s to %s: %s", from, to, strerror(errno));
    return base_fsync_parent_dir(from, err) || base_fsync_parent_dir(to, err) ? -1 : 0;
}
