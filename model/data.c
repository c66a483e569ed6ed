/* data.c — token files, the train/validation split, the seeded window sampler and
 * the byte-level tokenizer (see data.h). Reads each file with plain read() into one
 * buffer; .bin tokens are checked against the vocabulary before anything uses them. */
#include "model/data.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/bpe.h"
#include "model/safetensors.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               ".bin tokens are read and written as host uint16: little-endian hosts only");

#define TEXT_CHUNK (1u << 20)

/* Reads exactly n bytes from fd into buf. Returns 0, or -1 with errno set
 * (errno 0 when the file ended early). */
static int read_full(int fd, void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) { errno = 0; return -1; }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

static int read_error(const char *path, size_t want, char *err)
{
    if (errno == 0)
        return seterr(err, "%s: file ended early while reading %zu bytes (changed while reading?)",
                      path, want);
    return seterr(err, "%s: read failed: %s", path, strerror(errno));
}

static const struct bpe *text_tok; /* data_use_tokenizer */

void data_use_tokenizer(const struct bpe *tok) { text_tok = tok; }

/* Text through the BPE tokenizer: the whole file, then its ids. */
static int load_tokenized(data_set *d, int fd, size_t size, char *err)
{
    uint8_t *text = xmalloc(size);
    if (read_full(fd, text, size) != 0) {
        free(text);
        return read_error(d->path, size, err);
    }
    int *ids = NULL;
    size_t n = bpe_encode(text_tok, text, size, &ids);
    free(text);
    d->tokens = xmalloc((n ? n : 1) * sizeof(uint16_t));
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= d->vocab_size) {
            free(ids);
            return seterr(err, "%s: the tokenizer gave id %d (token %zu), >= model.vocab_size %d", d->path, ids[i], i,
                          d->vocab_size);
        }
        d->tokens[i] = (uint16_t)ids[i];
    }
    free(ids);
    d->n = n;
    return 0;
}

/* Text: every byte one token. Read in chunks and widen, so the peak memory is the
 * token array plus one chunk. */
static int load_text(data_set *d, int fd, size_t size, char *err)
{
    if (text_tok) return load_tokenized(d, fd, size, err);
    uint8_t *chunk = xmalloc(size < TEXT_CHUNK ? size : TEXT_CHUNK);
    d->tokens = xmalloc(size * sizeof(uint16_t));
    for (size_t off = 0; off < size;) {
        size_t m = size - off < TEXT_CHUNK ? size - off : TEXT_CHUNK;
        if (read_full(fd, chunk, m) != 0) {
            free(chunk);
            return read_error(d->path, m, err);
        }
        for (size_t i = 0; i < m; i++) d->tokens[off + i] = chunk[i];
        off += m;
    }
    free(chunk);
    d->n = size;
    return 0;
}

/* .u32.bin: little-endian uint32 tokens, each < vocab_size (<= 65536), kept as uint16. */
static int load_bin32(data_set *d, int fd, size_t size, char *err)
{
    d->n = size / 4;
    uint32_t *t32 = xmalloc(size);
    if (read_full(fd, t32, size) != 0) { free(t32); return read_error(d->path, size, err); }
    d->tokens = xmalloc(d->n * sizeof(uint16_t));
    for (size_t i = 0; i < d->n; i++) {
        if (t32[i] >= (uint32_t)d->vocab_size) {
            seterr(err, "%s: token id %u at byte offset %zu (token %zu) is >= vocab_size %d", d->path,
                   (unsigned)t32[i], 4 * i, i, d->vocab_size);
            free(t32);
            return -1;
        }
        d->tokens[i] = (uint16_t)t32[i];
    }
    free(t32);
    return 0;
}

/* .bin: little-endian uint16 tokens, each < vocab_size. */
static int load_bin(data_set *d, int fd, size_t size, char *err)
{
    if (ends_with(d->path, ".u32.bin")) return load_bin32(d, fd, size, err);
    if (size % 2 != 0)
        return seterr(err, "%s: .bin file size %zu bytes is odd; expected little-endian uint16 tokens "
                      "(2 bytes each)", d->path, size);
    d->n = size / 2;
    d->tokens = xmalloc(size);
    if (read_full(fd, d->tokens, size) != 0) return read_error(d->path, size, err);
    for (size_t i = 0; i < d->n; i++)
        if (d->tokens[i] >= (unsigned)d->vocab_size)
            return seterr(err, "%s: token id %u at byte offset %zu (token %zu) is >= vocab_size %d",
                          d->path, (unsigned)d->tokens[i], 2 * i, i, d->vocab_size);
    return 0;
}

