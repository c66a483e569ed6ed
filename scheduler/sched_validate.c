/* sched_validate.c — the schedule validator: static checks of each stage's list
 * (indices, exactly one F and one backward per micro-batch and chunk, local
 * order), the peak number of micro-batches in flight, and the explanation of a
 * deadlock found when the schedule is played (the play itself is in sched_sim.c). */
#include <stdlib.h>
#include <string.h>

#include "scheduler/sched_int.h"

/* Per (chunk, micro-batch) of the stage being checked: which ops were seen. */
enum { SEEN_F = 1 << SCHED_F, SEEN_B = 1 << SCHED_B, SEEN_W = 1 << SCHED_W, SEEN_BW = 1 << SCHED_BW };

/* Position of the first action before i on stage st for the same micro-batch
 * and chunk as action i whose op is in mask (only used to word errors). */
static size_t first_pos(const sched_schedule *s, int st, size_t end, sched_action a, int mask)
{
    for (size_t i = 0; i < end; i++) {
        sched_action b = s->act[st][i];
        if (b.mb == a.mb && b.chunk == a.chunk && ((1 << b.op) & mask)) return i;
    }
    return end;
}

static int dup_err(const sched_schedule *s, int st, size_t i, int mask, const char *what,
                   char *err)
{
    char w1[400], an[64];
    sched_action a = s->act[st][i];
    size_t first = first_pos(s, st, i, a, mask);
    sched_action b = s->act[st][first < i ? first : i];
    char bn[64];
    return sched_seterr(err, "%s: duplicated %s: %s, but %s already appears at action %zu of stage %d",
                        sched_where(s, st, i, w1, sizeof w1), what,
                        sched_action_name(a, s->n_chunks, an, sizeof an),
                        sched_action_name(b, s->n_chunks, bn, sizeof bn), first, st);
}

/* Checks one action against what the stage has seen so far and records it. */
static int see(const sched_schedule *s, int st, size_t i, uint8_t *seen, char *err)
{
    char w1[400], an[64], st2[16];
    sched_action a = s->act[st][i];
    if (a.op > SCHED_BW)
        return sched_seterr(err, "%s: unknown action type %u", sched_where(s, st, i, w1, sizeof w1), a.op);
    if (a.chunk >= s->n_chunks)
        return sched_seterr(err, "%s: bad chunk %u in %s: the schedule has %d chunk(s) per stage",
                            sched_where(s, st, i, w1, sizeof w1), a.chunk,
                            sched_action_str(a, st2, sizeof st2), s->n_chunks);
    if (a.mb >= (uint32_t)s->n_micro)
        return sched_seterr(err, "%s: bad micro-batch index %u in %s: expected 0..%d",
                            sched_where(s, st, i, w1, sizeof w1), a.mb,
                            sched_action_str(a, st2, sizeof st2), s->n_micro - 1);
    uint8_t *z = &seen[(size_t)a.chunk * (size_t)s->n_micro + a.mb];
    switch (a.op) {
    case SCHED_F:
        if (*z & SEEN_F) return dup_err(s, st, i, SEEN_F, "forward", err);
        break;
    case SCHED_B:
    case SCHED_BW:
        if (*z & (SEEN_B | SEEN_BW)) return dup_err(s, st, i, SEEN_B | SEEN_BW, "backward", err);
        if (!(*z & SEEN_F))
            return sched_seterr(err, "%s: %s comes before the forward of micro-batch %u "
                                     "(expected F before B)", sched_where(s, st, i, w1, sizeof w1),
                                sched_action_name(a, s->n_chunks, an, sizeof an), a.mb);
        if (a.op == SCHED_BW && (*z & SEEN_W))
            return dup_err(s, st, i, SEEN_W, "weight gradient", err);
        break;
    default: /* SCHED_W */
        if (*z & (SEEN_W | SEEN_BW))
            return dup_err(s, st, i, SEEN_W | SEEN_BW, "weight gradient", err);
        if (!(*z & SEEN_B))
            return sched_seterr(err, "%s: %s comes before B of micro-batch %u (expected F, then "
                                     "B, then W)", sched_where(s, st, i, w1, sizeof w1),
                                sched_action_name(a, s->n_chunks, an, sizeof an), a.mb);
        break;
    }
    *z |= (uint8_t)(1 << a.op);
    return 0;
}

