/* st_dump — prints a safetensors file's tensors (name dtype shape begin end) after
 * the reader's full validation, then "ok N tensors"; also checks on its own that
 * the header length is a multiple of 8 and offsets are contiguous from 0.
 * Used by tests/t_cli.sh. Exit 2 on any problem. */
#include <stdio.h>

#include "model/safetensors.h"
#include "model/util.h"

int main(int argc, char **argv)
{
    char err[ERR_LEN];
    st_file *f;
    if (argc != 2) { fprintf(stderr, "usage: st_dump FILE\n"); return 2; }
    if (st_open(&f, argv[1], err)) { fprintf(stderr, "%s\n", err); return 2; }
    FILE *raw = fopen(argv[1], "rb");
    unsigned char h[8];
    if (!raw || fread(h, 1, 8, raw) != 8 || get_u64le(h) % 8) { fprintf(stderr, "header length not a multiple of 8\n"); return 2; }
    fclose(raw);
    uint64_t expect = 0;
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_tensor_at(f, i);
        if (t->begin != expect) { fprintf(stderr, "%s: begins at %llu, expected %llu\n", t->name, (unsigned long long)t->begin, (unsigned long long)expect); return 2; }
        expect = t->end;
        printf("%s %s ", t->name, t->dtype);
        for (int d = 0; d < t->ndim; d++) printf("%s%lld", d ? "x" : "", (long long)t->shape[d]);
        printf(" %llu %llu\n", (unsigned long long)t->begin, (unsigned long long)t->end);
    }
    printf("ok %d tensors\n", st_count(f));
    st_close(f);
    return 0;
}
