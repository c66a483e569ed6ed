/* topo_check.c — the rules of a topology that span several fields: derived
 * defaults, the model configuration, batch and schedule constraints, addresses,
 * and the layer notation with the partition of units into stages and chunks.
 * Types, ranges and unknown keys are checked earlier by the schema walk in
 * topo.c; nothing here touches the network or the file system. */
#include "topo/topo.h"
#include "model/util.h"
#include "topo/topo_schema.h"

#include <arpa/inet.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>

/* ---------- layer notation ---------- */

static void unit_name(int n_layers, int u, char *buf, size_t n)
{
    if (u == 0) snprintf(buf, n, "the embedding");
    else if (u == n_layers + 1) snprintf(buf, n, "the head");
    else snprintf(buf, n, "block %d", u - 1);
}

/* Parses a decimal block index of at most 9 digits; -1 if s..e is not one. */
static int parse_index(const char *s, const char *e)
{
    if (s == e || e - s > 9) return -1;
    int v = 0;
    for (; s < e; s++) {
        if (*s < '0' || *s > '9') return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

/* Parses one item (already trimmed) into the unit range [*lo, *hi]. */
static int parse_item(const char *s, const char *e, int n_layers, int *lo, int *hi, char *err)
{
    size_t len = (size_t)(e - s);
    if (len == 0) return seterr(err, "empty item (stray comma?)");
    if (len == 5 && !memcmp(s, "embed", 5)) { *lo = *hi = 0; return 0; }
    if (len == 4 && !memcmp(s, "head", 4)) { *lo = *hi = n_layers + 1; return 0; }
    const char *dash = memchr(s, '-', len);
    int a = parse_index(s, dash ? dash : e), b = dash ? parse_index(dash + 1, e) : a;
    if (a < 0 || b < 0)
        return seterr(err, "\"%.*s\" is not embed, head, a block index N or a range N-M",
                      (int)(len > 40 ? 40 : len), s);
    if (b < a) return seterr(err, "range \"%.*s\" runs backwards", (int)len, s);
    if (b >= n_layers)
        return seterr(err, "block %d does not exist (model.n_layers is %d: blocks 0-%d)",
                      b, n_layers, n_layers - 1);
    *lo = a + 1;
    *hi = b + 1;
    return 0;
}

/* topo_parse_layers; with brk (n_layers + 2 bytes) not NULL, brk[i] = 1 when
 * unit i of the result follows a '|' (a chunk boundary written out). */
static int parse_layers(const char *spec, int n_layers, int **units, int *n, uint8_t *brk, char *err)
{
    int n_units = n_layers + 2, count = 0, after_bar = 0;
    int *out = xmalloc(sizeof(int) * (size_t)n_units);
    const char *p = spec;
    *units = NULL;
    *n = 0;
    if (brk) memset(brk, 0, (size_t)n_units);
    for (;;) {
        const char *comma = strpbrk(p, ",|"), *e = comma ? comma : p + strlen(p);
        const char *s = p;
        while (s < e && (*s == ' ' || *s == '\t')) s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
        int lo = 0, hi = -1;
        if (parse_item(s, e, n_layers, &lo, &hi, err)) goto fail;
        for (int u = lo; u <= hi; u++) {
            if (count && u <= out[count - 1]) {
                char a[32], b[32];
                unit_name(n_layers, u, a, sizeof a);
                unit_name(n_layers, out[count - 1], b, sizeof b);
                seterr(err, u == out[count - 1] ? "%s is listed twice" :
                       "items must be in increasing order: %s comes after %s", a, b);
                goto fail;
            }
            if (brk && u == lo) brk[count] = (uint8_t)after_bar;
            out[count++] = u;
        }
        if (!comma) break;
        after_bar = *comma == '|';
        p = comma + 1;
    }
    *units = out;
    *n = count;
    return 0;
fail:
    free(out);
    return -1;
}

int topo_parse_layers(const char *spec, int n_layers, int **units, int *n, char *err)
{
    return parse_layers(spec, n_layers, units, n, NULL, err);
}

/* ---------- partition ---------- */

/* Splits a stage's units into maximal runs of consecutive units, also cut where
 * the notation says '|' (brk, from parse_layers). */
static void make_chunks(topo_stage *st, const uint8_t *brk)
{
    st->chunks = xcalloc((size_t)st->n_units, sizeof(topo_chunk));
    st->n_chunks = 0;
    for (int i = 0; i < st->n_units; i++) {
        if (i == 0 || st->units[i] != st->units[i - 1] + 1 || brk[i])
            st->chunks[st->n_chunks++] = (topo_chunk){ st->units[i], 0, -1 };
        st->chunks[st->n_chunks - 1].n_units++;
    }
}

/* Checks that the chunks, taken in the virtual-stage order of placement `place`
 * (chunk c of stage s is sched_place_vstage(place, P, s, c)), cover units
 * 0..n_units-1 consecutively, and numbers the chunks when they do. */
static int check_order(topo *t, int v, int place, char *err)
{
    int P = t->n_stages, next = 0, nl = t->model.n_layers;
    for (int vs = 0; vs < v * P; vs++) {
        int c, s = sched_place_stage(place, P, vs, &c);
        topo_chunk *ch = &t->stages[s].chunks[c];
        if (ch->first_unit != next) {
            char want[32], got[32];
            unit_name(nl, next, want, sizeof want);
            unit_name(nl, ch->first_unit, got, sizeof got);
            if (v == 1)
                return seterr(err, "%s: stages.%d.layers: stages must hold consecutive layers in "
                              "order: expected stage %d to start with %s, found %s", t->path, s, s, want, got);
            if (place == SCHED_PLACE_V)
                return seterr(err, "%s: stages.%d.layers: in a V placement chunk %d of stage %d is virtual "
                              "stage %d (stage s holds s and %d-s) and must start with %s, found %s", t->path, s,
                              c, s, vs, 2 * P - 1, want, got);
            return seterr(err, "%s: stages.%d.layers: interleaved chunk %d of stage %d is virtual "
                          "stage %d and must start with %s, found %s", t->path, s, c, s, vs, want, got);
        }
        next += ch->n_units;
    }
    for (int vs = 0; vs < v * P; vs++) {
        int c, s = sched_place_stage(place, P, vs, &c);
        t->stages[s].chunks[c].virtual_stage = vs;
    }
    return 0;
}

/* The placement of the layout: "zb-v" needs V; other kinds the loop; a schedule
 * file either (the loop is tried first; with P = 1 they are the same). Numbers
 * the chunks, or says why the layers do not fit. */
static int check_placement(topo *t, int v, char *err)
{
    const topo_schedule *sc = &t->schedule;
    int want = sc->kind_id < TOPO_SCHED_FILE ? sched_kind_table[sc->kind_id].placement : -1;
    t->placement = SCHED_PLACE_LOOP;
    if (want == SCHED_PLACE_V) {
        t->placement = SCHED_PLACE_V;
        return check_order(t, v, SCHED_PLACE_V, err);
    }
    if (want == SCHED_PLACE_LOOP || v != 2 || t->n_stages == 1) return check_order(t, v, SCHED_PLACE_LOOP, err);
    char loop_err[ERR_LEN];
    if (!check_order(t, v, SCHED_PLACE_LOOP, loop_err)) return 0;
    if (!check_order(t, v, SCHED_PLACE_V, NULL)) {
        t->placement = SCHED_PLACE_V;
        return 0;
    }
    return seterr(err, "%s", loop_err);
}

/* Decides how many chunks each stage must hold (v) given the schedule. */
static int chunks_per_stage(topo *t, char *err)
{
    const topo_schedule *sc = &t->schedule;
    int v = t->stages[0].n_chunks;
    for (int s = 0; s < t->n_stages; s++) {
        const topo_stage *st = &t->stages[s];
        if (sc->kind_id != TOPO_SCHED_INTERLEAVED && sc->kind_id != TOPO_SCHED_FILE &&
            sched_kind_table[sc->kind_id].max_chunks == 1 && st->n_chunks != 1)
            return seterr(err, "%s: stages.%d.layers: \"%s\" is not one contiguous range "
                          "(schedule \"%s\" needs one per stage; \"interleaved\" and \"zb-v\" allow several)",
                          t->path, s, st->layers, sc->kind);
        if (st->n_chunks != v)
            return seterr(err, "%s: stages.%d.layers: \"%s\" has %d chunk(s) but stage 0 has %d "
                          "(every stage must hold the same number of chunks%s)",
                          t->path, s, st->layers, st->n_chunks, v,
                          s == t->n_stages - 1 && st->n_chunks < v
                              ? "; in a V placement the last stage's chunks touch: cut them with '|', e.g. \"1|2\"" : "");
    }
    if (sc->kind_id == TOPO_SCHED_INTERLEAVED && v < 2)
        return seterr(err, "%s: stages.0.layers: schedule \"interleaved\" needs at least 2 "
                      "non-adjacent chunks per stage, found %d", t->path, v);
    if (sc->kind_id == SCHED_KIND_ZBV && v != 2)
        return seterr(err, "%s: stages.0.layers: schedule \"zb-v\" needs 2 chunks per stage (stage s holds "
                      "virtual stages s and 2P-1-s of the model cut into 2P pieces, e.g. \"embed,0,3,head\" "
                      "and \"1|2\" for 2 stages of 4 blocks), found %d", t->path, v);
    if (sc->chunks && sc->chunks != v)
        return seterr(err, "%s: schedule.chunks: expected %d (the chunks each stage holds in "
                      "stages.*.layers), found %d", t->path, v, sc->chunks);
    return v;
}

static int check_partition(topo *t, char *err)
{
    int nu = topo_n_units(t), nl = t->model.n_layers, rc = -1;
    if (t->n_stages > nu)
        return seterr(err, "%s: stages: %d stages but the model has only %d units "
                      "(embedding, %d blocks, head)", t->path, t->n_stages, nu, nl);
    int *owner = xmalloc(sizeof(int) * (size_t)nu);
    uint8_t *brk = xmalloc((size_t)nu);
    for (int u = 0; u < nu; u++) owner[u] = -1;
    for (int s = 0; s < t->n_stages; s++) {
        topo_stage *st = &t->stages[s];
        char msg[ERR_LEN];
        if (parse_layers(st->layers, nl, &st->units, &st->n_units, brk, msg)) {
            seterr(err, "%s: stages.%d.layers: %s", t->path, s, msg);
            goto out;
        }
        for (int i = 0; i < st->n_units; i++) {
            int u = st->units[i];
            if (owner[u] >= 0) {
                char name[32];
                unit_name(nl, u, name, sizeof name);
                seterr(err, "%s: stages.%d.layers: %s is held by stage %d and stage %d",
                       t->path, s, name, owner[u], s);
                goto out;
            }
            owner[u] = s;
        }
        make_chunks(st, brk);
    }
    for (int u = 0; u < nu; u++)
        if (owner[u] < 0) {
            char name[32];
            unit_name(nl, u, name, sizeof name);
            seterr(err, "%s: stages: %s is held by no stage (every unit must be held exactly once)",
                   t->path, name);
            goto out;
        }
    int v = chunks_per_stage(t, err);
    if (v < 0 || check_placement(t, v, err)) goto out;
    t->chunks_per_stage = v;
    rc = 0;
out:
    free(owner);
    free(brk);
    return rc;
}

/* ---------- replicas ---------- */

/* Each stage is either one process (host, port, threads) or a list of replicas;
 * the single form becomes one replica, and host/port/threads become replica 0's
 * in the replicas form. Every stage must have the same count R. */
static int stage_form(const topo *t, int s, topo_stage *st, char *err)
{
    if (st->n_replicas > 0) {
        const char *both = st->host ? "host" : st->port ? "port" : st->threads ? "threads" : NULL;
        if (both)
            return seterr(err, "%s: stages.%d.%s: give either host, port and threads (one process) or "
                          "replicas (a list of them), not both", t->path, s, both);
        st->replicated = 1;
        st->host = xstrdup(st->replicas[0].host);
        st->port = st->replicas[0].port;
        st->threads = st->replicas[0].threads;
        return 0;
    }
    const char *missing = !st->host ? "host" : !st->port ? "port" : NULL;
    if (missing)
        return seterr(err, "%s: stages.%d.%s: missing (required: %s, or list the stage's processes "
                      "in stages.%d.replicas)", t->path, s, missing,
                      st->host ? "an integer in 1..65535" : "a non-empty string", s);
    if (!st->threads) st->threads = 1;
    st->replicated = 0;
    st->n_replicas = 1;
    st->replicas = xcalloc(1, sizeof(topo_replica));
    st->replicas[0] = (topo_replica){ xstrdup(st->host), st->port, st->threads };
    return 0;
}

#define TOPO_MAX_PROCESSES 65536 /* ranks and --stage are parsed up to 65535 */

static int check_replicas(topo *t, char *err)
{
    for (int s = 0; s < t->n_stages; s++)
        if (stage_form(t, s, &t->stages[s], err)) return -1;
    int R = t->stages[0].n_replicas;
    /* name what the file wrote: a stage in the one-process form has no replicas array */
    for (int s = 1; s < t->n_stages; s++)
        if (t->stages[s].n_replicas != R)
            return seterr(err, "%s: stages.%d%s: expected %d replica(s) like stages.0%s (every stage "
                          "has the same count, the data-parallel degree), found %d%s", t->path, s,
                          t->stages[s].replicated ? ".replicas" : "", R,
                          t->stages[0].replicated ? "" : " (one process: host, port)", t->stages[s].n_replicas,
                          t->stages[s].replicated ? "" : " (one process: host, port; list its processes in "
                          "\"replicas\")");
    if ((long)t->n_stages * R > TOPO_MAX_PROCESSES)
        return seterr(err, "%s: stages.0.replicas: %d stages x %d replicas = %ld processes, more than the "
                      "%d ranks a launcher can number here", t->path, t->n_stages, R, (long)t->n_stages * R,
                      TOPO_MAX_PROCESSES);
    t->n_replicas = R;
    return 0;
}

/* The JSON path of (stage s, replica r)'s field in the form the file used. */
static void proc_path(const topo *t, int s, int r, const char *fieldname, char *buf, size_t n)
{
    if (t->stages[s].replicated) snprintf(buf, n, "stages.%d.replicas.%d%s%s", s, r, fieldname ? "." : "",
                                          fieldname ? fieldname : "");
    else snprintf(buf, n, "stages.%d%s%s", s, fieldname ? "." : "", fieldname ? fieldname : "");
}

/* ---------- addresses ---------- */

typedef struct { int family; unsigned char a[16]; } addr;

static int parse_addr(const char *s, addr *out)
{
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, s, out->a) == 1) { out->family = AF_INET; return 0; }
    if (inet_pton(AF_INET6, s, out->a) == 1) { out->family = AF_INET6; return 0; }
    return -1;
}

