/* test_coll.c — CUnit suite for coll/: R = 2..5 ranks as threads of this
 * process, each with its own net_node on loopback (identity stage 0, replica
 * rank), running every collective on sizes 0, 1, R-1, R+1, 1000 and 2^20+3
 * against plain references: the all-reduce bitwise against a float sum in
 * the documented order and within a bound of a double sum, identical bits on
 * every rank, results independent of the chunk size; and a rank that dies
 * mid-collective makes the others fail with a message instead of hanging,
 * and a connection cut under queued sends names the earliest that failed. */
#include <math.h>
#include <float.h>
#include <poll.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <time.h>

#include "base/base.h"
#include "coll/coll.h"
#include "tests/net_fixture.h"
#include "tests/tests.h"

#define MAXR 5
#define TIMEOUT_MS 5000
#define DIE_TIMEOUT_MS 1500 /* rank 0, no neighbour of the dead rank, waits this long */

enum { OP_AR, OP_RS, OP_AG, OP_BC };

struct ring_fix {
    int R;
    struct net_node *node[MAXR];
    coll_group *g[MAXR];
};

static void fix_nodes(struct ring_fix *f, int R)
{
    net_config c;
    f->R = R;
    for (int i = 0; i < R; i++) {
        cfg_for(&c, net_stage_id(0, (uint16_t)i));
        f->node[i] = node_or_die(&c);
    }
}

/* Connects the ring of fix_nodes and makes the groups. via_port > 0: rank 0
 * connects to rank 1 at this port (a proxy) instead. */
