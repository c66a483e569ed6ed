/* test_ps.c — parameter servers without the network (ps/ps.h): the
 * assignment (#8's (bucket, segment) blocks, every float once, balanced,
 * deterministic), the clocks and the staleness bound, the synchronous update
 * bitwise equal to summing the workers' gradients in worker order and applying
 * AdamW with run_optim_apply_ranges on one part (with the servers' norm; that
 * the norm is bitwise #8's is test_ps_norm.c's), the
 * asynchronous update applied on arrival with the documented scaling, the
 * refusals and their reasons, and the checkpoint round trip through run/'s
 * shard files. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "coll/coll.h"
#include "ps/ps.h"
#include "run/run.h"
#include "run/run_ckpt.h"
#include "topo/topo.h"
#include "tests/tests.h"

static char root[256];

/* topologies/shakespeare-ps.json (2 stages x 2 replicas, 2 servers) with a
 * small model, plus extra overrides. */
static int load_sets(topo *t, const char *file, const char *extra1, const char *extra2)
{
    char *sets[8] = { "model.n_layers=2", "model.dim=32", "model.ffn_dim=48", "stages.0.layers=embed,0",
                      "stages.1.layers=1,head" };
    int n = 5;
    if (extra1) sets[n++] = (char *)extra1;
    if (extra2) sets[n++] = (char *)extra2;
    char err[ERR_LEN];
    int rc = topo_load(t, file, sets, n, err);
    if (rc) fprintf(stderr, "\n  %s\n", err);
    return rc;
}

static int load(topo *t, const char *extra1, const char *extra2)
{
    return load_sets(t, "topologies/shakespeare-ps.json", extra1, extra2);
}

/* Another topology with the same small model (and description: it may differ). */
static int load_as(topo *t, const char *file)
{
    return load_sets(t, file, NULL, NULL);
}

/* A part holding every unit (what one host trains). */
static model_part *whole(const topo *t)
{
    int n = topo_n_units(t);
    int *u = malloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) u[i] = i;
    model_part *p = model_part_new(&t->model, u, n, 1, (uint64_t)t->train.seed);
    free(u);
    return p;
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

/* Pushes worker w's whole-model gradient g (laid out as p) for step t to the
 * servers, piece by piece (last piece first: arrival order must not matter).
 * Returns the number of refusals; the last reason in why. */
static int push_all(ps_server **srv, const ps_assignment *a, const model_part *p, int w, long t, const float *g,
                    double norm, char *why)
{
    int refused = 0;
    for (int i = a->n_pieces - 1; i >= 0; i--) {
        const ps_piece *pc = &a->pieces[i];
        ps_push push = { w, t, i, norm, g + ps_piece_part_offset(pc, p), pc->len };
        refused += ps_server_push(srv[pc->server], &push, why) != 0;
    }
    return refused;
}

/* 1 when every piece's pulled weights equal p's bit for bit. */
static int same_weights(ps_server **srv, const ps_assignment *a, const model_part *p)
{
    for (int i = 0; i < a->n_pieces; i++) {
        size_t len;
        long ver;
        const float *w = ps_server_pull(srv[a->pieces[i].server], i, &ver, &len);
        if (!w || len != a->pieces[i].len) return 0;
        if (memcmp(w, p->params + ps_piece_part_offset(&a->pieces[i], p), len * sizeof(float))) {
            fprintf(stderr, "\n  piece %d (%s [%zu..)) differs\n", i, a->pieces[i].name, a->pieces[i].tensor_off);
            return 0;
        }
    }
    return 1;
}

static double whole_norm(const model_part *p)
{
    double *sq = calloc((size_t)p->n_units, sizeof(double));
    optim_unit_sqnorms(p, sq);
    double n = optim_global_norm(sq, p->n_units);
    free(sq);
    return n;
}

static void servers_new(const topo *t, const ps_assignment *a, ps_server **srv)
{
    char err[ERR_LEN];
    for (int j = 0; j < a->n_servers; j++) CU_ASSERT_PTR_NOT_NULL_FATAL(srv[j] = ps_server_new(t, a, j, err));
}

static void servers_free(ps_server **srv, int n)
{
    for (int j = 0; j < n; j++) ps_server_free(srv[j]);
}

/* ---- the topology's keys ---- */

