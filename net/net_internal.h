/* net_internal.h — private structures of net/, shared by net_node.c and
 * net_ops.c (the API the compute threads call: nodes and peers; operations),
 * net_loop.c (the network thread: commands, timers, connecting, accepting),
 * net_conn.c (one connection: reading into receive buffers), net_tx.c (writing
 * frames) and net_handshake.c (hello and authentication). Not installed; not
 * for other modules.
 *
 * Ownership: fields marked [lock] are read and written under node->lk by any
 * thread; fields marked [net] belong to the network thread alone; fields marked
 * [tx] are read and written under the peer's txlk by any thread.
 *
 * Direct writes: a thread posting a send of at most cfg.direct_max bytes writes
 * the frame to the socket itself when nothing is ahead of it (peer->tx_conn is
 * set and tx_ahead is 0), which saves two thread hand-offs per message; larger
 * sends stay asynchronous, so the copy into the kernel overlaps compute. Everything else goes through the
 * network thread's write queue. The network thread sets tx_conn only when its
 * queue for that connection is empty, and clears it (under txlk) before it
 * queues anything, so at most one thread writes a connection's socket at a
 * time. A frame the socket took only part of is left in tx_partial and the
 * network thread writes the rest before anything else (tx_claim).
 * Lock order: txlk before lk. */
#ifndef NET_NET_INTERNAL_H
#define NET_NET_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "net/net.h"
#include "net/net_util.h"
#include "net/net_wire.h"

struct event;
struct event_base;
struct evbuffer;
struct iovec;

enum op_kind { OP_SEND, OP_RECV, OP_CTRL, OP_UNCLAIMED };
/* Where a pending op sits, so a cancel can find it [net]. */
enum op_where { W_NONE, W_SENDQ, W_WQ, W_RECVQ, W_READING, W_UNCLAIMED,
                W_PARTIAL /* half written by the posting thread: peer->tx_partial */ };

struct net_op {
    struct net_node *node;        /* NULL once the node is gone [lock] */
    int kind, where;
    net_peer_id peer;
    net_key key;
    struct peer *pr;
    const uint8_t *sbuf;          /* send payload (caller's, or owned for OP_CTRL) */
    uint8_t *rbuf;                /* receive destination */
    uint64_t cap, len, off;       /* capacity; payload length; progress */
    uint32_t crc;                 /* payload CRC32C: computed (send) or announced (receive) */
    uint16_t hflags;              /* receive: the frame header's flags (net_op_tag) */
    uint32_t crc_run;             /* receive: CRC32C of the bytes that arrived, computed by the
                                     network thread as they land (while still in cache) */
    int own;                      /* rbuf / sbuf malloc'd by the transport */
    int verify;                   /* receive whose CRC has not been checked yet */
    int complete_read;            /* OP_UNCLAIMED: whole payload is in */
    int routed;                   /* send handed to the network thread: counted in tx_ahead */
    int direct;                   /* send: 1 written wholly by the posting thread, 2 in part */
    int seal;                     /* frame goes out sealed (queued once the connection was READY
                                     on an encrypting node) [net] */
    int queued_only;              /* send: NET_SEND_QUEUED (not written by the posting thread
                                     while a receive posted before it is still queued) */
    int posted;                   /* receive waiting in peer->posted [lock] */
    struct net_task *on_done;     /* net_nt_recv: task run on the network thread once this
                                     completes (net_coll.c) */
    uint64_t slice;               /* net_nt_recv_sliced: rbuf is a scratch of this many bytes,
                                     reused slice by slice (op_dst); 0: the payload lands whole */
    void (*slice_fn)(void *arg, const void *p, uint64_t n, uint64_t at); /* gets each slice */
    void *slice_arg;
    uint8_t hdr[NET_HDR_LEN];
    atomic_int done;              /* OP_PENDING, OP_SLEEPER (pending, a thread sleeps on
                                     this word) or OP_DONE; see op_done, net_wait */
    int cancel_ack;               /* the network thread has seen our cancel [lock] */
    int status;
    char err[NET_ERR_LEN];
    struct net_op *next, *prev;   /* queue links [net] */
    struct net_op *lnext, *lprev; /* node->live links [lock] */
};

