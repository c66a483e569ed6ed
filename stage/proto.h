/* proto.h — the messages pipeline processes exchange over net/ (issue #4): the
 * data plane between stages and the control plane between each stage and the
 * coordinator. This header is the contract between stage/runtime.c (the stage
 * side) and coord/coord.c (the coordinator side).
 *
 * Every message is a net/ frame whose key is (type, step, mb, chunk); payloads
 * are little-endian, encoded field by field with the helpers below. `step` is the
 * 0-based index of the optimizer step the message belongs to (the coordinator's
 * metrics call it step+1, the number of steps taken).
 *
 * Connections: each stage listens on its topology host:port; stage i connects to
 * stage j when i < j and they exchange tensors (adjacent virtual stages, including
 * stage P-1 -> stage 0 with interleaved chunks); every stage connects to the
 * coordinator. The coordinator never carries tensors.
 *
 * One run, as the coordinator sees it:
 *   1. every stage connects and sends JOIN (step 0);
 *   2. the coordinator sends START to every stage (first step, total steps);
 *   3. per step s: each stage sends NORM(s) with its per-unit sums of squared
 *      gradients; the coordinator adds them in unit order into the global norm
 *      and sends NORM_REPLY(s) to every stage; the stage holding the head sends
 *      LOSS(s); on evaluation steps it also sends VAL(s); on checkpoint steps
 *      every stage writes its shard and sends CKPT_DONE(s), after which the
 *      coordinator writes the manifest and the COMPLETE marker;
 *   4. after the last step, when START carried PROTO_START_TRACE, every stage
 *      measures its clock offset to the
 *      coordinator (PROTO_SYNC_ROUNDS rounds of SYNC -> SYNC_REPLY, each stage
 *      in turn, rounds in order; the stage keeps the round with the smallest
 *      round trip), sends its trace (MSG_TRACE parts 0..n-1, times already on
 *      the coordinator's clock), then STATS, and waits for DONE, then exits.
 *      The trace is best effort: a stage that cannot send it sends a MSG_TRACE
 *      part with n_parts 0 and goes on to STATS; a coordinator that gives up
 *      on a stage's clock rounds answers its remaining SYNCs with a NaN clock
 *      (the stage then skips its trace). Neither fails the run.
 * A stage that cannot go on sends FAIL (best effort) with its reason and exits 1.
 *
 * Replicas (data parallelism, topology with R = n_replicas > 1; issue #8). The
 * processes are (stage k, replica r), net identity net_stage_id(k, r), process
 * index (launcher rank) p = r * P + k. Connections: stage i replica r connects
 * to stage j replica r as above (each replica is a whole pipeline); within
 * stage k, the replicas form the ring 0 -> 1 -> ... -> R-1 -> 0 of coll/ and
 * the lower replica index connects (r to r+1; with R > 2 also 0 to R-1); every
 * process connects to the coordinator. With R = 1 everything is as above.
 * What changes with R > 1, as the coordinator sees it:
 *   - JOIN from every process (payload unchanged: its stage, pid, units; the
 *     replica is the authenticated hello's); START, NORM_REPLY, DONE to every
 *     process; STATS, SYNC, TRACE from every process.
 *   - NORM(s) from every process: u32 n, then n f64: for each unit of the
 *     stage in order, for each of the unit's gradient buckets b in order
 *     (topo_unit_buckets), the sum of squares (double, elements in order) of
 *     this replica's segment of the bucket (coll_segment(len, R, r)); a unit
 *     without parameters contributes nothing. The coordinator forms unit u's
 *     square norm as 0.0 + partial(b0, r0) + partial(b0, r1) + ... +
 *     partial(b1, r0) + ... (buckets outer, replicas inner) and the global norm
 *     from those in unit order (optim_global_norm). Every replica holds only its
 *     own segments' reduced gradients with train.zero, the whole with plain
 *     all-reduce; either way the same numbers, so ZeRO-1 is bitwise equal.
 *   - LOSS(s) from the head stage of every replica: f64 = that replica's sum
 *     of micro-batch losses / (batch_size * seq_len) (the global batch); the
 *     step's loss is their sum in replica order (replica 0's value first).
 *   - VAL(s) from the head stage of replica 0 only. The evaluation's batches
 *     (Bm windows each, in window order) are split over the replica pipelines:
 *     replica r runs the contiguous block coll_segment(n_batches, R, r)
 *     (MSG_EVAL_ACT's mb counts from 0 within the block). The head stages then
 *     pass the running sum of the batch losses along their ring (MSG_EVAL_SUM,
 *     replica 0 -> 1 -> ... -> R-1 -> 0), each adding its block's losses in
 *     order to its predecessor's sum, so replica 0 ends with bitwise the sum
 *     one pipeline forms (0.0 + loss 0 + loss 1 + ...) and sends the mean.
 *     With parameter servers (no ring) replica 0's pipeline alone evaluates.
 *   - CKPT_DONE(s) from replica 0 of every stage only: it writes the stage's
 *     shard (each tensor once, by name); the others have only taken part in
 *     the collectives the shard needed (with train.zero, gathering the AdamW
 *     moments).
 *
 * Parameter servers ("sync": "ps", ps.staleness 0; issue 12; the messages
 * and their codecs are ps/ps_proto.h). Processes: the grid as above (each
 * replica r is worker r; the replicas of a stage form no ring) plus server j
 * (`pipetrain server --server j`, stage/server.c; net identity
 * net_server_id(j), launcher index P x R + j, named "server j (host:port)").
 * Connections: server j listens on parameter_servers[j] and accepts only the
 * replicas of the stages holding a piece on it (ps_assign), which connect to
 * it; the server connects to the coordinator, which accepts servers 0..S-1.
 * Every hello is authenticated, so pushes and weights carry the transport's
 * checksums and HMAC authentication like every other message. What changes:
 *   - JOIN from every server too: u32 server, u32 pid, u32 pieces held;
 *     START and DONE to every server; STATS from stages, MSG_PS_STATS from
 *     servers (summary.json "servers"); FAIL either way as for stages.
 *   - per step s: while its backward runs, each worker stage pushes the
 *     pieces of each unit once the unit's gradient is final (MSG_PS_PUSH,
 *     the tied embedding after the head's gradient joined it); it sends no
 *     NORM and runs no AdamW. Server j, once every worker pushed every piece
 *     it holds (ps_server_push; a refusal is logged, told to the worker with
 *     MSG_PS_REFUSE and fails the run), sends MSG_PS_NORM(s) (its blocks'
 *     partials); the coordinator gathers every server's, combines them with
 *     ps_norm_combine (#8's order, so the norm is the all-reduce run's), logs
 *     it as the step's grad_norm and replies NORM_REPLY(s) to the servers
 *     only; each server applies AdamW (ps_server_apply) and sends every
 *     worker of a piece's stage MSG_PS_WEIGHTS(s, piece) (version s + 1). A
 *     worker waits (step timeout) for the weights of all its pieces, copies
 *     them into its part, then exchanges the tied embedding as usual; LOSS
 *     and VAL as with replicas (above); replica 0's pipeline alone evaluates.
 *   - on checkpoint steps every server sends replica 0 of each stage its
 *     pieces' weights and moments (MSG_PS_CKPT(s, piece)); replica 0 writes
 *     the stage's shard with the usual writer and sends CKPT_DONE(s): the
 *     checkpoint is by tensor name, so it resumes under all-reduce, on one
 *     host, or with other servers. On resume (START first > 0) each server
 *     loads the units its pieces touch (run_resume_part) and ps_server_import.
 * Asynchronous parameter servers (ps.staleness s > 0 or -1; issue 12): no
 * step of the whole run; each worker (replica r) goes at its own pace.
 *   - each worker stage sends MSG_PS_PULL(t) to every server it uses before
 *     its pushes of step t - 1 (before its first step for the first), and
 *     before step t waits (step timeout, naming the server) for MSG_PS_WEIGHTS(t,
 *     piece) of its pieces: the server answers once ps_server_may_start(r, t),
 *     the stage's pushes of t - 1 are applied and, after a checkpoint step,
 *     the checkpoint was sent; stage 0 then sends the pulled embedding to the
 *     head stage (MSG_TIED_W(t)) when tied.
 *   - after its actions each stage sends NORM(t) as with R = 1 (u32 n, n f64
 *     per-unit sums of squares); the coordinator combines replica r's P NORMs
 *     in unit order and replies NORM_REPLY(t) to those P only, without
 *     waiting for other replicas. Pushes carry that norm, so they go AFTER
 *     it (all of the stage's pieces, MSG_PS_PUSH with the f64 norm set): they
 *     no longer overlap the backward pass, which costs one coordinator round
 *     trip plus the push time per step. Then LOSS(t) from r's head stage
 *     (its share / (B*T) as with replicas; the coordinator logs the mean over
 *     the share, one metrics line per worker-step), VAL(t) from replica 0's
 *     head on evaluation steps.
 *   - checkpoint steps t: once every active worker pushed its steps <= t,
 *     each server sends MSG_PS_CKPT(t, piece) with the state to the lowest
 *     active replica of the piece's stage and an EMPTY MSG_PS_CKPT(t, piece)
 *     to the other active ones; every worker stage waits for them (the
 *     barrier), the one that got the state writes the shard and sends
 *     CKPT_DONE(t); the coordinator commits once every stage's came.
 *   - a dead worker process (connection failed, launcher saw it exit, or
 *     nothing within the step timeout) drops its replica: MSG_PS_CTL drop to
 *     every server, an event line; its dead connections are forgotten
 *     (net_peer_forget) so processes started with `stage --join` can
 *     authenticate as them: they send JOIN as usual, and when all P of the
 *     replica have, MSG_PS_CTL join (first step J: the slowest active
 *     worker's) goes to every server and START(J, total) to the P.
 *   - the end: a server sends MSG_PS_STATS once every active worker pushed
 *     every step and the last checkpoint was sent; the coordinator gathers
 *     STATS from the live processes and says DONE.
 * Threads: a server serves from its main thread (posting receives for every
 * push of the step, then waiting in slices), never from net/'s network
 * thread; a worker pushes from its compute thread (net/ sends asynchronously,
 * so pushes overlap the rest of the backward). */
