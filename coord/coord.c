/* coord.c — the coordinator of a multi-stage run (see coord.h). One net node,
 * listening; the stages connect to it. Every wait polls in slices of
 * opts.poll_ms and between slices checks the transport for dead peers and the
 * caller's liveness callback, so a dead or silent stage ends the run with a
 * message naming it instead of a hang.
 * Not here: processes (cli/cli_launch.c), tensors, restarts (#6). */
#include "coord/coord.h"
#include "coord/coord_http.h"
#include "coord/coord_int.h"
#include "model/optim.h"
#include "model/safetensors.h"
#include "model/util.h"
#include "run/run.h"
#include "stage/proto.h"
#include "stage/stage.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>

/* Keys of control messages: (type, step, 0, 0). JOIN and START use step 0;
 * NORM, NORM_REPLY, LOSS, VAL, CKPT_DONE and FAIL carry the 0-based step they
 * belong to (FAIL before START: 0); STATS and DONE the last step, total-1
 * (as stage/runtime_run.c sends and expects them); SYNC, SYNC_REPLY and
 * TRACE (coord_trace.c) the last step too, with the round or part in mb. */
static net_key ctl_key(uint16_t type, uint64_t step) { return coord_key(type, step, 0); }

/* The transport's log lines (network thread): to stderr until the outcome is
 * known, then dropped (every stage closing its connection is expected). */
static void net_log(void *arg, const char *line)
{
    coordinator *c = arg;
    if (!c->quiet) fprintf(stderr, "%s\n", line);
}

void coord_opts_init(coord_opts *o)
{
    memset(o, 0, sizeof *o);
    o->progress = stderr;
    o->listen_port = -1;
    o->peer_timeout_ms = 10000;
    o->join_timeout_ms = 60000;
    o->step_timeout_ms = 600000;
    o->poll_ms = 200;
}

const char *coord_where(const topo *t, int p, char *buf, size_t cap)
{
    int grid = t->n_stages * t->n_replicas;
    if (p >= grid) { /* a parameter server */
        const topo_addr *a = &t->parameter_servers[p - grid];
        snprintf(buf, cap, strchr(a->host, ':') ? "[%s]:%d" : "%s:%d", a->host, a->port);
        return buf;
    }
    const topo_replica *s = &t->stages[p % t->n_stages].replicas[p / t->n_stages];
    snprintf(buf, cap, strchr(s->host, ':') ? "[%s]:%d" : "%s:%d", s->host, s->port);
    return buf;
}

const char *coord_who(const topo *t, int p, char *buf, size_t cap)
{
    int grid = t->n_stages * t->n_replicas;
    if (p >= grid) snprintf(buf, cap, "server %d", p - grid);
    else if (t->n_replicas > 1) snprintf(buf, cap, "stage %d replica %d", p % t->n_stages, p / t->n_stages);
    else snprintf(buf, cap, "stage %d", p);
    return buf;
}

const char *coord_name(const topo *t, int p, char *buf, size_t cap)
{
    char who[48], w[300];
    snprintf(buf, cap, "%s (%s)", coord_who(t, p, who, sizeof who), coord_where(t, p, w, sizeof w));
    return buf;
}

_Static_assert(RUN_STALE_BUCKETS == PS_STALE_BUCKETS, "summary.json's staleness histogram is the server's");

/* ---- norms ---- */

int coord_place_norms(const topo *t, int stage, const uint8_t *payload, uint64_t len, double *sq,
                            char *err)
{
    const topo_stage *s = &t->stages[stage];
    if (len < 4) return seterr(err, "NORM payload of %llu bytes is too short", (unsigned long long)len);
    uint32_t n = get_u32le(payload);
    if (n != (uint32_t)s->n_units)
        return seterr(err, "NORM lists %u units but the stage holds %d (layers \"%s\")", n, s->n_units, s->layers);
    if (len != 4 + 8 * (uint64_t)n)
        return seterr(err, "NORM payload is %llu bytes, expected %llu for %u units", (unsigned long long)len,
                      (unsigned long long)(4 + 8 * (uint64_t)n), n);
    for (uint32_t i = 0; i < n; i++) sq[s->units[i]] = get_f64le(payload + 4 + 8 * (size_t)i);
    return 0;
}

uint64_t coord_encode_norms(const topo *t, int stage, const double *sq, uint8_t *out)
{
    const topo_stage *s = &t->stages[stage];
    put_u32le(out, (uint32_t)s->n_units);
    for (int i = 0; i < s->n_units; i++) put_f64le(out + 4 + 8 * (size_t)i, sq[s->units[i]]);
    return 4 + 8 * (uint64_t)s->n_units;
}

/* The index of unit u's first bucket among all the model's buckets (units in
 * global order). */
size_t coord_norm_parts(const topo *t) { return topo_first_bucket(t, topo_n_units(t)) * (size_t)t->n_replicas; }

int coord_place_norm_partials(const topo *t, int stage, int replica, const uint8_t *payload, uint64_t len,
                              double *parts, char *err)
{
    const topo_stage *s = &t->stages[stage];
    uint64_t want = (uint64_t)topo_stage_buckets(t, stage);
    int R = t->n_replicas;
    if (len < 4) return seterr(err, "NORM payload of %llu bytes is too short", (unsigned long long)len);
    uint32_t n = get_u32le(payload);
    if (n != want)
        return seterr(err, "NORM lists %u partials but the stage's units (layers \"%s\") have %llu gradient buckets",
                      n, s->layers, (unsigned long long)want);
    if (len != 4 + 8 * (uint64_t)n)
        return seterr(err, "NORM payload is %llu bytes, expected %llu for %u partials", (unsigned long long)len,
                      (unsigned long long)(4 + 8 * (uint64_t)n), n);
    const uint8_t *q = payload + 4;
    for (int i = 0; i < s->n_units; i++) {
        int u = s->units[i], nb = topo_unit_buckets(t, u, -1, NULL, NULL);
        size_t base = topo_first_bucket(t, u);
        for (int b = 0; b < nb; b++, q += 8) parts[(base + (size_t)b) * (size_t)R + (size_t)replica] = get_f64le(q);
    }
    return 0;
}

