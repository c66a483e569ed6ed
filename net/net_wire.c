/* net_wire.c — encoding and checking of frame headers, hellos and
 * authentication proofs (layouts in net_wire.h), plus peer-id helpers. Pure
 * functions over byte arrays: no sockets, no allocation, safe to fuzz.
 * HMAC-SHA256, randomness and constant-time comparison come from OpenSSL's
 * libcrypto; nothing cryptographic is written here. */
#include <inttypes.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "net/net_util.h"
#include "net/net_wire.h"

_Static_assert(NET_HDR_LEN == 48, "frame header is 48 bytes");
_Static_assert(NET_HELLO_LEN == 16 + NET_HASH_LEN + NET_NONCE_LEN, "hello layout");

static const char auth_label[] = "pipetrain-auth-1";

int net_peer_eq(net_peer_id a, net_peer_id b)
{
    return a.role == b.role && a.stage == b.stage && a.replica == b.replica;
}

net_peer_id net_stage_id(uint16_t stage, uint16_t replica)
{
    return (net_peer_id){ NET_ROLE_STAGE, stage, replica };
}

net_peer_id net_coord_id(void) { return (net_peer_id){ NET_ROLE_COORD, 0, 0 }; }

net_peer_id net_server_id(uint16_t j) { return (net_peer_id){ NET_ROLE_SERVER, j, 0 }; }

const char *net_peer_name(net_peer_id p, char *buf, size_t cap)
{
    if (p.role == NET_ROLE_COORD)
        snprintf(buf, cap, "coordinator");
    else if (p.role == NET_ROLE_STAGE && p.replica == 0)
        snprintf(buf, cap, "stage %u", (unsigned)p.stage);
    else if (p.role == NET_ROLE_STAGE)
        snprintf(buf, cap, "stage %u replica %u", (unsigned)p.stage, (unsigned)p.replica);
    else if (p.role == NET_ROLE_SERVER && p.replica == 0)
        snprintf(buf, cap, "server %u", (unsigned)p.stage);
    else
        snprintf(buf, cap, "peer (role %u, %u.%u)", (unsigned)p.role, (unsigned)p.stage,
                 (unsigned)p.replica);
    return buf;
}

void net_hdr_encode(uint8_t out[NET_HDR_LEN], const net_hdr *h)
{
    put_u32le(out + 0, NET_MAGIC);
    put_u16le(out + 4, h->version);
    put_u16le(out + 6, h->type);
    put_u16le(out + 8, h->flags);
    put_u16le(out + 10, h->sender.stage);
    put_u16le(out + 12, h->sender.replica);
    out[14] = h->sender.role;
    out[15] = 0;
    put_u64le(out + 16, h->step);
    put_u32le(out + 24, h->mb);
    put_u32le(out + 28, h->chunk);
    put_u64le(out + 32, h->len);
    put_u32le(out + 40, h->crc);
    put_u32le(out + 44, net_crc32c(0, out, 44));
}

int net_hdr_decode(const uint8_t in[NET_HDR_LEN], net_hdr *h, uint64_t max_payload,
                   char err[NET_ERR_LEN])
{
    uint32_t magic = get_u32le(in);
    if (magic != NET_MAGIC)
        return net_seterr(err, "wrong magic 0x%08" PRIx32 " (expected 0x%08" PRIx32
                          "): not a pipetrain peer or a corrupted stream", magic, NET_MAGIC);
    uint32_t want = get_u32le(in + 44), got = net_crc32c(0, in, 44);
    if (want != got)
        return net_seterr(err, "corrupted frame header: header checksum 0x%08" PRIx32
                          " in the frame, 0x%08" PRIx32 " computed", want, got);
    memset(h, 0, sizeof *h);
    h->version = get_u16le(in + 4);
    if (h->version != NET_VERSION)
        return net_seterr(err, "wrong protocol version %u (this build speaks %u)",
                          (unsigned)h->version, (unsigned)NET_VERSION);
    if (in[15] != 0) return net_seterr(err, "reserved header byte is %u, not 0", (unsigned)in[15]);
    h->type = get_u16le(in + 6);
    h->flags = get_u16le(in + 8);
    h->sender.stage = get_u16le(in + 10);
    h->sender.replica = get_u16le(in + 12);
    h->sender.role = in[14];
    h->step = get_u64le(in + 16);
    h->mb = get_u32le(in + 24);
    h->chunk = get_u32le(in + 28);
    h->len = get_u64le(in + 32);
    h->crc = get_u32le(in + 40);
    if (h->type == 0) return net_seterr(err, "frame type 0 is invalid");
    if (h->len > max_payload)
        return net_seterr(err, "payload of %" PRIu64 " bytes (type %u, step %" PRIu64
                          ", micro-batch %" PRIu32 ", chunk %" PRIu32 ") exceeds the limit of %"
                          PRIu64 " bytes; refused before allocating",
                          h->len, (unsigned)h->type, h->step, h->mb, h->chunk, max_payload);
    return NET_OK;
}

