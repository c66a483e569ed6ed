/* server_async.c — a parameter server in the asynchronous modes (issue 12,
 * ps.staleness s > 0: bounded staleness, -1: no bound): every push is applied
 * when it arrives (ps_server_push; the scaling is ps/ps.h's), a worker's PULL
 * for step t is answered with the newest weights of its pieces once
 * ps_server_may_start allows it, and workers come and go at the
 * coordinator's word (MSG_PS_CTL: ps_server_drop / ps_server_join). Messages
 * and their order: stage/proto.h ("Asynchronous parameter servers") and
 * ps/ps_proto.h.
 *
 * Checkpoints are taken at a consistent point: the checkpoint after N steps
 * is sent once every active worker has pushed its steps < N here, and no PULL
 * for step N is answered before, so the state is exactly the updates of steps
 * < N (workers pause at that barrier). The lowest active replica of each
 * stage gets the pieces (MSG_PS_CKPT) and writes the shard; the other active
 * replicas get an empty MSG_PS_CKPT ("not you").
 *
 * Threads: the server's main thread only, polling its posted receives. */
#include "run/run.h"
#include "stage/proto.h"
#include "stage/server_int.h"

#include <limits.h>
#include <time.h>

struct srv_async {
    long total;
    long *pnext;            /* (R * np) step of worker r's next push of local piece l */
    struct net_op **pull;   /* (R * P) posted PULL receive of (stage k, worker r) */
    long *pstep;            /* (R * P) the step that PULL is for */
    uint8_t *pwait;         /* (R * P) 1: it arrived and waits for an answer */
    long *wsent;            /* (R * np) the step whose weights of local piece l went to worker r last */
    uint8_t *tx;            /* (R) x txbytes: weights sent to worker r */
    size_t txbytes;
    struct net_op **txop;   /* (R * np) */
    struct net_op **ckop;   /* (R * np) */
    uint8_t *dropped;       /* (R) */
    uint8_t *dead;          /* (R) a send to worker r failed (its process died): nothing more goes to it and
                               its ops are gone; the coordinator's drop follows (not a failure of this server) */
    struct net_op *ctl;     /* the posted MSG_PS_CTL receive */
    uint8_t ctlbuf[PS_CTL_BYTES];
    long nctl;              /* its key step: CTL messages taken so far */
    long ck_next, ck_sent;  /* next checkpoint to send (steps; > total: none); the last sent */
    double forget_at;       /* next time dead peers of dropped workers are forgotten */
    int rot;                /* the worker whose next push an idle wait watches (round robin) */
};

static long next_ckpt(const topo *t, long after, long total)
{
    for (long n = after + 1; n <= total; n++)
        if (run_is_ckpt_step(t, n - 1)) return n;
    return total + 1;
}

static int post_push(srv *sv, int r, int l)
{
    struct srv_async *as = sv->as;
    char nerr[NET_ERR_LEN];
    const ps_piece *pc = &sv->a.pieces[sv->idx[l]];
    long step = as->pnext[r * sv->np + l];
    if (step >= as->total) return 0;
    net_key k = { MSG_PS_PUSH, (uint64_t)step, (uint32_t)sv->idx[l], 0 };
    if (net_recv_post(sv->node, net_stage_id((uint16_t)pc->stage, (uint16_t)r), k,
                      sv->rx + (size_t)r * sv->rxstride + sv->rxoff[l], PS_PUSH_HDR + pc->len * sizeof(float),
                      &sv->rxop[r * sv->np + l], nerr))
        return srv_fail(sv, "posting a receive: %s", nerr);
    return 0;
}

static int post_pull(srv *sv, int r, int k)
{
    struct srv_async *as = sv->as;
    char nerr[NET_ERR_LEN];
    int i = r * sv->P + k;
    if (as->pstep[i] >= as->total) return 0;
    net_key key = { MSG_PS_PULL, (uint64_t)as->pstep[i], 0, 0 };
    if (net_recv_post(sv->node, net_stage_id((uint16_t)k, (uint16_t)r), key, NULL, 0, &as->pull[i], nerr))
        return srv_fail(sv, "posting a receive: %s", nerr);
    return 0;
}

