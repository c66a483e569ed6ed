/* coord_async.c — the coordinator's steps with asynchronous parameter servers
 * (issue 12, ps.staleness s > 0 or -1): no step of the whole run exists, so
 * the coordinator follows each worker (replica r: its P stage processes) on
 * its own: NORM(t) from its P stages, combined in unit order (R = 1
 * arithmetic on that worker's gradients) and replied to those P only; LOSS(t)
 * from its head stage; VAL(t) from replica 0's head on evaluation steps; one
 * metrics.jsonl line per worker-step ("step" the worker's own step, "worker"
 * r). Each worker trains train.steps steps, so the run sees as many samples
 * as the synchronous one. Checkpoints: CKPT_DONE(t) from one replica of
 * every stage (the servers chose it), then the commit.
 *
 * Elasticity: a worker process that dies (its connection fails: a closed
 * socket at once, a silent peer after the dead-peer timeout; or the launcher
 * sees it exit) or sends nothing within the step timeout drops its whole
 * worker: its connections closed with the reason (net_peer_close: a process
 * still alive is told) and forgotten (net_peer_forget), its processes that
 * the launcher started stopped (coord_opts.stop), MSG_PS_CTL drop to
 * every server and their answers (each has closed and forgotten its own), then
 * an event line {"event": "drop"} naming "stage K replica R", and training
 * goes on. Processes started with --join may then take its identities: when
 * all P have sent JOIN, the worker joins at the slowest active worker's step
 * (MSG_PS_CTL join to every server, START to the P, {"event": "join"}). Once
 * the steps are over, a dropped worker's identities are closed with "run
 * already finished" (a late joiner is told, not left waiting). A checkpoint
 * whose shard never came is named ({"event": "checkpoint_lost"}). A dead
 * server is fatal. */
#include "coord/coord_http.h"
#include "coord/coord_int.h"
#include "model/optim.h"
#include "run/run_ckpt.h"

#include <math.h>

/* The largest control payload send_k sends (MSG_START). */
enum { TX_MAX = 24 };
_Static_assert(PS_CTL_BYTES <= TX_MAX, "MSG_PS_CTL fits send_k's buffer");

typedef struct {
    long step;              /* the worker-step being followed (0-based) */
    int phase;              /* W_NORM, W_LOSS, W_VAL, W_DONE */
    int dropped;
    struct net_op **norm;   /* (P) */
    uint8_t *nbuf;          /* (P) x normcap */
    struct net_op *loss, **join; /* join: (P) JOIN receives of a dropped worker's processes */
    uint8_t lbuf[16], *jbuf;
    double lossv, normv, t0, first_t, last_t;
    long logged;
    double *sq;             /* (n_units) */
    char why[200];          /* why it was dropped last ("" never) */
} worker;

enum { W_NORM, W_LOSS, W_VAL, W_DONE };

typedef struct {
    coordinator *c;
    int P, R;
    long total;
    worker *w;
    struct net_op **tx;     /* (n_proc) the last control message sent to each process */
    uint8_t (*txbuf)[TX_MAX]; /* (n_proc) its payload: net_send reads it until tx completes */
    uint16_t *txtype;       /* (n_proc) its type and step: named when it cannot be sent */
    long *txstep;
    long ck;                /* the outstanding checkpoint step (0-based), or -1 */
    struct net_op **ckop;   /* (n_grid) its CKPT_DONE receives */
    uint8_t *ckdone;        /* (P) */
    long nctl;              /* MSG_PS_CTL messages sent */
    double forget_at;
    int rot;                /* the worker an idle wait watches next (round robin) */
} async_run;

static long next_ck(const async_run *a, long after)
{
    for (long s = after + 1; s < a->total; s++)
        if (run_is_ckpt_step(a->c->t, s)) return s;
    return -1;
}

/* The control message last sent to process k, for a message: "NORM_REPLY of step 8". */
static void tx_what(const async_run *a, int k, char *buf, size_t cap)
{
    uint16_t t = a->txtype[k];
    const char *name = t == MSG_START ? "START" : t == MSG_NORM_REPLY ? "NORM_REPLY" : t == MSG_PS_CTL ? "PS_CTL" : "message";
    if (t == MSG_NORM_REPLY) snprintf(buf, cap, "%s of step %ld", name, a->txstep[k] + 1);
    else snprintf(buf, cap, "%s", name);
}

