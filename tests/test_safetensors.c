/* test_safetensors.c — safetensors write → open round trips (bitwise, every dtype we
 * write, metadata, file order), the raw header checked by an independent parse,
 * durable writes, and every malformed file refused with a message naming the file
 * (inline cases and the tests/bad/safetensors/ corpus). */
#include <dirent.h>
#include <jansson.h>
#include <stdint.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "model/safetensors.h"
#include "tests/tests.h"

static char tmpdir[256];

static const char *tmp_path(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/test_st.XXXXXX");
        CU_ASSERT_FATAL(mkdtemp(tmpdir) != NULL);
    }
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(*n + 1);
    if (fread(p, 1, *n, f) != *n) { free(p); p = NULL; }
    fclose(f);
    return p;
}

/* Test tensors: one of each dtype we write, a scalar and an empty tensor. */
static float f32[2 * 3 * 4];
static double f64[5];
static int64_t i64[1];
static uint8_t u8[7];
static int32_t i32[3 * 2];
static uint16_t u16[9];

static int fill_entries(st_entry *e)
{
    for (size_t i = 0; i < 24; i++) f32[i] = (float)i * 0.37f - 3.0f;
    f32[5] = -0.0f;
    memcpy(&f32[6], &(uint32_t){ 0x7fc00001u }, 4); /* a NaN payload must survive bitwise */
    for (size_t i = 0; i < 5; i++) f64[i] = 1.0 / (double)(i + 3);
    i64[0] = -1234567890123LL;
    for (size_t i = 0; i < 7; i++) u8[i] = (uint8_t)(250 + i);
    for (size_t i = 0; i < 6; i++) i32[i] = -(int32_t)i * 100000;
    for (size_t i = 0; i < 9; i++) u16[i] = (uint16_t)(65535 - i);
    st_entry v[] = {
        { "model.embed_tokens.weight", "F32", 3, { 2, 3, 4 }, f32 },
        { "odd.u8", "U8", 1, { 7 }, u8 }, /* 7 bytes: the next tensor is unaligned */
        { "scalar.step", "I64", 0, { 0 }, i64 },
        { "f64", "F64", 1, { 5 }, f64 },
        { "empty", "F32", 2, { 0, 4 }, NULL },
        { "i32", "I32", 2, { 3, 2 }, i32 },
        { "u16", "U16", 4, { 1, 3, 1, 3 }, u16 },
    };
    memcpy(e, v, sizeof v);
    return (int)(sizeof v / sizeof v[0]);
}

/* Parses the file's raw header with jansson (not with st_open) and checks the
 * layout: 8-aligned header padded with spaces, contiguous offsets in file order
 * matching e[], and the data ending exactly at the end of the file. */
static void check_raw_header(const char *path, const st_entry *e, int n)
{
    size_t size;
    uint8_t *raw = slurp(path, &size);
    CU_ASSERT_FATAL(raw != NULL && size >= 8);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | raw[i];
    CU_ASSERT_FATAL(hlen + 8 <= size);
    CU_ASSERT_EQUAL(hlen % 8, 0);
    CU_ASSERT_EQUAL(raw[8], '{');
    json_error_t je;
    json_t *root = json_loadb((const char *)raw + 8, hlen, JSON_REJECT_DUPLICATES, &je);
    CU_ASSERT_FATAL(root != NULL);
    size_t closing = hlen; /* everything after the last '}' is padding spaces */
    while (closing > 0 && raw[8 + closing - 1] != '}') closing--;
    for (size_t i = closing; i < hlen; i++) CU_ASSERT_EQUAL(raw[8 + i], ' ');
    json_t *meta = json_object_get(root, "__metadata__");
    CU_ASSERT(n == 0 || json_is_object(meta));
    uint64_t at = 0;
    int k = 0;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) continue;
        CU_ASSERT_FATAL(k < n);
        CU_ASSERT_STRING_EQUAL(key, e[k].name);
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(v, "dtype")), e[k].dtype);
        json_t *shape = json_object_get(v, "shape"), *offs = json_object_get(v, "data_offsets");
        CU_ASSERT_EQUAL(json_array_size(shape), (size_t)e[k].ndim);
        uint64_t bytes = st_dtype_size(e[k].dtype);
        for (int d = 0; d < e[k].ndim; d++) {
            CU_ASSERT_EQUAL(json_integer_value(json_array_get(shape, (size_t)d)), e[k].shape[d]);
            bytes *= (uint64_t)e[k].shape[d];
        }
        CU_ASSERT_EQUAL((uint64_t)json_integer_value(json_array_get(offs, 0)), at);
        CU_ASSERT_EQUAL((uint64_t)json_integer_value(json_array_get(offs, 1)), at + bytes);
        if (bytes) CU_ASSERT(memcmp(raw + 8 + hlen + at, e[k].data, bytes) == 0);
        at += bytes;
        k++;
    }
    CU_ASSERT_EQUAL(k, n);
    CU_ASSERT_EQUAL(8 + hlen + at, size);
    json_decref(root);
    free(raw);
}

