/* cli_schedule.h — `pipetrain schedule`: generate or read a schedule, validate
 * it, simulate one step and draw it (ASCII, SVG, Chrome trace) or write it as a
 * JSON/CSV schedule file. */
#ifndef CLI_CLI_SCHEDULE_H
#define CLI_CLI_SCHEDULE_H

/* Entry point; argv[0] is "schedule". Prints the predicted step time, the bubble
 * per stage and overall and the peak activation memory per stage. Returns 0, or 2
 * on bad usage or bad input (including a schedule that fails validation), or 1 on
 * a run-time failure (out of memory, write error). */
int cli_schedule_main(int argc, char **argv);

#endif
