/* bpe.c — byte-level BPE: GPT-2's pre-tokenizer by hand, the byte <-> code point
 * table, encoding by merge rank and decoding (see bpe.h). Training is in
 * bpe_train.c, tokenizer.json in bpe_json.c. */
#include "model/bpe_int.h"

/* ---- code points ----------------------------------------------------------- */

enum { C_L, C_N, C_S, C_O };

/* Decodes the UTF-8 sequence at s[i] (i < n) into *cp and returns its length; a
 * byte that does not start a valid sequence (overlong, surrogate, > U+10FFFF,
 * truncated) is one character of its own with *cp = 0x110000 + byte ("other"). */
static size_t utf8_at(const uint8_t *s, size_t n, size_t i, uint32_t *cp)
{
    uint8_t c = s[i];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) { *cp = c; return 1; }
    if (c >= 0xC2 && c <= 0xDF) { len = 2; v = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; v = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; v = c & 0x07; min = 0x10000; }
    else goto bad;
    if (i + len > n) goto bad;
    for (size_t k = 1; k < len; k++) {
        if ((s[i + k] & 0xC0) != 0x80) goto bad;
        v = v << 6 | (s[i + k] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) goto bad;
    *cp = v;
    return len;
bad:
    *cp = 0x110000u + c;
    return 1;
}

static int cp_class(uint32_t c)
{
    if (c < 0x80) {
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return C_L;
        if (c >= '0' && c <= '9') return C_N;
        if (c == ' ' || (c >= 9 && c <= 13)) return C_S;
        return C_O;
    }
    if (c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
        c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000)
        return C_S;
    if (c == 0xB2 || c == 0xB3 || c == 0xB9 || (c >= 0xBC && c <= 0xBE) || (c >= 0x660 && c <= 0x669) ||
        (c >= 0xFF10 && c <= 0xFF19))
        return C_N;
    if (c == 0xAA || c == 0xB5 || c == 0xBA || (c >= 0xC0 && c <= 0x2AF && c != 0xD7 && c != 0xF7) ||
        c == 0x386 || (c >= 0x388 && c <= 0x3FF && c != 0x38B && c != 0x38D && c != 0x3A2 && c != 0x3F6) ||
        (c >= 0x400 && c <= 0x481) || (c >= 0x48A && c <= 0x52F) || (c >= 0x5D0 && c <= 0x5EA) ||
        (c >= 0x620 && c <= 0x64A) || (c >= 0x3041 && c <= 0x3096) || (c >= 0x30A1 && c <= 0x30FA) ||
        (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0xAC00 && c <= 0xD7A3))
        return C_L;
    return C_O;
}

static int class_at(const uint8_t *s, size_t n, size_t i, size_t *len)
{
    uint32_t cp;
    *len = utf8_at(s, n, i, &cp);
    return cp_class(cp);
}

/* End of the run of class c starting at k. */
static size_t run_end(const uint8_t *s, size_t n, size_t k, int c)
{
    size_t len;
    while (k < n && class_at(s, n, k, &len) == c) k += len;
    return k;
}

size_t bpe_pretokenize_next(const uint8_t *s, size_t n, size_t i)
{
    size_t len0, len1;
    if (s[i] == '\'' && i + 1 < n) { /* 's|'t|'re|'ve|'m|'ll|'d */
        uint8_t a = s[i + 1];
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if (i + 2 < n && ((a == 'r' && s[i + 2] == 'e') || (a == 'v' && s[i + 2] == 'e') ||
                          (a == 'l' && s[i + 2] == 'l')))
            return i + 3;
    }
    if (s[i] == ' ' && i + 1 < n) { /*  ?\p{L}+ |  ?\p{N}+ |  ?[^\s\p{L}\p{N}]+ */
        int c1 = class_at(s, n, i + 1, &len1);
        if (c1 != C_S) return run_end(s, n, i + 1 + len1, c1);
    }
    int c0 = class_at(s, n, i, &len0);
    if (c0 != C_S) return run_end(s, n, i + len0, c0);
    /* \s+(?!\S) | \s+ : a run of whitespace; before a non-space, its last
     * character is left for the next word (unless the run is that one character) */
    size_t j = i, last = i, len;
    while (j < n && class_at(s, n, j, &len) == C_S) { last = j; j += len; }
    if (j == n || last == i) return j;
    return last;
}

