/* topo.h — the topology file: one JSON document that says what model to train, on
 * what data, with which optimiser settings, how the model's units are split into
 * pipeline stages, where each stage listens and which micro-batch schedule runs.
 *
 * topo_load() reads the file, applies `--set KEY=VALUE` overrides, fills defaults
 * and validates everything before any compute or socket exists; every error names
 * the file, the JSON path, what was expected and what was found. The loaded
 * topology is plain data (a visible struct): the stage runtime, the scheduler glue
 * and the CLI read its fields. It never opens sockets, reads data or secrets.
 *
 * Schema (keys not listed are errors; "=" gives the default, "req" = required):
 *   description     string, optional free text
 *   model           dim req, n_layers req, n_heads req, n_kv_heads = n_heads,
 *                   ffn_dim req, vocab_size = 256, seq_len req, norm_eps = 1e-5,
 *                   rope_theta = 10000, tie_embeddings = false
 *   data            path (optional here; `run` needs it or --data), format =
 *                   "auto" | "text" | "bin" (auto: a ".bin" suffix means uint16 tokens,
 *                   anything else is bytes of text), val_fraction = 0.1 (0 <= f < 1),
 *                   tokenizer = path of a Hugging Face byte-level BPE tokenizer.json,
 *                   optional (text data is encoded with it; model.vocab_size must be
 *                   its vocabulary: the CLI checks, cli_tokenizer_use)
 *   train           steps req, batch_size req, micro_batches = 1 (divides batch_size),
 *                   lr req, min_lr = lr/10, warmup_steps = 0, weight_decay = 0.1,
 *                   beta1 = 0.9, beta2 = 0.95, grad_clip = 1.0 (0 = off), seed = 1337,
 *                   eval_every = 0 (0 = only at the end), eval_batches = 20,
 *                   log_every = 1, bucket_mb = 4 (0 < x <= 1024: data parallelism's
 *                   largest gradient bucket), zero = 0 (0 | 1: ZeRO-1 sharded AdamW
 *                   state; needs replicas), recompute = "none" | "selective" | "full"
 *                   (activation recomputation of the decoder blocks, model/model.h;
 *                   each stage's default)
 *   checkpoint      dir = "checkpoints" (relative to the run directory, not resolved
 *                   here), every = 0 (0 = only at the end), keep = 0 (0 = keep all)
 *   schedule        kind = "gpipe" | "1f1b" | "interleaved" | "zb-h1" | "zb-v", or file = path
 *                   of a JSON/CSV schedule file (the two are alternatives; an override
 *                   of one removes the other), chunks = 0 (virtual stages per stage;
 *                   0 = derived from the layers), warmup_sync_steps = train.warmup_steps
 *                   with kind "2bw", else 0 (0..1e9: the synchronous steps before 2bw's
 *                   asynchronous rule; ignored by the other kinds)
 *   coordinator     host = "127.0.0.1", port = 29500 (0 = the launcher picks one and
 *                   passes it to the stages with --coordinator)
 *   init_from       path of a directory, optional: a Hugging Face LLaMA checkpoint
 *                   (config.json, model.safetensors or its sharded index) the weights
 *                   start from (model/hf_load.h). The model section's keys that are
 *                   absent are then taken from config.json (the whole section may be
 *                   omitted; seq_len from max_position_embeddings), those given must
 *                   equal it (seq_len at most max_position_embeddings). Not with sync "ps".
 *   secret_file     path, optional (required at run time when a stage is off loopback)
 *   encrypt         true | false, optional: seal every frame with an AEAD after the
 *                   handshake (net/net_wire.h); absent, on when a secret is set and any
 *                   process is off loopback (topo_encrypt)
 *   launch          "local" (default) | "ssh"
 *   stages          req, non-empty array of { layers req, and either host req, port
 *                   req, threads = 1 (one process) or replicas req: non-empty array
 *                   of { host req, port req, threads = 1 } (data-parallel copies),
 *                   recompute = train.recompute (this stage's mode) }
 *   sync            "allreduce" (default: replicas all-reduce their gradients) | "ps"
 *                   (parameter servers hold the weights and AdamW; each replica of
 *                   the pipeline is a worker that pushes gradients, pulls weights)
 *   parameter_servers  req when sync is "ps", refused otherwise: non-empty array
 *                   (at most TOPO_MAX_SERVERS) of { host req, port req }
 *   wire            activations = "fp32" | "bf16" | "fp16" | "int8", gradients = the
 *                   same choices (both default "fp32"): how the tensors between
 *                   virtual stages travel (base/wire_codec.h; topo_wire_bytes). Left
 *                   out of the canonical JSON when both are fp32.
 *   ps              only with sync "ps": staleness = 0 (integer >= -1: 0 synchronous,
 *                   s > 0 a worker runs at most s steps ahead of the slowest, -1
 *                   unbounded); see ps/ps.h
 * Hosts are numeric unicast IPv4/IPv6 addresses (no name lookups); ports
 * 1..65535; host:port distinct across every process of the grid, the parameter
 * servers and the coordinator; loopback addresses are not mixed with other
 * machines' (those could not connect back). An all-reduce topology's canonical
 * JSON leaves sync, parameter_servers and ps out (it hashes as before they
 * existed); a "ps" one has all three.
 *
 * Replicas (the data-parallel grid): every stage has the same number R of
 * replicas (the single-process form is R = 1); a process is (stage, replica).
 * stages[k].host/port/threads are always replica 0's, so code that knows no
 * replicas keeps working; stages[k].replicas[r] lists all R. The launcher rank
 * of process (stage s, replica r) is r * P + s (replica-major: ranks 0..P-1 are
 * replica 0's pipeline, so with R = 1 the rank is the stage index);
 * topo_rank_identity / topo_rank_of convert. train.batch_size is the global
 * batch B of a step, drawn by the one seeded sampler exactly as with R = 1;
 * replica r trains on sequences [r*B/R, (r+1)*B/R) of it, in that order, so the
 * sequences a step trains on do not depend on R. train.micro_batches M is per
 * replica, so B must be a multiple of R * M and a micro-batch holds B/(R*M)
 * sequences (topo_micro_batch). The canonical JSON keeps the form written: a
 * replicated stage is encoded with replicas only, a single-process one without.
 * A built-in schedule kind's constraints (sched_kind_table: "1f1b" and "zb-h1" need
 * train.micro_batches >= number of stages, "interleaved" a multiple of it) are
 * checked here by topo_load; a schedule file is read and checked by
 * topo_build_schedule, which `check`, `run`, the stages and the coordinator call.
 *
 * Layer notation: comma-separated items `embed`, `head`, `N` or `N-M` (block
 * indices, inclusive, increasing), e.g. "embed,0-1", "2-3,head", "embed,0-3,head".
 * Units are numbered as in model/model.h: 0 = embedding, 1+i = block i,
 * n_layers+1 = head. A stage's units must be strictly increasing; maximal runs of
 * consecutive units are its chunks, and '|' in place of a comma cuts a chunk
 * where the units touch ("1|2": blocks 1 and 2 as two chunks). With a plain schedule (gpipe, 1f1b, zb-h1)
 * each stage holds one chunk and the stages hold consecutive ranges in order (the
 * first holds the embedding, the last the head). With "interleaved" every stage
 * holds the same number v >= 2 of chunks and chunk c of stage s is virtual stage
 * c*P+s; the virtual stages hold consecutive ranges in that order. With "zb-v"
 * every stage holds 2 chunks placed in a V: stage s holds virtual stages s and
 * 2P-1-s (stage 0 the embedding and the head; stage P-1's two chunks touch, so
 * they are written with '|', e.g. "1|2"). A schedule file accepts any of these
 * layouts (every stage holding the same number of chunks); its placement must be
 * the layout's (t->placement). Either way stage 0 holds the embedding and stage P-1 the
 * head, and virtual stage k+1 receives what virtual stage k sends.
 *
 * Relative paths in the file (data.path, data.tokenizer, schedule.file, secret_file) are resolved
 * against the directory of the topology file; the string as written is kept too.
 *
 * --data FILE: the CLI calls topo_set_data_path() after topo_load(); that path is
 * relative to the current directory, not to the topology file. */
