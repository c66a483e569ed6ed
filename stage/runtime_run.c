/* runtime_run.c — a stage's life: set-up (schedule, part, buffers, connections),
 * the handshake with the coordinator, the step loop with evaluation and
 * checkpoints, statistics and shutdown. The step itself is in runtime.c. */
#include "model/hf_load.h"
#include "model/util.h"
#include "run/run.h"
#include "stage/rt.h"

#include <cblas.h>
#include <math.h>
#include <unistd.h>

/* ---- tied embeddings across stages ---- */

static size_t tied_floats(const rt *r) { return (size_t)r->t->model.vocab_size * r->C; }

int rt_tied_exchange_grad(rt *r)
{
    if (!r->tied_buf) return 0;
    net_key k = { MSG_TIED_GRAD, (uint64_t)r->step, 0, 0 };
    size_t n = tied_floats(r);
    if (r->holds_head) return rt_send_sync(r, rt_peer(r, 0), k, r->part->tied_grad, n * sizeof(float));
    if (rt_recv_sync(r, rt_peer(r, r->head_stage), k, r->tied_buf, n * sizeof(float),
                     "waiting for the tied lm_head gradient"))
        return -1;
    for (size_t i = 0; i < n; i++) r->part->grads[i] += r->tied_buf[i]; /* as model_part_reduce_tied */
    return 0;
}

int rt_tied_exchange_weights(rt *r)
{
    if (!r->tied_buf) return 0;
    net_key k = { MSG_TIED_W, (uint64_t)r->step, 0, 0 };
    size_t n = tied_floats(r) * sizeof(float);
    if (r->holds_embed) return rt_send_sync(r, rt_peer(r, r->head_stage), k, r->part->params, n);
    return rt_recv_sync(r, rt_peer(r, 0), k, r->part->tied_w, n, "waiting for the updated tied embedding");
}

/* ---- set-up ---- */

static int load_schedule(rt *r)
{
    /* the schedule `check` validated: topo_build_schedule checks it against P, v, M */
    if (topo_build_schedule(r->t, NULL, &r->sched, r->err)) return -1;
    /* a W out of micro-batch order is deferred to its turn (runtime.c) */
    return 0;
}

static float *buf_new(size_t n) { return xcalloc(n, sizeof(float)); }

static void setup_chunks(rt *r)
{
    const topo_stage *st = &r->t->stages[r->K];
    size_t n = r->Bm * r->T * r->C;
    r->n_chunks = st->n_chunks;
    r->ch = xcalloc((size_t)r->n_chunks, sizeof *r->ch);
    for (int ci = 0, lo = 0; ci < r->n_chunks; ci++) {
        rt_chunk *c = &r->ch[ci];
        c->lo = lo;
        c->hi = lo = lo + st->chunks[ci].n_units;
        c->vs = st->chunks[ci].virtual_stage;
        c->prev = c->vs > 0 ? topo_stage_of_virtual(r->t, c->vs - 1, NULL) : -1;
        c->next = c->vs < r->V - 1 ? topo_stage_of_virtual(r->t, c->vs + 1, NULL) : -1;
        model_mem mem = model_part_mem(r->part, c->lo, c->hi, r->Bm);
        c->slot_bytes = mem.stash;
        c->work_bytes = mem.work;
        c->unit_work_bytes = mem.work_unit;
        c->fwd_bytes = mem.fwd_tmp;
        float ***bufs[4] = { &c->act_in, &c->act_out, &c->grad_in, &c->grad_out };
        int need[4] = { c->vs > 0, c->vs < r->V - 1, c->vs < r->V - 1, c->vs > 0 };
        for (int j = 0; j < 4; j++) {
            *bufs[j] = xcalloc((size_t)r->NQ, sizeof(float *));
            for (int mb = 0; mb < r->NQ && need[j]; mb++) (*bufs[j])[mb] = buf_new(n);
        }
        rt_wire_alloc(r, c);
        c->rx_act = xcalloc((size_t)r->NQ, sizeof(struct net_op *));
        c->rx_grad = xcalloc((size_t)r->NQ, sizeof(struct net_op *));
        c->tx_act = xcalloc((size_t)r->NQ, sizeof(struct net_op *));
        c->tx_grad = xcalloc((size_t)r->NQ, sizeof(struct net_op *));
        c->slot = xcalloc((size_t)r->NQ, sizeof(model_slot *));
        c->free = xcalloc((size_t)r->NQ + 1, sizeof(model_slot *));
        c->work = xcalloc((size_t)r->NQ, sizeof(float *));
        c->wfree = xcalloc((size_t)r->NQ + 1, sizeof(float *));
        c->w_due = xcalloc((size_t)r->NQ, 1);
    }
}

