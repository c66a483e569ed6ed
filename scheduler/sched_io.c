/* sched_io.c — schedule files: the JSON form (one list of action strings per
 * stage) and PyTorch's compute-only CSV form (one row per rank, cells such as
 * "0F1", "1I0", "0W2", "1B3"). Reading checks every cell and names the file, the
 * stage/row and the action/column; it does not play the schedule (sched_check
 * does). Writing never fails half-way silently: stream errors are reported. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "scheduler/sched_int.h"

#define MAX_FILE_BYTES (1ull << 31)

/* Sizes found while parsing, checked at the end against declared ones. */
typedef struct {
    long max_mb, max_chunk;
    long decl_mb, decl_chunks; /* 0 when not declared */
} dims;

static int check_index(const char *where, const char *cell, sched_action a, const dims *d,
                       char *err)
{
    if (d->decl_mb && a.mb >= d->decl_mb)
        return sched_seterr(err, "%s: bad micro-batch index %u in '%s': expected 0..%ld", where,
                            a.mb, cell, d->decl_mb - 1);
    if (d->decl_chunks && a.chunk >= d->decl_chunks)
        return sched_seterr(err, "%s: bad chunk %u in '%s': expected 0..%ld", where,
                            (unsigned)a.chunk, cell, d->decl_chunks - 1);
    return 0;
}

/* Applies the sizes: declared ones win, otherwise the largest index + 1. */
static int finish_dims(sched_schedule *s, const dims *d, const char *name, char *err)
{
    long M = d->decl_mb ? d->decl_mb : d->max_mb + 1;
    long v = d->decl_chunks ? d->decl_chunks : d->max_chunk + 1;
    if (d->max_mb < 0 || M < 1 || v < 1)
        return sched_seterr(err, "%s: the schedule has no actions: expected one list of actions "
                                 "per stage", name);
    if ((long long)v * s->n_stages > (1 << 24))
        return sched_seterr(err, "%s: %d stages x %ld chunks is too many virtual stages", name,
                            s->n_stages, v);
    if ((unsigned long long)M * (unsigned long long)v * (unsigned long long)s->n_stages > (1ull << 30))
        return sched_seterr(err, "%s: %d stages x %ld chunks x %ld micro-batches is too large "
                                 "(more than 2^30)", name, s->n_stages, v, M);
    s->n_micro = (int)M;
    s->n_chunks = (int)v;
    return 0;
}

static long json_dim(json_t *root, const char *key, const char *name, long max, char *err)
{
    json_t *j = json_object_get(root, key);
    if (!j) return 0;
    if (!json_is_integer(j) || json_integer_value(j) < 1 || json_integer_value(j) > max) {
        sched_seterr(err, "%s: \"%s\": expected an integer 1..%ld", name, key, max);
        return -1;
    }
    return (long)json_integer_value(j);
}

static int json_header(json_t *root, const char *name, dims *d, int n_micro, char *err)
{
    const char *key;
    json_t *val;
    if (!json_is_object(root))
        return sched_seterr(err, "%s: expected a JSON object with \"stages\": [[\"F0\", ...], ...]", name);
    json_object_foreach(root, key, val) {
        if (strcmp(key, "version") && strcmp(key, "kind") && strcmp(key, "micro_batches") &&
            strcmp(key, "chunks") && strcmp(key, "stages") && strcmp(key, "simulation") && strcmp(key, "placement"))
            return sched_seterr(err, "%s: unknown key \"%s\" (expected version, kind, "
                                     "micro_batches, chunks, placement, stages; simulation is ignored)", name, key);
    }
    json_t *pl = json_object_get(root, "placement");
    if (pl && (!json_is_string(pl) || (strcmp(json_string_value(pl), "loop") && strcmp(json_string_value(pl), "v"))))
        return sched_seterr(err, "%s: \"placement\": expected \"loop\" (chunk c of stage s is virtual stage "
                                 "c*P+s) or \"v\" (stage s holds virtual stages s and 2P-1-s)", name);
    json_t *ver = json_object_get(root, "version");
    if (ver && (!json_is_integer(ver) || json_integer_value(ver) != 1))
        return sched_seterr(err, "%s: \"version\": expected 1", name);
    json_t *kind = json_object_get(root, "kind");
    if (kind && !json_is_string(kind)) return sched_seterr(err, "%s: \"kind\": expected a string", name);
    if ((d->decl_mb = json_dim(root, "micro_batches", name, 1 << 24, err)) < 0) return -1;
    if ((d->decl_chunks = json_dim(root, "chunks", name, 65535, err)) < 0) return -1;
    if (n_micro > 0 && d->decl_mb && d->decl_mb != n_micro)
        return sched_seterr(err, "%s: \"micro_batches\" is %ld but %d micro-batches were asked "
                                 "for", name, d->decl_mb, n_micro);
    if (n_micro > 0) d->decl_mb = n_micro;
    json_t *st = json_object_get(root, "stages");
    if (!json_is_array(st) || json_array_size(st) < 1 || json_array_size(st) > (1 << 20))
        return sched_seterr(err, "%s: \"stages\": expected a non-empty array with one list of "
                                 "action strings per stage", name);
    return 0;
}

