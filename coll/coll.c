/* coll.c — ring collectives on top of net/ (see coll.h for the contract, the
 * segment layout and the order of the additions).
 *
 * One engine, ring(), runs ring steps t0..t1-1 of the all-reduce: steps
 * 0..R-2 are the reduce-scatter (receive into a chunk of the pool, add),
 * steps R-1..2R-3 the all-gather (receive straight into place). With ranks
 * taken mod R, step t sends segment r-t-1 to rank r+1 and receives segment
 * r-t-2 from rank r-1, so what a step receives is what the next step sends:
 * chunk c of step t+1 goes out as soon as chunk c of step t is in.
 *
 * Where it runs: on the network thread (net/net_coll.h). ring() hands the
 * run to a task, eng_run, that posts the receives and the first sends; each
 * completed receive runs it again on the thread that read the bytes, which
 * adds the chunk (fused with the sum's CRC) and writes the next send at once,
 * with no wake-up of another thread per chunk. The calling thread sleeps until
 * the run ends (in WAIT_SLICE_MS slices: the abort flag, the neighbours'
 * deaths, the group's timeout counted from the last step forward), then
 * waits for the last sends to be written and frees what is left. State
 * shared by the two threads is under the engine's lock; once the calling
 * thread has set stop, the network thread leaves the run alone.
 *
 * Sequence numbers: on each link the chunks of all steps are numbered in
 * step-major order (step t0's chunks, then step t0+1's, ...); sender and
 * receiver number them alike, since rank r's send step t and rank r+1's
 * receive step t carry the same segment. A rank consumes its receives in that
 * order and posts its sends in that order.
 *
 * The pool: a reduce-scatter chunk q is received into pool slot q % P (P
 * chunk-sized buffers, pool_chunks) and added into place from there, so
 * the scratch is a few MiB whatever the buffer's size (it was min(R-1, 3)
 * segments). Receive q + P is posted as soon as q has been added. Credits keep the
 * sender from running ahead into unposted receives (which net/ would read into
 * an unclaimed buffer and copy again): rank r may send reduce-scatter chunk s
 * only when s < P + k * B, k being the credits rank r+1 has sent; rank r+1
 * sends credit k (an empty message, COLL_MB_CREDIT) once it has added chunk
 * k * B - 1, i.e. once receives up to k * B + P - 1 are posted. A send held
 * for a credit never stops the rank from consuming what it receives (that
 * could deadlock the ring): the engine moves on whichever comes first. The
 * ready signal and the credits are sent by the network thread after the
 * receives they announce are in place (net_nt_recv), so they cannot overtake
 * them. With R = 2 rank-1 is
 * rank+1 and a credit would queue behind this rank's data on the one
 * connection: no credit is sent, and a rank paces its reduce-scatter sends
 * by its own adds instead (s < a + P/2, a the chunks it has added: see plan()),
 * which keeps them behind rank+1's posted receives with the same pool.
 * All-gather receives land in place: they are posted a window (agw, R steps)
 * past the oldest one not consumed, with no credits.
 *
 * Scratch receive (COLL_RX_SCRATCH, coll.h): the pool's slots, windows and
 * credits stay as above (the wire is the same), but a slot has no memory:
 * its receive is posted with net_nt_recv_sliced, so the chunk is read from
 * the socket a slice at a time into the group's one scratch (rx_buf, a
 * slice; every reduce-scatter chunk comes from rank-1, over one connection,
 * one frame at a time) and rx_slice adds each slice into place, continuing
 * the sum's CRC (rx_slots[slot]), while it is in cache: the kernel's copy and
 * the add touch the same few hundred KiB again and again instead of an 8 MiB
 * pool that has left the cache by the time the add reads it. net/ continues
 * the received bytes' CRC as they land and checks it when the chunk is
 * complete; consume() fails the run on a mismatch before anything derived
 * from the chunk is sent (its sum goes out only after consume), so the
 * unverified sums in buf are never sent on nor returned as a success.
 *
 * Zero-copy sends: a send's segment is never written while the send may still
 * be pending, except by the all-gather receive of the segment that
 * reduce-scatter step k sent; those bytes can only arrive after they went
 * around the ring, i.e. after rank r+1 had read everything that send carried.
 *
 * Checksums and writes: every frame carries a CRC32C (net/). The reduce-
 * scatter's add computes the sum's CRC in the same pass (coll_add_f32_crc,
 * block by block while in L1) and an all-gather chunk goes on with the CRC
 * it arrived with (net_op_crc), so only a collective's first sends are read a
 * second time for their checksum: with the receivers' check of every byte,
 * the fewest CRC passes the frame format allows (a float sum's CRC cannot be
 * derived from its operands'). On a sealing node (net_node_seals) frames
 * carry CRC 0 and the AEAD tag authenticates them: the adds compute no CRC at
 * all. Verifying the reduce-scatter's receives in the add's pass instead of
 * on arrival was measured and left out (README).
 *
 * It does not pick members, connect peers or choose tags: the caller does. */
#include "coll/coll.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "net/net_coll.h"

#define WAIT_SLICE_MS 100 /* how often a wait looks at both neighbours */
#define ENG_ROUNDS 16     /* rounds of one run of the engine before the network thread's loop goes on */
#define POOL_BYTES (8u << 20) /* reduce-scatter pool: this many bytes of chunks ... */
#define POOL_MIN 4            /* ... but at least this many chunks ... */
#define POOL_MAX 256          /* ... and at most this many */
/* A collective's first step sends this many chunks, then waits for rank+1's
 * ready signal (an empty message sent once its receives are posted) before
 * the rest. Back-to-back collectives otherwise stream a whole segment into a
 * neighbour that is still finishing the previous one: read into unclaimed
 * buffers (malloc, page faults) and copied again. Both ends skip the signal
 * when that step has no more chunks than this, so small collectives pay no
 * round trip. */
#define READY_AFTER 1

static char ready_dummy[1]; /* the ready signal's (empty) payload and buffer */

