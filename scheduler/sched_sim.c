/* sched_sim.c — plays a schedule against its cross-stage dependencies: the
 * validator's deadlock check (all costs zero) and the timing simulator.
 *
 * Each stage runs its list strictly in order and an action starts at
 * max(stage free, inputs arrived), so every start time is fixed by its
 * predecessors: a discrete-event simulation in which the only events are action
 * ends and transfer arrivals. We evaluate it by propagation instead of a global
 * event queue: a worklist of stages, each advanced as far as its inputs allow;
 * a stage that blocks on a missing input is woken by the producer of that input.
 * Links are FIFO per ordered pair of stages and a producer issues its sends in
 * list order, so link occupancy is known when the producer's action is played;
 * the same order makes a link's token bucket (costs->burst) exact: its credit
 * only has to be known at the start of each transfer, in time order. The
 * buckets are the steady state's: the step is played again from the levels the
 * previous play left at its end (refilled up to the step time, the next step's
 * start) until they no longer change (see sched_play).
 * Work is O(actions + P*v*M); no stage is visited more often than it is woken. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "scheduler/sched_int.h"

typedef struct {
    const sched_schedule *s;
    const sched_costs *c;
    size_t K, M;          /* virtual stages, micro-batches */
    uint8_t *fd, *bd;     /* (K*M) without costs: 1 once the F / B output of (k, mb)
                           * exists */
    double *fa, *ba;      /* (K*M) with costs instead: minus the time it is available
                           * at its consumer. Zeroed memory (+0.0) means "not yet"
                           * and -0.0 is time 0, so one load answers both questions. */
    double *link;         /* (2P) time each outgoing link is free */
    double *tok, *tok_t;  /* (2P) costs->burst > 0: each outgoing link's token-bucket
                           * credit (bytes) as of time tok_t */
    size_t *cur;          /* (P) next action of each stage */
    double *tfree;        /* (P) when each stage is free */
    int *queue;           /* (P) ring of stages to advance */
    char *queued;         /* (P) */
    size_t qh, qn;
    /* costs->w_in_order only: W run in micro-batch order per virtual stage */
    size_t *next_w;       /* (K) micro-batch whose W runs next */
    long *w_due;          /* (K*M) action index of a W deferred to its turn, or -1 */
    /* with costs: the W part of the weight pass run last on each virtual stage,
     * when its gradient is final (the all-reduce's buckets become ready in it) */
    double *wl0, *wl1;    /* (K) */
} play;

/* Zeroed memory for the per-(virtual stage, micro-batch) tables. Large tables
 * come straight from mmap with transparent huge pages requested: a 1,024 x 4,096
 * play touches ~100 MB once, and 4 KiB page faults were a fifth of its time. */
static void *table_alloc(size_t bytes)
{
    if (bytes < (4u << 20)) return calloc(1, bytes ? bytes : 1);
    void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(m, bytes, MADV_HUGEPAGE);
#endif
    return m;
}

static void table_free(void *m, size_t bytes)
{
    if (!m) return;
    if (bytes < (4u << 20)) free(m);
    else munmap(m, bytes);
}

static void push(play *p, int st)
{
    if (p->queued[st]) return;
    p->queued[st] = 1;
    size_t P = (size_t)p->s->n_stages;
    p->queue[(p->qh + p->qn++) % P] = st;
}

/* Sends an output produced at time `end` by stage st to stage dst; returns its arrival. */
static double send(play *p, int st, int dst, int fwd, double bytes, double end)
{
    if (dst == st || !p->c) return end;
    int P = p->s->n_stages;
    (void)fwd;
    /* Two links leave each stage: to st+1 and to st-1 (mod P; the same peer with
     * two stages). A loop placement sends forwards up and gradients down; a V
     * placement sends chunk 1's forwards down and its gradients up. */
    int up = dst == (st + 1) % P;
    size_t l = (size_t)st * 2 + (up ? 0 : 1);
    size_t pair = P == 2 ? 0 : (size_t)(up ? st : dst); /* the link between pair and pair+1 */
    double bw = p->c->link_bandwidth ? p->c->link_bandwidth[pair] : p->c->bandwidth;
    double lat = p->c->link_latency ? p->c->link_latency[pair] : p->c->latency;
    double t = end > p->link[l] ? end : p->link[l];
    if (bw > 0 && p->tok) {
        /* token bucket: the credit refilled since tok_t, capped at the burst; the
         * bytes it covers pass at once, the rest at the rate (the bucket is then
         * empty when the transfer ends) */
        double k = p->tok[l] + (t - p->tok_t[l]) * bw;
        if (!(k < p->c->burst)) k = p->c->burst;
        if (bytes <= k) k -= bytes;
        else t += (bytes - k) / bw, k = 0;
        p->tok[l] = k;
        p->tok_t[l] = t;
    } else if (bw > 0) {
        t += bytes / bw;
    }
    p->link[l] = t;
    return t + lat;
}

