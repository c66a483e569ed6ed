/* coord_trace.c — the coordinator's side of a run's trace (stage/proto.h, step
 * 4, when START carried PROTO_START_TRACE): the clock rounds with each stage in
 * turn, its events in parts, and OUT/trace.json in Chrome's trace format
 * (opens in Perfetto and chrome://tracing): one process per stage, with
 * compute actions, tensor waits and tensor sends on three tracks; then the
 * measured timeline, costs and summary timing (coord_timeline.c). Best
 * effort (issue #10): every wait is bounded by coord_trace_timeout_s and a
 * failure costs the trace, never the run (summary.json's "trace").
 * Not here: recording the events (stage/runtime_trace.c). */
#include "coord/coord_int.h"
#include "coord/coord_timeline.h"
#include "model/util.h"
#include "scheduler/sched.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

double coord_trace_timeout_s(const coordinator *c)
{
    double s = 3 * c->o.peer_timeout_ms / 1e3, step = c->o.step_timeout_ms / 1e3;
    if (s < 1) s = 1;
    return step > 0 && step < s ? step : s;
}

/* Receives one message from process k into buf (cap bytes), within the
 * trace timeout; failures are soft (c->soft, coord.c). */
static int recv_one(coordinator *c, int k, net_key key, void *buf, uint64_t cap, uint64_t *len, const char *what,
                    char *err)
{
    int n = c->n_proc;
    struct net_op *ops[n];
    uint64_t lens[n];
    char nerr[NET_ERR_LEN];
    memset(ops, 0, sizeof ops);
    if (net_recv_post(c->node, coord_sid(c, k), key, buf, cap, &ops[k], nerr) != NET_OK)
        return coord_bad_message(c, k, err, "%s", nerr);
    c->limit_s = coord_trace_timeout_s(c);
    if (coord_wait_all(c, ops, lens, coord_now() + c->limit_s, what, err)) return 1;
    if (len) *len = lens[k];
    return 0;
}

/* Tells stage k, waiting in clock round `from` or later, that its trace is
 * not wanted any more: a NaN clock for every remaining round (best effort). */
static void release_clock(coordinator *c, int k, uint32_t from)
{
    uint64_t step = (uint64_t)c->t->train.steps - 1;
    uint8_t b[8];
    char nerr[NET_ERR_LEN];
    put_f64le(b, NAN);
    for (uint32_t i = from; i < PROTO_SYNC_ROUNDS && !c->gone[k]; i++) {
        struct net_op *op = NULL;
        if (net_send(c->node, coord_sid(c, k), coord_key(MSG_SYNC_REPLY, step, i), b, 8, 100, &op, nerr) == NET_OK)
            net_wait(op, 500, nerr);
        net_op_free(op);
    }
}

/* PROTO_SYNC_ROUNDS rounds of SYNC -> SYNC_REPLY (our clock) with process k. */
static int serve_clock(coordinator *c, int k, char *err)
{
    int n = c->n_proc;
    uint64_t step = (uint64_t)c->t->train.steps - 1;
    uint8_t b[8];
    char nerr[NET_ERR_LEN];
    for (uint32_t i = 0; i < PROTO_SYNC_ROUNDS; i++) {
        char what[32];
        snprintf(what, sizeof what, "SYNC round %u", i);
        if (recv_one(c, k, coord_key(MSG_SYNC, step, i), b, sizeof b, NULL, what, err)) {
            release_clock(c, k, i);
            return 1;
        }
        put_f64le(b, coord_now());
        struct net_op *ops[n];
        memset(ops, 0, sizeof ops);
        if (net_send(c->node, coord_sid(c, k), coord_key(MSG_SYNC_REPLY, step, i), b, 8, c->o.peer_timeout_ms, &ops[k],
                     nerr) != NET_OK)
            return coord_bad_message(c, k, err, "%s", nerr);
        c->limit_s = coord_trace_timeout_s(c);
        if (coord_wait_all(c, ops, NULL, coord_now() + c->limit_s, "send", err)) return 1;
    }
    return 0;
}

