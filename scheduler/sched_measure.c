/* sched_measure.c — what a run's measured events say about its schedule: the
 * step time (median span of a step's compute actions), the bubble per stage and
 * overall, median F/B/W costs per virtual stage and a transfer latency (to calibrate
 * sched_simulate), and one representative step as a report the SVG renderer can
 * draw; plus the costs file (costs.json) that carries calibrated costs from a run
 * to `pipetrain schedule --calibrate`. Pure: events come in as plain data. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/sched_int.h"

void sched_measured_free(sched_measured *m)
{
    if (!m) return;
    free(m->bubble_stage);
    sched_costs_free(m->costs);
    sched_report_free(m->timeline);
    free(m);
}

/* Sorts event indices by step (ties: input order). */
static int by_step(const void *a, const void *b, void *ctx)
{
    const sched_event *g_ev = ctx;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    if (g_ev[i].step != g_ev[j].step) return g_ev[i].step < g_ev[j].step ? -1 : 1;
    return i < j ? -1 : i > j;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    size_t key;       /* op * V + virtual stage */
    double d;         /* seconds, overhead included */
} cost_sample;

static int by_sample(const void *a, const void *b)
{
    const cost_sample *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return x->d < y->d ? -1 : x->d > y->d;
}

typedef struct {
    const sched_schedule *s;
    int P, V, M;
    double *span;     /* (steps) */
    double *busy;     /* (P) summed over measured steps */
    cost_sample *smp; /* one per compute event of the steps used */
    size_t n_smp, cap_smp;
    double *done;     /* (2 V M) end of F / B of (vs, mb) in the current step, or NAN */
    double *lat;      /* latency samples */
    size_t n_lat, cap_lat;
} acc;

static int event_ok(const acc *a, const sched_event *e)
{
    return e->stage >= 0 && e->stage < a->P && e->chunk < a->s->n_chunks && e->mb < (uint32_t)a->M &&
           e->op <= SCHED_W && e->t1 >= e->t0;
}

/* The stage's time after compute event g[i] until its next event in the step
 * (posting the action's send, a preempted thread): the runtime's overhead of the
 * action, counted in its cost and as busy time. */
static double overhead(const sched_event *ev, const size_t *g, size_t n, size_t i)
{
    const sched_event *e = &ev[g[i]], *nx = i + 1 < n ? &ev[g[i + 1]] : NULL;
    return nx && nx->stage == e->stage && nx->t0 > e->t1 ? nx->t0 - e->t1 : 0;
}

/* Span of one step's compute events g[0..n). */
static double step_span(const sched_event *ev, const size_t *g, size_t n)
{
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (!ev[g[i]].wait) lo = fmin(lo, ev[g[i]].t0), hi = fmax(hi, ev[g[i]].t1);
    return hi > lo ? hi - lo : 0;
}

/* One step's events g[0..n): span, busy, costs and latency samples. */
static int measure_step(acc *a, const sched_event *ev, const size_t *g, size_t n, double *span)
{
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < 2 * (size_t)a->V * (size_t)a->M; i++) a->done[i] = NAN;
    for (size_t i = 0; i < n; i++) {
        const sched_event *e = &ev[g[i]];
        if (e->wait) continue;
        size_t k = sched_vstage(a->s, e->stage, e->chunk);
        lo = fmin(lo, e->t0);
        hi = fmax(hi, e->t1);
        double d = e->t1 - e->t0 + overhead(ev, g, n, i);
        a->busy[e->stage] += d;
        if (a->n_smp == a->cap_smp) {
            a->cap_smp = a->cap_smp ? 2 * a->cap_smp : 4096;
            cost_sample *g2 = realloc(a->smp, a->cap_smp * sizeof *g2);
            if (!g2) return -1;
            a->smp = g2;
        }
        a->smp[a->n_smp++] = (cost_sample){ (size_t)e->op * (size_t)a->V + k, d };
        if (e->op != SCHED_W) a->done[(size_t)e->op * a->V * a->M + k * a->M + e->mb] = e->t1;
    }
    *span = hi > lo ? hi - lo : 0;
    for (size_t i = 0; i < n; i++) {
        const sched_event *e = &ev[g[i]];
        if (!e->wait || e->t1 - e->t0 < 20e-6) continue; /* the tensor was already there */
        long k = (long)sched_vstage(a->s, e->stage, e->chunk) + (e->op == SCHED_F ? -1 : 1);
        if (k < 0 || k >= a->V) continue;
        double t = a->done[(size_t)(e->op == SCHED_F ? 0 : 1) * a->V * a->M + (size_t)k * a->M + e->mb];
        if (isnan(t)) continue;
        if (a->n_lat == a->cap_lat) {
            a->cap_lat = a->cap_lat ? 2 * a->cap_lat : 1024;
            double *g2 = realloc(a->lat, a->cap_lat * sizeof *g2);
            if (!g2) return -1;
            a->lat = g2;
        }
        a->lat[a->n_lat++] = fmax(0, e->t1 - t);
    }
    return 0;
}

