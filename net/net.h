/* net.h — pipetrain's transport: one process-wide node that talks TCP to a few
 * peers (pipeline stages and a coordinator), carries checksummed frames, proves
 * both ends know a shared secret, notices dead peers and bounds its memory.
 *
 * Thread model: net_node_new starts one network thread that owns a libevent
 * event_base and every socket. All other functions here may be called from any
 * other thread; they hand work to the network thread through a locked queue and
 * an eventfd wake-up, and never touch libevent objects.
 *
 * The compute side posts sends and receives and waits on the returned
 * net_op handles. Receives are matched by (peer, message key) in FIFO order.
 * net/ knows nothing about models or schedules: a key is four numbers.
 * The wire format itself (frames, hello, authentication) is in net_wire.h. */
#ifndef NET_NET_H
#define NET_NET_H

#include <stddef.h>
#include <stdint.h>

#define NET_ERR_LEN 512
#define NET_HASH_LEN 32               /* SHA-256 of the canonical topology */
#define NET_MAX_PAYLOAD_CAP (1ull << 30) /* hard cap on any payload: 1 GiB */
#define NET_TYPE_USER 16              /* message types below this are the transport's */
#define NET_TYPE_COLL (NET_TYPE_USER + 48) /* ..+7: coll/ (collectives); stage/proto.h stays below */
#define NET_MAX_PENDING 64            /* unauthenticated inbound connections served at once */
#define NET_PREAUTH_PER_SOURCE 16     /* ... of them from one source address */
#define NET_HANDSHAKE_MS 5000         /* default net_config.handshake_ms */
#define NET_REFUSAL_LOG_PER_S 10      /* refusals of unauthenticated peers logged per second */
#define NET_DIRECT_MAX (64u << 10)    /* default net_config.direct_max */

/* Status codes returned by every run-time function (detail goes into err). */
enum net_status {
    NET_OK = 0,
    NET_ERR = -1,       /* bad argument, protocol or checksum error */
    NET_TIMEOUT = -2,   /* the wait ran out; the operation is still pending */
    NET_DEAD = -3,      /* the peer failed (closed, timed out, refused) */
    NET_CLOSED = -4,    /* the node is shutting down, or the peer said goodbye */
    NET_CANCELLED = -5, /* the operation was cancelled by its owner */
    NET_PENDING = 1     /* not finished yet (net_op_test, net_peer_status) */
};

/* NET_ROLE_SERVER: a parameter server (issue 12), its index in `stage`, replica 0. */
enum net_role { NET_ROLE_STAGE = 1, NET_ROLE_COORD = 2, NET_ROLE_SERVER = 3 };

/* Who a process is. Small and passed by value; compare with net_peer_eq.
 * A stage with replicas is (stage, replica); the coordinator is role COORD. */
typedef struct net_peer_id {
    uint8_t role;     /* enum net_role */
    uint16_t stage;
    uint16_t replica;
} net_peer_id;

/* Identifies one message between two peers; receives match on all four. */
typedef struct net_key {
    uint16_t type;    /* >= NET_TYPE_USER */
    uint64_t step;
    uint32_t mb;      /* micro-batch */
    uint32_t chunk;
} net_key;

enum net_read_mode {
    NET_READ_DIRECT = 0,   /* bulk payloads read(2) straight into the destination */
    NET_READ_EVBUFFER = 1  /* through evbuffer_read (clamped to 4 KiB by libevent 2.1); for measuring */
};