static void fix_connect(struct ring_fix *f, int R, int timeout_ms, int via_port)
{
    char err[NET_ERR_LEN];
    net_peer_id ids[MAXR];
    for (int i = 0; i < R; i++) ids[i] = net_stage_id(0, (uint16_t)i);
    /* rank i connects to rank i+1; with two ranks one connection is the ring */
    for (int i = 0; i < R && !(R == 2 && i == 1); i++)
        ST(net_connect(f->node[i], ids[(i + 1) % R], "127.0.0.1",
                       i == 0 && via_port > 0 ? via_port : net_node_port(f->node[(i + 1) % R]), err),
           NET_OK);
    for (int i = 0; i < R; i++) {
        ST(net_wait_peer(f->node[i], ids[(i + 1) % R], 10000, err), NET_OK);
        ST(net_wait_peer(f->node[i], ids[(i + R - 1) % R], 10000, err), NET_OK);
        f->g[i] = coll_group_new(f->node[i], ids, R, i, timeout_ms, err);
        if (!f->g[i]) fprintf(stderr, "coll_group_new: %s\n", err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(f->g[i]);
    }
}

static void fix_up(struct ring_fix *f, int R, int timeout_ms)
{
    fix_nodes(f, R);
    fix_connect(f, R, timeout_ms, 0);
}

/* Every rank's receive mode (coll.h, enum coll_rx); mode < 0: rank i gets
 * COLL_RX_SCRATCH when i is even, COLL_RX_POOL when odd (the wire is the same). */
static void fix_rx(struct ring_fix *f, int mode, size_t slice)
{
    char err[ERR_LEN];
    for (int i = 0; i < f->R; i++)
        ST(coll_group_set_rx(f->g[i], mode >= 0 ? mode : i % 2 ? COLL_RX_POOL : COLL_RX_SCRATCH, slice, err), 0);
}

static void fix_down(struct ring_fix *f)
{
    for (int i = 0; i < f->R; i++) {
        coll_group_free(f->g[i]);
        net_node_free(f->node[i]);
    }
}

struct job {
    struct ring_fix *f;
    int rank, op, root, rc;
    float *buf;
    size_t n;
    uint64_t tag;
    char err[ERR_LEN];
    double secs;
    long nvcsw; /* the calling thread's voluntary context switches inside the collective */
};

static void *job_main(void *arg)
{
    struct job *j = arg;
    coll_group *g = j->f->g[j->rank];
    struct timespec a, b;
    struct rusage ua, ub;
    getrusage(RUSAGE_THREAD, &ua);
    clock_gettime(CLOCK_MONOTONIC, &a);
    j->err[0] = 0;
    switch (j->op) {
    case OP_AR: j->rc = coll_allreduce_sum(g, j->buf, j->n, j->tag, j->err); break;
    case OP_RS: j->rc = coll_reduce_scatter(g, j->buf, j->n, j->tag, j->err); break;
    case OP_AG: j->rc = coll_allgather(g, j->buf, j->n, j->tag, j->err); break;
    default: j->rc = coll_broadcast(g, j->buf, j->n, j->root, j->tag, j->err); break;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    getrusage(RUSAGE_THREAD, &ub);
    j->secs = (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9;
    j->nvcsw = ub.ru_nvcsw - ua.ru_nvcsw;
    return NULL;
}

/* Runs op on every rank at once (bufs[i] is rank i's buffer); all must succeed. */
static void run_all(struct ring_fix *f, int op, float **bufs, size_t n, int root, uint64_t tag)
{
    struct job j[MAXR];
    pthread_t t[MAXR];
    for (int i = 0; i < f->R; i++) {
        j[i] = (struct job){ .f = f, .rank = i, .op = op, .root = root, .buf = bufs[i], .n = n, .tag = tag };
        pthread_create(&t[i], NULL, job_main, &j[i]);
    }
    for (int i = 0; i < f->R; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < f->R; i++) {
        if (j[i].rc) fprintf(stderr, "rank %d: %s\n", i, j[i].err);
        CU_ASSERT_EQUAL(j[i].rc, 0);
    }
}

/* Rank k's input: values spread over 2^-8 .. 2^8 with both signs, so that the
 * order of the additions shows in the low bits. */
static float input(int k, size_t j)
{
    uint64_t s = (uint64_t)(k + 1) * 0x9E3779B97F4A7C15ull ^ (j * 0xD1B54A32D192ED03ull);
    s ^= s >> 29; s *= 0xBF58476D1CE4E5B9ull; s ^= s >> 32;
    float m = (float)(s & 0xFFFFFF) / (float)0x1000000 - 0.5f;
    return ldexpf(m, (int)((s >> 24) % 17) - 8);
}

/* The documented order for segment i: (((x_{i+1} + x_{i+2}) + ...) + x_{i+R-1}) + x_i. */
static float ref_float(int R, int seg, size_t j)
{
    float s = input((seg + 1) % R, j);
    for (int k = 2; k <= R; k++) s = s + input((seg + k) % R, j);
    return s;
}

static int seg_of(size_t n, int R, size_t j)
{
    for (int i = 0; i < R; i++) {
        size_t off, len;
        coll_segment(n, R, i, &off, &len);
        if (j >= off && j < off + len) return i;
    }
    return -1;
}

static float **bufs_new(int R, size_t n)
{
    float **b = calloc(MAXR, sizeof *b);
    for (int i = 0; i < R; i++) b[i] = malloc((n ? n : 1) * sizeof(float));
    return b;
}

static void bufs_free(float **b, int R)
{
    for (int i = 0; i < R; i++) free(b[i]);
    free(b);
}

static void fill_inputs(float **b, int R, size_t n)
{
    for (int i = 0; i < R; i++)
        for (size_t j = 0; j < n; j++) b[i][j] = input(i, j);
}

/* All-reduce: bitwise against ref_float, same bits on every rank, within a
 * float rounding bound of the double sum. */
static void check_allreduce(struct ring_fix *f, size_t n, uint64_t tag)
{
    int R = f->R;
    float **b = bufs_new(R, n);
    fill_inputs(b, R, n);
    run_all(f, OP_AR, b, n, 0, tag);
    size_t bad = 0, diff_ranks = 0, out = 0;
    double worst = 0;
    for (size_t j = 0; j < n; j++) {
        float want = ref_float(R, seg_of(n, R, j), j);
        double d = 0, mag = 0;
        for (int k = 0; k < R; k++) {
            d += input(k, j);
            mag += fabs(input(k, j));
        }
        if (memcmp(&b[0][j], &want, sizeof want)) bad++;
        for (int k = 1; k < R; k++) diff_ranks += memcmp(&b[k][j], &b[0][j], sizeof(float)) != 0;
        double e = fabs(b[0][j] - d);
        if (e > worst) worst = e;
        if (e > R * FLT_EPSILON * mag) out++;
    }
    if (bad || diff_ranks || out)
        fprintf(stderr, "\n  R=%d n=%zu: %zu values differ from the ordered float sum, %zu differ between "
                        "ranks, %zu out of bound of the double sum (worst %g)\n", R, n, bad, diff_ranks, out, worst);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(diff_ranks, 0);
    CU_ASSERT_EQUAL(out, 0);
    bufs_free(b, R);
}

static void check_reduce_scatter(struct ring_fix *f, size_t n, uint64_t tag)
{
    int R = f->R;
    float **b = bufs_new(R, n);
    fill_inputs(b, R, n);
    run_all(f, OP_RS, b, n, 0, tag);
    size_t bad = 0;
    for (int i = 0; i < R; i++) {
        size_t off, len;
        coll_segment(n, R, i, &off, &len);
        for (size_t j = off; j < off + len; j++) {
            float want = ref_float(R, i, j);
            bad += memcmp(&b[i][j], &want, sizeof want) != 0;
        }
    }
    if (bad) fprintf(stderr, "\n  reduce-scatter R=%d n=%zu: %zu values wrong\n", R, n, bad);
    CU_ASSERT_EQUAL(bad, 0);
    bufs_free(b, R);
}

static void check_allgather(struct ring_fix *f, size_t n, uint64_t tag)
{
    int R = f->R;
    float **b = bufs_new(R, n);
    for (int i = 0; i < R; i++) /* own segment: input; the rest: garbage */
        for (size_t j = 0; j < n; j++) b[i][j] = seg_of(n, R, j) == i ? input(i, j) : NAN;
    run_all(f, OP_AG, b, n, 0, tag);
    size_t bad = 0;
    for (int i = 0; i < R; i++)
        for (size_t j = 0; j < n; j++) {
            float want = input(seg_of(n, R, j), j);
            bad += memcmp(&b[i][j], &want, sizeof want) != 0;
        }
    if (bad) fprintf(stderr, "\n  all-gather R=%d n=%zu: %zu values wrong\n", R, n, bad);
    CU_ASSERT_EQUAL(bad, 0);
    bufs_free(b, R);
}

static void check_broadcast(struct ring_fix *f, size_t n, int root, uint64_t tag)
{
    int R = f->R;
    float **b = bufs_new(R, n);
    for (int i = 0; i < R; i++)
        for (size_t j = 0; j < n; j++) b[i][j] = i == root ? input(root, j) : NAN;
    run_all(f, OP_BC, b, n, root, tag);
    size_t bad = 0;
    for (int i = 0; i < R; i++)
        for (size_t j = 0; j < n; j++) {
            float want = input(root, j);
            bad += memcmp(&b[i][j], &want, sizeof want) != 0;
        }
    if (bad) fprintf(stderr, "\n  broadcast R=%d n=%zu root %d: %zu values wrong\n", R, n, root, bad);
    CU_ASSERT_EQUAL(bad, 0);
    bufs_free(b, R);
}

static void every_op_rx(int R, int mode, size_t slice)
{
    struct ring_fix f;
    fix_up(&f, R, TIMEOUT_MS);
    fix_rx(&f, mode, slice);
    size_t sizes[] = { 0, 1, (size_t)R - 1, (size_t)R + 1, 1000, (1u << 20) + 3 };
    uint64_t tag = 1;
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        size_t n = sizes[s];
        check_allreduce(&f, n, tag++);
        check_reduce_scatter(&f, n, tag++);
        check_allgather(&f, n, tag++);
        for (int root = 0; root < R; root++) check_broadcast(&f, n, root, tag++);
    }
    /* many chunks per segment (12 bytes: 3 floats) change nothing, not even a bit */
    char err[ERR_LEN];
    for (int i = 0; i < R; i++) ST(coll_group_set_chunk(f.g[i], 12, err), 0);
    check_allreduce(&f, 1000, tag++);
    check_allreduce(&f, 37, tag++);
    check_reduce_scatter(&f, 1000, tag++);
    check_allgather(&f, 1001, tag++);
    check_broadcast(&f, 1000, R - 1, tag++);
    /* the same tag again after it completed is a new collective */
    check_allreduce(&f, 100, 1);
    fix_down(&f);
}

static void every_op(int R) { every_op_rx(R, COLL_RX_POOL, COLL_RX_SLICE_DEFAULT); }

static void test_r2(void) { every_op(2); }
static void test_r3(void) { every_op(3); }
static void test_r4(void) { every_op(4); }
static void test_r5(void) { every_op(5); }

/* COLL_RX_SCRATCH: the reduce-scatter's chunks read in slices and added as
 * they come give bitwise the same results: slices of 4 KiB (256 per 1 MiB
 * chunk), of 4160 bytes (a chunk is not a whole number of them: the last is
 * short), and larger than the chunk (12-byte chunks: the slice is the
 * chunk); and with the ranks in different modes. */
static void test_scratch_r2(void) { every_op_rx(2, COLL_RX_SCRATCH, 4096); }
static void test_scratch_r3(void) { every_op_rx(3, COLL_RX_SCRATCH, 4160); }
static void test_scratch_r4(void) { every_op_rx(4, COLL_RX_SCRATCH, COLL_RX_SLICE_DEFAULT); }
static void test_scratch_r5(void) { every_op_rx(5, COLL_RX_SCRATCH, 4160); }
static void test_mixed_rx(void)
{
    every_op_rx(3, -1, 4096);
    every_op_rx(4, -1, 65536);
}

/* Rank 2 of 4 goes away while the others are inside an all-reduce: they fail
 * with a message naming the collective and a peer, well before hanging. */
static void test_peer_dies(void)
{
    struct ring_fix f;
    fix_up(&f, 4, DIE_TIMEOUT_MS);
    size_t n = 1u << 20;
    float **b = bufs_new(4, n);
    fill_inputs(b, 4, n);
    struct job j[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        if (i == 2) continue;
        j[i] = (struct job){ .f = &f, .rank = i, .op = OP_AR, .buf = b[i], .n = n, .tag = 9 };
        pthread_create(&t[i], NULL, job_main, &j[i]);
    }
    usleep(200000);
    coll_group_free(f.g[2]);
    net_node_free(f.node[2]);
    f.g[2] = NULL;
    f.node[2] = NULL;
    for (int i = 0; i < 4; i++) {
        if (i == 2) continue;
        pthread_join(t[i], NULL);
        printf("\n  rank %d after %.2f s: %s", i, j[i].secs, j[i].err);
        CU_ASSERT_EQUAL(j[i].rc, -1);
        CU_ASSERT_PTR_NOT_NULL(strstr(j[i].err, "all-reduce"));
        CU_ASSERT_PTR_NOT_NULL(strstr(j[i].err, "stage 0 replica"));
        CU_ASSERT(j[i].secs < DIE_TIMEOUT_MS / 1000.0 + 5); /* no hang; not a timing test */
    }
    /* the neighbours of the dead rank name it */
    CU_ASSERT_PTR_NOT_NULL(strstr(j[1].err, "replica 2"));
    CU_ASSERT_PTR_NOT_NULL(strstr(j[3].err, "replica 2"));
    bufs_free(b, 4);
    fix_down(&f);
}

/* Many chunks per step (1 KiB chunks: a pool of 256, credits of 64): the
 * reduce-scatter's flow control runs hundreds of credits per collective and
 * changes no bit; back to back, as a training step's buckets run. */
static void test_credits(void)
{
    char err[ERR_LEN];
    for (int R = 3; R <= 5; R++)
        for (int mode = COLL_RX_POOL; mode <= COLL_RX_SCRATCH; mode++) {
            struct ring_fix f;
            fix_up(&f, R, TIMEOUT_MS);
            fix_rx(&f, mode, 4096);
            for (int i = 0; i < R; i++) ST(coll_group_set_chunk(f.g[i], 1024, err), 0);
            for (uint64_t tag = 1; tag <= 3; tag++) check_allreduce(&f, (1u << 18) + 5 + (size_t)tag, tag);
            check_reduce_scatter(&f, (1u << 18) + 1, 4);
            fix_down(&f);
        }
}

/* The reduce-scatter's scratch is a pool of chunks, not segments: 16 MiB
 * among 2, 3 or 4 ranks in 4 KiB chunks needs 256 chunks of it (1 MiB), where
 * one, two or three segments (8, 10.7 or 12 MiB) were held before (R = 2
 * paces its sends by its own adds, with no credits); and no chunk arrives
 * before its receive is posted,
 * but the one a rank sends before its neighbour's ready signal (coll.h,
 * Messages). */
static void test_pool_bounded(void)
{
    char err[ERR_LEN];
    size_t n = 1u << 22, chunk = 4096;
    for (int k = 0; k < 6; k++) { /* R = 2, 3, 4 in either mode */
        int R = 2 + k / 2, mode = k % 2 ? COLL_RX_SCRATCH : COLL_RX_POOL;
        struct ring_fix f;
        fix_up(&f, R, TIMEOUT_MS);
        fix_rx(&f, mode, 8192); /* scratch: a slice is at most a chunk */
        for (int i = 0; i < R; i++) ST(coll_group_set_chunk(f.g[i], chunk, err), 0);
        float **b = bufs_new(R, n);
        for (int i = 0; i < R; i++) memset(b[i], 0, n * sizeof(float));
        for (uint64_t tag = 1; tag <= 4; tag++) run_all(&f, OP_AR, b, n, 0, tag);
        for (int i = 0; i < R; i++) {
            net_stats st;
            ST(net_peer_stats(f.node[i], net_stage_id(0, (uint16_t)((i + R - 1) % R)), &st), NET_OK);
            size_t scratch = coll_group_scratch_bytes(f.g[i]), most = mode == COLL_RX_SCRATCH ? chunk : 256 * chunk;
            if (scratch > most || st.unclaimed_max > chunk)
                fprintf(stderr, "\n  R=%d rank %d: scratch %zu bytes (at most %zu), unclaimed_max %llu (at most %zu)\n",
                        R, i, scratch, most, (unsigned long long)st.unclaimed_max, chunk);
            CU_ASSERT(scratch > 0 && scratch <= most);
            CU_ASSERT(st.unclaimed_max <= chunk);
        }
        bufs_free(b, R);
        fix_down(&f);
    }
}

static void test_bad_args(void)
{
    char err[ERR_LEN];
    struct net_node *n = listener(net_stage_id(0, 0));
    net_peer_id ids[3] = { net_stage_id(0, 0), net_stage_id(0, 1), net_stage_id(0, 1) };
    CU_ASSERT_PTR_NULL(coll_group_new(n, ids, 3, 0, 1000, err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "member 1 and member 2"));
    CU_ASSERT_PTR_NULL(coll_group_new(n, ids, 2, 2, 1000, err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "rank 2"));
    CU_ASSERT_PTR_NULL(coll_group_new(n, ids, 0, 0, 1000, err));
    coll_group *g = coll_group_new(n, ids, 2, 0, 1000, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    float x[4] = { 0 };
    CU_ASSERT_EQUAL(coll_broadcast(g, x, 4, 2, 1, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "root 2"));
    CU_ASSERT_EQUAL(coll_group_set_chunk(g, 2, err), -1);
    coll_group_free(g);
    /* a group of one: every collective is a no-op */
    g = coll_group_new(n, ids, 1, 0, 1000, err);
    float y[3] = { 1, 2, 3 };
    CU_ASSERT_EQUAL(coll_allreduce_sum(g, y, 3, 1, err), 0);
    CU_ASSERT_EQUAL(coll_broadcast(g, y, 3, 0, 1, err), 0);
    CU_ASSERT(y[0] == 1 && y[1] == 2 && y[2] == 3);
    coll_group_free(g);
    coll_group_free(NULL);
    net_node_free(n);
    size_t off, len, tot = 0;
    for (int i = 0; i < 4; i++) { /* 10 among 4: 3 3 2 2 */
        coll_segment(10, 4, i, &off, &len);
        CU_ASSERT_EQUAL(off, tot);
        CU_ASSERT_EQUAL(len, i < 2 ? 3u : 2u);
        tot += len;
    }
}

/* The vectorised add is the scalar loop bit for bit, at every length and
 * alignment (head and tail of the vector loop), denormals and signed zeros
 * included; and src is the left operand (the received partial sum). */
static void test_add_f32(void)
{
    enum { N = 300 };
    float d[N + 16], s[N + 16], ref[N + 16];
    uint32_t x = 12345;
    for (size_t len = 0; len <= 80; len += 1 + len / 8)
        for (size_t a = 0; a < 5; a++) {
            for (int i = 0; i < N + 16; i++) {
                x = x * 1664525u + 1013904223u;
                d[i] = (float)(int32_t)x * 0x1p-20f;
                x = x * 1664525u + 1013904223u;
                s[i] = (x & 7) == 0 ? FLT_MIN / 4 : (x & 7) == 1 ? -0.0f : (float)(int32_t)x * 0x1p-27f;
            }
            for (int i = 0; i < N + 16; i++) ref[i] = d[i];
            for (size_t j = 0; j < len; j++) ref[a + j] = s[a + 2 + j] + ref[a + j];
            coll_add_f32(d + a, s + a + 2, len);
            CU_ASSERT(memcmp(d, ref, sizeof d) == 0); /* nothing outside [a, a+len) either */
        }
    float big_d[N], big_s[N];
    for (int i = 0; i < N; i++) big_d[i] = 1.0f, big_s[i] = 0x1p24f; /* 2^24 + 1 rounds to 2^24 */
    coll_add_f32(big_d, big_s, N);
    for (int i = 0; i < N; i++) CU_ASSERT_EQUAL(big_d[i], 0x1p24f);
}

/* coll_add_f32_crc: bitwise coll_add_f32's result, and its checksum is
 * net_crc32c_sw (the table reference) of the result, at random lengths
 * around and between multiples of COLL_CRC_BLOCK and odd alignments. */
static void test_add_f32_crc(void)
{
    enum { N = 4 * COLL_CRC_BLOCK + 64 };
    float *d = malloc(N * sizeof(float)), *d2 = malloc(N * sizeof(float)), *s = malloc(N * sizeof(float));
    uint32_t x = 777;
    size_t bad = 0;
    for (int trial = 0; trial < 60; trial++) {
        size_t fixed[] = { 0, 1, COLL_CRC_BLOCK - 1, COLL_CRC_BLOCK, COLL_CRC_BLOCK + 1, 3 * COLL_CRC_BLOCK + 5 };
        x = x * 1664525u + 1013904223u;
        size_t len = trial < 6 ? fixed[trial] : x % (4 * COLL_CRC_BLOCK), a = (x >> 20) % 7;
        for (size_t i = 0; i < N; i++) {
            x = x * 1664525u + 1013904223u;
            d[i] = d2[i] = (float)(int32_t)x * 0x1p-20f;
            x = x * 1664525u + 1013904223u;
            s[i] = (x & 15) == 0 ? -0.0f : (float)(int32_t)x * 0x1p-27f;
        }
        uint32_t crc = coll_add_f32_crc(d + a, s + a + 1, len);
        coll_add_f32(d2 + a, s + a + 1, len);
        int ok = memcmp(d, d2, N * sizeof(float)) == 0 && crc == net_crc32c_sw(0, d2 + a, len * sizeof(float));
        if (!ok) {
            fprintf(stderr, "\n  coll_add_f32_crc: length %zu at offset %zu differs\n", len, a);
            bad++;
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    free(d);
    free(d2);
    free(s);
}

/* --- a TCP proxy that flips one bit of what rank 0 sends rank 1 --------------- */
struct proxy {
    int lfd, port, target;
    _Atomic long c2s;     /* bytes forwarded from rank 0 to rank 1 */
    _Atomic long flip_at; /* offset in that stream to flip a bit of; -1: none */
    _Atomic int flipped;
    _Atomic long hold_at; /* offset in that stream where it stops reading rank 0 until set to -1; -1: none */
    _Atomic int pace_us;  /* > 0: a pause after each read from rank 0 (at most 64 KiB) */
    _Atomic int cut;      /* 1: close both connections (noticed within 1 ms while held) */
    pthread_t t;
};

static int put_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL); /* a rank that failed closes: no SIGPIPE */
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void *proxy_main(void *arg)
{
    struct proxy *p = arg;
    static uint8_t buf[1 << 16];
    int cfd = accept(p->lfd, NULL, NULL), sfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)p->target),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (cfd < 0 || sfd < 0 || connect(sfd, (struct sockaddr *)&a, sizeof a)) goto out;
    for (int idle = 0; idle < 10000 && !p->cut;) { /* until either end closes, a cut, or 10 s of nothing */
        long hold = p->hold_at;
        int held = hold >= 0 && p->c2s >= hold; /* rank 0's bytes stay in the sockets */
        struct pollfd pf[2] = { { held ? -1 : cfd, POLLIN, 0 }, { sfd, POLLIN, 0 } };
        int pr = poll(pf, 2, held ? 1 : 10000);
        if (pr < 0) break;
        idle = pr ? 0 : idle + (held ? 1 : 10000);
        if (pf[0].revents) {
            size_t want = hold >= 0 && hold - p->c2s < (long)sizeof buf ? (size_t)(hold - p->c2s) : sizeof buf;
            ssize_t r = read(cfd, buf, want);
            if (r <= 0) break;
            if (p->pace_us > 0) usleep((useconds_t)p->pace_us);
            long at = p->flip_at, base = p->c2s;
            if (at >= base && at < base + r) {
                buf[at - base] ^= 0x10;
                p->flipped = 1;
            }
            p->c2s = base + r;
            if (put_all(sfd, buf, (size_t)r)) break;
        }
        if (pf[1].revents) {
            ssize_t r = read(sfd, buf, sizeof buf);
            if (r <= 0 || put_all(cfd, buf, (size_t)r)) break;
        }
    }
out:
    if (cfd >= 0) close(cfd);
    if (sfd >= 0) close(sfd);
    return NULL;
}

static void proxy_start(struct proxy *p, int target)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    p->lfd = socket(AF_INET, SOCK_STREAM, 0);
    p->target = target;
    p->c2s = 0;
    p->flip_at = -1;
    p->flipped = 0;
    p->hold_at = -1;
    p->pace_us = 0;
    p->cut = 0;
    CU_ASSERT_FATAL(p->lfd >= 0 && !bind(p->lfd, (struct sockaddr *)&a, sizeof a) && !listen(p->lfd, 1) &&
                    !getsockname(p->lfd, (struct sockaddr *)&a, &len));
    p->port = ntohs(a.sin_port);
    pthread_create(&p->t, NULL, proxy_main, p);
}

/* A bit flipped on the wire inside a chunk is caught, wherever the chunk's
 * CRC is checked: R = 3, 64 KiB chunks (4 per segment), rank 0's frames to
 * rank 1 pass through a proxy that flips one payload bit of chunk `frame` of
 * the stream (0-7: the reduce-scatter, whose sums go on with the CRC their
 * add computed; 8-15: the all-gather, forwarded with the CRC it came with).
 * Rank 1 fails naming a checksum
 * mismatch (with every frame sealed, PIPETRAIN_TEST_ENCRYPT, the AEAD's
 * authentication failure comes first); no rank returns success with other bits than the reference; no
 * rank hangs. */
static void flip_trial_rx(int frame, int step, int mode, long at)
{
    char err[ERR_LEN];
    enum { R = 3, CH = 65536 };
    size_t n = (size_t)R * 4 * (CH / sizeof(float));
    struct ring_fix f;
    struct proxy px;
    fix_nodes(&f, R);
    proxy_start(&px, net_node_port(f.node[1]));
    fix_connect(&f, R, DIE_TIMEOUT_MS, px.port);
    for (int i = 0; i < R; i++) ST(coll_group_set_chunk(f.g[i], CH, err), 0);
    fix_rx(&f, mode, 4096);
    float **b = bufs_new(R, n);
    fill_inputs(b, R, n);
    px.flip_at = px.c2s + (long)frame * (CH + NET_HDR_LEN) + NET_HDR_LEN + at;
    struct job j[R];
    pthread_t t[R];
    for (int i = 0; i < R; i++) {
        j[i] = (struct job){ .f = &f, .rank = i, .op = OP_AR, .buf = b[i], .n = n, .tag = 5 };
        pthread_create(&t[i], NULL, job_main, &j[i]);
    }
    for (int i = 0; i < R; i++) pthread_join(t[i], NULL);
    CU_ASSERT_EQUAL(px.flipped, 1);
    printf("\n  flip in frame %d (%s, byte %ld): rank 1: %s", frame, coll_group_rx(f.g[1], NULL), at, j[1].err);
    CU_ASSERT_EQUAL(j[1].rc, -1);
    const char *enc = getenv("PIPETRAIN_TEST_ENCRYPT");
    int sealed = enc && *enc && strcmp(enc, "0") != 0;
    CU_ASSERT_EQUAL(net_node_seals(f.node[1]), sealed); /* sealed, the ring's adds compute no CRC */
    CU_ASSERT_EQUAL(net_node_seals(NULL), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(j[1].err, sealed ? "authentication failed" : "checksum mismatch"));
    char want[32];
    snprintf(want, sizeof want, "ring step %d", step);
    CU_ASSERT_PTR_NOT_NULL(strstr(j[1].err, want));
    size_t wrong = 0;
    for (int i = 0; i < R; i++) {
        CU_ASSERT(j[i].secs < DIE_TIMEOUT_MS / 1000.0 + 5); /* no hang; not a timing test */
        if (j[i].rc != 0) continue;
        for (size_t k = 0; k < n; k++) {
            float want_v = ref_float(R, seg_of(n, R, k), k);
            wrong += memcmp(&b[i][k], &want_v, sizeof want_v) != 0;
        }
    }
    CU_ASSERT_EQUAL(wrong, 0);
    bufs_free(b, R);
    fix_down(&f);
    pthread_join(px.t, NULL);
    close(px.lfd);
}

static void flip_trial(int frame, int step) { flip_trial_rx(frame, step, COLL_RX_POOL, 1000); }

static void test_flipped_bit(void)
{
    flip_trial(3, 0);  /* reduce-scatter step 0, chunk 3: own data, CRC by net_send */
    flip_trial(6, 1);  /* reduce-scatter step 1, chunk 2: a sum sent with its fused CRC */
    flip_trial(10, 2); /* all-gather step 2, chunk 2: the final sum, fused CRC */
    flip_trial(13, 3); /* all-gather step 3, chunk 1: forwarded with the CRC it came with */
}

/* COLL_RX_SCRATCH adds each 4 KiB slice of a reduce-scatter chunk into place
 * before the chunk's CRC can be checked: a bit flipped in the first or the
 * last slice of a chunk still fails the collective at rank 1 as a checksum
 * mismatch naming rank 0, and no rank returns other bits (flip_trial_rx). */
static void test_flipped_bit_scratch(void)
{
    flip_trial_rx(3, 0, COLL_RX_SCRATCH, 1000);    /* reduce-scatter step 0, first slice */
    flip_trial_rx(3, 0, COLL_RX_SCRATCH, 65000);   /* ... its last slice */
    flip_trial_rx(6, 1, COLL_RX_SCRATCH, 40000);   /* reduce-scatter step 1: a sum sent with its fused CRC */
    flip_trial_rx(10, 2, COLL_RX_SCRATCH, 1000);   /* all-gather: the final sum, whose CRC the slices made */
    flip_trial_rx(13, 3, COLL_RX_SCRATCH, 1000);   /* all-gather: forwarded */
}

/* COLL_RX_SCRATCH, a chunk that arrives before its receive is posted (rank 1
 * enters the collective 300 ms after the others: rank 0's first chunk, sent
 * before the ready signal, waits in net/'s own buffer) is handed to the
 * slices from there: the same bits, for R = 2 and 3. */
static void test_scratch_late_rank(void)
{
    for (int R = 2; R <= 3; R++) {
        struct ring_fix f;
        fix_up(&f, R, TIMEOUT_MS);
        fix_rx(&f, COLL_RX_SCRATCH, 4160);
        size_t n = (size_t)R * (3u << 18) + 7; /* 3 MiB a segment: 3 chunks, the first one early */
        float **b = bufs_new(R, n);
        fill_inputs(b, R, n);
        struct job j[MAXR];
        pthread_t t[MAXR];
        for (int i = 0; i < R; i++) {
            if (i == 1) usleep(300000);
            j[i] = (struct job){ .f = &f, .rank = i, .op = OP_AR, .buf = b[i], .n = n, .tag = 11 };
            pthread_create(&t[i], NULL, job_main, &j[i]);
        }
        for (int i = 0; i < R; i++) pthread_join(t[i], NULL);
        net_stats st;
        ST(net_peer_stats(f.node[1], net_stage_id(0, 0), &st), NET_OK);
        CU_ASSERT(st.unclaimed_max > 0); /* the path this test is for was taken */
        size_t wrong = 0;
        for (int i = 0; i < R; i++) {
            if (j[i].rc) fprintf(stderr, "\n  rank %d: %s\n", i, j[i].err);
            CU_ASSERT_EQUAL(j[i].rc, 0);
            for (size_t k = 0; k < n; k++) {
                float want = ref_float(R, seg_of(n, R, k), k);
                wrong += memcmp(&b[i][k], &want, sizeof want) != 0;
            }
        }
        if (wrong) fprintf(stderr, "\n  R=%d: %zu values wrong\n", R, wrong);
        CU_ASSERT_EQUAL(wrong, 0);
        bufs_free(b, R);
        fix_down(&f);
    }
}

/* PIPETRAIN_RING_RX / PIPETRAIN_RING_RX_SLICE: read by coll_group_new; a bad
 * value is refused naming the variable and the value. */
static void test_rx_env(void)
{
    char err[ERR_LEN];
    size_t slice;
    struct net_node *n = listener(net_stage_id(0, 0));
    net_peer_id ids[2] = { net_stage_id(0, 0), net_stage_id(0, 1) };
    setenv(COLL_RX_ENV, "scratch", 1);
    setenv(COLL_RX_SLICE_ENV, "131072", 1);
    coll_group *g = coll_group_new(n, ids, 2, 0, 1000, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    CU_ASSERT_STRING_EQUAL(coll_group_rx(g, &slice), "scratch");
    CU_ASSERT_EQUAL(slice, 131072);
    CU_ASSERT_EQUAL(coll_group_set_rx(g, COLL_RX_POOL, 4096, err), 0);
    CU_ASSERT_STRING_EQUAL(coll_group_rx(g, &slice), "pool");
    CU_ASSERT_EQUAL(coll_group_set_rx(g, COLL_RX_SCRATCH, 4000, err), -1); /* not a multiple of 64 */
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "4000"));
    CU_ASSERT_EQUAL(coll_group_set_rx(g, 7, 4096, err), -1);
    coll_group_free(g);
    setenv(COLL_RX_ENV, "pool", 1);
    unsetenv(COLL_RX_SLICE_ENV);
    g = coll_group_new(n, ids, 2, 0, 1000, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    CU_ASSERT_STRING_EQUAL(coll_group_rx(g, &slice), "pool");
    CU_ASSERT_EQUAL(slice, COLL_RX_SLICE_DEFAULT);
    coll_group_free(g);
    const char *bad_mode[] = { "Scratch", "pool ", "1" }, *bad_slice[] = { "100", "65537", "-4096", "64k", "99999999999" };
    for (size_t i = 0; i < 3; i++) {
        setenv(COLL_RX_ENV, bad_mode[i], 1);
        CU_ASSERT_PTR_NULL(coll_group_new(n, ids, 2, 0, 1000, err));
        CU_ASSERT_PTR_NOT_NULL(strstr(err, COLL_RX_ENV));
        CU_ASSERT_PTR_NOT_NULL(strstr(err, bad_mode[i]));
    }
    setenv(COLL_RX_ENV, "scratch", 1);
    for (size_t i = 0; i < 5; i++) {
        setenv(COLL_RX_SLICE_ENV, bad_slice[i], 1);
        CU_ASSERT_PTR_NULL(coll_group_new(n, ids, 2, 0, 1000, err));
        CU_ASSERT_PTR_NOT_NULL(strstr(err, COLL_RX_SLICE_ENV));
        CU_ASSERT_PTR_NOT_NULL(strstr(err, bad_slice[i]));
    }
    unsetenv(COLL_RX_ENV);
    unsetenv(COLL_RX_SLICE_ENV);
    net_node_free(n);
}

/* The ring runs on the network threads (coll.c, the engine): the calling
 * thread posts the collective and sleeps until its end, instead of waking
 * for every chunk. 16 MiB among 3 ranks in 256 KiB chunks (larger than
 * net/'s direct writes) is 88 receives and 88 sends per rank; the calling
 * thread sleeps once for the engine and once for its last sends (however
 * many are still queued: test_tail_one_wake), and may wake every wait slice
 * (100 ms), twice with the lock it wakes into, and a few times more for a
 * lock the network thread holds: 8 and 2 a slice, never per chunk, sealed
 * or not (1 to 4 seen in 50 runs under two niced `yes`). Not a timing test:
 * the bound grows with the time taken. */
static void test_no_handoffs(void)
{
    char err[ERR_LEN];
    enum { R = 3 };
    size_t n = 1u << 22, chunk = 1u << 18, chunks = 4 * (((n + R - 1) / R * sizeof(float) + chunk - 1) / chunk);
    struct ring_fix f;
    fix_up(&f, R, TIMEOUT_MS);
    for (int i = 0; i < R; i++) ST(coll_group_set_chunk(f.g[i], chunk, err), 0);
    float **b = bufs_new(R, n);
    fill_inputs(b, R, n);
    struct job j[R];
    pthread_t t[R];
    for (uint64_t tag = 1; tag <= 3; tag++) {
        for (int i = 0; i < R; i++) {
            j[i] = (struct job){ .f = &f, .rank = i, .op = OP_AR, .buf = b[i], .n = n, .tag = tag };
            pthread_create(&t[i], NULL, job_main, &j[i]);
        }
        for (int i = 0; i < R; i++) pthread_join(t[i], NULL);
        for (int i = 0; i < R; i++) {
            long most = 8 + (long)(j[i].secs * 20);
            printf("\n  tag %llu rank %d: %ld voluntary switches in %.3f s, %zu chunks (at most %ld)",
                   (unsigned long long)tag, i, j[i].nvcsw, j[i].secs, chunks, most);
            CU_ASSERT_EQUAL(j[i].rc, 0);
            CU_ASSERT(j[i].nvcsw <= most);
        }
    }
    bufs_free(b, R);
    fix_down(&f);
}

/* The calling thread waits for its last sends in one sleep, however many are
 * still queued: R = 3 in 128 KiB chunks, rank 0's frames to rank 1 pass
 * through a proxy (with a 64 KiB receive buffer) that stops reading them
 * after the first two ring steps. Rank 0's engine still ends (what it
 * receives comes from rank 1's earlier steps), with its sends of steps 2 and
 * 3 queued in net/ (86 chunks, less what the sockets hold: about 55); once
 * that queue has stopped growing for 100 ms the proxy lets them through, a
 * read of at most 64 KiB every 2 ms, i.e. a chunk written every 4 ms or so.
 * Waiting for each send in turn woke rank 0's thread once per chunk written
 * (24 to 56 switches seen, against 5 to 7 now); it may wake every wait slice
 * (100 ms), twice over, and a few times more. Not a timing test: the bound
 * grows with the time taken. */
static void test_tail_one_wake(void)
{
    char err[ERR_LEN];
    enum { R = 3 };
    size_t n = 1u << 22, chunk = 1u << 17, cf = chunk / sizeof(float);
    struct ring_fix f;
    struct proxy px;
    fix_nodes(&f, R);
    proxy_start(&px, net_node_port(f.node[1]));
    int small = 65536; /* else loopback's receive buffer grows to hold every queued send */
    CU_ASSERT_FATAL(setsockopt(px.lfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0);
    fix_connect(&f, R, TIMEOUT_MS, px.port);
    for (int i = 0; i < R; i++) ST(coll_group_set_chunk(f.g[i], chunk, err), 0);
    long frame = net_node_seals(f.node[0]) ? NET_SEALED_HDR_LEN + NET_SEAL_TAG : NET_HDR_LEN, steps01 = 0;
    for (int t = 0; t < 2; t++) { /* rank 0 sends segment R-t-1 at ring step t */
        size_t off, len;
        coll_segment(n, R, R - t - 1, &off, &len);
        steps01 += (long)(len * sizeof(float)) + (long)((len + cf - 1) / cf) * frame;
    }
    float **b = bufs_new(R, n);
    fill_inputs(b, R, n);
    px.hold_at = px.c2s + steps01 + (long)chunk / 2; /* inside step 2's first chunk (heartbeats are small) */
    struct job j[R];
    pthread_t t[R];
    for (int i = 0; i < R; i++) {
        j[i] = (struct job){ .f = &f, .rank = i, .op = OP_AR, .buf = b[i], .n = n, .tag = 21 };
        pthread_create(&t[i], NULL, job_main, &j[i]);
    }
    net_stats st = { 0 };
    uint64_t was = 0;
    for (int ms = 0, still = 0; ms < 3000 && (still < 100 || st.queued == 0); ms += 10) {
        usleep(10000);
        ST(net_peer_stats(f.node[0], net_stage_id(0, 1), &st), NET_OK);
        still = st.queued == was ? still + 10 : 0;
        was = st.queued;
    }
    px.pace_us = 2000;
    px.hold_at = -1;
    for (int i = 0; i < R; i++) pthread_join(t[i], NULL);
    long queued = (long)(st.queued / (chunk + (size_t)frame)), most = 4 + (long)(j[0].secs * 20);
    printf("\n  rank 0: %ld voluntary switches in %.3f s, %ld sends queued when let through (at most %ld)",
           j[0].nvcsw, j[0].secs, queued, most);
    CU_ASSERT(queued >= 8); /* the path this test is for was taken */
    CU_ASSERT(j[0].nvcsw <= most);
    size_t wrong = 0;
    for (int i = 0; i < R; i++) {
        if (j[i].rc) fprintf(stderr, "\n  rank %d: %s\n", i, j[i].err);
        CU_ASSERT_EQUAL(j[i].rc, 0);
        for (size_t k = 0; k < n && i == 0; k++) {
            float want = ref_float(R, seg_of(n, R, k), k);
            wrong += memcmp(&b[0][k], &want, sizeof want) != 0;
        }
        if (i > 0) wrong += memcmp(b[i], b[0], n * sizeof(float)) != 0;
    }
    CU_ASSERT_EQUAL(wrong, 0);
    bufs_free(b, R);
    fix_down(&f);
    pthread_join(px.t, NULL);
    close(px.lfd);
}

/* The connection to rank+1 cut once the engine has ended, with sends still
 * queued: the error names the earliest send that failed, not the last one,
 * which ring() waits for first (coll.c, the end of ring()). R = 2 in 8 MiB
 * chunks, two a segment; rank 1 is played by hand with its node: before
 * rank 0 enters the all-reduce, rank 1 has sent it all it will receive (the
 * ready signal, both ring steps' chunks), so that rank 0's engine ends in
 * its first run, with its four sends posted (a receive posted for a message
 * that is in already completes at once: net_coll.h). Rank 0's frames go
 * through a proxy (64 KiB receive buffer) that lets ring step 0 through and
 * stops reading just past it; once rank 0 has queued its last send, the
 * proxy closes both connections. Step 0's sends were written, step 1's were
 * not (8 MiB is more than the sockets hold: rank 0's send buffer grows to
 * net.ipv4.tcp_wmem's largest, 4 MiB by default): the message names step 1,
 * chunk 0, the last send being chunk 1. Every wait is bounded. */
static void test_cut_names_first_send(void)
{
    char err[ERR_LEN], dummy[1] = { 0 };
    enum { R = 2 };
    size_t chunk = 8u << 20, cf = chunk / sizeof(float), n = 4 * cf;
    uint64_t tag = 31;
    net_peer_id r0 = net_stage_id(0, 0), r1 = net_stage_id(0, 1);
    struct ring_fix f;
    struct proxy px;
    fix_nodes(&f, R);
    proxy_start(&px, net_node_port(f.node[1]));
    int small = 65536; /* else loopback's receive buffer grows to hold rank 0's sends */
    CU_ASSERT_FATAL(setsockopt(px.lfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0);
    fix_connect(&f, R, TIMEOUT_MS, px.port);
    ST(coll_group_set_chunk(f.g[0], chunk, err), 0);
    /* rank 1's part: the ready signal of step 0, then segment 0 (step 0, the
     * reduce-scatter) and segment 1 (step 1, the all-gather), any values */
    float *b = calloc(n, sizeof(float));
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    struct net_op *op[5] = { NULL };
    ST(net_send(f.node[1], r0, (net_key){ COLL_T_ALLREDUCE, tag, COLL_MB_READY, 0 }, dummy, 0, 10000, &op[0], err),
       NET_OK);
    for (int k = 0; k < 4; k++)
        ST(net_send(f.node[1], r0, (net_key){ COLL_T_ALLREDUCE, tag, (uint32_t)(k / 2), (uint32_t)(k % 2) },
                    b + (size_t)k * cf, chunk, 10000, &op[k + 1], err),
           NET_OK);
    for (int k = 0; k < 5; k++) {
        ST(net_wait(op[k], 10000, err), NET_OK);
        net_op_free(op[k]);
    }
    net_stats st = { 0 };
    for (int ms = 0; ms < 10000 && st.unclaimed < 4 * chunk; ms += 10) {
        ST(net_peer_stats(f.node[0], r1, &st), NET_OK);
        if (st.unclaimed < 4 * chunk) usleep(10000);
    }
    CU_ASSERT_FATAL(st.unclaimed >= 4 * chunk); /* all in at rank 0 before it starts */
    long frame = net_node_seals(f.node[0]) ? NET_SEALED_HDR_LEN + NET_SEAL_TAG : NET_HDR_LEN;
    /* rank 0's ready signal and step 0, and room for heartbeats: inside step 1's chunk 0 */
    px.hold_at = px.c2s + frame + 2 * ((long)chunk + frame) + 65536;
    struct job j = { .f = &f, .rank = 0, .op = OP_AR, .buf = b, .n = n, .tag = tag };
    pthread_t t;
    pthread_create(&t, NULL, job_main, &j);
    /* held, and step 1's chunk 1 queued (more bytes wait than chunk 0's frame
     * holds): the engine, which posted it, ended in the same run */
    int ready = 0;
    for (int ms = 0; ms < 10000 && !ready; ms += 10) {
        usleep(10000);
        ST(net_peer_stats(f.node[0], r1, &st), NET_OK);
        ready = px.c2s >= px.hold_at && st.queued > chunk + chunk / 8;
    }
    CU_ASSERT(ready);
    px.cut = 1;
    pthread_join(t, NULL);
    printf("\n  rank 0 after %.2f s (%llu bytes queued at the cut): %s", j.secs, (unsigned long long)st.queued,
           j.err);
    CU_ASSERT_EQUAL(j.rc, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(j.err, "coll all-reduce (tag 31, rank 0 of 2): send to stage 0 replica 1 "
                                         "(ring step 1, chunk 0): "));
    CU_ASSERT(j.secs < TIMEOUT_MS / 1000.0 + 5); /* no hang; not a timing test */
    free(b);
    fix_down(&f);
    pthread_join(px.t, NULL);
    close(px.lfd);
}

/* coll_group_abort ends a collective waiting on a silent (live) member at
 * the next wait slice, well before the group's timeout, with a message;
 * the group is then freed (its engine unscheduled) with no hang. */
static void test_abort(void)
{
    enum { R = 3 };
    size_t n = 1u << 20;
    struct ring_fix f;
    fix_up(&f, R, 60000);
    float **b = bufs_new(R, n);
    fill_inputs(b, R, n);
    struct job j[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) { /* rank 2 never calls */
        j[i] = (struct job){ .f = &f, .rank = i, .op = OP_AR, .buf = b[i], .n = n, .tag = 3 };
        pthread_create(&t[i], NULL, job_main, &j[i]);
    }
    usleep(300000);
    coll_group_abort(f.g[0]);
    coll_group_abort(f.g[1]);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        printf("\n  rank %d after %.2f s: %s", i, j[i].secs, j[i].err);
        CU_ASSERT_EQUAL(j[i].rc, -1);
        CU_ASSERT_PTR_NOT_NULL(strstr(j[i].err, "aborted by this process"));
        CU_ASSERT_PTR_NOT_NULL(strstr(j[i].err, "all-reduce (tag 3"));
        CU_ASSERT(j[i].secs < 30); /* not the 60 s timeout; not a timing test */
    }
    bufs_free(b, R);
    fix_down(&f);
}

int main(void)
{
    CU_TestInfo tests[] = {
        { "bad arguments, segments, a group of one", test_bad_args },
        { "coll_add_f32 is the scalar loop, bit for bit", test_add_f32 },
        { "coll_add_f32_crc: coll_add_f32's bits, net_crc32c_sw's sums", test_add_f32_crc },
        { "a bit flipped on the wire: a checksum mismatch, never wrong bits", test_flipped_bit },
        { "scratch receive: a flipped bit fails the collective, never wrong bits", test_flipped_bit_scratch },
        { "PIPETRAIN_RING_RX and _SLICE: read, bad values refused", test_rx_env },
        { "R=2: every collective, sizes 0..2^20+3", test_r2 },
        { "R=3: every collective, sizes 0..2^20+3", test_r3 },
        { "R=4: every collective, sizes 0..2^20+3", test_r4 },
        { "R=5: every collective, sizes 0..2^20+3", test_r5 },
        { "scratch receive, R=2: every collective, the same bits", test_scratch_r2 },
        { "scratch receive, R=3: every collective, the same bits", test_scratch_r3 },
        { "scratch receive, R=4: every collective, the same bits", test_scratch_r4 },
        { "scratch receive, R=5: every collective, the same bits", test_scratch_r5 },
        { "ranks in different receive modes: the same bits", test_mixed_rx },
        { "scratch receive: a chunk that came early is added from net's buffer", test_scratch_late_rank },
        { "1 KiB chunks: hundreds of credits, the same bits", test_credits },
        { "the scratch is a pool of chunks; nothing lands unclaimed", test_pool_bounded },
        { "a rank dies mid-collective: the others fail, no hang", test_peer_dies },
        { "the calling thread does not wake per chunk", test_no_handoffs },
        { "the last sends, however many are queued: one wake", test_tail_one_wake },
        { "a cut after the engine ended names the earliest failed send", test_cut_names_first_send },
        { "coll_group_abort ends a collective on a silent member", test_abort },
        CU_TEST_INFO_NULL,
    };
    return tests_run("coll", tests);
}
