/* ps.h — parameter servers without the network (issue 12): which server holds
 * which floats of the model (the assignment), and one server's state machine with
 * its AdamW. The networked layer (server process, push/pull messages, worker
 * runtime) calls these from its loop; nothing here has threads, sockets or files.
 *
 * Workers are the replicas of the pipeline: worker w is replica w (0..R-1), and
 * its stage k pushes the gradients of the pieces of stage k's units and pulls
 * their weights. Steps and clocks are 0-based step indices as in run/run.h.
 *
 * Consistency (topo ps.staleness s):
 *   s = 0 (synchronous, BSP): a step's update waits for every worker's gradient
 *     of that step; the R gradients are summed per (bucket, segment) block (see
 *     the assignment) in coll/'s ring order for that segment i,
 *     (((g_{i+1} + g_{i+2}) + ...) + g_{i+R-1}) + g_i, which for R = 2 is worker
 *     order g0 + g1 bit for bit (float addition commutes); the global clipping
 *     norm is #8's: each server gives one partial per block it holds
 *     (ps_server_norm_partials: the double sum of squares of the block's summed
 *     floats in order, exactly rt_dp_norm's partial of that bucket and
 *     replica segment), and ps_norm_combine places them as the coordinator's
 *     NORM partials and combines them with topo_combine_norm_partials (the
 *     coordinator's function), then optim_global_norm in unit order; then
 *     AdamW runs exactly as run_optim_apply_ranges with run_lr(step). With R = 2
 *     this is bitwise #8's all-reduce + AdamW (norm, weights and moments), and
 *     so is every R >= 3 (the ring order), with or without train.zero, on the
 *     same topology (tests/test_ps_norm.c). With R = 1 a
 *     unit is one block, its partial is optim_unit_sqnorms' number and the run
 *     is bitwise the one-process trainer's.
 *   s > 0 (bounded staleness, SSP) and s = -1 (asynchronous): every pushed piece
 *     is applied when it arrives, as one AdamW update of its own. The choice
 *     is per push (ps_async_hparams; README "Parameter servers"):
 *       - gradient x R: a worker's gradient is 1/R of the step's (the loss is
 *         scaled by 1/(B*T) with B the global batch), so x R makes one push the
 *         mean gradient of its B/R samples;
 *       - clipping: by the pushing worker's own global norm (ps_push.norm, that
 *         worker pipeline's norm combined in unit order as run/ does), x R too;
 *       - learning rate run_lr(t) / sqrt(R), t the push's step (the schedule
 *         follows the workers' steps): Adam's square-root scaling rule for a
 *         batch R x smaller (Malladi et al. 2022). A push's gradient is R x
 *         noisier, its second moment larger, its update smaller; in the
 *         noise-dominated regime R pushes at lr / sqrt(R) move the weights as
 *         far per sample as one synchronous step (lr / R moved them about
 *         sqrt(R) x less: +3.8 % validation loss after 600 steps);
 *       - weight decay train.weight_decay / sqrt(R): lr x decay per push is
 *         1/R of a step's, so R pushes decay the weights as one step;
 *       - beta1 = train.beta1^R per push, beta2 = train.beta2: a momentum
 *         correction. Stale updates act as extra momentum ("asynchrony begets
 *         momentum", Mitliagkas et al. 2016), so the explicit momentum is
 *         shortened; measured, it halves the gap to synchronous;
 *       - AdamW's step counter (bias correction, with the per-push betas)
 *         counts the updates applied to the piece (R per step when every
 *         worker pushes).
 *     A worker may start step t when t - (slowest worker's clock) <= s (-1: always).
 * An update's staleness is max(0, fastest other worker's clock - t): how many
 * steps another worker had pushed beyond it (0 always when synchronous, at most
 * s + 1 under the bound); each worker-step pushed is recorded in a histogram. */
#ifndef PS_PS_H
#define PS_PS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "model/model.h"
#include "model/optim.h"
#include "topo/topo.h"

/* ---- the assignment ---- */