#ifndef STAGE_PROTO_H
#define STAGE_PROTO_H

#include <stdint.h>
#include <string.h>

#include "base/base.h"
#include "run/run.h"
#include "net/net.h"

enum {
    /* data plane, stage <-> stage; chunk = the RECEIVING virtual stage (0 for MSG_EVAL_SUM) */
    MSG_ACT = NET_TYPE_USER + 0,       /* activation (batch*seq*dim floats) for F */
    MSG_GRAD = NET_TYPE_USER + 1,      /* gradient (batch*seq*dim floats) for B/BW */
    MSG_EVAL_ACT = NET_TYPE_USER + 2,  /* activation during evaluation; mb = eval batch */
    MSG_TIED_GRAD = NET_TYPE_USER + 3, /* tied lm_head gradient, head stage -> stage 0 (vocab*dim floats) */
    MSG_TIED_W = NET_TYPE_USER + 4,    /* updated embedding, stage 0 -> head stage (vocab*dim floats) */
    MSG_EVAL_SUM = NET_TYPE_USER + 5,  /* head stage replica r -> replica r+1 (R-1 -> 0), all-reduce grids:
                                          f64 running sum of the validation batch losses */

    /* control plane, stage <-> coordinator */
    MSG_JOIN = NET_TYPE_USER + 16,       /* stage -> coord: u32 stage, u32 pid, u32 n_units */
    MSG_START = NET_TYPE_USER + 17,      /* coord -> stage: u64 first_step, u64 total_steps
                                            [, u64 flags: PROTO_START_TRACE] */
    MSG_NORM = NET_TYPE_USER + 18,       /* stage -> coord: u32 n, then n f64 per-unit sq norms in the
                                            stage's unit order */
    MSG_NORM_REPLY = NET_TYPE_USER + 19, /* coord -> stage: f64 global gradient norm */
    MSG_LOSS = NET_TYPE_USER + 20,       /* head stage -> coord: f64 mean training loss */
    MSG_VAL = NET_TYPE_USER + 21,        /* head stage -> coord: f64 mean validation loss, u64 tokens */
    MSG_CKPT_DONE = NET_TYPE_USER + 22,  /* stage -> coord: empty; its shard files are durable */
    MSG_STATS = NET_TYPE_USER + 23,      /* stage -> coord: see proto_stats */
    MSG_DONE = NET_TYPE_USER + 24,       /* coord -> stage: empty; exit now */
    MSG_FAIL = NET_TYPE_USER + 25,       /* either way: UTF-8 reason, no NUL */
    MSG_SYNC = NET_TYPE_USER + 26,       /* stage -> coord: empty; mb = round 0..PROTO_SYNC_ROUNDS-1 */
    MSG_SYNC_REPLY = NET_TYPE_USER + 27, /* coord -> stage: f64 coordinator clock (CLOCK_MONOTONIC s); mb = round */
    MSG_TRACE = NET_TYPE_USER + 28,      /* stage -> coord: mb = part 0..n-1; u32 n_parts, u32 n_events,
                                            then n_events proto_event records of PROTO_EVENT_BYTES;
                                            n_parts 0: the stage gives up its trace (no more parts),
                                            UTF-8 reason after the 8 bytes */
    /* NET_TYPE_COLL (NET_TYPE_USER + 48) .. + 7 are coll/'s (coll/coll.h) */
};
_Static_assert(MSG_TRACE < NET_TYPE_COLL, "stage messages run into the collectives' types");

