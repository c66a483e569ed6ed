/* test_topo.c — the topology loader: shipped topologies load, defaults, every
 * validation failure names the file and the JSON path, --set overrides (typed,
 * array index, bad ones), canonical hash stability, the layer notation, the
 * partition (plain and interleaved), helpers and the tests/bad/topology corpus.
 * Files are written into a fresh temporary directory. */
#include "tests/tests.h"
#include "topo/topo.h"
#include "model/util.h"

#include <dirent.h>
#include <jansson.h>
#include <unistd.h>

static char tmpdir[64];
static int n_written;

/* Writes text to tmpdir/name and returns the path (one of 16 rotating buffers). */
static const char *write_tmp(const char *name, const char *text)
{
    static char paths[16][256];
    char *path = paths[n_written % 16];
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/test_topo.XXXXXX");
        if (!mkdtemp(tmpdir)) { perror("mkdtemp"); exit(2); }
    }
    snprintf(path, sizeof paths[0], "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    if (!f) { perror(path); exit(2); }
    fputs(text, f);
    fclose(f);
    n_written++;
    return path;
}

/* A valid 2-stage topology of a 4-block model; tests derive bad ones from it. */
#define BASE_MODEL "\"model\": {\"dim\": 32, \"n_layers\": 4, \"n_heads\": 4, \"ffn_dim\": 64, \"seq_len\": 16}"
#define BASE_TRAIN "\"train\": {\"steps\": 10, \"batch_size\": 4, \"micro_batches\": 2, \"lr\": 0.01}"
#define BASE_STAGES "\"stages\": [{\"host\": \"127.0.0.1\", \"port\": 7001, \"layers\": \"embed,0-1\"}," \
                    " {\"host\": \"127.0.0.1\", \"port\": 7002, \"layers\": \"2-3,head\"}]"
static const char *base_json = "{" BASE_MODEL ",\n" BASE_TRAIN ",\n" BASE_STAGES "}\n";

/* Loads path with overrides and requires failure with a message that starts with
 * the path and contains every needle. */
static void expect_fail_at(const char *path, char *const *sets, int n_sets,
                           const char *needle1, const char *needle2, int line)
{
    topo t;
    char err[ERR_LEN] = "";
    int rc = topo_load(&t, path, sets, n_sets, err);
    int ok = rc == -1 && !strncmp(err, path, strlen(path)) && strstr(err, needle1) &&
             (!needle2 || strstr(err, needle2));
    if (!ok)
        fprintf(stderr, "\n  line %d: rc %d, message \"%s\"\n  wanted \"%s\"%s%s%s\n", line, rc, err,
                needle1, needle2 ? " and \"" : "", needle2 ? needle2 : "", needle2 ? "\"" : "");
    CU_ASSERT(ok);
    if (rc == 0) topo_free(&t);
    /* a failed load leaves the struct zeroed */
    CU_ASSERT(rc == 0 || (t.stages == NULL && t.path == NULL && t.n_stages == 0));
}
#define expect_fail(p, s, n, a, b) expect_fail_at(p, s, n, a, b, __LINE__)

/* Base topology with one override that must fail naming needle1 (and needle2). */
static void set_fail_at(const char *set, const char *needle1, const char *needle2, int line)
{
    const char *p = write_tmp("base.json", base_json);
    char *sets[1] = { (char *)set };
    expect_fail_at(p, sets, 1, needle1, needle2, line);
}
#define set_fail(s, a, b) set_fail_at(s, a, b, __LINE__)

static int load_ok(topo *t, const char *path, char *const *sets, int n)
{
    char err[ERR_LEN] = "";
    int rc = topo_load(t, path, sets, n, err);
    if (rc) fprintf(stderr, "\n  unexpected failure: %s\n", err);
    CU_ASSERT_EQUAL(rc, 0);
    return rc;
}

/* ---------- shipped topologies ---------- */

static void test_shipped(void)
{
    DIR *d = opendir("topologies");
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 5, ".json")) continue;
        char path[512];
        snprintf(path, sizeof path, "topologies/%s", e->d_name);
        topo t;
        if (load_ok(&t, path, NULL, 0) == 0) {
            CU_ASSERT(t.n_stages >= 1);
            CU_ASSERT_PTR_NOT_NULL(t.data.path);
            topo_free(&t);
        }
        n++;
    }
    closedir(d);
    CU_ASSERT(n >= 4);

    topo t;
    if (load_ok(&t, "topologies/shakespeare-1stage.json", NULL, 0)) return;
    CU_ASSERT_EQUAL(t.n_stages, 1);
    CU_ASSERT_EQUAL(t.stages[0].threads, 2);
    CU_ASSERT_EQUAL(t.stages[0].n_units, 6);
    CU_ASSERT_EQUAL(t.model.dim, 128);
    CU_ASSERT_EQUAL(t.train.batch_size, 12);
    CU_ASSERT_EQUAL(t.train.steps, 2000);
    CU_ASSERT_DOUBLE_EQUAL(t.train.beta2, 0.99, 1e-12);
    CU_ASSERT_STRING_EQUAL(t.data.path, "topologies/../../shared/data/tinyshakespeare.txt");
    CU_ASSERT_STRING_EQUAL(t.data.path_given, "../../shared/data/tinyshakespeare.txt");
    CU_ASSERT(access(t.data.path, R_OK) == 0);
    topo_free(&t);

    const char *multi[] = { "topologies/shakespeare-2stage.json", "topologies/shakespeare-4stage.json" };
    for (int i = 0; i < 2; i++) {
        if (load_ok(&t, multi[i], NULL, 0)) continue;
        CU_ASSERT_EQUAL(t.n_stages, i ? 4 : 2);
        CU_ASSERT_EQUAL(t.schedule.kind_id, TOPO_SCHED_1F1B);
        CU_ASSERT(t.train.micro_batches >= t.n_stages);
        CU_ASSERT_EQUAL(t.train.batch_size % t.train.micro_batches, 0);
        CU_ASSERT_EQUAL(t.model.n_layers, 4);
        for (int s = 0; s < t.n_stages; s++) CU_ASSERT_EQUAL(t.stages[s].threads, 1);
        CU_ASSERT(topo_all_loopback(&t));
        topo_free(&t);
    }
}

/* ---------- defaults ---------- */

