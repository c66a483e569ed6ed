/* cli_server.c — `pipetrain server`: one parameter server of a "sync": "ps"
 * topology (issue 12), the command a user starts on each server host (or that
 * `pipetrain run` starts, prints or ssh-launches beside the stages). The
 * process itself is stage/server.c. */
#include "cli/cli.h"
#include "cli/cli_restart.h"
#include "model/util.h"
#include "stage/stage.h"

#include <errno.h>

static const char server_help[] =
    "usage: pipetrain server TOPOLOGY.json --server K [--coordinator HOST:PORT] [--run-id N]\n"
    "                        [--out DIR] [--data FILE] [--set KEY=VALUE ...]\n"
    "                        [--peer-timeout-ms N] [--connect-timeout-ms N] [--step-timeout-s N]\n"
    "                        [--insecure]\n"
    "\n"
    "Runs parameter server K of a \"sync\": \"ps\" topology: listens on\n"
    "parameter_servers[K], connects to the coordinator, holds the weights and AdamW\n"
    "state of the tensor pieces assigned to it (`pipetrain check` prints them), takes\n"
    "every worker's gradient pushes and sends back the new weights of each step, until\n"
    "the coordinator says it is done. `pipetrain run` starts the servers itself\n"
    "(--print-commands shows their commands). Every process of a run must be given\n"
    "the same topology, overrides and --data (they compare a hash of it). On resume\n"
    "the server loads its pieces from the checkpoint under DIR (default .).\n";

int cli_server_main(int argc, char **argv)
{
    stage_opts o = { .stage = -1, .peer_timeout_ms = 10000, .connect_timeout_ms = 60000, .step_timeout_s = 600 };
    const char *path = NULL, *data = NULL;
    char *sets[256], host[64];
    int n_sets = 0, opt, insecure = 0;
    long v;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *a = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) { fputs(server_help, stdout); return 0; }
        else if (!strcmp(s, "--insecure")) insecure = 1;
        else if (!strcmp(s, "--server")) { if (cli_parse_long("server", s, a, 0, 65535, &v)) return 2; o.stage = (int)v; i++; }
        else if ((opt = cli_process_option("server", argc, argv, &i, &o, host, &data, sets, &n_sets))) {
            if (opt == 2) return 2;
        }
        else if (s[0] == '-') return cli_usage_error("server", "unknown option '%s'", s);
        else if (!path) path = s;
        else return cli_usage_error("server", "unexpected argument '%s'", s);
    }
    if (!path) return cli_usage_error("server", "a TOPOLOGY.json is required");
    if (o.stage < 0) return cli_usage_error("server", "--server K is required (the index into parameter_servers)");
    char err[ERR_LEN];
    topo t;
    if (topo_load(&t, path, sets, n_sets, err) || (data && topo_set_data_path(&t, data, err))) {
        fprintf(stderr, "pipetrain server: %s\n", err);
        topo_free(&t);
        return 2;
    }
    int rc = 0;
    if (t.sync_id != TOPO_SYNC_PS) {
        fprintf(stderr, "pipetrain server: %s: sync: parameter servers need \"sync\": \"ps\" (sync is \"%s\")\n", path,
                t.sync);
        rc = 2;
    } else if (o.stage >= t.n_servers) {
        fprintf(stderr, "pipetrain server: %s: --server %d: parameter_servers has %d server(s) (0..%d)\n", path, o.stage,
                t.n_servers, t.n_servers - 1);
        rc = 2;
    }
    if (!rc) rc = cli_sync_check("server", &t);
    if (!rc && topo_check_paths(&t, o.out_dir ? o.out_dir : ".", err)) {
        fprintf(stderr, "pipetrain server: %s\n", err);
        rc = 2;
    }
    if (!rc) rc = cli_secret_check("server", &t);
    if (!rc) rc = cli_insecure_check("server", &t, insecure);
    if (!rc) {
        rc = stage_server_run(&t, &o, err);
        if (rc) fprintf(stderr, "pipetrain server: %s\n", err);
    }
    topo_free(&t);
    return rc;
}
