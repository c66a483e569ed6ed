/* net_crc.c — CRC32C (Castagnoli, reflected polynomial 0x82F63B78) for frame
 * payloads and headers: a portable slicing-by-8 table version and an SSE4.2
 * version that runs three independent crc32 streams and joins them with a
 * GF(2) shift (the method of zlib's crc32_combine). The choice is made once at
 * run time from the CPU's feature bits. Nothing else lives here. */
#include <pthread.h>
#include <string.h>

#include "net/net.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#define POLY 0x82F63B78u
#define LANE 8192 /* bytes per stream per round of the three-stream loop */

static uint32_t table[8][256];
static uint32_t x2n[32];           /* x^(2^n) mod P */
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int have_hw;
static uint32_t shift_lane;        /* x^(8*LANE) mod P: joins the three streams */

/* a * b modulo P, both reflected (bit 31 is x^0). */
static uint32_t multmodp(uint32_t a, uint32_t b)
{
    uint32_t m = 1u << 31, p = 0;
    for (;;) {
        if (a & m) {
            p ^= b;
            if ((a & (m - 1)) == 0) break;
        }
        m >>= 1;
        b = (b & 1) ? (b >> 1) ^ POLY : b >> 1;
    }
    return p;
}

/* x^(8n) mod P: the operator that appends n zero bytes to a CRC register. */
static uint32_t x8nmodp(size_t n)
{
    uint32_t xp = 1u << 31;
    int k = 3;
    while (n) {
        if (n & 1) xp = multmodp(x2n[k & 31], xp);
        n >>= 1;
        k++;
    }
    return xp;
}

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
    uint32_t p = 1u << 30; /* x^1 */
    for (int n = 0; n < 32; n++) {
        x2n[n] = p;
        p = multmodp(p, p);
    }
    shift_lane = x8nmodp(LANE);
#if defined(__x86_64__)
    __builtin_cpu_init();
    have_hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#endif
}

static inline void ensure_init(void) { pthread_once(&init_once, crc_init); }

int net_crc32c_hw_available(void)
{
    ensure_init();
    return have_hw;
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
    ensure_init();
    return ~sw_update(~crc, buf, len);
}

#if defined(__x86_64__)

__attribute__((target("sse4.2")))
static uint32_t hw_serial(uint32_t c, const uint8_t *p, size_t n)
{
    uint64_t c64 = c;
    while (n && ((uintptr_t)p & 7)) { c64 = _mm_crc32_u8((uint32_t)c64, *p++); n--; }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c64 = _mm_crc32_u64(c64, w);
        p += 8;
        n -= 8;
    }
    while (n--) c64 = _mm_crc32_u8((uint32_t)c64, *p++);
    return (uint32_t)c64;
}

__attribute__((target("sse4.2")))
uint32_t net_crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
    ensure_init();
    const uint8_t *p = buf;
    uint32_t c = ~crc;
    if (len >= 3 * LANE) {
        while (len >= 3 * LANE) {
            uint64_t a = c, b = 0, d = 0;
            for (size_t i = 0; i < LANE; i += 8) {
                uint64_t wa, wb, wd;
                memcpy(&wa, p + i, 8);
                memcpy(&wb, p + LANE + i, 8);
                memcpy(&wd, p + 2 * LANE + i, 8);
                a = _mm_crc32_u64(a, wa);
                b = _mm_crc32_u64(b, wb);
                d = _mm_crc32_u64(d, wd);
            }
            c = multmodp(shift_lane, (uint32_t)a) ^ (uint32_t)b;
            c = multmodp(shift_lane, c) ^ (uint32_t)d;
            p += 3 * LANE;
            len -= 3 * LANE;
        }
    }
    return ~hw_serial(c, p, len);
}
#else
uint32_t net_crc32c_hw(uint32_t crc, const void *buf, size_t len) { return net_crc32c_sw(crc, buf, len); }
#endif

uint32_t net_crc32c(uint32_t crc, const void *buf, size_t len)
{
    ensure_init();
    return have_hw ? net_crc32c_hw(crc, buf, len) : net_crc32c_sw(crc, buf, len);
}
