/* coord_http.c — the live view's server (see coord_http.h): state fed by the
 * coordinator's thread under a mutex; an evhttp on a thread of its own that
 * renders /metrics, /api/status and the page from it.
 * Not here: the page's HTML/JS (coord_http_page.c), decoding NORM
 * (coord/coord.c hands the trailer over). */
#include "coord/coord_http.h"
#include "base/base.h"
#include "scheduler/sched.h"
#include "stage/proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

extern const char coord_http_page[]; /* coord_http_page.c */

#define MAX_POINTS 1000 /* losses in /api/status: downsampled beyond */

/* What the coordinator last heard from one process. */
typedef struct {
    int have;
    long step;            /* 0-based step of the events */
    proto_stats st;       /* cumulative, this attempt */
    double offset;        /* coordinator clock - stage clock: 0 on this machine (one CLOCK_MONOTONIC), else
                             the least (NORM's arrival - its sending) seen, latency included */
    int local;            /* the process's host is loopback: same clock */
    int have_offset;
    uint32_t n_ev;
    proto_event ev[PROTO_LIVE_MAX_EVENTS];
} live_proc;

struct coord_http {
    const topo *t;
    char name[256];
    uint64_t run_id;
    int P, R, n_proc, port, auth;
    int async;            /* sync "ps", staleness != 0: each worker (replica) at a step of its own */
    const char *note;     /* why per-process numbers are missing, or NULL */
    char token[65];
    struct event_base *base;
    struct evhttp *http;
    struct event *tick;
    pthread_t thr;
    int started;
    _Atomic int stop;
    pthread_mutex_t mu;
    /* under mu */
    long step, first;     /* steps done (1-based last), first step of the attempt */
    double loss, lr, norm, val, tok_s, step_ms;
    int restarts;
    char state[ERR_LEN];
    long *xs;             /* (cap) steps of the loss curve */
    double *ys, *vals;    /* (cap) their loss, validation loss (NAN) */
    size_t n, cap;
    live_proc *proc;      /* (n_proc) */
};

static void *grow(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "pipetrain: out of memory (%zu bytes) at %s:%d\n", n, __FILE__, __LINE__);
        exit(1);
    }
    return q;
}

/* ---- addresses and the token ---- */

int coord_http_parse_addr(const char *spec, char *host, size_t cap, int *port, char *err)
{
    const char *p = spec, *colon = NULL;
    if (!spec || !*spec) return seterr(err, "--http expects [HOST:]PORT");
    if (spec[0] == '[') {
        const char *end = strchr(spec, ']');
        if (!end || end[1] != ':') return seterr(err, "--http %s: expected [IPV6]:PORT", spec);
        if ((size_t)(end - spec - 1) >= cap || end == spec + 1) return seterr(err, "--http %s: bad host", spec);
        snprintf(host, cap, "%.*s", (int)(end - spec - 1), spec + 1);
        p = end + 2;
    } else if ((colon = strrchr(spec, ':'))) {
        if (colon == spec || (size_t)(colon - spec) >= cap) return seterr(err, "--http %s: bad host", spec);
        if (memchr(spec, ':', (size_t)(colon - spec))) return seterr(err, "--http %s: write an IPv6 host as [ADDR]:PORT", spec);
        snprintf(host, cap, "%.*s", (int)(colon - spec), spec);
        p = colon + 1;
    } else {
        snprintf(host, cap, "127.0.0.1");
    }
    char *end;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (!*p || *end || errno || v < 0 || v > 65535)
        return seterr(err, "--http %s: port '%s' is not a number in 0..65535", spec, p);
    *port = (int)v;
    return 0;
}

int coord_http_is_loopback(const char *host)
{
    struct addrinfo hints = { 0 }, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, NULL, &hints, &res) || !res) return 0;
    int lo = 1;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        if (a->ai_family == AF_INET) {
            uint32_t ip = ntohl(((struct sockaddr_in *)a->ai_addr)->sin_addr.s_addr);
            lo &= (ip >> 24) == 127;
        } else if (a->ai_family == AF_INET6) {
            lo &= IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)a->ai_addr)->sin6_addr);
        } else {
            lo = 0;
        }
    }
    freeaddrinfo(res);
    return lo;
}

