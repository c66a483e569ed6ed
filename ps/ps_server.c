/* ps_server.c — one parameter server's state: its pieces' weights and AdamW
 * moments packed one piece after another, the workers' clocks, and the state
 * machine of ps/ps.h (PS_COLLECT, PS_NEED_NORM). A push is checked completely
 * before anything changes, so a refused push leaves no trace. No threads, no
 * sockets: the networked layer calls in from its loop. Checkpoint export and
 * import are in ps_ckpt.c. */
#include "ps/ps_int.h"
#include "run/run.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Piece i's weights: the floats model_part_new gives them (the whole tensor
 * initialised from (seed, name), then the piece's range). */
static void init_piece(const topo *t, const ps_piece *pc, float *w)
{
    model_tensor ten[MODEL_MAX_UNIT_TENSORS];
    int n = model_unit_tensors(&t->model, pc->unit, ten);
    for (int i = 0; i < n; i++) {
        if (strcmp(ten[i].name, pc->name)) continue;
        float *full = xmalloc(ten[i].numel * sizeof(float));
        model_tensor_init(&t->model, &ten[i], full, (uint64_t)t->train.seed);
        memcpy(w, full + pc->tensor_off, pc->len * sizeof(float));
        free(full);
        return;
    }
}

ps_server *ps_server_new(const topo *t, const ps_assignment *a, int j, char *err)
{
    if (j < 0 || j >= a->n_servers)
        return seterr(err, "parameter server %d does not exist (the topology has %d)", j, a->n_servers), NULL;
    ps_server *s = xcalloc(1, sizeof *s);
    s->t = t;
    s->a = a;
    s->j = j;
    s->R = t->n_replicas;
    s->bound = t->ps.staleness;
    s->np = ps_server_pieces(a, j, &s->idx);
    s->local = xmalloc((size_t)a->n_pieces * sizeof(int));
    for (int i = 0; i < a->n_pieces; i++) s->local[i] = -1;
    s->poff = xcalloc((size_t)s->np + 1, sizeof(size_t));
    for (int l = 0; l < s->np; l++) {
        s->local[s->idx[l]] = l;
        s->poff[l + 1] = s->poff[l] + a->pieces[s->idx[l]].len;
    }
    s->n = s->poff[s->np];
    for (int l = 0; l < s->np; l++)
        if (l == 0 || a->pieces[s->idx[l]].block != a->pieces[s->idx[l - 1]].block) s->nblk++;
    s->w = xcalloc(s->n, sizeof(float));
    s->m = xcalloc(s->n, sizeof(float));
    s->v = xcalloc(s->n, sizeof(float));
    for (int l = 0; l < s->np; l++) init_piece(t, &a->pieces[s->idx[l]], s->w + s->poff[l]);
    if (s->bound == 0) {
        s->gsum = xcalloc(s->n, sizeof(float));
        s->gbuf = xcalloc((size_t)s->R * s->n, sizeof(float));
        s->pcount = xcalloc((size_t)s->np + 1, sizeof(int));
        s->lblk = xcalloc((size_t)s->np + 1, sizeof(int));
        s->blk_left = xcalloc((size_t)s->nblk + 1, sizeof(int));
        s->blk_first = xcalloc((size_t)s->nblk + 1, sizeof(int));
        s->blk_sq = xcalloc((size_t)s->nblk + 1, sizeof(double));
        for (int l = 0, b = -1; l < s->np; l++) {
            if (l == 0 || a->pieces[s->idx[l]].block != a->pieces[s->idx[l - 1]].block) s->blk_first[++b] = l;
            s->lblk[l] = b;
        }
        s->blk_first[s->nblk] = s->np;
        for (int b = 0; b < s->nblk; b++) s->blk_left[b] = s->blk_first[b + 1] - s->blk_first[b];
    }
    s->pstep = xcalloc((size_t)s->np + 1, sizeof(long));
    s->pver = xcalloc((size_t)s->np + 1, sizeof(long));
    s->have = xcalloc((size_t)s->R * (size_t)s->np + 1, 1);
    s->got = xcalloc((size_t)s->R, sizeof(int));
    s->clock = xcalloc((size_t)s->R, sizeof(long));
    s->active = xcalloc((size_t)s->R, sizeof(int));
    for (int w = 0; w < s->R; w++) s->active[w] = 1;
    s->state = PS_COLLECT;
    return s;
}

