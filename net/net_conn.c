/* net_conn.c — one TCP connection on the network thread: reading frames (bulk
 * payloads straight into the receiver's buffer with readv, bypassing libevent's
 * 4 KiB evbuffer_read clamp, checksummed as they land), backpressure (reading
 * pauses while nobody claims buffered messages), and closing with a reason.
 * Writing is in net_tx.c. On an encrypting connection, once the peer's proof
 * verified, every frame is opened here (net_wire.h, "Sealed frames"): the
 * header before anything acts on it, the payload decrypted in place as it
 * lands (like the checksum of a clear frame) and delivered only after its tag
 * verified; any failure closes the connection naming the peer.
 * The hello/proof exchange is in net_handshake.c; when to connect or retry is
 * net_loop.c's business. Nothing here blocks. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "net/net_internal.h"

/* Bytes per read callback before the loop gets back to other sockets and to
 * its timers (heartbeats must go out even while a huge frame streams in). */
#define READ_BUDGET (4u << 20)
#define DIRECT_MIN 4096          /* payload remainder worth a read straight into place */

static int conn_read(struct conn *c);

struct conn *conn_new(struct net_node *n, int fd, int outbound, struct peer *pr, const char *addr)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->node = n;
    c->fd = fd;
    c->outbound = outbound;
    c->pr = pr;
    c->state = CS_HELLO;
    snprintf(c->addr, sizeof c->addr, "%s", addr);
    /* a stranger gets a staging buffer for the handshake only (conn_on_auth grows it) */
    c->rbcap = outbound ? NET_RBUF : NET_RBUF_PREAUTH;
    c->rb = malloc(c->rbcap);
    c->crypt = n->cfg.encrypt != 0;
    c->txcap = c->crypt ? NET_RBUF_PREAUTH : 0; /* grown when READY (conn_on_auth) */
    c->txbuf = c->crypt ? malloc(c->txcap) : NULL;
    c->rev = event_new(n->base, fd, EV_READ | EV_PERSIST, conn_read_cb, c);
    c->wev = event_new(n->base, fd, EV_WRITE | EV_PERSIST, conn_write_cb, c);
    if (n->cfg.read_mode == NET_READ_EVBUFFER) c->evb = evbuffer_new();
    if (!c->rb || !c->rev || !c->wev || (n->cfg.read_mode == NET_READ_EVBUFFER && !c->evb) ||
        (c->crypt && !c->txbuf)) {
        if (c->rev) event_free(c->rev);
        if (c->wev) event_free(c->wev);
        if (c->evb) evbuffer_free(c->evb);
        free(c->txbuf);
        free(c->rb);
        free(c);
        return NULL;
    }
    c->last_rx = c->last_tx = c->accepted_at = net_now_ms();
    c->pending = !outbound;
    if (c->pending) pending_add(n, 1);
    c->next = n->conns;
    if (n->conns) n->conns->prev = c;
    n->conns = c;
    return c;
}

void conn_set_read(struct conn *c, int on)
{
    if (on && !c->rev_on) event_add(c->rev, NULL);
    if (!on && c->rev_on) event_del(c->rev);
    c->rev_on = on;
}

/* Closes the socket and fails what is still in flight on it with status/reason. */
void conn_drop(struct conn *c, int status, const char *reason)
{
    struct net_node *n = c->node;
    tx_claim(c); /* no thread may write to the socket from now on */
    if (c->rop) {
        struct net_op *op = c->rop;
        c->rop = NULL;
        if (op->kind == OP_UNCLAIMED) {
            list_remove(&c->pr->unclaimed, op);
            pthread_mutex_lock(&n->lk);
            c->pr->nunclaimed--;
            c->pr->st.unclaimed -= op->len;
            pthread_mutex_unlock(&n->lk);
        }
        op_complete(n, op, status, reason);
    }
    while (c->wq.head) {
        struct net_op *op = c->wq.head;
        list_remove(&c->wq, op);
        op_complete(n, op, status, reason);
    }
    if (c->pending) pending_add(n, -c->pending);
    c->pending = 0;
    if (c->pr && c->pr->conn == c) c->pr->conn = NULL;
    if (c->pr && c->rstate == RS_PAUSED) {
        pthread_mutex_lock(&n->lk);
        c->pr->st.paused = 0;
        pthread_mutex_unlock(&n->lk);
    }
    event_free(c->rev);
    event_free(c->wev);
    if (c->evb) evbuffer_free(c->evb);
    close(c->fd);
    if (c->prev) c->prev->next = c->next; else n->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    net_seal_free(c->tx_seal);
    net_seal_free(c->rx_seal);
    free(c->txbuf);
    free(c->rb);
    free(c);
}