static void test_topology(void)
{
    topo t;
    char err[ERR_LEN];
    CU_ASSERT_FATAL(topo_load(&t, "topologies/shakespeare-ps.json", NULL, 0, err) == 0);
    CU_ASSERT(t.sync_id == TOPO_SYNC_PS && t.n_servers == 2 && t.ps.staleness == 0);
    CU_ASSERT(t.parameter_servers[1].port == 29556);
    char *c = topo_canonical_json(&t);
    CU_ASSERT(strstr(c, "\"sync\":\"ps\"") && strstr(c, "\"parameter_servers\":[{") &&
              strstr(c, "\"ps\":{\"staleness\":0}"));
    /* the canonical text loads to itself */
    char path[512];
    snprintf(path, sizeof path, "%s/canonical.json", root);
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs(c, f);
    fclose(f);
    topo t2;
    CU_ASSERT_FATAL(topo_load(&t2, path, NULL, 0, err) == 0);
    char *c2 = topo_canonical_json(&t2);
    CU_ASSERT_STRING_EQUAL(c, c2);
    free(c);
    free(c2);
    topo_free(&t2);
    topo_free(&t);
    /* --set reaches the new keys */
    char *sets[] = { "ps.staleness=-1", "parameter_servers.1.host=127.0.0.2" };
    CU_ASSERT_FATAL(topo_load(&t, "topologies/shakespeare-ps.json", sets, 2, err) == 0);
    CU_ASSERT(t.ps.staleness == -1 && !strcmp(t.parameter_servers[1].host, "127.0.0.2"));
    topo_free(&t);
    char *off[] = { "sync=allreduce" };
    CU_ASSERT(topo_load(&t, "topologies/shakespeare-ps.json", off, 1, err) == -1 &&
              strstr(err, "parameter_servers: only allowed with"));
    /* an all-reduce topology is encoded without them: its hash is what it was */
    CU_ASSERT_FATAL(topo_load(&t, "topologies/shakespeare-2x2.json", NULL, 0, err) == 0);
    CU_ASSERT(t.sync_id == TOPO_SYNC_ALLREDUCE && t.n_servers == 0);
    c = topo_canonical_json(&t);
    CU_ASSERT(!strstr(c, "\"sync\"") && !strstr(c, "parameter_servers") && !strstr(c, "\"ps\""));
    free(c);
    topo_free(&t);
}

/* ---- the assignment ---- */

static void check_assignment(const topo *t, int S)
{
    ps_assignment a, b;
    char err[ERR_LEN];
    topo tt = *t;
    tt.n_servers = S; /* ps_assign reads only the count */
    CU_ASSERT_FATAL(ps_assign(&tt, &a, err) == 0);
    CU_ASSERT_FATAL(ps_assign(&tt, &b, err) == 0);
    /* deterministic */
    CU_ASSERT_FATAL(a.n_pieces == b.n_pieces);
    for (int i = 0; i < a.n_pieces; i++) {
        const ps_piece *x = &a.pieces[i], *y = &b.pieces[i];
        CU_ASSERT(!strcmp(x->name, y->name) && x->unit == y->unit && x->off == y->off && x->len == y->len &&
                  x->server == y->server && x->tensor_off == y->tensor_off);
    }
    /* every float of every tensor exactly once, inside its named tensor */
    size_t total = 0, lo = SIZE_MAX, hi = 0, sum = 0;
    for (int u = 0; u < a.n_units; u++) {
        size_t n = model_unit_params(&t->model, u);
        unsigned char *seen = calloc(n + 1, 1);
        model_tensor ten[MODEL_MAX_UNIT_TENSORS];
        int nt = model_unit_tensors(&t->model, u, ten);
        for (int i = 0; i < a.n_pieces; i++) {
            const ps_piece *pc = &a.pieces[i];
            if (pc->unit != u) continue;
            CU_ASSERT(pc->stage == topo_stage_of_unit(t, u));
            CU_ASSERT_FATAL(pc->off + pc->len <= n && pc->len > 0);
            for (size_t k = pc->off; k < pc->off + pc->len; k++) seen[k]++;
            int found = 0;
            for (int k = 0; k < nt; k++)
                if (!strcmp(ten[k].name, pc->name))
                    found = pc->off == ten[k].offset + pc->tensor_off && pc->tensor_off + pc->len <= ten[k].numel &&
                            pc->decay == ten[k].decay;
            CU_ASSERT(found);
        }
        for (size_t k = 0; k < n; k++)
            if (seen[k] != 1) { CU_FAIL("a float is not covered exactly once"); break; }
        free(seen);
        total += n;
    }
    CU_ASSERT(a.total == total);
    for (int j = 0; j < S; j++) {
        const int *idx;
        int n = ps_server_pieces(&a, j, &idx);
        size_t fl = 0;
        for (int i = 0; i < n; i++) {
            CU_ASSERT(a.pieces[idx[i]].server == j);
            fl += a.pieces[idx[i]].len;
        }
        CU_ASSERT(fl == a.server_floats[j]);
        sum += fl;
        if (fl < lo) lo = fl;
        if (fl > hi) hi = fl;
    }
    CU_ASSERT(sum == total);
    /* the stated bound: max - min <= the longest block, a block at most a bucket's segment */
    CU_ASSERT(hi - lo <= a.max_block);
    CU_ASSERT(lo > 0);
    if (a.n_replicas > 1) CU_ASSERT(a.max_block <= (topo_bucket_floats(t) + (size_t)a.n_replicas - 1) / (size_t)a.n_replicas);
    /* blocks are #8's (bucket, segment) runs, each whole on one server, cut at tensors into consecutive pieces */
    int nbk = 0;
    for (int u = 0; u < a.n_units; u++) {
        int k = topo_unit_buckets(t, u, -1, NULL, NULL);
        for (int b = 0; b < k; b++)
            for (int r = 0; r < a.n_replicas; r++) {
                size_t bo, bl, so, sl;
                topo_unit_buckets(t, u, b, &bo, &bl);
                coll_segment(bl, a.n_replicas, r, &so, &sl);
                if (!sl) continue;
                CU_ASSERT_FATAL(nbk < a.n_blocks);
                const ps_block *B = &a.blocks[nbk];
                CU_ASSERT(B->unit == u && B->bucket == b && B->seg == r && B->off == bo + so && B->len == sl);
                size_t cov = 0, next = B->off;
                for (int i = 0; i < a.n_pieces; i++)
                    if (a.pieces[i].block == nbk) {
                        CU_ASSERT(a.pieces[i].server == B->server && a.pieces[i].off == next);
                        next += a.pieces[i].len;
                        cov += a.pieces[i].len;
                    }
                CU_ASSERT(cov == B->len);
                nbk++;
            }
    }
    CU_ASSERT(nbk == a.n_blocks);
    int np = 0;
    for (int k = 0; k < a.n_stages; k++) {
        const int *idx;
        int n = ps_stage_pieces(&a, k, &idx);
        for (int i = 0; i < n; i++) CU_ASSERT(a.pieces[idx[i]].stage == k);
        np += n;
    }
    CU_ASSERT(np == a.n_pieces);
    ps_assignment_free(&a);
    ps_assignment_free(&b);
}