static int check_args(const char *path, const char *format, int vocab_size,
                      double val_fraction, int seq_len, int *is_bin, char *err)
{
    if (strcmp(format, "auto") == 0) *is_bin = ends_with(path, ".bin");
    else if (strcmp(format, "bin") == 0) *is_bin = 1;
    else if (strcmp(format, "text") == 0) *is_bin = 0;
    else return seterr(err, "%s: unknown data format \"%s\" (expected auto, text or bin)", path, format);
    if (*is_bin && ends_with(path, ".u32.bin")) *is_bin = 4; /* uint32 tokens */
    if (vocab_size < 1 || vocab_size > 65536)
        return seterr(err, "%s: vocab_size %d out of range 1..65536", path, vocab_size);
    if (!*is_bin && vocab_size < 256)
        return seterr(err, "%s: text data has byte tokens 0..255 but vocab_size is %d (needs >= 256)",
                      path, vocab_size);
    if (!(val_fraction >= 0.0 && val_fraction < 1.0))
        return seterr(err, "%s: val_fraction %g out of range [0, 1)", path, val_fraction);
    if (seq_len < 1) return seterr(err, "%s: seq_len %d must be >= 1", path, seq_len);
    return 0;
}

/* Validation tokens of a file of n tokens: floor(n * f), except that a product
 * within a few ulps below an integer counts as that integer: 90 * 0.7 is
 * 62.99999999999999 in double but means 63. */
static size_t val_tokens(size_t n, double val_fraction)
{
    double prod = (double)n * val_fraction;
    double n_val_d = floor(prod);
    if (n_val_d + 1 - prod <= 4 * DBL_EPSILON * prod) n_val_d += 1;
    size_t n_val = (size_t)n_val_d;
    return n_val > n ? n : n_val;
}

static int splits_fit(size_t n, double val_fraction, int seq_len)
{
    size_t need = (size_t)seq_len + 1, n_val = val_tokens(n, val_fraction);
    return n - n_val >= need && (val_fraction <= 0 || n_val >= need);
}

size_t data_min_tokens(double val_fraction, int seq_len)
{
    /* both splits only grow with n: the smallest n that fits, by bisection */
    size_t lo = 0, hi = (size_t)seq_len + 1;
    while (!splits_fit(hi, val_fraction, seq_len)) {
        if (hi > SIZE_MAX / 4) return SIZE_MAX;
        lo = hi;
        hi *= 2;
    }
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (splits_fit(mid, val_fraction, seq_len)) hi = mid;
        else lo = mid;
    }
    return hi;
}

/* "NAME: 40 bytes, need at least 130 for seq_len 64 with a 10% validation split" */
static int too_small(const char *path, size_t n, int is_bin, double val_fraction, int seq_len, char *err)
{
    size_t need = data_min_tokens(val_fraction, seq_len), per = is_bin == 4 ? 4 : is_bin ? 2 : 1;
    char val[64] = " and no validation split";
    if (val_fraction > 0) snprintf(val, sizeof val, " with a %g%% validation split", val_fraction * 100);
    size_t n_val = val_tokens(n, val_fraction);
    return seterr(err, "%s: %zu %s, need at least %zu for seq_len %d%s (training split has %zu tokens, "
                  "validation split has %zu tokens; each needs seq_len+1 = %d)", path, n * per,
                  is_bin == 4 ? "bytes (uint32 tokens)" : is_bin ? "bytes (uint16 tokens)" : "bytes", need * per,
                  seq_len, val, n - n_val, n_val,
                  seq_len + 1);
}

/* Sets the split and checks each split holds one window of seq_len+1 tokens. */
static int split(data_set *d, int is_bin, double val_fraction, int seq_len, char *err)
{
    d->n_train = d->n - val_tokens(d->n, val_fraction);
    if (!splits_fit(d->n, val_fraction, seq_len)) return too_small(d->path, d->n, is_bin, val_fraction, seq_len, err);
    return 0;
}