void coord_combine_norm_partials(const topo *t, const double *parts, double *sq)
{
    topo_combine_norm_partials(t, parts, sq); /* shared with the parameter servers (ps_norm_combine) */
}

uint64_t coord_encode_norm_partials(const topo *t, int stage, int replica, const double *parts, uint8_t *out)
{
    const topo_stage *s = &t->stages[stage];
    int R = t->n_replicas;
    uint8_t *q = out + 4;
    for (int i = 0; i < s->n_units; i++) {
        int u = s->units[i], nb = topo_unit_buckets(t, u, -1, NULL, NULL);
        size_t base = topo_first_bucket(t, u);
        for (int b = 0; b < nb; b++, q += 8) put_f64le(q, parts[(base + (size_t)b) * (size_t)R + (size_t)replica]);
    }
    put_u32le(out, (uint32_t)((q - out - 4) / 8));
    return (uint64_t)(q - out);
}

/* ---- life cycle ---- */

coordinator *coord_new(const topo *t, const coord_opts *o, char *err)
{
    coordinator *c = xcalloc(1, sizeof *c);
    c->t = t;
    c->o = *o;
    c->failed_stage = -1;
    c->n_units = topo_n_units(t);
    c->head = topo_stage_of_unit(t, c->n_units - 1);
    c->n_grid = t->n_stages * t->n_replicas;
    c->n_proc = c->n_grid + (t->sync_id == TOPO_SYNC_PS ? t->n_servers : 0);
    c->pids = xcalloc((size_t)c->n_proc, sizeof *c->pids);
    c->stats = xcalloc((size_t)c->n_proc, sizeof *c->stats);
    c->sq = xcalloc((size_t)c->n_units, sizeof *c->sq);
    c->normcap = 4 + 8 * (uint64_t)c->n_units;
    if (t->n_replicas > 1) {
        c->parts = xcalloc(coord_norm_parts(t) + 1, sizeof *c->parts);
        for (int k = 0; k < t->n_stages; k++) { /* the partials: one per bucket of the stage's units */
            uint64_t len = 4 + 8 * (uint64_t)topo_stage_buckets(t, k);
            if (len > c->normcap) c->normcap = len;
        }
    }
    if (c->normcap < PROTO_STATS_BYTES) c->normcap = PROTO_STATS_BYTES;
    if (o->http) c->normcap += PROTO_LIVE_MAX_BYTES; /* NORM's live trailer (run --http) */
    if (t->sync_id == TOPO_SYNC_PS) { /* the servers' partials and STATS (ps/ps_proto.h) */
        c->psa = xcalloc(1, sizeof *c->psa);
        if (ps_assign(t, c->psa, err)) goto fail;
        c->pparts = xcalloc((size_t)c->psa->n_blocks + 1, sizeof *c->pparts);
        c->sstats = xcalloc((size_t)t->n_servers, sizeof *c->sstats);
        uint64_t len = 4 + (uint64_t)c->psa->n_blocks * PS_PARTIAL_BYTES;
        if (len > c->normcap) c->normcap = len;
        if (c->normcap < PS_STATS_BYTES) c->normcap = PS_STATS_BYTES;
    }
    c->normbuf = xcalloc((size_t)c->n_proc, (size_t)c->normcap);
    c->gone = xcalloc((size_t)c->n_proc, 1);
    c->adopted = xcalloc((size_t)c->n_proc, 1);
    if (!c->o.progress && !(c->devnull = fopen("/dev/null", "w"))) {
        seterr(err, "cannot open /dev/null");
        goto fail;
    }
    if (!c->o.progress) c->o.progress = c->devnull;
    net_config cfg;
    if (stage_net_config(&cfg, t, net_coord_id(), o->run_id, o->peer_timeout_ms, c->secret, err)) goto fail;
    c->peers = (stage_peers){ t, -1, NULL };
    cfg.accept_peer = stage_accept_peer;
    cfg.accept_arg = &c->peers;
    cfg.listen_host = t->coordinator.host;
    cfg.log = net_log;
    cfg.log_arg = c;
    cfg.listen_port = o->listen_port >= 0 ? o->listen_port : t->coordinator.port;
    char nerr[NET_ERR_LEN];
    if (!(c->node = net_node_new(&cfg, nerr))) {
        seterr(err, "coordinator: cannot listen on %s port %d: %s", cfg.listen_host, cfg.listen_port, nerr);
        goto fail;
    }
    return c;
fail:
    coord_free(c);
    return NULL;
}

int coord_port(const coordinator *c) { return net_node_port(c->node); }
int coord_failed_stage(const coordinator *c) { return c->failed_stage; }

void coord_free(coordinator *c)
{
    if (!c) return;
    net_node_free(c->node);
    run_log_free(c->log);
    if (c->devnull) fclose(c->devnull);
    free(c->pids);
    free(c->stats);
    free(c->sq);
    free(c->parts);
    if (c->psa) ps_assignment_free(c->psa);
    free(c->psa);
    free(c->pparts);
    free(c->sstats);
    free(c->normbuf);
    free(c->gone);
    free(c->adopted);
    json_decref(c->timing);
    free(c);
}

