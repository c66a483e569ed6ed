/* runtime_dp.c — data parallelism inside a stage process (issue #8). The R
 * replicas of a stage form a ring (coll/); its weight gradients are reduced in
 * buckets (topo_unit_buckets: runs of train.bucket_mb inside one unit),
 * posted by a communication thread while the compute thread goes on with the
 * step:
 * a unit's buckets are handed over as soon as its gradient is final (during
 * the last micro-batch's W of its chunk, unit by unit from the chunk's last;
 * the tied embedding after the head's gradient has joined it), and the
 * optimizer waits only for the last bucket.
 *
 * Determinism: a bucket's floats and the ring's segments inside it depend on
 * the model, R and train.bucket_mb alone (never on the stage split or on
 * timing), and coll/ adds in a fixed order per segment; the clipping norm is
 * built from per-(bucket, segment) partial sums in a fixed order at the
 * coordinator (stage/proto.h). So for a given R the weights are bitwise the
 * same for every split, and ZeRO-1 (train.zero: reduce-scatter, AdamW on this
 * replica's segments, all-gather) is bitwise the plain all-reduce's.
 *
 * Threads: the communication thread posts one collective at a time on the
 * group and sleeps until it ends; the collective's work (adds, checksums,
 * sends) runs on the network thread (coll/'s ring engine, net/net_coll.h).
 * The compute thread runs collectives itself only when the queue is drained
 * (the ZeRO all-gathers, the checkpoint's moment gathers, rt_dp_ckpt_*). */
#include "coll/coll.h"
#include "model/optim.h"
#include "model/util.h"
#include "run/run.h"
#include "stage/rt.h"

#include <limits.h>
#include <pthread.h>
#include <time.h>

/* Collective tags: (step << 20) | (what << 18) | bucket, so that no two
 * collectives in flight on the group share a key. */
enum { TAG_GRAD = 0, TAG_WEIGHTS = 1, TAG_M = 2, TAG_V = 3 };
#define DP_MAX_BUCKETS TOPO_MAX_BUCKETS

typedef struct {
    int b;
    uint64_t tag;
} dp_item;

struct rt_dp {
    coll_group *g;
    int R, rep, zero;
    int nb;                  /* buckets of the part: units ascending, buckets ascending */
    size_t *off, *len;       /* bucket b: floats [off, off + len) of the part */
    size_t *soff, *slen;     /* this replica's segment of bucket b (part offsets) */
    size_t *moff;            /* with zero: where segment b's moments start in the packed state */
    int *unit_first;         /* local unit i holds buckets unit_first[i] .. unit_first[i + 1] - 1 */
    int defer_embed;         /* the embedding's buckets wait for the tied gradient */
    float *grads;
    pthread_t th;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    dp_item *q;              /* (nb) this step's buckets in the order handed over */
    double *t0, *t1;         /* (nb) when q[i]'s collective ran (for the trace) */
    int n_q, n_done, stop, failed;
    char err[ERR_LEN];
    double busy_s;           /* time the thread spent in collectives */
};

static uint64_t tag_of(long step, int what, int b)
{
    return ((uint64_t)step << 20) | ((uint64_t)what << 18) | (uint64_t)b;
}

