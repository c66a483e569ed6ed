/* cli_run.c — `pipetrain run` (train) and `pipetrain check` (validate a topology
 * and print its partition). */
#include "cli/cli.h"
#include "cli/cli_balance.h"
#include "cli/cli_restart.h"
#include "coord/coord_http.h"
#include "model/bpe.h"
#include "model/data.h"
#include "model/util.h"
#include "net/net.h"
#include "ps/ps.h"
#include "stage/proto.h"
#include "stage/train.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char run_help[] =
    "usage: pipetrain run TOPOLOGY.json [--data FILE] [--steps N] [--out DIR] [--set KEY=VALUE ...]\n"
    "                     [--schedule KIND|FILE] [--resume] [--max-restarts N] [--http [HOST:]PORT]\n"
    "                     [--init-from DIR]\n"
    "\n"
    "Trains the model a topology describes and writes into the run directory:\n"
    "  metrics.jsonl  one JSON object per step (step, loss, lr, grad_norm, step_ms,\n"
    "                 tokens_per_s, val_loss on evaluation steps)\n"
    "  summary.json   steps, final_loss, val_loss, wall_s, tokens_per_s (since\n"
    "                 first_step: > 0 after --resume or a restart), restarts\n"
    "  loss.svg       the loss curve\n"
    "  checkpoints/step-N/  at the end and every checkpoint.every steps\n"
    "\n"
    "  --data FILE       training text (bytes) or .bin (uint16 tokens), relative to here\n"
    "  --steps N         override train.steps\n"
    "  --schedule KIND|FILE  run a built-in schedule kind (gpipe, 1f1b, interleaved,\n"
    "                    zb-h1) or a schedule file (.json or PyTorch's .csv, relative\n"
    "                    to here) instead of the topology's: --set schedule.kind=KIND\n"
    "                    or --set schedule.file=FILE, validated before any stage starts\n"
    "  --init-from DIR   start from a Hugging Face LLaMA checkpoint: DIR/config.json\n"
    "                    and DIR/model.safetensors (or model.safetensors.index.json and\n"
    "                    its shards; F32, F16, BF16), e.g. what `pipetrain export`\n"
    "                    wrote. The model section may be omitted (taken from\n"
    "                    config.json); keys given must agree with it. Each stage reads\n"
    "                    only its own tensors; AdamW starts fresh at step 0\n"
    "                    (--set init_from=DIR, passed to every stage)\n"
    "  --out DIR         run directory (default runs/NAME-YYYYmmdd-HHMMSS)\n"
    "  --set KEY=VALUE   override any topology field: --set train.lr=3e-4,\n"
    "                    --set stages.0.threads=1 (repeatable)\n"
    "  --resume          continue from the latest complete checkpoint in the run\n"
    "                    directory (--out): weights, optimizer, sampler and step\n"
    "                    restored, metrics.jsonl lines after it dropped; the result\n"
    "                    is bitwise what an uninterrupted run gives. The topology\n"
    "                    must be the checkpoint's except description, launch,\n"
    "                    coordinator, checkpoint, secret_file, train.steps,\n"
    "                    train.log_every/eval_every/eval_batches, the schedule and\n"
    "                    the stages (exit 2 otherwise): a checkpoint resumes on any\n"
    "                    split of the layers, bitwise when each layer keeps its\n"
    "                    BLAS thread count. Without --resume, checkpoints already\n"
    "                    in the run directory (another run's) are first moved,\n"
    "                    untouched, to CKPT.set-aside-N; the run starts at step 0\n"
    "\n"
    "Multi-stage topologies: the stages whose host is an address of this machine are\n"
    "started here (`pipetrain stage ...`, output in OUT/stage-K.log), the others over\n"
    "ssh when the topology says \"launch\": \"ssh\" (`ssh HOST 'cd CWD && exec ...'`:\n"
    "same paths on every host), else their commands are printed to start by hand.\n"
    "With replicas (data parallelism) every process (stage K, replica R) is started\n"
    "that way (`pipetrain stage ... --stage K --replica R`, OUT/stage-K-replica-R.log),\n"
    "and with \"sync\": \"ps\" every parameter server (`pipetrain server ... --server K`,\n"
    "OUT/server-K.log; summary.json then has a row per server and per worker).\n"
    "summary.json then also lists per process (stage, replica) peak_act_bytes,\n"
    "peak_in_flight, compute_s, wait_s, optim_s, bytes_sent, allreduce_s, exposed_s\n"
    "optim_bytes and extra_weight_bytes (schedule 2bw's second weight version).\n"
    "  --print-commands      print the command of every process and exit\n"
    "  --no-launch           start no process here: print every command and wait\n"
    "                        for all to join (started by srun, mpirun, ...: `run T\n"
    "                        --no-launch --run-id 7 --out OUT &` then `srun -n P\n"
    "                        pipetrain stage T --run-id 7 --out OUT`)\n"
    "  --max-restarts N      when a stage dies or stops answering: stop every stage and\n"
    "                        start them all again from this run's latest complete\n"
    "                        checkpoint (one it wrote, or the one it resumed; step 0\n"
    "                        when none: another run's is never resumed), up to N\n"
    "                        times (default 0); each restart is an event line in\n"
    "                        metrics.jsonl\n"
    "  --insecure            run without a shared secret although a process is off\n"
    "                        loopback (logged; anyone reaching the ports can join)\n"
    "  --peer-timeout-ms N   silence after which a process is dead (default 10000)\n"
    "  --step-timeout-s N    longest wait for one step (default 600)\n"
    "  --run-id N            run id the stages must be started with (default: random)\n"
    "  --http [HOST:]PORT    serve the live view while the run goes (README \"Live view\"):\n"
    "                        / (page), /metrics (Prometheus), /api/status (JSON); on\n"
    "                        127.0.0.1 unless HOST is given (PORT 0: any free port,\n"
    "                        printed). Off loopback it needs the run's secret and every\n"
    "                        request the token it prints (Authorization: Bearer TOKEN)\n"
    "  --no-trace            skip the trace (on by default: trace.json, every stage's\n"
    "                        compute, tensor waits and sends on one clock, Chrome format;\n"
    "                        timeline.svg, costs.json and summary.json's \"timing\";\n"
    "                        --trace is accepted and changes nothing)\n";

