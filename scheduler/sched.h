/* sched.h — pipeline schedules as data: actions, generators, schedule files,
 * the validator and the simulator, and renderers (ASCII, SVG, Chrome trace).
 *
 * A schedule says, for each of P stages, the ordered list of compute actions the
 * stage runs in one training step over M micro-batches. Actions are
 *   F(mb, c)   forward of micro-batch mb through the stage's chunk c
 *   B(mb, c)   backward w.r.t. the chunk's input (input gradient)
 *   W(mb, c)   backward w.r.t. the chunk's weights (weight gradient)
 *   BW(mb, c)  B and W fused.
 * A stage holds v chunks (v = 1 except for interleaved and V schedules). The
 * model's layers are cut into P*v consecutive pieces, the virtual stages, and the
 * schedule's placement says which stage holds piece k as which chunk:
 *   loop (Megatron's layout): chunk c of stage s is virtual stage k = c*P + s,
 *        so piece k lives on stage k % P as its chunk k / P;
 *   V    (v = 2, zero-bubble V schedules, PyTorch's style="v"): stage s holds
 *        virtual stages s (chunk 0) and 2P-1-s (chunk 1), so stage 0 holds the
 *        first and the last piece and the turn of the V (P-1 -> P) is local to
 *        stage P-1.
 * With P = 1 the two coincide. sched_virtual_stage / sched_stage_of convert.
 * Data flows F: k -> k+1, gradients B: k+1 -> k. Sends and receives are implied.
 *
 * This module is pure: no sockets, no threads, no model. It uses jansson for the
 * JSON file form and libm. Run-time functions return 0 on success and -1 with a
 * message in a caller-owned char err[SCHED_ERR_LEN]; nothing here calls exit().
 *
 * Schedule file forms:
 *   JSON  {"version": 1, "kind": "1f1b", "micro_batches": 8, "chunks": 1,
 *          "stages": [["F0","F1","B0","W0", ...], ...]}
 *         Only "stages" is required; "placement": "loop" (default) or "v". An
 *         action string is OP MB [c CHUNK] with OP one of F, B, W, BW; "F3" is
 *         F(3, 0), "BW12c1" is BW(12, 1).
 *   CSV   PyTorch's compute-only form (torch.distributed.pipelining): one row per
 *         rank, one cell per action "<virtual stage><type><micro-batch>" with type
 *         F (forward), B (full backward = BW), I (backward input = B), W (backward
 *         weight = W); empty cells are idle slots and are skipped. A cell
 *         "(<a>;<b>)OVERLAP_F_B" (DualPipeV's overlapped forward and backward) is
 *         its two actions in order: a CPU stage has no compute/communication
 *         overlap to exploit. The placement is recognised from the file: loop
 *         when every row s names only virtual stages k with k % P == s, V when
 *         every row s names only s and 2P-1-s (PyTorch's style="v", as in its
 *         DualPipeV and ZBV schedules). PyTorch's older notation, in which "kBm"
 *         is followed on its row by "kWm" (B meaning the input gradient), is read
 *         as I then W and counted in n_b_as_i. */
#ifndef SCHEDULER_SCHED_H
#define SCHEDULER_SCHED_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SCHED_ERR_LEN 512 /* same size as ERR_LEN in model/util.h */

enum { SCHED_F = 0, SCHED_B = 1, SCHED_W = 2, SCHED_BW = 3 };
/* Placements of virtual stages onto stages (see above). */
enum { SCHED_PLACE_LOOP = 0, SCHED_PLACE_V = 1 };

typedef struct {
    uint32_t mb;    /* micro-batch index, 0 .. M-1 */
    uint16_t chunk; /* chunk index on its stage, 0 .. v-1 */
    uint8_t op;     /* SCHED_F, SCHED_B, SCHED_W or SCHED_BW */
    uint8_t next;   /* 1: an F of the NEXT step's micro-batch mb, run during this
                     * step (2bw only: no flush, see sched_2bw_step); 0 otherwise.
                     * Written "F3n" in files and messages. */
} sched_action;