/* A reason from the wire, printable: at most len bytes of ASCII, others '?'. */
static void printable(char *out, size_t cap, const uint8_t *in, uint64_t len)
{
    size_t n = len < cap - 1 ? (size_t)len : cap - 1;
    for (size_t i = 0; i < n; i++) out[i] = in[i] >= 32 && in[i] < 127 ? (char)in[i] : '?';
    out[n] = 0;
}

/* Stage k's events, in parts, appended to (*ev, *n_ev). Returns 0, or 1 with
 * err when the stage gave its trace up, a part is malformed or late (what
 * came before stays in *ev). */
static int gather_events(coordinator *c, int k, proto_event **ev, size_t *n_ev, char *err)
{
    uint64_t step = (uint64_t)c->t->train.steps - 1, cap = PROTO_TRACE_PART_BYTES;
    uint8_t *buf = xmalloc(cap);
    uint32_t parts = 1;
    int rc = 0;
    for (uint32_t p = 0; p < parts && !rc; p++) {
        uint64_t len = 0;
        char what[32];
        snprintf(what, sizeof what, "TRACE part %u", p);
        if ((rc = recv_one(c, k, coord_key(MSG_TRACE, step, p), buf, cap, &len, what, err))) break;
        uint32_t np = len >= 8 ? get_u32le(buf) : 0, ne = len >= 8 ? get_u32le(buf + 4) : 0;
        if (len >= 8 && np == 0) {
            char why[300];
            printable(why, sizeof why, buf + 8, len - 8);
            rc = coord_bad_message(c, k, err, "it gave up its trace: %s", why);
            break;
        }
        if (p == 0) parts = np;
        if (len < 8 || np != parts || np > PROTO_TRACE_MAX_PARTS || ne > PROTO_TRACE_PART_EVENTS ||
            len != 8 + (uint64_t)ne * PROTO_EVENT_BYTES) {
            rc = coord_bad_message(c, k, err, "TRACE part %u is malformed (%llu bytes, %u parts, %u events)", p,
                                   (unsigned long long)len, np, ne);
            break;
        }
        proto_event *grown = realloc(*ev, (*n_ev + ne + 1) * sizeof **ev);
        if (!grown) { rc = coord_bad_message(c, k, err, "out of memory for its trace"); break; }
        *ev = grown;
        for (uint32_t i = 0; i < ne; i++) proto_event_decode(&(*ev)[(*n_ev)++], buf + 8 + (size_t)i * PROTO_EVENT_BYTES);
    }
    free(buf);
    return rc;
}

static const char *op_name(int op)
{
    static const char *names[] = { "F", "B", "W", "BW" };
    return op >= 0 && op < 4 ? names[op] : "?";
}

/* One event as a Chrome "complete" event; times in us from t_min. */
static void put_event(FILE *f, int k, const proto_event *e, double t_min, int chunks)
{
    int track = e->op == PROTO_EV_WAIT ? 1 : e->op == PROTO_EV_SEND ? 2 : e->op == PROTO_EV_ALLREDUCE ? 3 : 0;
    const char *pre = track == 1 ? "wait " : track == 2 ? "send " : "";
    const char *kind = track == 3 ? "all-reduce" : e->op == PROTO_EV_PAUSE ? "pause" : op_name(track ? e->kind : e->op);
    char name[64];
    if (e->op == PROTO_EV_PAUSE) /* the straggler hook's sleep (stage/straggle.h) */
        snprintf(name, sizeof name, "pause");
    else if (track == 3)
        snprintf(name, sizeof name, "bucket %u", e->mb);
    else if (chunks > 1) snprintf(name, sizeof name, "%s%s%u.%u", pre, kind, e->mb, e->chunk);
    else snprintf(name, sizeof name, "%s%s%u", pre, kind, e->mb);
    fprintf(f, ",\n{\"name\": \"%s\", \"cat\": \"%s\", \"ph\": \"X\", \"pid\": %d, \"tid\": %d, \"ts\": %.3f, "
               "\"dur\": %.3f, \"args\": {\"step\": %llu, \"mb\": %u, \"chunk\": %u}}",
            name, track == 1 ? "wait" : track == 2 ? "send" : kind, k, track, (e->t0 - t_min) * 1e6,
            (e->t1 - e->t0) * 1e6, (unsigned long long)e->step + 1, e->mb, e->chunk);
}

