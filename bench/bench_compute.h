/* bench_compute.h — `pipetrain bench compute`: the OpenBLAS sgemm ceiling and the
 * achieved FLOP rate of a full training step of the shakespeare-1stage model,
 * measured in one run so their ratio means something on a shared machine. */
#ifndef BENCH_BENCH_COMPUTE_H
#define BENCH_BENCH_COMPUTE_H

/* argv[0] is "compute"; options [--json] [--threads N] [--steps N] [--help].
 * Prints a table (or one JSON object with --json) on stdout. Returns 0 on
 * success, 2 on bad usage (message on stderr). Needs no files. */
int bench_compute_main(int argc, char **argv);

#endif
