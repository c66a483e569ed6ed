/* net_tx.c — writing frames to a connection: the network thread's write queue
 * (scatter-gather sendmsg straight from the senders' buffers, a budget per
 * callback), and the hand-over with posting threads that write to the socket
 * themselves when the queue is empty (tx_conn, tx_partial: see net_internal.h).
 * Every socket write goes through net_sendv.
 *
 * On an encrypting node (cfg.encrypt) frames are not written from the
 * senders' buffers: the network thread seals the head of the write queue into
 * the connection's txbuf (NET_TXBUF bytes, header, payload slices and tag, the
 * one extra pass over the payload, which is the encryption itself) and writes
 * txbuf; it refills only once txbuf is empty, so nothing is ever moved in it.
 * A send completes when its tag is in txbuf: the caller's buffer is no longer
 * read (as a clear send completes once the kernel has the bytes). Posting
 * threads do not write such sockets (tx_open). */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <event2/event.h>

#include "net/net_internal.h"

/* Bytes per write callback before the loop gets back to other sockets and to
 * its timers. */
#define WRITE_BUDGET (4u << 20)

static void set_write(struct conn *c, int on)
{
    if (on && !c->wev_on) event_add(c->wev, NULL);
    if (!on && c->wev_on) event_del(c->wev);
    c->wev_on = on;
}

int frame_iov(const struct net_op *op, struct iovec *iov)
{
    int cnt = 0;
    if (op->off < NET_HDR_LEN)
        iov[cnt++] = (struct iovec){ (void *)(op->hdr + op->off), NET_HDR_LEN - op->off };
    uint64_t start = op->off > NET_HDR_LEN ? op->off - NET_HDR_LEN : 0;
    if (op->len > start) iov[cnt++] = (struct iovec){ (void *)(op->sbuf + start), op->len - start };
    return cnt;
}

ssize_t net_sendv(int fd, struct iovec *iov, int cnt)
{
    /* a peer that reset the connection gives EPIPE, not a SIGPIPE that would
     * kill the whole process */
    struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)cnt };
    return sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
}

void tx_claim(struct conn *c)
{
    struct peer *pr = c->pr;
    struct net_op *op = NULL;
    if (!pr) return;
    pthread_mutex_lock(&pr->txlk);
    if (pr->tx_conn == c) pr->tx_conn = NULL;
    if (pr->tx_partial && pr->tx_pconn == c) {
        op = pr->tx_partial;
        pr->tx_partial = NULL;
        pr->tx_pconn = NULL;
    }
    pthread_mutex_unlock(&pr->txlk);
    if (op) {
        /* the socket's write queue was empty when it went out, and every push
         * since claimed first: it is the head */
        op->where = W_WQ;
        list_push(&c->wq, op);
    }
}

/* The write queue is empty: let posting threads write to the socket directly. */
static void tx_open(struct conn *c)
{
    struct peer *pr = c->pr;
    if (c->state != CS_READY || !pr || pr->conn != c || !c->node->cfg.direct_max || c->crypt) return;
    pthread_mutex_lock(&pr->txlk);
    if (!pr->tx_partial) pr->tx_conn = c;
    pthread_mutex_unlock(&pr->txlk);
}

/* Bytes of op's frame on the wire. */
static uint64_t wire_len(const struct net_op *op)
{
    if (!op->seal) return NET_HDR_LEN + op->len;
    return NET_SEALED_HDR_LEN + op->len + (op->len ? NET_SEAL_TAG : 0);
}

/* Copies (clear) or seals the next piece of op, the head of c->wq, into txbuf.
 * Returns bytes added (0: no room for the next piece), -1 when libcrypto failed. */
static int64_t stage_piece(struct conn *c, struct net_op *op)
{
    uint8_t *o = c->txbuf + c->tx_end;
    uint64_t room = c->txcap - c->tx_end, take;
    if (!op->seal) {
        if (op->off < NET_HDR_LEN) {
            take = NET_HDR_LEN - op->off < room ? NET_HDR_LEN - op->off : room;
            memcpy(o, op->hdr + op->off, take);
        } else {
            take = NET_HDR_LEN + op->len - op->off < room ? NET_HDR_LEN + op->len - op->off : room;
            memcpy(o, op->sbuf + (op->off - NET_HDR_LEN), take);
        }
    } else if (op->off == 0) {
        if (room < NET_SEALED_HDR_LEN) return 0;
        if (net_seal_begin(c->tx_seal, o, op->hdr, op->len) != NET_OK) return -1;
        take = NET_SEALED_HDR_LEN;
    } else if (op->off < NET_SEALED_HDR_LEN + op->len) {
        uint64_t left = NET_SEALED_HDR_LEN + op->len - op->off;
        take = left < room ? left : room;
        if (take && net_seal_update(c->tx_seal, o, op->sbuf + (op->off - NET_SEALED_HDR_LEN), take) != NET_OK)
            return -1;
    } else {
        if (room < NET_SEAL_TAG) return 0;
        if (net_seal_end(c->tx_seal, o) != NET_OK) return -1;
        take = NET_SEAL_TAG;
    }
    op->off += take;
    c->tx_end += take;
    return (int64_t)take;
}

