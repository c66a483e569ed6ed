/* test_bpe.c — the byte-level BPE (model/bpe.h): GPT-2's pre-tokenizer against
 * the words Python's `regex` gives for the same regex, hand-computed merges of
 * tiny corpora (counts and the tie rule), encodings of known strings, the
 * decode(encode(s)) == s property on random bytes (invalid UTF-8 included), a
 * save/load round trip, the data loader with a tokenizer and .u32.bin, and every
 * refused tokenizer.json naming its field. */
#include <stdint.h>
#include <unistd.h>

#include "model/bpe.h"
#include "model/data.h"
#include "model/util.h"
#include "tests/tests.h"

static char tmpdir[256];

static const char *tmp_path(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/test_bpe.XXXXXX");
        CU_ASSERT_FATAL(mkdtemp(tmpdir) != NULL);
    }
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static void write_text(const char *path, const char *s, size_t n)
{
    FILE *f = fopen(path, "wb");
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT_FATAL(fwrite(s, 1, n, f) == n);
    fclose(f);
}

/* Words of s joined with '|' into out. */
static void words(const char *s, char *out)
{
    size_t n = strlen(s), k = 0;
    for (size_t i = 0; i < n;) {
        size_t j = bpe_pretokenize_next((const uint8_t *)s, n, i);
        CU_ASSERT_FATAL(j > i && j <= n);
        if (i) out[k++] = '|';
        memcpy(out + k, s + i, j - i);
        k += j - i;
        i = j;
    }
    out[k] = 0;
}

/* Expected values from Python: regex.findall(GPT-2's pattern, s) (bpe_ref.py's regex). */
static void test_pretokenize(void)
{
    char out[512];
    words("Hello world's 123  foo\n\nbar!? \xc2\xbd caf\xc3\xa9 'tis x'll\t ", out);
    CU_ASSERT_STRING_EQUAL(out, "Hello| world|'s| 123| | foo|\n|\n|bar|!?| \xc2\xbd| caf\xc3\xa9| '|tis| x|'ll|\t ");
    words("  a", out);
    CU_ASSERT_STRING_EQUAL(out, " | a");
    words("I'M  \n  x", out); /* 'M is not a contraction (case-sensitive) */
    CU_ASSERT_STRING_EQUAL(out, "I|'|M|  \n | x");
    words("a\xff\xfe b", out); /* invalid bytes: one "other" character each */
    CU_ASSERT_STRING_EQUAL(out, "a|\xff\xfe| b");
    words("\xd0\xbf\xd1\x80\xd0\xb8 42", out); /* Cyrillic letters */
    CU_ASSERT_STRING_EQUAL(out, "\xd0\xbf\xd1\x80\xd0\xb8| 42");
}

static void test_byte_table(void)
{
    CU_ASSERT_EQUAL(bpe_byte_to_cp('!'), '!');
    CU_ASSERT_EQUAL(bpe_byte_to_cp(' '), 0x120); /* "Ġ" */
    CU_ASSERT_EQUAL(bpe_byte_to_cp('\n'), 0x10A); /* "Ċ" */
    CU_ASSERT_EQUAL(bpe_byte_to_cp(0), 0x100);
    CU_ASSERT_EQUAL(bpe_byte_to_cp(0xAD), 0x143);
}

static int merged(const bpe *b, int id, const char *s)
{
    size_t len;
    const uint8_t *t = bpe_token(b, id, &len);
    return t && len == strlen(s) && !memcmp(t, s, len);
}

/* "ab ab ab abc": words ab, " ab" x2, " abc": (a,b) 4, (' ',a) 3, (b,c) 1 ->
 * merge ab; then (' ',ab) 3 -> " ab"; then ( ab,c) 1 < 2: stop. */