#ifndef TOPO_TOPO_H
#define TOPO_TOPO_H

#include <stdint.h>
#include <stdio.h>

#include "model/model.h"
#include "scheduler/sched.h"

enum { TOPO_DATA_TEXT = 0, TOPO_DATA_BIN = 1 };
/* Schedule kinds are the scheduler's (sched_kind_table); FILE follows them. */
enum { TOPO_SCHED_GPIPE = SCHED_KIND_GPIPE, TOPO_SCHED_1F1B = SCHED_KIND_1F1B,
       TOPO_SCHED_INTERLEAVED = SCHED_KIND_INTERLEAVED, TOPO_SCHED_ZBH1 = SCHED_KIND_ZBH1,
       TOPO_SCHED_FILE = SCHED_N_KINDS };
enum { TOPO_LAUNCH_LOCAL = 0, TOPO_LAUNCH_SSH = 1 };
enum { TOPO_SYNC_ALLREDUCE = 0, TOPO_SYNC_PS = 1 };
#define TOPO_MAX_SERVERS 1024 /* parameter_servers entries */
#define TOPO_MAX_STAGES 1024  /* stages entries */

typedef struct {
    char *path;          /* resolved path, NULL when the topology names no data */
    char *path_given;    /* as written (or as given to topo_set_data_path) */
    char *format;        /* "auto" | "text" | "bin" as written */
    int kind;            /* TOPO_DATA_TEXT or TOPO_DATA_BIN, "auto" resolved */
    double val_fraction; /* last fraction of the tokens is validation */
    char *tokenizer;     /* resolved path of a tokenizer.json (text is BPE-encoded), or NULL */
    char *tokenizer_given; /* as written */
} topo_data;