/* Sends to process k, keeping the op until the next send to k. The previous
 * send to k must have completed first: control messages are never dropped
 * (the protocol assumes delivery). One still pending after the peer timeout
 * means k is not reading (its connection alive, or the transport would have
 * failed it): an error naming the message, which the caller treats as k
 * failing (a worker dropped, a server fatal); the op is left in a->tx[k] for
 * drop() or the end to release. */
static int send_k(async_run *a, int k, uint16_t type, long step, const void *buf, uint64_t len, char *err)
{
    coordinator *c = a->c;
    char nerr[NET_ERR_LEN];
    if (a->tx[k]) {
        int st = net_wait(a->tx[k], c->o.peer_timeout_ms, nerr);
        char what[48];
        tx_what(a, k, what, sizeof what);
        if (st == NET_TIMEOUT)
            return seterr(err, "not reading: the coordinator's %s could not be sent to it within %d ms "
                          "(--peer-timeout-ms)", what, c->o.peer_timeout_ms), -1;
        if (st != NET_OK) return seterr(err, "the coordinator's %s was not sent: %s", what, nerr), -1;
        net_op_free(a->tx[k]);
        a->tx[k] = NULL;
    }
    /* net_send is zero-copy and the callers' payloads are on their stacks:
     * a copy that lives until the send is waited for (here or at the end) */
    if (len > TX_MAX)
        return seterr(err, "coord: a control payload of %llu bytes (at most %d)", (unsigned long long)len, TX_MAX), -1;
    memcpy(a->txbuf[k], buf, (size_t)len);
    a->txtype[k] = type;
    a->txstep[k] = step;
    if (net_send(c->node, coord_sid(c, k), coord_key(type, (uint64_t)step, 0), a->txbuf[k], len, c->o.peer_timeout_ms, &a->tx[k],
                 nerr) != NET_OK)
        return seterr(err, "%s", nerr), -1;
    return 0;
}

static int post(async_run *a, int k, uint16_t type, long step, void *buf, uint64_t cap, struct net_op **op)
{
    char nerr[NET_ERR_LEN];
    return net_recv_post(a->c->node, coord_sid(a->c, k), coord_key(type, (uint64_t)step, 0), buf, cap, op, nerr) ==
           NET_OK ? 0 : -1;
}

static void post_norms(async_run *a, int r)
{
    worker *w = &a->w[r];
    for (int k = 0; k < a->P; k++)
        post(a, r * a->P + k, MSG_NORM, w->step, w->nbuf + (size_t)k * a->c->normcap, a->c->normcap, &w->norm[k]);
    w->phase = W_NORM;
}

/* Nothing happened: waits up to 1 ms for a pending NORM of one worker (round
 * robin), woken the moment it arrives instead of at the end of a sleep (the
 * worker waits for the reply before it pushes). */
static void idle_wait(async_run *a)
{
    char nerr[NET_ERR_LEN];
    struct net_op *op = NULL;
    for (int n = 0; n < a->R && !op; n++) {
        worker *w = &a->w[a->rot++ % a->R];
        for (int q = 0; !w->dropped && w->phase == W_NORM && q < a->P && !op; q++)
            if (w->norm[q] && net_op_test(w->norm[q], nerr) == NET_PENDING) op = w->norm[q];
    }
    if (op) net_wait(op, 1, nerr); /* its outcome is taken by the next pass */
    else nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
}

static void free_ops(struct net_op **ops, int n)
{
    for (int i = 0; i < n; i++) {
        net_op_free(ops[i]);
        ops[i] = NULL;
    }
}

