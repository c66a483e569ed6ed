/* fuzz_topo.c — libFuzzer target for the topology loader. The input up to its
 * first NUL byte is the topology file (written to an in-memory file); each
 * further NUL-separated piece (at most 8) is a --set override. When the loader
 * accepts, the invariants are checked (every unit held by exactly one stage,
 * chunks consistent, the canonical JSON reloads to itself) and it aborts on a
 * violation; when it refuses, the message must name the file. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "model/util.h"
#include "topo/topo.h"

static int memfd[2] = { -1, -1 };
static char path[2][64];

static void put(int i, const void *data, size_t size)
{
    if (memfd[i] < 0) {
        memfd[i] = memfd_create("fuzz_topo", 0);
        if (memfd[i] < 0) __builtin_trap();
        snprintf(path[i], sizeof path[i], "/proc/self/fd/%d", memfd[i]);
    }
    if (ftruncate(memfd[i], 0) != 0 || pwrite(memfd[i], data, size, 0) != (ssize_t)size) __builtin_trap();
}

static void check_accepted(const topo *t)
{
    int nu = topo_n_units(t), held = 0;
    for (int u = 0; u < nu; u++)
        if (topo_stage_of_unit(t, u) < 0) __builtin_trap();
    for (int s = 0; s < t->n_stages; s++) {
        const topo_stage *st = &t->stages[s];
        int in_chunks = 0;
        for (int c = 0; c < st->n_chunks; c++) {
            int chunk = -1;
            if (topo_stage_of_virtual(t, st->chunks[c].virtual_stage, &chunk) != s || chunk != c) __builtin_trap();
            in_chunks += st->chunks[c].n_units;
        }
        if (in_chunks != st->n_units || st->n_chunks != t->chunks_per_stage) __builtin_trap();
        held += st->n_units;
    }
    if (held != nu || t->train.batch_size % t->train.micro_batches) __builtin_trap();
    FILE *null = fopen("/dev/null", "w");
    if (null) {
        topo_print_partition(t, null);
        fclose(null);
    }
    /* the canonical form loads again and reproduces itself */
    char *s = topo_canonical_json(t), err[ERR_LEN];
    put(1, s, strlen(s));
    topo u;
    if (topo_load(&u, path[1], NULL, 0, err) != 0) {
        fprintf(stderr, "canonical form refused: %s\n%s\n", err, s);
        __builtin_trap();
    }
    char *s2 = topo_canonical_json(&u);
    if (strcmp(s, s2)) __builtin_trap();
    free(s2);
    free(s);
    topo_free(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    const char *nul = memchr(p, 0, size);
    put(0, p, nul ? (size_t)(nul - p) : size);
    char *sets[8];
    int n_sets = 0;
    for (const char *q = nul ? nul + 1 : end; q < end && n_sets < 8;) {
        const char *z = memchr(q, 0, (size_t)(end - q));
        size_t len = z ? (size_t)(z - q) : (size_t)(end - q);
        sets[n_sets++] = strndup(q, len);
        q += len + 1;
    }
    topo t;
    char err[ERR_LEN];
    err[0] = 0;
    if (topo_load(&t, path[0], sets, n_sets, err) == 0) {
        check_accepted(&t);
        topo_free(&t);
    } else if (strncmp(err, path[0], strlen(path[0])) != 0 || t.stages || t.path) {
        __builtin_trap(); /* a refusal names the file and leaves t zeroed */
    }
    for (int i = 0; i < n_sets; i++) free(sets[i]);
    return 0;
}
