/* net_util.h — private helpers of net/: its error-string convention (NET_ERR,
 * NET_ERR_LEN) and a monotonic clock in integer units; the little-endian
 * codecs are base/base.h's. */
#ifndef NET_NET_UTIL_H
#define NET_NET_UTIL_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "base/base.h"
#include "net/net.h"

/* Formats into err (NET_ERR_LEN bytes, may be NULL); returns NET_ERR. */
static inline int net_seterr(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline int net_seterr(char *err, const char *fmt, ...)
{
    if (!err) return NET_ERR;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, NET_ERR_LEN, fmt, ap);
    va_end(ap);
    return NET_ERR;
}

/* Monotonic nanoseconds. */
static inline int64_t net_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Monotonic milliseconds. */
static inline int64_t net_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