void ps_server_free(ps_server *s)
{
    if (!s) return;
    free(s->local);
    free(s->poff);
    free(s->w);
    free(s->m);
    free(s->v);
    free(s->gsum);
    free(s->gbuf);
    free(s->pcount);
    free(s->lblk);
    free(s->blk_left);
    free(s->blk_first);
    free(s->blk_sq);
    free(s->pstep);
    free(s->pver);
    free(s->have);
    free(s->got);
    free(s->clock);
    free(s->active);
    free(s);
}

enum ps_state ps_server_state(const ps_server *s) { return s->state; }

/* The slowest (min 1) or fastest (min 0) active worker's clock other than
 * `except`; -1 when there is none. */
static long clock_of(const ps_server *s, int slowest, int except)
{
    long c = -1;
    for (int w = 0; w < s->R; w++) {
        if (!s->active[w] || w == except) continue;
        if (c < 0 || (slowest ? s->clock[w] < c : s->clock[w] > c)) c = s->clock[w];
    }
    return c;
}

long ps_server_step(const ps_server *s)
{
    if (s->bound == 0) return s->step;
    long c = clock_of(s, 1, -1);
    return c < 0 ? 0 : c;
}

long ps_server_clock(const ps_server *s, int w) { return w >= 0 && w < s->R ? s->clock[w] : -1; }

int ps_server_may_start(const ps_server *s, int w, long step)
{
    if (w < 0 || w >= s->R || !s->active[w]) return 0;
    if (s->bound == 0) return s->state == PS_COLLECT && step <= s->step;
    if (s->bound < 0) return 1;
    long slow = clock_of(s, 1, -1);
    return slow < 0 || step - slow <= s->bound;
}

/* ---- pushes ---- */

/* Everything that refuses a push, before anything changes. */
static int check_push(const ps_server *s, const ps_push *p, int *l, char *why)
{
    if (p->worker < 0 || p->worker >= s->R || !s->active[p->worker])
        return seterr(why, "unknown worker %d (this server's workers are 0..%d%s)", p->worker, s->R - 1,
                      p->worker >= 0 && p->worker < s->R ? "; it was dropped" : "");
    *l = p->piece >= 0 && p->piece < s->a->n_pieces ? s->local[p->piece] : -1;
    if (*l < 0) return seterr(why, "piece %d is not held by parameter server %d", p->piece, s->j);
    const ps_piece *pc = &s->a->pieces[p->piece];
    if (!p->grad || p->n != pc->len)
        return seterr(why, "wrong size: the gradient of piece %d (%s [%zu, %zu)) has %zu floats, expected %zu",
                      p->piece, pc->name, pc->tensor_off, pc->tensor_off + pc->len, p->n, pc->len);
    long next = s->clock[p->worker];
    if (s->state != PS_COLLECT)
        return seterr(why, "worker %d pushed step %ld while step %ld waits for its norm", p->worker, p->step, s->step);
    if (p->step < next)
        return seterr(why, "too stale: worker %d already pushed step %ld (its next step is %ld)", p->worker, p->step,
                      next);
    if (p->step > next)
        return seterr(why, "worker %d pushed step %ld but its next step is %ld", p->worker, p->step, next);
    if (s->have[(size_t)p->worker * (size_t)s->np + (size_t)*l])
        return seterr(why, "worker %d pushed piece %d of step %ld twice", p->worker, p->piece, p->step);
    if (s->bound == 0 && p->step != s->step)
        return seterr(why, "ahead: worker %d pushed step %ld before step %ld is applied", p->worker, p->step, s->step);
    if (s->bound <= 0) return 0; /* synchronous; asynchronous without a bound */
    long slow = clock_of(s, 1, p->worker), fast = clock_of(s, 0, p->worker);
    if (slow >= 0 && p->step - slow > s->bound)
        return seterr(why, "ahead: worker %d's step %ld is more than %d step(s) ahead of the slowest worker (step %ld)",
                      p->worker, p->step, s->bound, slow);
    if (fast >= 0 && fast - p->step > s->bound + 1)
        return seterr(why, "too stale: worker %d's step %ld is %ld steps behind the fastest worker (clock %ld; "
                      "staleness %d allows %d)", p->worker, p->step, fast - p->step, fast, s->bound, s->bound + 1);
    return 0;
}

