/* topo_mem.c — the memory a topology's processes will need, predicted before
 * anything starts (`pipetrain check` prints it, `check` and `run` refuse a
 * topology whose processes on this machine need more than it has): per stage
 * process its weights, gradients, AdamW moments, the activations at the peak of
 * its schedule (the scheduler's simulator, fed with model/'s byte counts) and
 * its fixed buffers. Arithmetic only: nothing is allocated on the model's
 * behalf. Not here: parameter servers' memory, hosts other than this one (a
 * remote host's sum is printed, not compared). */
#include "topo/topo.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"

model_mem topo_chunk_mem(const topo *t, int mode, const topo_chunk *ch, size_t batch)
{
    model_mem m = { 0, 0, 0, 0 };
    for (int u = ch->first_unit; u < ch->first_unit + ch->n_units; u++) {
        model_mem x = model_unit_mem(&t->model, u, batch, mode);
        m.stash += x.stash;
        m.work += x.work;
        if (x.fwd_tmp > m.fwd_tmp) m.fwd_tmp = x.fwd_tmp;
        if (x.work_unit > m.work_unit) m.work_unit = x.work_unit;
    }
    if (ch->virtual_stage > 0) m.work_unit = m.work;
    return m;
}

/* Activation peak of every stage (act[P]): the simulator's, with unit costs
 * (the peak depends on each stage's list order, not on the times). */
static int act_peaks(const topo *t, const sched_schedule *s, double *act, char *err)
{
    int P = t->n_stages, K = s->n_stages * s->n_chunks;
    size_t batch = (size_t)topo_micro_batch(t);
    sched_costs *c = sched_costs_new(K);
    if (!c) return seterr(err, "%s: out of memory predicting memory", t->path);
    for (int k = 0; k < K; k++) c->f[k] = c->b[k] = c->w[k] = 1;
    for (int st = 0; st < P; st++) {
        const topo_stage *ts = &t->stages[st];
        for (int ci = 0; ci < ts->n_chunks; ci++) {
            model_mem m = topo_chunk_mem(t, ts->recompute_id, &ts->chunks[ci], batch);
            /* a schedule with another chunk count: the stage's bytes spread over its chunks */
            int spread = s->n_chunks != ts->n_chunks, nk = spread ? s->n_chunks : 1;
            for (int j = 0; j < nk; j++) {
                int k = spread ? sched_place_vstage(s->placement, P, st, j) : ts->chunks[ci].virtual_stage;
                c->stash_bytes[k] += (double)m.stash / nk;
                c->f_tmp_bytes[k] += (double)m.fwd_tmp / nk;
                c->b_bytes[k] += (double)m.work / nk;
                c->bw_bytes[k] += (double)m.work_unit / nk;
            }
        }
    }
    sched_report *r = NULL;
    char serr[SCHED_ERR_LEN];
    int rc = sched_simulate(s, c, 0, &r, serr);
    if (!rc)
        for (int st = 0; st < P; st++) act[st] = r->peak_bytes[st];
    else
        seterr(err, "%s: predicting memory: %s", t->path, serr);
    sched_report_free(r);
    sched_costs_free(c);
    return rc ? -1 : 0;
}

double topo_optim_bytes(const topo *t, const int *units, int n_units)
{
    if (t->sync_id == TOPO_SYNC_PS) return 0;
    int R = t->train.zero && t->n_replicas > 1 ? t->n_replicas : 1;
    double n = 0;
    for (int i = 0; i < n_units; i++) {
        if (R == 1) {
            n += (double)model_unit_params(&t->model, units[i]);
            continue;
        }
        /* ZeRO-1: replica 0's segment of every bucket, ceil(len / R) (coll_segment) */
        int nb = topo_unit_buckets(t, units[i], -1, NULL, NULL);
        for (int b = 0; b < nb; b++) {
            size_t off, len;
            topo_unit_buckets(t, units[i], b, &off, &len);
            n += (double)((len + (size_t)R - 1) / (size_t)R);
        }
    }
    return 2.0 * sizeof(float) * n;
}

