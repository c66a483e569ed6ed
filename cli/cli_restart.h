/* cli_restart.h — resuming and restarting multi-stage runs (issue #6): the
 * launcher of cli/cli_launch.c run as a series of attempts. Each attempt is a
 * new coordinator and new stage processes; the first with --resume starts from
 * the latest complete checkpoint of the run directory, every attempt after the
 * first from the latest one of this run (run_start_point: committed by this
 * launcher, whose id every manifest records as "writer", or the one --resume
 * started from). Not here: one-stage runs (stage/train.c resumes those). */
#ifndef CLI_CLI_RESTART_H
#define CLI_CLI_RESTART_H

#include "cli/cli.h"

typedef struct {
    int resume;         /* the first attempt continues from the latest complete checkpoint */
    int max_restarts;   /* attempts after a stage died or stopped answering (default 0) */
    int insecure;       /* --insecure: passed on to every stage command */
} cli_restart_opts;

/* --insecure (issue #6): when no secret is configured (no secret_file, no
 * $PIPETRAIN_SECRET) and a process is off loopback, a run is refused unless
 * --insecure is given; then $PIPETRAIN_SECRET is set to a well-known value
 * (authentication becomes a formality: anyone who can reach the ports can
 * join) and a warning is printed. Returns 0, or 2 after printing
 * "pipetrain CMD: ..." when the run must be refused. */
int cli_insecure_check(const char *cmd, const topo *t, int insecure);

/* secret_file (issue 17): when t names a secret_file, or $PIPETRAIN_SECRET is
 * set, loads it once up front (non-blocking: a FIFO does not hang) so that a
 * missing file, a FIFO, a directory, a symbolic link, a file others may read
 * or a short secret is bad input for run and stage alike. Returns 0, or 2
 * after printing "pipetrain CMD: TOPOLOGY: secret_file: ..." naming the file
 * and what is wrong. Main thread, before anything starts. */
int cli_secret_check(const char *cmd, const topo *t);

/* cli_launch with resuming and restarts. When an attempt fails because of a
 * stage (dead, silent, timed out; not bad input, a diverged loss or an
 * interrupt), every stage is stopped and reaped, a {"event": "restart", ...}
 * line with the cause goes into metrics.jsonl and a note onto the progress
 * line, and all stages start again from this run's latest complete checkpoint
 * (from step 0 when there is none; another run's is set aside, never
 * resumed), up to r->max_restarts times. Returns as
 * cli_launch; 2 also when --resume finds no usable checkpoint or one made with
 * another topology. */
int cli_launch_restart(const topo *t, const cli_launch_opts *o, const cli_restart_opts *r);

#endif