/* The unit of assignment is the block: #8's (bucket, replica segment) pair, a
 * contiguous run of one unit's layout (topo_unit_buckets' bucket b, then
 * coll_segment(bucket length, R, seg)); with R = 1 the block is the whole unit.
 * A norm partial is a sequential double sum over a block, so a block is never
 * split across servers. A piece is a block cut at tensor boundaries (the
 * intersection of a block and a tensor): it has one name, one decay flag and
 * one range of its tensor, which checkpoints, pushes and `check` use; all the
 * pieces of a block are on the block's server and consecutive in (unit, off)
 * order. */
typedef struct {
    int unit, bucket, seg; /* seg: the replica segment 0 .. R-1 (0 when R = 1) */
    size_t off, len;       /* floats within the unit's layout */
    int server;
} ps_block;

/* A contiguous range of one tensor inside one block, held by the block's server. */
typedef struct {
    char name[80];      /* the tensor's Hugging Face name (model_unit_tensors) */
    int unit;           /* global unit index */
    int stage;          /* the stage holding the unit (pieces never span stages) */
    size_t tensor_off;  /* first float of the piece within its tensor */
    size_t off;         /* first float within the unit's layout */
    size_t len;         /* floats */
    int decay;          /* AdamW weight decay applies (the tensor's) */
    int server;
    int block;          /* index into the assignment's blocks */
} ps_piece;

typedef struct {
    int n_servers, n_stages, n_units, n_replicas;
    size_t total;          /* trainable floats of the model */
    size_t max_block;      /* floats of the longest block */
    int n_blocks;
    ps_block *blocks;      /* non-empty blocks in (unit, bucket, seg) order, i.e. (unit, off) order */
    int n_pieces;
    ps_piece *pieces;      /* in (unit, off) order: every float exactly once */
    size_t *server_floats; /* (n_servers) floats each server holds */
    int *server_idx, *server_start; /* pieces of server j: server_idx[server_start[j] .. server_start[j+1]) */
    int *stage_idx, *stage_start;   /* pieces of stage k, the same way; both in (unit, off) order */
} ps_assignment;

/* Assigns every trainable float of t's model (all units; a tied head owns none)
 * to t->n_servers servers, deterministically (a pure function of the model, R,
 * train.bucket_mb and the server count). The rule: the non-empty blocks
 * (above), longest first (ties by unit, bucket, segment), go each to the server
 * holding the fewest floats so far (ties: the lowest index); then each block is
 * cut at tensor boundaries into pieces. Greedy onto the least loaded keeps max
 * - min <= the longest block (at most ceil(bucket floats / R), and at most the
 * largest unit / R), so every server holds within avg +- max_block floats.
 * Returns 0, or -1 with err naming t's file: no parameter servers, or fewer
 * blocks than servers (a server would hold nothing; fewer servers or a smaller
 * train.bucket_mb). a is zeroed first; free with ps_assignment_free. */
int ps_assign(const topo *t, ps_assignment *a, char *err);
void ps_assignment_free(ps_assignment *a);
/* The pieces of server j (or stage k): returns their count and points *idx at
 * their indices into a->pieces, in (unit, off) order; 0 and NULL when out of range. */
int ps_server_pieces(const ps_assignment *a, int j, const int **idx);
int ps_stage_pieces(const ps_assignment *a, int k, const int **idx);
/* Where piece pc starts in p's parameters (and gradients, and a full
 * optim_adamw's moments): p->unit_off of its unit + pc->off; SIZE_MAX when p
 * does not hold the unit. */
size_t ps_piece_part_offset(const ps_piece *pc, const model_part *p);
/* Prints the assignment for `pipetrain check`: per server its address, floats,
 * pieces (all of them up to max_list, else a summary by stage), and the bytes it
 * receives per step (gradients from R workers) and sends (weights to R workers). */
void ps_print_assignment(const topo *t, const ps_assignment *a, FILE *f, int max_list);

/* ---- one server ---- */