static void free_chunks(rt *r)
{
    for (int ci = 0; ci < r->n_chunks; ci++) {
        rt_chunk *c = &r->ch[ci];
        /* the ops first: a pending one may still read or write its buffer */
        struct net_op **ops[4] = { c->rx_act, c->rx_grad, c->tx_act, c->tx_grad };
        for (int j = 0; j < 4; j++) {
            for (int mb = 0; mb < r->NQ && ops[j]; mb++) net_op_free(ops[j][mb]);
            free(ops[j]);
        }
        float **bufs[4] = { c->act_in, c->act_out, c->grad_in, c->grad_out };
        for (int j = 0; j < 4; j++) {
            for (int mb = 0; mb < r->NQ && bufs[j]; mb++) free(bufs[j][mb]);
            free(bufs[j]);
        }
        rt_wire_free(r, c); /* after the ops: a pending one may still read its buffer */
        for (int mb = 0; mb < r->NQ; mb++) if (c->slot[mb]) model_slots_free(c->slot[mb]);
        for (int i = 0; i < c->n_free; i++) model_slots_free(c->free[i]);
        free(c->slot);
        free(c->free);
        for (int mb = 0; mb < r->NQ; mb++) free(c->work[mb]);
        for (int i = 0; i < c->n_wfree; i++) free(c->wfree[i]);
        free(c->work);
        free(c->wfree);
        free(c->unit_work);
        free(c->w_due);
    }
    free(r->ch);
}

/* Model, data and buffers. Returns 0, or 2 with r->err (bad input). */
static int setup_compute(rt *r)
{
    const topo *t = r->t;
    const topo_stage *st = &t->stages[r->K];
    r->P = t->n_stages;
    r->V = r->P * t->chunks_per_stage;
    r->M = t->train.micro_batches;
    r->B = (size_t)t->train.batch_size;
    r->Bm = (size_t)topo_micro_batch(t);
    r->T = (size_t)t->model.seq_len;
    r->C = (size_t)t->model.dim;
    r->loss_scale = 1.0f / (float)(r->B * r->T);
    r->twobw = t->schedule.kind_id == SCHED_KIND_2BW;
    r->NQ = r->twobw ? 2 * r->M : r->M;
    if (load_schedule(r)) return 2;
    int head = t->model.n_layers + 1;
    r->holds_embed = st->units[0] == 0;
    r->holds_head = st->units[st->n_units - 1] == head;
    r->head_stage = topo_stage_of_unit(t, head);
    openblas_set_num_threads(st->replicas[r->rep].threads);
    r->part = model_part_new(&t->model, st->units, st->n_units, r->Bm, (uint64_t)t->train.seed);
    model_part_set_recompute(r->part, st->recompute_id);
    r->opt = optim_new(r->part->n_params);
    if (t->init_from) { /* issue 16: this stage's tensors only; a resume then overwrites them */
        hf_stats hs;
        if (hf_load_part(t->init_from, r->part, &hs, r->err)) return 2;
        fprintf(stderr, "pipetrain stage %d replica %d: init-from %s: %d tensors, %llu bytes read from %s\n", r->K,
                r->rep, t->init_from, hs.tensors, (unsigned long long)hs.bytes, hs.names);
    }
    if (r->holds_embed || r->holds_head) {
        if (!t->data.path) return seterr(r->err, "%s: data.path: no training data given (set it or pass --data FILE)", t->path), 2;
        if (data_load(&r->data, t->data.path, t->data.format, t->model.vocab_size, t->data.val_fraction,
                      t->model.seq_len, r->err))
            return 2;
        r->has_data = 1;
        data_sampler_init(&r->sampler, (uint64_t)t->train.seed);
    }
    int first = 0;
    topo_replica_batch(t, r->rep, &first); /* the step's batch is drawn whole; this replica takes its share */
    r->x_off = (size_t)first * r->T;
    r->x = xcalloc(r->B * r->T, sizeof(int));
    r->y = xcalloc(r->B * r->T, sizeof(int));
    r->loss_mb = xcalloc((size_t)r->NQ, sizeof(double));
    r->sq = xcalloc((size_t)r->part->n_units, sizeof *r->sq);
    uint64_t nb = 4 + 8 * (uint64_t)r->part->n_units, dpn = r->R > 1 ? 4 + 8 * (uint64_t)topo_stage_buckets(t, r->K) : 0;
    r->normbuf = xcalloc((size_t)(nb > dpn ? nb : dpn) + 16 + PROTO_LIVE_MAX_BYTES, 1); /* + the live trailer */
    r->pend = xcalloc((r->twobw ? 3 : 2) * (size_t)r->M * (size_t)t->chunks_per_stage + 1, sizeof(rt_pending));
    if (t->model.tie_embeddings && r->holds_embed != r->holds_head) r->tied_buf = buf_new((size_t)t->model.vocab_size * r->C);
    setup_chunks(r);
    rt_2bw_setup(r);
    return 0;
}