static int is_loopback(const char *host)
{
    addr a;
    if (parse_addr(host, &a)) return 0;
    if (a.family == AF_INET) return a.a[0] == 127;
    static const unsigned char v6lo[16] = { [15] = 1 };
    static const unsigned char mapped[12] = { [10] = 0xff, [11] = 0xff };
    return !memcmp(a.a, v6lo, 16) || (!memcmp(a.a, mapped, 12) && a.a[12] == 127);
}

/* 0.0.0.0, ::, multicast and broadcast cannot be a peer's address. */
static int is_unicast(const addr *a)
{
    static const unsigned char zero[16];
    if (a->family == AF_INET)
        return memcmp(a->a, zero, 4) && a->a[0] < 224;
    return memcmp(a->a, zero, 16) && a->a[0] != 0xff;
}

static int check_host(const char *file, const char *path, const char *host, char *err)
{
    addr a;
    if (parse_addr(host, &a))
        return seterr(err, "%s: %s: expected a numeric IPv4 or IPv6 address (host names are "
                      "not looked up), found \"%.60s\"", file, path, host);
    if (!is_unicast(&a))
        return seterr(err, "%s: %s: expected a unicast address that peers can connect to, "
                      "found \"%s\"", file, path, host);
    return 0;
}

/* A loopback address is only reachable from its own machine: mixing it with
 * addresses of other machines would leave some peer unable to connect. */
