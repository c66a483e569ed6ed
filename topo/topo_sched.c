/* topo_sched.c — the one builder of a topology's schedule (topo_build_schedule):
 * the built-in kind generated for the topology's stages, micro-batches and chunks,
 * or its schedule file read, checked against the topology and played for
 * deadlocks. Kind names and constraints are the scheduler's table; this file only
 * says which topology field a failure belongs to. It simulates nothing. */
#include "topo/topo.h"
#include "model/util.h"

#include <stdlib.h>
#include <string.h>

/* The kind, file and chunk count to build; *field names the source in messages. */
static void pick(const topo *t, const topo_sched_opts *o, const char **kind, const char **file, int *v,
                 const char **field)
{
    *kind = t->schedule.kind;
    *file = t->schedule.file;
    *v = t->chunks_per_stage;
    *field = *file ? "schedule.file" : "schedule.kind";
    if (!o || !o->schedule) return;
    int id = sched_kind_find(o->schedule);
    *kind = id >= 0 ? o->schedule : NULL;
    *file = id >= 0 ? NULL : o->schedule;
    *field = "--schedule";
    if (o->chunks) *v = o->chunks;
    else if (id < 0) *v = 0; /* the file's own */
    else if (*v < sched_kind_table[id].min_chunks || *v > sched_kind_table[id].max_chunks) *v = 0;
}

int topo_build_schedule(const topo *t, const topo_sched_opts *o, sched_schedule **out, char *err)
{
    const char *kind, *file, *field;
    int v, P = t->n_stages, M = t->train.micro_batches, strict = !o || !o->schedule;
    char serr[SCHED_ERR_LEN];
    sched_report *rep = NULL;
    *out = NULL;
    if (o && o->detail) *o->detail = NULL;
    pick(t, o, &kind, &file, &v, &field);
    sched_schedule *s = file ? sched_load_for(file, M, P, serr) : sched_generate(kind, P, M, v, serr);
    if (!s) return seterr(err, "%s: %s: %s", t->path, field, serr);
    if (s->n_stages != P || s->n_micro != M || ((strict || v) && s->n_chunks != v)) {
        seterr(err, "%s: %s: %s is for %d stage(s) x %d chunk(s) x %d micro-batch(es); the topology has %d x %d x %d "
               "(stages, stages.*.layers, train.micro_batches)", t->path, field, file ? file : kind, s->n_stages,
               s->n_chunks, s->n_micro, P, strict ? t->chunks_per_stage : v, M);
        sched_free(s);
        return -1;
    }
    if ((strict || v == t->chunks_per_stage) && P > 1 && s->placement != t->placement) {
        seterr(err, "%s: %s: %s places virtual stages %s (%s) but stages.*.layers are laid out %s", t->path, field,
               file ? file : kind, s->placement == SCHED_PLACE_V ? "in a V" : "in a loop",
               s->placement == SCHED_PLACE_V ? "stage s holds s and 2P-1-s" : "chunk c of stage s is c*P+s",
               t->placement == SCHED_PLACE_V ? "in a V" : "in a loop");
        sched_free(s);
        return -1;
    }
    if (sched_check(s, o && o->detail ? &rep : NULL, serr)) {
        if (rep && o && o->detail) {
            *o->detail = rep->detail;
            rep->detail = NULL;
        }
        sched_report_free(rep);
        sched_free(s);
        return seterr(err, "%s: %s: %s", t->path, field, serr);
    }
    sched_report_free(rep);
    *out = s;
    return 0;
}
