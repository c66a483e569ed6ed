/* cli_common.c — argument parsing and checkpoint loading shared by subcommands. */
#include "cli/cli.h"
#include "coll/coll.h"
#include "model/util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>

int cli_sync_check(const char *cmd, const topo *t)
{
    /* every mode trains since the asynchronous ones (issue 12); the hook stays
     * for what a subcommand cannot run. The ring's receive knobs are read by
     * every replicated stage once its peers are connected: a bad value found
     * there makes whichever process sees its peer go first the one blamed
     * (exit 1), so refuse it here, before anything starts. */
    if (t->n_replicas > 1) {
        int mode;
        size_t slice;
        char err[ERR_LEN];
        if (coll_rx_from_env(&mode, &slice, err)) {
            fprintf(stderr, "pipetrain %s: %s\n", cmd, err);
            return 2;
        }
    }
    return 0;
}

int cli_parse_addr(const char *s, char *host, int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon) return -1;
    size_t n = (size_t)(colon - s);
    if (s[0] == '[' && n >= 2 && s[n - 1] == ']') { s++; n -= 2; }
    if (n == 0 || n >= 64) return -1;
    memcpy(host, s, n);
    host[n] = 0;
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (*end || errno || p < 1 || p > 65535) return -1;
    *port = (int)p;
    return 0;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "pipetrain %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(see pipetrain %s --help)\n", cmd);
    return 2;
}

int cli_wants_help(int argc, char **argv, const char *text)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(text, stdout);
            return 1;
        }
    return 0;
}

int cli_parse_long(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > hi) {
        cli_usage_error(cmd, "%s expects an integer in %ld..%ld, got '%s'", opt, lo, hi, s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_double(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || !*s || *end || errno || !isfinite(v) || v < lo || v > hi) {
        cli_usage_error(cmd, "%s expects a number in %g..%g, got '%s'", opt, lo, hi, s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

model_part *cli_load_model(const char *path, const char *secret_file, size_t max_batch, run_ckpt *ck, char *err)
{
    if (cli_is_hf_dir(path)) return cli_load_hf(path, max_batch, ck, err); /* an exported directory */
    run_ckpt_key key;
    if (run_ckpt_key_load(&key, secret_file, err)) {
        char e2[ERR_LEN];
        snprintf(e2, sizeof e2, "%s: %s", secret_file ? "--secret-file" : "$" RUN_CKPT_SECRET_ENV, err);
        memcpy(err, e2, ERR_LEN);
        return NULL;
    }
    int rc = run_ckpt_open(ck, path, &key, err);
    explicit_bzero(&key, sizeof key);
    if (rc) return NULL;
    if (ck->hmac_unverified)
        fprintf(stderr, "pipetrain: note: %s: its manifest carries an HMAC (the run had a secret) that was not "
                        "checked: pass --secret-file FILE or set %s to check it\n", ck->dir, RUN_CKPT_SECRET_ENV);
    int n = model_n_units(&ck->cfg);
    int *units = xmalloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) units[i] = i;
    model_part *p = model_part_new(&ck->cfg, units, n, max_batch, 0);
    free(units);
    if (run_ckpt_load_params(ck, p, err)) {
        model_part_free(p);
        run_ckpt_close(ck);
        return NULL;
    }
    return p;
}

int cli_process_option(const char *cmd, int argc, char **argv, int *i, stage_opts *o, char *host,
                       const char **data, char **sets, int *n_sets)
{
    const char *s = argv[*i], *a = *i + 1 < argc ? argv[*i + 1] : NULL;
    long v;
    double d;
    if (!strcmp(s, "--coordinator")) {
        if (!a || cli_parse_addr(a, host, &o->coord_port))
            return cli_usage_error(cmd, "--coordinator expects HOST:PORT, got '%s'", a ? a : "");
        o->coord_host = host;
    } else if (!strcmp(s, "--run-id")) {
        char *end;
        errno = 0;
        o->run_id = a ? strtoull(a, &end, 10) : 0;
        if (!a || !*a || *end || errno) return cli_usage_error(cmd, "--run-id expects an unsigned integer");
    } else if (!strcmp(s, "--out")) {
        if (!a) return cli_usage_error(cmd, "--out expects a directory");
        o->out_dir = a;
    } else if (!strcmp(s, "--data")) {
        if (!a) return cli_usage_error(cmd, "--data expects a file");
        *data = a;
    } else if (!strcmp(s, "--set")) {
        if (!a || !strchr(a, '=')) return cli_usage_error(cmd, "--set expects KEY=VALUE");
        if (*n_sets == 256) return cli_usage_error(cmd, "too many --set options");
        sets[(*n_sets)++] = argv[*i + 1];
    } else if (!strcmp(s, "--peer-timeout-ms")) {
        if (cli_parse_long(cmd, s, a, 100, 86400000, &v)) return 2;
        o->peer_timeout_ms = (int)v;
    } else if (!strcmp(s, "--connect-timeout-ms")) {
        if (cli_parse_long(cmd, s, a, 100, 86400000, &v)) return 2;
        o->connect_timeout_ms = (int)v;
    } else if (!strcmp(s, "--step-timeout-s")) {
        if (cli_parse_double(cmd, s, a, 1, 1e7, &d)) return 2;
        o->step_timeout_s = d;
    } else {
        return 0;
    }
    (*i)++;
    return 1;
}