static int check_reachable(const topo *t, char *err)
{
    int remote = -2, remote_r = 0; /* a non-loopback process, -1 = the coordinator */
    if (!is_loopback(t->coordinator.host)) remote = -1;
    for (int s = 0; s < t->n_stages && remote == -2; s++)
        for (int r = 0; r < t->stages[s].n_replicas && remote == -2; r++)
            if (!is_loopback(t->stages[s].replicas[r].host)) { remote = s; remote_r = r; }
    if (remote == -2) return 0;
    char where[160], path[64];
    if (remote < 0) snprintf(where, sizeof where, "coordinator.host (%s)", t->coordinator.host);
    else {
        proc_path(t, remote, remote_r, "host", path, sizeof path);
        snprintf(where, sizeof where, "%s (%.40s)", path, t->stages[remote].replicas[remote_r].host);
    }
    if (is_loopback(t->coordinator.host))
        return seterr(err, "%s: coordinator.host: %s is a loopback address but %s is not: "
                      "peers on other machines could not reach it", t->path, t->coordinator.host, where);
    for (int s = 0; s < t->n_stages; s++)
        for (int r = 0; r < t->stages[s].n_replicas; r++)
            if (is_loopback(t->stages[s].replicas[r].host)) {
                proc_path(t, s, r, "host", path, sizeof path);
                return seterr(err, "%s: %s: %s is a loopback address but %s is not: peers on other "
                              "machines could not reach it", t->path, path, t->stages[s].replicas[r].host, where);
            }
    return 0;
}

