/* fuzz_data_bin.c — libFuzzer target for the data loader. Input bytes 0..3 pick the
 * parameters (vocab_size = 1 + u16, seq_len = 1 + byte2 % 64, byte3: bit 7 text/bin,
 * low bits val_fraction in percent); the rest is the file, written to a memfd and
 * loaded with data_load. An accepted file is checked: split sizes, every token below
 * the vocabulary, sampled and validation windows inside their split. */
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "model/data.h"

static int memfd = -1;
static char path[64];

static void check_accepted(const data_set *d, int seq_len, double vf)
{
    size_t T = (size_t)seq_len;
    if (d->n_train + data_n_val(d) != d->n || d->n_train < T + 1) __builtin_trap();
    if (vf > 0 && data_n_val(d) < T + 1) __builtin_trap();
    for (size_t i = 0; i < d->n; i++)
        if (d->tokens[i] >= d->vocab_size) __builtin_trap();
    int x[4 * 64], y[4 * 64];
    data_sampler s;
    data_sampler_init(&s, d->n);
    data_sample_batch(&s, d, x, y, 4, T);
    for (size_t i = 0; i < 4 * T; i++)
        if (x[i] < 0 || x[i] >= d->vocab_size || (i % T + 1 < T && y[i] != x[i + 1])) __builtin_trap();
    size_t nw = data_val_windows(d, T);
    if (d->n_train + nw * (T + 1) > d->n) __builtin_trap();
    for (size_t w = 0; w < nw && w < 64; w++) data_val_window(d, w, x, y, T);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4) return 0;
    if (memfd < 0) {
        memfd = memfd_create("fuzz_data_bin", 0);
        if (memfd < 0) __builtin_trap();
        snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
    }
    int vocab = 1 + (int)get_u16le(data);
    int seq_len = 1 + data[2] % 64;
    const char *fmt = (data[3] & 0x80) ? "text" : "bin";
    double vf = (double)((data[3] & 0x7f) % 100) / 100.0;
    size_t n = size - 4;
    if (ftruncate(memfd, 0) != 0 || pwrite(memfd, data + 4, n, 0) != (ssize_t)n) __builtin_trap();
    data_set d;
    char err[ERR_LEN];
    err[0] = 0;
    if (data_load(&d, path, fmt, vocab, vf, seq_len, err) == 0) {
        check_accepted(&d, seq_len, vf);
        data_free(&d);
    } else if (d.tokens != NULL || strstr(err, path) == NULL) {
        __builtin_trap(); /* a refusal must name the file and leave d empty */
    }
    return 0;
}
