/* fuzz_sched_file.c — libFuzzer target for the schedule-file parser. Byte 0 picks
 * the form (bit 0: CSV, else JSON) and bit 1 a requested micro-batch count of 4;
 * the rest is the file text, parsed with sched_parse. An accepted schedule is
 * checked: every index in range, its JSON and CSV forms read back to the same
 * lists, and (when small) sched_check and sched_simulate agree and the renderers
 * draw it. Aborts on a violation; ASan/UBSan catch memory errors. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/sched.h"

static int same(const sched_schedule *a, const sched_schedule *b)
{
    if (a->n_stages != b->n_stages || a->n_chunks != b->n_chunks || a->n_micro != b->n_micro) return 0;
    for (int st = 0; st < a->n_stages; st++) {
        if (a->len[st] != b->len[st]) return 0;
        for (size_t i = 0; i < a->len[st]; i++)
            if (memcmp(&a->act[st][i], &b->act[st][i], sizeof(sched_action))) return 0;
    }
    return 1;
}

static void round_trip(const sched_schedule *s, int csv)
{
    char err[SCHED_ERR_LEN], *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) return;
    if (csv ? sched_write_csv(s, f, err) : sched_write_json(s, f, err)) __builtin_trap();
    fclose(f);
    sched_schedule *t = sched_parse(buf, n, "rt", csv, s->n_micro, err);
    if (!t || !same(s, t)) __builtin_trap();
    sched_free(t);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    char err[SCHED_ERR_LEN];
    int csv = data[0] & 1, M = (data[0] & 2) ? 4 : 0;
    sched_schedule *s = sched_parse((const char *)data + 1, size - 1, csv ? "f.csv" : "f.json", csv, M, err);
    if (!s) {
        if (!err[0] || !strstr(err, csv ? "f.csv" : "f.json")) __builtin_trap();
        return 0;
    }
    for (int st = 0; st < s->n_stages; st++)
        for (size_t i = 0; i < s->len[st]; i++) {
            sched_action a = s->act[st][i];
            if (a.mb >= (uint32_t)s->n_micro || a.chunk >= s->n_chunks || a.op > SCHED_BW) __builtin_trap();
        }
    round_trip(s, 0);
    round_trip(s, 1);
    if ((size_t)s->n_stages * (size_t)s->n_chunks * (size_t)s->n_micro <= (1u << 16)) {
        sched_report *r = NULL;
        int crc = sched_check(s, &r, err);
        sched_report_free(r);
        r = NULL;
        sched_costs *c = sched_costs_uniform(s->n_stages, s->n_chunks, 1, 2, 1);
        int src = c ? sched_simulate(s, c, 1, &r, err) : crc;
        if (c && src != crc) __builtin_trap();
        if (c && !src) { /* the renderers accept whatever the simulator accepts */
            char *buf = NULL;
            size_t n = 0;
            FILE *f = open_memstream(&buf, &n);
            if (f && (sched_render_ascii(s, r, f, 80, 16, NULL, err) || sched_render_svg(s, r, f, "ms", err) ||
                      sched_render_chrome(s, r, f, 1000, err)))
                __builtin_trap();
            if (f) fclose(f);
            free(buf);
        }
        sched_report_free(r);
        sched_costs_free(c);
    }
    sched_free(s);
    return 0;
}
