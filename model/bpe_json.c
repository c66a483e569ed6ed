/* bpe_json.c — Hugging Face tokenizer.json for byte-level BPE: writing ours (the
 * layout of GPT-2's file: ByteLevel pre-tokenizer, post-processor and decoder,
 * no normalizer, "<|endoftext|>" as an added special token) and reading any
 * byte-level BPE file whose pre-tokenizer is ByteLevel with GPT-2's regex. Every
 * refusal names the file and the JSON field. */
#include "model/bpe_int.h"

#include <errno.h>
#include <jansson.h>

/* ---- bytes <-> the printable code points of tokenizer.json ----------------- */

/* Appends the UTF-8 of code point c to out. */
static size_t put_utf8(uint8_t *out, uint32_t c)
{
    if (c < 0x80) { out[0] = (uint8_t)c; return 1; }
    if (c < 0x800) { out[0] = (uint8_t)(0xC0 | c >> 6); out[1] = (uint8_t)(0x80 | (c & 0x3F)); return 2; }
    out[0] = (uint8_t)(0xE0 | c >> 12);
    out[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
    out[2] = (uint8_t)(0x80 | (c & 0x3F));
    return 3;
}

/* The tokenizer.json spelling of n bytes (malloc'ed, NUL-terminated). */
static char *bytes_to_json(const uint8_t *s, size_t n)
{
    char *o = xmalloc(2 * n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += put_utf8((uint8_t *)o + k, bpe_byte_to_cp(s[i]));
    o[k] = 0;
    return o;
}

/* The byte each code point < 324 stands for, or -1: bytes_to_unicode inverted. */
static void byte_table(int inv[324])
{
    for (int i = 0; i < 324; i++) inv[i] = -1;
    for (int v = 0; v < 256; v++) inv[bpe_byte_to_cp((uint8_t)v)] = v;
}

/* The bytes of a tokenizer.json spelling (valid UTF-8, as jansson guarantees):
 * into out (room for strlen(s)), returns the length, or -1 with *bad the first
 * code point that stands for no byte. inv is byte_table's. */
static long json_to_bytes(const char *s, const int inv[324], uint8_t *out, uint32_t *bad)
{
    long k = 0;
    for (const uint8_t *p = (const uint8_t *)s; *p;) {
        uint32_t c;
        if (*p < 0x80) c = *p++;
        else if ((*p & 0xE0) == 0xC0) { c = (uint32_t)(p[0] & 0x1F) << 6 | (p[1] & 0x3F); p += 2; }
        else if ((*p & 0xF0) == 0xE0) { c = (uint32_t)(p[0] & 0x0F) << 12 | (uint32_t)(p[1] & 0x3F) << 6 | (p[2] & 0x3F); p += 3; }
        else { c = (uint32_t)(p[0] & 0x07) << 18 | (uint32_t)(p[1] & 0x3F) << 12 | (uint32_t)(p[2] & 0x3F) << 6 | (p[3] & 0x3F); p += 4; }
        if (c >= 324 || inv[c] < 0) { *bad = c; return -1; }
        out[k++] = (uint8_t)inv[c];
    }
    return k;
}

/* ---- writing --------------------------------------------------------------- */

static json_t *byte_level(int prefix, int trim)
{
    return json_pack("{s:s,s:b,s:b,s:b}", "type", "ByteLevel", "add_prefix_space", prefix, "trim_offsets", trim,
                     "use_regex", 1);
}

int bpe_save(const bpe *b, const char *path, char *err)
{
    json_t *vocab = json_object(), *merges = json_array(), *added = json_array();
    for (int id = 0; id < b->n_vocab; id++) {
        char *k = b->is_special[id] ? strndup((const char *)b->tok[id], b->tok_len[id])
                                    : bytes_to_json(b->tok[id], b->tok_len[id]);
        json_object_set_new(vocab, k, json_integer(id));
        if (b->is_special[id])
            json_array_append_new(added, json_pack("{s:i,s:s,s:b,s:b,s:b,s:b,s:b}", "id", id, "content", k,
                                                   "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0,
                                                   "special", 1));
        free(k);
    }
    for (int r = 0; r < b->n_merges; r++) {
        char *x = bytes_to_json(b->tok[b->merge_a[r]], b->tok_len[b->merge_a[r]]);
        char *y = bytes_to_json(b->tok[b->merge_b[r]], b->tok_len[b->merge_b[r]]);
        size_t n = strlen(x) + strlen(y) + 2;
        char *m = xmalloc(n);
        snprintf(m, n, "%s %s", x, y);
        json_array_append_new(merges, json_string(m));
        free(x); free(y); free(m);
    }
    json_t *model = json_pack("{s:s,s:n,s:n,s:n,s:n,s:b,s:b,s:o,s:o}", "type", "BPE", "dropout", "unk_token",
                              "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0,
                              "vocab", vocab, "merges", merges);
    json_t *doc = json_pack("{s:s,s:n,s:n,s:o,s:n,s:o,s:o,s:o,s:o}", "version", "1.0", "truncation", "padding",
                            "added_tokens", added, "normalizer", "pre_tokenizer", byte_level(0, 1),
                            "post_processor", byte_level(1, 0), "decoder", byte_level(1, 1), "model", model);
    char *text = json_dumps(doc, JSON_INDENT(1));
    json_decref(doc);
    int rc = text ? base_write_durable(path, text, strlen(text), err) : seterr(err, "%s: cannot encode JSON", path);
    free(text);
    return rc;
}

/* ---- reading --------------------------------------------------------------- */

static int check_parts(const char *path, json_t *doc, char *err)
{
    json_t *n = json_object_get(doc, "normalizer");
    if (n && !json_is_null(n))
        return seterr(err, "%s: normalizer: expected null (byte-level BPE without a normalizer)", path);
    json_t *pt = json_object_get(doc, "pre_tokenizer");
    const char *type = json_string_value(json_object_get(pt, "type"));
    if (!type || strcmp(type, "ByteLevel"))
        return seterr(err, "%s: pre_tokenizer: expected {\"type\": \"ByteLevel\", ...} (GPT-2's regex), found %s",
                      path, type ? type : "no type");
    if (json_is_true(json_object_get(pt, "add_prefix_space")))
        return seterr(err, "%s: pre_tokenizer.add_prefix_space: only false is supported", path);
    if (json_is_false(json_object_get(pt, "use_regex")))
        return seterr(err, "%s: pre_tokenizer.use_regex: only true (GPT-2's regex) is supported", path);
    json_t *m = json_object_get(doc, "model");
    if (!json_is_object(m)) return seterr(err, "%s: model: expected an object", path);
    const char *mt = json_string_value(json_object_get(m, "type"));
    if (mt && strcmp(mt, "BPE")) return seterr(err, "%s: model.type: expected \"BPE\", found \"%s\"", path, mt);
    static const char *const unsupported[] = { "continuing_subword_prefix", "end_of_word_suffix", NULL };
    for (int i = 0; unsupported[i]; i++) {
        const char *s = json_string_value(json_object_get(m, unsupported[i]));
        if (s && s[0]) return seterr(err, "%s: model.%s: expected null, found \"%s\"", path, unsupported[i], s);
    }
    json_t *d = json_object_get(m, "dropout");
    if (d && !json_is_null(d) && json_number_value(d) != 0)
        return seterr(err, "%s: model.dropout: expected null (encoding is deterministic)", path);
    if (!json_is_object(json_object_get(m, "vocab"))) return seterr(err, "%s: model.vocab: expected an object", path);
    if (!json_is_array(json_object_get(m, "merges"))) return seterr(err, "%s: model.merges: expected an array", path);
    json_t *at = json_object_get(doc, "added_tokens");
    if (at && !json_is_array(at) && !json_is_null(at)) return seterr(err, "%s: added_tokens: expected an array", path);
    return 0;
}

#define MAX_ID (1 << 24)

/* The largest id in model.vocab and added_tokens, checking their shapes. */
static int max_id(const char *path, json_t *vocab, json_t *added, int *max, char *err)
{
    const char *k;
    json_t *v;
    *max = -1;
    json_object_foreach(vocab, k, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= MAX_ID)
            return seterr(err, "%s: model.vocab.\"%s\": expected an id in 0..%d", path, k, MAX_ID - 1);
        if (json_integer_value(v) > *max) *max = (int)json_integer_value(v);
    }
    size_t i;
    json_array_foreach(added, i, v) {
        json_t *id = json_object_get(v, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= MAX_ID)
            return seterr(err, "%s: added_tokens[%zu].id: expected an id in 0..%d", path, i, MAX_ID - 1);
        if (!json_is_string(json_object_get(v, "content")) || !json_string_length(json_object_get(v, "content")))
            return seterr(err, "%s: added_tokens[%zu].content: expected a non-empty string", path, i);
        if (json_integer_value(id) > *max) *max = (int)json_integer_value(id);
    }
    if (*max < 0) return seterr(err, "%s: model.vocab: empty", path);
    return 0;
}

static int set_tok(bpe *b, int id, const uint8_t *s, size_t n, int special)
{
    if (b->tok[id]) return -1;
    b->tok[id] = xmalloc(n ? n : 1);
    memcpy(b->tok[id], s, n);
    b->tok_len[id] = (uint32_t)n;
    b->is_special[id] = (uint8_t)special;
    return 0;
}

static int read_vocab(const char *path, bpe *b, json_t *vocab, json_t *added, char *err)
{
    size_t i;
    json_t *v;
    json_array_foreach(added, i, v) {
        const char *c = json_string_value(json_object_get(v, "content"));
        if (set_tok(b, (int)json_integer_value(json_object_get(v, "id")), (const uint8_t *)c, strlen(c), 1))
            return seterr(err, "%s: added_tokens[%zu].id: id %d given twice", path, i,
                          (int)json_integer_value(json_object_get(v, "id")));
    }
    const char *k;
    uint8_t *buf = NULL;
    int inv[324];
    byte_table(inv);
    json_object_foreach(vocab, k, v) {
        int id = (int)json_integer_value(v);
        if (b->is_special[id]) continue; /* an added token's own entry */
        uint32_t bad = 0;
        buf = realloc(buf, strlen(k) + 1);
        long n = json_to_bytes(k, inv, buf, &bad);
        if (n < 0) {
            free(buf);
            return seterr(err, "%s: model.vocab.\"%s\": character U+%04X stands for no byte (not a byte-level "
                          "BPE vocabulary)", path, k, bad);
        }
        if (set_tok(b, id, buf, (size_t)n, 0)) {
            free(buf);
            return seterr(err, "%s: model.vocab.\"%s\": id %d given twice", path, k, id);
        }
    }
    free(buf);
    for (int id = 0; id < b->n_vocab; id++)
        if (!b->tok[id]) return seterr(err, "%s: model.vocab: no token has id %d (ids must be 0..%d)", path, id, b->n_vocab - 1);
    return 0;
}

/* Merge i: its two token spellings into a and b (pointers into the document or buf). */
static int merge_parts(const char *path, size_t i, json_t *m, char *buf, size_t cap, const char **a,
                       const char **b, char *err)
{
    if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
        json_is_string(json_array_get(m, 1))) {
        *a = json_string_value(json_array_get(m, 0));
        *b = json_string_value(json_array_get(m, 1));
        return 0;
    }
    const char *s = json_string_value(m), *sp = s ? strchr(s, ' ') : NULL;
    if (!sp || sp == s || !sp[1] || strchr(sp + 1, ' ') || (size_t)(sp - s) >= cap)
        return seterr(err, "%s: model.merges[%zu]: expected \"A B\" or [\"A\", \"B\"]", path, i);
    memcpy(buf, s, (size_t)(sp - s));
    buf[sp - s] = 0;
    *a = buf;
    *b = sp + 1;
    return 0;
}