static void test_assign(void)
{
    topo t;
    char err[ERR_LEN];
    CU_ASSERT_FATAL(load(&t, NULL, NULL) == 0);
    for (int S = 1; S <= 8; S++) check_assignment(&t, S);
    /* one bucket per unit: 8 blocks (4 units x 2 segments) cannot feed 9 servers */
    ps_assignment a9;
    t.n_servers = 9;
    CU_ASSERT(ps_assign(&t, &a9, err) == -1 && strstr(err, "shakespeare-ps.json: parameter_servers: 9 servers") &&
              strstr(err, "only 8 blocks"));
    t.n_servers = 2;
    topo_free(&t);
    CU_ASSERT_FATAL(load(&t, "train.bucket_mb=0.01", NULL) == 0); /* several buckets per unit */
    for (int S = 1; S <= 9; S++) check_assignment(&t, S);
    topo_free(&t);
    CU_ASSERT_FATAL(load(&t, "model.tie_embeddings=true", "train.bucket_mb=0.01") == 0);
    for (int S = 1; S <= 5; S += 2) check_assignment(&t, S);
    topo_free(&t);
    /* the shipped topology's own model */
    CU_ASSERT_FATAL(topo_load(&t, "topologies/shakespeare-ps.json", NULL, 0, err) == 0);
    check_assignment(&t, t.n_servers);
    check_assignment(&t, 3);
    topo_free(&t);
}

/* ---- clocks and the bound ---- */

