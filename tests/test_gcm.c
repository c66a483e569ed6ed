/* test_gcm.c — CUnit suite for net_gcm.c, the VAES/AVX-512 AES-256-GCM that
 * sealed frames use when the CPU has it: known-answer vectors (GCM spec test
 * cases 13-16, NIST CAVS AAD-only), thousands of random records cross-checked
 * bit for bit against OpenSSL's EVP AES-256-GCM in both directions with random
 * streaming split points (in place and out of place), tampered text, tag or
 * AAD rejected, and sealed frames (net_seal) exchanged between this path and
 * the EVP path (PIPETRAIN_GCM=evp). Skipped, with a note, on a CPU without
 * VAES/VPCLMULQDQ/AVX-512. */
#include <stdint.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "net/net.h"
#include "net/net_gcm.h"
#include "net/net_util.h"
#include "net/net_wire.h"
#include "tests/tests.h"

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static void rnd_fill(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)rnd();
}

static int skip(void)
{
    if (net_gcm_available()) return 0;
    printf("\n  NOTE: this CPU lacks avx512f/bw/vl + vaes + vpclmulqdq: net_gcm not tested (sealed frames use OpenSSL)\n");
    CU_PASS("net_gcm unavailable on this CPU");
    return 1;
}

/* OpenSSL EVP AES-256-GCM over one record; decrypting, returns 1 only when tag verifies. */
static int evp_gcm(int enc, const uint8_t key[32], const uint8_t iv[12], const uint8_t *aad, size_t aad_len,
                   const uint8_t *in, size_t n, uint8_t *out, uint8_t tag[16])
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int outl = 0, ok = c && EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, key, iv, enc) == 1;
    if (ok && aad_len) ok = EVP_CipherUpdate(c, NULL, &outl, aad, (int)aad_len) == 1;
    if (ok && n) ok = EVP_CipherUpdate(c, out, &outl, in, (int)n) == 1 && (size_t)outl == n;
    if (ok && !enc) ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, 16, tag) == 1;
    uint8_t dummy[16];
    if (ok) ok = EVP_CipherFinal_ex(c, dummy, &outl) == 1;
    if (ok && enc) ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, 16, tag) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok;
}

/* Ours over one record, the text given to net_gcm_update in random slices
 * (split 0: in one call; 1: slices of 1..max_slice bytes). */
static void ours(struct net_gcm *g, int enc, const uint8_t iv[12], const uint8_t *aad, size_t aad_len,
                 const uint8_t *in, size_t n, uint8_t *out, uint8_t tag[16], int split, size_t max_slice)
{
    net_gcm_begin(g, iv, aad, aad_len, enc);
    for (size_t at = 0; at < n;) {
        size_t k = split ? 1 + rnd() % max_slice : n;
        if (rnd() % 8 == 0) k = 0; /* empty updates are legal too */
        if (k > n - at) k = n - at;
        CU_ASSERT(net_gcm_update(g, out + at, in + at, k) == 0);
        at += k;
    }
    net_gcm_tag(g, tag);
}

static size_t unhex(uint8_t *out, const char *h)
{
    size_t n = strlen(h) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    return n;
}

static void test_known_answers(void)
{
    if (skip()) return;
    static const char *tc15p = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
                               "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
    static const char *tc15c = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
                               "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad";
    static const char *kfe = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
    static const char *z32 = "0000000000000000000000000000000000000000000000000000000000000000";
    struct {
        const char *name, *key, *iv, *aad, *pt, *ct, *tag;
    } v[] = {
        { "GCM spec 13: empty", z32, "000000000000000000000000", "", "", "", "530f8afbc74536b9a963b4f1c4cb738b" },
        { "GCM spec 14: one zero block", z32, "000000000000000000000000", "", "00000000000000000000000000000000",
          "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919" },
        { "GCM spec 15: 64 bytes", kfe, "cafebabefacedbaddecaf888", "", tc15p, tc15c,
          "b094dac5d93471bdec1a502270e3cc6c" },
        { "GCM spec 16: 60 bytes, 20 bytes AAD", kfe, "cafebabefacedbaddecaf888",
          "feedfacedeadbeeffeedfacedeadbeefabaddad2",
          "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
          "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
          "76fc6ece0f4e1768cddf8853bb2d551b" },
        { "CAVS gcmEncryptExtIV256: AAD only", "78dc4e0aaf52d935c3c01eea57428f00ca1fd475f5da86a49c8dd73d68c8e223",
          "d79cf22d504cc793c3fb6c8a", "b96baa8c1c75a671bfb2d08d06be5f36", "", "", "3e5d486aa2e30b22e040b85723a06e76" },
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint8_t key[32], iv[12], aad[64], pt[64], ct[64], tag[16], out[64], t[16];
        unhex(key, v[i].key);
        unhex(iv, v[i].iv);
        size_t na = unhex(aad, v[i].aad), np = unhex(pt, v[i].pt);
        unhex(ct, v[i].ct);
        unhex(tag, v[i].tag);
        struct net_gcm *g = net_gcm_new(key);
        CU_ASSERT_PTR_NOT_NULL_FATAL(g);
        for (int split = 0; split < 2; split++) {
            memset(out, 0, sizeof out);
            ours(g, 1, iv, aad, na, pt, np, out, t, split, 7);
            if (memcmp(out, ct, np) || memcmp(t, tag, 16)) printf("\n  %s: encryption differs\n", v[i].name);
            CU_ASSERT(memcmp(out, ct, np) == 0);
            CU_ASSERT(memcmp(t, tag, 16) == 0);
            ours(g, 0, iv, aad, na, ct, np, out, t, split, 5);
            CU_ASSERT(memcmp(out, pt, np) == 0);
            CU_ASSERT(memcmp(t, tag, 16) == 0);
        }
        /* a record longer than GCM allows (2^36 - 32 bytes) is refused before anything is touched */
        net_gcm_begin(g, iv, NULL, 0, 1);
        CU_ASSERT(net_gcm_update(g, out, pt, 16) == 0);
        CU_ASSERT(net_gcm_update(g, NULL, NULL, ((size_t)1 << 36) - 47) == -1);
        CU_ASSERT(net_gcm_update(g, out, pt, 16) == 0);
        /* and OpenSSL agrees with the vector */
        CU_ASSERT(evp_gcm(1, key, iv, aad, na, pt, np, out, t) && memcmp(out, ct, np) == 0 && memcmp(t, tag, 16) == 0);
        net_gcm_free(g);
    }
}