static int read_merges(const char *path, bpe *b, json_t *vocab, json_t *merges, char *err)
{
    size_t n = json_array_size(merges), i;
    b->merge_a = xmalloc((n + 1) * sizeof(int));
    b->merge_b = xmalloc((n + 1) * sizeof(int));
    b->merge_out = xmalloc((n + 1) * sizeof(int));
    char buf[1024], cat[2048];
    json_t *m;
    json_array_foreach(merges, i, m) {
        const char *x = NULL, *y = NULL;
        if (merge_parts(path, i, m, buf, sizeof buf, &x, &y, err)) return -1;
        json_t *ix = json_object_get(vocab, x), *iy = json_object_get(vocab, y);
        if (!ix || !iy) return seterr(err, "%s: model.merges[%zu]: unknown token \"%s\" (not in model.vocab)", path, i, ix ? y : x);
        if (strlen(x) + strlen(y) >= sizeof cat) return seterr(err, "%s: model.merges[%zu]: token too long", path, i);
        memcpy(cat, x, strlen(x));
        memcpy(cat + strlen(x), y, strlen(y) + 1);
        json_t *io = json_object_get(vocab, cat);
        if (!io) return seterr(err, "%s: model.merges[%zu]: merged token \"%s\" is not in model.vocab", path, i, cat);
        b->merge_a[i] = (int)json_integer_value(ix);
        b->merge_b[i] = (int)json_integer_value(iy);
        b->merge_out[i] = (int)json_integer_value(io);
        b->n_merges = (int)i + 1;
    }
    return 0;
}