/* ---- failures ---- */

/* A FAIL message from process k that already arrived (around the current step),
 * into text. Returns 1 when found. Receives are posted asynchronously, so
 * this waits up to 100 ms in all (a dead peer's receives end at once). */
static int probe_fail(coordinator *c, int k, char *text)
{
    long steps[4] = { c->step, c->step + 1, c->step - 1, 0 };
    char buf[4][ERR_LEN], nerr[NET_ERR_LEN];
    struct net_op *ops[4] = { NULL };
    int found = 0;
    for (int i = 0; i < 4; i++) {
        if (steps[i] < 0 || (i == 3 && c->step <= 1)) continue;
        net_recv_post(c->node, coord_sid(c, k), ctl_key(MSG_FAIL, (uint64_t)steps[i]), buf[i], ERR_LEN - 1, &ops[i], nerr);
    }
    double end = coord_now() + 0.1;
    for (int i = 0; i < 4; i++) {
        if (!ops[i]) continue;
        int left = (int)((end - coord_now()) * 1e3);
        if (!found && net_wait(ops[i], left > 0 ? left : 0, nerr) == NET_OK) {
            uint64_t len = net_op_len(ops[i]);
            buf[i][len < ERR_LEN ? len : ERR_LEN - 1] = 0;
            snprintf(text, ERR_LEN, "%.*s", ERR_LEN - 1, buf[i]);
            found = 1;
        }
        net_op_free(ops[i]);
    }
    return found;
}

/* How strongly process k looks like the cause of a failure: 5 killed by a
 * signal, 4 never got in while connections claiming to be it were refused
 * (another secret or topology: its neighbours then fail, through no fault of
 * their own), 3 gone silent or disconnected without saying why, 2 exited with
 * a status without saying why, 1 said FAIL (often about another stage), 0 fine.
 * The reason goes into why, the verb into *verb. */
static int blame_score(coordinator *c, int k, char *why, const char **verb)
{
    char ex_why[ERR_LEN] = "", net_why[NET_ERR_LEN] = "", fail[ERR_LEN], ref_why[NET_ERR_LEN] = "";
    /* an adopted process (--join) is not the launcher's child: the child of
     * that rank is the one that died before it, whose end says nothing now */
    int ex = c->o.alive && !c->adopted[k] ? c->o.alive(c->o.alive_arg, k, ex_why) : 0;
    int st = net_peer_status(c->node, coord_sid(c, k), net_why);
    int dead = st != NET_OK && st != NET_PENDING;
    int said = probe_fail(c, k, fail);
    uint64_t refused = st == NET_PENDING ? net_refusals(c->node, coord_sid(c, k), ref_why) : 0;
    *verb = "died";
    if (ex == 1) { snprintf(why, ERR_LEN, "%s", ex_why); return 5; }
    if (refused) {
        *verb = "was refused";
        if (strstr(ref_why, "authentication failed"))
            snprintf(why, ERR_LEN, "its shared secret (secret_file or $%s where it runs) differs from the "
                     "coordinator's: %llu connection(s) claiming to be it failed to authenticate, the last: %.300s",
                     PROTO_SECRET_ENV, (unsigned long long)refused, ref_why);
        else
            snprintf(why, ERR_LEN, "it never joined: %llu connection(s) claiming to be it were refused, the last: "
                     "%.300s", (unsigned long long)refused, ref_why);
        return 4;
    }
    if (said) { snprintf(why, ERR_LEN, "%s", fail); *verb = "failed"; return 1; }
    if (dead && !ex) { snprintf(why, ERR_LEN, "%s", net_why); return 3; }
    if (ex == 2) { snprintf(why, ERR_LEN, "%s", ex_why); return 2; }
    return 0;
}

/* A failure while the trace is gathered (c->soft): the reason into err,
 * naming stage k, which is marked gone when its process or connection is.
 * Nothing is told to the stages and no stage is blamed. Returns 1. */
static int soft_fail(coordinator *c, int k, const char *reason, char *err)
{
    char w[360], why[ERR_LEN] = "", nerr[NET_ERR_LEN];
    if (k < 0 || k >= c->n_proc) return seterr(err, "%s", reason), 1;
    int ex = c->o.alive && !c->adopted[k] ? c->o.alive(c->o.alive_arg, k, why) : 0;
    int st = net_peer_status(c->node, coord_sid(c, k), nerr), dead = st != NET_OK && st != NET_PENDING;
    /* a closed connection is often the first sign of a process that died: its
     * exit status says why, once it has been reaped */
    for (double end = coord_now() + 1; dead && !ex && c->o.alive && !c->adopted[k] && coord_now() < end;) {
        nanosleep(&(struct timespec){ 0, 50000000 }, NULL);
        ex = c->o.alive(c->o.alive_arg, k, why);
    }
    if (ex || dead) c->gone[k] = 1;
    seterr(err, "%s: %s", coord_name(c->t, k, w, sizeof w), ex ? why : reason);
    return 1;
}

/* Sends FAIL with msg to every process still connected (best effort). */
static void tell_stages(coordinator *c, const char *msg)
{
    char nerr[NET_ERR_LEN];
    c->quiet = 1;
    for (int k = 0; k < c->n_proc; k++) {
        struct net_op *op = NULL;
        net_peer_id id = coord_sid(c, k);
        if (net_peer_status(c->node, id, nerr) != NET_OK) continue;
        if (net_send(c->node, id, ctl_key(MSG_FAIL, (uint64_t)c->step), msg, strlen(msg), 100, &op, nerr) == NET_OK)
            net_wait(op, 500, nerr);
        net_op_free(op);
    }
}

