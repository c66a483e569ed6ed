/* cli_stage.c — `pipetrain stage`: one pipeline stage process, the command a
 * user starts on each host (by hand, over ssh, or under SLURM's srun). */
#include "cli/cli.h"
#include "cli/cli_restart.h"
#include "model/bpe.h"
#include "model/data.h"
#include "model/util.h"
#include "stage/stage.h"

#include <errno.h>
#include <unistd.h>

static const char stage_help[] =
    "usage: pipetrain stage TOPOLOGY.json [--stage K [--replica R]] [--coordinator HOST:PORT] [--run-id N]\n"
    "                       [--out DIR] [--data FILE] [--set KEY=VALUE ...]\n"
    "                       [--peer-timeout-ms N] [--connect-timeout-ms N] [--step-timeout-s N]\n"
    "                       [--insecure] [--rejoin N] [--join] [--init-from DIR]\n"
    "\n"
    "Runs stage K of the topology: listens on its host:port, connects to its neighbours\n"
    "and to the coordinator (`pipetrain run` prints these commands with --print-commands),\n"
    "and trains until the coordinator says it is done. --replica R picks the replica of\n"
    "stage K in a replicated topology (default 0). Without --stage, the process comes from\n"
    "the launcher's rank, the first set of OMPI_COMM_WORLD_RANK, PMI_RANK, SLURM_PROCID,\n"
    "RANK (the most specific launcher first: mpirun inside a SLURM allocation leaves\n"
    "SLURM_PROCID at the allocation's): rank = replica x stages + stage, so `srun pipetrain stage topo.json` or\n"
    "`mpirun -np 4 pipetrain stage topo.json` starts the whole grid (a launcher's process count,\n"
    "OMPI_COMM_WORLD_SIZE, PMI_SIZE, SLURM_STEP_NUM_TASKS or WORLD_SIZE, below stages x replicas is refused). Every process of a run\n"
    "must be given the same topology, overrides and --data (they compare a hash of it).\n"
    "Checkpoint shards are written under DIR (default .). IPv6: --coordinator [::1]:29500.\n"
    "--init-from DIR: start from a Hugging Face checkpoint (as `run --init-from`; the same as\n"
    "--set init_from=DIR with DIR made absolute): this stage reads only its own tensors.\n"
    "--insecure: run without a shared secret although a process is off loopback (logged).\n"
    "--rejoin N: after a run-time failure (a dead peer, the coordinator restarting the\n"
    "run), start over up to N times: connect again and continue from the checkpoint the\n"
    "coordinator names (with `pipetrain run --max-restarts`, only the stage that died\n"
    "then needs restarting by hand).\n"
    "--join: (asynchronous parameter servers, ps.staleness != 0) this worker joins a run in\n"
    "progress, in place of one that was dropped: give every stage of the replica the command\n"
    "`run --print-commands` prints plus --join; it pulls the current weights and trains from\n"
    "the step the coordinator names.\n";

/* The launcher variables a rank is read from, in the order they are tried. */
/* Most specific first: mpirun inside a SLURM allocation sets OMPI_COMM_WORLD_RANK
 * per process and leaves every process the allocation's SLURM_PROCID; srun's
 * PMI_RANK equals SLURM_PROCID. */
static const char *const rank_vars[] = { "OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID", "RANK", NULL };
/* The same launcher's process count, one per rank_vars entry (srun's step, not
 * the allocation: an sbatch job may srun fewer tasks than it holds). */
static const char *const size_vars[] = { "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS", "WORLD_SIZE", NULL };

/* A launcher that started fewer processes than the grid has would leave peers
 * that never come (mpirun -np 4 on a 3 x 3 grid): refused at once, naming the
 * variable. More is left alone: a rank past the grid is refused by itself, and
 * an MPMD launch may start parameter servers beside the stages. Returns 0 (or
 * the size is not set), or 2 (message printed). */
static int check_world_size(const topo *t, const char *var)
{
    for (int i = 0; rank_vars[i]; i++) {
        if (strcmp(rank_vars[i], var)) continue;
        const char *v = getenv(size_vars[i]);
        long n;
        if (!v) return 0;
        if (cli_parse_long("stage", size_vars[i], v, 1, 1L << 30, &n)) return 2;
        long grid = (long)t->n_stages * t->n_replicas;
        if (n >= grid) return 0;
        fprintf(stderr, "pipetrain stage: %s: %s=%ld: the launcher started %ld process(es), but the grid is %d "
                "stage(s) x %d replica(s) = %ld process(es) (start %ld, e.g. mpirun -np %ld or srun -n %ld)\n",
                t->path, size_vars[i], n, n, t->n_stages, t->n_replicas, grid, grid, grid, grid);
        return 2;
    }
    return 0;
}

/* Who this process is: --stage/--replica, else the first launcher rank set (its
 * variable's name in *var, its value in *rank). Returns 0, or 2 (message printed). */
static int find_rank(const char **var, long *rank)
{
    for (int i = 0; rank_vars[i]; i++) {
        const char *v = getenv(rank_vars[i]);
        if (!v) continue;
        *var = rank_vars[i];
        return cli_parse_long("stage", rank_vars[i], v, 0, 65535, rank) ? 2 : 0;
    }
    return cli_usage_error("stage", "--stage K is required (or run under a launcher that sets OMPI_COMM_WORLD_RANK, "
                           "PMI_RANK, SLURM_PROCID or RANK)");
}

