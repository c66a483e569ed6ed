/* sched_gen.c — the built-in schedule generators: GPipe, 1F1B (PipeDream-Flush),
 * Megatron-style interleaved 1F1B and ZB-H1 (Zero Bubble). Each produces per-stage
 * action lists only; validity is checked by sched_check, timing by sched_simulate.
 * Backwards (and weight gradients) always run in micro-batch order on each chunk,
 * so weight gradients accumulate in micro-batch order. */
#include <stdlib.h>
#include <string.h>

#include "scheduler/sched_int.h"

/* The one table of schedule kinds: names and the constraints each generator has on
 * P, M and v. The topology schema, the CLI and the generators all look names up here. */
const sched_kind_info sched_kind_table[SCHED_N_KINDS] = {
    [SCHED_KIND_GPIPE] = { "gpipe", 1, 1, 0, 0 },
    [SCHED_KIND_1F1B] = { "1f1b", 1, 1, 1, 0 },
    [SCHED_KIND_INTERLEAVED] = { "interleaved", 2, 256, 0, 1 },
    [SCHED_KIND_ZBH1] = { "zb-h1", 1, 1, 1, 0 },
};
const char *const sched_kinds[SCHED_N_KINDS + 1] = { "gpipe", "1f1b", "interleaved", "zb-h1", NULL };

int sched_kind_find(const char *name)
{
    for (int i = 0; name && i < SCHED_N_KINDS; i++)
        if (!strcmp(name, sched_kind_table[i].name)) return i;
    return -1;
}

char *sched_kind_names(char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < SCHED_N_KINDS && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%s", i ? (i == SCHED_N_KINDS - 1 ? " or " : ", ") : "",
                                sched_kind_table[i].name);
    return buf;
}

typedef struct {
    sched_schedule *s;
    int stage;
    int fail;
} gen;

static void put(gen *g, int op, int mb, int chunk)
{
    sched_action a = { (uint32_t)mb, (uint16_t)chunk, (uint8_t)op, 0 };
    if (sched_append(g->s, g->stage, a)) g->fail = 1;
}

/* Reserves exactly n actions for every stage (generators know their counts). */
static int reserve(sched_schedule *s, size_t n)
{
    for (int st = 0; st < s->n_stages; st++) {
        s->act[st] = malloc(n * sizeof(sched_action));
        if (!s->act[st]) return -1;
        s->cap[st] = n;
    }
    return 0;
}

/* GPipe: all forwards, then all fused backwards, in micro-batch order. */
static void gen_gpipe(gen *g, int P, int M)
{
    (void)P;
    for (int m = 0; m < M; m++) put(g, SCHED_F, m, 0);
    for (int m = 0; m < M; m++) put(g, SCHED_BW, m, 0);
}

/* 1F1B: P-1-s warm-up forwards, then one forward one backward, then cool-down. */
static void gen_1f1b(gen *g, int P, int M)
{
    int warm = P - 1 - g->stage;
    if (warm > M) warm = M;
    for (int m = 0; m < warm; m++) put(g, SCHED_F, m, 0);
    for (int i = 0; i < M - warm; i++) {
        put(g, SCHED_F, warm + i, 0);
        put(g, SCHED_BW, i, 0);
    }
    for (int i = M - warm; i < M; i++) put(g, SCHED_BW, i, 0);
}

/* Megatron-LM's interleaved schedule (forward_backward_pipelining_with_interleaving):
 * the k-th forward of a stage runs chunk (k mod P*v) / P on micro-batch
 * (k / (P*v)) * P + k mod P; backwards visit chunks in reverse. Warm-up is
 * (P-s-1)*2 + (v-1)*P forwards, or everything when M == P. */
static void gen_interleaved(gen *g, int P, int M, int v)
{
    int total = M * v, group = P * v, s = g->stage;
    int warm = (M == P) ? total : (P - s - 1) * 2 + (v - 1) * P;
    if (warm > total) warm = total;
#define MB(k) (((k) / group) * P + (k) % P)
#define FCH(k) (((k) % group) / P)
#define BCH(k) (v - 1 - ((k) % group) / P)
    for (int k = 0; k < warm; k++) put(g, SCHED_F, MB(k), FCH(k));
    for (int i = 0; i < total - warm; i++) {
        int k = warm + i;
        put(g, SCHED_F, MB(k), FCH(k));
        put(g, SCHED_BW, MB(i), BCH(i));
    }
    for (int i = total - warm; i < total; i++) put(g, SCHED_BW, MB(i), BCH(i));
#undef MB
#undef FCH
#undef BCH
}