static void test_train_counts(void)
{
    char err[ERR_LEN];
    const char *c = "ab ab ab abc";
    bpe *b = bpe_train((const uint8_t *)c, strlen(c), 512, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_EQUAL(bpe_n_merges(b), 2);
    CU_ASSERT_EQUAL(bpe_vocab_size(b), 259);
    CU_ASSERT(merged(b, 256, "ab"));
    CU_ASSERT(merged(b, 257, " ab"));
    CU_ASSERT(merged(b, 258, BPE_EOT));
    CU_ASSERT_EQUAL(bpe_eot_id(b), 258);
    bpe_free(b);
}

/* "xy xy yx yx": words xy, " xy", " yx" x2. Counts (x,y) 2, (' ',y) 2, (y,x) 2,
 * (' ',x) 1: the tie goes to the smallest merged bytes, " y" (space < x); then
 * (" y",x) 2 ties (x,y) 2: " yx" < "xy"; then (x,y) 2; then (' ',xy) 1: stop. */
static void test_train_ties(void)
{
    char err[ERR_LEN];
    const char *c = "xy xy yx yx";
    bpe *b = bpe_train((const uint8_t *)c, strlen(c), 300, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_EQUAL_FATAL(bpe_n_merges(b), 3);
    CU_ASSERT(merged(b, 256, " y"));
    CU_ASSERT(merged(b, 257, " yx"));
    CU_ASSERT(merged(b, 258, "xy"));
    /* encodings of known strings */
    int *ids = NULL;
    size_t n = bpe_encode(b, (const uint8_t *)"xy yx", 5, &ids);
    CU_ASSERT(n == 2 && ids[0] == 258 && ids[1] == 257);
    free(ids);
    n = bpe_encode(b, (const uint8_t *)" xy", 3, &ids); /* (' ',x) is no merge: space stays a byte */
    CU_ASSERT(n == 2 && ids[0] == ' ' && ids[1] == 258);
    free(ids);
    n = bpe_encode(b, (const uint8_t *)"yx<|endoftext|>xy", 17, &ids); /* the special token is cut out */
    CU_ASSERT(n == 4 && ids[0] == 'y' && ids[1] == 'x' && ids[2] == bpe_eot_id(b) && ids[3] == 258);
    free(ids);
    /* a vocabulary that stops early is the size asked for when pairs remain */
    b = (bpe_free(b), bpe_train((const uint8_t *)c, strlen(c), 258, err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_EQUAL(bpe_vocab_size(b), 258);
    CU_ASSERT(merged(b, 256, " y"));
    bpe_free(b);
    CU_ASSERT_PTR_NULL(bpe_train((const uint8_t *)c, strlen(c), 256, err)); /* no room for the special */
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "vocab_size 256"));
}

static const char corpus[] =
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n"
    "We'll go, they're here; 1234 5678 caf\xc3\xa9 na\xc3\xafve \xe6\x97\xa5\xe6\x9c\xac \xd0\xbc\xd0\xb8\xd1\x80\n";

/* decode(encode(s)) == s for random byte strings: random bytes, and text-like
 * strings spliced with invalid UTF-8 and pieces of the special token. */
static void test_round_trip(void)
{
    char err[ERR_LEN];
    bpe *b = bpe_train((const uint8_t *)corpus, strlen(corpus), 400, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT(bpe_n_merges(b) > 20);
    rng_t r = { 42 };
    static const char *const pieces[] = { "the", " ", "  ", "\n", "'s", "'ll", "\xc3", "\xa9", "\xff", "<|endoftext|>",
                                          "<|endoft", "1", "\xe6\x97\xa5", "?!", "\t" };
    uint8_t s[700];
    for (int trial = 0; trial < 2000; trial++) {
        size_t n = 0, want = rng_below(&r, 600);
        while (n < want) {
            if (trial % 2) s[n++] = (uint8_t)rng_below(&r, 256);
            else {
                const char *p = pieces[rng_below(&r, sizeof pieces / sizeof pieces[0])];
                memcpy(s + n, p, strlen(p));
                n += strlen(p);
            }
        }
        int *ids = NULL;
        size_t m = bpe_encode(b, s, n, &ids), len = 0;
        uint8_t *back = bpe_decode(b, ids, m, &len, err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(back);
        if (len != n || memcmp(back, s, n)) {
            fprintf(stderr, "\n  round trip %d failed: %zu bytes in, %zu out\n", trial, n, len);
            CU_FAIL("decode(encode(s)) != s");
            trial = 1 << 30;
        }
        CU_ASSERT(m <= n);
        free(ids);
        free(back);
    }
    int bad = 400;
    CU_ASSERT_PTR_NULL(bpe_decode(b, &bad, 1, &(size_t){ 0 }, err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "id 400 out of range"));
    bpe_free(b);
}

/* Saving and loading gives the same tokenizer: same ids for the corpus. */
static void test_save_load(void)
{
    char err[ERR_LEN];
    bpe *b = bpe_train((const uint8_t *)corpus, strlen(corpus), 320, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    const char *path = tmp_path("tok.json");
    CU_ASSERT_FATAL(bpe_save(b, path, err) == 0);
    bpe *c = bpe_load(path, err);
    if (!c) fprintf(stderr, "\n  %s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(bpe_vocab_size(c), bpe_vocab_size(b));
    CU_ASSERT_EQUAL(bpe_n_merges(c), bpe_n_merges(b));
    CU_ASSERT_EQUAL(bpe_eot_id(c), bpe_eot_id(b));
    int *x = NULL, *y = NULL;
    size_t nx = bpe_encode(b, (const uint8_t *)corpus, strlen(corpus), &x);
    size_t ny = bpe_encode(c, (const uint8_t *)corpus, strlen(corpus), &y);
    CU_ASSERT(nx == ny && !memcmp(x, y, nx * sizeof *x));
    CU_ASSERT(nx < strlen(corpus));
    free(x); free(y);

    /* the data loader encodes text with it; a .u32.bin loads the same ids */
    const char *txt = tmp_path("corpus.txt");
    write_text(txt, corpus, strlen(corpus));
    data_set d;
    data_use_tokenizer(c);
    CU_ASSERT_FATAL(data_load(&d, txt, "auto", 320, 0.1, 8, err) == 0);
    data_use_tokenizer(NULL);
    CU_ASSERT_EQUAL(d.n, ny);
    uint32_t *w = malloc(d.n * 4);
    for (size_t i = 0; i < d.n; i++) w[i] = d.tokens[i];
    const char *u32 = tmp_path("corpus.u32.bin");
    write_text(u32, (const char *)w, d.n * 4);
    data_set e;
    CU_ASSERT_FATAL(data_load(&e, u32, "auto", 320, 0.1, 8, err) == 0);
    CU_ASSERT(e.n == d.n && !memcmp(e.tokens, d.tokens, d.n * 2));
    data_free(&e);
    CU_ASSERT(data_load(&e, u32, "auto", 100, 0.1, 8, err) != 0); /* ids >= vocab_size */
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "byte offset"));
    write_text(u32, (const char *)w, d.n * 4 - 2);
    CU_ASSERT(data_load(&e, u32, "auto", 320, 0.1, 8, err) != 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "multiple of 4"));
    free(w);
    data_free(&d);
    bpe_free(b);
    bpe_free(c);
}

/* A tokenizer.json: GPT-2's layout with vocab a,b,c (+ all bytes) and merges. */
static const char *write_tok(const char *name, const char *merges, const char *extra_vocab, const char *pre)
{
    static char doc[65536];
    size_t k = (size_t)snprintf(doc, sizeof doc, "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": %s, "
                                "\"model\": {\"type\": \"BPE\", \"vocab\": {", pre);
    for (int v = 0; v < 256; v++) {
        uint32_t cp = bpe_byte_to_cp((uint8_t)v);
        char u[8];
        if (cp == '"' || cp == '\\') snprintf(u, sizeof u, "\\%c", (char)cp);
        else if (cp < 0x80) snprintf(u, sizeof u, "%c", (char)cp);
        else snprintf(u, sizeof u, "%c%c", (char)(0xC0 | cp >> 6), (char)(0x80 | (cp & 0x3F)));
        k += (size_t)snprintf(doc + k, sizeof doc - k, "%s\"%s\": %d", v ? ", " : "", u, v);
    }
    k += (size_t)snprintf(doc + k, sizeof doc - k, "%s}, \"merges\": [%s]}}", extra_vocab, merges);
    const char *p = tmp_path(name);
    write_text(p, doc, k);
    return p;
}

static void expect_refused(const char *path, const char *field)
{
    char err[ERR_LEN] = "";
    bpe *b = bpe_load(path, err);
    CU_ASSERT_PTR_NULL(b);
    bpe_free(b);
    if (!strstr(err, path) || !strstr(err, field)) {
        fprintf(stderr, "\n  %s: expected a message naming the file and \"%s\", got: %s\n", path, field, err);
        CU_FAIL("message does not name the file and field");
    }
}

static void test_load_formats_and_refusals(void)
{
    const char *bl = "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}";
    char err[ERR_LEN];
    /* merges as "a b" strings and as [a, b] arrays (tokenizers >= 0.20) load the same */
    const char *s = write_tok("s.json", "\"a b\", \"ab c\"", ", \"ab\": 256, \"abc\": 257", bl);
    const char *a = write_tok("a.json", "[\"a\", \"b\"], [\"ab\", \"c\"]", ", \"ab\": 256, \"abc\": 257", bl);
    bpe *x = bpe_load(s, err), *y = bpe_load(a, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    CU_ASSERT_PTR_NOT_NULL_FATAL(y);
    int *ids = NULL;
    size_t n = bpe_encode(y, (const uint8_t *)"abcab", 5, &ids);
    CU_ASSERT(n == 2 && ids[0] == 257 && ids[1] == 256);
    CU_ASSERT_EQUAL(bpe_eot_id(y), -1);
    free(ids);
    bpe_free(x);
    bpe_free(y);

    write_text(tmp_path("notjson.json"), "{\"model\": ", 10);
    expect_refused(tmp_path("notjson.json"), "line 1");
    expect_refused(write_tok("unk.json", "\"a zz\"", ", \"ab\": 256", bl), "model.merges[0]: unknown token \"zz\"");
    expect_refused(write_tok("unk2.json", "\"a b\", \"b c\"", ", \"ab\": 256", bl),
                   "model.merges[1]: merged token \"bc\"");
    expect_refused(write_tok("shape.json", "\"ab\"", ", \"ab\": 256", bl), "model.merges[0]: expected");
    expect_refused(write_tok("hole.json", "", ", \"ab\": 257", bl), "no token has id 256");
    expect_refused(write_tok("dup.json", "", ", \"ab\": 255", bl), "id 255 given twice");
    expect_refused(write_tok("neg.json", "", ", \"ab\": -1", bl), "model.vocab.\"ab\"");
    expect_refused(write_tok("alpha.json", "", ", \"\xe2\x82\xac\": 256", bl), "U+20AC stands for no byte");
    expect_refused(write_tok("meta.json", "", "", "{\"type\": \"Metaspace\"}"), "pre_tokenizer");
    expect_refused(write_tok("prefix.json", "", "", "{\"type\": \"ByteLevel\", \"add_prefix_space\": true}"),
                   "pre_tokenizer.add_prefix_space");
    /* a vocabulary without every byte */
    const char *small = "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}}";
    write_text(tmp_path("small.json"), small, strlen(small));
    expect_refused(tmp_path("small.json"), "model.vocab: byte 0x00");
    const char *nomodel = "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"WordPiece\"}}";
    write_text(tmp_path("wp.json"), nomodel, strlen(nomodel));
    expect_refused(tmp_path("wp.json"), "model.type");
    expect_refused(tmp_path("missing.json"), "missing.json");
}

int main(void)
{
    CU_TestInfo tests[] = {
        { "pre-tokenizer = GPT-2's regex", test_pretokenize },
        { "bytes_to_unicode", test_byte_table },
        { "train: hand-computed merges", test_train_counts },
        { "train: tie rule, encodings, vocabulary limits", test_train_ties },
        { "decode(encode(s)) == s for random bytes", test_round_trip },
        { "save/load, data loader, .u32.bin", test_save_load },
        { "tokenizer.json forms and refusals", test_load_formats_and_refusals },
        CU_TEST_INFO_NULL,
    };
    int rc = tests_run("bpe", tests);
    if (tmpdir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
        if (system(cmd)) {}
    }
    return rc;
}