/* AdamW on local piece l with gradient g (the piece's floats). The piece is
 * a one-tensor part and its moments a one-range optimizer, so
 * optim_adamw_step_ranges gives each element the operations it gives it in a
 * whole part: the bits do not depend on how the model is cut. */
static void adamw_piece(ps_server *s, int l, float *g, const optim_hparams *h, float scale)
{
    const ps_piece *pc = &s->a->pieces[s->idx[l]];
    model_tensor ten = { .numel = pc->len, .offset = 0, .decay = pc->decay, .ndim = 1 };
    model_part view = { .params = s->w + s->poff[l], .grads = g, .n_params = pc->len, .n_tensors = 1,
                        .tensors = &ten };
    optim_adamw o = { pc->len, s->m + s->poff[l], s->v + s->poff[l], s->pstep[l] };
    size_t off = 0, len = pc->len;
    optim_adamw_step_ranges(&o, &view, h, scale, &off, &len, 1);
    s->pstep[l] = o.step;
    s->pver[l]++;
}

static void record(ps_server *s, long staleness)
{
    if (staleness < 0) staleness = 0;
    s->hist[staleness < PS_STALE_BUCKETS - 1 ? staleness : PS_STALE_BUCKETS - 1]++;
}

/* A worker completed its step on this server: its clock moves on. */
static void finish_worker_step(ps_server *s, int w)
{
    long fast = clock_of(s, 0, w);
    record(s, s->bound == 0 || fast < 0 ? 0 : fast - s->clock[w]);
    s->clock[w]++;
    s->got[w] = 0;
    memset(s->have + (size_t)w * (size_t)s->np, 0, (size_t)s->np);
}

/* Local block b's sum of squares of the summed gradients: one sequential
 * double sum over its pieces in order (what a stage sends in NORM with R > 1). */
static double block_sq(const ps_server *s, int b)
{
    double acc = 0.0;
    for (int l = s->blk_first[b]; l < s->blk_first[b + 1]; l++) {
        const float *g = s->gsum + s->poff[l];
        for (size_t i = 0, n = s->a->pieces[s->idx[l]].len; i < n; i++) acc += (double)g[i] * g[i];
    }
    return acc;
}

/* PS_COLLECT, synchronous: buffer the gradient; a piece is summed as soon as
 * every worker has pushed it (and its block's norm partial taken once the
 * whole block is summed), so the step's last push leaves only its own piece
 * to sum. Each piece is summed as coll/ reduces its block's segment i:
 * (((g_{i+1} + g_{i+2}) + ...) + g_{i+R-1}) + g_i, workers mod R (R = 2: g0 +
 * g1 bit for bit), whatever the arrival order. */
static void on_collect_sync(ps_server *s, const ps_push *p, int l)
{
    memcpy(s->gbuf + (size_t)p->worker * s->n + s->poff[l], p->grad, p->n * sizeof(float));
    if (++s->pcount[l] < s->R) return;
    s->pcount[l] = 0;
    int i = s->a->blocks[s->a->pieces[s->idx[l]].block].seg;
    size_t lo = s->poff[l], hi = s->poff[l + 1];
    float *d = s->gsum;
    const float *g = s->gbuf + (size_t)((i + 1) % s->R) * s->n;
    for (size_t e = lo; e < hi; e++) d[e] = g[e];
    for (int r = 2; r <= s->R; r++) { /* r = R adds g_i itself */
        g = s->gbuf + (size_t)((i + r) % s->R) * s->n;
        for (size_t e = lo; e < hi; e++) d[e] = d[e] + g[e];
    }
    int b = s->lblk[l];
    if (--s->blk_left[b] == 0) {
        s->blk_sq[b] = block_sq(s, b);
        s->blk_left[b] = s->blk_first[b + 1] - s->blk_first[b]; /* for the next step */
    }
    if (++s->n_summed < s->np) return;
    s->n_summed = 0;
    s->state = PS_NEED_NORM;
}