/* An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 endpoint a.b.c.d:
 * both forms bind the same socket, so they compare as one. */
static void unmap_v4(addr *a)
{
    static const unsigned char mapped[12] = { [10] = 0xff, [11] = 0xff };
    if (a->family != AF_INET6 || memcmp(a->a, mapped, 12)) return;
    memmove(a->a, a->a + 12, 4);
    memset(a->a + 4, 0, 12);
    a->family = AF_INET;
}

static int same_endpoint(const char *h1, int p1, const char *h2, int p2)
{
    addr a, b;
    if (p1 != p2 || parse_addr(h1, &a) || parse_addr(h2, &b)) return 0;
    unmap_v4(&a);
    unmap_v4(&b);
    return a.family == b.family && !memcmp(a.a, b.a, 16);
}

/* host:port of (s, r) against every process before it in (stage, replica) order. */
static int check_distinct(const topo *t, int s, int r, char *err)
{
    const topo_replica *p = &t->stages[s].replicas[r];
    char path[64], other[64];
    proc_path(t, s, r, "port", path, sizeof path);
    if (same_endpoint(p->host, p->port, t->coordinator.host, t->coordinator.port))
        return seterr(err, "%s: %s: %s:%d is also the coordinator's address", t->path, path, p->host, p->port);
    for (int s2 = 0; s2 <= s; s2++)
        for (int r2 = 0; r2 < (s2 < s ? t->stages[s2].n_replicas : r); r2++) {
            const topo_replica *q = &t->stages[s2].replicas[r2];
            if (!same_endpoint(p->host, p->port, q->host, q->port)) continue;
            proc_path(t, s2, r2, NULL, other, sizeof other);
            return seterr(err, "%s: %s: %s:%d is also used by %s (host:port must be distinct)",
                          t->path, path, p->host, p->port, other);
        }
    return 0;
}