void conn_free(struct conn *c) { conn_drop(c, NET_CLOSED, "connection closed"); }

int conn_preauth(const struct conn *c) { return !c->outbound && !c->pr; } /* pr: set once authenticated */

const char *conn_who(const struct conn *c, char *buf, size_t cap)
{
    char who[48];
    if (c->pr) snprintf(buf, cap, "%s", c->pr->name);
    else if (c->claimed)
        snprintf(buf, cap, "unauthenticated peer claiming %s", net_peer_name(c->claim, who, sizeof who));
    else snprintf(buf, cap, "unauthenticated peer");
    return buf;
}

/* An accepted connection is refused before it authenticated: counted, logged
 * at a limited rate, and remembered by the identity it claimed when this
 * process knows that identity (never creating a record for it). */
static void preauth_refused(struct conn *c, const char *reason)
{
    struct net_node *n = c->node;
    pthread_mutex_lock(&n->lk);
    if (!c->expired) n->pre.refused++;
    struct peer *pr = c->claimed ? peer_locked(n, c->claim, 0) : NULL;
    if (pr) {
        pr->refused++;
        snprintf(pr->refusal, sizeof pr->refusal, "%s", reason);
    }
    pthread_mutex_unlock(&n->lk);
    node_log_limited(n, "%s", reason);
}

void conn_fail(struct conn *c, int status, const char *reason)
{
    struct net_node *n = c->node;
    struct peer *pr = c->pr;
    if (c->outbound && c->state < CS_READY && !c->fatal && pr && pr->connecting) {
        conn_drop(c, status, reason);
        loop_connect_retry(n, pr, reason); /* the peer may simply not be up yet */
        return;
    }
    if (pr && (pr->conn == c || c->outbound))
        loop_peer_fail(n, pr, status, reason);
    else if (conn_preauth(c))
        preauth_refused(c, reason);
    else
        node_log(n, "%s", reason);
    conn_drop(c, status, reason);
    loop_maybe_finish(n);
}

/* Fatal protocol error: tell the peer why (when the stream is at a frame
 * boundary), record the reason, close after a short flush. Returns -1. */
int conn_fatal(struct conn *c, const char *reason)
{
    struct net_node *n = c->node;
    c->fatal = 1;
    tx_claim(c);
    if (c->pr && (c->pr->conn == c || c->outbound))
        loop_peer_fail(n, c->pr, NET_DEAD, reason);
    else if (conn_preauth(c))
        preauth_refused(c, reason);
    else
        node_log(n, "%s", reason);
    if (c->pr && c->pr->conn == c) c->pr->conn = NULL;
    struct net_op *head = c->wq.head;
    if ((head && head->off > 0) || c->state == CS_CONNECTING) {
        conn_drop(c, NET_DEAD, reason);
        return -1;
    }
    while (c->wq.head) {
        struct net_op *op = c->wq.head;
        list_remove(&c->wq, op);
        op_complete(n, op, NET_DEAD, reason);
    }
    size_t len = strlen(reason);
    struct net_op *ef = ctrl_frame(n, NET_T_ERROR, reason,
                                   (uint32_t)(len > NET_ERRMSG_MAX ? NET_ERRMSG_MAX : len));
    if (!ef) {
        conn_drop(c, NET_DEAD, reason);
        return -1;
    }
    conn_set_read(c, 0);
    c->state = CS_CLOSING;
    c->close_at = net_now_ms() + 200;
    conn_enqueue(c, ef);
    return -1;
}

/* --- reading --------------------------------------------------------------- */

static void describe_frame(const net_hdr *h, char *buf, size_t cap)
{
    snprintf(buf, cap, "type %u, step %" PRIu64 ", micro-batch %" PRIu32 ", chunk %" PRIu32,
             (unsigned)h->type, h->step, h->mb, h->chunk);
}

