/* net_seal.c — authenticated encryption of frames once a connection is
 * authenticated (layout in net_wire.h, "Sealed frames"): per-direction keys
 * derived with HKDF-SHA256 from the shared secret and both hellos, and the
 * AEAD (AES-256-GCM or ChaCha20-Poly1305) applied to a frame's header and
 * payload as two records under nonces made of the frame sequence number. Pure
 * functions over bytes plus one cipher context per direction: no sockets, no
 * threads; the fuzz target calls these directly.
 * The cipher is libcrypto's (EVP), except AES-256-GCM on a CPU with VAES,
 * VPCLMULQDQ and AVX-512: then net_gcm.c's, because Debian 12's OpenSSL 3.0
 * has no VAES GCM path (OpenSSL 3.1 added one) and ran at 3.9 GB/s on one core
 * here, which capped sealed throughput; same algorithm and bytes on the wire,
 * checked against EVP in tests/test_gcm.c. PIPETRAIN_GCM=evp forces EVP. */
#include <inttypes.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include "net/net_gcm.h"
#include "net/net_util.h"
#include "net/net_wire.h"

_Static_assert(NET_SEALED_HDR_LEN == 64, "sealed header is 64 bytes");

struct net_seal {
    EVP_CIPHER_CTX *ctx;      /* NULL when gcm does the work */
    struct net_gcm *gcm;      /* AES-256-GCM with VAES (net_gcm.c), or NULL */
    int aead, enc;            /* enum net_aead; 1: seals, 0: opens */
    uint64_t seq;             /* frame sequence number: the next frame's nonce */
    int in_payload;           /* a payload record is open (begun, not ended) */
};

static const char kdf_salt[] = "pipetrain-seal-1";

static const EVP_CIPHER *cipher_of(int aead)
{
    return aead == NET_AEAD_CHACHA20 ? EVP_chacha20_poly1305() : EVP_aes_256_gcm();
}

const char *net_aead_name(int aead)
{
    return aead == NET_AEAD_AES256GCM ? "AES-256-GCM" : aead == NET_AEAD_CHACHA20 ? "ChaCha20-Poly1305"
                                                                                 : "none";
}

int net_aead_preferred(void)
{
#if defined(__x86_64__) || defined(__i386__)
    /* measured here (openssl speed -evp, 1 MiB): AES-256-GCM 4.5 GB/s with
     * AES-NI/VAES, ChaCha20-Poly1305 4.0 GB/s; without AES-NI GCM is several
     * times slower than ChaCha */
    __builtin_cpu_init();
    return __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul") ? NET_AEAD_AES256GCM
                                                                             : NET_AEAD_CHACHA20;
#elif defined(__aarch64__) && defined(__ARM_FEATURE_CRYPTO)
    return NET_AEAD_AES256GCM;
#else
    return NET_AEAD_CHACHA20;
#endif
}

int net_aead_agree(int mine, int peer)
{
    if (!mine || !peer) return NET_AEAD_NONE;
    return mine == NET_AEAD_CHACHA20 && peer == NET_AEAD_CHACHA20 ? NET_AEAD_CHACHA20 : NET_AEAD_AES256GCM;
}

/* key = HKDF-SHA256(ikm secret, salt kdf_salt, info label || aead || sender's
 * hello || receiver's hello): the order of the hellos (each names its role,
 * stage, replica and a fresh nonce) makes the two directions' keys differ. */
static int derive(uint8_t key[NET_SEAL_KEY_LEN], const uint8_t *secret, size_t secret_len, int aead,
                  const uint8_t from[NET_HELLO_LEN], const uint8_t to[NET_HELLO_LEN])
{
    static const char label[] = "pipetrain frame key, sender hello then receiver hello";
    uint8_t info[sizeof label + 2 * NET_HELLO_LEN]; /* label without its NUL, aead, hellos */
    memcpy(info, label, sizeof label - 1);
    info[sizeof label - 1] = (uint8_t)aead;
    memcpy(info + sizeof label, from, NET_HELLO_LEN);
    memcpy(info + sizeof label + NET_HELLO_LEN, to, NET_HELLO_LEN);
    EVP_PKEY_CTX *p = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
    size_t out = NET_SEAL_KEY_LEN;
    int ok = p && EVP_PKEY_derive_init(p) > 0 && EVP_PKEY_CTX_set_hkdf_md(p, EVP_sha256()) > 0 &&
             EVP_PKEY_CTX_set1_hkdf_salt(p, (const unsigned char *)kdf_salt, (int)sizeof kdf_salt - 1) > 0 &&
             EVP_PKEY_CTX_set1_hkdf_key(p, secret, (int)secret_len) > 0 &&
             EVP_PKEY_CTX_add1_hkdf_info(p, info, (int)sizeof info) > 0 &&
             EVP_PKEY_derive(p, key, &out) > 0 && out == NET_SEAL_KEY_LEN;
    EVP_PKEY_CTX_free(p);
    return ok ? NET_OK : NET_ERR;
}