static int check_addresses(const topo *t, char *err)
{
    if (check_host(t->path, "coordinator.host", t->coordinator.host, err)) return -1;
    for (int s = 0; s < t->n_stages; s++)
        for (int r = 0; r < t->stages[s].n_replicas; r++) {
            char path[64];
            proc_path(t, s, r, "host", path, sizeof path);
            if (check_host(t->path, path, t->stages[s].replicas[r].host, err)) return -1;
            if (check_distinct(t, s, r, err)) return -1;
        }
    return check_reachable(t, err);
}

/* ---------- the whole document ---------- */

static int data_kind(const topo_data *d)
{
    if (!strcmp(d->format, "bin")) return TOPO_DATA_BIN;
    if (!strcmp(d->format, "text") || !d->path) return TOPO_DATA_TEXT;
    size_t n = strlen(d->path);
    return n >= 4 && !strcmp(d->path + n - 4, ".bin") ? TOPO_DATA_BIN : TOPO_DATA_TEXT;
}

static int check_train(topo *t, char *err)
{
    topo_train *tr = &t->train;
    if (isnan(tr->min_lr)) tr->min_lr = tr->lr / 10;
    if (tr->min_lr > tr->lr)
        return seterr(err, "%s: train.min_lr: expected a number <= train.lr (%g), found %g",
                      t->path, tr->lr, tr->min_lr);
    if (t->n_replicas == 1 && tr->batch_size % tr->micro_batches)
        return seterr(err, "%s: train.micro_batches: expected a divisor of train.batch_size (%d), found %d",
                      t->path, tr->batch_size, tr->micro_batches);
    /* replica r takes sequences [r*B/R, (r+1)*B/R) and splits them into M micro-batches */
    if (t->n_replicas > 1 && tr->batch_size % ((long)t->n_replicas * tr->micro_batches))
        return seterr(err, "%s: train.batch_size: expected a multiple of %d replicas x train.micro_batches %d "
                      "= %ld (each replica takes batch_size / replicas sequences of the step's batch and splits "
                      "them into micro_batches), found %d", t->path, t->n_replicas, tr->micro_batches,
                      (long)t->n_replicas * tr->micro_batches, tr->batch_size);
    if (tr->zero && t->n_replicas < 2)
        return seterr(err, "%s: train.zero: 1 shards the AdamW state across the replicas of each stage, but the "
                      "stages have 1 replica (give them \"replicas\")", t->path);
    if (tr->eval_every > 0 && t->data.val_fraction == 0)
        return seterr(err, "%s: data.val_fraction: expected > 0 because train.eval_every is %d, found 0",
                      t->path, tr->eval_every);
    /* Keep per-micro-batch activation arithmetic far from overflow. */
    double mb = (double)tr->batch_size / tr->micro_batches, T = t->model.seq_len;
    double widest = fmax(fmax(t->model.dim, t->model.ffn_dim), t->model.vocab_size);
    if ((double)tr->batch_size * T > 2147483647.0 || mb * T * widest > 1099511627776.0)
        return seterr(err, "%s: train.batch_size: %d sequences of model.seq_len %d tokens are absurd: "
                      "activation sizes overflow", t->path, tr->batch_size, t->model.seq_len);
    return 0;
}

