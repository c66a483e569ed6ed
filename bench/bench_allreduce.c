/* bench_allreduce.c — `pipetrain bench allreduce`: R ranks as threads of this
 * process, each with its own net_node on 127.0.0.1 connected in a ring, run
 * coll_allreduce_sum over S bytes; the figure is the bus bandwidth
 * S x 2(R-1)/R / time, what each rank pushes through its link per second.
 * The baseline is the same traffic over plain blocking sockets: R links in a
 * ring, each carrying S x 2(R-1)/R bytes in 1 MiB writes while every other
 * link does too (a sender and a receiver thread per rank), and the same
 * arithmetic: the receiver takes the reduce-scatter half of each all-reduce's
 * bytes into a 1 MiB scratch and adds it into its buffer with coll_add_f32, as
 * the ring does; the all-gather half lands in place. It has no checksums, no
 * step-to-step dependency and no thread hand-offs: those are what the ratio
 * measures. (Before, the baseline added nothing, which charged the ring for
 * its arithmetic.)
 * --plain-threads 1 drives each rank's two sockets from one thread (poll,
 * non-blocking), as net/ does: the baseline then prices what the ring adds
 * to that design, not the design itself.
 * Plain and ring trials run in pairs, back to back, alternating which goes
 * first; the ratio is the median of the paired ratios (bench net's method and
 * statistics). It does not measure anything across hosts. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "bench/bench_allreduce.h"
#include "bench/bench_env.h"
#include "bench/bench_net.h"
#include "coll/coll.h"
#include "net/net.h"

#define MAXR 8
#define MAXS 16
#define MAX_TRIALS 100
#define PLAIN_CHUNK (1u << 20)

static const char secret[] = "bench-allreduce-secret-0123456789";

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU seconds (user + system) this process has used: the timed part of a
 * trial is the only thing running in it, so the difference is that trial's
 * CPU cost, which machine load changes far less than its wall-clock time. */
