/* test_net_seal.c — CUnit suite for sealed frames (net_seal.c and the
 * encrypted connection path): the record codec with both AEADs (round trips,
 * every tampered bit, a wrong key, replayed, reordered and dropped frames),
 * then real nodes with encryption on (round trips, a node that does not
 * encrypt is refused) and a hand-driven fake peer that authenticates and then
 * replays a captured sealed frame or seals with a wrong key: the node must
 * close the connection with an authentication failure naming the peer. */
#include <signal.h>
#include <stdint.h>

#include "net/net.h"
#include "net/net_util.h"
#include "net/net_wire.h"
#include "tests/net_fixture.h"
#include "tests/tests.h"

static const int aeads[] = { NET_AEAD_AES256GCM, NET_AEAD_CHACHA20 };

/* Two hellos of a connection between stage 0 and stage 1 with fresh nonces. */
static void hellos(uint8_t a[NET_HELLO_LEN], uint8_t b[NET_HELLO_LEN], int aead)
{
    net_hello ha = { .version = NET_VERSION, .aead = (uint8_t)aead, .id = net_stage_id(0, 0), .run_id = 7 };
    net_hello hb = ha;
    hb.id = net_stage_id(1, 0);
    net_random(ha.nonce, NET_NONCE_LEN);
    net_random(hb.nonce, NET_NONCE_LEN);
    net_hello_encode(a, &ha);
    net_hello_encode(b, &hb);
}

/* Seals one frame (header for key k, len payload bytes) into out; returns its size. */
static size_t seal_frame(struct net_seal *s, uint8_t *out, net_key k, const uint8_t *payload, uint64_t len)
{
    net_hdr h = { .version = NET_VERSION, .type = k.type, .sender = net_stage_id(0, 0), .step = k.step,
                  .mb = k.mb, .chunk = k.chunk, .len = len, .crc = net_crc32c(0, payload, len) };
    uint8_t hdr[NET_HDR_LEN];
    net_hdr_encode(hdr, &h);
    CU_ASSERT_EQUAL(net_seal_begin(s, out, hdr, len), NET_OK);
    if (!len) return NET_SEALED_HDR_LEN;
    /* in uneven slices, as the write path does */
    for (uint64_t at = 0; at < len;) {
        uint64_t k2 = len - at < 1000 ? len - at : 1000 + at % 7;
        CU_ASSERT_EQUAL(net_seal_update(s, out + NET_SEALED_HDR_LEN + at, payload + at, k2), NET_OK);
        at += k2;
    }
    CU_ASSERT_EQUAL(net_seal_end(s, out + NET_SEALED_HDR_LEN + len), NET_OK);
    return NET_SEALED_HDR_LEN + len + NET_SEAL_TAG;
}

/* Opens one sealed frame of n bytes in place (as the read path does);
 * NET_OK and the payload in *pl, or NET_ERR with the reason in err. */
static int open_frame(struct net_seal *s, uint8_t *in, size_t n, net_hdr *h, uint8_t **pl, char *err)
{
    uint8_t hdr[NET_HDR_LEN];
    if (n < NET_SEALED_HDR_LEN) return net_seterr(err, "short");
    if (net_open_hdr(s, hdr, in, err) != NET_OK) return NET_ERR;
    if (net_hdr_decode(hdr, h, 1u << 20, err) != NET_OK) return NET_ERR;
    if (net_open_begin(s, hdr, h->len) != NET_OK) return net_seterr(err, "begin");
    *pl = in + NET_SEALED_HDR_LEN;
    if (!h->len) return NET_OK;
    if (n < NET_SEALED_HDR_LEN + h->len + NET_SEAL_TAG) return net_seterr(err, "short");
    CU_ASSERT_EQUAL(net_open_update(s, *pl, *pl, h->len), NET_OK);
    return net_open_end(s, *pl + h->len, err);
}

/* Every frame seals and opens back to its bytes; every single flipped bit of
 * a sealed frame (header, payload, tags) fails authentication. */
