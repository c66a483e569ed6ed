/* net_gcm.h — AES-256-GCM with VAES + VPCLMULQDQ (AVX-512) for sealed frames
 * (net_seal.c). Debian 12's OpenSSL 3.0 has no VAES GCM path (added in 3.1)
 * and runs AES-256-GCM at about 4 GB/s on one core here; this one runs 16
 * blocks per iteration with one GHASH reduction per 16 blocks. Same algorithm
 * and output as any AES-256-GCM with a 96-bit IV (NIST SP 800-38D), so a peer
 * on the OpenSSL path interoperates bit for bit. Constant time: AES-NI and
 * CLMUL only, no table lookups on secret data.
 *
 * Call pattern (one record): net_gcm_begin (IV and all the AAD), then any
 * number of net_gcm_update with any slicing (out may equal in; partial
 * regions must not overlap otherwise), then net_gcm_tag. One thread at a
 * time per context. */
#ifndef NET_GCM_H
#define NET_GCM_H

#include <stddef.h>
#include <stdint.h>

struct net_gcm;

/* 1 when this CPU and OS can run net_gcm (avx512f, avx512bw, avx512vl, vaes,
 * vpclmulqdq, aes, pclmul, and zmm state enabled in XCR0), else 0. Cheap after
 * the first call; any thread. */
int net_gcm_available(void);

/* A context holding the expanded 256-bit key and the powers of H; NULL when
 * !net_gcm_available() or out of memory. Free with net_gcm_free, which wipes
 * the key material (NULL: no-op). */
struct net_gcm *net_gcm_new(const uint8_t key[32]);
void net_gcm_free(struct net_gcm *g);

/* Starts a record under the 96-bit iv with aad_len bytes of additional data
 * (all of it here; aad may be NULL when aad_len is 0). enc 1 encrypts, 0 decrypts. */
void net_gcm_begin(struct net_gcm *g, const uint8_t iv[12], const uint8_t *aad, size_t aad_len, int enc);
/* Encrypts or decrypts the next n bytes of the record from in to out. 0, or
 * -1 (nothing done) when the record would pass GCM's 2^36 - 32 bytes. */
int net_gcm_update(struct net_gcm *g, uint8_t *out, const uint8_t *in, size_t n);
/* Ends the record: writes its 16-byte tag (the caller compares, in constant
 * time, when opening). */
void net_gcm_tag(struct net_gcm *g, uint8_t tag[16]);

#endif
