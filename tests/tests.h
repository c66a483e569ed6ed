/* tests.h — shared helpers for the CUnit suites: a one-call main and a
 * tensor comparison that prints the largest difference (llm.c check_tensor).
 * Header-only, static inline, so every suite links on its own. */
#ifndef TESTS_H
#define TESTS_H

#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

#endif