/* A schedule: plain data, owned by whoever made it; free with sched_free. */
typedef struct {
    int n_stages;        /* P */
    int n_chunks;        /* v, virtual stages per stage */
    int n_micro;         /* M */
    char kind[32];       /* "gpipe", "1f1b", "interleaved", "zb-h1", "zb-v", or "file" */
    int placement;       /* SCHED_PLACE_LOOP (sched_new's default) or SCHED_PLACE_V
                          * (only with n_chunks == 2) */
    size_t *len;         /* (P) number of actions of each stage */
    size_t *cap;         /* (P) allocated actions of each stage */
    sched_action **act;  /* (P) each stage's ordered action list */
    /* Where the schedule came from, for error messages (NULL when generated). */
    char *src;           /* file name */
    int src_csv;         /* 1 when read from CSV: positions are printed as rows/columns */
    uint32_t **src_col;  /* (P) CSV column (0-based) of each action, or NULL */
    long n_b_as_i;       /* CSV read with PyTorch's older notation: cells "kBm" taken
                          * as the input gradient (I) because a "kWm" of the same
                          * micro-batch follows on the row; 0 otherwise. Callers
                          * print sched_note. */
} sched_schedule;

/* Allocates an empty schedule for P stages, v chunks, M micro-batches (all >= 1,
 * P*v and M at most 2^24). Returns NULL on bad sizes or out of memory. */
sched_schedule *sched_new(int n_stages, int n_chunks, int n_micro);
/* Frees s and everything it owns; NULL is ignored. */
void sched_free(sched_schedule *s);
/* Appends action a to stage `stage`'s list (any stage order). Returns 0, or -1 on
 * a bad stage index or out of memory. */
int sched_append(sched_schedule *s, int stage, sched_action a);

/* The placement's virtual stage of chunk `chunk` on stage `stage` of P: loop
 * chunk * P + stage, V stage (chunk 0) or 2P-1-stage (chunk 1). Pure, any thread. */
static inline int sched_place_vstage(int placement, int P, int stage, int chunk)
{
    return placement == SCHED_PLACE_V && chunk ? 2 * P - 1 - stage : chunk * P + stage;
}
/* The inverse: the stage holding virtual stage k (0 .. P*v-1) under the placement,
 * its chunk there in *chunk (may be NULL). No range check. */
static inline int sched_place_stage(int placement, int P, int k, int *chunk)
{
    int c = k / P, st = k % P;
    if (placement == SCHED_PLACE_V && c) st = 2 * P - 1 - k;
    if (chunk) *chunk = c;
    return st;
}
/* "loop" or "v": the placement's name in files and messages. */
static inline const char *sched_place_name(int placement) { return placement == SCHED_PLACE_V ? "v" : "loop"; }

/* Virtual stage of chunk `chunk` on stage `stage` under s's placement. */
static inline int sched_virtual_stage(const sched_schedule *s, int stage, int chunk)
{
    return sched_place_vstage(s->placement, s->n_stages, stage, chunk);
}
/* Stage holding virtual stage k of s, with its chunk there in *chunk (may be NULL). */
static inline int sched_stage_of(const sched_schedule *s, int k, int *chunk)
{
    return sched_place_stage(s->placement, s->n_stages, k, chunk);
}
/* Writes a one-line note about how s was read (today: PyTorch's older B-then-W
 * notation taken as I then W) into buf, prefixed with the file name; returns buf,
 * or NULL when there is nothing to say. */
char *sched_note(const sched_schedule *s, char *buf, size_t n);

/* The transfers action a of stage `stage` implies: *from is the stage that sends
 * its input (F of virtual stage k receives k-1's activation, B and BW receive
 * k+1's gradient), *to the stage its output goes to (F sends to k+1, B and BW to
 * k-1). -1 when there is none: F of virtual stage 0 reads tokens, the last virtual
 * stage's backward starts from its own loss, W neither receives nor sends, and
 * nothing goes below 0 or beyond the last virtual stage. *from or *to equals
 * `stage` when the neighbouring chunk is on the same stage (P = 1). */
void sched_action_peers(const sched_schedule *s, int stage, sched_action a, int *from, int *to);

/* Formats an action as in the JSON form ("F3", "BW12c1"); returns buf. */
char *sched_action_str(sched_action a, char *buf, size_t n);
/* Parses an action string of the JSON form. Returns 0, or -1 with the reason in
 * err (for example "unknown action 'X3': expected F, B, W or BW"). */
int sched_action_parse(const char *str, sched_action *a, char *err);

/* ---- generators (scheduler/sched_gen.c) ---------------------------------- */