/* MSG_PS_CTL to every server, each sent before the next (servers take them in order). */
static int tell_servers(async_run *a, uint32_t op, int r, long step, char *err)
{
    coordinator *c = a->c;
    uint8_t b[PS_CTL_BYTES];
    put_u32le(b, op);
    put_u32le(b + 4, (uint32_t)r);
    put_u64le(b + 8, (uint64_t)step);
    for (int j = 0; j < c->t->n_servers; j++) {
        int k = c->n_grid + j;
        char nerr[NET_ERR_LEN], serr[ERR_LEN], why[ERR_LEN];
        int bad = send_k(a, k, MSG_PS_CTL, a->nctl, b, sizeof b, serr);
        if (!bad) {
            int st = net_wait(a->tx[k], c->o.peer_timeout_ms, nerr);
            if (st == NET_TIMEOUT)
                snprintf(serr, sizeof serr, "not reading: the coordinator's PS_CTL could not be sent to it within "
                         "%d ms (--peer-timeout-ms)", c->o.peer_timeout_ms);
            else if (st != NET_OK)
                snprintf(serr, sizeof serr, "%.400s", nerr);
            bad = st != NET_OK;
        }
        if (bad) {
            snprintf(why, sizeof why, "could not be told about a worker that left or joined: %.400s", serr);
            return coord_fail(c, k, why, err);
        }
    }
    /* a drop is answered once the server has closed and forgotten the
     * worker's connections (ps/ps_proto.h): only then is it logged, so a
     * process started with --join when the log says so is accepted by every
     * server, whatever the timing (it reaches them before it JOINs here) */
    for (int j = 0; op == PS_CTL_DROP && j < c->t->n_servers; j++) {
        int k = c->n_grid + j;
        uint8_t ack[PS_CTL_BYTES];
        struct net_op *rx = NULL;
        char nerr[NET_ERR_LEN], why[ERR_LEN];
        int st = net_recv_post(c->node, coord_sid(c, k), coord_key(MSG_PS_CTL, (uint64_t)a->nctl, 0), ack, sizeof ack,
                               &rx, nerr);
        double end = base_now() + c->o.step_timeout_ms / 1e3;
        while (st == NET_OK && (st = net_wait(rx, 100, nerr)) == NET_TIMEOUT && base_now() < end)
            st = NET_OK;
        uint64_t len = st == NET_OK ? net_op_len(rx) : 0;
        net_op_free(rx);
        if (st == NET_OK && (len != sizeof ack || memcmp(ack, b, sizeof b)))
            return coord_bad_message(c, k, err, "its answer to the drop of worker %d is not the drop (%llu bytes)", r,
                                     (unsigned long long)len);
        if (st != NET_OK) {
            snprintf(why, sizeof why, "did not confirm the drop of worker %d within %.0f s (--step-timeout-s): %.200s", r,
                     c->o.step_timeout_ms / 1e3, nerr);
            return coord_fail(c, k, why, err);
        }
    }
    a->nctl++;
    return 0;
}

static int active_workers(const async_run *a)
{
    int n = 0;
    for (int r = 0; r < a->R; r++) n += !a->w[r].dropped;
    return n;
}

/* Worker r's connections closed and forgotten now, before its drop is
 * logged: a dropped worker is dropped, even when its process is still alive
 * (the step timeout): it is told why (its coordinator connection fails with
 * the reason, and it exits), and a process started with --join once the log
 * says so is neither refused as "already connected" nor as "already declared
 * dead" (net_peer_close then net_peer_forget: carried out in that order). */
static void forget_dead(async_run *a, int r, const char *why)
{
    coordinator *c = a->c;
    char reason[256];
    snprintf(reason, sizeof reason, "worker %d was dropped by the coordinator: %.200s", r, why);
    for (int q = 0; q < a->P; q++) {
        net_peer_id id = coord_sid(c, r * a->P + q);
        net_peer_close(c->node, id, reason);
        /* the network thread takes the close at once; bounded all the same
         * (rejoin forgets what is left) */
        for (double end = base_now() + 1;; nanosleep(&(struct timespec){ 0, 1000000 }, NULL)) {
            int st = net_peer_status(c->node, id, NULL);
            if (st != NET_OK && st != NET_PENDING) { net_peer_forget(c->node, id); break; }
            if (base_now() >= end) break;
        }
    }
}

/* Worker r leaves: process k failed with `why`. Its processes are over (gone:
 * no STATS, no DONE, no blame later; their last sends released), the servers
 * drop it. Fails the run only when it was the last worker and had steps left
 * to train (a worker that finished its steps and then died is noted). */
