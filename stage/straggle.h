/* straggle.h — the straggler hook of `pipetrain bench ps` (issue 12): a
 * testing and benchmarking aid that makes a worker slow by sleeping, so a
 * benchmark can show what asynchrony buys without the machine's cores being
 * the limit. Off unless the environment variable PIPETRAIN_STRAGGLE is set in
 * a stage process:
 *
 *   PIPETRAIN_STRAGGLE=SPEC[,SPEC...]   SPEC = WHO:P:F
 *     WHO  a replica (worker) index, or * for every replica
 *     P    the probability (0..1) that a step of that worker pauses
 *     F    how long it pauses, in multiples of its normal step time (0..100)
 *
 * e.g. "*:0.25:2" (each worker, each step, independently: a pause of twice
 * its step time with probability 1/4) or "1:1:2" (worker 1 always sleeps
 * twice its step time: 3x slower). The last SPEC naming a replica wins.
 * Whether step s of replica w pauses is a pure function of (train.seed, w, s),
 * so the pattern is the same in every run; the normal step time is the
 * worker's own, measured (runtime_straggle.c). Not here: the sleep itself. */
#ifndef STAGE_STRAGGLE_H
#define STAGE_STRAGGLE_H

#include <stdint.h>

#define STRAGGLE_ENV "PIPETRAIN_STRAGGLE"

/* Parses spec (the variable's value) for replica `replica`: *p and *factor
 * get its probability and pause factor (0 and 0 when no SPEC names it).
 * Returns 0, or -1 with err naming PIPETRAIN_STRAGGLE, the byte offset in the
 * value and what was expected there. spec NULL or "": off (returns 0). Pure. */
int straggle_parse(const char *spec, int replica, double *p, double *factor, char *err);

/* 1 when step `step` of replica `replica` pauses under probability p, from a
 * hash of (seed, replica, step) (splitmix64): the same answer in every run. */
int straggle_due(uint64_t seed, int replica, long step, double p);

#endif
