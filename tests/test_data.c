/* test_data.c — the data loader: text and .bin round trips, exact split sizes, the
 * seeded sampler (determinism, range, uniform coverage, save/restore), validation
 * windows, the tokenizer, and every bad-data case (inline and tests/bad/data/). */
#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/data.h"
#include "tests/tests.h"

static char tmpdir[256];

static const char *tmp_path(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/test_data.XXXXXX");
        CU_ASSERT_FATAL(mkdtemp(tmpdir) != NULL);
    }
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT_FATAL(fwrite(p, 1, n, f) == n);
    fclose(f);
}

/* A .bin whose token i is i (mod 65536): every token names its own position. */
static const char *write_positions(const char *name, size_t n)
{
    uint16_t *t = malloc(n * sizeof *t);
    for (size_t i = 0; i < n; i++) t[i] = (uint16_t)i;
    char err[ERR_LEN];
    const char *path = tmp_path(name);
    CU_ASSERT_FATAL(data_write_bin(path, t, n, err) == 0);
    free(t);
    return path;
}

static void test_text_roundtrip(void)
{
    unsigned char bytes[1000];
    for (int i = 0; i < 1000; i++) bytes[i] = (unsigned char)((i * 37 + 11) % 256);
    const char *path = tmp_path("corpus.txt");
    write_bytes(path, bytes, sizeof bytes);
    const char *fmts[] = { "text", "auto" };
    for (int k = 0; k < 2; k++) {
        data_set d;
        char err[ERR_LEN] = "";
        CU_ASSERT_FATAL(data_load(&d, path, fmts[k], 256, 0.1, 16, err) == 0);
        CU_ASSERT_EQUAL(d.n, 1000);
        CU_ASSERT_EQUAL(d.n_train, 900);
        CU_ASSERT_STRING_EQUAL(d.path, path);
        size_t bad = 0;
        for (size_t i = 0; i < d.n; i++) bad += d.tokens[i] != bytes[i];
        CU_ASSERT_EQUAL(bad, 0);
        data_free(&d);
        CU_ASSERT_PTR_NULL(d.tokens);
        data_free(&d); /* zeroed struct: no-op */
    }
}

static void test_bin_roundtrip(void)
{
    size_t n = 5000;
    uint16_t *t = malloc(n * sizeof *t);
    rng_t r = { 42 };
    for (size_t i = 0; i < n; i++) t[i] = (uint16_t)rng_below(&r, 50257);
    t[0] = 50256; /* the largest id allowed for vocab 50257 */
    const char *path = tmp_path("tok.bin");
    char err[ERR_LEN] = "", tmpname[600];
    CU_ASSERT_FATAL(data_write_bin(path, t, n, err) == 0);
    snprintf(tmpname, sizeof tmpname, "%s.tmp", path);
    CU_ASSERT(access(tmpname, F_OK) != 0); /* the temporary was renamed away */
    struct stat st;
    CU_ASSERT(stat(path, &st) == 0 && st.st_size == (off_t)(2 * n));
    /* explicit little-endian layout on disk */
    FILE *f = fopen(path, "rb");
    unsigned char b[2];
    CU_ASSERT(f && fread(b, 1, 2, f) == 2 && b[0] == (50256 & 0xff) && b[1] == (50256 >> 8));
    if (f) fclose(f);
    const char *fmts[] = { "bin", "auto" };
    for (int k = 0; k < 2; k++) {
        data_set d;
        CU_ASSERT_FATAL(data_load(&d, path, fmts[k], 50257, 0.1, 32, err) == 0);
        CU_ASSERT_EQUAL(d.n, n);
        CU_ASSERT(memcmp(d.tokens, t, n * sizeof *t) == 0);
        data_free(&d);
    }
    free(t);
}

static void test_split_sizes(void)
{
    const size_t ns[] = { 40, 90, 97, 100, 170, 1000, 1001, 4096, 12345 };
    const int pct[] = { 0, 5, 10, 25, 30, 50, 70, 90 };
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++) {
        const char *path = write_positions("split.bin", ns[a]);
        for (size_t b = 0; b < sizeof pct / sizeof pct[0]; b++) {
            data_set d;
            char err[ERR_LEN] = "";
            int rc = data_load(&d, path, "bin", 65536, pct[b] / 100.0, 1, err);
            size_t n_val = ns[a] * (size_t)pct[b] / 100; /* exact integer floor */
            CU_ASSERT_EQUAL_FATAL(rc, 0);
            if (d.n_train != ns[a] - n_val)
                fprintf(stderr, "\n  n=%zu f=%d%%: n_train %zu, expected %zu\n", ns[a], pct[b],
                        d.n_train, ns[a] - n_val);
            CU_ASSERT_EQUAL(d.n_train, ns[a] - n_val);
            CU_ASSERT_EQUAL(data_n_val(&d), n_val);
            data_free(&d);
        }
    }
}

