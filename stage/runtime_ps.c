/* runtime_ps.c — a stage process as a parameter-server worker (issue 12,
 * "sync": "ps", synchronous): replica r of stage k is worker r for the pieces
 * of stage k's units (ps_assign). It connects to every server holding one of
 * them, pushes each unit's pieces as soon as the unit's gradient is final
 * (during the step's last W of its chunk, unit by unit from the chunk's last,
 * as runtime_dp.c hands buckets to the all-reduce; the tied embedding after
 * the head's gradient has joined it), and after the step waits for the new
 * weights of every piece instead of NORM and AdamW. On checkpoint steps
 * replica 0 receives its pieces' weights and AdamW moments from the servers
 * and writes the stage's shard as always. Messages: ps/ps_proto.h; the flow:
 * stage/proto.h ("Parameter servers").
 *
 * Threads: all on the compute thread (sends are asynchronous in net/, so the
 * pushes overlap the rest of the backward pass). */
#include "ps/ps_proto.h"
#include "stage/rt.h"

#include <math.h>

struct rt_ps {
    ps_assignment a;
    int np;                  /* pieces of this stage */
    const int *idx;          /* (np) their assignment indices, (unit, off) order */
    size_t *poff;            /* (np) where piece l starts in the part's params and grads */
    int *unit_first;         /* local unit i holds pieces unit_first[i] .. unit_first[i + 1] - 1 */
    uint8_t *srv_used;       /* (n_servers) 1: a server of this stage's pieces */
    struct net_op **pull_op; /* (n_servers) asynchronous: the PULL sent to server j, until pull sees it out */
    uint8_t *tx, *rx, *ck;   /* pushes, weights, a checkpoint piece */
    size_t *txoff, *rxoff;   /* (np) */
    struct net_op **tx_op, **rx_op; /* (np) */
    int defer_embed;         /* the embedding's pieces wait for the tied gradient */
    int failed;              /* a push could not be posted (r->err says why) */
    int n_pushed;            /* pieces pushed this step (all np by rt_ps_finish_grads) */
    long requested;          /* asynchronous: the step whose weights are asked for (PULL sent), -1 none */
    /* asynchronous, a worker holding every unit (rt_ps_norm): its own norm */
    double *gsq;             /* (topo_n_units) per-unit sums of squares in global unit order; NULL: not such a worker */
    struct net_op *norm_tx, *norm_rx; /* NORM out, its reply in (pending until rt_ps_norm_check) */
    uint8_t norm_reply[8];
    double norm_local;       /* the norm pushed with the step the reply is for */
    long norm_local_n;       /* steps whose norm was computed here and matched the coordinator's */
};

int rt_ps_setup(rt *r)
{
    const topo *t = r->t;
    rt_ps *q = xcalloc(1, sizeof *q);
    r->ps = q;
    if (ps_proto_check_host()) return rt_fail(r, "parameter servers need a little-endian host"), 2;
    char e[ERR_LEN];
    if (ps_assign(t, &q->a, e)) return seterr(r->err, "%s", e), 2;
    q->np = ps_stage_pieces(&q->a, r->K, &q->idx);
    size_t n = q->np ? (size_t)q->np : 1, tb = 0, rb = 0;
    q->poff = xcalloc(n, sizeof(size_t));
    q->txoff = xcalloc(n, sizeof(size_t));
    q->rxoff = xcalloc(n, sizeof(size_t));
    q->tx_op = xcalloc(n, sizeof *q->tx_op);
    q->rx_op = xcalloc(n, sizeof *q->rx_op);
    q->srv_used = xcalloc((size_t)t->n_servers, 1);
    q->pull_op = xcalloc((size_t)t->n_servers, sizeof *q->pull_op);
    q->unit_first = xcalloc((size_t)r->part->n_units + 1, sizeof(int));
    q->defer_embed = t->model.tie_embeddings && r->holds_embed;
    q->requested = -1;
    for (int i = 0, l = 0; i < r->part->n_units; i++) {
        q->unit_first[i] = l;
        while (l < q->np && q->a.pieces[q->idx[l]].unit == r->part->units[i]) l++;
        q->unit_first[i + 1] = l;
    }
    if (q->unit_first[r->part->n_units] != q->np)
        return rt_fail(r, "the assignment's pieces of stage %d do not follow its units (a bug)", r->K), 2;
    for (int l = 0; l < q->np; l++) {
        const ps_piece *pc = &q->a.pieces[q->idx[l]];
        q->poff[l] = ps_piece_part_offset(pc, r->part);
        q->srv_used[pc->server] = 1;
        q->txoff[l] = tb;
        q->rxoff[l] = rb;
        tb += PS_PUSH_HDR + pc->len * sizeof(float);
        rb += PS_PIECE_HDR + pc->len * sizeof(float);
    }
    q->tx = xmalloc(tb + 1);
    q->rx = xmalloc(rb + 1);
    if (t->ps.staleness != 0 && r->part->n_units == topo_n_units(t)) q->gsq = xcalloc((size_t)r->part->n_units, sizeof(double));
    return 0;
}

