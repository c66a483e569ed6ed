/* flip_proxy.c — issue #6 fault matrix: bytes flipped in flight are detected.
 * A receiving node R (the coordinator's role) listens on loopback; a TCP proxy
 * thread sits between it and a sending node S (a new stage id per trial, since
 * a peer that failed stays dead for a node's lifetime). Per trial, once both
 * ends are authenticated, the proxy is armed to flip one bit of the next
 * frame S sends — in the payload (and every 10th trial in the 48-byte header)
 * — and S sends SIZE bytes. The flip is detected when R's receive fails (a
 * checksum error, the connection dropped); it goes undetected when R gets
 * NET_OK. A control trial first sends through the proxy without a flip and
 * must arrive intact (so the test can fail). Prints one summary line; exit 0
 * only when the control passed and every flip was detected.
 * With "sealed" both nodes encrypt (net_config.encrypt): flips land in the
 * 64-byte sealed header, the payload or its tag, and a flip counts as detected
 * only when the receive fails with an authentication failure (nothing is
 * delivered, and it is not some other error).
 * usage: flip_proxy [TRIALS [SIZE [sealed]]]   (defaults 1000, 4096, clear) */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/net.h"

#include "net/net_wire.h"

static int sealed;     /* argv[3] "sealed": both nodes encrypt */
static long HDR = NET_HDR_LEN, TAIL = 0; /* frame header and trailer on the wire */

static int lfd, r_port;
static _Atomic long flip_at = -1; /* offset in the client->server stream after arming; -1: none */
static _Atomic int flip_mask;
static _Atomic int stop;

static int listen_any(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 8) ||
        getsockname(fd, (struct sockaddr *)&a, &len))
        return -1;
    *port = ntohs(a.sin_port);
    return fd;
}

/* The relay writes what it read at once: without TCP_NODELAY a frame's last
 * small write waited for the ACK of the one before (Nagle against delayed
 * ACKs), 40 ms a trial. */
static void nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) { if (fd >= 0) close(fd); return -1; }
    nodelay(fd);
    return fd;
}

/* Forwards one connection both ways until either side closes; flips the
 * armed byte of the client->server stream. */
static void relay(int c, int s)
{
    char buf[65536];
    long seen = 0; /* client->server bytes since arming */
    int armed_before = 0;
    for (;;) {
        struct pollfd p[2] = { { c, POLLIN, 0 }, { s, POLLIN, 0 } };
        if (poll(p, 2, 200) < 0 || stop) return;
        for (int i = 0; i < 2; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t n = read(p[i].fd, buf, sizeof buf);
            if (n <= 0) return;
            long at = atomic_load(&flip_at);
            if (i == 0 && at >= 0) {
                if (!armed_before) { seen = 0; armed_before = 1; }
                if (at >= seen && at < seen + n) {
                    buf[at - seen] ^= (char)atomic_load(&flip_mask);
                    atomic_store(&flip_at, -1);
                    armed_before = 0;
                }
                seen += n;
            }
            for (ssize_t off = 0; off < n;) {
                ssize_t w = write(p[1 - i].fd, buf + off, (size_t)(n - off));
                if (w <= 0) return;
                off += w;
            }
        }
    }
}

static void *proxy(void *arg)
{
    (void)arg;
    while (!stop) {
        struct pollfd p = { lfd, POLLIN, 0 };
        if (poll(&p, 1, 200) <= 0) continue;
        int c = accept(lfd, NULL, NULL);
        if (c < 0) continue;
        nodelay(c);
        int s = connect_to(r_port);
        if (s >= 0) relay(c, s);
        close(c);
        if (s >= 0) close(s);
    }
    return NULL;
}

static void config(net_config *cfg, net_peer_id self, const uint8_t *secret)
{
    net_config_init(cfg);
    cfg->self = self;
    cfg->run_id = 6;
    memset(cfg->topo_hash, 0x66, NET_HASH_LEN);
    cfg->secret = secret;
    cfg->secret_len = 32;
    cfg->heartbeat_ms = 60000; /* nothing but the frame under test on the wire */
    cfg->dead_ms = 120000;
    cfg->connect_deadline_ms = 5000;
    cfg->linger_ms = 0;
    cfg->log = NULL;
    cfg->encrypt = sealed;
}

static void quiet(void *arg, const char *line) { (void)arg; (void)line; }