struct coll_group {
    struct net_node *node;
    net_peer_id *members;
    int R, rank, timeout_ms;
    size_t chunk; /* floats per message */
    float *tmp;   /* reduce-scatter pool: coll_pool_chunks slots */
    size_t tmp_cap;
    struct net_op **ops; /* a collective's op handles, kept between calls (no allocation per collective) */
    size_t ops_cap;
    size_t *seq;         /* a collective's sequence numbers (struct ring_st rb, sb) */
    size_t seq_cap;
    uint32_t *crcs;      /* per receive: the CRC32C of what its consumption left in place */
    size_t crcs_cap;
    int rx;              /* enum coll_rx: where the reduce-scatter's chunks land */
    size_t rx_slice;     /* COLL_RX_SCRATCH: bytes per slice (a multiple of 64) */
    float *rx_buf;       /* COLL_RX_SCRATCH: the scratch, min(rx_slice, chunk) bytes */
    size_t rx_cap;       /* its floats */
    struct rx_slot *rx_slots; /* COLL_RX_SCRATCH: per pool slot, where its chunk is added */
    size_t rx_slots_cap;
    _Atomic int aborted; /* coll_group_abort: every wait fails at its next slice */
    struct coll_eng *eng; /* the ring's engine, run by the network thread */
};

static void eng_new(coll_group *g);
static void eng_free(coll_group *g);

static const char *op_name(int type)
{
    switch (type) {
    case COLL_T_ALLREDUCE: return "all-reduce";
    case COLL_T_REDUCE_SCATTER: return "reduce-scatter";
    case COLL_T_ALLGATHER: return "all-gather";
    default: return "broadcast";
    }
}

coll_group *coll_group_new(struct net_node *n, const net_peer_id *members, int R, int rank,
                           int timeout_ms, char *err)
{
    if (!n || !members || R < 1 || R > 65536) {
        seterr(err, "coll: group of %d members (expected 1..65536 and a node)", R);
        return NULL;
    }
    if (rank < 0 || rank >= R) {
        seterr(err, "coll: rank %d outside a group of %d", rank, R);
        return NULL;
    }
    if (timeout_ms <= 0) {
        seterr(err, "coll: timeout %d ms (expected > 0)", timeout_ms);
        return NULL;
    }
    for (int i = 0; i < R; i++)
        for (int j = 0; j < i; j++)
            if (net_peer_eq(members[i], members[j])) {
                char nm[64];
                seterr(err, "coll: %s is member %d and member %d of the group",
                       net_peer_name(members[i], nm, sizeof nm), j, i);
                return NULL;
            }
    coll_group *g = xcalloc(1, sizeof *g);
    g->node = n;
    g->members = xmalloc((size_t)R * sizeof *g->members);
    memcpy(g->members, members, (size_t)R * sizeof *members);
    g->R = R;
    g->rank = rank;
    g->timeout_ms = timeout_ms;
    g->chunk = COLL_CHUNK_BYTES / sizeof(float);
    if (coll_rx_from_env(&g->rx, &g->rx_slice, err)) {
        free(g->members);
        free(g);
        return NULL;
    }
    eng_new(g);
    return g;
}

/* A receive slice COLL_RX_SCRATCH can use: a multiple of 64 bytes within the bounds. */
static int slice_ok(unsigned long long v) { return v >= COLL_RX_SLICE_MIN && v <= COLL_RX_SLICE_MAX && v % 64 == 0; }

int coll_rx_from_env(int *mode, size_t *slice, char *err)
{
    const char *m = getenv(COLL_RX_ENV), *sl = getenv(COLL_RX_SLICE_ENV);
    *mode = COLL_RX_DEFAULT;
    *slice = COLL_RX_SLICE_DEFAULT;
    if (m && *m) {
        if (!strcmp(m, "pool")) *mode = COLL_RX_POOL;
        else if (!strcmp(m, "scratch")) *mode = COLL_RX_SCRATCH;
        else return seterr(err, "coll: environment variable %s is '%.64s' (expected pool or scratch)", COLL_RX_ENV, m);
    }
    if (sl && *sl) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(sl, &end, 10);
        if (*sl == '-' || errno || *end || !slice_ok(v))
            return seterr(err, "coll: environment variable %s is '%.64s' (expected bytes, a multiple of 64 "
                               "from %u to %u)", COLL_RX_SLICE_ENV, sl, COLL_RX_SLICE_MIN, COLL_RX_SLICE_MAX);
        *slice = (size_t)v;
    }
    return 0;
}

int coll_group_set_rx(coll_group *g, int mode, size_t slice, char *err)
{
    if (mode != COLL_RX_POOL && mode != COLL_RX_SCRATCH)
        return seterr(err, "coll: receive mode %d (expected COLL_RX_POOL or COLL_RX_SCRATCH)", mode);
    if (!slice_ok(slice))
        return seterr(err, "coll: slice of %zu bytes (expected a multiple of 64 from %u to %u)", slice,
                      COLL_RX_SLICE_MIN, COLL_RX_SLICE_MAX);
    g->rx = mode;
    g->rx_slice = slice;
    return 0;
}

const char *coll_group_rx(const coll_group *g, size_t *slice)
{
    if (slice) *slice = g->rx_slice;
    return g->rx == COLL_RX_SCRATCH ? "scratch" : "pool";
}

void coll_group_abort(coll_group *g)
{
    if (g) g->aborted = 1;
}

void coll_group_free(coll_group *g)
{
    if (!g) return;
    eng_free(g);
    free(g->members);
    free(g->tmp);
    free(g->ops);
    free(g->seq);
    free(g->crcs);
    free(g->rx_buf);
    free(g->rx_slots);
    free(g);
}

int coll_group_set_chunk(coll_group *g, size_t bytes, char *err)
{
    if (bytes < sizeof(float) || bytes > NET_MAX_PAYLOAD_CAP)
        return seterr(err, "coll: chunk of %zu bytes (expected 4 .. %llu)", bytes,
                      (unsigned long long)NET_MAX_PAYLOAD_CAP);
    g->chunk = bytes / sizeof(float);
    return 0;
}

size_t coll_group_scratch_bytes(const coll_group *g)
{
    return g ? (g->tmp_cap + g->rx_cap) * sizeof(float) : 0;
}

void coll_segment(size_t n, int R, int i, size_t *off, size_t *len)
{
    size_t q = n / (size_t)R, m = n % (size_t)R, ui = (size_t)i;
    *off = ui * q + (ui < m ? ui : m);
    *len = q + (ui < m);
}

/* The loop is vectorised (restrict, and the Makefile builds this file with
 * OPTIM_CFLAGS): one float32 addition per element either way, so the result
 * is bitwise that of the scalar loop. */