/* One random record of n text bytes: ours against EVP both ways, tampering. */
static void cross_one(size_t n, size_t aad_len, size_t max_slice)
{
    uint8_t key[32], iv[12], aad[100], tag_o[16], tag_e[16], t[16];
    rnd_fill(key, 32);
    rnd_fill(iv, 12);
    rnd_fill(aad, aad_len);
    uint8_t *pt = malloc(n + 1), *ct_o = malloc(n + 1), *ct_e = malloc(n + 1), *buf = malloc(n + 1);
    CU_ASSERT_FATAL(pt && ct_o && ct_e && buf);
    rnd_fill(pt, n);
    struct net_gcm *g = net_gcm_new(key);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    int inplace = (int)(rnd() & 1);
    if (inplace) {
        memcpy(ct_o, pt, n);
        ours(g, 1, iv, aad, aad_len, ct_o, n, ct_o, tag_o, 1, max_slice);
    } else {
        ours(g, 1, iv, aad, aad_len, pt, n, ct_o, tag_o, (int)(rnd() % 4 != 0), max_slice);
    }
    CU_ASSERT_FATAL(evp_gcm(1, key, iv, aad, aad_len, pt, n, ct_e, tag_e));
    int same = memcmp(ct_o, ct_e, n) == 0 && memcmp(tag_o, tag_e, 16) == 0;
    if (!same) printf("\n  differs from OpenSSL: n %zu aad %zu in place %d\n", n, aad_len, inplace);
    CU_ASSERT_FATAL(same);
    /* OpenSSL opens ours; ours opens OpenSSL's (in place) */
    CU_ASSERT(evp_gcm(0, key, iv, aad, aad_len, ct_o, n, buf, tag_o) && memcmp(buf, pt, n) == 0);
    memcpy(buf, ct_e, n);
    ours(g, 0, iv, aad, aad_len, buf, n, buf, t, 1, max_slice);
    CU_ASSERT(memcmp(buf, pt, n) == 0 && CRYPTO_memcmp(t, tag_e, 16) == 0);
    /* a flipped bit in the text, the tag or the AAD: both reject */
    memcpy(buf, ct_o, n);
    memcpy(t, tag_o, 16);
    int what = (int)(rnd() % 3);
    if (what == 0 && n) buf[rnd() % n] ^= (uint8_t)(1u << (rnd() % 8));
    else if (what == 1 && aad_len) aad[rnd() % aad_len] ^= (uint8_t)(1u << (rnd() % 8));
    else t[rnd() % 16] ^= (uint8_t)(1u << (rnd() % 8));
    uint8_t t2[16];
    ours(g, 0, iv, aad, aad_len, buf, n, ct_e, t2, 1, max_slice);
    CU_ASSERT(CRYPTO_memcmp(t2, t, 16) != 0);
    CU_ASSERT(!evp_gcm(0, key, iv, aad, aad_len, buf, n, ct_e, t));
    net_gcm_free(g);
    free(pt);
    free(ct_o);
    free(ct_e);
    free(buf);
}

static void test_cross_small(void)
{
    if (skip()) return;
    for (int i = 0; i < 3000; i++) {
        size_t n = i < 600 ? (size_t)i : rnd() % 5001;
        cross_one(n, rnd() % 101, 1 + rnd() % 700);
    }
}