static double cpu_s(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

static size_t ring_bytes(size_t size, int R) { return size / 4 * 4 * 2 * (size_t)(R - 1) / (size_t)R; }

/* --- plain sockets: R links in a ring, all busy at once ------------------------ */

/* Each end walks a buffer of the all-reduce's size, as the ring walks its
 * tensor: a 1 MiB buffer reused would stay in cache and flatter the baseline. */
struct plain_end { int fd; size_t bytes, size, per; uint8_t *buf; float *tmp; int rc; };

static size_t plain_len(const struct plain_end *e, size_t done)
{
    size_t l = e->bytes - done, in = e->size - done % e->size;
    if (l > in) l = in;
    return l < PLAIN_CHUNK ? l : PLAIN_CHUNK;
}

static void *plain_send(void *arg)
{
    struct plain_end *e = arg;
    for (size_t done = 0; done < e->bytes && e->rc == 0;) {
        size_t l = plain_len(e, done);
        e->rc = bench_net_put_all(e->fd, e->buf + done % e->size, l);
        done += l;
    }
    return NULL;
}

/* Each all-reduce's per bytes: the first half (the reduce-scatter's) through
 * the scratch and added, the rest (the all-gather's) in place. */
static void *plain_recv(void *arg)
{
    struct plain_end *e = arg;
    for (size_t done = 0; done < e->bytes && e->rc == 0;) {
        size_t l = plain_len(e, done), in_op = done % e->per, rs = e->per / 2;
        if (in_op < rs) { /* added at the same offset of the buffer, whole floats, aligned */
            if (l > rs - in_op) l = rs - in_op;
            e->rc = bench_net_get_all(e->fd, e->tmp, l);
            coll_add_f32((float *)(void *)(e->buf + in_op / sizeof(float) * sizeof(float)), e->tmp,
                         l / sizeof(float));
        } else {
            e->rc = bench_net_get_all(e->fd, e->buf + done % e->size, l);
        }
        done += l;
    }
    return NULL;
}

/* --plain-threads 1: one thread per rank sends on its link and receives on
 * the link before it, both sockets non-blocking and poll()ed, as net/'s one
 * network thread does (no checksums, no step-to-step dependency): what the
 * ring's one-thread-per-process design costs by itself, apart from what the
 * ring adds to it. */
struct poll_end { struct plain_end *s, *r; };

static void *plain_poll(void *arg)
{
    struct poll_end *o = arg;
    struct plain_end *s = o->s, *r = o->r;
    size_t sd = 0, rd = 0, got = 0; /* got: bytes of the current reduce-scatter piece in r->tmp */
    fcntl(s->fd, F_SETFL, fcntl(s->fd, F_GETFL) | O_NONBLOCK);
    fcntl(r->fd, F_SETFL, fcntl(r->fd, F_GETFL) | O_NONBLOCK);
    while ((sd < s->bytes || rd < r->bytes) && s->rc == 0 && r->rc == 0) {
        struct pollfd p[2] = { { s->fd, (short)(sd < s->bytes ? POLLOUT : 0), 0 },
                               { r->fd, (short)(rd < r->bytes ? POLLIN : 0), 0 } };
        if (poll(p, 2, 10000) <= 0) { /* nothing for 10 s: a stuck trial fails, it does not hang */
            s->rc = -1;
            break;
        }
        if (sd < s->bytes && (p[0].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t k = send(s->fd, s->buf + sd % s->size, plain_len(s, sd), MSG_DONTWAIT | MSG_NOSIGNAL);
            if (k > 0) sd += (size_t)k;
            else if (k < 0 && errno != EAGAIN) s->rc = -1;
        }
        if (rd >= r->bytes || !(p[1].revents & (POLLIN | POLLERR | POLLHUP))) continue;
        size_t l = plain_len(r, rd), in_op = rd % r->per, rs = r->per / 2;
        if (in_op < rs) { /* as plain_recv: the piece whole into the scratch, then added */
            if (l > rs - in_op) l = rs - in_op;
            ssize_t k = recv(r->fd, (uint8_t *)r->tmp + got, l - got, MSG_DONTWAIT);
            if (k > 0 && (got += (size_t)k) == l) {
                coll_add_f32((float *)(void *)(r->buf + in_op / sizeof(float) * sizeof(float)), r->tmp,
                             l / sizeof(float));
                rd += l;
                got = 0;
            }
            if (k == 0 || (k < 0 && errno != EAGAIN)) r->rc = -1;
        } else {
            ssize_t k = recv(r->fd, r->buf + rd % r->size, l, MSG_DONTWAIT);
            if (k > 0) rd += (size_t)k;
            else if (k == 0 || errno != EAGAIN) r->rc = -1;
        }
    }
    return NULL;
}

/* The plain ring's buffers for one (R, size) cell: allocated once, as the
 * ring's are, and not per trial. A fresh 64 MiB buffer per trial may or may
 * not get transparent huge pages (memory gets fragmented), and on this VM a
 * copy into 4 KiB pages cost the plain ring 0.78-0.87 CPU s/GB against
 * 0.31-0.36 with huge pages: the ratio then measured the page size. */
struct plain_bufs { uint8_t *snd[MAXR], *rcv[MAXR]; float *tmp[MAXR]; };

static void plain_bufs_new(struct plain_bufs *b, int R, size_t size)
{
    for (int i = 0; i < R; i++) {
        b->snd[i] = xmalloc(size);
        b->rcv[i] = xmalloc(size);
        b->tmp[i] = xmalloc(PLAIN_CHUNK);
        memset(b->snd[i], 0, size); /* resident before the clock starts; sums stay 0 */
        memset(b->rcv[i], 0, size);
        memset(b->tmp[i], 0, PLAIN_CHUNK);
    }
}

static void plain_bufs_free(struct plain_bufs *b, int R)
{
    for (int i = 0; i < R; i++) {
        free(b->snd[i]);
        free(b->rcv[i]);
        free(b->tmp[i]);
    }
}

/* Bytes per second per link; 0 on failure. *cpu: CPU seconds of the timed
 * part. threads: per rank, 2 (a sender and a receiver) or 1 (plain_poll). */
static double plain_ring(int R, size_t size, int iters, struct plain_bufs *pb, int threads, double *cpu)
{
    int snd[MAXR], rcv[MAXR], ok = 1;
    struct plain_end s[MAXR], r[MAXR];
    struct poll_end po[MAXR];
    pthread_t ts[MAXR], tr[MAXR];
    size_t bytes = ring_bytes(size, R) * (size_t)iters;
    for (int i = 0; i < R; i++) {
        snd[i] = rcv[i] = -1;
        ok &= bench_net_tcp_pair(&snd[i], &rcv[i]) == 0; /* link i: rank i -> rank i+1 */
        s[i] = (struct plain_end){ snd[i], bytes, size, ring_bytes(size, R), pb->snd[i], NULL, 0 };
        r[i] = (struct plain_end){ rcv[i], bytes, size, ring_bytes(size, R), pb->rcv[i], pb->tmp[i], 0 };
    }
    for (int i = 0; i < R; i++) po[i] = (struct poll_end){ &s[i], &r[(i + R - 1) % R] }; /* rank i's two links */
    double t0 = now_s(), c0 = cpu_s();
    for (int i = 0; i < R && ok; i++) {
        if (threads == 1) {
            pthread_create(&ts[i], NULL, plain_poll, &po[i]);
            continue;
        }
        pthread_create(&tr[i], NULL, plain_recv, &r[i]);
        pthread_create(&ts[i], NULL, plain_send, &s[i]);
    }
    for (int i = 0; i < R && ok; i++) {
        pthread_join(ts[i], NULL);
        if (threads != 1) pthread_join(tr[i], NULL);
    }
    for (int i = 0; i < R && ok; i++) ok &= s[i].rc == 0 && r[i].rc == 0;
    double dt = now_s() - t0;
    *cpu = cpu_s() - c0;
    for (int i = 0; i < R; i++) {
        if (snd[i] >= 0) close(snd[i]);
        if (rcv[i] >= 0) close(rcv[i]);
    }
    return ok ? (double)bytes / dt : 0;
}

/* --- the ring all-reduce ------------------------------------------------------- */

static void quiet(void *arg, const char *line) { (void)arg; (void)line; }

struct ring {
    int R;
    struct net_node *node[MAXR];
    coll_group *g[MAXR];
    uint64_t tag;
};

static void ring_free(struct ring *x)
{
    for (int i = 0; i < x->R; i++) {
        coll_group_free(x->g[i]);
        net_node_free(x->node[i]);
    }
}

static int ring_up(struct ring *x, int R, size_t chunk, int encrypt)
{
    char err[NET_ERR_LEN];
    net_peer_id ids[MAXR];
    memset(x, 0, sizeof *x);
    x->R = R;
    for (int i = 0; i < R; i++) ids[i] = net_stage_id(0, (uint16_t)i);
    for (int i = 0; i < R; i++) {
        net_config c;
        net_config_init(&c);
        c.self = ids[i];
        c.secret = (const uint8_t *)secret;
        c.secret_len = sizeof secret - 1;
        c.listen_host = "127.0.0.1";
        c.encrypt = encrypt;
        c.log = quiet;
        if (!(x->node[i] = net_node_new(&c, err))) goto fail;
    }
    for (int i = 0; i < R && !(R == 2 && i == 1); i++)
        if (net_connect(x->node[i], ids[(i + 1) % R], "127.0.0.1", net_node_port(x->node[(i + 1) % R]), err))
            goto fail;
    for (int i = 0; i < R; i++) {
        if (net_wait_peer(x->node[i], ids[(i + 1) % R], 10000, err) != NET_OK ||
            net_wait_peer(x->node[i], ids[(i + R - 1) % R], 10000, err) != NET_OK)
            goto fail;
        if (!(x->g[i] = coll_group_new(x->node[i], ids, R, i, 60000, err)) ||
            coll_group_set_chunk(x->g[i], chunk, err))
            goto fail;
    }
    return 0;
fail:
    fprintf(stderr, "bench allreduce: %s\n", err);
    ring_free(x);
    return -1;
}

struct rank_job { struct ring *x; int rank, iters; float *buf; size_t n; int rc; char err[ERR_LEN]; };

static void *rank_main(void *arg)
{
    struct rank_job *j = arg;
    for (int i = 0; i < j->iters && j->rc == 0; i++)
        j->rc = coll_allreduce_sum(j->x->g[j->rank], j->buf, j->n, j->x->tag + (uint64_t)i, j->err);
    return NULL;
}

/* Bus bandwidth in bytes per second; 0 on failure. *cpu: CPU seconds of the
 * timed part (the network threads are idle outside it). */
static double ring_busbw(struct ring *x, float **bufs, size_t size, int iters, double *cpu)
{
    struct rank_job j[MAXR];
    pthread_t t[MAXR];
    int ok = 1;
    double t0 = now_s(), c0 = cpu_s();
    for (int i = 0; i < x->R; i++) {
        j[i] = (struct rank_job){ .x = x, .rank = i, .iters = iters, .buf = bufs[i], .n = size / 4 };
        pthread_create(&t[i], NULL, rank_main, &j[i]);
    }
    for (int i = 0; i < x->R; i++) pthread_join(t[i], NULL);
    double dt = now_s() - t0;
    *cpu = cpu_s() - c0;
    x->tag += (uint64_t)iters;
    for (int i = 0; i < x->R; i++)
        if (j[i].rc) {
            fprintf(stderr, "bench allreduce: rank %d: %s\n", i, j[i].err);
            ok = 0;
        }
    return ok ? (double)ring_bytes(size, x->R) * iters / dt : 0;
}

/* --- driver -------------------------------------------------------------------- */

/* cpu_pair: the paired plain/ring CPU ratios; ring_cpu, plain_cpu: CPU
 * seconds per GB carried over the R links (bytes x 2(R-1)/R per rank), per
 * trial: the ring's CPU cost per byte, which the machine's load changes far
 * less than its wall-clock ratio (the environment's receive mode, coll.h, is
 * what an A/B of PIPETRAIN_RING_RX compares) */
struct cell {
    double busbw, plain, pair[MAX_TRIALS], cpu_pair[MAX_TRIALS], ring_cpu[MAX_TRIALS], plain_cpu[MAX_TRIALS];
    int n_pair, n_cpu;
};

int bench_parse_list(const char *s, long *out, int cap)
{
    int n = 0;
    while (*s && n < cap) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v <= 0) return -1;
        out[n++] = v;
        if (*end == ',') end++;
        else if (*end) return -1;
        s = end;
    }
    return *s ? -1 : n;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: pipetrain bench allreduce [--json] [--ranks 2,3,4] "
               "[--sizes BYTES,... (default 65536,1048576,4194304,16777216,67108864)] "
               "[--trials N (default 5, at most %d)] [--mib N (per rank per trial, default 64)] [--chunk BYTES (largest message, default %u)] [--encrypt (the ring's frames sealed)] "
               "[--plain-threads 2|1 (per rank in the plain ring: a sender and a receiver, or one thread poll()ing both)]\n",
            MAX_TRIALS, COLL_CHUNK_BYTES);
}

