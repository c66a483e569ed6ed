/* net_loop.c — the network thread: runs the event_base, takes commands from
 * the locked queue (posted sends and receives, cancels, connects, shutdown),
 * listens and accepts, connects with retry and backoff until a deadline, sends
 * heartbeats and declares silent peers dead, and shuts down cleanly. What
 * happens on one connection once it exists is in net_conn.c. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/event.h>

#include "net/net_internal.h"

static void fail_list(struct net_node *n, struct oplist *l, int status, const char *reason)
{
    while (l->head) {
        struct net_op *op = l->head;
        list_remove(l, op);
        op_complete(n, op, status, reason);
    }
}

/* Marks pr dead (or closed) with reason and fails everything pending on it.
 * Messages that fully arrived stay claimable. */
void loop_peer_fail(struct net_node *n, struct peer *pr, int status, const char *reason)
{
    pthread_mutex_lock(&n->lk);
    int was_dead = pr->state == P_DEAD;
    if (!was_dead) {
        pr->state = P_DEAD;
        pr->status = status;
        snprintf(pr->reason, sizeof pr->reason, "%s", reason);
    }
    pthread_cond_broadcast(&n->cv);
    pthread_mutex_unlock(&n->lk);
    if (!was_dead) node_log(n, "%s", reason);
    pr->connecting = 0;
    if (pr->retry_ev) event_del(pr->retry_ev);
    char why[NET_ERR_LEN];
    pthread_mutex_lock(&n->lk);
    snprintf(why, sizeof why, "%s", pr->reason);
    posted_take_locked(pr);
    pthread_mutex_unlock(&n->lk);
    fail_list(n, &pr->sendq, status, why);
    fail_list(n, &pr->recvq, status, why);
}

/* --- sockets ------------------------------------------------------------ */

static void tune_socket(struct net_node *n, int fd)
{
    int one = 1;
    int idle = n->cfg.dead_ms / 2000 > 0 ? n->cfg.dead_ms / 2000 : 1;
    int cnt = 3;
    unsigned int uto = (unsigned int)n->cfg.dead_ms;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &uto, sizeof uto);
}

static int resolve(const char *host, int port, int passive, struct addrinfo **out, char *err)
{
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICSERV | (passive ? 0 : AI_ADDRCONFIG) };
    int rc = getaddrinfo(host, ps, &hints, out);
    if (rc != 0) return net_seterr(err, "cannot resolve %s: %s", host, gai_strerror(rc));
    return NET_OK;
}

static void accept_cb(int fd, short what, void *arg);

int loop_listen(struct net_node *n, char err[NET_ERR_LEN])
{
    struct addrinfo *ai = NULL;
    int fd = -1, one = 1;
    /* The address is bound exactly as given: no AI_PASSIVE, no wildcard fallback. */
    if (resolve(n->listen_host, n->cfg.listen_port, 1, &ai, err) != NET_OK) return NET_ERR;
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) { net_seterr(err, "socket: %s", strerror(errno)); goto fail; }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
        net_seterr(err, "cannot listen on %s:%d: %s", n->listen_host, n->cfg.listen_port,
                   strerror(errno));
        goto fail;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    n->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    n->listen_ev = event_new(n->base, fd, EV_READ | EV_PERSIST, accept_cb, n);
    if (!n->listen_ev || event_add(n->listen_ev, NULL) < 0) {
        net_seterr(err, "cannot register the listening socket");
        goto fail;
    }
    freeaddrinfo(ai);
    n->lfd = fd;
    return NET_OK;
fail:
    if (n->listen_ev) { event_free(n->listen_ev); n->listen_ev = NULL; }
    if (fd >= 0) close(fd);
    freeaddrinfo(ai);
    return NET_ERR;
}

/* Which unauthenticated connection goes first when room is needed: one
 * already refused (flushing its reason), then one whose hello has not come,
 * then one that claimed an identity; the oldest within each. A handshake
 * takes a few round trips, so the oldest is the likeliest to be stalling. */
static int evict_rank(const struct conn *c)
{
    return c->state == CS_CLOSING ? 0 : !c->claimed ? 1 : 2;
}