/* What a stage reports at the end (MSG_STATS payload, 12 fields of 8 bytes in
 * run_stage_stats's order; doubles as their IEEE-754 bit patterns). */
typedef run_stage_stats proto_stats;
#define PROTO_STATS_BYTES 96

/* START flags. */
#define PROTO_START_TRACE 1ull /* send SYNC rounds and the trace before STATS */
#define PROTO_START_LIVE 2ull  /* append the live trailer to every NORM (run --http: coord/coord_http.h) */

/* The live trailer (START flag PROTO_START_LIVE; the coordinator's web view):
 * appended to a stage's NORM after its norms (or partials), so the live view
 * costs no extra message: u32 PROTO_LIVE_MAGIC, u32 n_events, f64 the stage's
 * clock when it sends the NORM (the coordinator aligns the events with it),
 * then PROTO_STATS_BYTES of the stage's statistics so far (proto_stats), then
 * n_events <= PROTO_LIVE_MAX_EVENTS proto_event records: this step's events on
 * the stage's clock (the first ones when there are more). */
#define PROTO_LIVE_MAGIC 0x4556494cu /* "LIVE" */
#define PROTO_LIVE_MAX_EVENTS 1024u
#define PROTO_LIVE_HEAD_BYTES (16 + PROTO_STATS_BYTES)
#define PROTO_LIVE_MAX_BYTES (PROTO_LIVE_HEAD_BYTES + PROTO_LIVE_MAX_EVENTS * PROTO_EVENT_BYTES)

