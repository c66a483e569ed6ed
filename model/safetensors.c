/* safetensors.c — the safetensors reader and writer (see safetensors.h). The
 * reader validates the whole header (sizes, JSON, dtypes, shapes, offsets,
 * contiguity) before it allocates the data buffer; the parsed JSON
 * stays alive while the file is open, so names and dtypes point into it. */
#include "model/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "safetensors data are little-endian; this code assumes a little-endian host");

static const struct { const char *name; size_t size; } dtypes[] = {
    { "F64", 8 }, { "F32", 4 }, { "F16", 2 }, { "BF16", 2 },
    { "I64", 8 }, { "I32", 4 }, { "I16", 2 }, { "I8", 1 },
    { "U64", 8 }, { "U32", 4 }, { "U16", 2 }, { "U8", 1 },
    { "BOOL", 1 }, { "F8_E4M3", 1 }, { "F8_E5M2", 1 },
};

size_t st_dtype_size(const char *dtype)
{
    if (!dtype) return 0;
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(dtypes[i].name, dtype) == 0) return dtypes[i].size;
    return 0;
}

/* ---- writing ---------------------------------------------------------------- */

/* Checks one entry and returns its byte size in *nbytes. */
static int check_entry(const char *path, const st_entry *e, size_t *nbytes, int filled, char *err)
{
    if (!e->name || !e->name[0] || strcmp(e->name, "__metadata__") == 0)
        return seterr(err, "%s: tensor name \"%s\" is not allowed", path, e->name ? e->name : "(null)");
    size_t es = st_dtype_size(e->dtype);
    if (es == 0)
        return seterr(err, "%s: tensor %s: unknown dtype \"%s\"", path, e->name, e->dtype ? e->dtype : "(null)");
    if (e->ndim < 0 || e->ndim > 4)
        return seterr(err, "%s: tensor %s: ndim %d out of range 0..4", path, e->name, e->ndim);
    uint64_t bytes = es;
    for (int i = 0; i < e->ndim; i++) {
        if (e->shape[i] < 0)
            return seterr(err, "%s: tensor %s: negative shape[%d] = %lld", path, e->name, i,
                          (long long)e->shape[i]);
        if (__builtin_mul_overflow(bytes, (uint64_t)e->shape[i], &bytes) || bytes > SIZE_MAX)
            return seterr(err, "%s: tensor %s: shape overflows the byte count", path, e->name);
    }
    if (bytes > 0 && !e->data && !filled) return seterr(err, "%s: tensor %s: data is NULL", path, e->name);
    *nbytes = (size_t)bytes;
    return 0;
}

static json_t *tensor_json(const st_entry *e, uint64_t begin, uint64_t end)
{
    json_t *o = json_object(), *shape = json_array(), *offs = json_array();
    for (int i = 0; i < e->ndim; i++) json_array_append_new(shape, json_integer(e->shape[i]));
    json_array_append_new(offs, json_integer((json_int_t)begin));
    json_array_append_new(offs, json_integer((json_int_t)end));
    json_object_set_new(o, "dtype", json_string(e->dtype));
    json_object_set_new(o, "shape", shape);
    json_object_set_new(o, "data_offsets", offs);
    return o;
}

/* Builds the JSON header (metadata first, then tensors in order), padded with
 * spaces to a multiple of 8 bytes. Returns a malloc'ed string and its length. */
static char *build_header(const char *path, const st_entry *e, int n, const char *const *meta_kv, int filled,
                          size_t *len, char *err)
{
    json_t *root = json_object();
    char *text = NULL, *out = NULL;
    if (meta_kv && meta_kv[0]) {
        json_t *meta = json_object();
        json_object_set_new(root, "__metadata__", meta);
        for (int i = 0; meta_kv[i]; i += 2) {
            if (json_object_get(meta, meta_kv[i])) {
                seterr(err, "%s: duplicate metadata key \"%s\"", path, meta_kv[i]);
                goto fail;
            }
            json_t *v = meta_kv[i + 1] ? json_string(meta_kv[i + 1]) : NULL;
            if (!v || json_object_set_new(meta, meta_kv[i], v) != 0) {
                seterr(err, "%s: metadata key \"%s\" or its value is missing or not UTF-8", path, meta_kv[i]);
                goto fail;
            }
        }
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        size_t nb;
        if (check_entry(path, &e[i], &nb, filled, err) != 0) goto fail;
        if (json_object_get(root, e[i].name)) {
            seterr(err, "%s: duplicate tensor name %s", path, e[i].name);
            goto fail;
        }
        if (json_object_set_new(root, e[i].name, tensor_json(&e[i], off, off + nb)) != 0) {
            seterr(err, "%s: tensor name %s is not valid UTF-8", path, e[i].name);
            goto fail;
        }
        off += nb;
    }
    text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!text) { seterr(err, "%s: cannot encode the header", path); goto fail; }
    size_t tl = strlen(text), padded = (tl + 7) / 8 * 8;
    out = xmalloc(padded + 1);
    memcpy(out, text, tl);
    memset(out + tl, ' ', padded - tl);
    out[padded] = 0;
    *len = padded;