static void test_defaults(void)
{
    topo t;
    if (load_ok(&t, write_tmp("base.json", base_json), NULL, 0)) return;
    CU_ASSERT_EQUAL(t.model.n_kv_heads, 4);
    CU_ASSERT_EQUAL(t.model.vocab_size, 256);
    CU_ASSERT_DOUBLE_EQUAL(t.model.norm_eps, 1e-5, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(t.model.rope_theta, 10000, 1e-3);
    CU_ASSERT_EQUAL(t.model.tie_embeddings, 0);
    CU_ASSERT_PTR_NULL(t.data.path);
    CU_ASSERT_STRING_EQUAL(t.data.format, "auto");
    CU_ASSERT_DOUBLE_EQUAL(t.data.val_fraction, 0.1, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(t.train.min_lr, 0.001, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(t.train.beta1, 0.9, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(t.train.beta2, 0.95, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(t.train.grad_clip, 1.0, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(t.train.weight_decay, 0.1, 1e-15);
    CU_ASSERT_EQUAL(t.train.warmup_steps, 0);
    CU_ASSERT_EQUAL(t.train.seed, 1337);
    CU_ASSERT_EQUAL(t.train.eval_batches, 20);
    CU_ASSERT_EQUAL(t.train.log_every, 1);
    CU_ASSERT_STRING_EQUAL(t.checkpoint.dir, "checkpoints");
    CU_ASSERT_EQUAL(t.checkpoint.every, 0);
    CU_ASSERT_EQUAL(t.checkpoint.keep, 0);
    CU_ASSERT_STRING_EQUAL(t.schedule.kind, "gpipe");
    CU_ASSERT_EQUAL(t.schedule.kind_id, TOPO_SCHED_GPIPE);
    CU_ASSERT_STRING_EQUAL(t.coordinator.host, "127.0.0.1");
    CU_ASSERT_EQUAL(t.coordinator.port, 29500);
    CU_ASSERT_PTR_NULL(t.secret_file);
    CU_ASSERT_STRING_EQUAL(t.launch, "local");
    CU_ASSERT_EQUAL(t.stages[1].threads, 1);
    CU_ASSERT_EQUAL(t.chunks_per_stage, 1);
    CU_ASSERT_EQUAL(t.stages[0].n_units, 3);
    CU_ASSERT_EQUAL(t.stages[1].n_units, 3);
    topo_free(&t);
    topo_free(&t); /* twice: the struct is zeroed */
    topo_free(NULL);
}

/* train.recompute is every stage's default; a stage's own overrides it; the
 * default "none" leaves the topology hash as it was before the key existed. */
static void test_recompute(void)
{
    topo t;
    const char *path = write_tmp("base.json", base_json);
    char h0[65], h1[65];
    if (load_ok(&t, path, NULL, 0)) return;
    CU_ASSERT_STRING_EQUAL(t.train.recompute, "none");
    CU_ASSERT_EQUAL(t.stages[0].recompute_id, MODEL_RECOMPUTE_NONE);
    topo_hash_hex(&t, h0);
    char *cj = topo_canonical_json(&t);
    CU_ASSERT_PTR_NULL(strstr(cj, "recompute"));
    free(cj);
    topo_free(&t);
    char *none[] = { "train.recompute=none" };
    if (load_ok(&t, path, none, 1)) return;
    topo_hash_hex(&t, h1);
    CU_ASSERT_STRING_EQUAL(h0, h1);
    topo_free(&t);
    char *sets[] = { "train.recompute=selective", "stages.0.recompute=full" };
    if (load_ok(&t, path, sets, 2)) return;
    CU_ASSERT_EQUAL(t.train.recompute_id, MODEL_RECOMPUTE_SELECTIVE);
    CU_ASSERT_EQUAL(t.stages[0].recompute_id, MODEL_RECOMPUTE_FULL);
    CU_ASSERT_EQUAL(t.stages[1].recompute_id, MODEL_RECOMPUTE_SELECTIVE);
    topo_hash_hex(&t, h1);
    CU_ASSERT_STRING_NOT_EQUAL(h0, h1);
    /* the canonical form reloads to the same modes */
    cj = topo_canonical_json(&t);
    topo u;
    if (!load_ok(&u, write_tmp("canon.json", cj), NULL, 0)) {
        CU_ASSERT_EQUAL(u.stages[0].recompute_id, MODEL_RECOMPUTE_FULL);
        CU_ASSERT_EQUAL(u.stages[1].recompute_id, MODEL_RECOMPUTE_SELECTIVE);
        topo_free(&u);
    }
    free(cj);
    topo_free(&t);
}

/* links.burst (issue 14): bytes of the links' token bucket. Absent or 0 leaves
 * the canonical text and the hash as they were before the key existed (with or
 * without the rest of "links"); a burst > 0 changes the hash and reloads from the
 * canonical text; a negative or non-numeric burst is refused naming the field. */
static void test_links_burst(void)
{
    const char *path = write_tmp("base.json", base_json);
    char h_rate[65], h[65];
    topo t;
    char *rate[] = { "links.bandwidth=20mbit" }, *rate0[] = { "links.bandwidth=20mbit", "links.burst=0" },
         *only0[] = { "links.burst=0" }, *with[] = { "links.bandwidth=20mbit", "links.burst=65536" };
    char h_base[65];
    if (load_ok(&t, path, NULL, 0)) return;
    topo_hash_hex(&t, h_base);
    CU_ASSERT_EQUAL(t.links.burst, 0);
    topo_free(&t);
    if (load_ok(&t, path, only0, 1)) return;
    topo_hash_hex(&t, h);
    CU_ASSERT_STRING_EQUAL(h, h_base);
    topo_free(&t);
    if (load_ok(&t, path, rate, 1)) return;
    topo_hash_hex(&t, h_rate);
    char *cj = topo_canonical_json(&t);
    CU_ASSERT_PTR_NULL(strstr(cj, "burst"));
    free(cj);
    topo_free(&t);
    if (load_ok(&t, path, rate0, 2)) return;
    topo_hash_hex(&t, h);
    CU_ASSERT_STRING_EQUAL(h, h_rate);
    topo_free(&t);
    if (load_ok(&t, path, with, 2)) return;
    CU_ASSERT_EQUAL(t.links.burst, 65536);
    topo_hash_hex(&t, h);
    CU_ASSERT_STRING_NOT_EQUAL(h, h_rate);
    cj = topo_canonical_json(&t);
    CU_ASSERT_PTR_NOT_NULL(strstr(cj, "\"burst\""));
    topo u;
    if (!load_ok(&u, write_tmp("canon.json", cj), NULL, 0)) {
        CU_ASSERT_EQUAL(u.links.burst, 65536);
        topo_free(&u);
    }
    free(cj);
    topo_free(&t);
    set_fail("links.burst=-1", "links.burst", NULL);
    set_fail("links.burst=lots", "links.burst", NULL);
    set_fail("links.burst=1e16", "links.burst", NULL);
}

/* ---------- the document level ---------- */

static void test_json_errors(void)
{
    expect_fail(write_tmp("syntax.json", "{\n  \"model\": {\n    \"dim\": ,\n"), NULL, 0, "syntax.json:3:", "invalid JSON");
    expect_fail(write_tmp("empty.json", ""), NULL, 0, "invalid JSON", NULL);
    expect_fail(write_tmp("array.json", "[1, 2]"), NULL, 0, "expected an object", "array");
    expect_fail(write_tmp("dupkey.json", "{\"model\": {}, \"model\": {}}"), NULL, 0, "duplicate", NULL);
    char missing[300];
    snprintf(missing, sizeof missing, "%s/nonexistent.json", tmpdir);
    expect_fail(missing, NULL, 0, "nonexistent.json: cannot read", NULL);
    expect_fail(tmpdir, NULL, 0, "cannot read: not a regular file", NULL);
}

static void test_unknown_keys(void)
{
    expect_fail(write_tmp("u1.json", "{" BASE_MODEL "," BASE_TRAIN "," BASE_STAGES ", \"modle\": {}}"),
                NULL, 0, "modle: unknown key", "model");
    expect_fail(write_tmp("u2.json", "{\"model\": {\"dim\": 32, \"n_layers\": 4, \"n_heads\": 4, \"ffn_dim\": 64, "
                          "\"seq_len\": 16, \"dimm\": 3}," BASE_TRAIN "," BASE_STAGES "}"),
                NULL, 0, "model.dimm: unknown key", NULL);
    expect_fail(write_tmp("u3.json", "{" BASE_MODEL "," BASE_TRAIN ", \"stages\": [{\"host\": \"127.0.0.1\", "
                          "\"port\": 7001, \"layers\": \"embed,0-3,head\", \"gpu\": 1}]}"),
                NULL, 0, "stages.0.gpu: unknown key", NULL);
    expect_fail(write_tmp("u4.json", "{" BASE_MODEL "," BASE_TRAIN "," BASE_STAGES ", \"schedule\": {\"kind\": \"1f1b\", \"v\": 2}}"),
                NULL, 0, "schedule.v: unknown key", NULL);
}

static void test_types(void)
{
    expect_fail(write_tmp("t1.json", "{\"model\": {\"dim\": \"32\", \"n_layers\": 4, \"n_heads\": 4, \"ffn_dim\": 64, "
                          "\"seq_len\": 16}," BASE_TRAIN "," BASE_STAGES "}"),
                NULL, 0, "model.dim: expected an integer", "found \"32\"");
    expect_fail(write_tmp("t2.json", "{\"model\": {\"dim\": 32.5, \"n_layers\": 4, \"n_heads\": 4, \"ffn_dim\": 64, "
                          "\"seq_len\": 16}," BASE_TRAIN "," BASE_STAGES "}"),
                NULL, 0, "model.dim: expected an integer", "32.5");
    expect_fail(write_tmp("t3.json", "{" BASE_MODEL "," BASE_TRAIN ", \"stages\": {}}"), NULL, 0, "stages: expected", "found an object");
    expect_fail(write_tmp("t4.json", "{\"model\": [], " BASE_TRAIN "," BASE_STAGES "}"), NULL, 0, "model: expected an object", NULL);
    expect_fail(write_tmp("t5.json", "{" BASE_MODEL "," BASE_TRAIN "," BASE_STAGES ", \"launch\": \"pdsh\"}"),
                NULL, 0, "launch: expected one of \"local\", \"ssh\"", "pdsh");
    expect_fail(write_tmp("t6.json", "{" BASE_MODEL "," BASE_TRAIN ", \"stages\": []}"), NULL, 0, "stages: expected a non-empty array", NULL);
    expect_fail(write_tmp("t7.json", "{" BASE_MODEL "," BASE_TRAIN ", \"stages\": [3]}"), NULL, 0, "stages.0: expected an object", NULL);
    expect_fail(write_tmp("t8.json", "{" BASE_MODEL "," BASE_TRAIN "," BASE_STAGES ", \"data\": {\"path\": \"\"}}"),
                NULL, 0, "data.path: expected a non-empty string", NULL);
    /* an integral real is an integer */
    topo t;
    if (!load_ok(&t, write_tmp("t9.json", "{\"model\": {\"dim\": 32.0, \"n_layers\": 4, \"n_heads\": 4, \"ffn_dim\": 64, "
                               "\"seq_len\": 16}," BASE_TRAIN "," BASE_STAGES "}"), NULL, 0)) {
        CU_ASSERT_EQUAL(t.model.dim, 32);
        topo_free(&t);
    }
}

static void test_missing(void)
{
    expect_fail(write_tmp("m1.json", "{" BASE_TRAIN "," BASE_STAGES "}"), NULL, 0, "model: missing", NULL);
    expect_fail(write_tmp("m2.json", "{\"model\": {\"n_layers\": 4, \"n_heads\": 4, \"ffn_dim\": 64, \"seq_len\": 16},"
                          BASE_TRAIN "," BASE_STAGES "}"), NULL, 0, "model.dim: missing", NULL);
    expect_fail(write_tmp("m3.json", "{" BASE_MODEL "," BASE_TRAIN "}"), NULL, 0, "stages: missing", NULL);
    expect_fail(write_tmp("m4.json", "{" BASE_MODEL ", \"train\": {\"steps\": 10, \"batch_size\": 4}," BASE_STAGES "}"),
                NULL, 0, "train.lr: missing", NULL);
    expect_fail(write_tmp("m5.json", "{" BASE_MODEL "," BASE_TRAIN ", \"stages\": [{\"host\": \"127.0.0.1\", "
                          "\"layers\": \"embed,0-3,head\"}]}"), NULL, 0, "stages.0.port: missing", NULL);
}

/* ---------- values and cross-field rules ---------- */

static void test_sizes(void)
{
    set_fail("model.dim=0", "model.dim: expected an integer in 1..", "found 0");
    set_fail("model.n_layers=-2", "model.n_layers", "found -2");
    set_fail("train.steps=0", "train.steps", "found 0");
    set_fail("train.batch_size=-1", "train.batch_size", "found -1");
    set_fail("train.lr=0", "train.lr: expected a number > 0", NULL);
    set_fail("train.beta2=1", "train.beta2: expected a number >= 0 and < 1", NULL);
    set_fail("data.val_fraction=1", "data.val_fraction", NULL);
    set_fail("stages.0.threads=0", "stages.0.threads", "found 0");
    set_fail("stages.1.port=0", "stages.1.port: expected an integer in 1..65535", NULL);
    set_fail("stages.1.port=65536", "stages.1.port", "65536");
    set_fail("coordinator.port=70000", "coordinator.port", "70000");
    set_fail("model.dim=1048577", "model.dim", "1048577");
    set_fail("model.seq_len=1048576", "model sizes are absurd", NULL);
    const char *p = write_tmp("base.json", base_json);
    char *big[] = { "model.seq_len=4096", "train.batch_size=1048576", "train.micro_batches=1" };
    expect_fail(p, big, 3, "train.batch_size", "absurd");
    set_fail("train.min_lr=0.1", "train.min_lr: expected a number <= train.lr", NULL);
}

static void test_model_rules(void)
{
    set_fail("model.n_heads=3", "model.n_heads (3) must divide model.dim", NULL);
    set_fail("model.n_kv_heads=3", "model.n_kv_heads (3) must divide model.n_heads", NULL);
    set_fail("model.n_heads=32", "must be even for rotary", NULL);
}

static void test_train_rules(void)
{
    set_fail("train.micro_batches=3", "train.micro_batches: expected a divisor of train.batch_size (4)", "found 3");
    const char *p = write_tmp("base.json", base_json);
    char *one_f1b[] = { "schedule.kind=1f1b", "train.micro_batches=1" };
    expect_fail(p, one_f1b, 2, "train.micro_batches: schedule \"1f1b\" needs", "2 stages");
    char *ok_f1b[] = { "schedule.kind=1f1b", "train.micro_batches=2" };
    topo t;
    if (!load_ok(&t, p, ok_f1b, 2)) topo_free(&t);
    char *noval[] = { "train.eval_every=5", "data.val_fraction=0" };
    expect_fail(p, noval, 2, "data.val_fraction", "eval_every");
}

static void test_addresses(void)
{
    set_fail("stages.1.port=7001", "stages.1.port: 127.0.0.1:7001 is also used by stages.0", NULL);
    set_fail("stages.0.host=localhost", "stages.0.host: expected a numeric IPv4 or IPv6 address", "localhost");
    set_fail("stages.1.host=node-2.cluster", "stages.1.host", "node-2.cluster");
    set_fail("coordinator.host=0.0.0.0", "coordinator.host: expected a unicast address", NULL);
    set_fail("stages.0.host=10.0.0.1", "loopback", "stages.0.host (10.0.0.1)");
    set_fail("coordinator.port=7002", "stages.1.port", "coordinator");
    const char *p = write_tmp("base.json", base_json);
    char *v6dup[] = { "stages.0.host=::1", "stages.1.host=0:0:0:0:0:0:0:1", "stages.1.port=7001" };
    expect_fail(p, v6dup, 3, "stages.1.port: 0:0:0:0:0:0:0:1:7001 is also used by stages.0", NULL);
    char *remote[] = { "stages.0.host=10.0.0.1", "stages.1.host=fd00::2", "coordinator.host=10.0.0.1" };
    topo t;
    if (!load_ok(&t, p, remote, 3)) {
        CU_ASSERT_FALSE(topo_all_loopback(&t));
        CU_ASSERT_EQUAL(topo_find_stage(&t, "fd00:0::2", 7002), 1);
        CU_ASSERT_EQUAL(topo_find_stage(&t, "fd00::2", 7001), -1);
        topo_free(&t);
    }
}

/* ---------- overrides ---------- */

static void test_overrides(void)
{
    const char *p = write_tmp("base.json", base_json);
    char *sets[] = { "train.lr=3e-4", "stages.1.threads=3", "model.tie_embeddings=true",
                     "data.path=foo.txt", "train.seed=42", "coordinator.port=1234",
                     "train.steps=7", "train.steps=8", "model.norm_eps=1e-6", "data.val_fraction=0" };
    topo t;
    if (load_ok(&t, p, sets, 10)) return;
    CU_ASSERT_DOUBLE_EQUAL(t.train.lr, 3e-4, 1e-18);
    CU_ASSERT_DOUBLE_EQUAL(t.train.min_lr, 3e-5, 1e-18);
    CU_ASSERT_EQUAL(t.stages[1].threads, 3);
    CU_ASSERT_EQUAL(t.stages[0].threads, 1);
    CU_ASSERT_EQUAL(t.model.tie_embeddings, 1);
    CU_ASSERT_STRING_EQUAL(t.data.path_given, "foo.txt");
    char want[300];
    snprintf(want, sizeof want, "%s/foo.txt", tmpdir);
    CU_ASSERT_STRING_EQUAL(t.data.path, want);
    CU_ASSERT_EQUAL(t.data.kind, TOPO_DATA_TEXT);
    CU_ASSERT_EQUAL(t.train.seed, 42);
    CU_ASSERT_EQUAL(t.coordinator.port, 1234);
    CU_ASSERT_EQUAL(t.train.steps, 8); /* the last override wins */
    CU_ASSERT_DOUBLE_EQUAL(t.model.norm_eps, 1e-6, 1e-12);
    CU_ASSERT_EQUAL(t.data.val_fraction, 0);
    topo_free(&t);

    /* schedule.kind and schedule.file replace each other; empty unsets a path */
    char *s2[] = { "schedule.file=plan.csv", "data.path=/abs/tokens.bin", "secret_file=s.key" };
    if (!load_ok(&t, p, s2, 3)) {
        CU_ASSERT_PTR_NULL(t.schedule.kind);
        CU_ASSERT_EQUAL(t.schedule.kind_id, TOPO_SCHED_FILE);
        CU_ASSERT_STRING_EQUAL(t.schedule.file_given, "plan.csv");
        CU_ASSERT_STRING_EQUAL(t.data.path, "/abs/tokens.bin");
        CU_ASSERT_EQUAL(t.data.kind, TOPO_DATA_BIN);
        CU_ASSERT_PTR_NOT_NULL(t.secret_file);
        topo_free(&t);
    }
    char *s3[] = { "schedule.file=plan.csv", "schedule.kind=1f1b", "secret_file=s.key", "secret_file=" };
    if (!load_ok(&t, p, s3, 4)) {
        CU_ASSERT_PTR_NULL(t.schedule.file);
        CU_ASSERT_EQUAL(t.schedule.kind_id, TOPO_SCHED_1F1B);
        CU_ASSERT_PTR_NULL(t.secret_file);
        topo_free(&t);
    }

    char *s4[] = { "schedule.kind=zb-h1", "launch=ssh", "train.steps=2e3", "data.format=bin" };
    if (!load_ok(&t, p, s4, 4)) {
        CU_ASSERT_EQUAL(t.schedule.kind_id, TOPO_SCHED_ZBH1);
        CU_ASSERT_EQUAL(t.launch_id, TOPO_LAUNCH_SSH);
        CU_ASSERT_EQUAL(t.train.steps, 2000);
        CU_ASSERT_EQUAL(t.data.kind, TOPO_DATA_BIN);
        topo_free(&t);
    }

    set_fail("train.lrr=1", "--set train.lrr=1: unknown key train.lrr", "lr");
    set_fail("nope=1", "--set nope=1: unknown key nope", NULL);
    set_fail("train.steps=abc", "--set train.steps=abc: train.steps expects an integer", "abc");
    set_fail("train.steps=1.5", "--set train.steps=1.5", NULL);
    set_fail("train.lr=1x", "--set train.lr=1x: train.lr expects a number", NULL);
    set_fail("train.lr=nan", "--set train.lr=nan", NULL);
    set_fail("model.tie_embeddings=yes", "model.tie_embeddings expects true or false", NULL);
    set_fail("stages.2.threads=1", "--set stages.2.threads=1: stages has no element 2", NULL);
    set_fail("stages.x.threads=1", "stages has no element x", NULL);
    set_fail("stages.-1.threads=1", "stages has no element -1", NULL);
    set_fail("stages.0.gpus=1", "unknown key stages.0.gpus", NULL);
    set_fail("model=3", "--set model=3: model is an object", NULL);
    set_fail("stages=3", "stages is an array", NULL);
    set_fail("stages.0=3", "--set stages.0=3: stages.0 is an object", NULL);
    set_fail("train.lr", "--set train.lr: expected KEY=VALUE", NULL);
    set_fail("=3", "expected KEY=VALUE", NULL);
    set_fail("train..lr=1", "malformed key", NULL);
    set_fail("model.dim.x=1", "model.dim is a value and has no field \"x\"", NULL);
    set_fail("schedule.kind=pipedream", "schedule.kind: expected one of", "pipedream");

    /* topo_set_data_path: relative to the current directory, kind re-derived */
    if (!load_ok(&t, p, NULL, 0)) {
        char err[ERR_LEN];
        CU_ASSERT_EQUAL(topo_set_data_path(&t, "data/x.bin", err), 0);
        CU_ASSERT_STRING_EQUAL(t.data.path, "data/x.bin");
        CU_ASSERT_EQUAL(t.data.kind, TOPO_DATA_BIN);
        CU_ASSERT_EQUAL(topo_set_data_path(&t, "", err), -1);
        topo_free(&t);
    }
}

/* ---------- canonical form and hash ---------- */

static void hash_of(const char *path, char *const *sets, int n, unsigned char out[32])
{
    topo t;
    memset(out, 0, 32);
    if (load_ok(&t, path, sets, n)) return;
    topo_hash(&t, out);
    topo_free(&t);
}

static void test_hash(void)
{
    unsigned char a[32], b[32], c[32];
    hash_of(write_tmp("h1.json", base_json), NULL, 0, a);
    /* keys reordered, other whitespace, defaults spelled out, 32 as 32.0 */
    const char *same = "{ \"stages\" : [ { \"layers\":\"embed,0-1\",\"port\":7001,\"host\":\"127.0.0.1\",\"threads\":1 },\n"
                       "{\"threads\":1,\"host\":\"127.0.0.1\",\"port\":7002,\"layers\":\"2-3,head\"}],\n"
                       "\t\"train\":{\"lr\":1e-2,\"micro_batches\":2,\"batch_size\":4,\"steps\":10,\"beta1\":0.9},\n"
                       "\"model\":{\"seq_len\":16,\"ffn_dim\":64,\"n_heads\":4,\"n_layers\":4,\"dim\":32.0,"
                       "\"vocab_size\":256,\"n_kv_heads\":4},\"schedule\":{\"kind\":\"gpipe\"}}";
    hash_of(write_tmp("h2.json", same), NULL, 0, b);
    CU_ASSERT_EQUAL(memcmp(a, b, 32), 0);
    /* an override equal to the file's value changes nothing */
    char *same_set[] = { "train.lr=0.01", "stages.1.threads=1" };
    hash_of(write_tmp("h1.json", base_json), same_set, 2, c);
    CU_ASSERT_EQUAL(memcmp(a, c, 32), 0);

    const char *changes[] = { "train.lr=0.02", "stages.1.threads=2", "model.tie_embeddings=true",
                              "data.path=x.txt", "train.seed=1", "description=x", "stages.0.port=7003",
                              "stages.1.host=127.0.0.2", "model.rope_theta=500000", "checkpoint.keep=3",
                              "train.micro_batches=4", "launch=ssh", "schedule.kind=1f1b" };
    int n = (int)(sizeof changes / sizeof *changes);
    unsigned char seen[16][32];
    for (int i = 0; i < n; i++) {
        char *set[] = { (char *)changes[i] };
        hash_of(write_tmp("h1.json", base_json), set, 1, seen[i]);
        CU_ASSERT(memcmp(a, seen[i], 32) != 0);
        for (int j = 0; j < i; j++) CU_ASSERT(memcmp(seen[j], seen[i], 32) != 0);
    }

    /* the canonical text: compact, sorted, defaults filled, parses back */
    topo t;
    if (load_ok(&t, write_tmp("h1.json", base_json), NULL, 0)) return;
    char *s = topo_canonical_json(&t);
    CU_ASSERT(strchr(s, ' ') == NULL && strchr(s, '\n') == NULL);
    CU_ASSERT(strstr(s, "\"checkpoint\"") < strstr(s, "\"coordinator\""));
    CU_ASSERT(strstr(s, "\"model\"") < strstr(s, "\"stages\""));
    json_error_t je;
    json_t *j = json_loads(s, 0, &je);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(j, "model"), "n_kv_heads")), 4);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_object_get(j, "schedule"), "kind")), "gpipe");
    CU_ASSERT_DOUBLE_EQUAL(json_real_value(json_object_get(json_object_get(j, "train"), "min_lr")), 0.001, 1e-15);
    json_decref(j);
    char hex[65];
    topo_hash_hex(&t, hex);
    CU_ASSERT_EQUAL(strlen(hex), 64);
    char want[3];
    snprintf(want, sizeof want, "%02x", a[0]);
    CU_ASSERT_EQUAL(memcmp(hex, want, 2), 0);
    free(s);
    topo_free(&t);
}