static void test_clocks(void)
{
    topo t;
    ps_assignment a;
    ps_server *srv[2];
    char err[ERR_LEN], why[ERR_LEN];
    CU_ASSERT_FATAL(load(&t, "ps.staleness=2", NULL) == 0);
    CU_ASSERT_FATAL(ps_assign(&t, &a, err) == 0);
    servers_new(&t, &a, srv);
    model_part *p = whole(&t);
    float *g = calloc(p->n_params, sizeof(float));
    fill(g, p->n_params, 1, 1e-3f);
    for (int j = 0; j < 2; j++) {
        CU_ASSERT(ps_server_may_start(srv[j], 0, 2)); /* 2 - 0 <= 2: within */
        CU_ASSERT(!ps_server_may_start(srv[j], 0, 3)); /* s + 1 ahead: held */
    }
    for (long s = 0; s < 3; s++) CU_ASSERT(push_all(srv, &a, p, 0, s, g, 0.1, why) == 0);
    for (int j = 0; j < 2; j++) {
        CU_ASSERT(ps_server_clock(srv[j], 0) == 3 && ps_server_clock(srv[j], 1) == 0);
        CU_ASSERT(!ps_server_may_start(srv[j], 0, 3));
        CU_ASSERT(ps_server_may_start(srv[j], 1, 0));
    }
    CU_ASSERT(push_all(srv, &a, p, 0, 3, g, 0.1, why) == a.n_pieces); /* held: every piece refused */
    CU_ASSERT(strstr(why, "ahead") != NULL);
    CU_ASSERT(push_all(srv, &a, p, 1, 0, g, 0.1, why) == 0);
    for (int j = 0; j < 2; j++) {
        CU_ASSERT(ps_server_may_start(srv[j], 0, 3)); /* the slowest moved on */
        CU_ASSERT(ps_server_step(srv[j]) == 1);
        /* worker 0's three steps had no one ahead of them; worker 1's step 0 came after 3 of worker 0's */
        const uint64_t *h = ps_server_staleness(srv[j]);
        CU_ASSERT(h[0] == 3 && h[3] == 1 && h[1] == 0 && h[2] == 0);
    }
    servers_free(srv, 2);
    ps_assignment_free(&a);
    topo_free(&t);

    /* unbounded: never held */
    CU_ASSERT_FATAL(load(&t, "ps.staleness=-1", NULL) == 0);
    CU_ASSERT_FATAL(ps_assign(&t, &a, err) == 0);
    servers_new(&t, &a, srv);
    for (long s = 0; s < 6; s++) CU_ASSERT(push_all(srv, &a, p, 1, s, g, 0.1, why) == 0);
    CU_ASSERT(ps_server_may_start(srv[0], 1, 6) && ps_server_may_start(srv[1], 1, 1000000));
    CU_ASSERT(ps_server_staleness(srv[0])[0] == 6);
    CU_ASSERT(push_all(srv, &a, p, 0, 0, g, 0.1, why) == 0); /* 6 steps behind: unbounded accepts it */
    CU_ASSERT(ps_server_staleness(srv[0])[6] == 1);
    servers_free(srv, 2);
    ps_assignment_free(&a);
    topo_free(&t);

    /* synchronous: step 1 starts once step 0 is applied */
    CU_ASSERT_FATAL(load(&t, NULL, NULL) == 0);
    CU_ASSERT_FATAL(ps_assign(&t, &a, err) == 0);
    servers_new(&t, &a, srv);
    CU_ASSERT(ps_server_may_start(srv[0], 0, 0) && !ps_server_may_start(srv[0], 0, 1));
    CU_ASSERT(push_all(srv, &a, p, 0, 0, g, 0, why) == 0);
    CU_ASSERT(!ps_server_may_start(srv[0], 0, 1) && ps_server_state(srv[0]) == PS_COLLECT);
    CU_ASSERT(push_all(srv, &a, p, 1, 0, g, 0, why) == 0);
    CU_ASSERT(ps_server_state(srv[0]) == PS_NEED_NORM && !ps_server_may_start(srv[0], 0, 1));
    double norm = ps_norm_sync(srv, &a);
    for (int j = 0; j < 2; j++) CU_ASSERT(ps_server_apply(srv[j], norm, err) == 0);
    CU_ASSERT(ps_server_may_start(srv[0], 0, 1) && ps_server_may_start(srv[1], 1, 1));
    CU_ASSERT(ps_server_step(srv[0]) == 1 && ps_server_staleness(srv[0])[0] == 2);
    servers_free(srv, 2);
    ps_assignment_free(&a);
    topo_free(&t);
    free(g);
    model_part_free(p);
}

/* ---- synchronous: bitwise #8 ---- */

/* ps_server_apply_each's callback in the tests: local pieces in order, each
 * already at the step's version; stops at piece stop_at (-1: never). */
typedef struct {
    ps_server *s;
    const int *idx;   /* the server's pieces (ps_server_pieces) */
    int calls, bad, stop_at;
    long want_ver;
} each_ctx;

static int each_cb(void *ctx, int l)
{
    each_ctx *c = ctx;
    long ver = -1;
    size_t len;
    if (l != c->calls++ || !ps_server_pull(c->s, c->idx[l], &ver, &len) || ver != c->want_ver) c->bad++;
    return l == c->stop_at;
}