/* Builds a built-in schedule. kind is "gpipe", "1f1b", "interleaved", "zb-h1" or
 * "zb-v"; n_chunks is v (only "interleaved" accepts v > 1 freely, "zb-v" needs 2;
 * pass 1 or 0 for the others, 0 means each kind's default). Constraints (error if
 * broken):
 *   gpipe        M >= 1
 *   1f1b         M >= P (PipeDream-Flush needs a full warm-up to be one-forward-
 *                one-backward; with fewer micro-batches use gpipe)
 *   interleaved  v >= 2 and M a multiple of P (Megatron-LM's interleaved schedule)
 *   zb-h1        M >= P (Qi et al., Zero Bubble Pipeline Parallelism, ZB-H1)
 *   zb-v         v == 2, V placement, M >= 1 (Qi et al., Pipeline Parallelism with
 *                Controllable Memory: the zero-bubble V schedule)
 *   2bw          M >= P, v == 1 (Narayanan et al., PipeDream-2BW): the steady-state
 *                step of an asynchronous pipeline without flush; see sched_2bw_step
 * Returns the schedule (caller frees) or NULL with a message in err. */
sched_schedule *sched_generate(const char *kind, int n_stages, int n_micro, int n_chunks,
                               char *err);
/* The built-in kinds: sched_kind_table is the one place a kind's name and its
 * constraints live; everything that maps a name (the topology schema, the CLI's
 * --kind/--schedule, the generators) looks it up there. */
enum { SCHED_KIND_GPIPE = 0, SCHED_KIND_1F1B, SCHED_KIND_INTERLEAVED, SCHED_KIND_ZBH1, SCHED_KIND_ZBV,
       SCHED_KIND_2BW, SCHED_N_KINDS };
typedef struct {
    const char *name;            /* "gpipe", "1f1b", "interleaved", "zb-h1", "zb-v" */
    int min_chunks, max_chunks;  /* v this kind accepts (min_chunks is the default) */
    int m_ge_p;                  /* needs M >= P */
    int m_mult_p;                /* needs M a multiple of P */
    int placement;               /* SCHED_PLACE_* of the schedules it generates */
} sched_kind_info;
extern const sched_kind_info sched_kind_table[SCHED_N_KINDS];
/* The names in table order, NULL-terminated (the topology schema's choices). */
extern const char *const sched_kinds[SCHED_N_KINDS + 1];
/* Index of the kind called `name` in sched_kind_table, or -1 (name may be NULL). */
int sched_kind_find(const char *name);
/* "gpipe, 1f1b, interleaved, zb-h1 or zb-v" into buf (n bytes); returns buf. */
char *sched_kind_names(char *buf, size_t n);
/* What sched_kind_fit found wrong, so that a caller can name its own field. */
enum { SCHED_FIT_OK = 0, SCHED_FIT_KIND, SCHED_FIT_STAGES, SCHED_FIT_MICRO, SCHED_FIT_CHUNKS };
/* Checks P stages, M micro-batches and v chunks per stage against kind's
 * constraints (those sched_generate enforces). Returns SCHED_FIT_OK (0), or the
 * quantity at fault with the reason in err (which names the kind, not a field). */
int sched_kind_fit(int kind, int P, int M, int v, char *err);

/* ---- files (scheduler/sched_io.c) ------------------------------------------ */

/* Reads a schedule file: CSV when the name ends in ".csv", JSON otherwise. For CSV,
 * P is the number of rows, v and M are the largest chunk / micro-batch + 1 unless
 * n_micro > 0 is given (then a larger index is an error). For JSON, the file's
 * "micro_batches"/"chunks" win, and n_micro > 0 must agree with them. The result
 * gets sched_check's static checks (indices, one F and one backward each, local
 * order) but is not played: call sched_check or sched_simulate to find deadlocks
 * (their messages then name the file too). Errors start with the file name and
 * name the stage/row and action/column, what was expected and what was found.
 * Returns the schedule (caller frees) or NULL with err. */
sched_schedule *sched_load(const char *path, int n_micro, char *err);
/* sched_load for n_stages stages (0: any): a file with another number of rows (CSV)
 * or of "stages" lists (JSON) is refused first, naming the counts, before any
 * action is checked (the checks of a row for a rank the caller has not would
 * only mislead). Returns the schedule (caller frees) or NULL with err. Any thread. */
sched_schedule *sched_load_for(const char *path, int n_micro, int n_stages, char *err);
/* Parses schedule text; `name` is used in messages; csv selects the form. */
sched_schedule *sched_parse(const char *text, size_t n, const char *name, int csv,
                            int n_micro, char *err);