/* The canonical text of every shipped topology loads again and reproduces itself. */
/* "encrypt" (issue 14): absent, on exactly when a secret is set and a process
 * is off loopback; true always on; false off, with a warning naming the file
 * where it would be on; a non-boolean is refused; absent and false hash apart. */
static void test_encrypt(void)
{
    topo t;
    char warn[ERR_LEN];
    const char *p = write_tmp("enc.json", base_json);
    char *off_lo[] = { "stages.1.host=192.0.2.7", "stages.0.host=192.0.2.6", "coordinator.host=192.0.2.6" },
         *on[] = { "encrypt=true" }, *off[] = { "encrypt=false" },
         *off_both[] = { "encrypt=false", "stages.1.host=192.0.2.7", "stages.0.host=192.0.2.6",
                         "coordinator.host=192.0.2.6" };
    if (load_ok(&t, p, NULL, 0)) return;
    CU_ASSERT_EQUAL(t.encrypt, -1);
    CU_ASSERT_EQUAL(topo_encrypt(&t, 1, warn), 0); /* all on loopback */
    CU_ASSERT_EQUAL(warn[0], 0);
    topo_free(&t);
    if (load_ok(&t, p, off_lo, 3)) return;
    CU_ASSERT_EQUAL(topo_encrypt(&t, 1, warn), 1);
    CU_ASSERT_EQUAL(topo_encrypt(&t, 0, warn), 0); /* no secret (--insecure): nothing to key with */
    topo_free(&t);
    if (load_ok(&t, p, on, 1)) return;
    CU_ASSERT_EQUAL(t.encrypt, 1);
    CU_ASSERT_EQUAL(topo_encrypt(&t, 0, warn), 1);
    topo_free(&t);
    if (load_ok(&t, p, off_both, 4)) return;
    CU_ASSERT_EQUAL(topo_encrypt(&t, 1, warn), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(warn, "enc.json: encrypt: false"));
    topo_free(&t);
    if (load_ok(&t, p, off, 1)) return;
    CU_ASSERT_EQUAL(topo_encrypt(&t, 1, warn), 0);
    CU_ASSERT_EQUAL(warn[0], 0); /* on loopback it would be off anyway */
    topo_free(&t);
    set_fail("encrypt=maybe", "encrypt", "true or false");
    unsigned char h0[32], h1[32], h2[32];
    hash_of(p, NULL, 0, h0);
    hash_of(p, off, 1, h1);
    hash_of(p, on, 1, h2);
    CU_ASSERT(memcmp(h0, h1, 32) != 0 && memcmp(h0, h2, 32) != 0 && memcmp(h1, h2, 32) != 0);
}