bpe *bpe_load(const char *path, char *err)
{
    json_error_t je;
    FILE *f = fopen(path, "rb");
    if (!f) return seterr(err, "%s: cannot open: %s", path, strerror(errno)), NULL;
    json_t *doc = json_loadf(f, 0, &je);
    fclose(f);
    bpe *b = NULL;
    if (!doc) {
        seterr(err, "%s: not a tokenizer.json: line %d, column %d: %s", path, je.line, je.column, je.text);
        return NULL;
    }
    if (!json_is_object(doc)) { seterr(err, "%s: expected a JSON object", path); goto fail; }
    if (check_parts(path, doc, err)) goto fail;
    json_t *m = json_object_get(doc, "model"), *vocab = json_object_get(m, "vocab");
    json_t *added = json_object_get(doc, "added_tokens");
    int mx;
    if (max_id(path, vocab, added, &mx, err)) goto fail;
    b = bpe_alloc(mx + 1);
    b->ignore_merges = json_is_true(json_object_get(m, "ignore_merges"));
    if (read_vocab(path, b, vocab, added, err)) goto fail;
    if (read_merges(path, b, vocab, json_object_get(m, "merges"), err)) goto fail;
    char what[4200];
    snprintf(what, sizeof what, "%s: model.vocab", path);
    if (bpe_finish(b, what, err)) goto fail;
    for (int v = 0; v < 256; v++)
        if (b->byte_id[v] < 0) {
            char *s = bytes_to_json((const uint8_t *)&(uint8_t){ (uint8_t)v }, 1);
            seterr(err, "%s: model.vocab: byte 0x%02x (\"%s\") has no token: not a byte-level BPE vocabulary", path, v, s);
            free(s);
            goto fail;
        }
    json_decref(doc);
    return b;
fail:
    bpe_free(b);
    json_decref(doc);
    return NULL;
}