static int drop(async_run *a, int r, int k, const char *why, char *err)
{
    coordinator *c = a->c;
    worker *w = &a->w[r];
    char who[48], name[360];
    coord_who(c->t, k, who, sizeof who);
    coord_name(c->t, k, name, sizeof name);
    w->dropped = 1;
    snprintf(w->why, sizeof w->why, "%s: %.150s", who, why);
    free_ops(w->norm, a->P);
    free_ops(w->join, a->P);
    net_op_free(w->loss);
    w->loss = NULL;
    for (int q = 0; q < a->P; q++) {
        c->gone[r * a->P + q] = 1;
        net_op_free(a->ckop[r * a->P + q]);
        a->ckop[r * a->P + q] = NULL;
        net_op_free(a->tx[r * a->P + q]); /* to the dead connection: never awaited */
        a->tx[r * a->P + q] = NULL;
    }
    forget_dead(a, r, why);
    /* a process of it still alive (the step timeout; its worker's other stages)
     * would go on until its next wait, or for ever if it is stopped: the
     * launcher ends the ones it started now */
    for (int q = 0; q < a->P && c->o.stop; q++)
        if (!c->adopted[r * a->P + q]) c->o.stop(c->o.alive_arg, r * a->P + q, why);
    int done = w->phase == W_DONE;
    if (!active_workers(a) && !done)
        return seterr(err, "every worker is gone (the last: %s: %s) at step %ld", name, why, w->step + 1), 1;
    if (tell_servers(a, PS_CTL_DROP, r, 0, err)) return 1;
    if (done)
        run_log_note(c->log, "pipetrain: worker %d had trained its %ld steps, then %s: %s; dropped (its statistics "
                     "are lost)", r, a->total, name, why);
    else
        run_log_note(c->log, "pipetrain: dropped worker %d: %s at its step %ld: %s; training goes on with %d "
                     "worker(s)", r, name, w->step + 1, why, active_workers(a));
    if (run_log_event(c->log, json_pack("{s:s,s:i,s:s,s:I,s:s}", "event", "drop", "worker", r, "who", who, "step",
                                        (json_int_t)(done ? w->step : w->step + 1), "reason", why), err))
        return 1;
    return 0;
}

/* Liveness: servers (fatal), workers (dropped), the caller's interrupt. */
static int check(async_run *a, char *err)
{
    coordinator *c = a->c;
    char why[ERR_LEN], nerr[NET_ERR_LEN];
    if (c->o.alive && c->o.alive(c->o.alive_arg, -1, why)) return seterr(err, "%s at step %ld", why, c->step + 1), 1;
    for (int k = c->n_grid; k < c->n_proc; k++) {
        int st = net_peer_status(c->node, coord_sid(c, k), nerr);
        if (st != NET_OK && st != NET_PENDING) return coord_fail(c, k, nerr, err);
        if (c->o.alive && c->o.alive(c->o.alive_arg, k, why)) return coord_fail(c, k, why, err);
    }
    for (int k = 0; k < c->n_grid; k++) {
        int r = k / a->P;
        if (a->w[r].dropped) continue;
        int st = net_peer_status(c->node, coord_sid(c, k), nerr);
        if (st != NET_OK && st != NET_PENDING && drop(a, r, k, nerr, err)) return 1;
        if (!a->w[r].dropped && !c->adopted[k] && c->o.alive && c->o.alive(c->o.alive_arg, k, why) &&
            drop(a, r, k, why, err))
            return 1;
        if (!a->w[r].dropped && a->w[r].phase != W_DONE && base_now() - a->w[r].t0 > c->o.step_timeout_ms / 1e3) {
            snprintf(why, sizeof why, "nothing from it within %.0f s (--step-timeout-s)", c->o.step_timeout_ms / 1e3);
            if (drop(a, r, k, why, err)) return 1;
        }
    }
    return 0;
}

/* The slowest active worker's step: where a joining worker starts. */
static long slowest(const async_run *a)
{
    long s = -1;
    for (int r = 0; r < a->R; r++)
        if (!a->w[r].dropped && (s < 0 || a->w[r].step < s)) s = a->w[r].step;
    return s < 0 ? 0 : s;
}

/* A dropped worker's processes: forget their dead connections, wait for the
 * JOIN of each new one, then let the worker in. */
