/* net_node.c — the compute-side API of the transport: creating and freeing a
 * node, posting sends and receives, waiting on them, peer status. Everything
 * here runs on the caller's thread and talks to the network thread only through
 * node->lk, the command queue and the eventfd; no libevent call is made here
 * after the network thread has started. Send checksums are computed here and
 * receive checksums are verified in net_wait, so the network thread only moves
 * bytes. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/event.h>

#include "net/net_internal.h"

void net_config_init(net_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->self = net_stage_id(0, 0);
    cfg->max_payload = NET_MAX_PAYLOAD_CAP;
    cfg->heartbeat_ms = 1000;
    cfg->dead_ms = 10000;
    cfg->connect_deadline_ms = 30000;
    cfg->max_queued = 256ull << 20;
    cfg->max_unclaimed = 256ull << 20;
    cfg->linger_ms = 1000;
    cfg->read_mode = NET_READ_DIRECT;
    cfg->direct_write = 1;
}

void node_log(struct net_node *n, const char *fmt, ...)
{
    char msg[NET_ERR_LEN + 128];
    int k = snprintf(msg, sizeof msg, "pipetrain net (%s): ", n->name);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + k, sizeof msg - (size_t)k, fmt, ap);
    va_end(ap);
    if (n->cfg.log)
        n->cfg.log(n->cfg.log_arg, msg);
    else
        fprintf(stderr, "%s\n", msg);
}

static struct peer *peer_locked(struct net_node *n, net_peer_id id, int create)
{
    for (struct peer *p = n->peers; p; p = p->next)
        if (net_peer_eq(p->id, id)) return p;
    if (!create) return NULL;
    struct peer *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->id = id;
    p->node = n;
    pthread_mutex_init(&p->txlk, NULL);
    net_peer_name(id, p->name, sizeof p->name);
    p->next = n->peers;
    n->peers = p;
    return p;
}

struct peer *node_peer(struct net_node *n, net_peer_id id, int create)
{
    pthread_mutex_lock(&n->lk);
    struct peer *p = peer_locked(n, id, create);
    pthread_mutex_unlock(&n->lk);
    return p;
}

void list_push(struct oplist *l, struct net_op *op)
{
    op->next = NULL;
    op->prev = l->tail;
    if (l->tail) l->tail->next = op; else l->head = op;
    l->tail = op;
}

void list_remove(struct oplist *l, struct net_op *op)
{
    if (op->prev) op->prev->next = op->next; else l->head = op->next;
    if (op->next) op->next->prev = op->prev; else l->tail = op->prev;
    op->next = op->prev = NULL;
}

int key_eq_hdr(const net_key *k, const net_hdr *h)
{
    return k->type == h->type && k->step == h->step && k->mb == h->mb && k->chunk == h->chunk;
}

/* Receives are posted without waking the network thread when it has nothing
 * to do for them yet: no command queued ahead, no unclaimed message that
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

void op_free_internal(struct net_op *op)
{
    if (!op) return;
    if (op->own) {
        free(op->rbuf);
        free((void *)op->sbuf);
    }
    free(op);
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
    /* Only wake sleepers who care: a completed send must not wake a thread
     * that waits for a receive (a spurious wake-up costs a context switch). */
    return (n->other_waiters ? 1 : 0) | (sleeper ? 2 : 0);
}

