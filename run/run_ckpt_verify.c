/* run_ckpt_verify.c — a checkpoint's integrity (issue 17; see run_ckpt.h): the
 * key derived from the run's secret, the COMPLETE marker that pins the
 * manifest (SHA-256, and HMAC with a key), the manifest's layout against the
 * files present, each shard's metadata and tensor shapes, and a
 * checkpoints/latest that must name a step directory. Not here: hashing the
 * shards and loading tensors (run_ckpt.c). */
#include "run/run_ckpt_int.h"
#include "model/util.h"
#include "net/net.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_MARKER 4096            /* bytes of COMPLETE */
#define MAX_MANIFEST (64u << 20)   /* bytes of manifest.json */
#define MAX_LATEST 64              /* bytes of latest */

/* ---- the key ---- */

void run_ckpt_key_derive(run_ckpt_key *key, const uint8_t *secret, size_t len)
{
    static const char salt[] = "pipetrain checkpoint", info[] = "manifest hmac v1\x01";
    uint8_t prk[32];
    unsigned n = 0;
    /* HKDF-SHA256 (RFC 5869): extract, then one block of expand */
    HMAC(EVP_sha256(), salt, (int)strlen(salt), secret, len, prk, &n);
    HMAC(EVP_sha256(), prk, 32, (const uint8_t *)info, strlen(info), key->k, &n);
    OPENSSL_cleanse(prk, sizeof prk);
    key->have = 1;
}

int run_ckpt_key_load(run_ckpt_key *key, const char *secret_file, char *err)
{
    uint8_t buf[256];
    size_t len;
    char nerr[NET_ERR_LEN];
    memset(key, 0, sizeof *key);
    if (!secret_file && !getenv(RUN_CKPT_SECRET_ENV)) return 0;
    if (net_secret_load(secret_file, RUN_CKPT_SECRET_ENV, buf, sizeof buf, &len, nerr) != NET_OK)
        return seterr(err, "%s", nerr);
    run_ckpt_key_derive(key, buf, len);
    OPENSSL_cleanse(buf, sizeof buf);
    return 0;
}

int run_ckpt_key_for(run_ckpt_key *key, const topo *t, char *err)
{
    char e2[ERR_LEN];
    if (run_ckpt_key_load(key, t->secret_file, e2))
        return seterr(err, "%s: %s%s", t->path, t->secret_file ? "secret_file: " : "", e2); /* e2 names $ENV */
    return 0;
}

static void manifest_mac(const run_ckpt_key *key, const char *text, size_t n, char hex[65])
{
    uint8_t md[32];
    unsigned len = 0;
    HMAC(EVP_sha256(), key->k, 32, (const uint8_t *)text, n, md, &len);
    base_hex(hex, md, 32);
}

static void sha256_hex(const char *text, size_t n, char hex[65])
{
    uint8_t md[32];
    unsigned len = 0;
    EVP_Digest(text, n, md, &len, EVP_sha256(), NULL);
    base_hex(hex, md, 32);
}

/* ---- small files read with care ---- */

/* Reads a regular file (not a link, not a FIFO) of at most cap bytes into a
 * malloc'ed NUL-terminated buffer. 1 when it does not exist. */
static int slurp(const char *path, size_t cap, char **out, size_t *len, char *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0 && errno == ENOENT) return 1;
    if (fd < 0 && errno == ELOOP) return seterr(err, "%s: is a symbolic link (refused)", path);
    if (fd < 0) return seterr(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int rc = -1;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) { seterr(err, "%s: not a regular file", path); goto done; }
    if ((uint64_t)st.st_size > cap) {
        seterr(err, "%s: %lld bytes, more than the %zu this file can have", path, (long long)st.st_size, cap);
        goto done;
    }
    char *buf = xmalloc((size_t)st.st_size + 1);
    ssize_t n = 0, r;
    while ((size_t)n < (size_t)st.st_size && (r = read(fd, buf + n, (size_t)st.st_size - (size_t)n)) > 0) n += r;
    if ((size_t)n != (size_t)st.st_size) { free(buf); seterr(err, "%s: short read", path); goto done; }
    buf[n] = 0;
    *out = buf;
    *len = (size_t)n;
    rc = 0;