static void test_seal_roundtrip_and_every_bit(void)
{
    static const uint64_t sizes[] = { 0, 1, 17, 4099 };
    uint8_t *pl = malloc(8192), *frame = malloc(8192 + 128), *copy = malloc(8192 + 128);
    for (size_t ai = 0; ai < 2; ai++)
        for (size_t si = 0; si < 4; si++) {
            uint8_t ha[NET_HELLO_LEN], hb[NET_HELLO_LEN], tx[32], rx[32], ptx[32], prx[32];
            hellos(ha, hb, aeads[ai]);
            ST(net_seal_keys(tx, rx, aeads[ai], (const uint8_t *)SECRET, strlen(SECRET), ha, hb), NET_OK);
            ST(net_seal_keys(ptx, prx, aeads[ai], (const uint8_t *)SECRET, strlen(SECRET), hb, ha), NET_OK);
            CU_ASSERT(memcmp(tx, prx, 32) == 0 && memcmp(rx, ptx, 32) == 0); /* each direction agrees */
            CU_ASSERT(memcmp(tx, rx, 32) != 0);                            /* and the two differ */
            uint64_t len = sizes[si];
            fill(pl, len, (uint32_t)(si + 10 * ai));
            struct net_seal *s = net_seal_new(aeads[ai], tx, 1);
            net_key k = { NET_TYPE_USER, 3, 4, 5 };
            size_t n = seal_frame(s, frame, k, pl, len);
            CU_ASSERT(len == 0 || memcmp(frame + NET_SEALED_HDR_LEN, pl, len) != 0); /* no plaintext */
            net_hdr h;
            uint8_t *got;
            char err[NET_ERR_LEN];
            struct net_seal *o = net_seal_new(aeads[ai], prx, 0);
            memcpy(copy, frame, n);
            ST(open_frame(o, copy, n, &h, &got, err), NET_OK);
            CU_ASSERT(h.len == len && h.step == 3 && h.mb == 4 && h.chunk == 5);
            CU_ASSERT(memcmp(got, pl, len) == 0);
            net_seal_free(o);
            int missed = 0;
            for (size_t bit = 0; bit < n * 8; bit += len > 100 ? 13 : 1) {
                o = net_seal_new(aeads[ai], prx, 0);
                memcpy(copy, frame, n);
                copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
                int st = open_frame(o, copy, n, &h, &got, err);
                if (st == NET_OK || !strstr(err, "authentication failed")) {
                    if (!missed++) fprintf(stderr, "bit %zu of a %zu-byte %s frame: %s\n", bit, n,
                                           net_aead_name(aeads[ai]), st == NET_OK ? "opened" : err);
                }
                net_seal_free(o);
            }
            CU_ASSERT_EQUAL(missed, 0);
            net_seal_free(s);
        }
    free(pl);
    free(frame);
    free(copy);
}

/* A wrong key (other secret, or the other direction's key: a reflected
 * frame), a replayed frame, two frames swapped and a dropped frame all fail. */
