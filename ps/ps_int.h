/* ps_int.h — the parameter server's fields, shared by ps_server.c (the state
 * machine) and ps_ckpt.c (export and import). Not a public header: ps/ only. */
#ifndef PS_INT_H
#define PS_INT_H

#include "base/base.h"
#include "ps/ps.h"

struct ps_server {
    const topo *t;
    const ps_assignment *a;
    int j;                /* this server's index */
    int R;                /* workers (the topology's replicas) */
    int bound;            /* ps.staleness: 0 synchronous, s > 0, -1 unbounded */
    int np;               /* pieces held */
    const int *idx;       /* (np) their assignment indices, in (unit, off) order */
    int *local;           /* (a->n_pieces) assignment index -> local index, -1 if not held */
    size_t *poff;         /* (np + 1) where local piece l starts in w, m, v, gsum */
    size_t n;             /* floats held */
    int nblk;             /* blocks held (their pieces are consecutive in idx) */
    float *w, *m, *v;     /* (n) weights and AdamW moments, piece after piece */
    float *gsum;          /* synchronous: (n) the step's gradients summed (ring order per block) */
    float *gbuf;          /* synchronous: (R x n) each worker's gradients of the step */
    int *pcount;          /* synchronous: (np) workers whose push of the piece is in this step (summed at R) */
    int *lblk;            /* synchronous: (np) the piece's block among the server's (0 .. nblk-1) */
    int *blk_left;        /* synchronous: (nblk) pieces of the block not summed yet this step */
    int *blk_first;       /* synchronous: (nblk + 1) the block's first local piece */
    double *blk_sq;       /* synchronous: (nblk) the block's sum of squares, once all its pieces are summed */
    int n_summed;         /* synchronous: pieces summed this step */
    long *pstep;          /* (np) AdamW's step counter per piece (bias correction) */
    long *pver;           /* (np) updates applied per piece: the version a pull reports */
    unsigned char *have;  /* (R x np) piece pushed for the worker's current step */
    int *got;             /* (R) pieces pushed for the worker's current step */
    long *clock;          /* (R) steps each worker pushed completely: its next step */
    int *active;          /* (R) asynchronous: 0 once dropped */
    long step;            /* synchronous: steps applied */
    enum ps_state state;
    uint64_t hist[PS_STALE_BUCKETS];
};

#endif
