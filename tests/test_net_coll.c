/* test_net_coll.c — CUnit suite for net/net_coll.h: a task on the network
 * thread that receives (net_nt_recv, run again by each completion) and
 * sends (net_nt_send) without another thread: an echo relay, bytes and
 * checksums intact, the task never on the test's thread; net_task_forget. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "net/net.h"
#include "net/net_coll.h"
#include "tests/net_fixture.h"
#include "tests/tests.h"

enum { MSGS = 40, MAXLEN = 300000 };

/* Node b echoes MSGS messages from a back to a, each once it is in, posting
 * the next receive before it sends (so the next message cannot land
 * unclaimed). */
struct relay {
    struct net_node *b;
    struct net_task task;
    net_peer_id a;
    uint8_t *buf[MSGS];
    struct net_op *rop, *sops[MSGS];
    int next; /* messages echoed */
    int runs, failed, started;
    pthread_t thr, test_thr;
    int thr_set, other_thread;
    char err[NET_ERR_LEN];
};

static int relay_post(struct relay *r)
{
    net_key k = { 60, (uint64_t)r->next, 0, 0 };
    return net_nt_recv(r->b, r->a, k, r->buf[r->next], MAXLEN, &r->task, &r->rop, r->err);
}

static void relay_run(void *arg)
{
    struct relay *r = arg;
    r->runs++;
    if (!r->thr_set) r->thr = pthread_self();
    r->thr_set = 1;
    r->other_thread |= pthread_equal(pthread_self(), r->thr) == 0 || pthread_equal(pthread_self(), r->test_thr);
    if (r->failed) return;
    if (!r->started) { /* the first run */
        r->started = 1;
        if (relay_post(r) != NET_OK) r->failed = 1;
        return;
    }
    while (r->next < MSGS && r->rop) {
        int st = net_op_test(r->rop, r->err);
        if (st == NET_PENDING) return;
        if (st != NET_OK) { r->failed = 1; return; }
        uint64_t len = net_op_len(r->rop);
        uint32_t crc = net_op_crc(r->rop);
        net_op_free(r->rop);
        r->rop = NULL;
        int i = r->next++;
        if (r->next < MSGS && relay_post(r) != NET_OK) { r->failed = 1; return; }
        net_key k = { 61, (uint64_t)i, 0, 0 };
        if (net_nt_send(r->b, r->a, k, r->buf[i], len, NET_SEND_CRC, crc, &r->sops[i], r->err) != NET_OK) {
            r->failed = 1;
            return;
        }
    }
}

static void test_relay(void)
{
    struct net_node *a, *b;
    pair(&a, &b);
    char err[NET_ERR_LEN];
    net_peer_id ib = net_stage_id(1, 0);
    struct relay r = { .b = b, .a = net_stage_id(0, 0), .test_thr = pthread_self() };
    r.task.fn = relay_run;
    r.task.arg = &r;
    uint8_t *msg = malloc(MAXLEN), *back = malloc(MAXLEN);
    for (int i = 0; i < MSGS; i++) r.buf[i] = malloc(MAXLEN);
    ST(net_task_post(b, &r.task, err), NET_OK);
    for (int i = 0; i < MSGS; i++) {
        size_t len = i == 0 ? 0 : (size_t)(i * 7919) % MAXLEN;
        fill(msg, len, (uint32_t)i);
        struct net_op *s = NULL, *rv = NULL;
        net_key k = { 60, (uint64_t)i, 0, 0 }, kb = { 61, (uint64_t)i, 0, 0 };
        ST(net_recv_post(a, ib, kb, back, MAXLEN, &rv, err), NET_OK);
        ST(net_send(a, ib, k, msg, len, 5000, &s, err), NET_OK);
        int st = net_wait(rv, 5000, err);
        if (st != NET_OK) fprintf(stderr, "\n  echo %d: %s (relay: %s)\n", i, err, r.err);
        CU_ASSERT_EQUAL(st, NET_OK);
        CU_ASSERT_EQUAL(net_op_len(rv), len);
        CU_ASSERT(memcmp(back, msg, len) == 0);
        net_op_free(rv);
        CU_ASSERT_EQUAL(net_wait(s, 5000, err), NET_OK);
        net_op_free(s);
    }
    net_task_forget(b, &r.task);
    CU_ASSERT_EQUAL(r.failed, 0);
    CU_ASSERT_EQUAL(r.next, MSGS);
    CU_ASSERT(r.runs >= MSGS); /* once per completed receive, at least */
    CU_ASSERT_EQUAL(r.other_thread, 0);
    net_stats st;
    ST(net_peer_stats(b, r.a, &st), NET_OK);
    CU_ASSERT_EQUAL(st.frames_tx, MSGS);
    for (int i = 0; i < MSGS; i++) {
        CU_ASSERT_EQUAL(net_wait(r.sops[i], 5000, err), NET_OK);
        net_op_free(r.sops[i]);
        free(r.buf[i]);
    }
    net_node_free(a);
    net_node_free(b);
    free(msg);
    free(back);
}

