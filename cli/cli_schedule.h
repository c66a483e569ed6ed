/* cli_schedule.h — `pipetrain schedule`: generate or read a schedule, validate
 * it, simulate one step and draw it (ASCII, SVG, Chrome trace) or write it as a
 * JSON/CSV schedule file. */
#ifndef CLI_CLI_SCHEDULE_H
#define CLI_CLI_SCHEDULE_H

#include <stddef.h>

#include "topo/topo.h"

/* Entry point; argv[0] is "schedule". Prints the predicted step time, the bubble
 * per stage and overall and the peak activation memory per stage. Returns 0, or 2
 * on bad usage or bad input (including a schedule that fails validation), or 1 on
 * a run-time failure (out of memory, write error). */
int cli_schedule_main(int argc, char **argv);

/* GFLOP/s of each of t's stages for FLOP-derived costs, as `schedule` uses them:
 * gflops > 0 per BLAS thread, else this machine's sgemm at the model's shapes
 * (cached) times MODEL_STEP_EFFICIENCY. rates has t->n_stages entries; note (nn
 * bytes) says where the numbers came from. Returns 0, or -1 with the reason in
 * note. Main thread (it may measure sgemm). */
int cli_schedule_rates(const topo *t, double gflops, double *rates, char *note, size_t nn);

#endif
