/* rt.h — private to the stage runtime (runtime.c: the step; runtime_run.c:
 * set-up, evaluation, checkpoints, tied embeddings and the main loop). */
#ifndef STAGE_RT_H
#define STAGE_RT_H

#include <stdarg.h>

#include "model/data.h"
#include "model/optim.h"
#include "scheduler/sched.h"
#include "stage/proto.h"
#include "stage/stage.h"

/* Per-unit timing samples kept per unit and op for costs.json's "units" (the
 * most recent calls; their median is sent with the trace). */
#define RT_UNIT_SAMPLES 64

/* One chunk (a run of consecutive units = one virtual stage) of this stage. */
typedef struct {
    int lo, hi;            /* local unit range [lo, hi) in the part */
    int vs;                /* virtual stage */
    int prev, next;        /* stages holding vs-1 and vs+1 (-1: none) */
    size_t slot_bytes;     /* bytes of one micro-batch's stash (model_part_mem) */
    size_t work_bytes;     /* bytes of one micro-batch's backward work, B to W */
    size_t unit_work_bytes;/* the largest unit's work: a fused BW's, unit by unit */
    size_t fwd_bytes;      /* what an F holds while it runs (recomputation) */
    float **work;          /* (M) work of micro-batches between B and W */
    float **wfree;         /* (M + 1) work buffers not in use */
    int n_wfree;
    float *unit_work;      /* a fused BW's work (unit_work_bytes), on first use */
    float **act_in, **act_out, **grad_in, **grad_out; /* (M) tensors of one micro-batch */
    struct net_op **rx_act, **rx_grad, **tx_act, **tx_grad; /* (M) */
    /* (M) the same four tensors as they travel, encoded (wire.activations /
     * wire.gradients, topo.h); NULL when that direction is fp32 (the float
     * buffers above go on the wire as they are) */
    uint8_t **wire_in, **wire_out, **wire_gin, **wire_gout;
    model_slot **slot;     /* (M) slots of micro-batches in flight */
    model_slot **free;     /* (M + 1) slots not in use */
    int n_free;
    /* Weight gradients accumulate in micro-batch order (bitwise equal to the
     * one-stage trainer): a W that comes ahead of its turn is only noted here and
     * runs as soon as the earlier micro-batches' W have run. */
    uint8_t *w_due;        /* (M) W(mb) asked for, not yet run */
    int next_w;            /* the micro-batch whose W runs next */
} rt_chunk;

/* A tensor send not yet seen complete (for the trace). */
typedef struct {
    struct net_op **op;
    double t0;
    uint8_t kind;
    uint16_t chunk;
    uint32_t mb;
} rt_pending;

/* The straggler hook (stage/straggle.h, runtime_straggle.c): off when p is 0. */
typedef struct {
    double p, factor;      /* this replica's pause probability, and length in normal step times */
    double recent[9];      /* compute seconds of its latest steps (a ring): the normal step time */
    int n_recent, next;
    double compute0;       /* stats.compute_s when the step's actions began */
    long pauses;
    double paused_s;
} rt_straggle;

typedef struct rt_dp rt_dp;
typedef struct rt_ps rt_ps;

