/* test_straggle.c — the straggler hook's grammar and draw (stage/straggle.h):
 * specs for one replica or all, the last one naming a replica wins, bad specs
 * are refused naming the variable and the offset, and the draw is a pure
 * function of (seed, replica, step) with the asked-for frequency. */
#include "stage/straggle.h"
#include "tests.h"

#include "base/base.h"

static void test_parse(void)
{
    double p = -1, f = -1;
    char err[ERR_LEN] = "";
    CU_ASSERT(straggle_parse(NULL, 0, &p, &f, err) == 0 && p == 0 && f == 0);
    CU_ASSERT(straggle_parse("", 3, &p, &f, err) == 0 && p == 0 && f == 0);
    CU_ASSERT(straggle_parse("*:0.25:2", 1, &p, &f, err) == 0 && p == 0.25 && f == 2);
    CU_ASSERT(straggle_parse("1:1:2", 0, &p, &f, err) == 0 && p == 0 && f == 0);
    CU_ASSERT(straggle_parse("1:1:2", 1, &p, &f, err) == 0 && p == 1 && f == 2);
    CU_ASSERT(straggle_parse("*:0.5:1,1:1:3", 0, &p, &f, err) == 0 && p == 0.5 && f == 1);
    CU_ASSERT(straggle_parse("*:0.5:1,1:1:3", 1, &p, &f, err) == 0 && p == 1 && f == 3);
    CU_ASSERT(straggle_parse("1:1:3,*:0.5:1", 1, &p, &f, err) == 0 && p == 0.5 && f == 1);
}

/* expect: the offset the message must name */
static void bad(const char *spec, long offset)
{
    double p, f;
    char err[ERR_LEN] = "", want[64];
    int rc = straggle_parse(spec, 0, &p, &f, err);
    snprintf(want, sizeof want, "at offset %ld:", offset);
    CU_ASSERT(rc == -1);
    CU_ASSERT(strstr(err, "PIPETRAIN_STRAGGLE") != NULL);
    CU_ASSERT(strstr(err, want) != NULL);
    if (rc != -1 || !strstr(err, want)) fprintf(stderr, "\n  '%s': rc %d, '%s' (wanted '%s')\n", spec, rc, err, want);
}

static void test_bad(void)
{
    bad("x:1:2", 0);
    bad("-1:1:2", 0);
    bad("1", 1);
    bad("1:", 2);
    bad("1:0.5", 5);
    bad("1:1.5:2", 2);
    bad("1:nan:2", 2);
    bad("1:0.5:", 6);
    bad("1:0.5:1000", 6);
    bad("1:0.5:-1", 6);
    bad("1:0.5:2;", 7);
    bad("1:0.5:2,", 8);
    bad("*:0.5: 2", 6);
}

static void test_draw(void)
{
    long n = 100000, hits[2] = { 0, 0 }, same = 0;
    for (long s = 0; s < n; s++) {
        int a = straggle_due(1337, 0, s, 0.25), b = straggle_due(1337, 1, s, 0.25);
        hits[0] += a;
        hits[1] += b;
        same += a == b;
        CU_ASSERT_EQUAL(a, straggle_due(1337, 0, s, 0.25)); /* pure */
    }
    /* 0.25 each, independently: both or neither 0.625 of the steps */
    CU_ASSERT(fabs((double)hits[0] / (double)n - 0.25) < 0.01);
    CU_ASSERT(fabs((double)hits[1] / (double)n - 0.25) < 0.01);
    CU_ASSERT(fabs((double)same / (double)n - 0.625) < 0.01);
    CU_ASSERT(straggle_due(1337, 0, 5, 0) == 0);
    CU_ASSERT(straggle_due(1337, 0, 5, 1) == 1);
    long differ = 0; /* another seed, another pattern */
    for (long s = 0; s < 1000; s++) differ += straggle_due(1337, 0, s, 0.25) != straggle_due(7, 0, s, 0.25);
    CU_ASSERT(differ > 100);
}

int main(void)
{
    CU_TestInfo tests[] = {
        { "WHO:P:F for one replica or all, the last match wins", test_parse },
        { "bad specs name PIPETRAIN_STRAGGLE and the offset", test_bad },
        { "the draw: pure in (seed, replica, step), frequency p, independent", test_draw },
        CU_TEST_INFO_NULL,
    };
    return tests_run("straggle", tests);
}