done:
    close(fd);
    return rc;
}

/* ---- COMPLETE ---- */

int ckpt_write_complete(const char *dir, long step, const char *manifest, const run_ckpt_key *key, char *err)
{
    char sha[65], mac[65], text[256], path[CKPT_PATHLEN];
    sha256_hex(manifest, strlen(manifest), sha);
    int n = snprintf(text, sizeof text, "step %ld\nmanifest_sha256 %s\n", step, sha);
    if (key && key->have) {
        manifest_mac(key, manifest, strlen(manifest), mac);
        snprintf(text + n, sizeof text - (size_t)n, "manifest_hmac_sha256 %s\n", mac);
    }
    snprintf(path, sizeof path, "%s/COMPLETE", dir);
    return base_write_durable(path, text, strlen(text), err);
}

static int is_hex64(const char *s)
{
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return s[64] == 0;
}

/* Parses the marker's lines into step, sha and mac ("" when absent). */
static int parse_marker(const char *path, char *text, long *step, char sha[65], char mac[65], char *err)
{
    char *save = NULL;
    int line = 0, have_step = 0;
    sha[0] = mac[0] = 0;
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        char key[32], val[80], tail;
        line++;
        if (sscanf(l, "%31s %79s%c", key, val, &tail) != 2)
            return seterr(err, "%s: line %d: expected \"KEY VALUE\"", path, line);
        if (!strcmp(key, "step")) {
            char *end;
            errno = 0;
            *step = strtol(val, &end, 10);
            if (*end || errno || *step < 0) return seterr(err, "%s: line %d: step \"%s\" is not a step number", path, line, val);
            have_step = 1;
        } else if (!strcmp(key, "manifest_sha256") || !strcmp(key, "manifest_hmac_sha256")) {
            if (!is_hex64(val)) return seterr(err, "%s: line %d: %s is not 64 hex digits", path, line, key);
            strcpy(!strcmp(key, "manifest_sha256") ? sha : mac, val);
        } else {
            return seterr(err, "%s: line %d: unknown field \"%.31s\"", path, line, key);
        }
    }
    if (!have_step) return seterr(err, "%s: no step line", path);
    if (!sha[0])
        return seterr(err, "%s: no manifest_sha256: written by an older version of pipetrain, whose checkpoints "
                      "this one cannot verify (resume or re-export it with that version, or train again)", path);
    return 0;
}

char *ckpt_read_verified_manifest(const char *dir, const run_ckpt_key *key, long *marker_step, int *unverified,
                                  char *err)
{
    char path[CKPT_PATHLEN + 16], mpath[CKPT_PATHLEN + 16], sha[65], mac[65], got[65];
    char *marker = NULL, *text = NULL;
    size_t n;
    *unverified = 0;
    snprintf(path, sizeof path, "%s/COMPLETE", dir);
    int rc = slurp(path, MAX_MARKER, &marker, &n, err);
    if (rc > 0) { seterr(err, "%s: incomplete checkpoint (no COMPLETE marker)", dir); return NULL; }
    if (rc < 0 || parse_marker(path, marker, marker_step, sha, mac, err)) goto fail;
    snprintf(mpath, sizeof mpath, "%s/manifest.json", dir);
    rc = slurp(mpath, MAX_MANIFEST, &text, &n, err);
    if (rc > 0) { seterr(err, "%s: missing, but %s says the checkpoint is complete", mpath, path); goto fail; }
    if (rc < 0) goto fail;
    sha256_hex(text, n, got);
    if (strcmp(got, sha)) {
        seterr(err, "%s: SHA-256 %s, but COMPLETE's manifest_sha256 is %s: the manifest was changed after the "
               "checkpoint was written", mpath, got, sha);
        goto fail;
    }
    if (key && key->have) {
        if (!mac[0]) {
            seterr(err, "%s: no manifest_hmac_sha256, but this run has a secret: the checkpoint was written without "
                   "it or its HMAC was removed; refusing it", path);
            goto fail;
        }
        manifest_mac(key, text, n, got);
        if (CRYPTO_memcmp(got, mac, 64)) {
            seterr(err, "%s: manifest_hmac_sha256 does not match manifest.json under this run's secret: the "
                   "checkpoint was changed by someone without the secret, or written with another secret", path);
            goto fail;
        }
    } else if (mac[0]) {
        *unverified = 1;
    }
    free(marker);
    return text;
fail:
    free(marker);
    free(text);
    return NULL;
}

