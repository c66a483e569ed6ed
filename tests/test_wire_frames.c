/* test_wire_frames.c — tensors on the wire between two real nodes on
 * loopback (issue 14): the frame's payload tag (NET_SEND_TAG / net_op_tag)
 * reaches the receiver whether the receive was posted before or after the
 * frame arrived, and the stage's check of a received tensor
 * (stage/runtime_wire.c rt_wire_check) refuses a frame whose encoding or
 * length is not the topology's, naming the message and both values; a payload
 * longer than the encoded size is refused by the transport. */
#include "base/base.h"
#include "base/wire_codec.h"
#include "stage/rt.h"
#include "topo/topo.h"
#include "tests/net_fixture.h"
#include "tests/tests.h"

static struct net_node *A, *B; /* A = stage 0 sends, B = stage 1 receives */
static topo T;
static rt R;
static char rerr[ERR_LEN];

static void setup(void)
{
    char err[ERR_LEN];
    topo_free(&T);
    char *sets[] = { "train.batch_size=8", "wire.activations=int8", "wire.gradients=bf16" };
    int rc = topo_load(&T, "topologies/shakespeare-2stage.json", sets, 3, err);
    if (rc) fprintf(stderr, "\n  %s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    memset(&R, 0, sizeof R);
    R.t = &T;
    R.K = 1;
    R.err = rerr;
    R.Bm = 2;
    R.T = 64;
    R.C = 128;
    R.M = 4;
    R.V = 2;
    if (!A) pair(&A, &B);
}

/* Sends len bytes with tag from A and receives them on B into a buffer of cap
 * bytes (posted before the send when early, else after it arrived); returns
 * the completed receive (caller frees) or NULL when the receive failed (its
 * reason in why). */
static struct net_op *xfer(uint64_t len, int tag, uint64_t cap, int early, uint32_t mb, char *why)
{
    static uint8_t src[1 << 17], dst[1 << 17];
    char err[NET_ERR_LEN];
    net_key k = { NET_TYPE_USER + 1, 1, mb, 1 };
    struct net_op *rx = NULL, *tx = NULL;
    fill(src, len, mb);
    if (early) ST(net_recv_post(B, net_stage_id(0, 0), k, dst, cap, &rx, err), NET_OK);
    ST(net_send_ex(A, net_stage_id(1, 0), k, src, len, NET_SEND_TAG(tag), 0, 5000, &tx, err), NET_OK);
    ST(net_wait(tx, 5000, err), NET_OK);
    net_op_free(tx);
    if (!early) {
        usleep(50000); /* let it arrive unclaimed */
        ST(net_recv_post(B, net_stage_id(0, 0), k, dst, cap, &rx, err), NET_OK);
    }
    int st = net_wait(rx, 5000, why);
    if (st != NET_OK) {
        net_op_free(rx);
        return NULL;
    }
    CU_ASSERT(memcmp(src, dst, len) == 0);
    return rx;
}

static void test_tag_delivered(void)
{
    setup();
    char why[NET_ERR_LEN];
    for (int early = 0; early < 2; early++) {
        struct net_op *op = xfer(1000, WIRE_INT8, 4096, early, (uint32_t)(10 + early), why);
        CU_ASSERT_PTR_NOT_NULL_FATAL(op);
        CU_ASSERT_EQUAL(net_op_tag(op), WIRE_INT8);
        CU_ASSERT_EQUAL(net_op_len(op), 1000);
        net_op_free(op);
        op = xfer(64, 0, 4096, early, (uint32_t)(20 + early), why);
        CU_ASSERT_PTR_NOT_NULL_FATAL(op);
        CU_ASSERT_EQUAL(net_op_tag(op), 0);
        net_op_free(op);
        op = xfer(8, 15, 4096, early, (uint32_t)(30 + early), why);
        CU_ASSERT_PTR_NOT_NULL_FATAL(op);
        CU_ASSERT_EQUAL(net_op_tag(op), 15);
        net_op_free(op);
    }
}

static void test_check_accepts(void)
{
    setup();
    char why[NET_ERR_LEN];
    uint64_t act = rt_wire_len(&R, 0, R.Bm), grad = rt_wire_len(&R, 1, R.Bm);
    CU_ASSERT_EQUAL(act, 16384 + 4 * 256);
    CU_ASSERT_EQUAL(grad, 2 * 16384);
    struct net_op *op = xfer(act, WIRE_INT8, act, 1, 40, why);
    CU_ASSERT_PTR_NOT_NULL_FATAL(op);
    CU_ASSERT_EQUAL(rt_wire_check(&R, 0, op, NULL, "activation F(0)"), 0);
    net_op_free(op);
    op = xfer(grad, WIRE_BF16, grad, 0, 41, why);
    CU_ASSERT_PTR_NOT_NULL_FATAL(op);
    CU_ASSERT_EQUAL(rt_wire_check(&R, 1, op, NULL, "gradient B(0)"), 0);
    net_op_free(op);
    /* evaluation: any whole number of sequences, here 1 */
    op = xfer(rt_wire_len(&R, 0, 1), WIRE_INT8, act, 1, 42, why);
    size_t rows = 0;
    CU_ASSERT_EQUAL(rt_wire_check(&R, 0, op, &rows, "evaluation batch 0"), 0);
    CU_ASSERT_EQUAL(rows, 1);
    net_op_free(op);
}

static void test_check_refuses(void)
{
    setup();
    char why[NET_ERR_LEN];
    uint64_t act = rt_wire_len(&R, 0, R.Bm);
    /* bf16 where int8 is configured (the right length for bf16 would not fit: use int8's) */
    struct net_op *op = xfer(act, WIRE_BF16, act, 1, 50, why);
    CU_ASSERT_EQUAL(rt_wire_check(&R, 0, op, NULL, "waiting for F(0) activation from stage 0"), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(rerr, "stage 1 (127.0.0.1:"));
    CU_ASSERT_PTR_NOT_NULL(strstr(rerr, "F(0) activation from stage 0: the frame's payload encoding is bf16 (tag 1), wire.activations is int8"));
    net_op_free(op);
    /* an unknown tag */
    op = xfer(act, 9, act, 0, 51, why);
    CU_ASSERT_EQUAL(rt_wire_check(&R, 0, op, NULL, "F(1)"), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(rerr, "encoding is unknown (tag 9)"));
    net_op_free(op);
    /* the right tag, one byte short */
    op = xfer(act - 1, WIRE_INT8, act, 1, 52, why);
    CU_ASSERT_EQUAL(rt_wire_check(&R, 0, op, NULL, "F(2)"), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(rerr, "the payload is 17407 bytes, 2 sequences in int8 are 17408 bytes"));
    net_op_free(op);
    /* fp32-sized gradient where bf16 is configured: longer than the encoded
     * buffer, refused by the transport */
    op = xfer(2 * rt_wire_len(&R, 1, R.Bm), WIRE_FP32, rt_wire_len(&R, 1, R.Bm), 1, 53, why);
    CU_ASSERT_PTR_NULL(op);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "the receive buffer holds 32768"));
    /* evaluation: no whole number of sequences */
    op = xfer(rt_wire_len(&R, 0, 1) + 3, WIRE_INT8, act, 1, 54, why);
    size_t rows = 0;
    CU_ASSERT_EQUAL(rt_wire_check(&R, 0, op, &rows, "evaluation batch 3"), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(rerr, "is no whole number of sequences"));
    net_op_free(op);
}

static void test_teardown(void)
{
    net_node_free(A);
    net_node_free(B);
    A = B = NULL;
    topo_free(&T);
    CU_PASS("freed");
}

int main(void)
{
    CU_TestInfo tests[] = {
        { "the payload tag reaches the receiver (posted early and late)", test_tag_delivered },
        { "tensors of the configured encoding and length pass", test_check_accepts },
        { "a wrong encoding or length is refused, naming both", test_check_refuses },
        { "teardown", test_teardown },
        CU_TEST_INFO_NULL,
    };
    return tests_run("wire_frames", tests);
}
