/* bench_net.h — `pipetrain bench net`: loopback throughput of the pipetrain
 * transport against a plain blocking-socket sender/receiver pair at 4 KiB,
 * 64 KiB, 1 MiB, 16 MiB and 64 MiB messages, the same through libevent's
 * evbuffer_read (its 4 KiB clamp), and small-message round-trip latency of
 * each, all measured in one run so the ratios mean something. */
#ifndef BENCH_BENCH_NET_H
#define BENCH_BENCH_NET_H

/* argv[0] is "net"; options [--json] [--mib N (per trial, default 256)]
 * [--trials N (best of, default 5)] [--size BYTES] [--variant
 * plain|direct|evbuffer|rtt] (the last two narrow the run, for profiling)
 * [--help]. Prints a table (or one JSON object with --json) on stdout: GB/s of
 * each variant, ratios, read calls per MiB, CPU seconds per GB, round trips.
 * Returns 0 on success, 1 if the transport failed, 2 on bad usage. Uses only
 * 127.0.0.1. */
int bench_net_main(int argc, char **argv);

#endif
