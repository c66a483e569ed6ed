/* bench_allreduce_hosts.c — `pipetrain bench allreduce --rank r --members
 * h0:p0,h1:p1,...`: one rank of the ring per process, each on its own host
 * (tests/netns/bench_dp.sh runs one per network namespace, every link shaped
 * by tbf). Rank r listens on members[r] (its net_node on port p, a plain TCP
 * socket on p + 1), connects to rank r + 1 and measures, per size, in trials
 * that alternate which goes first:
 *   - ring: coll_allreduce_sum of the size; bus bandwidth = bytes x 2(R-1)/R /
 *     time (what each rank pushes through its link per second);
 *   - plain: the same bytes x 2(R-1)/R sent to rank r + 1 and received from
 *     rank r - 1 over one plain blocking socket each, all links busy at once,
 *     no checksums, no adds (the shaped link's TCP throughput: the baseline);
 *   - latency: a tiny all-reduce (R floats) divided by its 2(R-1) ring steps,
 *     the per-step latency the simulator's --allreduce-latency means.
 * Each trial starts after a one-float all-reduce (a barrier). Prints one JSON
 * object per size on stdout (rank 0's clock; every rank prints its own).
 * The loopback mode (bench_allreduce.c) does not use this file. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/base.h"
#include "bench/bench_allreduce.h"
#include "bench/bench_net.h"
#include "coll/coll.h"
#include "net/net.h"

#define HMAXR 8
#define HMAXS 16
#define HMAX_TRIALS 50
#define IO_CHUNK (1u << 20)
#define WAIT_MS 30000

static const char hsecret[] = "bench-allreduce-hosts-secret-0123";

typedef struct { char host[64]; int port; } member;

static int parse_members(const char *s, member *m, int cap)
{
    int n = 0;
    while (*s) {
        const char *c = strchr(s, ':'), *e = strchr(s, ',');
        if (!e) e = s + strlen(s);
        if (n == cap || !c || c > e || c == s || (size_t)(c - s) >= sizeof m[n].host) return -1;
        memcpy(m[n].host, s, (size_t)(c - s));
        m[n].host[c - s] = 0;
        char *end;
        long p = strtol(c + 1, &end, 10);
        if (end != e || p < 1 || p > 65534) return -1;
        m[n++].port = (int)p;
        s = *e ? e + 1 : e;
    }
    return n;
}

/* --- plain sockets: one to rank + 1, one from rank - 1 ------------------------ */

static int plain_listen(const member *me)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)(me->port + 1)) };
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0) goto fail;
    if (inet_pton(AF_INET, me->host, &a.sin_addr) != 1) {
        errno = EINVAL;
        goto fail;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 4)) goto fail;
    return fd;
fail:
    if (fd >= 0) close(fd);
    return -1;
}

/* Connects to m's plain port, retrying for WAIT_MS (the peer may start later). */
static int plain_connect(const member *m)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)(m->port + 1)) };
    if (inet_pton(AF_INET, m->host, &a.sin_addr) != 1) return -1;
    double t0 = base_now();
    while (base_now() - t0 < WAIT_MS / 1e3) {
        int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        if (fd < 0) return -1;
        if (!connect(fd, (struct sockaddr *)&a, sizeof a)) {
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            return fd;
        }
        close(fd);
        usleep(50000);
    }
    return -1;
}

struct io { int fd, send; uint8_t *buf; size_t size, bytes; int rc; };

static void *io_main(void *arg)
{
    struct io *e = arg;
    for (size_t done = 0; done < e->bytes && e->rc == 0;) {
        size_t l = e->bytes - done, in = e->size - done % e->size;
        if (l > in) l = in;
        if (l > IO_CHUNK) l = IO_CHUNK;
        e->rc = e->send ? bench_net_put_all(e->fd, e->buf + done % e->size, l)
                        : bench_net_get_all(e->fd, e->buf + done % e->size, l);
        done += l;
    }
    return NULL;
}