optim_hparams ps_async_hparams(const topo *t, int R, long step)
{
    optim_hparams h = run_optim_hparams(t, step);
    if (R < 1) R = 1;
    double sr = sqrt((double)R);
    h.lr = (float)(run_lr(t, step) / sr);
    h.weight_decay = (float)(t->train.weight_decay / sr);
    h.beta1 = (float)pow(t->train.beta1, (double)R);
    return h;
}

/* PS_COLLECT, asynchronous: the push is applied now (the rule is ps.h's). */
static void on_collect_async(ps_server *s, const ps_push *p, int l)
{
    float *g = (float *)p->grad; /* only read: model_part's grads are not const */
    optim_hparams h = ps_async_hparams(s->t, s->R, p->step);
    float scale = (float)s->R * optim_clip_scale(p->norm * s->R, s->t->train.grad_clip);
    adamw_piece(s, l, g, &h, scale);
}

int ps_server_push(ps_server *s, const ps_push *p, char *why)
{
    int l = -1;
    if (check_push(s, p, &l, why)) return -1;
    s->have[(size_t)p->worker * (size_t)s->np + (size_t)l] = 1;
    int done = ++s->got[p->worker] == s->np;
    if (done) finish_worker_step(s, p->worker);
    if (s->bound == 0) on_collect_sync(s, p, l);
    else on_collect_async(s, p, l);
    return 0;
}

/* ---- the synchronous update ---- */

int ps_server_n_blocks(const ps_server *s) { return s->nblk; }

int ps_server_norm_partials(const ps_server *s, ps_norm_partial *out)
{
    if (s->state != PS_NEED_NORM) return -1;
    for (int n = 0; n < s->nblk; n++) { /* each taken when its block was summed (on_collect_sync) */
        const ps_block *b = &s->a->blocks[s->a->pieces[s->idx[s->blk_first[n]]].block];
        out[n] = (ps_norm_partial){ b->unit, b->bucket, b->seg, s->blk_sq[n] };
    }
    return s->nblk;
}

/* The block of (unit, bucket, seg) in a (blocks are in that order), or -1. */
static int find_block(const ps_assignment *a, const ps_norm_partial *p)
{
    int lo = 0, hi = a->n_blocks - 1;
    while (lo <= hi) {
        int m = lo + (hi - lo) / 2;
        const ps_block *b = &a->blocks[m];
        int c = b->unit != p->unit ? (b->unit < p->unit ? -1 : 1)
              : b->bucket != p->bucket ? (b->bucket < p->bucket ? -1 : 1)
              : b->seg != p->seg ? (b->seg < p->seg ? -1 : 1) : 0;
        if (!c) return m;
        if (c < 0) lo = m + 1;
        else hi = m - 1;
    }
    return -1;
}

double ps_norm_combine(const topo *t, const ps_assignment *a, const ps_norm_partial *parts, size_t n, char *err)
{
    int R = t->n_replicas > 0 ? t->n_replicas : 1, U = topo_n_units(t);
    if (R != a->n_replicas || U != a->n_units)
        return seterr(err, "%s: the assignment is for %d units x %d replicas, the topology has %d x %d", t->path,
                      a->n_units, a->n_replicas, U, R), NAN;
    size_t np = topo_first_bucket(t, U) * (size_t)R;
    double *grid = xcalloc(np + 1, sizeof(double)), *sq = xcalloc((size_t)U + 1, sizeof(double));
    unsigned char *seen = xcalloc((size_t)a->n_blocks + 1, 1);
    double norm = NAN;
    size_t i = 0;
    for (; i < n; i++) {
        int b = find_block(a, &parts[i]);
        if (b < 0) {
            seterr(err, "norm partial %zu: unit %d bucket %d segment %d is not a block of the assignment", i,
                   parts[i].unit, parts[i].bucket, parts[i].seg);
            goto out;
        }
        if (seen[b]++) {
            seterr(err, "norm partial %zu: unit %d bucket %d segment %d comes twice", i, parts[i].unit,
                   parts[i].bucket, parts[i].seg);
            goto out;
        }
        grid[(topo_first_bucket(t, parts[i].unit) + (size_t)parts[i].bucket) * (size_t)R + (size_t)parts[i].seg] =
            parts[i].sq;
    }
    for (int b = 0; b < a->n_blocks; b++)
        if (!seen[b]) {
            seterr(err, "norm partial of unit %d bucket %d segment %d (server %d) is missing", a->blocks[b].unit,
                   a->blocks[b].bucket, a->blocks[b].seg, a->blocks[b].server);
            goto out;
        }
    topo_combine_norm_partials(t, grid, sq);
    norm = optim_global_norm(sq, U);
out:
    free(grid);
    free(sq);
    free(seen);
    return norm;
}