/* Fails the run at once, blaming process k for what it sent ("failed"). */
int coord_bad_message(coordinator *c, int k, char *err, const char *fmt, ...)
{
    char what[ERR_LEN], w[360];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (c->soft) return soft_fail(c, k, what, err);
    c->failed_stage = k;
    seterr(err, "%s failed at step %ld: %s", coord_name(c->t, k, w, sizeof w), c->step + 1, what);
    tell_stages(c, err);
    return 1;
}

/* Ends the run: after a grace period (the other stages notice a dead
 * neighbour too, and their own FAILs must not hide the process that died
 * first), blames the likeliest process, falling back to `first` with `reason`. */
static int fail_run(coordinator *c, int first, const char *reason, char *err)
{
    if (c->soft) return soft_fail(c, first, reason, err);
    c->quiet = 1;
    int grace = c->o.peer_timeout_ms / 3 + 500;
    if (grace > 4000) grace = 4000;
    for (double end = coord_now() + grace / 1e3; coord_now() < end;) nanosleep(&(struct timespec){ 0, 50000000 }, NULL);
    int best = -1, best_score = 0;
    char why[ERR_LEN], best_why[ERR_LEN] = "";
    const char *verb, *best_verb = "failed";
    for (int i = -1; i < c->n_proc; i++) {
        int k = i < 0 ? first : i; /* the first detected wins ties */
        /* a gone process (a dropped worker's, or lost at the end) is over: not the cause of what fails now */
        if (k < 0 || (i >= 0 && (k == first || c->gone[k]))) continue;
        int s = blame_score(c, k, why, &verb);
        if (s > best_score) { best = k; best_score = s; best_verb = verb; snprintf(best_why, sizeof best_why, "%s", why); }
    }
    if (best < 0) { best = first; snprintf(best_why, sizeof best_why, "%s", reason); }
    char w[360];
    if (best < 0) seterr(err, "%s at step %ld", reason, c->step + 1);
    else seterr(err, "%s %s at step %ld: %s", coord_name(c->t, best, w, sizeof w), best_verb, c->step + 1, best_why);
    c->failed_stage = best;
    tell_stages(c, err);
    return 1;
}

/* Why process k has not joined, into why (ERR_LEN): connected but silent, or
 * what became of the connections claiming to be it, and of strangers'. */
static void join_why(coordinator *c, int k, char *why)
{
    char nerr[NET_ERR_LEN];
    net_preauth pa;
    net_preauth_stats(c->node, &pa);
    uint64_t refused = net_refusals(c->node, coord_sid(c, k), nerr);
    int n;
    if (net_peer_status(c->node, coord_sid(c, k), NULL) == NET_OK)
        n = snprintf(why, ERR_LEN, "it connected but sent no JOIN (see its log)");
    else if (refused)
        n = snprintf(why, ERR_LEN, "%llu connections claiming to be it were refused, the last: %.300s",
                     (unsigned long long)refused, nerr);
    else
        n = snprintf(why, ERR_LEN, "no connection claiming to be it arrived (is the stage running? see its log)");
    if ((pa.evicted || pa.timed_out) && n > 0 && n < ERR_LEN)
        snprintf(why + n, ERR_LEN - (size_t)n, "; %llu unauthenticated connections were dropped for want of "
                 "pre-auth slots and %llu at the handshake deadline", (unsigned long long)pa.evicted,
                 (unsigned long long)pa.timed_out);
}

/* Between polling slices: 1 (and the run is failed into err) when a peer died,
 * a watched process exited, the run was interrupted or the deadline passed. */
static int check_live(coordinator *c, double deadline, const int *pending, const char *what, char *err)
{
    net_peer_id peer;
    char nerr[NET_ERR_LEN], why[ERR_LEN], w[360];
    if (net_any_failed(c->node, &peer, nerr)) {
        int k = peer.role == NET_ROLE_STAGE ? topo_rank_of(c->t, peer.stage, peer.replica)
              : peer.role == NET_ROLE_SERVER && c->n_grid + peer.stage < c->n_proc ? c->n_grid + peer.stage : -1;
        if (k < 0 || !c->gone[k]) return fail_run(c, k, nerr, err);
        /* a process that died while the trace was gathered is over: the others count */
        for (k = 0; k < c->n_proc; k++) {
            int st = c->gone[k] ? NET_OK : net_peer_status(c->node, coord_sid(c, k), nerr);
            if (st != NET_OK && st != NET_PENDING) return fail_run(c, k, nerr, err);
        }
    }
    if (c->o.alive) {
        int k = -1;
        if (c->o.alive(c->o.alive_arg, -1, why)) {
            seterr(err, "%s at step %ld", why, c->step + 1);
            if (!c->soft) tell_stages(c, err);
            return 1;
        }
        for (k = 0; k < c->n_proc; k++)
            if (!c->gone[k] && !c->adopted[k] && c->o.alive(c->o.alive_arg, k, why)) return fail_run(c, k, why, err);
    }
    if (coord_now() < deadline) return 0;
    int k = 0;
    while (k < c->n_proc - 1 && !pending[k]) k++;
    if (c->soft) {
        seterr(err, "%s timed out: no %s within %.0f s", coord_name(c->t, k, w, sizeof w), what, c->limit_s);
        return 1;
    }
    c->failed_stage = k;
    if (c->joining) join_why(c, k, why);
    if (c->joining)
        seterr(err, "%s did not join within %.0f s: %s", coord_name(c->t, k, w, sizeof w), c->limit_s, why);
    else
        seterr(err, "%s timed out at step %ld: no %s within %.0f s", coord_name(c->t, k, w, sizeof w), c->step + 1,
               what, c->limit_s);
    tell_stages(c, err);
    return 1;
}