static void *dp_main(void *arg)
{
    rt_dp *d = arg;
    char err[ERR_LEN];
    pthread_mutex_lock(&d->mu);
    for (;;) {
        while (!d->stop && !d->failed && d->n_done == d->n_q) pthread_cond_wait(&d->cv, &d->mu);
        if (d->stop || d->failed) break;
        dp_item it = d->q[d->n_done];
        pthread_mutex_unlock(&d->mu);
        double t0 = base_now();
        float *p = d->grads + d->off[it.b];
        int rc = d->zero ? coll_reduce_scatter(d->g, p, d->len[it.b], it.tag, err)
                         : coll_allreduce_sum(d->g, p, d->len[it.b], it.tag, err);
        double t1 = base_now();
        pthread_mutex_lock(&d->mu);
        d->busy_s += t1 - t0;
        if (rc) {
            d->failed = 1;
            snprintf(d->err, sizeof d->err, "%s", err);
        } else {
            d->t0[d->n_done] = t0;
            d->t1[d->n_done] = t1;
            d->n_done++;
        }
        pthread_cond_broadcast(&d->cv);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

int rt_dp_setup(rt *r)
{
    const topo *t = r->t;
    model_part *p = r->part;
    rt_dp *d = xcalloc(1, sizeof *d);
    r->dp = d;
    d->R = t->n_replicas;
    d->rep = r->rep;
    d->zero = t->train.zero;
    d->grads = p->grads;
    d->defer_embed = t->model.tie_embeddings && r->holds_embed;
    d->unit_first = xcalloc((size_t)p->n_units + 1, sizeof(int));
    d->nb = topo_stage_buckets(t, r->K);
    if (d->nb > DP_MAX_BUCKETS)
        return rt_fail(r, "train.bucket_mb %g cuts this stage's gradients into %d buckets, more than %d: raise it",
                       t->train.bucket_mb, d->nb, DP_MAX_BUCKETS), 2;
    size_t n = d->nb ? (size_t)d->nb : 1, total = 0, own = 0;
    d->off = xcalloc(n, sizeof(size_t));
    d->len = xcalloc(n, sizeof(size_t));
    d->soff = xcalloc(n, sizeof(size_t));
    d->slen = xcalloc(n, sizeof(size_t));
    d->moff = xcalloc(n, sizeof(size_t));
    d->q = xcalloc(n, sizeof(dp_item));
    d->t0 = xcalloc(n, sizeof(double));
    d->t1 = xcalloc(n, sizeof(double));
    for (int i = 0, b = 0; i < p->n_units; i++) {
        d->unit_first[i] = b;
        int k = topo_unit_buckets(t, p->units[i], -1, NULL, NULL);
        for (int j = 0; j < k; j++, b++) {
            size_t o, l, so, sl;
            topo_unit_buckets(t, p->units[i], j, &o, &l);
            d->off[b] = p->unit_off[i] + o;
            d->len[b] = l;
            coll_segment(l, d->R, d->rep, &so, &sl);
            d->soff[b] = d->off[b] + so;
            d->slen[b] = sl;
            d->moff[b] = own;
            own += sl;
            total += l;
        }
    }
    d->unit_first[p->n_units] = d->nb;
    if (total != p->n_params)
        return rt_fail(r, "gradient buckets cover %zu floats, the stage holds %zu (a bug)", total, p->n_params), 2;
    net_peer_id members[d->R];
    for (int i = 0; i < d->R; i++) members[i] = net_stage_id((uint16_t)r->K, (uint16_t)i);
    char cerr[ERR_LEN];
    double ms = r->step_timeout_s * 1e3;
    if (!(d->g = coll_group_new(r->node, members, d->R, d->rep, ms > INT_MAX ? INT_MAX : (int)ms, cerr)))
        return rt_fail(r, "%s", cerr), 1;
    if (d->zero) { /* the moments of this replica's segments only */
        optim_free(r->opt);
        r->opt = optim_new(own);
    }
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    if (pthread_create(&d->th, NULL, dp_main, d)) return rt_fail(r, "cannot start the all-reduce thread"), 1;
    d->started = 1;
    return 0;
}

void rt_dp_free(rt *r)
{
    rt_dp *d = r->dp;
    if (!d) return;
    if (d->started) {
        pthread_mutex_lock(&d->mu);
        d->stop = 1;
        pthread_cond_broadcast(&d->cv);
        pthread_mutex_unlock(&d->mu);
        coll_group_abort(d->g); /* a collective waiting on a silent peer ends within 100 ms */
        pthread_join(d->th, NULL);
        pthread_mutex_destroy(&d->mu);
        pthread_cond_destroy(&d->cv);
    }
    coll_group_free(d->g);
    free(d->off); free(d->len); free(d->soff); free(d->slen); free(d->moff);
    free(d->unit_first); free(d->q); free(d->t0); free(d->t1);
    free(d);
    r->dp = NULL;
}

void rt_dp_begin_step(rt *r)
{
    rt_dp *d = r->dp;
    if (!d) return;
    pthread_mutex_lock(&d->mu);
    d->n_q = d->n_done = 0;
    pthread_mutex_unlock(&d->mu);
}

static void hand_over(rt *r, int i)
{
    rt_dp *d = r->dp;
    pthread_mutex_lock(&d->mu);
    for (int b = d->unit_first[i]; b < d->unit_first[i + 1]; b++)
        d->q[d->n_q++] = (dp_item){ b, tag_of(r->step, TAG_GRAD, b) };
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

void rt_dp_unit_ready(rt *r, int i)
{
    if (!r->dp || (i == 0 && r->dp->defer_embed)) return;
    hand_over(r, i);
}

int rt_dp_finish_grads(rt *r)
{
    rt_dp *d = r->dp;
    if (!d) return 0;
    if (d->defer_embed) hand_over(r, 0);
    double t0 = rt_now();
    int rc = 0;
    pthread_mutex_lock(&d->mu);
    while (!d->failed && d->n_done < d->n_q) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&d->cv, &d->mu, &ts);
        if (!d->failed && d->n_done < d->n_q && rt_now() - t0 > r->step_timeout_s) {
            rc = 1;
            break;
        }
    }
    int failed = d->failed, done = d->n_done, n = d->n_q;
    pthread_mutex_unlock(&d->mu);
    double w = rt_now() - t0;
    r->stats.exposed_s += w; /* not in wait_s: that is the tensors' */
    if (failed) return rt_fail(r, "gradient all-reduce with the other replicas: %s", d->err);
    if (rc) return rt_fail(r, "gradient all-reduce: bucket %d of %d not done after %.0f s", done, n, w);
    for (int i = 0; i < n; i++) rt_event(r, PROTO_EV_ALLREDUCE, 0, 0, d->q[i].b, d->t0[i], d->t1[i]);
    return 0;
}

uint64_t rt_dp_norm(rt *r, uint8_t *buf)
{
    rt_dp *d = r->dp;
    put_u32le(buf, (uint32_t)d->nb);
    for (int b = 0; b < d->nb; b++) {
        const float *g = d->grads + d->soff[b];
        double s = 0;
        for (size_t j = 0; j < d->slen[b]; j++) s += (double)g[j] * g[j];
        put_f64le(buf + 4 + 8 * (size_t)b, s);
    }
    return 4 + 8 * (uint64_t)d->nb;
}

/* All-gathers every bucket of buf (part layout) on the compute thread. */
static int gather_all(rt *r, float *buf, int what, const char *name)
{
    rt_dp *d = r->dp;
    char cerr[ERR_LEN];
    double t0 = rt_now();
    for (int b = 0; b < d->nb; b++)
        if (coll_allgather(d->g, buf + d->off[b], d->len[b], tag_of(r->step, what, b), cerr))
            return rt_fail(r, "all-gather of the %s with the other replicas: %s", name, cerr);
    double w = rt_now() - t0;
    pthread_mutex_lock(&d->mu);
    d->busy_s += w;
    pthread_mutex_unlock(&d->mu);
    r->stats.exposed_s += w;
    return 0;
}

int rt_dp_optim(rt *r, double norm)
{
    rt_dp *d = r->dp;
    if (!d || !d->zero) {
        run_optim_apply(r->t, r->part, r->opt, r->step, norm);
        return 0;
    }
    run_optim_apply_ranges(r->t, r->part, r->opt, r->step, norm, d->soff, d->slen, d->nb);
    return gather_all(r, r->part->params, TAG_WEIGHTS, "updated weights");
}

/* A checkpoint's moments with train.zero, streamed: the walk goes through
 * the optim shard's moments in file order (tensor k's exp_avg, then its
 * exp_avg_sq, k ascending) in pieces of at most CKPT_PIECE floats, each inside
 * one replica's segment of one bucket, and broadcasts each piece from the
 * replica that owns it (coll_broadcast along the ring, chunk by chunk) into
 * one scratch of CKPT_PIECE floats (of the stage's largest tensor if that is
 * smaller). Every replica walks the same way (only the writer's walk writes),
 * so the collectives match; a piece crosses R - 1 links of the ring, as in an
 * all-gather, and no replica holds more than its shard and the scratch. */
#define CKPT_PIECE TOPO_ZERO_CKPT_PIECE /* 4 MiB, four of coll's chunks so that a piece streams */
struct rt_dp_ckpt {
    rt *r;
    float *buf;        /* (the largest piece) the piece being passed on */
    uint32_t seq;      /* pieces so far: their tags */
    int pos;           /* the walk's next moment: 2 * tensor + second */
    int failed;        /* a broadcast failed (r->err); the walk stops */
};

static int bucket_of(const rt_dp *d, size_t x)
{
    int lo = 0, hi = d->nb - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (d->off[mid] <= x) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* One moment of the walk: its bytes into s (NULL: none). A failed write to s
 * ends the writing, not the walk: every piece is still passed on, so that the
 * other replicas' walks are not left waiting; -1 then. */
static int ckpt_walk(rt_dp_ckpt *c, int tensor, int second, st_sink *s)
{
    int wrc = 0;
    rt *r = c->r;
    rt_dp *d = r->dp;
    const model_tensor *t = &r->part->tensors[tensor];
    const float *mine = second ? r->opt->v : r->opt->m;
    char cerr[ERR_LEN];
    size_t x = t->offset, e = t->offset + t->numel;
    while (x < e) {
        int b = bucket_of(d, x), root = 0;
        size_t so = 0, sl = 0;
        for (; root < d->R; root++) { /* the replica whose segment holds x */
            coll_segment(d->len[b], d->R, root, &so, &sl);
            if (x < d->off[b] + so + sl) break;
        }
        if (root == d->R || x < d->off[b] + so) { /* cannot happen: the segments tile the bucket */
            c->failed = 1;
            return rt_fail(r, "checkpoint: float %zu of the stage is in no replica's segment (a bug)", x);
        }
        size_t hi = d->off[b] + so + sl;
        if (hi > e) hi = e;
        if (hi - x > CKPT_PIECE) hi = x + CKPT_PIECE;
        size_t n = hi - x;
        if (root == d->rep) memcpy(c->buf, mine + d->moff[b] + (x - d->soff[b]), n * sizeof(float));
        uint64_t tag = ((uint64_t)1 << 63) | ((uint64_t)(r->step & 0x7fffffff) << 32) | c->seq++;
        double t0 = rt_now();
        int rc = coll_broadcast(d->g, c->buf, n, root, tag, cerr);
        double w = rt_now() - t0;
        pthread_mutex_lock(&d->mu);
        d->busy_s += w;
        pthread_mutex_unlock(&d->mu);
        r->stats.exposed_s += w;
        if (rc) {
            c->failed = 1;
            return rt_fail(r, "checkpoint: passing the AdamW %s moments of %s to replica 0: %s",
                           second ? "second" : "first", t->name, cerr);
        }
        if (s && st_sink_write(s, c->buf, n * sizeof(float))) {
            wrc = -1;
            s = NULL;
        }
        x = hi;
    }
    return wrc;
}

rt_dp_ckpt *rt_dp_ckpt_begin(rt *r)
{
    size_t most = 1; /* the largest piece: check's prediction (topo_mem's gather) */
    for (int i = 0; i < r->part->n_tensors; i++)
        if (r->part->tensors[i].numel > most) most = r->part->tensors[i].numel;
    rt_dp_ckpt *c = xcalloc(1, sizeof *c);
    c->r = r;
    c->buf = xmalloc((most < CKPT_PIECE ? most : CKPT_PIECE) * sizeof(float));
    return c;
}

int rt_dp_ckpt_fill(void *arg, int tensor, int second, st_sink *s, char *err)
{
    rt_dp_ckpt *c = arg;
    int pos = 2 * tensor + second;
    if (c->failed) return seterr(err, "%s", c->r->err);
    /* the moments the file skipped (only empty tensors: nothing to pass) */
    for (; c->pos < pos; c->pos++)
        if (ckpt_walk(c, c->pos / 2, c->pos % 2, NULL)) return seterr(err, "%s", c->r->err);
    if (pos < c->pos) return seterr(err, "moment %d asked after %d (a bug)", pos, c->pos - 1);
    c->pos = pos + 1;
    if (ckpt_walk(c, tensor, second, s)) return c->failed ? seterr(err, "%s", c->r->err) : -1;
    return 0;
}

int rt_dp_ckpt_end(rt_dp_ckpt *c)
{
    if (!c) return 0;
    int n = 2 * c->r->part->n_tensors, rc = c->failed ? -1 : 0;
    for (; !rc && c->pos < n; c->pos++) rc = ckpt_walk(c, c->pos / 2, c->pos % 2, NULL);
    free(c->buf);
    free(c);
    return rc;
}

void rt_dp_take_optim(rt *r, const optim_adamw *full)
{
    rt_dp *d = r->dp;
    r->opt->step = full->step;
    for (int b = 0; b < d->nb; b++) {
        memcpy(r->opt->m + d->moff[b], full->m + d->soff[b], d->slen[b] * sizeof(float));
        memcpy(r->opt->v + d->moff[b], full->v + d->soff[b], d->slen[b] * sizeof(float));
    }
}

double rt_dp_busy_s(const rt *r)
{
    if (!r->dp) return 0;
    pthread_mutex_lock(&r->dp->mu);
    double s = r->dp->busy_s;
    pthread_mutex_unlock(&r->dp->mu);
    return s;
}

int rt_dp_zero(const rt *r) { return r->dp && r->dp->zero; }