double ps_norm_sync(ps_server *const *srv, const ps_assignment *a)
{
    ps_norm_partial *parts = xcalloc((size_t)a->n_blocks + 1, sizeof *parts);
    char err[ERR_LEN];
    int n = 0;
    for (int j = 0; j < a->n_servers; j++) {
        if (ps_server_state(srv[j]) != PS_NEED_NORM) {
            free(parts);
            return NAN;
        }
        n += ps_server_norm_partials(srv[j], parts + n);
    }
    double norm = ps_norm_combine(srv[0]->t, a, parts, (size_t)n, err);
    free(parts);
    return norm;
}

/* PS_NEED_NORM -> PS_COLLECT: AdamW on every piece exactly as
 * run_optim_apply_ranges would on a part holding the summed gradients. */
static int on_need_norm(ps_server *s, double norm, int (*each)(void *ctx, int l), void *ctx)
{
    optim_hparams h = run_optim_hparams(s->t, s->step);
    float scale = optim_clip_scale(norm, s->t->train.grad_clip);
    for (int l = 0; l < s->np; l++) {
        adamw_piece(s, l, s->gsum + s->poff[l], &h, scale);
        if (each && each(ctx, l)) return -1;
    }
    s->step++;
    s->state = PS_COLLECT;
    return 0;
}

int ps_server_apply(ps_server *s, double norm, char *err)
{
    return ps_server_apply_each(s, norm, NULL, NULL, err);
}

int ps_server_apply_each(ps_server *s, double norm, int (*each)(void *ctx, int l), void *ctx, char *err)
{
    if (s->state != PS_NEED_NORM)
        return seterr(err, "parameter server %d: no step to apply (%s)", s->j,
                      s->bound == 0 ? "not every worker has pushed it" : "asynchronous servers apply pushes on arrival");
    if (on_need_norm(s, norm, each, ctx)) return seterr(err, "parameter server %d: stopped at its caller's word", s->j);
    return 0;
}

const float *ps_server_pull(const ps_server *s, int piece, long *version, size_t *len)
{
    int l = piece >= 0 && piece < s->a->n_pieces ? s->local[piece] : -1;
    if (l < 0) return NULL;
    if (version) *version = s->pver[l];
    if (len) *len = s->a->pieces[piece].len;
    return s->w + s->poff[l];
}

/* ---- workers that come and go (asynchronous) ---- */

int ps_server_drop(ps_server *s, int w, char *why)
{
    if (s->bound == 0) return seterr(why, "a synchronous parameter server cannot drop worker %d", w);
    if (w < 0 || w >= s->R) return seterr(why, "unknown worker %d", w);
    s->active[w] = 0;
    s->got[w] = 0;
    memset(s->have + (size_t)w * (size_t)s->np, 0, (size_t)s->np);
    return 0;
}

int ps_server_join(ps_server *s, int w, long step, char *why)
{
    if (s->bound == 0) return seterr(why, "a synchronous parameter server cannot add worker %d", w);
    if (w < 0 || w >= s->R) return seterr(why, "unknown worker %d", w);
    if (step < 0) return seterr(why, "worker %d cannot join at step %ld", w, step);
    s->active[w] = 1;
    s->clock[w] = step;
    s->got[w] = 0;
    memset(s->have + (size_t)w * (size_t)s->np, 0, (size_t)s->np);
    return 0;
}

const uint64_t *ps_server_staleness(const ps_server *s) { return s->hist; }
