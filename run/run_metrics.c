/* run_metrics.c — metrics.jsonl, loss.svg and the progress line (see run_metrics.h). */
#include "run/run_metrics.h"

#include <jansson.h>
#include "model/safetensors.h"
#include "model/util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

struct run_metrics {
    char *dir;
    FILE *f;
    run_metrics_row *rows;
    size_t n, cap;
};

int run_mkdirs(const char *path, char *err)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return seterr(err, "%s: path too long", path);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(buf, 0755) && errno != EEXIST)
                return seterr(err, "%s: cannot create directory: %s", buf, strerror(errno));
            *p = c;
            if (!c) break;
        }
    }
    return 0;
}

static int keep_row(run_metrics *m, const run_metrics_row *r);

/* Appending (a resumed run): the steps already logged go back into the rows, so
 * loss.svg keeps the whole curve. Lines that are not step rows are skipped. */
static void reload_rows(run_metrics *m, const char *path)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    while (f && fgets(line, sizeof line, f)) {
        json_t *j = json_loads(line, 0, NULL);
        json_t *step = json_object_get(j, "step"), *loss = json_object_get(j, "loss");
        if (json_is_integer(step) && json_is_number(loss)) {
            json_t *v = json_object_get(j, "val_loss");
            run_metrics_row r = { (long)json_integer_value(step), json_number_value(loss), NAN, NAN, NAN, NAN,
                                    json_is_number(v) ? json_number_value(v) : NAN, 0 };
            keep_row(m, &r);
        }
        json_decref(j);
    }
    if (f) fclose(f);
}

run_metrics *run_metrics_open(const char *dir, int append, char *err)
{
    if (run_mkdirs(dir, err)) return NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, append ? "a" : "w");
    if (!f) {
        seterr(err, "%s: cannot open for writing: %s", path, strerror(errno));
        return NULL;
    }
    run_metrics *m = xcalloc(1, sizeof *m);
    m->dir = xstrdup(dir);
    m->f = f;
    if (append) reload_rows(m, path);
    return m;
}

/* JSON has no NaN or infinity: write null for them. */
static void put_num(FILE *f, const char *key, double v, const char *fmt)
{
    fprintf(f, ", \"%s\": ", key);
    if (isfinite(v)) fprintf(f, fmt, v);
    else fputs("null", f);
}

int run_metrics_log(run_metrics *m, const run_metrics_row *r, char *err)
{
    fprintf(m->f, "{\"step\": %ld", r->step);
    if (r->worker > 0) fprintf(m->f, ", \"worker\": %d", r->worker - 1);
    put_num(m->f, "loss", r->loss, "%.6f");
    put_num(m->f, "lr", r->lr, "%.6g");
    put_num(m->f, "grad_norm", r->grad_norm, "%.6f");
    put_num(m->f, "step_ms", r->step_ms, "%.2f");
    put_num(m->f, "tokens_per_s", r->tokens_per_s, "%.1f");
    if (!isnan(r->val_loss)) put_num(m->f, "val_loss", r->val_loss, "%.6f");
    fputs("}\n", m->f);
    if (fflush(m->f) || ferror(m->f)) return seterr(err, "%s/metrics.jsonl: write failed: %s", m->dir, strerror(errno));
    if (keep_row(m, r)) return seterr(err, "out of memory keeping metrics");
    return 0;
}

/* Keeps a row for the loss curve; -1 when out of memory. */
static int keep_row(run_metrics *m, const run_metrics_row *r)
{
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 256;
        run_metrics_row *rows = realloc(m->rows, cap * sizeof *rows);
        if (!rows) return -1;
        m->rows = rows;
        m->cap = cap;
    }
    m->rows[m->n++] = *r;
    return 0;
}

int run_metrics_event(run_metrics *m, const char *json, char *err)
{
    fprintf(m->f, "%s\n", json);
    if (fflush(m->f) || ferror(m->f)) return seterr(err, "%s/metrics.jsonl: write failed: %s", m->dir, strerror(errno));
    return 0;
}

void run_metrics_close(run_metrics *m)
{
    if (!m) return;
    if (m->f) fclose(m->f);
    free(m->rows);
    free(m->dir);
    free(m);
}

/* ---- loss.svg ---- */