void rt_ps_free(rt *r)
{
    rt_ps *q = r->ps;
    if (!q) return;
    for (int l = 0; l < q->np; l++) {
        net_op_free(q->tx_op[l]);
        net_op_free(q->rx_op[l]);
    }
    for (int j = 0; j < r->t->n_servers; j++) net_op_free(q->pull_op[j]);
    free(q->pull_op);
    net_op_free(q->norm_tx);
    net_op_free(q->norm_rx);
    if (q->norm_local_n)
        fprintf(stderr, "pipetrain stage: stage %d replica %d: the clipping norm of %ld step(s) was computed here, "
                "without waiting for the coordinator, and matched its reply bit for bit\n", r->K, r->rep,
                q->norm_local_n);
    free(q->gsq);
    ps_assignment_free(&q->a);
    free(q->poff); free(q->unit_first); free(q->srv_used);
    free(q->tx); free(q->rx); free(q->ck); free(q->txoff); free(q->rxoff);
    free(q->tx_op); free(q->rx_op);
    free(q);
    r->ps = NULL;
}

int rt_ps_servers(const rt *r, net_peer_id *ids)
{
    int n = 0;
    for (int j = 0; r->ps && j < r->t->n_servers; j++)
        if (r->ps->srv_used[j]) ids[n++] = net_server_id((uint16_t)j);
    return n;
}

int rt_ps_connect(rt *r)
{
    char nerr[NET_ERR_LEN];
    for (int j = 0; r->ps && j < r->t->n_servers; j++) {
        const topo_addr *s = &r->t->parameter_servers[j];
        if (r->ps->srv_used[j] && net_connect(r->node, net_server_id((uint16_t)j), s->host, s->port, nerr))
            return rt_fail(r, "connecting to server %d (%s:%d): %s", j, s->host, s->port, nerr);
    }
    return 0;
}

int rt_ps_async(const rt *r) { return r->ps && r->t->ps.staleness != 0; }

/* Asynchronous: posts the receives of the weights for step `step` and sends
 * PULL(step) to every server used. */
static int request_weights(rt *r, long step)
{
    rt_ps *q = r->ps;
    char nerr[NET_ERR_LEN];
    for (int l = 0; l < q->np; l++) {
        const ps_piece *pc = &q->a.pieces[q->idx[l]];
        net_key k = { MSG_PS_WEIGHTS, (uint64_t)step, (uint32_t)q->idx[l], 0 };
        if (net_recv_post(r->node, net_server_id((uint16_t)pc->server), k, q->rx + q->rxoff[l],
                          PS_PIECE_HDR + pc->len * sizeof(float), &q->rx_op[l], nerr) != NET_OK)
            return rt_fail(r, "posting a receive for the weights of %s from server %d: %s", pc->name, pc->server, nerr);
    }
    for (int j = 0; j < r->t->n_servers; j++) { /* not waited for here: the pushes follow at once */
        net_key k = { MSG_PS_PULL, (uint64_t)step, 0, 0 };
        if (q->pull_op[j] && rt_await(r, q->pull_op[j], "sending a PULL")) return -1;
        net_op_free(q->pull_op[j]);
        q->pull_op[j] = NULL;
        if (q->srv_used[j] && rt_send(r, net_server_id((uint16_t)j), k, NULL, 0, &q->pull_op[j])) return -1;
    }
    q->requested = step;
    return 0;
}

/* Asynchronous, before step t: the newest weights of every piece (the server
 * answers once the bound allows step t). PULL(t) went out before step t - 1's
 * pushes (rt_ps_push_all), so each piece's answer can leave the server as soon
 * as that piece's push is applied; a worker that starts (or joins) asks now. */
