/* bpe_train.c — learning byte-level BPE merges from a corpus (see bpe.h for the
 * vocabulary layout and the tie rule). The corpus becomes a table of distinct
 * words with counts; pair counts are kept incrementally: merging (A, B) into C
 * visits only the words listed for (A, B), subtracts their old pairs and adds
 * their new ones. Only pairs holding C can grow, so only they are pushed onto the
 * lazy max-heap; an entry whose count is out of date is re-pushed when popped. */
#include "model/bpe_int.h"

typedef struct {
    const uint8_t *s;
    uint32_t len;
    int64_t count;
    int *sym; /* current symbols (ids) */
    int n_sym;
    int merged; /* the last merge (its new id) that rewrote this word: a pair's
                 * word list may name a word more than once (count_pairs keeps
                 * out only repeats in a row), and each merge rewrites it once */
} word;

typedef struct { int *w; int n, cap; } wlist;

typedef struct {
    word *words;
    int n_words, cap_words;
    uint32_t *windex; /* bytes -> word + 1 */
    size_t windex_cap;
    /* tokens learned so far */
    uint8_t **tok;
    uint32_t *tok_len;
    int n_tok;
    /* pairs */
    bpe_pmap pmap;      /* (a, b) -> pair index */
    int *pa, *pb;
    int64_t *pcount;
    wlist *where;
    char *dirty;
    int n_pairs, cap_pairs;
    /* heap of (count, pair) */
    struct hent { int64_t count; int pair; } *heap;
    size_t n_heap, cap_heap;
} trainer;

static void add_word(trainer *t, const uint8_t *s, size_t len)
{
    uint64_t h = bpe_hash_bytes(s, len);
    size_t i = h & (t->windex_cap - 1);
    for (; t->windex[i]; i = (i + 1) & (t->windex_cap - 1)) {
        word *w = &t->words[t->windex[i] - 1];
        if (w->len == len && !memcmp(w->s, s, len)) { w->count++; return; }
    }
    if (t->n_words == t->cap_words) {
        t->cap_words = t->cap_words ? 2 * t->cap_words : 1024;
        t->words = realloc(t->words, (size_t)t->cap_words * sizeof *t->words);
        if (!t->words) { fprintf(stderr, "bpe_train: out of memory\n"); abort(); }
    }
    t->words[t->n_words] = (word){ s, (uint32_t)len, 1, NULL, 0, -1 };
    t->windex[i] = (uint32_t)++t->n_words;
    if ((size_t)t->n_words * 2 > t->windex_cap) { /* grow and re-insert */
        free(t->windex);
        t->windex_cap *= 2;
        t->windex = xcalloc(t->windex_cap, sizeof *t->windex);
        for (int k = 0; k < t->n_words; k++) {
            size_t j = bpe_hash_bytes(t->words[k].s, t->words[k].len) & (t->windex_cap - 1);
            while (t->windex[j]) j = (j + 1) & (t->windex_cap - 1);
            t->windex[j] = (uint32_t)k + 1;
        }
    }
}

static void *grow(void *p, size_t n, size_t size)
{
    p = realloc(p, n * size);
    if (!p) { fprintf(stderr, "bpe_train: out of memory\n"); abort(); }
    return p;
}

static int pair_index(trainer *t, int a, int b)
{
    int *v = bpe_pmap_slot(&t->pmap, bpe_pair_key(a, b));
    if (*v >= 0) return *v;
    if (t->n_pairs == t->cap_pairs) {
        t->cap_pairs = t->cap_pairs ? 2 * t->cap_pairs : 4096;
        t->pa = grow(t->pa, (size_t)t->cap_pairs, sizeof *t->pa);
        t->pb = grow(t->pb, (size_t)t->cap_pairs, sizeof *t->pb);
        t->pcount = grow(t->pcount, (size_t)t->cap_pairs, sizeof *t->pcount);
        t->where = grow(t->where, (size_t)t->cap_pairs, sizeof *t->where);
        t->dirty = grow(t->dirty, (size_t)t->cap_pairs, 1);
    }
    int p = t->n_pairs++;
    t->pa[p] = a; t->pb[p] = b; t->pcount[p] = 0;
    t->where[p] = (wlist){ NULL, 0, 0 };
    t->dirty[p] = 0;
    *v = p;
    return p;
}

