/* net_ops.c — operations on the compute side: posting sends (written to the
 * socket on the caller's thread when nothing is queued ahead, see
 * net_internal.h) and receives (handed over without waking the network thread
 * when it has nothing to do for them), completing them, waiting on them and
 * freeing them. Send checksums are computed here, on the posting thread; the
 * network thread checksums received bytes as they land, and net_wait compares
 * (on an encrypting node neither: the AEAD tag authenticates the payload). */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "net/net_internal.h"

/* Receives are posted without waking the network thread when it has nothing
 * to do for them yet: no command queued ahead, no receive command taken from
 * the queue and not yet carried out (n->recv_cmds), no unclaimed message that
 * could match, reading not paused, peer not dead (post_op). The network thread
 * moves them into recvq before it looks there, under the same lock hold in
 * which it decides to buffer a message as unclaimed or to pause reading, so a
 * receive posted after that decision takes the command path. */
void posted_take_locked(struct peer *pr)
{
    while (pr->posted.head) {
        struct net_op *op = pr->posted.head;
        list_remove(&pr->posted, op);
        op->posted = 0;
        op->where = W_RECVQ;
        list_push(&pr->recvq, op);
    }
}

void posted_take(struct net_node *n, struct peer *pr)
{
    pthread_mutex_lock(&n->lk);
    posted_take_locked(pr);
    pthread_mutex_unlock(&n->lk);
}

