/* server_int.h — private to the parameter-server process: stage/server.c
 * (set-up, the synchronous loop) and stage/server_async.c (the asynchronous
 * modes) share its state and helpers. Not a public interface. */
#ifndef STAGE_SERVER_INT_H
#define STAGE_SERVER_INT_H

#include "ps/ps_proto.h"
#include "stage/stage.h"

typedef struct {
    const topo *t;
    const stage_opts *o;
    int j, P, R;
    char *err;
    long step;               /* 0-based step being served (-1 before START) */
    ps_assignment a;
    int have_a;
    ps_server *s;
    struct net_node *node;
    uint8_t secret[256];
    int np;                  /* pieces held */
    const int *idx;          /* (np) their assignment indices */
    uint8_t *stage_has;      /* (P) 1: stage k has a piece here (its replicas are this server's workers) */
    uint8_t *rx;             /* pushes: worker r's piece l at rx + r * rxstride + rxoff[l] */
    size_t *rxoff, rxstride;
    struct net_op **rxop;    /* (R * np) */
    uint8_t *tx;             /* weights of piece l at tx + txoff[l] (header + floats), sent to every worker */
    size_t *txoff;
    struct net_op **txop;    /* (R * np) */
    uint8_t *ck;             /* checkpoint: piece l at ck + ckoff[l] (header + w, m, v); first checkpoint */
    size_t *ckoff, ckbytes;
    struct net_op **ckop;    /* (np) */
    ps_norm_partial *parts;
    uint8_t *normbuf;
    /* synchronous, the only server: the step's norm computed here (server.c) */
    struct net_op *norm_tx, *norm_rx; /* NORM out, its reply in (pending until the next step's check) */
    uint8_t norm_reply[8];
    double norm_local;
    long norm_local_n;       /* steps whose norm was computed here and matched the coordinator's */
    ps_net_stats stats;
    double timeout_s;
    /* asynchronous modes (server_async.c), NULL when synchronous */
    struct srv_async *as;
} srv;

/* "server K (host:port) at step N: ..." into sv->err; returns -1. */
int srv_fail(srv *sv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "stage K replica R (host:port)" into buf; returns buf. */
const char *srv_worker_name(const srv *sv, int stage, int r, char *buf, size_t cap);
/* Waits for op (1 s slices, the step timeout, a watch on the coordinator). 0 or -1. */
int srv_await(srv *sv, struct net_op *op, const char *what);
int srv_send(srv *sv, net_peer_id to, net_key k, const void *buf, uint64_t len, struct net_op **op);
int srv_ctl_send(srv *sv, uint16_t type, long step, const void *buf, uint64_t len);
int srv_ctl_recv(srv *sv, uint16_t type, long step, void *buf, uint64_t cap, uint64_t *len, const char *what);
int srv_await_all(srv *sv, struct net_op **ops, int n, const char *what);
/* START with first > 0: the pieces' state from the checkpoint after `first` steps. */
int srv_resume(srv *sv, long first);
/* Synchronous checkpoint: every piece's weights and moments to replica 0 of its stage. */
int srv_send_checkpoint(srv *sv);
/* Piece l's checkpoint message (header, weights, m, v) encoded at sv->ck +
 * sv->ckoff[l] (allocated on first use); returns its bytes. Main thread. */
uint64_t srv_encode_ckpt_piece(srv *sv, int l);
/* server_async.c: the asynchronous serving loop after START (first .. total),
 * ending with MSG_PS_STATS and DONE; 0 or -1 with sv->err. srv_async_free
 * releases its state (NULL-safe, after the node is freed). */
int srv_serve_async(srv *sv, long first, long total);
void srv_async_free(srv *sv);

#endif
