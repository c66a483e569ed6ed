/* sched_render.c — pictures of a simulated schedule: an ASCII grid for the
 * terminal, an SVG timeline and a Chrome trace (JSON, opens in Perfetto). All
 * need a report with a timeline (sched_simulate with timeline != 0). They write
 * to a caller-owned stream and report stream errors; they never open files. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/sched_int.h"

static int need_timeline(const sched_schedule *s, const sched_report *r, char *err)
{
    if (!s || !r || !r->start || !r->end || r->n_stages != s->n_stages)
        return sched_seterr(err, "rendering needs a simulated timeline of the same schedule");
    return 0;
}

static int stream_ok(FILE *f, char *err)
{
    if (ferror(f)) return sched_seterr(err, "write error: %s", strerror(errno));
    return 0;
}

/* Letter of an action in the grid: F forward, I input gradient (B), W weight
 * gradient, B fused backward (BW), as PyTorch's CSV letters; odd chunks lowercase. */
static char grid_letter(sched_action a)
{
    static const char up[] = "FIWB", lo[] = "fiwb";
    return (a.chunk & 1) ? lo[a.op & 3] : up[a.op & 3];
}

static void grid_row(const sched_schedule *s, const sched_report *r, int st, char *line,
                     int cols, double scale)
{
    memset(line, '.', (size_t)cols);
    line[cols] = 0;
    for (size_t i = 0; i < s->len[st]; i++) {
        double t0 = r->start[st][i], t1 = r->end[st][i];
        int c0 = (int)lround(t0 * scale), c1 = (int)lround(t1 * scale);
        if (c1 <= c0 && t1 > t0) c1 = c0 + 1;
        if (c0 >= cols) c0 = cols - 1;
        if (c1 > cols) c1 = cols;
        if (c1 <= c0) continue;
        char lab[24];
        snprintf(lab, sizeof lab, "%c%u", grid_letter(s->act[st][i]), s->act[st][i].mb);
        for (int c = c0; c < c1; c++) {
            size_t j = (size_t)(c - c0);
            line[c] = j < strlen(lab) ? lab[j] : ' ';
        }
    }
}

/* Stage st's all-reduce row: bucket j of the stage (its j-th in list order) is a
 * box "A<j>" from its start to its end. */
static void grid_ar_row(const sched_report *r, int st, char *line, int cols, double scale)
{
    memset(line, '.', (size_t)cols);
    line[cols] = 0;
    unsigned j = 0;
    for (size_t i = 0; i < r->ar_n; i++) {
        if (r->ar_stage[i] != st) continue;
        double t0 = r->ar_start[i], t1 = r->ar_end[i];
        int c0 = (int)lround(t0 * scale), c1 = (int)lround(t1 * scale);
        if (c1 <= c0 && t1 > t0) c1 = c0 + 1;
        if (c0 >= cols) c0 = cols - 1;
        if (c1 > cols) c1 = cols;
        char lab[24];
        snprintf(lab, sizeof lab, "A%u", j++);
        for (int c = c0; c < c1; c++) {
            size_t k = (size_t)(c - c0);
            line[c] = k < strlen(lab) ? lab[k] : ' ';
        }
    }
}