void coord_http_token(const uint8_t *secret, size_t len, char hex[65])
{
    static const char msg[] = "pipetrain live view";
    uint8_t mac[32];
    unsigned n = 0;
    memset(mac, 0, sizeof mac);
    HMAC(EVP_sha256(), secret, (int)len, (const uint8_t *)msg, sizeof msg - 1, mac, &n);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    hex[64] = 0;
}

/* ---- updates (coordinator thread) ---- */

void coord_http_attempt(coord_http *h, uint64_t run_id, long first, int restarts)
{
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    h->run_id = run_id;
    h->first = first;
    h->restarts = restarts;
    if (h->step > first) h->step = first;
    while (h->n > 0 && h->xs[h->n - 1] > first) h->n--; /* the steps the restart takes again */
    for (int p = 0; p < h->n_proc; p++) h->proc[p].have = h->proc[p].have_offset = 0;
    snprintf(h->state, sizeof h->state, "running");
    pthread_mutex_unlock(&h->mu);
}

int coord_http_live(coord_http *h, int p, long s, const uint8_t *buf, uint64_t len, double recv_at, char *err)
{
    if (!h || p < 0 || p >= h->n_proc) return 0;
    if (len < PROTO_LIVE_HEAD_BYTES || get_u32le(buf) != PROTO_LIVE_MAGIC)
        return seterr(err, "the live trailer of its NORM (%llu bytes) has no LIVE header", (unsigned long long)len);
    uint32_t n = get_u32le(buf + 4);
    if (n > PROTO_LIVE_MAX_EVENTS || len != PROTO_LIVE_HEAD_BYTES + (uint64_t)n * PROTO_EVENT_BYTES)
        return seterr(err, "the live trailer of its NORM is %llu bytes for %u events (at most %u)",
                      (unsigned long long)len, n, PROTO_LIVE_MAX_EVENTS);
    proto_event tmp;
    for (uint32_t i = 0; i < n; i++) {
        proto_event_decode(&tmp, buf + PROTO_LIVE_HEAD_BYTES + (size_t)i * PROTO_EVENT_BYTES);
        if (tmp.step != (uint64_t)s || !isfinite(tmp.t0) || !isfinite(tmp.t1) || tmp.op > PROTO_EV_PAUSE)
            return seterr(err, "event %u of its NORM's live trailer is not an event of step %ld", i, s + 1);
    }
    double sent = get_f64le(buf + 8);
    if (!isfinite(sent)) return seterr(err, "the live trailer of its NORM has no clock");
    pthread_mutex_lock(&h->mu);
    live_proc *q = &h->proc[p];
    q->have = 1;
    q->step = s;
    /* recv_at is when every NORM of the step was in, so later than this one's
     * arrival: the least difference over the steps is the best estimate */
    if (q->local) q->offset = 0;
    else if (!q->have_offset || recv_at - sent < q->offset) q->offset = recv_at - sent;
    q->have_offset = 1;
    proto_stats_decode(&q->st, buf + 16);
    q->n_ev = n;
    for (uint32_t i = 0; i < n; i++) proto_event_decode(&q->ev[i], buf + PROTO_LIVE_HEAD_BYTES + (size_t)i * PROTO_EVENT_BYTES);
    pthread_mutex_unlock(&h->mu);
    return 0;
}

void coord_http_step(coord_http *h, long s, double loss, double lr, double norm, double val, double dt)
{
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    if (!isnan(val)) h->val = val;
    if (h->n && s + 1 <= h->xs[h->n - 1]) { /* asynchronous workers: the curve follows the leading one */
        pthread_mutex_unlock(&h->mu);
        return;
    }
    if (h->n == h->cap) {
        h->cap = h->cap ? 2 * h->cap : 256;
        h->xs = grow(h->xs, h->cap * sizeof *h->xs);
        h->ys = grow(h->ys, h->cap * sizeof *h->ys);
        h->vals = grow(h->vals, h->cap * sizeof *h->vals);
    }
    h->xs[h->n] = s + 1;
    h->ys[h->n] = loss;
    h->vals[h->n++] = val;
    h->step = s + 1;
    h->loss = loss;
    h->lr = lr;
    h->norm = norm;
    if (!isnan(val)) h->val = val;
    h->step_ms = dt * 1e3;
    h->tok_s = dt > 0 ? (double)h->t->train.batch_size * h->t->model.seq_len / dt : 0;
    pthread_mutex_unlock(&h->mu);
}