static int pull(rt *r)
{
    rt_ps *q = r->ps;
    char what[240], e[ERR_LEN];
    for (int l = 0; l < q->np; l++) { /* last step's pushes are out: their buffers are free */
        if (q->tx_op[l] && rt_await(r, q->tx_op[l], "pushing a gradient")) return -1;
        net_op_free(q->tx_op[l]);
        q->tx_op[l] = NULL;
    }
    if (q->requested != r->step && request_weights(r, r->step)) return -1;
    double t0 = rt_now();
    for (int l = 0; l < q->np; l++) {
        const ps_piece *pc = &q->a.pieces[q->idx[l]];
        snprintf(what, sizeof what, "waiting for server %d to allow step %ld (ps.staleness %d) and send the weights "
                 "of %.80s", pc->server, r->step + 1, r->t->ps.staleness, pc->name);
        if (rt_await(r, q->rx_op[l], what)) return -1;
        uint64_t len = net_op_len(q->rx_op[l]);
        net_op_free(q->rx_op[l]);
        q->rx_op[l] = NULL;
        long version;
        const uint8_t *b = q->rx + q->rxoff[l];
        if (ps_piece_hdr_check(&q->a, q->idx[l], 1, b, len, &version, e))
            return rt_fail(r, "weights from server %d: %s", pc->server, e);
        memcpy(r->part->params + q->poff[l], b + PS_PIECE_HDR, pc->len * sizeof(float));
    }
    r->stats.exposed_s += rt_now() - t0;
    return rt_ps_norm_check(r);
}

int rt_ps_begin_step(rt *r)
{
    rt_ps *q = r->ps;
    char nerr[NET_ERR_LEN];
    if (!q) return 0;
    q->failed = 0;
    q->n_pushed = 0;
    if (rt_ps_async(r)) return pull(r);
    for (int l = 0; l < q->np; l++) {
        const ps_piece *pc = &q->a.pieces[q->idx[l]];
        net_key k = { MSG_PS_WEIGHTS, (uint64_t)r->step, (uint32_t)q->idx[l], 0 };
        if (net_recv_post(r->node, net_server_id((uint16_t)pc->server), k, q->rx + q->rxoff[l],
                          PS_PIECE_HDR + pc->len * sizeof(float), &q->rx_op[l], nerr) != NET_OK) {
            rt_fail(r, "posting a receive for the weights of %s from server %d: %s", pc->name, pc->server, nerr);
            q->failed = 1;
            return -1;
        }
    }
    return 0;
}

/* Pushes the pieces of local unit i (their gradients are final), with the
 * worker's global norm (asynchronous; 0 when synchronous). */
static void push_unit(rt *r, int i, double norm)
{
    rt_ps *q = r->ps;
    for (int l = q->unit_first[i]; l < q->unit_first[i + 1] && !q->failed; l++) {
        const ps_piece *pc = &q->a.pieces[q->idx[l]];
        uint8_t *b = q->tx + q->txoff[l];
        size_t len = ps_push_encode(b, q->idx[l], r->step, norm, r->part->grads + q->poff[l], pc->len);
        net_key k = { MSG_PS_PUSH, (uint64_t)r->step, (uint32_t)q->idx[l], 0 };
        if (rt_send(r, net_server_id((uint16_t)pc->server), k, b, len, &q->tx_op[l])) q->failed = 1;
        else q->n_pushed++;
    }
}

void rt_ps_unit_ready(rt *r, int i)
{
    /* asynchronous pushes carry the worker's norm: they wait for it (rt_ps_push_all) */
    if (!r->ps || r->ps->failed || rt_ps_async(r) || (i == 0 && r->ps->defer_embed)) return;
    push_unit(r, i, 0.0);
}

int rt_ps_norm(rt *r, uint64_t len, double *norm)
{
    rt_ps *q = r->ps;
    char nerr[NET_ERR_LEN];
    net_key k = { MSG_NORM, (uint64_t)r->step, 0, 0 };
    if (!q->gsq) {
        if (rt_send_sync(r, net_coord_id(), k, r->normbuf, len)) return -1;
        k.type = MSG_NORM_REPLY;
        if (rt_recv_sync(r, net_coord_id(), k, r->normbuf, 8, "waiting for this worker's gradient norm from the coordinator"))
            return -1;
        *norm = get_f64le(r->normbuf);
        return 0;
    }
    if (rt_ps_norm_check(r)) return -1; /* the previous step's, normally checked in pull */
    /* the coordinator's arithmetic (coord_async.c): each unit's sum at its
     * global index, then optim_global_norm over every unit in order */
    for (int i = 0; i < r->part->n_units; i++) q->gsq[r->part->units[i]] = r->sq[i];
    q->norm_local = *norm = optim_global_norm(q->gsq, r->part->n_units);
    if (rt_send(r, net_coord_id(), k, r->normbuf, len, &q->norm_tx)) return -1;
    k.type = MSG_NORM_REPLY;
    if (net_recv_post(r->node, net_coord_id(), k, q->norm_reply, sizeof q->norm_reply, &q->norm_rx, nerr) != NET_OK)
        return rt_fail(r, "posting a receive for the gradient norm from the coordinator: %s", nerr);
    return 0;
}