static void op_wake(struct net_node *n, struct net_op *op, int wake)
{
    if (wake & 1) pthread_cond_broadcast(&n->cv); /* after unlocking: no waiting for the lock */
    if (wake & 2) futex_wake_all(&op->done);
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

struct net_op *ctrl_frame(struct net_node *n, uint16_t type, const void *payload, uint32_t len)
{
    struct net_op *op = calloc(1, sizeof *op);
    if (!op) return NULL;
    op->kind = OP_CTRL;
    op->len = len;
    if (len) {
        uint8_t *copy = malloc(len);
        if (!copy) { free(op); return NULL; }
        memcpy(copy, payload, len);
        op->sbuf = copy;
        op->own = 1;
    }
    net_hdr h = { .version = NET_VERSION, .type = type, .sender = n->cfg.self, .len = len,
                  .crc = net_crc32c(0, payload, len) };
    net_hdr_encode(op->hdr, &h);
    return op;
}

/* Queues a command; call with lk held. Returns 1 when the queue was empty, so
 * the caller must wake the loop (wake_loop) once it has dropped the lock. */
static int push_cmd_locked(struct net_node *n, struct cmd *c)
{
    int was_empty = n->qhead == NULL;
    c->next = NULL;
    if (n->qtail) n->qtail->next = c; else n->qhead = c;
    n->qtail = c;
    return was_empty;
}

static void wake_loop(struct net_node *n)
{
    uint64_t one = 1;
    ssize_t r = write(n->efd, &one, sizeof one);
    (void)r; /* EAGAIN means the counter is already non-zero: the loop will wake */
}

static void live_add_locked(struct net_node *n, struct net_op *op)
{
    op->lprev = NULL;
    op->lnext = n->live;
    if (n->live) n->live->lprev = op;
    n->live = op;
}

static void live_del_locked(struct net_node *n, struct net_op *op)
{
    if (op->lprev) op->lprev->lnext = op->lnext; else n->live = op->lnext;
    if (op->lnext) op->lnext->lprev = op->lprev;
}

/* Waits on n->cv until deadline (ms on the monotonic clock; < 0: forever).
 * Returns 0 when woken, ETIMEDOUT when the deadline passed. */
static int cv_wait(struct net_node *n, int64_t deadline)
{
    if (deadline < 0) return pthread_cond_wait(&n->cv, &n->lk);
    struct timespec ts = { .tv_sec = deadline / 1000, .tv_nsec = (deadline % 1000) * 1000000 };
    return pthread_cond_timedwait(&n->cv, &n->lk, &ts);
}

static int64_t deadline_of(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : net_now_ms() + timeout_ms;
}

struct net_node *net_node_new(const net_config *cfg, char err[NET_ERR_LEN])
{
    struct net_node *n = NULL;
    if (!cfg || !cfg->secret || cfg->secret_len < 16) {
        net_seterr(err, "net_node_new: a shared secret of at least 16 bytes is required");
        return NULL;
    }
    if (cfg->max_payload > NET_MAX_PAYLOAD_CAP || cfg->heartbeat_ms <= 0 ||
        cfg->dead_ms <= 0 || cfg->max_queued == 0 || cfg->max_unclaimed == 0) {
        net_seterr(err, "net_node_new: bad config (max_payload <= 1 GiB, positive timeouts "
                   "and queue limits required)");
        return NULL;
    }
    n = calloc(1, sizeof *n);
    if (!n) { net_seterr(err, "net_node_new: out of memory"); return NULL; }
    n->cfg = *cfg;
    n->efd = n->lfd = -1;
    n->port = -1;
    net_peer_name(cfg->self, n->name, sizeof n->name);
    pthread_mutex_init(&n->lk, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&n->cv, &ca);
    pthread_condattr_destroy(&ca);
    n->secret = malloc(cfg->secret_len);
    if (!n->secret) { net_seterr(err, "net_node_new: out of memory"); goto fail; }
    memcpy(n->secret, cfg->secret, cfg->secret_len);
    n->cfg.secret = n->secret;
    if (cfg->listen_host) {
        snprintf(n->listen_host, sizeof n->listen_host, "%s", cfg->listen_host);
        n->cfg.listen_host = n->listen_host;
    }
    n->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (n->efd < 0) { net_seterr(err, "eventfd: %s", strerror(errno)); goto fail; }
    /* The base and its events are made here, before the thread exists, and
     * from then on belong to the network thread alone (memcached setup_thread). */
    n->base = event_base_new();
    if (!n->base) { net_seterr(err, "event_base_new failed"); goto fail; }
    if (cfg->listen_host && loop_listen(n, err) != NET_OK) goto fail;
    if (pthread_create(&n->thr, NULL, loop_main, n) != 0) {
        net_seterr(err, "cannot start the network thread");
        goto fail;
    }
    n->thr_started = 1;
    return n;
fail:
    net_node_free(n);
    return NULL;
}

void net_node_free(struct net_node *n)
{
    if (!n) return;
    if (n->thr_started) {
        struct cmd *c = calloc(1, sizeof *c);
        int w = 0;
        pthread_mutex_lock(&n->lk);
        n->closing = 1;
        if (c) { c->kind = CMD_SHUTDOWN; w = push_cmd_locked(n, c); }
        pthread_mutex_unlock(&n->lk);
        if (w) wake_loop(n);
        pthread_join(n->thr, NULL);
    } else {
        if (n->listen_ev) event_free(n->listen_ev);
        if (n->base) event_base_free(n->base);
        if (n->lfd >= 0) close(n->lfd);
    }
    for (struct net_op *op = n->live; op; op = op->lnext) op->node = NULL;
    while (n->qhead) { /* late cancels: their ops completed at shutdown */
        struct cmd *c = n->qhead;
        n->qhead = c->next;
        free(c);
    }
    while (n->peers) {
        struct peer *p = n->peers;
        n->peers = p->next;
        while (p->unclaimed.head) {
            struct net_op *op = p->unclaimed.head;
            list_remove(&p->unclaimed, op);
            op_free_internal(op);
        }
        free(p->spare);
        pthread_mutex_destroy(&p->txlk);
        free(p);
    }
    if (n->efd >= 0) close(n->efd);
    pthread_cond_destroy(&n->cv);
    pthread_mutex_destroy(&n->lk);
    if (n->secret) explicit_bzero(n->secret, n->cfg.secret_len);
    free(n->secret);
    free(n);
}

int net_node_port(const struct net_node *n) { return n ? n->port : -1; }

int net_connect(struct net_node *n, net_peer_id peer, const char *host, int port,
                char err[NET_ERR_LEN])
{
    if (!n || !host || !*host || port <= 0 || port > 65535 || strlen(host) >= 256)
        return net_seterr(err, "net_connect: a host and a port in 1..65535 are required");
    if (net_peer_eq(peer, n->cfg.self)) return net_seterr(err, "net_connect: cannot connect to itself");
    struct cmd *c = calloc(1, sizeof *c);
    if (!c) return net_seterr(err, "net_connect: out of memory");
    c->kind = CMD_CONNECT;
    snprintf(c->host, sizeof c->host, "%s", host);
    c->port = port;
    pthread_mutex_lock(&n->lk);
    c->pr = peer_locked(n, peer, 1);
    if (n->closing || !c->pr || c->pr->state != P_NEW) {
        char why[NET_ERR_LEN];
        snprintf(why, sizeof why, "%s", n->closing ? "node is closing"
                 : !c->pr ? "out of memory"
                 : c->pr->state == P_DEAD ? c->pr->reason /* dead stays dead: make a new node */
                 : "already connected or connecting");
        pthread_mutex_unlock(&n->lk);
        free(c);
        return net_seterr(err, "net_connect: %s", why);
    }
    c->pr->state = P_CONNECTING;
    int w = push_cmd_locked(n, c);
    pthread_mutex_unlock(&n->lk);
    if (w) wake_loop(n);
    return NET_OK;
}

/* Status of a peer record; call with lk held. */
static int peer_status_locked(struct peer *p, char err[NET_ERR_LEN])
{
    if (!p) return NET_PENDING;
    if (p->state == P_READY) return NET_OK;
    if (p->state == P_DEAD) {
        if (err) snprintf(err, NET_ERR_LEN, "%s", p->reason);
        return p->status;
    }
    return NET_PENDING;
}

int net_wait_peer(struct net_node *n, net_peer_id peer, int timeout_ms, char err[NET_ERR_LEN])
{
    int64_t dl = deadline_of(timeout_ms);
    char who[48];
    pthread_mutex_lock(&n->lk);
    struct peer *p = peer_locked(n, peer, 1);
    int st;
    n->other_waiters++;
    while ((st = peer_status_locked(p, err)) == NET_PENDING && !n->closing)
        if (cv_wait(n, dl) == ETIMEDOUT) break;
    n->other_waiters--;
    pthread_mutex_unlock(&n->lk);
    if (st == NET_PENDING) {
        net_seterr(err, "%s did not connect within %d ms", net_peer_name(peer, who, sizeof who),
                   timeout_ms);
        return NET_TIMEOUT;
    }
    return st;
}

int net_peer_status(struct net_node *n, net_peer_id peer, char err[NET_ERR_LEN])
{
    pthread_mutex_lock(&n->lk);
    int st = peer_status_locked(peer_locked(n, peer, 0), err);
    pthread_mutex_unlock(&n->lk);
    return st;
}

int net_any_failed(struct net_node *n, net_peer_id *peer, char err[NET_ERR_LEN])
{
    int found = 0;
    pthread_mutex_lock(&n->lk);
    for (struct peer *p = n->peers; p && !found; p = p->next)
        if (p->state == P_DEAD) {
            found = 1;
            if (peer) *peer = p->id;
            if (err) snprintf(err, NET_ERR_LEN, "%s", p->reason);
        }
    pthread_mutex_unlock(&n->lk);
    return found;
}

int net_peer_stats(struct net_node *n, net_peer_id peer, net_stats *st)
{
    pthread_mutex_lock(&n->lk);
    struct peer *p = peer_locked(n, peer, 0);
    if (p) *st = p->st;
    pthread_mutex_unlock(&n->lk);
    return p ? NET_OK : NET_ERR;
}

/* Starts send op to peer p: writes it to the socket on this thread when
 * nothing is ahead of it, else (or for what the socket did not take) hands it
 * to the network thread with command c. Consumes c. Returns 1 when the loop
 * must be woken. */
static int send_start(struct net_node *n, struct peer *p, struct net_op *op, struct cmd *c)
{
    int w = 0;
    uint64_t total = NET_HDR_LEN + op->len;
    pthread_mutex_lock(&p->txlk);
    struct conn *tc = p->tx_conn;
    if (tc && atomic_load(&p->tx_ahead) == 0) {
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
        if (op->kind == OP_RECV && !n->qhead && p->state != P_DEAD && p->nunclaimed == 0 &&
            !p->st.paused) {
            op->posted = 1; /* the network thread finds it when the header comes */
            list_push(&p->posted, op);
            free(c);
        } else if (op->kind == OP_RECV) {
            c->kind = CMD_RECV;
            c->op = op;
            c->pr = p;
            w = push_cmd_locked(n, c);
        }
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
    if (opp) *opp = NULL;
    if (!n || !opp || (len && !buf)) return net_seterr(err, "net_send: bad arguments");
    if (key.type < NET_TYPE_USER)
        return net_seterr(err, "net_send: message type %u is reserved (< %d)", key.type,
                          NET_TYPE_USER);
    if (len > n->cfg.max_payload)
        return net_seterr(err, "net_send: %" PRIu64 " bytes exceeds max_payload %" PRIu64, len,
                          n->cfg.max_payload);
    struct net_op *op = calloc(1, sizeof *op);
    if (!op) return net_seterr(err, "net_send: out of memory");
    op->kind = OP_SEND;
    op->peer = peer;
    op->key = key;
    op->sbuf = buf;
    op->len = len;
    op->crc = net_crc32c(0, buf, len);
    net_hdr h = { .version = NET_VERSION, .type = key.type, .sender = n->cfg.self,
                  .step = key.step, .mb = key.mb, .chunk = key.chunk, .len = len, .crc = op->crc };
    net_hdr_encode(op->hdr, &h);
    int st = post_op(n, op, timeout_ms, err);
    if (st == NET_OK) *opp = op;
    return st;
}

int net_recv_post(struct net_node *n, net_peer_id peer, net_key key, void *dst, uint64_t cap,
                  struct net_op **opp, char err[NET_ERR_LEN])
{
    if (opp) *opp = NULL;
    if (!n || !opp || (cap && !dst)) return net_seterr(err, "net_recv_post: bad arguments");
    if (key.type < NET_TYPE_USER)
        return net_seterr(err, "net_recv_post: message type %u is reserved", key.type);
    struct net_op *op = calloc(1, sizeof *op);
    if (!op) return net_seterr(err, "net_recv_post: out of memory");
    op->kind = OP_RECV;
    op->peer = peer;
    op->key = key;
    op->rbuf = dst;
    op->cap = dst ? cap : n->cfg.max_payload;
    op->own = dst == NULL;
    int st = post_op(n, op, 0, err);
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

uint64_t net_op_len(const struct net_op *op)
{
    return op && op_done(op) ? op->len : 0;
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
