/* net_coll.c — tasks on the network thread and the sends and receives they
 * post (net_coll.h). A task is scheduled on a list under node->lk; the
 * network thread runs the list after its command queue (wake_cb), never
 * inside the callback that scheduled it (a task writes to sockets and may
 * read). When a read callback completes a receive whose on_done is a task,
 * the list runs as soon as that callback returns (an event made active: the
 * same pass of the loop, after the other sockets that pass found ready, so
 * no extra epoll_wait per chunk); a task scheduled while the list runs (it
 * posted itself again after its budget, or one of its own posts completed a
 * receive) waits for a timer of 0 ms, i.e. the loop's next pass, so every
 * pass polls the sockets and fires the due timers (heartbeats, dead-peer
 * checks) however busy the tasks keep it. */
#include <event2/event.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "net/net_coll.h"
#include "net/net_internal.h"

void tasks_push_locked(struct net_node *n, struct net_task *t)
{
    if (t->queued) return;
    t->queued = 1;
    t->next = NULL;
    if (n->tasks_tail) n->tasks_tail->next = t; else n->tasks = t;
    n->tasks_tail = t;
}

static void task_cb(int fd, short what, void *arg)
{
    (void)fd; (void)what;
    tasks_run(arg);
}

void tasks_kick(struct net_node *n)
{
    if (!n->thr_started || !pthread_equal(pthread_self(), n->thr)) {
        wake_loop(n); /* wake_cb runs the tasks */
        return;
    }
    if (!n->tasks_running) {
        /* from a read callback (or a command): libevent runs an event made
         * active during a pass in that same pass, after this callback */
        if (!n->task_now_ev) n->task_now_ev = event_new(n->base, -1, 0, task_cb, n);
        if (n->task_now_ev) {
            event_active(n->task_now_ev, EV_TIMEOUT, 1);
            return;
        }
    }
    /* from a task: a timer of 0, not event_active, or a task that keeps
     * itself busy would keep the loop from polling the sockets and firing
     * its timers (heartbeats) */
    static const struct timeval now = { 0, 0 };
    if (!n->task_ev) n->task_ev = evtimer_new(n->base, task_cb, n);
    if (!n->task_ev || evtimer_add(n->task_ev, &now) != 0) wake_loop(n);
}

/* Runs the tasks scheduled when it was called, each once; those scheduled
 * meanwhile (a task's receive completed, or it posted itself again) wait for
 * the loop's next pass, after the sockets have been polled. */
void tasks_run(struct net_node *n)
{
    n->tasks_running = 1; /* tasks_kick: the timer, not this pass */
    pthread_mutex_lock(&n->lk);
    int todo = 0;
    for (struct net_task *t = n->tasks; t; t = t->next) todo++;
    for (; todo > 0 && n->tasks; todo--) {
        struct net_task *t = n->tasks;
        n->tasks = t->next;
        if (!n->tasks) n->tasks_tail = NULL;
        t->queued = 0;
        n->task_running = t;
        pthread_mutex_unlock(&n->lk);
        t->fn(t->arg);
        pthread_mutex_lock(&n->lk);
        n->task_running = NULL;
        if (n->other_waiters) pthread_cond_broadcast(&n->cv); /* net_task_forget */
    }
    int more = n->tasks != NULL;
    pthread_mutex_unlock(&n->lk);
    if (more) tasks_kick(n); /* the timer: tasks_running is still set */
    n->tasks_running = 0;
}

int net_task_post(struct net_node *n, struct net_task *t, char err[NET_ERR_LEN])
{
    if (!n || !t || !t->fn) return net_seterr(err, "net_task_post: bad arguments");
    pthread_mutex_lock(&n->lk);
    if (n->closing || n->exited) {
        pthread_mutex_unlock(&n->lk);
        net_seterr(err, "node is closing");
        return NET_CLOSED;
    }
    tasks_push_locked(n, t);
    pthread_mutex_unlock(&n->lk);
    tasks_kick(n);
    return NET_OK;
}

void net_task_forget(struct net_node *n, struct net_task *t)
{
    if (!n || !t) return;
    pthread_mutex_lock(&n->lk);
    if (t->queued) {
        struct net_task **pp = &n->tasks, *prev = NULL;
        while (*pp && *pp != t) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        if (*pp) {
            *pp = t->next;
            if (n->tasks_tail == t) n->tasks_tail = prev;
        }
        t->queued = 0;
    }
    n->other_waiters++;
    while (n->task_running == t && !n->exited) cv_wait(n, -1);
    n->other_waiters--;
    pthread_mutex_unlock(&n->lk);
}

