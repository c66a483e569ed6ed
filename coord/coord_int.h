/* coord_int.h — what coord/coord.c and coord/coord_trace.c share inside the
 * coordinator: its state and the waiting helpers. Not a public interface. */
#ifndef COORD_INT_H
#define COORD_INT_H

#include <time.h>

#include "coord/coord.h"
#include "ps/ps_proto.h"
#include "run/run.h"
#include "stage/proto.h"
#include "stage/stage.h"

struct coordinator {
    const topo *t;
    coord_opts o;
    struct net_node *node;
    uint8_t secret[256];
    stage_peers peers;      /* who may connect: the topology's stages (net_config.accept_peer) */
    int joining;            /* waiting for the JOINs: a timeout says what became of each process */
    int n_units, head, failed_stage; /* failed_stage: the blamed process index (rank), or -1 */
    int n_grid;             /* processes of the grid, P * R; process p is stage p % P, replica p / P */
    int n_proc;             /* every process: the grid, then (sync "ps") the S parameter servers, server j
                               at index n_grid + j */
    ps_assignment *psa;     /* sync "ps": the assignment (which blocks each server's partials cover), else NULL */
    ps_norm_partial *pparts; /* sync "ps": (n_blocks) the step's partials, every server's */
    ps_net_stats *sstats;   /* sync "ps": (S) the servers' STATS */
    uint32_t *pids;         /* (n_proc) */
    proto_stats *stats;     /* (n_proc) */
    double *sq;             /* per-unit squared norms of the step, global unit order */
    double *parts;          /* R > 1: the step's NORM partials (coord_place_norm_partials' layout) */
    uint8_t *normbuf;       /* one control payload per process (NORM's size at least) */
    uint64_t normcap;
    run_log *log;           /* the run's record: metrics.jsonl, progress, checkpoints, summary.json */
    FILE *devnull;
    long step;              /* 0-based step being worked on */
    double limit_s;         /* the timeout the current wait's deadline reflects */
    double t_loss, t_mark;  /* when the step's LOSS came; when its last message came */
    _Atomic int quiet;      /* the outcome is known: the transport's remarks are noise now */
    struct json_t *timing;  /* coord_trace.c: the measured schedule timing for summary.json, or NULL */
    /* While the trace is gathered (coord_trace.c) failures are soft: a dead,
     * silent or garbled stage loses its trace, not the run. A wait then
     * returns 1 with err naming the stage, tells no stage, blames none, and a
     * stage found dead is marked gone: later waits (STATS) skip it. */
    int soft;
    uint8_t *gone;          /* (n_proc) 1: died while the trace was gathered, or (asynchronous
                               parameter servers) a process of a dropped worker */
    uint8_t *adopted;       /* (n_proc) 1: a process that joined later (--join): not the launcher's
                               child, so its liveness is the transport's only */
};

/* Fails the run, blaming the likeliest process (first: the one detected). Returns 1. */
int coord_fail(coordinator *c, int k, const char *reason, char *err);
/* coord_async.c: the steps of an asynchronous parameter-server run (ps.staleness
 * != 0): each worker (replica) goes at its own pace; per worker-step its norm
 * (its stages' NORM combined in unit order), its loss and metrics line;
 * checkpoints committed when every stage's shard is written; dead workers
 * dropped and --join'ed ones taken in. Returns 0 when every active worker has
 * trained train.steps steps, else 1 with err. */
int coord_async_steps(coordinator *c, char *err);

/* Control messages are keyed (type, step, mb, 0); see coord.c for the steps. */
static inline net_key coord_key(uint16_t type, uint64_t step, uint32_t mb) { return (net_key){ type, step, mb, 0 }; }
/* The net identity of process p (stage p % P, replica p / P; server p - n_grid
 * from n_grid on). */
static inline net_peer_id coord_sid(const coordinator *c, int p)
{
    if (p >= c->n_grid) return net_server_id((uint16_t)(p - c->n_grid));
    return net_stage_id((uint16_t)(p % c->t->n_stages), (uint16_t)(p / c->t->n_stages));
}
static inline double coord_now(void) { return base_now(); }

/* Waits for ops[p] of every process p with ops[p] != NULL until deadline (on
 * coord_now's clock), polling in slices and checking liveness; see coord.c. */
int coord_wait_all(coordinator *c, struct net_op **ops, uint64_t *lens, double deadline, const char *what,
                   char *err);
/* Fails the run at once, blaming process k for a malformed message. Returns 1. */
int coord_bad_message(coordinator *c, int k, char *err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* After the last step, when the trace was asked for: serves every stage's
 * clock rounds, gathers its events and writes OUT/trace.json (coord_trace.c),
 * each wait bounded by coord_trace_timeout_s. Never fails the run: what was
 * lost is warned about on stderr and recorded with run_log_trace ("complete"
 * or "partial: REASON"); stages that died meanwhile are marked in c->gone. */
void coord_gather_trace(coordinator *c);
/* The longest wait for one trace message: 3 x the peer timeout (at least
 * 1 s), at most the step timeout. */
double coord_trace_timeout_s(const coordinator *c);
/* "host:port" ("[host]:port" for IPv6) of process p (rank: stage p % P,
 * replica p / P; parameter server p - P x R from P x R on) into buf; returns buf. */
const char *coord_where(const topo *t, int p, char *buf, size_t cap);
/* Process p as messages name it: "stage K" with R = 1, "stage K replica R"
 * with R > 1, "server J" for a parameter server (buf of 48 bytes at least);
 * returns buf. */
const char *coord_who(const topo *t, int p, char *buf, size_t cap);
/* coord_who and its address: "stage K (host:port)" or "stage K replica R
 * (host:port)" (buf of 360 bytes at least); returns buf. */
const char *coord_name(const topo *t, int p, char *buf, size_t cap);

#endif
