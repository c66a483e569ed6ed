/* stage.h — one pipeline stage process (stage/runtime.c) and the pieces the
 * stage and the coordinator share: the secret, the transport settings and the
 * options both are started with. Messages: stage/proto.h. */
#ifndef STAGE_STAGE_H
#define STAGE_STAGE_H

#include <stdint.h>

#include "net/net.h"
#include "topo/topo.h"

/* Options of `pipetrain stage` (and what the launcher passes to each stage). */
typedef struct {
    int stage;                 /* index into topo.stages */
    int replica;               /* 0 .. topo.n_replicas - 1 (data-parallel copy; default 0) */
    const char *coord_host;    /* coordinator address (default: the topology's) */
    int coord_port;
    uint64_t run_id;           /* must match the coordinator's (default 0) */
    const char *out_dir;       /* run directory: checkpoints go under it */
    int peer_timeout_ms;       /* silence after which a peer is dead (default 10000) */
    int connect_timeout_ms;    /* start-up deadline for connections (default 60000) */
    double step_timeout_s;     /* longest wait for any one tensor or reply (default 600) */
    int join;                  /* --join: a worker (re)joining a running asynchronous parameter-server
                                  run (issue 12); the coordinator names its first step in START */
} stage_opts;

/* Runs stage o->stage of t until the coordinator says DONE. Returns 0, 1 on a
 * run-time failure (a dead peer, a timeout, a write error; the message names
 * the stage, its address and the step), 2 on bad input. */
int stage_run(const topo *t, const stage_opts *o, char *err);

/* `pipetrain server` (issue 12, stage/server.c): parameter server o->stage
 * (the index into t->parameter_servers; o->replica is unused) of a "sync":
 * "ps" topology: listens on its address, joins the coordinator, serves its
 * workers' pushes and sends them the new weights of every step until the
 * coordinator says DONE (the protocol: stage/proto.h, "Parameter servers").
 * Returns 0, 1 on a run-time failure (a dead peer, a timeout, a refused push;
 * the message names "server K (host:port)" and the step) or 2 on bad input
 * (K out of range, naming parameter_servers). Main thread; one call per
 * process at a time. */
int stage_server_run(const topo *t, const stage_opts *o, char *err);

/* The shared secret: the topology's secret_file, else $PIPETRAIN_SECRET, else —
 * only when every process is on loopback — a built-in default (which guards
 * against accidents, not attackers). Returns 0, or -1 with err when none applies
 * or the file is unusable. */
int stage_secret(const topo *t, uint8_t *buf, size_t cap, size_t *len, char *err);

/* The largest payload any process of this run sends or accepts: the largest
 * tensor crossing a stage boundary, the tied embedding, a collective's chunk
 * (COLL_CHUNK_BYTES, with replicas), and the control messages whose size grows
 * with the topology (NORM: 4 + 8 per unit, or per gradient bucket with
 * replicas, of the largest stage; a TRACE part, PROTO_TRACE_PART_BYTES), plus room for the
 * small ones; at most NET_MAX_PAYLOAD_CAP. Pure function of t; any thread. */
uint64_t stage_max_payload(const topo *t);

/* Fills cfg for a process of this run: identity, run id, topology hash, secret,
 * payload limit (stage_max_payload), heartbeat/dead timeouts. listen_* are left
 * for the caller. Returns 0 or -1 with err (secret problems). The secret bytes
 * live in *secret_buf (cap 256), which must outlive net_node_new. */
int stage_net_config(net_config *cfg, const topo *t, net_peer_id self, uint64_t run_id,
                     int peer_timeout_ms, uint8_t *secret_buf, char *err);

/* Who may connect to a process of this run (net_config.accept_peer): the
 * coordinator (self -1) takes every process of the grid (stage < P, replica <
 * R); process `self` (its rank, replica * P + stage) takes the processes whose
 * rank is marked in inbound (P * R flags: the lower pipeline neighbours of its
 * own replica and the lower ring neighbours of its own stage, which connect to
 * it). The coordinator never connects inbound. */
typedef struct {
    const topo *t;
    int self;
    const uint8_t *inbound;
} stage_peers;

/* net_config.accept_peer for a stage_peers arg: 1 when id may connect, else 0
 * with the reason in why (NET_ERR_LEN), e.g. "stage 6 is not in the topology
 * t.json (stages 0..1)". Called on the network thread; reads only. */
int stage_accept_peer(void *arg, net_peer_id id, char *why);

#endif
