/* test_checkpoint.c — checkpoints: save → load is bitwise (weights, AdamW
 * moments, step, sampler state), loading into a part with a subset of units
 * merges correctly, pruning keeps the newest, and tampering is refused. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/optim.h"
#include "model/util.h"
#include "run/run_ckpt.h"
#include "topo/topo.h"
#include "tests/tests.h"

static char root[256];

static void fill(float *a, size_t n, uint64_t seed)
{
    rng_t r = { seed };
    for (size_t i = 0; i < n; i++) a[i] = (float)(rng_uniform(&r) - 0.5);
}

static int load_topo(topo *t)
{
    char err[ERR_LEN];
    char *sets[] = { "model.n_layers=2", "model.dim=32", "model.ffn_dim=48", "stages.0.layers=embed,0-1,head" };
    if (topo_load(t, "topologies/shakespeare-1stage.json", sets, 4, err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

static model_part *whole(const topo *t)
{
    return model_part_new(&t->model, t->stages[0].units, t->stages[0].n_units, 2, 9);
}

static void save_keyed(const topo *t, model_part *p, optim_adamw *o, long step, const run_ckpt_key *key)
{
    char dir[512], err[ERR_LEN];
    snprintf(dir, sizeof dir, "%s/step-%ld", root, step);
    run_ckpt_state st = { step, 0xfeedfacecafebeefull + (uint64_t)step };
    CU_ASSERT_FATAL(run_ckpt_write_shard(dir, 0, p, o, &st, err) == 0);
    CU_ASSERT_FATAL(run_ckpt_commit(dir, t, step, key, err) == 0);
}

static void save(const topo *t, model_part *p, optim_adamw *o, long step) { save_keyed(t, p, o, step, NULL); }

/* PipeDream-2BW's previous weight version: written beside the moments, read
 * back bitwise (also into a part holding a subset of the units); a checkpoint
 * without it says so (0) and still loads as before. */
static void test_2bw_prev(void)
{
    topo t;
    CU_ASSERT_FATAL(load_topo(&t) == 0);
    model_part *p = whole(&t), *q = whole(&t);
    optim_adamw *o = optim_new(p->n_params), *o2 = optim_new(p->n_params);
    float *prev = malloc(p->n_params * 4), *got = calloc(p->n_params, 4);
    fill(p->params, p->n_params, 4); fill(prev, p->n_params, 5); fill(o->m, o->n, 6); fill(o->v, o->n, 7);
    char dir[512], err[ERR_LEN];
    snprintf(dir, sizeof dir, "%s/step-11", root);
    run_ckpt_state st = { 11, 42 };
    CU_ASSERT_FATAL(run_ckpt_write_shard_2bw(dir, 0, p, o, &st, prev, err) == 0);
    CU_ASSERT_FATAL(run_ckpt_commit(dir, &t, 11, NULL, err) == 0);
    run_ckpt c;
    int rc = run_ckpt_open(&c, dir, NULL, err);
    if (rc) fprintf(stderr, "%s\n", err);
    CU_ASSERT_FATAL(rc == 0);
    run_ckpt_state st2 = { 0, 0 };
    CU_ASSERT_FATAL(run_ckpt_load_units(&c, q, o2, &st2, err) == 0); /* the weights and moments as ever */
    CU_ASSERT(memcmp(p->params, q->params, p->n_params * 4) == 0 && memcmp(o->v, o2->v, o->n * 4) == 0);
    CU_ASSERT_EQUAL(run_ckpt_load_prev(&c, q, got, err), 1);
    CU_ASSERT(memcmp(prev, got, p->n_params * 4) == 0);
    int units[2] = { 2, 3 };
    model_part *tail = model_part_new(&t.model, units, 2, 2, 1);
    float *tprev = calloc(tail->n_params, 4);
    CU_ASSERT_EQUAL(run_ckpt_load_prev(&c, tail, tprev, err), 1);
    int i = model_part_find(p, "lm_head.weight"), j = model_part_find(tail, "lm_head.weight");
    CU_ASSERT(memcmp(prev + p->tensors[i].offset, tprev + tail->tensors[j].offset, p->tensors[i].numel * 4) == 0);
    run_ckpt_close(&c);
    /* a synchronous run's checkpoint: no previous version, prev untouched */
    save(&t, p, o, 12);
    snprintf(dir, sizeof dir, "%s/step-12", root);
    CU_ASSERT_FATAL(run_ckpt_open(&c, dir, NULL, err) == 0);
    memset(got, 0, p->n_params * 4);
    CU_ASSERT_EQUAL(run_ckpt_load_prev(&c, q, got, err), 0);
    CU_ASSERT(got[0] == 0 && got[p->n_params - 1] == 0);
    run_ckpt_close(&c);
    free(prev); free(got); free(tprev);
    model_part_free(tail); model_part_free(p); model_part_free(q);
    optim_free(o); optim_free(o2);
    topo_free(&t);
}