/* A weight pass (W, or a BW's W part) of virtual stage k ran over [t0, t1]. */
static void note_w(play *p, size_t k, double t0, double t1)
{
    if (!p->wl0) return;
    p->wl0[k] = t0;
    p->wl1[k] = t1;
}

static double cost(const play *p, sched_action a, size_t k)
{
    if (!p->c) return 0;
    switch (a.op) {
    case SCHED_F: return p->c->f[k];
    case SCHED_B: return p->c->b[k];
    case SCHED_W: return p->c->w[k];
    default: return p->c->b[k] + p->c->w[k];
    }
}

/* costs->w_in_order (as the stage runtime): the W of (k, mb) runs only in its
 * micro-batch turn. Called when action i holds that W (a W, or the W part of a
 * BW) and the stage is at *t: runs it now when it is its turn (its end in
 * *own), then any W deferred behind it (drawn there; a deferred BW's box keeps
 * its B only), advancing *t; otherwise defers it. */
static void weight_in_order(play *p, int st, size_t k, sched_action a, size_t i, double *t, double *own,
                            sched_report *r, int timeline)
{
    size_t M = p->M;
    if (a.mb != p->next_w[k]) {
        p->w_due[k * M + a.mb] = (long)i;
        return;
    }
    note_w(p, k, *t, *t + p->c->w[k]);
    *own = *t += p->c->w[k];
    for (p->next_w[k]++; p->next_w[k] < M && p->w_due[k * M + p->next_w[k]] >= 0; p->next_w[k]++) {
        size_t j = (size_t)p->w_due[k * M + p->next_w[k]];
        int draw = timeline && p->s->act[st][j].op == SCHED_W;
        if (draw) r->start[st][j] = *t;
        note_w(p, k, *t, *t + p->c->w[k]);
        *t += p->c->w[k];
        if (draw) r->end[st][j] = *t;
    }
}

/* Runs stage st until it finishes or blocks on an input. */
static void advance(play *p, int st, sched_report *r, int timeline)
{
    const sched_schedule *s = p->s;
    size_t M = p->M, K = p->K;
    const sched_action *act = s->act[st];
    size_t i = p->cur[st], n = s->len[st];
    double t = p->tfree[st], busy = 0;
    for (; i < n; i++) {
        sched_action a = act[i];
        size_t k = sched_vstage(s, st, a.chunk);
        double ready = t;
        if (a.op == SCHED_F && k > 0) {
            size_t j = (k - 1) * M + a.mb;
            if (p->fa) {
                double in = p->fa[j];
                if (!signbit(in)) break;
                if (-in > ready) ready = -in;
            } else if (!p->fd[j]) break;
        } else if ((a.op == SCHED_B || a.op == SCHED_BW) && k + 1 < K) {
            size_t j = (k + 1) * M + a.mb;
            if (p->ba) {
                double in = p->ba[j];
                if (!signbit(in)) break;
                if (-in > ready) ready = -in;
            } else if (!p->bd[j]) break;
        }
        double d = cost(p, a, k), own;
        t = own = ready + d;
        if (p->w_due && (a.op == SCHED_W || a.op == SCHED_BW)) {
            t = own = ready + (a.op == SCHED_BW ? p->c->b[k] : 0);
            weight_in_order(p, st, k, a, i, &t, &own, r, timeline);
            d = t - ready;
        } else if (a.op == SCHED_W || a.op == SCHED_BW) {
            note_w(p, k, t - (p->c ? p->c->w[k] : 0), t);
        }
        busy += d;
        if (timeline) { r->start[st][i] = ready; r->end[st][i] = own; }
        if (a.op == SCHED_F) {
            int dst = k + 1 < K ? sched_stage_of(s, (int)k + 1, NULL) : st;
            if (p->fa)
                p->fa[k * M + a.mb] = -(k + 1 < K ? send(p, st, dst, 1, p->c->xfer_bytes[k], t) : t);
            else p->fd[k * M + a.mb] = 1;
            if (k + 1 < K && dst != st) push(p, dst);
        } else if (a.op != SCHED_W) {
            int dst = k > 0 ? sched_stage_of(s, (int)k - 1, NULL) : st;
            double out = a.op == SCHED_BW && p->c && p->c->bw_early ? ready + p->c->b[k] : t;
            if (p->ba)
                p->ba[k * M + a.mb] = -(k > 0 ? send(p, st, dst, 0, (p->c->grad_bytes ? p->c->grad_bytes : p->c->xfer_bytes)[k - 1], out) : out);
            else p->bd[k * M + a.mb] = 1;
            if (k > 0 && dst != st) push(p, dst);
        }
    }
    p->cur[st] = i;
    p->tfree[st] = t;
    if (r->busy) r->busy[st] += busy;
}