static void test_roundtrip(void)
{
    st_entry e[8];
    int n = fill_entries(e);
    const char *meta[] = { "format", "pt", "pipetrain.step", "42", "empty", "", NULL };
    const char *path = tmp_path("model.safetensors");
    char err[ERR_LEN] = "", tmpname[600];
    CU_ASSERT_FATAL(st_write(path, e, n, meta, err) == 0);
    snprintf(tmpname, sizeof tmpname, "%s.tmp", path);
    CU_ASSERT(access(tmpname, F_OK) != 0);
    check_raw_header(path, e, n);

    st_file *f = NULL;
    CU_ASSERT_FATAL(st_open(&f, path, err) == 0);
    CU_ASSERT_STRING_EQUAL(st_path(f), path);
    CU_ASSERT_EQUAL_FATAL(st_count(f), n);
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_tensor_at(f, i);
        CU_ASSERT_STRING_EQUAL(t->name, e[i].name); /* file order = write order */
        CU_ASSERT_PTR_EQUAL(st_find(f, e[i].name), t);
        CU_ASSERT_STRING_EQUAL(t->dtype, e[i].dtype);
        CU_ASSERT_EQUAL(t->ndim, e[i].ndim);
        size_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            CU_ASSERT_EQUAL(t->shape[d], e[i].shape[d]);
            numel *= (size_t)e[i].shape[d];
        }
        CU_ASSERT_EQUAL(t->numel, numel);
        CU_ASSERT_EQUAL(t->nbytes, numel * st_dtype_size(e[i].dtype));
        if (t->nbytes) CU_ASSERT(memcmp(t->data, e[i].data, t->nbytes) == 0);
    }
    CU_ASSERT_PTR_NULL(st_tensor_at(f, n));
    CU_ASSERT_PTR_NULL(st_find(f, "nope"));
    CU_ASSERT_STRING_EQUAL(st_meta(f, "format"), "pt");
    CU_ASSERT_STRING_EQUAL(st_meta(f, "pipetrain.step"), "42");
    CU_ASSERT_STRING_EQUAL(st_meta(f, "empty"), "");
    CU_ASSERT_PTR_NULL(st_meta(f, "absent"));

    float got[24];
    CU_ASSERT(st_read_f32(f, "model.embed_tokens.weight", got, 24, err) == 0);
    CU_ASSERT(memcmp(got, f32, sizeof got) == 0);
    int64_t step = 0;
    CU_ASSERT(st_read(f, "scalar.step", "I64", &step, 1, err) == 0 && step == i64[0]);
    CU_ASSERT(st_read_f32(f, "missing", got, 24, err) == -1 && strstr(err, "missing") && strstr(err, path));
    CU_ASSERT(st_read_f32(f, "f64", got, 5, err) == -1 && strstr(err, "dtype F64"));
    CU_ASSERT(st_read_f32(f, "model.embed_tokens.weight", got, 23, err) == -1 && strstr(err, "24 elements"));
    st_close(f);
    st_close(NULL);
}

static void test_no_tensors(void)
{
    const char *path = tmp_path("none.safetensors");
    char err[ERR_LEN] = "";
    CU_ASSERT_FATAL(st_write(path, NULL, 0, NULL, err) == 0);
    check_raw_header(path, NULL, 0);
    st_file *f = NULL;
    CU_ASSERT_FATAL(st_open(&f, path, err) == 0);
    CU_ASSERT_EQUAL(st_count(f), 0);
    CU_ASSERT_PTR_NULL(st_meta(f, "format"));
    st_close(f);
}