/* A "nice" tick step (1, 2 or 5 × 10^k) giving about n ticks over span. */
static double nice_step(double span, int n)
{
    double raw = span / n, p = pow(10, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

typedef struct { double x0, x1, y0, y1; int L, T, W, H; } plot;
static double px(const plot *p, double x) { return p->L + (x - p->x0) / (p->x1 - p->x0) * p->W; }
static double py(const plot *p, double y) { return p->T + p->H - (y - p->y0) / (p->y1 - p->y0) * p->H; }

static void svg_axes(FILE *f, const plot *p)
{
    fprintf(f, "<rect x='%d' y='%d' width='%d' height='%d' fill='none' stroke='#888'/>\n", p->L, p->T, p->W, p->H);
    double ys = nice_step(p->y1 - p->y0, 6), xs = nice_step(p->x1 - p->x0, 8);
    for (double y = ceil(p->y0 / ys) * ys; y <= p->y1 + 1e-9; y += ys)
        fprintf(f, "<line x1='%d' x2='%d' y1='%.1f' y2='%.1f' stroke='#eee'/>"
                   "<text x='%d' y='%.1f' text-anchor='end' font-size='11'>%g</text>\n",
                p->L, p->L + p->W, py(p, y), py(p, y), p->L - 6, py(p, y) + 4, y);
    for (double x = ceil(p->x0 / xs) * xs; x <= p->x1 + 1e-9; x += xs)
        fprintf(f, "<text x='%.1f' y='%d' text-anchor='middle' font-size='11'>%g</text>\n",
                px(p, x), p->T + p->H + 16, x);
}

/* One curve's polyline: its training loss (thin) or validation loss (thick). */
static void svg_line(FILE *f, const plot *p, const run_loss_curve *c, int val, const char *color)
{
    fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='%d'%s points='", color, val ? 2 : 1,
            c->dashed ? " stroke-dasharray='6,3'" : "");
    for (size_t i = 0; i < c->n; i++) {
        double v = val ? c->rows[i].val_loss : c->rows[i].loss;
        if (isfinite(v)) fprintf(f, "%.1f,%.1f ", px(p, (double)c->rows[i].step), py(p, v));
    }
    fprintf(f, "'/>\n");
}

int run_metrics_write_curves(const char *path, const char *title, const char *xlabel, const run_loss_curve *c,
                             int n, char *err)
{
    static const char *train_color[] = { "#1f77b4", "#2ca02c", "#9467bd", "#8c564b" };
    static const char *val_color[] = { "#d62728", "#ff7f0e", "#e377c2", "#7f7f7f" };
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    plot p = { 0, 1, INFINITY, -INFINITY, 60, 30, 620, 300 };
    for (int k = 0; k < n; k++)
        for (size_t i = 0; i < c[k].n; i++) {
            const run_metrics_row *r = &c[k].rows[i];
            double v[2] = { r->loss, r->val_loss };
            for (int j = 0; j < 2; j++)
                if (isfinite(v[j])) { if (v[j] < p.y0) p.y0 = v[j]; if (v[j] > p.y1) p.y1 = v[j]; }
            if (r->step > p.x1) p.x1 = (double)r->step;
        }
    if (!isfinite(p.y0)) { p.y0 = 0; p.y1 = 1; }
    if (p.y1 - p.y0 < 1e-6) p.y1 = p.y0 + 1;
    double pad = 0.05 * (p.y1 - p.y0);
    p.y0 = fmax(0, p.y0 - pad); p.y1 += pad;
    FILE *f = fopen(tmp, "w");
    if (!f) return seterr(err, "%s: cannot write: %s", tmp, strerror(errno));
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='700' height='370' font-family='sans-serif'>\n"
               "<rect width='700' height='370' fill='white'/>\n"
               "<text x='350' y='18' text-anchor='middle' font-size='14'>%s</text>\n", title);
    svg_axes(f, &p);
    fprintf(f, "<text x='350' y='362' text-anchor='middle' font-size='12'>%s</text>\n", xlabel);
    for (int k = 0; k < n; k++) svg_line(f, &p, &c[k], 0, train_color[k % 4]);
    for (int k = 0; k < n; k++) {
        svg_line(f, &p, &c[k], 1, val_color[k % 4]);
        for (size_t i = 0; i < c[k].n; i++)
            if (isfinite(c[k].rows[i].val_loss))
                fprintf(f, "<circle cx='%.1f' cy='%.1f' r='3' fill='%s'/>\n", px(&p, (double)c[k].rows[i].step),
                        py(&p, c[k].rows[i].val_loss), val_color[k % 4]);
    }
    for (int k = 0, y = 45; k < n; k++, y += 34) {
        const char *lb = c[k].label ? c[k].label : "", *sp = *lb ? " " : "";
        const char *dash = c[k].dashed ? " stroke-dasharray='6,3'" : "";
        int x = *lb ? 440 : 520;
        fprintf(f, "<line x1='%d' x2='%d' y1='%d' y2='%d' stroke='%s'%s/><text x='%d' y='%d' font-size='12'>%s%strain</text>\n"
                   "<line x1='%d' x2='%d' y1='%d' y2='%d' stroke='%s' stroke-width='2'%s/><text x='%d' y='%d' font-size='12'>%s%svalidation</text>\n",
                x, x + 25, y, y, train_color[k % 4], dash, x + 30, y + 4, lb, sp,
                x, x + 25, y + 17, y + 17, val_color[k % 4], dash, x + 30, y + 21, lb, sp);
    }
    fprintf(f, "</svg>\n");
    if (fclose(f)) return seterr(err, "%s: write failed: %s", tmp, strerror(errno));
    if (rename(tmp, path)) return seterr(err, "%s: cannot rename: %s", path, strerror(errno));
    return 0;
}