void coll_add_f32(float *restrict dst, const float *restrict src, size_t n)
{
    for (size_t j = 0; j < n; j++) dst[j] = src[j] + dst[j];
}

static int mod(int a, int R) { return ((a % R) + R) % R; }

static size_t nchunks(const coll_group *g, size_t len) { return (len + g->chunk - 1) / g->chunk; }

/* One collective in progress: what an error message needs, and its ops. */
struct run {
    coll_group *g;
    int type;
    uint64_t tag;
    char *err;
    uint32_t crc; /* CRC32C of the payload of the last receive wait_op completed */
};

static int fail(struct run *x, const char *what, net_peer_id peer, int step, size_t c, const char *why)
{
    char nm[64];
    if (step < 0) /* the ready signal before ring step -step-1 */
        return seterr(x->err, "coll %s (tag %llu, rank %d of %d): %s %s %s (the ready signal before ring step %d): %s",
                      op_name(x->type), (unsigned long long)x->tag, x->g->rank, x->g->R, what,
                      !strcmp(what, "send") ? "to" : "from", net_peer_name(peer, nm, sizeof nm),
                      -step - 1, why);
    return seterr(x->err, "coll %s (tag %llu, rank %d of %d): %s %s %s (ring step %d, chunk %zu): %s",
                  op_name(x->type), (unsigned long long)x->tag, x->g->rank, x->g->R, what,
                  !strcmp(what, "send") ? "to" : "from", net_peer_name(peer, nm, sizeof nm), step, c,
                  why);
}

/* A failure on a flow-control signal: credit k of the reduce-scatter's pool. */
static int fail_signal(struct run *x, const char *what, net_peer_id peer, const char *name, long k,
                       const char *why)
{
    char nm[64];
    return seterr(x->err, "coll %s (tag %llu, rank %d of %d): %s %s %s (%s %ld of the reduce-scatter's pool): %s",
                  op_name(x->type), (unsigned long long)x->tag, x->g->rank, x->g->R, what,
                  !strcmp(what, "send") ? "to" : "from", net_peer_name(peer, nm, sizeof nm), name, k, why);
}

/* Sends len floats at p as chunk c of ring step step. have_crc: crc is the
 * payload's CRC32C, computed already (coll_add_f32_crc, or the receive that brought
 * these bytes); else net/ computes it. */
static int post_send(struct run *x, int step, size_t c, const float *p, size_t len, int have_crc,
                     uint32_t crc, struct net_op **op)
{
    char e[NET_ERR_LEN];
    coll_group *g = x->g;
    net_peer_id to = g->members[mod(g->rank + 1, g->R)];
    net_key k = { (uint16_t)x->type, x->tag, (uint32_t)step, (uint32_t)c };
    int st = net_send_ex(g->node, to, k, p, len * sizeof(float), have_crc ? NET_SEND_CRC : 0,
                         crc, g->timeout_ms, op, e);
    if (st == NET_TIMEOUT) snprintf(e, sizeof e, "no room to queue within %d ms", g->timeout_ms);
    return st == NET_OK ? 0 : fail(x, "send", to, step, c, e);
}

static int post_recv(struct run *x, int step, size_t c, float *p, size_t len, struct net_op **op)
{
    char e[NET_ERR_LEN];
    coll_group *g = x->g;
    net_peer_id from = g->members[mod(g->rank - 1, g->R)];
    net_key k = { (uint16_t)x->type, x->tag, (uint32_t)step, (uint32_t)c };
    int st = net_recv_post(g->node, from, k, p, len * sizeof(float), op, e);
    return st == NET_OK ? 0 : fail(x, "receive", from, step, c, e);
}

/* What wait_op waits for: data from rank-1 or to rank+1, a ready signal or
 * a credit from rank+1 or to rank-1. */
enum { W_RECV = 0, W_SEND = 1, W_READY_RECV = 2, W_READY_SEND = 3, W_CREDIT_RECV = 4, W_CREDIT_SEND = 5 };

/* The failure of a wait of this kind (a credit's number is in step). */
static int wait_fail(struct run *x, int kind, const char *what, net_peer_id peer, int step, size_t c,
                     const char *why)
{
    if (kind == W_CREDIT_RECV || kind == W_CREDIT_SEND) return fail_signal(x, what, peer, "credit", step, why);
    return fail(x, what, peer, step, c, why);
}

/* Waits for op (for a receive, of len floats) and frees it; 0 or -1 with the
 * error (broadcast, and the end of a ring run on the calling thread). */
static int wait_op(struct run *x, struct net_op **op, int kind, int step, size_t c, size_t len)
{
    int waited_ms = 0, *waited = &waited_ms;
    char e[NET_ERR_LEN];
    coll_group *g = x->g;
    int is_send = kind == W_SEND || kind == W_READY_SEND || kind == W_CREDIT_SEND;
    int up = kind == W_SEND || kind == W_READY_RECV || kind == W_CREDIT_RECV;
    net_peer_id peer = g->members[mod(g->rank + (up ? 1 : -1), g->R)];
    int slice = WAIT_SLICE_MS, since_look = 0;
    /* in slices, so that a neighbour's death ends the wait whichever way it
     * was going: a rank waiting on rank-1 learns that rank+1 died */
    int st = NET_TIMEOUT;
    while (st == NET_TIMEOUT && *waited < g->timeout_ms) {
        int left = g->timeout_ms - *waited, sl = left < slice ? left : slice;
        st = net_wait(*op, sl, e);
        if (st != NET_TIMEOUT) break;
        *waited += sl;
        since_look += sl;
        if (g->aborted) {
            net_op_free(*op);
            *op = NULL;
            return wait_fail(x, kind, is_send ? "send" : "receive", peer, step, c, "aborted by this process");
        }
        for (int d = -1; d <= 1 && since_look >= WAIT_SLICE_MS; d += 2) {
            net_peer_id nb = g->members[mod(g->rank + d, g->R)];
            int ps = net_peer_status(g->node, nb, e);
            if (ps == NET_DEAD || ps == NET_CLOSED) {
                net_op_free(*op);
                *op = NULL;
                return wait_fail(x, kind, d > 0 ? "send" : "receive", nb, step, c, e);
            }
        }
        if (since_look >= WAIT_SLICE_MS) since_look = 0;
    }
    if (st == NET_TIMEOUT) snprintf(e, sizeof e, "nothing within %d ms", g->timeout_ms);
    if (st == NET_OK && !is_send && net_op_len(*op) != len * sizeof(float)) {
        snprintf(e, sizeof e, "message of %llu bytes, expected %zu",
                 (unsigned long long)net_op_len(*op), len * sizeof(float));
        st = NET_ERR;
    }
    if (st == NET_OK && !is_send) x->crc = net_op_crc(*op);
    net_op_free(*op);
    *op = NULL;
    return st == NET_OK ? 0 : wait_fail(x, kind, is_send ? "send" : "receive", peer, step, c, e);
}

