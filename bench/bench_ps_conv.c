/* bench_ps_conv.c — `pipetrain bench ps --convergence --out DIR` (issue 12):
 * the Shakespeare recipe (--topology, default topologies/shakespeare-ps.json:
 * 2 stages x 2 workers, 2 servers) trained twice for the same steps, hence the
 * same samples: synchronously (ps.staleness 0) and with staleness 2, 8
 * evaluations each (--quick: 2 of 2 batches, a functional check). Both
 * loss curves, by samples seen, go into DIR/convergence.svg (the project's
 * loss-curve writer, run_metrics_write_curves); the figures into
 * DIR/convergence.json and stdout. The runs themselves stay in the bench's
 * temporary directory (--keep keeps them). Not here: throughput (bench_ps.c). */
#include "bench/bench_ps_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "run/run_metrics.h"

enum { SMOOTH_STEPS = 10 };

typedef struct {
    const char *name, *label;
    long s;
    bps_row *rows;
    size_t n;
    run_metrics_row *curve;
    double final_val, final_samples, wall_s;
    json_t *val; /* [[samples, val_loss], ...] */
} conv_run;

/* The recipe with free ports, --steps, 8 evaluations, no checkpoints but the
 * last, and the given staleness. */
static json_t *make_topo(const bps *b, long s, char *err)
{
    json_t *j = json_deep_copy(b->base);
    json_t *st = json_object_get(j, "stages"), *sv = json_object_get(j, "parameter_servers");
    int n = 0, ports[16];
    for (size_t k = 0; k < json_array_size(st); k++)
        n += (int)json_array_size(json_object_get(json_array_get(st, k), "replicas"));
    n += (int)json_array_size(sv);
    if (n > 16 || bps_free_ports(n, ports, err)) {
        if (n > 16) seterr(err, "%s: more than 16 processes", b->o.topology);
        json_decref(j);
        return NULL;
    }
    int i = 0;
    for (size_t k = 0; k < json_array_size(st); k++) {
        json_t *reps = json_object_get(json_array_get(st, k), "replicas");
        for (size_t r = 0; r < json_array_size(reps); r++)
            json_object_set_new(json_array_get(reps, r), "port", json_integer(ports[i++]));
    }
    for (size_t k = 0; k < json_array_size(sv); k++)
        json_object_set_new(json_array_get(sv, k), "port", json_integer(ports[i++]));
    json_object_del(j, "secret_file");
    json_object_set_new(j, "description", json_string("bench ps --convergence (generated)"));
    json_object_set_new(json_object_get(j, "data"), "path", json_string(b->data));
    json_t *tr = json_object_get(j, "train");
    json_object_set_new(tr, "steps", json_integer(b->o.steps));
    json_object_set_new(tr, "eval_every", json_integer(b->o.steps / 8 > 0 ? b->o.steps / 8 : 1));
    if (b->o.quick) { /* a functional check: two short evaluations */
        json_object_set_new(tr, "eval_every", json_integer(b->o.steps / 2));
        json_object_set_new(tr, "eval_batches", json_integer(2));
    }
    json_object_set_new(j, "checkpoint", json_pack("{s:s,s:i,s:i}", "dir", "checkpoints", "every", 0, "keep", 1));
    json_object_set_new(j, "coordinator", json_pack("{s:s,s:i}", "host", "127.0.0.1", "port", 0));
    json_object_set_new(j, "launch", json_string("local"));
    json_object_set_new(j, "ps", json_pack("{s:I}", "staleness", (json_int_t)s));
    return j;
}

/* The run's curve by samples seen: a synchronous step is B samples, an
 * asynchronous worker-step B/R; training loss as the mean over the latest
 * SMOOTH_STEPS steps' samples (a worker-step's loss is over half as many). */
static void build_curve(conv_run *c, int B, int R)
{
    c->curve = xcalloc(c->n, sizeof *c->curve);
    c->val = json_array();
    double samples = 0;
    int sync = c->n && c->rows[0].worker < 0, win = sync ? SMOOTH_STEPS : SMOOTH_STEPS * R;
    c->final_val = NAN;
    for (size_t i = 0; i < c->n; i++) {
        samples += sync ? B : (double)B / R;
        double sum = 0;
        int k = 0;
        for (size_t q = i + 1; q-- > 0 && k < win;) if (isfinite(c->rows[q].loss)) { sum += c->rows[q].loss; k++; }
        c->curve[i] = (run_metrics_row){ .step = (long)samples, .loss = k ? sum / k : NAN,
                                         .val_loss = c->rows[i].val_loss };
        if (isfinite(c->rows[i].val_loss)) {
            json_array_append_new(c->val, json_pack("[f,f]", samples, c->rows[i].val_loss));
            c->final_val = c->rows[i].val_loss;
            c->final_samples = samples;
        }
    }
}

