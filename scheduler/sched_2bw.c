/* sched_2bw.c — cross-step schedules (PipeDream-2BW, sched.h): the actions of
 * one step of a run (fill, steady state, drain), unrolling several steps into an
 * ordinary schedule, and checking and simulating the steady state on it. The
 * generator is in sched_gen.c; the weight versions are the runtime's business. */
#include <stdlib.h>
#include <string.h>

#include "scheduler/sched_int.h"

int sched_is_cross_step(const sched_schedule *s)
{
    for (int st = 0; s && st < s->n_stages; st++)
        for (size_t i = 0; i < s->len[st]; i++)
            if (s->act[st][i].next) return 1;
    return 0;
}

size_t sched_2bw_step(const sched_schedule *s, int stage, int first, int last, sched_action *out)
{
    size_t n = 0, len = s->len[stage];
    const sched_action *a = s->act[stage];
    for (size_t i = 0; first && i < len; i++)
        if (a[i].next) {
            out[n] = a[i];
            out[n++].next = 0;
        }
    for (size_t i = 0; i < len; i++)
        if (!(last && a[i].next)) out[n++] = a[i];
    return n;
}

sched_schedule *sched_unroll(const sched_schedule *s, int n_steps, char *err)
{
    int M = s->n_micro;
    if (n_steps < 1 || (long long)n_steps * M > (1 << 24)) {
        sched_seterr(err, "2bw: cannot unroll %d steps of %d micro-batches", n_steps, M);
        return NULL;
    }
    sched_schedule *u = sched_new(s->n_stages, s->n_chunks, n_steps * M);
    sched_action *buf = NULL;
    size_t most = 0;
    for (int st = 0; st < s->n_stages; st++) most = s->len[st] > most ? s->len[st] : most;
    if (u) buf = malloc((most + (size_t)M + 1) * sizeof *buf);
    if (!u || !buf) goto oom;
    snprintf(u->kind, sizeof u->kind, "2bw");
    u->placement = s->placement;
    for (int st = 0; st < s->n_stages; st++)
        for (int k = 0; k < n_steps; k++) {
            size_t n = sched_2bw_step(s, st, k == 0, k == n_steps - 1, buf);
            for (size_t i = 0; i < n; i++) {
                sched_action a = buf[i];
                a.mb += (uint32_t)((k + a.next) * M);
                a.next = 0;
                if (sched_append(u, st, a)) goto oom;
            }
        }
    free(buf);
    return u;
oom:
    free(buf);
    sched_free(u);
    sched_seterr(err, "2bw: out of memory unrolling %d steps", n_steps);
    return NULL;
}

/* The list itself: indices in range, the next-step mark only on forwards, and
 * one F and one backward (BW, or B and W) per micro-batch on every stage. */
static int check_list(const sched_schedule *s, char *err)
{
    int M = s->n_micro;
    uint8_t *seen = malloc((size_t)M);
    if (!seen) return sched_seterr(err, "out of memory checking the schedule");
    char w[400], an[64];
    int rc = 0;
    for (int st = 0; st < s->n_stages && !rc; st++) {
        memset(seen, 0, (size_t)M);
        for (size_t i = 0; i < s->len[st] && !rc; i++) {
            sched_action a = s->act[st][i];
            sched_where(s, st, i, w, sizeof w);
            if (a.op > SCHED_BW || a.chunk >= s->n_chunks || a.mb >= (uint32_t)M)
                rc = sched_seterr(err, "%s: bad action (op %u, micro-batch %u, chunk %u): expected micro-batch "
                                       "0..%d, chunk 0..%d", w, a.op, a.mb, a.chunk, M - 1, s->n_chunks - 1);
            else if (a.next && a.op != SCHED_F)
                rc = sched_seterr(err, "%s: %s: only a forward may belong to the next step (2bw)", w,
                                  sched_action_name(a, s->n_chunks, an, sizeof an));
            else if (seen[a.mb] & (1 << a.op) || (a.op == SCHED_BW && (seen[a.mb] & 6)) ||
                     (a.op != SCHED_F && a.op != SCHED_BW && (seen[a.mb] & 8)))
                rc = sched_seterr(err, "%s: duplicated %s", w, sched_action_name(a, s->n_chunks, an, sizeof an));
            else
                seen[a.mb] |= (uint8_t)(1 << a.op);
        }
        for (int m = 0; m < M && !rc; m++)
            if (!(seen[m] & 1) || !((seen[m] & 8) || (seen[m] & 6) == 6))
                rc = sched_seterr(err, "stage %d: micro-batch %d needs one F and one backward (BW, or B and W) in "
                                       "the step's list", st, m);
    }
    free(seen);
    return rc;
}

