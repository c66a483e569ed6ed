/* net_wire.h — the transport's wire format, as pure functions over bytes: the
 * 48-byte frame header, the hello payload and the authentication proof. No
 * sockets, no threads, no allocation; the fuzz targets and the protocol tests
 * call these directly. Every field is little-endian and written one by one.
 *
 * Frame header (NET_HDR_LEN bytes):
 *   0 magic u32 "PTNF"   4 version u16   6 type u16   8 flags u16
 *  10 sender stage u16  12 sender replica u16  14 sender role u8  15 reserved u8 (0)
 *  16 step u64   24 micro-batch u32   28 chunk u32   32 payload length u64
 *  40 CRC32C of the payload u32   44 CRC32C of bytes 0..43 u32
 * flags: bits 8-11 are the payload tag (net.h NET_SEND_TAG), which stage/ sets
 * to the encoding of a tensor payload (base/wire_codec.h: 0 fp32, 1 bf16,
 * 2 fp16, 3 int8; the payload length is then the encoded size); the other
 * bits are the transport's, 0 today.
 *
 * Hello payload (NET_HELLO_LEN bytes), the first frame each way:
 *   0 protocol version u16  2 role u8  3 reserved u8 (0)  4 stage u16  6 replica u16
 *   8 run id u64  16 topology SHA-256 [32]  48 nonce [32]
 *
 * Authentication (frame type NET_T_AUTH, NET_PROOF_LEN bytes): each side sends
 * HMAC-SHA256(secret, "pipetrain-auth-1" || own hello || peer's hello), hello
 * payloads as sent on the wire. Both fresh nonces are inside, so an old proof
 * does not verify in a new session, and the order makes a reflected proof fail. */
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
    uint32_t crc;      /* CRC32C of the payload */
} net_hdr;

typedef struct net_hello {
    uint16_t version;
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

/* Fills buf with n cryptographically random bytes; NET_ERR if unavailable. */
int net_random(uint8_t *buf, size_t n);

#endif
