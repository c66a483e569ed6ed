/* netsetup.c — the secret and transport settings every process of a run shares. */
#include "stage/stage.h"
#include "coll/coll.h"
#include "ps/ps_proto.h"
#include "stage/proto.h"
#include "model/util.h"

#include <stdlib.h>
#include <string.h>

/* Used only when every process is on loopback and nothing else is configured. */
static const char loopback_secret[] = "pipetrain loopback default secret: not for networks";

int proto_secret_set(const topo *t)
{
    const char *env = getenv(PROTO_SECRET_ENV);
    return t->secret_file || (env && strcmp(env, PROTO_INSECURE_SECRET));
}

int stage_secret(const topo *t, uint8_t *buf, size_t cap, size_t *len, char *err)
{
    char nerr[NET_ERR_LEN];
    if (t->secret_file || getenv(PROTO_SECRET_ENV)) {
        if (net_secret_load(t->secret_file, PROTO_SECRET_ENV, buf, cap, len, nerr) != NET_OK)
            return seterr(err, "%s: secret: %s", t->path, nerr);
        return 0;
    }
    if (!topo_all_loopback(t))
        return seterr(err, "%s: secret_file: a shared secret is required when any stage is off loopback "
                           "(name a file readable only by its owner, or set %s)", t->path, PROTO_SECRET_ENV);
    if (cap < sizeof loopback_secret - 1) return seterr(err, "secret buffer too small");
    memcpy(buf, loopback_secret, sizeof loopback_secret - 1);
    *len = sizeof loopback_secret - 1;
    return 0;
}

uint64_t stage_max_payload(const topo *t)
{
    uint64_t tied = (uint64_t)t->model.vocab_size * (uint64_t)t->model.dim * sizeof(float);
    uint64_t mx = topo_max_tensor_bytes(t), units = 0;
    if (tied > mx) mx = tied;
    /* control messages grow with the topology too: NORM lists every unit of a
     * stage; a TRACE part has its own size, whatever the model's: a small
     * model's tensors must not cap it (issue #10) */
    for (int k = 0; k < t->n_stages; k++) {
        /* with replicas NORM lists a partial sum per gradient bucket (stage/proto.h) */
        uint64_t n = (uint64_t)t->stages[k].n_units, nb = t->n_replicas > 1 ? (uint64_t)topo_stage_buckets(t, k) : 0;
        if (nb > n) n = nb;
        if (n > units) units = n;
    }
    uint64_t norm = 4 + 8 * units + PROTO_LIVE_MAX_BYTES; /* + the live trailer (run --http, proto.h) */
    if (norm > mx) mx = norm;
    /* with replicas the all-reduce sends a bucket's ring segments, cut into
     * chunks of at most COLL_CHUNK_BYTES (runtime_dp.c keeps coll's default):
     * a layer's segment outgrows a small model's activations */
    for (int u = 0; t->n_replicas > 1 && u < topo_n_units(t); u++)
        for (int b = 0, nb = topo_unit_buckets(t, u, -1, NULL, NULL); b < nb; b++) {
            size_t off, len, soff, slen;
            topo_unit_buckets(t, u, b, &off, &len);
            coll_segment(len, t->n_replicas, 0, &soff, &slen);
            uint64_t seg = (uint64_t)slen * sizeof(float);
            if (seg > COLL_CHUNK_BYTES) seg = COLL_CHUNK_BYTES;
            if (seg > mx) mx = seg;
        }
    if ((uint64_t)PROTO_TRACE_PART_BYTES > mx) mx = PROTO_TRACE_PART_BYTES;
    /* parameter servers: a piece's push, weights and checkpoint (3 arrays),
     * a server's norm partials (ps/ps_proto.h) */
    ps_assignment a;
    char err[ERR_LEN];
    if (t->sync_id == TOPO_SYNC_PS && !ps_assign(t, &a, err)) {
        uint64_t ps = ps_proto_max_payload(&a);
        if (ps > mx) mx = ps;
        ps_assignment_free(&a);
    }
    mx += 4096; /* FAIL texts, STATS and the other small control messages */
    return mx > NET_MAX_PAYLOAD_CAP ? NET_MAX_PAYLOAD_CAP : mx;
}