/* Seconds to send `bytes` to next and receive as many from prev; < 0 on failure. */
static double plain_trial(int to_next, int from_prev, uint8_t *sb, uint8_t *rb, size_t size, size_t bytes)
{
    struct io s = { to_next, 1, sb, size, bytes, 0 }, r = { from_prev, 0, rb, size, bytes, 0 };
    pthread_t ts, tr;
    double t0 = base_now();
    pthread_create(&tr, NULL, io_main, &r);
    pthread_create(&ts, NULL, io_main, &s);
    pthread_join(ts, NULL);
    pthread_join(tr, NULL);
    double dt = base_now() - t0;
    return s.rc || r.rc ? -1 : dt;
}

/* --- driver ------------------------------------------------------------------- */

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    if (n < 1) return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void quiet_log(void *arg, const char *line) { (void)arg; (void)line; }

static int usage_hosts(void)
{
    fprintf(stderr, "usage: pipetrain bench allreduce --rank R --members HOST:PORT,HOST:PORT[,...] "
                    "[--sizes BYTES,...] [--mib N] [--trials N (1..%d)] [--chunk BYTES]\n"
                    "  every rank runs the same command with its own --rank; rank r listens on its member's\n"
                    "  PORT (the ring) and PORT + 1 (the plain-socket baseline); HOST: an IPv4 address\n", HMAX_TRIALS);
    return 2;
}

