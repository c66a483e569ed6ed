/* runtime_trace.c — a stage's trace (issue #10): the events of its most recent
 * steps in a bounded window (trace_window.h), so its memory stays flat however
 * long the run, and their upload after the last step: the clock rounds with the
 * coordinator, then the window in MSG_TRACE parts of at most
 * PROTO_TRACE_PART_BYTES, which every process's payload limit admits whatever
 * the model (stage_max_payload). The trace is best effort: a stage that cannot
 * send it says so (a part with n_parts 0) and goes on to STATS.
 * Not here: taking the times (runtime.c), gathering them (coord/coord_trace.c).
 *
 * For tests, PIPETRAIN_TEST_TRACE_FAULT=K:abort makes stage K give up its trace
 * after the clock rounds, and K:stall:S makes it sleep S seconds before its
 * first part (the coordinator's trace timeout then fires, or the test kills it). */
#include "model/util.h"
#include "stage/rt.h"
#include "stage/trace_window.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of v[0..n), n >= 1 (v is sorted). */
static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void rt_trace_start(rt *r)
{
    if (r->tw) return;
    size_t cap = trace_window_cap_for(TRACE_WINDOW_STEPS, r->sched->len[r->K], (size_t)r->n_chunks, (size_t)r->M);
    r->tw = trace_window_new(TRACE_WINDOW_STEPS, cap); /* NULL: nothing recorded, reported at the end */
}

void rt_trace_free(rt *r)
{
    trace_window_free(r->tw);
    r->tw = NULL;
}

void rt_event(rt *r, int op, int kind, int chunk, int mb, double t0, double t1)
{
    if ((!r->trace && !r->live) || !r->tw) return;
    proto_event e = { (uint8_t)op, (uint8_t)kind, (uint16_t)chunk, (uint32_t)mb, (uint64_t)r->step, t0, t1 };
    trace_window_push(r->tw, &e);
}

uint64_t rt_live_trailer(rt *r, uint8_t *out)
{
    size_t n = r->tw ? trace_window_len(r->tw) : 0, lo = n;
    while (lo > 0 && trace_window_at(r->tw, lo - 1)->step == (uint64_t)r->step) lo--;
    uint32_t m = 0;
    for (size_t i = lo; i < n && m < PROTO_LIVE_MAX_EVENTS; i++, m++)
        proto_event_encode(out + PROTO_LIVE_HEAD_BYTES + (size_t)m * PROTO_EVENT_BYTES, trace_window_at(r->tw, i));
    put_u32le(out, PROTO_LIVE_MAGIC);
    put_u32le(out + 4, m);
    put_f64le(out + 8, rt_now());
    proto_stats_encode(out + 16, &r->stats);
    return PROTO_LIVE_HEAD_BYTES + (uint64_t)m * PROTO_EVENT_BYTES;
}

/* The test fault for this stage: 0 none, 1 abort, 2 stall (*stall_s). */
static int test_fault(const rt *r, double *stall_s)
{
    const char *f = getenv("PIPETRAIN_TEST_TRACE_FAULT");
    int k = -1, n = 0;
    char mode[16] = "";
    if (!f || sscanf(f, "%d:%15[a-z]%n", &k, mode, &n) < 2 || k != r->K) return 0;
    if (!strcmp(mode, "abort")) return 1;
    if (!strcmp(mode, "stall") && f[n] == ':') {
        *stall_s = atof(f + n + 1);
        return 2;
    }
    return 0;
}

/* Tells the coordinator this stage gives up its trace (n_parts 0, reason). */
static int give_up(rt *r, uint32_t part, const char *why)
{
    uint8_t buf[8 + 256];
    size_t n = strlen(why) < 256 ? strlen(why) : 256;
    put_u32le(buf, 0);
    put_u32le(buf + 4, 0);
    memcpy(buf + 8, why, n);
    fprintf(stderr, "pipetrain stage %d: warning: no trace: %s\n", r->K, why);
    net_key k = { MSG_TRACE, (uint64_t)r->step, part, 0 };
    return rt_send_sync(r, net_coord_id(), k, buf, 8 + n);
}

/* The clock rounds: *offset is the coordinator's clock minus ours, from the
 * round with the smallest round trip. Returns 0, 1 when the coordinator gave
 * up on this stage's trace (a NaN clock), -1 on a failure. */