/* Pre-authentication slots (the OpenSSH MaxStartups idea, without the random
 * drop): at most NET_MAX_PENDING accepted connections may be unauthenticated at
 * once, and at most NET_PREAUTH_PER_SOURCE from one source address. A new
 * connection is never refused for want of a slot: it takes the slot of an
 * older unauthenticated one (of its own source when that source is at its
 * cap, else of the source holding most), which is told "busy" and closed, so
 * holding slots cannot keep the peers a run expects out, and one source can
 * only ever displace its own connections or those of a source holding more. */
static void make_room(struct net_node *n, const char *src)
{
    for (;;) {
        int mine = 0, total = 0;
        for (struct conn *c = n->conns; c; c = c->next)
            if (c->pending) {
                total++;
                mine += !strcmp(c->src, src);
            }
        if (mine < NET_PREAUTH_PER_SOURCE && total < NET_MAX_PENDING) return;
        /* this source at its cap gives up one of its own; else a connection
         * already refused goes first, then one of the source holding most */
        const char *from = src;
        struct conn *victim = NULL;
        if (mine < NET_PREAUTH_PER_SOURCE) {
            for (struct conn *c = n->conns; c; c = c->next)
                if (c->pending && c->state == CS_CLOSING &&
                    (!victim || c->accepted_at <= victim->accepted_at))
                    victim = c;
            if (victim) from = victim->src;
            int most = 0;
            for (struct conn *c = n->conns; c && !victim; c = c->next) {
                if (!c->pending) continue;
                int k = 0;
                for (struct conn *d = n->conns; d; d = d->next) k += d->pending && !strcmp(d->src, c->src);
                if (k > most) { most = k; from = c->src; }
            }
        }
        for (struct conn *c = n->conns; c; c = c->next) {
            if (!c->pending || strcmp(c->src, from)) continue;
            if (!victim || evict_rank(c) < evict_rank(victim) ||
                (evict_rank(c) == evict_rank(victim) && c->accepted_at <= victim->accepted_at))
                victim = c;
        }
        if (!victim) return;
        char msg[NET_ERR_LEN], who[96];
        if (mine >= NET_PREAUTH_PER_SOURCE)
            net_seterr(msg, "%s%s (%s) was dropped after %" PRId64 " ms to make room: %s holds %d "
                       "unauthenticated connections, the most from one address", NET_BUSY_PREFIX,
                       conn_who(victim, who, sizeof who), victim->addr,
                       net_now_ms() - victim->accepted_at, src, NET_PREAUTH_PER_SOURCE);
        else
            net_seterr(msg, "%s%s (%s) was dropped after %" PRId64 " ms to make room: all %d slots "
                       "for unauthenticated connections are taken", NET_BUSY_PREFIX,
                       conn_who(victim, who, sizeof who), victim->addr,
                       net_now_ms() - victim->accepted_at, NET_MAX_PENDING);
        pthread_mutex_lock(&n->lk);
        n->pre.evicted++;
        pthread_mutex_unlock(&n->lk);
        node_log_limited(n, "%s", msg + strlen(NET_BUSY_PREFIX));
        if (victim->state != CS_CLOSING && !(victim->wq.head && victim->wq.head->off > 0) &&
            !conn_tx_busy(victim)) {
            /* best effort: tell it why, so a real peer retries knowing the reason */
            struct net_op *ef = ctrl_frame(n, NET_T_ERROR, msg, (uint32_t)(strlen(msg) > NET_ERRMSG_MAX
                                                                            ? NET_ERRMSG_MAX : strlen(msg)));
            if (ef) {
                struct iovec iov[2];
                int cnt = frame_iov(ef, iov);
                net_sendv(victim->fd, iov, cnt);
                op_free_internal(ef);
            }
        }
        conn_drop(victim, NET_DEAD, msg);
    }
}