static void test_canonical_roundtrip(void)
{
    const char *files[] = { "topologies/shakespeare-1stage.json", "topologies/shakespeare-2stage.json",
                            "topologies/shakespeare-4stage.json", "topologies/default.json",
                            "topologies/shakespeare-2x2.json" };
    for (int i = 0; i < 5; i++) {
        topo t, u;
        if (load_ok(&t, files[i], NULL, 0)) continue;
        char *s = topo_canonical_json(&t);
        if (!load_ok(&u, write_tmp("canon.json", s), NULL, 0)) {
            char *s2 = topo_canonical_json(&u);
            CU_ASSERT_STRING_EQUAL(s, s2);
            CU_ASSERT_STRING_EQUAL(t.data.path_given, u.data.path_given);
            free(s2);
            topo_free(&u);
        }
        free(s);
        topo_free(&t);
    }
}

/* ---------- layer notation and partition ---------- */

static void test_layer_notation(void)
{
    struct { const char *spec; int n; int units[8]; } good[] = {
        { "embed,0-3,head", 6, { 0, 1, 2, 3, 4, 5 } },
        { "embed,0-1", 3, { 0, 1, 2 } },
        { "2-3,head", 3, { 3, 4, 5 } },
        { " embed , 2 ", 2, { 0, 3 } },
        { "1-1", 1, { 2 } },
        { "head", 1, { 5 } },
        { "0,2,3", 3, { 1, 3, 4 } },
        { "1|2", 2, { 2, 3 } },
    };
    char err[ERR_LEN];
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        int *u = NULL, n = 0;
        int rc = topo_parse_layers(good[i].spec, 4, &u, &n, err);
        if (rc) fprintf(stderr, "\n  \"%s\": %s\n", good[i].spec, err);
        CU_ASSERT_EQUAL(rc, 0);
        CU_ASSERT_EQUAL(n, good[i].n);
        if (!rc && n == good[i].n) CU_ASSERT_EQUAL(memcmp(u, good[i].units, sizeof(int) * (size_t)n), 0);
        free(u);
    }
    const char *bad[] = { "0-", "3-1", "emb", "0,,1", "", ",", "-1", "1-2-3", "4", "0x1", "+1", "embed,embed",
                          "1,0", "99999999999", "0-4", "head,embed", "0 1", "Embed", "1-", "-", "0,", ",0",
                          "1|", "|1", "1||2", "2|1" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int *u = (int *)1, n = -1;
        err[0] = 0;
        int rc = topo_parse_layers(bad[i], 4, &u, &n, err);
        if (rc != -1) fprintf(stderr, "\n  \"%s\" was accepted\n", bad[i]);
        CU_ASSERT_EQUAL(rc, -1);
        CU_ASSERT(err[0] != 0);
        CU_ASSERT_PTR_NULL(u);
    }
    int *u;
    int n;
    CU_ASSERT_EQUAL(topo_parse_layers("3-1", 4, &u, &n, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "backwards"));
    CU_ASSERT_EQUAL(topo_parse_layers("0-7", 4, &u, &n, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "block 7 does not exist"));
}