/* An empty report for s with start/end set to NAN, and idx[(op * V + k) * M + mb]
 * the index of the action that op of (virtual stage k, mb) belongs to (-1: none;
 * a BW for B and W). NULL when out of memory. */
static sched_report *report_alloc(const sched_schedule *s, long *idx)
{
    int P = s->n_stages, V = P * s->n_chunks, M = s->n_micro;
    sched_report *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->n_stages = P;
    r->peak_mb = calloc((size_t)P, sizeof *r->peak_mb);
    r->busy = calloc((size_t)P, sizeof *r->busy);
    r->bubble_stage = calloc((size_t)P, sizeof *r->bubble_stage);
    r->peak_bytes = calloc((size_t)P, sizeof *r->peak_bytes);
    r->start = calloc((size_t)P, sizeof *r->start);
    r->end = calloc((size_t)P, sizeof *r->end);
    if (!r->peak_mb || !r->busy || !r->bubble_stage || !r->peak_bytes || !r->start || !r->end) goto oom;
    for (size_t i = 0; i < 3 * (size_t)V * (size_t)M; i++) idx[i] = -1;
    for (int st = 0; st < P; st++) {
        r->start[st] = malloc((s->len[st] + 1) * sizeof(double));
        r->end[st] = malloc((s->len[st] + 1) * sizeof(double));
        if (!r->start[st] || !r->end[st]) goto oom;
        for (size_t i = 0; i < s->len[st]; i++) {
            sched_action a = s->act[st][i];
            size_t k = sched_vstage(s, st, a.chunk) * (size_t)M + a.mb;
            r->start[st][i] = r->end[st][i] = NAN;
            if (a.op == SCHED_F || a.op == SCHED_B || a.op == SCHED_W) idx[(size_t)a.op * V * M + k] = (long)i;
            if (a.op == SCHED_BW) idx[(size_t)SCHED_B * V * M + k] = idx[(size_t)SCHED_W * V * M + k] = (long)i;
        }
    }
    return r;
oom:
    sched_report_free(r);
    return NULL;
}