void coord_http_state(coord_http *h, const char *state)
{
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    snprintf(h->state, sizeof h->state, "%s", state);
    pthread_mutex_unlock(&h->mu);
}

/* ---- derived numbers (under mu) ---- */

/* The latest step's span on the coordinator clock: first compute start to
 * last compute end over every process reporting that step (as
 * sched_measure's step span); with asynchronous workers (each replica at a
 * step of its own) over the processes of replica r only (r < 0: of every
 * replica). Returns the step or -1. */
static long latest_span(const coord_http *h, int r, double *t0, double *t1)
{
    long s = -1;
    for (int p = 0; p < h->n_proc; p++)
        if (h->proc[p].have && h->proc[p].step > s && (r < 0 || p / h->P == r)) s = h->proc[p].step;
    *t0 = INFINITY, *t1 = -INFINITY;
    for (int p = 0; p < h->n_proc; p++) {
        const live_proc *q = &h->proc[p];
        if (!q->have || q->step != s || (r >= 0 && p / h->P != r)) continue;
        for (uint32_t i = 0; i < q->n_ev; i++) {
            if (q->ev[i].op > SCHED_BW) continue;
            if (q->ev[i].t0 + q->offset < *t0) *t0 = q->ev[i].t0 + q->offset;
            if (q->ev[i].t1 + q->offset > *t1) *t1 = q->ev[i].t1 + q->offset;
        }
    }
    return *t1 > *t0 ? s : -1;
}

/* The span process p's fractions and events are measured in: the latest
 * step's over every process, or its own worker's when workers are
 * asynchronous. */
static long span_of(const coord_http *h, int p, double *t0, double *t1)
{
    return latest_span(h, h->async ? p / h->P : -1, t0, t1);
}

/* Process p's compute and tensor-wait fractions of the span [t0, t1]; the
 * bubble is 1 - compute. */
static void fractions(const coord_http *h, int p, long s, double t0, double t1, double *busy, double *wait)
{
    const live_proc *q = &h->proc[p];
    *busy = *wait = 0;
    if (s < 0 || !q->have || q->step != s) return;
    for (uint32_t i = 0; i < q->n_ev; i++) { /* clipped to the span: a stage waits before the step's first action */
        const proto_event *e = &q->ev[i];
        double d = fmin(e->t1 + q->offset, t1) - fmax(e->t0 + q->offset, t0);
        if (d <= 0) continue;
        if (e->op <= SCHED_BW) *busy += d;
        else if (e->op == PROTO_EV_WAIT) *wait += d;
    }
    *busy /= t1 - t0;
    *wait /= t1 - t0;
}

/* ---- /metrics ---- */

static void metric_head(struct evbuffer *b, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(b, "# HELP pipetrain_%s %s\n# TYPE pipetrain_%s %s\n", name, help, name, type);
}

static void metric(struct evbuffer *b, const char *name, double v)
{
    if (!isnan(v)) evbuffer_add_printf(b, "pipetrain_%s %.17g\n", name, v); /* absent until known */
}

static void put_num(struct evbuffer *b, double v)
{
    if (isnan(v)) evbuffer_add_printf(b, "NaN\n");
    else if (isinf(v)) evbuffer_add_printf(b, v > 0 ? "+Inf\n" : "-Inf\n");
    else evbuffer_add_printf(b, "%.17g\n", v);
}

/* One metric per process with stage and replica labels. which: 0 compute
 * fraction, 1 wait, 2 bubble, 3 compute s, 4 wait s, 5 bytes sent, 6 peak
 * activation bytes. */
static void per_proc(struct evbuffer *b, const coord_http *h, const char *name, const char *type, const char *help,
                     int which)
{
    double t0, t1, busy, wait;
    metric_head(b, name, type, help);
    for (int p = 0; p < h->n_proc; p++) {
        const live_proc *q = &h->proc[p];
        if (!q->have) continue;
        long s = span_of(h, p, &t0, &t1);
        fractions(h, p, s, t0, t1, &busy, &wait);
        double v[7] = { busy, wait, s < 0 ? NAN : 1 - busy, q->st.compute_s, q->st.wait_s,
                        (double)q->st.bytes_sent, (double)q->st.peak_act_bytes };
        evbuffer_add_printf(b, "pipetrain_%s{stage=\"%d\",replica=\"%d\"} ", name, p % h->P, p / h->P);
        put_num(b, v[which]);
    }
}

