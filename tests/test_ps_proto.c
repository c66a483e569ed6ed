/* test_ps_proto.c — the parameter servers' wire messages (ps/ps_proto.h):
 * every codec round-trips; a push a server receives goes through
 * ps_push_decode then ps_server_push (what stage/server.c does with each
 * arrival), and a push of the wrong size, from an unknown worker, for another
 * step or piece than its key, or whose header disagrees with its length is
 * refused with a reason naming what is wrong and changes nothing; the
 * payload limit every process is configured with admits the largest message. */
#include <stdint.h>
#include <stdlib.h>

#include "base/base.h"
#include "ps/ps_proto.h"
#include "stage/stage.h"
#include "topo/topo.h"
#include "tests/tests.h"

static int load(topo *t)
{
    char *sets[] = { "model.n_layers=2", "model.dim=32", "model.ffn_dim=48", "stages.0.layers=embed,0",
                     "stages.1.layers=1,head" };
    char err[ERR_LEN];
    int rc = topo_load(t, "topologies/shakespeare-ps.json", sets, 5, err);
    if (rc) fprintf(stderr, "\n  %s\n", err);
    return rc;
}

/* A push of piece i, step `step`, laid out as the worker sends it; n floats
 * (the piece's length unless a test wants another). The caller frees it. */
static uint8_t *push_msg(int piece, long step, size_t n, size_t *len)
{
    float *g = calloc(n + 1, sizeof(float));
    for (size_t k = 0; k < n; k++) g[k] = (float)k * 0.25f - 1.0f;
    uint8_t *b = malloc(PS_PUSH_HDR + n * sizeof(float));
    *len = ps_push_encode(b, piece, step, 0.0, g, n);
    free(g);
    return b;
}

static void test_codecs(void)
{
    CU_ASSERT(ps_proto_check_host() == 0);
    topo t;
    ps_assignment a;
    char err[ERR_LEN];
    CU_ASSERT_FATAL(load(&t) == 0);
    CU_ASSERT_FATAL(ps_assign(&t, &a, err) == 0);
    /* a push round-trips, floats bit for bit, through the key it came under */
    size_t len;
    uint8_t *b = push_msg(3, 7, a.pieces[3].len, &len);
    CU_ASSERT(len == PS_PUSH_HDR + a.pieces[3].len * sizeof(float));
    ps_push p;
    CU_ASSERT_FATAL(ps_push_decode(&a, 1, b, len, 7, 3, &p, err) == 0);
    CU_ASSERT(p.worker == 1 && p.step == 7 && p.piece == 3 && p.n == a.pieces[3].len && p.grad[2] == -0.5f);
    /* a piece header (weights: 1 array; checkpoint: 3) */
    uint8_t *w = calloc(1, PS_PIECE_HDR + 3 * a.pieces[3].len * sizeof(float));
    long ver = 0;
    ps_piece_hdr_encode(w, 3, a.pieces[3].len, 5);
    CU_ASSERT(ps_piece_hdr_check(&a, 3, 1, w, PS_PIECE_HDR + a.pieces[3].len * 4, &ver, err) == 0 && ver == 5);
    CU_ASSERT(ps_piece_hdr_check(&a, 3, 3, w, PS_PIECE_HDR + 3 * a.pieces[3].len * 4, &ver, err) == 0);
    CU_ASSERT(ps_piece_hdr_check(&a, 3, 1, w, PS_PIECE_HDR + a.pieces[3].len * 4 - 4, &ver, err) == -1 &&
              strstr(err, "expected"));
    CU_ASSERT(ps_piece_hdr_check(&a, 4, 1, w, PS_PIECE_HDR + a.pieces[4].len * 4, &ver, err) == -1);
    CU_ASSERT(ps_piece_hdr_check(&a, a.n_pieces, 1, w, 16, &ver, err) == -1 && strstr(err, "not in the assignment"));
    /* norm partials */
    ps_norm_partial in[3] = { { 0, 0, 1, 2.5 }, { 3, 1, 0, 0.125 }, { 5, 0, 1, 1e-300 } }, out[3];
    uint8_t nb[4 + 3 * PS_PARTIAL_BYTES];
    size_t nl = ps_partials_encode(nb, in, 3);
    CU_ASSERT(ps_partials_decode(nb, nl, out, 3, err) == 3);
    for (int k = 0; k < 3; k++)
        CU_ASSERT(out[k].unit == in[k].unit && out[k].bucket == in[k].bucket && out[k].seg == in[k].seg &&
                  out[k].sq == in[k].sq);
    CU_ASSERT(ps_partials_decode(nb, nl, out, 2, err) == -1 && strstr(err, "3 norm partials, the server holds 2"));
    CU_ASSERT(ps_partials_decode(nb, nl - 1, out, 3, err) == -1);
    CU_ASSERT(ps_partials_decode(nb, 3, out, 3, err) == -1);
    /* statistics */
    ps_net_stats s = { 1, 2, 3, 4, 5, 6.5, { 0 } }, s2;
    s.staleness[0] = 9;
    s.staleness[PS_STALE_BUCKETS - 1] = 11;
    uint8_t sb[PS_STATS_BYTES];
    ps_stats_encode(sb, &s);
    ps_stats_decode(&s2, sb);
    CU_ASSERT(!memcmp(&s, &s2, sizeof s));
    /* every process accepts the largest of these messages */
    CU_ASSERT(stage_max_payload(&t) >= ps_proto_max_payload(&a));
    CU_ASSERT(ps_proto_max_payload(&a) >= PS_PIECE_HDR + 3 * a.max_block * sizeof(float));
    free(b);
    free(w);
    ps_assignment_free(&a);
    topo_free(&t);
}