static int is_neighbour(const rt *r, int j)
{
    if (j == r->K) return 0;
    for (int ci = 0; ci < r->n_chunks; ci++)
        if (r->ch[ci].prev == j || r->ch[ci].next == j) return 1;
    return r->tied_buf && ((r->K == 0 && j == r->head_stage) || (r->K == r->head_stage && j == 0));
}

/* 1 when replica i of this stage is a ring neighbour (coll/: rep - 1 and rep + 1 mod R). */
static int is_ring_neighbour(const rt *r, int i)
{
    /* parameter-server workers (sync "ps") form no ring: the servers sum */
    return r->R > 1 && !r->ps && i != r->rep && (i == (r->rep + 1) % r->R || i == (r->rep + r->R - 1) % r->R);
}

/* "stage 2 (host:port)", "stage 2 replica 1 (host:port)" or "the coordinator (host:port)". */
static const char *peer_where(const rt *r, net_peer_id id, const char *ch, int cp, char *buf, size_t cap)
{
    if (id.role == NET_ROLE_COORD) {
        snprintf(buf, cap, "the coordinator (%s:%d)", ch, cp);
    } else if (id.role == NET_ROLE_SERVER) {
        const topo_addr *s = &r->t->parameter_servers[id.stage];
        snprintf(buf, cap, "server %u (%s:%d)", id.stage, s->host, s->port);
    } else {
        const topo_replica *p = &r->t->stages[id.stage].replicas[id.replica];
        char who[32] = "";
        if (r->R > 1) snprintf(who, sizeof who, " replica %u", id.replica);
        snprintf(buf, cap, "stage %u%s (%s:%d)", id.stage, who, p->host, p->port);
    }
    return buf;
}

/* Waits until every neighbour and the coordinator are authenticated. A peer
 * that refused us (another topology, another secret) or failed ends the wait
 * at once with its reason; at the deadline the message names the first peer
 * missing and what happened to connections claiming to be it. */
static int await_peers(rt *r, const char *ch, int cp, int deadline_ms)
{
    net_peer_id ids[r->P + r->R + r->t->n_servers + 1];
    int n = 0;
    char nerr[NET_ERR_LEN], w[400];
    for (int j = 0; j < r->P; j++)
        if (is_neighbour(r, j)) ids[n++] = rt_peer(r, j);
    for (int i = 0; i < r->R; i++)
        if (is_ring_neighbour(r, i)) ids[n++] = net_stage_id((uint16_t)r->K, (uint16_t)i);
    n += rt_ps_servers(r, ids + n);
    ids[n++] = net_coord_id();
    double end = rt_now() + deadline_ms / 1e3;
    for (;;) {
        int waiting = -1;
        for (int i = 0; i < n; i++) {
            int st = net_peer_status(r->node, ids[i], nerr);
            if (st == NET_OK) continue;
            if (st != NET_PENDING)
                return rt_fail(r, "%s: %s", peer_where(r, ids[i], ch, cp, w, sizeof w), nerr), 1;
            if (waiting < 0) waiting = i;
        }
        if (waiting < 0) return 0;
        if (rt_now() >= end) {
            char why[NET_ERR_LEN];
            uint64_t k = net_refusals(r->node, ids[waiting], why);
            if (k)
                return rt_fail(r, "%s did not come up within %d ms: %llu connections claiming to be it were "
                               "refused, the last: %.300s", peer_where(r, ids[waiting], ch, cp, w, sizeof w),
                               deadline_ms, (unsigned long long)k, why), 1;
            return rt_fail(r, "%s did not come up within %d ms (no connection claiming to be it arrived)",
                           peer_where(r, ids[waiting], ch, cp, w, sizeof w), deadline_ms), 1;
        }
        net_wait_peer(r->node, ids[waiting], 100, nerr);
    }
}