static void test_partition(void)
{
    set_fail("stages.1.layers=1-3,head", "stages.1.layers: block 1 is held by stage 0 and stage 1", NULL);
    set_fail("stages.1.layers=3,head", "stages: block 2 is held by no stage", NULL);
    set_fail("stages.1.layers=embed,2-3,head", "the embedding is held by stage 0 and stage 1", NULL);
    set_fail("stages.1.layers=0-", "stages.1.layers:", "\"0-\"");
    set_fail("stages.1.layers=2-3,emb", "stages.1.layers:", "\"emb\"");
    set_fail("stages.0.layers=embed,0-2", "block 2 is held by stage 0 and stage 1", NULL);
    const char *p = write_tmp("base.json", base_json);
    char *swapped[] = { "stages.0.layers=2-3,head", "stages.1.layers=embed,0-1" };
    expect_fail(p, swapped, 2, "stages.0.layers: stages must hold consecutive layers in order", "embedding");
    char *split[] = { "stages.0.layers=embed,0,2", "stages.1.layers=1,3,head" };
    expect_fail(p, split, 2, "stages.0.layers: \"embed,0,2\" is not one contiguous range", NULL);
    char *many[] = { "model.n_layers=1", "stages.0.layers=embed", "stages.1.layers=0,head" };
    topo t;
    if (!load_ok(&t, p, many, 3)) topo_free(&t);
    char *toomany[] = { "model.n_layers=0" };
    expect_fail(p, toomany, 1, "model.n_layers", NULL);

    /* interleaved: 2 stages x 2 chunks over 6 units */
    char *il[] = { "schedule.kind=interleaved", "stages.0.layers=embed,0,2", "stages.1.layers=1,3,head" };
    if (!load_ok(&t, p, il, 3)) {
        CU_ASSERT_EQUAL(t.chunks_per_stage, 2);
        CU_ASSERT_EQUAL(t.stages[0].n_chunks, 2);
        CU_ASSERT_EQUAL(t.stages[0].chunks[0].first_unit, 0);
        CU_ASSERT_EQUAL(t.stages[0].chunks[0].n_units, 2);
        CU_ASSERT_EQUAL(t.stages[0].chunks[1].virtual_stage, 2);
        CU_ASSERT_EQUAL(t.stages[1].chunks[0].virtual_stage, 1);
        CU_ASSERT_EQUAL(t.stages[1].chunks[1].virtual_stage, 3);
        CU_ASSERT_EQUAL(t.stages[1].chunks[1].n_units, 2);
        int chunk = -1;
        CU_ASSERT_EQUAL(topo_stage_of_virtual(&t, 3, &chunk), 1);
        CU_ASSERT_EQUAL(chunk, 1);
        CU_ASSERT_EQUAL(topo_stage_of_virtual(&t, 4, &chunk), -1);
        CU_ASSERT_EQUAL(topo_stage_of_unit(&t, 3), 0);
        CU_ASSERT_EQUAL(topo_stage_of_unit(&t, 2), 1);
        topo_free(&t);
    }
    /* zb-v: the V placement, stage s holds virtual stages s and 2P-1-s; the last
     * stage's touching chunks are cut with '|' */
    char *zv[] = { "schedule.kind=zb-v", "stages.0.layers=embed,0,3,head", "stages.1.layers=1|2" };
    if (!load_ok(&t, p, zv, 3)) {
        CU_ASSERT_EQUAL(t.placement, SCHED_PLACE_V);
        CU_ASSERT_EQUAL(t.chunks_per_stage, 2);
        CU_ASSERT_EQUAL(t.stages[1].n_chunks, 2);
        CU_ASSERT_EQUAL(t.stages[0].chunks[1].virtual_stage, 3);
        CU_ASSERT_EQUAL(t.stages[1].chunks[0].virtual_stage, 1);
        CU_ASSERT_EQUAL(t.stages[1].chunks[1].virtual_stage, 2);
        int chunk = -1;
        CU_ASSERT_EQUAL(topo_stage_of_virtual(&t, 3, &chunk), 0);
        CU_ASSERT_EQUAL(chunk, 1);
        CU_ASSERT_EQUAL(topo_stage_of_virtual(&t, 2, &chunk), 1);
        CU_ASSERT_EQUAL(chunk, 1);
        topo_free(&t);
    }
    char *zv_nocut[] = { "schedule.kind=zb-v", "stages.0.layers=embed,0,3,head", "stages.1.layers=1-2" };
    expect_fail(p, zv_nocut, 3, "stages.1.layers", "cut them with '|'");
    char *zv_loop[] = { "schedule.kind=zb-v", "stages.0.layers=embed,0,2", "stages.1.layers=1,3,head" };
    expect_fail(p, zv_loop, 3, "in a V placement chunk 1 of stage 1 is virtual stage 2", NULL);
    char *il_v[] = { "schedule.kind=interleaved", "stages.0.layers=embed,0,3,head", "stages.1.layers=1|2" };
    expect_fail(p, il_v, 3, "interleaved chunk 1 of stage 0 is virtual stage 2", NULL);
    /* with 3 stages the chunks can come in the wrong order: A B C A C B */
    const char *three = "{" BASE_MODEL ", \"train\": {\"steps\": 1, \"batch_size\": 3, \"lr\": 0.1},"
        "\"schedule\": {\"kind\": \"interleaved\"}, \"stages\": ["
        "{\"host\": \"127.0.0.1\", \"port\": 7001, \"layers\": \"embed,2\"},"
        "{\"host\": \"127.0.0.1\", \"port\": 7002, \"layers\": \"0,head\"},"
        "{\"host\": \"127.0.0.1\", \"port\": 7003, \"layers\": \"1,3\"}]}";
    const char *p3 = write_tmp("three.json", three);
    expect_fail(p3, NULL, 0, "stages.1.layers: interleaved chunk 1 of stage 1 is virtual stage 4", "block 3");
    /* (interleaved also needs a multiple of 3 micro-batches: run could not run 1) */
    char *fixed[] = { "stages.1.layers=0,3", "stages.2.layers=1,head", "train.micro_batches=3" };
    if (!load_ok(&t, p3, fixed, 3)) {
        CU_ASSERT_EQUAL(topo_stage_of_virtual(&t, 4, NULL), 1);
        CU_ASSERT_EQUAL(t.stages[1].chunks[1].virtual_stage, 4);
        topo_free(&t);
    }
    char *il_count[] = { "schedule.kind=interleaved", "stages.0.layers=embed,0,2,head", "stages.1.layers=1,3" };
    expect_fail(p, il_count, 3, "stages.", "chunk");
    char *il_one[] = { "schedule.kind=interleaved" };
    expect_fail(p, il_one, 1, "stages.0.layers: schedule \"interleaved\" needs at least 2", NULL);
    char *il_chunks[] = { "schedule.kind=interleaved", "schedule.chunks=3", "stages.0.layers=embed,0,2",
                          "stages.1.layers=1,3,head" };
    expect_fail(p, il_chunks, 4, "schedule.chunks: expected 2", "found 3");
    /* a schedule file accepts either layout */
    char *file_il[] = { "schedule.file=plan.json", "stages.0.layers=embed,0,2", "stages.1.layers=1,3,head" };
    if (!load_ok(&t, p, file_il, 3)) {
        CU_ASSERT_EQUAL(t.chunks_per_stage, 2);
        topo_free(&t);
    }
    /* more stages than units */
    const char *seven = "{" BASE_MODEL "," BASE_TRAIN ", \"stages\": ["
        "{\"host\": \"127.0.0.1\", \"port\": 7001, \"layers\": \"embed\"},"
        "{\"host\": \"127.0.0.1\", \"port\": 7002, \"layers\": \"0\"},"
        "{\"host\": \"127.0.0.1\", \"port\": 7003, \"layers\": \"1\"},"
        "{\"host\": \"127.0.0.1\", \"port\": 7004, \"layers\": \"2\"},"
        "{\"host\": \"127.0.0.1\", \"port\": 7005, \"layers\": \"3\"},"
        "{\"host\": \"127.0.0.1\", \"port\": 7006, \"layers\": \"head\"},"
        "{\"host\": \"127.0.0.1\", \"port\": 7007, \"layers\": \"head\"}]}";
    expect_fail(write_tmp("seven.json", seven), NULL, 0, "stages: 7 stages but the model has only 6 units", NULL);
}

