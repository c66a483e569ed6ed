/* bench_ps_int.h — private to bench_ps*.c: the options, the child runs and
 * reading what a run wrote. */
#ifndef BENCH_BENCH_PS_INT_H
#define BENCH_BENCH_PS_INT_H

#include <jansson.h>
#include <limits.h>
#include <stddef.h>

#include "topo/topo.h"

typedef struct {
    int json, steps, rounds, quick, convergence, keep;
    const char *out, *topology, *data, *bin;
} bps_opts;

typedef struct {
    bps_opts o;
    topo t;            /* --topology (the recipe: data path, model, train for --convergence) */
    json_t *base;      /* the same file as JSON */
    char tmp[64], data[PATH_MAX], bin[96];
} bps;

/* One line of metrics.jsonl that is a step row. */
typedef struct {
    int worker;        /* -1: a step of the whole run (synchronous) */
    long step;
    double loss, val_loss, step_ms;
} bps_row;

/* n free TCP ports on 127.0.0.1 (bound together, then released). 0 or -1 with err. */
int bps_free_ports(int n, int *ports, char *err);
/* Writes j to DIR/NAME.json and runs `BIN run DIR/NAME.json --out DIR/NAME`
 * with its output in DIR/NAME.log, PIPETRAIN_STRAGGLE=straggle (NULL: unset)
 * and OPENBLAS_NUM_THREADS=1, killed after deadline_s. Returns 0, or 1 with
 * err (and the log's tail on stderr). */
int bps_run(const bps *b, const char *dir, const char *name, json_t *j, const char *straggle, double deadline_s,
            char *err);
/* The step rows of OUT/metrics.jsonl (malloc'd, *n of them). NULL with err. */
bps_row *bps_read_rows(const char *out, size_t *n, char *err);
/* The number at key in o, or NAN. */
double bps_num(json_t *o, const char *key);

/* bench_ps_conv.c: --convergence. Returns as bench_ps_main. */
int bps_convergence(bps *b);

#endif
