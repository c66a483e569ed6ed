/* tests.h — shared helpers for the CUnit suites: a one-call main and a
 * tensor comparison that prints the largest difference (llm.c check_tensor).
 * Header-only, static inline, so every suite links on its own. */
#ifndef TESTS_H
#define TESTS_H

#include <CUnit/Basic.h>
#include <dirent.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Runs one suite in basic mode; returns 0 when every test passed. */
static inline int tests_run(const char *suite, CU_TestInfo *tests)
{
    CU_SuiteInfo suites[] = { { suite, NULL, NULL, NULL, NULL, tests }, CU_SUITE_INFO_NULL };
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
    if (CU_register_suites(suites) != CUE_SUCCESS) return 2;
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_tests_failed() + CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}

/* Compares a (n) against b (n) with |a-b| <= atol + rtol*|b|. Prints the worst
 * element and the first few values when they differ; returns 1 when they match. */
static inline int tests_close(const char *what, const double *a, const double *b, size_t n,
                              double atol, double rtol)
{
    size_t worst = 0, bad = 0;
    double worst_d = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (!(d <= atol + rtol * fabs(b[i]))) bad++;
        if (!(d <= worst_d)) { worst_d = d; worst = i; }
    }
    if (bad) {
        fprintf(stderr, "\n  %s: %zu/%zu differ, worst at %zu: %.9g vs %.9g (diff %.3g)\n",
                what, bad, n, worst, a[worst], b[worst], worst_d);
        for (size_t i = 0; i < n && i < 5; i++)
            fprintf(stderr, "    [%zu] %.9g vs %.9g\n", i, a[i], b[i]);
    }
    return bad == 0;
}

/* A bad-input corpus: for every NAME.expect in dir, calls check(path, want) with
 * path = dir/NAME and want = the first line of NAME.expect (asserted non-empty).
 * Returns the number of cases. */
static inline int tests_each_expect(const char *dir, void (*check)(const char *path, const char *want))
{
    DIR *d = opendir(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 8 || strcmp(e->d_name + len - 7, ".expect")) continue;
        char path[1024], expect_path[1100], want[512] = "";
        snprintf(path, sizeof path, "%s/%.*s", dir, (int)(len - 7), e->d_name);
        snprintf(expect_path, sizeof expect_path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(expect_path, "r");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        if (!fgets(want, sizeof want, f)) want[0] = 0;
        fclose(f);
        want[strcspn(want, "\n")] = 0;
        CU_ASSERT(want[0] != 0);
        check(path, want);
        n++;
    }
    closedir(d);
    return n;
}

/* Removes the files in dir (one level) and dir itself; "" does nothing. */
static inline void tests_rm_dir(const char *dir)
{
    if (!dir[0]) return;
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[1024];
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') { snprintf(p, sizeof p, "%s/%s", dir, e->d_name); unlink(p); }
    if (d) closedir(d);
    rmdir(dir);
}

static inline int tests_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb; (void)flag; (void)f;
    return remove(path);
}

/* Removes dir and everything under it (like rm -rf, without a shell).
 * Returns 0, or -1 when something could not be removed. */
static inline int tests_rm_tree(const char *dir)
{
    return nftw(dir, tests_rm_entry, 16, FTW_DEPTH | FTW_PHYS) ? -1 : 0;
}

#endif
