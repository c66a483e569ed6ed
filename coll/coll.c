/* coll.c — ring collectives on top of net/ (see coll.h for the contract, the
 * segment layout and the order of the additions).
 *
 * One engine, ring(), runs ring steps t0..t1-1 of the all-reduce: steps
 * 0..R-2 are the reduce-scatter (receive into scratch, add), steps R-1..2R-3
 * the all-gather (receive straight into place). With ranks taken mod R, step t
 * sends segment r-t-1 to rank r+1 and receives segment r-t-2 from rank r-1,
 * so what a step receives is what the next step sends: chunk c of step t+1
 * goes out as soon as chunk c of step t is in. The receives of steps t+1 and
 * t+2 are posted before step t is consumed (AHEAD): rank r-1 may be two steps
 * ahead of this rank's compute thread, and a message with no posted receive
 * is read into an unclaimed buffer and copied again later. The scratch holds
 * min(R-1, 3) segments, reduce-scatter step t in slot t % that.
 *
 * Zero-copy sends: a send's segment is never written while the send may still
 * be pending, except by the all-gather receive of the segment that
 * reduce-scatter step k sent; those bytes can only arrive after they went
 * around the ring, i.e. after rank r+1 had read everything that send carried.
 *
 * Checksums and writes: every frame carries a CRC32C (net/). The reduce-
 * scatter's add computes the sum's CRC in the same pass (add_crc, block by
 * block while in L1) and an all-gather chunk goes on with the CRC it arrived
 * with (net_op_crc), so only a collective's first sends are read a second
 * time for their checksum.
 *
 * It does not pick members, connect peers or choose tags: the caller does. */
#include "coll/coll.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

#define WAIT_SLICE_MS 100 /* how often a wait looks at both neighbours */
#define AHEAD 2           /* ring steps whose receives are posted beyond the one consumed */
#define NSLOT (AHEAD + 1) /* steps with receives posted at once */
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
    float *tmp;   /* reduce-scatter scratch: 2 segments */
    size_t tmp_cap;
    struct net_op **ops; /* a collective's op handles, kept between calls (no allocation per collective) */
    size_t ops_cap;
    _Atomic int aborted; /* coll_group_abort: every wait fails at its next slice */
};

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
    return g;
}

void coll_group_abort(coll_group *g)
{
    if (g) g->aborted = 1;
}

