/* data.h — training data: loading a token file (byte-level text, text through a
 * BPE tokenizer, or nanoGPT-style .bin of little-endian uint16 — uint32 when the
 * name ends in ".u32.bin"), the train/validation split, the seeded training
 * window sampler, the contiguous validation windows and the byte-level tokenizer.
 *
 * Not here: the BPE itself (model/bpe.h), streaming of files larger than memory,
 * shuffling without replacement. The whole file is read into one buffer.
 *
 * Layout of a loaded file of n tokens with val_fraction f (as nanoGPT):
 *   [0, n_train)  training split, n_train = n - floor(n * f) (a product a few ulps
 *                 below an integer counts as it: 90 * 0.7 gives 63, not 62)
 *   [n_train, n)  validation split
 * A window is T+1 consecutive tokens: x = window[0..T), y = window[1..T+1). */
#ifndef MODEL_DATA_H
#define MODEL_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "model/util.h"

/* A loaded token file. Visible so kernels and tests can read the fields; filled
 * by data_load, released by data_free. A zeroed struct is a valid empty value. */
typedef struct {
    uint16_t *tokens; /* (n) all tokens of the file, owned */
    size_t n;         /* number of tokens */
    size_t n_train;   /* tokens [0, n_train) train, [n_train, n) validation */
    int vocab_size;   /* the vocabulary the file was checked against */
    char *path;       /* the file name, for messages; owned */
} data_set;

/* Loads `path` into d (which is overwritten; free a previous value first).
 *   format       "text": every byte is a token (needs vocab_size >= 256), or,
 *                after data_use_tokenizer(tok), the ids tok encodes the file to;
 *                "bin": little-endian uint16 tokens, every id < vocab_size
 *                (uint32 tokens when path ends in ".u32.bin");
 *                "auto": "bin" when path ends in ".bin", else "text".
 *   vocab_size   1..65536.
 *   val_fraction in [0, 1): the last floor(n * val_fraction) tokens are validation.
 *                With 0 there is no validation split (and no check on it);
 *                otherwise both splits must hold at least one window.
 *   seq_len      T >= 1; each split needs at least T+1 tokens.
 * Returns 0, or -1 with d zeroed and a message in err naming the file and the
 * problem (missing/unreadable with strerror, empty, odd .bin size, token id out of
 * range with its byte offset and value, a split too short with the counts). */
int data_load(data_set *d, const char *path, const char *format, int vocab_size,
              double val_fraction, int seq_len, char *err);

/* The fewest tokens a file may hold for seq_len and val_fraction: both splits
 * (as data_load makes them) hold seq_len+1 tokens (the validation split only
 * when val_fraction > 0). */
size_t data_min_tokens(double val_fraction, int seq_len);

/* What data_load checks without reading the tokens: the arguments, that path
 * opens and is a regular non-empty file, an even size for .bin, and enough
 * tokens (data_min_tokens) — "FILE: 40 bytes, need at least 130 for seq_len 64
 * with a 10% validation split". For a launcher, before it starts processes
 * that would load the file. Returns 0, or -1 with a message naming the file. */
int data_check_file(const char *path, const char *format, int vocab_size, double val_fraction, int seq_len,
                    char *err);

struct bpe;
/* Makes every later data_load of text in this process encode it with tok (NULL:
 * back to one token per byte). tok stays owned by the caller and must outlive the
 * loads; its ids must be < the vocab_size given to data_load (the caller checks
 * that the model's vocabulary is the tokenizer's). Set it before starting threads
 * that load data. */
void data_use_tokenizer(const struct bpe *tok);

/* Releases what data_load allocated and zeroes d. Safe on a zeroed struct and NULL. */
void data_free(data_set *d);

/* Number of validation tokens (n - n_train). */
static inline size_t data_n_val(const data_set *d) { return d->n - d->n_train; }

/* ---- training sampler ---------------------------------------------------- */

/* The sampler's whole state is its RNG: a single uint64_t (`rng.s`). Saving it
 * with data_sampler_get_state and restoring it with data_sampler_set_state
 * reproduces every later batch exactly. Two samplers with the same seed (e.g. on
 * the first and the last stage) draw the same windows. */
typedef struct {
    rng_t rng;
} data_sampler;

/* Seeds the sampler; the stream is rng_for(seed, "data.sampler"). */
void data_sampler_init(data_sampler *s, uint64_t seed);
static inline uint64_t data_sampler_get_state(const data_sampler *s) { return s->rng.s; }
static inline void data_sampler_set_state(data_sampler *s, uint64_t state) { s->rng.s = state; }

/* Draws B windows of T+1 tokens, each starting at a uniformly random offset in
 * [0, n_train - T - 1] (one rng_below per row, rows in order), and writes
 * x (B, T) = window[0..T), y (B, T) = window[1..T+1). Requires n_train >= T+1
 * (data_load guarantees it for T <= seq_len). */
void data_sample_batch(data_sampler *s, const data_set *d, int *x /* (B, T) */,
                       int *y /* (B, T) */, size_t B, size_t T);

/* ---- validation windows -------------------------------------------------- */

/* Number of contiguous, non-overlapping windows of T+1 tokens that fit in the
 * validation split, counted from its start: floor(n_val / (T+1)). */
size_t data_val_windows(const data_set *d, size_t T);

/* Window i (< data_val_windows) starts at n_train + i*(T+1):
 * x (T) = window[0..T), y (T) = window[1..T+1). */
void data_val_window(const data_set *d, size_t i, int *x /* (T) */, int *y /* (T) */, size_t T);

/* ---- byte-level tokenizer ------------------------------------------------ */

/* Encodes n bytes of s as n tokens (one per byte, 0..255) into out (n). Returns n. */
size_t data_encode_text(int *out /* (n) */, const char *s, size_t n);

/* Decodes n byte-level tokens into out (n bytes, not NUL-terminated); a token
 * outside 0..255 (not a byte) becomes '?'. Returns n. */
size_t data_decode(char *out /* (n) */, const int *tokens /* (n) */, size_t n);

/* Writes n tokens to path as a nanoGPT-style .bin (little-endian uint16),
 * durably (temporary file, fsync, rename, fsync of the directory).
 * Returns 0, or -1 with a message naming the file in err. */
int data_write_bin(const char *path, const uint16_t *tokens, size_t n, char *err);

#endif