int bps_convergence(bps *b)
{
    conv_run runs[2] = { { .name = "sync", .label = "staleness 0 (synchronous)", .s = 0 },
                         { .name = "staleness-2", .label = "staleness 2", .s = 2 } };
    char err[ERR_LEN], out[PATH_MAX + 64];
    int rc = 0, B = b->t.train.batch_size, R = b->t.n_replicas;
    if (b->t.sync_id != TOPO_SYNC_PS || R < 2) {
        fprintf(stderr, "pipetrain bench ps: %s: --convergence needs a \"sync\": \"ps\" topology with 2 or more "
                "replicas (workers)\n", b->o.topology);
        return 2;
    }
    if (run_mkdirs(b->o.out, err)) { fprintf(stderr, "pipetrain bench ps: %s\n", err); return 2; }
    double load0[3] = { 0 }, load1[3] = { 0 };
    getloadavg(load0, 3);
    for (int i = 0; i < 2 && !rc; i++) {
        conv_run *c = &runs[i];
        if (!b->o.json) fprintf(stderr, "bench ps: convergence run %d/2: %s, %d steps\n", i + 1, c->label, b->o.steps);
        json_t *j = make_topo(b, c->s, err);
        snprintf(out, sizeof out, "%s/%s", b->tmp, c->name);
        rc = !j || bps_run(b, b->tmp, c->name, j, NULL, 600.0 + 10.0 * b->o.steps, err) ||
             !(c->rows = bps_read_rows(out, &c->n, err));
        json_decref(j);
        if (rc) { fprintf(stderr, "pipetrain bench ps: %s: %s\n", c->name, err); break; }
        build_curve(c, B, R);
        snprintf(out, sizeof out, "%s/%s/summary.json", b->tmp, c->name);
        json_t *sj = json_load_file(out, 0, NULL);
        c->wall_s = bps_num(sj, "wall_s");
        json_decref(sj);
    }
    getloadavg(load1, 3);
    if (!rc) {
        char title[160];
        snprintf(title, sizeof title, "loss by samples seen, 2 workers: synchronous vs staleness 2 (train: mean of %d "
                 "steps)", SMOOTH_STEPS);
        run_loss_curve cv[2] = { { "sync", runs[0].curve, runs[0].n, 0 }, { "s=2", runs[1].curve, runs[1].n, 1 } };
        snprintf(out, sizeof out, "%s/convergence.svg", b->o.out);
        if (run_metrics_write_curves(out, title, "samples", cv, 2, err)) {
            fprintf(stderr, "pipetrain bench ps: %s\n", err);
            rc = 1;
        }
    }
    if (!rc) {
        double rel = runs[1].final_val / runs[0].final_val - 1;
        json_t *j = json_pack("{s:s,s:s,s:i,s:i,s:i,s:[f,f,f],s:[f,f,f],s:f,s:b}", "bench", "ps-convergence",
                              "topology", b->o.topology, "steps", b->o.steps, "batch_size", B, "workers", R,
                              "loadavg_before", load0[0], load0[1], load0[2], "loadavg_after", load1[0], load1[1],
                              load1[2], "val_loss_rel_diff", rel, "within_3_percent", fabs(rel) <= 0.03);
        json_t *a = json_array();
        for (int i = 0; i < 2; i++)
            json_array_append_new(a, json_pack("{s:s,s:I,s:f,s:f,s:f,s:O}", "name", runs[i].name, "staleness",
                                               (json_int_t)runs[i].s, "final_val_loss", runs[i].final_val,
                                               "final_val_samples", runs[i].final_samples, "wall_s", runs[i].wall_s,
                                               "val_loss", runs[i].val));
        json_object_set_new(j, "runs", a);
        snprintf(out, sizeof out, "%s/convergence.json", b->o.out);
        if (json_dump_file(j, out, JSON_INDENT(2))) {
            fprintf(stderr, "pipetrain bench ps: %s: cannot write\n", out);
            rc = 1;
        } else if (b->o.json) {
            char *s = json_dumps(j, JSON_COMPACT);
            printf("%s\n", s);
            free(s);
        } else {
            printf("bench ps --convergence: %s, %d steps x batch %d, %d workers\n", b->o.topology, b->o.steps, B, R);
            for (int i = 0; i < 2; i++)
                printf("  %-26s final validation loss %.4f (after %.0f samples), %.0f s\n", runs[i].label,
                       runs[i].final_val, runs[i].final_samples, runs[i].wall_s);
            printf("  staleness 2 against synchronous: %+.2f%% (target within 3%%: %s)\n", 100 * rel,
                   fabs(rel) <= 0.03 ? "met" : "NOT met");
            printf("  load average (1, 5, 15 min) before %.2f %.2f %.2f, after %.2f %.2f %.2f\n", load0[0], load0[1],
                   load0[2], load1[0], load1[1], load1[2]);
            printf("  wrote %s/convergence.svg and %s/convergence.json\n", b->o.out, b->o.out);
        }
        json_decref(j);
    }
    for (int i = 0; i < 2; i++) {
        free(runs[i].rows);
        free(runs[i].curve);
        json_decref(runs[i].val);
    }
    return rc;
}
