/* net_wire.h — the transport's wire format, as pure functions over bytes: the
 * 48-byte frame header, the hello payload and the authentication proof. No
 * sockets, no threads, no allocation; the fuzz targets and the protocol tests
 * call these directly. Every field is little-endian and written one by one.
 *
 * Frame header (NET_HDR_LEN bytes):
 *   0 magic u32 "PTNF"   4 version u16   6 type u16   8 flags u16
 *  10 sender stage u16  12 sender replica u16  14 sender role u8  15 reserved u8 (0)
 *  16 step u64   24 micro-batch u32   28 chunk u32   32 payload length u64
 *  40 CRC32C of the payload u32 (0 in a sealed user frame: see "Sealed frames")
 *  44 CRC32C of bytes 0..43 u32
 * flags: bits 8-11 are the payload tag (net.h NET_SEND_TAG), which stage/ sets
 * to the encoding of a tensor payload (base/wire_codec.h: 0 fp32, 1 bf16,
 * 2 fp16, 3 int8; the payload length is then the encoded size); the other
 * bits are the transport's, 0 today.
 *
 * Hello payload (NET_HELLO_LEN bytes), the first frame each way:
 *   0 protocol version u16  2 role u8  3 AEAD u8 (enum net_aead: 0 frames in clear,
 *   1 AES-256-GCM, 2 ChaCha20-Poly1305 preferred)  4 stage u16  6 replica u16
 *   8 run id u64  16 topology SHA-256 [32]  48 nonce [32]
 * Both ends must agree on encrypting (0 against non-zero is refused); they use
 * ChaCha20-Poly1305 when both prefer it, else AES-256-GCM. The proof below
 * covers both hellos, so an on-path attacker cannot strip or downgrade it.
 *
 * Authentication (frame type NET_T_AUTH, NET_PROOF_LEN bytes): each side sends
 * HMAC-SHA256(secret, "pipetrain-auth-1" || own hello || peer's hello), hello
 * payloads as sent on the wire. Both fresh nonces are inside, so an old proof
 * does not verify in a new session, and the order makes a reflected proof fail.
 *
 * Sealed frames (net_seal.c; when both hellos name an AEAD). Every frame a side
 * queues once it is authenticated (READY), heartbeats, goodbyes and error
 * frames included, is sent as
 *   sealed header: AEAD(header key of this direction, nonce (0, seq), the 48-byte
 *                  header above) = 48 bytes of ciphertext + 16-byte tag
 *   sealed payload (only when the header's length is not 0): AEAD(same key,
 *                  nonce (1, seq), additional data = the 48 plaintext header bytes,
 *                  payload) = length bytes of ciphertext + 16-byte tag
 * The nonce (96 bits) is the record kind u32 LE then seq u64 LE, where seq is the
 * frame's sequence number in this direction on this connection: 0 for the first
 * sealed frame, counted by both ends and never sent. There is no length in
 * clear: the sealed header has a fixed size, and the receiver acts on a header
 * (finds the receive buffer, checks the length limit) only once its tag has
 * verified. Its payload is decrypted in place as it lands in the destination
 * buffer and handed over only after the payload tag verifies. A replayed,
 * reordered, dropped or altered frame, or a wrong key, fails a tag: the
 * connection closes with a reason naming the peer. Keys (32 bytes, one per
 * direction) = HKDF-SHA256(secret, salt "pipetrain-seal-1", info label || AEAD
 * || sender's hello || receiver's hello), fresh per connection because both
 * nonces are in the hellos; a reconnection handshakes again.
 * Checksums inside a sealed frame: the header CRC32C (bytes 44..47) is filled
 * in and checked as in clear. The payload CRC32C field (40..43) of a user
 * message (type >= NET_TYPE_USER) is 0 and unused: an encrypting sender does
 * not compute it (not even with NET_SEND_CRC) and the receiver does not read
 * it (net_op_crc gives 0), because the payload tag authenticates every payload
 * byte, and the header as its additional data; a CRC would add a pass over the
 * payload and detect nothing the tag does not. Transport frames (heartbeat,
 * goodbye, error: at most a few hundred bytes, built before the connection is
 * known to seal) still carry their payload's CRC, and an error frame's is
 * checked. Clear frames are unchanged: every payload CRC is computed and checked. */