/* Writes s in the JSON or CSV form to f (CSV cells name virtual stages c*P + s,
 * so every schedule here has a CSV form). Returns 0, or -1 with err on a stream
 * error. */
int sched_write_json(const sched_schedule *s, FILE *f, char *err);
int sched_write_csv(const sched_schedule *s, FILE *f, char *err);

/* ---- validator (scheduler/sched_validate.c, play in sched_sim.c) ----------- */

/* Result of validating (and optionally simulating) a schedule. */
typedef struct {
    int n_stages;
    int *peak_mb;         /* (P) peak (micro-batch, chunk) pairs in flight: from F to W/BW */
    /* Filled by sched_simulate only: */
    double step_time;     /* time at which the last action ends (the step starts at 0) */
    double bubble;        /* overall idle fraction: 1 - sum(busy) / (P * step_time) */
    double *busy;         /* (P) compute time of each stage */
    double *bubble_stage; /* (P) 1 - busy / step_time */
    double *peak_bytes;   /* (P) peak activation bytes: stashes of the micro-batches
                           * in flight, plus B's work until its W, plus the
                           * transient bytes of a running F or BW (costs' *_bytes) */
    double **start;       /* (P) start time of each action, parallel to s->act; NULL
                           * unless asked for (renderers need it) */
    double **end;         /* (P) end time of each action, as start */
    char *detail;         /* on a deadlock: each stage's list with where it is stuck */
    /* All-reduce (sched_simulate with costs->ar and R > 1; else ar_n = 0 and NULL):
     * step_time then ends when every stage's last bucket is reduced. */
    double compute_time;  /* when the last action ends (the step time without the
                           * all-reduce; equals step_time when there is none) */
    size_t ar_n;          /* buckets, parallel to costs->ar->b */
    int *ar_stage;        /* (ar_n) stage of each bucket */
    double *ar_start;     /* (ar_n) when each bucket's all-reduce starts */
    double *ar_end;       /* (ar_n) and ends */
    double *ar_ready;     /* (ar_n) when its gradient was final */
    size_t *ar_count;     /* (P) buckets of each stage */
    double *ar_bytes;     /* (P) bytes each stage all-reduces */
    double *ar_busy;      /* (P) time each stage's ring is busy */
    double *ar_exposed;   /* (P) last bucket's end - the stage's last action's end,
                           * >= 0: what the optimizer step waits for */
    double *ar_done;      /* (P) when the stage's optimizer step may start */
    /* 2bw (sched_simulate of a cross-step schedule; else NULL / 0): */
    double *extra_weight_bytes; /* (P) the second weight version and the pending
                                 * gradient: 2 x the stage's costs->weight_bytes */
    int steps_simulated;  /* steps of the unrolled run behind step_time */
} sched_report;

/* Frees a report's arrays and the report; NULL is ignored. */
void sched_report_free(sched_report *r);

/* Checks s (O(actions + P*v*M); refuses P*v*M above 2^30): every (stage,
 * micro-batch, chunk) has exactly one F and one backward
 * (B followed by W, or BW), locally ordered F < B < W; then plays it against the
 * cross-stage dependencies (F of virtual stage k needs F of k-1 for the same
 * micro-batch; B of k needs B of k+1; the last virtual stage's B needs its own F).
 * On success returns 0 and, when r is not NULL, a new report with peak_mb in *r.
 * On failure returns -1 with a message in err: for a deadlock, a summary such as
 * "stage 0 waits for B(2) from stage 1; stage 1 waits for F(3) from stage 0"
 * followed by as many stage lines as fit; then, when r is not NULL, *r holds a
 * report whose `detail` shows every stage's list around where it is stuck (the
 * action in brackets, its file position) and what it waits for (caller frees it).
 * For any other failure *r is NULL. */
int sched_check(const sched_schedule *s, sched_report **r, char *err);

/* ---- asynchronous pipeline: PipeDream-2BW (scheduler/sched_2bw.c) -------- */

/* A 2bw schedule (sched_generate("2bw")) is the steady-state step of a pipeline
 * that never flushes: stage s (w = P-1-s) runs, for i = 0 .. M-1, F(w+i) then
 * BW(i), where an F index >= M is the NEXT step's micro-batch w+i-M (its action
 * has next = 1). So each stage's list ends with its last backward of the step,
 * and the first w forwards of step t+1 run during step t, as 1F1B's steady
 * state continues across the step boundary. The first step of a run (or of a
 * resumed run: the pipeline starts empty) prepends F(0..w-1) of its own step; the
 * last step drops the next step's forwards. Weight versions (the runtime's and
 * train.c's, README "PipeDream-2BW"): every micro-batch of step t, forward and
 * backward, on every stage, uses W(t-1) (W(-1) = W(0)); the step's averaged
 * gradient updates W(t+1) = AdamW(W(t), g(W(t-1))). A step of the synchronous
 * warm-up (topology schedule.warmup_sync_steps) is a one-step run (first and
 * last: plain 1F1B, flushed, on W(t)), and the step after it is a first step;
 * the simulator predicts the steady state only. */

