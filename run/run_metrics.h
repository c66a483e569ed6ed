/* run_metrics.h — what a run writes for people and scripts: one JSON line per
 * step (OUT/metrics.jsonl), the loss curve (OUT/loss.svg) and the progress line
 * on the terminal. summary.json and deciding what to log when are run.h's.
 * Not here: anything about how the numbers were produced. Every object here
 * belongs to one thread at a time (the caller's); nothing is locked. */
#ifndef RUN_METRICS_H
#define RUN_METRICS_H

#include <stdio.h>

typedef struct {
    long step;          /* 1-based: the number of optimizer steps taken */
    double loss;        /* mean training loss of the step's batch */
    double lr;
    double grad_norm;   /* before clipping */
    double step_ms;
    double tokens_per_s;
    double val_loss;    /* NAN when the step did not evaluate */
    int worker;         /* asynchronous parameter servers (issue 12): 1 + the worker (replica) whose
                           step this line is ("worker": worker - 1); 0: a step of the whole run */
} run_metrics_row;

typedef struct run_metrics run_metrics;

/* Creates dir (and parents) and opens dir/metrics.jsonl for writing (truncating,
 * or appending when append is set, as a resumed run does). Returns NULL with a
 * message in err on failure. */
run_metrics *run_metrics_open(const char *dir, int append, char *err);
/* Appends one line (flushed, so a crash loses nothing already logged) and keeps
 * the row for the loss curve. Returns 0 or -1 with err. */
int run_metrics_log(run_metrics *m, const run_metrics_row *r, char *err);
/* Logs an event line, e.g. {"event": "restart", ...}: json is one JSON object. */
int run_metrics_event(run_metrics *m, const char *json, char *err);
/* Writes dir/loss.svg from the rows logged so far (train and validation). */
int run_metrics_write_svg(const run_metrics *m, char *err);
/* One curve of a loss picture: rows (x = row.step, y = loss and val_loss,
 * NAN skipped), borrowed; label (NULL: none) prefixes "train"/"validation" in
 * the legend; dashed draws its lines dashed. */
typedef struct {
    const char *label;
    const run_metrics_row *rows;
    size_t n;
    int dashed;
} run_loss_curve;
/* Writes path (via path.tmp, renamed) with n curves (n <= 4 get their own
 * colours) on shared axes: each curve's training loss as a thin line, its
 * validation loss as a thick line with dots; title on top, xlabel under the
 * x axis (plain text, no markup). loss.svg is this with one unlabelled curve.
 * Returns 0 or -1 with err. Any thread (touches only its arguments). */
int run_metrics_write_curves(const char *path, const char *title, const char *xlabel, const run_loss_curve *c,
                             int n, char *err);
/* Closes the file and frees m. NULL: no-op. */
void run_metrics_close(run_metrics *m);

/* The progress display: a live line rewritten in place on a terminal, plain
 * lines every `every` steps otherwise. */
typedef struct {
    FILE *f;
    int tty;
    long every;
    long total;
    int dirty;          /* a live line is on screen */
} run_progress;

/* Starts the display on f (a terminal gets a live line; NULL: silent) for `total` steps. */
void run_progress_init(run_progress *p, FILE *f, long total, long every);
/* Shows row r with the estimated time left. */
void run_progress_step(run_progress *p, const run_metrics_row *r, double eta_s);
/* Prints a full line (moving off a live line first). */
void run_progress_note(run_progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* mkdir -p. Returns 0 or -1 with err. */
int run_mkdirs(const char *path, char *err);

#endif
