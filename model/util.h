/* util.h — the deterministic RNG and string hash that model/ (and the data
 * sampler) use; the error buffer, checked allocation and little-endian codecs
 * come from base/base.h, included here for model/'s files. */
#ifndef MODEL_UTIL_H
#define MODEL_UTIL_H

#include "base/base.h"

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