static void accept_cb(int fd, short what, void *arg)
{
    struct net_node *n = arg;
    (void)what;
    for (int i = 0; i < 16; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int cfd = accept4(fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                node_log(n, "accept: %s", strerror(errno));
            return;
        }
        if (n->stopping) { close(cfd); continue; }
        tune_socket(n, cfd);
        char host[64] = "?", serv[32] = "?", addr[100]; /* numeric: an IPv6 address and its scope fit */
        getnameinfo((struct sockaddr *)&ss, sl, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV);
        snprintf(addr, sizeof addr, "%s:%s", host, serv);
        make_room(n, host);
        struct conn *c = conn_new(n, cfd, 0, NULL, addr);
        if (!c) { close(cfd); continue; }
        snprintf(c->src, sizeof c->src, "%s", host);
        pthread_mutex_lock(&n->lk);
        n->pre.accepted++;
        pthread_mutex_unlock(&n->lk);
        conn_start(c);
    }
}

/* --- connecting ----------------------------------------------------------- */

static void connect_now(struct peer *pr);

static void retry_fire(int fd, short what, void *arg)
{
    (void)fd; (void)what;
    connect_now(arg);
}

/* A connect attempt (or a handshake cut short without a reason) failed: try
 * again after a backoff, or give up at the deadline naming peer and address. */
void loop_connect_retry(struct net_node *n, struct peer *pr, const char *why)
{
    snprintf(pr->last_err, sizeof pr->last_err, "%s", why);
    if (n->stopping || !pr->connecting) return;
    int64_t now = net_now_ms();
    if (now >= pr->deadline) {
        char msg[NET_ERR_LEN];
        net_seterr(msg, "could not connect to %s at %s:%d within %d ms: %.300s",
                 pr->name, pr->host, pr->port, n->cfg.connect_deadline_ms, why);
        loop_peer_fail(n, pr, NET_DEAD, msg);
        return;
    }
    int wait = pr->backoff_ms;
    if (now + wait > pr->deadline) wait = (int)(pr->deadline - now);
    pr->backoff_ms = pr->backoff_ms * 2 > 1000 ? 1000 : pr->backoff_ms * 2;
    if (!pr->retry_ev) pr->retry_ev = evtimer_new(n->base, retry_fire, pr);
    struct timeval tv = { wait / 1000, (wait % 1000) * 1000 };
    if (!pr->retry_ev || evtimer_add(pr->retry_ev, &tv) < 0)
        loop_peer_fail(n, pr, NET_DEAD, "cannot schedule a connect retry");
}