/* Listens, connects (within a replica the lower stage index connects to the
 * higher; within a stage's ring the lower replica index) and waits until every
 * neighbour and the coordinator are authenticated. */
static int setup_net(rt *r)
{
    const topo *t = r->t;
    const topo_replica *me = &t->stages[r->K].replicas[r->rep];
    net_config cfg;
    char nerr[NET_ERR_LEN];
    if (stage_net_config(&cfg, t, net_stage_id((uint16_t)r->K, (uint16_t)r->rep), r->o->run_id, r->o->peer_timeout_ms,
                         r->secret, r->err))
        return 2;
    int prc = t->sync_id == TOPO_SYNC_PS ? rt_ps_setup(r) : 0; /* before the ring flags: workers form none */
    if (prc) return prc;
    r->inbound = xcalloc((size_t)r->P * (size_t)r->R, 1);
    for (int j = 0; j < r->K; j++) r->inbound[topo_rank_of(t, j, r->rep)] = (uint8_t)is_neighbour(r, j);
    for (int i = 0; i < r->rep; i++) r->inbound[topo_rank_of(t, r->K, i)] = (uint8_t)is_ring_neighbour(r, i);
    r->peers = (stage_peers){ t, r->rank, r->inbound };
    cfg.accept_peer = stage_accept_peer;
    cfg.accept_arg = &r->peers;
    cfg.listen_host = me->host;
    cfg.listen_port = me->port;
    cfg.connect_deadline_ms = r->o->connect_timeout_ms > 0 ? r->o->connect_timeout_ms : 60000;
    if (!(r->node = net_node_new(&cfg, nerr))) return rt_fail(r, "%s", nerr), 1;
    for (int j = r->K + 1; j < r->P; j++) {
        const topo_replica *p = &t->stages[j].replicas[r->rep];
        if (is_neighbour(r, j) && net_connect(r->node, rt_peer(r, j), p->host, p->port, nerr))
            return rt_fail(r, "connecting to stage %d: %s", j, nerr), 1;
    }
    for (int i = r->rep + 1; i < r->R; i++) {
        const topo_replica *p = &t->stages[r->K].replicas[i];
        if (is_ring_neighbour(r, i) && net_connect(r->node, net_stage_id((uint16_t)r->K, (uint16_t)i), p->host, p->port, nerr))
            return rt_fail(r, "connecting to replica %d of stage %d: %s", i, r->K, nerr), 1;
    }
    if (rt_ps_connect(r)) return 1;
    const char *ch = r->o->coord_host ? r->o->coord_host : t->coordinator.host;
    int cp = r->o->coord_port > 0 ? r->o->coord_port : t->coordinator.port;
    if (net_connect(r->node, net_coord_id(), ch, cp, nerr)) return rt_fail(r, "connecting to the coordinator: %s", nerr), 1;
    int rc = await_peers(r, ch, cp, cfg.connect_deadline_ms);
    if (!rc && r->R > 1 && !r->ps) rc = rt_dp_setup(r);
    return rc;
}

/* Replica 0 writes the stage's shard; with train.zero every replica takes
 * part in gathering the AdamW moments, one bucket at a time as the file
 * reaches it (rt_dp_ckpt_begin); with parameter servers replica 0
 * first receives its pieces' state from them. */