/* 1 when s has an action with next = 1 (a cross-step schedule: 2bw). */
int sched_is_cross_step(const sched_schedule *s);
/* The actions stage `stage` runs in one step of a run, into out (room for
 * s->len[stage] + s->n_micro actions): first != 0 prepends the pipeline's fill
 * (the next-step forwards of the list, as this step's, in order), last != 0
 * drops the next-step forwards. Returns the count. Pure, any thread. */
size_t sched_2bw_step(const sched_schedule *s, int stage, int first, int last, sched_action *out);
/* An ordinary (one-step) schedule playing n_steps >= 1 steps of the cross-step
 * schedule s back to back: micro-batch j of step k is n_steps*M-numbered k*M + j.
 * kind "2bw", next flags cleared. Returns it (caller frees) or NULL with err. */
sched_schedule *sched_unroll(const sched_schedule *s, int n_steps, char *err);

/* ---- simulator (scheduler/sched_sim.c) ------------------------------------- */

/* Costs, all per virtual stage k = c*P + s (n = P*v entries per array), in any
 * time unit (the CLI uses milliseconds). BW costs b + w. Owned by the caller. */
typedef struct {
    int n;               /* number of virtual stages */
    double *f, *b, *w;   /* compute time of one micro-batch's F, B, W on k */
    double *xfer_bytes;  /* bytes sent from k to k+1 per micro-batch (the gradient
                          * coming back from k+1 to k has the same size) */
    double *stash_bytes; /* bytes k keeps stashed per micro-batch in flight: from
                          * its F to its W or BW */
    double *f_tmp_bytes; /* bytes an F of k holds only while it runs (with
                          * activation recomputation: what it computes but does
                          * not keep); 0 = none */
    double *b_bytes;     /* bytes a B of k holds from its start to the W of the same
                          * micro-batch (the backward's work: gradients W reads,
                          * recomputed activations); 0 = none */
    double *bw_bytes;    /* bytes a BW of k holds only while it runs (its work) */
    double *weight_bytes;/* bytes of one version of k's parameters (0 = unknown): a
                          * 2bw schedule keeps a second version and the pending
                          * gradient, 2 x this, in report->extra_weight_bytes */
    double latency;      /* time per transfer between different stages */
    double bandwidth;    /* bytes per time unit of each link; 0 = infinite */
    /* Issue 14, optional (NULL = as above); malloc'd by the caller, freed by
     * sched_costs_free. A transfer of `bytes` takes link latency + bytes / link
     * bandwidth (its link busy for the second part, FIFO per direction). */
    double *grad_bytes;  /* (n) bytes of the gradient sent back from k+1 to k per
                          * micro-batch (a wire encoding makes it differ from
                          * xfer_bytes); NULL = xfer_bytes */
    double *link_latency;   /* (P = the schedule's stages) latency of the link between
                             * stage i and stage i+1 (mod P), both directions; with
                             * P = 2 entry 0 serves both ways; NULL = latency */
    double *link_bandwidth; /* (P) its bytes per time unit, 0 = infinite; NULL = bandwidth */
    double burst;        /* token bucket of every link direction (as tc's tbf), in bytes;
                          * 0 = none: the pure-rate model above, bit for bit. Credit
                          * refills at the link's bandwidth up to `burst`; a transfer
                          * of b bytes that may start at t (its producer ended,
                          * earlier transfers of the direction left)
                          * with k bytes of credit leaves at t + max(0, b - k) /
                          * bandwidth and arrives latency later: the bytes covered by
                          * credit pass at once (line rate taken as infinite), and it
                          * consumes min(b, k). Ignored where bandwidth is infinite.
                          * Steady state (sched_simulate): each bucket starts the step
                          * with what the previous step left: played first from full
                          * buckets, then from each direction's credit at the end of
                          * its last transfer refilled up to step_time (the next
                          * step's start), capped at `burst`, again until those
                          * levels no longer change (at most 8 plays, the 8th step
                          * of a run begun with full buckets; the last is
                          * reported). A saturated link starts empty, one idle long
                          * enough starts full. A 2bw step (the difference of two
                          * unrolled plays) starts each play full. */
    int bw_early;        /* 1: a BW's gradient leaves after its B part (as the stage
                          * runtime sends it); 0: after the whole BW (the textbook
                          * model the golden numbers use) */
    int w_in_order;      /* 1: as the stage runtime, a W (or a BW's W part) ahead of
                          * its micro-batch turn on its virtual stage is deferred and
                          * runs right after the W it waits for (its box is drawn
                          * there; a BW's box then covers its B only); 0: as listed */
    struct sched_allreduce *ar; /* data parallelism: the replicas' all-reduce of each
                                 * stage's gradient buckets; NULL (or replicas <= 1):
                                 * none. Owned: sched_costs_free frees it. */
} sched_costs;