static sched_schedule *parse_json(const char *text, size_t n, const char *name, int n_micro, int n_stages,
                                  char *err)
{
    json_error_t je;
    sched_schedule *s = NULL;
    json_t *root = json_loadb(text, n, 0, &je);
    if (!root) {
        sched_seterr(err, "%s:%d:%d: invalid JSON: %s", name, je.line, je.column, je.text);
        return NULL;
    }
    dims d = { -1, -1, 0, 0 };
    if (json_header(root, name, &d, n_micro, err)) goto fail;
    json_t *stages = json_object_get(root, "stages");
    if (n_stages > 0 && json_array_size(stages) != (size_t)n_stages) {
        sched_seterr(err, "%s: \"stages\": is for %zu stage(s) (one list of actions each), expected %d", name,
                     json_array_size(stages), n_stages);
        goto fail;
    }
    s = sched_new((int)json_array_size(stages), 1, 1);
    if (!s) { sched_seterr(err, "%s: out of memory", name); goto fail; }
    for (size_t st = 0; st < json_array_size(stages); st++) {
        json_t *row = json_array_get(stages, st);
        if (!json_is_array(row)) {
            sched_seterr(err, "%s: stages[%zu]: expected a list of action strings", name, st);
            goto fail;
        }
        for (size_t i = 0; i < json_array_size(row); i++) {
            json_t *cell = json_array_get(row, i);
            char where[400], why[SCHED_ERR_LEN];
            snprintf(where, sizeof where, "%s: stages[%zu][%zu]", name, st, i);
            sched_action a;
            if (!json_is_string(cell)) {
                sched_seterr(err, "%s: expected an action string such as \"F3\", found a "
                                  "JSON %s", where, json_is_number(cell) ? "number" : "non-string");
                goto fail;
            }
            if (sched_action_parse(json_string_value(cell), &a, why)) {
                sched_seterr(err, "%s: %s", where, why);
                goto fail;
            }
            if (check_index(where, json_string_value(cell), a, &d, err)) goto fail;
            if ((long)a.mb > d.max_mb) d.max_mb = a.mb;
            if ((long)a.chunk > d.max_chunk) d.max_chunk = a.chunk;
            if (sched_append(s, (int)st, a)) { sched_seterr(err, "%s: out of memory", name); goto fail; }
        }
    }
    if (finish_dims(s, &d, name, err)) goto fail;
    json_t *pl = json_object_get(root, "placement");
    if (pl && !strcmp(json_string_value(pl), "v")) {
        if (s->n_chunks != 2) {
            sched_seterr(err, "%s: \"placement\": \"v\" needs 2 chunks per stage, the schedule has %d", name,
                         s->n_chunks);
            goto fail;
        }
        s->placement = SCHED_PLACE_V;
    }
    json_t *kind = json_object_get(root, "kind");
    snprintf(s->kind, sizeof s->kind, "%s", kind ? json_string_value(kind) : "file");
    for (char *p = s->kind; *p; p++) /* a label only: keep it printable ASCII */
        if (*p < 0x20 || *p > 0x7e) *p = '?';
    json_decref(root);
    return s;
fail:
    json_decref(root);
    sched_free(s);
    return NULL;
}

/* Parses one action "<vstage><type><mb>" (trimmed, non-empty) of row `row` of P
 * under placement `place`. */
