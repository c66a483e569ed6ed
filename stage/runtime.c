/* runtime.c — one pipeline stage process: connects to its neighbours and the
 * coordinator, walks its action list for every step (F, B, W, BW over its
 * chunks), moves activations and gradients with net/, agrees on the gradient
 * norm with the coordinator, steps AdamW, evaluates and checkpoints.
 * Messages and their order: stage/proto.h. Numbers: the same operations in the
 * same order as the in-process trainer (stage/train.c), so any split gives
 * bitwise-identical weights. Not here: launching processes (cli/), the
 * coordinator (coord/coord.c), the schedule itself (scheduler/). */
#include "stage/stage.h"
#include "model/data.h"
#include "model/optim.h"
#include "model/util.h"
#include "scheduler/sched.h"
#include "run/run.h"
#include "run/run_ckpt.h"
#include "stage/proto.h"
#include "stage/rt.h"
#include "stage/train.h"

#include <cblas.h>
#include <math.h>
#include <time.h>
#include <unistd.h>

double rt_now(void) { return base_now(); }

/* The buffers of micro-batch mb of the action being run: 2bw keeps two steps'
 * (r->qbase = (step & 1) * M), every other kind one (qbase 0). */
#define Q(mb) (r->qbase + (mb))

int rt_fail(rt *r, const char *fmt, ...)
{
    char msg[ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const topo_replica *me = &r->t->stages[r->K].replicas[r->rep];
    char who[20] = "";
    if (r->t->n_replicas > 1) snprintf(who, sizeof who, " replica %u", (unsigned)r->rep & 0xffff);
    snprintf(r->err, ERR_LEN, "stage %d%s (%.64s:%d) at step %ld: %.340s", r->K, who, me->host, me->port,
             r->step + 1, msg);
    return -1;
}

int rt_await(rt *r, struct net_op *op, const char *what)
{
    char nerr[NET_ERR_LEN];
    double t0 = rt_now();
    for (;;) {
        int rc = net_wait(op, 1000, nerr);
        if (rc == NET_OK) break;
        if (rc != NET_TIMEOUT) {
            /* when the coordinator is gone, that is the cause: a neighbour that
             * left first because of it would otherwise take the blame */
            char cerr[NET_ERR_LEN];
            int cs = net_peer_status(r->node, net_coord_id(), cerr);
            if (cs != NET_OK && cs != NET_PENDING) return rt_fail(r, "%s: the coordinator is gone: %s", what, cerr);
            return rt_fail(r, "%s: %s", what, nerr);
        }
        if (rt_now() - t0 > r->step_timeout_s)
            return rt_fail(r, "%s: no answer after %.0f s", what, rt_now() - t0);
    }
    r->stats.wait_s += rt_now() - t0;
    return 0;
}

int rt_send(rt *r, net_peer_id to, net_key k, const void *buf, uint64_t len, struct net_op **op)
{
    return rt_send_tag(r, to, k, buf, len, 0, op);
}

int rt_send_tag(rt *r, net_peer_id to, net_key k, const void *buf, uint64_t len, int tag, struct net_op **op)
{
    char nerr[NET_ERR_LEN];
    int rc;
    while ((rc = net_send_ex(r->node, to, k, buf, len, NET_SEND_TAG(tag), 0, 1000, op, nerr)) == NET_TIMEOUT)
        if (net_peer_status(r->node, to, nerr) < 0) break;
    if (rc != NET_OK) return rt_fail(r, "sending message type %u: %s", k.type, nerr);
    r->stats.bytes_sent += len;
    return 0;
}

int rt_send_sync(rt *r, net_peer_id to, net_key k, const void *buf, uint64_t len)
{
    struct net_op *op = NULL;
    if (rt_send(r, to, k, buf, len, &op)) return -1;
    int rc = rt_await(r, op, "sending a control message");
    net_op_free(op);
    return rc;
}

int rt_recv_len(rt *r, net_peer_id from, net_key k, void *buf, uint64_t cap, uint64_t *len, const char *what)
{
    char nerr[NET_ERR_LEN];
    struct net_op *op = NULL;
    if (net_recv_post(r->node, from, k, buf, cap, &op, nerr) != NET_OK) return rt_fail(r, "%s: %s", what, nerr);
    int rc = rt_await(r, op, what);
    if (len) *len = net_op_len(op);
    net_op_free(op);
    return rc;
}

int rt_recv_sync(rt *r, net_peer_id from, net_key k, void *buf, uint64_t cap, const char *what)
{
    return rt_recv_len(r, from, k, buf, cap, NULL, what);
}

static size_t act_bytes(const rt *r) { return r->Bm * r->T * r->C * sizeof(float); }

/* Posts a tensor send (len bytes in encoding enc) and remembers it until it is
 * seen complete. */
static int send_tensor(rt *r, int to, net_key k, const void *buf, uint64_t len, int enc, struct net_op **op,
                       int kind, int chunk, int mb)
{
    double t0 = rt_now();
    if (rt_send_tag(r, rt_peer(r, to), k, buf, len, enc, op)) return -1;
    r->pend[r->n_pend++] = (rt_pending){ op, t0, (uint8_t)kind, (uint16_t)chunk, (uint32_t)mb };
    return 0;
}

/* Retires completed sends (wait = 1: all of them, waiting). */
static int poll_sends(rt *r, int wait)
{
    char nerr[NET_ERR_LEN];
    for (int i = 0; i < r->n_pend;) {
        rt_pending *p = &r->pend[i];
        if (wait) {
            if (rt_await(r, *p->op, "sending a tensor")) return -1;
        } else {
            int st = net_op_test(*p->op, nerr);
            if (st == NET_PENDING) { i++; continue; }
            if (st != NET_OK) return rt_fail(r, "sending a tensor: %s", nerr);
        }
        rt_event(r, PROTO_EV_SEND, p->kind, p->chunk, (int)p->mb, p->t0, rt_now());
        net_op_free(*p->op);
        *p->op = NULL;
        r->pend[i] = r->pend[--r->n_pend];
    }
    return 0;
}

/* Hands the output of chunk c for micro-batch mb to its consumer: a copy into
 * the consumer chunk's input buffer when that chunk is on this stage (grad = 0:
 * activation to vs+1, 1: gradient to vs-1), else a send to its stage. Either
 * way in the wire encoding (runtime_wire.c): encoded here, on the thread that
 * made it; a local copy is decoded at once, so it gets the same numbers. */
static int hand_over(rt *r, rt_chunk *c, int mb, int grad, net_key k, const float *buf)
{
    int to = grad ? c->prev : c->next;
    uint8_t **wire = grad ? c->wire_gout : c->wire_out;
    const void *out = rt_wire_pack(r, grad, wire ? wire[Q(mb)] : NULL, buf, r->Bm);
    if (to == r->K) {
        rt_chunk *d = rt_local_chunk(r, grad ? c->vs - 1 : c->vs + 1);
        if (!d) return rt_fail(r, "no chunk holds virtual stage %d on this stage", grad ? c->vs - 1 : c->vs + 1);
        float *dst = grad ? d->grad_in[Q(mb)] : d->act_in[Q(mb)];
        if (out == buf) memcpy(dst, buf, act_bytes(r));
        else rt_wire_unpack(r, grad, dst, out, r->Bm);
        return 0;
    }
    return send_tensor(r, to, k, out, rt_wire_len(r, grad, r->Bm), rt_wire_enc(r, grad),
                       grad ? &c->tx_grad[Q(mb)] : &c->tx_act[Q(mb)], grad ? SCHED_B : SCHED_F, (int)(c - r->ch), mb);
}

/* Waits for a tensor receive, as a traced wait; checks its encoding and
 * length (runtime_wire.c) and decodes it into dst when it travelled encoded
 * (in wire; NULL: it is fp32 and arrived in dst). */
static int await_tensor(rt *r, struct net_op **op, const char *what, int kind, int chunk, int mb, float *dst,
                        const uint8_t *wire)
{
    double t0 = rt_now();
    if (rt_await(r, *op, what)) return -1;
    rt_event(r, PROTO_EV_WAIT, kind, chunk, mb, t0, rt_now());
    int grad = kind != SCHED_F, rc = rt_wire_check(r, grad, *op, NULL, what);
    net_op_free(*op);
    *op = NULL;
    if (rc) return -1;
    if (wire) rt_wire_unpack(r, grad, dst, wire, r->Bm);
    return 0;
}

/* ---- slots: a free list per chunk, allocated on first use ---- */

/* The activation bytes held now plus `extra` held for a moment: the peak. */
static void note_peak(rt *r, uint64_t extra)
{
    if (r->act_bytes + extra > r->stats.peak_act_bytes) r->stats.peak_act_bytes = r->act_bytes + extra;
}

model_slot *rt_slot_get(rt *r, rt_chunk *c)
{
    model_slot *s = c->n_free ? c->free[--c->n_free]
                              : model_stash_new(r->part, c->lo, c->hi, r->Bm);
    r->in_flight++;
    r->act_bytes += c->slot_bytes;
    if (r->in_flight > (long)r->stats.peak_in_flight) r->stats.peak_in_flight = (uint64_t)r->in_flight;
    note_peak(r, c->fwd_bytes);
    return s;
}

void rt_slot_put(rt *r, rt_chunk *c, model_slot *s)
{
    c->free[c->n_free++] = s;
    r->in_flight--;
    r->act_bytes -= c->slot_bytes;
}

/* The backward work of micro-batch mb of chunk c, from B to its W. */
static void work_get(rt *r, rt_chunk *c, int mb)
{
    c->work[Q(mb)] = c->n_wfree ? c->wfree[--c->n_wfree] : xmalloc(c->work_bytes);
    model_slots_bind(r->part, c->lo, c->hi, c->slot[Q(mb)], c->work[Q(mb)], r->Bm);
    r->act_bytes += c->work_bytes;
    note_peak(r, 0);
}

static void work_put(rt *r, rt_chunk *c, int mb)
{
    model_slots_bind(r->part, c->lo, c->hi, c->slot[Q(mb)], NULL, r->Bm);
    c->wfree[c->n_wfree++] = c->work[Q(mb)];
    c->work[Q(mb)] = NULL;
    r->act_bytes -= c->work_bytes;
}

/* ---- one step ---- */

/* Posts every tensor receive the step's actions will need. */
static int post_receives(rt *r)
{
    char nerr[NET_ERR_LEN];
    for (int ci = 0; ci < r->n_chunks; ci++) {
        rt_chunk *c = &r->ch[ci];
        for (int mb = 0; mb < r->M; mb++) {
            if (c->vs > 0 && c->prev != r->K) { /* a local one is copied in (hand_over) */
                net_key k = { MSG_ACT, (uint64_t)r->cur_step, (uint32_t)mb, (uint32_t)c->vs };
                void *dst = c->wire_in ? (void *)c->wire_in[Q(mb)] : (void *)c->act_in[Q(mb)];
                if (net_recv_post(r->node, rt_peer(r, c->prev), k, dst, rt_wire_len(r, 0, r->Bm), &c->rx_act[Q(mb)], nerr))
                    return rt_fail(r, "posting a receive: %s", nerr);
            }
            if (c->vs < r->V - 1 && c->next != r->K) {
                net_key k = { MSG_GRAD, (uint64_t)r->cur_step, (uint32_t)mb, (uint32_t)c->vs };
                void *dst = c->wire_gin ? (void *)c->wire_gin[Q(mb)] : (void *)c->grad_in[Q(mb)];
                if (net_recv_post(r->node, rt_peer(r, c->next), k, dst, rt_wire_len(r, 1, r->Bm), &c->rx_grad[Q(mb)], nerr))
                    return rt_fail(r, "posting a receive: %s", nerr);
            }
        }
    }
    return 0;
}

static int do_forward(rt *r, rt_chunk *c, int mb)
{
    char what[96];
    const float *in = NULL;
    if (c->vs > 0) {
        snprintf(what, sizeof what, "waiting for F(%d) activation from stage %d", mb, c->prev);
        if (c->prev != r->K && await_tensor(r, &c->rx_act[Q(mb)], what, SCHED_F, (int)(c - r->ch), mb, c->act_in[Q(mb)],
                                            c->wire_in ? c->wire_in[Q(mb)] : NULL))
            return -1;
        in = c->act_in[Q(mb)];
    }
    double t0 = rt_now();
    model_slot *s = c->slot[Q(mb)] = rt_slot_get(r, c);
    size_t rows = r->Bm * r->T;
    if (c->vs == 0) memcpy(s[0].tokens, r->x + r->x_off + (size_t)mb * rows, rows * sizeof(int));
    if (c->vs == r->V - 1) {
        memcpy(s[c->hi - c->lo - 1].tokens, r->y + r->x_off + (size_t)mb * rows, rows * sizeof(int));
        r->loss_mb[Q(mb)] = model_forward(r->part, c->lo, c->hi, s, in, NULL, r->Bm, r->T);
        r->stats.compute_s += rt_now() - t0;
        rt_event(r, SCHED_F, 0, (int)(c - r->ch), mb, t0, rt_now());
        return 0;
    }
    model_forward(r->part, c->lo, c->hi, s, in, c->act_out[Q(mb)], r->Bm, r->T);
    r->stats.compute_s += rt_now() - t0;
    rt_event(r, SCHED_F, 0, (int)(c - r->ch), mb, t0, rt_now());
    net_key k = { MSG_ACT, (uint64_t)r->cur_step, (uint32_t)mb, (uint32_t)(c->vs + 1) };
    return hand_over(r, c, mb, 0, k, c->act_out[Q(mb)]);
}

static int do_backward_input(rt *r, rt_chunk *c, int mb)
{
    char what[96];
    const float *dout = NULL;
    if (c->vs < r->V - 1) {
        snprintf(what, sizeof what, "waiting for B(%d) gradient from stage %d", mb, c->next);
        if (c->next != r->K && await_tensor(r, &c->rx_grad[Q(mb)], what, SCHED_B, (int)(c - r->ch), mb, c->grad_in[Q(mb)],
                                            c->wire_gin ? c->wire_gin[Q(mb)] : NULL))
            return -1;
        dout = c->grad_in[Q(mb)];
    }
    double t0 = rt_now();
    float *din = c->vs > 0 ? c->grad_out[Q(mb)] : NULL;
    work_get(r, c, mb);
    model_backward_input(r->part, c->lo, c->hi, c->slot[Q(mb)], dout, din, r->Bm, r->T, r->loss_scale);
    r->stats.compute_s += rt_now() - t0;
    rt_event(r, SCHED_B, 0, (int)(c - r->ch), mb, t0, rt_now());
    if (!din) return 0;
    net_key k = { MSG_GRAD, (uint64_t)r->cur_step, (uint32_t)mb, (uint32_t)(c->vs - 1) };
    return hand_over(r, c, mb, 1, k, din);
}

static void do_backward_weight(rt *r, rt_chunk *c, int mb)
{
    double t0 = rt_now();
    if ((r->dp || r->ps) && mb == r->M - 1) {
        /* the step's last W of this chunk: unit by unit (the same arithmetic),
         * each unit's gradient buckets going to the all-reduce (or its pieces
         * to the parameter servers) as it is final */
        for (int i = c->hi - 1; i >= c->lo; i--) {
            model_backward_weight(r->part, i, i + 1, c->slot[Q(mb)] + (i - c->lo), r->Bm, r->T);
            rt_dp_unit_ready(r, i);
            rt_ps_unit_ready(r, i);
        }
    } else {
        model_backward_weight(r->part, c->lo, c->hi, c->slot[Q(mb)], r->Bm, r->T);
    }
    work_put(r, c, mb);
    rt_slot_put(r, c, c->slot[Q(mb)]);
    c->slot[Q(mb)] = NULL;
    r->stats.compute_s += rt_now() - t0;
    rt_event(r, SCHED_W, 0, (int)(c - r->ch), mb, t0, rt_now());
}

/* W(mb) of chunk c in micro-batch order: the one-stage trainer adds each
 * micro-batch's weight gradient straight into the gradients (sgemm beta = 1, and
 * row by row for RMSNorm gains and embedding rows), so any other order of the
 * additions changes the bits. A W ahead of its turn is deferred (its slot stays
 * stashed) and runs right after the W it waits for; the stage's timeline shows
 * it there. */
static void run_due_weights(rt *r, rt_chunk *c)
{
    for (c->next_w++; c->next_w < r->M && c->w_due[Q(c->next_w)]; c->next_w++) {
        c->w_due[Q(c->next_w)] = 0;
        do_backward_weight(r, c, c->next_w);
    }
}

static void weight_in_order(rt *r, rt_chunk *c, int mb)
{
    if (mb != c->next_w) {
        c->w_due[Q(mb)] = 1;
        return;
    }
    do_backward_weight(r, c, mb);
    run_due_weights(r, c);
}

/* A fused BW's progress: B and W seconds so far (a block reports several
 * stretches of each), and the data-parallel (or parameter-server) hand-off of
 * each unit's final gradient (phase 1) on the step's last micro-batch. */
typedef struct { rt *r; double t, tb; int last; } fused_ctx;

static void fused_done(void *ctx, int unit, int phase)
{
    fused_ctx *f = ctx;
    if (phase == 0) f->tb += rt_now() - f->t;
    else if (phase == 1 && f->last) {
        rt_dp_unit_ready(f->r, unit);
        rt_ps_unit_ready(f->r, unit); /* parameter servers too: their pushes start here */
    }
    f->t = rt_now();
}

/* BW(mb) in its weight turn on virtual stage 0 (no input gradient to send):
 * B and W unit by unit (model_backward_fused), so one unit's work exists at a
 * time instead of the chunk's; the same bits. The trace shows its B then its
 * W part, each as long as their units took. */
static int do_backward_fused(rt *r, rt_chunk *c, int mb)
{
    char what[96];
    const float *dout = NULL;
    if (c->vs < r->V - 1) {
        snprintf(what, sizeof what, "waiting for B(%d) gradient from stage %d", mb, c->next);
        if (c->next != r->K && await_tensor(r, &c->rx_grad[Q(mb)], what, SCHED_B, (int)(c - r->ch), mb, c->grad_in[Q(mb)],
                                            c->wire_gin ? c->wire_gin[Q(mb)] : NULL))
            return -1;
        dout = c->grad_in[Q(mb)];
    }
    double t0 = rt_now();
    if (!c->unit_work) c->unit_work = xmalloc(c->unit_work_bytes);
    r->act_bytes += c->unit_work_bytes;
    note_peak(r, 0);
    fused_ctx f = { r, t0, 0, (r->dp || r->ps) && mb == r->M - 1 };
    model_backward_fused(r->part, c->lo, c->hi, c->slot[Q(mb)], c->unit_work, dout, NULL, r->Bm, r->T,
                         r->loss_scale, fused_done, &f);
    r->act_bytes -= c->unit_work_bytes;
    rt_slot_put(r, c, c->slot[Q(mb)]);
    c->slot[Q(mb)] = NULL;
    double t1 = rt_now();
    r->stats.compute_s += t1 - t0;
    rt_event(r, SCHED_B, 0, (int)(c - r->ch), mb, t0, t0 + f.tb);
    rt_event(r, SCHED_W, 0, (int)(c - r->ch), mb, t0 + f.tb, t1);
    run_due_weights(r, c);
    return 0;
}

/* Runs action a of this stage's list. */
static int run_action(rt *r, sched_action a)
{
    rt_chunk *c = &r->ch[a.chunk];
    int mb = (int)a.mb;
    switch (a.op) {
    case SCHED_F: return do_forward(r, c, mb);
    case SCHED_B: return do_backward_input(r, c, mb);
    case SCHED_W: weight_in_order(r, c, mb); return 0;
    default:
        if (c->vs == 0 && mb == c->next_w) return do_backward_fused(r, c, mb);
        if (do_backward_input(r, c, mb)) return -1;
        weight_in_order(r, c, mb);
        return 0;
    }
}

static int run_actions(rt *r)
{
    size_t n = r->sched->len[r->K];
    const sched_action *a = r->sched->act[r->K];
    for (int ci = 0; ci < r->n_chunks; ci++) r->ch[ci].next_w = 0;
    for (size_t i = 0; i < n; i++)
        if (run_action(r, a[i]) || poll_sends(r, 0)) return -1;
    /* every send must be out before the buffers are reused next step */
    return poll_sends(r, 1);
}

/* LOSS(s) from the head stage: this replica's share of the global batch's mean. */
static int send_loss(rt *r)
{
    if (!r->holds_head) return 0;
    uint8_t buf[8];
    double loss = 0;
    for (int mb = 0; mb < r->M; mb++) loss += r->loss_mb[Q(mb)];
    put_f64le(buf, loss / (double)(r->B * r->T));
    net_key k = { MSG_LOSS, (uint64_t)r->step, 0, 0 };
    return rt_send_sync(r, net_coord_id(), k, buf, 8);
}

/* A parameter-server worker's step after its actions (sync "ps"): the
 * remaining pushes, then the new weights instead of NORM and AdamW. */
static int ps_step_end(rt *r, double t0)
{
    /* one process holding the tied embedding and head (one stage) */
    if (r->part->tied_grad && r->holds_embed) model_part_reduce_tied(r->part);
    if (rt_ps_async(r)) {
        /* this worker's own clipping norm, R = 1 arithmetic on its gradients:
         * NORM to the coordinator, which combines this replica's stages only
         * (a one-stage worker computes it itself: rt_ps_norm) */
        int nu = r->part->n_units;
        uint8_t *buf = r->normbuf;
        double norm;
        optim_unit_sqnorms(r->part, r->sq);
        put_u32le(buf, (uint32_t)nu);
        for (int i = 0; i < nu; i++) put_f64le(buf + 4 + 8 * (size_t)i, r->sq[i]);
        uint64_t len = 4 + 8 * (uint64_t)nu;
        if (r->live) len += rt_live_trailer(r, buf + len); /* run --http: this worker's step, as rt_step */
        if (rt_ps_norm(r, len, &norm) || rt_ps_push_all(r, norm)) return -1;
        r->stats.optim_s += rt_now() - t0;
        /* the last step's reply is checked here (the others' at the next pull) */
        if (send_loss(r) || (r->step + 1 == r->t->train.steps && rt_ps_norm_check(r))) return -1;
        return 0;
    }
    if (rt_ps_finish_grads(r) || rt_ps_await_weights(r) || rt_tied_exchange_weights(r)) return -1;
    r->stats.optim_s += rt_now() - t0;
    return send_loss(r);
}

static int step_2bw(rt *r);

int rt_step(rt *r)
{
    if (r->twobw) return step_2bw(r);
    r->cur_step = r->step;
    if (r->has_data) data_sample_batch(&r->sampler, &r->data, r->x, r->y, r->B, r->T);
    model_part_zero_grad(r->part);
    rt_dp_begin_step(r);
    if (rt_ps_begin_step(r)) return -1;
    /* asynchronous: the embedding just pulled goes to the head stage (tied) */
    if (rt_ps_async(r) && rt_tied_exchange_weights(r)) return -1;
    rt_straggle_begin(r); /* the bench's pause (PIPETRAIN_STRAGGLE), after the pull */
    if (post_receives(r) || run_actions(r)) return -1;
    rt_straggle_end(r);
    double t0 = rt_now();
    if (rt_tied_exchange_grad(r)) return -1;
    if (r->ps) return ps_step_end(r, t0);
    /* one process holding the tied embedding and head (one stage x R replicas, or
     * stage 0 of a V, which holds virtual stages 0 and 2P-1) */
    if (r->part->tied_grad && r->holds_embed) model_part_reduce_tied(r->part);
    if (rt_dp_finish_grads(r)) return -1;
    double norm;
    /* NORM: 4 + 8 per unit (per bucket with replicas), sized from the part at set-up (rt.h) */
    uint8_t *buf = r->normbuf;
    uint64_t len;
    if (r->dp) {
        len = rt_dp_norm(r, buf);
    } else {
        int nu = r->part->n_units;
        optim_unit_sqnorms(r->part, r->sq);
        put_u32le(buf, (uint32_t)nu);
        for (int i = 0; i < nu; i++) put_f64le(buf + 4 + 8 * (size_t)i, r->sq[i]);
        len = 4 + 8 * (uint64_t)nu;
    }
    if (r->live) len += rt_live_trailer(r, buf + len); /* run --http: the stage's step, no extra message */
    net_key k = { MSG_NORM, (uint64_t)r->step, 0, 0 };
    if (rt_send_sync(r, net_coord_id(), k, buf, len)) return -1;
    k.type = MSG_NORM_REPLY;
    if (rt_recv_sync(r, net_coord_id(), k, buf, 8, "waiting for the global gradient norm from the coordinator")) return -1;
    norm = get_f64le(buf);
    if (rt_dp_optim(r, norm) || rt_tied_exchange_weights(r)) return -1;
    r->stats.optim_s += rt_now() - t0;
    return send_loss(r);
}

/* ---- PipeDream-2BW: one step of the pipeline that never flushes ---- */

/* The action's step st (r->step, or r->step + 1 for the next step's forwards):
 * its buffers, its batch, its weight version W(st-1); the gradient is the step's. */
static void bind_2bw(rt *r, long st)
{
    r->cur_step = st;
    r->qbase = (int)(st & 1) * r->M;
    r->x = r->xb[st & 1];
    r->y = r->yb[st & 1];
    r->part->params = r->wv[(st - 1) & 1];
    r->part->grads = r->gv[r->step & 1];
}

/* The receives of this step's list: each F's activation (of its own step) and
 * each backward's gradient. */
static int post_receives_2bw(rt *r, size_t n)
{
    char nerr[NET_ERR_LEN];
    for (size_t i = 0; i < n; i++) {
        sched_action a = r->steplist[i];
        rt_chunk *c = &r->ch[a.chunk];
        int mb = (int)a.mb;
        bind_2bw(r, r->step + a.next);
        int act = a.op == SCHED_F && c->vs > 0 && c->prev != r->K;
        int grad = (a.op == SCHED_B || a.op == SCHED_BW) && c->vs < r->V - 1 && c->next != r->K;
        if (!act && !grad) continue;
        net_key k = { act ? MSG_ACT : MSG_GRAD, (uint64_t)r->cur_step, (uint32_t)mb, (uint32_t)c->vs };
        uint8_t **wire = act ? c->wire_in : c->wire_gin; /* as post_receives: the wire encoding's buffer */
        void *dst = wire ? (void *)wire[Q(mb)] : act ? (void *)c->act_in[Q(mb)] : (void *)c->grad_in[Q(mb)];
        if (net_recv_post(r->node, rt_peer(r, act ? c->prev : c->next), k, dst, rt_wire_len(r, !act, r->Bm),
                          act ? &c->rx_act[Q(mb)] : &c->rx_grad[Q(mb)], nerr))
            return rt_fail(r, "posting a receive: %s", nerr);
    }
    return 0;
}

static int step_2bw(rt *r)
{
    long t = r->step, last = r->t->train.steps - 1;
    /* a step of the synchronous warm-up (stage/train.h) is a one-step run, plain
     * 1F1B; the first step after it fills the empty pipeline */
    int sync = stage_2bw_sync_step(r->t, t), after_sync = t > 0 && stage_2bw_sync_step(r->t, t - 1);
    size_t n = sched_2bw_step(r->sched, r->K, t == r->first_step || after_sync, t == last || sync, r->steplist);
    rt_2bw_batch(r, t);
    for (size_t i = 0; i < n; i++)
        if (r->steplist[i].next) rt_2bw_batch(r, t + 1);
    bind_2bw(r, t);
    model_part_zero_grad(r->part); /* gv[t & 1]: step t-2's AdamW has run */
    if (post_receives_2bw(r, n)) return -1;
    for (int ci = 0; ci < r->n_chunks; ci++) r->ch[ci].next_w = 0;
    rt_straggle_begin(r); /* the bench's pause (PIPETRAIN_STRAGGLE), as rt_step's */
    for (size_t i = 0; i < n; i++) {
        sched_action a = r->steplist[i];
        long st = t + a.next;
        /* the first forward of step st needs W(st-1): AdamW of step st-2 */
        if (a.op == SCHED_F && r->opt_pending >= 0 && r->opt_pending <= st - 2 && rt_2bw_optim(r)) return -1;
        bind_2bw(r, st);
        if (run_action(r, a) || poll_sends(r, 0)) return -1;
    }
    if (poll_sends(r, 1)) return -1;
    rt_straggle_end(r);
    bind_2bw(r, t);
    if (rt_2bw_optim(r)) return -1; /* step t-1's, when no forward of step t+1 ran here */
    double t0 = rt_now();
    int nu = r->part->n_units;
    uint8_t *buf = r->normbuf;
    optim_unit_sqnorms(r->part, r->sq);
    put_u32le(buf, (uint32_t)nu);
    for (int i = 0; i < nu; i++) put_f64le(buf + 4 + 8 * (size_t)i, r->sq[i]);
    uint64_t len = 4 + 8 * (uint64_t)nu;
    if (r->live) len += rt_live_trailer(r, buf + len); /* run --http, as rt_step */
    net_key k = { MSG_NORM, (uint64_t)t, 0, 0 };
    if (rt_send_sync(r, net_coord_id(), k, buf, len)) return -1;
    r->opt_pending = t;
    r->stats.optim_s += rt_now() - t0;
    if (send_loss(r)) return -1;
    /* evaluation, checkpoints and the next step of the warm-up see W(t+1): AdamW of step t now (a flush) */
    if ((sync || run_is_eval_step(r->t, t) || run_is_ckpt_step(r->t, t) || t == last) && rt_2bw_optim(r)) return -1;
    r->part->params = r->wv[(t + 1) & 1];
    return 0;
}