/* net_nt_recv from a dead peer completes at once with the reason, and the
 * completion runs the task again. */
struct dead_probe {
    struct net_node *b;
    struct net_task task;
    struct net_op *rop;
    int posted, st;
    atomic_int seen;
    char err[NET_ERR_LEN];
};

static void dead_run(void *arg)
{
    struct dead_probe *d = arg;
    if (!d->posted) {
        d->posted = 1;
        net_key k = { 62, 0, 0, 0 };
        static uint8_t one[1];
        if (net_nt_recv(d->b, net_stage_id(0, 0), k, one, 1, &d->task, &d->rop, d->err) != NET_OK) d->st = -100;
        return;
    }
    if (d->rop && !atomic_load(&d->seen) && net_op_test(d->rop, d->err) != NET_PENDING) {
        d->st = net_op_test(d->rop, d->err);
        atomic_store(&d->seen, 1);
    }
}

static void test_dead_peer(void)
{
    struct net_node *a, *b;
    pair(&a, &b);
    char err[NET_ERR_LEN];
    struct dead_probe d = { .b = b };
    d.task.fn = dead_run;
    d.task.arg = &d;
    net_node_free(a);
    for (int i = 0; i < 100 && net_peer_status(b, net_stage_id(0, 0), err) == NET_OK; i++) usleep(50000);
    ST(net_task_post(b, &d.task, err), NET_OK);
    for (int i = 0; i < 100 && !atomic_load(&d.seen); i++) usleep(50000);
    net_task_forget(b, &d.task);
    CU_ASSERT_EQUAL(atomic_load(&d.seen), 1);
    CU_ASSERT(d.st == NET_DEAD || d.st == NET_CLOSED);
    CU_ASSERT(strlen(d.err) > 0);
    net_op_free(d.rop);
    net_node_free(b);
}

/* A task that keeps itself busy (posts itself again every run, as the
 * engine does while chunks keep coming) must not keep the network thread
 * from its loop: messages still go both ways on the same node meanwhile.
 * (When the list was run until empty, the network thread never left it.) */
struct spinner {
    struct net_node *n;
    struct net_task task;
    atomic_int stop;
    atomic_long runs;
};

static void spin_run(void *arg)
{
    struct spinner *sp = arg;
    atomic_fetch_add(&sp->runs, 1);
    char e[NET_ERR_LEN];
    if (!atomic_load(&sp->stop)) net_task_post(sp->n, &sp->task, e);
}

static void test_busy_task(void)
{
    struct net_node *a, *b;
    pair(&a, &b);
    char err[NET_ERR_LEN];
    struct spinner sp = { .n = b };
    sp.task.fn = spin_run;
    sp.task.arg = &sp;
    ST(net_task_post(b, &sp.task, err), NET_OK);
    for (int i = 0; i < 200 && atomic_load(&sp.runs) < 2; i++) usleep(10000);
    uint8_t m[64] = { 1 }, r[64];
    for (int i = 0; i < 5; i++) {
        net_key k = { 63, (uint64_t)i, 0, 0 };
        uint64_t len = 0;
        struct net_op *ao = NULL;
        int st = net_send(a, net_stage_id(1, 0), k, m, sizeof m, 2000, &ao, err);
        CU_ASSERT_EQUAL(st, NET_OK);
        st = net_recv(b, net_stage_id(0, 0), k, r, sizeof r, &len, 3000, err);
        if (st != NET_OK) fprintf(stderr, "\n  message %d from a: %s\n", i, err);
        CU_ASSERT_EQUAL(st, NET_OK);
        k.mb = 1;
        struct net_op *so = NULL;
        CU_ASSERT_EQUAL(net_send(b, net_stage_id(0, 0), k, m, sizeof m, 2000, &so, err), NET_OK);
        st = net_recv(a, net_stage_id(1, 0), k, r, sizeof r, &len, 3000, err);
        if (st != NET_OK) fprintf(stderr, "\n  message %d to a: %s\n", i, err);
        CU_ASSERT_EQUAL(st, NET_OK);
        net_op_free(so);
        net_op_free(ao);
        if (st != NET_OK) break;
    }
    atomic_store(&sp.stop, 1);
    net_task_forget(b, &sp.task);
    CU_ASSERT(atomic_load(&sp.runs) > 1);
    net_node_free(a);
    net_node_free(b);
}

