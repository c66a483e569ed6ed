/* sched.c — the schedule object (per-stage action lists), action strings, cost
 * tables and reports. Generators, files, validation, simulation and rendering
 * live in the other sched_*.c files; nothing here knows about any of them. */
#include <stdlib.h>
#include <string.h>

#include "scheduler/sched_int.h"

#define SCHED_MAX_DIM (1 << 24)

int sched_seterr(char *err, const char *fmt, ...)
{
    if (!err) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, SCHED_ERR_LEN, fmt, ap);
    va_end(ap);
    return -1;
}

sched_schedule *sched_new(int n_stages, int n_chunks, int n_micro)
{
    if (n_stages < 1 || n_chunks < 1 || n_micro < 1 || n_micro > SCHED_MAX_DIM ||
        n_chunks > 65535 || (long long)n_stages * n_chunks > SCHED_MAX_DIM)
        return NULL;
    sched_schedule *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->n_stages = n_stages;
    s->n_chunks = n_chunks;
    s->n_micro = n_micro;
    s->len = calloc((size_t)n_stages, sizeof *s->len);
    s->cap = calloc((size_t)n_stages, sizeof *s->cap);
    s->act = calloc((size_t)n_stages, sizeof *s->act);
    if (!s->len || !s->cap || !s->act) { sched_free(s); return NULL; }
    return s;
}

void sched_free(sched_schedule *s)
{
    if (!s) return;
    for (int i = 0; i < s->n_stages; i++) {
        if (s->act) free(s->act[i]);
        if (s->src_col) free(s->src_col[i]);
    }
    free(s->act);
    free(s->len);
    free(s->cap);
    free(s->src_col);
    free(s->src);
    free(s);
}

int sched_append(sched_schedule *s, int stage, sched_action a)
{
    if (!s || stage < 0 || stage >= s->n_stages) return -1;
    if (s->len[stage] == s->cap[stage]) {
        size_t nc = s->cap[stage] ? 2 * s->cap[stage] : 16;
        sched_action *p = realloc(s->act[stage], nc * sizeof *p);
        if (!p) return -1;
        s->act[stage] = p;
        s->cap[stage] = nc;
    }
    s->act[stage][s->len[stage]++] = a;
    return 0;
}

void sched_action_peers(const sched_schedule *s, int stage, sched_action a, int *from, int *to)
{
    int K = s->n_stages * s->n_chunks, k = sched_virtual_stage(s, stage, a.chunk);
    int below = k > 0 ? sched_stage_of(s, k - 1, NULL) : -1, above = k + 1 < K ? sched_stage_of(s, k + 1, NULL) : -1;
    *from = *to = -1;
    if (a.op == SCHED_F) {
        *from = below;
        *to = above;
    } else if (a.op == SCHED_B || a.op == SCHED_BW) {
        *from = above;
        *to = below;
    }
}

char *sched_note(const sched_schedule *s, char *buf, size_t n)
{
    char pre[300];
    if (!s->n_b_as_i) return NULL;
    snprintf(buf, n, "%snote: %ld backward cell(s) written \"kBm\" are followed by \"kWm\" of the same "
                     "micro-batch (PyTorch's older notation): read as the input gradient I, then W",
             sched_src_prefix(s, pre, sizeof pre), s->n_b_as_i);
    return buf;
}

static const char *op_str(int op)
{
    static const char *names[] = { "F", "B", "W", "BW" };
    return op >= 0 && op <= 3 ? names[op] : "?";
}

char *sched_action_str(sched_action a, char *buf, size_t n)
{
    if (a.chunk) snprintf(buf, n, "%s%uc%u%s", op_str(a.op), a.mb, (unsigned)a.chunk, a.next ? "n" : "");
    else snprintf(buf, n, "%s%u%s", op_str(a.op), a.mb, a.next ? "n" : "");
    return buf;
}

char *sched_action_name(sched_action a, int n_chunks, char *buf, size_t n)
{
    const char *nx = a.next ? " of the next step" : "";
    if (n_chunks > 1) snprintf(buf, n, "%s(%u, chunk %u)%s", op_str(a.op), a.mb, (unsigned)a.chunk, nx);
    else snprintf(buf, n, "%s(%u)%s", op_str(a.op), a.mb, nx);
    return buf;
}

/* Parses a decimal number of at most 9 digits at *p; advances *p. */
static int parse_uint(const char **p, long *out)
{
    const char *q = *p;
    long v = 0;
    int nd = 0;
    while (*q >= '0' && *q <= '9') {
        if (++nd > 9) return -1;
        v = v * 10 + (*q++ - '0');
    }
    if (!nd) return -1;
    *p = q;
    *out = v;
    return 0;
}