static int post_ctl(srv *sv)
{
    char nerr[NET_ERR_LEN];
    net_key k = { MSG_PS_CTL, (uint64_t)sv->as->nctl, 0, 0 };
    if (net_recv_post(sv->node, net_coord_id(), k, sv->as->ctlbuf, PS_CTL_BYTES, &sv->as->ctl, nerr))
        return srv_fail(sv, "posting a receive: %s", nerr);
    return 0;
}

/* Posts every receive of worker r from step `step` on. */
static int start_worker(srv *sv, int r, long step)
{
    struct srv_async *as = sv->as;
    for (int l = 0; l < sv->np; l++) {
        as->pnext[r * sv->np + l] = step;
        as->wsent[r * sv->np + l] = step - 1;
        if (post_push(sv, r, l)) return -1;
    }
    for (int k = 0; k < sv->P; k++) {
        if (!sv->stage_has[k]) continue;
        as->pstep[r * sv->P + k] = step;
        as->pwait[r * sv->P + k] = 0;
        if (post_pull(sv, r, k)) return -1;
    }
    return 0;
}

/* Worker r's sends still held (weights, checkpoint pieces): released
 * without waiting (a pending one is cancelled). Its process died, or a new
 * one takes its place: the old connection's outcomes must not be awaited
 * later (a failed one would fail this server). */
static void release_sends(srv *sv, int r)
{
    struct srv_async *as = sv->as;
    for (int l = 0; l < sv->np; l++) {
        net_op_free(as->txop[r * sv->np + l]);
        as->txop[r * sv->np + l] = NULL;
        net_op_free(as->ckop[r * sv->np + l]);
        as->ckop[r * sv->np + l] = NULL;
    }
}

static void stop_worker(srv *sv, int r)
{
    struct srv_async *as = sv->as;
    release_sends(sv, r);
    as->dead[r] = 0;
    for (int l = 0; l < sv->np; l++) {
        net_op_free(sv->rxop[r * sv->np + l]);
        sv->rxop[r * sv->np + l] = NULL;
    }
    for (int k = 0; k < sv->P; k++) {
        net_op_free(as->pull[r * sv->P + k]);
        as->pull[r * sv->P + k] = NULL;
        as->pwait[r * sv->P + k] = 0;
    }
}

/* A send to worker r failed: its process died (or its connection did) before
 * the coordinator's drop came. Not this server's failure (elasticity: the
 * coordinator drops the worker and tells every server): noted, nothing more
 * goes to r, its sends are released, and the drop is awaited. Returns 1. */
static int worker_lost(srv *sv, int r, const char *what, const char *why)
{
    struct srv_async *as = sv->as;
    if (!as->dead[r])
        fprintf(stderr, "pipetrain server: server %d: worker %d (replica %d): %s: %s; waiting for the coordinator to "
                "drop it\n", sv->j, r, r, what, why);
    as->dead[r] = 1;
    release_sends(sv, r);
    return 1;
}

/* Waits for *op, a send to worker r, and releases it: 0 done, 1 worker r was
 * lost meanwhile (worker_lost), -1 this server fails (the coordinator is
 * gone, or no progress within the step timeout). */
static int await_worker(srv *sv, int r, struct net_op **op, const char *what)
{
    char nerr[NET_ERR_LEN], cerr[NET_ERR_LEN];
    double t0 = base_now();
    while (*op) {
        int rc = net_wait(*op, 1000, nerr);
        if (rc == NET_OK) break;
        if (rc != NET_TIMEOUT) return worker_lost(sv, r, what, nerr);
        int cs = net_peer_status(sv->node, net_coord_id(), cerr);
        if (cs != NET_OK && cs != NET_PENDING) return srv_fail(sv, "%s: the coordinator is gone: %s", what, cerr);
        if (base_now() - t0 > sv->timeout_s) return srv_fail(sv, "%s: no answer after %.0f s", what, base_now() - t0);
    }
    net_op_free(*op);
    *op = NULL;
    return 0;
}

/* Posts a send to worker stage (stage, r): 0, 1 when worker r is lost (its
 * connection is dead: worker_lost), -1 when this server fails. */
static int send_worker(srv *sv, int stage, int r, net_key k, const void *buf, uint64_t len, struct net_op **op)
{
    char nerr[NET_ERR_LEN];
    net_peer_id to = net_stage_id((uint16_t)stage, (uint16_t)r);
    int rc;
    while ((rc = net_send(sv->node, to, k, buf, len, 1000, op, nerr)) == NET_TIMEOUT)
        if (net_peer_status(sv->node, to, nerr) < 0) break;
    if (rc == NET_OK) return 0;
    int st = net_peer_status(sv->node, to, NULL);
    if (st != NET_OK && st != NET_PENDING) return worker_lost(sv, r, "sending to it", nerr);
    return srv_fail(sv, "sending message type %u: %s", k.type, nerr);
}

