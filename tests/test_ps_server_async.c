/* test_ps_server_async.c — a real asynchronous parameter server
 * (stage_server_run, stage/server_async.c, ps.staleness -1) in a thread of
 * this process, against a fake coordinator and fake workers (net nodes that
 * speak ps/ps_proto.h by hand). Elasticity (README "Parameter servers"): a
 * worker that dies is dropped at the coordinator's word and the run goes on;
 * the server must not fail because a send to that worker failed, whenever
 * the death happens relative to the coordinator's drop and a --join.
 *
 * The bad ordering, forced: worker 1 stops reading (its node buffers one
 * message, then reading stops for backpressure) and runs far ahead, so the
 * server's weights to it pile up unsent; then it dies with those sends
 * pending. The coordinator drops it, a new worker 1 joins at worker 0's step,
 * and both train to the end: the server sends its STATS and exits 0. Before
 * the fix the server failed ("sending weights: ... closed the connection"),
 * at the death or, when the failed send was still held, at the joiner's
 * first weights, and a dead server is fatal to the run. No timing
 * thresholds: timeouts only bound the waits. */
#include "ps/ps.h"
#include "ps/ps_proto.h"
#include "stage/proto.h"
#include "stage/stage.h"
#include "tests/tests.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#define STEPS 12
#define JOIN_AT 4 /* worker 0 waits there for the join; the joiner starts there */

typedef struct {
    topo t;
    ps_assignment a;
    int np;
    const int *idx;
    int coord_port, srv_port;
    volatile int stop, w0_step, w1_dead, join_sent, joiner_first, joiner_connected;
    volatile int w1_up, w1_closed; /* WK_IDLE: connected; its connection was closed by the server */
    int join_once;          /* the joiner connects once, no retry: the drop's answer came first */
    int errors;
    char what[ERR_LEN];
    int srv_rc;
    char srv_err[ERR_LEN];
} harness;

typedef struct {
    harness *h;
    int r, kind; /* WK_OK, WK_STALL (reads nothing, runs ahead, dies), WK_JOIN, WK_IDLE (alive, silent) */
} wk;

enum { WK_OK, WK_STALL, WK_JOIN, WK_IDLE };

static void note(harness *h, const char *fmt, const char *s)
{
    h->errors++;
    snprintf(h->what, sizeof h->what, fmt, s);
}

static int free_port(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
    if (fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof a) && !getsockname(fd, (struct sockaddr *)&a, &len))
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

static int wsend(struct net_node *n, net_peer_id to, net_key k, const void *buf, uint64_t len)
{
    struct net_op *op = NULL;
    char e[NET_ERR_LEN];
    int st = net_send(n, to, k, buf, len, 10000, &op, e);
    if (st == NET_OK) st = net_wait(op, 20000, e);
    net_op_free(op);
    return st;
}

/* Waits (bounded, 30 s) for op unless the test is over. */
static int wwait(harness *h, struct net_op *op)
{
    char e[NET_ERR_LEN];
    for (int i = 0; i < 600; i++) {
        int st = net_wait(op, 50, e);
        if (st != NET_TIMEOUT || h->stop) return st;
    }
    return NET_TIMEOUT;
}

/* Pushes every piece of step s (a small constant gradient, norm 1). */
static int push_step(harness *h, struct net_node *n, int r, long s, float *g, uint8_t *buf)
{
    for (int l = 0; l < h->np; l++) {
        const ps_piece *pc = &h->a.pieces[h->idx[l]];
        size_t len = ps_push_encode(buf, h->idx[l], s, 1.0, g, pc->len);
        if (wsend(n, net_server_id(0), (net_key){ MSG_PS_PUSH, (uint64_t)s, (uint32_t)h->idx[l], 0 }, buf, len))
            return -1;
    }
    (void)r;
    return 0;
}

static struct net_node *connect_server(harness *h, int r, uint64_t max_unclaimed)
{
    uint8_t secret[256];
    char err[ERR_LEN];
    net_config cfg;
    if (stage_net_config(&cfg, &h->t, net_stage_id(0, (uint16_t)r), 7, 5000, secret, err)) return NULL;
    cfg.connect_deadline_ms = 20000;
    if (max_unclaimed) cfg.max_unclaimed = max_unclaimed;
    struct net_node *n = net_node_new(&cfg, err);
    if (!n) return NULL;
    if (net_connect(n, net_server_id(0), "127.0.0.1", h->srv_port, err) ||
        net_wait_peer(n, net_server_id(0), 20000, err) != NET_OK) {
        net_node_free(n);
        return NULL;
    }
    return n;
}

