/* coll.h — collectives over the transport on float32 buffers: ring all-reduce
 * (reduce-scatter then all-gather), reduce-scatter, all-gather and broadcast
 * among a group of R processes that are peers of one struct net_node.
 * coll/ sits on net/ alone: it knows no layer, no model and no schedule.
 *
 * Segments: a buffer of n floats is cut into R segments; segment i is owned by
 * rank i and starts at i * (n / R) + min(i, n % R) with n / R elements, the first
 * n % R segments one element longer (coll_segment). Each ring step moves one
 * segment to rank + 1 and receives one from rank - 1, in messages of at most
 * the group's chunk size (1 MiB by default) so that large buffers stream:
 * chunk c of a step is sent as soon as chunk c of the step before has been
 * added (and rank + 1 has room for it, see Messages).
 *
 * Determinism: the reduced segment i is
 *     (((x_{i+1} + x_{i+2}) + x_{i+3}) + ... + x_{i+R-1}) + x_i
 * element by element in float32, ranks taken mod R, x_k being rank k's input:
 * the partial sum starts at rank i+1 and travels the ring, each rank adding its
 * own value to what it received. The order depends on R only, never on timing
 * or on the chunk size; all-gather copies the owner's bits, so every rank ends
 * with bitwise the same buffer.
 *
 * Messages: key type COLL_T_* (the range NET_TYPE_COLL.. reserved in net/net.h),
 * step = the caller's tag, mb = the ring step (broadcast: the root), chunk = the
 * chunk index. Before the rest of its first ring step, a rank waits for an
 * empty ready message from rank + 1 (mb = COLL_MB_READY, chunk = that step),
 * sent once rank + 1 has posted its receives: only when that step has more
 * than one chunk. The reduce-scatter's chunks are received into a pool of a
 * few chunk buffers (8 MiB of them, at least 4 and at most 256 chunks; in
 * COLL_RX_SCRATCH mode, the default, the slots are only a window and each
 * chunk is added slice by slice as it is read, see enum coll_rx), and a
 * rank sends them only as far as rank + 1's credits allow: empty messages
 * (mb = COLL_MB_CREDIT, chunk = the credit's number from 1) that rank + 1 sends
 * as it frees pool buffers (every quarter of the pool), so that no chunk
 * arrives before its receive is posted. With R = 2 (rank - 1 is rank + 1, and
 * a credit would queue behind the data on the one connection) no credit is
 * sent: a rank sends reduce-scatter chunk s only when s < a + P/2, a being the
 * chunks it has added itself, which keeps it behind rank + 1's receives with
 * the same pool. Two collectives in flight at once on the same members need
 * different tags, e.g. (step << 16 | bucket). */
#ifndef COLL_COLL_H
#define COLL_COLL_H

#include <stddef.h>
#include <stdint.h>

#include "net/net.h"

#define COLL_CHUNK_BYTES (1u << 20) /* default largest message of a collective */
#define COLL_MB_READY 0xffffffffu    /* key.mb of the ready signal (see Messages) */
#define COLL_MB_CREDIT 0xfffffffeu   /* key.mb of a credit (see Messages) */

enum {
    COLL_T_ALLREDUCE = NET_TYPE_COLL + 0, /* mb = ring step 0 .. 2R-3 */
    COLL_T_REDUCE_SCATTER = NET_TYPE_COLL + 1,
    COLL_T_ALLGATHER = NET_TYPE_COLL + 2,
    COLL_T_BROADCAST = NET_TYPE_COLL + 3, /* mb = root */
};

typedef struct coll_group coll_group;

/* Creates a group of R processes: members[0..R-1] are their net identities in
 * ring order and this process is members[rank]. The node must stay alive
 * longer than the group; the caller connects the peers (net_connect) as usual:
 * each rank talks to members[rank - 1] and members[rank + 1] only. Every wait
 * of every collective gives up after timeout_ms (> 0). Returns NULL with a
 * message in err (ERR_LEN) on bad arguments (R < 1, rank out of range,
 * duplicate members). Free with coll_group_free. Any thread. */
coll_group *coll_group_new(struct net_node *n, const net_peer_id *members, int R, int rank,
                           int timeout_ms, char *err);

/* Makes the collective running on g (and every later one) fail within one
 * wait slice (100 ms) with "aborted by this process", so that a process that
 * gives up can join the thread running it. Any thread; NULL: no-op. */
void coll_group_abort(coll_group *g);

/* Frees g (NULL: no-op). No collective may be running on it. */
void coll_group_free(coll_group *g);

/* Sets the largest message (bytes, rounded down to whole floats, at least 4)
 * a collective of g sends; every member must use the same value. Returns 0, or
 * -1 with err on a bad value. Not during a collective. */
int coll_group_set_chunk(coll_group *g, size_t bytes, char *err);

/* Bytes of receive scratch g holds: the reduce-scatter's pool, grown to what
 * the largest collective so far needed: at most P chunks, P = 8 MiB / the
 * chunk size, at least 4 and at most 256 chunks, whatever the buffer's size;
 * plus, once a collective ran in COLL_RX_SCRATCH mode, its scratch (at most a
 * slice). For tests and reports. Any thread, not during a collective. */
size_t coll_group_scratch_bytes(const coll_group *g);