static void test_roundtrip(void)
{
    topo t;
    CU_ASSERT_FATAL(load_topo(&t) == 0);
    model_part *p = whole(&t), *q = whole(&t);
    optim_adamw *o = optim_new(p->n_params), *o2 = optim_new(p->n_params);
    fill(p->params, p->n_params, 1); fill(o->m, o->n, 2); fill(o->v, o->n, 3);
    o->step = 7;
    save(&t, p, o, 7);
    char err[ERR_LEN];
    run_ckpt c;
    int rc = run_ckpt_open(&c, root, NULL, err); /* via checkpoints/latest */
    if (rc) fprintf(stderr, "%s\n", err);
    CU_ASSERT_FATAL(rc == 0);
    CU_ASSERT(c.step == 7 && c.n_stages == 1 && c.cfg.dim == 32);
    run_ckpt_state st = { 0, 0 };
    CU_ASSERT_FATAL(run_ckpt_load_units(&c, q, o2, &st, err) == 0);
    CU_ASSERT(memcmp(p->params, q->params, p->n_params * 4) == 0);
    CU_ASSERT(memcmp(o->m, o2->m, o->n * 4) == 0);
    CU_ASSERT(memcmp(o->v, o2->v, o->n * 4) == 0);
    CU_ASSERT(st.step == 7 && o2->step == 7 && st.sampler_state == 0xfeedfacecafebeefull + 7);
    /* a part holding only block 1 and the head loads its slice of weights and
     * moments, and the step and sampler state (a re-split resume) */
    int units[2] = { 2, 3 };
    model_part *tail = model_part_new(&t.model, units, 2, 2, 1);
    optim_adamw *ot = optim_new(tail->n_params);
    run_ckpt_state st2 = { 0, 0 };
    CU_ASSERT_FATAL(run_ckpt_load_units(&c, tail, ot, &st2, err) == 0);
    int i = model_part_find(p, "model.layers.1.self_attn.v_proj.weight"), j = model_part_find(tail, "model.layers.1.self_attn.v_proj.weight");
    size_t pi = p->tensors[i].offset, tj = tail->tensors[j].offset, n = p->tensors[i].numel;
    CU_ASSERT(memcmp(p->params + pi, tail->params + tj, n * 4) == 0);
    CU_ASSERT(memcmp(o->m + pi, ot->m + tj, n * 4) == 0 && memcmp(o->v + pi, ot->v + tj, n * 4) == 0);
    CU_ASSERT(st2.step == 7 && ot->step == 7 && st2.sampler_state == st.sampler_state);
    run_ckpt_close(&c);
    model_part_free(tail); model_part_free(p); model_part_free(q); optim_free(o); optim_free(o2); optim_free(ot);
    topo_free(&t);
}

