/* net_fixture.h — what the transport suites share: a log sink the tests can
 * search, node configs with short timeouts, a connected pair of nodes, seeded
 * payloads and a helper peer process. Header-only, static inline. */
#ifndef TESTS_NET_FIXTURE_H
#define TESTS_NET_FIXTURE_H

#include <CUnit/Basic.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "net/net.h"

static const char SECRET[] = "test-secret-0123456789abcdef";
#define ST(a, b) CU_ASSERT_EQUAL_FATAL((a), (b))

/* --- log capture ----------------------------------------------------------- */
static pthread_mutex_t log_lk = PTHREAD_MUTEX_INITIALIZER;
static char logbuf[1 << 16];
static size_t loglen;

static inline void log_cb(void *arg, const char *line)
{
    (void)arg;
    pthread_mutex_lock(&log_lk);
    size_t n = strlen(line);
    if (loglen + n + 2 < sizeof logbuf) {
        memcpy(logbuf + loglen, line, n);
        loglen += n;
        logbuf[loglen++] = '\n';
        logbuf[loglen] = 0;
    }
    pthread_mutex_unlock(&log_lk);
}
static inline void log_clear(void)
{
    pthread_mutex_lock(&log_lk);
    loglen = 0;
    logbuf[0] = 0;
    pthread_mutex_unlock(&log_lk);
}
static inline int log_has(const char *s)
{
    pthread_mutex_lock(&log_lk);
    int r = strstr(logbuf, s) != NULL;
    pthread_mutex_unlock(&log_lk);
    return r;
}

/* --- nodes ----------------------------------------------------------------- */
static inline void cfg_for(net_config *c, net_peer_id id)
{
    net_config_init(c);
    c->self = id;
    c->run_id = 7;
    memset(c->topo_hash, 0xAB, NET_HASH_LEN);
    c->secret = (const uint8_t *)SECRET;
    c->secret_len = strlen(SECRET);
    c->listen_host = "127.0.0.1";
    c->heartbeat_ms = 100;
    c->dead_ms = 3000;
    c->connect_deadline_ms = 5000;
    c->log = log_cb;
}

static inline struct net_node *node_or_die(const net_config *c)
{
    char err[NET_ERR_LEN];
    struct net_node *n = net_node_new(c, err);
    if (!n) fprintf(stderr, "net_node_new: %s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(n);
    return n;
}

/* a = stage 0 (listens), b = stage 1 (connects to a); both ready. */
static inline void pair_cfg(struct net_node **a, struct net_node **b, const net_config *ca,
                     const net_config *cb)
{
    char err[NET_ERR_LEN];
    *a = node_or_die(ca);
    *b = node_or_die(cb);
    ST(net_connect(*b, ca->self, "127.0.0.1", net_node_port(*a), err), NET_OK);
    int st = net_wait_peer(*b, ca->self, 10000, err);
    if (st != NET_OK) fprintf(stderr, "wait_peer: %s\n", err);
    ST(st, NET_OK);
    ST(net_wait_peer(*a, cb->self, 10000, err), NET_OK);
}

static inline void pair(struct net_node **a, struct net_node **b)
{
    net_config ca, cb;
    cfg_for(&ca, net_stage_id(0, 0));
    cfg_for(&cb, net_stage_id(1, 0));
    pair_cfg(a, b, &ca, &cb);
}

static inline void fill(uint8_t *p, size_t n, uint32_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        p[i] = (uint8_t)s;
    }
}

/* Starts tests/helpers/net_peer (beside this binary) as stage `stage`, connecting
 * to 127.0.0.1:port; *ready is 1 once it reported "ready". Returns its pid. */
static inline pid_t spawn_peer(int port, int stage, int *ready)
{
    char exe[PATH_MAX], path[PATH_MAX + 16], ps[16], ss[16];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k <= 0) return -1;
    exe[k] = 0;
    *strrchr(exe, '/') = 0;
    snprintf(path, sizeof path, "%s/net_peer", exe);
    snprintf(ps, sizeof ps, "%d", port);
    snprintf(ss, sizeof ss, "%d", stage);
    int pfd[2];
    if (pipe(pfd) < 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        setenv("NET_TEST_SECRET", SECRET, 1);
        execl(path, path, "127.0.0.1", ps, ss, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    char line[16] = "";
    size_t got = 0;
    while (got < 6) {
        ssize_t r = read(pfd[0], line + got, sizeof line - 1 - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    *ready = !strncmp(line, "ready", 5);
    if (!*ready) fprintf(stderr, "net_peer did not report ready (got '%s')\n", line);
    close(pfd[0]);
    return pid;
}

#endif