static void test_write_errors(void)
{
    char err[ERR_LEN] = "";
    const char *path = tmp_path("keep.safetensors");
    float a[4] = { 1, 2, 3, 4 };
    st_entry good = { "a", "F32", 1, { 4 }, a };
    CU_ASSERT_FATAL(st_write(path, &good, 1, NULL, err) == 0);
    size_t n0, n1;
    uint8_t *before = slurp(path, &n0);
    st_entry bad[][2] = {
        { good, { "a", "F32", 1, { 4 }, a } },          /* duplicate name */
        { good, { "b", "F16X", 1, { 4 }, a } },         /* unknown dtype */
        { good, { "b", "F32", 1, { -4 }, a } },         /* negative shape */
        { good, { "b", "F32", 1, { 4 }, NULL } },       /* no data */
        { good, { "__metadata__", "F32", 1, { 4 }, a } },
        { good, { "b", "F32", 5, { 4 }, a } },          /* ndim > 4 */
        { good, { "b", "F32", 4, { 1LL << 40, 1LL << 40, 1LL << 40, 8 }, a } },
    };
    const char *want[] = { "duplicate", "unknown dtype", "negative shape", "data is NULL",
                           "not allowed", "ndim 5", "overflows" };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        err[0] = 0;
        CU_ASSERT_EQUAL(st_write(path, bad[i], 2, NULL, err), -1);
        if (!strstr(err, want[i])) fprintf(stderr, "\n  case %zu: \"%s\"\n", i, err);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, want[i]));
        CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
    }
    const char *meta[] = { "k", NULL };
    CU_ASSERT_EQUAL(st_write(path, &good, 1, meta, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "metadata key \"k\""));
    const char *meta2[] = { "k", "1", "k", "2", NULL };
    CU_ASSERT_EQUAL(st_write(path, &good, 1, meta2, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "duplicate metadata key \"k\""));
    uint8_t *after = slurp(path, &n1); /* the failed writes left the old file alone */
    CU_ASSERT(before && after && n0 == n1 && memcmp(before, after, n0) == 0);
    free(before);
    free(after);
    CU_ASSERT_EQUAL(st_write("/nonexistent-dir/x.safetensors", &good, 1, NULL, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "/nonexistent-dir/x.safetensors"));
}

/* st_write_fill's callback: entry i's bytes from the entries' own data, in
 * pieces of `piece` bytes; mode 1 gives a byte too few, 2 one too many, 3 fails. */
typedef struct {
    const st_entry *e;
    size_t piece;
    int mode, calls;
} fill_arg;

static int fill_pieces(void *arg, int i, st_sink *s, char *err)
{
    fill_arg *a = arg;
    a->calls++;
    size_t nb = st_dtype_size(a->e[i].dtype);
    for (int d = 0; d < a->e[i].ndim; d++) nb *= (size_t)a->e[i].shape[d];
    if (a->mode == 3) return seterr(err, "the gather of %s broke", a->e[i].name);
    if (a->mode == 1) nb--;
    const uint8_t *p = a->e[i].data;
    for (size_t o = 0; o < nb; o += a->piece)
        if (st_sink_write(s, p + o, nb - o < a->piece ? nb - o : a->piece)) return -1;
    if (a->mode == 2 && st_sink_write(s, p, 1)) return -1;
    return 0;
}

static void test_write_fill(void)
{
    st_entry e[8] = { 0 }, f[8];
    int n = fill_entries(e);
    const char *meta[] = { "format", "pt", NULL };
    char err[ERR_LEN] = "";
    const char *a = tmp_path("direct.safetensors"), *b = tmp_path("filled.safetensors");
    CU_ASSERT_FATAL(st_write(a, e, n, meta, err) == 0);
    size_t na, nb;
    uint8_t *da = slurp(a, &na);
    for (size_t piece = 1; piece <= 64; piece *= 4) { /* every entry with data from the callback */
        memcpy(f, e, sizeof f);
        int want = 0;
        for (int i = 0; i < n; i++) {
            size_t sz = st_dtype_size(e[i].dtype);
            for (int d = 0; d < e[i].ndim; d++) sz *= (size_t)e[i].shape[d];
            if (sz) { f[i].data = NULL; want++; }
        }
        fill_arg fa = { e, piece, 0, 0 };
        CU_ASSERT_FATAL(st_write_fill(b, f, n, meta, fill_pieces, &fa, err) == 0);
        CU_ASSERT_EQUAL(fa.calls, want); /* an empty tensor needs no callback */
        uint8_t *db = slurp(b, &nb);
        CU_ASSERT(da && db && na == nb && memcmp(da, db, na) == 0); /* st_write's bytes */
        free(db);
    }
    free(da);
    CU_ASSERT_EQUAL(st_sink_write(NULL, "x", 1), 0); /* no sink: discarded */
    const char *want[] = { "", "another size", "another size", "the gather of model.embed_tokens.weight broke" };
    for (int mode = 1; mode <= 3; mode++) {
        memcpy(f, e, sizeof f);
        f[0].data = NULL;
        fill_arg fa = { e, 8, mode, 0 };
        err[0] = 0;
        const char *c = tmp_path("bad-fill.safetensors");
        CU_ASSERT_EQUAL(st_write_fill(c, f, n, meta, fill_pieces, &fa, err), -1);
        if (!strstr(err, want[mode]) || !strstr(err, c)) fprintf(stderr, "\n  mode %d: \"%s\"\n", mode, err);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, want[mode]));
        CU_ASSERT_PTR_NOT_NULL(strstr(err, c));
        CU_ASSERT(access(c, F_OK) != 0); /* nothing left under the name */
    }
    memcpy(f, e, sizeof f); /* without a callback a NULL data is still refused */
    f[0].data = NULL;
    CU_ASSERT_EQUAL(st_write_fill(b, f, n, meta, NULL, NULL, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "data is NULL"));
}