int sched_render_ascii(const sched_schedule *s, const sched_report *r, FILE *f,
                       int max_cols, int max_rows, const char *unit, char *err)
{
    if (need_timeline(s, r, err)) return -1;
    if (max_cols < 10) max_cols = 10;
    if (max_rows < 1) max_rows = 1;
    double T = r->step_time, dmin = INFINITY;
    for (int st = 0; st < s->n_stages && st < max_rows; st++)
        for (size_t i = 0; i < s->len[st]; i++) {
            double d = r->end[st][i] - r->start[st][i];
            if (d > 0 && d < dmin) dmin = d;
        }
    if (!(T > 0) || !isfinite(dmin)) {
        fprintf(f, "(every action takes 0 time: nothing to draw)\n");
        return stream_ok(f, err);
    }
    int label = 2;
    for (int m = s->n_micro - 1; m >= 10; m /= 10) label++;
    double scale = (label + 1) / dmin;
    if (T * scale > max_cols) scale = max_cols / T;
    int cols = (int)ceil(T * scale - 1e-9);
    if (cols < 1) cols = 1;
    char *line = malloc((size_t)cols + 1);
    if (!line) return sched_seterr(err, "out of memory drawing the grid");
    int rows = s->n_stages < max_rows ? s->n_stages : max_rows;
    for (int st = 0; st < rows; st++) {
        grid_row(s, r, st, line, cols, scale);
        fprintf(f, "stage %3d |%s|\n", st, line);
        if (r->ar_exposed) {
            char lab[32];
            snprintf(lab, sizeof lab, "s%d AR", st);
            grid_ar_row(r, st, line, cols, scale);
            fprintf(f, "%9s |%s|\n", lab, line);
        }
    }
    if (rows < s->n_stages) fprintf(f, "... %d more stages not drawn\n", s->n_stages - rows);
    fprintf(f, "          0%*s%g\n", cols > 1 ? cols - 1 : 0, "", T);
    fprintf(f, "          one column = %.3g %s; F forward, I input grad (B), W weight "
               "grad, B fused backward (BW)%s, '.' idle\n", 1 / scale, unit ? unit : "time units",
            s->n_chunks > 1 ? ", lowercase = odd chunk" : "");
    if (r->ar_exposed)
        fprintf(f, "          sN AR: stage N's all-reduce, An its n-th bucket; the step ends when the last "
                   "stage's last bucket does (%g without the all-reduce)\n", r->compute_time);
    free(line);
    return stream_ok(f, err);
}

/* ---- SVG ----------------------------------------------------------------- */

static const char *svg_fill(sched_action a)
{
    static const char *even[] = { "#4e79a7", "#59a14f", "#f28e2b", "#b07aa1" };
    static const char *odd[] = { "#a0c4e8", "#a8d69b", "#f8c48f", "#dab6d0" };
    return (a.chunk & 1) ? odd[a.op & 3] : even[a.op & 3];
}

/* A "nice" tick step (1, 2 or 5 times a power of ten) giving about 8 ticks. */
static double tick_step(double T)
{
    double raw = T / 8, p = pow(10, floor(log10(raw))), m = raw / p;
    return p * (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10);
}

static void svg_axis(FILE *f, double T, double x0, double y, double w, const char *unit)
{
    double step = tick_step(T);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n",
            x0, y, x0 + w, y);
    for (double t = 0; t <= T * (1 + 1e-9); t += step) {
        double x = x0 + w * t / T;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n",
                x, y, x, y + 5, x, y + 18, t);
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">time (%s)</text>\n",
            x0 + w / 2, y + 34, unit);
}

static void svg_legend(FILE *f, double x, double y, int chunks, int ar)
{
    static const char *names[] = { "F forward", "B input grad", "W weight grad", "BW backward" };
    for (int op = 0; op < 4; op++) {
        sched_action a = { 0, 0, (uint8_t)op, 0 };
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"14\" fill=\"%s\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
                x + op * 130, y, svg_fill(a), x + op * 130 + 18, y + 12, names[op]);
    }
    if (chunks > 1)
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">lighter: odd chunk</text>\n", x + 4 * 130, y + 12);
    if (ar)
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"14\" fill=\"#e15759\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\">all-reduce bucket (dashed: exposed)</text>\n",
                x, y + 20, x + 18, y + 32);
}