/* Checks a batch against a positions file: each row is a window of the train split. */
static int batch_ok(const data_set *d, const int *x, const int *y, size_t B, size_t T, size_t *starts)
{
    for (size_t b = 0; b < B; b++) {
        size_t off = (size_t)x[b * T];
        if (off + T + 1 > d->n_train) return 0;
        for (size_t t = 0; t < T; t++)
            if (x[b * T + t] != (int)(off + t) || y[b * T + t] != (int)(off + t + 1)) return 0;
        if (starts) starts[off]++;
    }
    return 1;
}

static void test_sampler(void)
{
    const size_t n = 30, T = 4, B = 8;
    char err[ERR_LEN] = "";
    data_set d;
    CU_ASSERT_FATAL(data_load(&d, write_positions("pos.bin", n), "bin", 65536, 0.2, (int)T, err) == 0);
    CU_ASSERT_EQUAL_FATAL(d.n_train, 24);
    size_t n_starts = d.n_train - T; /* 20 possible starts: 0..19 */
    size_t starts[32] = { 0 };
    int x1[B * T], y1[B * T], x2[B * T], y2[B * T];
    data_sampler s1, s2, s3;
    data_sampler_init(&s1, 7);
    data_sampler_init(&s2, 7);
    data_sampler_init(&s3, 8);
    int same_seed_equal = 1, other_seed_differs = 0, in_range = 1;
    for (int it = 0; it < 500; it++) {
        data_sample_batch(&s1, &d, x1, y1, B, T);
        data_sample_batch(&s2, &d, x2, y2, B, T);
        same_seed_equal &= memcmp(x1, x2, sizeof x1) == 0 && memcmp(y1, y2, sizeof y1) == 0;
        data_sample_batch(&s3, &d, x2, y2, B, T);
        other_seed_differs |= memcmp(x1, x2, sizeof x1) != 0;
        in_range &= batch_ok(&d, x1, y1, B, T, starts);
    }
    CU_ASSERT(same_seed_equal);
    CU_ASSERT(other_seed_differs);
    CU_ASSERT(in_range);
    /* 4000 draws over 20 starts: every start appears, roughly uniformly (mean 200) */
    for (size_t i = 0; i < 32; i++) {
        if (i < n_starts) CU_ASSERT(starts[i] > 120 && starts[i] < 280);
        if (i >= n_starts) CU_ASSERT_EQUAL(starts[i], 0);
    }
    data_free(&d);
}

static void test_sampler_restore(void)
{
    const size_t T = 8, B = 4;
    char err[ERR_LEN] = "";
    data_set d;
    CU_ASSERT_FATAL(data_load(&d, write_positions("pos2.bin", 1000), "bin", 65536, 0.1, (int)T, err) == 0);
    data_sampler s;
    data_sampler_init(&s, 123);
    int x[5][B * T], y[5][B * T], xr[B * T], yr[B * T];
    for (int i = 0; i < 3; i++) data_sample_batch(&s, &d, x[0], y[0], B, T);
    uint64_t saved = data_sampler_get_state(&s);
    for (int i = 0; i < 5; i++) data_sample_batch(&s, &d, x[i], y[i], B, T);
    data_sampler r;
    data_sampler_init(&r, 999); /* a different stream, overwritten by the restore */
    data_sampler_set_state(&r, saved);
    for (int i = 0; i < 5; i++) {
        data_sample_batch(&r, &d, xr, yr, B, T);
        CU_ASSERT(memcmp(xr, x[i], sizeof xr) == 0 && memcmp(yr, y[i], sizeof yr) == 0);
        CU_ASSERT(batch_ok(&d, xr, yr, B, T, NULL));
    }
    CU_ASSERT_EQUAL(data_sampler_get_state(&r), data_sampler_get_state(&s));
    data_free(&d);
}

static void test_val_windows(void)
{
    const size_t n = 1000, T = 9;
    char err[ERR_LEN] = "";
    data_set d;
    CU_ASSERT_FATAL(data_load(&d, write_positions("val.bin", n), "bin", 65536, 0.125, (int)T, err) == 0);
    CU_ASSERT_EQUAL_FATAL(d.n_train, 875);
    size_t nw = data_val_windows(&d, T);
    CU_ASSERT_EQUAL(nw, 125 / 10);
    size_t next = d.n_train; /* each window starts where the previous ended */
    for (size_t i = 0; i < nw; i++) {
        int x[T], y[T];
        data_val_window(&d, i, x, y, T);
        CU_ASSERT_EQUAL((size_t)x[0], next);
        for (size_t t = 0; t < T; t++) {
            CU_ASSERT_EQUAL((size_t)x[t], next + t);
            CU_ASSERT_EQUAL((size_t)y[t], next + t + 1);
        }
        next += T + 1;
    }
    CU_ASSERT(next <= n && n - next < T + 1); /* no further full window fits */
    CU_ASSERT_EQUAL(data_val_windows(&d, 124), 1);
    CU_ASSERT_EQUAL(data_val_windows(&d, 125), 0);
    data_free(&d);
}