typedef struct net_config {
    net_peer_id self;
    uint64_t run_id;                  /* both ends must agree */
    uint8_t topo_hash[NET_HASH_LEN];  /* opaque; both ends must agree */
    const uint8_t *secret;            /* shared secret, copied; at least 16 bytes */
    size_t secret_len;
    const char *listen_host;          /* NULL: do not listen. Never defaults to all interfaces */
    int listen_port;                  /* 0: an ephemeral port (see net_node_port) */
    uint64_t max_payload;             /* largest accepted payload; default and cap 1 GiB */
    int heartbeat_ms;                 /* idle heartbeat period, default 1000 */
    int dead_ms;                      /* silence after which a peer is dead, default 10000 */
    int connect_deadline_ms;          /* net_connect keeps retrying this long, default 30000 */
    uint64_t max_queued;              /* bytes of sends queued per peer before net_send waits (256 MiB) */
    uint64_t max_unclaimed;           /* bytes buffered per peer for messages nobody posted a
                                         receive for, before reading from it stops (256 MiB) */
    int linger_ms;                    /* how long net_node_free tries to flush sends, default 1000 */
    int read_mode;                    /* enum net_read_mode */
    uint64_t direct_max;              /* a posting thread writes a frame of at most this many
                                         payload bytes to the socket itself when nothing is
                                         queued ahead of it (default 64 KiB: small messages
                                         skip two thread hand-offs; larger ones stay
                                         asynchronous); 0: only the network thread writes */
    int encrypt;                      /* 1: seal every frame after the handshake with an AEAD
                                         (net_wire.h, "Sealed frames"); both ends must agree,
                                         or the handshake is refused. Default 0 */
    int aead;                         /* with encrypt: the AEAD to prefer (enum net_aead in
                                         net_wire.h); 0: the faster on this CPU */
    int handshake_ms;                 /* an accepted connection must finish the handshake this
                                         long after accept(2), default NET_HANDSHAKE_MS; it is
                                         closed then however much it is still sending */
    /* Identity check for inbound peers, called on the network thread with the
     * identity an unauthenticated hello claims, before anything is looked up
     * or allocated for it. Returns 1 to go on with the handshake, 0 to refuse
     * it with a reason written into why (NET_ERR_LEN). NULL: any identity. */
    int (*accept_peer)(void *arg, net_peer_id id, char *why);
    void *accept_arg;
    void (*log)(void *arg, const char *line); /* NULL: stderr */
    void *log_arg;
} net_config;

/* Counters for one peer (net_peer_stats). */
typedef struct net_stats {
    uint64_t queued, queued_max;         /* bytes of sends posted and not yet written; peak */
    uint64_t unclaimed, unclaimed_max;   /* bytes received with no receive posted; peak */
    uint64_t frames_tx, frames_rx, bytes_tx, bytes_rx;
    uint64_t read_calls;                 /* read(2)/evbuffer_read calls made for this peer */
    uint64_t rx_staged;                  /* payload bytes for a posted receive that went through the
                                          * connection's staging buffer (copied twice) */
    uint64_t direct_tx;                  /* frames written wholly by the posting thread */
    uint64_t direct_partial;             /* frames it wrote in part, the rest left to the network thread */
    int paused;                          /* 1 while reading is stopped for backpressure */
} net_stats;

/* What unauthenticated connections cost a node (net_preauth_stats). */
typedef struct net_preauth {
    uint64_t accepted;       /* inbound connections accepted */
    uint64_t refused;        /* closed during the handshake with a reason (bad hello, identity,
                                proof, frame) */
    uint64_t evicted;        /* closed to make room: pre-auth slots (or the source's) full */
    uint64_t timed_out;      /* closed at the handshake deadline */
    uint64_t suppressed;     /* refusal log lines left out by the rate limit */
    int pending, pending_max; /* unauthenticated connections now; peak */
} net_preauth;

struct net_node;
struct net_op;

/* Fills cfg with the defaults listed above (no secret, no listen address). */
void net_config_init(net_config *cfg);

/* 1 when a and b name the same process. */
int net_peer_eq(net_peer_id a, net_peer_id b);

/* Convenience constructors. */
net_peer_id net_stage_id(uint16_t stage, uint16_t replica);
net_peer_id net_coord_id(void);
/* Parameter server j: { NET_ROLE_SERVER, j, 0 }. Any thread. */
net_peer_id net_server_id(uint16_t j);

