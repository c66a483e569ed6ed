/* topo_allreduce.c — the data for the simulator's all-reduce
 * (topo_allreduce_plan): each stage's gradient buckets (topo_unit_buckets), their
 * bytes, and when in the step each becomes ready, as plain numbers the scheduler
 * takes without knowing layers. It predicts nothing itself. */
#include "topo/topo.h"
#include "model/util.h"

#include <stdlib.h>

/* Appends unit u's buckets, ready after fraction frac of its chunk's last weight pass. */
static void add_unit(const topo *t, sched_allreduce *a, int st, int chunk, int u, double frac, int tied)
{
    int nb = topo_unit_buckets(t, u, -1, NULL, NULL);
    for (int b = 0; b < nb; b++) {
        size_t off = 0, len = 0;
        topo_unit_buckets(t, u, b, &off, &len);
        a->b[a->n++] = (sched_bucket){ st, chunk, frac, tied, (double)len * sizeof(float) };
    }
}

/* Units us[0..n) of stage st (increasing), together one chunk `chunk` of the
 * schedule: the weight pass walks them from the last down, each taking its share
 * of the W FLOPs. */
static void add_units(const topo *t, sched_allreduce *a, int st, int chunk, const int *us, int n)
{
    size_t batch = (size_t)topo_micro_batch(t), seq = (size_t)t->model.seq_len;
    double total = 0, below = 0; /* W FLOPs of us[0..j), walked after us[j] */
    for (int j = 0; j < n; j++) total += model_unit_flops(&t->model, us[j], batch, seq).bwd_weight;
    for (int j = 0; j < n; j++) {
        double frac = j == 0 || !(total > 0) ? 1 : (total - below) / total;
        add_unit(t, a, st, chunk, us[j], frac < 1 ? frac : 1, t->model.tie_embeddings && us[j] == 0);
        below += model_unit_flops(&t->model, us[j], batch, seq).bwd_weight;
    }
}

sched_allreduce *topo_allreduce_plan(const topo *t, int v, char *err)
{
    size_t n = 0;
    for (int u = 0; u < topo_n_units(t); u++) n += (size_t)topo_unit_buckets(t, u, -1, NULL, NULL);
    sched_allreduce *a = sched_allreduce_new(n);
    if (!a) return seterr(err, "out of memory planning %zu all-reduce buckets", n), NULL;
    a->replicas = t->n_replicas;
    a->zero = t->train.zero;
    a->n = 0;
    int head = topo_stage_of_unit(t, topo_n_units(t) - 1);
    if (t->model.tie_embeddings && head != topo_stage_of_unit(t, 0)) {
        a->tied_from = head;
        a->tied_bytes = (double)t->model.vocab_size * t->model.dim * sizeof(float);
    }
    for (int st = 0; st < t->n_stages; st++) {
        const topo_stage *ts = &t->stages[st];
        if (v == t->chunks_per_stage) {
            for (int ci = 0; ci < ts->n_chunks; ci++) {
                const topo_chunk *ch = &ts->chunks[ci];
                int j = 0;
                while (j < ts->n_units && ts->units[j] != ch->first_unit) j++;
                if (j + ch->n_units <= ts->n_units)
                    add_units(t, a, st, ci, ts->units + j, ch->n_units);
            }
            continue;
        }
        /* the schedule's chunk count differs from the layout: the stage's units in
         * order, spread evenly over its v chunks (as its costs are) */
        for (int c = 0; c < v; c++) {
            int j0 = (int)((long long)ts->n_units * c / v), j1 = (int)((long long)ts->n_units * (c + 1) / v);
            add_units(t, a, st, c, ts->units + j0, j1 - j0);
        }
    }
    return a;
}
