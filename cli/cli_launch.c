/* cli_launch.c — the launcher of `pipetrain run` for multi-stage (or
 * replicated) topologies: starts every process of the grid (stage K, replica
 * R; P x R of them, index p = R * P + K) whose host is an address of this
 * machine as a child process (`pipetrain stage ... --stage K [--replica R]`,
 * output in OUT/stage-K.log, OUT/stage-K-replica-R.log with replicas), starts
 * the others over ssh when the topology says "launch": "ssh", prints the
 * command for processes it cannot start and waits for them to join, runs the
 * coordinator (coord/coord.h) and makes sure no child outlives it.
 *
 * Children: own process group each, PR_SET_PDEATHSIG(SIGKILL) so they die
 * with the launcher, every inherited descriptor above stderr closed. On a
 * failure or SIGINT/SIGTERM: SIGTERM to every child's group, a short wait,
 * SIGKILL, reap.
 *
 * Attempts (issue #6, cli/cli_restart.h): one coordinator and one set of
 * children per attempt; --resume starts from the latest complete checkpoint,
 * every restart from this run's latest (run/run.h: run_start_point). Not here:
 * what a stage does (stage/runtime.c). */
#include "cli/cli.h"
#include "cli/cli_restart.h"
#include "model/data.h"
#include "model/util.h"
#include "run/run_ckpt.h"
#include "coord/coord.h"
#include "run/run.h"
#include "run/run_metrics.h"
#include "net/net.h"
#include "stage/proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { HOW_LOCAL = 0, HOW_SSH = 1, HOW_HAND = 2 };
static const char *how_name[] = { "local", "ssh", "by hand" };

typedef struct {
    int how;
    pid_t pid;          /* 0 when not started by us */
    int running;
    int result;         /* for the coordinator's liveness check: 1 signal, 2 exit */
    int clean;          /* exited with status 0 */
    int code;           /* exit status, or -1 (killed by a signal) */
    double kill_at;     /* stopped after a drop (stop_dropped): SIGKILL then if still running; 0 none */
    char why[128];
    char log[4200];
} child;

typedef struct {
    const topo *t;
    const cli_launch_opts *o;
    child *ch;          /* (n_proc), by process index */
    int n_grid;         /* P x R stage processes */
    int n_proc;         /* n_grid, then (sync "ps") the parameter servers: server j is n_grid + j */
    char exe[PATH_MAX], cwd[PATH_MAX];
    uint64_t run_id;
    uint64_t writer;    /* recorded in the checkpoints this `run` commits: restarts resume only those */
    int insecure;       /* pass --insecure to the stages */
    int rejoin;         /* --max-restarts: stages started by hand get --rejoin N */
} launch;

static volatile sig_atomic_t got_signal;
static void on_signal(int sig) { got_signal = sig; }

static double now_s(void) { return base_now(); }

static void sleep_ms(int ms) { nanosleep(&(struct timespec){ ms / 1000, (long)(ms % 1000) * 1000000L }, NULL); }

/* 1 when host (a numeric address) is loopback or assigned to an interface here. */
static int is_local(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    int v4 = inet_pton(AF_INET, host, &a4) == 1, v6 = !v4 && inet_pton(AF_INET6, host, &a6) == 1;
    if (v4 && (ntohl(a4.s_addr) >> 24) == 127) return 1;
    if (v6 && IN6_IS_ADDR_LOOPBACK(&a6)) return 1;
    struct ifaddrs *ifs = NULL;
    if (getifaddrs(&ifs)) return 0;
    int found = 0;
    for (struct ifaddrs *i = ifs; i && !found; i = i->ifa_next) {
        if (!i->ifa_addr) continue;
        if (v4 && i->ifa_addr->sa_family == AF_INET)
            found = !memcmp(&((struct sockaddr_in *)i->ifa_addr)->sin_addr, &a4, sizeof a4);
        else if (v6 && i->ifa_addr->sa_family == AF_INET6)
            found = !memcmp(&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr, &a6, sizeof a6);
    }
    freeifaddrs(ifs);
    return found;
}