/* Writes "stage 2", "stage 2 replica 1", "server 1" or "coordinator" into buf (cap >= 32);
 * returns buf. */
const char *net_peer_name(net_peer_id p, char *buf, size_t cap);

/* Creates a node: binds and listens on cfg->listen_host:listen_port (when
 * listen_host is set) and starts the network thread. Returns NULL and writes err
 * on a bad config or when the address cannot be bound. Free with net_node_free. */
struct net_node *net_node_new(const net_config *cfg, char err[NET_ERR_LEN]);

/* Clean shutdown: stops taking work, fails posted receives with NET_CLOSED, tries
 * for linger_ms to flush queued sends, says goodbye to every peer and waits
 * (within the same linger_ms) for each to close its end, so that the goodbye is
 * not lost to a reset, closes every socket and joins the network thread. Ops still held by the caller complete
 * (NET_CLOSED if unsent) and must still be released with net_op_free; after
 * this returns, net_wait/net_op_test/net_op_take/net_op_free are the only calls
 * allowed on them. No other thread may be inside a net_ call on this node while
 * it is being freed. NULL: no-op. */
void net_node_free(struct net_node *node);

/* The port the node listens on (useful with listen_port 0), or -1. */
int net_node_port(const struct net_node *node);

/* 1 when the node seals every frame after the handshake (cfg.encrypt): its
 * frames' CRC32C field is 0 and a checksum passed with NET_SEND_CRC is
 * ignored (the AEAD tag authenticates the payload), so a caller need not
 * compute one. 0 otherwise, or for NULL. Any thread. */
int net_node_seals(const struct net_node *node);

/* Starts connecting to peer at host:port, retrying with backoff until
 * connect_deadline_ms; returns at once (NET_OK) or NET_ERR for bad arguments.
 * Failure to connect in time marks the peer dead with a reason naming it and the
 * address. Only one side of each pair connects; the other side just listens.
 * A peer once dead stays dead for this node's lifetime (NET_ERR with its reason). */
int net_connect(struct net_node *node, net_peer_id peer, const char *host, int port,
                char err[NET_ERR_LEN]);

/* Forgets a dead peer (issue 12: an asynchronous parameter-server run drops a
 * dead worker and later takes a new process with its identity): once the
 * network thread has handled it, a peer that was NET_DEAD/NET_CLOSED and has
 * no connection left is unknown again (net_peer_status NET_PENDING), its
 * unclaimed messages are dropped, and an inbound connection may authenticate
 * as it. Asynchronous: returns NET_OK when the request was queued (or there
 * is nothing to forget: unknown peer), NET_ERR when the peer is not dead
 * (nothing done) or out of memory. A peer this node connects to stays
 * unreconnectable (net_connect needs P_NEW and is not retried). Any thread
 * but the network thread. */
int net_peer_forget(struct net_node *node, net_peer_id peer);
/* Declares peer dead with `reason` (at most 255 bytes kept) and closes its
 * connection, if any: the peer is told the reason (an error frame) before the
 * socket closes; its pending operations fail with NET_DEAD. Used by an
 * asynchronous parameter-server run to drop a worker whose process is still
 * alive (issue 12), so that its identity can be forgotten (net_peer_forget,
 * which may be called right after: commands are carried out in order) and
 * taken by a new process. A peer never seen before is recorded dead, so a
 * connection claiming it is refused with the reason. Asynchronous: NET_OK
 * when queued (or the node is closing), NET_ERR out of memory. Any thread
 * but the network thread. */
int net_peer_close(struct net_node *node, net_peer_id peer, const char *reason);
/* Waits until peer is connected and authenticated (NET_OK), has failed
 * (NET_DEAD/NET_CLOSED, reason in err) or timeout_ms passes (NET_TIMEOUT).
 * timeout_ms < 0 waits forever. */
int net_wait_peer(struct net_node *node, net_peer_id peer, int timeout_ms, char err[NET_ERR_LEN]);