static void size_name(size_t b, char *out, size_t cap)
{
    if (b >= (1u << 20) && b % (1u << 20) == 0) snprintf(out, cap, "%zu MiB", b >> 20);
    else if (b >= 1024 && b % 1024 == 0) snprintf(out, cap, "%zu KiB", b >> 10);
    else snprintf(out, cap, "%zu B", b);
}

int bench_allreduce_main(int argc, char **argv)
{
    long ranks[MAXR] = { 2, 3, 4 }, sizes[MAXS] = { 64 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20 };
    int nr = 3, ns = 5, json = 0, trials = 5, mib = 64, encrypt = 0, pthreads = 2;
    long chunk = COLL_CHUNK_BYTES;
    for (int i = 1; i < argc; i++) /* one rank per process: bench_allreduce_hosts.c */
        if (!strcmp(argv[i], "--rank") || !strcmp(argv[i], "--members")) return bench_allreduce_hosts_main(argc, argv);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--ranks") && i + 1 < argc) nr = bench_parse_list(argv[++i], ranks, MAXR);
        else if (!strcmp(argv[i], "--sizes") && i + 1 < argc) ns = bench_parse_list(argv[++i], sizes, MAXS);
        else if (!strcmp(argv[i], "--trials") && i + 1 < argc) trials = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--mib") && i + 1 < argc) mib = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--chunk") && i + 1 < argc) chunk = atol(argv[++i]);
        else if (!strcmp(argv[i], "--encrypt")) encrypt = 1;
        else if (!strcmp(argv[i], "--plain-threads") && i + 1 < argc) pthreads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        else { usage(stderr); return 2; }
    }
    int bad = nr < 1 || ns < 1 || trials < 1 || trials > MAX_TRIALS || mib < 1 || mib > 4096 ||
              chunk < 4 || chunk > (64l << 20) || (pthreads != 1 && pthreads != 2);
    for (int i = 0; i < nr && !bad; i++) bad = ranks[i] < 2 || ranks[i] > MAXR;
    for (int i = 0; i < ns && !bad; i++) bad = sizes[i] < 4 * MAXR || sizes[i] > (1l << 30);
    if (bad) {
        fprintf(stderr, "bench allreduce: ranks 2..%d, sizes %d B .. 1 GiB, trials 1..%d, mib 1..4096, chunk 4 B .. 64 MiB, "
                        "plain-threads 1 or 2\n",
                MAXR, 4 * MAXR, MAX_TRIALS);
        usage(stderr);
        return 2;
    }
    int rx;
    size_t rx_slice;
    char rx_err[ERR_LEN];
    if (coll_rx_from_env(&rx, &rx_slice, rx_err)) {
        fprintf(stderr, "bench allreduce: %s\n", rx_err);
        return 2;
    }
    const char *rx_name = rx == COLL_RX_SCRATCH ? "scratch" : "pool";
    bench_wait_quiet();
    static struct cell cells[MAXR][MAXS];
    memset(cells, 0, sizeof cells);
    int failed = 0;
    for (int ri = 0; ri < nr; ri++) {
        int R = (int)ranks[ri];
        struct ring x;
        if (ring_up(&x, R, (size_t)chunk, encrypt) < 0) return 1;
        for (int si = 0; si < ns; si++) {
            size_t size = (size_t)sizes[si];
            int iters = (int)(((size_t)mib << 20) / size);
            if (iters < 1) iters = 1;
            float **bufs = xcalloc((size_t)R, sizeof *bufs);
            for (int i = 0; i < R; i++) {
                bufs[i] = xmalloc(size);
                for (size_t k = 0; k < size / 4; k++) bufs[i][k] = 0; /* resident, and sums stay 0 */
            }
            struct plain_bufs pb;
            plain_bufs_new(&pb, R, size);
            struct cell *c = &cells[ri][si];
            for (int t = 0; t < trials; t++) {
                double p = 0, b = 0, cp = 0, cb = 0;
                for (int k = 0; k < 2; k++) {
                    if (k == t % 2) p = plain_ring(R, size, iters, &pb, pthreads, &cp);
                    else b = ring_busbw(&x, bufs, size, iters, &cb);
                }
                failed |= b == 0 || p == 0;
                if (p > c->plain) c->plain = p;
                if (b > c->busbw) c->busbw = b;
                if (p > 0 && b > 0 && cp > 0 && cb > 0) {
                    double gb = (double)ring_bytes(size, R) * iters * R / 1e9;
                    c->cpu_pair[c->n_pair] = cp / cb;
                    c->ring_cpu[c->n_cpu] = cb / gb;
                    c->plain_cpu[c->n_cpu++] = cp / gb;
                }
                if (p > 0 && b > 0) c->pair[c->n_pair++] = b / p;
            }
            for (int i = 0; i < R; i++) free(bufs[i]);
            free(bufs);
            plain_bufs_free(&pb, R);
        }
        ring_free(&x);
    }
    if (json) {
        printf("{\"bench\":\"allreduce\",\"mib_per_trial\":%d,\"trials\":%d,\"ratio\":\"median of paired trials\","
               "\"busbw\":\"bytes x 2(R-1)/R / time\",\"plain_adds\":true,"
               "\"cpu_ratio\":\"plain CPU s / ring CPU s, median of paired trials\","
               "\"cpu_s_per_GB\":\"CPU s per GB over the links (bytes x 2(R-1)/R x R), median of trials\","
               "\"ring_rx\":\"%s\",\"ring_rx_slice\":%zu,\"ring_sealed\":%s,\"plain_threads_per_rank\":%d,\"results\":[", mib,
               trials, rx_name, rx_slice, encrypt ? "true" : "false", pthreads);
        for (int ri = 0, first = 1; ri < nr; ri++)
            for (int si = 0; si < ns; si++, first = 0) {
                struct cell *c = &cells[ri][si];
                bench_ratio_stats st = bench_net_ratio_stats(c->pair, c->n_pair);
                bench_ratio_stats cs = bench_net_ratio_stats(c->cpu_pair, c->n_pair);
                bench_ratio_stats rc = bench_net_ratio_stats(c->ring_cpu, c->n_cpu);
                bench_ratio_stats pc = bench_net_ratio_stats(c->plain_cpu, c->n_cpu);
                printf("%s{\"ranks\":%ld,\"bytes\":%ld,\"busbw_Bps\":%.0f,\"plain_Bps\":%.0f,\"ratio\":%.4f,"
                       "\"ratio_q1\":%.4f,\"ratio_q3\":%.4f,\"ratio_min\":%.4f,\"ratio_max\":%.4f,\"pairs\":%d,"
                       "\"cpu_ratio\":%.4f,\"cpu_ratio_q1\":%.4f,\"cpu_ratio_q3\":%.4f,"
                       "\"ring_cpu_s_per_GB\":%.4f,\"plain_cpu_s_per_GB\":%.4f}",
                       first ? "" : ",", ranks[ri], sizes[si], c->busbw, c->plain, st.med, st.q1, st.q3, st.min,
                       st.max, st.n, cs.med, cs.q1, cs.q3, rc.med, pc.med);
            }
        printf("],\"target\":{\"min_ratio_from_4MiB\":0.8}}\n");
    } else {
        printf("pipetrain bench allreduce: ring all-reduce among R threads (one net_node each) on loopback,\n"
               "%d MiB per rank per trial, %d trials; bus bandwidth = bytes x 2(R-1)/R / time; plain = the same\n"
               "bytes over R plain socket links in a ring, all busy at once, with the same additions (the\n"
               "reduce-scatter half received into scratch and added; no checksums); ratio = ring / plain, median of\n"
               "paired trials (back to back, alternating which goes first), with quartiles, range, pairs;\n"
               "the ring's reduce-scatter receives into %s (%s=pool|scratch, slice %zu bytes)%s%s\n",
               mib, trials, rx_name, COLL_RX_ENV, rx_slice,
               encrypt ? ";\nthe ring's frames are sealed (--encrypt: AES-256-GCM, no CRC; the plain ring is not)" : "",
               pthreads == 1 ? ";\nthe plain ring runs one thread per rank, poll()ing both its sockets (--plain-threads 1)" : "");
        printf("%-3s %-8s %10s %10s %6s %13s %11s %3s %5s %9s %9s\n", "R", "size", "busbw GB/s", "plain GB/s", "ratio",
               "IQR", "min-max", "n", "cpu", "ring s/GB", "plain");
        for (int ri = 0; ri < nr; ri++)
            for (int si = 0; si < ns; si++) {
                struct cell *c = &cells[ri][si];
                bench_ratio_stats st = bench_net_ratio_stats(c->pair, c->n_pair);
                bench_ratio_stats cs = bench_net_ratio_stats(c->cpu_pair, c->n_pair);
                bench_ratio_stats rc = bench_net_ratio_stats(c->ring_cpu, c->n_cpu);
                bench_ratio_stats pc = bench_net_ratio_stats(c->plain_cpu, c->n_cpu);
                char nm[32];
                size_name((size_t)sizes[si], nm, sizeof nm);
                printf("%-3ld %-8s %10.2f %10.2f %6.2f %6.2f-%-6.2f %5.2f-%-5.2f %3d %5.2f %9.3f %9.3f\n", ranks[ri], nm,
                       c->busbw / 1e9, c->plain / 1e9, st.med, st.q1, st.q3, st.min, st.max, st.n, cs.med, rc.med,
                       pc.med);
            }
        printf("cpu = plain CPU s / ring CPU s, median of the same pairs: what the ratio can reach when\n"
               "both are CPU-bound; ring s/GB, plain: CPU seconds per GB over the links, median of the trials\n");
        printf("target: ratio >= 0.80 at 4 MiB and above\n");
    }
    return failed ? 1 : 0;
}
