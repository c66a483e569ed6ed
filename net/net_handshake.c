/* net_handshake.c — the first frames on a connection: each side sends a hello
 * (protocol version, identity, run id, topology hash, fresh nonce), checks the
 * other's, then proves knowledge of the shared secret with an HMAC over both
 * hellos (net_wire.c) and verifies the other's proof. Only then is the peer
 * READY and may data frames flow. On an encrypting node the hellos announce
 * the AEAD, the direction keys are derived from the secret and both hellos
 * (net_seal_keys) as soon as the peer's hello is in, and from READY on every
 * frame each way is sealed (net_wire.h, "Sealed frames"). Wire layouts live
 * in net_wire.h; reading and writing frames is net_conn.c and net_tx.c. */
#include <string.h>

#include "net/net_internal.h"

void conn_start(struct conn *c)
{
    struct net_node *n = c->node;
    c->state = CS_HELLO;
    c->mine = (net_hello){ .version = NET_VERSION, .id = n->cfg.self, .run_id = n->cfg.run_id };
    memcpy(c->mine.topo_hash, n->cfg.topo_hash, NET_HASH_LEN);
    if (n->cfg.encrypt) c->mine.aead = (uint8_t)(n->cfg.aead ? n->cfg.aead : net_aead_preferred());
    if (net_random(c->mine.nonce, NET_NONCE_LEN) != NET_OK) {
        conn_fail(c, NET_DEAD, "no random bytes for the handshake nonce");
        return;
    }
    net_hello_encode(c->my_hello, &c->mine);
    struct net_op *hello = ctrl_frame(n, NET_T_HELLO, c->my_hello, NET_HELLO_LEN);
    if (!hello) {
        conn_fail(c, NET_DEAD, "out of memory");
        return;
    }
    c->last_rx = net_now_ms();
    conn_set_read(c, 1);
    conn_enqueue(c, hello);
}

/* An accepted connection's hello names who it claims to be; nothing about it
 * is believed, and nothing is allocated for it, before its proof verifies:
 * the identity is checked against what this process expects (cfg.accept_peer)
 * and looked up without creating a record. */
static int check_claim(struct conn *c, const net_hello *peer)
{
    struct net_node *n = c->node;
    char why[NET_ERR_LEN] = "", msg[NET_ERR_LEN + 64], who[48];
    c->claim = peer->id;
    c->claimed = 1;
    if (n->cfg.accept_peer && !n->cfg.accept_peer(n->cfg.accept_arg, peer->id, why)) {
        net_seterr(msg, "unauthenticated connection from %s claiming %s: refused: %s", c->addr,
                   net_peer_name(peer->id, who, sizeof who), why[0] ? why : "not expected here");
        return conn_fatal(c, msg);
    }
    pthread_mutex_lock(&n->lk);
    struct peer *pr = peer_locked(n, peer->id, 0);
    int st = pr ? pr->state : P_NEW, busy = pr && (pr->state != P_NEW || pr->conn);
    char dead_why[NET_ERR_LEN] = "";
    if (busy && st == P_DEAD) snprintf(dead_why, sizeof dead_why, ": %.200s", pr->reason);
    pthread_mutex_unlock(&n->lk);
    if (busy) {
        net_seterr(msg, "unauthenticated connection from %s claiming %s: refused: it is %s%s",
                   c->addr, net_peer_name(peer->id, who, sizeof who),
                   st == P_DEAD ? "already declared dead" : "already connected", dead_why);
        return conn_fatal(c, msg);
    }
    return 0;
}