static void test_sync_bitwise(void)
{
    topo t;
    ps_assignment a;
    ps_server *srv[2];
    char err[ERR_LEN], why[ERR_LEN];
    CU_ASSERT_FATAL(load(&t, NULL, NULL) == 0);
    CU_ASSERT_FATAL(ps_assign(&t, &a, err) == 0);
    servers_new(&t, &a, srv);
    model_part *ref = whole(&t), *back = whole(&t);
    optim_adamw *o = optim_new(ref->n_params), *ob = optim_new(ref->n_params);
    size_t n = ref->n_params, zero = 0;
    float *g0 = malloc(n * sizeof(float)), *g1 = malloc(n * sizeof(float));
    CU_ASSERT(same_weights(srv, &a, ref)); /* initialised as model_part_new */
    for (long s = 0; s < 3; s++) {
        float amp = s == 1 ? 1e-5f : 1e-2f; /* step 1 is not clipped, 0 and 2 are */
        fill(g0, n, 10 + (uint64_t)s, amp);
        fill(g1, n, 20 + (uint64_t)s, amp);
        /* worker 1 first: the sum is still taken in worker order */
        CU_ASSERT(push_all(srv, &a, ref, 1, s, g1, 0, why) == 0);
        CU_ASSERT(push_all(srv, &a, ref, 0, s, g0, 0, why) == 0);
        /* the reference: gradients summed in worker order, the global norm, AdamW on ranges */
        for (size_t i = 0; i < n; i++) ref->grads[i] = g0[i] + g1[i];
        double want = whole_norm(ref);
        double norm = ps_norm_sync(srv, &a);
        /* the norm is #8's (bucket, segment) partials, not the one-host chain: equal up to
         * rounding here, bitwise #8's in test_ps_norm.c */
        CU_ASSERT(fabs(norm - want) <= 1e-12 * want);
        CU_ASSERT((s == 1) == (norm <= t.train.grad_clip));
        run_optim_apply_ranges(&t, ref, o, s, norm, &zero, &n, 1);
        /* server 1 sends each piece as soon as it is updated (stage/server.c): the same bits */
        each_ctx c = { srv[1], NULL, 0, 0, -1, s + 1 };
        int np1 = ps_server_pieces(&a, 1, &c.idx);
        CU_ASSERT(ps_server_apply(srv[0], norm, err) == 0);
        CU_ASSERT(ps_server_apply_each(srv[1], norm, each_cb, &c, err) == 0);
        CU_ASSERT(c.calls == np1 && np1 > 1 && c.bad == 0);
        CU_ASSERT(same_weights(srv, &a, ref));
    }
    /* moments too */
    for (int j = 0; j < 2; j++) ps_server_export(srv[j], back, ob);
    CU_ASSERT(!memcmp(back->params, ref->params, n * sizeof(float)));
    CU_ASSERT(!memcmp(ob->m, o->m, n * sizeof(float)) && !memcmp(ob->v, o->v, n * sizeof(float)));
    long ver;
    size_t len;
    CU_ASSERT(ps_server_pull(srv[0], a.server_idx[0], &ver, &len) != NULL && ver == 3);
    /* a callback that fails stops the update there, with the reason */
    CU_ASSERT(push_all(srv, &a, ref, 0, 3, g0, 0, why) == 0 && push_all(srv, &a, ref, 1, 3, g1, 0, why) == 0);
    each_ctx c = { srv[1], NULL, 0, 0, 0, 4 };
    ps_server_pieces(&a, 1, &c.idx);
    CU_ASSERT(ps_server_apply_each(srv[1], 1.0, each_cb, &c, err) == -1 && c.calls == 1);
    CU_ASSERT(strstr(err, "stopped") != NULL);
    free(g0);
    free(g1);
    optim_free(o);
    optim_free(ob);
    model_part_free(ref);
    model_part_free(back);
    servers_free(srv, 2);
    ps_assignment_free(&a);
    topo_free(&t);
}

/* ---- asynchronous: applied on arrival, scaled ---- */

static void test_async(void)
{
    topo t;
    ps_assignment a;
    ps_server *srv[2];
    char err[ERR_LEN], why[ERR_LEN];
    CU_ASSERT_FATAL(load(&t, "ps.staleness=2", NULL) == 0);
    CU_ASSERT_FATAL(ps_assign(&t, &a, err) == 0);
    servers_new(&t, &a, srv);
    model_part *ref = whole(&t);
    optim_adamw *o = optim_new(ref->n_params);
    size_t n = ref->n_params;
    float *g = malloc(n * sizeof(float));
    const int R = t.n_replicas;
    /* one piece alone is applied at once */
    fill(g, n, 5, 1e-2f);
    ps_push one = { 0, 0, 0, 0.5, g + ps_piece_part_offset(&a.pieces[0], ref), a.pieces[0].len };
    long v0, v1;
    size_t len;
    const float *w = ps_server_pull(srv[a.pieces[0].server], 0, &v0, &len);
    float before = w[0];
    CU_ASSERT(v0 == 0);
    CU_ASSERT_FATAL(ps_server_push(srv[a.pieces[0].server], &one, why) == 0);
    w = ps_server_pull(srv[a.pieces[0].server], 0, &v1, &len);
    CU_ASSERT(v1 == 1 && w[0] != before);
    CU_ASSERT(ps_server_pull(srv[a.pieces[1].server], 1, &v1, &len) && v1 == 0);
    servers_free(srv, 2);
    servers_new(&t, &a, srv);
    /* pushes in the order w0 s0, w1 s0, w0 s1, w0 s2, w1 s1: each an AdamW step with
     * gradient x R, clipping by R x the worker's norm, learning rate run_lr(step) /
     * sqrt(R), weight decay / sqrt(R), beta1^R (ps.h) */
    const int order[5][2] = { { 0, 0 }, { 1, 0 }, { 0, 1 }, { 0, 2 }, { 1, 1 } };
    for (int k = 0; k < 5; k++) {
        int wk = order[k][0];
        long s = order[k][1];
        fill(g, n, 100 + (uint64_t)k, k == 2 ? 1e-6f : 1e-2f); /* push 2 is not clipped */
        memcpy(ref->grads, g, n * sizeof(float));
        double norm = whole_norm(ref);
        CU_ASSERT(push_all(srv, &a, ref, wk, s, g, norm, why) == 0);
        optim_hparams h = run_optim_hparams(&t, s);
        h.lr = (float)(run_lr(&t, s) / sqrt(R));
        h.weight_decay = (float)(t.train.weight_decay / sqrt(R));
        h.beta1 = (float)pow(t.train.beta1, R);
        optim_adamw_step(o, ref, &h, (float)R * optim_clip_scale(norm * R, t.train.grad_clip));
        CU_ASSERT(same_weights(srv, &a, ref));
    }
    /* staleness: w0 s0 (0), w1 s0 (w0 at 1: 1), w0 s1 (w1 at 1: 0), w0 s2 (0), w1 s1 (w0 at 3: 2) */
    const uint64_t *h = ps_server_staleness(srv[1]);
    CU_ASSERT(h[0] == 3 && h[1] == 1 && h[2] == 1);
    CU_ASSERT(ps_server_step(srv[0]) == 2 && ps_server_clock(srv[0], 0) == 3);
    free(g);
    optim_free(o);
    model_part_free(ref);
    servers_free(srv, 2);
    ps_assignment_free(&a);
    topo_free(&t);
}