/* The representative step's events as a report parallel to s->act (ms from 0). */
static sched_report *step_report(const sched_schedule *s, const sched_event *ev, const size_t *g, size_t n,
                                 char *err)
{
    int P = s->n_stages, V = P * s->n_chunks, M = s->n_micro;
    long *idx = malloc(3 * (size_t)V * (size_t)M * sizeof *idx);
    sched_report *r = idx ? report_alloc(s, idx) : NULL;
    if (!r) {
        free(idx);
        sched_seterr(err, "out of memory");
        return NULL;
    }
    double t0 = INFINITY, t1 = -INFINITY;
    for (size_t j = 0; j < n; j++)
        if (!ev[g[j]].wait) t0 = fmin(t0, ev[g[j]].t0), t1 = fmax(t1, ev[g[j]].t1);
    for (size_t j = 0; j < n; j++) {
        const sched_event *e = &ev[g[j]];
        if (e->wait) continue;
        long i = idx[(size_t)e->op * V * M + sched_vstage(s, e->stage, e->chunk) * (size_t)M + e->mb];
        if (i < 0) {
            sched_seterr(err, "stage %d ran %s(%u, chunk %u), which its schedule does not have", e->stage,
                         e->op == SCHED_F ? "F" : e->op == SCHED_B ? "B" : "W", e->mb, (unsigned)e->chunk);
            goto fail;
        }
        sched_action a = s->act[e->stage][i];
        if (a.op != SCHED_BW || e->op == SCHED_B) r->start[e->stage][i] = (e->t0 - t0) * 1e3;
        if (a.op != SCHED_BW || e->op == SCHED_W) r->end[e->stage][i] = (e->t1 - t0) * 1e3;
        r->busy[e->stage] += (e->t1 - e->t0 + overhead(ev, g, n, j)) * 1e3;
    }
    r->step_time = (t1 - t0) * 1e3;
    double busy = 0;
    for (int st = 0; st < P; st++) {
        for (size_t i = 0; i < s->len[st]; i++)
            if (isnan(r->start[st][i]) || isnan(r->end[st][i])) {
                char an[64];
                sched_seterr(err, "step %ld: stage %d has no measured time for %s", ev[g[0]].step + 1, st,
                             sched_action_name(s->act[st][i], s->n_chunks, an, sizeof an));
                goto fail;
            }
        r->bubble_stage[st] = r->step_time > 0 ? 1 - r->busy[st] / r->step_time : 0;
        busy += r->busy[st];
    }
    r->bubble = r->step_time > 0 ? 1 - busy / (P * r->step_time) : 0;
    free(idx);
    return r;
fail:
    free(idx);
    sched_report_free(r);
    return NULL;
}

static void acc_free(acc *a)
{
    free(a->span);
    free(a->busy);
    free(a->smp);
    free(a->done);
    free(a->lat);
}

/* Fills m from the sums over the steps used, whose spans add up to total. */
static void finish(sched_measured *m, acc *a, double total)
{
    double busy = 0;
    for (int st = 0; st < a->P; st++) {
        m->bubble_stage[st] = total > 0 ? 1 - a->busy[st] / total : 0;
        busy += a->busy[st];
    }
    m->bubble = total > 0 ? 1 - busy / (a->P * total) : 0;
    /* median cost of each (op, virtual stage): robust to a preempted action */
    qsort(a->smp, a->n_smp, sizeof *a->smp, by_sample);
    double *dst[3] = { m->costs->f, m->costs->b, m->costs->w };
    for (size_t i = 0, j; i < a->n_smp; i = j) {
        for (j = i; j < a->n_smp && a->smp[j].key == a->smp[i].key; j++) {}
        size_t mid = i + (j - i - 1) / 2;
        double med = (j - i) % 2 ? a->smp[mid].d : (a->smp[mid].d + a->smp[mid + 1].d) / 2;
        dst[a->smp[i].key / (size_t)a->V][a->smp[i].key % (size_t)a->V] = 1e3 * med;
    }
    m->costs->bw_early = 1; /* the stage runtime sends a BW's gradient after its B */
    m->costs->w_in_order = 1; /* and defers a W ahead of its micro-batch turn */
    m->n_latency = (long)a->n_lat;
    if (a->n_lat) {
        qsort(a->lat, a->n_lat, sizeof *a->lat, cmp_double);
        m->costs->latency = 1e3 * a->lat[a->n_lat / 2];
    }
}

/* Groups the sorted events ix[0..m_ok) by measured step: returns (begin, count)
 * per step (caller frees; NULL when out of memory), each step's span in span[],
 * and the spans' median and quartiles. */