int topo_mem_predict(const topo *t, const sched_schedule *s, topo_mem *m, char *err)
{
    int P = t->n_stages, V = s->n_stages * s->n_chunks;
    double *act = calloc((size_t)P, sizeof(double));
    if (!act) return seterr(err, "%s: out of memory predicting memory", t->path);
    if (act_peaks(t, s, act, err)) { free(act); return -1; }
    size_t batch = (size_t)topo_micro_batch(t), M = (size_t)s->n_micro;
    double io = (double)batch * (double)t->model.seq_len * (double)t->model.dim * sizeof(float);
    for (int st = 0; st < P; st++) {
        const topo_stage *ts = &t->stages[st];
        model_part_size z = model_part_bytes(&t->model, ts->units, ts->n_units, batch, ts->threads);
        topo_mem *x = &m[st];
        x->weights = (double)z.weights;
        x->grads = (double)z.grads;
        x->optim = topo_optim_bytes(t, ts->units, ts->n_units);
        x->act = act[st];
        /* fixed: the part's own, and per chunk M receive/send buffers each way it talks */
        x->buffers = (double)z.fixed;
        for (int ci = 0; ci < ts->n_chunks; ci++) {
            int vs = ts->chunks[ci].virtual_stage;
            x->buffers += io * (double)M * (2 * (vs > 0) + 2 * (vs < V - 1));
        }
        /* ZeRO-1: a checkpoint passes the moments to replica 0 a piece at a time
         * through one scratch (a piece lies inside one tensor) */
        x->gather = 0;
        if (t->train.zero && t->n_replicas > 1 && t->sync_id != TOPO_SYNC_PS) {
            size_t most = 0;
            for (int i = 0; i < ts->n_units; i++) {
                model_tensor tt[MODEL_MAX_UNIT_TENSORS];
                int nt = model_unit_tensors(&t->model, ts->units[i], tt);
                for (int j = 0; j < nt; j++)
                    if (tt[j].numel > most) most = tt[j].numel;
            }
            x->gather = sizeof(float) * (double)(most < TOPO_ZERO_CKPT_PIECE ? most : TOPO_ZERO_CKPT_PIECE);
        }
        x->total = x->weights + x->grads + x->optim + x->act + x->buffers + x->gather;
    }
    free(act);
    return 0;
}

int topo_machine_mem(double *bytes, char *src, size_t n, char *err)
{
    const char *e = getenv("PIPETRAIN_MEM_BYTES");
    if (e && *e) { /* tests fake a small machine with it */
        char *end;
        double v = strtod(e, &end);
        if (*end || !(v > 0) || v > 1e18)
            return seterr(err, "PIPETRAIN_MEM_BYTES: expected a number of bytes > 0, found \"%.64s\"", e);
        *bytes = v;
        snprintf(src, n, "PIPETRAIN_MEM_BYTES");
        return 0;
    }
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[256];
        unsigned long long kb;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
                fclose(f);
                *bytes = (double)kb * 1024.0;
                snprintf(src, n, "MemAvailable in /proc/meminfo");
                return 0;
            }
        fclose(f);
    }
    long pages = sysconf(_SC_PHYS_PAGES), ps = sysconf(_SC_PAGESIZE);
    if (pages > 0 && ps > 0) {
        *bytes = (double)pages * (double)ps;
        snprintf(src, n, "physical memory (sysconf)");
        return 0;
    }
    *bytes = 0;
    snprintf(src, n, "unknown");
    return 1;
}