typedef struct {
    const topo *t;
    const stage_opts *o;
    int K, P, V, M;        /* stage, stages, virtual stages, micro-batches */
    int rep, R, rank;      /* replica, replicas, process index rep * P + K */
    rt_dp *dp;             /* data parallelism (R > 1; runtime_dp.c), else NULL */
    rt_ps *ps;             /* parameter-server worker (sync "ps"; runtime_ps.c), else NULL (then dp is NULL) */
    size_t x_off;          /* this replica's first token of the step's batch: its first sequence * T */
    long step;             /* current step (0-based) */
    char *err;
    struct net_node *node;
    uint8_t secret[256];
    stage_peers peers;     /* who may connect to this stage (net_config.accept_peer) */
    uint8_t *inbound;      /* (P * R) flags by rank: the lower neighbours, which connect to it */
    model_part *part;
    optim_adamw *opt;
    sched_schedule *sched;
    int n_chunks;
    rt_chunk *ch;
    int holds_embed, holds_head, has_data;
    int head_stage;        /* stage holding the head */
    data_set data;
    data_sampler sampler;
    int *x, *y;            /* (B, T) this step's tokens and targets */
    double *loss_mb;       /* (M) */
    double *sq;            /* (part->n_units) per-unit squared gradient norms */
    uint8_t *normbuf;      /* 4 + 8 * part->n_units (at least 16): NORM out, replies in */
    float *tied_buf;       /* vocab*dim: the tied gradient or weights in transit */
    size_t B, Bm, T, C;
    float loss_scale;
    double step_timeout_s;
    long in_flight;
    uint64_t act_bytes;
    proto_stats stats;
    int trace;             /* the coordinator asked for the trace (START flag) */
    int live;              /* the coordinator asked for the live trailer on NORM (START flag, run --http) */
    struct trace_window *tw; /* the recent steps' events on this stage's clock (runtime_trace.c) */
    model_unit_timer *unit_time; /* with the trace: model_part.unit_time of the training steps */
    rt_pending *pend;      /* (2 M v; 3 M with 2bw) */
    int n_pend;
    rt_straggle straggle;
    /* The micro-batch buffers of the chunks: NQ = M, or 2M with 2bw (two steps'
     * micro-batches are in flight); the action being run uses Q(mb) = qbase + mb
     * (runtime.c) and keys its tensors with cur_step. */
    int NQ, qbase;
    long cur_step;
    /* PipeDream-2BW (schedule.kind "2bw", runtime_2bw.c; README): micro-batches
     * of step t use weight version W(t-1) (wv[(t-1) & 1]); the gradient of step t
     * accumulates in gv[t & 1]; AdamW of step t (W(t+1) = W(t) - ...) waits until
     * the stage's first forward of step t+2, or the end of step t when it
     * evaluates or checkpoints, or the end of step t+1. */
    int twobw;
    long first_step;       /* the first step this process runs: the pipeline starts empty */
    float *wv[2], *gv[2];
    float *own_params, *own_grads; /* the part's own buffers, given back before it is freed */
    long opt_pending;      /* step whose AdamW has not run yet, or -1 */
    int *xb[2], *yb[2];    /* batches of the steps of each parity (r->x, r->y point at one) */
    long sampled;          /* batches drawn so far */
    uint64_t sampler_after[2]; /* sampler state after drawing batch u, at [u & 1] */
    sched_action *steplist;/* this step's actions (sched_2bw_step) */
    double wire_s[2];      /* seconds spent encoding [0] and decoding [1] tensors (runtime_wire.c) */
    uint64_t wire_floats[2]; /* floats encoded [0] and decoded [1] */
} rt;