static int on_payload_done(struct conn *c);
static int payload_end(struct conn *c);

/* A buffer for a message that arrived before its receive was posted (already
 * counted against max_unclaimed by the caller). NULL when out of memory. */
static struct net_op *new_unclaimed(struct conn *c)
{
    struct peer *pr = c->pr;
    struct net_op *u = calloc(1, sizeof *u);
    if (u && pr->spare && pr->spare_cap >= c->h.len) {
        /* reuse the last delivered buffer: a steady stream of early messages
         * would otherwise malloc, fault in and free a buffer per message */
        u->rbuf = pr->spare;
        u->cap = pr->spare_cap;
        pr->spare = NULL;
    } else if (u && c->h.len) {
        u->rbuf = malloc(c->h.len);
        u->cap = c->h.len;
    }
    if (!u || (c->h.len && !u->rbuf)) {
        free(u);
        return NULL;
    }
    u->kind = OP_UNCLAIMED;
    u->own = 1;
    u->key = (net_key){ c->h.type, c->h.step, c->h.mb, c->h.chunk };
    u->len = c->h.len;
    u->crc = c->h.crc;
    u->hflags = c->h.flags;
    u->where = W_UNCLAIMED;
    list_push(&pr->unclaimed, u);
    return u;
}

/* The posted receive the frame in c->h is for (removed from recvq), or NULL:
 * then *full says whether buffering it would pass max_unclaimed (reading must
 * pause) or it was counted as unclaimed. Receives posted since the last look,
 * and that decision, under one lock hold (see posted_take_locked). */
static struct net_op *find_receive(struct conn *c, int *full)
{
    struct net_node *n = c->node;
    struct peer *pr = c->pr;
    *full = 0;
    for (;;) {
        struct net_op *op = pr->recvq.head;
        while (op && !key_eq_hdr(&op->key, &c->h)) op = op->next;
        if (op) {
            list_remove(&pr->recvq, op);
            return op;
        }
        pthread_mutex_lock(&n->lk);
        int more = pr->posted.head != NULL;
        if (more) {
            posted_take_locked(pr);
        } else if (c->h.len && pr->st.unclaimed + c->h.len > n->cfg.max_unclaimed) {
            *full = 1;
            pr->st.paused = 1;
        } else {
            pr->nunclaimed++;
            pr->st.unclaimed += c->h.len;
            if (pr->st.unclaimed > pr->st.unclaimed_max) pr->st.unclaimed_max = pr->st.unclaimed;
        }
        pthread_mutex_unlock(&n->lk);
        if (!more) return NULL;
    }
}

/* Chooses where the payload of a user frame goes: a posted receive, a new
 * unclaimed buffer, or nowhere yet (reading pauses until the consumer catches up). */
static int start_user_payload(struct conn *c)
{
    struct net_node *n = c->node;
    struct peer *pr = c->pr;
    int full;
    struct net_op *op = find_receive(c, &full);
    c->sink = SINK_OP;
    if (op) {
        if (!op->own && c->h.len > op->cap) {
            char d[160], msg[NET_ERR_LEN];
            describe_frame(&c->h, d, sizeof d);
            net_seterr(msg, "message (%s) from %s is %" PRIu64
                       " bytes; the receive buffer holds %" PRIu64, d, pr->name, c->h.len,
                       op->cap);
            op_complete(n, op, NET_ERR, msg);
            c->sink = SINK_DISCARD;
        } else {
            if (op->own && c->h.len && !(op->rbuf = malloc(c->h.len)))
                return conn_fatal(c, "out of memory for a received message");
            op->len = c->h.len;
            op->crc = c->h.crc;
            op->hflags = c->h.flags;
            op->crc_run = 0;
            op->off = 0;
            op->where = W_READING;
            c->rop = op;
        }
    } else if (full) {
        c->rstate = RS_PAUSED;
        conn_set_read(c, 0);
        return 0;
    } else if (!(c->rop = new_unclaimed(c))) {
        pthread_mutex_lock(&n->lk);
        pr->nunclaimed--;
        pr->st.unclaimed -= c->h.len;
        pthread_mutex_unlock(&n->lk);
        return conn_fatal(c, "out of memory buffering a received message");
    }
    c->rleft = c->h.len;
    c->rstate = RS_PAYLOAD;
    return c->rleft ? 0 : payload_end(c);
}

