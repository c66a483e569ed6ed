/* test_resume.c — what resuming relies on (issue #6, run/run_ckpt.h, run/run.h):
 * metrics.jsonl trimmed to the checkpoint (later steps and a torn last line
 * dropped, events kept), step directories after the resume point forgotten,
 * and the topology of a checkpoint compared with the run's: the fields that
 * may change are accepted, any other difference refused with its path and
 * both values. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/optim.h"
#include "model/util.h"
#include "run/run_ckpt.h"
#include "topo/topo.h"
#include "tests/tests.h"

static char root[256];

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs(text, f);
    fclose(f);
}

static char *read_file(const char *path)
{
    static char buf[4096];
    FILE *f = fopen(path, "r");
    CU_ASSERT_FATAL(f != NULL);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

static void test_trim_metrics(void)
{
    char dir[300], path[400], err[ERR_LEN];
    snprintf(dir, sizeof dir, "%s/run", root);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    write_file(path, "{\"step\": 1, \"loss\": 5.0}\n"
                     "{\"step\": 2, \"loss\": 4.0}\n"
                     "{\"event\":\"restart\",\"restart\":1,\"from_step\":2}\n"
                     "{\"step\": 3, \"loss\": 3.0}\n"
                     "{\"step\": 4, \"loss\": 2.0, \"val_loss\": 2.5}\n"
                     "{\"step\": 5, \"lo");
    CU_ASSERT_FATAL(run_ckpt_trim_metrics(dir, 3, err) == 0);
    CU_ASSERT_STRING_EQUAL(read_file(path), "{\"step\": 1, \"loss\": 5.0}\n"
                                            "{\"step\": 2, \"loss\": 4.0}\n"
                                            "{\"event\":\"restart\",\"restart\":1,\"from_step\":2}\n"
                                            "{\"step\": 3, \"loss\": 3.0}\n");
    CU_ASSERT_FATAL(run_ckpt_trim_metrics(dir, 0, err) == 0);
    CU_ASSERT_STRING_EQUAL(read_file(path), "{\"event\":\"restart\",\"restart\":1,\"from_step\":2}\n");
    /* no metrics yet: nothing to trim */
    snprintf(dir, sizeof dir, "%s/empty", root);
    mkdir(dir, 0755);
    CU_ASSERT(run_ckpt_trim_metrics(dir, 3, err) == 0);
}

/* A read error is not the end of the file: the rewrite must fail and leave
 * metrics.jsonl as it was. /proc/self/mem fails every read at offset 0 (EIO),
 * a directory every read (EISDIR): before the fix, the first became an empty
 * metrics.jsonl that replaced the original. */
static void test_trim_metrics_read_error(void)
{
    char dir[300], path[400], err[ERR_LEN] = "";
    struct stat st;
    snprintf(dir, sizeof dir, "%s/unreadable", root);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    CU_ASSERT_FATAL(symlink("/proc/self/mem", path) == 0);
    CU_ASSERT(run_ckpt_trim_metrics(dir, 3, err) == -1);
    CU_ASSERT(strstr(err, "metrics.jsonl: read failed") != NULL);
    CU_ASSERT(lstat(path, &st) == 0 && S_ISLNK(st.st_mode)); /* not replaced */
    unlink(path);
    err[0] = 0;
    CU_ASSERT_FATAL(mkdir(path, 0755) == 0);
    CU_ASSERT(run_ckpt_trim_metrics(dir, 3, err) == -1);
    CU_ASSERT(strstr(err, "metrics.jsonl: read failed") != NULL);
    CU_ASSERT(stat(path, &st) == 0 && S_ISDIR(st.st_mode));
}

static int exists(const char *p) { struct stat s; return !stat(p, &s); }

static void test_forget_after(void)
{
    char ck[300], path[400], err[ERR_LEN];
    snprintf(ck, sizeof ck, "%s/ck", root);
    mkdir(ck, 0755);
    const char *steps[] = { "step-3", "step-6", "step-9", "step-12", "notastep" };
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/%s", ck, steps[i]);
        mkdir(path, 0755);
        snprintf(path, sizeof path, "%s/%s/COMPLETE", ck, steps[i]);
        write_file(path, "x\n");
    }
    CU_ASSERT_FATAL(run_ckpt_forget_after(ck, 6, err) == 0);
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/%s", ck, steps[i]);
        CU_ASSERT(exists(path) == (i == 0 || i == 1 || i == 4));
    }
    snprintf(path, sizeof path, "%s/missing", root);
    CU_ASSERT(run_ckpt_forget_after(path, 0, err) == 0);
}