static void connect_now(struct peer *pr)
{
    struct net_node *n = pr->node;
    char err[NET_ERR_LEN], addr[300];
    struct addrinfo *ai = NULL;
    if (resolve(pr->host, pr->port, 0, &ai, err) != NET_OK) {
        loop_connect_retry(n, pr, err);
        return;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc = -1, e = errno;
    if (fd >= 0) {
        tune_socket(n, fd);
        rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
        e = errno;
    }
    freeaddrinfo(ai);
    if (fd < 0 || (rc < 0 && e != EINPROGRESS)) {
        if (fd >= 0) close(fd);
        loop_connect_retry(n, pr, strerror(e));
        return;
    }
    snprintf(addr, sizeof addr, "%s:%d", pr->host, pr->port);
    struct conn *c = conn_new(n, fd, 1, pr, addr);
    if (!c) {
        close(fd);
        loop_peer_fail(n, pr, NET_DEAD, "out of memory creating a connection");
        return;
    }
    if (rc == 0) {
        conn_start(c);
    } else {
        c->state = CS_CONNECTING;
        event_add(c->wev, NULL);
        c->wev_on = 1;
    }
}

/* --- commands -------------------------------------------------------------- */

static int peer_dead(struct net_node *n, struct peer *pr, char reason[NET_ERR_LEN], int *status)
{
    pthread_mutex_lock(&n->lk);
    int dead = pr->state == P_DEAD;
    if (dead) {
        snprintf(reason, NET_ERR_LEN, "%s", pr->reason);
        *status = pr->status;
    }
    pthread_mutex_unlock(&n->lk);
    return dead;
}

void loop_send(struct net_node *n, struct net_op *op)
{
    struct peer *pr = op->pr;
    char why[NET_ERR_LEN];
    int st;
    if (n->stopping) {
        op_complete(n, op, NET_CLOSED, "node is shutting down");
    } else if (peer_dead(n, pr, why, &st)) {
        op_complete(n, op, st, why);
    } else if (pr->conn && pr->conn->state == CS_READY) {
        conn_enqueue(pr->conn, op);
    } else {
        op->where = W_SENDQ;
        list_push(&pr->sendq, op);
    }
}

/* A posting thread wrote a frame to pr only in part: write the rest. (The
 * command names the peer, not the op: when the connection failed meanwhile,
 * conn_drop has failed the op and its owner may have freed it.) */
static void do_flush(struct peer *pr)
{
    struct conn *c = pr->conn;
    if (!c) return;
    tx_claim(c);
    conn_write_now(c);
}

/* Hands a fully arrived unclaimed message u to the receive op. */
static void deliver(struct net_node *n, struct peer *pr, struct net_op *u, struct net_op *op,
                    int resume)
{
    list_remove(&pr->unclaimed, u);
    pthread_mutex_lock(&n->lk);
    pr->nunclaimed--;
    pr->st.unclaimed -= u->len;
    pthread_mutex_unlock(&n->lk);
    op->len = u->len;
    op->crc = u->crc;
    op->hflags = u->hflags;
    op->crc_run = u->crc_run; /* of the bytes as they arrived; the copy below is local */
    int st = NET_OK;
    char why[NET_ERR_LEN] = "";
    if (op->own) {
        op->rbuf = u->rbuf;
        u->rbuf = NULL;
    } else if (u->len > op->cap) {
        st = NET_ERR;
        snprintf(why, sizeof why, "message (type %u, step %" PRIu64 ", micro-batch %" PRIu32
                 ", chunk %" PRIu32 ") from %s is %" PRIu64 " bytes; the receive buffer holds %"
                 PRIu64, op->key.type, op->key.step, op->key.mb, op->key.chunk, pr->name, u->len,
                 op->cap);
    } else if (u->len) {
        op_put_whole(op, u->rbuf, u->len);
    }
    op->verify = st == NET_OK;
    if (u->rbuf && !pr->spare) {
        pr->spare = u->rbuf;
        pr->spare_cap = u->cap;
        u->rbuf = NULL;
    }
    op_free_internal(u);
    op_complete(n, op, st, why);
    if (resume && pr->conn) conn_recv_posted(pr->conn);
}

void loop_deliver_unclaimed(struct net_node *n, struct peer *pr, struct net_op *u)
{
    posted_take(n, pr);
    for (struct net_op *op = pr->recvq.head; op; op = op->next)
        if (op->key.type == u->key.type && op->key.step == u->key.step &&
            op->key.mb == u->key.mb && op->key.chunk == u->key.chunk) {
            list_remove(&pr->recvq, op);
            deliver(n, pr, u, op, 0);
            return;
        }
}

void loop_recv(struct net_node *n, struct net_op *op)
{
    struct peer *pr = op->pr;
    char why[NET_ERR_LEN];
    int st;
    posted_take(n, pr); /* receives posted before this one go first */
    for (struct net_op *u = pr->unclaimed.head; u; u = u->next)
        if (u->complete_read && u->key.type == op->key.type && u->key.step == op->key.step &&
            u->key.mb == op->key.mb && u->key.chunk == op->key.chunk) {
            deliver(n, pr, u, op, 1);
            return;
        }
    if (n->stopping) {
        op_complete(n, op, NET_CLOSED, "node is shutting down");
    } else if (peer_dead(n, pr, why, &st)) {
        op_complete(n, op, st, why);
    } else {
        op->where = W_RECVQ;
        list_push(&pr->recvq, op);
        if (pr->conn) conn_recv_posted(pr->conn);
    }
}

static void cancel_one(struct net_node *n, struct net_op *op);

static void cancel_ack(struct net_node *n, struct net_op *op)
{
    pthread_mutex_lock(&n->lk);
    op->cancel_ack = 1;
    pthread_cond_broadcast(&n->cv);
    pthread_mutex_unlock(&n->lk);
}

/* Cancels a pending op so that the transport never touches its buffer again. */
static void do_cancel(struct net_node *n, struct net_op *op)
{
    cancel_one(n, op);
    cancel_ack(n, op);
}

static void cancel_one(struct net_node *n, struct net_op *op)
{
    struct peer *pr = op->pr;
    struct conn *c = pr->conn;
    switch (op->where) {
    case W_SENDQ: list_remove(&pr->sendq, op); break;
    case W_RECVQ: list_remove(&pr->recvq, op); break;
    case W_READING:
        c->rop = NULL;
        c->sink = SINK_DISCARD;
        break;
    case W_PARTIAL:
        if (!c) return; /* cannot be: conn_drop fails a half-written frame */
        tx_claim(c);    /* now at the head of the write queue */
        /* fall through */
    case W_WQ:
        if (op->off > 0) {
            /* Half written: the rest of the frame must still go out, from a copy. */
            struct net_op *cp = ctrl_frame(n, 1, NULL, 0);
            uint8_t *data = op->len ? malloc(op->len) : NULL;
            if (!cp || (op->len && !data)) {
                free(cp);
                free(data);
                conn_fail(c, NET_DEAD, "out of memory cancelling a send");
                return;
            }
            memcpy(cp->hdr, op->hdr, NET_HDR_LEN);
            if (op->len) memcpy(data, op->sbuf, op->len);
            cp->sbuf = data;
            cp->own = 1;
            cp->len = op->len;
            cp->off = op->off;
            cp->seal = op->seal;
            cp->where = W_WQ;
            cp->next = op->next;
            cp->prev = op;
            if (op->next) op->next->prev = cp; else c->wq.tail = cp;
            op->next = cp;
        }
        list_remove(&c->wq, op);
        break;
    default:
        return; /* already completed */
    }
    op_complete(n, op, NET_CANCELLED, "cancelled");
}

static void do_connect(struct net_node *n, struct cmd *cm)
{
    struct peer *pr = cm->pr;
    if (n->stopping) return;
    snprintf(pr->host, sizeof pr->host, "%s", cm->host);
    pr->port = cm->port;
    pr->deadline = net_now_ms() + n->cfg.connect_deadline_ms;
    pr->backoff_ms = 50;
    pr->connecting = 1;
    connect_now(pr);
}

static struct peer *peers_head(struct net_node *n)
{
    pthread_mutex_lock(&n->lk);
    struct peer *p = n->peers;
    pthread_mutex_unlock(&n->lk);
    return p;
}

static void linger_cb(int fd, short what, void *arg)
{
    struct net_node *n = arg;
    (void)fd; (void)what;
    node_log(n, "shutdown: sends still queued after %d ms are dropped", n->cfg.linger_ms);
    while (n->conns) conn_free(n->conns);
    event_base_loopbreak(n->base);
}

/* During shutdown (stopping 2: every goodbye queued), a connection whose queue
 * has drained is shut for writing and from then on only read, and the bytes
 * dropped, until the peer closes too (conn_read_cb): closing a socket with
 * unread bytes sends a reset, and the peer could then lose the goodbye and see
 * "connection reset" instead of a clean shutdown. The linger timer bounds the
 * wait. Never frees a connection itself; returns 1 when none is left and the
 * loop is told to stop. */
int loop_maybe_finish(struct net_node *n)
{
    if (n->stopping != 2) return 0;
    for (struct conn *c = n->conns; c; c = c->next)
        if (!c->wq.head && !conn_tx_busy(c) && !c->draining) {
            c->draining = 1;
            shutdown(c->fd, SHUT_WR);
            conn_set_read(c, 1);
        }
    if (n->conns) return 0;
    event_base_loopbreak(n->base);
    return 1;
}

static void do_shutdown(struct net_node *n)
{
    n->stopping = 1;
    if (n->listen_ev) {
        event_free(n->listen_ev);
        n->listen_ev = NULL;
    }
    if (n->lfd >= 0) close(n->lfd);
    n->lfd = -1;
    for (struct peer *pr = peers_head(n); pr; pr = pr->next) {
        pr->connecting = 0;
        if (pr->retry_ev) event_del(pr->retry_ev);
        posted_take(n, pr);
        fail_list(n, &pr->recvq, NET_CLOSED, "node is shutting down");
        if (!pr->conn || pr->conn->state != CS_READY)
            fail_list(n, &pr->sendq, NET_CLOSED, "node is shutting down");
    }
    for (struct conn *c = n->conns, *next; c; c = next) {
        next = c->next;
        if (c->state != CS_READY) {
            conn_free(c);
            continue;
        }
        if (c->sink == SINK_OP && c->rop && c->rop->kind == OP_RECV) {
            struct net_op *op = c->rop;
            c->rop = NULL;
            c->sink = SINK_DISCARD;
            op_complete(n, op, NET_CLOSED, "node is shutting down");
        }
        struct net_op *bye = ctrl_frame(n, NET_T_BYE, NULL, 0);
        if (bye) conn_enqueue(c, bye);
    }
    n->stopping = 2;
    n->linger_ev = evtimer_new(n->base, linger_cb, n);
    struct timeval tv = { n->cfg.linger_ms / 1000, (n->cfg.linger_ms % 1000) * 1000 };
    if (n->linger_ev) evtimer_add(n->linger_ev, &tv);
    loop_maybe_finish(n);
}

/* net_peer_forget on the network thread: a dead peer whose connection is
 * gone becomes unknown again (its unclaimed messages dropped), so a new
 * process may authenticate as it. Anything else is left alone. */
static void do_forget(struct net_node *n, struct peer *pr)
{
    pthread_mutex_lock(&n->lk);
    int dead = pr->state == P_DEAD;
    pthread_mutex_unlock(&n->lk);
    if (!dead || pr->conn || pr->connecting) return;
    while (pr->unclaimed.head) {
        struct net_op *op = pr->unclaimed.head;
        list_remove(&pr->unclaimed, op);
        op_free_internal(op);
    }
    pthread_mutex_lock(&n->lk);
    pr->state = P_NEW;
    pr->status = 0;
    pr->reason[0] = 0;
    pr->nunclaimed = 0;
    pthread_cond_broadcast(&n->cv);
    pthread_mutex_unlock(&n->lk);
}

/* net_peer_close on the network thread: the connection (if any) fails with
 * the reason, told to the peer; a peer without one is declared dead. */
static void do_close(struct net_node *n, struct peer *pr, const char *reason)
{
    if (pr->conn) conn_fatal(pr->conn, reason);
    else loop_peer_fail(n, pr, NET_DEAD, reason);
}

void (*net_test_cmds_taken)(struct net_node *n);

static void wake_cb(int fd, short what, void *arg)
{
    struct net_node *n = arg;
    uint64_t v;
    (void)what;
    ssize_t r = read(fd, &v, sizeof v);
    (void)r;
    pthread_mutex_lock(&n->lk);
    struct cmd *q = n->qhead;
    n->qhead = n->qtail = NULL;
    pthread_mutex_unlock(&n->lk);
    if (net_test_cmds_taken) net_test_cmds_taken(n);
    while (q) {
        struct cmd *next = q->next;
        switch (q->kind) {
        case CMD_SEND: loop_send(n, q->op); break;
        case CMD_FLUSH: do_flush(q->pr); break;
        case CMD_RECV:
            loop_recv(n, q->op);
            pthread_mutex_lock(&n->lk);
            n->recv_cmds--;
            pthread_mutex_unlock(&n->lk);
            break;
        case CMD_CANCEL: do_cancel(n, q->op); break;
        case CMD_CONNECT: do_connect(n, q); break;
        case CMD_SHUTDOWN: do_shutdown(n); break;
        case CMD_FORGET: do_forget(n, q->pr); break;
        case CMD_CLOSE: do_close(n, q->pr, q->host); break;
        }
        free(q);
        q = next;
    }
    tasks_run(n); /* net_task_post from another thread */
}

/* Heartbeats, dead-peer detection, handshake and closing deadlines. */
static void tick_cb(int fd, short what, void *arg)
{
    struct net_node *n = arg;
    (void)fd; (void)what;
    int64_t now = net_now_ms();
    if (n->stopping) return; /* the linger timer bounds the rest */
    node_log_flush(n, now);
    for (struct conn *c = n->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == CS_CLOSING) {
            if (now >= c->close_at) conn_free(c);
            continue;
        }
        if (conn_preauth(c) && now - c->accepted_at > n->cfg.handshake_ms) {
            /* counted from accept, not from the last byte: dripping a header
             * a byte at a time does not keep a slot */
            char msg[NET_ERR_LEN], who[96];
            net_seterr(msg, "%s (%s) did not finish the handshake within %d ms of connecting: "
                       "dropped", conn_who(c, who, sizeof who), c->addr, n->cfg.handshake_ms);
            pthread_mutex_lock(&n->lk);
            n->pre.timed_out++;
            pthread_mutex_unlock(&n->lk);
            c->expired = 1;
            conn_fatal(c, msg);
            continue;
        }
        if (c->rstate == RS_PAUSED) c->last_rx = now; /* we stopped reading, not the peer */
        if (c->state != CS_CONNECTING && now - c->last_rx > n->cfg.dead_ms) {
            char msg[NET_ERR_LEN];
            char who[96];
            net_seterr(msg, "%s (%s) sent nothing for %" PRId64
                     " ms (dead-peer timeout %d ms): %s",
                     conn_who(c, who, sizeof who), c->addr, now - c->last_rx,
                     n->cfg.dead_ms, conn_preauth(c) ? "dropped" : "declared dead");
            conn_fail(c, NET_DEAD, msg);
            continue;
        }
        if (c->state == CS_READY && !c->wq.head && !conn_tx_busy(c) && now - c->last_tx >= n->cfg.heartbeat_ms) {
            struct net_op *hb = ctrl_frame(n, NET_T_HEARTBEAT, NULL, 0);
            if (hb) conn_enqueue(c, hb);
        }
    }
}