/* After a stage's list: everything present exactly once. */
static int complete(const sched_schedule *s, int st, const uint8_t *seen, char *err)
{
    char pre[300];
    sched_src_prefix(s, pre, sizeof pre);
    const char *row = s->src_csv ? "row" : "stage";
    int rn = s->src_csv ? st + 1 : st;
    for (int c = 0; c < s->n_chunks; c++) {
        char ch[32] = "";
        if (s->n_chunks > 1) snprintf(ch, sizeof ch, ", chunk %d", c);
        for (int m = 0; m < s->n_micro; m++) {
            uint8_t z = seen[(size_t)c * (size_t)s->n_micro + (size_t)m];
            if (!(z & SEEN_F))
                return sched_seterr(err, "%s%s %d: missing forward F(%d%s): every micro-batch "
                                         "needs one F on every chunk of every stage", pre, row, rn, m, ch);
            if (!(z & (SEEN_B | SEEN_BW)))
                return sched_seterr(err, "%s%s %d: missing backward for micro-batch %d%s: "
                                         "expected B and W, or BW, after its F", pre, row, rn, m, ch);
            if ((z & SEEN_B) && !(z & SEEN_W)) {
                sched_action a = { (uint32_t)m, (uint16_t)c, SCHED_B, 0 };
                return sched_seterr(err, "%s%s %d: missing weight gradient W(%d%s): B(%d) at "
                                         "action %zu needs a W after it (or use BW)", pre, row, rn,
                                    m, ch, m, first_pos(s, st, s->len[st], a, SEEN_B));
            }
        }
    }
    return 0;
}

int sched_static_check(const sched_schedule *s, int *peak_mb, char *err)
{
    size_t n = (size_t)s->n_chunks * (size_t)s->n_micro;
    uint8_t *seen = malloc(n);
    if (!seen) return sched_seterr(err, "out of memory checking the schedule");
    int rc = 0;
    for (int st = 0; st < s->n_stages && !rc; st++) {
        memset(seen, 0, n);
        int live = 0, peak = 0;
        for (size_t i = 0; i < s->len[st] && !rc; i++) {
            rc = see(s, st, i, seen, err);
            int op = s->act[st][i].op;
            if (op == SCHED_F && ++live > peak) peak = live;
            if (op == SCHED_W || op == SCHED_BW) live--;
        }
        if (!rc) rc = complete(s, st, seen, err);
        if (peak_mb) peak_mb[st] = peak;
    }
    free(seen);
    return rc;
}

/* What action a of stage st waits for: the producer's action name and stage. */
static void waits_for(const sched_schedule *s, int st, sched_action a, char *buf, size_t n)
{
    size_t K = (size_t)s->n_stages * (size_t)s->n_chunks;
    size_t k = sched_vstage(s, st, a.chunk);
    sched_action d = a;
    size_t dk = a.op == SCHED_F ? k - 1 : k + 1;
    if ((a.op == SCHED_F && k == 0) || (a.op != SCHED_F && k + 1 >= K)) {
        snprintf(buf, n, "nothing (bug: should be runnable)");
        return;
    }
    d.op = a.op == SCHED_F ? SCHED_F : SCHED_B;
    int dc = 0, dst = sched_stage_of(s, (int)dk, &dc);
    d.chunk = (uint16_t)dc;
    char an[64];
    sched_action_name(d, s->n_chunks, an, sizeof an);
    snprintf(buf, n, "%s from stage %d", an, dst);
}

