/* bench_pipeline.h — `pipetrain bench pipeline`: in one run, the
 * shakespeare-1stage model trained by one stage with 1 BLAS thread against two
 * stages with 1 BLAS thread each (same global batch, M micro-batches), under
 * GPipe and under 1F1B, with the speedup set against the ideal P·M/(M+P−1) and
 * the gap split into stage imbalance and transfer/wait cost. */
#ifndef BENCH_BENCH_PIPELINE_H
#define BENCH_BENCH_PIPELINE_H

/* argv[0] is "pipeline"; options [--json] [--steps N] [--warmup N] [--rounds R]
 * [--batch N] [--micro N] [--split N] [--topology FILE] [--data FILE]
 * [--bin PATH] [--keep] [--help] (see --help). Runs a private copy of
 * `pipetrain` (by default this very program, /proc/self/exe) as `run` on
 * generated topologies in a temporary directory (removed at the end unless
 * --keep), one run at a time, and prints a table on stdout (or one JSON object
 * with --json). Returns 0 on success, 1 when a run fails (its log's last lines
 * on stderr), 2 on bad usage, an unreadable topology or binary. */
int bench_pipeline_main(int argc, char **argv);

#endif