static void futex_wake_all(atomic_int *word)
{
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* The locked part of completing a user op. Returns a bit set: 1 when threads
 * on n->cv must be woken, 2 when a thread sleeps on op->done (wake it with
 * futex_wake_all(&op->done) after unlocking; the op may be freed by then, and a
 * wake-up on a freed word is harmless: every futex sleeper re-checks). */
static int op_finish_locked(struct net_node *n, struct net_op *op, int status, const char *reason)
{
    op->status = status;
    if (status != NET_OK) snprintf(op->err, NET_ERR_LEN, "%s", reason ? reason : "failed");
    if (op->kind == OP_SEND && op->pr) {
        if (op->routed) atomic_fetch_sub(&op->pr->tx_ahead, 1);
        op->pr->st.queued -= op->len + NET_HDR_LEN;
        if (status == NET_OK) {
            op->pr->st.frames_tx++;
            op->pr->st.bytes_tx += op->len;
            op->pr->st.direct_tx += op->direct == 1;
        }
        op->pr->st.direct_partial += op->direct == 2; /* also when cancelled or failed */
    }
    int sleeper = atomic_exchange_explicit(&op->done, OP_DONE, memory_order_acq_rel) == OP_SLEEPER;
    if (op->on_done) tasks_push_locked(n, op->on_done); /* net_nt_recv: no thread to wake */
    /* Only wake sleepers who care: a completed send must not wake a thread
     * that waits for a receive (a spurious wake-up costs a context switch). */
    return (n->other_waiters ? 1 : 0) | (sleeper ? 2 : 0) | (op->on_done ? 4 : 0);
}

static void op_wake(struct net_node *n, struct net_op *op, int wake)
{
    if (wake & 1) pthread_cond_broadcast(&n->cv); /* after unlocking: no waiting for the lock */
    if (wake & 2) futex_wake_all(&op->done);
    if (wake & 4) tasks_kick(n);
}

/* Completes op with status. Transport-owned frames are freed; user ops are
 * published under the lock and their waiter woken. */
void op_complete(struct net_node *n, struct net_op *op, int status, const char *reason)
{
    op->where = W_NONE;
    if (op->kind == OP_CTRL || op->kind == OP_UNCLAIMED) {
        op_free_internal(op);
        return;
    }
    pthread_mutex_lock(&n->lk);
    int wake = op_finish_locked(n, op, status, reason);
    pthread_mutex_unlock(&n->lk);
    op_wake(n, op, wake);
}

/* A user frame of len bytes from pr is in: counts it and, when rop is a
 * receive, completes it, in one lock hold (the waiter it wakes then finds the
 * lock free). */
void frame_received(struct net_node *n, struct peer *pr, uint64_t len, uint64_t read_calls,
                    struct net_op *rop)
{
    int wake = 0;
    if (rop) rop->where = W_NONE;
    pthread_mutex_lock(&n->lk);
    pr->st.frames_rx++;
    pr->st.bytes_rx += len;
    pr->st.read_calls = read_calls;
    if (rop) wake = op_finish_locked(n, rop, NET_OK, NULL);
    pthread_mutex_unlock(&n->lk);
    op_wake(n, rop, wake);
}

/* Starts send op to peer p: writes it to the socket on this thread when
 * nothing is ahead of it and it is small (cfg.direct_max), else (or for what
 * the socket did not take) hands it to the network thread with command c.
 * Consumes c. Returns 1 when the loop must be woken. */
static int send_start(struct net_node *n, struct peer *p, struct net_op *op, struct cmd *c)
{
    int w = 0;
    uint64_t total = NET_HDR_LEN + op->len;
    pthread_mutex_lock(&p->txlk);
    struct conn *tc = p->tx_conn;
    if (tc && !op->queued_only && atomic_load(&p->tx_ahead) == 0 && op->len <= n->cfg.direct_max) {
        struct iovec iov[2];
        int cnt = frame_iov(op, iov);
        ssize_t r = net_sendv(tc->fd, iov, cnt); /* errors: the network thread will see them too */
        if (r > 0) op->off = (uint64_t)r;
        op->direct = op->off == total ? 1 : op->off > 0 ? 2 : 0;
        if (op->off == total) {
            pthread_mutex_unlock(&p->txlk);
            free(c);
            op_complete(n, op, NET_OK, NULL);
            return 0;
        }
        if (op->off > 0) {
            /* the rest must follow before any other frame: park it where the
             * network thread claims it before it queues anything */
            op->where = W_PARTIAL;
            p->tx_partial = op;
            p->tx_pconn = tc;
            p->tx_conn = NULL;
        }
    }
    op->routed = 1;
    atomic_fetch_add(&p->tx_ahead, 1);
    c->kind = op->where == W_PARTIAL ? CMD_FLUSH : CMD_SEND;
    c->op = c->kind == CMD_SEND ? op : NULL;
    c->pr = p;
    pthread_mutex_lock(&n->lk);
    w = push_cmd_locked(n, c);
    pthread_mutex_unlock(&n->lk);
    pthread_mutex_unlock(&p->txlk);
    return w;
}

/* Common tail of net_send / net_recv_post: waits for room (sends), registers
 * the op and queues the command (or writes the frame at once, see
 * send_start). Frees op on failure. */
static int post_op(struct net_node *n, struct net_op *op, int timeout_ms, char err[NET_ERR_LEN])
{
    int64_t dl = deadline_of(timeout_ms);
    uint64_t need = op->kind == OP_SEND ? op->len + NET_HDR_LEN : 0;
    struct cmd *c = calloc(1, sizeof *c);
    int st = NET_OK, w = 0;
    pthread_mutex_lock(&n->lk);
    struct peer *p = peer_locked(n, op->peer, 1);
    for (;;) {
        if (!c || !p) { st = net_seterr(err, "out of memory posting an operation"); break; }
        if (n->closing) { st = NET_CLOSED; net_seterr(err, "node is closing"); break; }
        if (p->state == P_DEAD && op->kind == OP_SEND) {
            st = p->status;
            net_seterr(err, "%s", p->reason);
            break;
        }
        if (!need || p->st.queued == 0 || p->st.queued + need <= n->cfg.max_queued) break;
        n->other_waiters++;
        int rc = cv_wait(n, dl);
        n->other_waiters--;
        if (rc == ETIMEDOUT) {
            st = NET_TIMEOUT;
            net_seterr(err, "%" PRIu64 " bytes already queued for %s (limit %" PRIu64
                       "): it is not keeping up", p->st.queued, p->name, n->cfg.max_queued);
            break;
        }
    }
    if (st == NET_OK) {
        p->st.queued += need;
        if (p->st.queued > p->st.queued_max) p->st.queued_max = p->st.queued;
        op->pr = p;
        op->node = n;
        live_add_locked(n, op);
        /* not while a receive command is queued or being carried out: wake_cb
         * takes the whole queue at once, so an empty qhead does not mean that
         * the receives posted before this one are in recvq yet (posted_take
         * would put this one ahead of them) */
        if (op->kind == OP_RECV && !n->qhead && n->recv_cmds == 0 && p->state != P_DEAD &&
            p->nunclaimed == 0 && !p->st.paused) {
            op->posted = 1; /* the network thread finds it when the header comes */
            list_push(&p->posted, op);
            free(c);
        } else if (op->kind == OP_RECV) {
            c->kind = CMD_RECV;
            c->op = op;
            c->pr = p;
            n->recv_cmds++;
            w = push_cmd_locked(n, c);
        }
        /* NET_SEND_QUEUED: with no receive left in the queue, a direct write
         * overtakes nothing */
        if (op->kind == OP_SEND && op->queued_only && n->recv_cmds == 0) op->queued_only = 0;
    }
    pthread_mutex_unlock(&n->lk);
    if (st == NET_OK && op->kind == OP_SEND) w = send_start(n, p, op, c);
    if (w) wake_loop(n);
    if (st != NET_OK) {
        free(c);
        free(op);
    }
    return st;
}

int net_send(struct net_node *n, net_peer_id peer, net_key key, const void *buf, uint64_t len,
             int timeout_ms, struct net_op **opp, char err[NET_ERR_LEN])
{
    return net_send_ex(n, peer, key, buf, len, 0, 0, timeout_ms, opp, err);
}

int op_send_new(struct net_node *n, net_peer_id peer, net_key key, const void *buf, uint64_t len, int flags,
                uint32_t crc, const char *who, struct net_op **out, char err[NET_ERR_LEN])
{
    *out = NULL;
    if (!n || (len && !buf)) return net_seterr(err, "%s: bad arguments", who);
    if (key.type < NET_TYPE_USER)
        return net_seterr(err, "%s: message type %u is reserved (< %d)", who, key.type, NET_TYPE_USER);
    if (len > n->cfg.max_payload)
        return net_seterr(err, "%s: %" PRIu64 " bytes exceeds max_payload %" PRIu64, who, len,
                          n->cfg.max_payload);
    struct net_op *op = calloc(1, sizeof *op);
    if (!op) return net_seterr(err, "%s: out of memory", who);
    op->kind = OP_SEND;
    op->peer = peer;
    op->key = key;
    op->sbuf = buf;
    op->len = len;
    /* an encrypting node seals every user frame: the AEAD tag authenticates
     * the payload, so its CRC32C field is 0 and the payload is not read here
     * (net_wire.h, "Sealed frames") */
    op->crc = n->cfg.encrypt ? 0 : flags & NET_SEND_CRC ? crc : net_crc32c(0, buf, len);
    op->queued_only = (flags & NET_SEND_QUEUED) != 0;
    net_hdr h = { .version = NET_VERSION, .type = key.type, .sender = n->cfg.self,
                  .step = key.step, .mb = key.mb, .chunk = key.chunk, .len = len, .crc = op->crc,
                  .flags = (uint16_t)(flags & NET_SEND_TAG(0xf)) };
    net_hdr_encode(op->hdr, &h);
    *out = op;
    return NET_OK;
}

int net_send_ex(struct net_node *n, net_peer_id peer, net_key key, const void *buf, uint64_t len,
                int flags, uint32_t crc, int timeout_ms, struct net_op **opp, char err[NET_ERR_LEN])
{
    struct net_op *op;
    if (opp) *opp = NULL;
    if (!opp) return net_seterr(err, "net_send: bad arguments");
    int st = op_send_new(n, peer, key, buf, len, flags, crc, "net_send", &op, err);
    if (st != NET_OK) return st;
    st = post_op(n, op, timeout_ms, err);
    if (st == NET_OK) *opp = op;
    return st;
}

int op_recv_new(struct net_node *n, net_peer_id peer, net_key key, void *dst, uint64_t cap, const char *who,
                struct net_op **out, char err[NET_ERR_LEN])
{
    *out = NULL;
    if (!n || (cap && !dst)) return net_seterr(err, "%s: bad arguments", who);
    if (key.type < NET_TYPE_USER) return net_seterr(err, "%s: message type %u is reserved", who, key.type);
    struct net_op *op = calloc(1, sizeof *op);
    if (!op) return net_seterr(err, "%s: out of memory", who);
    op->kind = OP_RECV;
    op->peer = peer;
    op->key = key;
    op->rbuf = dst;
    op->cap = dst ? cap : n->cfg.max_payload;
    op->own = dst == NULL;
    *out = op;
    return NET_OK;
}

int net_recv_post(struct net_node *n, net_peer_id peer, net_key key, void *dst, uint64_t cap,
                  struct net_op **opp, char err[NET_ERR_LEN])
{
    struct net_op *op;
    if (opp) *opp = NULL;
    if (!opp) return net_seterr(err, "net_recv_post: bad arguments");
    int st = op_recv_new(n, peer, key, dst, cap, "net_recv_post", &op, err);
    if (st != NET_OK) return st;
    st = post_op(n, op, 0, err);
    if (st == NET_OK) *opp = op;
    return st;
}

/* Checks a received payload against the CRC its frame announced (the network
 * thread computed the payload's CRC as the bytes arrived). */
static void verify_recv(struct net_op *op)
{
    op->verify = 0;
    if (op->status != NET_OK) return;
    uint32_t got = op->crc_run;
    if (got == op->crc) return;
    char who[48];
    op->status = NET_ERR;
    snprintf(op->err, NET_ERR_LEN, "checksum mismatch on message (type %u, step %" PRIu64
             ", micro-batch %" PRIu32 ", chunk %" PRIu32 ") from %s: CRC32C 0x%08" PRIx32
             " in the frame, 0x%08" PRIx32 " computed over %" PRIu64 " bytes",
             op->key.type, op->key.step, op->key.mb, op->key.chunk,
             net_peer_name(op->peer, who, sizeof who), op->crc, got, op->len);
}

int net_wait(struct net_op *op, int timeout_ms, char err[NET_ERR_LEN])
{
    if (!op) return net_seterr(err, "net_wait: no op");
    /* The waiter sleeps on op->done itself, not on a condition variable and
     * the node's lock: the completing thread wakes it with one futex call,
     * and it needs no lock to return. No busy polling: measured on a 2-vCPU
     * VM, a spinning waiter takes the core the network threads need and
     * doubled the round trip. */
    if (op->node && timeout_ms != 0 && !op_done(op)) {
        int64_t dl = timeout_ms < 0 ? -1 : net_now_ns() + (int64_t)timeout_ms * 1000000;
        for (;;) {
            int expect = OP_PENDING;
            if (!atomic_compare_exchange_strong(&op->done, &expect, OP_SLEEPER) &&
                expect == OP_DONE)
                break;
            struct timespec ts, *tp = NULL;
            if (dl >= 0) {
                int64_t left = dl - net_now_ns();
                if (left <= 0) break;
                ts = (struct timespec){ left / 1000000000, left % 1000000000 };
                tp = &ts;
            }
            syscall(SYS_futex, &op->done, FUTEX_WAIT_PRIVATE, OP_SLEEPER, tp, NULL, 0);
        }
    }
    if (!op_done(op)) {
        net_seterr(err, "operation still pending after %d ms", timeout_ms);
        return NET_TIMEOUT;
    }
    if (op->verify) verify_recv(op);
    if (op->status != NET_OK && err) snprintf(err, NET_ERR_LEN, "%s", op->err);
    return op->status;
}

int net_op_test(struct net_op *op, char err[NET_ERR_LEN])
{
    if (op && !op_done(op)) return NET_PENDING;
    return net_wait(op, 0, err);
}

unsigned net_op_tag(const struct net_op *op)
{
    return op && op->kind == OP_RECV && op_done(op) ? (op->hflags >> 8) & 0xfu : 0;
}

uint64_t net_op_len(const struct net_op *op)
{
    return op && op_done(op) ? op->len : 0;
}

uint32_t net_op_crc(const struct net_op *op)
{
    /* verified: net_wait cleared op->verify after comparing crc_run with crc */
    return op && op->kind == OP_RECV && op_done(op) && !op->verify && op->status == NET_OK ? op->crc : 0;
}

void *net_op_take(struct net_op *op)
{
    if (!op || op->kind != OP_RECV || !op->own ||
        !op_done(op))
        return NULL;
    if (op->verify) verify_recv(op);
    void *p = op->rbuf;
    op->rbuf = NULL;
    op->own = 0;
    return p;
}

void net_op_free(struct net_op *op)
{
    if (!op) return;
    struct net_node *n = op->node;
    if (n) {
        pthread_mutex_lock(&n->lk);
        if (op->posted) { /* the network thread has not seen it: just take it back */
            list_remove(&op->pr->posted, op);
            op->posted = 0;
        } else if (!op_done(op) && !n->exited) {
            /* Wait for the network thread to see the cancel, not only for the op
             * to finish: the command names op, and op's memory is about to go. */
            struct cmd *c = calloc(1, sizeof *c);
            if (c) {
                c->kind = CMD_CANCEL;
                c->op = op;
                if (push_cmd_locked(n, c)) wake_loop(n); /* under the lock: rare path */
            }
            n->other_waiters++;
            while (!n->exited && (!op_done(op) ||
                                  (c && !op->cancel_ack)))
                cv_wait(n, -1);
            n->other_waiters--;
        }
        live_del_locked(n, op);
        pthread_mutex_unlock(&n->lk);
    }
    if (op->own) free(op->rbuf);
    free(op);
}

int net_recv(struct net_node *n, net_peer_id peer, net_key key, void *dst, uint64_t cap,
             uint64_t *len, int timeout_ms, char err[NET_ERR_LEN])
{
    struct net_op *op = NULL;
    int st = net_recv_post(n, peer, key, dst, cap, &op, err);
    if (st != NET_OK) return st;
    st = net_wait(op, timeout_ms, err);
    if (len) *len = st == NET_OK ? op->len : 0;
    net_op_free(op);
    return st;
}