int coord_write_trace(const char *path, const topo *t, proto_event *const *ev, const size_t *n_ev, char *err)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return seterr(err, "%s: %s", tmp, strerror(errno));
    double t_min = INFINITY;
    int n_proc = t->n_stages * t->n_replicas;
    for (int k = 0; k < n_proc; k++)
        for (size_t i = 0; i < n_ev[k]; i++)
            if (ev[k][i].op != PROTO_EV_UNIT) t_min = fmin(t_min, ev[k][i].t0);
    fprintf(f, "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [\n{\"name\": \"clock\", \"ph\": \"M\", \"pid\": 0, "
               "\"args\": {\"t0_monotonic_s\": %.6f}}", isfinite(t_min) ? t_min : 0.0);
    static const char *tracks[] = { "compute", "tensor waits", "tensor sends", "all-reduce" };
    for (int k = 0; k < n_proc; k++) {
        const topo_stage *s = &t->stages[k % t->n_stages];
        const topo_replica *rp = &s->replicas[k / t->n_stages];
        char who[48];
        fprintf(f, ",\n{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": %d, \"args\": {\"name\": \"%s "
                   "(%s:%d, %s)\"}}", k, coord_who(t, k, who, sizeof who), rp->host, rp->port, s->layers);
        for (int tr = 0; tr < (t->n_replicas > 1 ? 4 : 3); tr++)
            fprintf(f, ",\n{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": %d, \"tid\": %d, \"args\": "
                       "{\"name\": \"%s\"}}", k, tr, tracks[tr]);
        for (size_t i = 0; i < n_ev[k]; i++) /* per-unit totals: costs.json's, no span */
            if (ev[k][i].op != PROTO_EV_UNIT) put_event(f, k, &ev[k][i], t_min, t->chunks_per_stage);
    }
    fprintf(f, "\n]}\n");
    int bad = ferror(f) | fclose(f);
    if (bad || rename(tmp, path)) {
        remove(tmp);
        return seterr(err, "%s: write failed: %s", path, strerror(errno));
    }
    return 0;
}

void coord_gather_trace(coordinator *c)
{
    int n = c->n_grid, lost = 0; /* the stage processes trace; parameter servers do not */
    proto_event **ev = xcalloc((size_t)n, sizeof *ev);
    size_t *n_ev = xcalloc((size_t)n, sizeof *n_ev);
    char first[ERR_LEN] = "", err[ERR_LEN], status[ERR_LEN + 64];
    c->soft = 1;
    for (int k = 0; k < n; k++) {
        err[0] = 0;
        if (!c->gone[k] && !serve_clock(c, k, err) && !gather_events(c, k, &ev[k], &n_ev[k], err)) continue;
        char who[48];
        if (!err[0]) snprintf(err, sizeof err, "%s died before its trace", coord_who(c->t, k, who, sizeof who));
        fprintf(stderr, "pipetrain: warning: no complete trace from %s\n", err);
        if (!lost++) snprintf(first, sizeof first, "%s", err);
    }
    c->soft = 0;
    char path[4200], werr[ERR_LEN];
    snprintf(path, sizeof path, "%s/trace.json", c->o.out_dir);
    if (coord_write_trace(path, c->t, ev, n_ev, werr)) {
        fprintf(stderr, "pipetrain: warning: %s\n", werr);
        if (!lost++) snprintf(first, sizeof first, "%s", werr);
    } else if (lost) {
        /* a stage's events missing: no measurement pretends to cover them */
        fprintf(stderr, "pipetrain: no timeline.svg: the trace is partial\n");
    } else if (coord_timeline(c->t, c->o.out_dir, ev, n_ev, &c->timing, werr)) {
        /* (ev[0..P-1] are replica 0's pipeline: with replicas the timeline measures that one) */
        /* the run itself succeeded: a trace that cannot be measured is a remark */
        fprintf(stderr, "pipetrain: no timeline.svg: %s\n", werr);
    }
    if (!lost) snprintf(status, sizeof status, "complete");
    else if (lost == 1) snprintf(status, sizeof status, "partial: %s", first);
    else snprintf(status, sizeof status, "partial: %s (and %d more)", first, lost - 1);
    run_log_trace(c->log, status);
    for (int k = 0; k < n; k++) free(ev[k]);
    free(ev);
    free(n_ev);
}