/* A byte count as "12.3 MiB". */
static const char *mib(double x, char *buf, size_t n)
{
    static const char *const suf[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    int i = 0;
    while (x >= 1024 && i < 4) { x /= 1024; i++; }
    snprintf(buf, n, i ? "%.1f %s" : "%.0f %s", x, suf[i]);
    return buf;
}

int topo_mem_check(const topo *t, const sched_schedule *s, FILE *f, char *err)
{
    int P = t->n_stages, R = t->n_replicas;
    topo_mem *m = calloc((size_t)P, sizeof *m);
    if (!m) return seterr(err, "%s: out of memory predicting memory", t->path), 1;
    if (topo_mem_predict(t, s, m, err)) { free(m); return 2; }
    char a[6][32], b[32], c[32];
    int zg = m[0].gather > 0;
    if (f) fprintf(f, "memory per process, predicted peak (weights + gradients + AdamW moments + activations at the "
                      "schedule's peak + buffers%s):\n",
                   zg ? " + the scratch a checkpoint passes the AdamW moments through (ZeRO-1)" : "");
    double local = 0;
    for (int st = 0; st < P; st++) {
        const topo_mem *x = &m[st];
        char g[96] = "", gb[64] = "";
        if (zg) {
            snprintf(g, sizeof g, " + %s", mib(x->gather, a[5], 32));
            snprintf(gb, sizeof gb, ", checkpoint gather %.0f bytes", x->gather);
        }
        if (f)
            fprintf(f, "  stage %d: %s + %s + %s + %s + %s%s = %s (activations %.0f bytes, AdamW %.0f bytes%s, total "
                    "%.0f bytes)%s\n", st, mib(x->weights, a[0], 32), mib(x->grads, a[1], 32), mib(x->optim, a[2], 32),
                    mib(x->act, a[3], 32), mib(x->buffers, a[4], 32), g, mib(x->total, b, 32), x->act, x->optim, gb,
                    x->total, R > 1 ? " per replica" : "");
        local += x->total * R;
    }
    double avail;
    char src[64];
    int known = topo_machine_mem(&avail, src, sizeof src, err);
    if (known < 0) { free(m); return 2; }
    if (!topo_all_loopback(t)) { /* other machines: print their sums, compare none */
        for (int st = 0; st < P; st++)
            for (int r = 0; r < R; r++) {
                const char *h = t->stages[st].replicas[r].host;
                int first = 1, n = 0;
                double sum = 0;
                for (int s2 = 0; s2 < P && first; s2++)
                    for (int r2 = 0; r2 < R; r2++) {
                        if (s2 * R + r2 >= st * R + r) break;
                        if (!strcmp(t->stages[s2].replicas[r2].host, h)) { first = 0; break; }
                    }
                if (!first) continue;
                for (int s2 = 0; s2 < P; s2++)
                    for (int r2 = 0; r2 < R; r2++)
                        if (!strcmp(t->stages[s2].replicas[r2].host, h)) { sum += m[s2].total; n++; }
                if (f) fprintf(f, "  host %s: %d process%s need %s (not compared: another machine's memory is not "
                                  "known here)\n", h, n, n == 1 ? "" : "es", mib(sum, b, 32));
            }
        free(m);
        return 0;
    }
    if (f) {
        if (known) fprintf(f, "  this machine: %d process%s need %s (its memory is unknown: not compared)\n", P * R,
                           P * R == 1 ? "" : "es", mib(local, b, 32));
        else fprintf(f, "  this machine: %d process%s need %s of %s (%s)\n", P * R, P * R == 1 ? "" : "es",
                     mib(local, b, 32), mib(avail, c, 32), src);
    }
    int rc = 0;
    if (!known && local > avail) {
        char per[256] = "";
        size_t o = 0;
        for (int st = 0; st < P && o < sizeof per - 40; st++)
            o += (size_t)snprintf(per + o, sizeof per - o, "%sstage %d %.0f", st ? ", " : "", st, m[st].total);
        /* with replicas and the stages' own AdamW, ZeRO-1 is the remedy made for this */
        int zero_helps = R > 1 && !t->train.zero && t->sync_id != TOPO_SYNC_PS;
        char zh[96] = "";
        if (zero_helps)
            snprintf(zh, sizeof zh, ", set train.zero: 1 (AdamW's moments sharded over the %d replicas)", R);
        seterr(err, "%s: memory: the %d process%s on this machine need %.0f bytes (%s; %s per process) but it has "
                    "%.0f bytes (%s); lower train.batch_size or raise train.micro_batches, set train.recompute%s, or "
                    "spread the stages over more hosts", t->path, P * R, P * R == 1 ? "" : "es", local,
               mib(local, b, 32), per, avail, src, zh);
        rc = 2;
    }
    free(m);
    return rc;
}
