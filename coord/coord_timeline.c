/* coord_timeline.c — the coordinator's reading of a run's trace: the schedule
 * that ran, measured (scheduler/sched_measure.c: step time, bubble per stage,
 * mean action costs, transfer latency), the measured timeline of one
 * representative step drawn like the simulator's (OUT/timeline.svg), the
 * prediction for the same schedule calibrated with the run's own costs
 * (OUT/timeline-predicted.svg), the costs themselves (OUT/costs.json, read by
 * `pipetrain schedule --calibrate OUT`) and the "timing" object of summary.json.
 * Not here: gathering the events (coord_trace.c). */
#include "coord/coord_timeline.h"
#include "model/util.h"
#include "scheduler/sched.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The schedule the stages ran: the one stage/runtime_run.c builds. */
static sched_schedule *ran_schedule(const topo *t, char *err)
{
    sched_schedule *s = NULL;
    topo_build_schedule(t, NULL, &s, err);
    return s;
}

/* The trace's events as the scheduler's: compute actions and tensor waits. */
static sched_event *to_sched_events(const topo *t, proto_event *const *ev, const size_t *n_ev, size_t *n)
{
    size_t total = 0;
    for (int k = 0; k < t->n_stages; k++) total += n_ev[k];
    sched_event *out = malloc((total + 1) * sizeof *out);
    if (!out) return NULL;
    *n = 0;
    for (int k = 0; k < t->n_stages; k++)
        for (size_t i = 0; i < n_ev[k]; i++) {
            const proto_event *e = &ev[k][i];
            int wait = e->op == PROTO_EV_WAIT;
            if (!wait && e->op > SCHED_W) continue; /* sends: not measured here */
            out[(*n)++] = (sched_event){ k, wait, wait ? e->kind : e->op, e->chunk, e->mb, (long)e->step, e->t0, e->t1 };
        }
    return out;
}

/* Per-unit times (ms, each unit's median call) from the stages' PROTO_EV_UNIT events into u[0..3U)
 * (F, B, W of unit i at [i], [U+i], [2U+i]); 1 when every unit has all three,
 * else 0 (an older stage, a unit not timed: costs.json then has no "units"). */
static int unit_times(const topo *t, proto_event *const *ev, const size_t *n_ev, double *u)
{
    int U = topo_n_units(t), have = 0;
    double *calls = calloc(3 * (size_t)U, sizeof(double));
    if (!calls) return 0;
    for (int k = 0; k < t->n_stages; k++) /* replica 0's pipeline, as the timeline */
        for (size_t i = 0; i < n_ev[k]; i++) {
            const proto_event *e = &ev[k][i];
            if (e->op != PROTO_EV_UNIT || e->kind > SCHED_W || e->chunk >= U || !e->mb) continue;
            u[(size_t)e->kind * (size_t)U + e->chunk] = 1e3 * (e->t1 - e->t0); /* the median call */
            calls[(size_t)e->kind * (size_t)U + e->chunk] = e->mb;
        }
    have = 1;
    for (int i = 0; i < 3 * U; i++) have &= calls[i] > 0;
    free(calls);
    return have;
}

static int by_t0(const void *a, const void *b)
{
    const double *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* The bandwidth each pipeline link saw (issue 14), bytes per ms into bw[P]
 * (0 = no send on it): per link (stage i to i+1 mod P, both directions; with
 * 2 stages one link), the encoded bytes of its sends (topo_wire_bytes) over the
 * union of their spans (post to observed completion), steps after the first.
 * A send completes once the kernel holds it, so on a fast link with large
 * socket buffers this is an upper bound. Returns 1 when any link had a send. */
static int link_bandwidth(const topo *t, proto_event *const *ev, const size_t *n_ev, double *bw)
{
    int P = t->n_stages, any = 0;
    size_t total = 0;
    for (int k = 0; k < P; k++) total += n_ev[k];
    double *iv = malloc((2 * total + 2) * sizeof(double));
    if (!iv) return 0;
    for (int pair = 0; pair < P; pair++) {
        size_t n = 0;
        double bytes = 0;
        for (int k = 0; k < P; k++)
            for (size_t i = 0; i < n_ev[k]; i++) {
                const proto_event *e = &ev[k][i];
                if (e->op != PROTO_EV_SEND || e->step < 1 || e->chunk >= t->stages[k].n_chunks) continue;
                int vs = t->stages[k].chunks[e->chunk].virtual_stage, fwd = e->kind == SCHED_F;
                int tv = fwd ? vs : vs - 1, c2, dst = topo_stage_of_virtual(t, fwd ? vs + 1 : vs - 1, NULL);
                int st = topo_stage_of_virtual(t, tv, &c2);
                if (tv < 0 || st < 0 || dst < 0 || dst == k) continue;
                int up = dst == (k + 1) % P, pr = P == 2 ? 0 : up ? k : dst;
                if (pr != pair) continue;
                const topo_chunk *ch = &t->stages[st].chunks[c2];
                bytes += (double)topo_wire_bytes(t, ch->first_unit + ch->n_units - 1, !fwd);
                iv[2 * n] = e->t0;
                iv[2 * n + 1] = e->t1;
                n++;
            }
        bw[pair] = 0;
        if (!n) continue;
        qsort(iv, n, 2 * sizeof(double), by_t0);
        double busy = 0, a = iv[0], b = iv[1];
        for (size_t i = 1; i < n; i++) {
            if (iv[2 * i] > b) {
                busy += b - a;
                a = iv[2 * i];
                b = iv[2 * i + 1];
            } else if (iv[2 * i + 1] > b) b = iv[2 * i + 1];
        }
        busy += b - a;
        if (busy > 0) { bw[pair] = bytes / (busy * 1e3); any = 1; }
    }
    free(iv);
    return any;
}

/* Writes path via path.tmp: the SVG of r (title) or, when r is NULL, costs c
 * (with the per-unit times units[0..3 n_units) when n_units > 0). */
static int write_out(const char *path, const sched_schedule *s, const sched_report *r, const char *title,
                     const sched_costs *c, long steps, const double *units, int n_units, char *err)
{
    char tmp[4300], serr[SCHED_ERR_LEN];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return seterr(err, "%s: %s", tmp, strerror(errno)), 1;
    int rc = r ? sched_render_svg_titled(s, r, f, "ms", title, serr)
               : sched_costs_write_json_units(c, s->n_stages, s->n_chunks, steps, units, units + n_units,
                                              units + 2 * n_units, n_units, f, serr);
    rc |= fclose(f);
    if (rc || rename(tmp, path)) {
        remove(tmp);
        return seterr(err, "%s: cannot write it", path), 1;
    }
    return 0;
}

static json_t *num_array(const double *v, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_real(v[i]));
    return a;
}