/* Resolves (stage, replica) against t and refuses what cannot run yet. Returns 0 or 2. */
static int resolve_identity(const topo *t, stage_opts *o, int *replica, const char *var, long rank)
{
    char err[ERR_LEN];
    if (var) {
        if (check_world_size(t, var)) return 2;
        if (topo_rank_identity(t, rank, &o->stage, replica, err)) {
            fprintf(stderr, "pipetrain stage: %s: %s=%ld: %s\n", t->path, var, rank, err);
            return 2;
        }
        fprintf(stderr, "pipetrain stage: %s=%ld: stage %d, replica %d (rank = replica x %d + stage)\n", var, rank,
                o->stage, *replica, t->n_stages);
    } else if (*replica < 0) {
        *replica = 0;
    } else if (*replica >= t->n_replicas) {
        return cli_usage_error("stage", "--replica %d: %s has %d replica(s) per stage (0..%d)", *replica, t->path,
                               t->n_replicas, t->n_replicas - 1);
    }
    o->replica = *replica;
    if (o->stage >= t->n_stages)
        return cli_usage_error("stage", "--stage %d: %s has %d stage(s) (0..%d)", o->stage, t->path, t->n_stages,
                               t->n_stages - 1);
    return 0;
}

int cli_stage_main(int argc, char **argv)
{
    stage_opts o = { .stage = -1, .peer_timeout_ms = 10000, .connect_timeout_ms = 60000, .step_timeout_s = 600 };
    const char *path = NULL, *data = NULL;
    char *sets[256], host[64], init_set[4200] = "";
    int n_sets = 0, opt, insecure = 0, rejoin = 0, replica = -1;
    const char *rank_var = NULL;
    long v, rank = 0;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *a = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) { fputs(stage_help, stdout); return 0; }
        else if (!strcmp(s, "--insecure")) insecure = 1;
        else if (!strcmp(s, "--join")) o.join = 1;
        else if (!strcmp(s, "--rejoin")) { if (cli_parse_long("stage", s, a, 0, 1000000, &v)) return 2; rejoin = (int)v; i++; }
        else if (!strcmp(s, "--stage")) { if (cli_parse_long("stage", s, a, 0, 65535, &v)) return 2; o.stage = (int)v; i++; }
        else if (!strcmp(s, "--init-from")) {
            if (!a || !*a || cli_init_from_set(init_set, sizeof init_set, a))
                return cli_usage_error("stage", "--init-from expects a directory (config.json, model.safetensors)");
            i++;
        }
        else if (!strcmp(s, "--replica")) { if (cli_parse_long("stage", s, a, 0, 65535, &v)) return 2; replica = (int)v; i++; }
        else if ((opt = cli_process_option("stage", argc, argv, &i, &o, host, &data, sets, &n_sets))) {
            if (opt == 2) return 2;
        }
        else if (s[0] == '-') return cli_usage_error("stage", "unknown option '%s'", s);
        else if (!path) path = s;
        else return cli_usage_error("stage", "unexpected argument '%s'", s);
    }
    if (!path) return cli_usage_error("stage", "a TOPOLOGY.json is required");
    if (init_set[0]) {
        if (n_sets == 256) return cli_usage_error("stage", "too many --set options");
        sets[n_sets++] = init_set;
    }
    if (replica >= 0 && o.stage < 0)
        return cli_usage_error("stage", "--replica R needs --stage K (without both, a launcher's rank names the process)");
    if (o.stage < 0 && find_rank(&rank_var, &rank)) return 2;
    char err[ERR_LEN];
    topo t;
    if (topo_load(&t, path, sets, n_sets, err) || (data && topo_set_data_path(&t, data, err))) {
        fprintf(stderr, "pipetrain stage: %s\n", err);
        topo_free(&t);
        return 2;
    }
    if (cli_sync_check("stage", &t) || cli_init_from_check("stage", &t)) {
        topo_free(&t);
        return 2;
    }
    if (resolve_identity(&t, &o, &replica, rank_var, rank)) {
        topo_free(&t);
        return 2;
    }
    if (topo_check_paths(&t, o.out_dir ? o.out_dir : ".", err)) {
        fprintf(stderr, "pipetrain stage: %s\n", err);
        topo_free(&t);
        return 2;
    }
    int rc = cli_secret_check("stage", &t);
    if (!rc) rc = cli_insecure_check("stage", &t, insecure);
    if (rc) { topo_free(&t); return rc; }
    struct bpe *tok = NULL;
    if ((rc = cli_tokenizer_use("stage", &t, &tok))) { topo_free(&t); return rc; }
    for (int n = 0;; n++) {
        rc = stage_run(&t, &o, err);
        if (rc) fprintf(stderr, "pipetrain stage: %s\n", err);
        if (rc != 1 || n >= rejoin) break;
        /* give the coordinator's failed attempt time to close before its next one listens */
        fprintf(stderr, "pipetrain stage: rejoining (%d of %d) in 2 s\n", n + 1, rejoin);
        sleep(2);
    }
    data_use_tokenizer(NULL);
    bpe_free(tok);
    topo_free(&t);
    return rc;
}