static inline void proto_stats_encode(uint8_t out[PROTO_STATS_BYTES], const proto_stats *s)
{
    put_u64le(out, s->peak_act_bytes);
    put_u64le(out + 8, s->peak_in_flight);
    put_f64le(out + 16, s->compute_s);
    put_f64le(out + 24, s->wait_s);
    put_f64le(out + 32, s->optim_s);
    put_u64le(out + 40, s->bytes_sent);
    put_u64le(out + 48, s->steps);
    put_f64le(out + 56, s->wall_s);
    put_f64le(out + 64, s->allreduce_s);
    put_f64le(out + 72, s->exposed_s);
    put_u64le(out + 80, s->optim_bytes);
    put_u64le(out + 88, s->extra_weight_bytes);
}
static inline void proto_stats_decode(proto_stats *s, const uint8_t in[PROTO_STATS_BYTES])
{
    s->peak_act_bytes = get_u64le(in);
    s->peak_in_flight = get_u64le(in + 8);
    s->compute_s = get_f64le(in + 16);
    s->wait_s = get_f64le(in + 24);
    s->optim_s = get_f64le(in + 32);
    s->bytes_sent = get_u64le(in + 40);
    s->steps = get_u64le(in + 48);
    s->wall_s = get_f64le(in + 56);
    s->allreduce_s = get_f64le(in + 64);
    s->exposed_s = get_f64le(in + 72);
    s->optim_bytes = get_u64le(in + 80);
    s->extra_weight_bytes = get_u64le(in + 88);
}