int rt_ps_norm_check(rt *r)
{
    rt_ps *q = r->ps;
    if (!q || !q->norm_rx) return 0;
    int rc = rt_await(r, q->norm_tx, "sending this worker's NORM to the coordinator") ||
             rt_await(r, q->norm_rx, "waiting for this worker's gradient norm from the coordinator");
    uint64_t len = net_op_len(q->norm_rx);
    net_op_free(q->norm_tx);
    net_op_free(q->norm_rx);
    q->norm_tx = q->norm_rx = NULL;
    if (rc) return -1;
    uint8_t mine[8];
    put_f64le(mine, q->norm_local);
    if (len != 8 || memcmp(mine, q->norm_reply, 8))
        return rt_fail(r, "the coordinator's gradient norm for step %ld (%.17g, %llu bytes) differs from the one this "
                       "worker computed and pushed (%.17g): a bug", r->step, len == 8 ? get_f64le(q->norm_reply) : NAN,
                       (unsigned long long)len, q->norm_local);
    q->norm_local_n++;
    return 0;
}

int rt_ps_push_all(rt *r, double norm)
{
    rt_ps *q = r->ps;
    /* the next step's weights are asked for first: the servers answer each
     * piece as soon as its push below is applied (rx is free: this step's
     * weights were copied out in pull) */
    if (r->step + 1 < r->t->train.steps && request_weights(r, r->step + 1)) return -1;
    for (int i = 0; i < r->part->n_units && !q->failed; i++) push_unit(r, i, norm);
    return q->failed ? -1 : 0;
}

int rt_ps_finish_grads(rt *r)
{
    rt_ps *q = r->ps;
    if (!q) return 0;
    if (rt_ps_async(r)) return 0;
    if (q->defer_embed && !q->failed) push_unit(r, 0, 0.0);
    if (q->failed) return -1;
    /* every unit's gradient must have been handed over by now (a backward
     * path that skips rt_ps_unit_ready would leave the servers waiting for
     * the step timeout): say so at once */
    for (int l = 0; l < q->np && q->n_pushed != q->np; l++)
        if (!q->tx_op[l])
            return rt_fail(r, "the gradient of %s was never pushed (%d of %d pieces were; a bug)",
                           q->a.pieces[q->idx[l]].name, q->n_pushed, q->np);
    return 0;
}

/* A server that refused our push said why (MSG_PS_REFUSE) before failing:
 * looked for briefly when a wait on it failed. */
static int refusal(rt *r, int server, int piece, char *why, size_t cap)
{
    struct net_op *op = NULL;
    char nerr[NET_ERR_LEN];
    net_key k = { MSG_PS_REFUSE, (uint64_t)r->step, (uint32_t)piece, 0 };
    int found = 0;
    if (net_recv_post(r->node, net_server_id((uint16_t)server), k, why, cap - 1, &op, nerr) == NET_OK &&
        net_wait(op, 200, nerr) == NET_OK) {
        uint64_t n = net_op_len(op);
        why[n < cap ? n : cap - 1] = 0;
        found = 1;
    }
    net_op_free(op);
    return found;
}

int rt_ps_await_weights(rt *r)
{
    rt_ps *q = r->ps;
    char what[200], e[ERR_LEN];
    double t0 = rt_now();
    for (int l = 0; l < q->np; l++) {
        const ps_piece *pc = &q->a.pieces[q->idx[l]];
        snprintf(what, sizeof what, "waiting for the new weights of %.80s from server %d", pc->name, pc->server);
        if (rt_await(r, q->rx_op[l], what)) {
            char why[ERR_LEN];
            if (refusal(r, pc->server, q->idx[l], why, sizeof why))
                rt_fail(r, "server %d refused our push of %.80s: %.300s", pc->server, pc->name, why);
            return -1;
        }
        uint64_t len = net_op_len(q->rx_op[l]);
        net_op_free(q->rx_op[l]);
        q->rx_op[l] = NULL;
        long version;
        const uint8_t *b = q->rx + q->rxoff[l];
        if (ps_piece_hdr_check(&q->a, q->idx[l], 1, b, len, &version, e))
            return rt_fail(r, "weights from server %d: %s", pc->server, e);
        if (version != r->step + 1)
            return rt_fail(r, "server %d sent version %ld of %s, expected %ld", pc->server, version, pc->name,
                           r->step + 1);
        memcpy(r->part->params + q->poff[l], b + PS_PIECE_HDR, pc->len * sizeof(float));
    }
    for (int l = 0; l < q->np; l++) { /* every push is through: its buffer is free for the next step */
        if (q->tx_op[l] && rt_await(r, q->tx_op[l], "pushing a gradient")) return -1;
        net_op_free(q->tx_op[l]);
        q->tx_op[l] = NULL;
    }
    r->stats.exposed_s += rt_now() - t0; /* not in wait_s: that is the tensors' */
    return 0;
}

