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

/* A sliced receive's consumer: k bytes of the payload, at payload offset at,
 * at p (see net_nt_recv_sliced). Network thread. */
typedef void (*net_slice_fn)(void *arg, const void *p, uint64_t k, uint64_t at);

/* net_nt_recv for a consumer that reads the payload once while it is in cache
 * (a reduce-scatter adds it into place), so that it need not land anywhere
 * big: the payload (at most cap bytes) is read from the socket into scratch,
 * slice bytes (> 0) at a time, and each time scratch is full, or the payload
 * ends, fn(arg, p, k, at) gets those k bytes at payload offset at, in payload
 * order, on the network thread, before the next bytes are read over them. A
 * message that had come before the receive was posted is handed to fn the
 * same way (from net's own buffer) while this call runs. The bytes fn sees are
 * NOT verified yet: the frame's CRC32C (sealed: its tag) covers the whole
 * payload and is checked as usual when the op completes, so fn may only
 * compute from them into memory that the caller throws away when net_op_test
 * (or net_wait) then reports a failure (a checksum mismatch names the peer);
 * fn must not call net/. Receives from one peer may share a scratch (its one
 * connection reads one frame at a time). Network thread only (inside a
 * task); same returns and ownership as net_nt_recv (net_op_len, net_op_crc
 * as usual); scratch and arg stay the caller's and must outlive the op (fn
 * is not called once net_op_free has returned). */
int net_nt_recv_sliced(struct net_node *node, net_peer_id peer, net_key key, uint64_t cap, void *scratch,
                       uint64_t slice, net_slice_fn fn, void *arg, struct net_task *on_done,
                       struct net_op **op, char err[NET_ERR_LEN]);

#endif