int run_metrics_write_svg(const run_metrics *m, char *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/loss.svg", m->dir);
    run_loss_curve c = { NULL, m->rows, m->n, 0 };
    return run_metrics_write_curves(path, "loss", "step", &c, 1, err);
}

/* ---- progress ---- */

void run_progress_init(run_progress *p, FILE *f, long total, long every)
{
    p->f = f;
    p->tty = f && isatty(fileno(f));
    p->total = total;
    p->every = every > 0 ? every : 1;
    p->dirty = 0;
}

static void fmt_eta(char *b, size_t n, double s)
{
    if (!isfinite(s) || s < 0) snprintf(b, n, "?");
    else if (s < 60) snprintf(b, n, "%.0fs", s);
    else if (s < 3600) snprintf(b, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else snprintf(b, n, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
}

void run_progress_step(run_progress *p, const run_metrics_row *r, double eta_s)
{
    char eta[32], val[48] = "", who[24] = "";
    if (!p->f) return; /* silent */
    fmt_eta(eta, sizeof eta, eta_s);
    if (r->worker > 0) snprintf(who, sizeof who, "worker %d ", r->worker - 1); /* asynchronous PS: whose step */
    if (!isnan(r->val_loss)) snprintf(val, sizeof val, " | val %.4f", r->val_loss);
    if (p->tty) {
        fprintf(p->f, "\r\033[K%sstep %ld/%ld | loss %.4f%s | lr %.2e | %.0f tok/s | %.0f ms/step | ETA %s",
                who, r->step, p->total, r->loss, val, r->lr, r->tokens_per_s, r->step_ms, eta);
        p->dirty = 1;
        if (!isnan(r->val_loss) || r->step == p->total) { fputc('\n', p->f); p->dirty = 0; }
    } else if (r->step % p->every == 0 || r->step == p->total || r->step == 1 || !isnan(r->val_loss)) {
        fprintf(p->f, "%sstep %ld/%ld loss %.4f%s lr %.2e grad_norm %.3f %.0f tok/s %.0f ms/step ETA %s\n",
                who, r->step, p->total, r->loss, val, r->lr, r->grad_norm, r->tokens_per_s, r->step_ms, eta);
    }
    fflush(p->f);
}

void run_progress_note(run_progress *p, const char *fmt, ...)
{
    if (!p->f) return; /* silent */
    if (p->dirty) { fputc('\n', p->f); p->dirty = 0; }
    va_list ap;
    va_start(ap, fmt);
    vfprintf(p->f, fmt, ap);
    va_end(ap);
    fputc('\n', p->f);
    fflush(p->f);
}
