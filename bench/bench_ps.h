/* bench_ps.h — `pipetrain bench ps` (issue 12): what asynchrony buys against
 * stragglers, measured in one run, beside ps/ps_model.h's prediction; and with
 * --convergence, synchronous against staleness 2 on the Shakespeare recipe
 * (loss curves in one SVG). */
#ifndef BENCH_BENCH_PS_H
#define BENCH_BENCH_PS_H

/* argv[0] is "ps"; options [--json] [--steps N] [--quick] [--convergence
 * --out DIR] [--topology FILE] [--data FILE] [--bin PATH] [--keep] [--help]
 * (see --help). Runs a private copy of `pipetrain` (default this program) as
 * `run` on generated loopback topologies in a temporary directory, one run at
 * a time, and prints a table on stdout (one JSON object with --json). Returns
 * 0 on success, 1 when a run fails (its log's last lines on stderr), 2 on bad
 * usage or an unreadable topology, data file or binary. */
int bench_ps_main(int argc, char **argv);

#endif