void net_hello_encode(uint8_t out[NET_HELLO_LEN], const net_hello *h)
{
    put_u16le(out + 0, h->version);
    out[2] = h->id.role;
    out[3] = h->aead;
    put_u16le(out + 4, h->id.stage);
    put_u16le(out + 6, h->id.replica);
    put_u64le(out + 8, h->run_id);
    memcpy(out + 16, h->topo_hash, NET_HASH_LEN);
    memcpy(out + 48, h->nonce, NET_NONCE_LEN);
}

int net_hello_parse(const uint8_t *in, size_t len, net_hello *h, char err[NET_ERR_LEN])
{
    if (len != NET_HELLO_LEN)
        return net_seterr(err, "hello is %zu bytes, expected %d", len, NET_HELLO_LEN);
    memset(h, 0, sizeof *h);
    h->version = get_u16le(in);
    h->id.role = in[2];
    if (h->id.role != NET_ROLE_STAGE && h->id.role != NET_ROLE_COORD && h->id.role != NET_ROLE_SERVER)
        return net_seterr(err, "hello names unknown role %u", (unsigned)in[2]);
    h->aead = in[3];
    if (h->aead > NET_AEAD_CHACHA20)
        return net_seterr(err, "hello names unknown AEAD %u (0 none, 1 AES-256-GCM, 2 ChaCha20-Poly1305)",
                          (unsigned)in[3]);
    h->id.stage = get_u16le(in + 4);
    h->id.replica = get_u16le(in + 6);
    h->run_id = get_u64le(in + 8);
    memcpy(h->topo_hash, in + 16, NET_HASH_LEN);
    memcpy(h->nonce, in + 48, NET_NONCE_LEN);
    return NET_OK;
}

int net_hello_check(const net_hello *mine, const net_hello *peer, char err[NET_ERR_LEN])
{
    char who[48];
    net_peer_name(peer->id, who, sizeof who);
    if (peer->version != NET_VERSION)
        return net_seterr(err, "%s speaks protocol version %u, this process %u", who,
                          (unsigned)peer->version, (unsigned)NET_VERSION);
    if (memcmp(peer->topo_hash, mine->topo_hash, NET_HASH_LEN) != 0) {
        char a[17], b[17];
        base_hex(a, peer->topo_hash, 8);
        base_hex(b, mine->topo_hash, 8);
        return net_seterr(err, "%s has a different topology: sha256 %s... there, %s... here",
                          who, a, b);
    }
    if (peer->run_id != mine->run_id)
        return net_seterr(err, "%s belongs to run %" PRIu64 ", this process to run %" PRIu64,
                          who, peer->run_id, mine->run_id);
    if (!peer->aead != !mine->aead)
        return net_seterr(err, "%s %s its frames and this process %s (topology \"encrypt\", "
                          "secret_file, $PIPETRAIN_SECRET): both ends must agree", who,
                          peer->aead ? "encrypts" : "does not encrypt", mine->aead ? "does" : "does not");
    if (net_peer_eq(peer->id, mine->id))
        return net_seterr(err, "%s has the same identity as this process", who);
    if (CRYPTO_memcmp(peer->nonce, mine->nonce, NET_NONCE_LEN) == 0)
        return net_seterr(err, "%s echoed this process's nonce (reflection?)", who);
    return NET_OK;
}

int net_auth_proof(uint8_t proof[NET_PROOF_LEN], const uint8_t *secret, size_t secret_len,
                   const uint8_t prover_hello[NET_HELLO_LEN],
                   const uint8_t verifier_hello[NET_HELLO_LEN])
{
    uint8_t msg[sizeof auth_label - 1 + 2 * NET_HELLO_LEN];
    memcpy(msg, auth_label, sizeof auth_label - 1);
    memcpy(msg + sizeof auth_label - 1, prover_hello, NET_HELLO_LEN);
    memcpy(msg + sizeof auth_label - 1 + NET_HELLO_LEN, verifier_hello, NET_HELLO_LEN);
    unsigned int n = 0;
    if (!HMAC(EVP_sha256(), secret, (int)secret_len, msg, sizeof msg, proof, &n) ||
        n != NET_PROOF_LEN)
        return NET_ERR;
    return NET_OK;
}

int net_auth_verify(const uint8_t *proof, size_t len, const uint8_t *secret, size_t secret_len,
                    const uint8_t prover_hello[NET_HELLO_LEN],
                    const uint8_t verifier_hello[NET_HELLO_LEN], char err[NET_ERR_LEN])
{
    uint8_t want[NET_PROOF_LEN];
    if (len != NET_PROOF_LEN)
        return net_seterr(err, "authentication proof is %zu bytes, expected %d", len,
                          NET_PROOF_LEN);
    if (net_auth_proof(want, secret, secret_len, prover_hello, verifier_hello) != NET_OK)
        return net_seterr(err, "HMAC-SHA256 failed in libcrypto");
    if (CRYPTO_memcmp(want, proof, NET_PROOF_LEN) != 0)
        return net_seterr(err, "authentication failed: the two ends hold different shared secrets "
                          "(secret_file, $PIPETRAIN_SECRET), or the proof was replayed");
    return NET_OK;
}

int net_random(uint8_t *buf, size_t n)
{
    return RAND_bytes(buf, (int)n) == 1 ? NET_OK : NET_ERR;
}
