/* test_ps_norm.c — the synchronous parameter servers' step is bitwise #8's
 * all-reduce step (issue 12): for R workers' random gradients, the reference
 * does what stage/runtime_dp.c and coord/ do — the ring's per-segment sum
 * (coll/coll.h's order), rt_dp_norm's partial per (bucket, replica segment)
 * encoded as each process's NORM payload, coord_place_norm_partials and
 * coord_combine_norm_partials, optim_global_norm, then run_optim_apply on each
 * stage's part — and the servers get the same pushes; the norm, every weight
 * and every AdamW moment must be equal bit for bit. Models tied and untied,
 * several buckets per unit (train.bucket_mb tiny), R = 2 and 3, S = 2 and 3,
 * clipping active. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "coll/coll.h"
#include "coord/coord.h"
#include "ps/ps.h"
#include "run/run.h"
#include "topo/topo.h"
#include "tests/tests.h"

static char root[256];

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs(text, f);
    fclose(f);
}

/* A 2-stage topology with R replicas and S synchronous servers, written to root. */
static int load(topo *t, int R, int S, int tied)
{
    char path[512], reps[2][512], srv[512], js[4096];
    int port = 30000;
    for (int k = 0; k < 2; k++) {
        size_t o = 0;
        for (int r = 0; r < R; r++)
            o += (size_t)snprintf(reps[k] + o, sizeof reps[k] - o, "%s{\"host\": \"127.0.0.1\", \"port\": %d}",
                                  r ? ", " : "", ++port);
    }
    size_t o = 0;
    for (int j = 0; j < S; j++)
        o += (size_t)snprintf(srv + o, sizeof srv - o, "%s{\"host\": \"127.0.0.1\", \"port\": %d}", j ? ", " : "",
                              ++port);
    snprintf(js, sizeof js,
             "{\"model\": {\"dim\": 32, \"n_layers\": 2, \"n_heads\": 4, \"ffn_dim\": 48, \"seq_len\": 16, "
             "\"tie_embeddings\": %s},\n"
             " \"train\": {\"steps\": 4, \"batch_size\": 12, \"micro_batches\": 2, \"lr\": 0.01, \"warmup_steps\": 1, "
             "\"grad_clip\": 1.0, \"weight_decay\": 0.1, \"bucket_mb\": 0.01},\n"
             " \"schedule\": {\"kind\": \"gpipe\"},\n"
             " \"coordinator\": {\"host\": \"127.0.0.1\", \"port\": 29999},\n"
             " \"sync\": \"ps\", \"ps\": {\"staleness\": 0}, \"parameter_servers\": [%s],\n"
             " \"stages\": [{\"layers\": \"embed,0\", \"replicas\": [%s]},\n"
             "            {\"layers\": \"1,head\", \"replicas\": [%s]}]}\n",
             tied ? "true" : "false", srv, reps[0], reps[1]);
    snprintf(path, sizeof path, "%s/ps-%dx%d-%d.json", root, R, S, tied);
    write_file(path, js);
    char err[ERR_LEN];
    int rc = topo_load(t, path, NULL, 0, err);
    if (rc) fprintf(stderr, "\n  %s\n", err);
    return rc;
}

/* Deterministic gradients in [-amp, amp). */
static void fill(float *g, size_t n, uint64_t seed, float amp)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        g[i] = amp * ((float)(x >> 40) / (float)(1u << 24) * 2.0f - 1.0f);
    }
}

/* What the ring leaves in every replica's buffer for one bucket [0, len) of
 * the R inputs x[r] (coll/coll.h): segment i is
 * (((x_{i+1} + x_{i+2}) + ...) + x_{i+R-1}) + x_i, each rank adding its own
 * value to the partial sum it received (coll_add_f32: dst = src + dst). */
static void ring_sum(float *const *x, int R, size_t len, float *out)
{
    for (int i = 0; i < R; i++) {
        size_t so, sl;
        coll_segment(len, R, i, &so, &sl);
        for (size_t e = so; e < so + sl; e++) {
            float acc = x[(i + 1) % R][e];
            for (int r = 2; r <= R; r++) acc = acc + x[(i + r) % R][e];
            out[e] = acc;
        }
    }
}

/* rt_dp_norm of (stage k, replica r) whose part p holds the reduced gradients:
 * u32 n, then per unit, per bucket, the sum of squares of segment r. */