/* After a big payload the read that finishes it takes only a little of what
 * follows into the connection's staging buffer (net_conn.c, read_some): the
 * next big payload then lands in place instead of its first 64 KiB being
 * read into the staging buffer and copied again (5% of a ring all-reduce's
 * bytes with 1 MiB chunks). b's network thread is held by a task while a's
 * frames pile up in the socket, so each read finds the next frame behind the
 * one it finishes; before, rx_staged was the first read plus about 64 KiB
 * per frame after it. */
struct holder {
    struct net_task task;
    atomic_int release, held;
};

static void hold_run(void *arg)
{
    struct holder *h = arg;
    atomic_store(&h->held, 1);
    for (int i = 0; i < 300 && !atomic_load(&h->release); i++) usleep(10000); /* at most 3 s */
}

enum { STG_FRAMES = 3, STG_LEN = 80 * 1024 };

static void test_staging_after_big(void)
{
    struct net_node *a, *b;
    pair(&a, &b);
    char err[NET_ERR_LEN];
    static uint8_t src[STG_FRAMES][STG_LEN], dst[STG_FRAMES][STG_LEN];
    struct net_op *rops[STG_FRAMES] = { 0 }, *sops[STG_FRAMES] = { 0 };
    net_peer_id ida = net_stage_id(0, 0), idb = net_stage_id(1, 0);
    net_stats st0, st1;
    ST(net_peer_stats(b, ida, &st0), NET_OK);
    for (int i = 0; i < STG_FRAMES; i++) {
        fill(src[i], STG_LEN, 100u + (uint32_t)i);
        net_key k = { 64, (uint64_t)i, 0, 0 };
        ST(net_recv_post(b, ida, k, dst[i], STG_LEN, &rops[i], err), NET_OK);
    }
    struct holder h = { 0 };
    h.task.fn = hold_run;
    h.task.arg = &h;
    ST(net_task_post(b, &h.task, err), NET_OK);
    for (int i = 0; i < 300 && !atomic_load(&h.held); i++) usleep(10000);
    for (int i = 0; i < STG_FRAMES; i++) {
        net_key k = { 64, (uint64_t)i, 0, 0 };
        ST(net_send(a, idb, k, src[i], STG_LEN, 2000, &sops[i], err), NET_OK);
    }
    /* the frames are in the kernel's buffers (or 2 s went by) */
    for (int i = 0; i < STG_FRAMES; i++) net_wait(sops[i], 2000, err);
    usleep(20000);
    atomic_store(&h.release, 1);
    for (int i = 0; i < STG_FRAMES; i++) {
        int st = net_wait(rops[i], 5000, err);
        if (st != NET_OK) fprintf(stderr, "\n  frame %d: %s\n", i, err);
        CU_ASSERT_EQUAL(st, NET_OK);
        CU_ASSERT(memcmp(src[i], dst[i], STG_LEN) == 0);
    }
    ST(net_peer_stats(b, ida, &st1), NET_OK);
    uint64_t staged = st1.rx_staged - st0.rx_staged;
    /* the first read, before any header said "big": up to the 64 KiB
     * staging buffer; then at most 4 KiB per frame */
    if (staged > 64 * 1024 + STG_FRAMES * 4096)
        fprintf(stderr, "\n  %llu payload bytes went through the staging buffer\n", (unsigned long long)staged);
    CU_ASSERT(staged <= 64 * 1024 + STG_FRAMES * 4096);
    net_task_forget(b, &h.task);
    for (int i = 0; i < STG_FRAMES; i++) {
        net_op_free(rops[i]);
        net_op_free(sops[i]);
    }
    net_node_free(a);
    net_node_free(b);
}

/* net_nt_recv_sliced: b's task posts one sliced receive per message (slice
 * SL bytes; message lengths around and between multiples of it, and 0); the
 * consumer copies each slice to its offset in an output buffer and checks
 * that slices come in payload order, whole (SL bytes but the last), and from
 * the scratch while the message is read; one message is sent before its
 * receive is posted (it waits in net/'s buffer and is handed over from
 * there, not through the scratch); one is sent with a wrong CRC32C
 * (NET_SEND_CRC): its slices are handed over, unverified, and the receive
 * then fails as a checksum mismatch naming the peer. Every other message is
 * sent only once the task has posted its receive (x.nposted): the receive is
 * in place when net_nt_recv_sliced returns, so the message cannot overtake
 * it, whereas net_task_post promises only "soon" (sent right after the post,
 * S_BADCRC was at times read into net/'s buffer before the task ran). */