/* Waits for ops[p] of every process p with ops[p] != NULL, polling in
 * slices. Frees each op once complete; *lens[p] gets received lengths.
 * Returns 0, or 1 with the failure in err (the remaining ops freed). */
int coord_wait_all(coordinator *c, struct net_op **ops, uint64_t *lens, double deadline, const char *what,
                   char *err)
{
    int n = c->n_proc, rc = 0, pending[n];
    char nerr[NET_ERR_LEN];
    memset(pending, 0, sizeof pending);
    for (int k = 0; k < n; k++) pending[k] = ops[k] != NULL;
    /* checked up front too: when every message comes within a slice, an
     * interrupt or an exited child would otherwise go unnoticed */
    rc = check_live(c, deadline, pending, what, err);
    while (!rc) {
        int first = -1;
        for (int k = 0; k < n && !rc; k++) {
            if (!pending[k]) continue;
            int st = first < 0 ? net_wait(ops[k], c->o.poll_ms, nerr) : net_op_test(ops[k], nerr);
            if (st == NET_TIMEOUT || st == NET_PENDING) { if (first < 0) first = k; continue; }
            if (st != NET_OK) { rc = fail_run(c, k, nerr, err); break; }
            if (lens) lens[k] = net_op_len(ops[k]);
            net_op_free(ops[k]);
            ops[k] = NULL;
            pending[k] = 0;
        }
        if (rc || first < 0) break;
        rc = check_live(c, deadline, pending, what, err);
    }
    for (int k = 0; k < n; k++) { net_op_free(ops[k]); ops[k] = NULL; }
    return rc;
}

/* ---- messages ---- */

/* Which processes a message comes from: every one, the head stage of every
 * replica (LOSS), replica 0's head stage (VAL), replica 0 of every stage
 * (CKPT_DONE), every stage process (the grid: NORM), the parameter servers
 * (their NORM partials). With R = 1 the middle three are the head stage and
 * every stage; without servers FROM_GRID is FROM_ALL. */
enum { FROM_ALL, FROM_HEADS, FROM_HEAD0, FROM_REPLICA0, FROM_GRID, FROM_SERVERS };

static int from(const coordinator *c, int p, int who)
{
    int P = c->t->n_stages;
    if (who == FROM_GRID) return p < c->n_grid;
    if (who == FROM_SERVERS) return p >= c->n_grid;
    if (who != FROM_ALL && p >= c->n_grid) return 0;
    switch (who) {
    case FROM_HEADS: return p % P == c->head;
    case FROM_HEAD0: return p == c->head;
    case FROM_REPLICA0: return p < P;
    default: return 1;
    }
}

/* Posts a receive for (type, step) from the processes `who` names (FROM_*),
 * into the per-process slots of normbuf. */
static int post_all(coordinator *c, struct net_op **ops, uint16_t type, long step, int who, char *err)
{
    char nerr[NET_ERR_LEN];
    for (int k = 0; k < c->n_proc; k++) ops[k] = NULL;
    for (int k = 0; k < c->n_proc; k++) {
        if (!from(c, k, who) || c->gone[k]) continue;
        if (net_recv_post(c->node, coord_sid(c, k), ctl_key(type, (uint64_t)step), c->normbuf + (size_t)k * c->normcap,
                          c->normcap, &ops[k], nerr) != NET_OK) {
            for (int j = 0; j < k; j++) { net_op_free(ops[j]); ops[j] = NULL; }
            return fail_run(c, k, nerr, err);
        }
    }
    return 0;
}

/* Receives (type, step) from the processes `who` names within timeout_s;
 * payloads land in normbuf, lengths in lens. */
static int recv_all(coordinator *c, uint16_t type, long step, int who, uint64_t *lens, double timeout_s,
                    const char *what, char *err)
{
    struct net_op *ops[c->n_proc];
    c->limit_s = timeout_s;
    if (post_all(c, ops, type, step, who, err)) return 1;
    return coord_wait_all(c, ops, lens, coord_now() + timeout_s, what, err);
}

/* Sends the same payload to the processes `who` names (FROM_*) and waits
 * until it is written. */
static int send_to(coordinator *c, int who, uint16_t type, long step, const uint8_t *payload, uint64_t len, char *err)
{
    int n = c->n_proc;
    struct net_op *ops[n];
    char nerr[NET_ERR_LEN];
    for (int k = 0; k < n; k++) ops[k] = NULL;
    for (int k = 0; k < n; k++)
        if (from(c, k, who) && net_send(c->node, coord_sid(c, k), ctl_key(type, (uint64_t)step), payload, len, c->o.peer_timeout_ms, &ops[k],
                     nerr) != NET_OK) {
            for (int j = 0; j < k; j++) { net_op_free(ops[j]); ops[j] = NULL; }
            return fail_run(c, k, nerr, err);
        }
    c->limit_s = c->o.peer_timeout_ms / 1e3;
    return coord_wait_all(c, ops, NULL, coord_now() + c->limit_s, "send", err);
}

static int send_all(coordinator *c, uint16_t type, long step, const uint8_t *payload, uint64_t len, char *err)
{
    return send_to(c, FROM_ALL, type, step, payload, len, err);
}

static uint8_t *slot(coordinator *c, int k) { return c->normbuf + (size_t)k * c->normcap; }

/* JOIN from every process: its stage (p % P; the replica is the
 * authenticated hello's), pid and unit count. */
