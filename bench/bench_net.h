/* bench_net.h — `pipetrain bench net`: loopback throughput of the pipetrain
 * transport against a plain blocking-socket sender/receiver pair at 4 KiB,
 * 64 KiB, 1 MiB, 16 MiB and 64 MiB messages, the same through libevent's
 * evbuffer_read (its 4 KiB clamp), and small-message round-trip latency of
 * each, all measured in one run so the ratios mean something. */
#ifndef BENCH_BENCH_NET_H
#define BENCH_BENCH_NET_H

#include <stddef.h>

/* argv[0] is "net"; options [--json] [--mib N (per trial, default 256)]
 * [--trials N (best of, default 5)] [--size BYTES] [--variant
 * plain|direct|evbuffer|rtt] (the last two narrow the run, for profiling)
 * [--help]. Prints a table (or one JSON object with --json) on stdout: GB/s of
 * each variant, ratios, read calls per MiB, CPU seconds per GB, round trips.
 * Returns 0 on success, 1 if the transport failed, 2 on bad usage. Uses only
 * 127.0.0.1. */
int bench_net_main(int argc, char **argv);

/* Helpers the other transport benchmarks share (bench_allreduce.c), so that
 * their plain-socket baselines and paired ratios are the ones bench net uses. */

/* A connected loopback TCP pair with TCP_NODELAY: *snd connects, *rcv is the
 * accepted end. Returns 0, or -1 (no message). The caller closes both. */
int bench_net_tcp_pair(int *snd, int *rcv);
/* Blocking send / receive of exactly n bytes; 0, or -1 on error or EOF. Any thread. */
int bench_net_put_all(int fd, const void *p, size_t n);
int bench_net_get_all(int fd, void *p, size_t n);

/* Median, quartiles (linear interpolation) and range of n ratios; sorts v in
 * place; all zero when n == 0. */
typedef struct { double med, q1, q3, min, max; int n; } bench_ratio_stats;
bench_ratio_stats bench_net_ratio_stats(double *v, int n);

#endif