typedef struct {
    int steps, batch_size, micro_batches;
    double lr, min_lr;   /* linear warm-up to lr, cosine decay to min_lr */
    int warmup_steps;
    double weight_decay, beta1, beta2;
    double grad_clip;    /* global-norm clip; 0 = off */
    int64_t seed;        /* >= 0 */
    int eval_every;      /* 0 = evaluate only at the end */
    int eval_batches;
    int log_every;
    double bucket_mb;    /* data parallelism: largest gradient bucket, MiB (topo_bucket_floats) */
    int zero;            /* 1: ZeRO-1, AdamW moments sharded across the replicas of a stage */
    char *recompute;     /* "none" | "selective" | "full": every stage's default */
    int recompute_id;    /* MODEL_RECOMPUTE_* of recompute */
} topo_train;

typedef struct {
    char *dir;           /* relative to the run directory unless absolute */
    int every;           /* 0 = only at the end */
    int keep;            /* complete checkpoints kept; 0 = all */
} topo_checkpoint;

typedef struct {
    char *kind;          /* "gpipe" | "1f1b" | "interleaved" | "zb-h1"; NULL with file */
    int kind_id;         /* TOPO_SCHED_*; TOPO_SCHED_FILE when file is set */
    char *file;          /* resolved path of a schedule file, or NULL */
    char *file_given;
    int chunks;          /* as written (0 = derive); see topo.chunks_per_stage */
    int warmup_sync_steps; /* 2bw: steps 0..K-1 flush like 1f1b before the asynchronous
                          * rule (README "PipeDream-2BW"); absent: topo_warmup_sync_default
                          * (the other kinds ignore it) */
} topo_schedule;

typedef struct {
    int first_unit;      /* units first_unit .. first_unit + n_units - 1 */
    int n_units;
    int virtual_stage;   /* position in the pipeline's order of chunks */
} topo_chunk;