/* The host of process p (stage p % P, replica p / P). */
static const char *proc_host(const launch *L, int p)
{
    if (p >= L->n_grid) return L->t->parameter_servers[p - L->n_grid].host;
    return L->t->stages[p % L->t->n_stages].replicas[p / L->t->n_stages].host;
}

/* Process p as messages name it: "stage K", or "stage K replica R" with replicas. */
static const char *proc_who(const launch *L, int p, char *buf, size_t cap)
{
    if (p >= L->n_grid) snprintf(buf, cap, "server %d", p - L->n_grid);
    else if (L->t->n_replicas > 1) snprintf(buf, cap, "stage %d replica %d", p % L->t->n_stages, p / L->t->n_stages);
    else snprintf(buf, cap, "stage %d", p);
    return buf;
}

/* OUT/stage-K.NAME, or OUT/stage-K-replica-R.NAME with replicas. */
static void proc_file(const launch *L, int p, const char *ext, char *buf, size_t cap)
{
    if (p >= L->n_grid) snprintf(buf, cap, "%s/server-%d.%s", L->o->out, p - L->n_grid, ext);
    else if (L->t->n_replicas > 1)
        snprintf(buf, cap, "%s/stage-%d-replica-%d.%s", L->o->out, p % L->t->n_stages, p / L->t->n_stages, ext);
    else snprintf(buf, cap, "%s/stage-%d.%s", L->o->out, p, ext);
}

/* The argument vector of `pipetrain stage` for process p (strings in store). */
static int stage_argv(const launch *L, int p, int port, char **argv, char store[7][64])
{
    const cli_launch_opts *o = L->o;
    const topo *t = L->t;
    int n = 0, k = p % t->n_stages, server = p >= L->n_grid;
    argv[n++] = (char *)L->exe;
    argv[n++] = server ? "server" : "stage";
    argv[n++] = (char *)o->topology;
    argv[n++] = server ? "--server" : "--stage";
    snprintf(store[0], 64, "%d", server ? p - L->n_grid : k);
    argv[n++] = store[0];
    if (t->n_replicas > 1 && !server) {
        argv[n++] = "--replica";
        snprintf(store[6], 64, "%d", p / t->n_stages);
        argv[n++] = store[6];
    }
    argv[n++] = "--coordinator";
    if (port > 0) snprintf(store[1], 64, strchr(t->coordinator.host, ':') ? "[%s]:%d" : "%s:%d", t->coordinator.host, port);
    else snprintf(store[1], 64, strchr(t->coordinator.host, ':') ? "[%s]:PORT" : "%s:PORT", t->coordinator.host);
    argv[n++] = store[1];
    argv[n++] = "--run-id";
    snprintf(store[2], 64, "%llu", (unsigned long long)L->run_id);
    argv[n++] = store[2];
    argv[n++] = "--out";
    argv[n++] = (char *)o->out;
    if (o->data) { argv[n++] = "--data"; argv[n++] = (char *)o->data; }
    for (int i = 0; i < o->n_sets; i++) { argv[n++] = "--set"; argv[n++] = o->sets[i]; }
    argv[n++] = "--peer-timeout-ms";
    snprintf(store[3], 64, "%d", o->peer_timeout_ms);
    argv[n++] = store[3];
    argv[n++] = "--step-timeout-s";
    snprintf(store[4], 64, "%g", o->step_timeout_s);
    argv[n++] = store[4];
    if (L->insecure) argv[n++] = "--insecure";
    if (L->rejoin && L->ch[p].how == HOW_HAND && !server) {
        snprintf(store[5], 64, "%d", L->rejoin);
        argv[n++] = "--rejoin";
        argv[n++] = store[5];
    }
    argv[n] = NULL;
    return n;
}