/* The per-push rule's numbers (ps_async_hparams): the recipe's lr 1e-3, beta1
 * 0.9, beta2 0.99, weight decay 0.1 with R = 2 workers; R = 1 is the
 * synchronous rule. */
static void test_async_rule(void)
{
    topo t;
    CU_ASSERT_FATAL(load(&t, "ps.staleness=2", NULL) == 0);
    CU_ASSERT_FATAL(t.n_replicas == 2 && t.train.beta1 == 0.9 && t.train.beta2 == 0.99 && t.train.weight_decay == 0.1);
    long steps[] = { 0, t.train.warmup_steps, t.train.steps - 1 };
    for (int i = 0; i < 3; i++) {
        optim_hparams h = ps_async_hparams(&t, 2, steps[i]), h1 = ps_async_hparams(&t, 1, steps[i]);
        optim_hparams sy = run_optim_hparams(&t, steps[i]);
        CU_ASSERT_DOUBLE_EQUAL(h.lr, run_lr(&t, steps[i]) / sqrt(2.0), 1e-9); /* not lr / R */
        CU_ASSERT_DOUBLE_EQUAL(h.lr * h.weight_decay, sy.lr * sy.weight_decay / 2.0, 1e-12); /* 2 pushes: one step's decay */
        CU_ASSERT_DOUBLE_EQUAL(h.beta1, 0.81, 1e-6); /* beta1^R: the momentum correction */
        CU_ASSERT(h.beta2 == sy.beta2 && h.eps == sy.eps);
        CU_ASSERT(h1.lr == sy.lr && h1.beta1 == sy.beta1 && h1.beta2 == sy.beta2 && h1.weight_decay == sy.weight_decay);
    }
    topo_free(&t);
}

/* ---- refusals ---- */

/* Pushes and expects a refusal whose reason holds `want`, with nothing changed. */
static void refused(ps_server *s, const ps_push *p, const char *want)
{
    char why[ERR_LEN] = "";
    long c0 = ps_server_clock(s, p->worker >= 0 && p->worker < 2 ? p->worker : 0), v0 = -1, v1 = -2;
    const float *w = ps_server_pull(s, p->piece, &v0, NULL);
    float w0 = w ? w[0] : 0;
    CU_ASSERT(ps_server_push(s, p, why) == -1);
    if (!strstr(why, want)) fprintf(stderr, "\n  wanted \"%s\" in \"%s\"\n", want, why);
    CU_ASSERT(strstr(why, want) != NULL);
    w = ps_server_pull(s, p->piece, &v1, NULL);
    CU_ASSERT(ps_server_clock(s, p->worker >= 0 && p->worker < 2 ? p->worker : 0) == c0);
    CU_ASSERT(!w || (v1 == v0 && w[0] == w0));
}