/* Appends "stage S: a0 a1 [a2] a3 ... (stuck at action 2 of 9, waits for ...)". */
static void stage_line(const sched_schedule *s, int st, size_t cur, char *buf, size_t n)
{
    size_t len = s->len[st], o = 0;
    char tmp[64];
#define ADD(...) do { if (o < n) o += (size_t)snprintf(buf + o, n - o, __VA_ARGS__); } while (0)
    if (cur >= len) {
        ADD("  stage %d: finished all %zu actions\n", st, len);
        return;
    }
    ADD("  stage %d:", st);
    size_t from = cur > 6 ? cur - 6 : 0, to = cur + 4 < len ? cur + 4 : len;
    if (from) ADD(" ...");
    for (size_t i = from; i < to; i++) {
        sched_action_str(s->act[st][i], tmp, sizeof tmp);
        if (i == cur) ADD(" [%s]", tmp);
        else ADD(" %s", tmp);
    }
    if (to < len) ADD(" ...");
    waits_for(s, st, s->act[st][cur], tmp, sizeof tmp);
    char pos[64] = "";
    if (s->src_csv)
        snprintf(pos, sizeof pos, ", row %d column %zu", st + 1,
                 (s->src_col && s->src_col[st] ? (size_t)s->src_col[st][cur] : cur) + 1);
    else if (s->src)
        snprintf(pos, sizeof pos, ", stages[%d][%zu]", st, cur);
    ADD("  (stuck at action %zu of %zu%s: waits for %s)\n", cur, len, pos, tmp);
#undef ADD
    if (o >= n && n > 5) strcpy(buf + n - 5, "...\n");
}

void sched_explain_deadlock(const sched_schedule *s, const size_t *cur, char *err, char **detail)
{
    char pre[300], tmp[128], line[512];
    size_t o = 0, cap = 0, dl = 0;
    char *d = NULL;
    int stuck = 0, shown = 0;
    for (int st = 0; st < s->n_stages; st++) stuck += cur[st] < s->len[st];
    o += (size_t)snprintf(err + o, SCHED_ERR_LEN - o, "%sschedule cannot finish (deadlock): ",
                          sched_src_prefix(s, pre, sizeof pre));
    for (int st = 0; st < s->n_stages; st++) {
        if (cur[st] >= s->len[st]) continue;
        waits_for(s, st, s->act[st][cur[st]], tmp, sizeof tmp);
        char one[200];
        int w = snprintf(one, sizeof one, "%sstage %d waits for %s", shown ? "; " : "", st, tmp);
        if (o + (size_t)w + 24 >= SCHED_ERR_LEN / 2) break;
        memcpy(err + o, one, (size_t)w + 1);
        o += (size_t)w;
        shown++;
    }
    if (shown < stuck)
        o += (size_t)snprintf(err + o, SCHED_ERR_LEN - o, "; and %d more stage(s)", stuck - shown);
    o += (size_t)snprintf(err + o, SCHED_ERR_LEN - o, "\n");
    int full = 1;
    for (int st = 0; st < s->n_stages; st++) {
        stage_line(s, st, cur[st], line, sizeof line);
        size_t l = strlen(line);
        if (full && o + l < SCHED_ERR_LEN - 4) { memcpy(err + o, line, l + 1); o += l; }
        else if (full) { snprintf(err + o, SCHED_ERR_LEN - o, "  ...\n"); full = 0; }
        if (detail) {
            if (dl + l + 1 > cap) {
                size_t nc = cap ? 2 * cap + l : 4096 + l;
                char *p = realloc(d, nc);
                if (!p) { free(d); d = NULL; detail = NULL; continue; }
                d = p;
                cap = nc;
            }
            memcpy(d + dl, line, l + 1);
            dl += l;
        }
    }
    if (o && err[o - 1] == '\n' && full) err[o - 1] = 0;
    if (detail) *detail = d;
    else free(d);
}
