/* coord.h — the coordinator of a multi-stage run (issue #4): the control point
 * every stage process connects to. It waits for every stage's JOIN, sends
 * START, then per step combines the stages' per-unit squared gradient norms in
 * global unit order into the clipping norm, logs the head stage's loss and
 * validation loss, commits checkpoints once every stage has written its shard,
 * and at the end gathers each stage's statistics, says DONE and writes
 * summary.json. Messages: stage/proto.h. With replicas (R > 1) every one of
 * the P x R processes (index p = r * P + k) joins, gets START, NORM_REPLY
 * and DONE, and sends NORM partials and STATS; the loss is the sum of the
 * replicas' head LOSSes, VAL comes from replica 0's head and CKPT_DONE from
 * replica 0 of every stage (proto.h, "Replicas").
 *
 * Not here: starting or killing processes (cli/cli_launch.c does that and
 * tells the coordinator through the liveness callback whether its children
 * are still alive), tensors (they never pass through the coordinator),
 * restarts (issue #6: a restart is a new coordinator with first_step > 0 and
 * append_metrics set, so one object is one attempt). */
#ifndef COORD_H
#define COORD_H

#include <stdint.h>
#include <stdio.h>

#include "stage/proto.h"
#include "topo/topo.h"

/* Liveness check called between polling slices, on the thread that runs
 * coord_run. With proc p >= 0, a process index (launcher rank: stage p % P,
 * replica p / P; the stage itself with R = 1): 0 while process p runs (or is
 * not watched by the caller), 1 when it was killed by a signal, 2 when it
 * exited (with any status: the run was not over); the reason, e.g. "killed by
 * signal 9", goes into why (ERR_LEN). With proc -1: 1 when the run must stop
 * for a reason of the caller's (an interrupt), with the reason in why; else 0. */
typedef int (*coord_alive_fn)(void *arg, int proc, char *why);
/* Stops process proc (launcher rank, as above) that the coordinator has let go
 * while it may still be alive: an asynchronous parameter-server run's dropped
 * worker (e.g. for the step timeout). Called on coord_run's thread right after
 * the drop; must not block (the caller ends the process, e.g. SIGTERM now and
 * SIGKILL after a grace period checked in the next liveness calls, and logs it).
 * why: the drop's reason. Not called for a --join process (not the caller's). */
typedef void (*coord_stop_fn)(void *arg, int proc, const char *why);

typedef struct {
    const char *out_dir;      /* run directory: metrics.jsonl, summary.json, loss.svg, checkpoints */
    FILE *progress;           /* progress line and notes (stderr); NULL: silent */
    uint64_t run_id;          /* the stages are started with the same --run-id */
    int listen_port;          /* -1: the topology's coordinator.port (0 there = ephemeral) */
    int peer_timeout_ms;      /* transport dead-peer timeout (default 10000) */
    int join_timeout_ms;      /* every stage must JOIN within this (default 60000) */
    int step_timeout_ms;      /* longest wait for one step's messages (default 600000) */
    int poll_ms;              /* polling slice (default 200) */
    long first_step;          /* 0-based step to start at (0; > 0 when resuming, #6) */
    int append_metrics;       /* append to metrics.jsonl instead of truncating (#6) */
    int restarts;             /* restarts before this attempt (--max-restarts, #6): summary.json */
    uint64_t writer;          /* the launcher's id, recorded in every checkpoint committed (run_log_opts) */
    int trace;                /* ask the stages for their events; write OUT/trace.json */
    struct coord_http *http;  /* run --http: the live view fed each step (coord/coord_http.h), or NULL;
                                 the stages then append the live trailer to NORM (stage/proto.h) */
    coord_alive_fn alive; /* may be NULL */
    coord_stop_fn stop;   /* may be NULL; called with alive_arg */
    void *alive_arg;
} coord_opts;

/* Fills o with the defaults above (out_dir NULL, progress stderr). */
void coord_opts_init(coord_opts *o);

typedef struct coordinator coordinator;

/* Creates the coordinator's net node listening on the topology's coordinator
 * host and port (or o->listen_port), so that stages can be started with the
 * actual port. t and o (and what they point to) must outlive the object.
 * Returns NULL with a message in err (ERR_LEN) when the secret is unusable or
 * the address cannot be bound. */