/* Peer state without waiting: NET_OK (ready), NET_PENDING (unknown or connecting),
 * or NET_DEAD / NET_CLOSED with the reason in err. */
int net_peer_status(struct net_node *node, net_peer_id peer, char err[NET_ERR_LEN]);

/* 1 and the first failed peer and its reason when any peer has failed, else 0. */
int net_any_failed(struct net_node *node, net_peer_id *peer, char err[NET_ERR_LEN]);

/* How many inbound connections claiming to be peer were refused before they
 * authenticated, with the last reason in why (may be NULL). Counted only for
 * identities this node already knows (asked about, connected to or posted
 * for): strangers never get a record. Any thread. */
uint64_t net_refusals(struct net_node *node, net_peer_id peer, char why[NET_ERR_LEN]);

/* Counters of unauthenticated connections (see net_preauth). Any thread. */
void net_preauth_stats(struct net_node *node, net_preauth *st);

/* Counters for peer; NET_ERR when the peer is unknown. */
int net_peer_stats(struct net_node *node, net_peer_id peer, net_stats *st);

/* Posts a send of len bytes at buf to peer under key. Zero-copy: buf must stay
 * valid and unchanged until the op completes (net_wait returns anything but
 * NET_TIMEOUT). The payload checksum is computed here, on the calling thread
 * (not on an encrypting node, cfg.encrypt: a sealed frame's CRC32C field is
 * 0, the AEAD tag authenticates the payload; net_wire.h "Sealed frames").
 * When more than max_queued bytes are already queued for peer, waits up to
 * timeout_ms (< 0: forever) for room and returns NET_TIMEOUT without posting.
 * On NET_OK *op is the handle; release it with net_op_free. Sends may be posted
 * before the peer is connected; they go out once it is authenticated. */
int net_send(struct net_node *node, net_peer_id peer, net_key key, const void *buf,
             uint64_t len, int timeout_ms, struct net_op **op, char err[NET_ERR_LEN]);

/* Options of net_send_ex (a bit set). */
enum net_send_flag {
    /* crc is the CRC32C (net_crc32c(0, buf, len)) of the payload, computed by
     * the caller, e.g. in the pass that wrote buf, or taken from the receive
     * that delivered these bytes (net_op_crc): net_send_ex does not read the
     * payload to compute it. A wrong value makes the receiver fail the message
     * with a checksum mismatch. On an encrypting node the value is ignored
     * (the frame carries 0, see net_send). */
    NET_SEND_CRC = 1,
    /* Written after every receive posted before it (from any thread) is in
     * place: by the posting thread as usual when none of them waits in the
     * network thread's queue, else by the network thread after them. A
     * signal that announces posted receives ("send now, I am ready") cannot
     * then overtake a receive that net_recv_post handed to that queue. */
    NET_SEND_QUEUED = 2,
};
/* A 4-bit payload tag (0..15) for net_send_ex's flags: written into the frame
 * header's flags bits 8-11 (net_wire.h) and handed to the receiver with the
 * payload (net_op_tag). Opaque to net/; stage/ puts the tensor encoding there
 * (base/wire_codec.h enum wire_enc; 0 = plain float32). */
#define NET_SEND_TAG(t) (((int)(t) & 0xf) << 8)

/* net_send with options (flags: enum net_send_flag; crc: see NET_SEND_CRC,
 * ignored without it). Same contract, returns and ownership as net_send;
 * net_send(...) is net_send_ex(..., 0, 0, ...). Any thread but the network
 * thread. */
int net_send_ex(struct net_node *node, net_peer_id peer, net_key key, const void *buf,
                uint64_t len, int flags, uint32_t crc, int timeout_ms, struct net_op **op,
                char err[NET_ERR_LEN]);

