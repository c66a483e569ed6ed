/* test_trace_window.c — a stage's bounded trace (stage/trace_window.h, issue
 * #10): the window keeps the most recent whole steps in push order, wraps
 * around its ring, never holds more than its capacity however many steps are
 * pushed, and a trace part always fits the payload limit, however small the
 * model (stage_max_payload), as does an all-reduce message of a grid. */
#include "coll/coll.h"
#include "stage/proto.h"
#include "stage/stage.h"
#include "stage/trace_window.h"
#include "tests/tests.h"

static proto_event ev(uint64_t step, uint32_t mb)
{
    return (proto_event){ 0, 0, 0, mb, step, (double)step + mb * 1e-3, (double)step + mb * 1e-3 + 1e-4 };
}

/* Pushes `steps` steps of `per` events each, starting at step `from`. */
static void push_steps(trace_window *w, uint64_t from, uint64_t steps, uint32_t per)
{
    for (uint64_t s = from; s < from + steps; s++)
        for (uint32_t m = 0; m < per; m++) {
            proto_event e = ev(s, m);
            trace_window_push(w, &e);
        }
}

/* 1 when the window holds exactly steps first..last, per events each, in order. */
static int holds(const trace_window *w, uint64_t first, uint64_t last, uint32_t per)
{
    size_t want = (size_t)(last - first + 1) * per;
    if (trace_window_len(w) != want || trace_window_steps(w) != last - first + 1) {
        fprintf(stderr, "\n  window holds %zu events in %zu steps, expected %zu in %llu\n", trace_window_len(w),
                trace_window_steps(w), want, (unsigned long long)(last - first + 1));
        return 0;
    }
    for (size_t i = 0; i < want; i++) {
        const proto_event *e = trace_window_at(w, i);
        uint64_t s = first + i / per;
        uint32_t m = (uint32_t)(i % per);
        if (e->step != s || e->mb != m || e->t0 != ev(s, m).t0) {
            fprintf(stderr, "\n  event %zu is step %llu mb %u, expected step %llu mb %u\n", i,
                    (unsigned long long)e->step, e->mb, (unsigned long long)s, m);
            return 0;
        }
    }
    return 1;
}

static void test_keeps_recent_steps(void)
{
    trace_window *w = trace_window_new(4, 1000);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    push_steps(w, 0, 3, 5);
    CU_ASSERT(holds(w, 0, 2, 5));
    CU_ASSERT_EQUAL(trace_window_dropped(w), 0);
    push_steps(w, 3, 7, 5); /* steps 0..9: the last 4 stay */
    CU_ASSERT(holds(w, 6, 9, 5));
    CU_ASSERT_EQUAL(trace_window_dropped(w), 6 * 5);
    trace_window_free(w);
    trace_window_free(NULL);
}

static void test_wraps_at_capacity(void)
{
    /* room for 2 steps of 7 events (plus 3): the ring wraps at odd offsets */
    trace_window *w = trace_window_new(100, 17);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    for (uint64_t s = 0; s < 50; s++) {
        push_steps(w, s, 1, 7);
        CU_ASSERT_FATAL(trace_window_len(w) <= trace_window_cap(w));
        CU_ASSERT_FATAL(holds(w, s ? s - 1 : 0, s, 7)); /* whole steps, oldest dropped first */
    }
    trace_window_free(w);
}

static void test_bounded_forever(void)
{
    /* a million steps: memory is the capacity given at creation, never more */
    size_t cap = trace_window_cap_for(TRACE_WINDOW_STEPS, 8, 1, 4);
    CU_ASSERT(cap >= TRACE_WINDOW_STEPS * (2 * 8 + 4 * 4));
    CU_ASSERT(cap <= TRACE_WINDOW_MAX_EVENTS);
    trace_window *w = trace_window_new(TRACE_WINDOW_STEPS, cap);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    push_steps(w, 0, 1000000, 20);
    CU_ASSERT(holds(w, 1000000 - TRACE_WINDOW_STEPS, 999999, 20));
    CU_ASSERT_EQUAL(trace_window_cap(w), cap);
    trace_window_free(w);
    /* a schedule with a huge step is capped at TRACE_WINDOW_MAX_EVENTS */
    CU_ASSERT_EQUAL(trace_window_cap_for(TRACE_WINDOW_STEPS, 100000, 8, 512), TRACE_WINDOW_MAX_EVENTS);
    CU_ASSERT(TRACE_WINDOW_MAX_EVENTS / PROTO_TRACE_PART_EVENTS <= PROTO_TRACE_MAX_PARTS);
}