coordinator *coord_new(const topo *t, const coord_opts *o, char *err);

/* The port the coordinator listens on. */
int coord_port(const coordinator *c);

/* Runs the whole protocol: JOIN, START, every step, STATS, DONE, summary.json.
 * Returns 0 on success; 1 on a run-time failure with a one-line message in err
 * naming the stage, its host:port and the (1-based) step, e.g.
 * "stage 1 (127.0.0.1:29502) died at step 17: <reason>", or a message
 * naming the file when the run directory cannot be written (also 1), or the
 * step for a diverged loss or an interrupt. Best effort on failure: FAIL is
 * sent to every stage still connected. Writes metrics.jsonl, loss.svg,
 * summary.json and commits checkpoints under o->out_dir. Call once. */
int coord_run(coordinator *c, char *err);

/* The process blamed for the last failure, as a process index (launcher
 * rank: stage p % P, replica p / P; with R = 1 the stage), or -1 (none, or
 * not a process's fault). Same thread as coord_run. */
int coord_failed_stage(const coordinator *c);

/* Closes the node (flushing what is queued for up to a second) and frees c.
 * NULL: no-op. */
void coord_free(coordinator *c);

/* Decodes stage `stage`'s NORM payload (u32 n, then n f64 in the stage's unit
 * order) and stores each value at its global unit index in sq (topo_n_units(t)
 * doubles). Returns 0, or -1 with err when the length or n does not match the
 * stage's units. Public for tests: the placement is what keeps multi-stage
 * norms bitwise equal to the one-stage trainer's. */
int coord_place_norms(const topo *t, int stage, const uint8_t *payload, uint64_t len, double *sq,
                            char *err);

/* Encodes stage `stage`'s NORM payload from the global per-unit array sq into
 * out (4 + 8 * n_units bytes of that stage); returns the length. The inverse
 * of coord_place_norms, for tests and fake stages. */
uint64_t coord_encode_norms(const topo *t, int stage, const double *sq, uint8_t *out);

/* Data parallelism (R > 1): NORM carries, per unit of the stage and per
 * gradient bucket of the unit (topo_unit_buckets), the replica's partial sum
 * of squares (stage/proto.h). `parts` holds a step's partials of the whole
 * grid: coord_norm_parts(t) doubles, unit u's bucket b of replica r at
 * (first bucket of u + b) * R + r, units in global order.
 * coord_norm_parts: the length of that array (total buckets x R). Any thread. */
size_t coord_norm_parts(const topo *t);
/* Decodes process (stage, replica)'s partial NORM payload (u32 n, then n f64:
 * for each unit of the stage in order, for each of its buckets in order) into
 * parts. Returns 0, or -1 with err when the length or n does not match the
 * stage's bucket count. Any thread; pure. */
int coord_place_norm_partials(const topo *t, int stage, int replica, const uint8_t *payload, uint64_t len,
                              double *parts, char *err);
/* Combines parts into per-unit squared norms sq (topo_n_units(t) doubles):
 * sq[u] = 0.0 + part(b0, r0) + part(b0, r1) + ... + part(b1, r0) + ...
 * (buckets outer, replicas inner, left to right; 0.0 for a unit without
 * buckets), the order that makes the global norm (optim_global_norm(sq) in
 * unit order) independent of the stage split and of arrival order. */
void coord_combine_norm_partials(const topo *t, const double *parts, double *sq);
/* Encodes process (stage, replica)'s partial NORM payload from parts into out
 * (4 + 8 x the stage's buckets bytes); returns the length. The inverse of
 * coord_place_norm_partials, for tests and fake stages. */
uint64_t coord_encode_norm_partials(const topo *t, int stage, int replica, const double *parts, uint8_t *out);

/* Writes the processes' events (ev[p]: n_ev[p] events of process p, times in
 * seconds on one clock; n_proc = P x R of them, in rank order) to path as
 * Chrome trace JSON (Perfetto): a process per pipeline process with tracks "compute", "tensor waits" and "tensor sends"; times in us
 * from the earliest event. Written to path.tmp, then renamed. Returns 0 or -1
 * with err. */
int coord_write_trace(const char *path, const topo *t, proto_event *const *ev, const size_t *n_ev, char *err);

#endif
