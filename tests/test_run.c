/* test_run.c — the run lifecycle (run/run.h), the one owner of where a run
 * starts, its cadence, the optimizer step's parameters and the record:
 * evaluation and checkpoint steps, the evaluation window count, the start
 * point of a fresh run, a --resume and a restart without a checkpoint, and
 * summary.json's keys, which must not depend on who writes it. */
#include <jansson.h>
#include <math.h>
#include <sys/stat.h>

#include "run/run.h"
#include "run/run_ckpt.h"
#include "topo/topo.h"
#include "tests/tests.h"

static char root[256];

static int load(topo *t, const char *steps, const char *eval, const char *ckpt)
{
    char *sets[] = { (char *)steps, (char *)eval, (char *)ckpt };
    char err[ERR_LEN];
    int rc = topo_load(t, "topologies/shakespeare-1stage.json", sets, 3, err);
    if (rc) fprintf(stderr, "\n  %s\n", err);
    return rc;
}

static void test_cadence(void)
{
    topo t;
    CU_ASSERT_FATAL(load(&t, "train.steps=10", "train.eval_every=3", "checkpoint.every=4") == 0);
    char ev[11] = "", ck[11] = "";
    for (long s = 0; s < 10; s++) {
        ev[s] = run_is_eval_step(&t, s) ? 'E' : '.';
        ck[s] = run_is_ckpt_step(&t, s) ? 'C' : '.';
    }
    CU_ASSERT_STRING_EQUAL(ev, "..E..E..EE"); /* every 3rd step and the last */
    CU_ASSERT_STRING_EQUAL(ck, "...C...C.C"); /* every 4th step and the last */
    /* evaluation windows: capped at eval_batches * batch_size, all at the end */
    size_t cap = (size_t)t.train.eval_batches * (size_t)t.train.batch_size;
    CU_ASSERT_EQUAL(run_eval_windows(&t, 2, cap + 100), cap);
    CU_ASSERT_EQUAL(run_eval_windows(&t, 2, cap - 1), cap - 1);
    CU_ASSERT_EQUAL(run_eval_windows(&t, 9, cap + 100), cap + 100);
    /* the learning rate is the schedule's */
    CU_ASSERT_DOUBLE_EQUAL(run_lr(&t, 9), t.train.min_lr, 1e-12);
    topo_free(&t);
    CU_ASSERT_FATAL(load(&t, "train.steps=5", "train.eval_every=0", "checkpoint.every=0") == 0);
    for (long s = 0; s < 5; s++) CU_ASSERT_EQUAL(run_is_eval_step(&t, s), s == 4);
    for (long s = 0; s < 5; s++) CU_ASSERT_EQUAL(run_is_ckpt_step(&t, s), s == 4);
    topo_free(&t);
}