/* One gradient bucket of data parallelism (plain data the topology side computes;
 * the scheduler knows no layer). Its stage's replicas all-reduce it once its
 * gradient is final: during the stage's last-run weight-gradient pass of chunk
 * `chunk` (the W, or a BW's W part, that runs last for that chunk), after the
 * fraction `frac` of that pass (units finish from the chunk's last unit down to its
 * first, so a bucket of the chunk's last unit has a small frac, one of its first
 * unit frac = 1). A `tied` bucket (the tied embedding on the stage holding it) is
 * ready only after the stage's last action and after the tied gradient from stage
 * ar->tied_from has arrived (that stage's last action end + latency +
 * tied_bytes / bandwidth of the pipeline links). */
typedef struct {
    int stage;      /* 0 .. P-1 */
    int chunk;      /* 0 .. v-1 */
    double frac;    /* 0 .. 1 */
    int tied;       /* 1: see above */
    double bytes;   /* floats * 4 */
} sched_bucket;

/* The all-reduce model: the R replicas of a stage form a ring; each stage
 * all-reduces its buckets one at a time (one communication thread per process), in
 * the order they become ready (ties: list order). A bucket of `bytes` takes
 * 2(R-1) ring steps (reduce-scatter then all-gather), each moving one segment of
 * bytes/R to the next rank: 2(R-1) * (latency + bytes / R / bandwidth). A step's
 * messages (1 MiB chunks) stream back to back, so latency is paid once per step.
 * The replicas' links are not the pipeline's: no contention with activations. A
 * stage's optimizer step waits for its last bucket.
 * With `zero` (ZeRO-1, train.zero) a bucket is only reduce-scattered when ready,
 * ring steps; the optimizer then updates the stage's segments and the stage
 * all-gathers every bucket's new weights, (R-1) ring steps each, one after another,
 * once its last action and its last reduce-scatter have ended: that half never
 * hides under the backward pass. The optimizer's own time is not modelled (as
 * without zero), so the report's ar_done (and ar_exposed) end with the all-gather. */
typedef struct sched_allreduce {
    int replicas;        /* R; <= 1 means no all-reduce */
    int zero;            /* 1: ZeRO-1, reduce-scatter, then all-gather after the optimizer */
    double latency;      /* per ring step, time units */
    double bandwidth;    /* bytes per time unit of each replica link; 0 = infinite */
    size_t n;            /* buckets */
    sched_bucket *b;     /* (n) any stage order; a stage's ties keep this order */
    int tied_from;       /* stage sending the tied embedding's gradient, or -1 */
    double tied_bytes;   /* its bytes */
} sched_allreduce;

/* A zeroed all-reduce model with room for n buckets (tied_from -1); NULL when out
 * of memory. Free with sched_allreduce_free (NULL ignored), or let
 * sched_costs_free do it once it hangs from costs->ar. */
sched_allreduce *sched_allreduce_new(size_t n);
void sched_allreduce_free(sched_allreduce *a);

/* Costs for P stages of v chunks each where one stage's whole F, B, W take f, b, w
 * per micro-batch (each chunk takes 1/v of it), no transfer cost, stash 1 byte
 * (so peak_bytes counts micro-batches). NULL on bad sizes or out of memory. */
sched_costs *sched_costs_uniform(int n_stages, int n_chunks, double f, double b, double w);
/* Zeroed costs for n virtual stages. */
sched_costs *sched_costs_new(int n);
void sched_costs_free(sched_costs *c);