/* Appends s to buf, single-quoted when it holds anything a shell would read. */
static void shell_quote(char *buf, size_t cap, const char *s)
{
    size_t len = strlen(buf);
    int plain = *s != 0;
    for (const char *p = s; *p; p++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=,@+[]", *p)) plain = 0;
    if (plain) { snprintf(buf + len, cap - len, "%s", s); return; }
    if (len + 1 < cap) buf[len++] = '\'';
    for (const char *p = s; *p && len + 5 < cap; p++) {
        if (*p == '\'') { memcpy(buf + len, "'\\''", 4); len += 4; }
        else buf[len++] = *p;
    }
    if (len + 1 < cap) buf[len++] = '\'';
    buf[len] = 0;
}

/* "cd CWD && exec BIN stage ..." for process k: what a shell on its host runs. */
static void stage_command(const launch *L, int k, int port, char *buf, size_t cap)
{
    char *argv[38 + 2 * 256], store[7][64];
    stage_argv(L, k, port, argv, store);
    buf[0] = 0;
    snprintf(buf, cap, "cd ");
    shell_quote(buf, cap, L->cwd);
    snprintf(buf + strlen(buf), cap - strlen(buf), " && exec");
    for (int i = 0; argv[i]; i++) {
        snprintf(buf + strlen(buf), cap - strlen(buf), " ");
        shell_quote(buf, cap, argv[i]);
    }
}

/* Forks process k: local children exec this binary, ssh children `ssh HOST
 * CMD`. Only async-signal-safe calls between fork and exec (other threads exist). */
static int spawn(launch *L, int k, int port)
{
    child *c = &L->ch[k];
    char *argv[38 + 2 * 256], store[7][64], cmd[16384];
    char *ssh_argv[] = { "ssh", "-o", "BatchMode=yes", (char *)proc_host(L, k), cmd, NULL };
    stage_argv(L, k, port, argv, store);
    if (c->how == HOW_SSH) stage_command(L, k, port, cmd, sizeof cmd);
    proc_file(L, k, "log", c->log, sizeof c->log);
    int fd = open(c->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "pipetrain run: %s: %s\n", c->log, strerror(errno));
        return -1;
    }
    pid_t parent = getpid(), pid = fork();
    if (pid < 0) {
        fprintf(stderr, "pipetrain run: fork: %s\n", strerror(errno));
        close(fd);
        return -1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        int nul = open("/dev/null", O_RDONLY);
        if (nul < 0 || dup2(nul, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) _exit(127);
        close_range(3, ~0u, 0);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        if (c->how == HOW_SSH) execvp("ssh", ssh_argv);
        else execv("/proc/self/exe", argv);
        _exit(127);
    }
    setpgid(pid, pid); /* also here, so a kill right after fork reaches the group */
    close(fd);
    c->pid = pid;
    c->running = 1;
    char pidfile[4200], text[32];
    proc_file(L, k, "pid", pidfile, sizeof pidfile);
    snprintf(text, sizeof text, "%d\n", (int)pid);
    FILE *f = fopen(pidfile, "w");
    if (f) { fputs(text, f); fclose(f); }
    return 0;
}

/* Records how child c ended (status from waitpid). */
static void ended(child *c, int status)
{
    c->running = 0;
    if (WIFSIGNALED(status)) {
        c->result = 1;
        c->code = -1;
        snprintf(c->why, sizeof c->why, "%s killed by signal %d (%s)", c->how == HOW_SSH ? "ssh" : "process",
                 WTERMSIG(status), strsignal(WTERMSIG(status)));
    } else {
        c->result = 2;
        c->clean = WEXITSTATUS(status) == 0;
        c->code = WEXITSTATUS(status);
        snprintf(c->why, sizeof c->why, "%s exited with status %d%s", c->how == HOW_SSH ? "ssh" : "process",
                 WEXITSTATUS(status), WEXITSTATUS(status) == 127 ? " (could not start it)" : "");
    }
}

static void reap(launch *L, int k, int block)
{
    child *c = &L->ch[k];
    int status;
    if (!c->running) return;
    pid_t r = waitpid(c->pid, &status, block ? 0 : WNOHANG);
    if (r == c->pid) ended(c, status);
    else if (r < 0 && errno == ECHILD) c->running = 0;
}

#define STOP_GRACE_S 2.0 /* a dropped process's time between SIGTERM and SIGKILL */

/* Children stopped after their drop (stop_dropped) that outlived the grace:
 * SIGKILL to the group, logged. */
static void finish_stopped(launch *L)
{
    char who[48];
    for (int k = 0; k < L->n_proc; k++) {
        child *c = &L->ch[k];
        if (!c->kill_at) continue;
        reap(L, k, 0);
        if (c->running && now_s() >= c->kill_at) {
            fprintf(stderr, "pipetrain run: %s (pid %d) did not exit within %.0f s of SIGTERM: SIGKILL\n",
                    proc_who(L, k, who, sizeof who), (int)c->pid, STOP_GRACE_S);
            kill(-c->pid, SIGKILL);
            reap(L, k, 1);
        }
        if (!c->running) {
            c->kill_at = 0;
            /* its end is the launcher's doing, not a failure to report */
            c->clean = 1;
            snprintf(c->why, sizeof c->why, "stopped after its drop");
        }
    }
}

/* The coordinator's stop callback (coord_stop_fn): process k's worker was
 * dropped. A child still running gets SIGTERM (and SIGCONT: a stopped one
 * handles it only once continued) now, SIGKILL STOP_GRACE_S later. */
static void stop_dropped(void *arg, int k, const char *why)
{
    launch *L = arg;
    child *c = &L->ch[k];
    char who[48];
    if (!c->pid) return;
    reap(L, k, 0);
    if (!c->running || c->kill_at) return;
    fprintf(stderr, "pipetrain run: stopping %s (pid %d): its worker was dropped: %s\n", proc_who(L, k, who, sizeof who),
            (int)c->pid, why);
    kill(-c->pid, SIGTERM);
    kill(-c->pid, SIGCONT);
    c->kill_at = now_s() + STOP_GRACE_S;
}

/* The coordinator's liveness callback (coord_alive_fn): k is a process index. */
static int alive(void *arg, int k, char *why)
{
    launch *L = arg;
    if (k < 0) {
        finish_stopped(L);
        if (!got_signal) return 0;
        snprintf(why, ERR_LEN, "interrupted by signal %d (%s)", (int)got_signal, strsignal(got_signal));
        return 1;
    }
    child *c = &L->ch[k];
    if (!c->pid) return 0;
    reap(L, k, 0);
    if (c->running) return 0;
    snprintf(why, ERR_LEN, "%s", c->why);
    return c->result;
}

/* Stops every child still running: SIGTERM to its group, up to grace_ms for
 * all to exit, then SIGKILL; reaps all. */
static void stop_children(launch *L, int grace_ms, int term)
{
    int n = L->n_proc;
    for (int k = 0; k < n; k++) reap(L, k, 0);
    if (term)
        for (int k = 0; k < n; k++)
            if (L->ch[k].running) {
                kill(-L->ch[k].pid, SIGTERM);
                kill(-L->ch[k].pid, SIGCONT); /* a stopped stage handles SIGTERM only once continued */
            }
    for (double end = now_s() + grace_ms / 1e3;;) {
        int left = 0;
        for (int k = 0; k < n; k++) { reap(L, k, 0); left += L->ch[k].running; }
        if (!left || now_s() >= end) break;
        sleep_ms(20);
    }
    for (int k = 0; k < n; k++)
        if (L->ch[k].running) {
            kill(-L->ch[k].pid, SIGKILL);
            reap(L, k, 1);
            snprintf(L->ch[k].why, sizeof L->ch[k].why, "killed after the run");
        }
}

/* Prints the last `lines` lines of process k's log to stderr. */
static void log_tail(const launch *L, int k, int lines)
{
    const child *c = &L->ch[k];
    if (!c->pid) return;
    FILE *f = fopen(c->log, "r");
    if (!f) return;
    fseek(f, 0, SEEK_END);
    long size = ftell(f), start = size > 8192 ? size - 8192 : 0;
    char buf[8193];
    fseek(f, start, SEEK_SET);
    size_t got = fread(buf, 1, 8192, f);
    fclose(f);
    buf[got] = 0;
    char *p = buf + got;
    int seen = 0;
    if (p > buf && p[-1] == '\n') p--;
    while (p > buf && seen < lines) if (*--p == '\n') seen++;
    if (*p == '\n') p++;
    fprintf(stderr, "--- last lines of %s:\n%s%s", c->log, got ? p : "(empty)\n", got && buf[got - 1] != '\n' ? "\n" : "");
}

/* Prints each process's command (--print-commands, or the by-hand ones). */
static void print_commands(const launch *L, int port, int only_hand, FILE *f)
{
    char cmd[16384], who[48];
    for (int k = 0; k < L->n_proc; k++) {
        if (only_hand && L->ch[k].how != HOW_HAND) continue;
        stage_command(L, k, port, cmd, sizeof cmd);
        proc_who(L, k, who, sizeof who);
        if (L->ch[k].how == HOW_SSH && !only_hand) {
            char q[16500] = "";
            shell_quote(q, sizeof q, cmd);
            fprintf(f, "# %s on %s (%s)\nssh -o BatchMode=yes %s %s\n", who, proc_host(L, k), how_name[L->ch[k].how],
                    proc_host(L, k), q);
        } else {
            fprintf(f, "# %s on %s (%s)\n%s\n", who, proc_host(L, k), how_name[L->ch[k].how], cmd);
        }
    }
    fflush(f);
}

static int setup(launch *L, const topo *t, const cli_launch_opts *o)
{
    memset(L, 0, sizeof *L);
    L->t = t;
    L->o = o;
    L->n_grid = t->n_stages * t->n_replicas;
    L->n_proc = L->n_grid + (t->sync_id == TOPO_SYNC_PS ? t->n_servers : 0);
    L->ch = xcalloc((size_t)L->n_proc, sizeof *L->ch);
    ssize_t n = readlink("/proc/self/exe", L->exe, sizeof L->exe - 1);
    if (n <= 0 || !getcwd(L->cwd, sizeof L->cwd)) {
        fprintf(stderr, "pipetrain run: cannot find this program or the current directory: %s\n", strerror(errno));
        return 1;
    }
    L->exe[n] = 0;
    L->run_id = o->run_id;
    while (!L->run_id && getrandom(&L->run_id, sizeof L->run_id, 0) != sizeof L->run_id) {}
    L->run_id &= 0x7fffffffffffffffull; /* printable as a positive number everywhere */
    if (!L->run_id) L->run_id = 1;
    /* not the run id: that one may be pinned (--run-id) and so repeat across runs */
    while (!L->writer && getrandom(&L->writer, sizeof L->writer, 0) != sizeof L->writer) {}
    /* PIPETRAIN_SSH_ALL=1 sends even local stages through ssh (a test can then
     * exercise the ssh path on one machine with a fake ssh first on PATH);
     * PIPETRAIN_BY_HAND=1 starts nothing, only prints every stage's command
     * (to start stages under a debugger, or to test the printed commands). */
    const char *all = getenv("PIPETRAIN_SSH_ALL"), *hand = getenv("PIPETRAIN_BY_HAND");
    int ssh = t->launch_id == TOPO_LAUNCH_SSH, ssh_all = ssh && all && !strcmp(all, "1");
    int by_hand = o->no_launch || (hand && !strcmp(hand, "1"));
    for (int k = 0; k < L->n_proc; k++)
        L->ch[k].how = by_hand ? HOW_HAND : ssh_all ? HOW_SSH : is_local(proc_host(L, k)) ? HOW_LOCAL
                     : ssh ? HOW_SSH : HOW_HAND;
    return 0;
}

/* Inputs a stage would refuse, refused here before anything starts (exit 2):
 * the data of the processes that read it (the first and the last stage of
 * every replica), when this launcher starts one here (a process on another
 * host reads its own copy). */
static int check_inputs(const launch *L, char *err)
{
    const topo *t = L->t;
    int P = t->n_stages, here = 0;
    for (int k = 0; k < L->n_grid; k++) here |= (k % P == 0 || k % P == P - 1) && L->ch[k].how == HOW_LOCAL;
    if (!here) return 0;
    if (!t->data.path)
        return seterr(err, "%s: data.path: no training data given (set it or pass --data FILE)", t->path), 2;
    if (data_check_file(t->data.path, t->data.format, t->model.vocab_size, t->data.val_fraction, t->model.seq_len, err))
        return 2;
    return 0;
}

/* After the coordinator's verdict: children wait (success) or are stopped. */
static int finish(launch *L, coordinator *c, int rc, const char *err)
{
    int n = L->n_proc;
    char who[48];
    if (rc == 0) {
        stop_children(L, 10000, 0);
        for (int k = 0; k < n; k++)
            if (L->ch[k].pid && !L->ch[k].clean)
                fprintf(stderr, "pipetrain run: warning: %s %s\n", proc_who(L, k, who, sizeof who), L->ch[k].why);
        return 0;
    }
    fprintf(stderr, "pipetrain run: %s\n", err);
    stop_children(L, 2000, 1);
    int k = c ? coord_failed_stage(c) : -1; /* a process index */
    if (k >= 0 && k < n) log_tail(L, k, 8);
    /* a stage that refused its input (exit 2: data file, topology) makes the run's status 2 too */
    if (k >= 0 && k < n && L->ch[k].pid && !L->ch[k].running && L->ch[k].code == 2) return 2;
    return rc;
}

/* Starts the processes this launcher starts, prints the others' commands,
 * and runs the coordinator. Returns its status; the message is in err. */
static int start_and_run(launch *L, coordinator *c, int hand, int join_s, char *err)
{
    int port = coord_port(c);
    char who[48];
    for (int k = 0; k < L->n_proc; k++)
        if (L->ch[k].how != HOW_HAND && spawn(L, k, port)) {
            snprintf(err, ERR_LEN, "could not start %s", proc_who(L, k, who, sizeof who));
            return 1;
        }
    if (hand) {
        if (L->t->n_replicas > 1 || L->n_proc > L->n_grid)
            fprintf(stderr, "pipetrain run: start %d process%s by hand (within %d s):\n", hand, hand > 1 ? "es" : "",
                    join_s);
        else
            fprintf(stderr, "pipetrain run: start %d stage%s by hand (within %d s):\n", hand, hand > 1 ? "s" : "", join_s);
        print_commands(L, port, 1, stderr);
    }
    return coord_run(c, err);
}

static void fill_coord_opts(coord_opts *co, launch *L, int hand)
{
    coord_opts_init(co);
    co->out_dir = L->o->out;
    co->run_id = L->run_id;
    co->peer_timeout_ms = L->o->peer_timeout_ms;
    co->step_timeout_ms = (int)(L->o->step_timeout_s * 1e3);
    co->alive = alive;
    co->stop = stop_dropped;
    co->alive_arg = L;
    co->trace = L->o->trace;
    co->http = L->o->http;
    if (hand) co->join_timeout_ms = 300000; /* people type slower than fork */
}

/* One attempt: a coordinator starting at first, the children, the verdict. */
static int attempt(launch *L, long first, int append, int restarts, int hand, int *restartable, char *err)
{
    coord_opts co;
    fill_coord_opts(&co, L, hand);
    co.first_step = first;
    co.append_metrics = append;
    co.restarts = restarts;
    co.writer = L->writer;
    for (int k = 0; k < L->n_proc; k++) {
        int how = L->ch[k].how;
        memset(&L->ch[k], 0, sizeof L->ch[k]);
        L->ch[k].how = how;
    }
    coordinator *c = coord_new(L->t, &co, err);
    int rc = c ? start_and_run(L, c, hand, co.join_timeout_ms / 1000, err) : 1;
    rc = finish(L, c, rc, err);
    /* a stage to blame, which did not refuse its input, and no interrupt */
    *restartable = rc == 1 && c && coord_failed_stage(c) >= 0 && !got_signal;
    coord_free(c);
    return rc;
}

/* Public so that the launcher and (by hand) each stage apply the same rule. */
int cli_insecure_check(const char *cmd, const topo *t, int insecure)
{
    /* the launcher's --insecure secret, inherited by the stages it starts, is not a secret */
    if (proto_secret_set(t) || topo_all_loopback(t)) {
        if (insecure) fprintf(stderr, "pipetrain %s: note: --insecure has no effect: %s\n", cmd,
                              topo_all_loopback(t) ? "every process is on loopback" : "a shared secret is configured");
        return 0;
    }
    if (!insecure) {
        fprintf(stderr, "pipetrain %s: %s: a shared secret is required when any process is off loopback: name a "
                        "secret_file (readable only by its owner) or set %s, or pass --insecure to run without "
                        "authentication\n", cmd, t->path, PROTO_SECRET_ENV);
        return 2;
    }
    if (t->encrypt == 1) { /* sealing under a well-known key would keep nothing secret */
        fprintf(stderr, "pipetrain %s: %s: encrypt: true needs a shared secret (a secret_file readable only by its "
                        "owner, or %s); --insecure has none to key the encryption with\n", cmd, t->path,
                PROTO_SECRET_ENV);
        return 2;
    }
    fprintf(stderr, "pipetrain %s: WARNING: --insecure: no shared secret, processes authenticate with a "
                    "well-known one: anyone who can reach these ports can join the run or inject messages; "
                    "nothing is encrypted\n", cmd);
    setenv(PROTO_SECRET_ENV, PROTO_INSECURE_SECRET, 1);
    return 0;
}

int cli_secret_check(const char *cmd, const topo *t)
{
    uint8_t buf[256];
    size_t len;
    char nerr[NET_ERR_LEN];
    if (!t->secret_file && !getenv(PROTO_SECRET_ENV)) return 0;
    int rc = net_secret_load(t->secret_file, PROTO_SECRET_ENV, buf, sizeof buf, &len, nerr);
    explicit_bzero(buf, sizeof buf);
    if (rc == NET_OK) return 0;
    fprintf(stderr, "pipetrain %s: %s: %s%s\n", cmd, t->path, t->secret_file ? "secret_file: " : "", /* nerr names $ENV */
            nerr);
    return 2;
}

int cli_launch(const topo *t, const cli_launch_opts *o)
{
    cli_restart_opts r = { 0, 0, 0 };
    return cli_launch_restart(t, o, &r);
}

int cli_launch_restart(const topo *t, const cli_launch_opts *o, const cli_restart_opts *r)
{
    launch L;
    char err[ERR_LEN] = "";
    int rc = setup(&L, t, o), hand = 0, restartable = 0;
    if (rc) { free(L.ch); return rc; }
    L.insecure = r->insecure;
    L.rejoin = r->max_restarts;
    if (o->print_commands) {
        if (t->coordinator.port == 0)
            fprintf(stderr, "pipetrain run: coordinator.port is 0, so the port is chosen at run time (PORT below); "
                            "set it to start stages by hand\n");
        print_commands(&L, t->coordinator.port, 0, stdout);
        free(L.ch);
        return 0;
    }
    if ((rc = check_inputs(&L, err))) {
        fprintf(stderr, "pipetrain run: %s\n", err);
        free(L.ch);
        return rc;
    }
    if (run_mkdirs(o->out, err)) {
        fprintf(stderr, "pipetrain run: %s\n", err);
        free(L.ch);
        return 1;
    }
    for (int k = 0; k < L.n_proc; k++) hand += L.ch[k].how == HOW_HAND;
    got_signal = 0;
    struct sigaction sa = { .sa_handler = on_signal }, old_int, old_term;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    char origin[65] = ""; /* the checkpoint --resume started from: restarts may resume it too */
    for (int n = 0;; n++) {
        long first = 0;
        run_start_opts so = { r->resume && n == 0, n, r->max_restarts, err, "pipetrain run", L.writer, origin };
        char cause[ERR_LEN];
        snprintf(cause, sizeof cause, "%s", err); /* the last attempt's failure, for a restart */
        so.cause = cause;
        if ((rc = run_start_point(t, o->out, &so, &first, err))) {
            fprintf(stderr, "pipetrain run: %s\n", err);
            break;
        }
        if (first == t->train.steps) {
            fprintf(stderr, "pipetrain run: the run is complete (checkpoint at step %ld of %d): nothing to do\n",
                    first, t->train.steps);
            break;
        }
        rc = attempt(&L, first, r->resume || n > 0, n, hand, &restartable, err);
        if (!rc || !restartable || n >= r->max_restarts) break;
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    free(L.ch);
    return rc;
}