static void test_cross_large(void)
{
    if (skip()) return;
    for (int i = 0; i < 4; i++) {
        size_t n = ((size_t)1 << 20) + rnd() % (3u << 20);
        cross_one(n, 48, 1 + rnd() % (300u << 10));
    }
}

/* Sealed frames between a net_seal on this path and one on the EVP path
 * (PIPETRAIN_GCM=evp at net_seal_new), both directions: the wire format is one. */
static void test_seal_interop(void)
{
    if (skip()) return;
    uint8_t key[NET_SEAL_KEY_LEN];
    rnd_fill(key, sizeof key);
    for (int dir = 0; dir < 2; dir++) {
        if (dir == 0) setenv("PIPETRAIN_GCM", "evp", 1);
        struct net_seal *tx = net_seal_new(NET_AEAD_AES256GCM, key, 1);
        unsetenv("PIPETRAIN_GCM");
        if (dir == 1) setenv("PIPETRAIN_GCM", "evp", 1);
        struct net_seal *rx = net_seal_new(NET_AEAD_AES256GCM, key, 0);
        unsetenv("PIPETRAIN_GCM");
        CU_ASSERT_FATAL(tx && rx);
        static const size_t lens[] = { 0, 1, 15, 16, 17, 255, 256, 257, 4096, 100000, 1 << 20 };
        for (size_t f = 0; f < sizeof lens / sizeof lens[0]; f++) {
            size_t len = lens[f];
            uint8_t hdr[NET_HDR_LEN], h2[NET_HDR_LEN], tag[NET_SEAL_TAG];
            uint8_t *frame = malloc(NET_SEALED_HDR_LEN + len + 1), *pl = malloc(len + 1);
            CU_ASSERT_FATAL(frame && pl);
            rnd_fill(hdr, sizeof hdr);
            rnd_fill(pl, len);
            CU_ASSERT(net_seal_begin(tx, frame, hdr, len) == NET_OK);
            for (size_t at = 0; at < len;) {
                size_t k = 1 + rnd() % 70000;
                if (k > len - at) k = len - at;
                CU_ASSERT(net_seal_update(tx, frame + NET_SEALED_HDR_LEN + at, pl + at, k) == NET_OK);
                at += k;
            }
            if (len) CU_ASSERT(net_seal_end(tx, tag) == NET_OK);
            char err[NET_ERR_LEN];
            CU_ASSERT(net_open_hdr(rx, h2, frame, err) == NET_OK);
            CU_ASSERT(memcmp(h2, hdr, NET_HDR_LEN) == 0);
            CU_ASSERT(net_open_begin(rx, h2, len) == NET_OK);
            uint8_t *p = frame + NET_SEALED_HDR_LEN;
            for (size_t at = 0; at < len;) {
                size_t k = 1 + rnd() % 3000;
                if (k > len - at) k = len - at;
                CU_ASSERT(net_open_update(rx, p + at, p + at, k) == NET_OK);
                at += k;
            }
            if (len) {
                CU_ASSERT(net_open_end(rx, tag, err) == NET_OK);
                CU_ASSERT(memcmp(p, pl, len) == 0);
            }
            free(frame);
            free(pl);
        }
        /* a wrong tag still fails across the two paths */
        uint8_t hdr[NET_HDR_LEN] = { 1 }, h2[NET_HDR_LEN], frame[NET_SEALED_HDR_LEN + 32], tag[NET_SEAL_TAG];
        char err[NET_ERR_LEN];
        CU_ASSERT(net_seal_begin(tx, frame, hdr, 32) == NET_OK);
        CU_ASSERT(net_seal_update(tx, frame + NET_SEALED_HDR_LEN, frame + NET_SEALED_HDR_LEN, 32) == NET_OK);
        CU_ASSERT(net_seal_end(tx, tag) == NET_OK);
        tag[3] ^= 4;
        CU_ASSERT(net_open_hdr(rx, h2, frame, err) == NET_OK);
        CU_ASSERT(net_open_begin(rx, h2, 32) == NET_OK);
        CU_ASSERT(net_open_update(rx, frame + NET_SEALED_HDR_LEN, frame + NET_SEALED_HDR_LEN, 32) == NET_OK);
        CU_ASSERT(net_open_end(rx, tag, err) == NET_ERR);
        CU_ASSERT(strstr(err, "authentication failed") != NULL);
        net_seal_free(tx);
        net_seal_free(rx);
    }
}

int main(void)
{
    CU_TestInfo tests[] = {
        { "known answers: GCM spec 13-16, CAVS AAD only", test_known_answers },
        { "3000 random records 0..5000 B against OpenSSL", test_cross_small },
        { "4 random records 1..4 MiB against OpenSSL", test_cross_large },
        { "sealed frames between this path and EVP", test_seal_interop },
        CU_TEST_INFO_NULL,
    };
    return tests_run("gcm", tests);
}