/* Validates s (as sched_check) and simulates one step: each stage runs its actions
 * in order, an action starts when the stage is free and its inputs have arrived;
 * a transfer between stages leaves when its producer ends, waits for its link
 * (one per ordered pair of stages, first come first served), occupies it for
 * bytes/bandwidth (less what its token bucket covers, costs->burst; the buckets
 * in the steady state of back-to-back steps) and arrives latency later. Costs
 * must have c->n == P*v entries.
 * timeline != 0 also records each action's start/end. Runs in O(actions + P*v*M).
 * Returns 0 with a new report in *r, or -1 with err (and *r as sched_check). */
int sched_simulate(const sched_schedule *s, const sched_costs *c, int timeline,
                   sched_report **r, char *err);
/* A cross-step schedule (2bw): sched_check checks its list (one F and one
 * backward per micro-batch, B and W of this step only) and plays it unrolled over
 * 3 steps (sched_unroll), messages prefixed "2bw, unrolled over 3 steps: ";
 * peak_mb is the unrolled run's. sched_simulate plays 2 and 6 steps and reports
 * the steady state: step_time = (T(6) - T(2)) / 4, busy = the list's compute,
 * peak bytes of the unrolled run, start/end of the actions of its third step
 * (shifted so that step starts at 0; boxes may overlap the neighbour steps'),
 * extra_weight_bytes and steps_simulated = 6. No all-reduce (refused). */

/* ---- the JSON form with the simulation (scheduler/sched_io.c) ----------- */

/* What sched_write_json_sim says about the simulation beside the numbers. */
typedef struct {
    const char *unit;        /* time unit of the report ("ms"; NULL = "ms") */
    const char *cost_source; /* where the costs came from, free text */
    int have_bytes;          /* 0: peak_activation_bytes are null (no stash sizes known) */
} sched_sim_info;
/* sched_write_json plus, when r and info are not NULL, a "simulation" object
 * (sched_simulate's report, machine-readable): {"unit", "step_time", "bubble",
 * "cost_source", "stages": [{"stage", "busy", "idle", "bubble", "peak_in_flight",
 * "peak_activation_bytes"}, ...]}. With the replicas' all-reduce (r->ar_exposed)
 * it adds "compute_time" (the step without it) and per stage "allreduce":
 * {"buckets", "bytes", "busy", "exposed", "optimizer_start"}. sched_load ignores
 * the object, so the output stays a schedule file. Returns 0, or -1 with err. */
int sched_write_json_sim(const sched_schedule *s, const sched_report *r, const sched_sim_info *info, FILE *f,
                         char *err);

/* ---- renderers (scheduler/sched_render.c) ---------------------------------- */

/* ASCII grid: one row per stage, each action drawn as a box of width proportional
 * to its time, labelled with its op and micro-batch; '.' is idle. At most
 * max_cols columns (the grid is scaled to fit; labels shorten) and max_rows
 * stages (the rest are summarised); unit names the time unit in the footer.
 * r needs a timeline. Returns 0 or -1 with err. */
int sched_render_ascii(const sched_schedule *s, const sched_report *r, FILE *f,
                       int max_cols, int max_rows, const char *unit, char *err);
/* SVG timeline: stages as rows, actions as coloured boxes labelled with the
 * micro-batch (chunks shaded), a time axis in `unit` and a legend. */
int sched_render_svg(const sched_schedule *s, const sched_report *r, FILE *f,
                     const char *unit, char *err);
/* sched_render_svg with `title` (XML-escaped here) in place of the schedule's kind
 * at the head of the title line; NULL means the kind. */
int sched_render_svg_titled(const sched_schedule *s, const sched_report *r, FILE *f,
                            const char *unit, const char *title, char *err);
/* Chrome trace JSON (opens in Perfetto): one process per stage, one complete event
 * per action; us_per_unit converts the simulator's time unit to microseconds. */
int sched_render_chrome(const sched_schedule *s, const sched_report *r, FILE *f,
                        double us_per_unit, char *err);

/* ---- measured runs (scheduler/sched_measure.c) ---------------------------- */

/* One timed event of a run: a compute action (wait = 0, op SCHED_F, SCHED_B or
 * SCHED_W; a fused BW is one B event then one W event) or a wait for a tensor
 * (wait = 1, op = the kind of action that waited: SCHED_F for an activation,
 * SCHED_B for a gradient). Times in seconds on one clock for all stages. */