/* Fills the empty txbuf from the head of the write queue; frames wholly in
 * are complete. -1 when sealing failed (c is closed and freed). */
static int fill_txbuf(struct conn *c)
{
    struct net_node *n = c->node;
    c->tx_pos = c->tx_end = 0;
    while (c->wq.head) {
        struct net_op *op = c->wq.head;
        int64_t got = stage_piece(c, op);
        if (got < 0) {
            conn_fail(c, NET_DEAD, "sealing a frame failed in libcrypto");
            return -1;
        }
        if (op->off == wire_len(op)) {
            list_remove(&c->wq, op);
            op_complete(n, op, NET_OK, NULL);
        } else if (got == 0) {
            break;
        }
    }
    return 0;
}

/* conn_write_now for an encrypting connection: everything goes through txbuf. */
static int write_crypt(struct conn *c, size_t budget)
{
    while (budget) {
        if (!conn_tx_busy(c)) {
            if (!c->wq.head) break;
            if (fill_txbuf(c) < 0) return -1;
            if (!conn_tx_busy(c)) break;
        }
        ssize_t w = send(c->fd, c->txbuf + c->tx_pos, c->tx_end - c->tx_pos, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            char msg[NET_ERR_LEN];
            net_seterr(msg, "writing to %s (%s): %s", c->pr ? c->pr->name : "peer", c->addr, strerror(errno));
            conn_fail(c, NET_DEAD, msg);
            return -1;
        }
        c->last_tx = net_now_ms();
        c->tx_pos += (size_t)w;
        budget = (size_t)w >= budget ? 0 : budget - (size_t)w;
    }
    return 0;
}

/* Writes queued frames until the socket is full or the queue is empty.
 * Returns -1 when the connection was closed (c is freed). */
int conn_write_now(struct conn *c)
{
    struct net_node *n = c->node;
    size_t budget = WRITE_BUDGET;
    if (c->state == CS_CONNECTING) return 0;
    if (c->crypt && write_crypt(c, budget) < 0) return -1;
    while (!c->crypt && c->wq.head && budget) {
        struct iovec iov[64];
        int cnt = 0;
        for (struct net_op *op = c->wq.head; op && cnt < 62; op = op->next)
            cnt += frame_iov(op, iov + cnt);
        ssize_t w = net_sendv(c->fd, iov, cnt);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            char msg[NET_ERR_LEN];
            net_seterr(msg, "writing to %s (%s): %s", c->pr ? c->pr->name : "peer",
                     c->addr, strerror(errno));
            conn_fail(c, NET_DEAD, msg);
            return -1;
        }
        c->last_tx = net_now_ms();
        budget = (size_t)w >= budget ? 0 : budget - (size_t)w;
        uint64_t left = (uint64_t)w;
        while (c->wq.head) {
            struct net_op *op = c->wq.head;
            uint64_t total = NET_HDR_LEN + op->len, take = total - op->off;
            if (take > left) take = left;
            op->off += take;
            left -= take;
            if (op->off < total) break;
            list_remove(&c->wq, op);
            op_complete(n, op, NET_OK, NULL);
        }
    }
    if (c->wq.head || conn_tx_busy(c)) {
        set_write(c, 1);
        return 0;
    }
    set_write(c, 0);
    if (c->state == CS_CLOSING) {
        conn_drop(c, NET_DEAD, "closed after an error");
        loop_maybe_finish(n);
        return -1;
    }
    if (loop_maybe_finish(n)) return -1;
    tx_open(c);
    return 0;
}

int conn_enqueue(struct conn *c, struct net_op *op)
{
    tx_claim(c);
    op->where = W_WQ;
    op->seal = c->tx_sealed;
    list_push(&c->wq, op);
    /* when the write event is on the socket is full: the event will come */
    return c->wev_on ? 0 : conn_write_now(c);
}

void conn_write_cb(int fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd; (void)what;
    if (c->state == CS_CONNECTING) {
        int e = 0;
        socklen_t sl = sizeof e;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &sl);
        if (e) {
            conn_fail(c, NET_DEAD, strerror(e));
            return;
        }
        set_write(c, 0);
        conn_start(c);
        return;
    }
    /* The socket was full and has drained: the peer's kernel is acknowledging
     * our bytes, which proves it alive even if it is too busy reading a long
     * frame from us to send a heartbeat. */
    c->last_rx = net_now_ms();
    conn_write_now(c);
}