static int rejoin(async_run *a, int r, int *progress, char *err)
{
    coordinator *c = a->c;
    worker *w = &a->w[r];
    char nerr[NET_ERR_LEN];
    int joined = 0;
    for (int q = 0; q < a->P; q++) {
        int k = r * a->P + q;
        int st = net_peer_status(c->node, coord_sid(c, k), nerr);
        if (st != NET_OK && st != NET_PENDING) {
            net_op_free(w->join[q]);
            w->join[q] = NULL;
            if (base_now() >= a->forget_at) net_peer_forget(c->node, coord_sid(c, k));
            continue;
        }
        if (!w->join[q] && post(a, k, MSG_JOIN, 0, w->jbuf + 16 * (size_t)q, 16, &w->join[q])) continue;
        int t = net_op_test(w->join[q], nerr);
        if (t == NET_OK) joined++;
        else if (t != NET_PENDING) { net_op_free(w->join[q]); w->join[q] = NULL; }
    }
    if (joined < a->P) return 0;
    long first = slowest(a);
    for (int q = 0; q < a->P; q++) {
        int k = r * a->P + q;
        const uint8_t *p = w->jbuf + 16 * (size_t)q;
        uint64_t len = net_op_len(w->join[q]);
        net_op_free(w->join[q]);
        w->join[q] = NULL;
        if (len != 12 || get_u32le(p) != (uint32_t)q || get_u32le(p + 8) != (uint32_t)c->t->stages[q].n_units) {
            run_log_note(c->log, "pipetrain: a process joining as stage %d replica %d sent a bad JOIN; ignored", q, r);
            return 0;
        }
        c->pids[k] = get_u32le(p + 4);
    }
    if (tell_servers(a, PS_CTL_JOIN, r, first, err)) return 1;
    for (int q = 0; q < a->P; q++) {
        int k = r * a->P + q;
        c->gone[k] = 0;
        c->adopted[k] = 1; /* the launcher's child of that rank is the dead one: not its liveness */
    }
    *w = (worker){ .step = first, .norm = w->norm, .nbuf = w->nbuf, .join = w->join, .jbuf = w->jbuf, .sq = w->sq,
                   .t0 = base_now(), .first_t = base_now(), .phase = first < a->total ? W_NORM : W_DONE };
    *progress = 1;
    run_log_note(c->log, "pipetrain: worker %d joined at step %ld", r, first + 1);
    if (run_log_event(c->log, json_pack("{s:s,s:i,s:I}", "event", "join", "worker", r, "from_step",
                                        (json_int_t)(first + 1)), err))
        return 1;
    uint8_t start[24];
    put_u64le(start, (uint64_t)first);
    put_u64le(start + 8, (uint64_t)a->total);
    put_u64le(start + 16, 0);
    for (int q = 0; q < a->P; q++) {
        int k = r * a->P + q;
        char serr[ERR_LEN];
        /* the new process died at once: dropped again, as any other death */
        if (send_k(a, k, MSG_START, 0, start, 24, serr)) return drop(a, r, k, serr, err);
        if (a->ck >= 0 && a->ck >= first) post(a, k, MSG_CKPT_DONE, a->ck, NULL, 0, &a->ckop[k]);
    }
    if (first < a->total) post_norms(a, r); /* (the others all finished: nothing left to train) */
    return 0;
}

/* The loss of worker r's share of the batch as a mean over its share. */
static double share_mean(const async_run *a, int r, double v)
{
    int first = 0, n = topo_replica_batch(a->c->t, r, &first);
    return n > 0 ? v * (double)a->c->t->train.batch_size / (double)n : v;
}

static int log_worker_step(async_run *a, int r, double val, char *err)
{
    coordinator *c = a->c;
    worker *w = &a->w[r];
    int first = 0, n = topo_replica_batch(c->t, r, &first);
    double now = base_now();
    if (run_log_worker_step(c->log, r, w->step, w->lossv, run_lr(c->t, w->step), w->normv, val, now - w->t0,
                            (double)n * c->t->model.seq_len, err))
        return 1;
    coord_http_step(c->o.http, w->step, w->lossv, run_lr(c->t, w->step), w->normv, val, now - w->t0);
    w->t0 = w->last_t = now;
    w->logged++;
    if (++w->step == a->total) w->phase = W_DONE;
    else post_norms(a, r);
    return 0;
}

/* run --http: process k's NORM of step s may end in the live trailer
 * (stage/proto.h PROTO_START_LIVE), as in coord.c: handed to the live view and
 * cut off, so that *len is the norms' length. */
