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
 *     of that step; the R gradients are summed in worker order 0..R-1, the global
 *     clipping norm is that of the sum over the whole model (a reduction across
 *     servers: ps_server_piece_sqnorm chained piece by piece in unit and offset
 *     order, ps_norm_chain), then AdamW runs exactly as run_optim_apply_ranges
 *     with run_lr(step). With R = 2 this is bitwise #8's all-reduce + AdamW.
 *   s > 0 (bounded staleness, SSP) and s = -1 (asynchronous): every pushed piece
 *     is applied when it arrives. The choice, per push:
 *       - gradient x R: a worker's gradient is 1/R of the step's (the loss is
 *         scaled by 1/(B*T) with B the global batch), so x R makes one push an
 *         estimate of a whole step's gradient;
 *       - clipping: by the pushing worker's own global norm (ps_push.norm, that
 *         worker pipeline's norm combined in unit order as run/ does), x R too;
 *       - learning rate run_lr(t) / R where t is the push's step: R pushes make
 *         one step's worth of movement, so the schedule and the effective
 *         learning rate per sample match the synchronous run;
 *       - AdamW's step counter (bias correction) counts the updates applied to
 *         the piece (R per step when every worker pushes).
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

/* A contiguous range of one tensor, held by one server. */
typedef struct {
    char name[80];      /* the tensor's Hugging Face name (model_unit_tensors) */
    int unit;           /* global unit index */
    int stage;          /* the stage holding the unit (pieces never span stages) */
    size_t tensor_off;  /* first float of the piece within its tensor */
    size_t off;         /* first float within the unit's layout */
    size_t len;         /* floats */
    int decay;          /* AdamW weight decay applies (the tensor's) */
    int server;
} ps_piece;

typedef struct {
    int n_servers, n_stages, n_units;
    size_t total;          /* trainable floats of the model */
    size_t split;          /* a tensor longer than this is cut into pieces of at most this */
    int n_pieces;
    ps_piece *pieces;      /* in (unit, off) order: every float exactly once */
    size_t *server_floats; /* (n_servers) floats each server holds */
    int *server_idx, *server_start; /* pieces of server j: server_idx[server_start[j] .. server_start[j+1]) */
    int *stage_idx, *stage_start;   /* pieces of stage k, the same way; both in (unit, off) order */
} ps_assignment;

/* Assigns every trainable tensor of t's model (all units, by name; a tied head
 * owns none) to t->n_servers servers, deterministically (a pure function of the
 * model and the server count). The rule: split = ceil(total / (8 S)); a tensor
 * longer than split is cut into k = ceil(len / split) contiguous pieces of
 * near-equal length (piece i = [i*len/k, (i+1)*len/k)); then pieces, longest
 * first (ties by unit, then offset), go each to the server holding the fewest
 * floats so far (ties: the lowest index). Greedy onto the least loaded keeps
 * max - min <= the longest piece <= split, so the servers' floats are within
 * avg +- total/(8S) + 1: max/min <= 9/7 (about 1.29). Returns 0, or -1 with err
 * when t has no parameter servers. a is zeroed first; free with ps_assignment_free. */
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
     * in worker order and wait for the global norm (ps_server_piece_sqnorm,
     * then ps_server_apply). Pushes are refused until then. */
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

/* PS_NEED_NORM: start + the sum of squares (double, in layout order) of the
 * summed gradient of piece i (an assignment index this server holds). Chaining
 * it over a unit's pieces in offset order gives optim_unit_sqnorms' number for
 * that unit bit for bit. NAN when the state or piece is wrong. */
double ps_server_piece_sqnorm(const ps_server *s, int piece, double start);
/* The global norm of the summed gradients of in-process servers srv[0..S-1]
 * (srv[j] is server j of a): per unit, the chain over its pieces, then
 * optim_global_norm in unit order. The networked layer does the same chain with
 * messages. NAN when a server is not in PS_NEED_NORM. */
double ps_norm_chain(ps_server *const *srv, const ps_assignment *a);
/* PS_NEED_NORM -> PS_COLLECT: AdamW on every piece with the summed gradient,
 * clipped by the global norm `norm`, with run_lr(step); the step advances.
 * Returns 0, or -1 with err in another state. */
int ps_server_apply(ps_server *s, double norm, char *err);

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

#endif