static int join_all(coordinator *c, char *err)
{
    int n = c->n_proc, P = c->t->n_stages;
    uint64_t lens[n];
    c->joining = 1;
    int rc = recv_all(c, MSG_JOIN, 0, FROM_ALL, lens, c->o.join_timeout_ms / 1e3, "JOIN", err);
    c->joining = 0;
    if (rc) return 1;
    for (int k = 0; k < n; k++) {
        const uint8_t *p = slot(c, k);
        int st = k % P;
        if (k >= c->n_grid) { /* a parameter server: its index, pid and piece count */
            const int *idx;
            int j = k - c->n_grid, np = ps_server_pieces(c->psa, j, &idx);
            if (lens[k] != 12 || get_u32le(p) != (uint32_t)j || get_u32le(p + 8) != (uint32_t)np)
                return coord_bad_message(c, k, err, "its JOIN (%llu bytes) does not say server %d with %d pieces",
                                         (unsigned long long)lens[k], j, np);
            c->pids[k] = get_u32le(p + 4);
            continue;
        }
        if (lens[k] != 12) return coord_bad_message(c, k, err, "its JOIN is %llu bytes, expected 12", (unsigned long long)lens[k]);
        if (get_u32le(p) != (uint32_t)st || get_u32le(p + 8) != (uint32_t)c->t->stages[st].n_units)
            return coord_bad_message(c, k, err, "its JOIN says stage %u with %u units, expected stage %d with %d",
                               get_u32le(p), get_u32le(p + 8), st, c->t->stages[st].n_units);
        c->pids[k] = get_u32le(p + 4);
    }
    uint8_t start[24];
    put_u64le(start, (uint64_t)c->o.first_step);
    put_u64le(start + 8, (uint64_t)c->t->train.steps);
    uint64_t flags = (c->o.trace ? PROTO_START_TRACE : 0) | (c->o.http ? PROTO_START_LIVE : 0);
    put_u64le(start + 16, flags);
    return send_all(c, MSG_START, 0, start, flags ? 24 : 16, err);
}

/* ---- steps ---- */

static int commit_checkpoint(coordinator *c, long steps_taken, char *err)
{
    if (run_log_checkpoint(c->log, steps_taken, err)) {
        tell_stages(c, err);
        return 1;
    }
    return 0;
}

/* The global norm of step s from every process's NORM, combined in unit
 * order (with R > 1 from the partials: coord_combine_norm_partials). */
/* Sync "ps": the norm from every server's partials (ps_norm_combine, #8's
 * combination), replied to the servers, which then apply the step. */
static int gather_ps_norm(coordinator *c, long s, double *norm, char *err)
{
    int n = c->n_proc, got = 0;
    uint64_t lens[n];
    char perr[ERR_LEN];
    if (recv_all(c, MSG_PS_NORM, s, FROM_SERVERS, lens, c->o.step_timeout_ms / 1e3, "norm partials", err)) return 1;
    for (int k = c->n_grid; k < n; k++) {
        int j = k - c->n_grid, cap = 0;
        for (int b = 0; b < c->psa->n_blocks; b++) cap += c->psa->blocks[b].server == j;
        int m = ps_partials_decode(slot(c, k), lens[k], c->pparts + got, cap, perr);
        if (m < 0) return coord_bad_message(c, k, err, "%s", perr);
        got += m;
    }
    *norm = ps_norm_combine(c->t, c->psa, c->pparts, (size_t)got, perr);
    if (isnan(*norm)) return coord_bad_message(c, c->n_grid, err, "the servers' norm partials: %s", perr);
    uint8_t rep[8];
    put_f64le(rep, *norm);
    return send_to(c, FROM_SERVERS, MSG_NORM_REPLY, s, rep, sizeof rep, err);
}

/* run --http: every NORM of step s may end in the live trailer (stage/proto.h
 * PROTO_START_LIVE): handed to the live view, cut off so that lens[k] is the
 * norms' length. */
static int live_split(coordinator *c, long s, uint64_t *lens, char *err)
{
    char perr[ERR_LEN];
    double now = coord_now();
    for (int k = 0; k < c->n_grid; k++) {
        if (lens[k] < 4) continue; /* the norms' own check names it */
        uint64_t n = get_u32le(slot(c, k)), nl = 4 + 8 * n;
        if (n > c->normcap / 8 || nl >= lens[k]) continue;
        if (coord_http_live(c->o.http, k, s, slot(c, k) + nl, lens[k] - nl, now, perr))
            return coord_bad_message(c, k, err, "%s", perr);
        lens[k] = nl;
    }
    return 0;
}

static int gather_norm(coordinator *c, long s, double *norm, char *err)
{
    int n = c->n_proc, P = c->t->n_stages;
    uint64_t lens[n];
    char perr[ERR_LEN];
    if (c->psa) return gather_ps_norm(c, s, norm, err);
    if (recv_all(c, MSG_NORM, s, FROM_ALL, lens, c->o.step_timeout_ms / 1e3, "NORM", err)) return 1;
    if (c->o.http && live_split(c, s, lens, err)) return 1;
    for (int u = 0; u < c->n_units; u++) c->sq[u] = NAN;
    if (c->t->n_replicas == 1) {
        for (int k = 0; k < n; k++)
            if (coord_place_norms(c->t, k, slot(c, k), lens[k], c->sq, perr)) return coord_bad_message(c, k, err, "%s", perr);
    } else {
        for (int k = 0; k < n; k++)
            if (coord_place_norm_partials(c->t, k % P, k / P, slot(c, k), lens[k], c->parts, perr))
                return coord_bad_message(c, k, err, "%s", perr);
        coord_combine_norm_partials(c->t, c->parts, c->sq);
    }
    *norm = optim_global_norm(c->sq, c->n_units);
    uint8_t rep[8];
    put_f64le(rep, *norm);
    return send_all(c, MSG_NORM_REPLY, s, rep, sizeof rep, err);
}

