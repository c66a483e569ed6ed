/* topo_print.c — the partition table `pipetrain check` prints: per stage its
 * address, layers, parameters, forward FLOPs and the bytes it sends forward per
 * micro-batch, from model/'s accounting, and the topology hash. Presentation
 * only; no validation. */
#include "topo/topo.h"

#include <string.h>

/* A count with a k/M/G/T suffix, e.g. 1.23M. */
static void human(double x, const char *unit, char *buf, size_t n)
{
    static const char *const suf[] = { "", "k", "M", "G", "T", "P" };
    int i = 0;
    while (x >= 1000 && i < 5) { x /= 1000; i++; }
    if (i == 0) snprintf(buf, n, "%.0f %s", x, unit);
    else snprintf(buf, n, "%.2f %s%s", x, suf[i], unit);
}

static void human_bytes(double x, char *buf, size_t n)
{
    static const char *const suf[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    int i = 0;
    while (x >= 1024 && i < 4) { x /= 1024; i++; }
    if (i == 0) snprintf(buf, n, "%.0f B", x);
    else snprintf(buf, n, "%.1f %s", x, suf[i]);
}

void topo_print_partition(const topo *t, FILE *f)
{
    const model_config *m = &t->model;
    size_t mb = (size_t)topo_micro_batch(t), T = (size_t)m->seq_len;
    fprintf(f, "%s: %d stage(s), schedule %s, %d micro-batch(es) of %zu x %zu tokens\n",
            t->path, t->n_stages, t->schedule.file ? t->schedule.file_given : t->schedule.kind,
            t->train.micro_batches, mb, T);
    fprintf(f, "model: dim %d, %d layers, %d heads (%d kv), ffn %d, vocab %d%s\n", m->dim,
            m->n_layers, m->n_heads, m->n_kv_heads, m->ffn_dim, m->vocab_size,
            m->tie_embeddings ? ", tied embeddings" : "");
    fprintf(f, "%-5s %-24s %-18s %7s %14s %14s %12s\n", "stage", "address", "layers", "threads",
            "params", "fwd FLOP/mb", "sends/mb");
    double tp = 0, tf = 0, tb = 0;
    for (int s = 0; s < t->n_stages; s++) {
        const topo_stage *st = &t->stages[s];
        double params = 0, flops = 0, bytes = 0;
        for (int i = 0; i < st->n_units; i++) {
            params += (double)model_unit_params(m, st->units[i]);
            flops += model_unit_flops(m, st->units[i], mb, T).fwd;
        }
        for (int c = 0; c < st->n_chunks; c++) {
            int last = st->chunks[c].first_unit + st->chunks[c].n_units - 1;
            bytes += (double)topo_wire_bytes(t, last, 0);
        }
        char addr[80], p[32], fl[32], by[32];
        snprintf(addr, sizeof addr, strchr(st->host, ':') ? "[%s]:%d" : "%s:%d", st->host, st->port);
        human(params, "", p, sizeof p);
        human(flops, "", fl, sizeof fl);
        human_bytes(bytes, by, sizeof by);
        fprintf(f, "%-5d %-24s %-18s %7d %14s %14s %12s\n", s, addr, st->layers, st->threads, p, fl, by);
        tp += params;
        tf += flops;
        tb += bytes;
    }
    char p[32], fl[32], by[32];
    human(tp, "", p, sizeof p);
    human(tf, "", fl, sizeof fl);
    human_bytes(tb, by, sizeof by);
    fprintf(f, "%-5s %-24s %-18s %7s %14s %14s %12s\n", "total", "", "", "", p, fl, by);
    topo_print_recompute(t, f);
    topo_print_wire(t, f);
    char hash[65];
    fprintf(f, "topology hash %s\n", topo_hash_hex(t, hash) ? "(out of memory)" : hash);
    if (t->n_replicas > 1) topo_print_grid(t, f);
}

void topo_print_recompute(const topo *t, FILE *f)
{
    size_t mb = (size_t)topo_micro_batch(t);
    fprintf(f, "recompute (train.recompute %s):", t->train.recompute);
    for (int s = 0; s < t->n_stages; s++) {
        const topo_stage *st = &t->stages[s];
        double stash = 0, work = 0;
        for (int i = 0; i < st->n_units; i++) {
            model_mem m = model_unit_mem(&t->model, st->units[i], mb, st->recompute_id);
            stash += (double)m.stash;
            work += (double)m.work;
        }
        char sb[32], wb[32];
        human_bytes(stash, sb, sizeof sb);
        human_bytes(work, wb, sizeof wb);
        fprintf(f, "%s stage %d %s (stash %s, backward work %s per micro-batch)", s ? "," : "", s,
                model_recompute_name(st->recompute_id), sb, wb);
    }
    fputc('\n', f);
    if (t->schedule.kind_id != SCHED_KIND_2BW) return;
    /* PipeDream-2BW: a second weight version and the pending gradient per stage */
    fprintf(f, "2bw extra weight memory (2nd weight version + pending gradient, summary.json extra_weight_bytes):");
    for (int s = 0; s < t->n_stages; s++) {
        double params = 0;
        char b[32];
        for (int i = 0; i < t->stages[s].n_units; i++) params += (double)model_unit_params(&t->model, t->stages[s].units[i]);
        human_bytes(2 * params * sizeof(float), b, sizeof b);
        fprintf(f, "%s stage %d %s", s ? "," : "", s, b);
    }
    fputc('\n', f);
    int k = t->schedule.warmup_sync_steps;
    if (k > 0)
        fprintf(f, "2bw synchronous warm-up (schedule.warmup_sync_steps %d): steps 1-%d flush like 1f1b, then "
                   "asynchronous\n", k, k < t->train.steps ? k : t->train.steps);
    else
        fprintf(f, "2bw synchronous warm-up: none (schedule.warmup_sync_steps 0): asynchronous from step 1\n");
}

/* Parameters of stage s and the bytes it sends forward per micro-batch. */
static void stage_sizes(const topo *t, int s, double *params, double *bytes)
{
    const model_config *m = &t->model;
    const topo_stage *st = &t->stages[s];
    *params = *bytes = 0;
    for (int i = 0; i < st->n_units; i++) *params += (double)model_unit_params(m, st->units[i]);
    for (int c = 0; c < st->n_chunks; c++) {
        int last = st->chunks[c].first_unit + st->chunks[c].n_units - 1;
        *bytes += (double)topo_wire_bytes(t, last, 0);
    }
}

void topo_print_grid(const topo *t, FILE *f)
{
    int P = t->n_stages, R = t->n_replicas, first = 0;
    int share = topo_replica_batch(t, 0, &first);
    fprintf(f, "grid: %d stage(s) x %d replica(s) = %d processes (rank = replica x %d + stage); each replica "
            "takes %d of the %d sequences of a step (replica r: [r*%d, (r+1)*%d)) in %d micro-batch(es) of %d\n",
            P, R, P * R, P, share, t->train.batch_size, share, share, t->train.micro_batches,
            topo_micro_batch(t));
    fprintf(f, "%-5s %-5s %-7s %-24s %7s %14s %12s\n", "rank", "stage", "replica", "address", "threads", "params",
            "sends/mb");
    for (int r = 0; r < R; r++)
        for (int s = 0; s < P; s++) {
            const topo_replica *p = &t->stages[s].replicas[r];
            double params, bytes;
            stage_sizes(t, s, &params, &bytes);
            char addr[80], pa[32], by[32];
            snprintf(addr, sizeof addr, strchr(p->host, ':') ? "[%s]:%d" : "%s:%d", p->host, p->port);
            human(params, "", pa, sizeof pa);
            human_bytes(bytes, by, sizeof by);
            fprintf(f, "%-5d %-5d %-7d %-24s %7d %14s %12s\n", topo_rank_of(t, s, r), s, r, addr, p->threads, pa, by);
        }
    if (t->sync_id == TOPO_SYNC_PS) { /* no all-reduce: the servers' table is ps_print_assignment's */
        fprintf(f, "sync ps: each replica is a worker; gradients go to the parameter servers, not an all-reduce\n");
        return;
    }
    /* fp32 weight gradients; a ring all-reduce sends 2(R-1)/R of them from each process */
    fprintf(f, "%-5s %-7s %18s %22s\n", "group", "stage", "all-reduce/step", "ring sends/process");
    double total = 0;
    for (int s = 0; s < P; s++) {
        double params, bytes;
        stage_sizes(t, s, &params, &bytes);
        double g = params * sizeof(float);
        char gb[32], sb[32];
        human_bytes(g, gb, sizeof gb);
        human_bytes(g * 2 * (R - 1) / R, sb, sizeof sb);
        fprintf(f, "%-5d %-7d %18s %22s\n", s, s, gb, sb);
        total += g;
    }
    char tb[32];
    human_bytes(total, tb, sizeof tb);
    fprintf(f, "%-5s %-7s %18s\n", "total", "", tb);
}