/* One process of a stage: where it listens and its BLAS threads. */
typedef struct {
    char *host;          /* numeric IPv4 or IPv6 address */
    int port;
    int threads;
} topo_replica;

typedef struct {
    char *host;          /* replica 0's: numeric IPv4 or IPv6 address */
    int port;            /* replica 0's */
    char *layers;        /* notation as written */
    int threads;         /* replica 0's BLAS threads */
    int n_replicas;      /* == topo.n_replicas after topo_load */
    topo_replica *replicas; /* [n_replicas]; the single-process form gives one */
    int replicated;      /* 1 when the file used the "replicas" form */
    int n_units;
    int *units;          /* strictly increasing unit indices */
    int n_chunks;
    topo_chunk *chunks;  /* in increasing unit order */
    char *recompute;     /* as written, NULL when absent (train.recompute applies) */
    int recompute_id;    /* MODEL_RECOMPUTE_* in force for this stage (model/model.h) */
} topo_stage;

typedef struct {
    char *host;
    int port;
} topo_addr;

/* Encodings of the tensors stages send each other (issue 14; base/wire_codec.h):
 * "fp32" (default, the bits as computed) | "bf16" | "fp16" | "int8". */
typedef struct {
    char *activations;   /* forward: the output of a virtual stage to the next */
    char *gradients;     /* backward: the gradient of that output, sent back */
    int act_enc, grad_enc; /* enum wire_enc of the two */
} topo_wire;

/* "links" (issue 14): what the schedule simulator assumes of every pipeline
 * link (between stages; the run itself does not shape traffic):
 *   "links": {"bandwidth": "100mbit", "latency_ms": 0.5, "burst": 65536}
 * bandwidth: "<number><unit>" with unit bit | kbit | mbit | gbit (bits per second,
 * 1000-based, as tc) or B/s | kB/s | MB/s | GB/s (bytes per second), or a bare
 * number of bytes per second; absent = infinite. latency_ms: one way, per
 * transfer, default 0. burst: bytes of each link direction's token bucket (as
 * tc's tbf burst: a tensor the idle link's credit covers passes at once),
 * default 0 = none (sched_costs.burst). */
typedef struct {
    char *bandwidth;     /* as written, or NULL */
    double latency_ms;
    double burst;        /* bytes, 0 = no token bucket */
    double bandwidth_Bps;/* parsed by topo_validate; 0 = infinite */
} topo_links;

typedef struct {
    int staleness;       /* -1 = unbounded, 0 = synchronous, s > 0 = bounded */
} topo_ps;

typedef struct {
    char *path;          /* the topology file as given to topo_load */
    char *dir;           /* its directory, for resolving relative paths */
    char *description;   /* optional */
    model_config model;
    topo_data data;
    topo_train train;
    topo_checkpoint checkpoint;
    topo_schedule schedule;
    topo_addr coordinator;
    char *init_from;     /* resolved directory of a Hugging Face checkpoint to start from, or NULL */
    char *init_from_given;
    char *secret_file;   /* resolved, or NULL */
    char *secret_file_given;
    int encrypt;         /* "encrypt": 1 true, 0 false, -1 absent (topo_encrypt decides) */
    char *launch;        /* "local" | "ssh" */
    int launch_id;       /* TOPO_LAUNCH_* */
    int n_stages;
    topo_stage *stages;
    int n_replicas;       /* R: replicas of every stage (data-parallel degree), >= 1 */
    int chunks_per_stage; /* v: 1 for plain schedules */
    int placement;       /* SCHED_PLACE_LOOP, or SCHED_PLACE_V (v = 2: stage s holds
                          * virtual stages s and 2P-1-s): "zb-v" needs it, a schedule
                          * file may use it (recognised from the layers) */
    char *sync;           /* "allreduce" | "ps" */
    int sync_id;          /* TOPO_SYNC_* */
    int n_servers;        /* parameter servers; 0 unless sync is "ps" */
    topo_addr *parameter_servers; /* [n_servers] */
    topo_ps ps;           /* meaningful with sync "ps" only */
    int ps_given;         /* the file (or --set) gave "ps": refused unless sync is "ps" */
    topo_wire wire;       /* "wire": encodings on the pipeline links (all fp32 by default) */
    topo_links links;     /* "links": the simulator's link model (absent: infinite, 0 ms) */
} topo;