int stage_net_config(net_config *cfg, const topo *t, net_peer_id self, uint64_t run_id, int peer_timeout_ms,
                     uint8_t *secret_buf, char *err)
{
    size_t len;
    net_config_init(cfg);
    if (stage_secret(t, secret_buf, 256, &len, err)) return -1;
    cfg->self = self;
    cfg->run_id = run_id;
    if (topo_hash(t, cfg->topo_hash)) return seterr(err, "%s: out of memory hashing the topology", t->path);
    cfg->secret = secret_buf;
    cfg->secret_len = len;
    char warn[ERR_LEN];
    cfg->encrypt = topo_encrypt(t, proto_secret_set(t), warn); /* --insecure's secret keys nothing */
    if (warn[0]) fprintf(stderr, "pipetrain: warning: %s\n", warn);
    else if (cfg->encrypt && self.role == NET_ROLE_COORD) /* once per run */
        fprintf(stderr, "pipetrain: every frame is sealed with an AEAD after the handshake (%s: %s)\n", t->path,
                t->encrypt == 1 ? "encrypt" : "a shared secret and a process off loopback; \"encrypt\": false turns it off");
    cfg->max_payload = stage_max_payload(t);
    if (peer_timeout_ms > 0) {
        cfg->dead_ms = peer_timeout_ms;
        if (cfg->heartbeat_ms * 3 > peer_timeout_ms) cfg->heartbeat_ms = peer_timeout_ms / 3 > 50 ? peer_timeout_ms / 3 : 50;
    }
    return 0;
}

int stage_accept_peer(void *arg, net_peer_id id, char *why)
{
    const stage_peers *sp = arg;
    const topo *t = sp->t;
    if (id.role == NET_ROLE_SERVER) { /* parameter servers connect to the coordinator only */
        if (sp->self < 0 && t->sync_id == TOPO_SYNC_PS && id.stage < t->n_servers && id.replica == 0) return 1;
        if (sp->self >= 0)
            snprintf(why, NET_ERR_LEN, "a parameter server never connects to a stage (stages connect to servers)");
        else
            snprintf(why, NET_ERR_LEN, "server %u is not in the topology %s (%d parameter_servers)", id.stage, t->path,
                     t->n_servers);
        return 0;
    }
    if (id.role != NET_ROLE_STAGE) {
        snprintf(why, NET_ERR_LEN, "the coordinator never connects to %s", sp->self < 0 ? "a coordinator" : "a stage");
        return 0;
    }
    if (id.stage >= t->n_stages) {
        snprintf(why, NET_ERR_LEN, "stage %u is not in the topology %s (stages 0..%d)", id.stage, t->path,
                 t->n_stages - 1);
        return 0;
    }
    if (id.replica >= t->n_replicas) {
        snprintf(why, NET_ERR_LEN, "stage %u replica %u is not in the topology %s (replicas 0..%d)", id.stage,
                 id.replica, t->path, t->n_replicas - 1);
        return 0;
    }
    int rank = topo_rank_of(t, id.stage, id.replica);
    if (sp->self >= 0 && (rank == sp->self || !sp->inbound || !sp->inbound[rank])) {
        int ss = sp->self % t->n_stages, sr = sp->self / t->n_stages;
        if (t->n_replicas > 1)
            snprintf(why, NET_ERR_LEN, "stage %u replica %u does not connect to stage %d replica %d in the topology %s",
                     id.stage, id.replica, ss, sr, t->path);
        else
            snprintf(why, NET_ERR_LEN, "stage %u does not connect to stage %d in the topology %s", id.stage, ss,
                     t->path);
        return 0;
    }
    return 1;
}