static int checkpoint(rt *r)
{
    char cerr[ERR_LEN];
    int writer = rt_ps_checkpoint(r);
    if (writer < 0) return -1;
    uint64_t sampler = r->has_data ? data_sampler_get_state(&r->sampler) : 0;
    /* 2bw: the sampler has drawn ahead; W(t+1) and W(t) (rt.h) */
    if (r->twobw && r->has_data) sampler = r->sampler_after[r->step & 1];
    const float *prev = rt_2bw_ckpt_weights(r);
    int rc = 0;
    if (rt_dp_zero(r)) { /* the moments a bucket at a time, as the writer's file reaches them */
        rt_dp_ckpt *c = rt_dp_ckpt_begin(r);
        int wrc = writer && run_write_shard_fill(r->t, r->o->out_dir, r->K, r->step + 1, r->part, rt_dp_ckpt_fill,
                                                 c, sampler, prev, cerr);
        if (rt_dp_ckpt_end(c)) rc = -1; /* a broadcast failed: r->err says which */
        else if (wrc) rc = rt_fail(r, "checkpoint: %s", cerr);
    } else if (writer && run_write_shard_2bw(r->t, r->o->out_dir, r->K, r->step + 1, r->part, r->opt, sampler, prev,
                                             cerr))
        rc = rt_fail(r, "checkpoint: %s", cerr);
    if (rc || !writer) return rc;
    net_key k = { MSG_CKPT_DONE, (uint64_t)r->step, 0, 0 };
    return rt_send_sync(r, net_coord_id(), k, NULL, 0);
}

/* START with first > 0 (issue #6): this stage's weights, AdamW state and (on
 * the stages holding data) sampler from the complete checkpoint step-FIRST. */
static int resume(rt *r, long first)
{
    char cerr[ERR_LEN];
    uint64_t sampler;
    r->step = first - 1;
    optim_adamw *opt = rt_dp_zero(r) ? optim_new(r->part->n_params) : r->opt;
    int rc = run_resume_part(r->t, r->o->out_dir, first, r->part, opt, &sampler, cerr);
    if (!rc && opt != r->opt) rt_dp_take_optim(r, opt);
    if (opt != r->opt) optim_free(opt);
    if (rc) return rt_fail(r, "resuming: %s", cerr);
    if (r->has_data) data_sampler_set_state(&r->sampler, sampler);
    return rt_2bw_resume(r, first);
}

static void send_fail(rt *r)
{
    if (!r->node || !r->err[0]) return;
    struct net_op *op = NULL;
    char nerr[NET_ERR_LEN];
    net_key k = { MSG_FAIL, (uint64_t)(r->step < 0 ? 0 : r->step), 0, 0 };
    if (net_send(r->node, net_coord_id(), k, r->err, strlen(r->err), 200, &op, nerr) == NET_OK) net_wait(op, 500, nerr);
    net_op_free(op);
}

static int run_steps(rt *r)
{
    uint8_t buf[16];
    put_u32le(buf, (uint32_t)r->K);
    put_u32le(buf + 4, (uint32_t)getpid());
    put_u32le(buf + 8, (uint32_t)r->part->n_units);
    net_key k = { MSG_JOIN, 0, 0, 0 };
    if (rt_send_sync(r, net_coord_id(), k, buf, 12)) return -1;
    k.type = MSG_START;
    uint8_t start[24] = { 0 };
    uint64_t len = 0;
    if (rt_recv_len(r, net_coord_id(), k, start, sizeof start, &len, "waiting for the coordinator to start the run")) return -1;
    if (len < 16) return rt_fail(r, "START from the coordinator has %llu bytes, expected 16 or 24", (unsigned long long)len);
    long first = (long)get_u64le(start), total = (long)get_u64le(start + 8);
    r->trace = len >= 24 && (get_u64le(start + 16) & PROTO_START_TRACE);
    r->live = len >= 24 && (get_u64le(start + 16) & PROTO_START_LIVE);
    if (r->trace || r->live) rt_trace_start(r);
    if (first < 0 || first > total || total != r->t->train.steps)
        return rt_fail(r, "the coordinator asks for steps %ld..%ld; this stage's topology has %d steps", first, total, r->t->train.steps);
    r->first_step = first;
    if (first > 0 && !rt_ps_async(r) && resume(r, first)) return -1;
    /* asynchronous: the servers hold the state (the first pull brings the
     * weights); the sampler draws the `first` batches before ours */
    for (long s = 0; rt_ps_async(r) && r->has_data && s < first; s++)
        data_sample_batch(&r->sampler, &r->data, r->x, r->y, r->B, r->T);
    double t0 = rt_now();
    size_t n3 = 3 * (size_t)r->part->n_units;
    if (r->trace) {
        r->unit_time = xcalloc(1, sizeof *r->unit_time);
        r->unit_time->cap = RT_UNIT_SAMPLES;
        r->unit_time->cpu = r->t->stages[r->K].replicas[r->rep].threads <= 1; /* the kernels run in this thread */
        r->unit_time->t = xcalloc(n3 * RT_UNIT_SAMPLES, sizeof(double));
        r->unit_time->n = xcalloc(n3, sizeof(unsigned long));
    }
    for (r->step = first; r->step < total; r->step++) {
        r->part->unit_time = r->unit_time; /* training steps only, not evaluation */
        int bad = rt_step(r);
        r->part->unit_time = NULL;
        if (bad) return -1;
        if (r->unit_time && r->step == first && total - first > 1) /* the first step warms up */
            memset(r->unit_time->n, 0, n3 * sizeof(unsigned long));
        if (run_is_eval_step(r->t, r->step) && rt_eval(r)) return -1;
        if (run_is_ckpt_step(r->t, r->step) && checkpoint(r)) return -1;
        r->stats.steps++;
    }
    r->step = total - 1;
    rt_straggle_report(r);
    rt_wire_report(r);
    r->stats.wall_s = rt_now() - t0;
    r->stats.allreduce_s = rt_dp_busy_s(r);
    r->stats.optim_bytes = r->ps ? 0 : 2 * (uint64_t)r->opt->n * sizeof(float); /* servers hold AdamW */
    if (r->trace && rt_send_trace(r)) return -1;
    uint8_t sb[PROTO_STATS_BYTES];
    proto_stats_encode(sb, &r->stats);
    k = (net_key){ MSG_STATS, (uint64_t)r->step, 0, 0 };
    if (rt_send_sync(r, net_coord_id(), k, sb, sizeof sb)) return -1;
    k.type = MSG_DONE;
    return rt_recv_sync(r, net_coord_id(), k, NULL, 0, "waiting for the coordinator to finish");
}