/* Loads and validates a topology file. `sets` holds n_sets "KEY=VALUE" overrides
 * (dotted JSON paths, array elements by index: "train.lr=3e-4",
 * "stages.1.threads=1"), applied in order before validation; each value is parsed
 * as the type the schema expects at that path. On success returns 0 and t owns
 * its allocations (free with topo_free). On failure returns -1, writes a message
 * starting with the file name into err (ERR_LEN bytes) and leaves t zeroed. */
int topo_load(topo *t, const char *path, char *const *sets, int n_sets, char *err);

/* Frees everything t owns and zeroes it. Safe on a zeroed struct and on NULL. */
void topo_free(topo *t);

/* Points data at `path` (relative to the current directory, as --data is) and
 * re-derives the data kind when data.format is "auto". Returns 0 or -1 with err. */
int topo_set_data_path(topo *t, const char *path, char *err);

/* Compact JSON with sorted keys and every default filled in, after overrides;
 * paths as written. Caller frees; NULL when out of memory (nothing exits). The SHA-256 of this text is the topology hash
 * that stages compare when they say hello: every field counts, including
 * description, data.path and train.steps, so processes of one run must be given
 * the same overrides. The text loads again with topo_load to the same text. */
char *topo_canonical_json(const topo *t);
int topo_hash(const topo *t, unsigned char out[32]);
/* The hash as 64 lowercase hex digits plus NUL. Both return 0, or -1 when
 * out of memory (out is then zeroed / empty). Any thread. */
int topo_hash_hex(const topo *t, char out[65]);

/* Parses the layer notation for a model with n_layers blocks into a malloc'd array
 * of unit indices in the order written (*units, *n). Returns 0, or -1 with a
 * message (no JSON path) in err; *units is NULL then. */
int topo_parse_layers(const char *spec, int n_layers, int **units, int *n, char *err);

/* Number of units (model.n_layers + 2). */
int topo_n_units(const topo *t);
/* The stage holding `unit`, or -1 when out of range. */
int topo_stage_of_unit(const topo *t, int unit);
/* The stage holding virtual stage vs (0 .. n_stages*chunks_per_stage-1) under
 * t->placement, and the chunk index within that stage in *chunk; -1 when out of
 * range. */
int topo_stage_of_virtual(const topo *t, int vs, int *chunk);
/* Sequences per micro-batch: batch_size / (n_replicas * micro_batches). */
int topo_micro_batch(const topo *t);
/* Replica `replica`'s share of a step's global batch: returns the number of
 * sequences (batch_size / n_replicas) and puts the index of its first sequence in
 * the sampler's order in *first (replica * that count); -1 when replica is out
 * of range. Any thread. */
int topo_replica_batch(const topo *t, int replica, int *first);
/* Maps a launcher rank (SLURM_PROCID, OMPI_COMM_WORLD_RANK, PMI_RANK, RANK) to
 * the process it starts: rank = replica * n_stages + stage. Returns 0 with
 * *stage and *replica set, or -1 with a message (no file name) in err when rank
 * is outside 0 .. n_stages * n_replicas - 1. Any thread. */
int topo_rank_identity(const topo *t, long rank, int *stage, int *replica, char *err);
/* The rank of (stage, replica), or -1 when either is out of range. */
int topo_rank_of(const topo *t, int stage, int replica);
/* Gradient buckets of data parallelism. Unit u's trainable floats
 * (model_unit_params, laid out as in its part) are cut from the unit's start into
 * runs of topo_bucket_floats(t) floats, the last one shorter; a bucket never
 * spans two units. So which floats share a bucket, and where the ring's segments
 * fall inside it (coll_segment), depend on the model, R and train.bucket_mb, never
 * on the stage split: that is what keeps a data-parallel run bitwise equal across
 * splits for any R. topo_unit_buckets gives the count (0 for a unit without
 * parameters; INT_MAX when it is larger) and, with b >= 0, bucket b's offset in
 * the unit and length in *off and *len. Any thread. */
