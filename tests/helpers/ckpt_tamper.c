/* ckpt_tamper.c — tampers with a checkpoint directory as someone without the
 * run's secret could (issue 17), for tests/t_ckpt_integrity.sh:
 *
 *   ckpt_tamper DIR CASE
 *     drop-entry      removes stage-0.safetensors from manifest.json's files,
 *                     flips a byte of that shard, recomputes COMPLETE
 *     n-layers        model.n_layers (and topology.model.n_layers) - 1, COMPLETE recomputed
 *     step            step + 5 in manifest.json and COMPLETE, COMPLETE's hash recomputed
 *     transpose       the embedding's shape [V, D] -> [D, V] in stage-0.safetensors'
 *                     header, the manifest's size and SHA-256 of it and COMPLETE recomputed
 *     manifest-only   manifest.json edited (pipetrain_version), COMPLETE left alone
 *     forge           a flipped weight byte with the manifest's SHA-256 and COMPLETE's
 *                     recomputed; an HMAC line in COMPLETE is kept as it was
 *     strip-hmac      as forge, and COMPLETE's HMAC line removed
 *
 * Exit 0 when done, 1 on any failure to tamper (the test then fails). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/util.h"
#include "run/run_ckpt.h"

static char dir[2048];

static int die(const char *what) { fprintf(stderr, "ckpt_tamper: %s\n", what); return 1; }

static char *slurp(const char *name, size_t *n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    if (fread(b, 1, (size_t)len, f) != (size_t)len) { fclose(f); free(b); return NULL; }
    fclose(f);
    b[len] = 0;
    if (n) *n = (size_t)len;
    return b;
}

static int spit(const char *name, const char *b, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b, 1, n, f) != n) return -1;
    return fclose(f);
}

static json_t *manifest(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    return json_load_file(path, 0, NULL);
}

static int save_manifest(json_t *m)
{
    char *t = json_dumps(m, JSON_INDENT(2));
    int rc = spit("manifest.json", t, strlen(t));
    free(t);
    return rc;
}

/* files[] entry of name: size and SHA-256 recomputed from the file. */
static int revouch(json_t *m, const char *name)
{
    char path[4096], sha[65], err[ERR_LEN];
    uint64_t bytes;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (run_sha256_file(path, sha, &bytes, err)) return -1;
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(m, "files"), i, f) if (!strcmp(json_string_value(json_object_get(f, "name")), name)) {
        json_object_set_new(f, "bytes", json_integer((json_int_t)bytes));
        json_object_set_new(f, "sha256", json_string(sha));
        return 0;
    }
    return -1;
}

/* COMPLETE for the manifest as it now is: step, its SHA-256, and the old HMAC line when keep_mac. */
static int recomplete(long step, int keep_mac)
{
    char path[4096], sha[65], err[ERR_LEN], text[512];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    if (run_sha256_file(path, sha, NULL, err)) return -1;
    char *old = slurp("COMPLETE", NULL), *mac = old ? strstr(old, "manifest_hmac_sha256 ") : NULL;
    int n = snprintf(text, sizeof text, "step %ld\nmanifest_sha256 %s\n", step, sha);
    if (keep_mac && mac) snprintf(text + n, sizeof text - (size_t)n, "%.86s\n", mac);
    free(old);
    return spit("COMPLETE", text, strlen(text));
}

static int flip(const char *name, long at)
{
    size_t n;
    char *b = slurp(name, &n);
    if (!b || (size_t)at >= n) return -1;
    b[n - (size_t)at] ^= 0x10; /* counted from the end: inside the tensor data */
    int rc = spit(name, b, n);
    free(b);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 3) return die("usage: ckpt_tamper DIR CASE");
    snprintf(dir, sizeof dir, "%s", argv[1]);
    const char *c = argv[2];
    json_t *m = manifest();
    if (!m) return die("cannot read manifest.json");
    long step = (long)json_integer_value(json_object_get(m, "step"));
    int rc = 0;
    if (!strcmp(c, "drop-entry")) {
        json_t *files = json_object_get(m, "files"), *f;
        size_t i;
        json_array_foreach(files, i, f) if (!strcmp(json_string_value(json_object_get(f, "name")), "stage-0.safetensors")) break;
        rc = i < json_array_size(files) ? json_array_remove(files, i) : -1;
        rc = rc || flip("stage-0.safetensors", 7) || save_manifest(m) || recomplete(step, 1);
    } else if (!strcmp(c, "n-layers")) {
        json_t *a = json_object_get(m, "model"), *b = json_object_get(json_object_get(m, "topology"), "model");
        json_object_set_new(a, "n_layers", json_integer(json_integer_value(json_object_get(a, "n_layers")) - 1));
        if (b) json_object_set_new(b, "n_layers", json_integer(json_integer_value(json_object_get(b, "n_layers")) - 1));
        rc = save_manifest(m) || recomplete(step, 1);
    } else if (!strcmp(c, "step")) {
        json_object_set_new(m, "step", json_integer(step + 5));
        rc = save_manifest(m) || recomplete(step + 5, 1);
    } else if (!strcmp(c, "transpose")) {
        size_t n;
        char *b = slurp("stage-0.safetensors", &n);
        long V = (long)json_integer_value(json_object_get(json_object_get(m, "model"), "vocab_size"));
        long D = (long)json_integer_value(json_object_get(json_object_get(m, "model"), "dim"));
        char from[64], to[64];
        snprintf(from, sizeof from, "\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[%ld,%ld]", V, D);
        snprintf(to, sizeof to, "\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[%ld,%ld]", D, V);
        char *at = b ? memmem(b, n, from, strlen(from)) : NULL;
        if (!at) return die("embedding header entry not found");
        memcpy(at, to, strlen(to));
        rc = spit("stage-0.safetensors", b, n) || revouch(m, "stage-0.safetensors") || save_manifest(m) ||
             recomplete(step, 1);
        free(b);
    } else if (!strcmp(c, "manifest-only")) {
        json_object_set_new(m, "pipetrain_version", json_string("9.9.9"));
        rc = save_manifest(m);
    } else if (!strcmp(c, "forge") || !strcmp(c, "strip-hmac")) {
        rc = flip("stage-0.safetensors", 9) || revouch(m, "stage-0.safetensors") || save_manifest(m) ||
             recomplete(step, !strcmp(c, "forge"));
    } else {
        rc = die("unknown case");
    }
    json_decref(m);
    return rc ? die("tampering failed") : 0;
}