static void test_seal_wrong_key_replay_reorder(void)
{
    uint8_t ha[NET_HELLO_LEN], hb[NET_HELLO_LEN], tx[32], rx[32], wtx[32], wrx[32];
    uint8_t f[3][256], pl[100], buf[256];
    size_t n[3];
    char err[NET_ERR_LEN];
    net_hdr h;
    uint8_t *got;
    hellos(ha, hb, NET_AEAD_AES256GCM);
    ST(net_seal_keys(tx, rx, NET_AEAD_AES256GCM, (const uint8_t *)SECRET, strlen(SECRET), ha, hb), NET_OK);
    ST(net_seal_keys(wtx, wrx, NET_AEAD_AES256GCM, (const uint8_t *)"another-secret-0123456789", 25, hb, ha), NET_OK);
    struct net_seal *s = net_seal_new(NET_AEAD_AES256GCM, tx, 1);
    for (int i = 0; i < 3; i++) {
        fill(pl, sizeof pl, (uint32_t)i);
        n[i] = seal_frame(s, f[i], (net_key){ NET_TYPE_USER, (uint64_t)i, 0, 0 }, pl, sizeof pl);
    }
    net_seal_free(s);
    /* wrong key: another secret; this direction's own key used to open */
    const uint8_t *bad[2] = { wrx, rx };
    for (int b = 0; b < 2; b++) {
        struct net_seal *o = net_seal_new(NET_AEAD_AES256GCM, bad[b], 0);
        memcpy(buf, f[0], n[0]);
        CU_ASSERT_EQUAL(open_frame(o, buf, n[0], &h, &got, err), NET_ERR);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "authentication failed on the header of frame 0"));
        net_seal_free(o);
    }
    /* the right key opens frame 0; replaying it as frame 1 fails */
    struct net_seal *o = net_seal_new(NET_AEAD_AES256GCM, tx, 0);
    memcpy(buf, f[0], n[0]);
    ST(open_frame(o, buf, n[0], &h, &got, err), NET_OK);
    memcpy(buf, f[0], n[0]);
    CU_ASSERT_EQUAL(open_frame(o, buf, n[0], &h, &got, err), NET_ERR);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "frame 1"));
    net_seal_free(o);
    /* reordered: frame 1 first; dropped: frame 0 then frame 2 */
    o = net_seal_new(NET_AEAD_AES256GCM, tx, 0);
    memcpy(buf, f[1], n[1]);
    CU_ASSERT_EQUAL(open_frame(o, buf, n[1], &h, &got, err), NET_ERR);
    net_seal_free(o);
    o = net_seal_new(NET_AEAD_AES256GCM, tx, 0);
    memcpy(buf, f[0], n[0]);
    ST(open_frame(o, buf, n[0], &h, &got, err), NET_OK);
    memcpy(buf, f[2], n[2]);
    CU_ASSERT_EQUAL(open_frame(o, buf, n[2], &h, &got, err), NET_ERR);
    net_seal_free(o);
    /* a payload moved under another frame's header: the header is the payload's AAD */
    o = net_seal_new(NET_AEAD_AES256GCM, tx, 0);
    memcpy(buf, f[0], NET_SEALED_HDR_LEN);
    memcpy(buf + NET_SEALED_HDR_LEN, f[1] + NET_SEALED_HDR_LEN, n[1] - NET_SEALED_HDR_LEN);
    CU_ASSERT_EQUAL(open_frame(o, buf, n[0], &h, &got, err), NET_ERR);
    net_seal_free(o);
}

static void enc_cfg(net_config *c, net_peer_id id, int aead)
{
    cfg_for(c, id);
    c->encrypt = 1;
    c->aead = aead;
}

/* Real nodes with encryption on: sizes 0 B..8 MiB both ways, AES-GCM on one
 * side and ChaCha20 preferred on the other (they agree on AES-GCM), and both
 * preferring ChaCha20. */