static int start_ctl_payload(struct conn *c)
{
    c->sink = SINK_CTL;
    c->ctl_len = 0;
    c->rleft = c->h.len;
    c->rstate = RS_PAYLOAD;
    return c->rleft ? 0 : payload_end(c);
}

static int on_header(struct conn *c)
{
    struct net_node *n = c->node;
    char err[NET_ERR_LEN], msg[NET_ERR_LEN + 128], whobuf[96];
    const char *who = conn_who(c, whobuf, sizeof whobuf);
    int ready = c->state == CS_READY;
    uint64_t max = ready ? n->cfg.max_payload : NET_PREAUTH_MAX;
    const uint8_t *hb = c->rb + c->rpos;
    int rc = NET_OK;
    if (c->rx_sealed) {
        /* nothing in the header is believed before its tag verifies */
        rc = net_open_hdr(c->rx_seal, c->hplain, hb, err);
        hb = c->hplain;
        c->rpos += NET_SEALED_HDR_LEN;
    } else {
        c->rpos += NET_HDR_LEN;
    }
    if (rc == NET_OK) rc = net_hdr_decode(hb, &c->h, max, err);
    if (rc == NET_OK && c->rx_sealed && net_open_begin(c->rx_seal, c->hplain, c->h.len) != NET_OK)
        rc = net_seterr(err, "opening a sealed payload failed in libcrypto");
    if (rc != NET_OK) {
        net_seterr(msg, "from %s (%s): %s", who, c->addr, err);
        return conn_fatal(c, msg);
    }
    uint16_t t = c->h.type;
    if (t == NET_T_ERROR && c->h.len <= NET_CTL_MAX) return start_ctl_payload(c);
    if (!ready) {
        if ((c->state == CS_HELLO && t == NET_T_HELLO) || (c->state == CS_AUTH && t == NET_T_AUTH))
            return start_ctl_payload(c);
        net_seterr(msg, "%s (%s) sent a frame of type %u before authentication",
                 who, c->addr, (unsigned)t);
        return conn_fatal(c, msg);
    }
    if (t == NET_T_HEARTBEAT && c->h.len == 0) return 0;
    if (t == NET_T_BYE && c->h.len == 0) {
        net_seterr(msg, "%s (%s) closed the connection (shut down)", who, c->addr);
        conn_fail(c, NET_CLOSED, msg);
        return -1;
    }
    if (t < NET_TYPE_USER) {
        net_seterr(msg, "%s (%s) sent an unexpected frame of type %u (length %" PRIu64
                 ")", who, c->addr, (unsigned)t, c->h.len);
        return conn_fatal(c, msg);
    }
    if (!net_peer_eq(c->h.sender, c->pr->id)) {
        char other[48];
        net_seterr(msg, "%s (%s) sent a frame claiming to be from %s", who, c->addr,
                 net_peer_name(c->h.sender, other, sizeof other));
        return conn_fatal(c, msg);
    }
    return start_user_payload(c);
}

static int on_ctl_frame(struct conn *c)
{
    char msg[NET_ERR_LEN], who[96];
    switch (c->h.type) {
    case NET_T_HELLO: return conn_on_hello(c);
    case NET_T_AUTH: return conn_on_auth(c);
    default: { /* NET_T_ERROR */
        char text[NET_CTL_MAX + 1];
        size_t k = 0;
        for (uint64_t i = 0; i < c->ctl_len; i++)
            text[k++] = c->ctl[i] >= 32 && c->ctl[i] < 127 ? (char)c->ctl[i] : '?';
        text[k] = 0;
        net_seterr(msg, "%s (%s) refused the connection: %.400s",
                 c->pr ? c->pr->name : conn_who(c, who, sizeof who), c->addr, text);
        /* "busy": the peer had no room for us now; connecting again may work */
        c->fatal = !(c->outbound && c->state < CS_READY &&
                     !strncmp(text, NET_BUSY_PREFIX, strlen(NET_BUSY_PREFIX)));
        conn_fail(c, NET_DEAD, msg);
        return -1;
    }
    }
}