static char *slurp(const char *path)
{
    static char buf[8192];
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

static void test_start_point(void)
{
    topo t;
    CU_ASSERT_FATAL(load(&t, "train.steps=10", "train.eval_every=3", "checkpoint.every=4") == 0);
    char out[300], path[400], err[ERR_LEN] = "";
    snprintf(out, sizeof out, "%s/start", root);
    mkdir(out, 0755);
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs("{\"step\": 1, \"loss\": 5.0}\n", f);
    fclose(f);
    long first = -1;
    /* a fresh run decides step 0 and touches nothing */
    run_start_opts fresh = { 0, 0, 0, NULL, "test", 0, NULL };
    CU_ASSERT(run_start_point(&t, out, &fresh, &first, err) == 0);
    CU_ASSERT_EQUAL(first, 0);
    CU_ASSERT_STRING_EQUAL(slurp(path), "{\"step\": 1, \"loss\": 5.0}\n");
    /* --resume needs a complete checkpoint: bad input */
    run_start_opts resume = { 1, 0, 0, NULL, "test", 0, NULL };
    CU_ASSERT(run_start_point(&t, out, &resume, &first, err) == 2);
    CU_ASSERT(strstr(err, "--resume needs a complete checkpoint") != NULL);
    /* a restart without a checkpoint starts over at 0: the log is cut there
     * and the restart is an event line */
    run_start_opts restart = { 0, 1, 3, "stage 1 died", "test", 0, NULL };
    CU_ASSERT(run_start_point(&t, out, &restart, &first, err) == 0);
    CU_ASSERT_EQUAL(first, 0);
    const char *m = slurp(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT(strstr(m, "\"step\": 1") == NULL);
    CU_ASSERT(strstr(m, "\"event\": \"restart\"") != NULL || strstr(m, "\"event\":\"restart\"") != NULL);
    CU_ASSERT(strstr(m, "stage 1 died") != NULL);
    topo_free(&t);
}

/* Writes a one-stage checkpoint after `step` steps into CKPT/step-N, committed
 * by writer w (the manifest's "writer"; latest then names it). */
static void ckpt_by(const topo *t, const char *ckpt, long step, uint64_t w)
{
    char dir[400], err[ERR_LEN];
    model_part *p = model_part_new(&t->model, t->stages[0].units, t->stages[0].n_units, 1, 9);
    optim_adamw *o = optim_new(p->n_params);
    snprintf(dir, sizeof dir, "%s/step-%ld", ckpt, step);
    run_ckpt_state st = { step, 77 };
    CU_ASSERT_FATAL(run_ckpt_write_shard(dir, 0, p, o, &st, err) == 0);
    CU_ASSERT_FATAL(run_ckpt_commit_by(dir, t, step, NULL, w, err) == 0);
    optim_free(o);
    model_part_free(p);
}

static int exists_at(const char *dir, const char *name)
{
    char path[600];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

/* Restarts resume only the run's own checkpoints (or the one it resumed); a
 * fresh run sets another run's aside. */
static void test_start_point_whose(void)
{
    topo t;
    char *sets[] = { "train.steps=10", "model.n_layers=2", "model.dim=32", "model.ffn_dim=48",
                     "stages.0.layers=embed,0-1,head" };
    char err[ERR_LEN] = "", out[300], ck[400], aside[420], origin[65] = "";
    CU_ASSERT_FATAL(topo_load(&t, "topologies/shakespeare-1stage.json", sets, 5, err) == 0);
    snprintf(out, sizeof out, "%s/whose", root);
    mkdir(out, 0755);
    snprintf(ck, sizeof ck, "%s/checkpoints", out);
    long first = -1;
    /* this run (writer 0xa) wrote step 4, another run (0xb) step 8, latest names 8:
     * the restart resumes step 4, sets step 8 aside and points latest at step 4 */
    ckpt_by(&t, ck, 4, 0xa);
    ckpt_by(&t, ck, 8, 0xb);
    run_start_opts ra = { 0, 1, 3, "stage 1 died", "test", 0xa, NULL };
    CU_ASSERT(run_start_point(&t, out, &ra, &first, err) == 0);
    CU_ASSERT_EQUAL(first, 4);
    snprintf(aside, sizeof aside, "%s.set-aside-1", ck);
    CU_ASSERT(exists_at(aside, "step-8/COMPLETE") && !exists_at(ck, "step-8"));
    CU_ASSERT(exists_at(ck, "step-4/COMPLETE"));
    snprintf(aside, sizeof aside, "%s/latest", ck);
    CU_ASSERT_STRING_EQUAL(slurp(aside), "step-4\n");
    /* a run that wrote none (0xc): step 0, step 4 set aside, no latest left */
    run_start_opts rc = { 0, 1, 3, "stage 1 died", "test", 0xc, NULL };
    CU_ASSERT(run_start_point(&t, out, &rc, &first, err) == 0);
    CU_ASSERT_EQUAL(first, 0);
    snprintf(aside, sizeof aside, "%s.set-aside-2", ck);
    CU_ASSERT(exists_at(aside, "step-4/COMPLETE") && !exists_at(ck, "step-4") && !exists_at(ck, "latest"));
    /* a fresh run: another run's checkpoints and latest are moved aside as they are */
    ckpt_by(&t, ck, 4, 0xa);
    run_start_opts fresh = { 0, 0, 0, NULL, "test", 0xd, NULL };
    CU_ASSERT(run_start_point(&t, out, &fresh, &first, err) == 0);
    CU_ASSERT_EQUAL(first, 0);
    snprintf(aside, sizeof aside, "%s.set-aside-3", ck);
    CU_ASSERT(exists_at(aside, "step-4/COMPLETE") && exists_at(aside, "latest"));
    CU_ASSERT(!exists_at(ck, "step-4") && !exists_at(ck, "latest"));
    /* nothing there: a fresh run creates no set-aside directory */
    CU_ASSERT(run_start_point(&t, out, &fresh, &first, err) == 0);
    snprintf(aside, sizeof aside, "%s.set-aside-4", ck);
    CU_ASSERT(!exists_at(aside, "."));
    /* --resume of another run's checkpoint records it; a restart of that run
     * (0xe, which wrote nothing yet) resumes it again */
    ckpt_by(&t, ck, 4, 0xa);
    run_start_opts resume = { 1, 0, 0, NULL, "test", 0xe, origin };
    CU_ASSERT(run_start_point(&t, out, &resume, &first, err) == 0);
    CU_ASSERT_EQUAL(first, 4);
    CU_ASSERT_EQUAL(strlen(origin), 64);
    run_start_opts re = { 0, 1, 3, "stage 1 died", "test", 0xe, origin };
    first = -1;
    CU_ASSERT(run_start_point(&t, out, &re, &first, err) == 0);
    CU_ASSERT_EQUAL(first, 4);
    CU_ASSERT(exists_at(ck, "step-4/COMPLETE"));
    /* latest is this run's but another run's complete checkpoint lies above it
     * (no latest of its own): it is set aside, not deleted */
    ckpt_by(&t, ck, 8, 0xb);
    snprintf(aside, sizeof aside, "%s/latest", ck);
    FILE *f = fopen(aside, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs("step-4\n", f);
    fclose(f);
    CU_ASSERT(run_start_point(&t, out, &re, &first, err) == 0);
    CU_ASSERT_EQUAL(first, 4);
    snprintf(aside, sizeof aside, "%s.set-aside-4", ck);
    CU_ASSERT(exists_at(aside, "step-8/COMPLETE") && !exists_at(ck, "step-8"));
    topo_free(&t);
}

static void test_log_summary(void)
{
    topo t;
    CU_ASSERT_FATAL(load(&t, "train.steps=3", "train.eval_every=0", "checkpoint.every=0") == 0);
    char out[300], path[400], err[ERR_LEN] = "";
    snprintf(out, sizeof out, "%s/log", root);
    run_log_opts o = { out, NULL, 0, 0, 0, 0 }; /* progress NULL: silent (it used to crash) */
    run_log *l = run_log_open(&t, &o, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    CU_ASSERT(run_log_step(l, 0, 5.5, 1e-3, 1.0, NAN, 0.01, err) == 0);
    CU_ASSERT(run_log_step(l, 1, 4.5, 1e-3, 1.0, NAN, 0.01, err) == 0);
    CU_ASSERT(run_log_step(l, 2, 3.5, 1e-3, 1.0, 3.75, 0.01, err) == 0);
    CU_ASSERT_EQUAL(run_log_done(l), 3);
    run_stage_stats st = { 100, 1, 0.03, 0, 0.001, 0, 3, 0.04, 0, 0, 8192, 0 };
    run_log_stage(l, 0, &st, 4242);
    CU_ASSERT(run_log_finish(l, NULL, err) == 0);
    /* a diverged loss is a failure naming the step */
    CU_ASSERT(run_log_step(l, 3, NAN, 1e-3, 1.0, NAN, 0.01, err) == 1);
    CU_ASSERT(strstr(err, "diverged") != NULL && strstr(err, "step 4") != NULL);
    run_log_free(l);
    snprintf(path, sizeof path, "%s/summary.json", out);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    const char *keys[] = { "steps", "final_loss", "val_loss", "wall_s", "tokens_per_s", "params", "n_stages",
                           "schedule", "micro_batches", "restarts", "first_step", "interrupted", "error",
                           "stages", "timing", "trace", "replicas", "zero", "sync", "servers", "workers", "staleness",
                           "val_bits_per_byte", "val_bytes_per_token" };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!json_object_get(j, keys[i])) { fprintf(stderr, "\n  summary.json lacks %s\n", keys[i]); CU_FAIL("key"); }
    CU_ASSERT_EQUAL(json_object_size(j), sizeof keys / sizeof keys[0]);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "steps")), 3);
    /* no parameter servers: "servers" empty, one worker per replica */
    CU_ASSERT(!strcmp(json_string_value(json_object_get(j, "sync")), "allreduce"));
    CU_ASSERT_EQUAL(json_array_size(json_object_get(j, "servers")), 0);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(j, "workers")), 1);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(j, "staleness")), 0); /* the servers' histograms added up: none */
    CU_ASSERT_DOUBLE_EQUAL(json_real_value(json_object_get(j, "final_loss")), 3.5, 0);
    CU_ASSERT_DOUBLE_EQUAL(json_real_value(json_object_get(j, "val_loss")), 3.75, 0);
    /* bits per byte: null until the launcher tells the validation split's bytes */
    CU_ASSERT(json_is_null(json_object_get(j, "val_bits_per_byte")));
    CU_ASSERT(json_is_null(json_object_get(j, "val_bytes_per_token")));
    CU_ASSERT(json_is_null(json_object_get(j, "error")));
    CU_ASSERT(json_is_null(json_object_get(j, "trace"))); /* no trace was recorded */
    json_t *s0 = json_array_get(json_object_get(j, "stages"), 0);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(s0, "pid")), 4242);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(s0, "peak_act_bytes")), 100);
    /* one row per process, with its replica and the data-parallel statistics */
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "replicas")), 1);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "zero")), 0);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(j, "stages")), (size_t)t.n_stages);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(s0, "stage")), 0);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(s0, "replica")), 0);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(s0, "optim_bytes")), 8192);
    CU_ASSERT_PTR_NOT_NULL(json_object_get(s0, "allreduce_s"));
    CU_ASSERT_PTR_NOT_NULL(json_object_get(s0, "exposed_s"));
    json_decref(j);
    topo_free(&t);
}

