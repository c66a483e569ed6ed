/* server.c — one parameter-server process (`pipetrain server`, issue 12): a
 * net node listening on parameter_servers[K] that holds ps_server_new(t, a, K),
 * joins the coordinator like a stage and, step by step, collects its workers'
 * pushes, gives its norm partials to the coordinator (the only server
 * computes the norm itself and checks the coordinator's reply a step later),
 * applies AdamW with the global norm and sends each worker the new weights of
 * each piece as soon as it is updated; on
 * checkpoint steps it sends replica 0 of each stage its pieces' weights and
 * moments. The messages and their order: stage/proto.h ("Parameter servers")
 * and ps/ps_proto.h. This file: set-up and the synchronous loop (ps.staleness
 * 0); the asynchronous modes' loop is stage/server_async.c.
 *
 * Threads: everything runs on this process's main thread, which posts
 * receives and sends to net/'s network thread and waits on them (in slices,
 * with the step timeout and a watch on the coordinator). The state machine and
 * its arithmetic are ps/'s; this file only moves bytes. */
#include "model/util.h"
#include "ps/ps_proto.h"
#include "run/run.h"
#include "stage/proto.h"
#include "stage/stage.h"
#include "stage/server_int.h"

#include <math.h>
#include <stdarg.h>
#include <unistd.h>


