/* topo_calib.c — calibration from several runs (topo_calib.h): reads each run's
 * costs.json, checks that the runs measured one model on one split (their
 * summary.json "params" and "stages"[i]."layers", and the topology's), and keeps
 * the median of every cost over the runs. */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"
#include "topo/topo_calib.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return x < y ? -1 : x > y;
}

double topo_calib_median(double *v, int n)
{
    if (n < 1) return NAN;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void topo_calib_free(topo_calib *c)
{
    if (!c) return;
    for (int i = 0; c->paths && i < c->n_runs; i++) free(c->paths[i]);
    free(c->paths);
    sched_costs_free(c->costs);
    free(c->uf);
    free(c->ub);
    free(c->uw);
    for (int s = 0; c->split && s < c->n_stages; s++) free(c->split[s]);
    free(c->split);
    free(c->split_n);
    free(c->split_from);
    memset(c, 0, sizeof *c);
}

/* What one run's summary.json says about the model and the split. */
typedef struct {
    int have;
    char path[PATH_MAX];
    json_int_t params;
    char **layers; /* (P) as written, replica 0 */
} run_summary;

static void summary_free(run_summary *s, int P)
{
    for (int i = 0; s->layers && i < P; i++) free(s->layers[i]);
    free(s->layers);
    memset(s, 0, sizeof *s);
}

/* The summary.json beside costs file `costs` (the run directory's), if any.
 * Returns 0 (s->have 0 when there is none) or 2 with err. */
static int summary_load(const char *costs, int P, run_summary *s, char *err)
{
    const char *slash = strrchr(costs, '/');
    int dl = slash ? (int)(slash - costs) : 1;
    snprintf(s->path, sizeof s->path, "%.*s/summary.json", dl, slash ? costs : ".");
    FILE *f = fopen(s->path, "r");
    if (!f) return 0;
    fclose(f);
    json_error_t je;
    json_t *root = json_load_file(s->path, 0, &je), *p = json_object_get(root, "params"), *x;
    json_t *sts = json_object_get(root, "stages");
    if (!root) return seterr(err, "%s: %s (line %d)", s->path, je.text, je.line), 2;
    int rc = 2;
    if (!json_is_integer(p) || json_integer_value(p) < 0) {
        seterr(err, "%s: \"params\": expected the model's parameter count (an integer >= 0)", s->path);
        goto done;
    }
    s->params = json_integer_value(p);
    s->layers = xcalloc((size_t)P, sizeof(char *));
    size_t i;
    json_array_foreach(sts, i, x) {
        json_t *st = json_object_get(x, "stage"), *rep = json_object_get(x, "replica"), *l = json_object_get(x, "layers");
        if (rep && json_integer_value(rep) != 0) continue;
        if (!json_is_integer(st) || json_integer_value(st) < 0 || json_integer_value(st) >= P || !json_is_string(l)) {
            seterr(err, "%s: \"stages\"[%zu]: expected {\"stage\": 0..%d, \"layers\": \"...\"} (the costs file beside "
                   "it measured %d stage(s))", s->path, i, P - 1, P);
            goto done;
        }
        int k = (int)json_integer_value(st);
        free(s->layers[k]);
        s->layers[k] = xstrdup(json_string_value(l));
    }
    for (int k = 0; k < P; k++)
        if (!s->layers[k]) {
            seterr(err, "%s: \"stages\": no entry with the \"layers\" of stage %d (the costs file beside it measured "
                   "%d stage(s))", s->path, k, P);
            goto done;
        }
    s->have = 1;
    rc = 0;
done:
    json_decref(root);
    return rc;
}

/* The units of stage k of summary s, sorted, parsed for t's model. 0 or 2 with err. */
static int stage_units(const run_summary *s, int k, const topo *t, int **u, int *n, char *err)
{
    char why[ERR_LEN];
    if (topo_parse_layers(s->layers[k], t->model.n_layers, u, n, why))
        return seterr(err, "%s: \"stages\"[%d].\"layers\": %s (for %s's model of %d blocks)", s->path, k, why, t->path,
                      t->model.n_layers), 2;
    qsort(*u, (size_t)*n, sizeof **u, cmp_int);
    return 0;
}

/* Stage k of run a holds the same units as of run b (b NULL: t's stage k)? 1 yes, 0 no, 2 err. */
static int same_stage(const run_summary *a, const run_summary *b, int k, const topo *t, char *err)
{
    if (!t) return !strcmp(a->layers[k], b->layers[k]);
    int *ua = NULL, *ub = NULL, na = 0, nb = 0, rc;
    if (stage_units(a, k, t, &ua, &na, err)) return 2;
    if (b && stage_units(b, k, t, &ub, &nb, err)) { free(ua); return 2; }
    const int *other = b ? ub : t->stages[k].units;
    int no = b ? nb : t->stages[k].n_units;
    rc = na == no && !memcmp(ua, other, sizeof(int) * (size_t)na);
    free(ua);
    free(ub);
    return rc;
}

/* Checks run i's summary against the first summary (ref, NULL: none yet) and t. 0 or 2. */
static int check_summary(const run_summary *s, const run_summary *ref, const topo *t, int same_split, int P,
                         char *err)
{
    if (t) {
        json_int_t tp = 0;
        for (int u = 0; u < topo_n_units(t); u++) tp += (json_int_t)model_unit_params(&t->model, u);
        if (s->params != tp)
            return seterr(err, "%s: \"params\": the run's model has %lld parameters, %s's has %lld: calibrate from "
                          "runs of this model", s->path, (long long)s->params, t->path, (long long)tp), 2;
    }
    if (ref && s->params != ref->params)
        return seterr(err, "%s: \"params\": the run's model has %lld parameters, %s's has %lld: the runs measured "
                      "different models", s->path, (long long)s->params, ref->path, (long long)ref->params), 2;
    for (int k = 0; k < P; k++) {
        int same = ref ? same_stage(s, ref, k, t, err) : 1;
        if (same == 2) return 2;
        if (!same)
            return seterr(err, "%s: \"stages\"[%d].\"layers\": \"%s\", but %s has \"%s\": the runs used different "
                          "splits", s->path, k, s->layers[k], ref->path, ref->layers[k]), 2;
        if (!ref && t && same_split && P == t->n_stages) {
            if ((same = same_stage(s, NULL, k, t, err)) == 2) return 2;
            if (!same)
                return seterr(err, "%s: \"stages\"[%d].\"layers\": the run's stage %d held \"%s\", %s's holds \"%s\": "
                              "calibrate from runs of this split", s->path, k, k, s->layers[k], t->path,
                              t->stages[k].layers), 2;
        }
    }
    return 0;
}

/* The length of a costs file's "units"."f" (0: no "units"), or -1 with err. */
static int units_len(const char *path, char *err)
{
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je), *u = json_object_get(root, "units");
    if (!root) return seterr(err, "%s: %s (line %d)", path, je.text, je.line);
    int n = 0;
    if (u && !json_is_array(json_object_get(u, "f")))
        n = seterr(err, "%s: \"units\".\"f\": expected an array of numbers (one per unit of the model)", path);
    else if (u) n = (int)json_array_size(json_object_get(u, "f"));
    json_decref(root);
    return n;
}