static size_t *group_steps(const sched_event *ev, const size_t *ix, size_t m_ok, const sched_measured *m,
                           double *span, double *med, double *q1, double *q3)
{
    size_t j = 0, *grp = malloc((m->n_steps + 1) * 2 * sizeof *grp);
    double *sorted = malloc((size_t)m->n_steps * sizeof *sorted);
    if (!grp || !sorted) { free(grp); free(sorted); return NULL; }
    while (j < m_ok && ev[ix[j]].step < m->first_step) j++;
    for (long st = 0; st < m->n_steps; st++) {
        size_t b = j;
        while (j < m_ok && ev[ix[j]].step == m->first_step + st) j++;
        grp[2 * st] = b;
        grp[2 * st + 1] = j - b;
        sorted[st] = span[st] = step_span(ev, ix + b, j - b);
    }
    qsort(sorted, (size_t)m->n_steps, sizeof *sorted, cmp_double);
    long n1 = m->n_steps - 1;
    *med = sorted[n1 / 2];
    *q1 = sorted[n1 / 4];
    *q3 = sorted[3 * n1 / 4 + (n1 % 4 ? 1 : 0)];
    free(sorted);
    return grp;
}

int sched_measure(const sched_schedule *s, const sched_event *ev, size_t n, sched_measured **out, char *err)
{
    *out = NULL;
    acc a = { .s = s, .P = s->n_stages, .V = s->n_stages * s->n_chunks, .M = s->n_micro };
    size_t *ix = malloc((n + 1) * sizeof *ix), m_ok = 0;
    sched_measured *m = calloc(1, sizeof *m);
    if (!ix || !m) goto oom;
    for (size_t i = 0; i < n; i++)
        if (event_ok(&a, &ev[i]) && !(ev[i].wait && ev[i].op == SCHED_W)) ix[m_ok++] = i;
    if (!m_ok) { sched_seterr(err, "no events to measure"); goto fail; }
    qsort_r(ix, m_ok, sizeof *ix, by_step, (void *)ev);
    long first = ev[ix[0]].step, last = ev[ix[m_ok - 1]].step;
    /* 2bw: the run's first step also fills the pipeline and its last drains it
     * (sched_2bw_step); the steps between run the list itself */
    if (sched_is_cross_step(s) && last - first >= 2) last--;
    m->n_stages = a.P;
    m->first_step = first < last ? first + 1 : first;
    m->last_step = last;
    m->n_steps = last - m->first_step + 1;
    a.span = calloc((size_t)m->n_steps, sizeof *a.span);
    a.busy = calloc((size_t)a.P, sizeof *a.busy);
    a.done = malloc(2 * (size_t)a.V * (size_t)a.M * sizeof *a.done);
    m->bubble_stage = calloc((size_t)a.P, sizeof *m->bubble_stage);
    m->costs = sched_costs_new(a.V);
    if (!a.span || !a.busy || !a.done || !m->bubble_stage || !m->costs)
        goto oom;
    double med, q1, q3, total = 0, span;
    size_t *grp = group_steps(ev, ix, m_ok, m, a.span, &med, &q1, &q3);
    if (!grp) goto oom;
    for (long st = 0; st < m->n_steps; st++) { /* the steps of ordinary length */
        if (a.span[st] < q1 || a.span[st] > q3) continue;
        if (measure_step(&a, ev, ix + grp[2 * st], grp[2 * st + 1], &span)) { free(grp); goto oom; }
        total += span;
        m->n_used++;
    }
    long rep = 0;
    while (rep < m->n_steps - 1 && a.span[rep] != med) rep++;
    m->rep_step = m->first_step + rep;
    m->step_time = 1e3 * med;
    finish(m, &a, total);
    m->timeline = step_report(s, ev, ix + grp[2 * rep], grp[2 * rep + 1], err);
    free(grp);
    if (!m->timeline) goto fail;
    acc_free(&a);
    free(ix);
    *out = m;
    return 0;
oom:
    sched_seterr(err, "out of memory");
fail:
    acc_free(&a);
    free(ix);
    sched_measured_free(m);
    return -1;
}