static int csv_cell(const char *cell, int P, int place, int row, sched_action *a, char *why)
{
    const char *p = cell;
    long k = 0, mb = 0;
    int nd = 0;
    while (isdigit((unsigned char)*p)) { if (++nd > 8) break; k = k * 10 + (*p++ - '0'); }
    if (!nd || nd > 8)
        return sched_seterr(why, "expected a virtual stage number first (e.g. \"0F1\"), found '%s'", cell);
    char t = *p;
    if (!strchr("FBIW", t) && isalpha((unsigned char)t) && isalpha((unsigned char)p[1]))
        return sched_seterr(why, "'%s' is not a compute action: expected <stage><F|B|I|W><micro-batch>"
                                 " (only PyTorch's compute-only form is read)", cell);
    if (t != 'F' && t != 'B' && t != 'I' && t != 'W')
        return sched_seterr(why, "unknown action type in '%s': expected F, B, I or W after the "
                                 "stage number", cell);
    p++;
    nd = 0;
    while (isdigit((unsigned char)*p)) { if (++nd > 8) break; mb = mb * 10 + (*p++ - '0'); }
    if (!nd || nd > 8 || *p)
        return sched_seterr(why, "bad micro-batch index in '%s': expected a number of at most 8 "
                                 "digits after '%c'", cell, t);
    if (place == SCHED_PLACE_V ? (k != row && k != 2L * P - 1 - row) : k % P != row) {
        if (place == SCHED_PLACE_V)
            return sched_seterr(why, "'%s' names virtual stage %ld, which rank %d does not hold (the file "
                                     "places virtual stages in a V: rank r holds r and %d-r)", cell, k, row,
                                2 * P - 1);
        return sched_seterr(why, "'%s' names virtual stage %ld, which rank %d does not hold "
                                 "(rank r holds virtual stages r, r+%d, r+%d, ... or, placed in a V, r "
                                 "and %d-r)", cell, k, row, P, 2 * P, 2 * P - 1);
    }
    if (k / P > 65535) return sched_seterr(why, "virtual stage %ld in '%s' is too large", k, cell);
    a->mb = (uint32_t)mb;
    a->chunk = (uint16_t)(k / P); /* V: k == row is chunk 0, 2P-1-row chunk 1, as k / P */
    a->op = t == 'F' ? SCHED_F : t == 'I' ? SCHED_B : t == 'W' ? SCHED_W : SCHED_BW;
    a->next = 0;
    return 0;
}

/* Number of CSV rows: lines, ignoring empty lines at the end. */
static int csv_rows(const char *text, size_t n)
{
    int rows = 0, pending = 0;
    size_t i = 0;
    while (i < n) {
        size_t e = i;
        int blank = 1;
        while (e < n && text[e] != '\n') { if (!isspace((unsigned char)text[e])) blank = 0; e++; }
        pending++;
        if (!blank) { rows += pending; pending = 0; }
        i = e + 1;
    }
    return rows;
}

/* Splits a trimmed cell into its actions: one, or the two of
 * "(<a>;<b>)OVERLAP_F_B" (run in order). Returns the count (1 or 2) with their
 * bounds in sub[], or 0 when an overlap cell is malformed. */
static int csv_split(const char *cell, size_t n, const char *sub[2], size_t sl[2])
{
    static const char tag[] = ")OVERLAP_F_B";
    size_t tl = sizeof tag - 1;
    if (n == 0 || cell[0] != '(') {
        sub[0] = cell;
        sl[0] = n;
        return 1;
    }
    const char *semi = memchr(cell, ';', n);
    if (n < tl + 4 || memcmp(cell + n - tl, tag, tl) || !semi || semi > cell + n - tl) return 0;
    sub[0] = cell + 1;
    sl[0] = (size_t)(semi - cell - 1);
    sub[1] = semi + 1;
    sl[1] = (size_t)(cell + n - tl - semi - 1);
    return sl[0] && sl[1] && !memchr(sub[1], ';', sl[1]) ? 2 : 0;
}