static void test_durable_file(void)
{
    const char *path = tmp_path("manifest.json");
    char err[ERR_LEN] = "";
    const char *a = "{\"v\":1}\n", *b = "{\"v\":2,\"longer\":true}\n";
    CU_ASSERT_FATAL(base_write_durable(path, a, strlen(a), err) == 0);
    CU_ASSERT_FATAL(base_write_durable(path, b, strlen(b), err) == 0); /* replaces */
    size_t n;
    uint8_t *got = slurp(path, &n);
    CU_ASSERT(got && n == strlen(b) && memcmp(got, b, n) == 0);
    free(got);
    char tmpname[600];
    snprintf(tmpname, sizeof tmpname, "%s.tmp", path);
    CU_ASSERT(access(tmpname, F_OK) != 0);
    CU_ASSERT_EQUAL(base_write_durable("/nonexistent-dir/m.json", a, 1, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "/nonexistent-dir/m.json"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "No such file"));
}

/* A writer SIGKILLed at many points of st_write never leaves a damaged file under
 * the final name: it holds either the complete old or the complete new tensor. */
static void test_kill_during_write(void)
{
    const size_t n = 1u << 22; /* 16 MiB of F32 */
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = 1.0f;
    const char *path = tmp_path("killed.safetensors");
    char err[ERR_LEN] = "";
    st_entry e = { "w", "F32", 1, { (int64_t)n }, v };
    CU_ASSERT_FATAL(st_write(path, &e, 1, NULL, err) == 0);
    int saw_old = 0, saw_new = 0;
    for (int trial = 0; trial < 12; trial++) {
        float value = (float)(trial + 2);
        pid_t pid = fork();
        CU_ASSERT_FATAL(pid >= 0);
        if (pid == 0) {
            for (size_t i = 0; i < n; i++) v[i] = value;
            _exit(st_write(path, &e, 1, NULL, err) == 0 ? 0 : 1);
        }
        usleep((useconds_t)(trial * 2500));
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        st_file *f = NULL;
        CU_ASSERT_FATAL(st_open(&f, path, err) == 0);
        const st_tensor *t = st_find(f, "w");
        CU_ASSERT_FATAL(t != NULL && t->numel == n);
        const float *got = t->data;
        float first = got[0];
        size_t mixed = 0;
        for (size_t i = 0; i < n; i++) mixed += got[i] != first;
        CU_ASSERT_EQUAL(mixed, 0);
        if (first == value) saw_new++;
        else saw_old++;
        for (size_t i = 0; i < n; i++) v[i] = first; /* the file's content is the next "old" */
        st_close(f);
    }
    /* informational: how many kills landed before / after the rename */
    fprintf(stderr, "(old %d, new %d) ", saw_old, saw_new);
    char tmpname[600];
    snprintf(tmpname, sizeof tmpname, "%s.tmp", path);
    unlink(tmpname);
    free(v);
}

/* Writes an 8-byte length (hlen_field), the header text and data_len zero bytes. */
static const char *raw_file(const char *name, uint64_t hlen_field, const char *header, size_t data_len)
{
    const char *path = tmp_path(name);
    FILE *f = fopen(path, "wb");
    CU_ASSERT_FATAL(f != NULL);
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)(hlen_field >> (8 * i));
    fwrite(len, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    for (size_t i = 0; i < data_len; i++) fputc(0, f);
    fclose(f);
    return path;
}