int net_seal_keys(uint8_t tx[NET_SEAL_KEY_LEN], uint8_t rx[NET_SEAL_KEY_LEN], int aead, const uint8_t *secret,
                  size_t secret_len, const uint8_t my_hello[NET_HELLO_LEN],
                  const uint8_t peer_hello[NET_HELLO_LEN])
{
    if (aead != NET_AEAD_AES256GCM && aead != NET_AEAD_CHACHA20) return NET_ERR;
    if (derive(tx, secret, secret_len, aead, my_hello, peer_hello) != NET_OK ||
        derive(rx, secret, secret_len, aead, peer_hello, my_hello) != NET_OK)
        return NET_ERR;
    return NET_OK;
}

struct net_seal *net_seal_new(int aead, const uint8_t key[NET_SEAL_KEY_LEN], int enc)
{
    if (aead != NET_AEAD_AES256GCM && aead != NET_AEAD_CHACHA20) return NULL;
    struct net_seal *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->aead = aead;
    s->enc = enc != 0;
    const char *force = getenv("PIPETRAIN_GCM");
    if (aead == NET_AEAD_AES256GCM && !(force && !strcmp(force, "evp")) && net_gcm_available()) {
        if (!(s->gcm = net_gcm_new(key))) {
            net_seal_free(s);
            return NULL;
        }
        return s;
    }
    s->ctx = EVP_CIPHER_CTX_new();
    /* the key schedule is computed once here; each record only sets its nonce */
    if (!s->ctx || EVP_CipherInit_ex(s->ctx, cipher_of(aead), NULL, key, NULL, s->enc) != 1) {
        net_seal_free(s);
        return NULL;
    }
    return s;
}

void net_seal_free(struct net_seal *s)
{
    if (!s) return;
    EVP_CIPHER_CTX_free(s->ctx); /* clears the key schedule */
    net_gcm_free(s->gcm);        /* likewise */
    free(s);
}

uint64_t net_seal_seq(const struct net_seal *s) { return s ? s->seq : 0; }

/* nonce = record kind (0 header, 1 payload) as u32 LE || frame sequence u64 LE */
static int begin_record(struct net_seal *s, uint32_t kind, const uint8_t *aad, size_t aad_len)
{
    uint8_t iv[NET_SEAL_NONCE_LEN];
    int outl = 0;
    put_u32le(iv, kind);
    put_u64le(iv + 4, s->seq);
    if (s->gcm) {
        net_gcm_begin(s->gcm, iv, aad, aad_len, s->enc);
        return NET_OK;
    }
    if (EVP_CipherInit_ex(s->ctx, NULL, NULL, NULL, iv, s->enc) != 1) return NET_ERR;
    if (aad_len && EVP_CipherUpdate(s->ctx, NULL, &outl, aad, (int)aad_len) != 1) return NET_ERR;
    return NET_OK;
}

/* Runs the cipher over n bytes in slices that fit an int. */
static int run(struct net_seal *s, uint8_t *out, const uint8_t *in, uint64_t n)
{
    if (s->gcm) return net_gcm_update(s->gcm, out, in, (size_t)n) == 0 ? NET_OK : NET_ERR;
    while (n) {
        int part = n > (1u << 30) ? 1 << 30 : (int)n, outl = 0;
        if (EVP_CipherUpdate(s->ctx, out, &outl, in, part) != 1 || outl != part) return NET_ERR;
        out += part;
        in += part;
        n -= (uint64_t)part;
    }
    return NET_OK;
}