static void render_metrics(coord_http *h, struct evbuffer *b)
{
    metric_head(b, "info", "gauge", "The run: 1, with its id and topology as labels.");
    evbuffer_add_printf(b, "pipetrain_info{run_id=\"%llu\",topology=\"%s\"} 1\n", (unsigned long long)h->run_id, h->name);
    metric_head(b, "step", "gauge", "Steps finished (the last step's 1-based number).");
    metric(b, "step", (double)h->step);
    metric_head(b, "steps_planned", "gauge", "Steps the run trains in all (train.steps).");
    metric(b, "steps_planned", h->t->train.steps);
    metric_head(b, "loss", "gauge", "Training loss of the last step (nats per token).");
    metric(b, "loss", h->step ? h->loss : NAN);
    metric_head(b, "val_loss", "gauge", "Latest validation loss (nats per token; absent before the first evaluation).");
    metric(b, "val_loss", h->val);
    metric_head(b, "learning_rate", "gauge", "Learning rate of the last step.");
    metric(b, "learning_rate", h->lr);
    metric_head(b, "grad_norm", "gauge", "Global gradient norm of the last step (before clipping).");
    metric(b, "grad_norm", h->norm);
    metric_head(b, "tokens_per_second", "gauge", "Training tokens per second over the last step.");
    metric(b, "tokens_per_second", h->tok_s);
    metric_head(b, "step_seconds", "gauge", "Duration of the last step in seconds.");
    metric(b, "step_seconds", h->step_ms / 1e3);
    metric_head(b, "restarts_total", "counter", "Restarts of the run so far (--max-restarts).");
    metric(b, "restarts_total", h->restarts);
    per_proc(b, h, "stage_compute_fraction", "gauge", "Fraction of the last step's span the process computed (F/B/W).", 0);
    per_proc(b, h, "stage_wait_fraction", "gauge", "Fraction of the last step's span the process waited for tensors.", 1);
    per_proc(b, h, "stage_bubble_fraction", "gauge", "Fraction of the last step's span the process did not compute (1 - compute).", 2);
    per_proc(b, h, "stage_compute_seconds_total", "counter", "Seconds of F/B/W compute in this attempt.", 3);
    per_proc(b, h, "stage_wait_seconds_total", "counter", "Seconds blocked waiting for tensors in this attempt.", 4);
    per_proc(b, h, "stage_sent_bytes_total", "counter", "Tensor bytes sent in this attempt.", 5);
    per_proc(b, h, "stage_peak_activation_bytes", "gauge", "Peak activation memory of the process in this attempt.", 6);
}

/* ---- /api/status ---- */

static json_t *losses_json(const coord_http *h)
{
    json_t *a = json_array();
    size_t every = h->n > MAX_POINTS ? (h->n + MAX_POINTS - 1) / MAX_POINTS : 1;
    for (size_t i = 0; i < h->n; i++)
        if (i % every == 0 || i + 1 == h->n) {
            json_t *pt = json_pack("[I,f]", (json_int_t)h->xs[i], isfinite(h->ys[i]) ? h->ys[i] : 0.0);
            if (!isnan(h->vals[i])) json_array_append_new(pt, json_real(h->vals[i]));
            json_array_append_new(a, pt);
        }
    return a;
}

static json_t *procs_json(const coord_http *h)
{
    json_t *a = json_array();
    for (int p = 0; p < h->n_proc; p++) {
        const live_proc *q = &h->proc[p];
        double busy, wait, t0, t1;
        long s = span_of(h, p, &t0, &t1);
        fractions(h, p, s, t0, t1, &busy, &wait);
        json_t *ev = json_array();
        for (uint32_t i = 0; q->have && q->step == s && i < q->n_ev; i++) {
            const proto_event *e = &q->ev[i];
            double a = fmax(e->t0 + q->offset, t0), z = fmin(e->t1 + q->offset, t1);
            if (e->op > PROTO_EV_WAIT || z < a) continue; /* compute and waits within the span, as timeline.svg */
            json_array_append_new(ev, json_pack("[i,i,i,f,f]", e->op, e->chunk, (int)e->mb, (a - t0) * 1e3, (z - t0) * 1e3));
        }
        json_array_append_new(a, json_pack("{s:i,s:i,s:b,s:f,s:f,s:f,s:I,s:I,s:o,s:I,s:f}", "stage", p % h->P,
                                           "replica", p / h->P, "reporting", q->have, "busy", busy, "wait", wait,
                                           "bubble", s < 0 ? 0.0 : 1 - busy, "bytes_sent",
                                           (json_int_t)q->st.bytes_sent, "peak_act_bytes",
                                           (json_int_t)q->st.peak_act_bytes, "events", ev, "step",
                                           (json_int_t)(s + 1), "span_ms", s < 0 ? 0.0 : (t1 - t0) * 1e3));
    }
    return a;
}