static const char check_help[] =
    "usage: pipetrain check TOPOLOGY.json [--set KEY=VALUE ...] [--schedule KIND|FILE] [--init-from DIR]\n"
    "\n"
    "Validates a topology and prints its partition: per stage the layers, parameters,\n"
    "forward FLOPs per micro-batch and activation bytes sent per micro-batch. The\n"
    "schedule is built and played exactly as `run` would run it (the kind's\n"
    "constraints, or the schedule file read and checked for deadlocks). Then each\n"
    "stage process's predicted peak memory (weights, gradients, AdamW moments,\n"
    "activations at the schedule's peak, buffers; README \"Memory\"): a topology whose\n"
    "processes on this machine need more than its MemAvailable is refused, as `run`\n"
    "refuses it (PIPETRAIN_MEM_BYTES=N stands for the machine's memory).\n"
    "  --schedule KIND|FILE  as run's: a built-in kind or a schedule file (relative to\n"
    "                        here) in place of the topology's\n"
    "  --init-from DIR       as run's: also checks every tensor's name, dtype and shape\n"
    "Exit status 2 on any problem, naming the JSON path.\n";

/* Options common to run and check. */
typedef struct {
    const char *topology, *data, *out;
    char *sets[256];
    int n_sets;
    char steps_set[64];
    char sched_set[4200];     /* --schedule as an override: schedule.kind= or schedule.file= */
    char init_set[4200];      /* --init-from DIR as an override: init_from=ABSOLUTE-DIR */
    int print_commands, no_launch, peer_timeout_ms, trace, resume, max_restarts, insecure;
    const char *http;         /* --http [HOST:]PORT, or NULL */
    double step_timeout_s;
    uint64_t run_id;
} run_args;