fail:
    free(text);
    json_decref(root);
    return out;
}

struct st_sink {
    int fd;
    size_t left; /* bytes the entry still expects */
    int failed;  /* a write failed (errno) or overflowed the entry */
    int over;
};

int st_sink_write(st_sink *s, const void *data, size_t n)
{
    if (!s) return 0;
    if (s->failed) return -1;
    if (n > s->left) {
        s->failed = s->over = 1;
        return -1;
    }
    if (n && base_write_all(s->fd, data, n) != 0) {
        s->failed = 1;
        return -1;
    }
    s->left -= n;
    return 0;
}

int st_write_fill(const char *path, const st_entry *e, int n, const char *const *meta_kv, st_fill_fn fill,
                  void *arg, char *err)
{
    size_t hlen = 0;
    if (n < 0) return seterr(err, "%s: negative tensor count %d", path, n);
    char *header = build_header(path, e, n, meta_kv, fill != NULL, &hlen, err);
    if (!header) return -1;
    char *tmp = NULL;
    int fd = base_durable_begin(path, &tmp, err);
    if (fd < 0) { free(header); return -1; }
    uint8_t lenbuf[8];
    put_u64le(lenbuf, hlen);
    int ok = base_write_all(fd, lenbuf, 8) == 0 && base_write_all(fd, header, hlen) == 0;
    free(header);
    for (int i = 0; ok && i < n; i++) {
        size_t nb = 0;
        check_entry(path, &e[i], &nb, fill != NULL, NULL); /* already checked in build_header */
        if (e[i].data || !nb) {
            ok = base_write_all(fd, e[i].data, nb) == 0;
            continue;
        }
        st_sink s = { fd, nb, 0, 0 };
        char ferr[ERR_LEN] = "";
        int frc = fill(arg, i, &s, ferr);
        if (frc || s.failed || s.left) {
            if (frc && !s.failed) seterr(err, "%s: tensor %s: %s", path, e[i].name, ferr);
            else if (s.over || (!s.failed && s.left))
                seterr(err, "%s: tensor %s: the data given has another size than its %zu bytes (a bug)", path,
                       e[i].name, nb);
            else seterr(err, "%s: write to %s failed: %s", path, tmp, strerror(errno));
            base_durable_abort(fd, tmp);
            return -1;
        }
    }
    if (!ok) {
        seterr(err, "%s: write to %s failed: %s", path, tmp, strerror(errno));
        base_durable_abort(fd, tmp);
        return -1;
    }
    return base_durable_commit(fd, tmp, path, err);
}

int st_write(const char *path, const st_entry *e, int n, const char *const *meta_kv, char *err)
{
    return st_write_fill(path, e, n, meta_kv, NULL, NULL, err);
}

/* ---- reading ---------------------------------------------------------------- */

struct st_file {
    char *path;
    json_t *root;        /* parsed header; names and dtypes point into it */
    json_t *meta;        /* "__metadata__" or NULL */
    st_tensor *t;        /* (count) in data-offset order */
    const st_tensor **by_name; /* (count) sorted by name, for st_find */
    int count;
    uint8_t *data;       /* the data buffer, data_size bytes */
    uint64_t data_size;
    uint64_t header_len;
    void *map;           /* st_open_mapped: the whole file mapped, map_len bytes; else NULL */
    size_t map_len;
};