/* ---- GPT-2's bytes_to_unicode ---------------------------------------------- */

uint32_t bpe_byte_to_cp(uint8_t v)
{
    if ((v >= '!' && v <= '~') || (v >= 0xA1 && v <= 0xAC) || (v >= 0xAE)) return v;
    /* the others, in byte order, become 256, 257, ... */
    uint32_t k = 0;
    for (unsigned b = 0; b < v; b++)
        if (!((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE))) k++;
    return 256 + k;
}

/* ---- hash maps ------------------------------------------------------------- */

uint64_t bpe_hash_bytes(const uint8_t *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) { h ^= s[i]; h *= 0x100000001b3ull; }
    return h ^ (h >> 29);
}

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void bpe_pmap_init(bpe_pmap *m, size_t hint)
{
    m->cap = 16;
    while (m->cap < hint * 2) m->cap *= 2;
    m->key = xmalloc(m->cap * sizeof *m->key);
    m->val = xmalloc(m->cap * sizeof *m->val);
    for (size_t i = 0; i < m->cap; i++) m->val[i] = -1;
    m->n = 0;
}

void bpe_pmap_free(bpe_pmap *m)
{
    free(m->key);
    free(m->val);
    memset(m, 0, sizeof *m);
}

int bpe_pmap_get(const bpe_pmap *m, uint64_t key)
{
    if (!m->cap) return -1;
    for (size_t i = mix64(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (m->val[i] < 0) return -1;
        if (m->key[i] == key) return m->val[i];
    }
}

int *bpe_pmap_slot(bpe_pmap *m, uint64_t key)
{
    if ((m->n + 1) * 2 > m->cap) {
        bpe_pmap old = *m;
        bpe_pmap_init(m, old.cap);
        for (size_t i = 0; i < old.cap; i++)
            if (old.val[i] >= 0) *bpe_pmap_slot(m, old.key[i]) = old.val[i];
        bpe_pmap_free(&old);
    }
    size_t i = mix64(key) & (m->cap - 1);
    for (; m->val[i] >= 0; i = (i + 1) & (m->cap - 1))
        if (m->key[i] == key) return &m->val[i];
    m->key[i] = key;
    m->n++;
    return &m->val[i]; /* -1 until the caller sets it; the slot is taken either way */
}

/* ---- the tokenizer object -------------------------------------------------- */

bpe *bpe_alloc(int n)
{
    bpe *b = xcalloc(1, sizeof *b);
    b->n_vocab = n;
    b->tok = xcalloc((size_t)n, sizeof *b->tok);
    b->tok_len = xcalloc((size_t)n, sizeof *b->tok_len);
    b->is_special = xcalloc((size_t)n, 1);
    b->eot = -1;
    return b;
}

void bpe_free(bpe *b)
{
    if (!b) return;
    for (int i = 0; i < b->n_vocab; i++) free(b->tok[i]);
    free(b->tok); free(b->tok_len); free(b->is_special);
    free(b->merge_a); free(b->merge_b); free(b->merge_out);
    bpe_pmap_free(&b->rank);
    free(b->index);
    free(b->special);
    free(b);
}

int bpe_finish(bpe *b, const char *what, char *err)
{
    b->index_cap = 16;
    while (b->index_cap < (size_t)b->n_vocab * 2) b->index_cap *= 2;
    b->index = xcalloc(b->index_cap, sizeof *b->index);
    for (int id = 0; id < b->n_vocab; id++) {
        size_t i = bpe_hash_bytes(b->tok[id], b->tok_len[id]) & (b->index_cap - 1);
        for (; b->index[i]; i = (i + 1) & (b->index_cap - 1)) {
            int o = (int)b->index[i] - 1;
            if (b->tok_len[o] == b->tok_len[id] && !memcmp(b->tok[o], b->tok[id], b->tok_len[id])) {
                if (b->is_special[o] || b->is_special[id]) break; /* a special may repeat a vocab entry */
                return seterr(err, "%s: ids %d and %d are the same bytes", what, o, id);
            }
        }
        if (!b->index[i]) b->index[i] = (uint32_t)id + 1;
    }
    bpe_pmap_init(&b->rank, (size_t)b->n_merges);
    for (int r = 0; r < b->n_merges; r++) {
        int *v = bpe_pmap_slot(&b->rank, bpe_pair_key(b->merge_a[r], b->merge_b[r]));
        if (*v < 0) *v = r; /* a repeated merge keeps its first rank */
    }
    for (int v = 0; v < 256; v++) b->byte_id[v] = bpe_token_id(b, (const uint8_t *)&(uint8_t){ (uint8_t)v }, 1);
    b->n_special = 0;
    b->special = xmalloc(((size_t)b->n_vocab + 1) * sizeof *b->special);
    for (int id = 0; id < b->n_vocab; id++)
        if (b->is_special[id] && b->tok_len[id] > 0) b->special[b->n_special++] = id;
    /* longest first, so a special that starts another does not hide it */
    for (int i = 1; i < b->n_special; i++)
        for (int j = i; j > 0 && b->tok_len[b->special[j]] > b->tok_len[b->special[j - 1]]; j--) {
            int t = b->special[j]; b->special[j] = b->special[j - 1]; b->special[j - 1] = t;
        }
    b->eot = -1;
    for (int i = 0; i < b->n_special; i++)
        if (b->tok_len[b->special[i]] == strlen(BPE_EOT) && !memcmp(b->tok[b->special[i]], BPE_EOT, strlen(BPE_EOT)))
            b->eot = b->special[i];
    return 0;
}

int bpe_vocab_size(const bpe *b) { return b->n_vocab; }
int bpe_n_merges(const bpe *b) { return b->n_merges; }
int bpe_eot_id(const bpe *b) { return b->eot; }

const uint8_t *bpe_token(const bpe *b, int id, size_t *len)
{
    if (id < 0 || id >= b->n_vocab) return NULL;
    *len = b->tok_len[id];
    return b->tok[id];
}

int bpe_token_id(const bpe *b, const uint8_t *s, size_t n)
{
    if (!b->index) return -1;
    for (size_t i = bpe_hash_bytes(s, n) & (b->index_cap - 1); b->index[i]; i = (i + 1) & (b->index_cap - 1)) {
        int id = (int)b->index[i] - 1;
        if (b->tok_len[id] == n && !memcmp(b->tok[id], s, n)) return id;
    }
    return -1;
}

/* ---- encoding -------------------------------------------------------------- */

typedef struct { int rank, pos; } cand;

typedef struct {
    int *id, *prev, *next;
    cand *heap;
    size_t cap, n_heap;
} word_buf;

static int cand_less(cand a, cand b) { return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos); }