/* ---- costs.json ---- */

static json_t *num_array(const double *v, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_real(v[i]));
    return a;
}

int sched_costs_write_json(const sched_costs *c, int n_stages, int n_chunks, long steps, FILE *f, char *err)
{
    return sched_costs_write_json_units(c, n_stages, n_chunks, steps, NULL, NULL, NULL, 0, f, err);
}

int sched_costs_write_json_units(const sched_costs *c, int n_stages, int n_chunks, long steps, const double *uf,
                                 const double *ub, const double *uw, int n_units, FILE *f, char *err)
{
    json_t *j = json_pack("{s:i,s:s,s:i,s:i,s:I,s:o,s:o,s:o,s:f,s:f,s:b,s:b}", "version", 1, "unit", "ms", "stages",
                          n_stages, "chunks", n_chunks, "steps", (json_int_t)steps, "f", num_array(c->f, c->n), "b",
                          num_array(c->b, c->n), "w", num_array(c->w, c->n), "latency", c->latency, "bandwidth",
                          c->bandwidth, "bw_early", c->bw_early, "w_in_order", c->w_in_order);
    if (!j) return sched_seterr(err, "out of memory");
    if (c->link_bandwidth && json_object_set_new(j, "link_bandwidth", num_array(c->link_bandwidth, n_stages))) {
        json_decref(j);
        return sched_seterr(err, "out of memory");
    }
    if (n_units > 0 &&
        json_object_set_new(j, "units", json_pack("{s:o,s:o,s:o}", "f", num_array(uf, n_units), "b",
                                                  num_array(ub, n_units), "w", num_array(uw, n_units)))) {
        json_decref(j);
        return sched_seterr(err, "out of memory");
    }
    int rc = json_dumpf(j, f, JSON_INDENT(2)) || fputc('\n', f) == EOF || ferror(f);
    json_decref(j);
    return rc ? sched_seterr(err, "write error") : 0;
}

/* The largest time a costs file may give (ms, one action or transfer: 11.6 days).
 * Sums of such values over a step stay finite; beyond it the simulator's step
 * time overflows to inf and the balancer finds no split (it blamed the memory). */
#define COSTS_MAX_MS 1e9

/* A cost or latency v read from key: a finite number in 0..max. */
static int cost_ok(json_t *v, double max)
{
    return json_is_number(v) && isfinite(json_number_value(v)) && json_number_value(v) >= 0 &&
           json_number_value(v) <= max;
}

/* Reads n numbers of key into dst, each in 0..max (INFINITY: any finite one). */
static int read_array(json_t *root, const char *key, double *dst, int n, double max, const char *path, char *err)
{
    json_t *a = json_object_get(root, key);
    if (!json_is_array(a) || (int)json_array_size(a) != n)
        return sched_seterr(err, "%s: \"%s\": expected an array of %d numbers (one per virtual stage)", path, key, n);
    for (int i = 0; i < n; i++) {
        json_t *v = json_array_get(a, (size_t)i);
        if (!cost_ok(v, max)) {
            if (isinf(max)) return sched_seterr(err, "%s: \"%s\"[%d]: expected a number >= 0", path, key, i);
            return sched_seterr(err, "%s: \"%s\"[%d]: expected a number >= 0 and at most %g (ms)", path, key, i,
                                max);
        }
        dst[i] = json_number_value(v);
    }
    return 0;
}