static void forget_dropped(srv *sv);

/* Worker r is dropped: its connections are closed (its process may still be
 * alive: the step timeout; or its death not noticed here yet), so that a new
 * process joining as it is not refused as "already connected"; waits (at
 * most 1 s, the network thread takes it at once) until they are dead, to be
 * forgotten next. */
static void close_worker(srv *sv, int r)
{
    for (int k = 0; k < sv->P; k++) {
        if (!sv->stage_has[k]) continue;
        net_peer_id id = net_stage_id((uint16_t)k, (uint16_t)r);
        if (net_peer_status(sv->node, id, NULL) == NET_PENDING) continue; /* unknown or connecting: nothing to close */
        net_peer_close(sv->node, id, "dropped by the coordinator");
        for (double end = base_now() + 1; base_now() < end;) {
            int st = net_peer_status(sv->node, id, NULL);
            if (st != NET_OK && st != NET_PENDING) break;
            nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
        }
    }
}

/* A MSG_PS_CTL from the coordinator: drop or join a worker. */
static int on_ctl(srv *sv, uint64_t len)
{
    struct srv_async *as = sv->as;
    char why[ERR_LEN];
    if (len != PS_CTL_BYTES) return srv_fail(sv, "worker control message of %llu bytes, expected %d",
                                              (unsigned long long)len, PS_CTL_BYTES);
    uint32_t op = get_u32le(as->ctlbuf), w = get_u32le(as->ctlbuf + 4);
    long step = (long)get_u64le(as->ctlbuf + 8);
    if (w >= (uint32_t)sv->R || (op != PS_CTL_DROP && op != PS_CTL_JOIN) || step < 0 || step > as->total)
        return srv_fail(sv, "worker control message: op %u worker %u step %ld out of range", op, w, step);
    if (op == PS_CTL_DROP) {
        if (ps_server_drop(sv->s, (int)w, why)) return srv_fail(sv, "%s", why);
        stop_worker(sv, (int)w);
        as->dropped[w] = 1;
        close_worker(sv, (int)w);
        as->forget_at = 0; /* its dead connections forgotten now (a --join may follow the log line) */
        forget_dropped(sv);
        fprintf(stderr, "pipetrain server: server %d: worker %u (replica %u) dropped at the coordinator's word; its "
                "clock was %ld\n", sv->j, w, w, ps_server_clock(sv->s, (int)w));
        /* the answer, queued after the forget: the drop may be logged now */
        if (srv_ctl_send(sv, MSG_PS_CTL, as->nctl, as->ctlbuf, PS_CTL_BYTES)) return -1;
    } else {
        stop_worker(sv, (int)w);
        if (ps_server_join(sv->s, (int)w, step, why)) return srv_fail(sv, "%s", why);
        as->dropped[w] = 0;
        fprintf(stderr, "pipetrain server: server %d: worker %u (replica %u) joins at step %ld\n", sv->j, w, w,
                step + 1);
        if (start_worker(sv, (int)w, step)) return -1;
    }
    as->nctl++;
    return post_ctl(sv);
}

/* A push arrived: applied now; a refusal is logged, told to the worker and
 * fails the server (it can only come from a broken or foreign worker). */
static int take(srv *sv, int r, int l, uint64_t len)
{
    struct srv_async *as = sv->as;
    const ps_piece *pc = &sv->a.pieces[sv->idx[l]];
    char why[ERR_LEN], w[160], nerr[NET_ERR_LEN];
    ps_push p;
    long step = as->pnext[r * sv->np + l];
    const uint8_t *in = sv->rx + (size_t)r * sv->rxstride + sv->rxoff[l];
    sv->stats.bytes_received += len;
    if (!ps_push_decode(&sv->a, r, in, len, step, sv->idx[l], &p, why) && !ps_server_push(sv->s, &p, why)) {
        sv->stats.pushes++;
        as->pnext[r * sv->np + l]++;
        return post_push(sv, r, l);
    }
    sv->stats.refused++;
    srv_worker_name(sv, pc->stage, r, w, sizeof w);
    fprintf(stderr, "pipetrain server: server %d refused a push from %s at step %ld: %s\n", sv->j, w, step + 1, why);
    struct net_op *op = NULL;
    net_key k = { MSG_PS_REFUSE, (uint64_t)step, (uint32_t)sv->idx[l], 0 };
    if (net_send(sv->node, net_stage_id((uint16_t)pc->stage, (uint16_t)r), k, why, strlen(why), 200, &op, nerr) == NET_OK)
        net_wait(op, 500, nerr);
    net_op_free(op);
    return srv_fail(sv, "refused a push from %s: %s", w, why);
}

