/* net_crc.c — CRC32C (Castagnoli, reflected polynomial 0x82F63B78) for frame
 * payloads and headers. The fast path is ISA-L's crc32_iscsi (Debian's
 * libisal), which picks at run time the best code the CPU runs: AVX-512 or
 * PCLMULQDQ folding, the SSE4.2 crc32 instruction, or a table. Measured on this
 * project's 2-vCPU EPYC VM: 62-65 GB/s from 4 KiB up, against 12-29 GB/s for
 * the three-stream crc32-instruction loop it replaces; on the receiving
 * network thread the checksum is on the critical path of every byte.
 * net_crc32c_sw is an independent slicing-by-8 table version: the reference the
 * tests and fuzzers compare against. Nothing else lives here. */
#include <pthread.h>
#include <string.h>

#include <isa-l/crc.h>

#include "net/net.h"

#define POLY 0x82F63B78u

static uint32_t table[8][256];
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        table[0][n] = c;
    }
    for (int n = 0; n < 256; n++)
        for (int k = 1; k < 8; k++)
            table[k][n] = (table[k - 1][n] >> 8) ^ table[0][table[k - 1][n] & 0xff];
}

/* The raw register update (no pre/post inversion), table driven. */
static uint32_t sw_update(uint32_t c, const uint8_t *p, size_t n)
{
    while (n && ((uintptr_t)p & 7)) {
        c = (c >> 8) ^ table[0][(c ^ *p++) & 0xff];
        n--;
    }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= c; /* little-endian: the low 4 bytes take the register */
        c = table[7][w & 0xff] ^ table[6][(w >> 8) & 0xff] ^ table[5][(w >> 16) & 0xff] ^
            table[4][(w >> 24) & 0xff] ^ table[3][(w >> 32) & 0xff] ^
            table[2][(w >> 40) & 0xff] ^ table[1][(w >> 48) & 0xff] ^ table[0][w >> 56];
        p += 8;
        n -= 8;
    }
    while (n--) c = (c >> 8) ^ table[0][(c ^ *p++) & 0xff];
    return c;
}

uint32_t net_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&init_once, crc_init);
    return ~sw_update(~crc, buf, len);
}

uint32_t net_crc32c(uint32_t crc, const void *buf, size_t len)
{
    /* crc32_iscsi updates the raw register and takes an int length */
    const uint8_t *p = buf;
    uint32_t c = ~crc;
    while (len) {
        size_t n = len > (1u << 30) ? (1u << 30) : len;
        c = crc32_iscsi((unsigned char *)p, (int)n, c);
        p += n;
        len -= n;
    }
    return ~c;
}