static uint64_t dp_norm_payload(const topo *t, const model_part *p, int r, uint8_t *buf)
{
    uint32_t nb = 0;
    for (int i = 0; i < p->n_units; i++) {
        int k = topo_unit_buckets(t, p->units[i], -1, NULL, NULL);
        for (int b = 0; b < k; b++, nb++) {
            size_t o, l, so, sl;
            topo_unit_buckets(t, p->units[i], b, &o, &l);
            coll_segment(l, t->n_replicas, r, &so, &sl);
            const float *g = p->grads + p->unit_off[i] + o + so;
            double s = 0;
            for (size_t j = 0; j < sl; j++) s += (double)g[j] * g[j];
            put_f64le(buf + 4 + 8 * (size_t)nb, s);
        }
    }
    put_u32le(buf, nb);
    return 4 + 8 * (uint64_t)nb;
}

/* Copies the whole-model array `src` (laid out as part `whole`) into the stage part's layout. */
static void to_stage(const model_part *whole, const float *src, const model_part *st, float *dst)
{
    for (int i = 0; i < st->n_units; i++)
        for (int k = 0; k < whole->n_units; k++)
            if (whole->units[k] == st->units[i]) {
                size_t n = (i + 1 < st->n_units ? st->unit_off[i + 1] : st->n_params) - st->unit_off[i];
                memcpy(dst + st->unit_off[i], src + whole->unit_off[k], n * sizeof(float));
            }
}

/* One configuration: `steps` steps of #8 and of the servers side by side;
 * returns the count of bitwise differences (norms, stages' weights or moments). */