static json_t *timing_json(const sched_measured *m, const sched_report *pred, int V)
{
    const sched_costs *c = m->costs;
    double rel = m->step_time > 0 ? (pred->step_time - m->step_time) / m->step_time : 0;
    return json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:f,s:f,s:f,s:f,s:o,s:f,s:o,s:{s:o,s:o,s:o,s:f,s:I}}", "step_span",
                     "compute actions only: the step's first action start to its last action end, all stages",
                     "steps_measured", (json_int_t)m->n_steps, "steps_used", (json_int_t)m->n_used,
                     "first_step", (json_int_t)m->first_step + 1,
                     "last_step", (json_int_t)m->last_step + 1, "representative_step", (json_int_t)m->rep_step + 1,
                     "measured_step_ms", m->step_time, "predicted_step_ms", pred->step_time,
                     "prediction_error", rel, "measured_bubble", m->bubble, "measured_bubble_stage",
                     num_array(m->bubble_stage, m->n_stages), "predicted_bubble", pred->bubble,
                     "predicted_bubble_stage", num_array(pred->bubble_stage, m->n_stages), "costs_ms", "f",
                     num_array(c->f, V), "b", num_array(c->b, V), "w", num_array(c->w, V), "latency", c->latency,
                     "latency_samples", (json_int_t)m->n_latency);
}

int coord_timeline(const topo *t, const char *out_dir, proto_event *const *ev, const size_t *n_ev, json_t **timing,
                   char *err)
{
    char serr[SCHED_ERR_LEN], path[4200], title[256];
    sched_measured *m = NULL;
    sched_report *pred = NULL;
    size_t n = 0;
    int rc = 1;
    *timing = NULL;
    sched_schedule *s = ran_schedule(t, err);
    sched_event *sev = s ? to_sched_events(t, ev, n_ev, &n) : NULL;
    if (!s) return 1;
    if (!sev) { seterr(err, "out of memory"); goto done; }
    if (sched_measure(s, sev, n, &m, serr) || sched_simulate(s, m->costs, 1, &pred, serr)) {
        seterr(err, "measuring the trace: %s", serr);
        goto done;
    }
    snprintf(title, sizeof title, "measured %s, step %ld (median of steps %ld-%ld)", s->kind, m->rep_step + 1,
             m->first_step + 1, m->last_step + 1);
    snprintf(path, sizeof path, "%s/timeline.svg", out_dir);
    if (write_out(path, s, m->timeline, title, NULL, 0, NULL, 0, err)) goto done;
    snprintf(title, sizeof title, "predicted %s (costs measured in this run)", s->kind);
    snprintf(path, sizeof path, "%s/timeline-predicted.svg", out_dir);
    if (write_out(path, s, pred, title, NULL, 0, NULL, 0, err)) goto done;
    snprintf(path, sizeof path, "%s/costs.json", out_dir);
    int U = topo_n_units(t);
    double *units = calloc(3 * (size_t)U, sizeof(double));
    int nu = units && unit_times(t, ev, n_ev, units) ? U : 0;
    double *lbw = calloc((size_t)t->n_stages, sizeof(double));
    if (lbw && link_bandwidth(t, ev, n_ev, lbw)) m->costs->link_bandwidth = lbw; /* freed with the costs */
    else free(lbw);
    int bad = write_out(path, s, NULL, NULL, m->costs, m->n_used, units, nu, err);
    free(units);
    if (bad) goto done;
    if (!(*timing = timing_json(m, pred, s->n_stages * s->n_chunks))) seterr(err, "out of memory");
    else rc = 0;
done:
    sched_report_free(pred);
    sched_measured_free(m);
    free(sev);
    sched_free(s);
    return rc;
}