/* The multi-stage options of run; 1 when s was one (i advanced), -1 on a bad value. */
static int parse_launch_opt(const char *cmd, const char *s, const char *v, run_args *a, int *i)
{
    long n;
    if (!strcmp(s, "--print-commands")) { a->print_commands = 1; return 1; }
    if (!strcmp(s, "--no-launch")) { a->no_launch = 1; return 1; }
    if (!strcmp(s, "--trace")) { a->trace = 1; return 1; }
    if (!strcmp(s, "--no-trace")) { a->trace = 0; return 1; }
    if (!strcmp(s, "--resume")) { a->resume = 1; return 1; }
    if (!strcmp(s, "--insecure")) { a->insecure = 1; return 1; }
    if (!strcmp(s, "--peer-timeout-ms")) {
        if (cli_parse_long(cmd, s, v, 100, 86400000, &n)) return -1;
        a->peer_timeout_ms = (int)n;
    } else if (!strcmp(s, "--step-timeout-s")) {
        if (cli_parse_double(cmd, s, v, 1, 1e7, &a->step_timeout_s)) return -1;
    } else if (!strcmp(s, "--max-restarts")) {
        if (cli_parse_long(cmd, s, v, 0, 1000000, &n)) return -1;
        a->max_restarts = (int)n;
    } else if (!strcmp(s, "--http")) {
        if (!v || !*v) return cli_usage_error(cmd, "--http expects [HOST:]PORT"), -1;
        a->http = v;
    } else if (!strcmp(s, "--run-id")) {
        if (cli_parse_long(cmd, s, v, 1, LONG_MAX, &n)) return -1;
        a->run_id = (uint64_t)n;
    } else {
        return 0;
    }
    (*i)++;
    return 1;
}

/* --schedule KIND|FILE as the override every process is given: a kind by name, a
 * file made absolute (the topology resolves relative paths against its own folder;
 * the user means this one). Returns 0, or -1 when it does not fit in n bytes. */
static int schedule_set(char *out, size_t n, const char *v)
{
    char cwd[4096];
    if (sched_kind_find(v) >= 0) return snprintf(out, n, "schedule.kind=%s", v) < (int)n ? 0 : -1;
    if (v[0] == '/' || !getcwd(cwd, sizeof cwd)) return snprintf(out, n, "schedule.file=%s", v) < (int)n ? 0 : -1;
    return snprintf(out, n, "schedule.file=%s/%s", cwd, v) < (int)n ? 0 : -1;
}

static int parse(const char *cmd, int argc, char **argv, run_args *a, int allow_run_opts)
{
    memset(a, 0, sizeof *a);
    a->trace = 1; /* pipeline runs are traced unless --no-trace */
    a->peer_timeout_ms = 10000;
    a->step_timeout_s = 600;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int lo = allow_run_opts ? parse_launch_opt(cmd, s, v, a, &i) : 0;
        if (lo < 0) return 2;
        if (lo) continue;
        if (!strcmp(s, "--set")) {
            if (!v || !strchr(v, '=')) return cli_usage_error(cmd, "--set expects KEY=VALUE");
            if (a->n_sets == 254) return cli_usage_error(cmd, "too many --set options");
            a->sets[a->n_sets++] = argv[++i];
        } else if (!strcmp(s, "--schedule")) {
            if (!v || !*v) return cli_usage_error(cmd, "--schedule expects a kind (gpipe, 1f1b, interleaved, zb-h1) or a file");
            if (schedule_set(a->sched_set, sizeof a->sched_set, v))
                return cli_usage_error(cmd, "--schedule %s: path too long", v);
            i++;
        } else if (!strcmp(s, "--init-from")) {
            if (!v || !*v) return cli_usage_error(cmd, "--init-from expects a directory (config.json, model.safetensors)");
            if (cli_init_from_set(a->init_set, sizeof a->init_set, v))
                return cli_usage_error(cmd, "--init-from %s: path too long", v);
            i++;
        } else if (allow_run_opts && !strcmp(s, "--data")) {
            if (!v) return cli_usage_error(cmd, "--data expects a file");
            a->data = argv[++i];
        } else if (allow_run_opts && !strcmp(s, "--out")) {
            if (!v) return cli_usage_error(cmd, "--out expects a directory");
            a->out = argv[++i];
        } else if (allow_run_opts && !strcmp(s, "--steps")) {
            long n;
            if (cli_parse_long(cmd, "--steps", v, 1, 1000000000, &n)) return 2;
            i++;
            snprintf(a->steps_set, sizeof a->steps_set, "train.steps=%ld", n);
        } else if (s[0] == '-' && s[1]) {
            return cli_usage_error(cmd, "unknown option '%s'", s);
        } else if (!a->topology) {
            a->topology = s;
        } else {
            return cli_usage_error(cmd, "unexpected argument '%s'", s);
        }
    }
    if (!a->topology) return cli_usage_error(cmd, "a TOPOLOGY.json is required");
    if (a->steps_set[0]) a->sets[a->n_sets++] = a->steps_set;
    if (a->sched_set[0]) a->sets[a->n_sets++] = a->sched_set; /* last: it wins over --set schedule.* */
    if (a->init_set[0]) a->sets[a->n_sets++] = a->init_set;
    return 0;
}

