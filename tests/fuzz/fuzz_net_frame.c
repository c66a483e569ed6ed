/* fuzz_net_frame.c — libFuzzer target for the frame-header decoder. The input
 * is a byte stream cut into frames the way a connection reads it: a 48-byte
 * header, checked by net_hdr_decode against a limit taken from the input, then
 * the payload it announces (its CRC32C compared, as a receiver does). Every
 * header that decodes must re-encode to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/net.h"
#include "net/net_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[NET_ERR_LEN];
    if (size < 1) return 0;
    /* first byte picks the limit: pre-auth, small, or the 1 GiB cap */
    uint64_t limits[4] = { NET_PREAUTH_MAX, 4096, 1 << 20, NET_MAX_PAYLOAD_CAP };
    uint64_t max = limits[data[0] & 3];
    data++;
    size--;
    while (size >= NET_HDR_LEN) {
        net_hdr h;
        if (net_hdr_decode(data, &h, max, err) != NET_OK) {
            if (strlen(err) == 0 || strlen(err) >= NET_ERR_LEN) abort();
            return 0;
        }
        if (h.len > max) abort(); /* the limit is enforced before any allocation */
        uint8_t again[NET_HDR_LEN];
        net_hdr_encode(again, &h);
        if (memcmp(again, data, NET_HDR_LEN) != 0) abort();
        data += NET_HDR_LEN;
        size -= NET_HDR_LEN;
        size_t take = h.len < size ? (size_t)h.len : size;
        uint32_t crc = net_crc32c(0, data, take);
        if (crc != net_crc32c_sw(0, data, take)) abort();
        (void)(crc == h.crc);
        data += take;
        size -= take;
    }
    return 0;
}
