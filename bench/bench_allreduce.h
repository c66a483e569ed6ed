/* bench_allreduce.h — `pipetrain bench allreduce`: bus bandwidth of coll/'s
 * ring all-reduce among R ranks (threads of this process, one net_node each,
 * on loopback) against plain blocking sockets moving the same bytes around
 * the same ring, measured in one run as paired trials. */
#ifndef BENCH_BENCH_ALLREDUCE_H
#define BENCH_BENCH_ALLREDUCE_H

/* argv[0] is "allreduce"; options [--json] [--ranks LIST (default 2,3,4)]
 * [--sizes LIST of bytes (default 64 KiB, 1, 4, 16, 64 MiB)] [--trials N
 * (default 5)] [--mib N (bytes reduced per rank per trial, default 64)]
 * [--help]. Prints a table (or one JSON object with --json). Returns 0, 1 when
 * a collective failed, 2 on bad usage. */
int bench_allreduce_main(int argc, char **argv);

/* One rank per process (bench_allreduce_hosts.c), what bench_allreduce_main
 * runs when argv has --rank or --members: options --rank R --members
 * HOST:PORT,... (ring order; rank r listens on its PORT and on PORT + 1 for
 * the plain-socket baseline) [--sizes LIST] [--mib N] [--trials N] [--chunk B].
 * Every rank runs it at once; each prints one JSON object per size: the
 * ring's bus bandwidth, the plain TCP throughput of the same links in the
 * same run, their median paired ratio, and the ring's per-step latency.
 * Every wait gives up after 30 s. Returns 0, 1 on a failure (message on
 * stderr), 2 on bad usage. */
int bench_allreduce_hosts_main(int argc, char **argv);

/* Parses a comma-separated list of positive integers into out (at most cap).
 * Returns how many, or -1 on anything else. */
int bench_parse_list(const char *s, long *out, int cap);

#endif