/* COLL_CRC_BLOCK: 16 KiB, so that the checksum reads each block from L1
 * right after the add wrote it (a separate pass over a 1 MiB chunk reads it
 * from L3: 21 against 45 GB/s for crc32_iscsi here). */
/* coll_add_f32_crc continuing the checksum crc (of what precedes dst). */
static uint32_t add_crc_from(uint32_t crc, float *restrict dst, const float *restrict src, size_t n)
{
    for (size_t i = 0; i < n; i += COLL_CRC_BLOCK) {
        size_t l = n - i < COLL_CRC_BLOCK ? n - i : COLL_CRC_BLOCK;
        coll_add_f32(dst + i, src + i, l);
        crc = net_crc32c(crc, dst + i, l * sizeof(float));
    }
    return crc;
}

uint32_t coll_add_f32_crc(float *restrict dst, const float *restrict src, size_t n)
{
    return add_crc_from(0, dst, src, n);
}

/* n op handles, all NULL, from the group's array (grown as needed). */
static struct net_op **ops_of(coll_group *g, size_t n)
{
    if (g->ops_cap < n) {
        free(g->ops);
        g->ops = xmalloc(n * sizeof *g->ops);
        g->ops_cap = n;
    }
    memset(g->ops, 0, n * sizeof *g->ops);
    return g->ops;
}

static void ensure_tmp(coll_group *g, size_t floats)
{
    if (g->tmp_cap >= floats) return;
    free(g->tmp);
    g->tmp = xmalloc(floats * sizeof(float));
    g->tmp_cap = floats;
}

/* Chunks in the reduce-scatter pool (P) and in a credit (B): both ends of a
 * link must agree, so they depend on the group's chunk size alone. */
static size_t pool_chunks(const coll_group *g)
{
    size_t p = POOL_BYTES / (g->chunk * sizeof(float));
    return p < POOL_MIN ? POOL_MIN : p > POOL_MAX ? POOL_MAX : p;
}

static size_t credit_chunks(size_t P) { return P / 4 ? P / 4 : 1; }

/* One run of ring(): sequence numbers, cursors and op handles (see the top of
 * the file). Receive step t0+i holds receive seqs rb[i]..rb[i+1]-1, send step
 * t0+i send seqs sb[i]..sb[i+1]-1. Between the start and the end of a run the
 * network thread alone moves it on (eng_run, under the engine's lock). */
struct ring_st {
    float *buf;
    size_t n;
    int t0, t1;
    size_t T, *rb, *sb;
    size_t nq, ns;     /* receives, sends */
    size_t q_rs, s_rs; /* of which the reduce-scatter's (pool, credits) */
    size_t P, B, slots;       /* credit window, chunks per credit, pool slots (P) */
    size_t W;                 /* R = 2: sends in flight past this rank's own adds (P / 2), no credits */
    size_t agw, stride;       /* all-gather window, floats per pool slot */
    int rx;                   /* COLL_RX_SCRATCH: the reduce-scatter's receives go through g->rx_buf */
    int sealed;               /* net_node_seals: frames carry no CRC, so the adds compute none */
    size_t rx_slice;          /* its bytes per slice (at most a chunk) */
    struct net_op **sends, **pool_ops, **ag_ops, **cred_out, *cred_in, *rdy_in, *rdy_out;
    uint32_t *crc;     /* crc[q]: CRC32C of the chunk receive q's consumption left in place */
    size_t posted_rs, posted_ag, consumed, sent, credits, ncred_out;
    size_t pi_rs, pi_ag, ci, si; /* step-index hints of the cursors */
    int started;       /* the first receives and the ready signal are posted */
};

/* The engine: a ring() in progress, run by the network thread. */
struct coll_eng {
    pthread_mutex_t mu;
    pthread_cond_t cv;     /* done */
    struct net_task task;  /* eng_run(g) */
    int used;              /* task posted at least once (coll_group_free forgets it) */
    int active, stop, done, rc;
    uint64_t progress;     /* receives consumed + sends posted + signals taken: the timeout's clock */
    struct run x;
    struct ring_st s;
    char err[ERR_LEN];
};

static void eng_run(void *arg);

static void eng_new(coll_group *g)
{
    g->eng = xcalloc(1, sizeof *g->eng);
    pthread_mutex_init(&g->eng->mu, NULL);
    pthread_cond_init(&g->eng->cv, NULL);
    g->eng->task.fn = eng_run;
    g->eng->task.arg = g;
}

/* Only once no collective runs on g: the task is neither scheduled nor
 * running when the memory goes. */
static void eng_free(coll_group *g)
{
    if (g->eng->used) net_task_forget(g->node, &g->eng->task);
    pthread_mutex_destroy(&g->eng->mu);
    pthread_cond_destroy(&g->eng->cv);
    free(g->eng);
}

/* Step index of seq q (< base[T]), moving hint *i forward. */
static size_t step_of(const size_t *base, size_t q, size_t *i)
{
    while (base[*i + 1] <= q) (*i)++;
    return *i;
}

/* Offset and length (floats) of chunk c of segment seg. */
static void chunk_at(const coll_group *g, size_t n, int seg, size_t c, size_t *off, size_t *len)
{
    size_t so, sl;
    coll_segment(n, g->R, seg, &so, &sl);
    *off = so + c * g->chunk;
    *len = sl - c * g->chunk < g->chunk ? sl - c * g->chunk : g->chunk;
}

static int recv_seg(const coll_group *g, int t) { return mod(g->rank - t - 2, g->R); }
static int send_seg(const coll_group *g, int t) { return mod(g->rank - t - 1, g->R); }

/* COLL_RX_SCRATCH: a reduce-scatter receive in flight (one per pool slot):
 * where its chunk is added, and the CRC32C of the sums added so far. */