void coll_group_free(coll_group *g)
{
    if (!g) return;
    free(g->members);
    free(g->tmp);
    free(g->ops);
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

/* Sends len floats at p as chunk c of ring step step. have_crc: crc is the
 * payload's CRC32C, computed already (add_crc, or the receive that brought
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

/* What wait_op waits for: data from rank-1 or to rank+1, or (ready signal)
 * from rank+1 or to rank-1. */
enum { W_RECV = 0, W_SEND = 1, W_READY_RECV = 2, W_READY_SEND = 3 };

/* Waits for op (for a receive, of len floats) and frees it. */
static int wait_op(struct run *x, struct net_op **op, int kind, int step, size_t c, size_t len)
{
    char e[NET_ERR_LEN];
    coll_group *g = x->g;
    int is_send = kind == W_SEND || kind == W_READY_SEND;
    net_peer_id peer = g->members[mod(g->rank + (kind == W_SEND || kind == W_READY_RECV ? 1 : -1), g->R)];
    /* in slices, so that a neighbour's death ends the wait whichever way it
     * was going: a rank waiting on rank-1 learns that rank+1 died */
    int st = NET_TIMEOUT;
    for (int waited = 0; st == NET_TIMEOUT && waited < g->timeout_ms; waited += WAIT_SLICE_MS) {
        int left = g->timeout_ms - waited;
        st = net_wait(*op, left < WAIT_SLICE_MS ? left : WAIT_SLICE_MS, e);
        if (st == NET_TIMEOUT && g->aborted) {
            net_op_free(*op);
            *op = NULL;
            return fail(x, is_send ? "send" : "receive", peer, step, c, "aborted by this process");
        }
        for (int d = -1; d <= 1 && st == NET_TIMEOUT; d += 2) {
            net_peer_id nb = g->members[mod(g->rank + d, g->R)];
            int ps = net_peer_status(g->node, nb, e);
            if (ps == NET_DEAD || ps == NET_CLOSED) {
                net_op_free(*op);
                *op = NULL;
                return fail(x, d > 0 ? "send" : "receive", nb, step, c, e);
            }
        }
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
    return st == NET_OK ? 0 : fail(x, is_send ? "send" : "receive", peer, step, c, e);
}

/* Floats added and checksummed per block in add_crc: 16 KiB, so the checksum
 * reads each block from L1 right after the add wrote it (a separate pass over
 * a 1 MiB chunk reads it from L3: 21 against 45 GB/s for crc32_iscsi here). */
#define CRC_BLOCK 4096

/* coll_add_f32(dst, src, n), returning the CRC32C of the result (net_crc32c
 * of dst[0..n) as bytes): the reduce-scatter's add and the checksum of the
 * chunk it sends next in one pass over the data. */
static uint32_t add_crc(float *restrict dst, const float *restrict src, size_t n)
{
    uint32_t crc = 0;
    for (size_t i = 0; i < n; i += CRC_BLOCK) {
        size_t l = n - i < CRC_BLOCK ? n - i : CRC_BLOCK;
        coll_add_f32(dst + i, src + i, l);
        crc = net_crc32c(crc, dst + i, l * sizeof(float));
    }
    return crc;
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

/* Posts the receives of ring step t: the reduce-scatter's into scratch slot
 * t % nscr, the all-gather's straight into place; handles in op slot t % NSLOT. */
static int post_step_recvs(struct run *x, float *buf, size_t n, int t, size_t seg_max, int nscr,
                           size_t maxch, struct net_op **recvs)
{
    coll_group *g = x->g;
    int R = g->R, rc = 0;
    size_t off, len, ce = g->chunk;
    coll_segment(n, R, mod(g->rank - t - 2, R), &off, &len);
    for (size_t c = 0; c < nchunks(g, len) && rc == 0; c++) {
        size_t l = len - c * ce < ce ? len - c * ce : ce;
        float *dst = t < R - 1 ? g->tmp + (size_t)(t % nscr) * seg_max + c * ce : buf + off + c * ce;
        rc = post_recv(x, t, c, dst, l, &recvs[(size_t)(t % NSLOT) * maxch + c]);
    }
    return rc;
}

/* Ring steps t0..t1-1 over buf (see the top of the file). */
static int ring(struct run *x, float *buf, size_t n, int t0, int t1)
{
    coll_group *g = x->g;
    int R = g->R, r = g->rank, rc = 0;
    if (n == 0 || R == 1 || t1 <= t0) return 0;
    size_t seg_max, o0, ce = g->chunk;
    coll_segment(n, R, 0, &o0, &seg_max);
    size_t maxch = nchunks(g, seg_max), T = (size_t)(t1 - t0);
    int nscr = R - 1 < NSLOT ? R - 1 : NSLOT; /* reduce-scatter steps in flight at once */
    if (t0 < R - 1) ensure_tmp(g, (size_t)nscr * seg_max);
    struct net_op **sends = ops_of(g, (T + NSLOT) * maxch), **recvs = sends + T * maxch;
    /* the first steps' receives, then the first step's sends */
    for (int t = t0; t < t1 && t < t0 + AHEAD && rc == 0; t++)
        rc = post_step_recvs(x, buf, n, t, seg_max, nscr, maxch, recvs);
    /* ready signals (see READY_AFTER): this rank's to rank-1 once its first
     * receives are up; rank+1's before the rest of the first step goes out */
    size_t soff, slen, roff0, rlen0;
    coll_segment(n, R, mod(r - t0 - 1, R), &soff, &slen);
    coll_segment(n, R, mod(r - t0 - 2, R), &roff0, &rlen0);
    struct net_op *rdy_in = NULL, *rdy_out = NULL;
    net_key rk = { (uint16_t)x->type, x->tag, COLL_MB_READY, (uint32_t)t0 };
    char e[NET_ERR_LEN];
    if (rc == 0 && nchunks(g, slen) > READY_AFTER &&
        net_recv_post(g->node, g->members[mod(r + 1, R)], rk, ready_dummy, 0, &rdy_in, e) != NET_OK)
        rc = fail(x, "receive", g->members[mod(r + 1, R)], -t0 - 1, 0, e);
    if (rc == 0 && nchunks(g, rlen0) > READY_AFTER &&
        net_send(g->node, g->members[mod(r - 1, R)], rk, ready_dummy, 0, g->timeout_ms, &rdy_out, e) != NET_OK)
        rc = fail(x, "send", g->members[mod(r - 1, R)], -t0 - 1, 0, e);
    for (size_t c = 0; c < nchunks(g, slen) && rc == 0; c++) {
        size_t l = slen - c * ce < ce ? slen - c * ce : ce;
        if (c == READY_AFTER) rc = wait_op(x, &rdy_in, W_READY_RECV, -t0 - 1, 0, 0);
        if (rc == 0) rc = post_send(x, t0, c, buf + soff + c * ce, l, 0, 0, &sends[c]);
    }
    for (int t = t0; t < t1 && rc == 0; t++) {
        size_t roff, rlen;
        coll_segment(n, R, mod(r - t - 2, R), &roff, &rlen);
        /* receives go up AHEAD steps before their data is consumed: a
         * neighbour running ahead finds them posted, and its message lands in
         * place instead of in an unclaimed buffer copied later */
        if (t + AHEAD < t1) rc = post_step_recvs(x, buf, n, t + AHEAD, seg_max, nscr, maxch, recvs);
        for (size_t c = 0; c < nchunks(g, rlen) && rc == 0; c++) {
            size_t l = rlen - c * ce < ce ? rlen - c * ce : ce;
            rc = wait_op(x, &recvs[(size_t)(t % NSLOT) * maxch + c], W_RECV, t, c, l);
            if (rc) break;
            /* partial sum received + own value: the order in coll.h; an
             * all-gather chunk goes on as it came, with the CRC it came with */
            uint32_t crc = x->crc;
            if (t < R - 1)
                crc = add_crc(buf + roff + c * ce, g->tmp + (size_t)(t % nscr) * seg_max + c * ce, l);
            if (t + 1 < t1)
                rc = post_send(x, t + 1, c, buf + roff + c * ce, l, 1, crc,
                               &sends[(size_t)(t + 1 - t0) * maxch + c]);
        }
    }
    for (size_t i = 0; i < T * maxch; i++) /* every send written (or the first failure) */
        if (sends[i] && rc == 0) rc = wait_op(x, &sends[i], W_SEND, t0 + (int)(i / maxch), i % maxch, 0);
    if (rdy_out && rc == 0) rc = wait_op(x, &rdy_out, W_READY_SEND, -t0 - 1, 0, 0);
    net_op_free(rdy_in);
    net_op_free(rdy_out);
    for (size_t i = 0; i < T * maxch; i++) net_op_free(sends[i]);
    for (size_t i = 0; i < NSLOT * maxch; i++) net_op_free(recvs[i]);
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