/* runs/NAME-YYYYmmdd-HHMMSS from the topology file name. */
static void default_out(char *out, size_t n, const char *topology)
{
    const char *base = strrchr(topology, '/');
    base = base ? base + 1 : topology;
    size_t len = strcspn(base, ".");
    char stamp[32];
    time_t now = time(NULL);
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", localtime(&now));
    snprintf(out, n, "runs/%.*s-%s", (int)len, base, stamp);
}

/* --http: parses the address, refuses off loopback without the run's own
 * secret (checked before --insecure installs its well-known one), binds and
 * starts the live view, prints where it is. Returns 0 with *out, or 2. */
static int start_http(const topo *t, const run_args *a, coord_http **out)
{
    char host[256], err[ERR_LEN], nerr[NET_ERR_LEN], token[65];
    int port;
    uint8_t secret[256];
    size_t len = 0;
    *out = NULL;
    if (coord_http_parse_addr(a->http, host, sizeof host, &port, err)) {
        fprintf(stderr, "pipetrain run: %s\n", err);
        return 2;
    }
    int lo = coord_http_is_loopback(host);
    if (!lo) {
        if (!t->secret_file && !getenv(PROTO_SECRET_ENV)) {
            fprintf(stderr, "pipetrain run: --http %s is off loopback: the live view then needs the run's shared "
                            "secret (%s: secret_file, or $%s) to protect it; bind 127.0.0.1 or name a secret\n",
                    a->http, t->path, PROTO_SECRET_ENV);
            return 2;
        }
        if (net_secret_load(t->secret_file, PROTO_SECRET_ENV, secret, sizeof secret, &len, nerr) != NET_OK) {
            fprintf(stderr, "pipetrain run: %s: %s%s\n", t->path, t->secret_file ? "secret_file: " : "", nerr);
            return 2;
        }
    }
    *out = coord_http_new(t, host, port, 0, lo ? NULL : secret, len, err);
    if (!lo) coord_http_token(secret, len, token);
    explicit_bzero(secret, sizeof secret);
    if (!*out) {
        fprintf(stderr, "pipetrain run: %s\n", err);
        return 2;
    }
    const char *fmt = strchr(host, ':') ? "[%s]" : "%s";
    char shown[300];
    snprintf(shown, sizeof shown, fmt, host);
    fprintf(stderr, "pipetrain run: live view on http://%s:%d/ (/metrics, /api/status)\n", shown, coord_http_port(*out));
    if (!lo) {
        fprintf(stderr, "pipetrain run: live view token (HMAC-SHA256 of the secret, README \"Live view\"): send "
                        "\"Authorization: Bearer %s\" or open http://%s:%d/?token=%s\n", token, shown,
                coord_http_port(*out), token);
        explicit_bzero(token, sizeof token);
    }
    return 0;
}

/* One run per run directory: OUT/run.lock, flock()ed for as long as this
 * process lives (the kernel drops it when the process ends, however it ends;
 * O_CLOEXEC: the stages it launches do not hold it). Two runs writing one
 * OUT would interleave metrics.jsonl, set each other's checkpoints aside and
 * resume each other's steps. The file holds the holder's pid, for the
 * message. Returns 0 (also, with a warning, where the filesystem has no
 * locks), 1 (the directory or the file cannot be made) or 2 (in use). */
static int lock_out(const char *out)
{
    char path[4200], err[ERR_LEN], held[32] = "";
    if (run_mkdirs(out, err)) {
        fprintf(stderr, "pipetrain run: %s\n", err);
        return 1;
    }
    snprintf(path, sizeof path, "%s/run.lock", out);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "pipetrain run: %s: %s\n", path, strerror(errno));
        return 1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        int e = errno;
        ssize_t n = pread(fd, held, sizeof held - 1, 0);
        held[n > 0 ? n : 0] = 0;
        held[strcspn(held, "\n")] = 0;
        close(fd);
        if (e != EWOULDBLOCK) { /* a filesystem without locks (some NFS): go on unguarded, and say so */
            fprintf(stderr, "pipetrain run: warning: %s: cannot lock (%s): nothing keeps a second run out of %s\n",
                    path, strerror(e), out);
            return 0;
        }
        fprintf(stderr, "pipetrain run: %s is in use by another pipetrain run (pid %s, holding %s): give another "
                        "--out, or wait for that run to end\n", out, held[0] ? held : "unknown", path);
        return 2;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) || pwrite(fd, pid, (size_t)n, 0) != n) { /* only the message's pid is lost */ }
    return 0; /* fd stays open: the lock lives as long as this process */
}