struct rx_slot {
    float *dst;
    uint32_t crc;
    int sealed; /* the node seals its frames: no CRC to continue (net_node_seals) */
};

/* COLL_RX_SCRATCH, network thread (net_nt_recv_sliced): k bytes of a
 * reduce-scatter chunk at offset at, in cache, are added into place, the
 * sum's CRC continued (the frame's CRC of these bytes is checked when the
 * chunk is complete; consume fails the run before anything derived from a
 * chunk that did not verify is sent). The order of coll.h: received + own. */
static void rx_slice(void *arg, const void *p, uint64_t k, uint64_t at)
{
    struct rx_slot *sl = arg;
    if (sl->sealed) coll_add_f32(sl->dst + at / sizeof(float), p, k / sizeof(float));
    else sl->crc = add_crc_from(sl->crc, sl->dst + at / sizeof(float), p, k / sizeof(float));
}

/* Network thread: posts receive q, the reduce-scatter's into pool slot q % P
 * (or, COLL_RX_SCRATCH, through the scratch slice by slice, added as it
 * comes), the all-gather's straight into place; its completion runs the
 * engine. */
static int post_seq(struct run *x, struct ring_st *s, size_t q, size_t *hint)
{
    char e[NET_ERR_LEN];
    coll_group *g = x->g;
    size_t i = step_of(s->rb, q, hint), c = q - s->rb[i], off, len;
    int t = s->t0 + (int)i, st;
    chunk_at(g, s->n, recv_seg(g, t), c, &off, &len);
    float *p = q < s->q_rs ? g->tmp + (q % s->slots) * s->stride : s->buf + off;
    struct net_op **op = q < s->q_rs ? &s->pool_ops[q % s->slots] : &s->ag_ops[(q - s->q_rs) % s->agw];
    net_peer_id from = g->members[mod(g->rank - 1, g->R)];
    net_key k = { (uint16_t)x->type, x->tag, (uint32_t)t, (uint32_t)c };
    if (q < s->q_rs && s->rx) {
        struct rx_slot *sl = &g->rx_slots[q % s->slots];
        *sl = (struct rx_slot){ s->buf + off, 0, s->sealed };
        st = net_nt_recv_sliced(g->node, from, k, len * sizeof(float), g->rx_buf, s->rx_slice, rx_slice, sl,
                                &g->eng->task, op, e);
    } else {
        st = net_nt_recv(g->node, from, k, p, len * sizeof(float), &g->eng->task, op, e);
    }
    return st == NET_OK ? 0 : fail(x, "receive", from, t, c, e);
}

/* Receives up to the windows: the pool's slots past the last chunk added,
 * the all-gather's agw. */
static int post_recvs(struct run *x, struct ring_st *s)
{
    int rc = 0;
    for (; rc == 0 && s->posted_rs < s->q_rs && s->posted_rs < s->consumed + s->slots; s->posted_rs++)
        rc = post_seq(x, s, s->posted_rs, &s->pi_rs);
    size_t ag_from = s->consumed > s->q_rs ? s->consumed : s->q_rs; /* the oldest not yet consumed */
    for (; rc == 0 && s->posted_ag < s->nq && s->posted_ag < ag_from + s->agw; s->posted_ag++)
        rc = post_seq(x, s, s->posted_ag, &s->pi_ag);
    return rc;
}

/* Credit k from rank+1 exists when it lets a send through, i.e. (k-1)B + P <
 * s_rs; one receive for it is posted at a time. */
static int post_credit_in(struct run *x, struct ring_st *s)
{
    size_t k = s->credits + 1;
    if (s->W || (k - 1) * s->B + s->P >= s->s_rs) return 0;
    char e[NET_ERR_LEN];
    coll_group *g = x->g;
    net_key ck = { (uint16_t)x->type, x->tag, COLL_MB_CREDIT, (uint32_t)k };
    if (net_nt_recv(g->node, g->members[mod(g->rank + 1, g->R)], ck, ready_dummy, 0, &g->eng->task, &s->cred_in,
                    e) != NET_OK)
        return fail_signal(x, "receive", g->members[mod(g->rank + 1, g->R)], "credit", (long)k, e);
    return 0;
}

/* Network thread: a signal receive (ready or credit) that has completed is
 * taken (1), one still pending left (0), a failed one reported (-1). */
static int take_signal(struct run *x, struct net_op **op, long k)
{
    char e[NET_ERR_LEN];
    coll_group *g = x->g;
    int st = net_op_test(*op, e);
    if (st == NET_PENDING) return 0;
    net_op_free(*op);
    *op = NULL;
    x->g->eng->progress++;
    if (st == NET_OK) return 1;
    net_peer_id from = g->members[mod(g->rank + 1, g->R)];
    return k < 0 ? fail(x, "receive", from, (int)k, 0, e) : fail_signal(x, "receive", from, "credit", k, e);
}

/* Network thread: posts sends in seq order while they are ready: chunk c of
 * a later step once chunk c of the step before has been consumed; the first
 * step's chunks past READY_AFTER once rank+1's ready signal came; a
 * reduce-scatter chunk once rank+1's credits cover it. Returns 0 when it
 * stopped for a dependency or ran out of sends, -1 on failure. */
static int post_sends(struct run *x, struct ring_st *s)
{
    coll_group *g = x->g;
    char e[NET_ERR_LEN];
    while (s->sent < s->ns) {
        size_t q = s->sent, i = step_of(s->sb, q, &s->si), c = q - s->sb[i], off, len;
        int t = s->t0 + (int)i, rc;
        if (i > 0 && s->consumed <= s->rb[i - 1] + c) return 0; /* its data is not in yet */
        if (i == 0 && c >= READY_AFTER && s->rdy_in && (rc = take_signal(x, &s->rdy_in, -s->t0 - 1)) <= 0)
            return rc;
        if (s->W && q < s->s_rs && q >= s->consumed + s->W) return 0; /* R = 2: paced by this rank's adds */
        if (!s->W && q < s->s_rs && q >= s->P + s->credits * s->B) {
            if ((rc = take_signal(x, &s->cred_in, (long)(s->credits + 1))) <= 0) return rc;
            s->credits++;
            if (post_credit_in(x, s)) return -1;
            continue;
        }
        chunk_at(g, s->n, send_seg(g, t), c, &off, &len);
        net_peer_id to = g->members[mod(g->rank + 1, g->R)];
        net_key k = { (uint16_t)x->type, x->tag, (uint32_t)t, (uint32_t)c };
        if (net_nt_send(g->node, to, k, s->buf + off, len * sizeof(float), i > 0 ? NET_SEND_CRC : 0,
                        i > 0 ? s->crc[s->rb[i - 1] + c] : 0, &s->sends[q], e) != NET_OK)
            return fail(x, "send", to, t, c, e);
        s->sent++;
        g->eng->progress++;
    }
    return 0;
}