static void test_encrypted_roundtrips(void)
{
    static const uint64_t sizes[] = { 0, 1, 48, 65536, 262144 + 5, 8u << 20 };
    uint8_t *src = malloc(8u << 20), *dst = malloc(8u << 20);
    for (int pairing = 0; pairing < 2; pairing++) {
        net_config ca, cb;
        enc_cfg(&ca, net_stage_id(0, 0), pairing ? NET_AEAD_CHACHA20 : NET_AEAD_AES256GCM);
        enc_cfg(&cb, net_stage_id(1, 0), NET_AEAD_CHACHA20);
        struct net_node *a, *b;
        pair_cfg(&a, &b, &ca, &cb);
        char err[NET_ERR_LEN];
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            for (int dir = 0; dir < 2; dir++) {
                struct net_node *from = dir ? b : a, *to = dir ? a : b;
                net_peer_id fid = dir ? cb.self : ca.self, tid = dir ? ca.self : cb.self;
                fill(src, sizes[i], (uint32_t)(i * 2 + dir));
                memset(dst, 0, sizes[i]);
                net_key k = { NET_TYPE_USER, i, (uint32_t)dir, 0 };
                struct net_op *op;
                ST(net_send(from, tid, k, src, sizes[i], 5000, &op, err), NET_OK);
                uint64_t len = 0;
                int st = net_recv(to, fid, k, dst, sizes[i], &len, 10000, err);
                if (st != NET_OK) fprintf(stderr, "recv: %s\n", err);
                ST(st, NET_OK);
                ST(net_wait(op, 10000, err), NET_OK);
                net_op_free(op);
                CU_ASSERT_EQUAL(len, sizes[i]);
                CU_ASSERT(memcmp(src, dst, sizes[i]) == 0);
            }
        }
        net_node_free(b);
        net_node_free(a);
    }
    free(src);
    free(dst);
}

/* A node that does not encrypt meets one that does: refused, with the reason
 * logged on both sides. */
static void test_encrypt_mismatch_refused(void)
{
    net_config ca, cb;
    char err[NET_ERR_LEN];
    enc_cfg(&ca, net_stage_id(0, 0), 0);
    cfg_for(&cb, net_stage_id(1, 0));
    cb.encrypt = 0;
    log_clear();
    struct net_node *a = node_or_die(&ca), *b = node_or_die(&cb);
    ST(net_connect(b, ca.self, "127.0.0.1", net_node_port(a), err), NET_OK);
    CU_ASSERT_NOT_EQUAL(net_wait_peer(b, ca.self, 10000, err), NET_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "encrypts its frames and this process does not"));
    /* the listener refuses the hello in its own time: wait for its log line */
    for (int i = 0; i < 500 && !log_has("does not encrypt its frames and this process does"); i++) usleep(10000);
    CU_ASSERT(log_has("does not encrypt its frames and this process does"));
    net_node_free(b);
    net_node_free(a);
}

/* --- a fake peer that authenticates and then seals by hand ----------------- */
struct sfake {
    struct fake f;
    struct net_seal *tx, *rx;
};

/* fake_handshake with the hello announcing AES-256-GCM; keys derived from
 * key_secret (SECRET: the right keys). 0 once both proofs verified. */
static int sealed_handshake(struct sfake *s, int port, const char *key_secret)
{
    net_hdr h;
    uint8_t buf[512];
    char err[NET_ERR_LEN];
    struct fake *f = &s->f;
    f->fd = fake_open(port);
    if (f->fd < 0) return -1;
    net_hello me = { .version = NET_VERSION, .aead = NET_AEAD_AES256GCM, .id = f->id, .run_id = 7 };
    memset(me.topo_hash, 0xAB, NET_HASH_LEN);
    net_random(me.nonce, NET_NONCE_LEN);
    net_hello_encode(f->mine, &me);
    put_frame(f->fd, NET_T_HELLO, f->id, (net_key){ 0 }, NET_HELLO_LEN, net_crc32c(0, f->mine, NET_HELLO_LEN),
              f->mine, NET_HELLO_LEN);
    if (get_frame(f->fd, &h, buf, sizeof buf) < 0 || h.type != NET_T_HELLO) return -1;
    memcpy(f->theirs, buf, NET_HELLO_LEN);
    net_auth_proof(f->proof, (const uint8_t *)SECRET, strlen(SECRET), f->mine, f->theirs);
    put_frame(f->fd, NET_T_AUTH, f->id, (net_key){ 0 }, NET_PROOF_LEN, net_crc32c(0, f->proof, NET_PROOF_LEN),
              f->proof, NET_PROOF_LEN);
    if (get_frame(f->fd, &h, buf, sizeof buf) < 0 || h.type != NET_T_AUTH) return -1;
    if (net_auth_verify(buf, h.len, (const uint8_t *)SECRET, strlen(SECRET), f->theirs, f->mine, err) != NET_OK)
        return -1;
    uint8_t tx[32], rx[32];
    if (net_seal_keys(tx, rx, NET_AEAD_AES256GCM, (const uint8_t *)key_secret, strlen(key_secret), f->mine,
                      f->theirs) != NET_OK)
        return -1;
    s->tx = net_seal_new(NET_AEAD_AES256GCM, tx, 1);
    s->rx = net_seal_new(NET_AEAD_AES256GCM, rx, 0);
    return s->tx && s->rx ? 0 : -1;
}