static void render_status(coord_http *h, struct evbuffer *b)
{
    double span = 0, t0, t1;
    long s = -1;
    for (int r = 0; r < (h->async ? h->R : 1); r++) { /* asynchronous: the latest step, the longest worker span */
        long sr = latest_span(h, h->async ? r : -1, &t0, &t1);
        if (sr < 0) continue;
        if (sr > s) s = sr;
        if (t1 - t0 > span) span = t1 - t0;
    }
    char id[32];
    snprintf(id, sizeof id, "%llu", (unsigned long long)h->run_id);
    json_t *j = json_pack("{s:s,s:s,s:s,s:I,s:I,s:i,s:i,s:i,s:o,s:f,s:f,s:f,s:f,s:I,s:f,s:o}", "run_id", id, "topology",
                          h->name, "state", h->state, "step", (json_int_t)h->step, "total_steps",
                          (json_int_t)h->t->train.steps, "stages", h->P, "replicas", h->R, "restarts", h->restarts,
                          "losses", losses_json(h), "loss", h->step && isfinite(h->loss) ? h->loss : 0.0, "lr", h->lr,
                          "tokens_per_s", h->tok_s, "step_ms", h->step_ms, "timeline_step", (json_int_t)(s + 1),
                          "timeline_ms", s < 0 ? 0.0 : span * 1e3, "processes", procs_json(h));
    if (j) {
        json_object_set_new(j, "async", json_boolean(h->async));
        json_object_set_new(j, "note", h->note ? json_string(h->note) : json_null());
    }
    char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (txt) evbuffer_add(b, txt, strlen(txt));
    free(txt);
    json_decref(j);
}

/* ---- the server thread ---- */

static int authorized(coord_http *h, struct evhttp_request *req)
{
    if (!h->auth) return 1;
    const char *a = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    char got[65] = "";
    if (a && !strncmp(a, "Bearer ", 7)) snprintf(got, sizeof got, "%s", a + 7);
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *q = u ? evhttp_uri_get_query(u) : NULL;
    if (!got[0] && q) {
        struct evkeyvalq kv;
        if (!evhttp_parse_query_str(q, &kv)) {
            const char *tk = evhttp_find_header(&kv, "token");
            if (tk) snprintf(got, sizeof got, "%s", tk);
            evhttp_clear_headers(&kv);
        }
    }
    return strlen(got) == 64 && CRYPTO_memcmp(got, h->token, 64) == 0;
}

static void reply(struct evhttp_request *req, int code, const char *reason, const char *type, struct evbuffer *b)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    evhttp_add_header(out, "Content-Type", type);
    evhttp_add_header(out, "Cache-Control", "no-store");
    evhttp_send_reply(req, code, reason, b);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    coord_http *h = arg;
    struct evbuffer *b = evbuffer_new();
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (!b) { evhttp_send_error(req, 500, NULL); return; }
    if (!path || !*path) path = "/";
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evbuffer_add_printf(b, "method not allowed\n");
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        reply(req, 405, "Method Not Allowed", "text/plain; charset=utf-8", b);
    } else if (!authorized(h, req)) {
        evbuffer_add_printf(b, "unauthorized: send Authorization: Bearer TOKEN or ?token=TOKEN (README, Live view)\n");
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer realm=\"pipetrain\"");
        reply(req, 401, "Unauthorized", "text/plain; charset=utf-8", b);
    } else if (!strcmp(path, "/metrics")) {
        pthread_mutex_lock(&h->mu);
        render_metrics(h, b);
        pthread_mutex_unlock(&h->mu);
        reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", b);
    } else if (!strcmp(path, "/api/status")) {
        pthread_mutex_lock(&h->mu);
        render_status(h, b);
        pthread_mutex_unlock(&h->mu);
        reply(req, 200, "OK", "application/json", b);
    } else if (!strcmp(path, "/") || !strcmp(path, "/index.html")) {
        evbuffer_add(b, coord_http_page, strlen(coord_http_page));
        reply(req, 200, "OK", "text/html; charset=utf-8", b);
    } else {
        evbuffer_add_printf(b, "not found: the live view serves /, /metrics and /api/status\n");
        reply(req, 404, "Not Found", "text/plain; charset=utf-8", b);
    }
    evbuffer_free(b);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    coord_http *h = arg;
    if (h->stop) event_base_loopbreak(h->base);
}