/* Where the reduce-scatter's chunks land (the wire is the same either way,
 * so the members of a group may differ; COLL_RX_DEFAULT unless the
 * environment or coll_group_set_rx says otherwise):
 * - COLL_RX_POOL: each chunk is read whole into a slot of the pool (above),
 *   its CRC checked as it lands, and added into place from there once it is
 *   complete; the pool (8 MiB) does not stay in cache, so the add reads it
 *   back from memory;
 * - COLL_RX_SCRATCH: each chunk is read from the socket a slice at a time
 *   into one small scratch per group (a slice, reused; net_nt_recv_sliced)
 *   and each slice is added into place, with the sum's CRC, while it is in
 *   cache. The received bytes' CRC is continued slice by slice as they land
 *   and checked when the chunk is complete: a mismatch fails the collective
 *   (a checksum mismatch naming the peer) before anything derived from the
 *   chunk is sent, so the unverified sums already in buf are never returned
 *   as a success (on failure buf holds partial results, as always).
 * Bitwise the same results. The pool's slots and credits are the same in
 * both modes (only the slots' memory is not allocated in scratch mode). */
enum coll_rx { COLL_RX_POOL = 0, COLL_RX_SCRATCH = 1 };
#define COLL_RX_ENV "PIPETRAIN_RING_RX"             /* pool | scratch */
#define COLL_RX_SLICE_ENV "PIPETRAIN_RING_RX_SLICE" /* bytes */
#define COLL_RX_DEFAULT COLL_RX_SCRATCH
#define COLL_RX_SLICE_DEFAULT (256u << 10) /* a quarter of this machine's 1 MiB L2 */
#define COLL_RX_SLICE_MIN 4096u
#define COLL_RX_SLICE_MAX (16u << 20)

/* The receive mode and slice from the environment (COLL_RX_ENV, "pool" or
 * "scratch"; COLL_RX_SLICE_ENV, bytes, a multiple of 64 in [COLL_RX_SLICE_MIN,
 * COLL_RX_SLICE_MAX]; unset or empty: the defaults above), as
 * coll_group_new reads them. Returns 0, or -1 with err (ERR_LEN) naming the
 * variable and its value. Any thread. */
int coll_rx_from_env(int *mode, size_t *slice, char *err);

/* Sets g's receive mode (enum coll_rx) and slice (bytes, as above) for its
 * next collectives, whatever the environment said. Returns 0, or -1 with err
 * on a bad value. Not during a collective. */
int coll_group_set_rx(coll_group *g, int mode, size_t slice, char *err);

/* g's receive mode, "pool" or "scratch" (a static string), and its slice in
 * *slice (if not NULL). Any thread. */
const char *coll_group_rx(const coll_group *g, size_t *slice);

/* Segment of rank i in a buffer of n floats among R: offset and length. */
void coll_segment(size_t n, int R, int i, size_t *off, size_t *len);

/* dst[j] = src[j] + dst[j] for j < n, in float32 (the received partial sum
 * first, as in the order above): the all-reduce's addition pass, exported so
 * that bench allreduce's plain-socket baseline does the same arithmetic. dst
 * and src must not overlap. Vectorised; bitwise the scalar loop's result. Any
 * thread. */
void coll_add_f32(float *restrict dst, const float *restrict src, size_t n);

/* coll_add_f32(dst, src, n) and the checksum of the result in the same pass,
 * block by block (COLL_CRC_BLOCK floats) while each block is in L1: returns
 * net_crc32c(0, dst, n * 4) as it is after the add, the CRC32C the
 * reduce-scatter sends the sum with (net_send_ex, NET_SEND_CRC). dst bitwise
 * coll_add_f32's result. Any thread. */
#define COLL_CRC_BLOCK 4096
uint32_t coll_add_f32_crc(float *restrict dst, const float *restrict src, size_t n);

/* The contract shared by the four collectives below:
 * - every member calls the same collective with the same n, tag (and root);
 * - one thread at a time per group (different groups may run concurrently on
 *   one node from different threads);
 * - all-reduce, reduce-scatter and all-gather run on the node's network
 *   thread (net/net_coll.h): it adds and forwards each chunk as it reads it;
 *   the calling thread only posts the collective and sleeps until it ends
 *   (the group's timeout counts from the last chunk or signal that moved it
 *   on), so the additions cost the network thread's CPU, not the caller's;
 * - returns 0, or -1 with err (ERR_LEN) naming the collective, the tag, the
 *   peer (stage, replica), the ring step and the chunk: a peer that failed or
 *   stayed silent for the group's timeout, a message of the wrong length;
 *   on failure buf holds partial results and nothing is left posted. */

/* All-reduce (sum) in place: on return every member's buf[0..n) holds the sum
 * of all members' inputs, in the order given at the top of this file, with
 * bitwise the same values on every member. Sends 2(R-1)/R of the buffer. */
int coll_allreduce_sum(coll_group *g, float *buf, size_t n, uint64_t tag, char *err);

/* Reduce-scatter (sum) in place: on return this rank's segment of buf
 * (coll_segment(n, R, rank)) holds the sum, in the same order as the
 * all-reduce; the other segments hold partial sums (scratch). */
int coll_reduce_scatter(coll_group *g, float *buf, size_t n, uint64_t tag, char *err);

/* All-gather in place: each rank's own segment of buf is its input; on return
 * every segment holds its owner's bits. */
int coll_allgather(coll_group *g, float *buf, size_t n, uint64_t tag, char *err);

/* Broadcast in place from rank root: on return every member's buf holds the
 * root's bits (streamed along the ring root -> root+1 -> ... chunk by chunk). */
int coll_broadcast(coll_group *g, float *buf, size_t n, int root, uint64_t tag, char *err);

#endif
