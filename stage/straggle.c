/* straggle.c — PIPETRAIN_STRAGGLE's grammar and the seeded pause decision (see
 * straggle.h). No clock, no sleep: runtime_straggle.c does those. */
#include "stage/straggle.h"

#include "base/base.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>

/* A number at *s in [lo, hi] into *v; advances *s. -1 with err otherwise. */
static int number(const char *spec, const char **s, double lo, double hi, const char *what, double *out, char *err)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(*s, &end);
    if (end == *s || isspace((unsigned char)**s) || errno || !isfinite(v) || v < lo || v > hi)
        return seterr(err, "%s at offset %ld: expected %s (a number in %g..%g), found '%.20s'", STRAGGLE_ENV,
                      (long)(*s - spec), what, lo, hi, *s);
    *s = end;
    *out = v;
    return 0;
}

int straggle_parse(const char *spec, int replica, double *p, double *factor, char *err)
{
    *p = *factor = 0;
    if (!spec || !*spec) return 0;
    const char *s = spec;
    for (;;) {
        int all = 0;
        long who = -1;
        if (*s == '*') {
            all = 1;
            s++;
        } else {
            char *end = NULL;
            errno = 0;
            who = strtol(s, &end, 10);
            if (end == s || errno || who < 0 || who > 65535 || *s == '+' || *s == '-' || *s == ' ')
                return seterr(err, "%s at offset %ld: expected a replica index or '*', found '%.20s' (the form is "
                              "WHO:P:F[,WHO:P:F...])", STRAGGLE_ENV, (long)(s - spec), s);
            s = end;
        }
        double pv, fv;
        if (*s != ':')
            return seterr(err, "%s at offset %ld: expected ':' after the replica, found '%.20s'", STRAGGLE_ENV,
                          (long)(s - spec), s);
        s++;
        if (number(spec, &s, 0, 1, "the pause probability P", &pv, err)) return -1;
        if (*s != ':')
            return seterr(err, "%s at offset %ld: expected ':' after the probability, found '%.20s'", STRAGGLE_ENV,
                          (long)(s - spec), s);
        s++;
        if (number(spec, &s, 0, 100, "the pause factor F (normal step times)", &fv, err)) return -1;
        if (all || who == replica) {
            *p = pv;
            *factor = fv;
        }
        if (!*s) return 0;
        if (*s != ',')
            return seterr(err, "%s at offset %ld: expected ',' or the end after the factor, found '%.20s'",
                          STRAGGLE_ENV, (long)(s - spec), s);
        s++;
    }
}

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

int straggle_due(uint64_t seed, int replica, long step, double p)
{
    if (!(p > 0)) return 0;
    uint64_t h = splitmix64(splitmix64(splitmix64(seed) ^ (uint64_t)(uint32_t)replica) ^ (uint64_t)step);
    return (double)(h >> 11) / 9007199254740992.0 < p;
}