/* A run with data.tokenizer keeps a copy as OUT/tokenizer.json, where sample,
 * eval and export find it. Returns rc, or 1 when the copy fails. */
static int keep_tokenizer(const topo *t, const char *out, int rc)
{
    char path[4200], err[ERR_LEN];
    struct stat st;
    if (!t->data.tokenizer || stat(out, &st) != 0) return rc;
    snprintf(path, sizeof path, "%s/tokenizer.json", out);
    if (cli_copy_file(t->data.tokenizer, path, err)) {
        fprintf(stderr, "pipetrain run: %s\n", err);
        return rc ? rc : 1;
    }
    return rc;
}

int cli_run_main(int argc, char **argv)
{
    if (cli_wants_help(argc, argv, run_help)) return 0;
    run_args a;
    int rc = parse("run", argc, argv, &a, 1);
    if (rc) return rc;
    char err[ERR_LEN], out[4096];
    topo t;
    if (topo_load(&t, a.topology, a.sets, a.n_sets, err)) {
        fprintf(stderr, "pipetrain run: %s\n", err);
        return 2;
    }
    if ((rc = cli_sync_check("run", &t)) || (rc = cli_init_from_check("run", &t))) {
        topo_free(&t);
        return rc;
    }
    if (a.data && topo_set_data_path(&t, a.data, err)) {
        fprintf(stderr, "pipetrain run: %s\n", err);
        topo_free(&t);
        return 2;
    }
    if ((rc = cli_secret_check("run", &t))) {
        topo_free(&t);
        return rc;
    }
    sched_schedule *sched = NULL; /* what the stages will build: refuse it before any starts */
    if (topo_build_schedule(&t, NULL, &sched, err)) {
        fprintf(stderr, "pipetrain run: %s\n", err);
        topo_free(&t);
        return 2;
    }
    char snote[SCHED_ERR_LEN + 64];
    if (sched_note(sched, snote, sizeof snote)) fprintf(stderr, "pipetrain run: %s\n", snote);
    rc = topo_mem_check(&t, sched, NULL, err); /* this machine's processes must fit before any starts */
    sched_free(sched);
    if (rc) {
        fprintf(stderr, "pipetrain run: %s\n", err);
        topo_free(&t);
        return rc;
    }
    if (t.sync_id == TOPO_SYNC_PS) { /* the assignment the servers and workers will make: refuse it here */
        ps_assignment pa;
        if (ps_assign(&t, &pa, err)) {
            fprintf(stderr, "pipetrain run: %s\n", err);
            topo_free(&t);
            return 2;
        }
        ps_assignment_free(&pa);
    }
    if (a.out) snprintf(out, sizeof out, "%s", a.out);
    else default_out(out, sizeof out, a.topology);
    if (topo_check_paths(&t, a.out ? a.out : out, err)) { /* before out could have been cut */
        fprintf(stderr, "pipetrain run: %s\n", err);
        topo_free(&t);
        return 2;
    }
    struct bpe *tok = NULL; /* data.tokenizer: refused here (exit 2) before any stage starts */
    if ((rc = cli_tokenizer_use("run", &t, &tok))) { topo_free(&t); return rc; }
    if (!a.print_commands) cli_summary_val_bytes(&t, tok);
    int grid = t.n_stages > 1 || t.n_replicas > 1 || t.sync_id == TOPO_SYNC_PS;
    /* (a one-stage run refuses --http and --no-launch below: no directory for those) */
    if (!a.print_commands && (grid || (!a.http && !a.no_launch)) && (rc = lock_out(out))) {
        bpe_free(tok);
        topo_free(&t);
        return rc;
    }
    if (grid) { /* a grid of processes: the launcher */
        coord_http *http = NULL; /* before --insecure installs its well-known secret: that one protects nothing */
        if (a.http && !a.print_commands && (rc = start_http(&t, &a, &http))) { bpe_free(tok); topo_free(&t); return rc; }
        if ((rc = cli_insecure_check("run", &t, a.insecure))) {
            coord_http_free(http);
            bpe_free(tok);
            topo_free(&t);
            return rc;
        }
        cli_launch_opts lo = { a.topology, a.data, out, a.sets, a.n_sets, a.print_commands, a.peer_timeout_ms,
                               a.step_timeout_s, a.run_id, a.trace, a.no_launch, NULL };
        cli_restart_opts ro = { a.resume, a.max_restarts, a.insecure };
        lo.http = http;
        rc = cli_launch_restart(&t, &lo, &ro);
        coord_http_free(lo.http);
        if (!a.print_commands) rc = keep_tokenizer(&t, out, rc);
        bpe_free(tok);
        topo_free(&t);
        return rc;
    }
    if (a.http) {
        fprintf(stderr, "pipetrain run: --http: %s has one stage, trained in this process without a coordinator: "
                        "the live view serves multi-stage runs (metrics.jsonl has every step)\n", a.topology);
        bpe_free(tok);
        topo_free(&t);
        return 2;
    }
    if (a.no_launch) {
        fprintf(stderr, "pipetrain run: --no-launch: %s has one stage: `pipetrain run` trains it in this process "
                        "(no stage joins a one-stage run)\n", a.topology);
        bpe_free(tok);
        topo_free(&t);
        return 2;
    }
    if (a.print_commands) {
        printf("# %s has one stage: `pipetrain run` trains it in this process\n", a.topology);
        bpe_free(tok);
        topo_free(&t);
        return 0;
    }
    if (a.max_restarts)
        fprintf(stderr, "pipetrain run: note: --max-restarts applies to multi-stage runs; a one-stage run "
                        "is resumed with --resume\n");
    stage_train_opts o = { out, stderr, a.resume };
    rc = stage_train_local(&t, &o, err);
    if (rc) fprintf(stderr, "pipetrain run: %s\n", err);
    rc = keep_tokenizer(&t, out, rc);
    data_use_tokenizer(NULL);
    bpe_free(tok);
    topo_free(&t);
    return rc;
}

