/* fuzz_safetensors.c — libFuzzer target for the safetensors reader: the input is
 * written to an in-memory file (memfd) and opened with st_open. When the reader
 * accepts it, every tensor's bytes are touched (ASan catches any pointer outside
 * the data buffer) and the layout invariants are checked, aborting on a violation. */
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "model/safetensors.h"

static int memfd = -1;
static char path[64];

static void check_accepted(const st_file *f)
{
    uint64_t at = 0;
    volatile uint8_t sink = 0;
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_tensor_at(f, i);
        if (t->begin != at || t->end - t->begin != t->nbytes) __builtin_trap();
        if (t->nbytes != t->numel * t->dtype_size || t->dtype_size != st_dtype_size(t->dtype)) __builtin_trap();
        if (st_find(f, t->name) == NULL || strcmp(st_find(f, t->name)->name, t->name) != 0) __builtin_trap();
        for (size_t b = 0; b < t->nbytes; b++) sink ^= ((const uint8_t *)t->data)[b];
        at = t->end;
    }
    (void)st_meta(f, "format");
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (memfd < 0) {
        memfd = memfd_create("fuzz_safetensors", 0);
        if (memfd < 0) __builtin_trap();
        snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
    }
    if (ftruncate(memfd, 0) != 0 || pwrite(memfd, data, size, 0) != (ssize_t)size) __builtin_trap();
    st_file *f = NULL;
    char err[ERR_LEN];
    err[0] = 0;
    if (st_open(&f, path, err) == 0) {
        check_accepted(f);
        st_close(f);
    } else if (f != NULL || strstr(err, path) == NULL) {
        __builtin_trap(); /* a refusal must name the file and leave *f NULL */
    }
    return 0;
}