/* Network thread: consumes the receives that are in, in order: adds a
 * reduce-scatter chunk into place (fused with the CRC of the sum it will
 * send), frees its pool slot and sends rank-1 a credit when one is due; an
 * all-gather chunk keeps the CRC it came with. 0, or -1 on failure. */
static int consume(struct run *x, struct ring_st *s)
{
    coll_group *g = x->g;
    char e[NET_ERR_LEN];
    while (s->consumed < s->nq) {
        size_t q = s->consumed, i = step_of(s->rb, q, &s->ci), c = q - s->rb[i], off, len;
        int t = s->t0 + (int)i;
        struct net_op **op = q < s->q_rs ? &s->pool_ops[q % s->slots] : &s->ag_ops[(q - s->q_rs) % s->agw];
        if (!*op) return 0; /* not posted yet */
        int st = net_op_test(*op, e);
        if (st == NET_PENDING) return 0;
        chunk_at(g, s->n, recv_seg(g, t), c, &off, &len);
        if (st == NET_OK && net_op_len(*op) != len * sizeof(float)) {
            snprintf(e, sizeof e, "message of %llu bytes, expected %zu", (unsigned long long)net_op_len(*op),
                     len * sizeof(float));
            st = NET_ERR;
        }
        uint32_t crc = net_op_crc(*op);
        net_op_free(*op);
        *op = NULL;
        if (st != NET_OK) return fail(x, "receive", g->members[mod(g->rank - 1, g->R)], t, c, e);
        /* partial sum received + own value: the order in coll.h (COLL_RX_SCRATCH:
         * added as it came, rx_slice; net_op_test has just verified it) */
        if (q >= s->q_rs) s->crc[q] = crc;
        else if (s->rx) s->crc[q] = g->rx_slots[q % s->slots].crc;
        else if (s->sealed) {
            coll_add_f32(s->buf + off, g->tmp + (q % s->slots) * s->stride, len);
            s->crc[q] = 0; /* ignored: a sealed frame's tag authenticates it */
        }
        else s->crc[q] = coll_add_f32_crc(s->buf + off, g->tmp + (q % s->slots) * s->stride, len);
        s->consumed++;
        g->eng->progress++;
        if (!s->W && q < s->q_rs && (q + 1) % s->B == 0) {
            size_t k = (q + 1) / s->B;
            if ((k - 1) * s->B + s->P < s->q_rs) { /* rank-1 has a send waiting for it */
                net_peer_id to = g->members[mod(g->rank - 1, g->R)];
                net_key ck = { (uint16_t)x->type, x->tag, COLL_MB_CREDIT, (uint32_t)k };
                /* the receives it announces first: in place when posted here */
                if (post_recvs(x, s)) return -1;
                if (net_nt_send(g->node, to, ck, ready_dummy, 0, 0, 0, &s->cred_out[s->ncred_out++], e) != NET_OK)
                    return fail_signal(x, "send", to, "credit", (long)k, e);
            }
        }
    }
    return 0;
}

/* The first receives, then the ready signals (see READY_AFTER): this rank's
 * to rank-1 once they are up; rank+1's before the rest of the first step. */
static int eng_start(struct run *x, struct ring_st *s)
{
    coll_group *g = x->g;
    int R = g->R, r = g->rank;
    char e[NET_ERR_LEN];
    s->started = 1;
    if (post_recvs(x, s) || post_credit_in(x, s)) return -1;
    net_key rk = { (uint16_t)x->type, x->tag, COLL_MB_READY, (uint32_t)s->t0 };
    if (s->sb[1] > READY_AFTER &&
        net_nt_recv(g->node, g->members[mod(r + 1, R)], rk, ready_dummy, 0, &g->eng->task, &s->rdy_in, e) != NET_OK)
        return fail(x, "receive", g->members[mod(r + 1, R)], -s->t0 - 1, 0, e);
    if (s->rb[1] > READY_AFTER &&
        net_nt_send(g->node, g->members[mod(r - 1, R)], rk, ready_dummy, 0, 0, 0, &s->rdy_out, e) != NET_OK)
        return fail(x, "send", g->members[mod(r - 1, R)], -s->t0 - 1, 0, e);
    return 0;
}

/* The engine's task, on the network thread: run when the collective is
 * posted and whenever one of its receives completes; moves it as far as the
 * receives that are in allow (at most ENG_ROUNDS rounds, then it posts
 * itself again, so that the loop polls the sockets and fires its timers in
 * between), and wakes the posting thread at the end. */
static void eng_run(void *arg)
{
    coll_group *g = arg;
    struct coll_eng *E = g->eng;
    int wake = 0;
    pthread_mutex_lock(&E->mu);
    if (E->active && !E->stop && !E->done) {
        struct run *x = &E->x;
        struct ring_st *s = &E->s;
        int rc = s->started ? 0 : eng_start(x, s), rounds = 0;
        uint64_t before = E->progress + 1;
        for (; rc == 0 && before != E->progress && rounds < ENG_ROUNDS; rounds++) {
            before = E->progress;
            rc = consume(x, s);
            if (rc == 0) rc = post_recvs(x, s);
            if (rc == 0) rc = post_sends(x, s);
        }
        if (rc || (s->consumed == s->nq && s->sent == s->ns)) {
            E->done = 1;
            E->rc = rc ? -1 : 0;
            wake = 1;
        } else if (before != E->progress) { /* still moving: the rest after the loop's next pass */
            char e[NET_ERR_LEN];
            net_task_post(g->node, &E->task, e); /* fails only when closing: the waiter sees it */
        }
    }
    pthread_mutex_unlock(&E->mu);
    /* after unlocking: woken under the lock, the waiter would find it held
     * and sleep again. E outlives this call (eng_free forgets the task
     * first); a late signal to a later run's wait is a spurious wake-up */
    if (wake) pthread_cond_signal(&E->cv);
}