/* Asynchronous: the servers' consistent checkpoint (server_async.c): every
 * piece comes with its state (this replica writes the shard: 1) or empty
 * (another replica does: 0). */
static int checkpoint_async(rt *r)
{
    rt_ps *q = r->ps;
    char what[200], e[ERR_LEN];
    int full = 0, empty = 0;
    long steps = 0;
    for (int l = 0; l < q->np; l++) {
        const ps_piece *pc = &q->a.pieces[q->idx[l]];
        net_key k = { MSG_PS_CKPT, (uint64_t)r->step, (uint32_t)q->idx[l], 0 };
        uint64_t len = 0;
        snprintf(what, sizeof what, "waiting for the checkpoint of %.80s from server %d (every worker must reach "
                 "step %ld)", pc->name, pc->server, r->step + 1);
        if (rt_recv_len(r, net_server_id((uint16_t)pc->server), k, q->ck, PS_PIECE_HDR + 3 * pc->len * sizeof(float),
                        &len, what))
            return -1;
        if (len == 0) {
            empty++;
            continue;
        }
        long version;
        if (ps_piece_hdr_check(&q->a, q->idx[l], 3, q->ck, len, &version, e))
            return rt_fail(r, "checkpoint from server %d: %s", pc->server, e);
        size_t n = pc->len * sizeof(float);
        memcpy(r->part->params + q->poff[l], q->ck + PS_PIECE_HDR, n);
        memcpy(r->opt->m + q->poff[l], q->ck + PS_PIECE_HDR + n, n);
        memcpy(r->opt->v + q->poff[l], q->ck + PS_PIECE_HDR + 2 * n, n);
        if (version > steps) steps = version;
        full++;
    }
    if (full && empty)
        return rt_fail(r, "the servers disagree on which replica writes the checkpoint after step %ld (%d pieces "
                       "came to this one, %d to another): a worker was dropped meanwhile", r->step + 1, full, empty);
    r->opt->step = steps; /* AdamW updates applied: R per step when every worker pushed */
    if (q->np == 0) return r->rep == 0; /* nothing on the servers: replica 0 writes it */
    return full > 0;
}

int rt_ps_checkpoint(rt *r)
{
    rt_ps *q = r->ps;
    if (!q) return r->rep == 0;
    if (!q->ck) {
        size_t mx = 0;
        for (int l = 0; l < q->np; l++)
            if (q->a.pieces[q->idx[l]].len > mx) mx = q->a.pieces[q->idx[l]].len;
        q->ck = xmalloc(PS_PIECE_HDR + 3 * mx * sizeof(float));
    }
    if (rt_ps_async(r)) return checkpoint_async(r);
    if (r->rep > 0) return 0;
    char what[200], e[ERR_LEN];
    for (int l = 0; l < q->np; l++) {
        const ps_piece *pc = &q->a.pieces[q->idx[l]];
        net_key k = { MSG_PS_CKPT, (uint64_t)r->step, (uint32_t)q->idx[l], 0 };
        uint64_t len = 0;
        snprintf(what, sizeof what, "waiting for the checkpoint of %.80s from server %d", pc->name, pc->server);
        if (rt_recv_len(r, net_server_id((uint16_t)pc->server), k, q->ck, PS_PIECE_HDR + 3 * pc->len * sizeof(float),
                        &len, what))
            return -1;
        long version;
        if (ps_piece_hdr_check(&q->a, q->idx[l], 3, q->ck, len, &version, e))
            return rt_fail(r, "checkpoint from server %d: %s", pc->server, e);
        if (version != r->step + 1)
            return rt_fail(r, "server %d sent version %ld of %s for the checkpoint, expected %ld", pc->server, version,
                           pc->name, r->step + 1);
        size_t n = pc->len * sizeof(float);
        memcpy(r->part->params + q->poff[l], q->ck + PS_PIECE_HDR, n);
        memcpy(r->opt->m + q->poff[l], q->ck + PS_PIECE_HDR + n, n);
        memcpy(r->opt->v + q->poff[l], q->ck + PS_PIECE_HDR + 2 * n, n);
    }
    r->opt->step = r->step + 1; /* synchronous: one AdamW update per step */
    return 1;
}
