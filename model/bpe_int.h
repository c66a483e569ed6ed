/* bpe_int.h — what bpe.c, bpe_train.c and bpe_json.c share: the tokenizer's fields
 * and two small open-addressing hash maps. Not a public header. */
#ifndef MODEL_BPE_INT_H
#define MODEL_BPE_INT_H

#include "model/bpe.h"
#include "model/util.h"

/* uint64 key -> int value (pairs of ids packed as a << 32 | b). */
typedef struct {
    uint64_t *key;
    int *val; /* -1: empty slot */
    size_t cap, n;
} bpe_pmap;

void bpe_pmap_init(bpe_pmap *m, size_t hint);
void bpe_pmap_free(bpe_pmap *m);
/* Returns the value slot of key, inserting it with value -1 when absent
 * (the caller sets it). */
int *bpe_pmap_slot(bpe_pmap *m, uint64_t key);
/* The value of key, or -1. */
int bpe_pmap_get(const bpe_pmap *m, uint64_t key);

static inline uint64_t bpe_pair_key(int a, int b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }
uint64_t bpe_hash_bytes(const uint8_t *s, size_t n);

struct bpe {
    int n_vocab;
    uint8_t **tok;       /* (n_vocab) bytes of each id, owned */
    uint32_t *tok_len;   /* (n_vocab) */
    uint8_t *is_special; /* (n_vocab) 1: an added special token */
    int byte_id[256];    /* id of each single byte */
    int n_merges;
    int *merge_a, *merge_b, *merge_out; /* (n_merges) in rank order */
    bpe_pmap rank;       /* (a, b) -> rank */
    uint32_t *index;     /* bytes -> id: open addressing, id + 1, 0 empty */
    size_t index_cap;
    int ignore_merges;   /* model.ignore_merges: a word in the vocabulary is one token */
    int eot;             /* "<|endoftext|>" id or -1 */
    int n_special;
    int *special;        /* (n_special) ids, longest content first */
};

/* An empty tokenizer with room for n ids (tok[] NULL); bpe_finish completes it. */
bpe *bpe_alloc(int n);
/* Builds the bytes -> id index, the rank map and the special list once every
 * tok[] and merge is set. Returns 0, or -1 with err naming `what` when two ids
 * have the same bytes. */
int bpe_finish(bpe *b, const char *what, char *err);

#endif
