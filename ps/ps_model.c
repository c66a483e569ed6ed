/* ps_model.c — the straggler model of ps_model.h: finish times by the
 * bounded-staleness recurrence, throughput over the common horizon. */
#include "ps/ps_model.h"

#include "base/base.h"

#include <math.h>
#include <stdlib.h>

static double uniform(uint64_t *x)
{
    /* xorshift64* (Vigna): the top 53 bits as a double in [0, 1) */
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    return (double)((*x * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

static double duration(const ps_model *m, int w, uint64_t *rng)
{
    double t = m->step_s * (m->slow[w] > 0 ? m->slow[w] : 1.0);
    double d = t + m->comm_s;
    if (m->pause_p > 0 && uniform(rng) < m->pause_p) d += m->pause_factor * t;
    return d;
}

double ps_model_rate(const ps_model *m, double batch)
{
    int R = m->workers;
    long K = m->steps, s = m->staleness;
    if (R < 1 || R > 16 || s < -1 || K < 1 || !(m->step_s > 0)) return -1.0;
    /* finish[k * R + w]; step k's start needs every worker's step k - s - 1,
     * which an earlier row holds, so rows are filled in order */
    double *finish = xcalloc((size_t)K * (size_t)R, sizeof *finish);
    uint64_t rng = m->seed ? m->seed : 0x9E3779B97F4A7C15ull;
    for (long k = 0; k < K; k++) {
        double gate = 0.0;
        if (s >= 0 && k - s - 1 >= 0)
            for (int j = 0; j < R; j++) gate = fmax(gate, finish[(size_t)(k - s - 1) * (size_t)R + (size_t)j]);
        for (int w = 0; w < R; w++) {
            double start = k ? finish[(size_t)(k - 1) * (size_t)R + (size_t)w] : 0.0;
            start = fmax(start, gate);
            finish[(size_t)k * (size_t)R + (size_t)w] = start + duration(m, w, &rng);
        }
    }
    double H = INFINITY;
    for (int w = 0; w < R; w++) H = fmin(H, finish[(size_t)(K - 1) * (size_t)R + (size_t)w]);
    long done = 0;
    for (long k = 0; k < K; k++)
        for (int w = 0; w < R; w++) done += finish[(size_t)k * (size_t)R + (size_t)w] <= H;
    free(finish);
    return (double)done * (batch / R) / H;
}