static int check_schedule(topo *t, char *err)
{
    topo_schedule *sc = &t->schedule;
    if (sc->kind && sc->file)
        return seterr(err, "%s: schedule: give either kind or file, not both", t->path);
    if (!sc->kind && !sc->file) sc->kind = xstrdup("gpipe");
    sc->kind_id = sc->file ? TOPO_SCHED_FILE : sched_kind_find(sc->kind);
    if (sc->warmup_sync_steps < 0) sc->warmup_sync_steps = topo_warmup_sync_default(t);
    return 0;
}

int topo_warmup_sync_default(const topo *t)
{
    return t->schedule.kind_id == SCHED_KIND_2BW ? t->train.warmup_steps : 0;
}

/* Constraints of a built-in schedule kind (sched_kind_table) on the batch and the
 * layout, once the partition is known; a schedule file is checked when it is read
 * (topo_build_schedule). */
static int check_schedule_fit(const topo *t, char *err)
{
    const topo_schedule *sc = &t->schedule;
    if (sc->kind_id == TOPO_SCHED_FILE) return 0;
    char why[SCHED_ERR_LEN];
    int P = t->n_stages, M = t->train.micro_batches;
    /* 2bw: one pipeline whose stages each hold their weights (README PipeDream-2BW) */
    if (sc->kind_id == SCHED_KIND_2BW && t->sync && !strcmp(t->sync, "ps")) /* sync_id is set later */
        return seterr(err, "%s: sync: schedule \"2bw\" keeps its weight versions on the stages; parameter servers "
                      "(\"sync\": \"ps\") are not supported with it", t->path);
    if (sc->kind_id == SCHED_KIND_2BW && t->n_replicas > 1)
        return seterr(err, "%s: replicas: schedule \"2bw\" (the asynchronous pipeline) runs one pipeline, found %d "
                      "replicas per stage (use 1f1b with replicas)", t->path, t->n_replicas);
    if (sc->kind_id == SCHED_KIND_2BW && t->model.tie_embeddings && P > 1)
        return seterr(err, "%s: model.tie_embeddings: schedule \"2bw\" does not support an embedding tied to the "
                      "head of another stage (two weight versions of a tensor held twice); set it to false or use "
                      "another schedule", t->path);
    switch (sched_kind_fit(sc->kind_id, P, M, t->chunks_per_stage, why)) {
    case SCHED_FIT_OK: return 0;
    case SCHED_FIT_MICRO:
        if (sched_kind_table[sc->kind_id].m_ge_p && M < P)
            return seterr(err, "%s: train.micro_batches: schedule \"%s\" needs at least one micro-batch "
                          "per stage (%d stages), found %d", t->path, sc->kind, P, M);
        return seterr(err, "%s: train.micro_batches: %s", t->path, why);
    case SCHED_FIT_CHUNKS: return seterr(err, "%s: stages.0.layers: %s", t->path, why);
    default: return seterr(err, "%s: schedule.kind: %s", t->path, why);
    }
}

_Static_assert(MODEL_RECOMPUTE_NONE == 0 && MODEL_RECOMPUTE_SELECTIVE == 1 && MODEL_RECOMPUTE_FULL == 2,
               "topo_recompute_kinds lists the modes in MODEL_RECOMPUTE_* order");
