/* bench_compute.h — `pipetrain bench compute`: the OpenBLAS sgemm ceiling and the
 * achieved FLOP rate of full training steps of one-stage models (the
 * shakespeare recipe, stories15M and stories42M shapes), measured in one run
 * so their ratio means something on a shared machine. */
#ifndef BENCH_BENCH_COMPUTE_H
#define BENCH_BENCH_COMPUTE_H

/* argv[0] is "compute"; options [--preset P ...] [--set KEY=VALUE ...]
 * [--threads N[,N...]] [--steps N] [--warmup N] [--json | --markdown]
 * [--help]. Prints a table (one JSON object with --json, a Markdown table
 * with --markdown) on stdout. Returns 0 on success, 2 on bad usage (message
 * on stderr naming the option or --set key; nothing measured). Needs no
 * files. */
int bench_compute_main(int argc, char **argv);

#endif
