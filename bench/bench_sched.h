/* bench_sched.h — `pipetrain bench schedule`: how long validating and simulating
 * a 1,024-stage x 4,096-micro-batch step takes for every built-in schedule, next
 * to a baseline measured in the same run (generating the action lists). */
#ifndef BENCH_BENCH_SCHED_H
#define BENCH_BENCH_SCHED_H

#include <stddef.h>

/* argv[0] is "schedule"; options [--json] [--stages P] [--micro-batches M]
 * [--repeat N] [--measured [--steps N]] [--uneven [--steps N] [--vocab V]] [--help]. Prints a table (or one JSON object with --json) on
 * stdout. Returns 0 on success, 2 on bad usage, 1 when a schedule cannot be
 * built or simulated (message on stderr). */
int bench_sched_main(int argc, char **argv);

/* --measured (bench_sched_measured.c): trains topologies/shakespeare-2stage.json
 * (M micro-batches) and shakespeare-4stage.json (8 blocks, 2M micro-batches) for
 * `steps` steps under gpipe, 1f1b, zb-h1, interleaved and zb-v (child `pipetrain
 * run`s, from the source tree), and prints measured against predicted step time,
 * bubble and per-stage peak activation bytes (JSON with json != 0). Returns 0, 1
 * when a run failed, 2 when not in the source tree. */
int bench_sched_measured(int steps, int M, int json);

/* --uneven (bench_sched_uneven.c): topologies/shakespeare-2stage.json with
 * model.vocab_size = vocab (M micro-batches, `steps` steps a run, 1 BLAS thread
 * per stage): a calibration run of the even split, `pipetrain balance
 * --calibrate` on it (the balanced split), then `reps` runs (1 to 32) of the even
 * and the balanced split alternately, then both splits predicted by `pipetrain
 * balance` calibrated with the median costs of the reps even runs; prints per
 * split the median measured step time, the predictions (median costs, and the
 * calibration run's) and their differences, and the measured and predicted gains
 * (JSON with json != 0). Returns 0, 1 when a run or a balance failed, 2 when not
 * in the source tree or reps is out of range. */
int bench_sched_uneven(int steps, int M, int reps, int vocab, int json);

/* Shared by the two (bench_sched_measured.c): the load average "1 5 15" (or
 * "?") into buf; runs exe with argv, stdout and stderr to the file log, and
 * returns 0 when it exits 0, else -1. */
void bench_sched_loadavg(char *buf, size_t n);
int bench_sched_spawn_wait(const char *exe, char **argv, const char *log);

#endif
