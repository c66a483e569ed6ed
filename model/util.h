/* util.h — small helpers shared by model/, stage/ and cli/: checked allocation
 * (llm.c's mallocCheck: print file:line and a hint, then exit), the error-string
 * convention, little-endian field access and the deterministic RNG.
 * Header-only (static inline) so every module links without a util.o.
 * net/ and scheduler/ do not include this: they keep their own. */
#ifndef MODEL_UTIL_H
#define MODEL_UTIL_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERR_LEN 512

/* Writes a formatted message into err (ERR_LEN bytes); returns -1 so callers
 * can write `return seterr(err, "...")`. err may be NULL. */
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

static inline void *xmalloc_at(size_t n, const char *file, int line)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "pipetrain: out of memory allocating %zu bytes at %s:%d\n"
                        "HINT: use a smaller model, batch or seq_len\n", n, file, line);
        exit(1);
    }
    return p;
}
static inline void *xcalloc_at(size_t n, size_t sz, const char *file, int line)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p) {
        fprintf(stderr, "pipetrain: out of memory allocating %zu x %zu bytes at %s:%d\n"
                        "HINT: use a smaller model, batch or seq_len\n", n, sz, file, line);
        exit(1);
    }
    return p;
}
#define xmalloc(n) xmalloc_at((n), __FILE__, __LINE__)
#define xcalloc(n, sz) xcalloc_at((n), (sz), __FILE__, __LINE__)

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

/* Deterministic RNG: splitmix64 (Vigna). One 64-bit state, portable, and good
 * enough for sampling windows and initialising weights. */
typedef struct { uint64_t s; } rng_t;

static inline uint64_t rng_next(rng_t *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
/* Uniform in [0, 1) with 53 random bits. */
static inline double rng_uniform(rng_t *r) { return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }
/* Uniform integer in [0, n), n > 0 (rejection-free multiply-shift; bias < 2^-32 for n < 2^32). */
static inline uint64_t rng_below(rng_t *r, uint64_t n) { return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64); }
/* FNV-1a 64 of a string: names a random stream, e.g. one per tensor. */
static inline uint64_t hash_str(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) { h ^= (uint8_t)*s; h *= 0x100000001b3ull; }
    return h;
}
/* A stream derived from (seed, name): independent of everything else. */
static inline rng_t rng_for(uint64_t seed, const char *name)
{
    rng_t r = { seed ^ hash_str(name) };
    rng_next(&r);
    return r;
}

#endif