/* What stage/server.c does with an arrival: decode, then the state machine. */
static int arrive(ps_server *s, const ps_assignment *a, int worker, const uint8_t *b, size_t len, long key_step,
                  int key_piece, char *why)
{
    ps_push p;
    if (ps_push_decode(a, worker, b, len, key_step, key_piece, &p, why)) return -1;
    return ps_server_push(s, &p, why);
}

static void test_refused(void)
{
    topo t;
    ps_assignment a;
    char err[ERR_LEN], why[ERR_LEN];
    CU_ASSERT_FATAL(load(&t) == 0);
    CU_ASSERT_FATAL(ps_assign(&t, &a, err) == 0);
    ps_server *s = ps_server_new(&t, &a, 0, err);
    CU_ASSERT_FATAL(s != NULL);
    const int *idx;
    int np = ps_server_pieces(&a, 0, &idx), i = idx[0];
    CU_ASSERT_FATAL(np > 1);
    size_t n = a.pieces[i].len, len;
    /* wrong size: one float short, and one too many */
    uint8_t *b = push_msg(i, 0, n - 1, &len);
    CU_ASSERT(arrive(s, &a, 0, b, len, 0, i, why) == -1 && strstr(why, "wrong size"));
    free(b);
    b = push_msg(i, 0, n + 1, &len);
    CU_ASSERT(arrive(s, &a, 0, b, len, 0, i, why) == -1 && strstr(why, "wrong size"));
    free(b);
    /* unknown worker (R = 2: workers 0 and 1) */
    b = push_msg(i, 0, n, &len);
    CU_ASSERT(arrive(s, &a, 2, b, len, 0, i, why) == -1 && strstr(why, "unknown worker 2"));
    CU_ASSERT(arrive(s, &a, -1, b, len, 0, i, why) == -1 && strstr(why, "unknown worker"));
    /* the header against the key and the length */
    CU_ASSERT(arrive(s, &a, 0, b, len, 1, i, why) == -1 && strstr(why, "came as piece"));
    CU_ASSERT(arrive(s, &a, 0, b, len, 0, idx[1], why) == -1 && strstr(why, "came as piece"));
    CU_ASSERT(arrive(s, &a, 0, b, len - 4, 0, i, why) == -1 && strstr(why, "bytes follow it"));
    CU_ASSERT(arrive(s, &a, 0, b, 10, 0, i, why) == -1 && strstr(why, "shorter than its"));
    /* a piece of the other server */
    int other = -1;
    for (int k = 0; k < a.n_pieces && other < 0; k++)
        if (a.pieces[k].server == 1) other = k;
    uint8_t *o = push_msg(other, 0, a.pieces[other].len, &len);
    CU_ASSERT(arrive(s, &a, 0, o, len, 0, other, why) == -1 && strstr(why, "not held by parameter server 0"));
    free(o);
    /* nothing changed: the right push is taken, and taken once */
    len = PS_PUSH_HDR + n * sizeof(float);
    CU_ASSERT(ps_server_clock(s, 0) == 0);
    CU_ASSERT(arrive(s, &a, 0, b, len, 0, i, why) == 0);
    CU_ASSERT(arrive(s, &a, 0, b, len, 0, i, why) == -1 && strstr(why, "twice"));
    free(b);
    ps_server_free(s);
    ps_assignment_free(&a);
    topo_free(&t);
}

int main(void)
{
    CU_TestInfo tests[] = {
        { "codecs: push, piece header, norm partials, stats; payload limit", test_codecs },
        { "refused on arrival: wrong size, unknown worker, key, length, piece", test_refused },
        CU_TEST_INFO_NULL,
    };
    return tests_run("ps_proto", tests);
}
