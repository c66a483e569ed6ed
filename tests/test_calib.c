/* test_calib.c — calibration from several runs (topo/topo_calib.h) on synthetic
 * run directories (costs.json + summary.json): the median over 3 runs, over 2
 * runs (the mean of the middle two), per link over the runs that sampled it, and
 * the refusals, exit-2 style, naming the file and the field: another layout,
 * another model ("units", "params"), another split ("stages"[i]."layers"), the
 * same run twice, a missing file. Also the runs' split read for balance. */
#include <sys/stat.h>

#include "base/base.h"
#include "topo/topo_calib.h"
#include "tests.h"

static char tmpdir[256];

/* tmpdir/name, made once. */
static const char *dir_of(const char *name)
{
    static char buf[8][512];
    static int k;
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/test_calib.XXXXXX");
        CU_ASSERT_FATAL(mkdtemp(tmpdir) != NULL);
    }
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    mkdir(buf[k], 0755);
    return buf[k];
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
}

/* A 2-stage run: stage costs f0, f1 (b, w = 2x, 3x), latency lat, per-unit f
 * times u[6] (NULL: no "units"), link bandwidth lb (< 0: none). */
static void costs(const char *dir, double f0, double f1, double lat, const double *u, double lb)
{
    char txt[2048], units[600] = "", links[64] = "";
    if (u)
        snprintf(units, sizeof units, ", \"units\": {\"f\": [%g, %g, %g, %g, %g, %g], \"b\": [%g, %g, %g, %g, %g, %g], "
                 "\"w\": [%g, %g, %g, %g, %g, %g]}", u[0], u[1], u[2], u[3], u[4], u[5], 2 * u[0], 2 * u[1], 2 * u[2],
                 2 * u[3], 2 * u[4], 2 * u[5], u[0], u[1], u[2], u[3], u[4], u[5]);
    if (lb >= 0) snprintf(links, sizeof links, ", \"link_bandwidth\": [%g, %g]", lb, lb);
    snprintf(txt, sizeof txt, "{\"version\": 1, \"unit\": \"ms\", \"stages\": 2, \"chunks\": 1, \"steps\": 5, "
             "\"f\": [%g, %g], \"b\": [%g, %g], \"w\": [%g, %g], \"latency\": %g, \"bandwidth\": 0, \"bw_early\": true, "
             "\"w_in_order\": true%s%s}\n", f0, f1, 2 * f0, 2 * f1, 3 * f0, 3 * f1, lat, units, links);
    write_file(dir, "costs.json", txt);
}

static void summary(const char *dir, long long params, const char *l0, const char *l1)
{
    char txt[1024];
    snprintf(txt, sizeof txt, "{\"steps\": 5, \"params\": %lld, \"n_stages\": 2, \"stages\": [{\"stage\": 0, "
             "\"replica\": 0, \"layers\": \"%s\"}, {\"stage\": 1, \"replica\": 0, \"layers\": \"%s\"}]}\n", params, l0,
             l1);
    write_file(dir, "summary.json", txt);
}

static void test_median(void)
{
    double a[3] = { 3, 1, 2 }, b[2] = { 4, 1 }, c[4] = { 5, 1, 3, 2 }, d[1] = { 7 };
    CU_ASSERT_DOUBLE_EQUAL(topo_calib_median(a, 3), 2, 0);
    CU_ASSERT_DOUBLE_EQUAL(topo_calib_median(b, 2), 2.5, 0);
    CU_ASSERT_DOUBLE_EQUAL(topo_calib_median(c, 4), 2.5, 0);
    CU_ASSERT_DOUBLE_EQUAL(topo_calib_median(d, 1), 7, 0);
    CU_ASSERT(isnan(topo_calib_median(d, 0)));
}