static void test_refusals(void)
{
    topo t;
    ps_assignment a;
    ps_server *srv[2];
    char err[ERR_LEN], why[ERR_LEN];
    CU_ASSERT_FATAL(load(&t, "ps.staleness=1", NULL) == 0);
    CU_ASSERT_FATAL(ps_assign(&t, &a, err) == 0);
    servers_new(&t, &a, srv);
    model_part *p = whole(&t);
    float *g = calloc(p->n_params, sizeof(float));
    int i0 = a.server_idx[a.server_start[0]], i1 = a.server_idx[a.server_start[1]];
    const float *g0 = g + ps_piece_part_offset(&a.pieces[i0], p);
    size_t l0 = a.pieces[i0].len;
    refused(srv[0], &(ps_push){ 2, 0, i0, 0, g0, l0 }, "unknown worker 2");
    refused(srv[0], &(ps_push){ -1, 0, i0, 0, g0, l0 }, "unknown worker -1");
    refused(srv[0], &(ps_push){ 0, 0, i1, 0, g0, a.pieces[i1].len }, "not held by parameter server 0");
    refused(srv[0], &(ps_push){ 0, 0, a.n_pieces, 0, g0, l0 }, "not held");
    refused(srv[0], &(ps_push){ 0, 0, i0, 0, g0, l0 - 1 }, "wrong size");
    refused(srv[0], &(ps_push){ 0, 1, i0, 0, g0, l0 }, "its next step is 0");
    CU_ASSERT(ps_server_push(srv[0], &(ps_push){ 0, 0, i0, 0, g0, l0 }, why) == 0);
    refused(srv[0], &(ps_push){ 0, 0, i0, 0, g0, l0 }, "twice");
    CU_ASSERT(push_all(srv, &a, p, 0, 0, g, 0, why) == 1); /* the rest of step 0; i0 again refused */
    CU_ASSERT(push_all(srv, &a, p, 0, 1, g, 0, why) == 0); /* 1 ahead: allowed */
    refused(srv[0], &(ps_push){ 0, 0, i0, 0, g0, l0 }, "too stale: worker 0 already pushed step 0");
    refused(srv[0], &(ps_push){ 0, 2, i0, 0, g0, l0 }, "ahead"); /* 2 ahead of worker 1 */
    /* a worker that left is unknown; one that comes back too far behind is too stale */
    CU_ASSERT(ps_server_drop(srv[0], 1, why) == 0 && ps_server_drop(srv[1], 1, why) == 0);
    refused(srv[0], &(ps_push){ 1, 0, i0, 0, g0, l0 }, "dropped");
    for (long s = 2; s < 5; s++) CU_ASSERT(push_all(srv, &a, p, 0, s, g, 0, why) == 0);
    CU_ASSERT(ps_server_join(srv[0], 1, 0, why) == 0);
    refused(srv[0], &(ps_push){ 1, 0, i0, 0, g0, l0 }, "too stale: worker 1's step 0 is 5 steps behind");
    servers_free(srv, 2);
    ps_assignment_free(&a);
    topo_free(&t);

    /* synchronous: no push while the norm is awaited, no apply before, no drop */
    CU_ASSERT_FATAL(load(&t, NULL, NULL) == 0);
    CU_ASSERT_FATAL(ps_assign(&t, &a, err) == 0);
    servers_new(&t, &a, srv);
    CU_ASSERT(ps_server_apply(srv[0], 1.0, err) == -1 && strstr(err, "no step to apply"));
    CU_ASSERT(ps_server_drop(srv[0], 1, why) == -1 && strstr(why, "synchronous"));
    CU_ASSERT(push_all(srv, &a, p, 0, 0, g, 0, why) == 0);
    refused(srv[0], &(ps_push){ 0, 1, i0, 0, g0, l0 }, "before step 0 is applied");
    CU_ASSERT(push_all(srv, &a, p, 1, 0, g, 0, why) == 0);
    refused(srv[0], &(ps_push){ 0, 1, i0, 0, g0, l0 }, "waits for its norm");
    ps_norm_partial np0[64];
    CU_ASSERT(ps_server_norm_partials(srv[0], np0) == ps_server_n_blocks(srv[0]) && ps_server_n_blocks(srv[0]) <= 64);
    servers_free(srv, 2);
    ps_assignment_free(&a);
    topo_free(&t);
    free(g);
    model_part_free(p);
}

/* ---- checkpoints ---- */