static int compare(int R, int S, int tied, int steps, int quiet)
{
    topo t;
    ps_assignment a;
    char err[ERR_LEN], why[ERR_LEN];
    int diffs = 0;
    if (load(&t, R, S, tied)) { CU_FAIL("topology"); return 1; }
    CU_ASSERT_FATAL(t.n_replicas == R && t.n_servers == S && t.n_stages == 2);
    CU_ASSERT_FATAL(ps_assign(&t, &a, err) == 0);
    int U = topo_n_units(&t);
    /* several buckets per unit, so the partials' order matters */
    CU_ASSERT(topo_unit_buckets(&t, 1, -1, NULL, NULL) >= 3);
    ps_server *srv[8];
    for (int j = 0; j < S; j++) CU_ASSERT_FATAL((srv[j] = ps_server_new(&t, &a, j, err)) != NULL);
    int *all = malloc(sizeof(int) * (size_t)U);
    for (int u = 0; u < U; u++) all[u] = u;
    model_part *whole = model_part_new(&t.model, all, U, 1, (uint64_t)t.train.seed);
    model_part *part[2];
    optim_adamw *opt[2];
    for (int k = 0; k < 2; k++) {
        part[k] = model_part_new(&t.model, t.stages[k].units, t.stages[k].n_units, 1, (uint64_t)t.train.seed);
        opt[k] = optim_new(part[k]->n_params);
    }
    size_t n = whole->n_params;
    float *g[8], *red = malloc(n * sizeof(float));
    for (int w = 0; w < R; w++) g[w] = malloc(n * sizeof(float));
    double *parts = calloc(coord_norm_parts(&t) + 1, sizeof(double)), *sq = calloc((size_t)U, sizeof(double));
    uint8_t *buf = malloc(4 + 8 * (size_t)TOPO_MAX_BUCKETS);
    ps_norm_partial *pp = calloc((size_t)a.n_blocks + 1, sizeof *pp);
    for (long s = 0; s < steps; s++) {
        for (int w = 0; w < R; w++) fill(g[w], n, 1000 * (uint64_t)(tied * 10 + R) + 10 * (uint64_t)s + (uint64_t)w,
                                         s == 1 ? 1e-5f : 3e-2f); /* step 1 unclipped, the others clipped */
        /* #8: every bucket reduced by the ring, per stage and replica the NORM partials */
        for (int u = 0; u < U; u++) {
            int nb = topo_unit_buckets(&t, u, -1, NULL, NULL);
            for (int b = 0; b < nb; b++) {
                size_t o, l;
                topo_unit_buckets(&t, u, b, &o, &l);
                float *x[8];
                for (int w = 0; w < R; w++) x[w] = g[w] + whole->unit_off[u] + o;
                ring_sum(x, R, l, red + whole->unit_off[u] + o);
            }
        }
        if (R == 2)
            for (size_t i = 0; i < n; i++)
                if (memcmp(&red[i], &(float){ g[0][i] + g[1][i] }, sizeof(float))) { CU_FAIL("R=2 ring != g0+g1"); break; }
        for (int k = 0; k < 2; k++) {
            to_stage(whole, red, part[k], part[k]->grads);
            for (int r = R - 1; r >= 0; r--) { /* arrival order does not matter */
                uint64_t len = dp_norm_payload(&t, part[k], r, buf);
                CU_ASSERT_FATAL(coord_place_norm_partials(&t, k, r, buf, len, parts, err) == 0);
            }
        }
        coord_combine_norm_partials(&t, parts, sq);
        double want = optim_global_norm(sq, U);
        CU_ASSERT((s == 1) == (want <= t.train.grad_clip));
        for (int k = 0; k < 2; k++) run_optim_apply(&t, part[k], opt[k], s, want);
        /* the servers: every worker pushes every piece (the last worker first) */
        for (int w = R - 1; w >= 0; w--)
            for (int i = a.n_pieces - 1; i >= 0; i--) {
                const ps_piece *pc = &a.pieces[i];
                ps_push push = { w, s, i, 0, g[w] + ps_piece_part_offset(pc, whole), pc->len };
                CU_ASSERT_FATAL(ps_server_push(srv[pc->server], &push, why) == 0);
            }
        /* the partials as the networked layer would gather them: servers in reverse order */
        int np = 0;
        for (int j = S - 1; j >= 0; j--) {
            int c = ps_server_norm_partials(srv[j], pp + np);
            CU_ASSERT_FATAL(c == ps_server_n_blocks(srv[j]));
            np += c;
        }
        CU_ASSERT(np == a.n_blocks);
        double norm2 = ps_norm_combine(&t, &a, pp, (size_t)np, err);
        double norm = ps_norm_sync(srv, &a);
        CU_ASSERT(memcmp(&norm, &norm2, sizeof norm) == 0);
        if (memcmp(&norm, &want, sizeof norm)) {
            diffs++;
            if (!quiet) fprintf(stderr, "\n  R=%d S=%d tied=%d step %ld: norm %.17g, #8 %.17g\n", R, S, tied, s, norm, want);
        }
        for (int j = 0; j < S; j++) CU_ASSERT_FATAL(ps_server_apply(srv[j], norm, err) == 0);
        /* every weight and moment */
        for (int k = 0; k < 2; k++) {
            model_part *e = model_part_new(&t.model, t.stages[k].units, t.stages[k].n_units, 1, 1);
            optim_adamw *eo = optim_new(e->n_params);
            size_t got = 0;
            for (int j = 0; j < S; j++) got += ps_server_export(srv[j], e, eo);
            CU_ASSERT(got == e->n_params);
            size_t bytes = e->n_params * sizeof(float);
            int d = memcmp(e->params, part[k]->params, bytes) != 0 || memcmp(eo->m, opt[k]->m, bytes) != 0 ||
                    memcmp(eo->v, opt[k]->v, bytes) != 0;
            if (d && !quiet) fprintf(stderr, "\n  R=%d S=%d tied=%d step %ld stage %d: weights or moments differ\n", R, S,
                                     tied, s, k);
            diffs += d;
            model_part_free(e);
            optim_free(eo);
        }
    }
    free(pp);
    free(buf);
    free(parts);
    free(sq);
    free(red);
    for (int w = 0; w < R; w++) free(g[w]);
    for (int k = 0; k < 2; k++) {
        model_part_free(part[k]);
        optim_free(opt[k]);
    }
    model_part_free(whole);
    free(all);
    for (int j = 0; j < S; j++) ps_server_free(srv[j]);
    ps_assignment_free(&a);
    topo_free(&t);
    return diffs;
}

static void test_bitwise_r2(void)
{
    for (int tied = 0; tied <= 1; tied++)
        for (int S = 2; S <= 3; S++) CU_ASSERT(compare(2, S, tied, 3, 0) == 0);
}

static void test_bitwise_r3(void)
{
    for (int tied = 0; tied <= 1; tied++)
        for (int S = 2; S <= 3; S++) CU_ASSERT(compare(3, S, tied, 3, 0) == 0);
}

