/* ps_assign.c — which parameter server holds which floats (ps_assign: #8's
 * (bucket, replica segment) blocks onto servers, then cut at tensor boundaries
 * into pieces; the rule is in ps/ps.h), the per-server and per-stage views a
 * server and a worker stage need, and the listing `pipetrain check` prints. A
 * pure function of the model, R, train.bucket_mb and the server count: no I/O
 * besides printing. */
#include "ps/ps.h"
#include "base/base.h"
#include "coll/coll.h"

#include <stdlib.h>
#include <string.h>

/* Longest first; ties by position (unit, then offset), so the order is total. */
static int by_len_desc(const void *x, const void *y)
{
    const ps_block *a = x, *b = y;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    if (a->unit != b->unit) return a->unit < b->unit ? -1 : 1;
    return a->off < b->off ? -1 : (a->off > b->off);
}

static int by_position(const void *x, const void *y)
{
    const ps_block *a = x, *b = y;
    if (a->unit != b->unit) return a->unit < b->unit ? -1 : 1;
    return a->off < b->off ? -1 : (a->off > b->off);
}

/* The non-empty blocks of every unit in (unit, bucket, seg) order (ps.h); with
 * out NULL only counts them. */
static int make_blocks(const topo *t, int R, int n_units, ps_block *out)
{
    int nb = 0;
    for (int u = 0; u < n_units; u++) {
        size_t n = model_unit_params(&t->model, u);
        if (!n) continue;
        if (R == 1) { /* the whole unit: its partial is optim_unit_sqnorms' number */
            if (out) out[nb] = (ps_block){ u, 0, 0, 0, n, 0 };
            nb++;
            continue;
        }
        int k = topo_unit_buckets(t, u, -1, NULL, NULL);
        for (int b = 0; b < k; b++) {
            size_t boff = 0, blen = 0;
            topo_unit_buckets(t, u, b, &boff, &blen);
            for (int r = 0; r < R; r++) {
                size_t so = 0, sl = 0;
                coll_segment(blen, R, r, &so, &sl);
                if (!sl) continue; /* an empty segment's partial is 0.0: nothing to hold */
                if (out) out[nb] = (ps_block){ u, b, r, boff + so, sl, 0 };
                nb++;
            }
        }
    }
    return nb;
}

/* Cuts every block at its unit's tensor boundaries into pieces (a->pieces, in
 * (unit, off) order); with out NULL only counts them. */
static int cut(const topo *t, const ps_assignment *a, ps_piece *out)
{
    model_tensor ten[MODEL_MAX_UNIT_TENSORS];
    int np = 0, nt = 0, unit = -1;
    for (int bi = 0; bi < a->n_blocks; bi++) {
        const ps_block *bl = &a->blocks[bi];
        if (bl->unit != unit) nt = model_unit_tensors(&t->model, unit = bl->unit, ten);
        for (int i = 0; i < nt; i++) {
            size_t lo = bl->off > ten[i].offset ? bl->off : ten[i].offset;
            size_t hi = bl->off + bl->len < ten[i].offset + ten[i].numel ? bl->off + bl->len
                                                                          : ten[i].offset + ten[i].numel;
            if (lo >= hi) continue;
            if (out) {
                ps_piece *pc = &out[np];
                memset(pc, 0, sizeof *pc);
                _Static_assert(sizeof pc->name == sizeof ten[0].name, "piece names are tensor names");
                memcpy(pc->name, ten[i].name, strnlen(ten[i].name, sizeof pc->name - 1)); /* NUL: memset */
                pc->unit = bl->unit;
                pc->stage = topo_stage_of_unit(t, bl->unit);
                pc->tensor_off = lo - ten[i].offset;
                pc->len = hi - lo;
                pc->off = lo;
                pc->decay = ten[i].decay;
                pc->server = bl->server;
                pc->block = bi;
            }
            np++;
        }
    }
    return np;
}

/* CSR index of the pieces by key (server or stage), in a->pieces' order. */
static void index_by(const ps_assignment *a, int n_keys, int by_server, int **idx, int **start)
{
    *idx = xcalloc((size_t)a->n_pieces + 1, sizeof(int));
    *start = xcalloc((size_t)n_keys + 1, sizeof(int));
    for (int i = 0; i < a->n_pieces; i++) (*start)[(by_server ? a->pieces[i].server : a->pieces[i].stage) + 1]++;
    for (int k = 0; k < n_keys; k++) (*start)[k + 1] += (*start)[k];
    int *fill = xcalloc((size_t)n_keys + 1, sizeof(int));
    for (int i = 0; i < a->n_pieces; i++) {
        int k = by_server ? a->pieces[i].server : a->pieces[i].stage;
        (*idx)[(*start)[k] + fill[k]++] = i;
    }
    free(fill);
}

