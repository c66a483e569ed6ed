/* ps_proto.h — the parameter servers' wire messages (issue 12): what a worker
 * stage and a server, and a server and the coordinator, send each other over
 * net/ on top of stage/proto.h's control plane. Pure codecs: every field is
 * encoded with base/'s little-endian helpers and every length a decoder reads
 * is checked (against the payload length here, against the assignment by the
 * caller) before anything is indexed or allocated. The flow of a run is
 * described in stage/proto.h ("Parameter servers"); the server process is
 * stage/server.c, the worker side stage/runtime_ps.c.
 *
 * Keys are net/'s (type, step, mb, chunk): `step` the 0-based step the message
 * belongs to, `mb` the piece index (ps_assignment.pieces) for per-piece
 * messages, 0 otherwise; chunk 0. A worker's identity is its authenticated
 * hello's (stage, replica): a push names no worker. Floats travel as IEEE-754
 * binary32 in little-endian order, as every tensor message of pipetrain (the
 * hosts are little-endian: ps_proto_check_host). */
#ifndef PS_PS_PROTO_H
#define PS_PS_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "net/net.h"
#include "ps/ps.h"

enum {
    /* worker stage (stage k, replica r) -> server of the piece: one piece's
     * gradient of step `step`: PS_PUSH_HDR bytes (u32 piece, u32 n, u64 step,
     * f64 norm: the worker's global norm, asynchronous only, else 0) then n
     * floats. Key (MSG_PS_PUSH, step, piece, 0). */
    MSG_PS_PUSH = NET_TYPE_USER + 32,
    /* server -> worker stage: a piece's weights once step `step` is applied:
     * PS_PIECE_HDR bytes (u32 piece, u32 n, u64 version: updates applied, step
     * + 1 when synchronous) then n floats. Key (MSG_PS_WEIGHTS, step, piece, 0). */
    MSG_PS_WEIGHTS = NET_TYPE_USER + 33,
    /* server -> worker stage: its push of step `step` was refused; UTF-8
     * reason (ps_server_push's), no NUL. Key (MSG_PS_REFUSE, step, piece, 0).
     * The server logs the same line and fails the run (synchronous: the step
     * cannot complete without the push). */
    MSG_PS_REFUSE = NET_TYPE_USER + 34,
    /* server -> coordinator: the server's norm partials of step `step`
     * (ps_server_norm_partials): u32 n, then n records of PS_PARTIAL_BYTES
     * (u32 unit, u32 bucket, u32 seg, f64 sq). The coordinator answers with
     * stage/proto.h's MSG_NORM_REPLY (f64 global norm, key step). */
    MSG_PS_NORM = NET_TYPE_USER + 35,
    /* server -> replica 0 of the piece's stage, on checkpoint steps: the
     * piece's weights and AdamW moments after step `step`: PS_PIECE_HDR bytes
     * (u32 piece, u32 n, u64 version) then 3n floats, weights, m, v. Key
     * (MSG_PS_CKPT, step, piece, 0). */
    MSG_PS_CKPT = NET_TYPE_USER + 36,
    /* server -> coordinator at the end (key: the last step): PS_STATS_BYTES,
     * see ps_net_stats. */
    MSG_PS_STATS = NET_TYPE_USER + 37,
    /* Asynchronous modes (ps.staleness != 0) only. Worker stage -> each
     * server it uses: empty; "may I start step `step`? Send me the newest
     * weights of my pieces". Sent before the stage's pushes of step - 1 (or
     * before its first step). The server answers with MSG_PS_WEIGHTS(step,
     * piece) for every piece of the stage it holds (u64 version: updates
     * applied to the piece so far), piece by piece: once ps_server_may_start
     * allows step `step` and (on a step after a checkpoint step) the
     * checkpoint has been sent, each piece as soon as the stage's own push of
     * it for step - 1 has been taken. Key (MSG_PS_PULL, step, 0, 0). */
    MSG_PS_PULL = NET_TYPE_USER + 38,
    /* Asynchronous modes only. Coordinator -> every server: workers that
     * leave or join: PS_CTL_BYTES (u32 op: PS_CTL_DROP or PS_CTL_JOIN, u32
     * worker, u64 step: the joining worker's first step). Key (MSG_PS_CTL,
     * n, 0, 0) with n = 0, 1, 2, ... the coordinator's count of such
     * messages, so a server takes them in order. Server -> coordinator, the
     * answer to a drop (same key, the same 16 bytes): the worker's
     * connections here are closed and forgotten, so a process joining as it
     * is accepted; the coordinator logs the drop only once every server has
     * answered (a joiner reaches its servers before it JOINs). */
    MSG_PS_CTL = NET_TYPE_USER + 39,
};
_Static_assert(MSG_PS_CTL < NET_TYPE_COLL, "parameter-server messages run into the collectives' types");