int stage_run(const topo *t, const stage_opts *o, char *err)
{
    if (t->n_stages < 2 && t->n_replicas < 2 && t->sync_id != TOPO_SYNC_PS)
        return seterr(err, "%s: a one-stage topology runs in one process: use pipetrain run", t->path), 2;
    if (o->stage < 0 || o->stage >= t->n_stages)
        return seterr(err, "%s: --stage %d: the topology has stages 0..%d", t->path, o->stage, t->n_stages - 1), 2;
    if (o->replica < 0 || o->replica >= t->n_replicas)
        return seterr(err, "%s: --replica %d: the topology has replicas 0..%d", t->path, o->replica,
                      t->n_replicas - 1), 2;
    if (o->join && (t->sync_id != TOPO_SYNC_PS || t->ps.staleness == 0))
        return seterr(err, "%s: --join: only a worker of asynchronous parameter servers (\"sync\": \"ps\" with "
                      "ps.staleness != 0) can join a running training; ps.staleness is %d", t->path,
                      t->sync_id == TOPO_SYNC_PS ? t->ps.staleness : 0), 2;
    rt *r = xcalloc(1, sizeof *r);
    r->t = t;
    r->o = o;
    r->K = o->stage;
    r->rep = o->replica;
    r->R = t->n_replicas;
    r->rank = topo_rank_of(t, r->K, r->rep);
    r->err = err;
    r->step = -1;
    err[0] = 0;
    r->step_timeout_s = o->step_timeout_s > 0 ? o->step_timeout_s : 600;
    int rc = rt_straggle_setup(r);
    if (!rc) rc = setup_compute(r);
    if (!rc) rc = setup_net(r);
    if (!rc && run_steps(r)) {
        rc = 1;
        send_fail(r);
    }
    rt_dp_free(r); /* its thread uses the node */
    net_node_free(r->node);
    rt_ps_free(r);
    if (r->ch) free_chunks(r);
    rt_2bw_free(r);
    sched_free(r->sched);
    model_part_free(r->part);
    optim_free(r->opt);
    data_free(&r->data);
    free(r->x); free(r->y); free(r->loss_mb); free(r->tied_buf);
    free(r->sq); free(r->normbuf);
    rt_trace_free(r);
    if (r->unit_time) { free(r->unit_time->t); free(r->unit_time->n); free(r->unit_time); }
    free(r->pend); free(r->inbound);
    free(r);
    return rc;
}