/* The server's states (ps_server_state). */
enum ps_state {
    /* Accepting pushes. Synchronous: the gradients of the current step
     * (ps_server_step), kept per worker until every worker has pushed all of
     * this server's pieces; asynchronous: any worker's next step within the
     * bound, applied on arrival. */
    PS_COLLECT = 0,
    /* Synchronous only: every worker pushed the step; the gradients are summed
     * (ring order per block, see above) and wait for the global norm
     * (ps_server_norm_partials, ps_norm_combine, then ps_server_apply). Pushes
     * are refused until then. */
    PS_NEED_NORM = 1,
};

typedef struct ps_server ps_server;

/* Server j of assignment a for topology t: its pieces' weights initialised as
 * model_part_new initialises them (model_tensor_init from train.seed, so the
 * floats are those of any split) and zero AdamW moments, every worker's clock
 * at step 0, state PS_COLLECT. t and a must outlive it. Returns NULL with err
 * when j is out of range. Exits through xmalloc when out of memory. */
ps_server *ps_server_new(const topo *t, const ps_assignment *a, int j, char *err);
void ps_server_free(ps_server *s);

enum ps_state ps_server_state(const ps_server *s);
/* Synchronous: steps applied (the step being collected). Asynchronous: the
 * slowest worker's clock. */
long ps_server_step(const ps_server *s);
/* Worker w's clock: the number of steps it has pushed completely (all of this
 * server's pieces), i.e. its next step; -1 for an unknown worker. */
long ps_server_clock(const ps_server *s, int w);

/* One piece's gradient from worker `worker` for its step `step`. */
typedef struct {
    int worker;          /* 0 .. R-1 */
    long step;
    int piece;           /* index into the assignment's pieces */
    double norm;         /* asynchronous: the worker's global gradient norm (ignored when synchronous) */
    const float *grad;   /* (n) floats, laid out as the piece */
    size_t n;
} ps_push;

/* The AdamW hyper-parameters of one asynchronous push of step `step` with R
 * workers (the rule at the top of this file): lr run_lr(step) / sqrt(R),
 * weight decay / sqrt(R), beta1^R, beta2 and eps as run_optim_hparams. A pure
 * function; R < 1 counts as 1 (then it is run_optim_hparams). Any thread. */
optim_hparams ps_async_hparams(const topo *t, int R, long step);

/* Accepts a push: synchronous, buffered for the step's sum (the last one of the
 * step moves the server to PS_NEED_NORM); asynchronous, applied at once (see the
 * top of this file). Returns 0, or -1 with the reason in why (ERR_LEN bytes) and
 * nothing changed: an unknown (or dropped) worker, a piece that is not this
 * server's, a wrong size, a step other than the worker's next one (already
 * pushed, or skipping one), a piece pushed twice, a step the bound does not
 * allow yet ("ahead": started while more than s steps ahead of the slowest) or
 * one too stale (more than s + 1 steps behind the fastest other worker), or,
 * synchronous, a push while the server waits for the norm. */
int ps_server_push(ps_server *s, const ps_push *p, char *why);

/* 1 when worker w may start step `step`: synchronous, when the server has
 * applied step - 1 (its weights are version `step`); otherwise when step - the
 * slowest active worker's clock <= s, always when s = -1. 0 otherwise and for
 * an unknown worker. */
int ps_server_may_start(const ps_server *s, int w, long step);

/* One block's partial of the synchronous norm, tagged as the coordinator
 * places NORM partials: unit, its bucket (topo_unit_buckets) and the replica
 * segment; sq = sum of squares (double, 0.0 + floats in order) of the block's
 * summed gradient. */
typedef struct {
    int unit, bucket, seg;
    double sq;
} ps_norm_partial;

/* The blocks this server holds (the partials it gives per step). */
int ps_server_n_blocks(const ps_server *s);
/* PS_NEED_NORM: writes this server's partials, one per block it holds in block
 * order, into out (room for ps_server_n_blocks(s)); returns their count, or -1
 * in another state. The caller owns out. The networked layer sends them to
 * whoever combines the norm. */
int ps_server_norm_partials(const ps_server *s, ps_norm_partial *out);
/* The global norm from every block's partial, parts[0..n) (any order, e.g. the
 * servers' lists concatenated): placed at the coordinator's index and combined
 * with topo_combine_norm_partials, then optim_global_norm in unit order; with R
 * = 1 a unit's one partial goes to its bucket 0 (0.0 + p + 0.0 ... = p).
 * Returns the norm, or NAN with err naming the partial when a tag is not one of
 * a's blocks, a block comes twice or is missing. */