static int load_topo(topo *t, char **extra, int n_extra)
{
    char err[ERR_LEN];
    char *sets[16] = { "model.n_layers=2", "model.dim=32", "model.ffn_dim=48", "stages.0.layers=embed,0-1,head" };
    for (int i = 0; i < n_extra; i++) sets[4 + i] = extra[i];
    if (topo_load(t, "topologies/shakespeare-1stage.json", sets, 4 + n_extra, err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

/* Opens the checkpoint and compares it with the topology given by extra. */
static int compare(run_ckpt *c, char **extra, int n_extra, char *err)
{
    topo t;
    CU_ASSERT_FATAL(load_topo(&t, extra, n_extra) == 0);
    int rc = run_ckpt_check_topology(c, &t, err);
    topo_free(&t);
    return rc;
}

static void test_check_topology(void)
{
    topo t;
    char dir[300], err[ERR_LEN];
    CU_ASSERT_FATAL(load_topo(&t, NULL, 0) == 0);
    model_part *p = model_part_new(&t.model, t.stages[0].units, t.stages[0].n_units, 2, 9);
    optim_adamw *o = optim_new(p->n_params);
    snprintf(dir, sizeof dir, "%s/topo/step-4", root);
    run_ckpt_state st = { 4, 77 };
    CU_ASSERT_FATAL(run_ckpt_write_shard(dir, 0, p, o, &st, err) == 0);
    CU_ASSERT_FATAL(run_ckpt_commit(dir, &t, 4, NULL, err) == 0);
    run_ckpt c;
    CU_ASSERT_FATAL(run_ckpt_open(&c, dir, NULL, err) == 0);
    CU_ASSERT(compare(&c, NULL, 0, err) == 0);
    char *ok[] = { "train.steps=99", "train.eval_every=5", "train.log_every=3", "checkpoint.every=2",
                   "checkpoint.keep=1", "description=other", "stages.0.port=31000", "coordinator.port=0",
                   "schedule.kind=1f1b", "train.eval_batches=3", "stages.0.threads=3" };
    int rc = compare(&c, ok, 11, err);
    if (rc) fprintf(stderr, "\n  %s\n", err);
    CU_ASSERT(rc == 0);
    /* the same split and threads: nothing to say; another thread count: a note */
    char note[1200];
    CU_ASSERT(run_ckpt_split_note(&c, &t, note, sizeof note) == 0);
    topo t3;
    char *threads[] = { "stages.0.threads=3" };
    CU_ASSERT_FATAL(load_topo(&t3, threads, 1) == 0);
    CU_ASSERT(run_ckpt_split_note(&c, &t3, note, sizeof note) == 1 && strstr(note, "not bit for bit") &&
              !strstr(note, "re-split"));
    topo_free(&t3);
    struct { char *set, *path, *was, *is; } bad[] = {
        { "train.lr=0.5", "train.lr differs", "0.001", "0.5" },
        { "train.seed=7", "train.seed differs", "1337", "7" },
        { "train.micro_batches=2", "train.micro_batches differs", "", "" },
        { "data.val_fraction=0.2", "data.val_fraction differs", "", "" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *set[] = { bad[i].set };
        CU_ASSERT(compare(&c, set, 1, err) == -1);
        if (!strstr(err, bad[i].path) || !strstr(err, bad[i].was) || !strstr(err, bad[i].is))
            fprintf(stderr, "\n  %s: got \"%s\"\n", bad[i].set, err);
        CU_ASSERT(strstr(err, bad[i].path) && strstr(err, bad[i].was) && strstr(err, bad[i].is));
    }
    run_ckpt_close(&c);
    model_part_free(p);
    optim_free(o);
    topo_free(&t);
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/pipetrain-resume-XXXXXX");
    if (!mkdtemp(root)) return 2;
    CU_TestInfo tests[] = {
        { "metrics.jsonl trimmed to the checkpoint", test_trim_metrics },
        { "metrics.jsonl: a read error leaves it as it was", test_trim_metrics_read_error },
        { "step directories after the resume point forgotten", test_forget_after },
        { "checkpoint topology: what may change, what may not", test_check_topology },
        CU_TEST_INFO_NULL,
    };
    int rc = tests_run("resume", tests);
    if (tests_rm_tree(root)) rc = rc ? rc : 1;
    return rc;
}
