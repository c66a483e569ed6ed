/* test_coord_http.c — the live view's pure parts (coord/coord_http.h, issue
 * 16): --http addresses, the loopback rule that decides whether a token is
 * needed, the token (HMAC-SHA256 of the secret, checked against a value
 * computed with Python's hmac), and NORM's live trailer (stage/proto.h):
 * a well-formed one is taken, and a bad magic, a length that does not match
 * its event count, too many events or an event of another step are refused
 * with a message, never read past. */
#include "coord/coord_http.h"
#include "stage/proto.h"
#include "tests/tests.h"
#include "topo/topo.h"

static void test_parse_addr(void)
{
    char host[256], err[ERR_LEN];
    int port = -1;
    CU_ASSERT_EQUAL(coord_http_parse_addr("8080", host, sizeof host, &port, err), 0);
    CU_ASSERT_STRING_EQUAL(host, "127.0.0.1");
    CU_ASSERT_EQUAL(port, 8080);
    CU_ASSERT_EQUAL(coord_http_parse_addr("0.0.0.0:0", host, sizeof host, &port, err), 0);
    CU_ASSERT_STRING_EQUAL(host, "0.0.0.0");
    CU_ASSERT_EQUAL(port, 0);
    CU_ASSERT_EQUAL(coord_http_parse_addr("[::1]:9", host, sizeof host, &port, err), 0);
    CU_ASSERT_STRING_EQUAL(host, "::1");
    CU_ASSERT_EQUAL(port, 9);
    const char *bad[] = { "", "x", "host:", ":80", "h:65536", "h:-1", "::1:80", "[::1]80", "[]:80", "h:8x" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = 0;
        CU_ASSERT_EQUAL(coord_http_parse_addr(bad[i], host, sizeof host, &port, err), -1);
        CU_ASSERT(strstr(err, "--http") != NULL);
    }
}

static void test_loopback(void)
{
    CU_ASSERT(coord_http_is_loopback("127.0.0.1"));
    CU_ASSERT(coord_http_is_loopback("127.3.2.1"));
    CU_ASSERT(coord_http_is_loopback("::1"));
    CU_ASSERT(!coord_http_is_loopback("0.0.0.0"));
    CU_ASSERT(!coord_http_is_loopback("::"));
    CU_ASSERT(!coord_http_is_loopback("10.1.2.3"));
    CU_ASSERT(!coord_http_is_loopback("no-such-host.invalid"));
}

static void test_token(void)
{
    /* python3 -c 'import hmac,hashlib; print(hmac.new(b"s3cret", b"pipetrain live view", hashlib.sha256).hexdigest())' */
    char hex[65];
    coord_http_token((const uint8_t *)"s3cret", 6, hex);
    CU_ASSERT_STRING_EQUAL(hex, "af1bc0ab8bb8e27291824c9c70173f7d5c0e75f1aaacd0ef3405494cb976157e");
}

/* A 2-stage topology for the live view object (loopback, port 0). */
static int load_topo(topo *t, char *err)
{
    char *sets[] = { "coordinator.port=0" };
    return topo_load(t, "topologies/shakespeare-2stage.json", sets, 1, err);
}

static uint64_t trailer(uint8_t *buf, uint32_t n, uint64_t step)
{
    proto_stats st = { 0 };
    st.bytes_sent = 1234;
    put_u32le(buf, PROTO_LIVE_MAGIC);
    put_u32le(buf + 4, n);
    put_f64le(buf + 8, 100.0);
    proto_stats_encode(buf + 16, &st);
    for (uint32_t i = 0; i < n; i++) {
        proto_event e = { (uint8_t)(i % 3), 0, 0, i, step, 100.0 + i * 1e-3, 100.0 + i * 1e-3 + 5e-4 };
        proto_event_encode(buf + PROTO_LIVE_HEAD_BYTES + (size_t)i * PROTO_EVENT_BYTES, &e);
    }
    return PROTO_LIVE_HEAD_BYTES + (uint64_t)n * PROTO_EVENT_BYTES;
}

static void test_live_trailer(void)
{
    char err[ERR_LEN];
    topo t;
    if (load_topo(&t, err)) { fprintf(stderr, "\n  %s\n", err); CU_FAIL("topology"); return; }
    coord_http *h = coord_http_new(&t, "127.0.0.1", 0, 7, NULL, 0, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    CU_ASSERT(coord_http_port(h) > 0);
    coord_http_attempt(h, 7, 0, 0);
    static uint8_t buf[PROTO_LIVE_MAX_BYTES + 64];
    uint64_t len = trailer(buf, 6, 4);
    CU_ASSERT_EQUAL(coord_http_live(h, 1, 4, buf, len, 100.01, err), 0);
    /* bad magic */
    put_u32le(buf, 0x12345678);
    CU_ASSERT_EQUAL(coord_http_live(h, 1, 4, buf, len, 100.01, err), -1);
    CU_ASSERT(strstr(err, "LIVE") != NULL);
    /* length not matching the count, too short, too many events */
    len = trailer(buf, 6, 4);
    CU_ASSERT_EQUAL(coord_http_live(h, 1, 4, buf, len - 1, 100.01, err), -1);
    CU_ASSERT_EQUAL(coord_http_live(h, 1, 4, buf, 10, 100.01, err), -1);
    put_u32le(buf + 4, PROTO_LIVE_MAX_EVENTS + 1);
    CU_ASSERT_EQUAL(coord_http_live(h, 1, 4, buf, PROTO_LIVE_HEAD_BYTES + (uint64_t)(PROTO_LIVE_MAX_EVENTS + 1) * 32,
                                    100.01, err), -1);
    /* an event of another step */
    len = trailer(buf, 6, 3);
    CU_ASSERT_EQUAL(coord_http_live(h, 1, 4, buf, len, 100.01, err), -1);
    CU_ASSERT(strstr(err, "step 5") != NULL);
    coord_http_step(h, 4, 3.5, 1e-3, 1.0, NAN, 0.05);
    coord_http_state(h, "done");
    coord_http_free(h);
    coord_http_free(NULL);
    topo_free(&t);
}

static void test_busy_port(void)
{
    char err[ERR_LEN];
    topo t;
    if (load_topo(&t, err)) { CU_FAIL("topology"); return; }
    coord_http *a = coord_http_new(&t, "127.0.0.1", 0, 1, NULL, 0, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    coord_http *b = coord_http_new(&t, "127.0.0.1", coord_http_port(a), 1, NULL, 0, err);
    CU_ASSERT_PTR_NULL(b);
    CU_ASSERT(strstr(err, "Address already in use") != NULL);
    coord_http_free(b);
    coord_http_free(a);
    topo_free(&t);
}

int main(void)
{
    CU_TestInfo tests[] = {
        { "--http [HOST:]PORT parsing", test_parse_addr },
        { "loopback decides whether a token is needed", test_loopback },
        { "the token is HMAC-SHA256(secret, \"pipetrain live view\")", test_token },
        { "NORM's live trailer: taken when well formed, refused otherwise", test_live_trailer },
        { "a busy port is refused with the reason", test_busy_port },
        CU_TEST_INFO_NULL,
    };
    return tests_run("coord_http", tests);
}