size_t topo_bucket_floats(const topo *t);
#define TOPO_MAX_BUCKETS (1 << 18) /* per stage; topo_check_limits refuses more */
/* Buckets of stage k's units (the partials one of its processes puts in NORM);
 * at most INT_MAX (as topo_unit_buckets' count): topo_check_limits refuses a
 * topology long before, using the exact count, topo_stage_bucket_count. */
int topo_stage_buckets(const topo *t, int k);
size_t topo_stage_bucket_count(const topo *t, int k);
int topo_unit_buckets(const topo *t, int unit, int b, size_t *off, size_t *len);
/* The data-parallel norm's partials (stage/proto.h, NORM with R > 1): one double
 * per (unit, bucket, replica segment), unit u's bucket b of segment r at index
 * (topo_first_bucket(t, u) + b) * R + r, units in global order; the array holds
 * topo_first_bucket(t, topo_n_units(t)) * R doubles. topo_first_bucket: how
 * many buckets units 0 .. unit-1 have. topo_combine_norm_partials: unit u's
 * square norm sq[u] = 0.0 + part(b0, r0) + part(b0, r1) + ... + part(b1, r0) +
 * ... (buckets outer, replicas inner, left to right; 0.0 for a unit without
 * buckets): the one combination both the coordinator (coord_combine_norm_partials)
 * and the synchronous parameter servers (ps_norm_combine) use. Any thread; pure. */
size_t topo_first_bucket(const topo *t, int unit);
void topo_combine_norm_partials(const topo *t, const double *parts, double *sq);
/* Bytes of the largest tensor that crosses a stage boundary (an activation or its
 * gradient for one micro-batch); the transport refuses larger payloads. */
size_t topo_max_tensor_bytes(const topo *t);
/* 1 when the coordinator, every stage and every parameter server are on a
 * loopback address. */
int topo_all_loopback(const topo *t);
/* Whether the run's frames are sealed (net_config.encrypt): "encrypt" when
 * given, else 1 when secret_set (secret_file or $PIPETRAIN_SECRET: the caller
 * looks, topo/ reads no environment) and any process is off loopback. When
 * "encrypt": false turns it off where it would be on, a warning naming the
 * file goes into warn (ERR_LEN bytes; "" otherwise). Any thread; pure. */
int topo_encrypt(const topo *t, int secret_set, char *warn);
/* Index of the stage whose replica 0 listens on host:port (compared as addresses,
 * so "::1" and "0:0::1" match), or -1. */
int topo_find_stage(const topo *t, const char *host, int port);

/* How `pipetrain schedule` departs from the topology's own schedule; NULL for the
 * schedule the topology runs. */
typedef struct {
    const char *schedule; /* a kind name or a schedule file (relative to the current
                           * directory) in place of the topology's; NULL = the topology's */
    int chunks;           /* v for it; 0 = the topology's when the layout fits, else the
                           * kind's default (the file's own for a file) */
    char **detail;        /* when not NULL and the schedule deadlocks: *detail gets the
                           * per-stage listing of where it is stuck (caller frees) */
} topo_sched_opts;

/* The one builder of the schedule a run of t runs: the topology's kind generated
 * for its stages, micro-batches and chunks, or its schedule file read; then checked
 * against the topology (P stages, v = chunks_per_stage, M micro-batches) and played
 * for deadlocks (sched_check). `pipetrain check`, `run`, each stage process, the
 * coordinator's timeline and `pipetrain schedule` call it, so they all see the same
 * schedule. With o->schedule set, that kind or file is built for t's P and M
 * instead, and its chunk count may differ from the layout (only `schedule`, which
 * simulates without running, asks for that). Returns 0 with a new schedule in *out
 * (caller frees with sched_free), or -1 with *out NULL and a message in err
 * (ERR_LEN bytes) naming t's file and the field at fault (schedule.file,
 * schedule.kind, train.micro_batches) or --schedule. Any thread; reads the file. */