struct oplist { struct net_op *head, *tail; };

enum { OP_PENDING = 0, OP_DONE = 1, OP_SLEEPER = 2 };

static inline int op_done(const struct net_op *op)
{
    return atomic_load_explicit(&op->done, memory_order_acquire) == OP_DONE;
}

enum peer_state { P_NEW, P_CONNECTING, P_READY, P_DEAD };

/* Peer records exist only for identities this process asked for (connect,
 * send, receive, wait) or that authenticated: never for a stranger. They are
 * found by identity through node->bucket (peer_locked), so a lookup does not
 * grow with their number. */
struct peer {
    struct peer *next;            /* node->peers, never removed before node_free */
    struct peer *hnext;           /* node->bucket chain */
    net_peer_id id;
    char name[48];
    int state;                    /* enum peer_state [lock] */
    int status;                   /* NET_DEAD or NET_CLOSED once dead [lock] */
    char reason[NET_ERR_LEN];     /* [lock] */
    net_stats st;                 /* [lock] */
    struct conn *conn;            /* the authenticated connection [net] */
    struct oplist sendq;          /* sends waiting for the connection [net] */
    struct oplist recvq;          /* posted receives, oldest first [net] */
    struct oplist unclaimed;      /* messages nobody asked for yet [net] */
    int nunclaimed;               /* how many, counting one being read [lock] */
    struct oplist posted;         /* receives posted without waking the network thread,
                                     oldest first; it moves them to recvq (posted_take) [lock] */
    char host[256];               /* where to connect, when we connect [net] */
    int port, backoff_ms, connecting;
    int64_t deadline;
    char last_err[NET_ERR_LEN];   /* last connect failure [net] */
    struct event *retry_ev;       /* [net] */
    uint8_t *spare;               /* one recycled unclaimed-message buffer [net] */
    uint64_t spare_cap;
    struct net_node *node;
    pthread_mutex_t txlk;         /* guards the [tx] fields and direct writes */
    struct conn *tx_conn;         /* connection a posting thread may write to, or NULL [tx] */
    struct net_op *tx_partial;    /* frame a posting thread wrote only part of [tx] */
    struct conn *tx_pconn;        /* the connection tx_partial went out on [tx] */
    atomic_int tx_ahead;          /* routed sends not yet completed */
    uint64_t refused;             /* inbound connections claiming this identity refused
                                     before authenticating (net_refusals) [lock] */
    char refusal[NET_ERR_LEN];    /* the last such reason [lock] */
};

enum conn_state {
    CS_CONNECTING, /* non-blocking connect in progress; waiting for writability */
    CS_HELLO,      /* our hello is queued; waiting for the peer's hello */
    CS_AUTH,       /* our proof is queued; waiting for the peer's proof */
    CS_READY,      /* authenticated: data frames flow both ways */
    CS_CLOSING     /* an error or goodbye frame is flushing; then the socket closes */
};
enum read_state { RS_HDR, RS_PAYLOAD, RS_PAUSED,
                  RS_TAG /* sealed: the payload is in, its 16-byte tag is next */ };
enum sink { SINK_OP, SINK_CTL, SINK_DISCARD };

#define NET_RBUF (64 * 1024)
#define NET_RBUF_PREAUTH 512      /* staging buffer before authentication: a header and the
                                     largest pre-auth payload (NET_PREAUTH_MAX) fit */
#define NET_CTL_MAX 1024
#define NET_TXBUF (256u << 10)    /* encrypting: sealed bytes staged per connection once READY
                                     (NET_RBUF_PREAUTH before: hello, proof, a refusal) */
#define NET_PEER_BUCKETS 64       /* node->bucket: peer records by identity */