/* The whole payload of a sealed frame is in and its tag at c->rb + c->rpos:
 * verify it before anything is delivered. */
static int on_tag(struct conn *c)
{
    char err[NET_ERR_LEN], msg[NET_ERR_LEN + 128], d[160], who[96];
    int rc = net_open_end(c->rx_seal, c->rb + c->rpos, err);
    c->rpos += NET_SEAL_TAG;
    if (rc == NET_OK && !c->open_failed) return on_payload_done(c);
    if (rc == NET_OK) net_seterr(err, "decrypting a payload failed in libcrypto");
    /* the receive fails when the connection drops; leave no unauthenticated
     * plaintext in its buffer */
    if (c->sink == SINK_OP && c->rop && c->rop->rbuf)
        memset(c->rop->rbuf, 0, c->rop->slice && c->rop->off > c->rop->slice ? c->rop->slice : c->rop->off);
    describe_frame(&c->h, d, sizeof d);
    net_seterr(msg, "from %s (%s), frame (%s): %s", conn_who(c, who, sizeof who), c->addr, d, err);
    if (c->sink == SINK_OP && c->rop && c->rop->kind == OP_RECV) {
        /* the receive fails with this reason, not the later "connection closed" */
        struct net_op *op = c->rop;
        c->rop = NULL;
        op_complete(c->node, op, NET_DEAD, msg);
    }
    return conn_fatal(c, msg);
}

/* The payload's last byte is in: its tag follows when sealed. */
static int payload_end(struct conn *c)
{
    if (c->rx_sealed && c->h.len) {
        c->rstate = RS_TAG;
        return 0;
    }
    return on_payload_done(c);
}

static int on_payload_done(struct conn *c)
{
    struct net_node *n = c->node;
    c->rstate = RS_HDR;
    c->big = c->h.len >= 65536;
    if (c->sink == SINK_CTL) {
        uint32_t got = net_crc32c(0, c->ctl, c->ctl_len);
        if (got != c->h.crc) {
            char msg[NET_ERR_LEN], who[96];
            net_seterr(msg, "checksum mismatch on a control frame (type %u) from %s (%s): "
                       "CRC32C 0x%08" PRIx32 " in the frame, 0x%08" PRIx32 " computed",
                       (unsigned)c->h.type, conn_who(c, who, sizeof who), c->addr,
                       c->h.crc, got);
            return conn_fatal(c, msg);
        }
        return on_ctl_frame(c);
    }
    struct net_op *op = c->sink == SINK_OP ? c->rop : NULL;
    c->rop = NULL;
    /* sealed: the tag authenticated the payload, and the CRC32C field is
     * unused (0: the sender computed none); it is not read, so net_op_crc
     * gives 0 whatever the field held */
    if (op && c->rx_sealed) op->crc = op->crc_run = 0;
    if (op && op->kind == OP_RECV) {
        op->verify = 1;
        frame_received(n, c->pr, c->h.len, c->read_calls, op);
        return 0;
    }
    frame_received(n, c->pr, c->h.len, c->read_calls, NULL);
    if (op) {
        op->complete_read = 1;
        loop_deliver_unclaimed(n, c->pr, op);
    }
    return 0;
}

/* n bytes of the payload just landed at op_dst(op) (op->rbuf + op->off, or
 * in a sliced receive's scratch): checksum them now, while they are in cache,
 * rather than in another pass over the whole buffer; sealed, decrypt them in
 * place instead (the tag decides at the end). */
static void landed(struct conn *c, struct net_op *op, uint64_t n)
{
    uint8_t *p = op_dst(op, NULL);
    if (!c->rx_sealed) op->crc_run = net_crc32c(op->crc_run, p, n);
    else if (net_open_update(c->rx_seal, p, p, n) != NET_OK) c->open_failed = 1;
    op_advance(op, n);
}

static void sink_put_one(struct conn *c, const uint8_t *src, uint64_t len);

/* Payload bytes from the staging buffer: copied (clear) or decrypted on the
 * way (sealed) to where they belong; into a sliced receive's scratch a slice
 * at a time. */
static void sink_put(struct conn *c, const uint8_t *src, uint64_t len)
{
    uint64_t room;
    if (c->sink == SINK_OP && c->rop && c->rop->slice)
        for (; len; src += room, len -= room) {
            op_dst(c->rop, &room);
            if (room > len) room = len;
            sink_put_one(c, src, room);
        }
    else
        sink_put_one(c, src, len);
}