/* The newest weights of local piece l to worker r, for its step t. */
static int send_piece(srv *sv, int r, int l, long t)
{
    struct srv_async *as = sv->as;
    const ps_piece *pc = &sv->a.pieces[sv->idx[l]];
    struct net_op **op = &as->txop[r * sv->np + l];
    int rc = await_worker(sv, r, op, "sending weights"); /* its buffer is reused */
    if (rc) return rc < 0 ? -1 : 0;
    long version;
    size_t len;
    const float *w = ps_server_pull(sv->s, sv->idx[l], &version, &len);
    uint8_t *b = as->tx + (size_t)r * as->txbytes + sv->txoff[l];
    ps_piece_hdr_encode(b, sv->idx[l], len, version);
    memcpy(b + PS_PIECE_HDR, w, len * sizeof(float));
    net_key key = { MSG_PS_WEIGHTS, (uint64_t)t, (uint32_t)sv->idx[l], 0 };
    uint64_t bytes = PS_PIECE_HDR + len * sizeof(float);
    if ((rc = send_worker(sv, pc->stage, r, key, b, bytes, op))) return rc < 0 ? -1 : 0;
    sv->stats.bytes_sent += bytes;
    as->wsent[r * sv->np + l] = t;
    return 0;
}

/* Answers (stage k, worker r)'s waiting PULL(t) piece by piece: once the bound
 * allows step t (and the checkpoint barrier is passed), each piece of stage k
 * goes out as soon as r's push of it for step t - 1 is applied, so the
 * weights flow back while the rest of the step's pushes still arrive. With s
 * >= 1 or -1 ps_server_may_start gives the same answer before r's step t - 1
 * is complete as after (r's own clock is at most 1 behind t). When every piece
 * has gone, the PULL is answered and the next one is posted. */
static int try_answer(srv *sv, int r, int k, int *progress)
{
    struct srv_async *as = sv->as;
    int i = r * sv->P + k;
    long t = as->pstep[i];
    if (!as->pwait[i] || as->dropped[r] || as->dead[r] || !ps_server_may_start(sv->s, r, t)) return 0;
    if (t > 0 && run_is_ckpt_step(sv->t, t - 1) && as->ck_sent < t) return 0; /* the checkpoint barrier */
    int left = 0;
    for (int l = 0; l < sv->np; l++) {
        if (sv->a.pieces[sv->idx[l]].stage != k || as->wsent[r * sv->np + l] >= t) continue;
        if (as->pnext[r * sv->np + l] < t) { left++; continue; } /* its push of step t - 1 is not in */
        if (send_piece(sv, r, l, t)) return -1;
        *progress = 1;
        if (as->dead[r]) return 0;
    }
    if (left) return 0;
    as->pwait[i] = 0;
    as->pstep[i]++;
    *progress = 1;
    return post_pull(sv, r, k);
}

/* The lowest active worker (not dropped, not lost), or -1. */
static int first_active(const srv *sv)
{
    for (int r = 0; r < sv->R; r++)
        if (!sv->as->dropped[r] && !sv->as->dead[r]) return r;
    return -1;
}

/* Every active worker has pushed its steps < n here. */
static int all_reached(const srv *sv, long n)
{
    for (int r = 0; r < sv->R; r++)
        if (!sv->as->dropped[r] && ps_server_clock(sv->s, r) < n) return 0;
    return 1;
}

/* The checkpoint after n steps: the pieces to the lowest active replica of
 * their stage, an empty MSG_PS_CKPT to every other active one. */