int ps_assign(const topo *t, ps_assignment *a, char *err)
{
    memset(a, 0, sizeof *a);
    if (t->n_servers < 1) return seterr(err, "%s: parameter_servers: none (sync is \"%s\")", t->path, t->sync);
    int S = t->n_servers, R = t->n_replicas > 0 ? t->n_replicas : 1;
    a->n_servers = S;
    a->n_stages = t->n_stages;
    a->n_units = topo_n_units(t);
    a->n_replicas = R;
    for (int u = 0; u < a->n_units; u++) a->total += model_unit_params(&t->model, u);
    a->n_blocks = make_blocks(t, R, a->n_units, NULL);
    if (a->n_blocks < S) {
        int nb = a->n_blocks;
        memset(a, 0, sizeof *a);
        return seterr(err, "%s: parameter_servers: %d servers but the model's gradients form only %d blocks "
                      "(buckets of train.bucket_mb x %d replica segments) and a block is never split; use at most "
                      "%d servers or a smaller train.bucket_mb", t->path, S, nb, R, nb);
    }
    a->blocks = xcalloc((size_t)a->n_blocks, sizeof *a->blocks);
    make_blocks(t, R, a->n_units, a->blocks);
    qsort(a->blocks, (size_t)a->n_blocks, sizeof *a->blocks, by_len_desc);
    a->server_floats = xcalloc((size_t)S, sizeof(size_t));
    for (int i = 0; i < a->n_blocks; i++) {
        int best = 0;
        for (int j = 1; j < S; j++)
            if (a->server_floats[j] < a->server_floats[best]) best = j;
        a->blocks[i].server = best;
        a->server_floats[best] += a->blocks[i].len;
        if (a->blocks[i].len > a->max_block) a->max_block = a->blocks[i].len;
    }
    qsort(a->blocks, (size_t)a->n_blocks, sizeof *a->blocks, by_position);
    a->n_pieces = cut(t, a, NULL);
    a->pieces = xcalloc((size_t)a->n_pieces, sizeof *a->pieces);
    cut(t, a, a->pieces);
    index_by(a, S, 1, &a->server_idx, &a->server_start);
    index_by(a, a->n_stages, 0, &a->stage_idx, &a->stage_start);
    return 0;
}

void ps_assignment_free(ps_assignment *a)
{
    if (!a) return;
    free(a->blocks);
    free(a->pieces);
    free(a->server_floats);
    free(a->server_idx);
    free(a->server_start);
    free(a->stage_idx);
    free(a->stage_start);
    memset(a, 0, sizeof *a);
}

int ps_server_pieces(const ps_assignment *a, int j, const int **idx)
{
    *idx = NULL;
    if (j < 0 || j >= a->n_servers) return 0;
    *idx = a->server_idx + a->server_start[j];
    return a->server_start[j + 1] - a->server_start[j];
}

int ps_stage_pieces(const ps_assignment *a, int k, const int **idx)
{
    *idx = NULL;
    if (k < 0 || k >= a->n_stages) return 0;
    *idx = a->stage_idx + a->stage_start[k];
    return a->stage_start[k + 1] - a->stage_start[k];
}

size_t ps_piece_part_offset(const ps_piece *pc, const model_part *p)
{
    for (int i = 0; i < p->n_units; i++)
        if (p->units[i] == pc->unit) return p->unit_off[i] + pc->off;
    return SIZE_MAX;
}

static void mib(double bytes, char *buf, size_t n)
{
    if (bytes < 1024 * 1024) snprintf(buf, n, "%.1f KiB", bytes / 1024);
    else snprintf(buf, n, "%.1f MiB", bytes / (1024.0 * 1024.0));
}

void ps_print_assignment(const topo *t, const ps_assignment *a, FILE *f, int max_list)
{
    int R = t->n_replicas;
    char s0[32], s1[32];
    fprintf(f, "parameter servers: %d, %d worker(s) (replicas), sync ps, staleness %d%s; %zu floats in %d blocks "
            "(gradient bucket x replica segment, at most %zu floats), %d pieces (blocks cut at tensor boundaries)\n",
            a->n_servers, R, t->ps.staleness,
            t->ps.staleness < 0 ? " (unbounded)" : t->ps.staleness == 0 ? " (synchronous)" : "", a->total,
            a->n_blocks, a->max_block, a->n_pieces);
    fprintf(f, "%-6s %-24s %7s %12s %16s %16s\n", "server", "address", "pieces", "floats", "receives/step",
            "sends/step");
    size_t lo = SIZE_MAX, hi = 0;
    for (int j = 0; j < a->n_servers; j++) {
        const topo_addr *ad = &t->parameter_servers[j];
        const int *idx;
        int n = ps_server_pieces(a, j, &idx);
        char addr[80];
        snprintf(addr, sizeof addr, strchr(ad->host, ':') ? "[%s]:%d" : "%s:%d", ad->host, ad->port);
        double bytes = (double)a->server_floats[j] * sizeof(float) * R;
        mib(bytes, s0, sizeof s0);
        mib(bytes, s1, sizeof s1);
        fprintf(f, "%-6d %-24s %7d %12zu %16s %16s\n", j, addr, n, a->server_floats[j], s0, s1);
        if (a->server_floats[j] < lo) lo = a->server_floats[j];
        if (a->server_floats[j] > hi) hi = a->server_floats[j];
        if (n <= max_list) {
            for (int i = 0; i < n; i++) {
                const ps_piece *pc = &a->pieces[idx[i]];
                fprintf(f, "         stage %d  %-44s [%zu, %zu)\n", pc->stage, pc->name, pc->tensor_off,
                        pc->tensor_off + pc->len);
            }
            continue;
        }
        for (int k = 0; k < a->n_stages; k++) {
            int cnt = 0;
            size_t fl = 0;
            for (int i = 0; i < n; i++)
                if (a->pieces[idx[i]].stage == k) cnt++, fl += a->pieces[idx[i]].len;
            if (cnt) fprintf(f, "         stage %d: %d pieces, %zu floats\n", k, cnt, fl);
        }
    }
    fprintf(f, "balance: most/least floats per server %.3f (the rule bounds most - least by the longest block, "
            "%zu floats)\n", lo ? (double)hi / (double)lo : 0.0, a->max_block);
}