static void *worker_main(void *arg)
{
    wk *w = arg;
    harness *h = w->h;
    size_t maxlen = 0;
    for (int l = 0; l < h->np; l++)
        if (h->a.pieces[h->idx[l]].len > maxlen) maxlen = h->a.pieces[h->idx[l]].len;
    float *g = calloc(maxlen + 1, sizeof *g);
    uint8_t *buf = calloc(1, PS_PUSH_HDR + (maxlen + 1) * sizeof(float));
    for (size_t i = 0; i < maxlen; i++) g[i] = 1e-3f;
    struct net_node *n = NULL;
    long first = 0;
    if (w->kind == WK_JOIN) {
        /* the server lets the dead connection go at the drop: until then a
         * new one claiming worker 1 is refused (retried, as a user would) */
        for (int i = 0; i < (h->join_once ? 1 : 100) && !n && !h->stop; i++)
            if (!(n = connect_server(h, 1, 0))) usleep(100000);
        if (!n) { note(h, "%s", "the joiner could not connect"); goto out; }
        h->joiner_connected = 1; /* (a joining stage reaches its servers before it JOINs the coordinator) */
        while (!h->join_sent && !h->stop) usleep(10000);
        first = h->joiner_first;
    } else if (!(n = connect_server(h, w->r, w->kind == WK_STALL ? 1 : 0))) {
        note(h, "%s", "a worker could not connect");
        goto out;
    }
    if (w->kind == WK_IDLE) { /* alive and connected, sends nothing: dropped (the step timeout) */
        h->w1_up = 1;
        char e[NET_ERR_LEN] = "";
        for (int i = 0; i < 1200 && !h->stop; i++) {
            int st = net_peer_status(n, net_server_id(0), e);
            if (st != NET_OK && st != NET_PENDING) { h->w1_closed = 1; break; }
            usleep(25000);
        }
        goto out;
    }
    net_key pull = { MSG_PS_PULL, (uint64_t)first, 0, 0 };
    if (wsend(n, net_server_id(0), pull, NULL, 0)) goto out;
    for (long s = first; s < STEPS && !h->stop; s++) {
        if (w->kind == WK_STALL) {
            /* it asked for its first weights (17 MB) and reads almost none:
             * once its reading stopped, the server's sends to it wait for
             * room; it dies with them pending */
            net_stats st = { 0 };
            for (int i = 0; i < 600 && !st.paused; i++) {
                net_peer_stats(n, net_server_id(0), &st);
                if (!st.paused) usleep(50000);
            }
            if (!st.paused) note(h, "%s", "the stalled worker never stopped reading");
            usleep(500000); /* (the server posts the rest meanwhile) */
            break;
        }
        if (w->kind == WK_OK && s == JOIN_AT) /* the run is not over before the join */
            while (!h->join_sent && !h->stop) usleep(10000);
        if (w->kind != WK_STALL) { /* the weights of step s, every piece */
            for (int l = 0; l < h->np; l++) {
                struct net_op *op = NULL;
                char e[NET_ERR_LEN];
                net_key k = { MSG_PS_WEIGHTS, (uint64_t)s, (uint32_t)h->idx[l], 0 };
                if (net_recv_post(n, net_server_id(0), k, NULL, 0, &op, e) || wwait(h, op) != NET_OK) {
                    net_op_free(op);
                    if (!h->stop) note(h, "no weights (worker %s)", w->kind == WK_JOIN ? "joined" : "0");
                    goto out;
                }
                net_op_free(op);
            }
        }
        if (w->r == 0) h->w0_step = (int)s;
        if (s + 1 < STEPS) {
            pull.step = (uint64_t)s + 1;
            if (wsend(n, net_server_id(0), pull, NULL, 0)) goto out;
        }
        if (push_step(h, n, w->r, s, g, buf)) goto out;
    }
    if (w->kind != WK_STALL) { /* the last checkpoint's pieces (full or empty), then wait for the end */
        while (!h->stop) usleep(10000);
    }
out:
    if (w->kind == WK_STALL) h->w1_dead = 1;
    net_node_free(n); /* WK_STALL: its connection closes, the server's sends to it fail */
    free(g);
    free(buf);
    return NULL;
}

typedef struct {
    harness *h;
    stage_opts o;
} srv_arg;