static int send_ckpt(srv *sv, long n)
{
    struct srv_async *as = sv->as;
    for (int i = 0; i < sv->R * sv->np; i++) /* the buffer is reused */
        if (as->ckop[i] && await_worker(sv, i / sv->np, &as->ckop[i], "sending the checkpoint's pieces") < 0)
            return -1;
    int wr = first_active(sv);
    for (int l = 0; l < sv->np; l++) {
        const ps_piece *pc = &sv->a.pieces[sv->idx[l]];
        uint64_t full = srv_encode_ckpt_piece(sv, l);
        uint8_t *b = sv->ck + sv->ckoff[l];
        net_key k = { MSG_PS_CKPT, (uint64_t)(n - 1), (uint32_t)sv->idx[l], 0 };
        for (int r = 0; r < sv->R; r++) {
            if (as->dropped[r] || as->dead[r]) continue;
            uint64_t bytes = r == wr ? full : 0;
            int w = send_worker(sv, pc->stage, r, k, b, bytes, &as->ckop[r * sv->np + l]);
            if (w < 0) return -1;
            if (!w) sv->stats.bytes_sent += bytes;
        }
    }
    return 0;
}

/* Dead connections of dropped workers are forgotten, so that a process
 * started with --join can take their identity. */
static void forget_dropped(srv *sv)
{
    if (base_now() < sv->as->forget_at) return;
    sv->as->forget_at = base_now() + 0.1;
    for (int r = 0; r < sv->R; r++)
        for (int k = 0; sv->as->dropped[r] && k < sv->P; k++) {
            net_peer_id id = net_stage_id((uint16_t)k, (uint16_t)r);
            int st = net_peer_status(sv->node, id, NULL);
            if (sv->stage_has[k] && st != NET_OK && st != NET_PENDING) net_peer_forget(sv->node, id);
        }
}

/* One pass over every posted receive; *progress set when anything happened. */
static int poll_once(srv *sv, int *progress)
{
    struct srv_async *as = sv->as;
    char nerr[NET_ERR_LEN];
    if (as->ctl) {
        int st = net_op_test(as->ctl, nerr);
        if (st != NET_PENDING) {
            if (st != NET_OK) return srv_fail(sv, "the coordinator: %s", nerr);
            uint64_t len = net_op_len(as->ctl);
            net_op_free(as->ctl);
            as->ctl = NULL;
            *progress = 1;
            if (on_ctl(sv, len)) return -1;
        }
    }
    /* the PULLs first: a worker asks for step t + 1 before pushing step t */
    for (int i = 0; i < sv->R * sv->P; i++) {
        if (!as->pull[i]) continue;
        int st = net_op_test(as->pull[i], nerr);
        if (st == NET_PENDING) continue;
        net_op_free(as->pull[i]);
        as->pull[i] = NULL;
        as->pwait[i] = st == NET_OK;
        *progress = 1;
    }
    for (int i = 0; i < sv->R * sv->np; i++) {
        if (!sv->rxop[i]) continue;
        int st = net_op_test(sv->rxop[i], nerr);
        if (st == NET_PENDING) continue;
        uint64_t len = net_op_len(sv->rxop[i]);
        net_op_free(sv->rxop[i]);
        sv->rxop[i] = NULL;
        *progress = 1;
        /* a worker that died: the coordinator drops it (MSG_PS_CTL) */
        if (st == NET_OK && take(sv, i / sv->np, i % sv->np, len)) return -1;
        int r = i / sv->np, k = sv->a.pieces[sv->idx[i % sv->np]].stage;
        if (st == NET_OK && try_answer(sv, r, k, progress)) return -1;
    }
    if (as->ck_next <= as->total && all_reached(sv, as->ck_next) && first_active(sv) >= 0) {
        if (send_ckpt(sv, as->ck_next)) return -1;
        as->ck_sent = as->ck_next;
        as->ck_next = next_ckpt(sv->t, as->ck_next, as->total);
        *progress = 1;
    }
    for (int i = 0; i < sv->R * sv->P; i++)
        if (try_answer(sv, i / sv->P, i % sv->P, progress)) return -1;
    forget_dropped(sv);
    return 0;
}

/* Nothing happened: waits up to 1 ms for the next push of one worker (round
 * robin; the first posted receive with its lowest step), woken the moment it
 * arrives instead of at the end of a sleep; a pass over every receive
 * follows either way. */