/* Bandwidth of outgoing link l (send's numbering: 2*st to st+1, 2*st+1 to st-1). */
static double link_bw(const play *p, size_t l)
{
    size_t P = (size_t)p->s->n_stages, st = l / 2;
    size_t pair = P == 2 ? 0 : l % 2 ? (st + P - 1) % P : st;
    return p->c->link_bandwidth ? p->c->link_bandwidth[pair] : p->c->bandwidth;
}

/* Token buckets in the steady state: at most this many plays of the step. */
#define BUCKET_PASSES 8

int sched_play(const sched_schedule *s, const sched_costs *c, int timeline, sched_report *r,
               char *err)
{
    size_t P = (size_t)s->n_stages;
    play p;
    memset(&p, 0, sizeof p);
    p.s = s;
    p.c = c;
    p.K = P * (size_t)s->n_chunks;
    p.M = (size_t)s->n_micro;
    size_t tbytes = 2 * p.K * p.M * (c ? sizeof(double) : 1);
    if (c) p.fa = table_alloc(tbytes);
    else p.fd = table_alloc(tbytes);
    p.link = calloc(2 * P, sizeof(double));
    double *lev = NULL; /* (2P) each link direction's credit at the step's start */
    if (c && c->burst > 0) { /* first pass: full buckets, the links idled before the step */
        p.tok = malloc(2 * P * sizeof(double));
        p.tok_t = calloc(2 * P, sizeof(double));
        lev = malloc(2 * P * sizeof(double));
        for (size_t l = 0; lev && l < 2 * P; l++) lev[l] = c->burst;
    }
    /* Steady state: the step repeats back to back, so a bucket starts with what
     * the previous step left. An unrolled 2bw run (sched_unroll: kind "2bw", no
     * cross-step marks) carries its buckets from step to step itself and its
     * step is a difference of two plays: it keeps the full buckets at time 0. */
    int steady = lev && strcmp(s->kind, "2bw") != 0;
    p.cur = calloc(P, sizeof(size_t));
    p.tfree = calloc(P, sizeof(double));
    p.queue = malloc(P * sizeof(int));
    p.queued = calloc(P, 1);
    if (c && c->w_in_order) {
        p.next_w = calloc(p.K, sizeof *p.next_w);
        p.w_due = malloc(p.K * p.M * sizeof *p.w_due);
    }
    int ar = c && c->ar && c->ar->replicas > 1;
    if (ar) {
        p.wl0 = calloc(p.K, sizeof(double));
        p.wl1 = calloc(p.K, sizeof(double));
    }
    int rc = -1;
    if ((c ? !p.fa : !p.fd) || !p.link || !p.cur || !p.tfree || !p.queue || !p.queued ||
        (c && c->w_in_order && (!p.next_w || !p.w_due)) || (ar && (!p.wl0 || !p.wl1)) ||
        (c && c->burst > 0 && (!p.tok || !p.tok_t || !lev))) {
        sched_seterr(err, "out of memory simulating %zu stages x %zu micro-batches", P, p.M);
        goto fail;
    }
    if (c) p.ba = p.fa + p.K * p.M;
    else p.bd = p.fd + p.K * p.M;
    for (int pass = 0;; pass++) {
        if (pass) { /* a fresh play of the same step */
            memset(p.fa, 0, tbytes);
            memset(p.link, 0, 2 * P * sizeof(double));
            memset(p.cur, 0, P * sizeof(size_t));
            memset(p.tfree, 0, P * sizeof(double));
            if (p.next_w) memset(p.next_w, 0, p.K * sizeof *p.next_w);
            if (ar) {
                memset(p.wl0, 0, p.K * sizeof(double));
                memset(p.wl1, 0, p.K * sizeof(double));
                sched_ar_report_free(r);
            }
            if (r->busy) memset(r->busy, 0, P * sizeof(double));
        }
        if (p.w_due) for (size_t j = 0; j < p.K * p.M; j++) p.w_due[j] = -1;
        for (size_t l = 0; lev && l < 2 * P; l++) p.tok[l] = lev[l], p.tok_t[l] = 0;
        for (size_t st = 0; st < P; st++) push(&p, (int)st);
        while (p.qn) {
            int st = p.queue[p.qh];
            p.qh = (p.qh + 1) % P;
            p.qn--;
            p.queued[st] = 0;
            advance(&p, st, r, timeline);
        }
        for (size_t st = 0; st < P; st++)
            if (p.cur[st] < s->len[st]) {
                sched_explain_deadlock(s, p.cur, err, &r->detail);
                goto fail;
            }
        r->step_time = 0;
        for (size_t st = 0; st < P; st++)
            if (p.tfree[st] > r->step_time) r->step_time = p.tfree[st];
        r->compute_time = r->step_time;
        if (ar && sched_ar_play(s, c, p.wl0, p.wl1, p.tfree, r, err)) goto fail;
        if (!steady || pass + 1 == BUCKET_PASSES) break;
        /* The next step starts at step_time (the period): each bucket then holds
         * what its last transfer left, refilled over the idle time since, capped
         * at the burst. An idle link (untouched bucket, tok_t 0) refills from its
         * start level; a link with infinite bandwidth keeps it. Stop at the
         * fixed point, up to rounding (the times are sums in a different order
         * from pass to pass). Levels mostly fall from pass to pass but need not
         * (a longer step can leave a link more time to refill). Each pass is
         * the next step of a run begun with full buckets; a link that loses the
         * same credit every step without changing it (off the critical path,
         * or a burst far above what a step draws beyond the refill) is still
         * above its steady level when the cap ends it: the cap's pass is that
         * run's 8th step (in 20000 random plays, 6 reached it, 5 of them a
         * step within 2.5% of the fixed point's). */
        int changed = 0;
        for (size_t l = 0; l < 2 * P; l++) {
            double bw = link_bw(&p, l), k = lev[l];
            if (bw > 0) {
                double idle = r->step_time - p.tok_t[l];
                k = p.tok[l] + (idle > 0 ? idle : 0) * bw;
                if (!(k < c->burst)) k = c->burst;
            }
            if (fabs(k - lev[l]) > 1e-9 * c->burst) changed = 1;
            lev[l] = k;
        }
        if (!changed) break;
    }
    rc = 0;
fail:
    table_free(c ? (void *)p.fa : (void *)p.fd, tbytes);
    free(p.link);
    free(p.tok);
    free(p.tok_t);
    free(lev);
    free(p.cur);
    free(p.tfree);
    free(p.queue);
    free(p.queued);
    free(p.next_w);
    free(p.w_due);
    free(p.wl0);
    free(p.wl1);
    return rc;
}