static int live_trailer(async_run *a, int k, long s, const uint8_t *buf, uint64_t *len, char *err)
{
    coordinator *c = a->c;
    char perr[ERR_LEN];
    if (!c->o.http || *len < 4) return 0; /* the norms' own check names it */
    uint64_t n = get_u32le(buf), nl = 4 + 8 * n;
    if (n > c->normcap / 8 || nl >= *len) return 0;
    if (coord_http_live(c->o.http, k, s, buf + nl, *len - nl, coord_now(), perr))
        return coord_bad_message(c, k, err, "%s", perr);
    *len = nl;
    return 0;
}

/* One worker's next message, if it came. */
static int step_worker(async_run *a, int r, int *progress, char *err)
{
    coordinator *c = a->c;
    worker *w = &a->w[r];
    char nerr[NET_ERR_LEN], perr[ERR_LEN];
    int head = r * a->P + c->head;
    if (w->phase == W_NORM) {
        for (int q = 0; q < a->P; q++) {
            int st = w->norm[q] ? net_op_test(w->norm[q], nerr) : NET_OK;
            if (st == NET_PENDING) return 0;
            if (st != NET_OK) return drop(a, r, r * a->P + q, nerr, err);
        }
        for (int u = 0; u < c->n_units; u++) w->sq[u] = NAN;
        for (int q = 0; q < a->P; q++) {
            uint64_t len = net_op_len(w->norm[q]);
            if (live_trailer(a, r * a->P + q, w->step, w->nbuf + (size_t)q * c->normcap, &len, err)) return 1;
            if (coord_place_norms(c->t, q, w->nbuf + (size_t)q * c->normcap, len, w->sq, perr))
                return coord_bad_message(c, r * a->P + q, err, "%s", perr);
        }
        free_ops(w->norm, a->P);
        w->normv = optim_global_norm(w->sq, c->n_units);
        uint8_t rep[8];
        put_f64le(rep, w->normv);
        for (int q = 0; q < a->P; q++)
            if (send_k(a, r * a->P + q, MSG_NORM_REPLY, w->step, rep, 8, perr))
                return drop(a, r, r * a->P + q, perr, err);
        post(a, head, MSG_LOSS, w->step, w->lbuf, sizeof w->lbuf, &w->loss);
        w->phase = W_LOSS;
        *progress = 1;
    }
    if (w->phase == W_LOSS || w->phase == W_VAL) {
        int st = net_op_test(w->loss, nerr);
        if (st == NET_PENDING) return 0;
        if (st != NET_OK) return drop(a, r, head, nerr, err);
        uint64_t len = net_op_len(w->loss);
        net_op_free(w->loss);
        w->loss = NULL;
        *progress = 1;
        if (w->phase == W_VAL) return log_worker_step(a, r, len >= 8 ? get_f64le(w->lbuf) : NAN, err);
        if (len != 8) return coord_bad_message(c, head, err, "LOSS is %llu bytes, expected 8", (unsigned long long)len);
        w->lossv = share_mean(a, r, get_f64le(w->lbuf));
        c->step = w->step;
        if (r == 0 && run_is_eval_step(c->t, w->step)) { /* replica 0 evaluates (proto.h) */
            post(a, head, MSG_VAL, w->step, w->lbuf, sizeof w->lbuf, &w->loss);
            w->phase = W_VAL;
            return 0;
        }
        return log_worker_step(a, r, NAN, err);
    }
    return 0;
}

static void post_ckpt(async_run *a)
{
    memset(a->ckdone, 0, (size_t)a->P);
    for (int k = 0; a->ck >= 0 && k < a->c->n_grid; k++)
        if (!a->w[k / a->P].dropped) post(a, k, MSG_CKPT_DONE, a->ck, NULL, 0, &a->ckop[k]);
}