typedef struct {
    int stage, wait;
    uint8_t op;
    uint16_t chunk;
    uint32_t mb;
    long step;
    double t0, t1;
} sched_event;

/* What a run's events say about the schedule that ran. Times in milliseconds.
 * A step's time is the span of its compute actions (first start to last end over
 * all stages), as sched_simulate's step_time; the first step is left out (warm-up)
 * unless it is the only one, and with a cross-step schedule (2bw) the last step too
 * when there are 3 or more (it drains the pipeline; its span overlaps its
 * neighbours', so a 2bw step's period is metrics.jsonl's step_ms). A stage is busy during its actions and the gap after
 * each until its next event (the runtime's overhead: posting the action's send,
 * or the thread preempted); the bubble is the rest: waiting for tensors, and idle
 * before its first action and after its last. */
typedef struct {
    int n_stages;
    long first_step, last_step; /* the steps measured */
    long n_steps;
    long rep_step;              /* the representative step: median span */
    double step_time;           /* median step span */
    long n_used;                /* the steps of ordinary length, whose span lies
                                 * within the quartiles of the measured steps' spans
                                 * (a shared machine's disturbed steps are left
                                 * out): bubbles, costs and latency come from them */
    double bubble;              /* 1 - sum busy / (P * sum span), over the steps used */
    double *bubble_stage;       /* (P) 1 - busy / span, summed over the steps used */
    sched_costs *costs;         /* median F, B, W per virtual stage, each action's time
                                 * plus the stage's gap after it until its next event
                                 * in the step (posting its send, preemption);
                                 * bw_early = w_in_order = 1; latency: median delay from a
                                 * producer's end to the tensor's arrival, over waits
                                 * that really waited (0 when none); bandwidth 0 */
    long n_latency;             /* samples behind costs->latency */
    sched_report *timeline;     /* rep_step as a report: start/end parallel to s->act
                                 * (a BW from its B's start to its W's end), from 0 */
} sched_measured;

void sched_measured_free(sched_measured *m);
/* Measures events ev[0..n) of a run of schedule s: steps numbered from 0, each
 * stage's events in the order they happened and together (stages and steps in
 * any order). Every compute action of the representative step must have its
 * events; events naming indices out of range are ignored. Returns 0 with *out,
 * or -1 with err (no compute events, an event that names an action s does not
 * have, out of memory). */
int sched_measure(const sched_schedule *s, const sched_event *ev, size_t n, sched_measured **out,
                  char *err);

/* Costs file (costs.json), as the coordinator writes beside trace.json:
 *   {"version": 1, "unit": "ms", "stages": P, "chunks": v, "steps": N,
 *    "f": [...], "b": [...], "w": [...], "latency": L, "bandwidth": 0,
 *    "bw_early": true, "w_in_order": true}
 * f, b, w hold P*v entries per virtual stage k = c*P + s. With c->link_bandwidth
 * also "link_bandwidth": [P] (bytes per ms the run's sends saw on the link from
 * stage i to i+1, 0 = no sample; sched_costs_load reads it back into
 * link_bandwidth). Writes c to f. */
int sched_costs_write_json(const sched_costs *c, int n_stages, int n_chunks, long steps, FILE *f,
                           char *err);
/* sched_costs_write_json plus, when n_units > 0, the per-unit times measured in
 * the stages (ms per micro-batch, each unit's mean over its calls; unit u is the
 * model's global unit index: embedding, blocks, head):
 *   "units": {"f": [...], "b": [...], "w": [...]}  (n_units entries each)
 * uf, ub, uw are the caller's. Returns 0, or -1 with err. Any thread. */
int sched_costs_write_json_units(const sched_costs *c, int n_stages, int n_chunks, long steps, const double *uf,
                                 const double *ub, const double *uw, int n_units, FILE *f, char *err);
/* The per-unit times of a costs file into the caller's uf, ub, uw (n_units
 * entries each). Returns 1 when the file has them, 0 when it has none (an older
 * file: the arrays are untouched), -1 with err naming the file and the field
 * (unreadable, not an object, a length other than n_units, an entry that is not a
 * number >= 0). Any thread. */
int sched_costs_load_units(const char *path, int n_units, double *uf, double *ub, double *uw, char *err);
/* Reads a costs file; *n_stages and *n_chunks get its layout. Returns new costs
 * (xfer_bytes, stash_bytes zero) or NULL with err naming the file and field. */
sched_costs *sched_costs_load(const char *path, int *n_stages, int *n_chunks, char *err);

#endif