/* Sequence numbers and sizes of ring steps t0..t1-1 (see struct ring_st). */
static void plan(coll_group *g, struct ring_st *s, float *buf, size_t n, int t0, int t1)
{
    int R = g->R;
    size_t maxch = 0, seg_max, o;
    coll_segment(n, R, 0, &o, &seg_max);
    *s = (struct ring_st){ .buf = buf, .n = n, .t0 = t0, .t1 = t1, .T = (size_t)(t1 - t0),
                           .sealed = net_node_seals(g->node) };
    if (g->seq_cap < 2 * (s->T + 1)) {
        free(g->seq);
        g->seq_cap = 2 * (s->T + 1);
        g->seq = xmalloc(g->seq_cap * sizeof *g->seq);
    }
    s->rb = g->seq;
    s->sb = g->seq + s->T + 1;
    s->rb[0] = s->sb[0] = 0;
    for (size_t i = 0; i < s->T; i++) {
        int t = t0 + (int)i;
        size_t rl, sl;
        coll_segment(n, R, recv_seg(g, t), &o, &rl);
        coll_segment(n, R, send_seg(g, t), &o, &sl);
        s->rb[i + 1] = s->rb[i] + nchunks(g, rl);
        s->sb[i + 1] = s->sb[i] + nchunks(g, sl);
        if (t == R - 2) { /* the reduce-scatter's last step */
            s->q_rs = s->rb[i + 1];
            s->s_rs = s->sb[i + 1];
        }
        if (nchunks(g, rl) > maxch) maxch = nchunks(g, rl);
    }
    s->nq = s->rb[s->T];
    s->ns = s->sb[s->T];
    /* With R = 2, rank-1 is rank+1: a credit would queue behind this rank's
     * own data on the one connection and come late, so no credit is sent;
     * instead a rank sends reduce-scatter chunk q only when q < a + W, a
     * being the chunks it has added itself, W = P / 2. Rank+1 sent those a
     * chunks when q' < a'+ W (a' its own adds then, with receives up to
     * a' + P - 1 posted), so q < a' + 2W = a' + P: its receive is in place
     * before the chunk can arrive, and the pool stays P chunks. */
    s->P = pool_chunks(g);
    s->W = R == 2 ? s->P / 2 : 0;
    s->B = credit_chunks(s->P);
    s->slots = s->P;
    /* rank-1 can be R-1 steps ahead in the all-gather (its sends wait on
     * the ring, i.e. on this rank, R-1 hops back) */
    s->agw = (size_t)R * (maxch ? maxch : 1);
    if (s->agw > s->nq - s->q_rs) s->agw = s->nq - s->q_rs ? s->nq - s->q_rs : 1;
    s->stride = seg_max < g->chunk ? seg_max : g->chunk;
    s->posted_ag = s->q_rs;
}

/* Why the engine stopped short, said where it was: the oldest receive not
 * consumed or the oldest send not posted (a neighbour's death names that
 * neighbour's side: dir -1 rank-1, +1 rank+1, 0 either). */
static int eng_fail(struct run *x, struct ring_st *s, int dir, const char *why)
{
    coll_group *g = x->g;
    net_peer_id prev = g->members[mod(g->rank - 1, g->R)], next = g->members[mod(g->rank + 1, g->R)];
    size_t h = 0;
    if (dir < 0 || (dir == 0 && s->consumed < s->nq)) {
        if (s->consumed >= s->nq) return fail(x, "receive", prev, s->t1 - 1, 0, why);
        size_t i = step_of(s->rb, s->consumed, &h);
        return fail(x, "receive", prev, s->t0 + (int)i, s->consumed - s->rb[i], why);
    }
    if (s->sent >= s->ns) return fail(x, "send", next, s->t1 - 1, 0, why);
    size_t i = step_of(s->sb, s->sent, &h), c = s->sent - s->sb[i];
    if (s->rdy_in && i == 0 && c >= READY_AFTER) return fail(x, "receive", next, -s->t0 - 1, 0, why);
    if (!s->W && s->sent < s->s_rs && s->sent >= s->P + s->credits * s->B)
        return fail_signal(x, "receive", next, "credit", (long)(s->credits + 1), why);
    return fail(x, "send", next, s->t0 + (int)i, c, why);
}

/* Ring steps t0..t1-1 over buf (see the top of the file): the network thread
 * runs them (eng_run); this thread posts the run, waits for its end in
 * slices (the group's timeout counts from the last step forward; an abort or
 * a neighbour's death ends it at the next slice), then waits for the last
 * sends to be written. */
