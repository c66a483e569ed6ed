/* bench_net.c — `pipetrain bench net`: measures, in one run on loopback, the
 * throughput of the pipetrain transport (two nodes in this process, a sender
 * and a receiver thread) against a plain blocking-socket pair moving the same
 * messages, plus the transport with payloads read through evbuffer_read (the
 * libevent 4 KiB clamp) and the small-message round trip of both. The machine is
 * shared, so one trial's ratio means little: plain and pipetrain trials are run
 * in pairs, back to back, alternating which goes first, and the figure is the
 * median of the paired ratios with their quartiles, range and count (a
 * regression moves the median out of the quartiles; noise does not). The best
 * of N throughput of each variant is printed beside it. The transport with
 * every frame sealed (net_config.encrypt, AEAD chosen for this CPU) runs in
 * the same rotation, paired with the unencrypted transport. It does not
 * measure anything across hosts. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_env.h"
#include "bench/bench_net.h"
#include "net/net.h"
#include "net/net_gcm.h"
#include "net/net_wire.h"

#define NSIZES 5
#define MAX_TRIALS 1000
#define RTT_BYTES 64
#define RTT_ITERS 2000

static const size_t sizes[NSIZES] = { 4096, 64 << 10, 1 << 20, 16 << 20, 64 << 20 };
static const char secret[] = "bench-net-secret-0123456789";

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU seconds used by this process (all threads) so far. */
static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

/* --- plain blocking sockets --------------------------------------------------- */