/* run_log_trace: what became of a pipeline's trace lands in summary.json's
 * "trace" of a run that otherwise succeeded (issue #10). */
static void test_log_trace(void)
{
    topo t;
    CU_ASSERT_FATAL(load(&t, "train.steps=1", "train.eval_every=0", "checkpoint.every=0") == 0);
    char out[300], path[400], err[ERR_LEN] = "";
    snprintf(out, sizeof out, "%s/trace", root);
    run_log_opts o = { out, NULL, 0, 0, 0, 0 };
    FILE *devnull = fopen("/dev/null", "w");
    o.progress = devnull;
    run_log *l = run_log_open(&t, &o, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    CU_ASSERT(run_log_step(l, 0, 5.5, 1e-3, 1.0, 5.0, 0.01, err) == 0);
    run_log_trace(l, "complete");
    run_log_trace(l, "partial: stage 1 (127.0.0.1:1): timed out"); /* the last word counts */
    CU_ASSERT(run_log_finish(l, NULL, err) == 0);
    run_log_free(l);
    fclose(devnull);
    snprintf(path, sizeof path, "%s/summary.json", out);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "trace")), "partial: stage 1 (127.0.0.1:1): timed out");
    CU_ASSERT(json_is_null(json_object_get(j, "error")));
    json_decref(j);
    topo_free(&t);
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/test_run.%d", (int)getpid());
    mkdir(root, 0755);
    CU_TestInfo tests[] = {
        { "evaluation and checkpoint cadence, evaluation windows", test_cadence },
        { "start point: fresh, --resume without a checkpoint, a restart", test_start_point },
        { "start point: restarts resume only the run's own checkpoints", test_start_point_whose },
        { "the record: metrics, divergence, summary.json keys", test_log_summary },
        { "the record: the trace's outcome in summary.json", test_log_trace },
        CU_TEST_INFO_NULL,
    };
    int rc = tests_run("run", tests);
    tests_rm_tree(root);
    return rc;
}