int topo_build_schedule(const topo *t, const topo_sched_opts *o, sched_schedule **out, char *err);

/* schedule.warmup_sync_steps when the topology does not give it: with kind
 * "2bw", train.warmup_steps (synchronous while the learning rate warms up:
 * README "PipeDream-2BW" measures why), else 0. t's train section and
 * schedule.kind_id must be decoded. Pure; any thread. */
int topo_warmup_sync_default(const topo *t);

/* The simulator's all-reduce for t (topo_allreduce.c): R = t->n_replicas, every
 * unit's buckets (topo_unit_buckets) as sched_buckets of their stage, in unit and
 * bucket order, with the chunk of a schedule of v chunks per stage they belong to
 * (v != chunks_per_stage: each stage's units spread evenly over v chunks, as
 * `schedule` spreads its costs) and their readiness: the weight pass walks a
 * chunk's units from the last down, each taking its share of the chunk's W FLOPs;
 * with tied embeddings the embedding's buckets are tied (ready after the stage's
 * last action, and after the head stage's tied gradient when another stage holds
 * the head). Latency and bandwidth are left 0 for the caller. Returns a new model
 * (caller frees with sched_allreduce_free, or hangs it on sched_costs.ar), or NULL
 * with err when out of memory. Any thread. */
sched_allreduce *topo_allreduce_plan(const topo *t, int v, char *err);

/* Paths: the kernel takes at most TOPO_PATH_MAX bytes with the NUL; a run
 * directory holds files whose names (with "/" and a ".tmp" suffix, e.g.
 * "/timeline-predicted.svg.tmp", "/stage-1023.log") take at most
 * TOPO_OUT_SUFFIX_MAX bytes. */
#define TOPO_PATH_MAX 4096
#define TOPO_OUT_SUFFIX_MAX 32
/* Refuses a run directory (out_dir; NULL: not known yet, as in `check`) or a
 * checkpoint.dir whose files would have paths longer than the kernel takes.
 * Returns 0, or -1 with a message naming --out or checkpoint.dir. Any thread. */
int topo_check_paths(const topo *t, const char *out_dir, char *err);
/* The limits that are real (called by topo_load after the partition): a
 * tensor crossing a stage boundary larger than one transport message
 * (NET_MAX_PAYLOAD_CAP, 1 GiB) — an activation, or the tied embedding between
 * stage 0 and the head's stage —, more than TOPO_MAX_BUCKETS gradient buckets
 * on a replicated stage, and topo_check_paths(t, NULL). Returns 0, or
 * -1 with a message naming the field. */
int topo_check_limits(const topo *t, char *err);

/* ---- memory (topo/topo_mem.c) ----
 * What one stage process needs, in bytes, predicted from the topology alone
 * (README "Memory"): weights (+ a tied head's copy of the embedding),
 * gradients, AdamW's two moments (topo_optim_bytes), activations at the
 * peak of the stage's schedule (the simulator's peak_bytes over
 * model_unit_mem; what summary.json's peak_act_bytes
 * measures), buffers (model_part_bytes' fixed part and the runtime's
 * micro-batch receive and send buffers), and with ZeRO-1 `gather`: the scratch
 * through which a checkpoint passes the moments to replica 0, a piece at a time
 * (stage/runtime_dp.c rt_dp_ckpt_begin): 4 bytes x the largest piece, at most
 * TOPO_ZERO_CKPT_PIECE floats and never more than the stage's largest tensor. */
#define TOPO_ZERO_CKPT_PIECE ((size_t)1 << 20) /* floats (4 MiB) */
typedef struct { double weights, grads, optim, act, buffers, gather, total; } topo_mem;
/* One chunk's model_mem per micro-batch of `batch` sequences under mode, as the
 * stage runtime holds it: stash and work summed over its units, the largest
 * forward transient, and a BW's work: the largest unit's on virtual stage 0
 * (model_backward_fused), the chunk's whole work elsewhere. */