static void heap_push(word_buf *w, cand c)
{
    size_t i = w->n_heap++;
    for (; i > 0 && cand_less(c, w->heap[(i - 1) / 2]); i = (i - 1) / 2) w->heap[i] = w->heap[(i - 1) / 2];
    w->heap[i] = c;
}

static cand heap_pop(word_buf *w)
{
    cand top = w->heap[0], last = w->heap[--w->n_heap];
    size_t i = 0, n = w->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && cand_less(w->heap[c + 1], w->heap[c])) c++;
        if (!cand_less(w->heap[c], last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

static void push_pair(const bpe *b, word_buf *w, int pos)
{
    if (pos < 0) return; /* no left neighbour */
    int q = w->next[pos];
    if (q < 0) return;
    int r = bpe_pmap_get(&b->rank, bpe_pair_key(w->id[pos], w->id[q]));
    if (r >= 0) heap_push(w, (cand){ r, pos });
}

/* Merges one word s[0..n) and appends its ids to out (room for n more). */
static size_t encode_word(const bpe *b, word_buf *w, const uint8_t *s, size_t n, int *out)
{
    if (b->ignore_merges) {
        int id = bpe_token_id(b, s, n);
        if (id >= 0) { out[0] = id; return 1; }
    }
    if (n > w->cap) {
        w->cap = n;
        w->id = realloc(w->id, n * sizeof *w->id);
        w->prev = realloc(w->prev, n * sizeof *w->prev);
        w->next = realloc(w->next, n * sizeof *w->next);
        w->heap = realloc(w->heap, 3 * n * sizeof *w->heap); /* n-1 pairs, then 2 per merge */
        if (!w->id || !w->prev || !w->next || !w->heap) { fprintf(stderr, "bpe: out of memory\n"); abort(); }
    }
    w->n_heap = 0;
    for (size_t i = 0; i < n; i++) {
        w->id[i] = b->byte_id[s[i]];
        w->prev[i] = (int)i - 1;
        w->next[i] = i + 1 < n ? (int)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++) push_pair(b, w, (int)i);
    while (w->n_heap) {
        cand c = heap_pop(w);
        int p = c.pos, q = w->next[p];
        /* stale: the left symbol was merged away or changed, or its right neighbour changed */
        if (w->id[p] < 0 || q < 0 || w->id[p] != b->merge_a[c.rank] || w->id[q] != b->merge_b[c.rank]) continue;
        w->id[p] = b->merge_out[c.rank];
        w->id[q] = -1;
        w->next[p] = w->next[q];
        if (w->next[q] >= 0) w->prev[w->next[q]] = p;
        push_pair(b, w, w->prev[p]);
        push_pair(b, w, p);
    }
    size_t k = 0;
    for (int i = 0; i >= 0; i = w->next[i]) out[k++] = w->id[i];
    return k;
}

/* Length of the special token at s[i], setting *id, or 0. */
static size_t special_at(const bpe *b, const uint8_t *s, size_t n, size_t i, int *id)
{
    for (int k = 0; k < b->n_special; k++) {
        int t = b->special[k];
        size_t len = b->tok_len[t];
        if (len <= n - i && s[i] == b->tok[t][0] && !memcmp(s + i, b->tok[t], len)) { *id = t; return len; }
    }
    return 0;
}

size_t bpe_encode(const bpe *b, const uint8_t *s, size_t n, int **out)
{
    *out = NULL;
    if (!n) return 0;
    int *ids = xmalloc(n * sizeof *ids);
    word_buf w = { 0 };
    size_t k = 0, i = 0, start = 0;
    uint8_t first[256] = { 0 };
    for (int j = 0; j < b->n_special; j++) first[b->tok[b->special[j]][0]] = 1;
    while (start < n) {
        /* the next special token cuts the text; the words before it are encoded alone */
        size_t end = start, slen = 0;
        int sid = -1;
        for (i = start; i < n; i++)
            if (first[s[i]] && (slen = special_at(b, s, n, i, &sid))) break;
        end = i;
        for (size_t p = start; p < end;) {
            size_t q = bpe_pretokenize_next(s, end, p);
            k += encode_word(b, &w, s + p, q - p, ids + k);
            p = q;
        }
        if (slen) ids[k++] = sid;
        start = end + slen;
    }
    free(w.id); free(w.prev); free(w.next); free(w.heap);
    *out = ids;
    return k;
}

uint8_t *bpe_decode(const bpe *b, const int *ids, size_t n, size_t *len, char *err)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= b->n_vocab)
            return seterr(err, "token %zu: id %d out of range 0..%d", i, ids[i], b->n_vocab - 1), NULL;
        total += b->tok_len[ids[i]];
    }
    uint8_t *o = xmalloc(total + 1), *p = o;
    for (size_t i = 0; i < n; i++) {
        memcpy(p, b->tok[ids[i]], b->tok_len[ids[i]]);
        p += b->tok_len[ids[i]];
    }
    *p = 0;
    *len = total;
    return o;
}