static void sink_put_one(struct conn *c, const uint8_t *src, uint64_t len)
{
    uint8_t *dst = NULL, scratch[4096];
    if (c->sink == SINK_OP && c->rop) dst = op_dst(c->rop, NULL);
    else if (c->sink == SINK_CTL) dst = c->ctl + c->ctl_len;
    if (c->rx_sealed) {
        /* a discarded payload is still authenticated: its tag decides the connection */
        for (uint64_t at = 0; !dst && at < len; at += sizeof scratch) {
            uint64_t k = len - at < sizeof scratch ? len - at : sizeof scratch;
            if (net_open_update(c->rx_seal, scratch, src + at, k) != NET_OK) c->open_failed = 1;
        }
        if (dst && net_open_update(c->rx_seal, dst, src, len) != NET_OK) c->open_failed = 1;
    } else if (dst) {
        memcpy(dst, src, len);
    }
    if (c->sink == SINK_OP && c->rop && len) {
        pthread_mutex_lock(&c->node->lk);
        c->pr->st.rx_staged += len;
        pthread_mutex_unlock(&c->node->lk);
    }
    if (c->sink == SINK_OP && c->rop) {
        if (!c->rx_sealed) c->rop->crc_run = net_crc32c(c->rop->crc_run, dst, len);
        op_advance(c->rop, len);
    } else if (c->sink == SINK_CTL) {
        c->ctl_len += len;
    }
}

/* EOF or a read error: name what was cut short. */
static void on_eof(struct conn *c, int e)
{
    char msg[NET_ERR_LEN], d[160], whobuf[96];
    const char *who = conn_who(c, whobuf, sizeof whobuf);
    size_t have = c->rlen - c->rpos;
    net_seterr(msg, "%s (%s) %s", who, c->addr, e ? strerror(e) : "closed the connection");
    size_t n = strlen(msg);
    if (c->rstate == RS_PAYLOAD) {
        describe_frame(&c->h, d, sizeof d);
        snprintf(msg + n, sizeof msg - n, " in the middle of a frame (%s): %" PRIu64
                 " of %" PRIu64 " payload bytes missing", d, c->rleft, c->h.len);
    } else if (c->rstate == RS_TAG) {
        describe_frame(&c->h, d, sizeof d);
        snprintf(msg + n, sizeof msg - n, " in the middle of a sealed frame (%s): %zu of %d tag bytes "
                 "in; nothing of it was delivered", d, have, NET_SEAL_TAG);
    } else if (c->rstate == RS_HDR && have) {
        snprintf(msg + n, sizeof msg - n, " in the middle of a frame header (%zu of %d bytes)",
                 have, c->rx_sealed ? NET_SEALED_HDR_LEN : NET_HDR_LEN);
    }
    conn_fail(c, NET_DEAD, msg);
}

/* One read syscall for the current state. Returns bytes read, 0 on EAGAIN,
 * -1 when the connection is gone. *drained is set when the read returned less
 * than it asked for: the socket is empty, and trying again would only cost a
 * read that fails with EAGAIN (the event is level-triggered: it fires again
 * when more comes). */