static void test_checkpoint(void)
{
    topo t;
    ps_assignment a;
    ps_server *srv[2], *fresh[2];
    char err[ERR_LEN], why[ERR_LEN], dir[512];
    CU_ASSERT_FATAL(load(&t, NULL, NULL) == 0);
    CU_ASSERT_FATAL(ps_assign(&t, &a, err) == 0);
    servers_new(&t, &a, srv);
    model_part *p = whole(&t);
    float *g = malloc(p->n_params * sizeof(float));
    for (long s = 0; s < 2; s++)
        for (int w = 0; w < 2; w++) {
            fill(g, p->n_params, 40 + (uint64_t)(2 * s + w), 1e-2f);
            CU_ASSERT(push_all(srv, &a, p, w, s, g, 0, why) == 0);
            if (w == 1) {
                double norm = ps_norm_sync(srv, &a);
                for (int j = 0; j < 2; j++) CU_ASSERT(ps_server_apply(srv[j], norm, err) == 0);
            }
        }
    /* write: stage k's shard assembled from every server, as run_write_shard does it */
    snprintf(dir, sizeof dir, "%s/checkpoints/step-2", root);
    for (int k = 0; k < t.n_stages; k++) {
        model_part *sp = model_part_new(&t.model, t.stages[k].units, t.stages[k].n_units, 1, 1);
        optim_adamw *so = optim_new(sp->n_params);
        size_t got = 0;
        for (int j = 0; j < 2; j++) got += ps_server_export(srv[j], sp, so);
        CU_ASSERT(got == sp->n_params);
        so->step = 2;
        run_ckpt_state st = { 2, 77 };
        CU_ASSERT_FATAL(run_ckpt_write_shard(dir, k, sp, so, &st, err) == 0);
        model_part_free(sp);
        optim_free(so);
    }
    CU_ASSERT_FATAL(run_ckpt_commit(dir, &t, 2, NULL, err) == 0);
    /* resume on one host: the whole model from the shards */
    run_ckpt c;
    run_ckpt_state st;
    model_part *q = whole(&t);
    optim_adamw *oq = optim_new(q->n_params);
    CU_ASSERT_FATAL(run_ckpt_open(&c, dir, NULL, err) == 0);
    CU_ASSERT_FATAL(run_ckpt_load_units(&c, q, oq, &st, err) == 0);
    run_ckpt_close(&c);
    CU_ASSERT(st.step == 2 && oq->step == 2);
    CU_ASSERT(same_weights(srv, &a, q));
    /* resume on parameter servers: bitwise the state that was saved */
    servers_new(&t, &a, fresh);
    for (int j = 0; j < 2; j++) CU_ASSERT(ps_server_import(fresh[j], q, oq, 2, err) == 0);
    model_part *e1 = whole(&t), *e2 = whole(&t);
    optim_adamw *o1 = optim_new(q->n_params), *o2 = optim_new(q->n_params);
    for (int j = 0; j < 2; j++) {
        ps_server_export(srv[j], e1, o1);
        ps_server_export(fresh[j], e2, o2);
        CU_ASSERT(ps_server_step(fresh[j]) == 2 && ps_server_may_start(fresh[j], 0, 2));
    }
    size_t bytes = q->n_params * sizeof(float);
    CU_ASSERT(!memcmp(e1->params, e2->params, bytes) && !memcmp(o1->m, o2->m, bytes) && !memcmp(o1->v, o2->v, bytes));
    /* and the next step continues identically */
    fill(g, p->n_params, 99, 1e-2f);
    for (int w = 0; w < 2; w++) {
        CU_ASSERT(push_all(srv, &a, p, w, 2, g, 0, why) == 0);
        CU_ASSERT(push_all(fresh, &a, p, w, 2, g, 0, why) == 0);
    }
    double n1 = ps_norm_sync(srv, &a), n2 = ps_norm_sync(fresh, &a);
    for (int j = 0; j < 2; j++) {
        CU_ASSERT(ps_server_apply(srv[j], n1, err) == 0);
        CU_ASSERT(ps_server_apply(fresh[j], n2, err) == 0);
        ps_server_export(srv[j], e1, o1);
        ps_server_export(fresh[j], e2, o2);
    }
    CU_ASSERT(!memcmp(e1->params, e2->params, bytes) && !memcmp(o1->m, o2->m, bytes));
    /* a part without a server's units is refused */
    model_part *s0 = model_part_new(&t.model, t.stages[0].units, t.stages[0].n_units, 1, 1);
    optim_adamw *os0 = optim_new(s0->n_params);
    CU_ASSERT(ps_server_import(fresh[0], s0, os0, 2, err) == -1 && strstr(err, "not in the loaded part"));
    /* the PS run's checkpoint resumes under all-reduce: sync, parameter_servers and ps may differ */
    topo ar;
    CU_ASSERT_FATAL(load_as(&ar, "topologies/shakespeare-2x2.json") == 0);
    CU_ASSERT_FATAL(run_ckpt_open(&c, dir, NULL, err) == 0);
    int rc = run_ckpt_check_topology(&c, &ar, err);
    if (rc) fprintf(stderr, "\n  %s\n", err);
    CU_ASSERT(rc == 0);
    run_ckpt_close(&c);
    topo_free(&ar);
    model_part_free(s0);
    optim_free(os0);
    free(g);
    model_part_free(p);
    model_part_free(q);
    model_part_free(e1);
    model_part_free(e2);
    optim_free(oq);
    optim_free(o1);
    optim_free(o2);
    servers_free(srv, 2);
    servers_free(fresh, 2);
    ps_assignment_free(&a);
    topo_free(&t);
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/test_ps.XXXXXX");
    if (!mkdtemp(root)) return 2;
    CU_TestInfo tests[] = {
        { "topology: sync, parameter_servers, ps; canonical JSON, --set, hash", test_topology },
        { "assignment: every float once, balanced, deterministic, stage views", test_assign },
        { "clocks: s+1 ahead held, within allowed, -1 never, synchronous", test_clocks },
        { "synchronous: bitwise the worker-order sum + run_optim_apply_ranges", test_sync_bitwise },
        { "asynchronous: applied on arrival, x R, lr / sqrt R, beta1^R, staleness recorded", test_async },
        { "asynchronous rule: lr / sqrt R, decay / sqrt R, beta1^R per push; R = 1 synchronous", test_async_rule },
        { "refusals: worker, piece, size, step, twice, ahead, too stale, state", test_refusals },
        { "checkpoint: shards from servers, one-host resume, import round trip", test_checkpoint },
        CU_TEST_INFO_NULL,
    };
    int rc = tests_run("ps", tests);
    if (tests_rm_tree(root)) rc = rc ? rc : 1;
    return rc;
}