/* One step as the coordinator sees it; fills row (all but timings). */
static int coord_step(coordinator *c, long s, run_metrics_row *row, char *err)
{
    uint64_t lens[c->n_proc];
    double tmo = c->o.step_timeout_ms / 1e3;
    int P = c->t->n_stages;
    row->step = s + 1;
    row->val_loss = NAN;
    row->lr = run_lr(c->t, s);
    if (gather_norm(c, s, &row->grad_norm, err)) return 1;
    if (recv_all(c, MSG_LOSS, s, FROM_HEADS, lens, tmo, "LOSS", err)) return 1;
    /* each replica's share of the global batch's mean: summed in replica order */
    for (int r = 0; r < c->t->n_replicas; r++) {
        int p = r * P + c->head;
        if (lens[p] != 8) return coord_bad_message(c, p, err, "LOSS is %llu bytes, expected 8", (unsigned long long)lens[p]);
        if (r == 0) row->loss = get_f64le(slot(c, p));
        else row->loss += get_f64le(slot(c, p));
    }
    c->t_mark = c->t_loss = coord_now();
    if (run_is_eval_step(c->t, s)) {
        if (recv_all(c, MSG_VAL, s, FROM_HEAD0, lens, tmo, "VAL", err)) return 1;
        if (lens[c->head] >= 8) row->val_loss = get_f64le(slot(c, c->head));
        c->t_mark = coord_now();
    }
    return 0;
}

/* Records a finished step (run_log_step: progress line, metrics.jsonl,
 * loss.svg) and commits its checkpoint once every stage has written its shard. */
static int log_step(coordinator *c, long s, const run_metrics_row *row, double dt, char *err)
{
    if (run_log_step(c->log, s, row->loss, row->lr, row->grad_norm, row->val_loss, dt, err)) {
        tell_stages(c, err);
        return 1;
    }
    coord_http_step(c->o.http, s, row->loss, row->lr, row->grad_norm, row->val_loss, dt);
    if (!run_is_ckpt_step(c->t, s)) return 0;
    if (recv_all(c, MSG_CKPT_DONE, s, FROM_REPLICA0, NULL, c->o.step_timeout_ms / 1e3, "CKPT_DONE", err)) return 1;
    c->t_mark = coord_now();
    return commit_checkpoint(c, s + 1, err);
}

/* Step times run from the end of the previous step's evaluation and
 * checkpoint (as the stages see it) to the step's LOSS, as in train.c. */
static int run_steps(coordinator *c, char *err)
{
    const topo *t = c->t;
    c->t_mark = coord_now();
    for (long s = c->o.first_step; s < t->train.steps; s++) {
        c->step = s;
        run_metrics_row row = { 0 };
        double start = c->t_mark;
        int rc = coord_step(c, s, &row, err);
        if (rc) return rc;
        if ((rc = log_step(c, s, &row, c->t_loss - start, err))) return rc;
    }
    return 0;
}

int coord_fail(coordinator *c, int k, const char *reason, char *err) { return fail_run(c, k, reason, err); }

/* ---- the end ---- */

static int count_gone(const coordinator *c, int from, int to)
{
    int n = 0;
    for (int k = from; k < to; k++) n += c->gone[k];
    return n;
}

/* Asynchronous parameter servers (elasticity): each worker process's STATS,
 * one process at a time, within the step timeout. A worker process that
 * trained its steps and then died (or its connection did) before sending
 * them is over, as a dropped worker is: marked gone, named in a warning with
 * the reason, its summary.json row left empty, and the run goes on. A server
 * that dies, a live process that sends nothing in time, or an interrupt
 * still fails the run (the message names the process). Lengths into lens. */
static int worker_stats(coordinator *c, uint64_t *lens, char *err)
{
    long last = c->t->train.steps - 1;
    char nerr[NET_ERR_LEN];
    for (int k = 0; k < c->n_grid; k++) {
        double deadline = coord_now() + c->o.step_timeout_ms / 1e3;
        while (!c->gone[k]) {
            struct net_op *ops[c->n_proc];
            memset(ops, 0, sizeof ops);
            int grid_gone = count_gone(c, 0, c->n_grid), srv_gone = count_gone(c, c->n_grid, c->n_proc);
            if (net_recv_post(c->node, coord_sid(c, k), ctl_key(MSG_STATS, (uint64_t)last), slot(c, k), c->normcap,
                              &ops[k], nerr) != NET_OK)
                return fail_run(c, k, nerr, err);
            c->soft = 1; /* a dead process is marked gone instead of failing the run */
            c->limit_s = c->o.step_timeout_ms / 1e3;
            int rc = coord_wait_all(c, ops, lens, deadline, "STATS", err);
            c->soft = 0;
            if (!rc) break;
            int sg = count_gone(c, c->n_grid, c->n_proc);
            if (sg == srv_gone && count_gone(c, 0, c->n_grid) > grid_gone) { /* k or another worker process */
                run_log_note(c->log, "pipetrain: warning: a worker process was lost after its steps, before sending its "
                             "statistics: %s; its row in summary.json is empty", err);
                continue;
            }
            c->failed_stage = k;
            for (int j = c->n_grid; j < c->n_proc && sg > srv_gone; j++)
                if (c->gone[j]) { c->failed_stage = j; break; }
            tell_stages(c, err);
            return 1;
        }
    }
    return 0;
}