static ssize_t read_some(struct conn *c, int *drained)
{
    ssize_t r;
    size_t asked = 0; /* 0: unknown (evbuffer_read asks for what it likes) */
    struct net_op *op = c->sink == SINK_OP ? c->rop : NULL;
    if (c->rstate == RS_PAYLOAD && op && c->rleft >= DIRECT_MIN) {
        uint64_t room, want;
        uint8_t *dst = op_dst(op, &room);
        want = c->rleft < room ? c->rleft : room; /* a sliced receive: to the scratch's end */
        if (c->evb) {
            r = evbuffer_read(c->evb, c->fd, want > INT_MAX ? INT_MAX : (int)want);
            if (r > 0) {
                evbuffer_remove(c->evb, dst, (size_t)r);
                landed(c, op, (uint64_t)r);
                c->rleft -= (uint64_t)r;
            }
        } else {
            /* The rest of this payload lands in place; whatever follows (the
             * next header, small frames) lands in the staging buffer: behind
             * a big payload only 4 KiB of it, as in the read below (c->big is
             * the frame before this one's), or the next big payload's first
             * 64 KiB would be copied twice (read into the staging buffer, then
             * into place: 5% of a ring all-reduce's bytes in 1 MiB chunks). */
            size_t tail = want < c->rleft ? 0 : c->h.len >= 65536 && c->rbcap > 4096 ? 4096 : c->rbcap;
            struct iovec iov[2] = { { dst, want }, { c->rb, tail } };
            asked = want + tail;
            r = readv(c->fd, iov, tail ? 2 : 1);
            if (r > 0) {
                uint64_t in = (uint64_t)r < c->rleft ? (uint64_t)r : c->rleft;
                landed(c, op, in);
                c->rleft -= in;
                c->rpos = 0;
                c->rlen = (size_t)((uint64_t)r - in);
            }
        }
    } else {
        if (c->rpos) {
            memmove(c->rb, c->rb + c->rpos, c->rlen - c->rpos);
            c->rlen -= c->rpos;
            c->rpos = 0;
        }
        /* After a big frame read little, so that the next big payload mostly
         * goes straight into place rather than through this buffer. */
        size_t want = (c->big && c->rbcap > 4096 ? 4096 : c->rbcap) - c->rlen;
        asked = want;
        r = read(c->fd, c->rb + c->rlen, want);
        if (r > 0) c->rlen += (size_t)r;
    }
    c->read_calls++;
    if (r > 0) {
        c->last_rx = net_now_ms();
        *drained = (size_t)r < asked;
        return r;
    }
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
    on_eof(c, r < 0 ? errno : 0);
    return -1;
}

static int conn_read(struct conn *c)
{
    size_t budget = READ_BUDGET;
    int drained = 0;
    for (;;) {
        if (c->rstate == RS_PAUSED || c->state == CS_CLOSING) return 0;
        size_t have = c->rlen - c->rpos;
        if (c->rstate == RS_HDR && have >= (c->rx_sealed ? NET_SEALED_HDR_LEN : NET_HDR_LEN)) {
            if (on_header(c) < 0) return -1;
            continue;
        }
        if (c->rstate == RS_PAYLOAD && (have || c->rleft == 0)) {
            uint64_t take = have < c->rleft ? have : c->rleft;
            sink_put(c, c->rb + c->rpos, take);
            c->rpos += take;
            c->rleft -= take;
            if (c->rleft == 0 && payload_end(c) < 0) return -1;
            continue;
        }
        if (c->rstate == RS_TAG && have >= NET_SEAL_TAG) {
            if (on_tag(c) < 0) return -1;
            continue;
        }
        if (!budget || drained) return 0; /* when data is left, the event fires again */
        ssize_t r = read_some(c, &drained);
        if (r < 0) return -1;
        if (r == 0) return 0;
        budget = (size_t)r >= budget ? 0 : budget - (size_t)r;
    }
}

/* Shutting down (see loop_maybe_finish): reads and drops whatever the peer
 * still sends until it closes its end. A bounded number of reads per call, so
 * a peer that keeps sending cannot hold the loop past its linger timer. */
static void conn_drain(struct conn *c)
{
    for (int i = 0; i < 64; i++) {
        ssize_t r = read(c->fd, c->rb, c->rbcap);
        if (r > 0) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        struct net_node *n = c->node;
        conn_drop(c, NET_CLOSED, "node is shutting down"); /* the peer closed too */
        loop_maybe_finish(n);
        return;
    }
}

void conn_read_cb(int fd, short what, void *arg)
{
    (void)fd; (void)what;
    struct conn *c = arg;
    if (c->draining) conn_drain(c);
    else conn_read(c); /* read_calls reaches the stats with each frame (frame_received) */
}

void conn_recv_posted(struct conn *c)
{
    struct net_node *n = c->node;
    if (c->rstate != RS_PAUSED || c->state != CS_READY) return;
    if (start_user_payload(c) < 0) return;
    if (c->rstate == RS_PAUSED) return;
    pthread_mutex_lock(&n->lk);
    c->pr->st.paused = 0;
    pthread_mutex_unlock(&n->lk);
    conn_set_read(c, 1);
    conn_read(c);
}
