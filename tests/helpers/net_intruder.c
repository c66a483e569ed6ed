/* net_intruder.c — an attacker on the same machine, for the security tests
 * (issue #17): speaks the wire format by hand (net/net_wire.h) against a
 * running process. Its hellos copy the run id and topology hash from the
 * server's own hello, as anyone who can connect can.
 *
 *   net_intruder auth HOST PORT STAGE   authenticate as STAGE with the secret in
 *                                       $NET_TEST_SECRET, print what came back, close
 *   net_intruder flood HOST PORT N [RATE]  N hellos with fresh identities and no
 *                                       proof (at most RATE a second)
 *   net_intruder drip HOST PORT N SECS  N connections sending a header one byte a
 *                                       second for SECS s; prints how many are
 *                                       open once all were dialled (flushed: a
 *                                       test waits for that line), then how many
 *                                       the server closed and after how long at most
 * Exit 0 when the attack could be carried out (not when it succeeded). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "net/net.h"
#include "net/net_wire.h"
#include "tests/net_raw.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int dial(const char *host, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    inet_pton(AF_INET, host, &sa.sin_addr);
    struct timeval tv = { 3, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int frame(int fd, uint16_t type, net_peer_id from, const uint8_t *payload, uint32_t len)
{
    return put_frame(fd, type, from, (net_key){ 0 }, len, net_crc32c(0, payload, len), payload, len);
}

/* Connects, reads the server's hello and answers with one claiming `id`.
 * Returns the socket, the server's hello bytes in theirs and ours in mine. */
static int hello(const char *host, int port, net_peer_id id, uint8_t theirs[NET_HELLO_LEN],
                 uint8_t mine[NET_HELLO_LEN])
{
    int fd = dial(host, port);
    if (fd < 0) return -1;
    net_hdr h;
    uint8_t buf[512];
    net_hello srv, me;
    char err[NET_ERR_LEN];
    if (get_frame(fd, &h, buf, sizeof buf) < 0 || h.type != NET_T_HELLO ||
        net_hello_parse(buf, h.len, &srv, err) != NET_OK) {
        close(fd);
        return -1;
    }
    memcpy(theirs, buf, NET_HELLO_LEN);
    me = srv;
    me.id = id;
    net_random(me.nonce, NET_NONCE_LEN);
    net_hello_encode(mine, &me);
    if (frame(fd, NET_T_HELLO, id, mine, NET_HELLO_LEN) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int do_auth(const char *host, int port, int stage)
{
    uint8_t secret[256], theirs[NET_HELLO_LEN], mine[NET_HELLO_LEN], proof[NET_PROOF_LEN], buf[2048];
    size_t slen;
    char err[NET_ERR_LEN];
    if (net_secret_load(NULL, "NET_TEST_SECRET", secret, sizeof secret, &slen, err) != NET_OK) {
        fprintf(stderr, "net_intruder: %s\n", err);
        return 2;
    }
    net_peer_id id = net_stage_id((uint16_t)stage, 0);
    int fd = hello(host, port, id, theirs, mine);
    if (fd < 0) { fprintf(stderr, "net_intruder: no hello from %s:%d\n", host, port); return 1; }
    net_auth_proof(proof, secret, slen, mine, theirs);
    frame(fd, NET_T_AUTH, id, proof, NET_PROOF_LEN);
    net_hdr h;
    while (get_frame(fd, &h, buf, sizeof buf) == 0) {
        printf("frame type %u: %s\n", h.type, h.type == NET_T_ERROR ? (char *)buf : "");
        if (h.type != NET_T_HELLO) break;
    }
    fflush(stdout);
    close(fd); /* and go away: the server must not fail its run over us */
    return 0;
}

static int do_flood(const char *host, int port, long n, double rate)
{
    uint8_t theirs[NET_HELLO_LEN], mine[NET_HELLO_LEN];
    long done = 0;
    double t0 = now();
    for (long i = 0; i < n; i++) {
        double ahead = rate > 0 ? t0 + i / rate - now() : 0;
        if (ahead > 0) usleep((useconds_t)(ahead * 1e6));
        net_peer_id id = net_stage_id((uint16_t)(i % 60000), (uint16_t)(1 + i / 60000));
        int fd = hello(host, port, id, theirs, mine);
        if (fd < 0) continue;
        done++;
        close(fd);
    }
    printf("flood: %ld of %ld hellos delivered in %.1f s\n", done, n, now() - t0);
    return done ? 0 : 1;
}

static int do_drip(const char *host, int port, int n, int secs)
{
    int fd[1024];
    double opened[1024], closed[1024];
    if (n > 1024) n = 1024;
    uint8_t hdr[NET_HDR_LEN];
    net_hdr h = { .version = NET_VERSION, .type = NET_T_HELLO, .len = NET_HELLO_LEN };
    net_hdr_encode(hdr, &h);
    for (int i = 0; i < n; i++) {
        fd[i] = dial(host, port);
        opened[i] = now();
        closed[i] = fd[i] < 0 ? -2 : -1; /* -2: never opened */
        if (fd[i] >= 0) fcntl(fd[i], F_SETFL, O_NONBLOCK);
    }
    int dialled = 0;
    for (int i = 0; i < n; i++) dialled += fd[i] >= 0;
    printf("drip: %d of %d connections open\n", dialled, n);
    fflush(stdout);
    double end = now() + secs, longest = 0;
    for (int tick = 0; now() < end; tick++) {
        for (int i = 0; i < n; i++) {
            if (closed[i] >= 0) continue;
            uint8_t b[4096];
            ssize_t r;
            while ((r = recv(fd[i], b, sizeof b, 0)) > 0) {}
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) ||
                send(fd[i], hdr + tick % NET_HDR_LEN, 1, MSG_NOSIGNAL) < 0) {
                closed[i] = now() - opened[i];
                if (closed[i] > longest) longest = closed[i];
                close(fd[i]);
            }
        }
        usleep(1000000);
    }
    int k = 0, open_ = 0;
    for (int i = 0; i < n; i++) {
        k += closed[i] >= 0;
        open_ += closed[i] != -2;
        if (closed[i] == -1) close(fd[i]);
    }
    printf("drip: %d of %d connections closed by the server, the longest held %.1f s\n", k, open_, longest);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 5 && !strcmp(argv[1], "auth")) return do_auth(argv[2], atoi(argv[3]), atoi(argv[4]));
    if (argc >= 5 && !strcmp(argv[1], "flood"))
        return do_flood(argv[2], atoi(argv[3]), atol(argv[4]), argc > 5 ? atof(argv[5]) : 0);
    if (argc >= 6 && !strcmp(argv[1], "drip"))
        return do_drip(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    fprintf(stderr, "usage: net_intruder auth HOST PORT STAGE | flood HOST PORT N [RATE] | drip HOST PORT N SECS\n");
    return 2;
}