static void expect_refused(const char *path, const char *what)
{
    st_file *f = (st_file *)1;
    char err[ERR_LEN] = "";
    int rc = st_open(&f, path, err);
    if (rc == 0 || !strstr(err, path) || !strstr(err, what))
        fprintf(stderr, "\n  %s: rc %d, message \"%s\", expected \"%s\"\n", path, rc, err, what);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT_PTR_NULL(f);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, what));
    if (rc == 0) st_close(f);
}

#define T2(a, b) "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":" a "}," \
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":" b "}}"

static void test_malformed(void)
{
    const char *ok = T2("[0,8]", "[8,16]");
    /* the well-formed base case opens, so each failure below is the one defect */
    st_file *f = NULL;
    char err[ERR_LEN];
    CU_ASSERT(st_open(&f, raw_file("ok.st", strlen(ok), ok, 16), err) == 0);
    st_close(f);

    FILE *t = fopen(tmp_path("trunc.st"), "wb");
    fwrite("\x10\0\0\0", 1, 4, t);
    fclose(t);
    expect_refused(tmp_path("trunc.st"), "too short for the 8-byte header length");
    expect_refused(raw_file("past.st", 1000, ok, 16), "runs past the end");
    expect_refused(raw_file("huge.st", 1ULL << 60, ok, 16), "exceeds the 100000000-byte limit");
    expect_refused(raw_file("json.st", 9, "{\"a\": [1,", 0), "not valid JSON");
    expect_refused(raw_file("overlap.st", strlen(T2("[0,8]", "[4,12]")), T2("[0,8]", "[4,12]"), 12),
                   "overlap tensor a");
    expect_refused(raw_file("gap.st", strlen(T2("[0,8]", "[12,20]")), T2("[0,8]", "[12,20]"), 20),
                   "gap of 4 bytes");
    expect_refused(raw_file("pastend.st", strlen(ok), ok, 12), "past the end");
    expect_refused(raw_file("trailing.st", strlen(ok), ok, 20), "trailing bytes");
    const char *bytes = "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}";
    expect_refused(raw_file("bytes.st", strlen(bytes), bytes, 8), "shape x F32 needs 12");
    const char *dt = "{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    expect_refused(raw_file("dtype.st", strlen(dt), dt, 8), "unknown dtype \"F33\"");
    const char *neg = "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}";
    expect_refused(raw_file("neg.st", strlen(neg), neg, 8), "shape[0] is not a non-negative integer");
    const char *meta = "{\"__metadata__\":{\"k\":1}}";
    expect_refused(raw_file("meta.st", strlen(meta), meta, 0), "\"__metadata__\".\"k\" is not a string");
    const char *ovf = "{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,8]}}";
    expect_refused(raw_file("ovf.st", strlen(ovf), ovf, 8), "overflow");
    const char *dup = "{\"a\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1]},"
                      "\"a\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[1,2]}}";
    expect_refused(raw_file("dup.st", strlen(dup), dup, 2), "duplicate");
    expect_refused(raw_file("array.st", 2, "[]", 0), "not a JSON object");
    expect_refused(tmp_path("absent.st"), "No such file");
}

/* tests/bad/safetensors/NAME with NAME.expect: st_open must refuse NAME with a
 * message naming the file and containing the first line of NAME.expect. */
static void test_bad_corpus(void)
{
    const char *dir = getenv("BAD_ST_DIR") ? getenv("BAD_ST_DIR") : "tests/bad/safetensors";
    CU_ASSERT(tests_each_expect(dir, expect_refused) >= 10);
}

static void cleanup(void) { tests_rm_dir(tmpdir); }

int main(void)
{
    CU_TestInfo tests[] = {
        { "write, open, bitwise round trip", test_roundtrip },
        { "file without tensors", test_no_tensors },
        { "write errors leave the old file", test_write_errors },
        { "write with a fill callback: the same bytes, errors", test_write_fill },
        { "durable file write", test_durable_file },
        { "kill during write leaves old or new", test_kill_during_write },
        { "malformed files refused", test_malformed },
        { "bad safetensors corpus", test_bad_corpus },
        CU_TEST_INFO_NULL,
    };
    int rc = tests_run("safetensors", tests);
    cleanup();
    return rc;
}
