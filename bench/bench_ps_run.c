/* bench_ps_run.c — the child runs of `bench ps` and reading what they wrote
 * (bench_ps_int.h). Each run is `pipetrain run` on a generated topology, one
 * at a time, with the straggler hook (stage/straggle.h) in its environment. */
#include "bench/bench_ps_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "stage/straggle.h"

int bps_free_ports(int n, int *ports, char *err)
{
    int fds[16], rc = 0;
    if (n > 16) return seterr(err, "at most 16 ports");
    for (int i = 0; i < n; i++) fds[i] = -1;
    for (int i = 0; i < n && !rc; i++) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof a;
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&a, sizeof a) ||
            getsockname(fds[i], (struct sockaddr *)&a, &len))
            rc = seterr(err, "cannot pick a free port on 127.0.0.1: %s", strerror(errno));
        else ports[i] = ntohs(a.sin_port);
    }
    for (int i = 0; i < n; i++) if (fds[i] >= 0) close(fds[i]);
    return rc;
}

/* The last lines of a failed run's log, on stderr. */
static void show_log(const char *log)
{
    FILE *f = fopen(log, "r");
    if (!f) return;
    char buf[4096];
    fseek(f, 0, SEEK_END);
    long size = ftell(f), from = size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0;
    fseek(f, from, SEEK_SET);
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    buf[got] = 0;
    fclose(f);
    fprintf(stderr, "--- last lines of %s:\n%s%s", log, buf, got && buf[got - 1] != '\n' ? "\n" : "");
}

int bps_run(const bps *b, const char *dir, const char *name, json_t *j, const char *straggle, double deadline_s,
            char *err)
{
    char topo_path[PATH_MAX], out[PATH_MAX], log[PATH_MAX];
    snprintf(topo_path, sizeof topo_path, "%s/%s.json", dir, name);
    snprintf(out, sizeof out, "%s/%s", dir, name);
    snprintf(log, sizeof log, "%s/%s.log", dir, name);
    if (json_dump_file(j, topo_path, JSON_INDENT(2))) return seterr(err, "%s: cannot write", topo_path), 1;
    pid_t pid = fork();
    if (pid < 0) return seterr(err, "fork: %s", strerror(errno)), 1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) _exit(127);
        if (straggle) setenv(STRAGGLE_ENV, straggle, 1);
        else unsetenv(STRAGGLE_ENV);
        setenv("OPENBLAS_NUM_THREADS", "1", 1);
        char *argv[] = { (char *)b->bin, "run", topo_path, "--out", out, NULL };
        execv(b->bin, argv);
        _exit(127);
    }
    double t0 = base_now();
    int status = 0, killed = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) return seterr(err, "waitpid: %s", strerror(errno)), 1;
        if (!killed && base_now() - t0 > deadline_s) { kill(pid, SIGTERM); killed = 1; t0 = base_now(); deadline_s = 5; }
        else if (killed == 1 && base_now() - t0 > deadline_s) { kill(pid, SIGKILL); killed = 2; }
        nanosleep(&(struct timespec){ 0, 50000000L }, NULL);
    }
    if (!killed && WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    show_log(log);
    if (killed) return seterr(err, "%s: still running after %.0f s: killed", name, deadline_s), 1;
    if (WIFSIGNALED(status)) return seterr(err, "%s: pipetrain run killed by signal %d", name, WTERMSIG(status)), 1;
    return seterr(err, "%s: pipetrain run exited with status %d (log: %s)", name, WEXITSTATUS(status), log), 1;
}

double bps_num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

bps_row *bps_read_rows(const char *out, size_t *n, char *err)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    FILE *f = fopen(path, "r");
    if (!f) return seterr(err, "%s: %s", path, strerror(errno)), NULL;
    size_t cap = 0, lcap = 0;
    bps_row *rows = NULL;
    char *line = NULL;
    *n = 0;
    while (getline(&line, &lcap, f) > 0) {
        json_t *j = json_loads(line, 0, NULL);
        json_t *w = json_object_get(j, "worker");
        if (json_is_integer(json_object_get(j, "step")) && json_is_number(json_object_get(j, "step_ms"))) {
            if (*n == cap) {
                cap = cap ? 2 * cap : 256;
                bps_row *g = realloc(rows, cap * sizeof *rows);
                if (!g) { json_decref(j); break; }
                rows = g;
            }
            rows[(*n)++] = (bps_row){ json_is_integer(w) ? (int)json_integer_value(w) : -1,
                                      (long)json_integer_value(json_object_get(j, "step")), bps_num(j, "loss"),
                                      bps_num(j, "val_loss"), bps_num(j, "step_ms") };
        }
        json_decref(j);
    }
    free(line);
    fclose(f);
    if (!*n) {
        free(rows);
        return seterr(err, "%s: no step rows", path), NULL;
    }
    return rows;
}