#define PS_PUSH_HDR 24
#define PS_PIECE_HDR 16
#define PS_PARTIAL_BYTES 20
#define PS_CTL_BYTES 16
enum { PS_CTL_DROP = 0, PS_CTL_JOIN = 1 };

/* A server's statistics for summary.json's "servers" (MSG_PS_STATS: 6 fields
 * of 8 bytes in this order, then PS_STALE_BUCKETS u64, the staleness histogram
 * of ps_server_staleness). */
typedef struct {
    uint64_t pushes;         /* pushes accepted */
    uint64_t refused;        /* pushes refused (logged with their reason) */
    uint64_t bytes_received; /* push payload bytes received */
    uint64_t bytes_sent;     /* weight (and checkpoint) payload bytes sent */
    uint64_t steps;          /* steps applied by this server in this attempt */
    double wall_s;           /* from START to the last step's weights sent */
    uint64_t staleness[PS_STALE_BUCKETS];
} ps_net_stats;
#define PS_STATS_BYTES (48 + 8 * PS_STALE_BUCKETS)

/* 0 on a little-endian host (floats travel in the host's order), else -1. */
int ps_proto_check_host(void);

/* PUSH: writes the header and the n floats g into out (PS_PUSH_HDR + 4 n
 * bytes); returns the length. */
size_t ps_push_encode(uint8_t *out, int piece, long step, double norm, const float *g, size_t n);
/* Decodes a PUSH of `len` bytes from worker `worker` (the sender's replica)
 * into p, whose grad points into `in` (4-byte aligned when in is). The header
 * must agree with the payload length (n floats after it), with the key the
 * message came under (key_step, key_piece) and name a piece of a. Whether the
 * piece is this server's, its size and the step are ps_server_push's checks
 * (the refusal reasons). Returns 0, or -1 with why (ERR_LEN). */
int ps_push_decode(const ps_assignment *a, int worker, const uint8_t *in, uint64_t len, long key_step, int key_piece,
                   ps_push *p, char *why);

/* WEIGHTS and CKPT: the header (piece, n, version) into out; the floats are
 * the caller's to place after it. */
void ps_piece_hdr_encode(uint8_t *out, int piece, size_t n, long version);
/* Checks a WEIGHTS (arrays 1) or CKPT (arrays 3) payload of len bytes for
 * piece `piece` of a: the header names it, n is its length, and len is
 * PS_PIECE_HDR + 4 n x arrays. Writes the version. Returns 0, or -1 with err. */
int ps_piece_hdr_check(const ps_assignment *a, int piece, int arrays, const uint8_t *in, uint64_t len, long *version,
                       char *err);

/* NORM partials: encodes n partials (4 + PS_PARTIAL_BYTES n bytes); returns the
 * length. */
size_t ps_partials_encode(uint8_t *out, const ps_norm_partial *p, int n);
/* Decodes at most cap partials; returns their count, or -1 with err when the
 * count exceeds cap or disagrees with len. The tags are ps_norm_combine's to
 * check. */
int ps_partials_decode(const uint8_t *in, uint64_t len, ps_norm_partial *out, int cap, char *err);

void ps_stats_encode(uint8_t out[PS_STATS_BYTES], const ps_net_stats *s);
void ps_stats_decode(ps_net_stats *s, const uint8_t in[PS_STATS_BYTES]);

/* The largest payload of these messages for topology t's assignment a
 * (CKPT of the longest piece, a server's partials, STATS). */
uint64_t ps_proto_max_payload(const ps_assignment *a);

#endif