/* The runs' split (from summary s) into c, checked to hold every unit once. 0 or 2. */
static int take_split(topo_calib *c, const run_summary *s, const topo *t, char *err)
{
    int U = topo_n_units(t), *seen = xcalloc((size_t)U, sizeof(int));
    c->split = xcalloc((size_t)c->n_stages, sizeof(int *));
    c->split_n = xcalloc((size_t)c->n_stages, sizeof(int));
    c->split_from = xstrdup(s->path);
    int rc = 0;
    for (int k = 0; k < c->n_stages && !rc; k++) {
        if ((rc = stage_units(s, k, t, &c->split[k], &c->split_n[k], err))) break;
        for (int i = 0; i < c->split_n[k] && !rc; i++)
            if (seen[c->split[k][i]]++) {
                seterr(err, "%s: \"stages\"[%d].\"layers\": unit %d is on two stages", s->path, k, c->split[k][i]);
                rc = 2;
            }
    }
    for (int u = 0; u < U && !rc; u++)
        if (!seen[u]) {
            seterr(err, "%s: \"stages\": no stage holds unit %d of %s's model (%d units)", s->path, u, t->path, U);
            rc = 2;
        }
    free(seen);
    return rc;
}

/* The medians over the runs' costs cs[0..n) and units us (ul[i] entries each). */
static void take_medians(topo_calib *c, sched_costs **cs, double **us, const int *ul, int n)
{
    double *v = xcalloc((size_t)n, sizeof(double));
    sched_costs *m = c->costs;
    for (int k = 0; k < m->n; k++) {
        double *dst[3] = { m->f, m->b, m->w };
        for (int op = 0; op < 3; op++) {
            for (int i = 0; i < n; i++) v[i] = (op == 0 ? cs[i]->f : op == 1 ? cs[i]->b : cs[i]->w)[k];
            dst[op][k] = topo_calib_median(v, n);
        }
    }
    for (int i = 0; i < n; i++) v[i] = cs[i]->latency;
    m->latency = topo_calib_median(v, n);
    for (int i = 0; i < n; i++) v[i] = cs[i]->bandwidth;
    m->bandwidth = topo_calib_median(v, n);
    m->bw_early = cs[0]->bw_early;
    m->w_in_order = cs[0]->w_in_order;
    for (int i = 0; i < n && !m->link_bandwidth; i++)
        if (cs[i]->link_bandwidth) m->link_bandwidth = xcalloc((size_t)c->n_stages, sizeof(double));
    for (int l = 0; m->link_bandwidth && l < c->n_stages; l++) { /* 0 = no sample: left out */
        int k = 0;
        for (int i = 0; i < n; i++)
            if (cs[i]->link_bandwidth && cs[i]->link_bandwidth[l] > 0) v[k++] = cs[i]->link_bandwidth[l];
        m->link_bandwidth[l] = k ? topo_calib_median(v, k) : 0;
    }
    int U = ul[0];
    for (int i = 0; i < n; i++)
        if (ul[i] != U) U = 0;
    if (U > 0) {
        c->n_units = U;
        double **dst[3] = { &c->uf, &c->ub, &c->uw };
        for (int op = 0; op < 3; op++) {
            *dst[op] = xcalloc((size_t)U, sizeof(double));
            for (int u = 0; u < U; u++) {
                for (int i = 0; i < n; i++) v[i] = us[i][(size_t)op * (size_t)U + (size_t)u];
                (*dst[op])[u] = topo_calib_median(v, n);
            }
        }
    }
    free(v);
}