void *loop_main(void *arg)
{
    struct net_node *n = arg;
    int period = n->cfg.heartbeat_ms / 2 < n->cfg.dead_ms / 4 ? n->cfg.heartbeat_ms / 2
                                                               : n->cfg.dead_ms / 4;
    period = period < 5 ? 5 : period > 250 ? 250 : period;
    struct timeval tv = { period / 1000, (period % 1000) * 1000 };
    n->wake_ev = event_new(n->base, n->efd, EV_READ | EV_PERSIST, wake_cb, n);
    n->tick_ev = event_new(n->base, -1, EV_PERSIST, tick_cb, n);
    if (n->wake_ev && n->tick_ev && event_add(n->wake_ev, NULL) == 0 &&
        event_add(n->tick_ev, &tv) == 0)
        event_base_dispatch(n->base);
    else
        node_log(n, "cannot register the network thread's events");
    n->stopping = 1;
    while (n->conns) conn_free(n->conns);
    for (struct peer *pr = peers_head(n); pr; pr = pr->next) {
        fail_list(n, &pr->sendq, NET_CLOSED, "node is shutting down");
        posted_take(n, pr);
        fail_list(n, &pr->recvq, NET_CLOSED, "node is shutting down");
        if (pr->retry_ev) event_free(pr->retry_ev);
        pr->retry_ev = NULL;
    }
    pthread_mutex_lock(&n->lk);
    n->exited = 1; /* late cancels need no answer now: every op is complete */
    pthread_cond_broadcast(&n->cv);
    pthread_mutex_unlock(&n->lk);
    if (n->listen_ev) event_free(n->listen_ev);
    if (n->lfd >= 0) close(n->lfd);
    if (n->wake_ev) event_free(n->wake_ev);
    if (n->tick_ev) event_free(n->tick_ev);
    if (n->linger_ev) event_free(n->linger_ev);
    if (n->task_ev) event_free(n->task_ev);
    if (n->task_now_ev) event_free(n->task_now_ev);
    event_base_free(n->base);
    n->base = NULL;
    return NULL;
}