int sched_costs_load_units(const char *path, int n_units, double *uf, double *ub, double *uw, char *err)
{
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je), *u;
    if (!root) return sched_seterr(err, "%s: %s (line %d)", path, je.text, je.line);
    int rc = 0;
    if (!(u = json_object_get(root, "units"))) goto done;
    if (!json_is_object(u)) {
        rc = sched_seterr(err, "%s: \"units\": expected an object {\"f\", \"b\", \"w\"}", path);
        goto done;
    }
    const char *keys[3] = { "f", "b", "w" };
    double *dst[3] = { uf, ub, uw };
    for (int k = 0; k < 3; k++) {
        json_t *a = json_object_get(u, keys[k]);
        if (!json_is_array(a) || (int)json_array_size(a) != n_units) {
            rc = sched_seterr(err, "%s: \"units\".\"%s\": expected an array of %d numbers (one per unit of the "
                              "model: embedding, blocks, head), got %zu%s", path, keys[k], n_units,
                              json_is_array(a) ? json_array_size(a) : 0, json_is_array(a) ? "" : " (no array)");
            goto done;
        }
        for (int i = 0; i < n_units; i++) {
            json_t *v = json_array_get(a, (size_t)i);
            if (!cost_ok(v, COSTS_MAX_MS)) {
                rc = sched_seterr(err, "%s: \"units\".\"%s\"[%d]: expected a number >= 0 and at most %g (ms)", path,
                                  keys[k], i, COSTS_MAX_MS);
                goto done;
            }
            dst[k][i] = json_number_value(v);
        }
    }
    rc = 1;
done:
    json_decref(root);
    return rc;
}

sched_costs *sched_costs_load(const char *path, int *n_stages, int *n_chunks, char *err)
{
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    sched_costs *c = NULL;
    if (!root) {
        sched_seterr(err, "%s: %s (line %d)", path, je.text, je.line);
        return NULL;
    }
    json_t *p = json_object_get(root, "stages"), *v = json_object_get(root, "chunks");
    json_t *lat = json_object_get(root, "latency"), *bw = json_object_get(root, "bandwidth");
    if (!json_is_integer(p) || !json_is_integer(v) || json_integer_value(p) < 1 || json_integer_value(v) < 1 ||
        json_integer_value(p) * json_integer_value(v) > (1 << 24)) {
        sched_seterr(err, "%s: \"stages\" and \"chunks\": expected positive integers", path);
        goto done;
    }
    *n_stages = (int)json_integer_value(p);
    *n_chunks = (int)json_integer_value(v);
    if (!(c = sched_costs_new(*n_stages * *n_chunks))) {
        sched_seterr(err, "out of memory");
        goto done;
    }
    if (read_array(root, "f", c->f, c->n, COSTS_MAX_MS, path, err) ||
        read_array(root, "b", c->b, c->n, COSTS_MAX_MS, path, err) ||
        read_array(root, "w", c->w, c->n, COSTS_MAX_MS, path, err)) {
        sched_costs_free(c);
        c = NULL;
        goto done;
    }
    json_t *lb = json_object_get(root, "link_bandwidth");
    if (lb) {
        if (!(c->link_bandwidth = calloc((size_t)*n_stages, sizeof(double)))) {
            sched_seterr(err, "out of memory");
            sched_costs_free(c);
            c = NULL;
            goto done;
        }
        if (read_array(root, "link_bandwidth", c->link_bandwidth, *n_stages, INFINITY, path, err)) {
            sched_costs_free(c);
            c = NULL;
            goto done;
        }
    }
    /* absent: 0 (older files); present, a number in range */
    int bad_lat = lat && !cost_ok(lat, COSTS_MAX_MS), bad_bw = bw && !cost_ok(bw, INFINITY);
    if (bad_lat || bad_bw) {
        if (bad_lat) sched_seterr(err, "%s: \"latency\": expected a number >= 0 and at most %g (ms)", path, COSTS_MAX_MS);
        else sched_seterr(err, "%s: \"bandwidth\": expected a number >= 0", path);
        sched_costs_free(c);
        c = NULL;
        goto done;
    }
    c->latency = lat ? json_number_value(lat) : 0;
    c->bandwidth = bw ? json_number_value(bw) : 0;
    c->bw_early = json_is_true(json_object_get(root, "bw_early"));
    c->w_in_order = json_is_true(json_object_get(root, "w_in_order"));
done:
    json_decref(root);
    return c;
}