static int recompute_id(const char *name)
{
    for (int i = 0; name && topo_recompute_kinds[i]; i++)
        if (!strcmp(topo_recompute_kinds[i], name)) return i;
    return 0; /* absent (decoding refused any other name) */
}

/* Each stage's mode: its own "recompute", else train.recompute. */
static void resolve_recompute(topo *t)
{
    t->train.recompute_id = recompute_id(t->train.recompute);
    for (int s = 0; s < t->n_stages; s++)
        t->stages[s].recompute_id = t->stages[s].recompute ? recompute_id(t->stages[s].recompute)
                                                           : t->train.recompute_id;
}

int topo_validate(topo *t, char *err)
{
    char msg[ERR_LEN];
    if (!t->model.n_kv_heads) t->model.n_kv_heads = t->model.n_heads;
    if (check_replicas(t, err)) return -1;
    if (model_config_check(&t->model, msg)) return seterr(err, "%s: %s", t->path, msg);
    t->data.kind = data_kind(&t->data);
    t->launch_id = strcmp(t->launch, "ssh") ? TOPO_LAUNCH_LOCAL : TOPO_LAUNCH_SSH;
    resolve_recompute(t);
    topo_resolve_wire(t);
    t->links.bandwidth_Bps = 0;
    if (t->links.bandwidth && topo_parse_rate(t->links.bandwidth, &t->links.bandwidth_Bps))
        return seterr(err, "%s: links.bandwidth: expected a rate > 0 such as \"100mbit\", \"1gbit\", "
                           "\"12.5MB/s\" or a number of bytes per second, found \"%.64s\"", t->path,
                      t->links.bandwidth);
    if (t->links.burst > 0 && !t->links.bandwidth) /* a bucket that never refills: a mistake, not a model */
        return seterr(err, "%s: links.burst: %.0f bytes without links.bandwidth; a token bucket refills at the "
                           "link's rate: give links.bandwidth too, or leave burst out", t->path, t->links.burst);
    if (check_train(t, err) || check_schedule(t, err)) return -1;
    if (check_partition(t, err) || check_schedule_fit(t, err) || check_addresses(t, err)) return -1;
    if (topo_check_ps(t, err)) return -1;
    if (topo_check_limits(t, err)) return -1;
    return 0;
}

int topo_set_data_path(topo *t, const char *path, char *err)
{
    if (!path || !path[0]) return seterr(err, "--data: expected a file name, found an empty string");
    free(t->data.path);
    free(t->data.path_given);
    t->data.path = xstrdup(path);
    t->data.path_given = xstrdup(path);
    t->data.kind = data_kind(&t->data);
    return 0;
}

/* ---------- queries ---------- */

int topo_n_units(const topo *t) { return t->model.n_layers + 2; }

int topo_stage_of_unit(const topo *t, int unit)
{
    for (int s = 0; s < t->n_stages; s++)
        for (int i = 0; i < t->stages[s].n_units; i++)
            if (t->stages[s].units[i] == unit) return s;
    return -1;
}

int topo_stage_of_virtual(const topo *t, int vs, int *chunk)
{
    if (vs < 0 || t->n_stages <= 0 || vs >= t->n_stages * t->chunks_per_stage) return -1;
    return sched_place_stage(t->placement, t->n_stages, vs, chunk);
}

int topo_micro_batch(const topo *t)
{
    int R = t->n_replicas > 0 ? t->n_replicas : 1;
    return t->train.batch_size / (R * t->train.micro_batches);
}

int topo_replica_batch(const topo *t, int replica, int *first)
{
    if (replica < 0 || replica >= t->n_replicas) return -1;
    int n = t->train.batch_size / t->n_replicas;
    if (first) *first = replica * n;
    return n;
}

size_t topo_bucket_floats(const topo *t)
{
    double f = t->train.bucket_mb * 1048576.0 / sizeof(float);
    return f < 1 ? 1 : (size_t)f;
}

/* Unit u's bucket count, in size_t: a big unit in tiny buckets passes INT_MAX. */
static size_t unit_bucket_count(const topo *t, int unit)
{
    size_t n = model_unit_params(&t->model, unit), bf = topo_bucket_floats(t);
    return n / bf + (n % bf != 0);
}