static void idle_wait(srv *sv)
{
    struct srv_async *as = sv->as;
    char nerr[NET_ERR_LEN];
    struct net_op *op = NULL;
    for (int n = 0; n < sv->R && !op; n++) {
        int r = as->rot++ % sv->R;
        long lo = LONG_MAX;
        for (int l = 0; l < sv->np; l++) {
            struct net_op *o = sv->rxop[r * sv->np + l];
            if (o && as->pnext[r * sv->np + l] < lo) lo = as->pnext[r * sv->np + l], op = o;
        }
    }
    if (op) net_wait(op, 1, nerr); /* its outcome is taken by the next pass */
    else nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
}

int srv_serve_async(srv *sv, long first, long total)
{
    struct srv_async *as = sv->as = xcalloc(1, sizeof *sv->as);
    int R = sv->R, np = sv->np, P = sv->P;
    as->total = total;
    as->pnext = xcalloc((size_t)R * (size_t)np + 1, sizeof(long));
    as->pull = xcalloc((size_t)R * (size_t)P, sizeof *as->pull);
    as->pstep = xcalloc((size_t)R * (size_t)P, sizeof(long));
    as->pwait = xcalloc((size_t)R * (size_t)P, 1);
    as->wsent = xcalloc((size_t)R * (size_t)np + 1, sizeof(long));
    as->dropped = xcalloc((size_t)R, 1);
    as->dead = xcalloc((size_t)R, 1);
    as->txbytes = np ? sv->txoff[np - 1] + PS_PIECE_HDR + sv->a.pieces[sv->idx[np - 1]].len * sizeof(float) : 0;
    as->tx = xmalloc((size_t)R * as->txbytes + 1);
    as->txop = xcalloc((size_t)R * (size_t)np + 1, sizeof *as->txop);
    as->ckop = xcalloc((size_t)R * (size_t)np + 1, sizeof *as->ckop);
    as->ck_sent = first;
    as->ck_next = next_ckpt(sv->t, first, total);
    sv->step = first;
    double t0 = base_now(), last = t0;
    if (post_ctl(sv)) return -1;
    for (int r = 0; r < R; r++)
        if (start_worker(sv, r, first)) return -1;
    char cerr[NET_ERR_LEN];
    for (;;) {
        int progress = 0;
        if (poll_once(sv, &progress)) return -1;
        sv->step = ps_server_step(sv->s);
        if (all_reached(sv, total) && as->ck_next > total) break;
        if (progress) {
            last = base_now();
            continue;
        }
        int cs = net_peer_status(sv->node, net_coord_id(), cerr);
        if (cs != NET_OK && cs != NET_PENDING) return srv_fail(sv, "the coordinator is gone: %s", cerr);
        if (base_now() - last > sv->timeout_s)
            return srv_fail(sv, "no push, pull or control message within %.0f s (slowest worker's clock %ld)",
                            sv->timeout_s, ps_server_step(sv->s));
        idle_wait(sv);
    }
    for (int i = 0; i < R * np; i++) /* a lost worker's are released (worker_lost) */
        if (await_worker(sv, i / np, &as->txop[i], "sending weights") < 0 ||
            await_worker(sv, i / np, &as->ckop[i], "sending the checkpoint's pieces") < 0)
            return -1;
    sv->step = total - 1;
    sv->stats.steps = (uint64_t)(total - first);
    sv->stats.wall_s = base_now() - t0;
    memcpy(sv->stats.staleness, ps_server_staleness(sv->s), sizeof sv->stats.staleness);
    uint8_t buf[PS_STATS_BYTES];
    ps_stats_encode(buf, &sv->stats);
    if (srv_ctl_send(sv, MSG_PS_STATS, sv->step, buf, PS_STATS_BYTES)) return -1;
    /* a worker may still join and ask (the coordinator will say DONE) */
    return srv_ctl_recv(sv, MSG_DONE, sv->step, NULL, 0, NULL, "waiting for the coordinator to finish");
}

void srv_async_free(srv *sv)
{
    struct srv_async *as = sv->as;
    if (!as) return;
    for (int i = 0; i < sv->R * sv->P; i++) net_op_free(as->pull[i]);
    for (int i = 0; i < sv->R * sv->np; i++) {
        net_op_free(as->txop[i]);
        net_op_free(as->ckop[i]);
    }
    net_op_free(as->ctl);
    free(as->pnext); free(as->pull); free(as->pstep); free(as->pwait); free(as->wsent); free(as->dropped);
    free(as->dead); free(as->tx); free(as->txop); free(as->ckop);
    free(as);
    sv->as = NULL;
}