static void test_prune_and_tamper(void)
{
    topo t;
    CU_ASSERT_FATAL(load_topo(&t) == 0);
    model_part *p = whole(&t);
    optim_adamw *o = optim_new(p->n_params);
    char err[ERR_LEN], path[600];
    for (long s = 10; s <= 30; s += 10) save(&t, p, o, s);
    CU_ASSERT(run_ckpt_prune(root, 2, err) == 0);
    struct stat sb;
    snprintf(path, sizeof path, "%s/step-10", root);
    CU_ASSERT(stat(path, &sb) != 0);
    snprintf(path, sizeof path, "%s/step-30/COMPLETE", root);
    CU_ASSERT(stat(path, &sb) == 0);
    run_ckpt c;
    CU_ASSERT_FATAL(run_ckpt_open(&c, root, NULL, err) == 0);
    CU_ASSERT(c.step == 30);
    run_ckpt_close(&c);
    /* a flipped byte in the optimizer shard is found by its checksum */
    snprintf(path, sizeof path, "%s/step-30/stage-0.optim.safetensors", root);
    FILE *f = fopen(path, "r+b");
    CU_ASSERT_FATAL(f != NULL);
    fseek(f, 1000, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, 1000, SEEK_SET);
    fputc(ch ^ 0x40, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/step-30", root);
    CU_ASSERT(run_ckpt_open(&c, path, NULL, err) == -1);
    CU_ASSERT(strstr(err, "SHA-256 mismatch") && strstr(err, "stage-0.optim.safetensors"));
    /* the marker is what makes a checkpoint exist */
    snprintf(path, sizeof path, "%s/step-20/COMPLETE", root);
    unlink(path);
    snprintf(path, sizeof path, "%s/step-20", root);
    CU_ASSERT(run_ckpt_open(&c, path, NULL, err) == -1);
    CU_ASSERT(strstr(err, "incomplete") != NULL);
    model_part_free(p); optim_free(o);
    topo_free(&t);
}

/* More complete checkpoints than the 4096 the pruner used to list: all are
 * seen, the newest kept, every other removed (empty step directories with a
 * marker stand for checkpoints). */
static void test_prune_many(void)
{
    char dir[300], path[700], err[ERR_LEN];
    enum { N = 4100 };
    snprintf(dir, sizeof dir, "%s/many", root);
    CU_ASSERT_FATAL(mkdir(dir, 0755) == 0);
    for (int s = 1; s <= N; s++) {
        snprintf(path, sizeof path, "%s/step-%d", dir, s);
        CU_ASSERT_FATAL(mkdir(path, 0755) == 0);
        snprintf(path, sizeof path, "%s/step-%d/COMPLETE", dir, s);
        FILE *f = fopen(path, "w");
        CU_ASSERT_FATAL(f != NULL);
        fclose(f);
    }
    CU_ASSERT(run_ckpt_prune(dir, 1, err) == 0);
    int left = 0;
    struct stat sb;
    for (int s = 1; s <= N; s++) {
        snprintf(path, sizeof path, "%s/step-%d", dir, s);
        left += stat(path, &sb) == 0;
    }
    CU_ASSERT(left == 1);
    snprintf(path, sizeof path, "%s/step-%d/COMPLETE", dir, N);
    CU_ASSERT(stat(path, &sb) == 0);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs(text, f);
    fclose(f);
}

/* issue 17: COMPLETE's HMAC under the key of the run's secret; a hostile latest */
static void test_hmac_and_latest(void)
{
    topo t;
    CU_ASSERT_FATAL(load_topo(&t) == 0);
    model_part *p = whole(&t);
    optim_adamw *o = optim_new(p->n_params);
    char err[ERR_LEN] = "", path[600];
    run_ckpt_key a, b;
    run_ckpt_key_derive(&a, (const uint8_t *)"secret number one, 27 bytes", 27);
    run_ckpt_key_derive(&b, (const uint8_t *)"secret number two, 27 bytes", 27);
    CU_ASSERT(a.have && b.have && memcmp(a.k, b.k, 32) != 0);
    save_keyed(&t, p, o, 40, &a);
    snprintf(path, sizeof path, "%s/step-40", root);
    run_ckpt c;
    int rc = run_ckpt_open(&c, path, &a, err);
    if (rc) fprintf(stderr, "\n  %s\n", err);
    CU_ASSERT(rc == 0 && !c.hmac_unverified);
    run_ckpt_close(&c);
    CU_ASSERT(run_ckpt_open(&c, path, &b, err) == -1);
    CU_ASSERT(strstr(err, "COMPLETE: manifest_hmac_sha256 does not match") != NULL);
    CU_ASSERT_FATAL(run_ckpt_open(&c, path, NULL, err) == 0); /* no key: the HMAC cannot be checked, and says so */
    CU_ASSERT(c.hmac_unverified == 1);
    run_ckpt_close(&c);
    save(&t, p, o, 50); /* without a key: no HMAC, which a reader with a key refuses */
    snprintf(path, sizeof path, "%s/step-50", root);
    CU_ASSERT(run_ckpt_open(&c, path, &a, err) == -1);
    CU_ASSERT(strstr(err, "no manifest_hmac_sha256, but this run has a secret") != NULL);
    /* an older version's marker is refused as such */
    snprintf(path, sizeof path, "%s/step-50/COMPLETE", root);
    write_text(path, "step 50\n");
    snprintf(path, sizeof path, "%s/step-50", root);
    CU_ASSERT(run_ckpt_open(&c, path, NULL, err) == -1);
    CU_ASSERT(strstr(err, "written by an older version") != NULL);
    /* latest that points outside, or is garbage: said so, not "not a checkpoint" */
    snprintf(path, sizeof path, "%s/latest", root);
    write_text(path, "../../etc\n");
    CU_ASSERT(run_ckpt_open(&c, root, NULL, err) == -1);
    CU_ASSERT(strstr(err, "a path outside") != NULL && !strstr(err, "not a checkpoint"));
    write_text(path, "step-4x\n");
    CU_ASSERT(run_ckpt_open(&c, root, NULL, err) == -1);
    CU_ASSERT(strstr(err, "\"step-4x\" is not a step directory name") != NULL);
    write_text(path, "step-40\n");
    CU_ASSERT(run_ckpt_open(&c, root, &a, err) == 0);
    run_ckpt_close(&c);
    model_part_free(p); optim_free(o);
    topo_free(&t);
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/pipetrain-ckpt-XXXXXX");
    if (!mkdtemp(root)) return 2;
    CU_TestInfo tests[] = {
        { "save -> load is bitwise, subsets merge", test_roundtrip },
        { "prune keeps the newest; tampering refused", test_prune_and_tamper },
        { "prune sees every checkpoint, however many", test_prune_many },
        { "HMAC under the run's secret; a hostile latest", test_hmac_and_latest },
        { "2bw: the previous weight version by name, or none", test_2bw_prev },
        CU_TEST_INFO_NULL,
    };
    int rc = tests_run("checkpoint", tests);
    if (tests_rm_tree(root)) rc = rc ? rc : 1;
    return rc;
}