/* One trial: 1 detected, 0 undetected, -1 could not run. */
static int trial(struct net_node *r, int id, int proxy_port, const uint8_t *secret, uint8_t *msg, uint8_t *got,
                 uint64_t size, long at, char *why)
{
    net_config cfg;
    char err[NET_ERR_LEN];
    config(&cfg, net_stage_id((uint16_t)id, 0), secret);
    cfg.log = quiet;
    struct net_node *s = net_node_new(&cfg, err);
    int rc = -1;
    if (!s) { snprintf(why, NET_ERR_LEN, "sender: %.400s", err); return -1; }
    net_peer_id rid = net_coord_id(), sid = net_stage_id((uint16_t)id, 0);
    if (net_connect(s, rid, "127.0.0.1", proxy_port, err) || net_wait_peer(s, rid, 5000, err) != NET_OK ||
        net_wait_peer(r, sid, 5000, err) != NET_OK) {
        snprintf(why, NET_ERR_LEN, "handshake: %.400s", err);
        goto done;
    }
    for (uint64_t i = 0; i < size; i++) msg[i] = (uint8_t)(i * 131 + (uint64_t)id);
    atomic_store(&flip_mask, 1 << (id % 8));
    atomic_store(&flip_at, at);
    net_key k = { NET_TYPE_USER, (uint64_t)id, 0, 0 };
    struct net_op *op = NULL;
    if (net_send(s, rid, k, msg, size, 5000, &op, err) != NET_OK) { snprintf(why, NET_ERR_LEN, "send: %.400s", err); goto done; }
    uint64_t len = 0;
    int st = net_recv(r, sid, k, got, size, &len, 5000, err);
    net_op_free(op);
    if (st == NET_TIMEOUT) { snprintf(why, NET_ERR_LEN, "no verdict within 5 s"); goto done; }
    rc = st != NET_OK;
    if (rc && sealed && !strstr(err, "authentication failed")) {
        snprintf(why, NET_ERR_LEN, "failed, but not as an authentication failure: %.400s", err);
        rc = 0;
    }
    if (st == NET_OK) snprintf(why, NET_ERR_LEN, "received NET_OK (%s)", len == size && !memcmp(msg, got, size) ? "intact: the flip missed" : "corrupted data");
done:
    atomic_store(&flip_at, -1);
    net_node_free(s);
    return rc;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    uint64_t size = argc > 2 ? strtoull(argv[2], NULL, 10) : 4096;
    sealed = argc > 3 && !strcmp(argv[3], "sealed");
    if (sealed) {
        HDR = NET_SEALED_HDR_LEN;
        TAIL = NET_SEAL_TAG;
    }
    if (n < 1 || n > 60000 || size < 1 || size > (1u << 24) || (argc > 3 && !sealed)) {
        fprintf(stderr, "usage: flip_proxy [TRIALS (1..60000) [SIZE [sealed]]]\n");
        return 2;
    }
    uint8_t secret[32];
    for (int i = 0; i < 32; i++) secret[i] = (uint8_t)(i * 7 + 1);
    net_config cfg;
    char err[NET_ERR_LEN];
    config(&cfg, net_coord_id(), secret);
    cfg.listen_host = "127.0.0.1";
    cfg.log = quiet;
    struct net_node *r = net_node_new(&cfg, err);
    int pport;
    if (!r || (lfd = listen_any(&pport)) < 0) { fprintf(stderr, "flip_proxy: set-up: %s\n", r ? "proxy socket" : err); return 1; }
    r_port = net_node_port(r);
    pthread_t th;
    pthread_create(&th, NULL, proxy, NULL);
    uint8_t *msg = malloc(size), *got = malloc(size);
    int detected = 0, missed = 0, broken = 0, header = 0;
    srand(4242);
    char cwhy[NET_ERR_LEN] = "";
    int control = trial(r, 60001, pport, secret, msg, got, size, -1, cwhy) == 0 && strstr(cwhy, "intact");
    if (!control) fprintf(stderr, "flip_proxy: control trial (no flip) did not arrive intact: %s\n", cwhy);
    for (int i = 0; i < n && control; i++) {
        int in_header = i % 10 == 9;
        long at = in_header ? rand() % HDR : HDR + (long)((uint64_t)rand() % (size + (uint64_t)TAIL));
        char why[NET_ERR_LEN] = "";
        int rc = trial(r, i + 1, pport, secret, msg, got, size, at, why);
        if (rc == 1) { detected++; header += in_header; }
        else {
            if (rc == 0) missed++; else broken++;
            fprintf(stderr, "flip_proxy: trial %d (byte %ld of the frame): %s\n", i + 1, at, why);
        }
    }
    stop = 1;
    pthread_join(th, NULL);
    net_node_free(r);
    close(lfd);
    free(msg);
    free(got);
    printf("%scontrol %s; flips %d: detected %d (%d in the header, %d in the payload), undetected %d, trials that could not run %d\n",
           sealed ? "sealed: " : "", control ? "intact" : "FAILED", n, detected, header, detected - header, missed, broken);
    return control && detected == n ? 0 : 1;
}
