/* fuzz_net_sealed.c — libFuzzer target for the sealed frame reader
 * (net_seal.c, layout in net_wire.h "Sealed frames"). The first input byte
 * picks the AEAD and a mode:
 *   reader: the rest is a byte stream read as sealed frames under a fixed key,
 *     as a connection does (64-byte sealed header, opened before anything is
 *     decoded; payload slices; tag). No input can forge a tag, so the first
 *     header must fail with a reason and a zeroed header.
 *   tamper: the rest is the payload of a frame sealed here (payload CRC
 *     field 0, as a sealed user frame carries), after which
 *     (offset, xor) byte pairs taken from the input's tail are applied to the
 *     sealed bytes; opening must succeed exactly when nothing changed, and
 *     then give back the payload. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/net.h"
#include "net/net_wire.h"

static const uint8_t key[NET_SEAL_KEY_LEN] = "fuzz key: 32 bytes, not secret.";

static int open_stream(struct net_seal *o, uint8_t *p, size_t size, const uint8_t *want, size_t want_len)
{
    char err[NET_ERR_LEN];
    uint8_t hdr[NET_HDR_LEN];
    int frames = 0;
    while (size >= NET_SEALED_HDR_LEN) {
        if (net_open_hdr(o, hdr, p, err) != NET_OK) {
            for (int i = 0; i < NET_HDR_LEN; i++) if (hdr[i]) abort(); /* nothing unauthenticated out */
            if (!strstr(err, "authentication failed")) abort();
            return frames ? frames : -1;
        }
        net_hdr h;
        if (net_hdr_decode(hdr, &h, 1u << 20, err) != NET_OK) abort(); /* we sealed a valid header */
        if (net_open_begin(o, hdr, h.len) != NET_OK) abort();
        p += NET_SEALED_HDR_LEN;
        size -= NET_SEALED_HDR_LEN;
        if (h.len) {
            if (size < h.len + NET_SEAL_TAG) return -1; /* truncated: never delivered */
            /* in place, in two slices */
            size_t half = (size_t)h.len / 2;
            if (net_open_update(o, p, p, half) != NET_OK ||
                net_open_update(o, p + half, p + half, h.len - half) != NET_OK)
                abort();
            if (net_open_end(o, p + h.len, err) != NET_OK) {
                if (!strstr(err, "authentication failed")) abort();
                return -1;
            }
            if (want && (h.len != want_len || memcmp(p, want, want_len))) abort();
            p += h.len + NET_SEAL_TAG;
            size -= h.len + NET_SEAL_TAG;
        }
        frames++;
    }
    return frames;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int aead = data[0] & 1 ? NET_AEAD_CHACHA20 : NET_AEAD_AES256GCM, tamper = data[0] & 2;
    data++;
    size--;
    struct net_seal *o = net_seal_new(aead, key, 0);
    if (!o) abort();
    if (!tamper) {
        uint8_t *copy = malloc(size + 1);
        memcpy(copy, data, size);
        if (open_stream(o, copy, size, NULL, 0) > 0) abort(); /* a forged frame opened */
        free(copy);
        net_seal_free(o);
        return 0;
    }
    /* payload = first half, edits = second half as (u16 offset, xor) triples */
    size_t plen = size / 2, nedit = (size - plen) / 3;
    const uint8_t *edits = data + plen;
    size_t n = NET_SEALED_HDR_LEN + plen + (plen ? NET_SEAL_TAG : 0);
    uint8_t *frame = malloc(n), hdr[NET_HDR_LEN], *orig = malloc(n);
    /* payload CRC field 0, as an encrypting node sends it: only the tag protects the payload */
    net_hdr h = { .version = NET_VERSION, .type = NET_TYPE_USER, .sender = net_stage_id(1, 0), .step = plen,
                  .len = plen, .crc = 0 };
    net_hdr_encode(hdr, &h);
    struct net_seal *s = net_seal_new(aead, key, 1);
    if (!s || net_seal_begin(s, frame, hdr, plen) != NET_OK) abort();
    if (plen && (net_seal_update(s, frame + NET_SEALED_HDR_LEN, data, plen) != NET_OK ||
                 net_seal_end(s, frame + NET_SEALED_HDR_LEN + plen) != NET_OK))
        abort();
    memcpy(orig, frame, n);
    for (size_t i = 0; i < nedit; i++) {
        size_t at = ((size_t)edits[3 * i] | (size_t)edits[3 * i + 1] << 8) % n;
        frame[at] ^= edits[3 * i + 2];
    }
    int changed = memcmp(orig, frame, n) != 0;
    int got = open_stream(o, frame, n, data, plen);
    if (changed ? got > 0 : got != 1) abort();
    net_seal_free(s);
    net_seal_free(o);
    free(frame);
    free(orig);
    return 0;
}