/* Reads sealed frames from the node until an error frame (1 when it contains
 * what), EOF or a frame that does not open (0). */
static int sealed_expect_error(struct sfake *s, const char *what)
{
    uint8_t sh[NET_SEALED_HDR_LEN], hdr[NET_HDR_LEN], buf[2048];
    char err[NET_ERR_LEN];
    net_hdr h;
    for (;;) {
        if (get_all(s->f.fd, sh, sizeof sh) < 0 || net_open_hdr(s->rx, hdr, sh, err) != NET_OK ||
            net_hdr_decode(hdr, &h, sizeof buf - 1, err) != NET_OK || net_open_begin(s->rx, hdr, h.len) != NET_OK)
            return 0;
        if (h.len && (get_all(s->f.fd, buf, h.len + NET_SEAL_TAG) < 0 ||
                      net_open_update(s->rx, buf, buf, h.len) != NET_OK ||
                      net_open_end(s->rx, buf + h.len, err) != NET_OK))
            return 0;
        buf[h.len] = 0;
        if (h.type == NET_T_ERROR) {
            if (!strstr((char *)buf, what)) fprintf(stderr, "error frame: %s\n", buf);
            return strstr((char *)buf, what) != NULL;
        }
    }
}

/* The fake sends one sealed message, which arrives; then the same bytes again
 * (a replay): the node closes the connection, says why (sealed) and logs an
 * authentication failure naming stage 5. With keys from a wrong secret the
 * very first frame fails the same way. */
static void test_replayed_frame_and_wrong_key_live(void)
{
    for (int wrong = 0; wrong < 2; wrong++) {
        net_config ca;
        char err[NET_ERR_LEN];
        enc_cfg(&ca, net_stage_id(0, 0), 0);
        log_clear();
        struct net_node *a = node_or_die(&ca);
        struct sfake s = { .f = { .id = net_stage_id(5, 0) } };
        ST(sealed_handshake(&s, net_node_port(a), wrong ? "a-wrong-secret-0123456789" : SECRET), 0);
        ST(net_wait_peer(a, s.f.id, 5000, err), NET_OK);
        uint8_t pl[3000], frame[3200], got[3000];
        fill(pl, sizeof pl, 99);
        net_key k = { NET_TYPE_USER, 1, 0, 0 };
        net_hdr h = { .version = NET_VERSION, .type = k.type, .sender = s.f.id, .step = 1, .len = sizeof pl,
                      .crc = net_crc32c(0, pl, sizeof pl) };
        uint8_t hdr[NET_HDR_LEN];
        net_hdr_encode(hdr, &h);
        ST(net_seal_begin(s.tx, frame, hdr, sizeof pl), NET_OK);
        ST(net_seal_update(s.tx, frame + NET_SEALED_HDR_LEN, pl, sizeof pl), NET_OK);
        ST(net_seal_end(s.tx, frame + NET_SEALED_HDR_LEN + sizeof pl), NET_OK);
        size_t n = NET_SEALED_HDR_LEN + sizeof pl + NET_SEAL_TAG;
        ST(put_raw(s.f.fd, frame, n), 0);
        uint64_t len = 0;
        if (!wrong) {
            ST(net_recv(a, s.f.id, k, got, sizeof got, &len, 5000, err), NET_OK);
            CU_ASSERT(len == sizeof pl && memcmp(got, pl, sizeof pl) == 0);
            ST(put_raw(s.f.fd, frame, n), 0); /* the replay */
        }
        int st = net_recv(a, s.f.id, k, got, sizeof got, &len, 5000, err);
        CU_ASSERT(st == NET_DEAD || st == NET_CLOSED);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "authentication failed"));
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "stage 5"));
        CU_ASSERT(log_has("authentication failed on the header of frame"));
        if (!wrong) CU_ASSERT(sealed_expect_error(&s, "authentication failed on the header of frame 1"));
        CU_ASSERT_NOT_EQUAL(net_peer_status(a, s.f.id, err), NET_OK);
        close(s.f.fd);
        net_seal_free(s.tx);
        net_seal_free(s.rx);
        net_node_free(a);
    }
}