sched_report *sched_report_alloc(const sched_schedule *s, int sim, int timeline)
{
    size_t P = (size_t)s->n_stages;
    sched_report *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->n_stages = s->n_stages;
    r->peak_mb = calloc(P, sizeof(int));
    if (!r->peak_mb) goto fail;
    if (sim) {
        r->busy = calloc(P, sizeof(double));
        r->bubble_stage = calloc(P, sizeof(double));
        r->peak_bytes = calloc(P, sizeof(double));
        if (!r->busy || !r->bubble_stage || !r->peak_bytes) goto fail;
    }
    if (timeline) {
        r->start = calloc(P, sizeof(double *));
        r->end = calloc(P, sizeof(double *));
        if (!r->start || !r->end) goto fail;
        for (size_t st = 0; st < P; st++) {
            r->start[st] = malloc((s->len[st] + 1) * sizeof(double));
            r->end[st] = malloc((s->len[st] + 1) * sizeof(double));
            if (!r->start[st] || !r->end[st]) goto fail;
        }
    }
    return r;
fail:
    sched_report_free(r);
    return NULL;
}

/* Peak activation bytes per stage, in list order: F stashes stash_bytes of its
 * virtual stage until the W or BW of the same micro-batch and chunk and holds
 * f_tmp_bytes while it runs; B holds b_bytes until that W; a BW holds bw_bytes
 * while it runs. */
static void peak_bytes(const sched_schedule *s, const sched_costs *c, sched_report *r)
{
    size_t P = (size_t)s->n_stages;
    for (size_t st = 0; st < P; st++) {
        double live = 0, peak = 0;
        for (size_t i = 0; i < s->len[st]; i++) {
            sched_action a = s->act[st][i];
            size_t k = sched_vstage(s, (int)st, a.chunk);
            double b = c->stash_bytes[k], now = 0;
            switch (a.op) {
            case SCHED_F: live += b; now = live + c->f_tmp_bytes[k]; break;
            case SCHED_B: live += c->b_bytes[k]; now = live; break;
            case SCHED_W: live -= b + c->b_bytes[k]; break;
            default: now = live + c->bw_bytes[k]; live -= b; break;
            }
            if (now > peak) peak = now;
        }
        r->peak_bytes[st] = peak;
    }
}