/* R = 1: a unit is one block; the norm is the one-process trainer's
 * (optim_unit_sqnorms in unit order) bit for bit, though units have several buckets. */
static void test_one_worker(void)
{
    topo t;
    ps_assignment a;
    char err[ERR_LEN], why[ERR_LEN];
    CU_ASSERT_FATAL(load(&t, 1, 2, 0) == 0);
    CU_ASSERT_FATAL(ps_assign(&t, &a, err) == 0);
    int U = topo_n_units(&t);
    CU_ASSERT(a.n_blocks == U && topo_unit_buckets(&t, 1, -1, NULL, NULL) >= 3);
    ps_server *srv[2];
    for (int j = 0; j < 2; j++) CU_ASSERT_FATAL((srv[j] = ps_server_new(&t, &a, j, err)) != NULL);
    int *all = malloc(sizeof(int) * (size_t)U);
    for (int u = 0; u < U; u++) all[u] = u;
    model_part *p = model_part_new(&t.model, all, U, 1, (uint64_t)t.train.seed);
    fill(p->grads, p->n_params, 77, 3e-2f);
    for (int i = 0; i < a.n_pieces; i++) {
        const ps_piece *pc = &a.pieces[i];
        ps_push push = { 0, 0, i, 0, p->grads + ps_piece_part_offset(pc, p), pc->len };
        CU_ASSERT_FATAL(ps_server_push(srv[pc->server], &push, why) == 0);
    }
    double *sq = calloc((size_t)U, sizeof(double));
    optim_unit_sqnorms(p, sq);
    double want = optim_global_norm(sq, U), norm = ps_norm_sync(srv, &a);
    CU_ASSERT(memcmp(&norm, &want, sizeof norm) == 0);
    free(sq);
    free(all);
    model_part_free(p);
    for (int j = 0; j < 2; j++) ps_server_free(srv[j]);
    ps_assignment_free(&a);
    topo_free(&t);
}

/* The combination refuses partials that are not the assignment's. */
static void test_combine_refusals(void)
{
    topo t;
    ps_assignment a;
    char err[ERR_LEN];
    CU_ASSERT_FATAL(load(&t, 2, 2, 0) == 0);
    CU_ASSERT_FATAL(ps_assign(&t, &a, err) == 0);
    ps_norm_partial *pp = calloc((size_t)a.n_blocks + 1, sizeof *pp);
    for (int b = 0; b < a.n_blocks; b++) pp[b] = (ps_norm_partial){ a.blocks[b].unit, a.blocks[b].bucket, a.blocks[b].seg, 1.0 };
    CU_ASSERT(ps_norm_combine(&t, &a, pp, (size_t)a.n_blocks, err) == sqrt((double)a.n_blocks));
    CU_ASSERT(isnan(ps_norm_combine(&t, &a, pp, (size_t)a.n_blocks - 1, err)) && strstr(err, "is missing"));
    pp[a.n_blocks] = pp[0];
    CU_ASSERT(isnan(ps_norm_combine(&t, &a, pp, (size_t)a.n_blocks + 1, err)) && strstr(err, "comes twice"));
    pp[0].bucket = 999;
    CU_ASSERT(isnan(ps_norm_combine(&t, &a, pp, (size_t)a.n_blocks, err)) && strstr(err, "is not a block"));
    /* a server gives partials only while it waits for the norm */
    ps_server *s0 = ps_server_new(&t, &a, 0, err);
    CU_ASSERT(ps_server_norm_partials(s0, pp) == -1);
    ps_server_free(s0);
    free(pp);
    ps_assignment_free(&a);
    topo_free(&t);
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/test_ps_norm.XXXXXX");
    if (!mkdtemp(root)) return 2;
    CU_TestInfo tests[] = {
        { "R = 2: norm, weights, moments bitwise #8 (tied, untied; 2, 3 servers)", test_bitwise_r2 },
        { "R = 3: the same with the ring's per-segment order", test_bitwise_r3 },
        { "R = 1: one block per unit, the one-process trainer's norm", test_one_worker },
        { "combination: unknown, duplicate, missing partials; state", test_combine_refusals },
        CU_TEST_INFO_NULL,
    };
    int rc = tests_run("ps_norm", tests);
    if (tests_rm_tree(root)) rc = rc ? rc : 1;
    return rc;
}