double ps_norm_combine(const topo *t, const ps_assignment *a, const ps_norm_partial *parts, size_t n, char *err);
/* The global norm of the summed gradients of in-process servers srv[0..S-1]
 * (srv[j] is server j of a): every server's partials, then ps_norm_combine.
 * NAN when a server is not in PS_NEED_NORM. */
double ps_norm_sync(ps_server *const *srv, const ps_assignment *a);
/* PS_NEED_NORM -> PS_COLLECT: AdamW on every piece with the summed gradient,
 * clipped by the global norm `norm`, with run_lr(step); the step advances.
 * Returns 0, or -1 with err in another state. */
int ps_server_apply(ps_server *s, double norm, char *err);
/* ps_server_apply that calls each(ctx, l) right after local piece l's AdamW
 * (l = 0 .. np - 1, the order ps_server_apply updates them in), so the piece's
 * new weights (ps_server_pull: its version already counts this update) can
 * leave while the next pieces are updated; the updates are the same, bit for
 * bit. each may be NULL. A nonzero return of each stops there: -1 with err,
 * the step half applied (the caller fails the run). Same thread as the
 * server's other calls. */
int ps_server_apply_each(ps_server *s, double norm, int (*each)(void *ctx, int l), void *ctx, char *err);

/* The current weights of piece i and their version (updates applied to the
 * piece: synchronous, the steps applied) in *version, *len floats; NULL when
 * this server does not hold piece i. Valid until the next push or apply. */
const float *ps_server_pull(const ps_server *s, int piece, long *version, size_t *len);

/* Asynchronous only: worker w leaves (its clock no longer holds the others) or
 * (re)joins with `step` as its next step (after pulling the weights). Return 0,
 * or -1 with why when synchronous or w is out of range. */
int ps_server_drop(ps_server *s, int w, char *why);
int ps_server_join(ps_server *s, int w, long step, char *why);

/* Staleness histogram: h[d] = worker-steps pushed with staleness d for d <
 * PS_STALE_BUCKETS - 1, the last bucket counts d >= PS_STALE_BUCKETS - 1. */
#define PS_STALE_BUCKETS 64
const uint64_t *ps_server_staleness(const ps_server *s);

/* ---- checkpoints (run/run_ckpt.h's format, by tensor name) ----
 * A server's pieces are ranges of tensors; a shard file holds whole units. To
 * write the checkpoint after `steps` steps, the shard of stage k is assembled
 * in a model_part of stage k's units (and an optim_adamw laid out like it) from
 * every server's ps_server_export, then written with run_write_shard as today;
 * so a PS checkpoint resumes under all-reduce or on one host. To resume, a
 * server loads a part of the units its pieces touch with run_resume_part (any
 * split wrote it) and calls ps_server_import. */

/* Copies the weights and AdamW moments of this server's pieces whose unit p
 * holds into p->params, o->m and o->v (o laid out like p: o->n == p->n_params).
 * Returns the floats copied per array. */
size_t ps_server_export(const ps_server *s, model_part *p, optim_adamw *o);
/* Takes the weights and moments of every piece of this server from p and o
 * (p must hold all their units), as the state after `steps` steps: the step
 * (synchronous) or every worker's clock (asynchronous) becomes `steps`, AdamW's
 * counter `steps` (synchronous) or R x steps (asynchronous), buffers are
 * cleared, the state is PS_COLLECT. Returns 0, or -1 with err when p lacks a
 * unit or o does not match p. */
int ps_server_import(ps_server *s, const model_part *p, const optim_adamw *o, long steps, char *err);
/* Piece i's weights and AdamW moments in place (what a checkpoint message
 * carries, stage/server.c): *w, *m, *v point into the server (valid until the
 * next push, apply or import); returns the piece's floats, or 0 (pointers
 * NULL) when this server does not hold piece i. */
size_t ps_server_piece_state(const ps_server *s, int piece, const float **w, const float **m, const float **v);

#endif