static void test_tokenizer(void)
{
    char s[256], back[256];
    int tok[256];
    for (int i = 0; i < 256; i++) s[i] = (char)i;
    CU_ASSERT_EQUAL(data_encode_text(tok, s, 256), 256);
    for (int i = 0; i < 256; i++) CU_ASSERT_EQUAL(tok[i], i);
    CU_ASSERT_EQUAL(data_decode(back, tok, 256), 256);
    CU_ASSERT(memcmp(back, s, 256) == 0);
    int odd[3] = { 'h', 300, -1 };
    CU_ASSERT_EQUAL(data_decode(back, odd, 3), 3);
    CU_ASSERT(memcmp(back, "h??", 3) == 0);
}

/* Expects data_load to fail with a message naming path and containing `what`. */
static void expect_fail(const char *path, const char *fmt, int vocab, double vf, int seq, const char *what)
{
    data_set d;
    char err[ERR_LEN] = "";
    int rc = data_load(&d, path, fmt, vocab, vf, seq, err);
    if (rc == 0 || !strstr(err, path) || !strstr(err, what))
        fprintf(stderr, "\n  %s: rc %d, message \"%s\", expected \"%s\"\n", path, rc, err, what);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, what));
    CU_ASSERT_PTR_NULL(d.tokens);
    if (rc == 0) data_free(&d);
}

static void test_bad_inline(void)
{
    expect_fail(tmp_path("missing.txt"), "auto", 256, 0.1, 8, "No such file");
    write_bytes(tmp_path("empty.txt"), "", 0);
    expect_fail(tmp_path("empty.txt"), "auto", 256, 0.1, 8, "empty");
    write_bytes(tmp_path("short.txt"), "0123456789", 10);
    expect_fail(tmp_path("short.txt"), "text", 256, 0.0, 10, "training split has 10 tokens");
    expect_fail(tmp_path("short.txt"), "text", 256, 0.3, 5, "validation split has 3 tokens");
    expect_fail(tmp_path("short.txt"), "text", 128, 0.0, 2, "vocab_size is 128");
    expect_fail(tmp_path("short.txt"), "csv", 256, 0.0, 2, "unknown data format");
    expect_fail(tmp_path("short.txt"), "text", 256, 1.0, 2, "val_fraction");
    write_bytes(tmp_path("odd.bin"), "\1\0\2\0\3", 5);
    expect_fail(tmp_path("odd.bin"), "auto", 256, 0.0, 1, "size 5 bytes is odd");
    uint16_t t[64];
    for (int i = 0; i < 64; i++) t[i] = (uint16_t)i;
    t[37] = 300;
    char err[ERR_LEN];
    CU_ASSERT_FATAL(data_write_bin(tmp_path("big.bin"), t, 64, err) == 0);
    expect_fail(tmp_path("big.bin"), "bin", 256, 0.1, 4, "token id 300 at byte offset 74");
    expect_fail(tmpdir, "text", 256, 0.1, 4, "not a regular file");
    /* the good cases right beside the bad ones still load */
    data_set d;
    CU_ASSERT(data_load(&d, tmp_path("big.bin"), "bin", 301, 0.1, 4, err) == 0);
    data_free(&d);
    CU_ASSERT(data_load(&d, tmp_path("short.txt"), "text", 256, 0.0, 9, err) == 0);
    data_free(&d);
}

/* tests/bad/data/NAME with NAME.expect: loaded with format auto, vocab_size 256,
 * val_fraction 0.1, seq_len 8 (see tests/bad/data/README); the message must name
 * the file and contain the text of NAME.expect. */
static void check_bad_data(const char *path, const char *want) { expect_fail(path, "auto", 256, 0.1, 8, want); }

static void test_bad_corpus(void)
{
    const char *dir = getenv("BAD_DATA_DIR") ? getenv("BAD_DATA_DIR") : "tests/bad/data";
    CU_ASSERT(tests_each_expect(dir, check_bad_data) >= 6);
}

static void cleanup(void) { tests_rm_dir(tmpdir); }

int main(void)
{
    CU_TestInfo tests[] = {
        { "text round trip", test_text_roundtrip },
        { "bin round trip", test_bin_roundtrip },
        { "split sizes exact", test_split_sizes },
        { "sampler determinism, range, coverage", test_sampler },
        { "sampler restore from state", test_sampler_restore },
        { "validation windows contiguous", test_val_windows },
        { "byte tokenizer", test_tokenizer },
        { "bad data inline", test_bad_inline },
        { "bad data corpus", test_bad_corpus },
        CU_TEST_INFO_NULL,
    };
    int rc = tests_run("data", tests);
    cleanup();
    return rc;
}