enum { SL = 4096 + 64, SMSGS = 9, SLEN = 5 * SL + 100 };
static const uint64_t slen[SMSGS] = { 0, 1 * 4, SL - 4, SL, SL + 4, 3 * SL + 40, SLEN, 2 * SL, 1000 };
enum { S_EARLY = 7, S_BADCRC = 8 };
enum { S_WAITING = 1000, S_OK = 1001 };

struct sliced {
    struct net_node *b;
    struct net_task task;
    uint8_t scratch[SL];
    uint8_t out[SMSGS][SLEN];
    uint64_t next_at[SMSGS];
    int slices[SMSGS], from_scratch[SMSGS], bad_order;
    struct net_op *rop[SMSGS];
    int posted;
    atomic_int nposted;  /* receives the task has posted (x.posted, published for the test) */
    atomic_int go_early; /* the test sent message S_EARLY: post its receive now */
    atomic_int status[SMSGS], done; /* status: S_WAITING, S_OK or the failure's NET_* */
    char err[SMSGS][NET_ERR_LEN];
    char perr[NET_ERR_LEN];
};

struct slice_arg { struct sliced *x; int i; };
static struct slice_arg sargs[SMSGS];

static void on_slice(void *arg, const void *p, uint64_t k, uint64_t at)
{
    struct slice_arg *a = arg;
    struct sliced *x = a->x;
    int i = a->i;
    if (at != x->next_at[i] || k == 0 || k > SL || (at + k < slen[i] && k != SL) || at + k > slen[i]) {
        x->bad_order++;
        return;
    }
    x->next_at[i] = at + k;
    x->slices[i]++;
    x->from_scratch[i] += p == x->scratch;
    memcpy(x->out[i] + at, p, k);
}

static void sliced_run(void *arg)
{
    struct sliced *x = arg;
    for (; x->posted < SMSGS; x->posted++) {
        int i = x->posted;
        if (i == S_EARLY && !atomic_load(&x->go_early)) break;
        net_key k = { 65, (uint64_t)i, 0, 0 };
        sargs[i] = (struct slice_arg){ x, i };
        if (net_nt_recv_sliced(x->b, net_stage_id(0, 0), k, SLEN, x->scratch, SL, on_slice, &sargs[i], &x->task,
                               &x->rop[i], x->perr) != NET_OK) {
            atomic_store(&x->status[i], -100);
            x->posted = SMSGS;
            break;
        }
    }
    atomic_store(&x->nposted, x->posted);
    int done = 0;
    for (int i = 0; i < SMSGS; i++) {
        if (x->rop[i] && atomic_load(&x->status[i]) == S_WAITING) {
            int st = net_op_test(x->rop[i], x->err[i]);
            if (st != NET_PENDING) atomic_store(&x->status[i], st == NET_OK ? S_OK : st);
        }
        done += atomic_load(&x->status[i]) != S_WAITING;
    }
    if (done == SMSGS) atomic_store(&x->done, 1);
}

/* 1 once b's task has posted the receives of messages 0..k-1 (or failed to
 * post one: its status says so), 0 with a message after 5 s. */
static int sliced_posted(struct sliced *x, int k)
{
    for (int i = 0; i < 500 && atomic_load(&x->nposted) < k; i++) usleep(10000);
    if (atomic_load(&x->nposted) >= k) return 1;
    fprintf(stderr, "\n  the task posted %d receives in 5 s, not %d\n", atomic_load(&x->nposted), k);
    return 0;
}