/* ---------- helpers and the partition table ---------- */

static void test_helpers(void)
{
    topo t;
    if (load_ok(&t, "topologies/shakespeare-4stage.json", NULL, 0)) return;
    int want[6] = { 0, 0, 1, 2, 3, 3 };
    for (int u = 0; u < 6; u++) CU_ASSERT_EQUAL(topo_stage_of_unit(&t, u), want[u]);
    CU_ASSERT_EQUAL(topo_stage_of_unit(&t, 6), -1);
    CU_ASSERT_EQUAL(topo_stage_of_unit(&t, -1), -1);
    CU_ASSERT_EQUAL(topo_n_units(&t), 6);
    CU_ASSERT_EQUAL(topo_micro_batch(&t), 3);
    CU_ASSERT_EQUAL(topo_max_tensor_bytes(&t), (size_t)3 * 64 * 128 * 4);
    CU_ASSERT_EQUAL(topo_find_stage(&t, "127.0.0.1", t.stages[2].port), 2);
    CU_ASSERT_EQUAL(topo_find_stage(&t, "127.0.0.2", t.stages[2].port), -1);
    int chunk = -1;
    CU_ASSERT_EQUAL(topo_stage_of_virtual(&t, 2, &chunk), 2);
    CU_ASSERT_EQUAL(chunk, 0);

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    topo_print_partition(&t, f);
    fclose(f);
    for (int s = 0; s < t.n_stages; s++) {
        char addr[64];
        snprintf(addr, sizeof addr, "127.0.0.1:%d", t.stages[s].port);
        CU_ASSERT_PTR_NOT_NULL(strstr(buf, addr));
        CU_ASSERT_PTR_NOT_NULL(strstr(buf, t.stages[s].layers));
    }
    /* stage 0 holds the embedding and block 0: its parameter count is printed */
    double p0 = (double)(model_unit_params(&t.model, 0) + model_unit_params(&t.model, 1));
    char want_p[32];
    snprintf(want_p, sizeof want_p, "%.2f k", p0 / 1000);
    if (!strstr(buf, want_p)) fprintf(stderr, "\n  %s not in:\n%s", want_p, buf);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, want_p));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "96.0 KiB")); /* 3 x 64 x 128 floats */
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "total"));
    char hex[65];
    topo_hash_hex(&t, hex);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, hex));
    free(buf);
    topo_free(&t);
}

/* ---------- replicas (the data-parallel grid) ---------- */

/* A topology of the base model with P stages (2 or 3) of R replicas each on
 * 127.0.0.1, ports 7100 + rank; batch_size B, micro_batches M. */
static const char *grid_json(int P, int R, int B, int M)
{
    static char buf[4096];
    static const char *const layers2[] = { "embed,0-1", "2-3,head" };
    static const char *const layers3[] = { "embed,0", "1-2", "3,head" };
    size_t k = (size_t)snprintf(buf, sizeof buf, "{" BASE_MODEL ",\n\"train\": {\"steps\": 10, \"batch_size\": %d, "
                                "\"micro_batches\": %d, \"lr\": 0.01},\n\"stages\": [", B, M);
    for (int s = 0; s < P; s++) {
        k += (size_t)snprintf(buf + k, sizeof buf - k, "%s{\"layers\": \"%s\", \"replicas\": [", s ? ", " : "",
                              P == 2 ? layers2[s] : layers3[s]);
        for (int r = 0; r < R; r++)
            k += (size_t)snprintf(buf + k, sizeof buf - k, "%s{\"host\": \"127.0.0.1\", \"port\": %d}", r ? ", " : "",
                                  7100 + r * P + s);
        k += (size_t)snprintf(buf + k, sizeof buf - k, "]}");
    }
    snprintf(buf + k, sizeof buf - k, "]}\n");
    return buf;
}

static void test_replicas_parse(void)
{
    topo t;
    if (!load_ok(&t, "topologies/shakespeare-2x2.json", NULL, 0)) {
        CU_ASSERT_EQUAL(t.n_stages, 2);
        CU_ASSERT_EQUAL(t.n_replicas, 2);
        for (int s = 0; s < 2; s++) {
            CU_ASSERT_EQUAL(t.stages[s].n_replicas, 2);
            CU_ASSERT(t.stages[s].replicated);
            /* host/port/threads are replica 0's, for code that knows no replicas */
            CU_ASSERT_STRING_EQUAL(t.stages[s].host, t.stages[s].replicas[0].host);
            CU_ASSERT_EQUAL(t.stages[s].port, t.stages[s].replicas[0].port);
            CU_ASSERT_EQUAL(t.stages[s].threads, 1);
        }
        CU_ASSERT_EQUAL(t.stages[0].replicas[1].port, 29553);
        CU_ASSERT_EQUAL(t.stages[1].replicas[1].port, 29554);
        CU_ASSERT_EQUAL(topo_micro_batch(&t), 3); /* 24 / (2 replicas x 4 micro-batches) */
        CU_ASSERT(topo_all_loopback(&t));
        topo_free(&t);
    }
    /* the single-process form is one replica */
    if (!load_ok(&t, write_tmp("base.json", base_json), NULL, 0)) {
        CU_ASSERT_EQUAL(t.n_replicas, 1);
        CU_ASSERT_EQUAL(t.stages[1].n_replicas, 1);
        CU_ASSERT_FALSE(t.stages[1].replicated);
        CU_ASSERT_STRING_EQUAL(t.stages[1].replicas[0].host, "127.0.0.1");
        CU_ASSERT_EQUAL(t.stages[1].replicas[0].port, 7002);
        CU_ASSERT_EQUAL(t.stages[1].replicas[0].threads, 1);
        /* its canonical text (and so its hash) has no replicas key */
        char *c = topo_canonical_json(&t);
        CU_ASSERT_PTR_NULL(strstr(c, "replicas"));
        free(c);
        topo_free(&t);
    }
    /* threads per replica, overrides into a replica, canonical text reloads to itself */
    const char *p = write_tmp("g.json", grid_json(2, 2, 8, 2));
    char *sets[] = { "stages.0.replicas.1.threads=3", "stages.1.replicas.1.port=7200" };
    topo u;
    if (!load_ok(&t, p, sets, 2)) {
        CU_ASSERT_EQUAL(t.stages[0].replicas[1].threads, 3);
        CU_ASSERT_EQUAL(t.stages[0].replicas[0].threads, 1);
        CU_ASSERT_EQUAL(t.stages[1].replicas[1].port, 7200);
        char *c = topo_canonical_json(&t);
        CU_ASSERT_PTR_NOT_NULL(strstr(c, "\"replicas\""));
        if (!load_ok(&u, write_tmp("gc.json", c), NULL, 0)) {
            char *c2 = topo_canonical_json(&u);
            CU_ASSERT_STRING_EQUAL(c, c2);
            free(c2);
            topo_free(&u);
        }
        free(c);
        topo_free(&t);
    }
    unsigned char a[32], b[32];
    hash_of(p, NULL, 0, a);
    char *one[] = { "stages.0.replicas.1.threads=2" };
    hash_of(p, one, 1, b);
    CU_ASSERT(memcmp(a, b, 32) != 0);
}

