/* net_node.c — the compute-side API of the transport for nodes and peers:
 * creating and freeing a node, connecting, peer status and counters, and the
 * command queue the other threads use to reach the network thread. Posting,
 * waiting on and freeing operations is in net_ops.c. Everything here runs on
 * the caller's thread and talks to the network thread only through node->lk,
 * the command queue and the eventfd; no libevent call is made here after the
 * network thread has started. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
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
    cfg->direct_max = NET_DIRECT_MAX;
    cfg->handshake_ms = NET_HANDSHAKE_MS;
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

void node_log_flush(struct net_node *n, int64_t now)
{
    if (now - n->log_window < 1000) return;
    if (n->log_dropped)
        node_log(n, "%" PRIu64 " more refusals of unauthenticated connections in the last %" PRId64
                 " ms not logged (at most %d a second)", n->log_dropped, now - n->log_window,
                 NET_REFUSAL_LOG_PER_S);
    n->log_dropped = 0;
    n->log_lines = 0;
    n->log_window = now;
}

void node_log_limited(struct net_node *n, const char *fmt, ...)
{
    node_log_flush(n, net_now_ms());
    if (n->log_lines >= NET_REFUSAL_LOG_PER_S) {
        n->log_dropped++;
        pthread_mutex_lock(&n->lk);
        n->pre.suppressed++;
        pthread_mutex_unlock(&n->lk);
        return;
    }
    n->log_lines++;
    char msg[NET_ERR_LEN + 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    node_log(n, "%s", msg);
}

static unsigned peer_hash(net_peer_id id)
{
    uint32_t h = (uint32_t)id.role * 0x9E3779B1u ^ (uint32_t)id.stage * 0x85EBCA77u ^
                 (uint32_t)id.replica * 0xC2B2AE3Du;
    return (h ^ (h >> 15)) % NET_PEER_BUCKETS;
}

struct peer *peer_locked(struct net_node *n, net_peer_id id, int create)
{
    unsigned b = peer_hash(id);
    for (struct peer *p = n->bucket[b]; p; p = p->hnext)
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
    p->hnext = n->bucket[b];
    n->bucket[b] = p;
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

void op_free_internal(struct net_op *op)
{
    if (!op) return;
    if (op->own) {
        free(op->rbuf);
        free((void *)op->sbuf);
    }
    free(op);
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
int push_cmd_locked(struct net_node *n, struct cmd *c)
{
    int was_empty = n->qhead == NULL;
    c->next = NULL;
    if (n->qtail) n->qtail->next = c; else n->qhead = c;
    n->qtail = c;
    return was_empty;
}

void wake_loop(struct net_node *n)
{
    uint64_t one = 1;
    ssize_t r = write(n->efd, &one, sizeof one);
    (void)r; /* EAGAIN means the counter is already non-zero: the loop will wake */
}

void live_add_locked(struct net_node *n, struct net_op *op)
{
    op->lprev = NULL;
    op->lnext = n->live;
    if (n->live) n->live->lprev = op;
    n->live = op;
}

void live_del_locked(struct net_node *n, struct net_op *op)
{
    if (op->lprev) op->lprev->lnext = op->lnext; else n->live = op->lnext;
    if (op->lnext) op->lnext->lprev = op->lprev;
}

/* Waits on n->cv until deadline (ms on the monotonic clock; < 0: forever).
 * Returns 0 when woken, ETIMEDOUT when the deadline passed. */
int cv_wait(struct net_node *n, int64_t deadline)
{
    if (deadline < 0) return pthread_cond_wait(&n->cv, &n->lk);
    struct timespec ts = { .tv_sec = deadline / 1000, .tv_nsec = (deadline % 1000) * 1000000 };
    return pthread_cond_timedwait(&n->cv, &n->lk, &ts);
}

int64_t deadline_of(int timeout_ms)
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
    if (cfg->aead < 0 || cfg->aead > NET_AEAD_CHACHA20 || cfg->max_payload > NET_MAX_PAYLOAD_CAP || cfg->heartbeat_ms <= 0 ||
        cfg->dead_ms <= 0 || cfg->handshake_ms <= 0 || cfg->max_queued == 0 || cfg->max_unclaimed == 0) {
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

int net_node_seals(const struct net_node *n) { return n && n->cfg.encrypt; }

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

int net_peer_forget(struct net_node *n, net_peer_id peer)
{
    pthread_mutex_lock(&n->lk);
    struct peer *p = peer_locked(n, peer, 0);
    if (!p || p->state != P_DEAD || n->closing) {
        pthread_mutex_unlock(&n->lk);
        return p && p->state != P_DEAD ? NET_ERR : NET_OK;
    }
    struct cmd *c = calloc(1, sizeof *c);
    if (!c) {
        pthread_mutex_unlock(&n->lk);
        return NET_ERR;
    }
    c->kind = CMD_FORGET;
    c->pr = p;
    int w = push_cmd_locked(n, c);
    pthread_mutex_unlock(&n->lk);
    if (w) wake_loop(n);
    return NET_OK;
}

int net_peer_close(struct net_node *n, net_peer_id peer, const char *reason)
{
    struct cmd *c = calloc(1, sizeof *c);
    if (!c) return NET_ERR;
    pthread_mutex_lock(&n->lk);
    c->pr = n->closing ? NULL : peer_locked(n, peer, 1);
    if (!c->pr) {
        int closing = n->closing;
        pthread_mutex_unlock(&n->lk);
        free(c);
        return closing ? NET_OK : NET_ERR;
    }
    c->kind = CMD_CLOSE;
    snprintf(c->host, sizeof c->host, "%s", reason && *reason ? reason : "closed by this node");
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

uint64_t net_refusals(struct net_node *n, net_peer_id peer, char why[NET_ERR_LEN])
{
    pthread_mutex_lock(&n->lk);
    struct peer *p = peer_locked(n, peer, 0);
    uint64_t k = p ? p->refused : 0;
    if (why) snprintf(why, NET_ERR_LEN, "%s", p ? p->refusal : "");
    pthread_mutex_unlock(&n->lk);
    return k;
}

void net_preauth_stats(struct net_node *n, net_preauth *st)
{
    pthread_mutex_lock(&n->lk);
    *st = n->pre;
    pthread_mutex_unlock(&n->lk);
}

int net_peer_stats(struct net_node *n, net_peer_id peer, net_stats *st)
{
    pthread_mutex_lock(&n->lk);
    struct peer *p = peer_locked(n, peer, 0);
    if (p) *st = p->st;
    pthread_mutex_unlock(&n->lk);
    return p ? NET_OK : NET_ERR;
}