/* Reads sealed frames from the node, skipping heartbeats, until a user
 * message: 0 with its header in *h and payload (up to cap bytes) in buf, -1
 * on EOF or a frame that does not open. */
static int sealed_read_user(struct sfake *s, net_hdr *h, uint8_t *buf, size_t cap)
{
    uint8_t sh[NET_SEALED_HDR_LEN], hdr[NET_HDR_LEN];
    char err[NET_ERR_LEN];
    for (;;) {
        if (get_all(s->f.fd, sh, sizeof sh) < 0 || net_open_hdr(s->rx, hdr, sh, err) != NET_OK ||
            net_hdr_decode(hdr, h, cap, err) != NET_OK || net_open_begin(s->rx, hdr, h->len) != NET_OK)
            return -1;
        if (h->len && (get_all(s->f.fd, buf, h->len + NET_SEAL_TAG) < 0 ||
                       net_open_update(s->rx, buf, buf, h->len) != NET_OK ||
                       net_open_end(s->rx, buf + h->len, err) != NET_OK))
            return -1;
        if (h->type >= NET_TYPE_USER) return 0;
    }
}

/* The fake seals a user message from stage 5 whose header's payload CRC
 * field is crc; flip (>= 0) xors 0x01 into that payload byte of the sealed
 * frame before it goes out. */
static void sealed_put_user(struct sfake *s, net_key k, const uint8_t *pl, size_t len, uint32_t crc, long flip)
{
    uint8_t hdr[NET_HDR_LEN], *frame = malloc(NET_SEALED_HDR_LEN + len + NET_SEAL_TAG);
    net_hdr h = { .version = NET_VERSION, .type = k.type, .sender = s->f.id, .step = k.step, .mb = k.mb,
                  .chunk = k.chunk, .len = len, .crc = crc };
    net_hdr_encode(hdr, &h);
    ST(net_seal_begin(s->tx, frame, hdr, len), NET_OK);
    ST(net_seal_update(s->tx, frame + NET_SEALED_HDR_LEN, pl, len), NET_OK);
    ST(net_seal_end(s->tx, frame + NET_SEALED_HDR_LEN + len), NET_OK);
    if (flip >= 0) frame[NET_SEALED_HDR_LEN + flip] ^= 0x01;
    ST(put_raw(s->f.fd, frame, NET_SEALED_HDR_LEN + len + NET_SEAL_TAG), 0);
    free(frame);
}

/* The payload CRC32C field of sealed user frames is 0 and unused
 * (net_wire.h): an encrypting node sends 0 there, with or without
 * NET_SEND_CRC and the caller's value; it delivers a sealed frame whatever
 * the field holds and net_op_crc gives 0 for it; and a flipped payload byte
 * of a frame whose field is 0 is caught by the payload tag alone: the
 * receive fails as an authentication failure naming the frame and stage 5,
 * and its buffer holds nothing of the payload. */