struct conn {
    struct net_node *node;
    struct conn *next, *prev;     /* node->conns */
    int fd, state, outbound, fatal;
    int pending;                  /* counted in node->npending */
    int big;                      /* the last frame was large: read headers in small bites */
    int draining;                 /* shutting down: shut for writing, reading until the peer closes */
    uint64_t read_calls;
    struct peer *pr;              /* known at connect; once authenticated when accepted */
    net_peer_id claim;            /* accepted: the identity its hello claims (claimed set) */
    int claimed;
    int expired;                  /* dropped at the handshake deadline (not counted as refused) */
    int64_t accepted_at;          /* accepted: when (the handshake deadline counts from it) */
    char src[64];                 /* accepted: the source address, without the port */
    struct event *rev, *wev;
    int wev_on, rev_on;
    int rstate, sink;
    uint8_t *rb;                  /* staging buffer, rbcap bytes (NET_RBUF once authenticated) */
    size_t rbcap;
    size_t rpos, rlen;
    net_hdr h;                    /* header of the frame being read */
    uint64_t rleft;               /* payload bytes of it still to read */
    struct net_op *rop;           /* SINK_OP target */
    uint8_t ctl[NET_CTL_MAX];     /* SINK_CTL payload (hello, proof, reason) */
    uint64_t ctl_len;
    struct evbuffer *evb;         /* NET_READ_EVBUFFER only */
    struct oplist wq;             /* frames to write, in order */
    int64_t last_rx, last_tx, close_at;
    uint8_t my_hello[NET_HELLO_LEN], peer_hello[NET_HELLO_LEN];
    net_hello mine;
    /* Encrypting node (cfg.encrypt): every frame, clear or sealed, is written
     * through txbuf (see net_tx.c) and direct writes are off. [net] */
    int crypt;
    int aead;                     /* agreed in the hellos (enum net_aead) */
    struct net_seal *tx_seal, *rx_seal; /* keyed at the hello; NULL when not encrypting */
    int tx_sealed;                /* frames queued from now on are sealed (set when READY) */
    int rx_sealed;                /* frames read from now on are sealed (the peer's proof verified) */
    int open_failed;              /* libcrypto failed decrypting the payload being read */
    uint8_t *txbuf;               /* frames as they go on the wire: tx_pos..tx_end not yet sent */
    size_t txcap, tx_pos, tx_end;
    uint8_t hplain[NET_HDR_LEN];  /* opened header of the frame being read (the payload's AAD) */
    char addr[300];
};

/* Bytes already on their way (sealed or copied into txbuf) and not yet
 * written: the stream is not at a frame boundary for a new writer. */
static inline int conn_tx_busy(const struct conn *c) { return c->tx_pos < c->tx_end; }

enum cmd_kind { CMD_SEND, CMD_RECV, CMD_CANCEL, CMD_CONNECT, CMD_SHUTDOWN,
                CMD_FLUSH /* finish pr->tx_partial */, CMD_FORGET /* net_peer_forget */,
                CMD_CLOSE /* net_peer_close */ };
struct cmd {
    int kind;
    struct net_op *op;
    struct peer *pr;
    char host[256];              /* CMD_CONNECT; CMD_CLOSE: the reason */
    int port;
    struct cmd *next;
};