/* Reads a non-negative JSON integer. */
static int get_uint(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int parse_shape(const char *path, const char *name, const json_t *shape, st_tensor *t, char *err)
{
    if (!json_is_array(shape))
        return seterr(err, "%s: tensor %s: \"shape\" is not an array", path, name);
    size_t nd = json_array_size(shape);
    if (nd > ST_MAX_DIMS)
        return seterr(err, "%s: tensor %s: shape has %zu dimensions (at most %d supported)",
                      path, name, nd, ST_MAX_DIMS);
    t->ndim = (int)nd;
    uint64_t numel = 1, bytes;
    for (size_t i = 0; i < nd; i++) {
        uint64_t d;
        if (get_uint(json_array_get(shape, i), &d) != 0)
            return seterr(err, "%s: tensor %s: shape[%zu] is not a non-negative integer", path, name, i);
        t->shape[i] = (int64_t)d;
        if (__builtin_mul_overflow(numel, d, &numel))
            return seterr(err, "%s: tensor %s: shape element count overflows 64 bits", path, name);
    }
    if (__builtin_mul_overflow(numel, (uint64_t)t->dtype_size, &bytes) || bytes > SIZE_MAX)
        return seterr(err, "%s: tensor %s: shape x dtype size overflows", path, name);
    t->numel = (size_t)numel;
    t->nbytes = (size_t)bytes;
    return 0;
}

/* Parses and checks one header entry (except its place among the others). */
static int parse_entry(const char *path, const char *name, const json_t *v, st_tensor *t, char *err)
{
    const char *k;
    json_t *x;
    if (!json_is_object(v))
        return seterr(err, "%s: tensor %s: header entry is not an object", path, name);
    json_object_foreach((json_t *)v, k, x)
        if (strcmp(k, "dtype") && strcmp(k, "shape") && strcmp(k, "data_offsets"))
            return seterr(err, "%s: tensor %s: unknown header field \"%s\"", path, name, k);
    t->name = name;
    const json_t *dt = json_object_get(v, "dtype");
    if (!json_is_string(dt))
        return seterr(err, "%s: tensor %s: \"dtype\" missing or not a string", path, name);
    t->dtype = json_string_value(dt);
    t->dtype_size = st_dtype_size(t->dtype);
    if (t->dtype_size == 0)
        return seterr(err, "%s: tensor %s: unknown dtype \"%s\"", path, name, t->dtype);
    if (parse_shape(path, name, json_object_get(v, "shape"), t, err) != 0) return -1;
    const json_t *offs = json_object_get(v, "data_offsets");
    if (!json_is_array(offs) || json_array_size(offs) != 2 ||
        get_uint(json_array_get(offs, 0), &t->begin) != 0 ||
        get_uint(json_array_get(offs, 1), &t->end) != 0)
        return seterr(err, "%s: tensor %s: \"data_offsets\" is not [begin, end] of non-negative integers",
                      path, name);
    if (t->end < t->begin)
        return seterr(err, "%s: tensor %s: data_offsets [%llu, %llu] end before begin", path, name,
                      (unsigned long long)t->begin, (unsigned long long)t->end);
    if (t->end - t->begin != t->nbytes)
        return seterr(err, "%s: tensor %s: data_offsets [%llu, %llu] hold %llu bytes but shape x %s "
                      "needs %zu", path, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                      (unsigned long long)(t->end - t->begin), t->dtype, t->nbytes);
    return 0;
}

static int cmp_offset(const void *a, const void *b)
{
    const st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

/* Checks the tensors, sorted by offset, tile [0, data_size) exactly. Offsets in
 * messages are relative to the data start, with the file offset beside them. */
static int check_layout(const st_file *f, char *err)
{
    uint64_t at = 0, base = 8 + f->header_len;
    for (int i = 0; i < f->count; i++) {
        const st_tensor *t = &f->t[i];
        unsigned long long b = t->begin, e = t->end;
        if (t->begin > at && i == 0)
            return seterr(err, "%s: tensor %s: data_offsets begin at byte %llu but the data starts at "
                          "byte 0 (gap of %llu bytes)", f->path, t->name, b, b);
        if (t->begin > at)
            return seterr(err, "%s: tensor %s: data_offsets begin at byte %llu but the previous tensor %s "
                          "ends at %llu (gap of %llu bytes)", f->path, t->name, b, f->t[i - 1].name,
                          (unsigned long long)at, (unsigned long long)(t->begin - at));
        if (t->begin < at)
            return seterr(err, "%s: tensor %s: data_offsets [%llu, %llu] overlap tensor %s ending at byte %llu",
                          f->path, t->name, b, e, f->t[i - 1].name, (unsigned long long)at);
        if (t->end > f->data_size)
            return seterr(err, "%s: tensor %s: data_offsets [%llu, %llu] run past the end of the file: the "
                          "data buffer (file bytes %llu..) holds %llu bytes", f->path, t->name, b, e,
                          (unsigned long long)base, (unsigned long long)f->data_size);
        at = t->end;
    }
    if (at != f->data_size)
        return seterr(err, "%s: tensors end at data byte %llu (file byte %llu) but the file has %llu more "
                      "bytes (trailing bytes after the last tensor)", f->path, (unsigned long long)at,
                      (unsigned long long)(base + at), (unsigned long long)(f->data_size - at));
    return 0;
}

static int parse_metadata(st_file *f, json_t *meta, char *err)
{
    const char *k;
    json_t *v;
    if (!json_is_object(meta)) return seterr(err, "%s: \"__metadata__\" is not an object", f->path);
    json_object_foreach(meta, k, v)
        if (!json_is_string(v))
            return seterr(err, "%s: \"__metadata__\".\"%s\" is not a string", f->path, k);
    f->meta = meta;
    return 0;
}

/* Parses the header text (hlen bytes) into f: JSON, entries, layout, name index. */
static int parse_header(st_file *f, const char *text, size_t hlen, char *err)
{
    json_error_t je;
    f->root = json_loadb(text, hlen, JSON_REJECT_DUPLICATES, &je);
    if (!f->root)
        return seterr(err, "%s: header is not valid JSON: %s at header byte %d (file byte %d)",
                      f->path, je.text, je.position, je.position + 8);
    if (!json_is_object(f->root)) return seterr(err, "%s: header is not a JSON object", f->path);
    size_t n = json_object_size(f->root);
    f->t = xcalloc(n ? n : 1, sizeof *f->t);
    const char *k;
    json_t *v;
    json_object_foreach(f->root, k, v) {
        if (strcmp(k, "__metadata__") == 0) {
            if (parse_metadata(f, v, err) != 0) return -1;
        } else if (parse_entry(f->path, k, v, &f->t[f->count], err) != 0) {
            return -1;
        } else {
            f->count++;
        }
    }
    qsort(f->t, (size_t)f->count, sizeof *f->t, cmp_offset);
    if (check_layout(f, err) != 0) return -1;
    f->by_name = xcalloc(f->count ? (size_t)f->count : 1, sizeof *f->by_name);
    for (int i = 0; i < f->count; i++) f->by_name[i] = &f->t[i];
    qsort(f->by_name, (size_t)f->count, sizeof *f->by_name, cmp_name);
    return 0;
}

static int read_at(int fd, void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { if (r == 0) errno = 0; return -1; }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int read_fail(const st_file *f, const char *what, char *err)
{
    if (errno == 0) return seterr(err, "%s: file ended early while reading the %s", f->path, what);
    return seterr(err, "%s: reading the %s failed: %s", f->path, what, strerror(errno));
}

/* Checks the 8-byte length prefix against the file size; reads and parses the
 * header; then reads the data. Nothing large is allocated before the checks. */
static int open_fd(st_file *f, int fd, int mapped, char *err)
{
    struct stat st;
    uint8_t lenbuf[8];
    if (fstat(fd, &st) != 0) return seterr(err, "%s: cannot stat: %s", f->path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return seterr(err, "%s: not a regular file", f->path);
    if (mapped) posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM); /* no read-ahead past the header into the data */
    uint64_t size = (uint64_t)st.st_size;
    if (size < 8)
        return seterr(err, "%s: file is %llu bytes, too short for the 8-byte header length (truncated?)",
                      f->path, (unsigned long long)size);
    if (read_at(fd, lenbuf, 8) != 0) return read_fail(f, "header length", err);
    uint64_t hlen = get_u64le(lenbuf);
    if (hlen > ST_MAX_HEADER)
        return seterr(err, "%s: header length %llu (bytes 0..7) exceeds the %llu-byte limit", f->path,
                      (unsigned long long)hlen, ST_MAX_HEADER);
    if (hlen > size - 8)
        return seterr(err, "%s: header length %llu (bytes 0..7) runs past the end of the %llu-byte file "
                      "(truncated?)", f->path, (unsigned long long)hlen, (unsigned long long)size);
    if (hlen < 2) return seterr(err, "%s: header length %llu is too short for a JSON object", f->path,
                                (unsigned long long)hlen);
    f->data_size = size - 8 - hlen;
    f->header_len = hlen;
    char *text = xmalloc((size_t)hlen);
    int rc = read_at(fd, text, (size_t)hlen) != 0 ? read_fail(f, "header", err)
                                                 : parse_header(f, text, (size_t)hlen, err);
    free(text);
    if (rc != 0) return -1;
    if (f->data_size > SIZE_MAX) return seterr(err, "%s: data too large for this machine", f->path);
    if (mapped) {
        /* the header checks above proved every tensor lies inside the file */
        f->map_len = (size_t)size;
        f->map = mmap(NULL, f->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (f->map == MAP_FAILED) {
            f->map = NULL;
            return seterr(err, "%s: cannot map %llu bytes: %s", f->path, (unsigned long long)size, strerror(errno));
        }
        madvise(f->map, f->map_len, MADV_RANDOM); /* pages are touched tensor by tensor, only those needed */
        for (int i = 0; i < f->count; i++) f->t[i].data = (const uint8_t *)f->map + 8 + hlen + f->t[i].begin;
        return 0;
    }
    f->data = malloc(f->data_size ? (size_t)f->data_size : 1);
    if (!f->data)
        return seterr(err, "%s: cannot allocate %llu bytes for the tensor data", f->path,
                      (unsigned long long)f->data_size);
    if (read_at(fd, f->data, (size_t)f->data_size) != 0) return read_fail(f, "tensor data", err);
    for (int i = 0; i < f->count; i++) f->t[i].data = f->data + f->t[i].begin;
    return 0;
}

static int open_path(st_file **out, const char *path, int mapped, char *err)
{
    *out = NULL;
    st_file *f = xcalloc(1, sizeof *f);
    f->path = strdup(path);
    if (!f->path) { free(f); return seterr(err, "%s: out of memory", path); }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        seterr(err, "%s: cannot open: %s", path, strerror(errno));
        st_close(f);
        return -1;
    }
    int rc = open_fd(f, fd, mapped, err);
    close(fd);
    if (rc != 0) {
        st_close(f);
        return -1;
    }
    *out = f;
    return 0;
}

int st_open(st_file **out, const char *path, char *err) { return open_path(out, path, 0, err); }

int st_open_mapped(st_file **out, const char *path, char *err) { return open_path(out, path, 1, err); }

void st_close(st_file *f)
{
    if (!f) return;
    if (f->map) munmap(f->map, f->map_len);
    json_decref(f->root);
    free(f->t);
    free(f->by_name);
    free(f->data);
    free(f->path);
    free(f);
}

int st_count(const st_file *f) { return f->count; }

const st_tensor *st_tensor_at(const st_file *f, int i)
{
    return (i >= 0 && i < f->count) ? &f->t[i] : NULL;
}

const st_tensor *st_find(const st_file *f, const char *name)
{
    st_tensor key = { .name = name };
    const st_tensor *kp = &key;
    const st_tensor *const *hit = bsearch(&kp, f->by_name, (size_t)f->count, sizeof *f->by_name, cmp_name);
    return hit ? *hit : NULL;
}

const char *st_meta(const st_file *f, const char *key)
{
    return f->meta ? json_string_value(json_object_get(f->meta, key)) : NULL;
}

const char *st_path(const st_file *f) { return f->path; }

int st_read(const st_file *f, const char *name, const char *dtype, void *dst, size_t n_expected, char *err)
{
    const st_tensor *t = st_find(f, name);
    if (!t) return seterr(err, "%s: tensor %s not found", f->path, name);
    if (strcmp(t->dtype, dtype) != 0)
        return seterr(err, "%s: tensor %s has dtype %s, expected %s", f->path, name, t->dtype, dtype);
    if (t->numel != n_expected)
        return seterr(err, "%s: tensor %s has %zu elements, expected %zu", f->path, name, t->numel, n_expected);
    if (t->nbytes) memcpy(dst, t->data, t->nbytes);
    return 0;
}

int st_read_f32(const st_file *f, const char *name, float *dst, size_t n_expected, char *err)
{
    return st_read(f, name, "F32", dst, n_expected, err);
}