int topo_unit_buckets(const topo *t, int unit, int b, size_t *off, size_t *len)
{
    size_t n = model_unit_params(&t->model, unit), bf = topo_bucket_floats(t), cnt = unit_bucket_count(t, unit);
    int nb = cnt > INT_MAX ? INT_MAX : (int)cnt;
    if (b >= 0 && b < nb) {
        *off = (size_t)b * bf;
        *len = n - *off < bf ? n - *off : bf;
    }
    return nb;
}

size_t topo_first_bucket(const topo *t, int unit)
{
    size_t b = 0;
    for (int v = 0; v < unit; v++) b += (size_t)topo_unit_buckets(t, v, -1, NULL, NULL);
    return b;
}

void topo_combine_norm_partials(const topo *t, const double *parts, double *sq)
{
    int R = t->n_replicas;
    size_t base = 0;
    for (int u = 0; u < topo_n_units(t); u++) {
        int nb = topo_unit_buckets(t, u, -1, NULL, NULL);
        double acc = 0.0;
        for (int b = 0; b < nb; b++)
            for (int r = 0; r < R; r++) acc += parts[(base + (size_t)b) * (size_t)R + (size_t)r];
        sq[u] = acc;
        base += (size_t)nb;
    }
}

size_t topo_stage_bucket_count(const topo *t, int k)
{
    size_t n = 0;
    for (int i = 0; i < t->stages[k].n_units; i++) n += unit_bucket_count(t, t->stages[k].units[i]);
    return n;
}

int topo_stage_buckets(const topo *t, int k)
{
    size_t n = topo_stage_bucket_count(t, k);
    return n > INT_MAX ? INT_MAX : (int)n;
}

int topo_rank_identity(const topo *t, long rank, int *stage, int *replica, char *err)
{
    long n = (long)t->n_stages * t->n_replicas;
    if (rank < 0 || rank >= n)
        return seterr(err, "rank %ld is outside the grid of %d stage(s) x %d replica(s) = %ld process(es) "
                      "(ranks 0..%ld, rank = replica x %d + stage)", rank, t->n_stages, t->n_replicas, n,
                      n - 1, t->n_stages);
    *stage = (int)(rank % t->n_stages);
    *replica = (int)(rank / t->n_stages);
    return 0;
}

int topo_rank_of(const topo *t, int stage, int replica)
{
    if (stage < 0 || stage >= t->n_stages || replica < 0 || replica >= t->n_replicas) return -1;
    return replica * t->n_stages + stage;
}

size_t topo_max_tensor_bytes(const topo *t)
{
    size_t best = 0;
    for (int u = 0; u < topo_n_units(t); u++) {
        size_t b = model_unit_out_bytes(&t->model, u, (size_t)topo_micro_batch(t), (size_t)t->model.seq_len);
        if (b > best) best = b;
    }
    return best;
}

int topo_all_loopback(const topo *t)
{
    if (!is_loopback(t->coordinator.host)) return 0;
    for (int j = 0; j < t->n_servers; j++)
        if (!is_loopback(t->parameter_servers[j].host)) return 0;
    for (int s = 0; s < t->n_stages; s++)
        for (int r = 0; r < t->stages[s].n_replicas; r++)
            if (!is_loopback(t->stages[s].replicas[r].host)) return 0;
    return 1;
}

int topo_encrypt(const topo *t, int secret_set, char *warn)
{
    int wide = secret_set && !topo_all_loopback(t);
    warn[0] = 0;
    if (t->encrypt == 0 && wide)
        snprintf(warn, ERR_LEN, "%s: encrypt: false: frames, tensors included, cross the network in clear "
                 "(authenticated and checksummed, not encrypted)", t->path);
    return t->encrypt >= 0 ? t->encrypt : wide;
}

int topo_find_stage(const topo *t, const char *host, int port)
{
    for (int s = 0; s < t->n_stages; s++)
        if (same_endpoint(host, port, t->stages[s].host, t->stages[s].port)) return s;
    return -1;
}

/* The address rules, for topo_ps.c's parameter servers. */
int topo_check_host(const char *file, const char *path, const char *host, char *err)
{
    return check_host(file, path, host, err);
}

int topo_same_endpoint(const char *h1, int p1, const char *h2, int p2) { return same_endpoint(h1, p1, h2, p2); }

int topo_is_loopback(const char *host) { return is_loopback(host); }

void topo_proc_path(const topo *t, int s, int r, const char *fieldname, char *buf, size_t n)
{
    proc_path(t, s, r, fieldname, buf, n);
}
