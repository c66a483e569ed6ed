/* cli.h — subcommand entry points of bin/pipetrain and the helpers they share.
 * Each *_main takes the arguments after "pipetrain" (argv[0] is the subcommand
 * name) and returns the exit status: 0 success, 1 run-time failure, 2 bad usage
 * or bad input. */
#ifndef CLI_CLI_H
#define CLI_CLI_H

#include "model/data.h"
#include "model/model.h"
#include "run/run_ckpt.h"
#include "stage/stage.h"

int cli_run_main(int argc, char **argv);
int cli_check_main(int argc, char **argv);
int cli_stage_main(int argc, char **argv);
int cli_eval_main(int argc, char **argv);
int cli_sample_main(int argc, char **argv);
int cli_export_main(int argc, char **argv);
int cli_bench_main(int argc, char **argv);
int cli_tokenizer_main(int argc, char **argv);
int cli_tokenize_main(int argc, char **argv);

struct bpe;
/* When t names data.tokenizer: loads it, checks that its vocabulary is
 * model.vocab_size and hands it to the data loader (data_use_tokenizer) so text
 * data is encoded with it. *tok gets the tokenizer (the caller frees it with
 * bpe_free after the last data_load) or NULL when t names none. Returns 0, or 2
 * after printing "pipetrain CMD: FILE: FIELD: ..." (bad input). Main thread,
 * before any thread loads data. */
int cli_tokenizer_use(const char *cmd, const topo *t, struct bpe **tok);
/* The tokenizer of a checkpoint: the file `given` (--tokenizer), else
 * tokenizer.json in the checkpoint's directory or one or two levels up (the run
 * directory's copy), else none (*tok NULL: byte-level). Its vocabulary must be
 * the checkpoint's. The file's name goes to path (cap bytes) when path is not
 * NULL. Returns 0, or 2 after printing a message naming the file. */
int cli_ckpt_tokenizer(const char *cmd, const run_ckpt *ck, const char *given, struct bpe **tok, char *path_out,
                       size_t cap);
/* Bytes the targets of the first nw validation windows of d (T tokens each)
 * decode to: each token's length with a tokenizer, 1 a token for byte-level
 * data; 0 (unknown) for a .bin (path) without a tokenizer and a vocabulary
 * beyond bytes. Any thread. */
size_t cli_val_bytes(const data_set *d, const struct bpe *tok, size_t nw, size_t T, const char *path);
/* Tells summary.json the size in tokens and bytes of t's validation split
 * (run_set_val_bytes), encoding the data with tok when there is one. Main
 * thread, after cli_tokenizer_use. Never fails the run: unknown is null. */
void cli_summary_val_bytes(const topo *t, const struct bpe *tok);
/* Copies the file src to dst durably. Returns 0 or -1 with err naming the file. */
int cli_copy_file(const char *src, const char *dst, char *err);

/* Prints "pipetrain CMD: message" to stderr and returns 2 (bad usage). */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Refuses a topology the runtime cannot train (printing "pipetrain CMD:
 * FILE: FIELD: ..." and returning 2); 0 otherwise. Every sync mode trains
 * today (issue 12's asynchronous ones included); with replicas it refuses a
 * bad PIPETRAIN_RING_RX / PIPETRAIN_RING_RX_SLICE (naming the variable). */
int cli_sync_check(const char *cmd, const topo *t);
/* HOST:PORT or [HOST]:PORT into host (cap 64) and port (1..65535). Returns 0
 * or -1 (nothing printed). */
int cli_parse_addr(const char *s, char *host, int *port);
int cli_server_main(int argc, char **argv);
/* When argv holds --help or -h: prints text to stdout and returns 1; else 0. */
int cli_wants_help(int argc, char **argv, const char *text);
/* Parses a decimal integer in [lo, hi] for option opt; returns 0 or -1 (message printed). */
int cli_parse_long(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out);
/* The options every process `run` starts takes (stage and server):
 * --coordinator HOST:PORT (host written into host[64]), --run-id, --out, --data,
 * --set (into sets[256], *n_sets), --peer-timeout-ms, --connect-timeout-ms,
 * --step-timeout-s. argv[*i] is the option; its value is argv[*i + 1], and *i
 * moves past it. Returns 1 when it took the option, 0 when argv[*i] is none of
 * these, 2 after printing a usage error naming cmd. */
int cli_process_option(const char *cmd, int argc, char **argv, int *i, stage_opts *o, char *host,
                       const char **data, char **sets, int *n_sets);
int cli_parse_double(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out);
/* Opens and verifies a checkpoint and builds a part holding every unit with its
 * weights, for micro-batches of up to max_batch sequences. The key that checks
 * the manifest's HMAC comes from secret_file, else $PIPETRAIN_SECRET (neither:
 * an HMAC present is not checked, and a note says so on stderr). Returns NULL
 * with a message in err (bad input: exit 2). */
model_part *cli_load_model(const char *path, const char *secret_file, size_t max_batch, run_ckpt *ck, char *err);

/* --init-from DIR (issue 16, cli_init.c). cli_init_from_set writes the override
 * "init_from=DIR" with DIR made absolute into out (cap n); -1 when it does not
 * fit. cli_init_from_check: with t->init_from, checks every tensor's name, dtype
 * and shape from the headers (hf_check); prints "pipetrain CMD: ..." and returns
 * 2 on a problem, else 0. cli_is_hf_dir: 1 when path holds config.json and
 * model.safetensors (or its index). cli_load_hf: cli_load_model for such a
 * directory (what `export` writes): ck gets the config (seq_len =
 * max_position_embeddings), dir, step 0 and no manifest (run_ckpt_close frees
 * it); NULL with err on bad input. Main thread. */
int cli_init_from_set(char *out, size_t n, const char *dir);
int cli_init_from_check(const char *cmd, const topo *t);
int cli_is_hf_dir(const char *path);
model_part *cli_load_hf(const char *path, size_t max_batch, run_ckpt *ck, char *err);

/* What `pipetrain run` passes to the launcher of a multi-stage topology. The
 * strings are as the user gave them: every stage process gets the same
 * topology path, --data and --set overrides (they compare a hash of the
 * result), run from the same directory. */
typedef struct {
    const char *topology;
    const char *data;          /* NULL: the topology's */
    const char *out;           /* run directory */
    char *const *sets;         /* "KEY=VALUE" overrides, train.steps from --steps included */
    int n_sets;
    int print_commands;        /* print every process's command and exit 0 */
    int peer_timeout_ms;       /* transport dead-peer timeout, for stages and coordinator */
    double step_timeout_s;     /* longest wait for one step */
    uint64_t run_id;           /* 0: a random one */
    int trace;                 /* gather the stages' events into OUT/trace.json */
    int no_launch;             /* start no stage: print every command, wait for all to join
                                * (srun/mpirun start them; `run --no-launch`) */
    struct coord_http *http;   /* run --http: the live view every attempt's coordinator feeds, or NULL */
} cli_launch_opts;

/* Runs topology t (more than one stage, or replicas: P x R processes) as
 * described in cli/cli_launch.c. Prints its own messages; returns 0, 1 on a
 * run-time failure (stage [and replica], host:port and step named), 2 on bad
 * input. */
int cli_launch(const topo *t, const cli_launch_opts *o);

#endif