static int ring(struct run *x, float *buf, size_t n, int t0, int t1)
{
    coll_group *g = x->g;
    struct coll_eng *E = g->eng;
    int R = g->R, rc = 0;
    if (n == 0 || R == 1 || t1 <= t0) return 0;
    pthread_mutex_lock(&E->mu);
    struct ring_st *s = &E->s;
    plan(g, s, buf, n, t0, t1);
    if (s->q_rs && g->rx == COLL_RX_SCRATCH) {
        s->rx = 1;
        s->rx_slice = g->rx_slice < s->stride * sizeof(float) ? g->rx_slice : s->stride * sizeof(float);
        if (g->rx_cap * sizeof(float) < s->rx_slice) {
            free(g->rx_buf);
            g->rx_buf = xmalloc(s->rx_slice);
            g->rx_cap = s->rx_slice / sizeof(float);
        }
        if (g->rx_slots_cap < s->slots) {
            free(g->rx_slots);
            g->rx_slots = xcalloc(s->slots, sizeof *g->rx_slots);
            g->rx_slots_cap = s->slots;
        }
    } else if (s->q_rs) {
        ensure_tmp(g, (s->q_rs < s->slots ? s->q_rs : s->slots) * s->stride);
    }
    size_t ncred = s->q_rs / s->B + 1;
    s->sends = ops_of(g, s->ns + s->slots + s->agw + ncred);
    s->pool_ops = s->sends + s->ns;
    s->ag_ops = s->pool_ops + s->slots;
    s->cred_out = s->ag_ops + s->agw;
    if (g->crcs_cap < s->nq) {
        free(g->crcs);
        g->crcs = xmalloc(s->nq * sizeof *g->crcs);
        g->crcs_cap = s->nq;
    }
    s->crc = g->crcs;
    E->x = *x;
    E->x.err = E->err;
    E->err[0] = 0;
    E->active = 1;
    E->stop = E->done = E->rc = 0;
    E->used = 1;
    pthread_mutex_unlock(&E->mu);
    char e[NET_ERR_LEN];
    if (net_task_post(g->node, &E->task, e) != NET_OK) {
        pthread_mutex_lock(&E->mu);
        E->active = 0;
        pthread_mutex_unlock(&E->mu);
        return fail(x, "send", g->members[mod(g->rank + 1, R)], t0, 0, e);
    }
    pthread_mutex_lock(&E->mu);
    uint64_t seen = E->progress;
    double last = base_now();
    while (!E->done) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += WAIT_SLICE_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&E->cv, &E->mu, &ts);
        if (E->done) break;
        double now = base_now();
        if (E->progress != seen) {
            seen = E->progress;
            last = now;
        }
        if (g->aborted) {
            rc = eng_fail(x, s, 0, "aborted by this process");
            break;
        }
        for (int d = -1; d <= 1 && rc == 0; d += 2) {
            int ps = net_peer_status(g->node, g->members[mod(g->rank + d, R)], e);
            if (ps == NET_DEAD || ps == NET_CLOSED) rc = eng_fail(x, s, d, e);
        }
        if (rc) break;
        if ((now - last) * 1000 >= g->timeout_ms) {
            snprintf(e, sizeof e, "nothing within %d ms", g->timeout_ms);
            rc = eng_fail(x, s, 0, e);
            break;
        }
    }
    if (E->done && E->rc) {
        seterr(x->err, "%s", E->err);
        rc = -1;
    }
    E->stop = 1; /* from here on the network thread leaves the run alone */
    E->active = 0;
    pthread_mutex_unlock(&E->mu);
    /* The sends all go to rank+1 and net/ writes (and completes) one peer's
     * frames in the order they were posted: waiting for the last one first
     * sleeps once for them all, where waiting for each in turn woke this
     * thread once per send still queued (with rank+1 slow to read, most of
     * the last step's chunks). The loop after it then finds them done. When
     * the last one failed, an earlier send that failed is the one named. */
    size_t hint = 0, upto = s->ns;
    while (upto > 0 && !s->sends[upto - 1]) upto--;
    if (rc == 0 && upto > 0) {
        size_t k = step_of(s->sb, upto - 1, &hint);
        rc = wait_op(x, &s->sends[upto - 1], W_SEND, t0 + (int)k, upto - 1 - s->sb[k], 0);
        hint = 0;
        for (size_t i = 0; rc && i < upto - 1; i++) {
            int st = s->sends[i] ? net_op_test(s->sends[i], e) : NET_OK;
            if (st == NET_PENDING || st == NET_OK) continue;
            k = step_of(s->sb, i, &hint);
            fail(x, "send", g->members[mod(g->rank + 1, R)], t0 + (int)k, i - s->sb[k], e);
            break;
        }
        hint = 0;
    }
    for (size_t i = 0; i < s->ns; i++) /* every send written (or the first failure) */
        if (s->sends[i] && rc == 0) {
            size_t k = step_of(s->sb, i, &hint);
            rc = wait_op(x, &s->sends[i], W_SEND, t0 + (int)k, i - s->sb[k], 0);
        }
    for (size_t k = 0; k < s->ncred_out && rc == 0; k++)
        rc = wait_op(x, &s->cred_out[k], W_CREDIT_SEND, (int)(k + 1), 0, 0);
    if (s->rdy_out && rc == 0) rc = wait_op(x, &s->rdy_out, W_READY_SEND, -t0 - 1, 0, 0);
    net_op_free(s->rdy_in);
    net_op_free(s->rdy_out);
    net_op_free(s->cred_in);
    for (size_t i = 0; i < s->ns + s->slots + s->agw + ncred; i++) net_op_free(s->sends[i]);
    s->rdy_in = s->rdy_out = s->cred_in = NULL;
    return rc;
}
int coll_allreduce_sum(coll_group *g, float *buf, size_t n, uint64_t tag, char *err)
{
    struct run x = { g, COLL_T_ALLREDUCE, tag, err, 0 };
    return ring(&x, buf, n, 0, 2 * g->R - 2);
}

int coll_reduce_scatter(coll_group *g, float *buf, size_t n, uint64_t tag, char *err)
{
    struct run x = { g, COLL_T_REDUCE_SCATTER, tag, err, 0 };
    return ring(&x, buf, n, 0, g->R - 1);
}

int coll_allgather(coll_group *g, float *buf, size_t n, uint64_t tag, char *err)
{
    struct run x = { g, COLL_T_ALLGATHER, tag, err, 0 };
    return ring(&x, buf, n, g->R - 1, 2 * g->R - 2);
}

int coll_broadcast(coll_group *g, float *buf, size_t n, int root, uint64_t tag, char *err)
{
    struct run x = { g, COLL_T_BROADCAST, tag, err, 0 };
    int R = g->R, r = g->rank, rc = 0;
    if (root < 0 || root >= R)
        return seterr(err, "coll broadcast (tag %llu): root %d outside a group of %d",
                      (unsigned long long)tag, root, R);
    if (n == 0 || R == 1) return 0;
    size_t ce = g->chunk, nch = nchunks(g, n);
    int last = mod(r + 1, R) == root; /* the ring ends here: nothing to forward */
    struct net_op **recvs = xcalloc(nch, sizeof *recvs), **sends = xcalloc(nch, sizeof *sends);
    for (size_t c = 0; c < nch && r != root && rc == 0; c++)
        rc = post_recv(&x, root, c, buf + c * ce, n - c * ce < ce ? n - c * ce : ce, &recvs[c]);
    for (size_t c = 0; c < nch && rc == 0; c++) {
        size_t l = n - c * ce < ce ? n - c * ce : ce;
        if (r != root) rc = wait_op(&x, &recvs[c], W_RECV, root, c, l);
        if (rc == 0 && !last) rc = post_send(&x, root, c, buf + c * ce, l, r != root, x.crc, &sends[c]);
    }
    for (size_t c = 0; c < nch; c++)
        if (sends[c] && rc == 0) rc = wait_op(&x, &sends[c], W_SEND, root, c, 0);
    for (size_t c = 0; c < nch; c++) {
        net_op_free(sends[c]);
        net_op_free(recvs[c]);
    }
    free(sends);
    free(recvs);
    return rc;
}