#ifndef NET_NET_WIRE_H
#define NET_NET_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "net/net.h"

#define NET_MAGIC 0x464E5450u   /* "PTNF" on the wire */
#define NET_VERSION 1
#define NET_HDR_LEN 48
#define NET_HELLO_LEN 80
#define NET_NONCE_LEN 32
#define NET_PROOF_LEN 32
#define NET_PREAUTH_MAX 256     /* largest payload accepted before authentication */
#define NET_ERRMSG_MAX 200      /* longest reason carried by an error frame */

/* Transport frame types (user types are >= NET_TYPE_USER). */
enum net_ftype {
    NET_T_HELLO = 1,
    NET_T_AUTH = 2,
    NET_T_HEARTBEAT = 3,
    NET_T_ERROR = 4,   /* payload: a reason in text; the sender closes after it */
    NET_T_BYE = 5      /* clean close */
};

typedef struct net_hdr {
    uint16_t version, type, flags;
    net_peer_id sender;
    uint64_t step;
    uint32_t mb, chunk;
    uint64_t len;
    uint32_t crc;      /* CRC32C of the payload (0 in a sealed user frame) */
} net_hdr;

/* enum net_aead: the hello's AEAD byte, net_config.aead */
enum net_aead { NET_AEAD_NONE = 0, NET_AEAD_AES256GCM = 1, NET_AEAD_CHACHA20 = 2 };
#define NET_SEAL_TAG 16
#define NET_SEAL_KEY_LEN 32
#define NET_SEAL_NONCE_LEN 12
#define NET_SEALED_HDR_LEN (NET_HDR_LEN + NET_SEAL_TAG)

typedef struct net_hello {
    uint16_t version;
    uint8_t aead;      /* enum net_aead */
    net_peer_id id;
    uint64_t run_id;
    uint8_t topo_hash[NET_HASH_LEN];
    uint8_t nonce[NET_NONCE_LEN];
} net_hello;

/* Writes h into out (NET_HDR_LEN bytes) with magic and header checksum. */
void net_hdr_encode(uint8_t out[NET_HDR_LEN], const net_hdr *h);

/* Decodes and checks one header: magic, header checksum, version, the reserved
 * byte, and len <= max_payload. Returns NET_OK, or NET_ERR with the reason in err
 * (naming both checksums, or the length and the limit). Nothing is allocated. */
int net_hdr_decode(const uint8_t in[NET_HDR_LEN], net_hdr *h, uint64_t max_payload,
                   char err[NET_ERR_LEN]);

/* Writes h into out (NET_HELLO_LEN bytes). */
void net_hello_encode(uint8_t out[NET_HELLO_LEN], const net_hello *h);

/* Parses a hello payload of len bytes: NET_ERR with the reason unless len is
 * exactly NET_HELLO_LEN, the role is known and the reserved byte is 0. */
int net_hello_parse(const uint8_t *in, size_t len, net_hello *h, char err[NET_ERR_LEN]);

/* Checks a parsed peer hello against our own: protocol version, run id and
 * topology hash must match and the nonce must differ from ours. NET_ERR with a
 * reason naming the peer ("stage 2 has a different topology: ...") otherwise. */
int net_hello_check(const net_hello *mine, const net_hello *peer, char err[NET_ERR_LEN]);

/* proof = HMAC-SHA256(secret, label || prover_hello || verifier_hello). NET_ERR
 * only if the crypto library fails. */
int net_auth_proof(uint8_t proof[NET_PROOF_LEN], const uint8_t *secret, size_t secret_len,
                   const uint8_t prover_hello[NET_HELLO_LEN],
                   const uint8_t verifier_hello[NET_HELLO_LEN]);

/* Verifies a proof payload of len bytes sent by the prover, comparing in
 * constant time. NET_OK or NET_ERR with a reason. */