static int csv_row(sched_schedule *s, const char *line, size_t len, int row, dims *d,
                   size_t *colcap, const char *name, char *err)
{
    size_t i = 0;
    uint32_t col = 0;
    int P = s->n_stages;
    while (i <= len) {
        size_t e = i;
        while (e < len && line[e] != ',') e++;
        size_t a0 = i, a1 = e;
        while (a0 < a1 && isspace((unsigned char)line[a0])) a0++;
        while (a1 > a0 && isspace((unsigned char)line[a1 - 1])) a1--;
        if (a1 > a0) {
            char cell[64], where[400], why[SCHED_ERR_LEN];
            snprintf(where, sizeof where, "%s: row %d, column %u", name, row + 1, col + 1);
            /* the longest valid cell is 17 characters, 48 for an overlapped pair */
            if (a1 - a0 > (line[a0] == '(' ? 64u : 32u))
                return sched_seterr(err, "%s: cell too long (%zu characters): expected "
                                         "<stage><F|B|I|W><micro-batch>", where, a1 - a0);
            if (memchr(line + a0, 0, a1 - a0)) return sched_seterr(err, "%s: unexpected NUL byte", where);
            const char *sub[2];
            size_t sl[2];
            int ns = csv_split(line + a0, a1 - a0, sub, sl);
            if (!ns)
                return sched_seterr(err, "%s: '%.*s' is not an overlapped pair: expected "
                                         "(<stage>F<mb>;<stage>B<mb>)OVERLAP_F_B", where, (int)(a1 - a0), line + a0);
            for (int j = 0; j < ns; j++) {
                size_t cl = sl[j] < sizeof cell - 1 ? sl[j] : sizeof cell - 1;
                memcpy(cell, sub[j], cl);
                cell[cl] = 0;
                sched_action a;
                if (csv_cell(cell, P, s->placement, row, &a, why)) return sched_seterr(err, "%s: %s", where, why);
                if (check_index(where, cell, a, d, err)) return -1;
                if ((long)a.mb > d->max_mb) d->max_mb = a.mb;
                if ((long)a.chunk > d->max_chunk) d->max_chunk = a.chunk;
                if (sched_append(s, row, a)) return sched_seterr(err, "%s: out of memory", name);
                if (s->len[row] > *colcap) {
                    size_t nc = *colcap ? 2 * *colcap : 16;
                    uint32_t *c = realloc(s->src_col[row], nc * sizeof(uint32_t));
                    if (!c) return sched_seterr(err, "%s: out of memory", name);
                    s->src_col[row] = c;
                    *colcap = nc;
                }
                s->src_col[row][s->len[row] - 1] = col;
            }
        }
        col++;
        i = e + 1;
    }
    return 0;
}

/* The placement a CSV file's cells imply: V when every row s names both s and
 * 2P-1-s and fewer cells break the V (name another stage) than break the loop
 * (k % P != s); loop otherwise. The cells that break the chosen placement are
 * then reported by csv_cell. Looks only at each cell's leading virtual stage
 * number (both of an overlapped pair). */
static int csv_placement(const char *text, size_t n, int P)
{
    long loop_bad = 0, v_bad = 0;
    int row = 0, v = 1;
    uint8_t *both = calloc((size_t)P, 1); /* per row: 1 = names r, 2 = names 2P-1-r */
    if (!both) return SCHED_PLACE_LOOP;
    for (size_t i = 0; i < n && row < P; i++) {
        if (text[i] == '\n') { row++; continue; }
        if (!isdigit((unsigned char)text[i]) || (i > 0 && (isalnum((unsigned char)text[i - 1]) || text[i - 1] == '_')))
            continue;
        long k = 0;
        int nd = 0;
        while (i < n && isdigit((unsigned char)text[i])) { if (++nd <= 8) k = k * 10 + (text[i] - '0'); i++; }
        i--; /* the loop's i++ moves past the number */
        if (nd > 8) continue;
        if (k % P != row) loop_bad++;
        if (k != row && k != 2L * P - 1 - row) v_bad++;
        else both[row] |= (uint8_t)(k == row ? 1 : 2);
    }
    for (int r = 0; r < P && v; r++) v = both[r] == 3;
    free(both);
    return v && v_bad < loop_bad ? SCHED_PLACE_V : SCHED_PLACE_LOOP;
}

/* PyTorch's older notation: "kBm" followed on its row by "kWm" meant the input
 * gradient. Turns each such BW into B, counting them in s->n_b_as_i. */