/* One timed event of a stage's trace: a compute action (op = SCHED_F, SCHED_B,
 * SCHED_W or SCHED_BW from scheduler/sched.h), a wait for a tensor (PROTO_EV_WAIT:
 * the compute thread blocked on a receive for action (mb, chunk) of kind `kind`),
 * a send (PROTO_EV_SEND: from posting to observed completion), or a gradient
 * bucket's collective among the replicas (PROTO_EV_ALLREDUCE, mb = the bucket,
 * on the communication thread: it overlaps the compute track), or a pause of
 * the straggler hook (PROTO_EV_PAUSE, stage/straggle.h: a sleep at the start of
 * the step, on the compute track; kind, chunk and mb 0). Times in
 * seconds on the coordinator's CLOCK_MONOTONIC. Encoded in 32 bytes:
 * u8 op, u8 kind, u16 chunk, u32 mb, u64 step, f64 t0, f64 t1. */
/* PROTO_EV_UNIT is no timed span but a per-unit figure, sent after the window's
 * events: kind = SCHED_F, SCHED_B or SCHED_W, chunk = the global unit index, mb =
 * the number of calls timed, t0 = 0, t1 = the median seconds of the unit's last
 * calls (at most RT_UNIT_SAMPLES; model_part.unit_time) in the training steps after
 * the first (all steps of a one-step run); step = the last step. */
enum { PROTO_EV_WAIT = 4, PROTO_EV_SEND = 5, PROTO_EV_ALLREDUCE = 6, PROTO_EV_PAUSE = 7, PROTO_EV_UNIT = 8 };
typedef struct {
    uint8_t op, kind;
    uint16_t chunk;
    uint32_t mb;
    uint64_t step;
    double t0, t1;
} proto_event;
#define PROTO_EVENT_BYTES 32
#define PROTO_SYNC_ROUNDS 8
/* Events per MSG_TRACE part: a part is at most PROTO_TRACE_PART_BYTES, which
 * every process's payload limit admits whatever the model's tensor sizes
 * (stage_max_payload). */
#define PROTO_TRACE_PART_EVENTS 1024
#define PROTO_TRACE_PART_BYTES (8 + PROTO_TRACE_PART_EVENTS * PROTO_EVENT_BYTES)
/* The most events a stage sends (its bounded trace window, stage/trace_window.h)
 * and so the most parts the coordinator accepts from one stage. */
#define PROTO_TRACE_MAX_EVENTS (1u << 16)
#define PROTO_TRACE_MAX_PARTS (PROTO_TRACE_MAX_EVENTS / PROTO_TRACE_PART_EVENTS)

static inline void proto_event_encode(uint8_t *p, const proto_event *e)
{
    p[0] = e->op;
    p[1] = e->kind;
    p[2] = (uint8_t)e->chunk;
    p[3] = (uint8_t)(e->chunk >> 8);
    put_u32le(p + 4, e->mb);
    put_u64le(p + 8, e->step);
    put_f64le(p + 16, e->t0);
    put_f64le(p + 24, e->t1);
}
static inline void proto_event_decode(proto_event *e, const uint8_t *p)
{
    e->op = p[0];
    e->kind = p[1];
    e->chunk = (uint16_t)(p[2] | (p[3] << 8));
    e->mb = get_u32le(p + 4);
    e->step = get_u64le(p + 8);
    e->t0 = get_f64le(p + 16);
    e->t1 = get_f64le(p + 24);
}

/* Evaluation and checkpoint steps, decided the same way by every process:
 * step s (0-based) of total evaluates when it is the last step or
 * (s+1) % eval_every == 0; it checkpoints when it is the last step or
 * (s+1) % checkpoint_every == 0. */

/* Environment variable that carries the shared secret to stage processes the
 * launcher starts (when the topology names no secret_file). */
#define PROTO_SECRET_ENV "PIPETRAIN_SECRET"
/* The well-known secret --insecure puts in PROTO_SECRET_ENV (cli_insecure_check)
 * for the stages it starts: it authenticates nothing and keys no encryption, so
 * it does not count as a configured secret (proto_secret_set). */
#define PROTO_INSECURE_SECRET "pipetrain --insecure: a well-known secret, no protection"
/* 1 when t names a secret_file or PROTO_SECRET_ENV holds a secret other than
 * --insecure's well-known one. Any thread (reads the environment). */
int proto_secret_set(const topo *t);

#endif