static void *server_main(void *arg)
{
    srv_arg *s = arg;
    s->h->srv_rc = stage_server_run(&s->h->t, &s->o, s->h->srv_err);
    return NULL;
}

static int ctl(harness *h, struct net_node *c, long n, uint32_t op, uint32_t w, long step)
{
    uint8_t b[PS_CTL_BYTES];
    put_u32le(b, op);
    put_u32le(b + 4, w);
    put_u64le(b + 8, (uint64_t)step);
    (void)h;
    return wsend(c, net_server_id(0), (net_key){ MSG_PS_CTL, (uint64_t)n, 0, 0 }, b, sizeof b);
}

/* The fake coordinator's drop of worker w (control message n): sent, then
 * its answer awaited (ps/ps_proto.h: the server has let the connections go). */
static int drop_worker(harness *h, struct net_node *c, long n, uint32_t w)
{
    char e[NET_ERR_LEN];
    uint8_t ack[PS_CTL_BYTES];
    struct net_op *op = NULL;
    int st = net_recv_post(c, net_server_id(0), (net_key){ MSG_PS_CTL, (uint64_t)n, 0, 0 }, ack, sizeof ack, &op, e);
    if (st == NET_OK) st = ctl(h, c, n, PS_CTL_DROP, w, 0);
    if (st == NET_OK) st = net_wait(op, 10000, e);
    if (st == NET_OK && (net_op_len(op) != PS_CTL_BYTES || get_u32le(ack) != PS_CTL_DROP || get_u32le(ack + 4) != w))
        st = NET_ERR;
    if (st != NET_OK) fprintf(stderr, "\n  no answer to the drop: %d %s\n", st, e);
    net_op_free(op);
    return st;
}