/* The play keeps a flag or a time per (virtual stage, micro-batch). */
#define MAX_PLAY_CELLS (1ull << 30)
static int check_size(const sched_schedule *s, char *err)
{
    unsigned long long cells = (unsigned long long)s->n_stages * (unsigned long long)s->n_chunks *
                               (unsigned long long)s->n_micro;
    if (cells > MAX_PLAY_CELLS) {
        char pre[300];
        return sched_seterr(err, "%sschedule too large to check: %d stages x %d chunks x %d "
                                 "micro-batches is more than 2^30", sched_src_prefix(s, pre, sizeof pre),
                            s->n_stages, s->n_chunks, s->n_micro);
    }
    return 0;
}

int sched_check(const sched_schedule *s, sched_report **rp, char *err)
{
    if (rp) *rp = NULL;
    if (!s) return sched_seterr(err, "no schedule");
    if (sched_is_cross_step(s)) return sched_2bw_check(s, rp, err);
    if (check_size(s, err)) return -1;
    sched_report *r = sched_report_alloc(s, 0, 0);
    if (!r) return sched_seterr(err, "out of memory validating the schedule");
    int rc = sched_static_check(s, r->peak_mb, err);
    if (!rc) rc = sched_play(s, NULL, 0, r, err);
    if (rp && (!rc || r->detail)) *rp = r;
    else sched_report_free(r);
    return rc;
}

int sched_simulate(const sched_schedule *s, const sched_costs *c, int timeline,
                   sched_report **rp, char *err)
{
    *rp = NULL;
    if (!s || !c) return sched_seterr(err, "no schedule or no costs");
    if (sched_is_cross_step(s)) return sched_2bw_simulate(s, c, timeline, rp, err);
    if (check_size(s, err)) return -1;
    size_t K = (size_t)s->n_stages * (size_t)s->n_chunks;
    if ((size_t)c->n != K)
        return sched_seterr(err, "costs are given for %d virtual stages, the schedule has %zu "
                                 "(%d stages x %d chunks)", c->n, K, s->n_stages, s->n_chunks);
    for (size_t k = 0; k < K; k++)
        if (!(c->f[k] >= 0 && c->b[k] >= 0 && c->w[k] >= 0 && c->xfer_bytes[k] >= 0 &&
              c->stash_bytes[k] >= 0 && c->f_tmp_bytes[k] >= 0 && c->b_bytes[k] >= 0 && c->bw_bytes[k] >= 0))
            return sched_seterr(err, "costs of virtual stage %zu must be >= 0", k);
    if (!(c->latency >= 0 && c->bandwidth >= 0))
        return sched_seterr(err, "link latency and bandwidth must be >= 0");
    if (!(c->burst >= 0 && isfinite(c->burst)))
        return sched_seterr(err, "the links' burst must be a number of bytes >= 0");
    for (size_t k = 0; c->grad_bytes && k < K; k++)
        if (!(c->grad_bytes[k] >= 0)) return sched_seterr(err, "gradient bytes of virtual stage %zu must be >= 0", k);
    for (int i = 0; i < s->n_stages; i++)
        if ((c->link_latency && !(c->link_latency[i] >= 0)) || (c->link_bandwidth && !(c->link_bandwidth[i] >= 0)))
            return sched_seterr(err, "latency and bandwidth of the link from stage %d must be >= 0", i);
    if (sched_ar_check(s, c->ar, err)) return -1;
    sched_report *r = sched_report_alloc(s, 1, timeline);
    if (!r) return sched_seterr(err, "out of memory simulating the schedule");
    int rc = sched_static_check(s, r->peak_mb, err);
    if (!rc) rc = sched_play(s, c, timeline, r, err);
    if (rc) {
        if (r->detail) *rp = r;
        else sched_report_free(r);
        return rc;
    }
    double sum = 0, T = r->step_time;
    for (int st = 0; st < s->n_stages; st++) {
        sum += r->busy[st];
        r->bubble_stage[st] = T > 0 ? 1 - r->busy[st] / T : 0;
    }
    r->bubble = T > 0 ? 1 - sum / (T * s->n_stages) : 0;
    peak_bytes(s, c, r);
    *rp = r;
    return 0;
}