int bench_allreduce_hosts_main(int argc, char **argv)
{
    member m[HMAXR];
    long sizes[HMAXS] = { 4 << 20, 16 << 20 };
    int R = 0, rank = -1, ns = 2, trials = 3, mib = 32, rc = 1;
    long chunk = COLL_CHUNK_BYTES;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rank") && i + 1 < argc) rank = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--members") && i + 1 < argc) R = parse_members(argv[++i], m, HMAXR);
        else if (!strcmp(argv[i], "--sizes") && i + 1 < argc) ns = bench_parse_list(argv[++i], sizes, HMAXS);
        else if (!strcmp(argv[i], "--trials") && i + 1 < argc) trials = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--mib") && i + 1 < argc) mib = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--chunk") && i + 1 < argc) chunk = atol(argv[++i]);
        else if (!strcmp(argv[i], "--json")) continue; /* the only output form here */
        else return usage_hosts();
    }
    if (R < 2 || rank < 0 || rank >= R || ns < 1 || trials < 1 || trials > HMAX_TRIALS || mib < 1 ||
        mib > 4096 || chunk < 4 || chunk > (64l << 20)) {
        fprintf(stderr, "bench allreduce: --members needs 2..%d HOST:PORT (PORT 1..65534), --rank 0..R-1, "
                        "trials 1..%d, mib 1..4096, chunk 4 B .. 64 MiB\n", HMAXR, HMAX_TRIALS);
        return usage_hosts();
    }
    for (int i = 0; i < ns; i++)
        if (sizes[i] < 4 * HMAXR || sizes[i] > (1l << 30)) return usage_hosts();
    int rx;
    size_t rx_slice;
    char rx_err[ERR_LEN];
    if (coll_rx_from_env(&rx, &rx_slice, rx_err)) { /* PIPETRAIN_RING_RX, _SLICE: bad input, not a failure */
        fprintf(stderr, "bench allreduce: %s\n", rx_err);
        return 2;
    }

    char err[NET_ERR_LEN] = "";
    net_peer_id ids[HMAXR];
    for (int i = 0; i < R; i++) ids[i] = net_stage_id(0, (uint16_t)i);
    const member *me = &m[rank], *next = &m[(rank + 1) % R];
    net_peer_id nid = ids[(rank + 1) % R], pid = ids[(rank + R - 1) % R];
    struct net_node *node = NULL;
    coll_group *g = NULL;
    int lfd = -1, to_next = -1, from_prev = -1;
    uint8_t *sb = NULL, *rb = NULL;
    float *buf = NULL, tiny[HMAXR];

    net_config c;
    net_config_init(&c);
    c.self = ids[rank];
    c.secret = (const uint8_t *)hsecret;
    c.secret_len = sizeof hsecret - 1;
    c.listen_host = me->host;
    c.listen_port = me->port;
    c.log = quiet_log;
    if (!(node = net_node_new(&c, err))) goto fail;
    if ((lfd = plain_listen(me)) < 0) {
        snprintf(err, sizeof err, "cannot listen on %s:%d (the plain baseline; HOST must be an IPv4 address): %s",
                 me->host, me->port + 1, strerror(errno));
        goto fail;
    }
    /* with R = 2 one connection serves both directions: rank 0 makes it */
    if (!(R == 2 && rank == 1) && net_connect(node, nid, next->host, next->port, err)) goto fail;
    if (net_wait_peer(node, nid, WAIT_MS, err) != NET_OK || net_wait_peer(node, pid, WAIT_MS, err) != NET_OK)
        goto fail;
    if (!(g = coll_group_new(node, ids, R, rank, WAIT_MS, err)) || coll_group_set_chunk(g, (size_t)chunk, err))
        goto fail;
    if ((to_next = plain_connect(next)) < 0) {
        snprintf(err, sizeof err, "cannot connect to %s:%d (plain baseline)", next->host, next->port + 1);
        goto fail;
    }
    if ((from_prev = accept(lfd, NULL, NULL)) < 0) {
        snprintf(err, sizeof err, "accept on %s:%d: %s", me->host, me->port + 1, strerror(errno));
        goto fail;
    }

    uint64_t tag = 1;
    double lat[HMAX_TRIALS * 4];
    int nl = 0;
    for (int i = 0; i < trials * 4; i++) { /* per ring step latency: tiny all-reduces */
        memset(tiny, 0, sizeof tiny);
        double t0 = base_now();
        if (coll_allreduce_sum(g, tiny, (size_t)R, tag++, err)) goto fail;
        lat[nl++] = (base_now() - t0) / (2.0 * (R - 1));
    }
    double lat_s = median(lat, nl);
    for (int si = 0; si < ns; si++) {
        size_t size = (size_t)sizes[si], per = size / 4 * 4 * 2 * (size_t)(R - 1) / (size_t)R;
        int iters = (int)(((size_t)mib << 20) / size);
        if (iters < 1) iters = 1;
        sb = xcalloc(1, size);
        rb = xcalloc(1, size);
        buf = xcalloc(size / 4, sizeof(float));
        double ring[HMAX_TRIALS], plain[HMAX_TRIALS], pair[HMAX_TRIALS];
        for (int t = 0; t < trials; t++) {
            for (int k = 0; k < 2; k++) {
                float one = 0;
                if (coll_allreduce_sum(g, &one, 1, tag++, err)) goto fail; /* barrier */
                if (k == t % 2) {
                    double dt = plain_trial(to_next, from_prev, sb, rb, size, per * (size_t)iters);
                    if (dt <= 0) {
                        snprintf(err, sizeof err, "plain-socket trial failed (size %zu)", size);
                        goto fail;
                    }
                    plain[t] = (double)per * iters / dt;
                } else {
                    double t0 = base_now();
                    for (int i = 0; i < iters; i++)
                        if (coll_allreduce_sum(g, buf, size / 4, tag++, err)) goto fail;
                    ring[t] = (double)per * iters / (base_now() - t0);
                }
            }
            pair[t] = ring[t] / plain[t];
        }
        double ratio = median(pair, trials), rb_med = median(ring, trials), pl_med = median(plain, trials);
        printf("{\"bench\":\"allreduce-hosts\",\"rank\":%d,\"ranks\":%d,\"bytes\":%zu,\"iters\":%d,\"trials\":%d,"
               "\"busbw_Bps\":%.0f,\"plain_Bps\":%.0f,\"ratio\":%.4f,\"step_latency_ms\":%.4f}\n",
               rank, R, size, iters, trials, rb_med, pl_med, ratio, lat_s * 1e3);
        fflush(stdout);
        free(sb);
        free(rb);
        free(buf);
        sb = rb = NULL;
        buf = NULL;
    }
    { /* a last barrier: nobody closes its sockets while a peer still measures */
        float one = 0;
        if (coll_allreduce_sum(g, &one, 1, tag++, err)) goto fail;
    }
    rc = 0;
fail:
    if (rc) fprintf(stderr, "bench allreduce: rank %d: %s\n", rank, err[0] ? err : "failed");
    free(sb);
    free(rb);
    free(buf);
    if (to_next >= 0) close(to_next);
    if (from_prev >= 0) close(from_prev);
    if (lfd >= 0) close(lfd);
    coll_group_free(g);
    net_node_free(node);
    return rc;
}