static int finish_tag(struct net_seal *s, uint8_t tag[NET_SEAL_TAG])
{
    int outl = 0;
    uint8_t dummy[16];
    if (s->gcm) {
        uint8_t t[NET_SEAL_TAG];
        net_gcm_tag(s->gcm, t);
        if (s->enc) {
            memcpy(tag, t, NET_SEAL_TAG);
            return NET_OK;
        }
        int ok = CRYPTO_memcmp(t, tag, NET_SEAL_TAG) == 0;
        OPENSSL_cleanse(t, sizeof t);
        return ok ? NET_OK : NET_ERR;
    }
    if (s->enc) {
        if (EVP_CipherFinal_ex(s->ctx, dummy, &outl) != 1 ||
            EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_AEAD_GET_TAG, NET_SEAL_TAG, tag) != 1)
            return NET_ERR;
        return NET_OK;
    }
    if (EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_AEAD_SET_TAG, NET_SEAL_TAG, tag) != 1) return NET_ERR;
    return EVP_CipherFinal_ex(s->ctx, dummy, &outl) == 1 ? NET_OK : NET_ERR;
}

int net_seal_begin(struct net_seal *s, uint8_t out[NET_SEALED_HDR_LEN], const uint8_t hdr[NET_HDR_LEN],
                   uint64_t len)
{
    if (!s->enc || s->in_payload) return NET_ERR;
    if (begin_record(s, 0, NULL, 0) != NET_OK || run(s, out, hdr, NET_HDR_LEN) != NET_OK ||
        finish_tag(s, out + NET_HDR_LEN) != NET_OK)
        return NET_ERR;
    if (!len) {
        s->seq++;
        return NET_OK;
    }
    if (begin_record(s, 1, hdr, NET_HDR_LEN) != NET_OK) return NET_ERR;
    s->in_payload = 1;
    return NET_OK;
}

int net_seal_update(struct net_seal *s, uint8_t *out, const uint8_t *in, uint64_t n)
{
    if (!s->in_payload) return NET_ERR;
    return run(s, out, in, n);
}

int net_seal_end(struct net_seal *s, uint8_t tag[NET_SEAL_TAG])
{
    if (!s->enc || !s->in_payload) return NET_ERR;
    s->in_payload = 0;
    s->seq++;
    return finish_tag(s, tag);
}

int net_open_hdr(struct net_seal *s, uint8_t hdr[NET_HDR_LEN], const uint8_t in[NET_SEALED_HDR_LEN],
                 char err[NET_ERR_LEN])
{
    uint8_t tag[NET_SEAL_TAG];
    if (s->enc || s->in_payload) return net_seterr(err, "net_open_hdr: a payload is still open");
    memcpy(tag, in + NET_HDR_LEN, NET_SEAL_TAG);
    if (begin_record(s, 0, NULL, 0) != NET_OK || run(s, hdr, in, NET_HDR_LEN) != NET_OK ||
        finish_tag(s, tag) != NET_OK) {
        memset(hdr, 0, NET_HDR_LEN); /* nothing unauthenticated leaves */
        return net_seterr(err, "authentication failed on the header of frame %" PRIu64
                          " (%s): wrong key, or the frame was altered, replayed, reordered or truncated",
                          s->seq, net_aead_name(s->aead));
    }
    return NET_OK;
}

int net_open_begin(struct net_seal *s, const uint8_t hdr[NET_HDR_LEN], uint64_t len)
{
    if (s->enc || s->in_payload) return NET_ERR;
    if (!len) {
        s->seq++;
        return NET_OK;
    }
    if (begin_record(s, 1, hdr, NET_HDR_LEN) != NET_OK) return NET_ERR;
    s->in_payload = 1;
    return NET_OK;
}

int net_open_update(struct net_seal *s, uint8_t *out, const uint8_t *in, uint64_t n)
{
    if (!s->in_payload) return NET_ERR;
    return run(s, out, in, n);
}

int net_open_end(struct net_seal *s, const uint8_t tag[NET_SEAL_TAG], char err[NET_ERR_LEN])
{
    uint8_t t[NET_SEAL_TAG];
    if (s->enc || !s->in_payload) return net_seterr(err, "net_open_end: no payload is open");
    memcpy(t, tag, NET_SEAL_TAG);
    s->in_payload = 0;
    uint64_t seq = s->seq++;
    if (finish_tag(s, t) != NET_OK)
        return net_seterr(err, "authentication failed on the payload of frame %" PRIu64
                          " (%s): wrong key, or the frame was altered, replayed, reordered or truncated",
                          seq, net_aead_name(s->aead));
    return NET_OK;
}