/* Adds sign * count of word wi for each of its adjacent pairs. */
static void count_pairs(trainer *t, int wi, int sign, int new_id, int *dirty, int *n_dirty)
{
    word *w = &t->words[wi];
    for (int i = 0; i + 1 < w->n_sym; i++) {
        int p = pair_index(t, w->sym[i], w->sym[i + 1]);
        t->pcount[p] += sign * w->count;
        if (sign < 0) continue;
        wlist *l = &t->where[p];
        if (!l->n || l->w[l->n - 1] != wi) {
            if (l->n == l->cap) { l->cap = l->cap ? 2 * l->cap : 4; l->w = grow(l->w, (size_t)l->cap, sizeof *l->w); }
            l->w[l->n++] = wi;
        }
        if ((w->sym[i] == new_id || w->sym[i + 1] == new_id) && !t->dirty[p]) {
            t->dirty[p] = 1;
            dirty[(*n_dirty)++] = p;
        }
    }
}

/* Is pair x better than pair y at equal count: merged bytes smaller, then left shorter. */
static int ties_before(const trainer *t, int x, int y)
{
    const uint8_t *xa = t->tok[t->pa[x]], *xb = t->tok[t->pb[x]], *ya = t->tok[t->pa[y]], *yb = t->tok[t->pb[y]];
    size_t xla = t->tok_len[t->pa[x]], xl = xla + t->tok_len[t->pb[x]];
    size_t yla = t->tok_len[t->pa[y]], yl = yla + t->tok_len[t->pb[y]];
    for (size_t k = 0; k < xl && k < yl; k++) {
        uint8_t cx = k < xla ? xa[k] : xb[k - xla], cy = k < yla ? ya[k] : yb[k - yla];
        if (cx != cy) return cx < cy;
    }
    if (xl != yl) return xl < yl;
    return xla < yla;
}

static int hent_before(const trainer *t, struct hent x, struct hent y)
{
    if (x.count != y.count) return x.count > y.count;
    return x.pair != y.pair && ties_before(t, x.pair, y.pair);
}

static void hpush(trainer *t, int p)
{
    if (t->n_heap == t->cap_heap) {
        t->cap_heap = t->cap_heap ? 2 * t->cap_heap : 4096;
        t->heap = grow(t->heap, t->cap_heap, sizeof *t->heap);
    }
    struct hent e = { t->pcount[p], p };
    size_t i = t->n_heap++;
    for (; i > 0 && hent_before(t, e, t->heap[(i - 1) / 2]); i = (i - 1) / 2) t->heap[i] = t->heap[(i - 1) / 2];
    t->heap[i] = e;
}

static struct hent hpop(trainer *t)
{
    struct hent top = t->heap[0], last = t->heap[--t->n_heap];
    size_t i = 0, n = t->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && hent_before(t, t->heap[c + 1], t->heap[c])) c++;
        if (!hent_before(t, t->heap[c], last)) break;
        t->heap[i] = t->heap[c];
        i = c;
    }
    if (n) t->heap[i] = last;
    return top;
}

/* Replaces every (a, b) in word wi by c, left to right. */
static void merge_word(word *w, int a, int b, int c)
{
    int k = 0;
    for (int i = 0; i < w->n_sym; i++) {
        if (i + 1 < w->n_sym && w->sym[i] == a && w->sym[i + 1] == b) { w->sym[k++] = c; i++; }
        else w->sym[k++] = w->sym[i];
    }
    w->n_sym = k;
}

/* Cuts the corpus into words (skipping "<|endoftext|>") and counts them. */
static void read_words(trainer *t, const uint8_t *text, size_t n)
{
    size_t el = strlen(BPE_EOT);
    for (size_t start = 0; start < n;) {
        size_t end = start;
        while (end < n && !(text[end] == '<' && n - end >= el && !memcmp(text + end, BPE_EOT, el))) end++;
        for (size_t p = start; p < end;) {
            size_t q = bpe_pretokenize_next(text, end, p);
            add_word(t, text + p, q - p);
            p = q;
        }
        start = end < n ? end + el : n;
    }
}

