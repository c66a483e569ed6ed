/* bpe.h — byte-level BPE (GPT-2 / LLaMA-3 style): training, encoding, decoding,
 * and Hugging Face tokenizer.json reading and writing.
 *
 * Tokens are byte strings. In tokenizer.json each byte is written as a printable
 * code point (GPT-2's bytes_to_unicode table), so "Ġthe" is the bytes " the".
 * Text is first cut into words by GPT-2's pre-tokenizer regex
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * implemented by hand (bpe_pretokenize); merges never cross a word boundary.
 *
 * Code point classes (\p{L}, \p{N}, \s), decided by a small table: ASCII;
 * Latin-1 letters (ª µ º À-Ö Ø-ö ø-ÿ) and U+0100-U+024F (Latin Extended A/B),
 * U+0250-U+02AF (IPA), Greek U+0386-U+03FF letters, Cyrillic U+0400-U+0481 and
 * U+048A-U+052F, Hebrew U+05D0-U+05EA, Arabic U+0620-U+064A, Hiragana, Katakana,
 * CJK U+4E00-U+9FFF, Hangul U+AC00-U+D7A3 are letters; 0-9, ² ³ ¹ ¼ ½ ¾,
 * U+0660-U+0669 and U+FF10-U+FF19 are numbers; \s is Unicode White_Space
 * (\t \n \v \f \r, space, U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029,
 * U+202F, U+205F, U+3000). Every other code point is "other" (punctuation). A byte
 * that does not start a valid UTF-8 sequence (Hugging Face cannot be given such
 * text) counts as one "other" character, so any byte string encodes and
 * decode(encode(s)) == s for every s.
 *
 * Training (bpe_train): the vocabulary is ids 0..255 = the single bytes (id b is
 * byte b), then one id per merge in the order learned, then the special token
 * "<|endoftext|>" as the last id (vocab_size - 1). Each step merges the adjacent
 * pair with the highest count over all words (word counts times occurrences);
 * ties go to the pair whose merged bytes are lexicographically smallest (memcmp,
 * a prefix first), then to the shorter left token. Pair counts are kept
 * incrementally with a lazy max-heap and a pair -> words index, as Hugging Face's
 * trainer does, so a merge touches only the words holding the pair.
 *
 * Encoding: special tokens (added_tokens with special=true) are cut out of the raw
 * text first; each word is then merged by rank (lowest rank first, leftmost
 * occurrence first), as GPT-2's bpe() and Hugging Face's BPE model do.
 *
 * Not here: normalizers, add_prefix_space, dropout, byte fallback, unk tokens,
 * continuing-subword prefixes (tokenizer.json files using them are refused). */
#ifndef MODEL_BPE_H
#define MODEL_BPE_H

#include <stddef.h>
#include <stdint.h>

#define BPE_EOT "<|endoftext|>"

typedef struct bpe bpe;

/* Learns a tokenizer of vocab_size ids (>= 257: 256 bytes + the special token)
 * from n bytes of text. Fewer merges are learned when no pair occurs twice; the
 * vocabulary is then smaller (bpe_vocab_size tells). Returns a new tokenizer
 * (bpe_free), or NULL with err when vocab_size is out of range (257..1<<24). */
bpe *bpe_train(const uint8_t *text, size_t n, int vocab_size, char *err);

/* Reads a Hugging Face tokenizer.json holding a byte-level BPE model. Returns a
 * new tokenizer, or NULL with a message naming path and the JSON field (e.g.
 * "model.merges[12]: unknown token \"xy\"") for anything it cannot use. */
bpe *bpe_load(const char *path, char *err);

/* Writes b as a Hugging Face tokenizer.json at path, durably. Returns 0 or -1 with err. */
int bpe_save(const bpe *b, const char *path, char *err);

void bpe_free(bpe *b);

/* Ids are 0 .. bpe_vocab_size(b) - 1. */
int bpe_vocab_size(const bpe *b);
/* Number of merges (model.merges entries). */
int bpe_n_merges(const bpe *b);
/* The bytes of token id (*len of them; not NUL-terminated), or NULL for an id out
 * of range. Owned by b. */
const uint8_t *bpe_token(const bpe *b, int id, size_t *len);
/* The id of the token whose bytes are s[0..n), or -1. */
int bpe_token_id(const bpe *b, const uint8_t *s, size_t n);
/* Id of the end-of-text special token ("<|endoftext|>"), or -1 when it has none. */
int bpe_eot_id(const bpe *b);

/* Encodes n bytes of s. Returns the number of ids and sets *out to a malloc'ed
 * array of them (caller frees; NULL when there are none). Never fails. b is
 * only read: any thread, concurrently. */
size_t bpe_encode(const bpe *b, const uint8_t *s, size_t n, int **out);

/* Decodes n ids into a malloc'ed byte string (caller frees; *len bytes, followed
 * by a NUL not counted). Returns NULL with err naming the position of an id out
 * of range. */
uint8_t *bpe_decode(const bpe *b, const int *ids, size_t n, size_t *len, char *err);

/* GPT-2's pre-tokenizer: the end offset of the word starting at s[i] (i < n).
 * Cutting s from 0 with this until n gives the words. */
size_t bpe_pretokenize_next(const uint8_t *s, size_t n, size_t i);

/* GPT-2's bytes_to_unicode: the code point that stands for byte v in tokenizer.json. */
uint32_t bpe_byte_to_cp(uint8_t v);

#endif