static int gather_stats(coordinator *c, char *err)
{
    int n = c->n_proc;
    uint64_t lens[n];
    long last = c->t->train.steps - 1;
    c->step = last;
    if (c->o.trace) coord_gather_trace(c); /* never fails the run: it is finished and checkpointed */
    if (c->psa && c->t->ps.staleness != 0 ? worker_stats(c, lens, err)
                                          : recv_all(c, MSG_STATS, last, FROM_GRID, lens, c->o.step_timeout_ms / 1e3,
                                                     "STATS", err))
        return 1;
    if (c->psa && recv_all(c, MSG_PS_STATS, last, FROM_SERVERS, lens, c->o.step_timeout_ms / 1e3, "STATS", err))
        return 1;
    for (int k = c->n_grid; k < n; k++) {
        if (lens[k] != PS_STATS_BYTES)
            return coord_bad_message(c, k, err, "STATS is %llu bytes, expected %d", (unsigned long long)lens[k],
                                     PS_STATS_BYTES);
        ps_stats_decode(&c->sstats[k - c->n_grid], slot(c, k));
        run_server_stats rs = { c->sstats[k - c->n_grid].pushes, c->sstats[k - c->n_grid].refused,
                                c->sstats[k - c->n_grid].bytes_received, c->sstats[k - c->n_grid].bytes_sent,
                                c->sstats[k - c->n_grid].steps, c->sstats[k - c->n_grid].wall_s, { 0 } };
        memcpy(rs.staleness, c->sstats[k - c->n_grid].staleness, sizeof rs.staleness);
        run_log_server(c->log, k - c->n_grid, &rs, (long)c->pids[k]);
    }
    for (int k = 0; k < c->n_grid; k++) {
        if (c->gone[k]) { /* died while the trace was gathered (or dropped, or lost after its steps): no statistics */
            run_log_stage(c->log, k, &(proto_stats){ 0 }, (long)c->pids[k]);
            continue;
        }
        if (lens[k] != PROTO_STATS_BYTES)
            return coord_bad_message(c, k, err, "STATS is %llu bytes, expected %d", (unsigned long long)lens[k], PROTO_STATS_BYTES);
        proto_stats_decode(&c->stats[k], slot(c, k));
        run_log_stage(c->log, k, &c->stats[k], (long)c->pids[k]);
    }
    c->quiet = 1;
    /* DONE: the results are in. A stage exits as soon as it has its DONE,
     * possibly before the others' are written, so nothing here is a failure. */
    struct net_op *ops[n];
    char nerr[NET_ERR_LEN];
    for (int k = 0; k < n; k++)
        if (c->gone[k] ||
            net_send(c->node, coord_sid(c, k), ctl_key(MSG_DONE, (uint64_t)last), NULL, 0, 1000, &ops[k], nerr) != NET_OK)
            ops[k] = NULL;
    for (int k = 0; k < n; k++) {
        if (ops[k]) net_wait(ops[k], c->o.peer_timeout_ms, nerr);
        net_op_free(ops[k]);
    }
    return 0;
}

int coord_run(coordinator *c, char *err)
{
    const topo *t = c->t;
    char merr[ERR_LEN];
    c->step = c->o.first_step;
    run_log_opts lo = { c->o.out_dir, c->o.progress, c->o.first_step, c->o.append_metrics, c->o.restarts,
                         c->o.writer };
    if (!(c->log = run_log_open(t, &lo, err))) return 1;
    if (c->psa)
        run_log_note(c->log, "pipetrain: coordinator on %s port %d, waiting for %d processes (%d stages x %d "
                     "workers and %d parameter servers, %s, %s schedule, %d micro-batches per worker), %d "
                     "steps -> %s", t->coordinator.host, coord_port(c), c->n_proc, t->n_stages, t->n_replicas,
                     t->n_servers, t->ps.staleness == 0 ? "synchronous" : t->ps.staleness < 0 ? "asynchronous"
                     : "bounded staleness", t->schedule.kind ? t->schedule.kind : t->schedule.file_given,
                     t->train.micro_batches, t->train.steps, c->o.out_dir);
    else if (t->n_replicas > 1)
        run_log_note(c->log, "pipetrain: coordinator on %s port %d, waiting for %d processes (%d stages x %d "
                     "replicas, %s schedule, %d micro-batches per replica), %d steps -> %s", t->coordinator.host,
                     coord_port(c), c->n_proc, t->n_stages, t->n_replicas,
                     t->schedule.kind ? t->schedule.kind : t->schedule.file_given, t->train.micro_batches,
                     t->train.steps, c->o.out_dir);
    else
        run_log_note(c->log, "pipetrain: coordinator on %s port %d, waiting for %d stages (%s schedule, %d "
                     "micro-batches), %d steps -> %s", t->coordinator.host, coord_port(c), t->n_stages,
                     t->schedule.kind ? t->schedule.kind : t->schedule.file_given, t->train.micro_batches,
                     t->train.steps, c->o.out_dir);
    coord_http_attempt(c->o.http, c->o.run_id, c->o.first_step, c->o.restarts);
    int rc = join_all(c, err);
    if (!rc) rc = t->sync_id == TOPO_SYNC_PS && t->ps.staleness != 0 ? coord_async_steps(c, err) : run_steps(c, err);
    if (!rc) rc = gather_stats(c, err);
    run_log_timing(c->log, c->timing);
    if (c->o.http) {
        char st[ERR_LEN + 16];
        snprintf(st, sizeof st, rc ? "failed: %.*s" : "done", ERR_LEN - 1, err);
        coord_http_state(c->o.http, st);
    }
    if (rc) {
        if (run_log_finish(c->log, err, merr)) fprintf(stderr, "pipetrain: %s\n", merr); /* the run's own failure is the news */
        return rc;
    }
    return run_log_finish(c->log, NULL, err) ? 1 : 0;
}