int conn_on_hello(struct conn *c)
{
    struct net_node *n = c->node;
    char err[NET_ERR_LEN], msg[NET_ERR_LEN + 64];
    net_hello peer;
    if (net_hello_parse(c->ctl, c->ctl_len, &peer, err) != NET_OK ||
        net_hello_check(&c->mine, &peer, err) != NET_OK) {
        net_seterr(msg, "handshake with %s failed: %s", c->addr, err);
        return conn_fatal(c, msg);
    }
    char who[48];
    net_peer_name(peer.id, who, sizeof who);
    if (c->outbound && !net_peer_eq(peer.id, c->pr->id)) {
        net_seterr(msg, "expected %s at %s but %s answered", c->pr->name, c->addr, who);
        return conn_fatal(c, msg);
    }
    if (!c->outbound && check_claim(c, &peer) < 0) return -1;
    memcpy(c->peer_hello, c->ctl, NET_HELLO_LEN);
    if (c->crypt) {
        uint8_t tx[NET_SEAL_KEY_LEN], rx[NET_SEAL_KEY_LEN];
        c->aead = net_aead_agree(c->mine.aead, peer.aead);
        int ok = net_seal_keys(tx, rx, c->aead, n->secret, n->cfg.secret_len, c->my_hello, c->peer_hello) == NET_OK &&
                 (c->tx_seal = net_seal_new(c->aead, tx, 1)) && (c->rx_seal = net_seal_new(c->aead, rx, 0));
        explicit_bzero(tx, sizeof tx);
        explicit_bzero(rx, sizeof rx);
        if (!ok) return conn_fatal(c, "deriving the frame keys failed in libcrypto");
    }
    uint8_t proof[NET_PROOF_LEN];
    if (net_auth_proof(proof, n->secret, n->cfg.secret_len, c->my_hello, c->peer_hello) != NET_OK)
        return conn_fatal(c, "HMAC-SHA256 failed");
    struct net_op *auth = ctrl_frame(n, NET_T_AUTH, proof, NET_PROOF_LEN);
    if (!auth) return conn_fatal(c, "out of memory");
    c->state = CS_AUTH;
    return conn_enqueue(c, auth); /* -1 if writing failed and c is gone */
}

int conn_on_auth(struct conn *c)
{
    struct net_node *n = c->node;
    struct peer *pr = c->pr;
    char err[NET_ERR_LEN], msg[NET_ERR_LEN + 64], who[96];
    if (net_auth_verify(c->ctl, c->ctl_len, n->secret, n->cfg.secret_len, c->peer_hello,
                        c->my_hello, err) != NET_OK) {
        net_seterr(msg, "%s (%s): %s", conn_who(c, who, sizeof who), c->addr, err);
        return conn_fatal(c, msg);
    }
    if (!c->outbound) {
        /* authenticated: only now does the peer get a record */
        uint8_t *rb = c->rbcap < NET_RBUF ? realloc(c->rb, NET_RBUF) : c->rb;
        if (!rb) return conn_fatal(c, "out of memory");
        c->rb = rb;
        c->rbcap = NET_RBUF;
        if (c->crypt && c->txcap < NET_TXBUF) {
            uint8_t *tb = realloc(c->txbuf, NET_TXBUF);
            if (!tb) return conn_fatal(c, "out of memory");
            c->txbuf = tb;
            c->txcap = NET_TXBUF;
        }
        pthread_mutex_lock(&n->lk);
        pr = peer_locked(n, c->claim, 1);
        int busy = pr && (pr->state != P_NEW || pr->conn);
        pthread_mutex_unlock(&n->lk);
        if (!pr) return conn_fatal(c, "out of memory");
        if (busy) {
            net_seterr(msg, "refused a second connection from %s (%s)", pr->name, c->addr);
            return conn_fatal(c, msg);
        }
        c->pr = pr;
    }
    if (pr->conn && pr->conn != c) {
        net_seterr(msg, "refused a second connection from %s (%s)", pr->name, c->addr);
        return conn_fatal(c, msg);
    }
    if (c->crypt && c->txcap < NET_TXBUF) {
        uint8_t *tb = realloc(c->txbuf, NET_TXBUF);
        if (!tb) return conn_fatal(c, "out of memory");
        c->txbuf = tb;
        c->txcap = NET_TXBUF;
    }
    c->state = CS_READY;
    /* the peer seals what it sends after its proof once it has verified ours,
     * which comes before anything it sends from READY on; we do the same */
    c->tx_sealed = c->rx_sealed = c->crypt;
    if (c->pending) pending_add(n, -c->pending);
    c->pending = 0;
    pr->conn = c;
    pr->connecting = 0;
    pthread_mutex_lock(&n->lk);
    if (pr->state != P_DEAD) pr->state = P_READY;
    pthread_cond_broadcast(&n->cv);
    pthread_mutex_unlock(&n->lk);
    while (pr->sendq.head) {
        struct net_op *op = pr->sendq.head;
        list_remove(&pr->sendq, op);
        op->where = W_WQ;
        op->seal = c->tx_sealed;
        list_push(&c->wq, op);
    }
    return conn_write_now(c);
}