/* CKPT_DONE from one replica of every stage: the commit. */
static int poll_ckpt(async_run *a, int *progress, char *err)
{
    coordinator *c = a->c;
    char nerr[NET_ERR_LEN];
    if (a->ck < 0) return 0;
    int done = 0;
    for (int k = 0; k < c->n_grid; k++) {
        if (!a->ckop[k]) continue;
        int st = net_op_test(a->ckop[k], nerr);
        if (st == NET_PENDING) continue;
        if (st == NET_OK) a->ckdone[k % a->P] = 1;
        net_op_free(a->ckop[k]);
        a->ckop[k] = NULL;
    }
    for (int q = 0; q < a->P; q++) done += a->ckdone[q];
    if (done < a->P) return 0;
    free_ops(a->ckop, c->n_grid);
    if (run_log_checkpoint(c->log, a->ck + 1, err)) return 1;
    a->ck = next_ck(a, a->ck);
    post_ckpt(a);
    *progress = 1;
    return 0;
}

/* Every active worker has trained every step. */
static int workers_done(const async_run *a)
{
    for (int r = 0; r < a->R; r++)
        if (!a->w[r].dropped && a->w[r].phase != W_DONE) return 0;
    return 1;
}

/* The outstanding checkpoint is given up: which one, which stages' shards
 * never came and why (its writer was dropped, or no worker is left), in a
 * note and an event line {"event": "checkpoint_lost"}. Its directory is left
 * as the shards made it, without the COMPLETE marker: never taken for a
 * checkpoint (--resume, check). */
static void ckpt_lost(async_run *a)
{
    coordinator *c = a->c;
    char root[4096], stages[256] = "", whys[600] = "", e[ERR_LEN];
    size_t n = 0, m = 0;
    json_t *js = json_array();
    for (int q = 0; q < a->P; q++)
        if (!a->ckdone[q]) {
            n += (size_t)snprintf(stages + n, n < sizeof stages ? sizeof stages - n : 0, "%s%d", n ? ", " : "", q);
            json_array_append_new(js, json_integer(q));
        }
    for (int r = 0; r < a->R; r++)
        if (a->w[r].why[0] && m < sizeof whys)
            m += (size_t)snprintf(whys + m, sizeof whys - m, "%sworker %d was dropped (%s)", m ? "; " : "", r,
                                  a->w[r].why);
    if (!m) snprintf(whys, sizeof whys, "no worker sent it");
    run_ckpt_root(c->t, c->o.out_dir, root, sizeof root);
    run_log_note(c->log, "pipetrain: the checkpoint after %ld steps was NOT written: the shard of stage %s never "
                 "came (%s; %s); %s/step-%ld is incomplete (no COMPLETE marker: --resume and check do not take "
                 "it); the run ends without it", a->ck + 1, stages, whys,
                 active_workers(a) ? "given up a step timeout after the workers finished" : "no worker is left to "
                 "write it", root, a->ck + 1);
    if (run_log_event(c->log, json_pack("{s:s,s:I,s:o,s:s}", "event", "checkpoint_lost", "step",
                                        (json_int_t)(a->ck + 1), "stages", js, "reason", whys), e))
        fprintf(stderr, "pipetrain: %s\n", e);
}

/* Done: every worker and the last checkpoint; a checkpoint still missing a
 * step timeout after the workers finished (its writer died while writing it)
 * is given up (ckpt_lost) rather than waited for forever. */
static int all_done(async_run *a, double *since)
{
    if (!workers_done(a)) return 0;
    if (*since == 0) *since = base_now();
    if (a->ck < 0) return 1;
    /* (no worker left: nobody can write it) */
    if (active_workers(a) && base_now() - *since < a->c->o.step_timeout_ms / 1e3) return 0;
    ckpt_lost(a);
    return 1;
}

/* The end: each worker's observed step rate, the run's staleness in an event line. */
static int summary_event(async_run *a, char *err)
{
    json_t *ws = json_array();
    for (int r = 0; r < a->R; r++) {
        worker *w = &a->w[r];
        double dt = w->last_t - w->first_t;
        json_array_append_new(ws, json_pack("{s:i,s:I,s:f,s:b}", "worker", r, "steps", (json_int_t)w->logged,
                                            "steps_per_s", dt > 0 ? (double)w->logged / dt : 0.0, "dropped",
                                            w->dropped));
    }
    return run_log_event(a->c->log, json_pack("{s:s,s:i,s:o}", "event", "workers", "staleness_bound",
                                              a->c->t->ps.staleness, "workers", ws), err);
}