struct net_node {
    net_config cfg;
    uint8_t *secret;
    char listen_host[256];
    char name[48];
    pthread_mutex_t lk;
    pthread_cond_t cv;            /* any op done, peer state change, room in a send queue */
    struct cmd *qhead, *qtail;    /* [lock] */
    int recv_cmds;                /* CMD_RECV queued or being carried out (NET_SEND_QUEUED;
                                     while > 0 no receive takes the posted shortcut) [lock] */
    int efd;                      /* eventfd that wakes the loop */
    int closing;                  /* no new work accepted [lock] */
    int exited;                   /* the network thread has left its loop [lock] */
    int other_waiters;            /* threads asleep on cv for anything but one op [lock] */
    struct peer *peers;           /* [lock] for the list itself */
    struct peer *bucket[NET_PEER_BUCKETS]; /* the same records by identity [lock] */
    net_preauth pre;              /* [lock] */
    struct net_op *live;          /* user ops not yet freed [lock] */
    pthread_t thr;
    int thr_started;
    /* [net] */
    struct event_base *base;
    struct event *wake_ev, *listen_ev, *tick_ev, *linger_ev;
    int lfd, port;
    struct conn *conns;
    int npending;                 /* accepted connections not yet authenticated */
    int64_t log_window;           /* start of the refusal log's current second */
    int log_lines;                /* refusal lines logged in it */
    uint64_t log_dropped;         /* refusal lines left out since the last summary */
    int stopping;                 /* 1: shutting down; 2: every goodbye queued */
    /* net_coll.c: tasks run on the network thread (net_task_post) */
    struct net_task *tasks, *tasks_tail; /* scheduled, in order [lock] */
    struct net_task *task_running; /* the one running now [lock] */
    struct event *task_ev;        /* timer of 0 ms: runs them on the loop's next pass [net] */
    struct event *task_now_ev;    /* made active: runs them after the current callback [net] */
    int tasks_running;            /* 1 while tasks_run runs [net] */
};

/* Counts a change of node->npending, mirrored (with its peak) in n->pre [net]. */
static inline void pending_add(struct net_node *n, int d)
{
    n->npending += d;
    pthread_mutex_lock(&n->lk);
    n->pre.pending = n->npending;
    if (n->pre.pending > n->pre.pending_max) n->pre.pending_max = n->pre.pending;
    pthread_mutex_unlock(&n->lk);
}

/* An error frame whose reason starts with this says "not now": the connecting
 * side retries instead of giving up (pre-auth slots full). */
#define NET_BUSY_PREFIX "busy: "

