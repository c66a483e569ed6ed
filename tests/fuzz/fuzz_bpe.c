/* fuzz_bpe.c — libFuzzer target for the byte-level BPE. Input byte 0 picks the mode:
 *   0  the rest is a tokenizer.json, written to a memfd and read with bpe_load; an
 *      accepted one must encode a fixed text to ids below its vocabulary that
 *      decode back to the text;
 *   1  the rest is text, encoded with a tokenizer trained once on a fixed corpus:
 *      decode(encode(s)) == s, no more ids than bytes, pre-tokenizer words cover s;
 *   2  the rest is a corpus: a tokenizer of 257 + byte 1 ids is trained on it and
 *      must round-trip the corpus. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "model/bpe.h"

static int memfd = -1;
static char path[64];
static bpe *fixed;

static void round_trip(const bpe *b, const uint8_t *s, size_t n)
{
    int *ids = NULL;
    char err[512];
    size_t m = bpe_encode(b, s, n, &ids), len = 0;
    if (m > n) __builtin_trap();
    for (size_t i = 0; i < m; i++)
        if (ids[i] < 0 || ids[i] >= bpe_vocab_size(b)) __builtin_trap();
    uint8_t *back = bpe_decode(b, ids, m, &len, err);
    if (!back || len != n || memcmp(back, s, n)) __builtin_trap();
    free(back);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    if (size < 2) return 0;
    if (!fixed) {
        static const char c[] = "First Citizen:\nBefore we proceed any further, hear me speak.\nAll:\nSpeak, speak. "
                                "We'll go 1234 caf\xc3\xa9 \xd0\xbc\xd0\xb8\xd1\x80 <|endoftext|> the end\n";
        fixed = bpe_train((const uint8_t *)c, sizeof c - 1, 320, err);
        if (!fixed) __builtin_trap();
    }
    const uint8_t *s = data + 1;
    size_t n = size - 1;
    if (data[0] % 3 == 0) {
        if (memfd < 0) {
            memfd = memfd_create("fuzz_bpe", 0);
            if (memfd < 0) __builtin_trap();
            snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
        }
        if (ftruncate(memfd, 0) || pwrite(memfd, s, n, 0) != (ssize_t)n) __builtin_trap();
        bpe *b = bpe_load(path, err);
        if (b) {
            static const char t[] = "Hello world's 123  foo\n\nbar!? \xff caf\xc3\xa9";
            round_trip(b, (const uint8_t *)t, sizeof t - 1);
            bpe_free(b);
        } else if (!strstr(err, path)) __builtin_trap(); /* every refusal names the file */
    } else if (data[0] % 3 == 1) {
        round_trip(fixed, s, n);
        for (size_t i = 0; i < n;) {
            size_t j = bpe_pretokenize_next(s, n, i);
            if (j <= i || j > n) __builtin_trap();
            i = j;
        }
    } else {
        bpe *b = bpe_train(s + 1, n - 1, 257 + s[0], err);
        if (!b) __builtin_trap();
        round_trip(b, s + 1, n - 1);
        bpe_free(b);
    }
    return 0;
}