/* The steps are over: a dropped worker's ranks are closed with the reason,
 * so that a process that joins now (or has joined and waits for its START)
 * is told at once that the run is ending, instead of waiting for its own
 * timeout: its connection fails (or its handshake is refused) with "run
 * already finished", and it exits 1 naming it. Its identity is not forgotten
 * again. */
static void close_late_joins(async_run *a, int failed)
{
    coordinator *c = a->c;
    char reason[256];
    snprintf(reason, sizeof reason, failed ? "the run failed; no worker can join it"
             : "run already finished: every worker has trained its %ld steps; a process joining now has "
               "nothing to train", a->total);
    for (int r = 0; r < a->R; r++)
        for (int q = 0; a->w[r].dropped && q < a->P; q++) {
            net_op_free(a->w[r].join[q]);
            a->w[r].join[q] = NULL;
            net_peer_close(c->node, coord_sid(c, r * a->P + q), reason);
        }
}

int coord_async_steps(coordinator *c, char *err)
{
    async_run a = { .c = c, .P = c->t->n_stages, .R = c->t->n_replicas, .total = c->t->train.steps };
    int rc = 0;
    a.w = xcalloc((size_t)a.R, sizeof *a.w);
    a.tx = xcalloc((size_t)c->n_proc, sizeof *a.tx);
    a.txbuf = xcalloc((size_t)c->n_proc, sizeof *a.txbuf);
    a.txtype = xcalloc((size_t)c->n_proc, sizeof *a.txtype);
    a.txstep = xcalloc((size_t)c->n_proc, sizeof *a.txstep);
    a.ckop = xcalloc((size_t)c->n_grid, sizeof *a.ckop);
    a.ckdone = xcalloc((size_t)a.P, 1);
    double now = base_now();
    for (int r = 0; r < a.R; r++) {
        worker *w = &a.w[r];
        w->norm = xcalloc((size_t)a.P, sizeof *w->norm);
        w->join = xcalloc((size_t)a.P, sizeof *w->join);
        w->nbuf = xcalloc((size_t)a.P, (size_t)c->normcap);
        w->jbuf = xcalloc((size_t)a.P, 16);
        w->sq = xcalloc((size_t)c->n_units, sizeof *w->sq);
        w->step = c->o.first_step;
        w->t0 = w->first_t = w->last_t = now;
        if (w->step >= a.total) w->phase = W_DONE;
        else post_norms(&a, r);
    }
    a.ck = next_ck(&a, c->o.first_step - 1);
    post_ckpt(&a);
    double since = 0;
    while (!rc && !all_done(&a, &since)) {
        int progress = 0;
        for (int r = 0; r < a.R && !rc; r++)
            rc = a.w[r].dropped ? rejoin(&a, r, &progress, err) : step_worker(&a, r, &progress, err);
        if (base_now() >= a.forget_at) a.forget_at = base_now() + 0.1;
        if (!rc) rc = poll_ckpt(&a, &progress, err);
        if (!rc) rc = check(&a, err);
        if (!rc && !progress) idle_wait(&a);
    }
    if (!rc) rc = summary_event(&a, err);
    close_late_joins(&a, rc);
    c->step = a.total - 1;
    for (int k = 0; k < c->n_proc; k++) {
        char nerr[NET_ERR_LEN], who[48], what[48];
        /* the last message to a process still in the run: cancelled only with a note (a failed one is its
         * process's failure, which the end names) */
        if (a.tx[k] && net_wait(a.tx[k], 1000, nerr) == NET_TIMEOUT && !rc) {
            tx_what(&a, k, what, sizeof what);
            run_log_note(c->log, "pipetrain: %s did not take the coordinator's %s within 1 s of the end of the "
                         "steps; cancelled", coord_who(c->t, k, who, sizeof who), what);
        }
        net_op_free(a.tx[k]);
    }
    free_ops(a.ckop, c->n_grid);
    for (int r = 0; r < a.R; r++) {
        worker *w = &a.w[r];
        free_ops(w->norm, a.P);
        free_ops(w->join, a.P);
        net_op_free(w->loss);
        free(w->norm); free(w->join); free(w->nbuf); free(w->jbuf); free(w->sq);
    }
    free(a.w); free(a.tx); free(a.txbuf); free(a.txtype); free(a.txstep); free(a.ckop); free(a.ckdone);
    return rc;
}