/* net_node.c */
struct peer *node_peer(struct net_node *n, net_peer_id id, int create); /* takes lk */
struct peer *peer_locked(struct net_node *n, net_peer_id id, int create);
int push_cmd_locked(struct net_node *n, struct cmd *c); /* 1: call wake_loop after unlocking */
void wake_loop(struct net_node *n);
void live_add_locked(struct net_node *n, struct net_op *op);
void live_del_locked(struct net_node *n, struct net_op *op);
int cv_wait(struct net_node *n, int64_t deadline);      /* ms, monotonic; < 0: forever */
int64_t deadline_of(int timeout_ms);
void node_log(struct net_node *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* node_log for refusals of unauthenticated peers, at most NET_REFUSAL_LOG_PER_S
 * lines a second; then one line saying how many were left out [net]. */
void node_log_limited(struct net_node *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void node_log_flush(struct net_node *n, int64_t now); /* the summary, once its second is over [net] */
void op_free_internal(struct net_op *op);
void list_push(struct oplist *l, struct net_op *op);
void list_remove(struct oplist *l, struct net_op *op);
struct net_op *ctrl_frame(struct net_node *n, uint16_t type, const void *payload, uint32_t len);
/* A new send op with its header encoded, or a new receive op (net_ops.c), for
 * net_send_ex / net_recv_post and the network thread's net_nt_send /
 * net_nt_recv; arguments checked in `who`'s name. NET_OK with *out (owned by
 * the caller until posted), else an error in err and *out NULL. */
int op_send_new(struct net_node *n, net_peer_id peer, net_key key, const void *buf, uint64_t len, int flags,
                uint32_t crc, const char *who, struct net_op **out, char err[NET_ERR_LEN]);
int op_recv_new(struct net_node *n, net_peer_id peer, net_key key, void *dst, uint64_t cap, const char *who,
                struct net_op **out, char err[NET_ERR_LEN]);
int key_eq_hdr(const net_key *k, const net_hdr *h);

/* net_ops.c */
void op_complete(struct net_node *n, struct net_op *op, int status, const char *reason);
void frame_received(struct net_node *n, struct peer *pr, uint64_t len, uint64_t read_calls,
                    struct net_op *rop);
void posted_take_locked(struct peer *pr); /* network thread, lk held: posted -> recvq */
void posted_take(struct net_node *n, struct peer *pr);

/* net_loop.c */
/* Tests only (NULL otherwise): called on the network thread by wake_cb after
 * it took the command queue (node->qhead is empty again) and before it carries
 * out any of those commands, so a test can post while commands sit in that
 * window. Set it before the nodes start and clear it after they are freed. */
extern void (*net_test_cmds_taken)(struct net_node *n);
void *loop_main(void *arg);
void loop_send(struct net_node *n, struct net_op *op); /* what CMD_SEND does [net] */
void loop_recv(struct net_node *n, struct net_op *op); /* what CMD_RECV does [net] */
void loop_peer_fail(struct net_node *n, struct peer *pr, int status, const char *reason);
void loop_connect_retry(struct net_node *n, struct peer *pr, const char *why);
int loop_maybe_finish(struct net_node *n);  /* 1: shutdown done, no conn left */
void loop_deliver_unclaimed(struct net_node *n, struct peer *pr, struct net_op *u);
int loop_listen(struct net_node *n, char err[NET_ERR_LEN]);

/* net_conn.c */
struct conn *conn_new(struct net_node *n, int fd, int outbound, struct peer *pr, const char *addr);
void conn_start(struct conn *c);                 /* socket connected: send hello */
void conn_fail(struct conn *c, int status, const char *reason);
void conn_free(struct conn *c);
void conn_drop(struct conn *c, int status, const char *reason); /* close now; fail what is in flight */
void conn_recv_posted(struct conn *c);           /* a receive was posted: resume if paused */
void conn_read_cb(int fd, short what, void *arg);
void conn_set_read(struct conn *c, int on);
int conn_fatal(struct conn *c, const char *reason); /* tell the peer why, close; returns -1 */
/* "stage 2" once known; "unauthenticated peer claiming stage 6" or
 * "unauthenticated peer" for an accepted connection before its proof. */
const char *conn_who(const struct conn *c, char *buf, size_t cap);
int conn_preauth(const struct conn *c);          /* accepted and not yet authenticated */

/* net_tx.c */
int conn_write_now(struct conn *c);       /* -1: the connection was closed and freed */
int conn_enqueue(struct conn *c, struct net_op *op);     /* -1: c was closed and freed */
void conn_write_cb(int fd, short what, void *arg);
void tx_claim(struct conn *c);            /* stop direct writes on c; queue its half-written frame */
int frame_iov(const struct net_op *op, struct iovec *iov); /* unsent part of op's frame: 0-2 entries */
ssize_t net_sendv(int fd, struct iovec *iov, int cnt);    /* sendmsg without SIGPIPE */

/* net_coll.c */
/* Where the next payload byte of receive op lands; *room (if not NULL): how
 * many may land there in one go (a sliced receive's scratch ends; else
 * UINT64_MAX) [net]. */
uint8_t *op_dst(const struct net_op *op, uint64_t *room);
/* n bytes landed at op_dst(op) (checksummed or opened): op->off moves on, and
 * a sliced receive's full slice (or its payload's last) goes to slice_fn [net]. */
void op_advance(struct net_op *op, uint64_t n);
/* A payload that arrived whole before its receive was posted: copied into
 * rbuf, or for a sliced receive handed to slice_fn slice by slice from src [net]. */
void op_put_whole(struct net_op *op, const uint8_t *src, uint64_t len);
void tasks_push_locked(struct net_node *n, struct net_task *t); /* schedule t (lk held) */
void tasks_kick(struct net_node *n);   /* after tasks_push_locked, lk dropped: get them run */
void tasks_run(struct net_node *n);    /* run every scheduled task [net] */

/* net_handshake.c */
int conn_on_hello(struct conn *c);               /* the peer's hello is in c->ctl */
int conn_on_auth(struct conn *c);                /* the peer's proof is in c->ctl */

#endif