static int tcp_pair(int *snd, int *rcv)
{
    int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(l, 1) < 0) return -1;
    getsockname(l, (struct sockaddr *)&sa, &sl);
    *snd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(*snd, (struct sockaddr *)&sa, sizeof sa) < 0) return -1;
    *rcv = accept(l, NULL, NULL);
    close(l);
    setsockopt(*snd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(*rcv, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return *rcv < 0 ? -1 : 0;
}

static int put_all(int fd, const void *p, size_t n)
{
    const char *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w <= 0) return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static int get_all(int fd, void *p, size_t n)
{
    char *b = p;
    while (n) {
        ssize_t r = recv(fd, b, n, MSG_WAITALL);
        if (r <= 0) return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

struct plain_job { int fd; size_t size, count, window; uint8_t **bufs; int rc; };

static void *plain_recv_thread(void *arg)
{
    struct plain_job *j = arg;
    for (size_t i = 0; i < j->count && j->rc == 0; i++) {
        uint64_t len;
        if (get_all(j->fd, &len, sizeof len) < 0 || len != j->size ||
            get_all(j->fd, j->bufs[i % j->window], j->size) < 0)
            j->rc = -1;
    }
    return NULL;
}

/* The largest send and receive buffers the kernel gives a TCP socket
 * (net.ipv4.tcp_wmem / tcp_rmem, third field): how far a plain sender can run
 * ahead of its receiver. */
static size_t kernel_tcp_max(const char *path, size_t fallback)
{
    FILE *f = fopen(path, "r");
    unsigned long a, b, c;
    int ok = f && fscanf(f, "%lu %lu %lu", &a, &b, &c) == 3;
    if (f) fclose(f);
    return ok ? (size_t)c : fallback;
}

/* How many receive buffers the receivers rotate through. The transport's
 * receiver keeps that many receives posted and its sender never runs ahead of
 * them; the plain sender runs ahead as far as the kernel's socket buffers let
 * it. So the window covers the message being received plus those buffers'
 * worth (1 + 36 MiB / size here), and the plain receiver rotates through as
 * many buffers, so that both touch the same memory. (A window of 2 x 16 MiB
 * cost the transport 10-15% at 16 MiB against the plain pair's 36 MiB of
 * kernel buffering; with one buffer the plain pair kept its messages in the
 * 32 MiB L3 cache.) */
static size_t window_for(size_t size)
{
    static size_t ahead;
    if (!ahead)
        ahead = kernel_tcp_max("/proc/sys/net/ipv4/tcp_wmem", 4u << 20) +
                kernel_tcp_max("/proc/sys/net/ipv4/tcp_rmem", 6u << 20);
    size_t window = 1 + (ahead + size - 1) / size;
    return window < 2 ? 2 : window > 64 ? 64 : window;
}

static uint8_t **alloc_bufs(size_t window, size_t size)
{
    uint8_t **bufs = calloc(window, sizeof *bufs);
    for (size_t w = 0; w < window; w++) {
        bufs[w] = malloc(size);
        memset(bufs[w], 0, size); /* resident before the clock starts, like a reused tensor */
    }
    return bufs;
}

static void free_bufs(uint8_t **bufs, size_t window)
{
    for (size_t w = 0; w < window; w++) free(bufs[w]);
    free(bufs);
}

/* Bytes per second of a blocking sender/receiver pair, 8-byte length prefix. */
static double plain_throughput(size_t size, size_t count, double *cpu_per_gb)
{
    int s, r;
    if (tcp_pair(&s, &r) < 0) return 0;
    size_t window = window_for(size);
    uint8_t *src = malloc(size), **bufs = alloc_bufs(window, size);
    memset(src, 1, size);
    struct plain_job j = { r, size, count, window, bufs, 0 };
    pthread_t t;
    double t0 = now_s(), c0 = cpu_s();
    pthread_create(&t, NULL, plain_recv_thread, &j);
    for (size_t i = 0; i < count; i++) {
        uint64_t len = size;
        if (put_all(s, &len, sizeof len) < 0 || put_all(s, src, size) < 0) break;
    }
    pthread_join(t, NULL);
    double dt = now_s() - t0;
    *cpu_per_gb = (cpu_s() - c0) / ((double)size * (double)count / 1e9);
    close(s);
    close(r);
    free(src);
    free_bufs(bufs, window);
    return j.rc == 0 ? (double)size * (double)count / dt : 0;
}

static void *plain_echo_thread(void *arg)
{
    struct plain_job *j = arg;
    uint8_t buf[RTT_BYTES];
    for (size_t i = 0; i < j->count; i++)
        if (get_all(j->fd, buf, sizeof buf) < 0 || put_all(j->fd, buf, sizeof buf) < 0) break;
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Where a round trip runs: the CPU of the sending side (its thread; for the
 * transport also its network thread) and of the echoing side. "One CPU per
 * side" is how two stages on two hosts run; "one CPU" measures the software
 * path alone. Left to the scheduler, the same binary measured plain 12-40 us
 * and the transport 28-66 us from run to run, only by where threads landed (a
 * wake-up on an idle vCPU costs 20-25 us on this kind of machine). Threads
 * inherit the affinity of the thread that creates them. */
struct place { int a, b; };

/* Median round trip in microseconds. */
static double plain_rtt(struct place pl)
{
    int s, r;
    if (tcp_pair(&s, &r) < 0) return 0;
    struct plain_job j = { r, RTT_BYTES, RTT_ITERS + 100, 1, NULL, 0 };
    pthread_t t;
    bench_pin_self(pl.b);
    pthread_create(&t, NULL, plain_echo_thread, &j);
    bench_pin_self(pl.a);
    static double us[RTT_ITERS];
    uint8_t buf[RTT_BYTES] = { 0 };
    for (int i = 0; i < RTT_ITERS + 100; i++) {
        double t0 = now_s();
        put_all(s, buf, sizeof buf);
        get_all(s, buf, sizeof buf);
        if (i >= 100) us[i - 100] = (now_s() - t0) * 1e6;
    }
    pthread_join(t, NULL);
    bench_pin_self(-1);
    close(s);
    close(r);
    qsort(us, RTT_ITERS, sizeof *us, cmp_double);
    return us[RTT_ITERS / 2];
}

/* --- the transport ------------------------------------------------------------ */

static void quiet(void *arg, const char *line) { (void)arg; (void)line; }
static int seal_nodes; /* node_pair: 1 makes both nodes seal every frame */

/* Two connected nodes; the network thread of a runs on CPU pa, b's on pb (-1: anywhere). */
static int node_pair(int read_mode, struct net_node **a, struct net_node **b, int pa, int pb)
{
    char err[NET_ERR_LEN];
    net_config ca, cb;
    net_config_init(&ca);
    ca.self = net_stage_id(0, 0);
    ca.secret = (const uint8_t *)secret;
    ca.secret_len = sizeof secret - 1;
    ca.listen_host = "127.0.0.1";
    ca.read_mode = read_mode;
    ca.encrypt = seal_nodes;
    ca.log = quiet; /* each trial's shutdown would otherwise log a goodbye */
    cb = ca;
    cb.self = net_stage_id(1, 0);
    cb.listen_host = NULL;
    bench_pin_self(pa);
    *a = net_node_new(&ca, err);
    bench_pin_self(pb);
    *b = *a ? net_node_new(&cb, err) : NULL;
    bench_pin_self(-1);
    if (*b && net_connect(*b, ca.self, "127.0.0.1", net_node_port(*a), err) == NET_OK &&
        net_wait_peer(*b, ca.self, 10000, err) == NET_OK &&
        net_wait_peer(*a, cb.self, 10000, err) == NET_OK)
        return 0;
    fprintf(stderr, "bench net: %s\n", err);
    net_node_free(*b);
    net_node_free(*a);
    return -1;
}

/* The receiver posts up to `window` receives ahead and publishes how many it
 * has posted; the sender never sends a message whose receive is not posted
 * yet. That is how a pipeline stage runs (it posts the receive for every tensor
 * an action will need before the data can arrive), and it measures the path
 * where payloads are read straight into place. Messages that arrive before
 * their receive go through a buffer and one more copy. */
struct net_job {
    struct net_node *node;
    size_t size, count, window;
    uint8_t **bufs;
    int rc;
    pthread_mutex_t lk;
    pthread_cond_t cv;
    size_t posted;
};

static void credit_post(struct net_job *j, size_t upto)
{
    pthread_mutex_lock(&j->lk);
    j->posted = upto;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->lk);
}

static void credit_wait(struct net_job *j, size_t i)
{
    pthread_mutex_lock(&j->lk);
    while (j->posted <= i && j->rc == 0) pthread_cond_wait(&j->cv, &j->lk);
    pthread_mutex_unlock(&j->lk);
}

/* Receiver: keeps `window` receives posted, each into its own buffer. */
static void *net_recv_thread(void *arg)
{
    struct net_job *j = arg;
    char err[NET_ERR_LEN];
    struct net_op **ops = calloc(j->window, sizeof *ops);
    uint8_t **bufs = j->bufs;
    net_peer_id from = net_stage_id(0, 0);
    for (size_t i = 0; i < j->count + j->window && j->rc == 0; i++) {
        size_t w = i % j->window;
        if (i >= j->window) {
            if (net_wait(ops[w], 60000, err) != NET_OK) {
                fprintf(stderr, "bench net: receive: %s\n", err);
                j->rc = -1;
            }
            net_op_free(ops[w]);
            ops[w] = NULL;
        }
        if (i < j->count && j->rc == 0 &&
            net_recv_post(j->node, from, (net_key){ 16, i, 0, 0 }, bufs[w], j->size, &ops[w],
                          err) != NET_OK)
            j->rc = -1;
        if (i < j->count) credit_post(j, i + 1);
    }
    credit_post(j, SIZE_MAX); /* also releases a sender waiting after a failure */
    for (size_t w = 0; w < j->window; w++) net_op_free(ops[w]);
    free(ops);
    return NULL;
}

/* Bytes per second through the transport; *reads_per_mib from the receiver. */
static double net_throughput(int read_mode, size_t size, size_t count, double *reads_per_mib,
                             double *cpu_per_gb)
{
    struct net_node *a, *b;
    char err[NET_ERR_LEN];
    if (node_pair(read_mode, &a, &b, -1, -1) < 0) return 0;
    size_t window = window_for(size);
    uint8_t *src = calloc(1, size), **bufs = alloc_bufs(window, size);
    struct net_op **ops = calloc(window, sizeof *ops);
    memset(src, 1, size);
    struct net_job j = { .node = b, .size = size, .count = count, .window = window,
                         .bufs = bufs };
    pthread_mutex_init(&j.lk, NULL);
    pthread_cond_init(&j.cv, NULL);
    net_peer_id to = net_stage_id(1, 0);
    pthread_t t;
    int rc = 0;
    double t0 = now_s(), c0 = cpu_s();
    pthread_create(&t, NULL, net_recv_thread, &j);
    for (size_t i = 0; i < count + window && rc == 0; i++) {
        size_t w = i % window;
        if (i >= window) {
            rc = net_wait(ops[w], 60000, err) == NET_OK ? 0 : -1;
            net_op_free(ops[w]);
            ops[w] = NULL;
        }
        if (i < count && rc == 0) {
            credit_wait(&j, i);
            rc = net_send(a, to, (net_key){ 16, i, 0, 0 }, src, size, 60000, &ops[w], err);
        }
    }
    pthread_join(t, NULL);
    double dt = now_s() - t0;
    *cpu_per_gb = (cpu_s() - c0) / ((double)size * (double)count / 1e9);
    pthread_mutex_destroy(&j.lk);
    pthread_cond_destroy(&j.cv);
    if (rc != 0) fprintf(stderr, "bench net: send: %s\n", err);
    net_stats st;
    net_peer_stats(b, net_stage_id(0, 0), &st);
    *reads_per_mib = (double)st.read_calls / ((double)size * (double)count / (1 << 20));
    for (size_t w = 0; w < window; w++) net_op_free(ops[w]);
    free_bufs(bufs, window);
    free(ops);
    free(src);
    net_node_free(a);
    net_node_free(b);
    return rc == 0 && j.rc == 0 ? (double)size * (double)count / dt : 0;
}

static void *net_echo_thread(void *arg)
{
    struct net_job *j = arg;
    char err[NET_ERR_LEN];
    uint8_t buf[RTT_BYTES];
    net_peer_id peer = net_stage_id(0, 0);
    uint8_t out[RTT_BYTES];
    struct net_op *r = NULL, *next = NULL;
    /* the receive for the next ping is posted before this pong goes out, as a
     * stage posts receives ahead of need */
    if (net_recv_post(j->node, peer, (net_key){ 16, 0, 0, 0 }, buf, sizeof buf, &r, err) != NET_OK)
        j->rc = -1;
    for (size_t i = 0; i < j->count && j->rc == 0; i++) {
        struct net_op *s = NULL;
        net_key k = { 16, i, 0, 0 }, kn = { 16, i + 1, 0, 0 };
        if (net_wait(r, 10000, err) != NET_OK) j->rc = -1;
        memcpy(out, buf, sizeof out);
        net_op_free(r);
        r = NULL;
        if (j->rc == 0 && i + 1 < j->count &&
            net_recv_post(j->node, peer, kn, buf, sizeof buf, &next, err) != NET_OK)
            j->rc = -1;
        if (j->rc == 0 && (net_send(j->node, peer, k, out, sizeof out, 10000, &s, err) != NET_OK ||
                           net_wait(s, 10000, err) != NET_OK))
            j->rc = -1;
        net_op_free(s);
        r = next;
        next = NULL;
    }
    net_op_free(r);
    return NULL;
}

static double net_rtt(struct place pl)
{
    struct net_node *a, *b;
    char err[NET_ERR_LEN];
    if (node_pair(NET_READ_DIRECT, &a, &b, pl.a, pl.b) < 0) return 0;
    struct net_job j = { .node = b, .size = RTT_BYTES, .count = RTT_ITERS + 100, .window = 1 };
    pthread_t t;
    bench_pin_self(pl.b);
    pthread_create(&t, NULL, net_echo_thread, &j);
    bench_pin_self(pl.a);
    static double us[RTT_ITERS];
    uint8_t buf[RTT_BYTES] = { 0 }, back[RTT_BYTES];
    net_peer_id to = net_stage_id(1, 0);
    int rc = 0;
    for (int i = 0; i < RTT_ITERS + 100 && rc == 0; i++) {
        net_key k = { 16, (uint64_t)i, 0, 0 };
        struct net_op *r = NULL, *s = NULL;
        double t0 = now_s();
        rc |= net_recv_post(a, to, k, back, sizeof back, &r, err);
        rc |= net_send(a, to, k, buf, sizeof buf, 10000, &s, err);
        rc |= net_wait(r, 10000, err);
        if (i >= 100) us[i - 100] = (now_s() - t0) * 1e6;
        rc |= net_wait(s, 10000, err);
        net_op_free(r);
        net_op_free(s);
    }
    if (rc) fprintf(stderr, "bench net: round trip: %s\n", err);
    pthread_join(t, NULL);
    bench_pin_self(-1);
    net_node_free(a);
    net_node_free(b);
    qsort(us, RTT_ITERS, sizeof *us, cmp_double);
    return rc || j.rc ? 0 : us[RTT_ITERS / 2];
}

/* --- driver ------------------------------------------------------------------- */

struct result {
    double plain[NSIZES], direct[NSIZES], evb[NSIZES]; /* bytes/s, best of trials */
    double reads_direct[NSIZES], reads_evb[NSIZES];    /* read calls per MiB */
    double cpu_plain[NSIZES], cpu_direct[NSIZES];      /* CPU seconds per GB, least of trials */
    double rtt_plain, rtt_net;        /* one CPU per side: median us, best of trials */
    double rtt1_plain, rtt1_net;      /* everything on one CPU */
    /* paired ratios, one per trial: pipetrain / plain throughput (measured back to
     * back), pipetrain / plain round trip */
    double pair[NSIZES][MAX_TRIALS], pair_rtt[MAX_TRIALS], pair_rtt1[MAX_TRIALS];
    int n_pair[NSIZES], n_pair_rtt, n_pair_rtt1;
    /* sealed frames: best bytes/s, least CPU s/GB, ratios sealed / unencrypted transport */
    double sealed[NSIZES], cpu_sealed[NSIZES], pair_seal[NSIZES][MAX_TRIALS];
    int n_pair_seal[NSIZES];
    /* the AEAD alone on one core, 1 MiB frames through net_seal: bytes/s, best
     * of trials; [0] the path net_seal picks, [1] forced to libcrypto (EVP) */
    double cipher_seal[2], cipher_open[2];
};

/* Seals (enc 1) or opens in place `mib` MiB as 1 MiB frames with the preferred
 * AEAD on this thread; force_evp sets PIPETRAIN_GCM=evp for net_seal_new.
 * Returns bytes/s, 0 on failure. */
static double cipher_speed(int enc, int force_evp, int mib)
{
    enum { FRAME = 1 << 20 };
    uint8_t key[NET_SEAL_KEY_LEN] = { 7 }, hdr[NET_HDR_LEN] = { 1 }, h2[NET_HDR_LEN], tag[NET_SEAL_TAG];
    uint8_t *buf = malloc(NET_SEALED_HDR_LEN + FRAME);
    if (force_evp) setenv("PIPETRAIN_GCM", "evp", 1);
    struct net_seal *tx = net_seal_new(net_aead_preferred(), key, 1), *rx = net_seal_new(net_aead_preferred(), key, 0);
    if (force_evp) unsetenv("PIPETRAIN_GCM");
    double t = 0, rate = 0;
    char err[NET_ERR_LEN];
    int ok = buf && tx && rx;
    if (ok) memset(buf, 0x5a, NET_SEALED_HDR_LEN + FRAME);
    for (int f = 0; ok && f < mib; f++) {
        uint8_t *p = buf + NET_SEALED_HDR_LEN;
        double t0 = now_s();
        ok = net_seal_begin(tx, buf, hdr, FRAME) == NET_OK && net_seal_update(tx, p, p, FRAME) == NET_OK &&
             net_seal_end(tx, tag) == NET_OK;
        if (enc) t += now_s() - t0;
        t0 = now_s();
        ok = ok && net_open_hdr(rx, h2, buf, err) == NET_OK && net_open_begin(rx, h2, FRAME) == NET_OK &&
             net_open_update(rx, p, p, FRAME) == NET_OK && net_open_end(rx, tag, err) == NET_OK;
        if (!enc) t += now_s() - t0;
    }
    if (ok && t > 0) rate = (double)mib * FRAME / t;
    net_seal_free(tx);
    net_seal_free(rx);
    free(buf);
    return rate;
}

/* Median, quartiles and range of n paired ratios (sorted in place); zeros when n == 0. */
typedef struct { double med, q1, q3, min, max; int n; } pair_stats;

static double quantile(const double *v, int n, double q) /* v sorted; linear interpolation */
{
    double x = q * (n - 1);
    int i = (int)x;
    return i + 1 < n ? v[i] + (x - i) * (v[i + 1] - v[i]) : v[n - 1];
}

static int cmp_ratio(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static pair_stats stats_of(double *v, int n)
{
    pair_stats st = { 0, 0, 0, 0, 0, n };
    if (n <= 0) return st;
    qsort(v, (size_t)n, sizeof *v, cmp_ratio);
    st.med = quantile(v, n, 0.5);
    st.q1 = quantile(v, n, 0.25);
    st.q3 = quantile(v, n, 0.75);
    st.min = v[0];
    st.max = v[n - 1];
    return st;
}

static void print_pair_json(const char *key, pair_stats st)
{
    printf("\"%s\":%.4f,\"%s_q1\":%.4f,\"%s_q3\":%.4f,\"%s_min\":%.4f,\"%s_max\":%.4f,\"pairs\":%d", key, st.med,
           key, st.q1, key, st.q3, key, st.min, key, st.max, st.n);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: pipetrain bench net [--json] [--mib N (per trial, default 256)] "
               "[--trials N (default 7, at most 1000)] [--size BYTES] [--variant plain|direct|sealed|evbuffer|rtt|cipher]\n");
}

static void print_table(struct result *r, int mib, int trials)
{
    printf("pipetrain bench net: loopback, %d MiB per trial, %d trials; ratio = pipetrain / plain, the median of the\n"
           "ratios of paired trials (run back to back, alternating which goes first), with quartiles, range, pairs\n",
           mib, trials);
    printf("%-8s %10s %10s %6s %13s %11s %3s %14s %10s %12s %14s\n", "size", "plain GB/s", "pipetrain", "ratio",
           "IQR", "min-max", "n", "evbuffer GB/s", "evb/direct", "reads/MiB", "CPU s/GB");
    const char *names[NSIZES] = { "4 KiB", "64 KiB", "1 MiB", "16 MiB", "64 MiB" };
    for (int i = 0; i < NSIZES; i++) {
        pair_stats st = stats_of(r->pair[i], r->n_pair[i]);
        printf("%-8s %10.2f %10.2f %6.2f %6.2f-%-6.2f %5.2f-%-5.2f %3d %14.2f %10.2f %5.0f / %-5.0f %5.2f / %-5.2f\n",
               names[i], r->plain[i] / 1e9, r->direct[i] / 1e9, st.med, st.q1, st.q3, st.min, st.max, st.n,
               r->evb[i] / 1e9, r->direct[i] > 0 ? r->evb[i] / r->direct[i] : 0, r->reads_direct[i],
               r->reads_evb[i], r->cpu_plain[i], r->cpu_direct[i]);
    }
    printf("sealed frames (%s, every frame after the handshake): ratio = sealed / unencrypted transport, paired\n",
           net_aead_name(net_aead_preferred()));
    printf("%-8s %11s %10s %6s %13s %11s %3s %9s\n", "size", "sealed GB/s", "unenc GB/s", "ratio", "IQR", "min-max", "n",
           "CPU s/GB");
    for (int i = 0; i < NSIZES; i++) {
        pair_stats st = stats_of(r->pair_seal[i], r->n_pair_seal[i]);
        printf("%-8s %11.2f %10.2f %6.2f %6.2f-%-6.2f %5.2f-%-5.2f %3d %9.2f\n", names[i], r->sealed[i] / 1e9,
               r->direct[i] / 1e9, st.med, st.q1, st.q3, st.min, st.max, st.n, r->cpu_sealed[i]);
    }
    if (r->cipher_seal[0] > 0)
        printf("cipher alone, one core, 1 MiB frames in place (best of %d): seal %.2f GB/s, open %.2f GB/s%s; "
               "libcrypto EVP: seal %.2f, open %.2f GB/s\n", trials, r->cipher_seal[0] / 1e9,
               r->cipher_open[0] / 1e9, net_aead_preferred() == NET_AEAD_AES256GCM && net_gcm_available()
               ? " (net_gcm.c, VAES)" : " (libcrypto)", r->cipher_seal[1] / 1e9, r->cipher_open[1] / 1e9);
    pair_stats a = stats_of(r->pair_rtt, r->n_pair_rtt), b = stats_of(r->pair_rtt1, r->n_pair_rtt1);
    printf("round trip (%d B, median of %d), one CPU per side: plain %.1f us, pipetrain "
           "%.1f us (best of %d); paired ratio %.2f (IQR %.2f-%.2f, range %.2f-%.2f, %d pairs)\n", RTT_BYTES,
           RTT_ITERS, r->rtt_plain, r->rtt_net, trials, a.med, a.q1, a.q3, a.min, a.max, a.n);
    printf("round trip, both sides on one CPU:            plain %.1f us, pipetrain "
           "%.1f us (best of %d); paired ratio %.2f (IQR %.2f-%.2f, range %.2f-%.2f, %d pairs)\n", r->rtt1_plain,
           r->rtt1_net, trials, b.med, b.q1, b.q3, b.min, b.max, b.n);
    printf("targets: throughput ratio >= 0.90 at 1 MiB and above; round-trip ratio (one CPU "
           "per side) <= 2.0; sealed / unencrypted >= 0.70 at 1 MiB and above\n");
    if (bench_cpu_b < 0) printf("(only one CPU: the round trips could not be given a CPU per side)\n");
    printf("plain GB/s, pipetrain: best of the trials; reads/MiB: read calls on the receiving socket, direct / "
           "through evbuffer_read\n");
    printf("CPU s/GB: CPU time of the whole process per GB moved, plain / pipetrain\n");
    printf("receive buffers (receives the transport keeps posted; the plain receiver rotates "
           "through as many):");
    for (int i = 0; i < NSIZES; i++) printf(" %zu", window_for(sizes[i]));
    printf("\n");
}

static void print_json(struct result *r, int mib, int trials)
{
    printf("{\"bench\":\"net\",\"mib_per_trial\":%d,\"trials\":%d,\"ratio\":\"median of paired trials\","
           "\"throughput\":[", mib, trials);
    for (int i = 0; i < NSIZES; i++) {
        printf("%s{\"bytes\":%zu,\"plain_Bps\":%.0f,\"pipetrain_Bps\":%.0f,", i ? "," : "", sizes[i], r->plain[i],
               r->direct[i]);
        print_pair_json("ratio", stats_of(r->pair[i], r->n_pair[i]));
        printf(",\"ratio_of_best\":%.4f,\"evbuffer_Bps\":%.0f,\"evbuffer_vs_direct\":%.4f,\"reads_per_mib_direct\":%.1f,"
               "\"reads_per_mib_evbuffer\":%.1f,\"cpu_s_per_gb_plain\":%.4f,\"cpu_s_per_gb_pipetrain\":%.4f}",
               r->plain[i] > 0 ? r->direct[i] / r->plain[i] : 0, r->evb[i],
               r->direct[i] > 0 ? r->evb[i] / r->direct[i] : 0, r->reads_direct[i], r->reads_evb[i],
               r->cpu_plain[i], r->cpu_direct[i]);
        printf(",{\"bytes\":%zu,\"sealed_Bps\":%.0f,\"aead\":\"%s\",\"cpu_s_per_gb_sealed\":%.4f,", sizes[i],
               r->sealed[i], net_aead_name(net_aead_preferred()), r->cpu_sealed[i]);
        print_pair_json("sealed_vs_unencrypted", stats_of(r->pair_seal[i], r->n_pair_seal[i]));
        printf("}");
    }
    printf("],\"round_trip\":{\"bytes\":%d,\"placement\":\"%s\",\"plain_us\":%.2f,\"pipetrain_us\":%.2f,", RTT_BYTES,
           bench_cpu_b >= 0 ? "one CPU per side" : "unpinned (one CPU)", r->rtt_plain, r->rtt_net);
    print_pair_json("ratio", stats_of(r->pair_rtt, r->n_pair_rtt));
    printf("},\"round_trip_one_cpu\":{\"plain_us\":%.2f,\"pipetrain_us\":%.2f,", r->rtt1_plain, r->rtt1_net);
    print_pair_json("ratio", stats_of(r->pair_rtt1, r->n_pair_rtt1));
    printf("},\"targets\":{\"min_throughput_ratio_from_1MiB\":0.9,\"max_round_trip_ratio\":2.0,"
           "\"min_sealed_vs_unencrypted_from_1MiB\":0.7}}\n");
}

static void keep_max(double *best, double v) { if (v > *best) *best = v; }
static void keep_min(double *best, double v) { if (v > 0 && (*best == 0 || v < *best)) *best = v; }

int bench_net_main(int argc, char **argv)
{
    int json = 0, mib = 256, trials = 7;
    long only = 0;          /* --size B: measure one message size only (for profiling) */
    const char *variant = ""; /* --variant plain|direct|evbuffer: only that one (profiling) */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--mib") && i + 1 < argc) mib = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--trials") && i + 1 < argc) trials = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc) only = atol(argv[++i]);
        else if (!strcmp(argv[i], "--variant") && i + 1 < argc) variant = argv[++i];
        else if (!strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        else { usage(stderr); return 2; }
    }
    if (mib < 64 || trials < 1 || trials > MAX_TRIALS) { usage(stderr); return 2; }
    if (bench_wait_quiet() < 0) fprintf(stderr, "bench net: other threads of this process still run\n");
    bench_cpus_init();
    static struct result r; /* the paired ratios make it large */
    memset(&r, 0, sizeof r);
    int failed = 0;
    for (int t = 0; t < trials; t++) {
        for (int i = 0; i < NSIZES; i++) {
            if ((only && (size_t)only != sizes[i]) || !strcmp(variant, "rtt")) continue;
            size_t count = ((size_t)mib << 20) / sizes[i];
            double rd = 0, re = 0, v = 0, cp = 0, cd = 0, ce = 0, p = 0, s = 0, rs = 0, cs = 0;
            /* plain, pipetrain and pipetrain sealed back to back, the order rotating by trial */
            for (int k = 0; k < 3; k++) {
                int which = (k + t) % 3;
                if (which == 0 && (!*variant || !strcmp(variant, "plain"))) {
                    keep_max(&r.plain[i], p = plain_throughput(sizes[i], count, &cp));
                    keep_min(&r.cpu_plain[i], cp);
                }
                if (which == 1 && (!*variant || !strcmp(variant, "direct") || !strcmp(variant, "sealed"))) {
                    v = net_throughput(NET_READ_DIRECT, sizes[i], count, &rd, &cd);
                    keep_max(&r.direct[i], v);
                    keep_min(&r.cpu_direct[i], cd);
                    failed |= v == 0;
                }
                if (which == 2 && (!*variant || !strcmp(variant, "sealed"))) {
                    seal_nodes = 1;
                    s = net_throughput(NET_READ_DIRECT, sizes[i], count, &rs, &cs);
                    seal_nodes = 0;
                    keep_max(&r.sealed[i], s);
                    keep_min(&r.cpu_sealed[i], cs);
                    failed |= s == 0;
                }
            }
            if (p > 0 && v > 0) r.pair[i][r.n_pair[i]++] = v / p;
            if (s > 0 && v > 0) r.pair_seal[i][r.n_pair_seal[i]++] = s / v;
            if (!*variant || !strcmp(variant, "evbuffer")) {
                keep_max(&r.evb[i], v = net_throughput(NET_READ_EVBUFFER, sizes[i], count, &re, &ce));
                failed |= v == 0;
            }
            r.reads_direct[i] = rd;
            r.reads_evb[i] = re;
        }
        if (!only && (!*variant || !strcmp(variant, "sealed") || !strcmp(variant, "cipher")))
            for (int k = 0; k < 4; k++) /* one core: this thread */
                keep_max(k < 2 ? &r.cipher_seal[k % 2] : &r.cipher_open[k % 2], cipher_speed(k < 2, k % 2, 64));
        if (only || (*variant && strcmp(variant, "rtt"))) continue;
        struct place split = { bench_cpu_a, bench_cpu_b }, one = { bench_cpu_a, bench_cpu_a };
        double pl = 0, pn = 0, ol = 0, on = 0;
        if (t % 2) { pn = net_rtt(split); pl = plain_rtt(split); }
        else { pl = plain_rtt(split); pn = net_rtt(split); }
        failed |= pn == 0;
        keep_min(&r.rtt_plain, pl);
        keep_min(&r.rtt_net, pn);
        if (pl > 0 && pn > 0) r.pair_rtt[r.n_pair_rtt++] = pn / pl;
        if (t % 2) { on = net_rtt(one); ol = plain_rtt(one); }
        else { ol = plain_rtt(one); on = net_rtt(one); }
        failed |= on == 0;
        keep_min(&r.rtt1_plain, ol);
        keep_min(&r.rtt1_net, on);
        if (ol > 0 && on > 0) r.pair_rtt1[r.n_pair_rtt1++] = on / ol;
    }
    if (json) print_json(&r, mib, trials); else print_table(&r, mib, trials);
    return failed ? 1 : 0;
}

/* --- shared with the other transport benchmarks (bench_net.h) ----------------- */

int bench_net_tcp_pair(int *snd, int *rcv) { return tcp_pair(snd, rcv); }
int bench_net_put_all(int fd, const void *p, size_t n) { return put_all(fd, p, n); }
int bench_net_get_all(int fd, void *p, size_t n) { return get_all(fd, p, n); }

bench_ratio_stats bench_net_ratio_stats(double *v, int n)
{
    pair_stats st = stats_of(v, n);
    return (bench_ratio_stats){ st.med, st.q1, st.q3, st.min, st.max, st.n };
}