static void svg_row(FILE *f, const sched_schedule *s, const sched_report *r, int st, double x0,
                    double y, double h, double xs)
{
    char an[64];
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">stage %d</text>\n", x0 - 6,
            y + h * 0.7, st);
    for (size_t i = 0; i < s->len[st]; i++) {
        sched_action a = s->act[st][i];
        double x = x0 + r->start[st][i] * xs, w = (r->end[st][i] - r->start[st][i]) * xs;
        fprintf(f, "<rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"%s\" "
                   "stroke=\"#fff\" stroke-width=\"0.5\"><title>stage %d %s %g-%g</title></rect>",
                x, y, w, h, svg_fill(a), st, sched_action_name(a, s->n_chunks, an, sizeof an),
                r->start[st][i], r->end[st][i]);
        int digits = snprintf(an, sizeof an, "%u", a.mb);
        if (w >= 7.0 * digits + 2)
            fprintf(f, "<text x=\"%.2f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"%s\">%s</text>",
                    x + w / 2, y + h * 0.7, (a.chunk & 1) ? "#222" : "#fff", an);
        fputc('\n', f);
    }
}

/* Stage st's all-reduce lane: each bucket a box from its start to its end,
 * alternating two reds so that back-to-back buckets stay apart. */
static void svg_ar_lane(FILE *f, const sched_report *r, int st, double x0, double y, double h, double w, double xs)
{
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"9\">all-reduce</text>\n", x0 - 6,
            y + h * 0.8);
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#f6f6f6\"/>\n", x0, y, w, h);
    unsigned j = 0;
    for (size_t i = 0; i < r->ar_n; i++) {
        if (r->ar_stage[i] != st) continue;
        fprintf(f, "<rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"%s\" stroke=\"#fff\" "
                   "stroke-width=\"0.5\"><title>stage %d all-reduce of bucket %u: ready %g, %g-%g</title></rect>\n",
                x0 + r->ar_start[i] * xs, y, (r->ar_end[i] - r->ar_start[i]) * xs, h, j & 1 ? "#ff9d9a" : "#e15759",
                st, j, r->ar_ready[i], r->ar_start[i], r->ar_end[i]);
        j++;
    }
    if (r->ar_exposed[st] > 0) /* the exposed part: from the last action's end to the optimizer */
        fprintf(f, "<line x1=\"%.2f\" y1=\"%.1f\" x2=\"%.2f\" y2=\"%.1f\" stroke=\"#222\" stroke-dasharray=\"2,2\">"
                   "<title>stage %d exposed all-reduce %g</title></line>\n",
                x0 + (r->ar_done[st] - r->ar_exposed[st]) * xs, y + h / 2, x0 + r->ar_done[st] * xs, y + h / 2, st,
                r->ar_exposed[st]);
}

/* Copies a label (schedule kind, unit) with XML's special characters replaced. */
static const char *xml_safe(const char *in, char *buf, size_t n)
{
    size_t i = 0;
    for (; in && in[i] && i + 1 < n; i++)
        buf[i] = strchr("<>&\"'", in[i]) || (unsigned char)in[i] < 0x20 ? '?' : in[i];
    buf[i] = 0;
    return buf;
}

int sched_render_svg(const sched_schedule *s, const sched_report *r, FILE *f,
                     const char *unit, char *err)
{
    return sched_render_svg_titled(s, r, f, unit, NULL, err);
}