/* ---- checkpoints/latest ---- */

/* Copies s into out (cap 48) with anything unprintable as '?'. */
static void printable(char *out, const char *s)
{
    size_t i = 0;
    for (; s[i] && i < 47; i++) out[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    out[i] = 0;
}

/* dir/latest into out as dir/step-N: 0; 1 when there is no latest; -1 with
 * err when it is there but unusable. */
static int read_latest(const char *dir, char *out, size_t n, char *err)
{
    char path[CKPT_PATHLEN + 16], shown[48], *text = NULL;
    size_t len;
    struct stat st;
    snprintf(path, sizeof path, "%s/latest", dir);
    if (lstat(path, &st)) return errno == ENOENT ? 1 : seterr(err, "%s: cannot stat: %s", path, strerror(errno));
    if (S_ISLNK(st.st_mode))
        return seterr(err, "%s: is a symbolic link; latest must be a file naming a step directory (step-N)", path);
    if (!S_ISREG(st.st_mode)) return seterr(err, "%s: not a regular file; it must name a step directory (step-N)", path);
    if (st.st_size > MAX_LATEST)
        return seterr(err, "%s: %lld bytes, too long for a step directory name (expected \"step-N\")", path,
                      (long long)st.st_size);
    if (slurp(path, MAX_LATEST, &text, &len, err)) return -1;
    if (len && text[len - 1] == '\n') text[--len] = 0;
    printable(shown, text);
    size_t digits = len > 5 ? strspn(text + 5, "0123456789") : 0;
    int ok = len > 5 && !strncmp(text, "step-", 5) && digits == len - 5 && digits <= 18 && strlen(text) == len;
    int outside = strchr(text, '/') || strstr(text, "..");
    free(text);
    if (outside)
        return seterr(err, "%s: names \"%s\", a path outside %s; it must name a step directory (step-N)", path, shown,
                      dir);
    if (!ok) return seterr(err, "%s: \"%s\" is not a step directory name (expected step-N)", path, shown);
    if ((size_t)snprintf(out, n, "%s/%s", dir, shown) >= n) return seterr(err, "%s: path too long", dir);
    if (lstat(out, &st)) return seterr(err, "%s: names %s, which does not exist", path, shown);
    if (S_ISLNK(st.st_mode)) return seterr(err, "%s: names %s, which is a symbolic link (refused)", path, shown);
    if (!S_ISDIR(st.st_mode)) return seterr(err, "%s: names %s, which is not a directory", path, shown);
    return 0;
}

int ckpt_resolve(const char *path, char *out, size_t n, char *err)
{
    char p[CKPT_PATHLEN + 16];
    struct stat st;
    if (stat(path, &st) || !S_ISDIR(st.st_mode)) return seterr(err, "%s: no such checkpoint directory", path);
    snprintf(p, sizeof p, "%s/manifest.json", path);
    if (!lstat(p, &st)) { snprintf(out, n, "%s", path); return 0; }
    snprintf(p, sizeof p, "%s/COMPLETE", path);
    if (!lstat(p, &st)) { snprintf(out, n, "%s", path); return 0; }
    int rc = read_latest(path, out, n, err);
    if (rc <= 0) return rc;
    snprintf(p, sizeof p, "%s/checkpoints", path);
    if (!stat(p, &st) && S_ISDIR(st.st_mode) && (rc = read_latest(p, out, n, err)) <= 0) return rc;
    return seterr(err, "%s: not a checkpoint (no manifest.json, latest or checkpoints/latest)", path);
}

/* ---- the manifest's layout against the files ---- */

static int is_int(json_t *v, long lo, long hi) { return json_is_integer(v) && json_integer_value(v) >= lo && json_integer_value(v) <= hi; }

/* stages: objects {stage k, units, params, optim} whose units partition 0..n_units-1. */
static int check_stages(const run_ckpt *c, const char *mpath, char *err)
{
    json_t *stages = json_object_get(c->manifest, "stages"), *s;
    int nu = model_n_units(&c->cfg), rc = 0;
    char *held = xcalloc((size_t)nu, 1);
    size_t k;
    json_array_foreach(stages, k, s) {
        char pn[64], on[64];
        json_t *units = json_object_get(s, "units"), *u;
        size_t i;
        ckpt_shard_names(pn, on, sizeof pn, (int)k);
        if (!json_is_object(s) || !is_int(json_object_get(s, "stage"), (long)k, (long)k)) {
            rc = seterr(err, "%s: stages.%zu.stage: expected %zu", mpath, k, k);
            goto done;
        }
        const char *p = json_string_value(json_object_get(s, "params")), *o = json_string_value(json_object_get(s, "optim"));
        if (!p || strcmp(p, pn) || !o || strcmp(o, on)) {
            rc = seterr(err, "%s: stages.%zu: params and optim must be \"%s\" and \"%s\"", mpath, k, pn, on);
            goto done;
        }
        if (!json_is_array(units) || !json_array_size(units)) {
            rc = seterr(err, "%s: stages.%zu.units: expected a non-empty array", mpath, k);
            goto done;
        }
        json_array_foreach(units, i, u) {
            if (!is_int(u, 0, nu - 1)) {
                rc = seterr(err, "%s: stages.%zu.units.%zu: not a unit of the model (0..%d for model.n_layers %d)",
                            mpath, k, i, nu - 1, c->cfg.n_layers);
                goto done;
            }
            if (held[json_integer_value(u)]++) {
                rc = seterr(err, "%s: stages.%zu.units.%zu: unit %lld is held by two stages", mpath, k, i,
                            (long long)json_integer_value(u));
                goto done;
            }
        }
    }
    for (int u = 0; u < nu; u++)
        if (!held[u]) {
            rc = seterr(err, "%s: stages: no stage holds unit %d, which model.n_layers %d implies", mpath, u,
                        c->cfg.n_layers);
            goto done;
        }
done:
    free(held);
    return rc;
}

/* files: exactly the 2 shards of every stage, each once. */
static int check_files_listed(const run_ckpt *c, const char *mpath, char *err)
{
    json_t *files = json_object_get(c->manifest, "files"), *f;
    size_t i;
    if (!json_is_array(files)) return seterr(err, "%s: files: expected an array", mpath);
    if (json_array_size(files) != (size_t)c->n_stages * 2) {
        for (int k = 0; k < c->n_stages; k++) {
            char names[2][64];
            ckpt_shard_names(names[0], names[1], sizeof names[0], k);
            for (int j = 0; j < 2; j++) {
                int found = 0;
                json_array_foreach(files, i, f) found |= !strcmp(names[j], json_string_value(json_object_get(f, "name")) ? json_string_value(json_object_get(f, "name")) : "");
                if (!found)
                    return seterr(err, "%s: files: no entry for %s, which the manifest's %d stage(s) imply", mpath,
                                  names[j], c->n_stages);
            }
        }
        return seterr(err, "%s: files: %zu entries, but the manifest's %d stage(s) imply %d shard files", mpath,
                      json_array_size(files), c->n_stages, 2 * c->n_stages);
    }
    json_array_foreach(files, i, f) {
        const char *name = json_string_value(json_object_get(f, "name"));
        int k = -1, ok = 0;
        char tail[16] = "";
        if (name && sscanf(name, "stage-%d.%15s", &k, tail) == 2 && k >= 0 && k < c->n_stages) {
            char pn[64], on[64];
            ckpt_shard_names(pn, on, sizeof pn, k);
            ok = !strcmp(name, pn) || !strcmp(name, on);
        }
        if (!ok) return seterr(err, "%s: files.%zu.name: \"%.64s\" is not a shard of the manifest's stages", mpath, i,
                               name ? name : "");
        for (size_t j = 0; j < i; j++)
            if (!strcmp(name, json_string_value(json_object_get(json_array_get(files, j), "name"))))
                return seterr(err, "%s: files.%zu: %s is listed twice", mpath, i, name);
    }
    return 0;
}

/* Nothing in the directory beyond the manifest, the marker and the listed shards
 * (temporary files of an interrupted write excepted: nothing reads them). */
static int check_no_extra(const run_ckpt *c, char *err)
{
    DIR *d = opendir(c->dir);
    if (!d) return seterr(err, "%s: cannot list: %s", c->dir, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        const char *n = e->d_name;
        size_t len = strlen(n);
        int k = -1;
        char tail[32] = "", pn[64], on[64];
        if (!strcmp(n, ".") || !strcmp(n, "..") || !strcmp(n, "manifest.json") || !strcmp(n, "COMPLETE")) continue;
        if (len > 4 && !strcmp(n + len - 4, ".tmp")) continue;
        if (sscanf(n, "stage-%d.%31s", &k, tail) == 2 && k >= 0 && k < c->n_stages) {
            ckpt_shard_names(pn, on, sizeof pn, k);
            if (!strcmp(n, pn) || !strcmp(n, on)) continue;
        }
        rc = seterr(err, "%s/%s: unexpected file in the checkpoint: manifest.json (%d stage(s)) does not cover it",
                    c->dir, n, c->n_stages);
    }
    closedir(d);
    return rc;
}

int ckpt_check_layout(const run_ckpt *c, const char *mpath, char *err)
{
    if (check_stages(c, mpath, err) || check_files_listed(c, mpath, err) || check_no_extra(c, err)) return -1;
    json_t *tm = json_object_get(json_object_get(c->manifest, "topology"), "model");
    if (tm) {
        model_config tc;
        char field[32];
        if (ckpt_parse_model(tm, &tc, mpath, "topology.model.", err)) return -1;
        if (ckpt_model_diff(&tc, &c->cfg, field, sizeof field))
            return seterr(err, "%s: model.%s disagrees with topology.model.%s", mpath, field, field);
    }
    const char *base = strrchr(c->dir, '/');
    long s;
    char tail;
    base = base ? base + 1 : c->dir;
    if (sscanf(base, "step-%ld%c", &s, &tail) == 1 && s != c->step)
        return seterr(err, "%s: step %ld, but the checkpoint's directory is %s", mpath, c->step, base);
    return 0;
}

/* ---- shard headers ---- */

static const char *meta_or(const st_file *f, const char *key) { const char *v = st_meta(f, key); return v ? v : ""; }

/* One expected tensor: present, F32, the shape the model gives it. */
static int check_tensor(const st_file *f, const char *name, const model_tensor *t, char *err)
{
    const st_tensor *x = st_find(f, name);
    if (!x) return seterr(err, "%s: tensor %s is missing", st_path(f), name);
    if (strcmp(x->dtype, "F32")) return seterr(err, "%s: tensor %s has dtype %s, expected F32", st_path(f), name, x->dtype);
    int ok = x->ndim == t->ndim && (size_t)x->shape[0] == t->shape[0] && (t->ndim < 2 || (size_t)x->shape[1] == t->shape[1]);
    if (!ok) {
        char got[96] = "[";
        for (int i = 0; i < x->ndim && i < 4; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? ", " : "", (long long)x->shape[i]);
        strcat(got, x->ndim > 4 ? ", ...]" : "]");
        if (t->ndim == 2)
            return seterr(err, "%s: tensor %s has shape %s, the model expects [%zu, %zu]", st_path(f), name, got,
                          t->shape[0], t->shape[1]);
        return seterr(err, "%s: tensor %s has shape %s, the model expects [%zu]", st_path(f), name, got, t->shape[0]);
    }
    return 0;
}

int ckpt_check_shard(const run_ckpt *c, int k, int optim, const st_file *f, char *err)
{
    const char *path = st_path(f), *fmt = st_meta(f, "format");
    json_t *units = json_object_get(json_array_get(json_object_get(c->manifest, "stages"), (size_t)k), "units"), *u;
    char want[4096] = "", num[32];
    size_t i;
    if (!fmt)
        return seterr(err, "%s: no __metadata__.format: written by an older version of pipetrain, whose shards this "
                      "one cannot verify", path);
    if (strcmp(fmt, "pipetrain-shard")) return seterr(err, "%s: __metadata__.format: expected \"pipetrain-shard\"", path);
    if (strcmp(meta_or(f, "kind"), optim ? "optim" : "params"))
        return seterr(err, "%s: __metadata__.kind is \"%s\", expected \"%s\"", path, meta_or(f, "kind"),
                      optim ? "optim" : "params");
    snprintf(num, sizeof num, "%d", k);
    if (strcmp(meta_or(f, "stage"), num))
        return seterr(err, "%s: __metadata__.stage is \"%s\", the manifest's stage %d", path, meta_or(f, "stage"), k);
    json_array_foreach(units, i, u)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? "," : "", (long long)json_integer_value(u));
    if (strcmp(meta_or(f, "units"), want))
        return seterr(err, "%s: __metadata__.units is \"%.64s\", manifest.json's stages.%d.units are %.64s", path,
                      meta_or(f, "units"), k, want);
    snprintf(num, sizeof num, "%ld", c->step);
    if (strcmp(meta_or(f, "step"), num))
        return seterr(err, "%s: __metadata__.step is \"%.32s\", manifest.json's step is %ld", path, meta_or(f, "step"),
                      c->step);
    json_t *m = json_loads(meta_or(f, "model"), 0, NULL);
    model_config mc;
    char field[32], e2[ERR_LEN];
    int bad = ckpt_parse_model(m, &mc, path, "__metadata__.model.", e2);
    json_decref(m);
    if (bad) return seterr(err, "%s", e2);
    if (ckpt_model_diff(&mc, &c->cfg, field, sizeof field))
        return seterr(err, "%s: __metadata__.model.%s disagrees with manifest.json's model.%s", path, field, field);
    /* exactly the tensors the units imply, each with its shape (with a 2bw
     * run's previous weight version when the metadata says so) */
    const char *wv = st_meta(f, "weight_versions");
    if (optim && wv && strcmp(wv, "2"))
        return seterr(err, "%s: __metadata__.weight_versions is \"%.16s\", expected \"2\" or none", path, wv);
    int expected = 0, two_versions = optim && wv;
    model_tensor ts[MODEL_MAX_UNIT_TENSORS];
    json_array_foreach(units, i, u) {
        int n = model_unit_tensors(&c->cfg, (int)json_integer_value(u), ts);
        for (int j = 0; j < n; j++) {
            char name[sizeof ts[j].name + 16];
            if (!optim) {
                if (check_tensor(f, ts[j].name, &ts[j], err)) return -1;
                expected++;
                continue;
            }
            static const char *const sfx[3] = { ".exp_avg", ".exp_avg_sq", ".2bw_prev" };
            for (int s = 0; s < (two_versions ? 3 : 2); s++) {
                snprintf(name, sizeof name, "%.79s%s", ts[j].name, sfx[s]);
                if (check_tensor(f, name, &ts[j], err)) return -1;
                expected++;
            }
        }
    }
    if (st_count(f) != expected)
        return seterr(err, "%s: holds %d tensors, but stage %d's units (%.64s) imply %d", path, st_count(f), k, want,
                      expected);
    return 0;
}