/* Reads run i into cs[i], us[i], ul[i], sm[i] and checks it against the runs
 * before it (first: the index of the first run with a summary, or -1). 0, 1, 2. */
static int read_run(topo_calib *c, int i, const topo *t, int same_split, sched_costs **cs, double **us, int *ul,
                    run_summary *sm, char (*real)[PATH_MAX], int *first, char *err)
{
    const char *path = c->paths[i];
    int P = 0, v = 0;
    struct stat st;
    if (stat(path, &st) && errno == ENOENT) /* say where costs.json comes from, not jansson's "(line -1)" */
        return seterr(err, "%s: no such file: a pipeline run writes costs.json beside its trace.json (not with "
                      "--no-trace, nor a one-stage run)", path), 2;
    if (!(cs[i] = sched_costs_load(path, &P, &v, err))) return strstr(err, "out of memory") ? 1 : 2;
    if (i == 0) c->n_stages = P, c->n_chunks = v;
    else if (P != c->n_stages || v != c->n_chunks)
        return seterr(err, "%s: \"stages\", \"chunks\": measured on %d stage(s) x %d chunk(s), but %s on %d x %d: "
                      "calibrate from runs of one topology", path, P, v, c->paths[0], c->n_stages, c->n_chunks), 2;
    if (realpath(path, real[i]))
        for (int j = 0; j < i; j++)
            if (!strcmp(real[i], real[j]))
                return seterr(err, "%s: the same costs file as run %d (%s): give each run once", path, j + 1,
                              c->paths[j]), 2;
    if ((ul[i] = units_len(path, err)) < 0) return 2;
    if (ul[i] > 0 && t && ul[i] != topo_n_units(t))
        return seterr(err, "%s: \"units\".\"f\": %d units, but %s's model has %d: calibrate from runs of this model",
                      path, ul[i], t->path, topo_n_units(t)), 2;
    for (int j = 0; j < i; j++)
        if (ul[i] > 0 && ul[j] > 0 && ul[i] != ul[j])
            return seterr(err, "%s: \"units\".\"f\": %d units, but %s has %d: the runs measured different models",
                          path, ul[i], c->paths[j], ul[j]), 2;
    if (ul[i] > 0) {
        size_t U = (size_t)ul[i];
        us[i] = xcalloc(3 * U, sizeof(double));
        if (sched_costs_load_units(path, ul[i], us[i], us[i] + U, us[i] + 2 * U, err) < 0) return 2;
    }
    if (summary_load(path, P, &sm[i], err)) return 2;
    if (!sm[i].have) return 0;
    if (check_summary(&sm[i], *first >= 0 ? &sm[*first] : NULL, t, same_split, P, err)) return 2;
    if (*first < 0) *first = i;
    return 0;
}

int topo_calib_load(const char *const *runs, int n, const topo *t, int same_split, topo_calib *out, char *err)
{
    memset(out, 0, sizeof *out);
    if (n < 1) return seterr(err, "--calibrate: no run given"), 2;
    out->paths = xcalloc((size_t)n, sizeof(char *));
    sched_costs **cs = xcalloc((size_t)n, sizeof *cs);
    double **us = xcalloc((size_t)n, sizeof *us);
    int *ul = xcalloc((size_t)n, sizeof *ul), first = -1, rc = 0;
    run_summary *sm = xcalloc((size_t)n, sizeof *sm);
    char (*real)[PATH_MAX] = xcalloc((size_t)n, sizeof *real);
    for (int i = 0; i < n && !rc; i++) {
        char path[PATH_MAX];
        size_t len = strlen(runs[i]);
        if (len > 5 && !strcmp(runs[i] + len - 5, ".json")) snprintf(path, sizeof path, "%s", runs[i]);
        else snprintf(path, sizeof path, "%s/costs.json", runs[i]);
        out->paths[i] = xstrdup(path);
        out->n_runs = i + 1;
        rc = read_run(out, i, t, same_split, cs, us, ul, sm, real, &first, err);
    }
    if (!rc && !(out->costs = sched_costs_new(out->n_stages * out->n_chunks))) {
        seterr(err, "out of memory");
        rc = 1;
    }
    if (!rc) take_medians(out, cs, us, ul, n);
    if (!rc && t && first >= 0) rc = take_split(out, &sm[first], t, err);
    for (int i = 0; i < n; i++) {
        sched_costs_free(cs[i]);
        free(us[i]);
        summary_free(&sm[i], out->n_stages);
    }
    free(cs);
    free(us);
    free(ul);
    free(sm);
    free(real);
    return rc;
}