static void test_replicas_errors(void)
{
    const char *g = write_tmp("g.json", grid_json(2, 2, 8, 2));
    char *s1[] = { "stages.1.replicas.0.port=0" };
    expect_fail(g, s1, 1, "stages.1.replicas.0.port: expected an integer in 1..65535", NULL);
    char *s2[] = { "stages.0.replicas.1.port=7100" };
    expect_fail(g, s2, 1, "stages.0.replicas.1.port: 127.0.0.1:7100 is also used by stages.0.replicas.0", NULL);
    char *s3[] = { "stages.1.replicas.1.port=7102" }; /* replica 1 of stage 0 */
    expect_fail(g, s3, 1, "stages.1.replicas.1.port: 127.0.0.1:7102 is also used by stages.0.replicas.1", NULL);
    char *s4[] = { "stages.0.replicas.1.host=10.0.0.1" };
    expect_fail(g, s4, 1, "loopback", "stages.0.replicas.1.host (10.0.0.1)");
    char *s5[] = { "coordinator.port=7103" };
    expect_fail(g, s5, 1, "stages.1.replicas.1.port: 127.0.0.1:7103 is also the coordinator's address", NULL);
    char *s6[] = { "stages.0.replicas.0.host=node-1" };
    expect_fail(g, s6, 1, "stages.0.replicas.0.host: expected a numeric IPv4 or IPv6 address", NULL);
    char *s7[] = { "stages.0.threads=2" };
    expect_fail(g, s7, 1, "stages.0.threads: give either host, port and threads", "or replicas");
    char *s8[] = { "stages.1.replicas.2.port=7000" };
    expect_fail(g, s8, 1, "stages.1.replicas has no element 2", NULL);
    /* batch_size is the global batch: a multiple of replicas x micro_batches */
    expect_fail(write_tmp("gb.json", grid_json(2, 2, 6, 2)), NULL, 0,
                "train.batch_size: expected a multiple of 2 replicas x train.micro_batches 2 = 4", "found 6");
    expect_fail(write_tmp("gb.json", grid_json(3, 3, 8, 1)), NULL, 0, "train.batch_size", "= 3");
    /* the same count R for every stage */
    char text[4096];
    snprintf(text, sizeof text, "%s", grid_json(2, 2, 8, 2));
    char *cut = strstr(text, ", {\"host\": \"127.0.0.1\", \"port\": 7103}");
    CU_ASSERT_PTR_NOT_NULL_FATAL(cut);
    memmove(cut, cut + strlen(", {\"host\": \"127.0.0.1\", \"port\": 7103}"),
            strlen(cut + strlen(", {\"host\": \"127.0.0.1\", \"port\": 7103}")) + 1);
    expect_fail(write_tmp("gr.json", text), NULL, 0, "stages.1.replicas: expected 2 replica(s) like stages.0",
                "found 1");
    expect_fail(write_tmp("ge.json", "{" BASE_MODEL "," BASE_TRAIN ", \"stages\": [{\"layers\": \"embed,0-3,head\", "
                          "\"replicas\": []}]}"), NULL, 0, "stages.0.replicas: expected a non-empty array", NULL);
    expect_fail(write_tmp("gm.json", "{" BASE_MODEL "," BASE_TRAIN ", \"stages\": [{\"layers\": \"embed,0-3,head\", "
                          "\"replicas\": [{\"port\": 7001}]}]}"), NULL, 0, "stages.0.replicas.0.host: missing", NULL);
    expect_fail(write_tmp("gu.json", "{" BASE_MODEL "," BASE_TRAIN ", \"stages\": [{\"layers\": \"embed,0-3,head\", "
                          "\"replicas\": [{\"host\": \"::1\", \"port\": 7001, \"gpu\": 0}]}]}"), NULL, 0,
                "stages.0.replicas.0.gpu: unknown key", NULL);
    expect_fail(write_tmp("gh.json", "{" BASE_MODEL "," BASE_TRAIN ", \"stages\": [{\"layers\": \"embed,0-3,head\", "
                          "\"port\": 7001, \"replicas\": [{\"host\": \"::1\", \"port\": 7002}]}]}"), NULL, 0,
                "stages.0.port: give either", NULL);
    expect_fail(write_tmp("gn.json", "{" BASE_MODEL "," BASE_TRAIN ", \"stages\": [{\"layers\": \"embed,0-3,head\", "
                          "\"port\": 7001}]}"), NULL, 0, "stages.0.host: missing", "stages.0.replicas");
}

/* rank = replica x P + stage, both ways, for R=2 P=2, R=2 P=3, R=3 P=3 and R=1 */
static void test_rank_mapping(void)
{
    const int grids[][2] = { { 2, 2 }, { 3, 2 }, { 3, 3 }, { 2, 1 } };
    for (int g = 0; g < 4; g++) {
        int P = grids[g][0], R = grids[g][1];
        topo t;
        if (load_ok(&t, write_tmp("rank.json", grid_json(P, R, 12 * R, 2)), NULL, 0)) continue;
        CU_ASSERT_EQUAL(t.n_replicas, R);
        int seen[9] = { 0 };
        char err[ERR_LEN];
        for (int rank = 0; rank < P * R; rank++) {
            int s = -1, r = -1;
            CU_ASSERT_EQUAL_FATAL(topo_rank_identity(&t, rank, &s, &r, err), 0);
            CU_ASSERT_EQUAL(s, rank % P);
            CU_ASSERT_EQUAL(r, rank / P);
            CU_ASSERT_EQUAL(topo_rank_of(&t, s, r), rank);
            /* the launcher's rank r*P+s is the process listening on 7100 + r*P+s */
            CU_ASSERT_EQUAL(t.stages[s].replicas[r].port, 7100 + rank);
            seen[s * R + r]++;
        }
        for (int i = 0; i < P * R; i++) CU_ASSERT_EQUAL(seen[i], 1);
        int s = -1, r = -1;
        CU_ASSERT_EQUAL(topo_rank_identity(&t, P * R, &s, &r, err), -1);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "outside the grid"));
        CU_ASSERT_EQUAL(topo_rank_identity(&t, -1, &s, &r, err), -1);
        CU_ASSERT_EQUAL(topo_rank_of(&t, P, 0), -1);
        CU_ASSERT_EQUAL(topo_rank_of(&t, 0, R), -1);
        /* the global batch splits into R contiguous, disjoint shares covering it */
        int next = 0;
        for (int rr = 0; rr < R; rr++) {
            int first = -1, n = topo_replica_batch(&t, rr, &first);
            CU_ASSERT_EQUAL(first, next);
            CU_ASSERT_EQUAL(n, 12);
            next += n;
        }
        CU_ASSERT_EQUAL(next, t.train.batch_size);
        CU_ASSERT_EQUAL(topo_replica_batch(&t, R, NULL), -1);
        CU_ASSERT_EQUAL(topo_micro_batch(&t), 6);
        topo_free(&t);
    }
    topo t;
    char err[ERR_LEN];
    int s, r;
    if (!load_ok(&t, write_tmp("rank.json", grid_json(2, 2, 8, 2)), NULL, 0)) {
        CU_ASSERT(topo_rank_identity(&t, 3, &s, &r, err) == 0 && s == 1 && r == 1);
        CU_ASSERT(topo_rank_identity(&t, 2, &s, &r, err) == 0 && s == 0 && r == 1);
        topo_free(&t);
    }
    if (!load_ok(&t, write_tmp("rank.json", grid_json(3, 3, 9, 1)), NULL, 0)) {
        CU_ASSERT(topo_rank_identity(&t, 5, &s, &r, err) == 0 && s == 2 && r == 1);
        CU_ASSERT(topo_rank_identity(&t, 7, &s, &r, err) == 0 && s == 1 && r == 2);
        topo_free(&t);
    }
}

/* check's grid: every process with its address, the gradient bytes per group */
static void test_print_grid(void)
{
    topo t;
    if (load_ok(&t, "topologies/shakespeare-2x2.json", NULL, 0)) return;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    topo_print_partition(&t, f);
    fclose(f);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "grid: 2 stage(s) x 2 replica(s) = 4 processes"));
    for (int s = 0; s < 2; s++)
        for (int r = 0; r < 2; r++) {
            char row[128];
            snprintf(row, sizeof row, "%-5d %-5d %-7d 127.0.0.1:%d", r * 2 + s, s, r, t.stages[s].replicas[r].port);
            if (!strstr(buf, row)) fprintf(stderr, "\n  \"%s\" not in:\n%s", row, buf);
            CU_ASSERT_PTR_NOT_NULL(strstr(buf, row));
        }
    double p1 = 0;
    for (int i = 0; i < t.stages[1].n_units; i++) p1 += (double)model_unit_params(&t.model, t.stages[1].units[i]);
    char want[64], num[32]; /* fp32 gradients of stage 1's parameters */
    snprintf(num, sizeof num, "%.1f MiB", p1 * 4 / 1048576);
    snprintf(want, sizeof want, "%-5d %-7d %18s", 1, 1, num);
    if (!strstr(buf, want)) fprintf(stderr, "\n  \"%s\" not in:\n%s", want, buf);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, want));
    free(buf);
    topo_free(&t);
}

/* topo_allreduce_plan: every unit's buckets, on its stage, with the bytes of its
 * parameters; a chunk's units ready from the last down (the first at the end of
 * the weight pass); tied embeddings wait for the head's stage; v != the layout
 * spreads each stage's units over the schedule's chunks. */