int net_auth_verify(const uint8_t *proof, size_t len, const uint8_t *secret, size_t secret_len,
                    const uint8_t prover_hello[NET_HELLO_LEN],
                    const uint8_t verifier_hello[NET_HELLO_LEN], char err[NET_ERR_LEN]);

/* --- sealed frames (net_seal.c) ------------------------------------------- */
struct net_seal;

/* "AES-256-GCM", "ChaCha20-Poly1305" or "none". */
const char *net_aead_name(int aead);
/* The AEAD this CPU runs faster: AES-256-GCM with AES-NI and carry-less
 * multiply (x86) or the ARMv8 crypto extension, else ChaCha20-Poly1305. */
int net_aead_preferred(void);
/* The AEAD two ends use given their hellos' bytes: NONE when either is NONE,
 * ChaCha20-Poly1305 when both prefer it, else AES-256-GCM. */
int net_aead_agree(int mine, int peer);

/* Derives the two direction keys of a connection (layout above): tx for the
 * frames this side sends, rx for the ones it receives. NET_ERR on a bad aead
 * or when libcrypto fails. */
int net_seal_keys(uint8_t tx[NET_SEAL_KEY_LEN], uint8_t rx[NET_SEAL_KEY_LEN], int aead, const uint8_t *secret,
                  size_t secret_len, const uint8_t my_hello[NET_HELLO_LEN],
                  const uint8_t peer_hello[NET_HELLO_LEN]);

/* One direction of a connection: the AEAD context keyed once, and the frame
 * sequence number (starts at 0). enc 1 seals, 0 opens. NULL on a bad aead or
 * out of memory. The key is kept only in libcrypto's context or, for AES-256-GCM
 * on a VAES CPU, net_gcm's (net_gcm.h), both wiped by net_seal_free. Free with
 * net_seal_free (NULL: no-op). One thread at a time. */
struct net_seal *net_seal_new(int aead, const uint8_t key[NET_SEAL_KEY_LEN], int enc);
void net_seal_free(struct net_seal *s);
/* The sequence number of the next frame. */
uint64_t net_seal_seq(const struct net_seal *s);

/* Sealing one frame: net_seal_begin writes the sealed header (64 bytes) of
 * the plaintext header hdr whose payload is len bytes; when len > 0, every
 * payload byte then goes through net_seal_update (in order, any slicing; out
 * may equal in) and net_seal_end writes the payload's tag. NET_ERR only when
 * libcrypto fails or the calls come out of order. */
int net_seal_begin(struct net_seal *s, uint8_t out[NET_SEALED_HDR_LEN], const uint8_t hdr[NET_HDR_LEN],
                   uint64_t len);
int net_seal_update(struct net_seal *s, uint8_t *out, const uint8_t *in, uint64_t n);
int net_seal_end(struct net_seal *s, uint8_t tag[NET_SEAL_TAG]);

/* Opening one frame: net_open_hdr authenticates and decrypts a sealed header
 * into hdr (zeroed on failure: NET_ERR with "authentication failed ..." and
 * the frame number in err); the caller decodes it (net_hdr_decode) and calls
 * net_open_begin with the plaintext header and its length (len 0: the frame
 * is complete), then net_open_update over the payload (decrypted in place
 * when out == in; the plaintext must not be used before net_open_end
 * verified the tag: NET_ERR with the reason otherwise). */
int net_open_hdr(struct net_seal *s, uint8_t hdr[NET_HDR_LEN], const uint8_t in[NET_SEALED_HDR_LEN],
                 char err[NET_ERR_LEN]);
int net_open_begin(struct net_seal *s, const uint8_t hdr[NET_HDR_LEN], uint64_t len);
int net_open_update(struct net_seal *s, uint8_t *out, const uint8_t *in, uint64_t n);
int net_open_end(struct net_seal *s, const uint8_t tag[NET_SEAL_TAG], char err[NET_ERR_LEN]);

/* Fills buf with n cryptographically random bytes; NET_ERR if unavailable. */
int net_random(uint8_t *buf, size_t n);

#endif
