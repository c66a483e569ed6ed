/* net_fixture.h — what the transport suites share: a log sink the tests can
 * search, node configs with short timeouts, a connected pair of nodes, seeded
 * payloads, a helper peer process and a fake peer that speaks the protocol by
 * hand. Header-only, static inline. */
#ifndef TESTS_NET_FIXTURE_H
#define TESTS_NET_FIXTURE_H

#include <CUnit/Basic.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
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
#include "net/net_wire.h"
#include "tests/net_raw.h"

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
    /* make asan (PIPETRAIN_ASAN) on a loaded machine: a whole process was
     * seen silent for 4 to 14 s (test_coll's ring, every rank at once), and a
     * peer declared dead then fails the suites that do not test deaths (those
     * set dead_ms themselves) */
    c->dead_ms = getenv("PIPETRAIN_ASAN") ? 20000 : 3000;
    c->connect_deadline_ms = 5000;
    c->log = log_cb;
    /* the suites run again with every frame sealed (tests/run.sh) */
    const char *e = getenv("PIPETRAIN_TEST_ENCRYPT");
    c->encrypt = e && *e && strcmp(e, "0") != 0;
    if (c->encrypt) c->aead = atoi(e) == NET_AEAD_CHACHA20 ? NET_AEAD_CHACHA20 : 0;
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

/* --- a fake peer speaking the protocol by hand over a blocking socket ------- */
struct fake {
    int fd;
    net_peer_id id;
    uint8_t mine[NET_HELLO_LEN], theirs[NET_HELLO_LEN], proof[NET_PROOF_LEN];
};

/* Connects as f->id. With replay set, sends f->mine and f->proof as recorded
 * instead of fresh ones. Returns 0 once both proofs went out and the node's
 * proof verified; the node may still refuse ours (see expect_error). */
static inline int fake_handshake(struct fake *f, int port, const char *secret, int replay)
{
    net_hdr h;
    uint8_t buf[512];
    char err[NET_ERR_LEN];
    f->fd = fake_open(port);
    if (f->fd < 0) return -1;
    if (!replay) {
        net_hello me = { .version = NET_VERSION, .id = f->id, .run_id = 7 };
        memset(me.topo_hash, 0xAB, NET_HASH_LEN);
        net_random(me.nonce, NET_NONCE_LEN);
        net_hello_encode(f->mine, &me);
    }
    put_frame(f->fd, NET_T_HELLO, f->id, (net_key){ 0 }, NET_HELLO_LEN,
              net_crc32c(0, f->mine, NET_HELLO_LEN), f->mine, NET_HELLO_LEN);
    if (get_frame(f->fd, &h, buf, sizeof buf) < 0 || h.type != NET_T_HELLO) return -1;
    memcpy(f->theirs, buf, NET_HELLO_LEN);
    if (!replay)
        net_auth_proof(f->proof, (const uint8_t *)secret, strlen(secret), f->mine, f->theirs);
    put_frame(f->fd, NET_T_AUTH, f->id, (net_key){ 0 }, NET_PROOF_LEN,
              net_crc32c(0, f->proof, NET_PROOF_LEN), f->proof, NET_PROOF_LEN);
    if (get_frame(f->fd, &h, buf, sizeof buf) < 0 || h.type != NET_T_AUTH) return -1;
    return net_auth_verify(buf, h.len, (const uint8_t *)SECRET, strlen(SECRET), f->theirs,
                           f->mine, err) == NET_OK ? 0 : -1;
}

/* Reads frames until an error frame containing what arrives, or EOF. 1 if found. */
static inline int expect_error(int fd, const char *what)
{
    net_hdr h;
    uint8_t buf[2048];
    while (get_frame(fd, &h, buf, sizeof buf) == 0)
        if (h.type == NET_T_ERROR) {
            if (!strstr((char *)buf, what)) fprintf(stderr, "error frame: %s\n", buf);
            return strstr((char *)buf, what) != NULL;
        }
    return 0;
}

static inline struct net_node *listener(net_peer_id id)
{
    net_config c;
    cfg_for(&c, id);
    return node_or_die(&c);
}

/* A node and an authenticated fake stage 5 connected to it. */
static inline struct net_node *with_fake(struct fake *f)
{
    char err[NET_ERR_LEN];
    struct net_node *a = listener(net_stage_id(0, 0));
    f->id = net_stage_id(5, 0);
    ST(fake_handshake(f, net_node_port(a), SECRET, 0), 0);
    ST(net_wait_peer(a, f->id, 5000, err), NET_OK);
    return a;
}

#endif