static void test_allreduce_plan(void)
{
    topo t;
    char *sets[] = { "train.bucket_mb=0.1", "model.tie_embeddings=true" };
    char err[ERR_LEN];
    for (int tied = 0; tied < 2; tied++) {
        if (load_ok(&t, "topologies/shakespeare-2x2.json", sets, 1 + tied)) return;
        sched_allreduce *a = topo_allreduce_plan(&t, 1, err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(a);
        CU_ASSERT_EQUAL(a->replicas, 2);
        CU_ASSERT_EQUAL(a->zero, 0);
        size_t n = 0, i = 0;
        for (int u = 0; u < topo_n_units(&t); u++) {
            int nb = topo_unit_buckets(&t, u, -1, NULL, NULL);
            CU_ASSERT(u == 0 || u == topo_n_units(&t) - 1 || nb == 9); /* 213,248 floats in runs of 26,214 */
            double prev = 2;
            for (int b = 0; b < nb && i < a->n; b++, i++) {
                size_t off, len;
                topo_unit_buckets(&t, u, b, &off, &len);
                const sched_bucket *k = &a->b[i];
                CU_ASSERT(k->stage == topo_stage_of_unit(&t, u) && k->chunk == 0);
                CU_ASSERT_DOUBLE_EQUAL(k->bytes, (double)len * 4, 0);
                CU_ASSERT(k->frac > 0 && k->frac <= 1 && k->frac <= prev);
                CU_ASSERT_EQUAL(k->tied, tied && u == 0);
                if (u == 0 || u == 3) CU_ASSERT_DOUBLE_EQUAL(k->frac, 1, 0); /* first unit of its stage */
                if (u == 2 || u == 5) CU_ASSERT(k->frac < 0.6);              /* last of its stage: walked first */
                prev = k->frac;
            }
            n += (size_t)nb;
        }
        CU_ASSERT_EQUAL(a->n, n);
        CU_ASSERT_EQUAL(a->tied_from, tied ? 1 : -1);
        CU_ASSERT_DOUBLE_EQUAL(a->tied_bytes, tied ? 256.0 * 128 * 4 : 0, 0);
        sched_allreduce_free(a);
        /* two chunks per stage for a schedule that departs from the layout:
         * stage 0's units {embed}, {0, 1}; stage 1's {2}, {3, head} */
        a = topo_allreduce_plan(&t, 2, err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(a);
        int nb0 = topo_unit_buckets(&t, 0, -1, NULL, NULL);
        for (i = 0; i < a->n; i++) {
            int want = a->b[i].stage == 0 ? i >= (size_t)nb0 : i >= (size_t)nb0 + 18 + 9;
            CU_ASSERT_EQUAL(a->b[i].chunk, want);
        }
        CU_ASSERT_DOUBLE_EQUAL(a->b[0].frac, 1, 0);
        CU_ASSERT_DOUBLE_EQUAL(a->b[nb0].frac, 1, 0);
        sched_allreduce_free(a);
        /* train.zero reaches the simulator (its all-gather follows the optimizer) */
        t.train.zero = 1;
        a = topo_allreduce_plan(&t, 1, err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(a);
        CU_ASSERT_EQUAL(a->zero, 1);
        sched_allreduce_free(a);
        topo_free(&t);
    }
}

/* A bucket count beyond int: one-float buckets (train.bucket_mb 1e-30) of a model
 * whose blocks hold more than 2^31 floats each. The count was cast to int, so it
 * wrapped: "embed,0-2" came to a negative count, passed the TOPO_MAX_BUCKETS check
 * and the topology loaded; "embed,0-1" was refused naming a wrong count. Now both
 * are refused with the exact count. */
static void test_bucket_count_overflow(void)
{
    const char *path = "topologies/shakespeare-2x2.json";
    char *sets[] = { "model.dim=32768", "model.n_heads=64", "model.n_kv_heads=64", "model.ffn_dim=65536",
                     "train.bucket_mb=1e-30", "stages.0.layers=embed,0-2", "stages.1.layers=3,head" };
    model_config m = { .dim = 32768, .n_layers = 4, .n_heads = 64, .n_kv_heads = 64, .ffn_dim = 65536,
                       .vocab_size = 256, .seq_len = 64 };
    for (int last = 2; last >= 1; last--) {
        size_t n = 0;
        for (int u = 0; u <= last + 1; u++) n += model_unit_params(&m, u); /* embed, blocks 0..last */
        char want[128], l0[64], l1[64];
        snprintf(want, sizeof want, "cuts stage 0's gradients into %zu buckets", n);
        snprintf(l0, sizeof l0, "stages.0.layers=embed,0-%d", last);
        snprintf(l1, sizeof l1, "stages.1.layers=%d-3,head", last + 1);
        sets[5] = l0;
        sets[6] = l1;
        expect_fail_at(path, sets, 7, "train.bucket_mb", want, __LINE__);
    }
}

/* tests/bad/topology/NAME.json with NAME.json.expect: the load must fail with a
 * message starting with the file's path and containing the .expect's first line. */
static void check_bad_topology(const char *path, const char *want) { expect_fail_at(path, NULL, 0, want, NULL, __LINE__); }

static void test_bad_corpus(void) { CU_ASSERT(tests_each_expect("tests/bad/topology", check_bad_topology) >= 8); }

/* topo_build_schedule: the one builder; a schedule file is read relative to the
 * topology, checked against it and played, and failures name file and field. */
static void test_build_schedule(void)
{
    const char *p = write_tmp("base.json", base_json);
    write_tmp("ok.json", "{\"kind\": \"mine\", \"stages\": [[\"F0\",\"F1\",\"BW0\",\"BW1\"],[\"F0\",\"BW0\",\"F1\",\"BW1\"]]}");
    write_tmp("dead.json", "{\"stages\": [[\"F0\",\"BW0\",\"F1\",\"BW1\"],[\"F1\",\"F0\",\"BW0\",\"BW1\"]]}");
    write_tmp("three.json", "{\"stages\": [[\"F0\",\"BW0\",\"F1\",\"BW1\"],[\"F0\",\"BW0\",\"F1\",\"BW1\"],"
                            "[\"F0\",\"BW0\",\"F1\",\"BW1\"]]}");
    char err[ERR_LEN], *detail = NULL;
    topo t;
    sched_schedule *s = NULL;
    char *kind[] = { "schedule.kind=zb-h1" };
    if (!load_ok(&t, p, kind, 1)) {
        CU_ASSERT_EQUAL(topo_build_schedule(&t, NULL, &s, err), 0);
        if (s) { CU_ASSERT_STRING_EQUAL(s->kind, "zb-h1"); CU_ASSERT_EQUAL(s->n_micro, 2); }
        sched_free(s);
        /* schedule's departures: another kind, more chunks than the layout */
        topo_sched_opts o = { "interleaved", 2, NULL };
        CU_ASSERT_EQUAL(topo_build_schedule(&t, &o, &s, err), 0);
        if (s) CU_ASSERT_EQUAL(s->n_chunks, 2);
        sched_free(s);
        topo_free(&t);
    }
    char *ok[] = { "schedule.file=ok.json" };
    if (!load_ok(&t, p, ok, 1)) {
        CU_ASSERT_EQUAL(topo_build_schedule(&t, NULL, &s, err), 0);
        if (s) CU_ASSERT_STRING_EQUAL(s->kind, "mine");
        sched_free(s);
        topo_free(&t);
    }
    char *dead[] = { "schedule.file=dead.json" };
    if (!load_ok(&t, p, dead, 1)) {
        CU_ASSERT_EQUAL(topo_build_schedule(&t, NULL, &s, err), -1);
        CU_ASSERT_PTR_NULL(s);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "base.json: schedule.file: "));
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "dead.json"));
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "deadlock"));
        topo_sched_opts o = { NULL, 0, &detail };
        CU_ASSERT_EQUAL(topo_build_schedule(&t, &o, &s, err), -1);
        CU_ASSERT_PTR_NOT_NULL(detail && strstr(detail, "[BW0]"));
        free(detail);
        topo_free(&t);
    }
    char *three[] = { "schedule.file=three.json" };
    if (!load_ok(&t, p, three, 1)) {
        CU_ASSERT_EQUAL(topo_build_schedule(&t, NULL, &s, err), -1);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "is for 3 stage(s)"));
        topo_free(&t);
    }
    char *missing[] = { "schedule.file=nothere.json" };
    if (!load_ok(&t, p, missing, 1)) { /* topo_load reads no file: the builder does */
        CU_ASSERT_EQUAL(topo_build_schedule(&t, NULL, &s, err), -1);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "nothere.json"));
        topo_free(&t);
    }
    /* a kind's constraints are topo_load's, naming the field */
    char *zb[] = { "schedule.kind=zb-h1", "train.micro_batches=1" };
    expect_fail(p, zb, 2, "train.micro_batches: schedule \"zb-h1\"", NULL);
}

static void cleanup(void) { tests_rm_dir(tmpdir); }

int main(void)
{
    CU_TestInfo tests[] = {
        { "shipped topologies load", test_shipped },
        { "the all-reduce's buckets for the simulator", test_allreduce_plan },
        { "a bucket count beyond int is counted, and refused", test_bucket_count_overflow },
        { "defaults", test_defaults },
        { "recompute: train default, stage override, hash", test_recompute },
        { "links.burst: hash unchanged when absent or 0, bad values", test_links_burst },
        { "invalid JSON and missing file", test_json_errors },
        { "unknown keys at every level", test_unknown_keys },
        { "wrong types", test_types },
        { "missing required fields", test_missing },
        { "zero, negative and absurd sizes", test_sizes },
        { "model configuration rules", test_model_rules },
        { "batch and schedule rules", test_train_rules },
        { "hosts and ports", test_addresses },
        { "--set overrides", test_overrides },
        { "canonical JSON and hash", test_hash },
        { "encrypt: default, true, false (warning), hash", test_encrypt },
        { "canonical JSON reloads to itself", test_canonical_roundtrip },
        { "layer notation", test_layer_notation },
        { "partition into stages and chunks", test_partition },
        { "helpers and partition table", test_helpers },
        { "tests/bad/topology corpus", test_bad_corpus },
        { "topo_build_schedule: kinds, files, failures", test_build_schedule },
        { "replicas: parse, forms, overrides, canonical text", test_replicas_parse },
        { "replicas: validation errors name the field", test_replicas_errors },
        { "rank = replica x P + stage; batch shares", test_rank_mapping },
        { "check's grid table", test_print_grid },
        CU_TEST_INFO_NULL,
    };
    int rc = tests_run("topo", tests);
    cleanup();
    return rc;
}
