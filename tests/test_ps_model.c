/* test_ps_model.c — the straggler model bench ps prints (ps/ps_model.h)
 * against closed forms. */
#include "ps/ps_model.h"
#include "tests.h"

static double rate(int R, long s, double slow1, double p, long steps)
{
    ps_model m = { .workers = R, .staleness = s, .step_s = 0.1, .pause_p = p, .pause_factor = 2.0,
                   .steps = steps, .seed = 42 };
    if (slow1 > 0) m.slow[1] = slow1;
    return ps_model_rate(&m, 12.0);
}

static int near(double a, double b, double rel)
{
    if (fabs(a - b) <= rel * fabs(b)) return 1;
    fprintf(stderr, "\n  %.6g vs %.6g\n", a, b);
    return 0;
}

/* No variation: every mode runs at R workers' full rate, B / t. */
static void test_uniform(void)
{
    for (long s = -1; s <= 3; s++) CU_ASSERT(near(rate(2, s, 0, 0, 1000), 12.0 / 0.1, 1e-9));
    CU_ASSERT(near(rate(1, 0, 0, 0, 10), 120.0, 1e-12));
}

/* One worker 3x slower: BSP runs at the slow one's pace, B / 3t; unbounded
 * lets each worker go at its own, (B/2)(1/t + 1/3t) = 2B / 3t; a bound of 2
 * only buys a head start, so over a long run it tends to BSP's rate. */
static void test_persistent(void)
{
    double bsp = rate(2, 0, 3.0, 0, 3000), async = rate(2, -1, 3.0, 0, 3000), ssp = rate(2, 2, 3.0, 0, 3000);
    CU_ASSERT(near(bsp, 12.0 / 0.3, 1e-3)); /* the horizon cuts the last step: O(1/K) */
    CU_ASSERT(near(async, 2.0 * 12.0 / 0.3, 1e-3));
    CU_ASSERT(ssp > bsp && near(ssp, bsp, 2e-3));
}

/* Transient pauses (p = 0.25, 2t extra): BSP pays E[max of R] per step,
 * t (1 + 2 (1 - 0.75^R)); unbounded pays the mean, t (1 + 2 * 0.25); a bound
 * of 2 lies between, and closer to unbounded. */
static void test_transient(void)
{
    long K = 200000;
    double bsp = rate(2, 0, 0, 0.25, K), async = rate(2, -1, 0, 0.25, K), ssp = rate(2, 2, 0, 0.25, K);
    CU_ASSERT(near(bsp, 12.0 / (0.1 * (1 + 2 * (1 - 0.75 * 0.75))), 0.01));
    CU_ASSERT(near(async, 12.0 / (0.1 * 1.5), 0.01));
    CU_ASSERT(ssp > bsp * 1.1 && ssp < async);
    /* the stream is a pure function of the seed */
    CU_ASSERT(rate(2, 2, 0, 0.25, 1000) == rate(2, 2, 0, 0.25, 1000));
}

static void test_bad(void)
{
    CU_ASSERT(rate(0, 0, 0, 0, 10) < 0);
    CU_ASSERT(rate(17, 0, 0, 0, 10) < 0);
    CU_ASSERT(rate(2, -2, 0, 0, 10) < 0);
    CU_ASSERT(rate(2, 0, 0, 0, 0) < 0);
}

int main(void)
{
    CU_TestInfo tests[] = {
        { "no variation: every bound gives B / t", test_uniform },
        { "persistent straggler: BSP B/3t, unbounded 2B/3t, bound 2 -> BSP", test_persistent },
        { "transient pauses: BSP E[max], unbounded E[mean], bound 2 between", test_transient },
        { "out-of-range parameters are refused", test_bad },
        CU_TEST_INFO_NULL,
    };
    return tests_run("ps_model", tests);
}