static int measure_offset(rt *r, double *offset)
{
    double best_rtt = INFINITY;
    uint8_t b8[8];
    *offset = 0;
    for (int i = 0; i < PROTO_SYNC_ROUNDS; i++) {
        net_key k = { MSG_SYNC, (uint64_t)r->step, (uint32_t)i, 0 };
        double t0 = rt_now();
        if (rt_send_sync(r, net_coord_id(), k, NULL, 0)) return -1;
        k.type = MSG_SYNC_REPLY;
        if (rt_recv_sync(r, net_coord_id(), k, b8, 8, "waiting for the coordinator's clock")) return -1;
        double t1 = rt_now(), coord = get_f64le(b8);
        if (isnan(coord)) return 1;
        if (t1 - t0 < best_rtt) { best_rtt = t1 - t0; *offset = coord - 0.5 * (t0 + t1); }
    }
    return 0;
}

int rt_send_trace(rt *r)
{
    double offset, stall_s = 0;
    int rc = measure_offset(r, &offset);
    if (rc) return rc < 0 ? -1 : 0;
    int fault = test_fault(r, &stall_s);
    if (fault == 1) return give_up(r, 0, "PIPETRAIN_TEST_TRACE_FAULT asked this stage to give up its trace");
    if (!r->tw) return give_up(r, 0, "no memory for the trace window");
    if (fault == 2) {
        fprintf(stderr, "pipetrain stage %d: PIPETRAIN_TEST_TRACE_FAULT: stalling %.1f s before the trace\n", r->K, stall_s);
        nanosleep(&(struct timespec){ (time_t)stall_s, (long)((stall_s - (double)(time_t)stall_s) * 1e9) }, NULL);
    }
    /* the per-unit medians follow the window's events (PROTO_EV_UNIT), within the cap */
    size_t n_win = trace_window_len(r->tw), n_units = r->unit_time ? (size_t)r->part->n_units : 0, n_unit_ev = 0;
    proto_event *uev = n_units ? malloc(3 * n_units * sizeof *uev) : NULL;
    double *tmp = n_units ? malloc(sizeof(double) * RT_UNIT_SAMPLES) : NULL;
    for (size_t i = 0; uev && tmp && i < n_units; i++)
        for (int op = 0; op < 3; op++) {
            const model_unit_timer *u = r->unit_time;
            size_t k = 3 * i + (size_t)op, n = u->n[k] < (size_t)u->cap ? u->n[k] : (size_t)u->cap;
            if (!n || r->part->units[i] > UINT16_MAX) continue;
            memcpy(tmp, u->t + k * (size_t)u->cap, n * sizeof(double));
            uev[n_unit_ev++] = (proto_event){ PROTO_EV_UNIT, (uint8_t)op, (uint16_t)r->part->units[i],
                                              (uint32_t)u->n[k], (uint64_t)r->step, 0, median(tmp, n) };
        }
    free(tmp);
    if (n_win + n_unit_ev > PROTO_TRACE_MAX_EVENTS) n_unit_ev = 0;
    size_t n_ev = n_win + n_unit_ev, per = PROTO_TRACE_PART_EVENTS;
    size_t parts = n_ev ? (n_ev + per - 1) / per : 1;
    uint8_t *buf = malloc(PROTO_TRACE_PART_BYTES);
    if (!buf) {
        free(uev);
        return give_up(r, 0, "no memory for a trace part");
    }
    for (size_t p = 0; p < parts && !rc; p++) {
        size_t lo = p * per, n = n_ev - lo < per ? n_ev - lo : per;
        if (!n_ev) n = 0;
        put_u32le(buf, (uint32_t)parts);
        put_u32le(buf + 4, (uint32_t)n);
        for (size_t i = 0; i < n; i++) {
            proto_event e = lo + i < n_win ? *trace_window_at(r->tw, lo + i) : uev[lo + i - n_win];
            if (lo + i < n_win) {
                e.t0 += offset;
                e.t1 += offset;
            }
            proto_event_encode(buf + 8 + i * PROTO_EVENT_BYTES, &e);
        }
        net_key k = { MSG_TRACE, (uint64_t)r->step, (uint32_t)p, 0 };
        rc = rt_send_sync(r, net_coord_id(), k, buf, 8 + n * PROTO_EVENT_BYTES);
    }
    free(buf);
    free(uev);
    return rc;
}