/* Posts a receive from peer for key into dst (cap bytes). dst NULL: the
 * transport allocates a buffer of the message's size; take it with net_op_take.
 * The oldest unmatched message with this key is delivered (messages may arrive
 * before the receive is posted; they are buffered up to max_unclaimed).
 * Ordering: FIFO per (peer, key). Messages one peer sent under one key are
 * matched in the order they were sent to that peer's receives for the key in
 * the order they were posted, whether a message arrived before or after its
 * receive: the k-th receive gets the k-th message. Receives posted from
 * different threads count in the order their calls took the node's lock;
 * receives the network thread posts (net_nt_recv) are not ordered against
 * those of other threads for the same peer and key.
 * On NET_OK *op is the handle; release it with net_op_free. */
int net_recv_post(struct net_node *node, net_peer_id peer, net_key key, void *dst,
                  uint64_t cap, struct net_op **op, char err[NET_ERR_LEN]);

/* Waits for op. Returns NET_OK when it completed (for a receive: the payload
 * arrived and its CRC32C matched or, sealed, its AEAD tag verified),
 * NET_TIMEOUT when timeout_ms (< 0: forever)
 * passed and it is still pending, or its failure status with the reason in err
 * (a dead peer, a checksum mismatch naming peer, message and both sums, a message
 * larger than the receive buffer, ...). Only one thread may wait on an op. */
int net_wait(struct net_op *op, int timeout_ms, char err[NET_ERR_LEN]);

/* Like net_wait with a zero timeout but returns NET_PENDING instead of NET_TIMEOUT. */
int net_op_test(struct net_op *op, char err[NET_ERR_LEN]);

/* Payload length of a completed receive (0 before). */
uint64_t net_op_len(const struct net_op *op);

/* CRC32C of a receive's payload once net_wait (or net_op_test) has returned
 * NET_OK for it: checked against the bytes that arrived, so a thread that
 * forwards them unchanged can pass it to net_send_ex (NET_SEND_CRC) instead of
 * reading them again. 0 before. On an encrypting node always 0: sealed frames
 * carry no payload CRC (the AEAD tag authenticated the bytes), and the node's
 * own sends ignore NET_SEND_CRC's value; do not forward it to a node that
 * does not encrypt. Only the thread that waits on op. */
uint32_t net_op_crc(const struct net_op *op);

/* The payload tag (NET_SEND_TAG) the frame of a completed receive carried:
 * 0..15, 0 before completion. Only the thread that waits on op. */
unsigned net_op_tag(const struct net_op *op);

/* For a completed receive posted with dst NULL: returns the malloc'd payload
 * (the caller frees it) and detaches it from op; NULL otherwise. */
void *net_op_take(struct net_op *op);

/* Releases op. A pending op is cancelled first, synchronously: when this returns
 * the transport no longer touches its buffer. NULL: no-op. */
void net_op_free(struct net_op *op);

/* Post + wait + free: receives into dst (cap bytes), stores the length in *len
 * (may be NULL). On NET_TIMEOUT the receive is cancelled. */
int net_recv(struct net_node *node, net_peer_id peer, net_key key, void *dst, uint64_t cap,
             uint64_t *len, int timeout_ms, char err[NET_ERR_LEN]);

/* Reads a shared secret from path (which must be a regular file not readable or
 * writable by group or others) or, when path is NULL, from environment variable
 * env. Trailing newlines are dropped. Writes up to cap bytes into buf and the
 * length into *len; NET_ERR with a reason when missing, too short (< 16 bytes),
 * too long or too open. */
int net_secret_load(const char *path, const char *env, uint8_t *buf, size_t cap, size_t *len,
                    char err[NET_ERR_LEN]);

/* CRC32C (Castagnoli) of len bytes, continuing from crc (start with 0).
 * ISA-L's crc32_iscsi: AVX-512/PCLMULQDQ folding, the SSE4.2 crc32
 * instruction or a table, whichever the CPU runs (checked at run time). */
uint32_t net_crc32c(uint32_t crc, const void *buf, size_t len);
/* The same with this project's portable table code: the tests' reference. */
uint32_t net_crc32c_sw(uint32_t crc, const void *buf, size_t len);

#endif
