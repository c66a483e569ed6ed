/* net_handshake.c — the first frames on a connection: each side sends a hello
 * (protocol version, identity, run id, topology hash, fresh nonce), checks the
 * other's, then proves knowledge of the shared secret with an HMAC over both
 * hellos (net_wire.c) and verifies the other's proof. Only then is the peer
 * READY and may data frames flow. Wire layouts live in net_wire.h; reading and
 * writing frames is net_conn.c. */
#include <string.h>

#include "net/net_internal.h"

void conn_start(struct conn *c)
{
    struct net_node *n = c->node;
    c->state = CS_HELLO;
    c->mine = (net_hello){ .version = NET_VERSION, .id = n->cfg.self, .run_id = n->cfg.run_id };
    memcpy(c->mine.topo_hash, n->cfg.topo_hash, NET_HASH_LEN);
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
    if (!c->outbound) {
        struct peer *pr = node_peer(n, peer.id, 1);
        if (!pr) return conn_fatal(c, "out of memory");
        pthread_mutex_lock(&n->lk);
        int st = pr->state;
        pthread_mutex_unlock(&n->lk);
        if (st != P_NEW || pr->conn) {
            net_seterr(msg, "refused a second connection from %s (%s): it is %s", who,
                     c->addr, st == P_DEAD ? "already declared dead" : "already connected");
            return conn_fatal(c, msg);
        }
        c->pr = pr;
    }
    memcpy(c->peer_hello, c->ctl, NET_HELLO_LEN);
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
    char err[NET_ERR_LEN], msg[NET_ERR_LEN + 64];
    if (net_auth_verify(c->ctl, c->ctl_len, n->secret, n->cfg.secret_len, c->peer_hello,
                        c->my_hello, err) != NET_OK) {
        net_seterr(msg, "%s (%s): %s", pr->name, c->addr, err);
        return conn_fatal(c, msg);
    }
    if (pr->conn && pr->conn != c) {
        net_seterr(msg, "refused a second connection from %s (%s)", pr->name, c->addr);
        return conn_fatal(c, msg);
    }
    c->state = CS_READY;
    n->npending -= c->pending;
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
        list_push(&c->wq, op);
    }
    return conn_write_now(c);
}