/* Three runs, one of them disturbed (stage 1 twice as slow): the median ignores it. */
static void test_median_of_3(void)
{
    const double u1[6] = { 0, 1, 1, 1, 1, 10 }, u2[6] = { 0, 2, 2, 2, 2, 20 }, u3[6] = { 0, 1.5, 1, 1, 1, 12 };
    const char *r[3] = { dir_of("m3a"), dir_of("m3b"), dir_of("m3c") };
    costs(r[0], 10, 30, 1, u1, 100);
    costs(r[1], 11, 60, 5, u2, 0); /* the disturbed run; no bandwidth sample */
    costs(r[2], 12, 31, 2, u3, 300);
    topo_calib c;
    char err[ERR_LEN] = "";
    CU_ASSERT_EQUAL_FATAL(topo_calib_load(r, 3, NULL, 1, &c, err), 0);
    CU_ASSERT_EQUAL(c.n_runs, 3);
    CU_ASSERT_EQUAL(c.n_stages, 2);
    CU_ASSERT_EQUAL(c.n_chunks, 1);
    CU_ASSERT_DOUBLE_EQUAL(c.costs->f[0], 11, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(c.costs->f[1], 31, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(c.costs->b[1], 62, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(c.costs->w[0], 33, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(c.costs->latency, 2, 1e-12);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c.costs->link_bandwidth);
    CU_ASSERT_DOUBLE_EQUAL(c.costs->link_bandwidth[0], 200, 1e-12); /* of the two samples: their mean */
    CU_ASSERT(c.costs->bw_early && c.costs->w_in_order);
    CU_ASSERT_EQUAL_FATAL(c.n_units, 6);
    const double want_f[6] = { 0, 1.5, 1, 1, 1, 12 }, want_b[6] = { 0, 3, 2, 2, 2, 24 };
    CU_ASSERT(tests_close("units f", c.uf, want_f, 6, 1e-12, 0));
    CU_ASSERT(tests_close("units b", c.ub, want_b, 6, 1e-12, 0));
    CU_ASSERT(tests_close("units w", c.uw, want_f, 6, 1e-12, 0));
    CU_ASSERT_PTR_NULL(c.split); /* no summary.json */
    topo_calib_free(&c);
    CU_ASSERT_PTR_NULL(c.costs);
}

/* Two runs: the mean of the two; a run without "units": no per-unit medians. */
static void test_median_of_2(void)
{
    const double u1[6] = { 0, 1, 1, 1, 1, 10 }, u2[6] = { 0, 2, 2, 2, 2, 20 };
    const char *r[2] = { dir_of("m2a"), dir_of("m2b") };
    costs(r[0], 10, 30, 1, u1, -1);
    costs(r[1], 11, 60, 4, u2, -1);
    topo_calib c;
    char err[ERR_LEN] = "";
    CU_ASSERT_EQUAL_FATAL(topo_calib_load(r, 2, NULL, 1, &c, err), 0);
    CU_ASSERT_DOUBLE_EQUAL(c.costs->f[0], 10.5, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(c.costs->f[1], 45, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(c.costs->latency, 2.5, 1e-12);
    CU_ASSERT_PTR_NULL(c.costs->link_bandwidth);
    CU_ASSERT_EQUAL(c.n_units, 6);
    CU_ASSERT_DOUBLE_EQUAL(c.uf[5], 15, 1e-12);
    topo_calib_free(&c);
    costs(r[1], 11, 60, 4, NULL, -1); /* an older file */
    CU_ASSERT_EQUAL_FATAL(topo_calib_load(r, 2, NULL, 1, &c, err), 0);
    CU_ASSERT_EQUAL(c.n_units, 0);
    CU_ASSERT_PTR_NULL(c.uf);
    topo_calib_free(&c);
    /* one run: its own costs */
    CU_ASSERT_EQUAL_FATAL(topo_calib_load(r, 1, NULL, 1, &c, err), 0);
    CU_ASSERT_DOUBLE_EQUAL(c.costs->f[1], 30, 0);
    topo_calib_free(&c);
}

/* rc 2 and err holding every one of want[0..n). */
static void refused(const char *const *runs, int n, const topo *t, int same_split, const char *w1, const char *w2)
{
    topo_calib c;
    char err[ERR_LEN] = "";
    CU_ASSERT_EQUAL(topo_calib_load(runs, n, t, same_split, &c, err), 2);
    if (!strstr(err, w1) || !strstr(err, w2)) fprintf(stderr, "\n  got: %s\n  want: %s ... %s\n", err, w1, w2);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, w1));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, w2));
    topo_calib_free(&c);
}

static void test_mismatch(void)
{
    const double u[6] = { 0, 1, 1, 1, 1, 10 };
    const char *a = dir_of("xa"), *b = dir_of("xb");
    char bc[600], bs[600];
    snprintf(bc, sizeof bc, "%s/costs.json", b);
    snprintf(bs, sizeof bs, "%s/summary.json", b);
    costs(a, 10, 30, 1, u, -1);
    summary(a, 1000, "embed,0-1", "2-3,head");
    const char *r[2] = { a, b };
    /* another layout */
    write_file(b, "costs.json", "{\"stages\": 3, \"chunks\": 1, \"f\": [1, 1, 1], \"b\": [1, 1, 1], \"w\": [1, 1, 1]}");
    refused(r, 2, NULL, 1, bc, "\"stages\", \"chunks\": measured on 3 stage(s)");
    /* another model: 5 units, or another parameter count */
    write_file(b, "costs.json", "{\"stages\": 2, \"chunks\": 1, \"f\": [1, 1], \"b\": [1, 1], \"w\": [1, 1], "
               "\"units\": {\"f\": [1, 1, 1, 1, 1], \"b\": [1, 1, 1, 1, 1], \"w\": [1, 1, 1, 1, 1]}}");
    refused(r, 2, NULL, 1, bc, "\"units\".\"f\": 5 units");
    costs(b, 10, 30, 1, u, -1);
    summary(b, 2000, "embed,0-1", "2-3,head");
    refused(r, 2, NULL, 1, bs, "\"params\"");
    /* another split */
    summary(b, 1000, "embed,0-2", "3,head");
    refused(r, 2, NULL, 1, bs, "\"stages\"[0].\"layers\"");
    /* a summary without the layers of stage 1 */
    write_file(b, "summary.json", "{\"params\": 1000, \"stages\": [{\"stage\": 0, \"layers\": \"embed,0-1\"}]}");
    refused(r, 2, NULL, 1, bs, "stage 1");
    /* the same run twice; a missing one */
    const char *twice[2] = { a, a }, *gone[2] = { a, dir_of("gone") };
    refused(twice, 2, NULL, 1, "costs.json", "the same costs file");
    refused(gone, 2, NULL, 1, "gone/costs.json", "gone");
    /* matching runs: accepted */
    summary(b, 1000, "embed,0-1", "2-3,head");
    topo_calib c;
    char err[ERR_LEN] = "";
    CU_ASSERT_EQUAL(topo_calib_load(r, 2, NULL, 1, &c, err), 0);
    topo_calib_free(&c);
}

/* Against the topology (2 stages: embed,0-1 | 2-3,head, 4 blocks): its model's
 * parameter count and unit count, its split (schedule: same_split), and the
 * runs' own split read for balance (same_split 0). */
static void test_topology(void)
{
    topo t;
    char err[ERR_LEN] = "";
    char *sets[] = { "coordinator.port=0" };
    CU_ASSERT_EQUAL_FATAL(topo_load(&t, "topologies/shakespeare-2stage.json", sets, 1, err), 0);
    long long params = 0;
    for (int u = 0; u < topo_n_units(&t); u++) params += (long long)model_unit_params(&t.model, u);
    const double u6[6] = { 0, 1, 1, 1, 1, 10 };
    const char *a = dir_of("ta"), *b = dir_of("tb");
    const char *r[2] = { a, b };
    char as[600];
    snprintf(as, sizeof as, "%s/summary.json", a);
    costs(a, 10, 30, 1, u6, -1);
    costs(b, 12, 32, 1, u6, -1);
    summary(a, params, "embed,0-3", "head");
    summary(b, params, "embed,0,1,2,3", "head"); /* the same units, written otherwise */
    refused(r, 2, &t, 1, as, "\"stages\"[0].\"layers\": the run's stage 0 held \"embed,0-3\"");
    topo_calib c;
    CU_ASSERT_EQUAL_FATAL(topo_calib_load(r, 2, &t, 0, &c, err), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c.split);
    CU_ASSERT_EQUAL(c.split_n[0], 5);
    CU_ASSERT_EQUAL(c.split_n[1], 1);
    CU_ASSERT_EQUAL(c.split[1][0], 5);
    CU_ASSERT_DOUBLE_EQUAL(c.costs->f[0], 11, 1e-12);
    topo_calib_free(&c);
    summary(a, params + 1, "embed,0-3", "head");
    refused(r, 2, &t, 0, as, "\"params\": the run's model has");
    summary(a, params, "embed,0-1", "2-3,head");
    summary(b, params, "embed,0-1", "2-3,head");
    CU_ASSERT_EQUAL(topo_calib_load(r, 2, &t, 1, &c, err), 0);
    topo_calib_free(&c);
    write_file(b, "costs.json", "{\"stages\": 2, \"chunks\": 1, \"f\": [1, 1], \"b\": [1, 1], \"w\": [1, 1], "
               "\"units\": {\"f\": [1, 1, 1, 1, 1, 1, 1, 1], \"b\": [1, 1, 1, 1, 1, 1, 1, 1], \"w\": [1, 1, 1, 1, 1, "
               "1, 1, 1]}}");
    refused(r, 2, &t, 1, "tb/costs.json", "\"units\".\"f\": 8 units, but");
    topo_free(&t);
}

int main(void)
{
    CU_TestInfo tests[] = {
        { "median: odd, even (mean of the middle two), one", test_median },
        { "median of 3 runs", test_median_of_3 },
        { "median of 2 runs", test_median_of_2 },
        { "runs of another layout, model or split refused", test_mismatch },
        { "against the topology; the runs' split for balance", test_topology },
        CU_TEST_INFO_NULL,
    };
    int rc = tests_run("calib", tests);
    if (tmpdir[0]) tests_rm_tree(tmpdir);
    return rc;
}