double rt_now(void);
/* Formats "stage K (host:port) at step N: ..." into r->err; returns -1. */
int rt_fail(rt *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Waits for op in 1 s slices until it completes or fails (message names `what`),
 * or the step timeout passes. Counts the time as waiting. */
int rt_await(rt *r, struct net_op *op, const char *what);
int rt_send(rt *r, net_peer_id to, net_key k, const void *buf, uint64_t len, struct net_op **op);
/* rt_send with a payload tag (net.h NET_SEND_TAG): the encoding of a tensor. */
int rt_send_tag(rt *r, net_peer_id to, net_key k, const void *buf, uint64_t len, int tag, struct net_op **op);
int rt_send_sync(rt *r, net_peer_id to, net_key k, const void *buf, uint64_t len);
int rt_recv_sync(rt *r, net_peer_id from, net_key k, void *buf, uint64_t cap, const char *what);
/* rt_recv_sync that also reports the payload length. */
int rt_recv_len(rt *r, net_peer_id from, net_key k, void *buf, uint64_t cap, uint64_t *len, const char *what);
/* runtime_wire.c — tensors on the wire (issue 14), on the compute thread.
 * rt_wire_enc: the encoding (enum wire_enc) of activations (grad 0) or their
 * gradients (grad 1); rt_wire_len: bytes of `rows` sequences' tensor in it.
 * rt_wire_pack: the bytes to send for rows sequences at x: x itself when the
 * encoding is fp32, else wbuf with x encoded into it. rt_wire_check: after a
 * receive of such a tensor completed (op), its frame's tag must be the
 * encoding and its length that of rows sequences (rows 0: any whole number of
 * sequences up to Bm, returned in *rows; eval's batches); -1 with r->err naming
 * the peer, the message and both values otherwise. rt_wire_unpack: decodes
 * rows sequences from wbuf into x (nothing when fp32: it arrived in x). */
int rt_wire_enc(const rt *r, int grad);
uint64_t rt_wire_len(const rt *r, int grad, size_t rows);
const void *rt_wire_pack(rt *r, int grad, uint8_t *wbuf, const float *x, size_t rows);
int rt_wire_check(rt *r, int grad, struct net_op *op, size_t *rows, const char *what);
void rt_wire_unpack(rt *r, int grad, float *x, const uint8_t *wbuf, size_t rows);
/* One line on stderr (the stage's log) at the end with a non-fp32 setting:
 * floats encoded and decoded, the seconds they took and the rate. */
void rt_wire_report(const rt *r);
/* Allocates chunk c's wire buffers (setup) / frees them. */
void rt_wire_alloc(rt *r, rt_chunk *c);
void rt_wire_free(rt *r, rt_chunk *c);

/* Slots of one micro-batch of chunk c (their stash; the work is bound at B),
 * from its free list (allocated on first use); in-flight count and activation
 * bytes (with the F's transient) are tracked for the peak. */
model_slot *rt_slot_get(rt *r, rt_chunk *c);
void rt_slot_put(rt *r, rt_chunk *c, model_slot *s);
/* runtime_trace.c: after START with the trace flag, allocates the bounded
 * window of recent steps (trace_window.h) once; without memory the stage
 * records nothing and says so at the end. */
void rt_trace_start(rt *r);
/* The live trailer (proto.h, PROTO_START_LIVE) for this step into out
 * (PROTO_LIVE_MAX_BYTES); returns its length. Compute thread. */
uint64_t rt_live_trailer(rt *r, uint8_t *out);
/* Appends one event (stage clock) when tracing (or live). */
void rt_event(rt *r, int op, int kind, int chunk, int mb, double t0, double t1);
/* After the last step: measures the clock offset to the coordinator and sends
 * the window in parts (proto.h). Returns -1 only when the coordinator cannot
 * be reached (the run is failing anyway); a trace that cannot be sent is
 * reported to the coordinator and is not a failure. */
int rt_send_trace(rt *r);
void rt_trace_free(rt *r);
/* runtime_straggle.c, the bench hook of stage/straggle.h. Setup reads
 * PIPETRAIN_STRAGGLE for this replica: 0, or 2 with r->err naming the
 * variable and the offset. Begin, at the start of a step after the weights
 * were pulled: sleeps when the seeded draw says so, for factor x the median
 * compute time of the replica's latest (up to 9) steps (none before one step
 * was measured), recorded as a PROTO_EV_PAUSE trace event. End, after the
 * step's actions: notes their compute time. Report: one line on stderr (the
 * stage's log) with the pauses taken. All on the compute thread. */
int rt_straggle_setup(rt *r);
void rt_straggle_begin(rt *r);
void rt_straggle_end(rt *r);
void rt_straggle_report(const rt *r);
/* One training step: actions, norm agreement, AdamW, LOSS. */
int rt_step(rt *r);
/* runtime_2bw.c — PipeDream-2BW's buffers (all no-ops without r->twobw).
 * Setup (after the part and the batch buffers exist): the second weight and
 * gradient version, the second batch, the step's action list; both weight
 * versions W(0). Resume (after run_resume_part filled the part with W(first)):
 * W(first) and W(first-1) in their places (a checkpoint without the previous
 * version, from a synchronous run: both equal); 0 or -1 with r->err. Batch:
 * draws batches up to step u (the stages holding data). Optim: AdamW of the
 * pending step, after its NORM_REPLY; 0 or -1. Checkpoint weights: points the
 * part at the newest version and returns the previous one (to write beside
 * it). Free: gives the part its buffers back. Compute thread only. */
void rt_2bw_setup(rt *r);
int rt_2bw_resume(rt *r, long first);
void rt_2bw_batch(rt *r, long u);
int rt_2bw_optim(rt *r);
const float *rt_2bw_ckpt_weights(rt *r);
void rt_2bw_free(rt *r);
/* Tied embeddings split across stages: the head stage's lm_head gradient joins
 * the embedding's on stage 0 (before the norm); the updated embedding goes back
 * (after AdamW). No-ops otherwise. */
int rt_tied_exchange_grad(rt *r);
int rt_tied_exchange_weights(rt *r);
/* runtime_eval.c — the evaluation of step r->step (an evaluation step): forward
 * passes over the validation batches (run_eval_windows of the split, r->Bm
 * windows each). With all-reduce replicas every replica's pipeline runs its
 * contiguous block of batches and the head stages add the batch losses in batch
 * order along their ring (MSG_EVAL_SUM), so the loss is bitwise one pipeline's;
 * otherwise replica 0's pipeline runs them all. Replica 0's head stage sends the
 * mean to the coordinator (MSG_VAL); grids log each stage's block and time.
 * Returns 0, or -1 with r->err. Compute thread only. */
int rt_eval(rt *r);
/* The chunk of this stage that is virtual stage vs, or NULL. A neighbour chunk
 * on the same stage (prev or next == K: the turn of a V placement, or P = 1) gets
 * its tensors by a copy into its buffers, not over the network (runtime.c). */
static inline rt_chunk *rt_local_chunk(rt *r, int vs)
{
    for (int ci = 0; ci < r->n_chunks; ci++)
        if (r->ch[ci].vs == vs) return &r->ch[ci];
    return NULL;
}
/* This process's pipeline neighbour: stage j of its own replica. */
static inline net_peer_id rt_peer(const rt *r, int j) { return net_stage_id((uint16_t)j, (uint16_t)r->rep); }

/* runtime_dp.c — data parallelism (R > 1); every function is a no-op or the
 * plain path when r->dp is NULL. rt_dp_setup (after the connections): the
 * buckets, the replica group and its communication thread; with train.zero it
 * replaces r->opt by the packed moments of this replica's segments. Returns 0,
 * 1 (run-time) or 2 (bad input) with r->err. */
int rt_dp_setup(rt *r);
void rt_dp_free(rt *r);
/* Per step: rt_dp_begin_step before the actions; rt_dp_unit_ready(i) once
 * local unit i's gradient is final (hands its buckets to the thread; the tied
 * embedding's wait for rt_dp_finish_grads); rt_dp_finish_grads after the
 * actions and the tied exchange: hands over what is left and waits for every
 * bucket (the wait is the exposed all-reduce time). */
void rt_dp_begin_step(rt *r);
void rt_dp_unit_ready(rt *r, int i);
int rt_dp_finish_grads(rt *r);
/* NORM payload with replicas (stage/proto.h) into buf (4 + 8 x
 * topo_stage_buckets bytes); returns its length. */
uint64_t rt_dp_norm(rt *r, uint8_t *buf);
/* AdamW with the global norm: the whole part, or with train.zero this
 * replica's segments and then an all-gather of the weights. */
int rt_dp_optim(rt *r, double norm);
/* A checkpoint's AdamW moments with train.zero (rt_dp_zero), passed to the
 * writer a piece at a time instead of all-gathered whole: every replica calls
 * rt_dp_ckpt_begin (a scratch of one piece, 4 MiB), the writer passes
 * rt_dp_ckpt_fill with it to run_write_shard_fill, which moves each piece as
 * the file reaches it (broadcast from the replica owning it), and every
 * replica then calls rt_dp_ckpt_end: it runs the broadcasts the writer's file
 * did not (on the other replicas: all of them; on the writer: those left by a
 * failed write), in the same order, and frees it. rt_dp_ckpt_end returns 0, or
 * -1 when a broadcast failed (r->err). */
typedef struct rt_dp_ckpt rt_dp_ckpt;
rt_dp_ckpt *rt_dp_ckpt_begin(rt *r);
int rt_dp_ckpt_fill(void *arg, int tensor, int second, st_sink *s, char *err);
int rt_dp_ckpt_end(rt_dp_ckpt *c);
/* With train.zero: keeps this replica's segments of a full state (resume). */
void rt_dp_take_optim(rt *r, const optim_adamw *full);
int rt_dp_zero(const rt *r);
/* Seconds the group's collectives ran so far. */
double rt_dp_busy_s(const rt *r);

/* runtime_ps.c — the stage as a parameter-server worker (sync "ps", issue 12;
 * the messages in ps/ps_proto.h). Every function is a no-op (0) when r->ps is
 * NULL. rt_ps_setup (after setup_compute, before the connections): the
 * assignment, this stage's pieces and their servers; 0 or 2 (bad input) with
 * r->err. rt_ps_connect: starts connecting to those servers (0 or -1);
 * rt_ps_servers: their ids into ids (room for t->n_servers), returns the count. */
int rt_ps_setup(rt *r);
void rt_ps_free(rt *r);
int rt_ps_connect(rt *r);
int rt_ps_servers(const rt *r, net_peer_id *ids);
/* Per step: rt_ps_begin_step posts the receives of the step's new weights;
 * rt_ps_unit_ready(i) pushes local unit i's pieces once its gradient is final
 * (the tied embedding's wait for rt_ps_finish_grads, after the tied exchange);
 * rt_ps_finish_grads pushes what is left (-1 when a push failed: r->err);
 * rt_ps_await_weights waits (step timeout) for every piece's new weights and
 * copies them into the part (the wait is the exposed time). */
int rt_ps_begin_step(rt *r);
void rt_ps_unit_ready(rt *r, int i);
int rt_ps_finish_grads(rt *r);
int rt_ps_await_weights(rt *r);
/* Asynchronous modes (ps.staleness != 0; 0 otherwise and without servers):
 * PULL(step + 1) goes to every server used before the pushes of step (the
 * first PULL before the first step; ps/ps_proto.h MSG_PS_PULL), and
 * rt_ps_begin_step waits (step timeout, naming the server) for the newest
 * weights of every piece;
 * no push goes out during the backward: rt_ps_push_all pushes every piece
 * with the worker's global norm once the coordinator has replied it
 * (0, or -1 with r->err). */
int rt_ps_async(const rt *r);
int rt_ps_push_all(rt *r, double norm);
/* Asynchronous: the worker's clipping norm for r->step into *norm. NORM
 * (r->normbuf, len bytes: the per-unit sums of squares) goes to the
 * coordinator, which logs the norm. A worker that holds every unit (one
 * stage) computes the norm itself with the coordinator's arithmetic
 * (optim_global_norm over the units in global order, bitwise the reply) and
 * does not wait: NORM's send and the reply stay pending until
 * rt_ps_norm_check, which pull (before the next step) and the last step call
 * and which fails (-1, r->err: a bug) unless the reply is bit for bit the
 * norm pushed; r->normbuf must stay unchanged until then. Other workers wait
 * for the reply. 0 or -1 (r->err). Compute thread. */
int rt_ps_norm(rt *r, uint64_t len, double *norm);
int rt_ps_norm_check(rt *r);
/* Checkpoint steps: the pieces' weights and AdamW moments from the servers
 * into the part and r->opt, which the caller writes as the stage's shard
 * when this returns 1 (synchronous: replica 0, step count = steps taken;
 * asynchronous: the replica the servers sent the pieces to, the lowest
 * active one, step count = updates applied); 0: another replica writes it;
 * -1 with r->err. Without servers: 1 on replica 0, else 0. */
int rt_ps_checkpoint(rt *r);

#endif