static void csv_b_then_w(sched_schedule *s)
{
    for (int st = 0; st < s->n_stages; st++)
        for (size_t i = 0; i < s->len[st]; i++) {
            sched_action *a = &s->act[st][i];
            if (a->op != SCHED_BW) continue;
            for (size_t j = i + 1; j < s->len[st]; j++) {
                sched_action b = s->act[st][j];
                if (b.mb != a->mb || b.chunk != a->chunk) continue;
                if (b.op == SCHED_W) { a->op = SCHED_B; s->n_b_as_i++; }
                if (b.op == SCHED_W || b.op == SCHED_B || b.op == SCHED_BW) break;
            }
        }
}

static sched_schedule *parse_csv(const char *text, size_t n, const char *name, int n_micro, int n_stages,
                                 char *err)
{
    int P = csv_rows(text, n);
    if (P < 1) { sched_seterr(err, "%s: empty schedule: expected one row of actions per rank", name); return NULL; }
    if (n_stages > 0 && P != n_stages) {
        sched_seterr(err, "%s: %d row%s: is for %d stage(s) (one row of actions per rank), expected %d", name, P,
                     P == 1 ? "" : "s", P, n_stages);
        return NULL;
    }
    if (P > (1 << 20)) { sched_seterr(err, "%s: too many rows (%d)", name, P); return NULL; }
    sched_schedule *s = sched_new(P, 1, 1);
    if (!s || !(s->src_col = calloc((size_t)P, sizeof(uint32_t *)))) {
        sched_seterr(err, "%s: out of memory", name);
        sched_free(s);
        return NULL;
    }
    s->src_csv = 1;
    s->placement = csv_placement(text, n, P);
    dims d = { -1, -1, n_micro > 0 ? n_micro : 0, 0 };
    size_t i = 0;
    for (int row = 0; row < P; row++) {
        size_t e = i;
        while (e < n && text[e] != '\n') e++;
        size_t len = e - i;
        if (len && text[i + len - 1] == '\r') len--;
        size_t colcap = 0;
        if (csv_row(s, text + i, len, row, &d, &colcap, name, err)) { sched_free(s); return NULL; }
        i = e + 1;
    }
    if (finish_dims(s, &d, name, err)) { sched_free(s); return NULL; }
    csv_b_then_w(s);
    snprintf(s->kind, sizeof s->kind, "file");
    return s;
}

/* sched_parse with the stage count checked first when n_stages > 0. */
static sched_schedule *parse_for(const char *text, size_t n, const char *name, int csv, int n_micro, int n_stages,
                                 char *err)
{
    if (!name) name = "(schedule)";
    if (n >= 3 && !memcmp(text, "\xef\xbb\xbf", 3)) { /* a UTF-8 byte-order mark, as spreadsheets save CSV */
        text += 3;
        n -= 3;
    }
    sched_schedule *s = csv ? parse_csv(text, n, name, n_micro, n_stages, err)
                            : parse_json(text, n, name, n_micro, n_stages, err);
    if (!s) return NULL;
    if (!(s->src = strdup(name)) || (sched_is_cross_step(s) ? sched_2bw_check(s, NULL, err) : sched_static_check(s, NULL, err))) {
        if (!s->src) sched_seterr(err, "%s: out of memory", name);
        sched_free(s);
        return NULL;
    }
    return s;
}

sched_schedule *sched_parse(const char *text, size_t n, const char *name, int csv,
                            int n_micro, char *err)
{
    return parse_for(text, n, name, csv, n_micro, 0, err);
}

sched_schedule *sched_load(const char *path, int n_micro, char *err)
{
    return sched_load_for(path, n_micro, 0, err);
}

