/* bench_sched.h — `pipetrain bench schedule`: how long validating and simulating
 * a 1,024-stage x 4,096-micro-batch step takes for every built-in schedule, next
 * to a baseline measured in the same run (generating the action lists). */
#ifndef BENCH_BENCH_SCHED_H
#define BENCH_BENCH_SCHED_H

/* argv[0] is "schedule"; options [--json] [--stages P] [--micro-batches M]
 * [--repeat N] [--help]. Prints a table (or one JSON object with --json) on
 * stdout. Returns 0 on success, 2 on bad usage, 1 when a schedule cannot be
 * built or simulated (message on stderr). */
int bench_sched_main(int argc, char **argv);

#endif
