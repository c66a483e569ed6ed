/* base.h — what every module repeats, in one place: the error-buffer convention,
 * checked allocation (llm.c's mallocCheck: print file:line and a hint, then
 * exit — for start-up and out-of-memory only), little-endian field codecs, the
 * monotonic clock and durable writes (temporary file, fsync, rename, fsync of
 * the directory: redis's rdbSave).
 *
 * Any module may include this; it includes no other module. It knows no
 * topology, layer or socket. */
#ifndef BASE_BASE_H
#define BASE_BASE_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERR_LEN 512

/* Writes a formatted message into err (ERR_LEN bytes); returns -1 so callers
 * can write `return seterr(err, "...")`. err may be NULL. Any thread. */
static inline int seterr(char *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline int seterr(char *err, const char *fmt, ...)
{
    if (!err) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, ERR_LEN, fmt, ap);
    va_end(ap);
    return -1;
}

/* Out of memory: prints what and where with a hint, exits 1. Never returns. */
void base_oom(size_t n, const char *file, int line) __attribute__((noreturn));

static inline void *xmalloc_at(size_t n, const char *file, int line)
{
    void *p = malloc(n ? n : 1);
    if (!p) base_oom(n, file, line);
    return p;
}
static inline void *xcalloc_at(size_t n, size_t sz, const char *file, int line)
{
    if (sz && n > SIZE_MAX / sz) base_oom(SIZE_MAX, file, line);
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p) base_oom(n * sz, file, line);
    return p;
}
static inline char *xstrdup_at(const char *s, const char *file, int line)
{
    size_t n = strlen(s) + 1;
    char *p = xmalloc_at(n, file, line);
    memcpy(p, s, n);
    return p;
}
/* Allocate or exit with file:line (never NULL; a size of 0 gives a valid pointer). */
#define xmalloc(n) xmalloc_at((n), __FILE__, __LINE__)
#define xcalloc(n, sz) xcalloc_at((n), (sz), __FILE__, __LINE__)
#define xstrdup(s) xstrdup_at((s), __FILE__, __LINE__)

/* Little-endian fields, written byte by byte (never a struct). */
static inline void put_u16le(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void put_u32le(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static inline void put_u64le(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static inline uint16_t get_u16le(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t get_u32le(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static inline uint64_t get_u64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
/* Doubles travel as their IEEE-754 bits, little-endian. */
static inline void put_f64le(uint8_t *p, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    put_u64le(p, u);
}
static inline double get_f64le(const uint8_t *p)
{
    uint64_t u = get_u64le(p);
    double v;
    memcpy(&v, &u, 8);
    return v;
}

/* Seconds on CLOCK_MONOTONIC (the one clock for step times, timeouts, traces). */
double base_now(void);

/* Writes n bytes of buf to path durably: "path.tmp", fsync, rename over path,
 * fsync of the directory, so a crash never leaves a partial file under path.
 * Returns 0, or -1 with a message naming the file in err; on error path is
 * untouched and the temporary file removed. */
int base_write_durable(const char *path, const void *buf, size_t n, char *err);

/* fsync of the directory that holds path (after a mkdir, rename or unlink
 * of path, so the entry survives a crash): 0, or -1 with err. */
int base_fsync_parent_dir(const char *path, char *err);

/* The same in pieces, for writers that stream: base_durable_begin creates
 * "path.tmp" and returns its fd (the malloc'ed name in *tmp) or -1 with err;
 * base_write_all writes everything or returns -1 (errno set);
 * base_durable_commit fsyncs, closes, renames and fsyncs the directory, always
 * consuming fd and tmp (0, or -1 with err and the temporary removed);
 * base_durable_abort closes and removes the temporary. */
int base_durable_begin(const char *path, char **tmp, char *err);
int base_write_all(int fd, const void *buf, size_t n);

/* Writes n bytes as 2n lowercase hex digits and a NUL into out (2n + 1 bytes).
 * Pure; any thread. */
void base_hex(char *out, const void *bytes, size_t n);
int base_durable_commit(int fd, char *tmp, const char *path, char *err);
void base_durable_abort(int fd, char *tmp);

#endif