sched_schedule *sched_load_for(const char *path, int n_micro, int n_stages, char *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        sched_seterr(err, "%s: cannot open schedule file: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? 2 * cap : 65536;
            char *p = cap <= MAX_FILE_BYTES ? realloc(buf, cap) : NULL;
            if (!p) {
                sched_seterr(err, "%s: schedule file too large or out of memory", path);
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = p;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        sched_seterr(err, "%s: read error", path);
        free(buf);
        return NULL;
    }
    size_t pl = strlen(path);
    int csv = pl >= 4 && !strcasecmp(path + pl - 4, ".csv");
    sched_schedule *s = parse_for(buf, n, path, csv, n_micro, n_stages, err);
    free(buf);
    return s;
}

/* The "simulation" object of sched_write_json_sim; NULL when out of memory. */
static json_t *simulation_json(const sched_schedule *s, const sched_report *r, const sched_sim_info *info)
{
    json_t *st = json_array(), *j = json_pack("{s:s,s:f,s:f,s:s,s:o}", "unit", info->unit ? info->unit : "ms",
                                             "step_time", r->step_time, "bubble", r->bubble, "cost_source",
                                             info->cost_source ? info->cost_source : "", "stages", st);
    for (int k = 0; j && k < s->n_stages; k++) {
        json_t *o = json_pack("{s:i,s:f,s:f,s:f,s:i,s:o}", "stage", k, "busy", r->busy[k], "idle",
                              r->step_time - r->busy[k], "bubble", r->bubble_stage[k], "peak_in_flight",
                              r->peak_mb[k], "peak_activation_bytes",
                              info->have_bytes ? json_real(r->peak_bytes[k]) : json_null());
        if (o && r->ar_exposed &&
            json_object_set_new(o, "allreduce",
                                json_pack("{s:I,s:f,s:f,s:f,s:f}", "buckets", (json_int_t)r->ar_count[k], "bytes",
                                          r->ar_bytes[k], "busy", r->ar_busy[k], "exposed", r->ar_exposed[k],
                                          "optimizer_start", r->ar_done[k]))) {
            json_decref(o);
            o = NULL;
        }
        if (o && r->extra_weight_bytes &&
            json_object_set_new(o, "extra_weight_bytes", json_real(r->extra_weight_bytes[k]))) {
            json_decref(o);
            o = NULL;
        }
        if (!o || json_array_append_new(st, o)) { json_decref(j); return NULL; }
    }
    if (j && r->steps_simulated &&
        json_object_set_new(j, "steady_state_of_steps", json_integer(r->steps_simulated))) { json_decref(j); return NULL; }
    if (j && r->ar_exposed &&
        json_object_set_new(j, "compute_time", json_real(r->compute_time))) { json_decref(j); return NULL; }
    return j;
}

int sched_write_json_sim(const sched_schedule *s, const sched_report *r, const sched_sim_info *info, FILE *f,
                         char *err)
{
    char a[64];
    json_t *sim = r && info ? simulation_json(s, r, info) : NULL;
    if (r && info && !sim) return sched_seterr(err, "out of memory");
    fputs("{\"version\": 1, \"kind\": \"", f);
    for (const char *p = s->kind[0] ? s->kind : "file"; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e) fputc('?', f);
        else fputc(*p, f);
    }
    fprintf(f, "\", \"micro_batches\": %d, \"chunks\": %d,%s\n", s->n_micro, s->n_chunks,
            s->placement == SCHED_PLACE_V ? " \"placement\": \"v\"," : "");
    if (sim) {
        fputs(" \"simulation\": ", f);
        json_dumpf(sim, f, JSON_COMPACT | JSON_REAL_PRECISION(10));
        fputs(",\n", f);
        json_decref(sim);
    }
    fputs(" \"stages\": [\n", f);
    for (int st = 0; st < s->n_stages; st++) {
        fputs("  [", f);
        for (size_t i = 0; i < s->len[st]; i++)
            fprintf(f, "%s\"%s\"", i ? ", " : "", sched_action_str(s->act[st][i], a, sizeof a));
        fputs(st + 1 < s->n_stages ? "],\n" : "]\n", f);
    }
    fputs(" ]}\n", f);
    if (ferror(f)) return sched_seterr(err, "write error: %s", strerror(errno));
    return 0;
}

int sched_write_json(const sched_schedule *s, FILE *f, char *err) { return sched_write_json_sim(s, NULL, NULL, f, err); }

int sched_write_csv(const sched_schedule *s, FILE *f, char *err)
{
    static const char type[] = { 'F', 'I', 'W', 'B' };
    if (sched_is_cross_step(s))
        return sched_seterr(err, "%s: a cross-step schedule (the next step's forwards, \"F0n\") has no CSV form: "
                                 "PyTorch's files describe one step; write JSON", s->kind);
    for (int st = 0; st < s->n_stages; st++) {
        for (size_t i = 0; i < s->len[st]; i++) {
            sched_action a = s->act[st][i];
            fprintf(f, "%s%zu%c%u", i ? "," : "", sched_vstage(s, st, a.chunk), type[a.op & 3], a.mb);
        }
        fputc('\n', f);
    }
    if (ferror(f)) return sched_seterr(err, "write error: %s", strerror(errno));
    return 0;
}