int sched_render_svg_titled(const sched_schedule *s, const sched_report *r, FILE *f,
                            const char *unit, const char *title, char *err)
{
    if (need_timeline(s, r, err)) return -1;
    char kind[256], ubuf[64];
    unit = xml_safe(unit ? unit : "units", ubuf, sizeof ubuf);
    double T = r->step_time > 0 ? r->step_time : 1;
    double x0 = 80, w = 1000, h = 20, gap = 4, top = 40;
    double lane = r->ar_exposed ? 12 : 0, row = h + gap + (lane > 0 ? lane + gap : 0);
    double H = top + s->n_stages * row + 80;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "font-family=\"sans-serif\" font-size=\"11\">\n", x0 + w + 40, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"#fff\"/>\n");
    char chunks[48] = "";
    if (s->n_chunks > 1) snprintf(chunks, sizeof chunks, ", %d chunks per stage", s->n_chunks);
    fprintf(f, "<text x=\"%.1f\" y=\"18\" font-size=\"14\">%s: %d stages, %d micro-batches%s, "
               "step %g %s, bubble %.1f%%</text>\n", x0,
            title ? xml_safe(title, kind, sizeof kind)
                  : s->kind[0] ? xml_safe(s->kind, kind, sizeof kind) : "schedule",
            s->n_stages, s->n_micro, chunks, r->step_time, unit, 100 * r->bubble);
    for (int st = 0; st < s->n_stages; st++) {
        double y = top + st * row;
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#eee\"/>\n",
                x0, y, w, h);
        svg_row(f, s, r, st, x0, y, h, w / T);
        if (lane > 0) svg_ar_lane(f, r, st, x0, y + h + gap, lane, w, w / T);
    }
    double ya = top + s->n_stages * row + 4;
    svg_axis(f, T, x0, ya, w, unit);
    svg_legend(f, x0, ya + 44, s->n_chunks, r->ar_exposed != NULL);
    fprintf(f, "</svg>\n");
    return stream_ok(f, err);
}

/* ---- Chrome trace ---------------------------------------------------------- */

int sched_render_chrome(const sched_schedule *s, const sched_report *r, FILE *f,
                        double us_per_unit, char *err)
{
    if (need_timeline(s, r, err)) return -1;
    static const char *cat[] = { "F", "B", "W", "BW" };
    char a1[64];
    fprintf(f, "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [\n");
    for (int st = 0; st < s->n_stages; st++)
        fprintf(f, "{\"ph\": \"M\", \"name\": \"process_name\", \"pid\": %d, \"tid\": 0, "
                   "\"args\": {\"name\": \"stage %d\"}},\n"
                   "{\"ph\": \"M\", \"name\": \"thread_name\", \"pid\": %d, \"tid\": 0, "
                   "\"args\": {\"name\": \"compute\"}},\n", st, st, st);
    for (int st = 0; r->ar_exposed && st < s->n_stages; st++)
        fprintf(f, "{\"ph\": \"M\", \"name\": \"thread_name\", \"pid\": %d, \"tid\": 1, "
                   "\"args\": {\"name\": \"all-reduce\"}},\n", st);
    int first = 1;
    for (int st = 0; st < s->n_stages; st++)
        for (size_t i = 0; i < s->len[st]; i++) {
            sched_action a = s->act[st][i];
            fprintf(f, "%s{\"ph\": \"X\", \"name\": \"%s\", \"cat\": \"%s\", \"pid\": %d, "
                       "\"tid\": 0, \"ts\": %.3f, \"dur\": %.3f, \"args\": {\"micro_batch\": %u, "
                       "\"chunk\": %u, \"virtual_stage\": %zu}}", first ? "" : ",\n",
                    sched_action_str(a, a1, sizeof a1), cat[a.op & 3], st,
                    r->start[st][i] * us_per_unit,
                    (r->end[st][i] - r->start[st][i]) * us_per_unit, a.mb, (unsigned)a.chunk,
                    sched_vstage(s, st, a.chunk));
            first = 0;
        }
    for (size_t i = 0; i < r->ar_n; i++) {
        fprintf(f, "%s{\"ph\": \"X\", \"name\": \"all-reduce\", \"cat\": \"AR\", \"pid\": %d, \"tid\": 1, "
                   "\"ts\": %.3f, \"dur\": %.3f, \"args\": {\"bucket\": %zu, \"ready\": %.3f}}",
                first ? "" : ",\n", r->ar_stage[i], r->ar_start[i] * us_per_unit,
                (r->ar_end[i] - r->ar_start[i]) * us_per_unit, i, r->ar_ready[i] * us_per_unit);
        first = 0;
    }
    fprintf(f, "\n]}\n");
    return stream_ok(f, err);
}