/* Opens path and checks what its size alone tells. Returns the fd, or -1 with err. */
static int open_checked(const char *path, int is_bin, double val_fraction, int seq_len, size_t *size, char *err)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return seterr(err, "%s: cannot open data file: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0) seterr(err, "%s: cannot stat: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode)) seterr(err, "%s: not a regular file", path);
    else if (st.st_size == 0) seterr(err, "%s: data file is empty (0 bytes)", path);
    else if ((uint64_t)st.st_size > SIZE_MAX / 2) seterr(err, "%s: file too large", path);
    else if (is_bin == 4 && st.st_size % 4)
        seterr(err, "%s: .u32.bin file size %lld bytes is not a multiple of 4; expected little-endian uint32 "
               "tokens (4 bytes each)", path, (long long)st.st_size);
    else if (is_bin && st.st_size % 2)
        seterr(err, "%s: .bin file size %lld bytes is odd; expected little-endian uint16 tokens (2 bytes each)",
               path, (long long)st.st_size);
    else if (!splits_fit((size_t)st.st_size / (is_bin == 4 ? 4 : is_bin ? 2 : 1), val_fraction, seq_len))
        too_small(path, (size_t)st.st_size / (is_bin == 4 ? 4 : is_bin ? 2 : 1), is_bin, val_fraction, seq_len, err);
    else {
        *size = (size_t)st.st_size;
        return fd;
    }
    close(fd);
    return -1;
}

int data_check_file(const char *path, const char *format, int vocab_size, double val_fraction, int seq_len,
                    char *err)
{
    int is_bin = 0;
    size_t size;
    if (check_args(path, format, vocab_size, val_fraction, seq_len, &is_bin, err) != 0) return -1;
    int fd = open_checked(path, is_bin, val_fraction, seq_len, &size, err);
    if (fd < 0) return -1;
    close(fd);
    return 0;
}

int data_load(data_set *d, const char *path, const char *format, int vocab_size,
              double val_fraction, int seq_len, char *err)
{
    int fd = -1, is_bin = 0;
    size_t size = 0;
    memset(d, 0, sizeof *d);
    if (check_args(path, format, vocab_size, val_fraction, seq_len, &is_bin, err) != 0) return -1;
    d->path = xstrdup(path);
    d->vocab_size = vocab_size;
    if ((fd = open_checked(path, is_bin, val_fraction, seq_len, &size, err)) < 0) goto fail;
    if ((is_bin ? load_bin : load_text)(d, fd, size, err) != 0) goto fail;
    close(fd);
    fd = -1;
    if (split(d, is_bin, val_fraction, seq_len, err) != 0) goto fail; /* the file may have changed meanwhile */
    return 0;
fail:
    if (fd >= 0) close(fd);
    data_free(d);
    return -1;
}

void data_free(data_set *d)
{
    if (!d) return;
    free(d->tokens);
    free(d->path);
    memset(d, 0, sizeof *d);
}

void data_sampler_init(data_sampler *s, uint64_t seed)
{
    s->rng = rng_for(seed, "data.sampler");
}

void data_sample_batch(data_sampler *s, const data_set *d, int *x, int *y, size_t B, size_t T)
{
    uint64_t starts = (uint64_t)(d->n_train - T); /* offsets 0 .. n_train-T-1 */
    for (size_t b = 0; b < B; b++) {
        size_t off = (size_t)rng_below(&s->rng, starts);
        const uint16_t *w = d->tokens + off;
        for (size_t t = 0; t < T; t++) {
            x[b * T + t] = w[t];
            y[b * T + t] = w[t + 1];
        }
    }
}

size_t data_val_windows(const data_set *d, size_t T)
{
    return data_n_val(d) / (T + 1);
}

void data_val_window(const data_set *d, size_t i, int *x, int *y, size_t T)
{
    const uint16_t *w = d->tokens + d->n_train + i * (T + 1);
    for (size_t t = 0; t < T; t++) {
        x[t] = w[t];
        y[t] = w[t + 1];
    }
}

size_t data_encode_text(int *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = (uint8_t)s[i];
    return n;
}

size_t data_decode(char *out, const int *tokens, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (tokens[i] >= 0 && tokens[i] < 256) ? (char)(uint8_t)tokens[i] : '?';
    return n;
}

int data_write_bin(const char *path, const uint16_t *tokens, size_t n, char *err)
{
    if (n > SIZE_MAX / 2) return seterr(err, "%s: too many tokens (%zu)", path, n);
    return base_write_durable(path, tokens, n * 2, err);
}