static void test_one_huge_step(void)
{
    /* a single step larger than the ring keeps its start and counts the rest */
    trace_window *w = trace_window_new(3, 10);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    push_steps(w, 5, 1, 25);
    CU_ASSERT(holds(w, 5, 5, 10));
    CU_ASSERT_EQUAL(trace_window_dropped(w), 15);
    push_steps(w, 6, 1, 4); /* the next step replaces it */
    CU_ASSERT(holds(w, 6, 6, 4));
    CU_ASSERT_PTR_NULL(trace_window_new(0, 10));
    CU_ASSERT_PTR_NULL(trace_window_new(10, 0));
    trace_window_free(w);
}

/* The regression of issue #10: with dim 64 the payload limit was 69632 bytes
 * and a trace part of 4096 events (131080 bytes) could not be sent. */
static void test_part_fits_payload(void)
{
    const char *dims[][2] = { { "model.dim=64", "model.ffn_dim=192" }, { "model.dim=16", "model.ffn_dim=48" },
                              { "model.dim=128", "model.ffn_dim=384" } };
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
        topo t;
        char err[ERR_LEN];
        char *sets[] = { (char *)dims[i][0], (char *)dims[i][1], "model.n_heads=4", "model.n_kv_heads=4" };
        CU_ASSERT_FATAL(topo_load(&t, "topologies/shakespeare-2stage.json", sets, 4, err) == 0);
        uint64_t mx = stage_max_payload(&t);
        CU_ASSERT(mx >= (uint64_t)PROTO_TRACE_PART_BYTES + 4096);
        CU_ASSERT(mx >= topo_max_tensor_bytes(&t));
        CU_ASSERT(mx >= (uint64_t)t.model.vocab_size * (uint64_t)t.model.dim * sizeof(float));
        topo_free(&t);
    }
}

/* The all-reduce's messages fit the payload limit too: the ring segment of
 * a layer's bucket (426496 bytes for the 2 x 2 shakespeare grid) was refused
 * by net_send against a limit sized by activations and trace parts alone
 * (135168 bytes), so no 2 x 2 run of that model finished a step. */
static void test_allreduce_fits_payload(void)
{
    const char *sets[][2] = { { "train.batch_size=8", "train.bucket_mb=4" },
                              { "train.batch_size=24", "train.bucket_mb=64" },
                              { "train.batch_size=8", "train.bucket_mb=0.01" } };
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        topo t;
        char err[ERR_LEN];
        char *s[] = { (char *)sets[i][0], (char *)sets[i][1] };
        CU_ASSERT_FATAL(topo_load(&t, "topologies/shakespeare-2x2.json", s, 2, err) == 0);
        uint64_t mx = stage_max_payload(&t), worst = 0;
        for (int u = 0; u < topo_n_units(&t); u++)
            for (int b = 0; b < topo_unit_buckets(&t, u, -1, NULL, NULL); b++) {
                size_t off, len, soff, slen;
                topo_unit_buckets(&t, u, b, &off, &len);
                for (int r = 0; r < t.n_replicas; r++) {
                    coll_segment(len, t.n_replicas, r, &soff, &slen);
                    uint64_t m = (uint64_t)slen * sizeof(float);
                    if (m > COLL_CHUNK_BYTES) m = COLL_CHUNK_BYTES; /* coll's default chunk */
                    if (m > worst) worst = m;
                }
            }
        if (mx < worst) fprintf(stderr, "\n  %s %s: payload limit %llu < all-reduce message %llu\n", sets[i][0],
                                sets[i][1], (unsigned long long)mx, (unsigned long long)worst);
        CU_ASSERT(worst > 0);
        CU_ASSERT(mx >= worst);
        topo_free(&t);
    }
}

int main(void)
{
    CU_TestInfo tests[] = {
        { "keeps the most recent steps, in order", test_keeps_recent_steps },
        { "wraps around its ring at capacity, whole steps", test_wraps_at_capacity },
        { "bounded however many steps", test_bounded_forever },
        { "one step larger than the window", test_one_huge_step },
        { "a trace part fits the payload limit of a small model", test_part_fits_payload },
        { "an all-reduce message fits the payload limit of a grid", test_allreduce_fits_payload },
        CU_TEST_INFO_NULL,
    };
    return tests_run("trace_window", tests);
}