model_mem topo_chunk_mem(const topo *t, int mode, const topo_chunk *ch, size_t batch);
/* Fills m[t->n_stages] for the schedule s that topo_build_schedule made of t.
 * Returns 0, or -1 with err (out of memory, a schedule the simulator refuses). */
int topo_mem_predict(const topo *t, const sched_schedule *s, topo_mem *m, char *err);
/* AdamW state (m and v, float32) that one stage process holding these units
 * keeps, as summary.json's optim_bytes reports it: 8 bytes per parameter; with
 * train.zero, the moments of its segments of each gradient bucket only
 * (coll_segment over the replicas; replica 0's, the largest, within a float
 * per bucket of the others); 0 with sync "ps" (the servers hold AdamW). */
double topo_optim_bytes(const topo *t, const int *units, int n_units);
/* Bytes this machine offers to a new run: PIPETRAIN_MEM_BYTES when set (tests
 * fake a small machine with it), else MemAvailable from /proc/meminfo, else
 * physical memory (sysconf); src (n bytes) names which. Returns 0, 1 when
 * nothing is known (*bytes 0), -1 with err for a malformed PIPETRAIN_MEM_BYTES. */
int topo_machine_mem(double *bytes, char *src, size_t n, char *err);
/* Predicts every process's memory; with f not NULL prints it per stage and per
 * host. Processes on this machine (an all-loopback topology) add up; when
 * their sum exceeds topo_machine_mem, returns 2 with err naming the file and
 * the numbers. Other hosts' sums are printed, not compared. Returns 0 when it
 * fits, 1 out of memory, 2 refused or bad input. Main thread. */
int topo_mem_check(const topo *t, const sched_schedule *s, FILE *f, char *err);

/* Prints the partition table: per stage host:port, layers, parameters, forward
 * FLOPs per micro-batch and activation bytes sent per micro-batch (summed over
 * its chunks, as encoded by wire.activations), then totals, the recompute and
 * wire lines and the topology hash. With n_replicas > 1 it then
 * prints the grid (topo_print_grid). */
void topo_print_partition(const topo *t, FILE *f);
/* Prints one line: train.recompute and per stage its mode with the bytes one
 * micro-batch stashes (forward to backward-weight) and needs as backward work
 * (model_unit_mem). topo_print_partition calls it before the hash. */
void topo_print_recompute(const topo *t, FILE *f);
/* topo_wire.c. Bytes on the wire of the tensor unit `unit` outputs for one
 * micro-batch (grad 0: the activation, with wire.activations; grad 1: its
 * gradient, with wire.gradients): wire_encoded_bytes of model_unit_out_bytes / 4
 * floats. What a stage sends over the boundary after `unit`. Any thread; pure. */
uint64_t topo_wire_bytes(const topo *t, int unit, int grad);
/* Prints the wire setting and, per virtual-stage boundary, the bytes per
 * micro-batch each way (forward activations, backward gradients) beside fp32's.
 * topo_print_partition calls it before the hash. */
void topo_print_wire(const topo *t, FILE *f);
/* Sets wire.act_enc / grad_enc from the names (decoding has refused any other
 * name). topo_validate calls it. */
void topo_resolve_wire(topo *t);
/* topo_wire.c. Parses a link rate ("100mbit", "1gbit", "12.5MB/s", "1e6": see
 * topo_links) into bytes per second in *out. Returns 0, or -1 (not a number > 0
 * with a known unit). Pure, any thread. */
int topo_parse_rate(const char *s, double *out);

/* Prints the grid: stages x replicas, per process (rank, stage, replica)
 * host:port, threads, parameters and activation bytes sent per micro-batch, and
 * per replica group (stage) the gradient bytes it all-reduces per step (with
 * sync "ps" a line saying there is no all-reduce instead). */
void topo_print_grid(const topo *t, FILE *f);

#endif
