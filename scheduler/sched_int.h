/* sched_int.h — private helpers shared by the scheduler's .c files (not part of
 * the public contract): the error-string helper and action naming for messages.
 * The scheduler keeps its own helpers instead of including model/util.h. */
#ifndef SCHEDULER_SCHED_INT_H
#define SCHEDULER_SCHED_INT_H

#include <stdarg.h>
#include <stdio.h>

#include "scheduler/sched.h"

/* Writes a formatted message into err (SCHED_ERR_LEN bytes, may be NULL); returns -1. */
int sched_seterr(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "F(3)" when the schedule has one chunk, "F(3, chunk 1)" otherwise. */
char *sched_action_name(sched_action a, int n_chunks, char *buf, size_t n);

/* Position of action i of stage st for messages: "stage 1, action 4" or, for a
 * schedule read from CSV, "row 2, column 5". Prefixed by "FILE: " when from a file
 * (prefix_file != 0). */
char *sched_where(const sched_schedule *s, int st, size_t i, char *buf, size_t n);
/* "FILE: " or "" */
const char *sched_src_prefix(const sched_schedule *s, char *buf, size_t n);

/* Virtual stage of chunk c on stage st (s's placement). */
static inline size_t sched_vstage(const sched_schedule *s, int st, int c)
{
    return (size_t)sched_virtual_stage(s, st, c);
}

/* Static checks (sched_validate.c): indices in range, exactly one F and one
 * backward per (stage, micro-batch, chunk), local order F < B < W. Writes each
 * stage's peak (micro-batch, chunk) pairs in flight into peak_mb (P) when not NULL. */
int sched_static_check(const sched_schedule *s, int *peak_mb, char *err);

/* Explains a deadlock: cur[st] is how far each stage got. Writes the summary
 * ("stage 1 waits for F(3) from stage 0; ...") plus as many per-stage lines as fit
 * into err, and the full per-stage listing into *detail (malloc'd, may be NULL). */
void sched_explain_deadlock(const sched_schedule *s, const size_t *cur, char *err, char **detail);

/* Plays s (sched_sim.c); costs NULL means every action takes 0. Fills r's timing
 * fields (r->n_stages and arrays must be allocated by the caller, start/end only
 * when timeline). Returns 0, or -1 after sched_explain_deadlock. */
int sched_play(const sched_schedule *s, const sched_costs *c, int timeline, sched_report *r,
               char *err);

/* The all-reduce (sched_allreduce.c). sched_ar_check: 0 when a is NULL, has
 * R <= 1 or fits s; else -1 with err naming the bucket. sched_ar_play fills r's
 * ar_* fields and raises r->step_time to the last stage's optimizer start, given
 * the W part [wl0[k], wl1[k]] of the last weight pass run on each virtual stage k
 * and each stage's last action end tfree[st]. Needs c->ar with R > 1; returns 0, or
 * -1 with err when out of memory. */
int sched_ar_check(const sched_schedule *s, const sched_allreduce *a, char *err);
int sched_ar_play(const sched_schedule *s, const sched_costs *c, const double *wl0, const double *wl1,
                  const double *tfree, sched_report *r, char *err);
/* Frees r's all-reduce report (the ar_* arrays sched_ar_play filled) and sets them
 * to NULL, so that r can be played again or freed. */
void sched_ar_report_free(sched_report *r);

/* A zeroed report for s (sched_sim.c): peak_mb; with sim the per-stage
 * simulation arrays; with timeline start/end. NULL when out of memory. */
sched_report *sched_report_alloc(const sched_schedule *s, int sim, int timeline);
/* sched_check and sched_simulate of a cross-step (2bw) schedule (sched_2bw.c). */
int sched_2bw_check(const sched_schedule *s, sched_report **rp, char *err);
int sched_2bw_simulate(const sched_schedule *s, const sched_costs *c, int timeline, sched_report **rp, char *err);

#endif