/* Registers op (a user op) with the node; NET_OK or a failure with err. */
static int nt_register(struct net_node *n, struct net_op *op, char err[NET_ERR_LEN])
{
    int st = NET_OK;
    uint64_t need = op->kind == OP_SEND ? op->len + NET_HDR_LEN : 0;
    pthread_mutex_lock(&n->lk);
    struct peer *p = peer_locked(n, op->peer, 1);
    if (!p) {
        st = net_seterr(err, "out of memory posting an operation");
    } else if (n->closing) {
        st = NET_CLOSED;
        net_seterr(err, "node is closing");
    } else {
        p->st.queued += need;
        if (p->st.queued > p->st.queued_max) p->st.queued_max = p->st.queued;
        op->pr = p;
        op->node = n;
        live_add_locked(n, op);
    }
    pthread_mutex_unlock(&n->lk);
    if (st != NET_OK) free(op);
    return st;
}

int net_nt_send(struct net_node *n, net_peer_id peer, net_key key, const void *buf, uint64_t len,
                int flags, uint32_t crc, struct net_op **opp, char err[NET_ERR_LEN])
{
    struct net_op *op;
    if (opp) *opp = NULL;
    if (!opp || (flags & ~NET_SEND_CRC)) return net_seterr(err, "net_nt_send: bad arguments");
    int st = op_send_new(n, peer, key, buf, len, flags, crc, "net_nt_send", &op, err);
    if (st != NET_OK) return st;
    st = nt_register(n, op, err);
    if (st != NET_OK) return st;
    *opp = op;
    loop_send(n, op); /* may complete it (dead peer, shutting down) */
    return NET_OK;
}

int net_nt_recv(struct net_node *n, net_peer_id peer, net_key key, void *dst, uint64_t cap,
                struct net_task *on_done, struct net_op **opp, char err[NET_ERR_LEN])
{
    struct net_op *op;
    if (opp) *opp = NULL;
    if (!opp) return net_seterr(err, "net_nt_recv: bad arguments");
    int st = op_recv_new(n, peer, key, dst, cap, "net_nt_recv", &op, err);
    if (st != NET_OK) return st;
    op->on_done = on_done;
    st = nt_register(n, op, err);
    if (st != NET_OK) return st;
    *opp = op;
    loop_recv(n, op); /* may complete it: an unclaimed message, a dead peer */
    return NET_OK;
}

/* --- sliced receives (net_nt_recv_sliced) ------------------------------------ */

uint8_t *op_dst(const struct net_op *op, uint64_t *room)
{
    if (!op->slice) {
        if (room) *room = UINT64_MAX;
        return op->rbuf + op->off;
    }
    uint64_t in = op->off % op->slice;
    if (room) *room = op->slice - in;
    return op->rbuf + in;
}

void op_advance(struct net_op *op, uint64_t n)
{
    op->off += n;
    if (!op->slice || !n) return;
    uint64_t in = op->off % op->slice;
    if (in == 0) op->slice_fn(op->slice_arg, op->rbuf, op->slice, op->off - op->slice);
    else if (op->off == op->len) op->slice_fn(op->slice_arg, op->rbuf, in, op->off - in);
}

void op_put_whole(struct net_op *op, const uint8_t *src, uint64_t len)
{
    if (!op->slice) {
        memcpy(op->rbuf, src, len);
        return;
    }
    for (uint64_t at = 0; at < len; at += op->slice)
        op->slice_fn(op->slice_arg, src + at, len - at < op->slice ? len - at : op->slice, at);
}

int net_nt_recv_sliced(struct net_node *n, net_peer_id peer, net_key key, uint64_t cap, void *scratch,
                       uint64_t slice, net_slice_fn fn, void *arg, struct net_task *on_done,
                       struct net_op **opp, char err[NET_ERR_LEN])
{
    struct net_op *op;
    if (opp) *opp = NULL;
    if (!opp || !scratch || !slice || !fn) return net_seterr(err, "net_nt_recv_sliced: bad arguments");
    int st = op_recv_new(n, peer, key, scratch, cap, "net_nt_recv_sliced", &op, err);
    if (st != NET_OK) return st;
    op->on_done = on_done;
    op->slice = slice;
    op->slice_fn = fn;
    op->slice_arg = arg;
    st = nt_register(n, op, err);
    if (st != NET_OK) return st;
    *opp = op;
    loop_recv(n, op); /* may complete it: an unclaimed message (handed to fn now), a dead peer */
    return NET_OK;
}