static void run_case(int w1_kind)
{
    harness *h = calloc(1, sizeof *h);
    h->join_once = w1_kind == WK_IDLE;
    char err[ERR_LEN], path[64], text[2048], e[NET_ERR_LEN];
    h->srv_port = free_port();
    CU_ASSERT_FATAL(h->srv_port > 0);
    snprintf(path, sizeof path, "/tmp/test_ps_server_async.XXXXXX");
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    snprintf(text, sizeof text,
             "{\"model\": {\"dim\": 256, \"n_layers\": 4, \"n_heads\": 4, \"ffn_dim\": 1024, \"seq_len\": 16, "
             "\"vocab_size\": 256},\n"
             " \"train\": {\"steps\": %d, \"batch_size\": 8, \"micro_batches\": 2, \"lr\": 0.001, \"warmup_steps\": 1},\n"
             " \"coordinator\": {\"host\": \"127.0.0.1\", \"port\": 0},\n"
             " \"stages\": [{\"layers\": \"embed,0-3,head\", \"replicas\": [{\"host\": \"127.0.0.1\", \"port\": 29581},\n"
             "   {\"host\": \"127.0.0.1\", \"port\": 29582}]}],\n"
             " \"sync\": \"ps\", \"ps\": {\"staleness\": -1},\n"
             " \"parameter_servers\": [{\"host\": \"127.0.0.1\", \"port\": %d}]}\n", STEPS, h->srv_port);
    CU_ASSERT_FATAL(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    int lrc = topo_load(&h->t, path, NULL, 0, err);
    remove(path);
    if (lrc) fprintf(stderr, "\n  %s\n", err);
    CU_ASSERT_FATAL(lrc == 0);
    CU_ASSERT_FATAL(ps_assign(&h->t, &h->a, err) == 0);
    h->np = ps_stage_pieces(&h->a, 0, &h->idx);
    /* the fake coordinator */
    uint8_t secret[256], buf[PS_STATS_BYTES];
    net_config cfg;
    CU_ASSERT_FATAL(stage_net_config(&cfg, &h->t, net_coord_id(), 7, 5000, secret, err) == 0);
    cfg.listen_host = "127.0.0.1";
    cfg.listen_port = 0;
    struct net_node *c = net_node_new(&cfg, e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    srv_arg sa = { h, { 0 } };
    sa.o.stage = 0;
    sa.o.coord_host = "127.0.0.1";
    sa.o.coord_port = net_node_port(c);
    sa.o.run_id = 7;
    sa.o.peer_timeout_ms = 5000;
    sa.o.connect_timeout_ms = 20000;
    sa.o.step_timeout_s = 60;
    pthread_t ts, tw[3];
    pthread_create(&ts, NULL, server_main, &sa);
    struct net_op *op = NULL;
    int ok = net_recv_post(c, net_server_id(0), (net_key){ MSG_JOIN, 0, 0, 0 }, buf, sizeof buf, &op, e) == NET_OK &&
             net_wait(op, 20000, e) == NET_OK && net_op_len(op) == 12;
    net_op_free(op);
    CU_ASSERT(ok);
    uint8_t start[16];
    put_u64le(start, 0);
    put_u64le(start + 8, STEPS);
    CU_ASSERT(wsend(c, net_server_id(0), (net_key){ MSG_START, 0, 0, 0 }, start, 16) == NET_OK);
    wk w[3] = { { h, 0, WK_OK }, { h, 1, w1_kind }, { h, 1, WK_JOIN } };
    pthread_create(&tw[0], NULL, worker_main, &w[0]);
    pthread_create(&tw[1], NULL, worker_main, &w[1]);
    volatile int *ready = w1_kind == WK_IDLE ? &h->w1_up : &h->w1_dead;
    for (int i = 0; i < 1200 && !*ready; i++) usleep(50000);
    CU_ASSERT(*ready);
    /* the coordinator drops worker 1, then a new process joins as worker 1 at
     * the slowest active worker's step (worker 0's) */
    CU_ASSERT(drop_worker(h, c, 0, 1) == NET_OK);
    pthread_create(&tw[2], NULL, worker_main, &w[2]);
    for (int i = 0; i < 1200 && !h->joiner_connected && !h->errors; i++) usleep(25000);
    CU_ASSERT(h->joiner_connected);
    h->joiner_first = JOIN_AT;
    CU_ASSERT(ctl(h, c, 1, PS_CTL_JOIN, 1, h->joiner_first) == NET_OK);
    h->join_sent = 1;
    /* the end: the server's STATS once every active worker pushed every step */
    op = NULL;
    ok = net_recv_post(c, net_server_id(0), (net_key){ MSG_PS_STATS, STEPS - 1, 0, 0 }, buf, sizeof buf, &op, e) ==
             NET_OK && net_wait(op, 60000, e) == NET_OK && net_op_len(op) == PS_STATS_BYTES;
    net_op_free(op);
    if (!ok) fprintf(stderr, "\n  no STATS from the server: %s\n", e);
    CU_ASSERT(ok);
    if (ok) {
        ps_net_stats st;
        ps_stats_decode(&st, buf);
        /* worker 0's pushes of every piece and step, the joiner's from its first step */
        CU_ASSERT_EQUAL(st.pushes, (uint64_t)h->np * (uint64_t)(STEPS + STEPS - JOIN_AT));
        CU_ASSERT_EQUAL(st.refused, 0);
    }
    wsend(c, net_server_id(0), (net_key){ MSG_DONE, STEPS - 1, 0, 0 }, NULL, 0);
    pthread_join(ts, NULL);
    h->stop = 1;
    for (int i = 0; i < 3; i++) pthread_join(tw[i], NULL);
    net_node_free(c);
    if (h->srv_rc) fprintf(stderr, "\n  server: %s\n", h->srv_err);
    CU_ASSERT_EQUAL(h->srv_rc, 0);
    if (h->errors) fprintf(stderr, "\n  fakes: %d errors (%s)\n", h->errors, h->what);
    CU_ASSERT_EQUAL(h->errors, 0);
    if (w1_kind == WK_IDLE) CU_ASSERT(h->w1_closed); /* the server closed the dropped worker's connection */
    ps_assignment_free(&h->a);
    topo_free(&h->t);
    free(h);
}

static void test_worker_dies_with_sends_pending(void) { run_case(WK_STALL); }

/* Worker 1 stays alive and connected, silent (the coordinator drops it for
 * the step timeout; or its death is not noticed here before the drop): at
 * the drop the server closes its connection and forgets it, then answers;
 * a process joining as worker 1 once the answer came connects at the first
 * try (a real joiner reaches its servers before it JOINs the coordinator,
 * and a refusal is fatal to it). Before the fix the old connection stayed:
 * no answer, and the joiner was refused ("already connected"). */
static void test_alive_worker_dropped_then_joined(void) { run_case(WK_IDLE); }

int main(void)
{
    CU_TestInfo tests[] = {
        { "a worker dies with sends pending, is dropped and rejoined: the server goes on",
          test_worker_dies_with_sends_pending },
        { "an alive worker dropped is closed and forgotten before the drop is answered; a joiner connects at once",
          test_alive_worker_dropped_then_joined },
        CU_TEST_INFO_NULL,
    };
    return tests_run("ps_server_async", tests);
}
