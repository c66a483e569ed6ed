/* sched_gen.c — the built-in schedule generators: GPipe, 1F1B (PipeDream-Flush),
 * Megatron-style interleaved 1F1B, ZB-H1 (Zero Bubble) and ZB-V (the zero-bubble
 * V schedule, on the V placement). Each produces per-stage
 * action lists only; validity is checked by sched_check, timing by sched_simulate.
 * Backwards (and weight gradients) always run in micro-batch order on each chunk,
 * so weight gradients accumulate in micro-batch order. */
#include <stdlib.h>
#include <string.h>

#include "scheduler/sched_int.h"

/* The one table of schedule kinds: names and the constraints each generator has on
 * P, M and v. The topology schema, the CLI and the generators all look names up here. */
const sched_kind_info sched_kind_table[SCHED_N_KINDS] = {
    [SCHED_KIND_GPIPE] = { "gpipe", 1, 1, 0, 0, SCHED_PLACE_LOOP },
    [SCHED_KIND_1F1B] = { "1f1b", 1, 1, 1, 0, SCHED_PLACE_LOOP },
    [SCHED_KIND_INTERLEAVED] = { "interleaved", 2, 256, 0, 1, SCHED_PLACE_LOOP },
    [SCHED_KIND_ZBH1] = { "zb-h1", 1, 1, 1, 0, SCHED_PLACE_LOOP },
    [SCHED_KIND_ZBV] = { "zb-v", 2, 2, 0, 0, SCHED_PLACE_V },
    [SCHED_KIND_2BW] = { "2bw", 1, 1, 1, 0, SCHED_PLACE_LOOP },
};
const char *const sched_kinds[SCHED_N_KINDS + 1] = { "gpipe", "1f1b", "interleaved", "zb-h1", "zb-v", "2bw", NULL };

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

/* ZB-V (Qi et al., Pipeline Parallelism with Controllable Memory, section 6; the
 * order PyTorch's ScheduleZBVZeroBubble also produces). Stage s holds virtual
 * stages s (chunk 0, the first leg of the V) and 2P-1-s
 * (chunk 1, the way back). With N = max(M, 2P-1) micro-batches it runs:
 *   warm-up  2(P-s)-1 F on chunk 0; s times F chunk 1, F chunk 0; P-s times
 *            F, B, W on chunk 1 (on stage 0, chunk 1 is the loss: its B follows
 *            its F at once);
 *   steady   F, B, W on chunk 0 (F while any is left), then F, B, W on chunk 1,
 *            until both chunks have run every forward;
 *   cool-down s times B chunk 0, B chunk 1 (their W deferred), then P-s times
 *            B and the oldest deferred W on chunk 0, then the deferred W of chunk
 *            1 and chunk 0: the W fill the bubbles the backwards leave.
 * Actions of micro-batches >= M are then left out (dependencies never cross
 * micro-batches, so what remains still plays). Every (micro-batch, chunk) has
 * its B and W in micro-batch order, so weight gradients accumulate in order. */
typedef struct { int f, b, w; } zbv_count;

static void zbv_put(gen *g, int op, int mb, int chunk, int M)
{
    if (mb < M) put(g, op, mb, chunk);
}

static void gen_zbv(gen *g, int P, int M)
{
    int s = g->stage, N = M > 2 * P - 1 ? M : 2 * P - 1;
    zbv_count c[2] = { { 0, 0, 0 }, { 0, 0, 0 } };
#define F(ch) zbv_put(g, SCHED_F, c[ch].f++, ch, M)
#define B(ch) zbv_put(g, SCHED_B, c[ch].b++, ch, M)
#define W(ch) zbv_put(g, SCHED_W, c[ch].w++, ch, M)
    for (int i = 0; i < 2 * (P - s) - 1; i++) F(0);
    for (int i = 0; i < s; i++) { F(1); F(0); }
    for (int i = 0; i < P - s; i++) { F(1); B(1); W(1); }
    while (c[1].f < c[0].f || c[0].f < N) {
        if (c[0].f < N) F(0);
        B(0); W(0);
        F(1); B(1); W(1);
    }
    for (int i = 0; i < s; i++) { B(0); B(1); }
    for (int i = 0; i < P - s; i++) { B(0); W(0); }
    while (c[1].w < c[1].b) W(1);
    while (c[0].w < c[0].b) W(0);
#undef F
#undef B
#undef W
}

/* PipeDream-2BW's steady state (sched.h, sched_2bw_step): 1F1B whose warm-up
 * forwards are the previous step's last ones. Stage s runs F(w+i), BW(i) for
 * i = 0..M-1 with w = P-1-s; a forward index >= M is micro-batch w+i-M of the
 * next step (next = 1). Needs M >= P so that the next step's F(j) comes after
 * this step's BW(j) (their buffers are reused). */
static void gen_2bw(gen *g, int P, int M)
{
    int w = P - 1 - g->stage;
    for (int i = 0; i < M; i++) {
        int f = w + i;
        sched_action a = { (uint32_t)(f % M), 0, SCHED_F, (uint8_t)(f >= M) };
        if (sched_append(g->s, g->stage, a)) g->fail = 1;
        put(g, SCHED_BW, i, 0);
    }
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
                                 "\"interleaved\" and \"zb-v\" have virtual stages)", k->name, v), SCHED_FIT_CHUNKS;
    if (k->min_chunks == k->max_chunks && v != k->min_chunks)
        return sched_seterr(err, "%s: takes exactly %d chunks per stage%s, got %d", k->name, k->min_chunks,
                            k->placement == SCHED_PLACE_V ? " (stage s holds virtual stages s and 2P-1-s)" : "",
                            v), SCHED_FIT_CHUNKS;
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
    size_t per = (size_t)M * (size_t)v * (id == SCHED_KIND_ZBH1 || id == SCHED_KIND_ZBV ? 3 : 2);
    if (!s || reserve(s, per)) {
        sched_free(s);
        sched_seterr(err, "%s: out of memory for %d stages x %d micro-batches", kind, P, M);
        return NULL;
    }
    snprintf(s->kind, sizeof s->kind, "%s", kind);
    s->placement = sched_kind_table[id].placement;
    gen g = { s, 0, 0 };
    for (g.stage = 0; g.stage < P; g.stage++) {
        if (id == SCHED_KIND_GPIPE) gen_gpipe(&g, P, M);
        else if (id == SCHED_KIND_1F1B) gen_1f1b(&g, P, M);
        else if (id == SCHED_KIND_INTERLEAVED) gen_interleaved(&g, P, M, v);
        else if (id == SCHED_KIND_ZBH1) gen_zbh1(&g, P, M);
        else if (id == SCHED_KIND_2BW) gen_2bw(&g, P, M);
        else gen_zbv(&g, P, M);
    }
    if (g.fail) {
        sched_free(s);
        sched_seterr(err, "%s: out of memory", kind);
        return NULL;
    }
    return s;
}