static void test_sliced(void)
{
    struct net_node *a, *b;
    pair(&a, &b);
    char err[NET_ERR_LEN];
    net_peer_id ib = net_stage_id(1, 0), ia = net_stage_id(0, 0);
    static struct sliced x;
    static uint8_t src[SMSGS][SLEN];
    memset(&x, 0, sizeof x);
    x.b = b;
    x.task.fn = sliced_run;
    x.task.arg = &x;
    for (int i = 0; i < SMSGS; i++) atomic_store(&x.status[i], S_WAITING);
    struct net_op *s[SMSGS] = { 0 };
    net_stats st0, st1;
    ST(net_peer_stats(b, ia, &st0), NET_OK);
    for (int i = 0; i < SMSGS; i++) fill(src[i], slen[i], 300u + (uint32_t)i);
    /* the early one first: nobody has asked for it yet */
    net_key ke = { 65, S_EARLY, 0, 0 };
    ST(net_send(a, ib, ke, src[S_EARLY], slen[S_EARLY], 5000, &s[S_EARLY], err), NET_OK);
    ST(net_wait(s[S_EARLY], 5000, err), NET_OK);
    for (int i = 0; i < 200; i++) { /* until b has read it into its own buffer */
        ST(net_peer_stats(b, ia, &st1), NET_OK);
        if (st1.frames_rx > st0.frames_rx) break;
        usleep(10000);
    }
    if (st1.frames_rx == st0.frames_rx) fprintf(stderr, "\n  b did not read the early message in 2 s\n");
    CU_ASSERT_FATAL(st1.frames_rx > st0.frames_rx);
    ST(net_task_post(b, &x.task, err), NET_OK);
    CU_ASSERT(sliced_posted(&x, S_EARLY)); /* 0..S_EARLY-1 in place before they are sent */
    for (int i = 0; i < SMSGS; i++) {
        if (i == S_EARLY) continue;
        if (i == S_EARLY + 1) CU_ASSERT(sliced_posted(&x, SMSGS)); /* and the ones after it */
        net_key k = { 65, (uint64_t)i, 0, 0 };
        /* a wrong CRC announced for S_BADCRC (sealed frames: the tag decides, the CRC is not checked) */
        ST(net_send_ex(a, ib, k, src[i], slen[i], i == S_BADCRC ? NET_SEND_CRC : 0, 0x12345678u, 5000, &s[i], err),
           NET_OK);
        if (i == S_EARLY - 1) {
            atomic_store(&x.go_early, 1);
            ST(net_task_post(b, &x.task, err), NET_OK);
        }
    }
    for (int i = 0; i < 500 && !atomic_load(&x.done); i++) usleep(10000);
    net_task_forget(b, &x.task);
    CU_ASSERT_EQUAL_FATAL(atomic_load(&x.done), 1);
    CU_ASSERT_EQUAL(x.bad_order, 0);
    const char *enc = getenv("PIPETRAIN_TEST_ENCRYPT");
    int sealed = enc && *enc && strcmp(enc, "0") != 0;
    for (int i = 0; i < SMSGS; i++) {
        int want_slices = (int)((slen[i] + SL - 1) / SL);
        int stt = atomic_load(&x.status[i]);
        if (i == S_BADCRC && !sealed) {
            printf("\n  wrong CRC: %s", x.err[i]);
            CU_ASSERT_EQUAL(stt, NET_ERR);
            CU_ASSERT_PTR_NOT_NULL(strstr(x.err[i], "checksum mismatch"));
            CU_ASSERT_PTR_NOT_NULL(strstr(x.err[i], "stage 0"));
        } else {
            if (stt != S_OK) fprintf(stderr, "\n  message %d: %s\n", i, x.err[i]);
            CU_ASSERT_EQUAL(stt, S_OK);
            CU_ASSERT_EQUAL(net_op_len(x.rop[i]), slen[i]);
        }
        CU_ASSERT_EQUAL(x.slices[i], want_slices);
        CU_ASSERT_EQUAL(x.next_at[i], slen[i]);
        CU_ASSERT(memcmp(x.out[i], src[i], slen[i]) == 0);
        /* read from the socket into the scratch, but the early one: from net's buffer */
        if (x.from_scratch[i] != (i == S_EARLY ? 0 : want_slices))
            fprintf(stderr, "\n  message %d: %d of its %d slices from the scratch\n", i, x.from_scratch[i],
                    want_slices);
        CU_ASSERT_EQUAL(x.from_scratch[i], i == S_EARLY ? 0 : want_slices);
    }
    ST(net_peer_stats(b, ia, &st1), NET_OK);
    CU_ASSERT(st1.unclaimed_max >= slen[S_EARLY]); /* S_EARLY did wait unclaimed */
    for (int i = 0; i < SMSGS; i++) {
        net_wait(s[i], 5000, err);
        net_op_free(s[i]);
        net_op_free(x.rop[i]);
    }
    net_node_free(a);
    net_node_free(b);
}

int main(void)
{
    CU_TestInfo tests[] = {
        { "a task on the network thread echoes messages", test_relay },
        { "net_nt_recv from a dead peer completes and runs the task", test_dead_peer },
        { "a task that keeps itself busy does not stall the network thread", test_busy_task },
        { "after a big payload the next one lands in place, not through the staging buffer", test_staging_after_big },
        { "net_nt_recv_sliced: slices in order through the scratch, early and corrupt messages", test_sliced },
        CU_TEST_INFO_NULL,
    };
    return tests_run("net_coll", tests);
}