static void test_sealed_payload_crc_unused(void)
{
    enum { N = 3000 };
    net_config ca;
    char err[NET_ERR_LEN];
    enc_cfg(&ca, net_stage_id(0, 0), 0);
    log_clear();
    struct net_node *a = node_or_die(&ca);
    struct sfake s = { .f = { .id = net_stage_id(5, 0) } };
    ST(sealed_handshake(&s, net_node_port(a), SECRET), 0);
    ST(net_wait_peer(a, s.f.id, 5000, err), NET_OK);
    uint8_t pl[N], got[N + NET_SEAL_TAG];
    fill(pl, N, 123);
    uint32_t crc = net_crc32c(0, pl, N);
    CU_ASSERT_NOT_EQUAL(crc, 0);
    /* the node's frames: the field is 0, the payload intact */
    for (int with_crc = 0; with_crc < 2; with_crc++) {
        net_key k = { NET_TYPE_USER + 1, 10 + (uint64_t)with_crc, 0, 0 };
        struct net_op *op = NULL;
        ST(net_send_ex(a, s.f.id, k, pl, N, with_crc ? NET_SEND_CRC : 0, crc, 5000, &op, err), NET_OK);
        net_hdr h;
        memset(got, 0, sizeof got);
        ST(sealed_read_user(&s, &h, got, sizeof got), 0);
        CU_ASSERT_EQUAL(h.type, k.type);
        CU_ASSERT_EQUAL(h.step, k.step);
        CU_ASSERT_EQUAL(h.len, N);
        CU_ASSERT_EQUAL(h.crc, 0);
        if (h.crc) fprintf(stderr, "\n  sealed frame %d carries payload CRC 0x%08x, want 0", with_crc, h.crc);
        CU_ASSERT(memcmp(got, pl, N) == 0);
        ST(net_wait(op, 5000, err), NET_OK);
        net_op_free(op);
    }
    /* the field is not read: a frame with any value in it is delivered, net_op_crc 0 */
    net_key k = { NET_TYPE_USER, 1, 0, 0 };
    struct net_op *r = NULL;
    ST(net_recv_post(a, s.f.id, k, got, N, &r, err), NET_OK);
    sealed_put_user(&s, k, pl, N, crc ^ 0x5a5a5a5a, -1);
    ST(net_wait(r, 5000, err), NET_OK);
    CU_ASSERT_EQUAL(net_op_len(r), N);
    CU_ASSERT(memcmp(got, pl, N) == 0);
    CU_ASSERT_EQUAL(net_op_crc(r), 0);
    net_op_free(r);
    /* one flipped payload byte, field 0: only the tag can catch it */
    k.step = 2;
    memset(got, 0, sizeof got);
    ST(net_recv_post(a, s.f.id, k, got, N, &r, err), NET_OK);
    sealed_put_user(&s, k, pl, N, 0, 1234);
    int st = net_wait(r, 5000, err);
    CU_ASSERT(st == NET_DEAD || st == NET_CLOSED);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "authentication failed on the payload of frame 1"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "stage 5"));
    CU_ASSERT_PTR_NULL(strstr(err, "checksum"));
    size_t nonzero = 0;
    for (size_t i = 0; i < N; i++) nonzero += got[i] != 0;
    CU_ASSERT_EQUAL(nonzero, 0);
    net_op_free(r);
    close(s.f.fd);
    net_seal_free(s.tx);
    net_seal_free(s.rx);
    net_node_free(a);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    CU_TestInfo tests[] = {
        { "sealed frames round trip; every flipped bit fails", test_seal_roundtrip_and_every_bit },
        { "wrong key, replayed, reordered, dropped frames fail", test_seal_wrong_key_replay_reorder },
        { "encrypted nodes: round trips 0 B..8 MiB, both AEADs", test_encrypted_roundtrips },
        { "encrypting and clear node refuse each other", test_encrypt_mismatch_refused },
        { "live: replayed sealed frame, wrong frame key", test_replayed_frame_and_wrong_key_live },
        { "live: sealed payload CRC field 0, unread; a flip caught by the tag", test_sealed_payload_crc_unused },
        CU_TEST_INFO_NULL,
    };
    return tests_run("net_seal", tests);
}
