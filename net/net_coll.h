/* net_coll.h — running work on the network thread, for collectives (coll/):
 * a task scheduled from any thread runs on the network thread, where it may
 * post sends and receives without a hand-off (net_nt_send, net_nt_recv) and
 * be run again whenever one of its receives completes. A ring all-reduce then
 * adds and forwards each chunk on the thread that read it, with no wake-up of
 * another thread per chunk; the compute thread posts the collective and
 * waits for its end. DESIGN.md's rule holds: only the network thread touches
 * a socket. */
#ifndef NET_NET_COLL_H
#define NET_NET_COLL_H

#include <stdint.h>

#include "net/net.h"

/* A unit of work for the network thread. Owned by the caller, who must keep
 * it alive while it is scheduled or running (net_task_forget). */
struct net_task {
    void (*fn)(void *arg); /* runs on the network thread, never twice at once */
    void *arg;
    int queued;            /* scheduled and not yet started [node lock] */
    struct net_task *next; /* [node lock] */
};

/* Schedules t to run once on the network thread (soon; a task already
 * scheduled and not yet started runs once). Any thread, the network thread
 * included. Returns NET_OK, or NET_CLOSED with err when the node is closing
 * (t is not scheduled). */
int net_task_post(struct net_node *node, struct net_task *t, char err[NET_ERR_LEN]);

/* Unschedules t and waits until it is not running, so that its memory may
 * go: it runs no more unless posted again (a receive posted with t as its
 * on_done must be freed first). Any thread but the network thread. */
void net_task_forget(struct net_node *node, struct net_task *t);

/* Network thread only (inside a task): net_send_ex's and net_recv_post's
 * twins. They never wait: a send is queued on the connection (or until the
 * peer is connected) whatever is queued already, so the task bounds what it
 * has in flight itself; a receive is in place when they return, so a message
 * sent after it (e.g. "I am ready") cannot overtake it. flags: NET_SEND_CRC
 * only. on_done (may be NULL): a task scheduled whenever the receive
 * completes (successfully or not). Same returns and ownership as
 * net_send_ex/net_recv_post: on NET_OK *op is the caller's, tested with
 * net_op_test (allowed on the network thread: it does not block) and
 * released with net_op_free once completed (a pending op must be freed by
 * another thread: net_op_free cancels through the network thread). */
int net_nt_send(struct net_node *node, net_peer_id peer, net_key key, const void *buf,
                uint64_t len, int flags, uint32_t crc, struct net_op **op, char err[NET_ERR_LEN]);
int net_nt_recv(struct net_node *node, net_peer_id peer, net_key key, void *dst, uint64_t cap,
                struct net_task *on_done, struct net_op **op, char err[NET_ERR_LEN]);

#endif
