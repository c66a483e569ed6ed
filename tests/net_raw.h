/* net_raw.h — the wire spoken by hand over a plain socket, for tests and the
 * test helpers that play a peer or an attacker (no CUnit here, so helper
 * programs may include it): connect to a loopback port, send bytes and frames,
 * read frames. */
#ifndef TESTS_NET_RAW_H
#define TESTS_NET_RAW_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "net/net.h"
#include "net/net_wire.h"

static inline int fake_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = { 5, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends all n bytes: 0, or -1 when the connection took fewer. */
static inline int put_raw(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w <= 0) return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Sends a frame whose header announces len bytes and crc; payload (plen bytes)
 * follows. 0, or -1 when the connection did not take it all. */
static inline int put_frame(int fd, uint16_t type, net_peer_id from, net_key k, uint64_t len,
                      uint32_t crc, const void *payload, size_t plen)
{
    net_hdr h = { .version = NET_VERSION, .type = type, .sender = from, .step = k.step,
                  .mb = k.mb, .chunk = k.chunk, .len = len, .crc = crc };
    uint8_t b[NET_HDR_LEN];
    net_hdr_encode(b, &h);
    if (put_raw(fd, b, sizeof b)) return -1;
    return plen ? put_raw(fd, payload, plen) : 0;
}

static inline int get_all(int fd, void *p, size_t n)
{
    uint8_t *b = p;
    while (n) {
        ssize_t r = recv(fd, b, n, 0);
        if (r <= 0) return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Reads one frame (payload up to cap bytes, NUL-terminated); -1 on EOF or error. */
static inline int get_frame(int fd, net_hdr *h, uint8_t *buf, size_t cap)
{
    uint8_t b[NET_HDR_LEN];
    char err[NET_ERR_LEN];
    if (get_all(fd, b, sizeof b) < 0 || net_hdr_decode(b, h, cap - 1, err) != NET_OK) return -1;
    if (get_all(fd, buf, h->len) < 0) return -1;
    buf[h->len] = 0;
    return 0;
}

#endif