static void *serve(void *arg)
{
    coord_http *h = arg;
    /* libevent writes responses with writev: a client gone mid-response must
     * give this thread EPIPE, not a SIGPIPE that would end the run */
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, NULL);
    event_base_dispatch(h->base);
    return NULL;
}

coord_http *coord_http_new(const topo *t, const char *host, int port, uint64_t run_id, const uint8_t *secret,
                           size_t secret_len, char *err)
{
    coord_http *h = xcalloc(1, sizeof *h);
    h->t = t;
    h->run_id = run_id;
    h->P = t->n_stages;
    h->R = t->n_replicas;
    h->n_proc = h->P * h->R;
    h->proc = xcalloc((size_t)h->n_proc, sizeof *h->proc);
    h->val = NAN;
    if (t->sync_id == TOPO_SYNC_PS && t->ps.staleness != 0) h->async = 1;
    else if (t->sync_id == TOPO_SYNC_PS)
        h->note = "sync \"ps\" with ps.staleness 0: the workers hand their step to the parameter servers and send "
                  "the coordinator no NORM, so no process reports its busy/wait/bubble or timeline here "
                  "(step, loss, learning rate and tokens/s do come; timeline.svg has the timeline at the end)";
    for (int p = 0; p < h->n_proc; p++)
        h->proc[p].local = coord_http_is_loopback(t->stages[p % h->P].replicas[p / h->P].host);
    pthread_mutex_init(&h->mu, NULL);
    snprintf(h->state, sizeof h->state, "starting");
    const char *base = strrchr(t->path, '/');
    base = base ? base + 1 : t->path;
    snprintf(h->name, sizeof h->name, "%.*s", (int)strcspn(base, "."), base);
    for (char *c = h->name; *c; c++)
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 32) *c = '_'; /* a safe label value */
    if (secret) {
        h->auth = 1;
        coord_http_token(secret, secret_len, h->token);
    }
    struct timeval tv = { 0, 100000 };
    struct evhttp_bound_socket *bs = NULL;
    if (!(h->base = event_base_new()) || !(h->http = evhttp_new(h->base)) ||
        !(h->tick = event_new(h->base, -1, EV_PERSIST, on_tick, h)) || event_add(h->tick, &tv)) {
        seterr(err, "--http: cannot set up the HTTP server (libevent)");
        goto fail;
    }
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS);
    evhttp_set_gencb(h->http, on_request, h);
    evhttp_set_timeout(h->http, 10);
    evhttp_set_max_headers_size(h->http, 16384);
    evhttp_set_max_body_size(h->http, 4096);
    errno = 0;
    if (!(bs = evhttp_bind_socket_with_handle(h->http, host, (ev_uint16_t)port))) {
        seterr(err, "--http %s:%d: cannot listen: %s", host, port, errno ? strerror(errno) : "bad address");
        goto fail;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    evutil_socket_t fd = evhttp_bound_socket_get_fd(bs);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl)) {
        seterr(err, "--http %s:%d: getsockname: %s", host, port, strerror(errno));
        goto fail;
    }
    h->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
    if (pthread_create(&h->thr, NULL, serve, h)) {
        seterr(err, "--http: cannot start the server thread");
        goto fail;
    }
    h->started = 1;
    return h;
fail:
    coord_http_free(h);
    return NULL;
}

int coord_http_port(const coord_http *h) { return h->port; }

void coord_http_free(coord_http *h)
{
    if (!h) return;
    h->stop = 1;
    if (h->started) pthread_join(h->thr, NULL);
    if (h->tick) event_free(h->tick);
    if (h->http) evhttp_free(h->http);
    if (h->base) event_base_free(h->base);
    pthread_mutex_destroy(&h->mu);
    explicit_bzero(h->token, sizeof h->token);
    free(h->xs);
    free(h->ys);
    free(h->vals);
    free(h->proc);
    free(h);
}