/* "2bw, unrolled over N steps: " before a message about the unrolled schedule. */
static void prefix(char *err, int n)
{
    char tmp[SCHED_ERR_LEN];
    snprintf(tmp, sizeof tmp, "2bw, unrolled over %d steps: %s", n, err);
    memcpy(err, tmp, SCHED_ERR_LEN);
}

int sched_2bw_check(const sched_schedule *s, sched_report **rp, char *err)
{
    if (rp) *rp = NULL;
    if (check_list(s, err)) return -1;
    sched_schedule *u = sched_unroll(s, 3, err);
    if (!u) return -1;
    sched_report *ur = NULL;
    int rc = sched_check(u, &ur, err);
    if (rc) {
        prefix(err, 3);
    } else if (rp) {
        sched_report *r = sched_report_alloc(s, 0, 0);
        if (!r) rc = sched_seterr(err, "out of memory validating the schedule");
        else memcpy(r->peak_mb, ur->peak_mb, (size_t)s->n_stages * sizeof(int));
        *rp = r;
    }
    sched_report_free(ur);
    sched_free(u);
    return rc;
}

static double cost_of(const sched_costs *c, size_t k, int op)
{
    return op == SCHED_F ? c->f[k] : op == SCHED_B ? c->b[k] : op == SCHED_W ? c->w[k] : c->b[k] + c->w[k];
}

int sched_2bw_simulate(const sched_schedule *s, const sched_costs *c, int timeline, sched_report **rp, char *err)
{
    enum { N1 = 2, N2 = 6, SHOWN = 2 }; /* SHOWN: the step drawn, 0-based */
    *rp = NULL;
    if (c->ar && c->ar->replicas > 1)
        return sched_seterr(err, "2bw: data parallelism (replicas) is not supported with the asynchronous pipeline");
    if (check_list(s, err)) return -1;
    sched_schedule *u1 = sched_unroll(s, N1, err), *u2 = u1 ? sched_unroll(s, N2, err) : NULL;
    sched_report *r1 = NULL, *r2 = NULL, *r = NULL;
    int rc = -1;
    if (!u2) goto done;
    if (sched_simulate(u1, c, 0, &r1, err) || sched_simulate(u2, c, 1, &r2, err)) {
        prefix(err, r1 ? N2 : N1);
        goto done;
    }
    r = sched_report_alloc(s, 1, timeline);
    if (r) r->extra_weight_bytes = calloc((size_t)s->n_stages, sizeof(double));
    if (!r || !r->extra_weight_bytes) {
        sched_seterr(err, "out of memory simulating the schedule");
        goto done;
    }
    r->step_time = r->compute_time = (r2->step_time - r1->step_time) / (N2 - N1);
    r->steps_simulated = N2;
    double sum = 0, t0 = -1;
    for (int st = 0; st < s->n_stages; st++) {
        size_t w = 0;
        for (size_t i = 0; i < s->len[st]; i++) w += s->act[st][i].next;
        for (size_t i = 0; i < s->len[st]; i++) {
            sched_action a = s->act[st][i];
            size_t k = sched_vstage(s, st, a.chunk);
            r->busy[st] += cost_of(c, k, a.op);
            double t = r2->start[st][w + SHOWN * s->len[st] + i];
            if (t0 < 0 || t < t0) t0 = t;
        }
        sum += r->busy[st];
        r->peak_mb[st] = r2->peak_mb[st];
        r->peak_bytes[st] = r2->peak_bytes[st];
        for (int ch = 0; ch < s->n_chunks; ch++)
            r->extra_weight_bytes[st] += 2 * c->weight_bytes[sched_vstage(s, st, ch)];
    }
    double T = r->step_time;
    for (int st = 0; st < s->n_stages; st++) r->bubble_stage[st] = T > 0 ? 1 - r->busy[st] / T : 0;
    r->bubble = T > 0 ? 1 - sum / (T * s->n_stages) : 0;
    for (int st = 0; timeline && st < s->n_stages; st++) {
        size_t w = 0;
        for (size_t i = 0; i < s->len[st]; i++) w += s->act[st][i].next;
        for (size_t i = 0; i < s->len[st]; i++) {
            r->start[st][i] = r2->start[st][w + SHOWN * s->len[st] + i] - t0;
            r->end[st][i] = r2->end[st][w + SHOWN * s->len[st] + i] - t0;
        }
    }
    *rp = r;
    r = NULL;
    rc = 0;
done:
    sched_report_free(r);
    sched_report_free(r1);
    sched_report_free(r2);
    sched_free(u1);
    sched_free(u2);
    return rc;
}