int sched_action_parse(const char *str, sched_action *a, char *err)
{
    const char *p = str;
    memset(a, 0, sizeof *a);
    if (p[0] == 'B' && p[1] == 'W') { a->op = SCHED_BW; p += 2; }
    else if (*p == 'F') { a->op = SCHED_F; p++; }
    else if (*p == 'B') { a->op = SCHED_B; p++; }
    else if (*p == 'W') { a->op = SCHED_W; p++; }
    else return sched_seterr(err, "unknown action '%s': expected F, B, W or BW followed by a "
                                  "micro-batch number (e.g. \"F3\", \"BW12c1\")", str);
    long mb, ch = 0;
    if (parse_uint(&p, &mb))
        return sched_seterr(err, "bad micro-batch index in '%s': expected a number of at most "
                                 "9 digits after '%s'", str, op_str(a->op));
    if (*p == 'c') {
        p++;
        if (parse_uint(&p, &ch) || ch > 65535)
            return sched_seterr(err, "bad chunk in '%s': expected a number 0..65535 after 'c'", str);
    }
    if (*p == 'n' && a->op == SCHED_F) { a->next = 1; p++; } /* 2bw: the next step's F */
    if (*p)
        return sched_seterr(err, "unexpected '%s' at the end of action '%s': expected "
                                 "OP MB [c CHUNK] such as \"F3\" or \"B3c1\"", p, str);
    if (mb >= SCHED_MAX_DIM)
        return sched_seterr(err, "bad micro-batch index in '%s': at most %d", str, SCHED_MAX_DIM - 1);
    a->mb = (uint32_t)mb;
    a->chunk = (uint16_t)ch;
    return 0;
}

const char *sched_src_prefix(const sched_schedule *s, char *buf, size_t n)
{
    if (s->src) snprintf(buf, n, "%s: ", s->src);
    else if (n) buf[0] = 0;
    return buf;
}

char *sched_where(const sched_schedule *s, int st, size_t i, char *buf, size_t n)
{
    char pre[300];
    sched_src_prefix(s, pre, sizeof pre);
    if (s->src_csv) {
        size_t col = s->src_col && s->src_col[st] ? s->src_col[st][i] : i;
        snprintf(buf, n, "%srow %d, column %zu", pre, st + 1, col + 1);
    } else if (s->src) {
        snprintf(buf, n, "%sstages[%d][%zu]", pre, st, i);
    } else {
        snprintf(buf, n, "stage %d, action %zu", st, i);
    }
    return buf;
}

sched_costs *sched_costs_new(int n)
{
    if (n < 1 || n > SCHED_MAX_DIM) return NULL;
    sched_costs *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->n = n;
    c->f = calloc((size_t)n, sizeof(double));
    c->b = calloc((size_t)n, sizeof(double));
    c->w = calloc((size_t)n, sizeof(double));
    c->xfer_bytes = calloc((size_t)n, sizeof(double));
    c->stash_bytes = calloc((size_t)n, sizeof(double));
    c->f_tmp_bytes = calloc((size_t)n, sizeof(double));
    c->b_bytes = calloc((size_t)n, sizeof(double));
    c->bw_bytes = calloc((size_t)n, sizeof(double));
    c->weight_bytes = calloc((size_t)n, sizeof(double));
    if (!c->f || !c->b || !c->w || !c->xfer_bytes || !c->stash_bytes || !c->f_tmp_bytes || !c->b_bytes ||
        !c->bw_bytes || !c->weight_bytes) {
        sched_costs_free(c);
        return NULL;
    }
    return c;
}

sched_costs *sched_costs_uniform(int n_stages, int n_chunks, double f, double b, double w)
{
    if (n_stages < 1 || n_chunks < 1 || (long long)n_stages * n_chunks > SCHED_MAX_DIM) return NULL;
    sched_costs *c = sched_costs_new(n_stages * n_chunks);
    if (!c) return NULL;
    for (int k = 0; k < c->n; k++) {
        c->f[k] = f / n_chunks;
        c->b[k] = b / n_chunks;
        c->w[k] = w / n_chunks;
        c->stash_bytes[k] = 1;
    }
    return c;
}

void sched_costs_free(sched_costs *c)
{
    if (!c) return;
    free(c->f);
    free(c->b);
    free(c->w);
    free(c->xfer_bytes);
    free(c->stash_bytes);
    free(c->f_tmp_bytes);
    free(c->b_bytes);
    free(c->bw_bytes);
    free(c->weight_bytes);
    free(c->grad_bytes);
    free(c->link_latency);
    free(c->link_bandwidth);
    sched_allreduce_free(c->ar);
    free(c);
}

sched_allreduce *sched_allreduce_new(size_t n)
{
    sched_allreduce *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->b = calloc(n ? n : 1, sizeof *a->b);
    if (!a->b) { free(a); return NULL; }
    a->n = n;
    a->tied_from = -1;
    return a;
}

void sched_allreduce_free(sched_allreduce *a)
{
    if (!a) return;
    free(a->b);
    free(a);
}

void sched_ar_report_free(sched_report *r)
{
    free(r->ar_stage);
    free(r->ar_start);
    free(r->ar_end);
    free(r->ar_ready);
    free(r->ar_count);
    free(r->ar_bytes);
    free(r->ar_busy);
    free(r->ar_exposed);
    free(r->ar_done);
    r->ar_stage = NULL, r->ar_start = r->ar_end = r->ar_ready = NULL, r->ar_count = NULL;
    r->ar_bytes = r->ar_busy = r->ar_exposed = r->ar_done = NULL;
}

void sched_report_free(sched_report *r)
{
    if (!r) return;
    for (int i = 0; i < r->n_stages; i++) {
        if (r->start) free(r->start[i]);
        if (r->end) free(r->end[i]);
    }
    free(r->start);
    free(r->end);
    free(r->peak_mb);
    free(r->busy);
    free(r->bubble_stage);
    free(r->peak_bytes);
    free(r->detail);
    sched_ar_report_free(r);
    free(r->extra_weight_bytes);
    free(r);
}