bpe *bpe_train(const uint8_t *text, size_t n, int vocab_size, char *err)
{
    if (vocab_size < 257 || vocab_size > (1 << 24))
        return seterr(err, "vocab_size %d out of range: needs 256 byte tokens + 1 special (\"%s\"), so 257..%d",
                      vocab_size, BPE_EOT, 1 << 24), NULL;
    trainer t = { 0 };
    t.windex_cap = 1024;
    t.windex = xcalloc(t.windex_cap, sizeof *t.windex);
    read_words(&t, text, n);
    int target = vocab_size - 1, *ma = xmalloc((size_t)target * sizeof(int)), *mb = xmalloc((size_t)target * sizeof(int));
    t.tok = xmalloc((size_t)target * sizeof *t.tok);
    t.tok_len = xmalloc((size_t)target * sizeof *t.tok_len);
    for (int v = 0; v < 256; v++) {
        t.tok[v] = xmalloc(1);
        t.tok[v][0] = (uint8_t)v;
        t.tok_len[v] = 1;
    }
    t.n_tok = 256;
    bpe_pmap_init(&t.pmap, 4096);
    int *dirty = NULL, n_dirty = 0, cap_dirty = 0;
    for (int wi = 0; wi < t.n_words; wi++) {
        word *w = &t.words[wi];
        w->sym = xmalloc(w->len * sizeof *w->sym);
        for (uint32_t k = 0; k < w->len; k++) w->sym[k] = w->s[k];
        w->n_sym = (int)w->len;
        if (cap_dirty < t.n_pairs + w->n_sym) { cap_dirty = 2 * (t.n_pairs + w->n_sym); dirty = grow(dirty, (size_t)cap_dirty, sizeof *dirty); }
        count_pairs(&t, wi, +1, -2, dirty, &n_dirty);
    }
    for (int p = 0; p < t.n_pairs; p++) if (t.pcount[p] > 0) hpush(&t, p);
    while (t.n_tok < target && t.n_heap) {
        struct hent e = hpop(&t);
        int p = e.pair;
        if (e.count != t.pcount[p]) { if (t.pcount[p] > 0) hpush(&t, p); continue; }
        if (e.count < 2) break;
        int a = t.pa[p], b = t.pb[p], c = t.n_tok++;
        t.tok_len[c] = t.tok_len[a] + t.tok_len[b];
        t.tok[c] = xmalloc(t.tok_len[c]);
        memcpy(t.tok[c], t.tok[a], t.tok_len[a]);
        memcpy(t.tok[c] + t.tok_len[a], t.tok[b], t.tok_len[b]);
        ma[c - 256] = a;
        mb[c - 256] = b;
        wlist l = t.where[p];
        t.where[p] = (wlist){ NULL, 0, 0 };
        n_dirty = 0;
        for (int k = 0; k < l.n; k++) {
            word *w = &t.words[l.w[k]];
            /* once per word: a repeat would subtract and add back the same
             * counts, and the repeats multiplied from merge to merge (a 624-byte
             * corpus of long runs took seconds: fuzz_bpe's timeout) */
            if (w->merged == c) continue;
            w->merged = c;
            if (cap_dirty < t.n_pairs + w->n_sym) { cap_dirty = 2 * (t.n_pairs + w->n_sym); dirty = grow(dirty, (size_t)cap_dirty, sizeof *dirty); }
            count_pairs(&t, l.w[k], -1, c, dirty, &n_dirty);
            merge_word(w, a, b, c);
            count_pairs(&t, l.w[k], +1, c, dirty, &n_dirty);
        }
        free(l.w);
        t.pcount[p] = 0;
        for (int k = 0; k < n_dirty; k++) {
            t.dirty[dirty[k]] = 0;
            if (t.pcount[dirty[k]] > 0) hpush(&t, dirty[k]);
        }
    }
    /* the vocabulary: bytes, merges in order, then the special token */
    int n_merges = t.n_tok - 256;
    bpe *bp = bpe_alloc(t.n_tok + 1);
    for (int i = 0; i < t.n_tok; i++) { bp->tok[i] = t.tok[i]; bp->tok_len[i] = t.tok_len[i]; }
    bp->tok[t.n_tok] = (uint8_t *)xstrdup(BPE_EOT);
    bp->tok_len[t.n_tok] = (uint32_t)strlen(BPE_EOT);
    bp->is_special[t.n_tok] = 1;
    bp->n_merges = n_merges;
    bp->merge_a = ma;
    bp->merge_b = mb;
    bp->merge_out = xmalloc((size_t)(n_merges + 1) * sizeof(int));
    for (int r = 0; r < n_merges; r++) bp->merge_out[r] = 256 + r;
    /* release the trainer */
    for (int wi = 0; wi < t.n_words; wi++) free(t.words[wi].sym);
    for (int p = 0; p < t.n_pairs; p++) free(t.where[p].w);
    free(t.words); free(t.windex); free(t.tok); free(t.tok_len);
    free(t.pa); free(t.pb); free(t.pcount); free(t.where); free(t.dirty); free(t.heap); free(dirty);
    bpe_pmap_free(&t.pmap);
    if (bpe_finish(bp, "bpe_train", err)) { bpe_free(bp); return NULL; }
    return bp;
}