/* "server K (host:port) at step N: ..." into sv->err; returns -1. */
int srv_fail(srv *sv, const char *fmt, ...)
{
    char msg[ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const topo_addr *me = &sv->t->parameter_servers[sv->j];
    snprintf(sv->err, ERR_LEN, "server %d (%.64s:%d) at step %ld: %.380s", sv->j, me->host, me->port, sv->step + 1,
             msg);
    return -1;
}

/* net_config.accept_peer: the replicas of the stages holding a piece here. */
static int srv_accept(void *arg, net_peer_id id, char *why)
{
    const srv *sv = arg;
    const topo *t = sv->t;
    if (id.role != NET_ROLE_STAGE) {
        snprintf(why, NET_ERR_LEN, "only worker stages connect to parameter server %d (the server connects to the "
                 "coordinator)", sv->j);
        return 0;
    }
    if (id.stage >= t->n_stages || id.replica >= t->n_replicas) {
        snprintf(why, NET_ERR_LEN, "stage %u replica %u is not in the topology %s (%d stages x %d replicas)",
                 id.stage, id.replica, t->path, t->n_stages, t->n_replicas);
        return 0;
    }
    if (!sv->stage_has[id.stage]) {
        snprintf(why, NET_ERR_LEN, "stage %u holds no piece on parameter server %d in the topology %s: not one of "
                 "its workers", id.stage, sv->j, t->path);
        return 0;
    }
    return 1;
}

const char *srv_worker_name(const srv *sv, int stage, int r, char *buf, size_t cap)
{
    const topo_replica *q = &sv->t->stages[stage].replicas[r];
    snprintf(buf, cap, "stage %d replica %d (%s:%d)", stage, r, q->host, q->port);
    return buf;
}

/* Waits for op in 1 s slices until it completes, the coordinator is gone or
 * the step timeout passes; `what` names the wait. */
int srv_await(srv *sv, struct net_op *op, const char *what)
{
    char nerr[NET_ERR_LEN];
    double t0 = base_now();
    for (;;) {
        int rc = net_wait(op, 1000, nerr);
        if (rc == NET_OK) return 0;
        if (rc != NET_TIMEOUT) return srv_fail(sv, "%s: %s", what, nerr);
        char cerr[NET_ERR_LEN];
        int cs = net_peer_status(sv->node, net_coord_id(), cerr);
        if (cs != NET_OK && cs != NET_PENDING) return srv_fail(sv, "%s: the coordinator is gone: %s", what, cerr);
        if (base_now() - t0 > sv->timeout_s) return srv_fail(sv, "%s: no answer after %.0f s", what, base_now() - t0);
    }
}

int srv_send(srv *sv, net_peer_id to, net_key k, const void *buf, uint64_t len, struct net_op **op)
{
    char nerr[NET_ERR_LEN];
    int rc;
    while ((rc = net_send(sv->node, to, k, buf, len, 1000, op, nerr)) == NET_TIMEOUT)
        if (net_peer_status(sv->node, to, nerr) < 0) break;
    if (rc != NET_OK) return srv_fail(sv, "sending message type %u: %s", k.type, nerr);
    return 0;
}

int srv_ctl_send(srv *sv, uint16_t type, long step, const void *buf, uint64_t len)
{
    struct net_op *op = NULL;
    net_key k = { type, (uint64_t)step, 0, 0 };
    int rc = srv_send(sv, net_coord_id(), k, buf, len, &op) || srv_await(sv, op, "sending a control message");
    net_op_free(op);
    return rc ? -1 : 0;
}

int srv_ctl_recv(srv *sv, uint16_t type, long step, void *buf, uint64_t cap, uint64_t *len, const char *what)
{
    struct net_op *op = NULL;
    char nerr[NET_ERR_LEN];
    net_key k = { type, (uint64_t)step, 0, 0 };
    if (net_recv_post(sv->node, net_coord_id(), k, buf, cap, &op, nerr) != NET_OK) return srv_fail(sv, "%s: %s", what, nerr);
    int rc = srv_await(sv, op, what);
    if (len) *len = net_op_len(op);
    net_op_free(op);
    return rc;
}

/* ---- set-up ---- */

static int setup(srv *sv)
{
    const topo *t = sv->t;
    if (ps_assign(t, &sv->a, sv->err)) return 2;
    sv->have_a = 1;
    char e[ERR_LEN];
    if (!(sv->s = ps_server_new(t, &sv->a, sv->j, e))) return seterr(sv->err, "%s: parameter_servers: %s", t->path, e), 2;
    sv->np = ps_server_pieces(&sv->a, sv->j, &sv->idx);
    size_t n = sv->np ? (size_t)sv->np : 1;
    sv->stage_has = xcalloc((size_t)sv->P, 1);
    sv->rxoff = xcalloc(n, sizeof(size_t));
    sv->txoff = xcalloc(n, sizeof(size_t));
    sv->ckoff = xcalloc(n, sizeof(size_t));
    size_t rxb = 0, txb = 0, ckb = 0;
    for (int l = 0; l < sv->np; l++) {
        const ps_piece *pc = &sv->a.pieces[sv->idx[l]];
        sv->stage_has[pc->stage] = 1;
        sv->rxoff[l] = rxb;
        sv->txoff[l] = txb;
        sv->ckoff[l] = ckb;
        rxb += PS_PUSH_HDR + pc->len * sizeof(float);
        txb += PS_PIECE_HDR + pc->len * sizeof(float);
        ckb += PS_PIECE_HDR + 3 * pc->len * sizeof(float);
    }
    sv->rxstride = rxb;
    sv->rx = xmalloc((size_t)sv->R * rxb + 1);
    sv->tx = xmalloc(txb + 1);
    sv->ckbytes = ckb; /* the checkpoint buffer is allocated on the first checkpoint */
    sv->rxop = xcalloc((size_t)sv->R * n, sizeof *sv->rxop);
    sv->txop = xcalloc((size_t)sv->R * n, sizeof *sv->txop);
    sv->ckop = xcalloc(n, sizeof *sv->ckop);
    int nb = ps_server_n_blocks(sv->s);
    sv->parts = xcalloc((size_t)nb + 1, sizeof *sv->parts);
    sv->normbuf = xmalloc(4 + (size_t)nb * PS_PARTIAL_BYTES + 16);
    return 0;
}

/* Listens on the server's address, connects to the coordinator and waits
 * until it is authenticated. The workers connect to the server. */
static int setup_net(srv *sv)
{
    const topo *t = sv->t;
    const topo_addr *me = &t->parameter_servers[sv->j];
    net_config cfg;
    char nerr[NET_ERR_LEN];
    if (stage_net_config(&cfg, t, net_server_id((uint16_t)sv->j), sv->o->run_id, sv->o->peer_timeout_ms, sv->secret,
                         sv->err))
        return 2;
    cfg.accept_peer = srv_accept;
    cfg.accept_arg = sv;
    cfg.listen_host = me->host;
    cfg.listen_port = me->port;
    cfg.connect_deadline_ms = sv->o->connect_timeout_ms > 0 ? sv->o->connect_timeout_ms : 60000;
    if (!(sv->node = net_node_new(&cfg, nerr))) return srv_fail(sv, "%s", nerr), 1;
    const char *ch = sv->o->coord_host ? sv->o->coord_host : t->coordinator.host;
    int cp = sv->o->coord_port > 0 ? sv->o->coord_port : t->coordinator.port;
    if (net_connect(sv->node, net_coord_id(), ch, cp, nerr)) return srv_fail(sv, "connecting to the coordinator: %s", nerr), 1;
    int rc = net_wait_peer(sv->node, net_coord_id(), cfg.connect_deadline_ms, nerr);
    if (rc == NET_TIMEOUT)
        return srv_fail(sv, "the coordinator (%s:%d) did not come up within %d ms", ch, cp, cfg.connect_deadline_ms), 1;
    if (rc != NET_OK) return srv_fail(sv, "the coordinator (%s:%d): %s", ch, cp, nerr), 1;
    return 0;
}

/* START with first > 0: the pieces' weights and moments from the checkpoint
 * after `first` steps (any split, sync mode or replica count wrote it). */
int srv_resume(srv *sv, long first)
{
    const topo *t = sv->t;
    int *units = xcalloc((size_t)sv->np + 1, sizeof(int)), nu = 0;
    for (int l = 0; l < sv->np; l++) {
        int u = sv->a.pieces[sv->idx[l]].unit;
        if (!nu || units[nu - 1] != u) units[nu++] = u; /* pieces are in (unit, off) order */
    }
    int rc = 0;
    if (nu) {
        char e[ERR_LEN];
        uint64_t sampler;
        model_part *p = model_part_new(&t->model, units, nu, 1, (uint64_t)t->train.seed);
        optim_adamw *o = optim_new(p->n_params);
        if (run_resume_part(t, sv->o->out_dir, first, p, o, &sampler, e) || ps_server_import(sv->s, p, o, first, e))
            rc = srv_fail(sv, "resuming: %s", e);
        optim_free(o);
        model_part_free(p);
    }
    free(units);
    return rc;
}

/* ---- one step ---- */

static int post_pushes(srv *sv)
{
    char nerr[NET_ERR_LEN];
    for (int r = 0; r < sv->R; r++)
        for (int l = 0; l < sv->np; l++) {
            const ps_piece *pc = &sv->a.pieces[sv->idx[l]];
            net_key k = { MSG_PS_PUSH, (uint64_t)sv->step, (uint32_t)sv->idx[l], 0 };
            uint8_t *dst = sv->rx + (size_t)r * sv->rxstride + sv->rxoff[l];
            if (net_recv_post(sv->node, net_stage_id((uint16_t)pc->stage, (uint16_t)r), k, dst,
                              PS_PUSH_HDR + pc->len * sizeof(float), &sv->rxop[r * sv->np + l], nerr))
                return srv_fail(sv, "posting a receive: %s", nerr);
        }
    return 0;
}

/* A push arrived: decoded and handed to the state machine. A refusal is
 * logged, told to the worker (MSG_PS_REFUSE) and fails the run: a synchronous
 * step cannot complete without it. */
static int take_push(srv *sv, int r, int l, uint64_t len)
{
    const ps_piece *pc = &sv->a.pieces[sv->idx[l]];
    char why[ERR_LEN], w[160];
    ps_push p;
    const uint8_t *in = sv->rx + (size_t)r * sv->rxstride + sv->rxoff[l];
    sv->stats.bytes_received += len;
    if (!ps_push_decode(&sv->a, r, in, len, sv->step, sv->idx[l], &p, why) && !ps_server_push(sv->s, &p, why)) {
        sv->stats.pushes++;
        return 0;
    }
    sv->stats.refused++;
    srv_worker_name(sv, pc->stage, r, w, sizeof w);
    fprintf(stderr, "pipetrain server: server %d refused a push from %s at step %ld: %s\n", sv->j, w, sv->step + 1, why);
    struct net_op *op = NULL;
    char nerr[NET_ERR_LEN];
    net_key k = { MSG_PS_REFUSE, (uint64_t)sv->step, (uint32_t)sv->idx[l], 0 };
    if (net_send(sv->node, net_stage_id((uint16_t)pc->stage, (uint16_t)r), k, why, strlen(why), 200, &op, nerr) == NET_OK)
        net_wait(op, 500, nerr);
    net_op_free(op);
    return srv_fail(sv, "refused a push from %s: %s", w, why);
}

/* Every worker's push of every piece of the step, in arrival order. */
static int collect(srv *sv)
{
    int n = sv->R * sv->np, left = n;
    char nerr[NET_ERR_LEN], w[160];
    double t0 = base_now();
    if (post_pushes(sv)) return -1;
    while (left > 0) {
        int first = -1;
        for (int i = 0; i < n; i++) {
            if (!sv->rxop[i]) continue;
            int st = first < 0 ? net_wait(sv->rxop[i], 200, nerr) : net_op_test(sv->rxop[i], nerr);
            if (st == NET_TIMEOUT || st == NET_PENDING) {
                if (first < 0) first = i;
                continue;
            }
            int r = i / sv->np, l = i % sv->np;
            const ps_piece *pc = &sv->a.pieces[sv->idx[l]];
            if (st != NET_OK)
                return srv_fail(sv, "waiting for the gradient of %s from %s: %s", pc->name,
                                srv_worker_name(sv, pc->stage, r, w, sizeof w), nerr);
            uint64_t len = net_op_len(sv->rxop[i]);
            net_op_free(sv->rxop[i]);
            sv->rxop[i] = NULL;
            left--;
            if (take_push(sv, r, l, len)) return -1;
        }
        if (!left) break;
        char cerr[NET_ERR_LEN];
        int cs = net_peer_status(sv->node, net_coord_id(), cerr);
        if (cs != NET_OK && cs != NET_PENDING) return srv_fail(sv, "waiting for pushes: the coordinator is gone: %s", cerr);
        if (base_now() - t0 > sv->timeout_s) {
            int r = first / sv->np, l = first % sv->np;
            const ps_piece *pc = &sv->a.pieces[sv->idx[l]];
            return srv_fail(sv, "no gradient of %s from %s within %.0f s (%d of %d pushes missing)", pc->name,
                            srv_worker_name(sv, pc->stage, r, w, sizeof w), sv->timeout_s, left, n);
        }
    }
    return 0;
}

/* The only server (n_servers 1) computes the step's norm itself: the NORM it
 * sends (for the coordinator's log) and the reply stay pending until here,
 * where the reply must be bit for bit the norm it applied (else a bug). */
static int norm_check(srv *sv)
{
    if (!sv->norm_rx) return 0;
    int rc = srv_await(sv, sv->norm_tx, "sending the norm partials") ||
             srv_await(sv, sv->norm_rx, "waiting for the global gradient norm from the coordinator");
    uint64_t got = net_op_len(sv->norm_rx);
    net_op_free(sv->norm_tx);
    net_op_free(sv->norm_rx);
    sv->norm_tx = sv->norm_rx = NULL;
    if (rc) return -1;
    uint8_t mine[8];
    put_f64le(mine, sv->norm_local);
    if (got != 8 || memcmp(mine, sv->norm_reply, 8))
        return srv_fail(sv, "the coordinator's gradient norm (%.17g, %llu bytes) differs from the one this server "
                        "computed and applied (%.17g): a bug", got == 8 ? get_f64le(sv->norm_reply) : NAN,
                        (unsigned long long)got, sv->norm_local);
    sv->norm_local_n++;
    return 0;
}

/* ps_server_apply_each's callback: piece l's new weights to every worker of
 * its stage, as soon as its AdamW is done. */
static int send_piece(void *ctx, int l)
{
    srv *sv = ctx;
    const ps_piece *pc = &sv->a.pieces[sv->idx[l]];
    long version;
    size_t len;
    const float *w = ps_server_pull(sv->s, sv->idx[l], &version, &len);
    uint8_t *b = sv->tx + sv->txoff[l];
    ps_piece_hdr_encode(b, sv->idx[l], len, version);
    memcpy(b + PS_PIECE_HDR, w, len * sizeof(float));
    net_key k = { MSG_PS_WEIGHTS, (uint64_t)sv->step, (uint32_t)sv->idx[l], 0 };
    for (int r = 0; r < sv->R; r++) {
        uint64_t bytes = PS_PIECE_HDR + len * sizeof(float);
        if (srv_send(sv, net_stage_id((uint16_t)pc->stage, (uint16_t)r), k, b, bytes, &sv->txop[r * sv->np + l]))
            return -1;
        sv->stats.bytes_sent += bytes;
    }
    return 0;
}

/* The norm (from the coordinator, or with one server computed here), then
 * AdamW piece by piece, each piece's new weights sent to its workers as soon
 * as it is updated; waits until every send is out. */
static int apply_and_send(srv *sv)
{
    char e[ERR_LEN], nerr[NET_ERR_LEN];
    if (norm_check(sv)) return -1; /* the last step's reply; sv->normbuf is free after it */
    int n = ps_server_norm_partials(sv->s, sv->parts);
    if (n < 0) return srv_fail(sv, "every push arrived but the server does not wait for the norm (a bug)");
    size_t len = ps_partials_encode(sv->normbuf, sv->parts, n);
    double norm;
    if (sv->t->n_servers == 1) {
        /* the coordinator's arithmetic on the same partials (gather_ps_norm) */
        norm = ps_norm_combine(sv->t, &sv->a, sv->parts, (size_t)n, e);
        if (isnan(norm)) return srv_fail(sv, "the norm partials: %s", e);
        net_key k = { MSG_PS_NORM, (uint64_t)sv->step, 0, 0 };
        if (srv_send(sv, net_coord_id(), k, sv->normbuf, len, &sv->norm_tx)) return -1;
        k.type = MSG_NORM_REPLY;
        if (net_recv_post(sv->node, net_coord_id(), k, sv->norm_reply, sizeof sv->norm_reply, &sv->norm_rx, nerr))
            return srv_fail(sv, "posting a receive: %s", nerr);
        sv->norm_local = norm;
    } else {
        if (srv_ctl_send(sv, MSG_PS_NORM, sv->step, sv->normbuf, len)) return -1;
        uint8_t b[8];
        uint64_t got = 0;
        if (srv_ctl_recv(sv, MSG_NORM_REPLY, sv->step, b, sizeof b, &got,
                         "waiting for the global gradient norm from the coordinator"))
            return -1;
        if (got != 8) return srv_fail(sv, "NORM_REPLY is %llu bytes, expected 8", (unsigned long long)got);
        norm = get_f64le(b);
    }
    if (ps_server_apply_each(sv->s, norm, send_piece, sv, e)) return sv->err[0] ? -1 : srv_fail(sv, "%s", e);
    sv->stats.steps++;
    return srv_await_all(sv, sv->txop, sv->R * sv->np, "sending the new weights");
}

/* Sends ops[0..n) out and waits for them all. */
int srv_await_all(srv *sv, struct net_op **ops, int n, const char *what)
{
    int rc = 0;
    for (int i = 0; i < n; i++) {
        if (!ops[i]) continue;
        if (!rc) rc = srv_await(sv, ops[i], what);
        net_op_free(ops[i]);
        ops[i] = NULL;
    }
    return rc;
}

/* Piece l's checkpoint message (header, weights, m, v) encoded at sv->ck +
 * sv->ckoff[l]; returns its bytes. */
uint64_t srv_encode_ckpt_piece(srv *sv, int l)
{
    const float *w, *m, *v;
    long version;
    if (!sv->ck) sv->ck = xmalloc(sv->ckbytes + 1);
    size_t len = ps_server_piece_state(sv->s, sv->idx[l], &w, &m, &v);
    ps_server_pull(sv->s, sv->idx[l], &version, NULL);
    uint8_t *b = sv->ck + sv->ckoff[l];
    ps_piece_hdr_encode(b, sv->idx[l], len, version);
    memcpy(b + PS_PIECE_HDR, w, len * sizeof(float));
    memcpy(b + PS_PIECE_HDR + len * sizeof(float), m, len * sizeof(float));
    memcpy(b + PS_PIECE_HDR + 2 * len * sizeof(float), v, len * sizeof(float));
    return PS_PIECE_HDR + 3 * len * sizeof(float);
}

/* Checkpoint steps: every piece's weights and moments to replica 0 of its
 * stage, which writes the stage's shard. */
int srv_send_checkpoint(srv *sv)
{
    for (int l = 0; l < sv->np; l++) {
        const ps_piece *pc = &sv->a.pieces[sv->idx[l]];
        uint64_t bytes = srv_encode_ckpt_piece(sv, l);
        uint8_t *b = sv->ck + sv->ckoff[l];
        net_key k = { MSG_PS_CKPT, (uint64_t)sv->step, (uint32_t)sv->idx[l], 0 };
        if (srv_send(sv, net_stage_id((uint16_t)pc->stage, 0), k, b, bytes, &sv->ckop[l])) return -1;
        sv->stats.bytes_sent += bytes;
    }
    return srv_await_all(sv, sv->ckop, sv->np, "sending the checkpoint's pieces");
}

static void send_fail(srv *sv)
{
    if (!sv->node || !sv->err[0]) return;
    struct net_op *op = NULL;
    char nerr[NET_ERR_LEN];
    net_key k = { MSG_FAIL, (uint64_t)(sv->step < 0 ? 0 : sv->step), 0, 0 };
    if (net_send(sv->node, net_coord_id(), k, sv->err, strlen(sv->err), 200, &op, nerr) == NET_OK) net_wait(op, 500, nerr);
    net_op_free(op);
}

static int serve(srv *sv)
{
    uint8_t buf[PS_STATS_BYTES];
    put_u32le(buf, (uint32_t)sv->j);
    put_u32le(buf + 4, (uint32_t)getpid());
    put_u32le(buf + 8, (uint32_t)sv->np);
    if (srv_ctl_send(sv, MSG_JOIN, 0, buf, 12)) return -1;
    uint8_t start[24] = { 0 };
    uint64_t len = 0;
    if (srv_ctl_recv(sv, MSG_START, 0, start, sizeof start, &len, "waiting for the coordinator to start the run")) return -1;
    if (len < 16) return srv_fail(sv, "START from the coordinator has %llu bytes, expected 16 or 24", (unsigned long long)len);
    long first = (long)get_u64le(start), total = (long)get_u64le(start + 8);
    if (first < 0 || first > total || total != sv->t->train.steps)
        return srv_fail(sv, "the coordinator asks for steps %ld..%ld; this server's topology has %d steps", first, total,
                        sv->t->train.steps);
    if (first > 0 && srv_resume(sv, first)) return -1;
    if (sv->t->ps.staleness != 0) return srv_serve_async(sv, first, total);
    double t0 = base_now();
    for (sv->step = first; sv->step < total; sv->step++) {
        if (collect(sv) || apply_and_send(sv)) return -1;
        if (run_is_ckpt_step(sv->t, sv->step) && srv_send_checkpoint(sv)) return -1;
    }
    if (norm_check(sv)) return -1;
    if (sv->norm_local_n)
        fprintf(stderr, "pipetrain server: server %d: the norm of %ld step(s) was computed here (the only server), "
                "without waiting for the coordinator, and matched its reply bit for bit\n", sv->j, sv->norm_local_n);
    sv->step = total - 1;
    sv->stats.wall_s = base_now() - t0;
    memcpy(sv->stats.staleness, ps_server_staleness(sv->s), sizeof sv->stats.staleness);
    ps_stats_encode(buf, &sv->stats);
    if (srv_ctl_send(sv, MSG_PS_STATS, sv->step, buf, PS_STATS_BYTES)) return -1;
    return srv_ctl_recv(sv, MSG_DONE, sv->step, NULL, 0, NULL, "waiting for the coordinator to finish");
}

int stage_server_run(const topo *t, const stage_opts *o, char *err)
{
    err[0] = 0;
    if (t->sync_id != TOPO_SYNC_PS)
        return seterr(err, "%s: sync: a parameter server needs \"sync\": \"ps\" (sync is \"%s\")", t->path, t->sync), 2;
    if (o->stage < 0 || o->stage >= t->n_servers)
        return seterr(err, "%s: --server %d: parameter_servers has servers 0..%d", t->path, o->stage, t->n_servers - 1),
               2;
    if (ps_proto_check_host()) return seterr(err, "parameter servers need a little-endian host"), 2;
    srv *sv = xcalloc(1, sizeof *sv);
    sv->t = t;
    sv->o = o;
    sv->j = o->stage;
    sv->P = t->n_stages;
    sv->R = t->n_replicas;
    sv->err = err;
    sv->step = -1;
    sv->timeout_s = o->step_timeout_s > 0 ? o->step_timeout_s : 600;
    int rc = setup(sv);
    if (!rc) rc = setup_net(sv);
    if (!rc && serve(sv)) {
        rc = 1;
        send_fail(sv);
    }
    net_node_free(sv->node); /* ops still held complete (closed) and are released below */
    for (int i = 0; sv->rxop && i < sv->R * sv->np; i++) {
        net_op_free(sv->rxop[i]);
        net_op_free(sv->txop[i]);
    }
    for (int i = 0; sv->ckop && i < sv->np; i++) net_op_free(sv->ckop[i]);
    net_op_free(sv->norm_tx);
    net_op_free(sv->norm_rx);
    srv_async_free(sv);
    ps_server_free(sv->s);
    if (sv->have_a) ps_assignment_free(&sv->a);
    free(sv->stage_has); free(sv->rx); free(sv->rxoff);
    free(sv->tx); free(sv->txoff); free(sv->ck); free(sv->ckoff);
    free(sv->rxop); free(sv->txop); free(sv->ckop);
    free(sv->parts); free(sv->normbuf);
    free(sv);
    return rc;
}