int cli_check_main(int argc, char **argv)
{
    if (cli_wants_help(argc, argv, check_help)) return 0;
    run_args a;
    int rc = parse("check", argc, argv, &a, 0);
    if (rc) return rc;
    char err[ERR_LEN], hash[65];
    topo t;
    if (topo_load(&t, a.topology, a.sets, a.n_sets, err)) {
        fprintf(stderr, "pipetrain check: %s\n", err);
        return 2;
    }
    if ((rc = cli_init_from_check("check", &t))) {
        topo_free(&t);
        return rc;
    }
    sched_schedule *s = NULL; /* the very schedule run would run */
    if (topo_build_schedule(&t, NULL, &s, err)) {
        fprintf(stderr, "pipetrain check: %s\n", err);
        topo_free(&t);
        return 2;
    }
    size_t n_act = 0;
    for (int st = 0; st < s->n_stages; st++) n_act += s->len[st];
    if (topo_hash_hex(&t, hash)) {
        fprintf(stderr, "pipetrain check: %s: out of memory hashing the topology\n", a.topology);
        sched_free(s);
        topo_free(&t);
        return 1;
    }
    printf("schedule %s%s%s: %d stages x %d micro-batches x %d chunk(s), %zu actions, no deadlock\n", s->kind,
           t.schedule.file ? " " : "", t.schedule.file ? t.schedule.file : "", s->n_stages, s->n_micro, s->n_chunks,
           n_act);
    char note[SCHED_ERR_LEN + 64];
    if (s->placement == SCHED_PLACE_V) printf("placement: V (stage s holds virtual stages s and 2P-1-s)\n");
    if (sched_note(s, note, sizeof note)) fprintf(stderr, "pipetrain check: %s\n", note);
    topo_print_partition(&t, stdout);
    rc = topo_mem_check(&t, s, stdout, err);
    sched_free(s);
    if (rc) {
        fprintf(stderr, "pipetrain check: %s\n", err);
        topo_free(&t);
        return rc;
    }
    cli_balance_warn(&t, stderr);
    if (t.sync_id == TOPO_SYNC_PS) {
        ps_assignment pa;
        if (ps_assign(&t, &pa, err)) {
            fprintf(stderr, "pipetrain check: %s\n", err);
            topo_free(&t);
            return 2;
        }
        ps_print_assignment(&t, &pa, stdout, 24);
        ps_assignment_free(&pa);
    }
    /* last, once every check has passed (it came first, and a memory refusal
     * then followed an "ok" on stdout) */
    printf("%s: ok (topology sha256 %.16s...)\n", a.topology, hash);
    topo_free(&t);
    return 0;
}