/* ZB-H1 (Qi et al. 2024, as in their DeepSpeed/Megatron code with exact
 * semantics): stage s runs P-s-1 warm-up forwards, then s rounds of F,B with the
 * weight pass deferred, then F,B,W rounds, then B,W for the remaining backwards and
 * finally the s deferred W passes, which fill the cool-down bubble. Every stage
 * keeps at most P micro-batches in flight (F to W): the peak of 1F1B's first stage. */
static void gen_zbh1(gen *g, int P, int M)
{
    int s = g->stage, f = 0, b = 0, w = 0;
    int warm = P - s - 1;
    if (warm > M) warm = M;
    for (; f < warm; f++) put(g, SCHED_F, f, 0);
    for (int r = 0; r < s && f < M; r++) {
        put(g, SCHED_F, f++, 0);
        put(g, SCHED_B, b++, 0);
    }
    while (f < M) {
        put(g, SCHED_F, f++, 0);
        put(g, SCHED_B, b++, 0);
        put(g, SCHED_W, w++, 0);
    }
    while (b < M) {
        put(g, SCHED_B, b++, 0);
        put(g, SCHED_W, w++, 0);
    }
    while (w < M) put(g, SCHED_W, w++, 0);
}

int sched_kind_fit(int kind, int P, int M, int v, char *err)
{
    if (kind < 0 || kind >= SCHED_N_KINDS) return sched_seterr(err, "unknown schedule kind %d", kind), SCHED_FIT_KIND;
    const sched_kind_info *k = &sched_kind_table[kind];
    if (P < 1) return sched_seterr(err, "%s: the number of stages must be >= 1, got %d", k->name, P), SCHED_FIT_STAGES;
    if (M < 1)
        return sched_seterr(err, "%s: the number of micro-batches must be >= 1, got %d", k->name, M), SCHED_FIT_MICRO;
    if (P > (1 << 20) || M > (1 << 22))
        return sched_seterr(err, "%s: %d stages x %d micro-batches is too large (at most 2^20 "
                                 "stages and 2^22 micro-batches)", k->name, P, M), SCHED_FIT_STAGES;
    if (k->max_chunks == 1 && v != 1)
        return sched_seterr(err, "%s: takes one chunk per stage, got %d chunks (only "
                                 "\"interleaved\" has virtual stages)", k->name, v), SCHED_FIT_CHUNKS;
    if (v < k->min_chunks || v > k->max_chunks)
        return sched_seterr(err, "%s: needs %d..%d chunks per stage, got %d", k->name, k->min_chunks,
                            k->max_chunks, v), SCHED_FIT_CHUNKS;
    if (k->m_mult_p && M % P)
        return sched_seterr(err, "%s: the number of micro-batches (%d) must be a "
                                 "multiple of the number of stages (%d), as in Megatron-LM's "
                                 "interleaved schedule", k->name, M, P), SCHED_FIT_MICRO;
    if (k->m_ge_p && M < P)
        return sched_seterr(err, "%s: needs at least as many micro-batches as stages, got %d "
                                 "micro-batches for %d stages (use gpipe, or raise "
                                 "micro-batches)", k->name, M, P), SCHED_FIT_MICRO;
    return 0;
}

sched_schedule *sched_generate(const char *kind, int n_stages, int n_micro, int n_chunks,
                               char *err)
{
    int P = n_stages, M = n_micro, v = n_chunks, id = sched_kind_find(kind);
    char names[96];
    if (id < 0) {
        sched_seterr(err, "unknown schedule kind '%s': expected %s", kind ? kind : "(null)",
                     sched_kind_names(names, sizeof names));
        return NULL;
    }
    if (v < 0) { sched_seterr(err, "%s: chunks must be >= 1, got %d", kind, v); return NULL; }
    if (v == 0) v = sched_kind_table[id].min_chunks;
    if (sched_kind_fit(id, P, M, v, err)) return NULL;
    sched_schedule *s = sched_new(P, v, M);
    size_t per = (size_t)M * (size_t)v * (id == SCHED_KIND_ZBH1 ? 3 : 2);
    if (!s || reserve(s, per)) {
        sched_free(s);
        sched_seterr(err, "%s: out of memory for %d stages x %d micro-batches", kind, P, M);
        return NULL;
    }
    snprintf(s->kind, sizeof s->kind, "%s", kind);
    gen g = { s, 0, 0 };
    for (g.stage = 0; g.stage < P; g.stage++) {
        if (id == SCHED_KIND_GPIPE) gen_gpipe(&g, P, M);
        else if (id == SCHED_KIND_1F1B) gen_1f1b(&g, P, M);
        else if (id == SCHED_KIND_INTERLEAVED) gen_interleaved(&g, P, M, v);
        else gen_zbh1(&g, P, M);
    }
    if (g.fail) {
        sched_free(s);
        sched_seterr(err, "%s: out of memory", kind);
        return NULL;
    }
    return s;
}
