/* test_hf_load.c — starting from a Hugging Face checkpoint (issue 16): F16 and
 * BF16 conversion (subnormals, infinities, NaN payloads), config.json, a part
 * written as export writes it and loaded back bitwise, BF16/F16 files within
 * rounding, the sharded index form where a part opens only the shards holding
 * its tensors, the mmap reader touching only the tensors asked for, and every
 * bad input (missing tensor, shape, dtype, truncated file, offsets out of
 * range, unsupported config) refused naming the file and the tensor/field. */
#include <jansson.h>
#include <stdint.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "model/hf_load.h"
#include "model/data.h"
#include "model/safetensors.h"
#include "stage/train.h"
#include "tests/tests.h"

static char tmpdir[256];

static const char *dir_path(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/test_hf.XXXXXX");
        CU_ASSERT_FATAL(mkdtemp(tmpdir) != NULL);
    }
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    mkdir(buf[k], 0755);
    return buf[k];
}

static const model_config cfg0 = { .dim = 16, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .ffn_dim = 24,
                                   .vocab_size = 40, .seq_len = 8, .norm_eps = 1e-5f, .rope_theta = 10000,
                                   .tie_embeddings = 0 };

static model_part *whole(const model_config *c, uint64_t seed)
{
    int units[16], n = model_n_units(c);
    for (int i = 0; i < n; i++) units[i] = i;
    return model_part_new(c, units, n, 1, seed);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs(text, f);
    fclose(f);
}

static void write_config(const char *dir, const model_config *c, const char *extra)
{
    char text[1024];
    snprintf(text, sizeof text,
             "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": %d, "
             "\"intermediate_size\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d, "
             "\"num_hidden_layers\": %d, \"vocab_size\": %d, \"max_position_embeddings\": %d, "
             "\"rms_norm_eps\": %.17g, \"rope_theta\": %.17g, \"tie_word_embeddings\": %s%s}",
             c->dim, c->ffn_dim, c->n_heads, c->n_kv_heads, c->n_layers, c->vocab_size, c->seq_len,
             (double)c->norm_eps, (double)c->rope_theta, c->tie_embeddings ? "true" : "false", extra);
    write_text(dir, "config.json", text);
}

/* f32 -> bf16 with round-to-nearest-even (NaN kept quiet), as the shell test's python does. */
static uint16_t bf16_rne(float x)
{
    uint32_t b;
    memcpy(&b, &x, 4);
    if ((b & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((b >> 16) | 0x40);
    return (uint16_t)((b + 0x7fffu + ((b >> 16) & 1)) >> 16);
}

/* f32 -> f16, round to nearest even (subnormals included; no overflow expected). */
static uint16_t f16_of(float x)
{
    uint32_t b;
    memcpy(&b, &x, 4);
    uint32_t sign = (b >> 16) & 0x8000, e = (b >> 23) & 0xff, m = b & 0x7fffff;
    if (e == 0 && m == 0) return (uint16_t)sign;
    int ne = (int)e - 127 + 15;
    CU_ASSERT_FATAL(ne < 31);
    if (ne <= 0) return (uint16_t)(sign | (uint32_t)nearbyintf(fabsf(x) * 16777216.0f)); /* subnormal: exact scaling, RNE */
    uint32_t v = ((uint32_t)ne << 10) | (m >> 13), rest = m & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (v & 1))) v++;
    return (uint16_t)(sign | v);
}

/* Writes p's tensors (dtype "F32", "BF16" or "F16"; skip: a name left out)
 * into dir/file, as `pipetrain export` does. */
static void write_part(const char *dir, const char *file, const model_part *p, const char *dtype, const char *skip,
                       int lo, int hi)
{
    st_entry e[64];
    void *conv[64] = { 0 };
    int n = 0;
    for (int i = 0; i < p->n_tensors; i++) {
        const model_tensor *t = &p->tensors[i];
        if ((skip && !strcmp(skip, t->name)) || t->unit < lo || t->unit > hi) continue;
        const float *src = p->params + t->offset;
        const void *data = src;
        if (strcmp(dtype, "F32")) {
            uint16_t *h = malloc(t->numel * 2);
            for (size_t k = 0; k < t->numel; k++) h[k] = !strcmp(dtype, "BF16") ? bf16_rne(src[k]) : f16_of(src[k]);
            data = conv[n] = h;
        }
        e[n] = (st_entry){ t->name, dtype, t->ndim, { (int64_t)t->shape[0], (int64_t)t->shape[1] }, data };
        n++;
    }
    char path[600], err[ERR_LEN];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    CU_ASSERT_FATAL(st_write(path, e, n, NULL, err) == 0);
    for (int i = 0; i < n; i++) free(conv[i]);
}

static void test_f16(void)
{
    const uint8_t h[] = { 0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00, 0xff, 0x03, 0x00, 0x7c,
                          0x00, 0xfc, 0x00, 0x80, 0xff, 0x7b, 0x01, 0x7e, 0x00, 0x04 };
    float f[10];
    hf_f16_to_f32(f, h, 10);
    CU_ASSERT_EQUAL(f[0], 1.0f);
    CU_ASSERT_EQUAL(f[1], -2.0f);
    CU_ASSERT_EQUAL(f[2], ldexpf(1, -24));            /* smallest subnormal */
    CU_ASSERT_EQUAL(f[3], ldexpf(1023, -24));         /* largest subnormal */
    CU_ASSERT(isinf(f[4]) && f[4] > 0);
    CU_ASSERT(isinf(f[5]) && f[5] < 0);
    CU_ASSERT(f[6] == 0 && signbit(f[6]));            /* -0 */
    CU_ASSERT_EQUAL(f[7], 65504.0f);                  /* largest half */
    uint32_t bits;
    memcpy(&bits, &f[8], 4);
    CU_ASSERT(isnan(f[8]) && bits == (0x7f800000u | (0x201u << 13))); /* NaN payload kept */
    CU_ASSERT_EQUAL(f[9], ldexpf(1, -14));            /* smallest normal */
}

static void test_bf16(void)
{
    const uint8_t h[] = { 0x80, 0x3f, 0x80, 0x7f, 0xc1, 0xff, 0x01, 0x00 };
    float f[4];
    hf_bf16_to_f32(f, h, 4);
    CU_ASSERT_EQUAL(f[0], 1.0f);
    CU_ASSERT(isinf(f[1]));
    uint32_t bits;
    memcpy(&bits, &f[2], 4);
    CU_ASSERT(isnan(f[2]) && bits == 0xffc10000u);
    memcpy(&bits, &f[3], 4);
    CU_ASSERT_EQUAL(bits, 0x00010000u);               /* a subnormal f32 */
}

static void test_config(void)
{
    const char *d = dir_path("cfg");
    model_config c;
    long mp;
    char err[ERR_LEN];
    write_config(d, &cfg0, "");
    CU_ASSERT_FATAL(hf_config_load(d, &c, &mp, err) == 0);
    CU_ASSERT(!memcmp(&c, &cfg0, sizeof c));
    CU_ASSERT_EQUAL(mp, 8);
    write_config(d, &cfg0, ", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}");
    CU_ASSERT(hf_config_load(d, &c, &mp, err) != 0 && strstr(err, "config.json") && strstr(err, "rope_scaling"));
    write_config(d, &cfg0, ", \"attention_bias\": true");
    CU_ASSERT(hf_config_load(d, &c, &mp, err) != 0 && strstr(err, "attention_bias"));
    write_config(d, &cfg0, ", \"head_dim\": 8");
    CU_ASSERT(hf_config_load(d, &c, &mp, err) != 0 && strstr(err, "head_dim"));
    write_text(d, "config.json", "{\"intermediate_size\": 24, \"num_attention_heads\": 4, \"num_hidden_layers\": 2, "
                                 "\"vocab_size\": 40}");
    CU_ASSERT(hf_config_load(d, &c, &mp, err) != 0 && strstr(err, "config.json") && strstr(err, "hidden_size"));
    write_text(d, "config.json", "{\"hidden_size\": 16, \"intermediate_size\": 24, \"num_attention_heads\": 4, "
                                 "\"num_hidden_layers\": 2, \"vocab_size\": 40}");
    CU_ASSERT_FATAL(hf_config_load(d, &c, &mp, err) == 0); /* HF's LlamaConfig defaults */
    CU_ASSERT(c.n_kv_heads == 4 && c.norm_eps == 1e-6f && c.rope_theta == 10000 && !c.tie_embeddings && mp == 2048);
}

/* Written as export writes it, loaded into a part initialised otherwise: the same bits. */
static void test_f32_bitwise(void)
{
    const char *d = dir_path("f32");
    model_part *a = whole(&cfg0, 7), *b = whole(&cfg0, 99);
    write_config(d, &cfg0, "");
    write_part(d, "model.safetensors", a, "F32", NULL, 0, 99);
    char err[ERR_LEN];
    hf_stats st;
    CU_ASSERT(memcmp(a->params, b->params, a->n_params * 4) != 0);
    CU_ASSERT_FATAL(hf_check(d, &cfg0, err) == 0);
    CU_ASSERT_FATAL(hf_load_part(d, b, &st, err) == 0);
    CU_ASSERT(memcmp(a->params, b->params, a->n_params * 4) == 0);
    CU_ASSERT_EQUAL(st.tensors, a->n_tensors);
    CU_ASSERT_EQUAL(st.bytes, a->n_params * 4);
    CU_ASSERT(st.files == 1 && !strcmp(st.names, "model.safetensors"));
    /* export -> init-from -> eval: the same loss, to the bit */
    char bin[600];
    snprintf(bin, sizeof bin, "%s/tokens.bin", d);
    FILE *f = fopen(bin, "wb");
    CU_ASSERT_FATAL(f != NULL);
    rng_t r = { 42 };
    for (int i = 0; i < 2000; i++) {
        uint16_t tok = (uint16_t)rng_below(&r, (uint64_t)cfg0.vocab_size);
        fwrite(&tok, 2, 1, f);
    }
    fclose(f);
    data_set ds;
    CU_ASSERT_FATAL(data_load(&ds, bin, "bin", cfg0.vocab_size, 0.5, cfg0.seq_len, err) == 0);
    size_t na, nb;
    double la = stage_eval(a, &ds, 0, 1, &na), lb = stage_eval(b, &ds, 0, 1, &nb);
    CU_ASSERT(na == nb && na > 0 && la == lb && isfinite(la));
    data_free(&ds);
    /* a part of two units reads only their bytes */
    int units[2] = { 2, 3 };
    model_part *h = model_part_new(&cfg0, units, 2, 1, 5);
    CU_ASSERT_FATAL(hf_load_part(d, h, &st, err) == 0);
    CU_ASSERT_EQUAL(st.bytes, h->n_params * 4);
    CU_ASSERT(memcmp(h->params, a->params + a->unit_off[2], h->n_params * 4) == 0);
    model_part_free(h);
    model_part_free(a);
    model_part_free(b);
}

/* Tied embeddings: a head on its own stage gets the embedding in its copy. */
static void test_tied_head(void)
{
    model_config c = cfg0;
    c.tie_embeddings = 1;
    const char *d = dir_path("tied");
    model_part *a = whole(&c, 3);
    write_config(d, &c, "");
    write_part(d, "model.safetensors", a, "F32", NULL, 0, 99);
    int units[1] = { 3 };
    model_part *h = model_part_new(&c, units, 1, 1, 4);
    char err[ERR_LEN];
    CU_ASSERT_FATAL(hf_check(d, &c, err) == 0);
    CU_ASSERT_FATAL(hf_load_part(d, h, NULL, err) == 0);
    CU_ASSERT(h->tied_w != h->params && memcmp(h->tied_w, a->params, (size_t)c.vocab_size * c.dim * 4) == 0);
    model_part_free(h);
    model_part_free(a);
}

static void test_half_precision(void)
{
    const char *dt[2] = { "BF16", "F16" };
    for (int k = 0; k < 2; k++) {
        const char *d = dir_path(dt[k]);
        model_part *a = whole(&cfg0, 7), *b = whole(&cfg0, 99);
        write_config(d, &cfg0, "");
        write_part(d, "model.safetensors", a, dt[k], NULL, 0, 99);
        char err[ERR_LEN];
        hf_stats st;
        CU_ASSERT_FATAL(hf_load_part(d, b, &st, err) == 0);
        CU_ASSERT_EQUAL(st.bytes, a->n_params * 2);
        double *x = malloc(a->n_params * sizeof(double)), *y = malloc(a->n_params * sizeof(double));
        size_t exact = 0;
        for (size_t i = 0; i < a->n_params; i++) {
            x[i] = b->params[i];
            y[i] = a->params[i];
            if (k == 0) { /* exactly the RNE bf16 of the f32 */
                uint16_t h = bf16_rne(a->params[i]);
                float r;
                hf_bf16_to_f32(&r, &h, 1);
                exact += r == b->params[i];
            }
        }
        /* half an ulp: 2^-8 relative for bf16 (8 significant bits), 2^-11 for f16, whose
         * subnormals (below 2^-14; normal(0, 0.02) weights have some) add 2^-25 absolute */
        CU_ASSERT(tests_close(dt[k], x, y, a->n_params, k == 0 ? 0 : ldexp(1, -25), k == 0 ? 1.0 / 256 : 1.0 / 2048));
        if (k == 0) CU_ASSERT_EQUAL(exact, a->n_params);
        free(x); free(y);
        model_part_free(a);
        model_part_free(b);
    }
}

/* The sharded form: units 0..1 in shard 1, units 2..3 in shard 2. A part of
 * units 0..1 loads with shard 2 gone; one of units 2..3 names the missing file. */
static void test_sharded(void)
{
    const char *d = dir_path("sharded");
    model_part *a = whole(&cfg0, 11), *b = whole(&cfg0, 12);
    write_config(d, &cfg0, "");
    write_part(d, "model-00001-of-00002.safetensors", a, "F32", NULL, 0, 1);
    write_part(d, "model-00002-of-00002.safetensors", a, "F32", NULL, 2, 3);
    json_t *map = json_object();
    for (int i = 0; i < a->n_tensors; i++)
        json_object_set_new(map, a->tensors[i].name, json_string(a->tensors[i].unit <= 1 ? "model-00001-of-00002.safetensors"
                                                                                       : "model-00002-of-00002.safetensors"));
    json_t *idx = json_pack("{s:{s:i},s:o}", "metadata", "total_size", (int)(a->n_params * 4), "weight_map", map);
    char *text = json_dumps(idx, JSON_INDENT(2));
    write_text(d, "model.safetensors.index.json", text);
    free(text);
    json_decref(idx);
    char err[ERR_LEN], p2[600];
    hf_stats st;
    CU_ASSERT_FATAL(hf_load_part(d, b, &st, err) == 0);
    CU_ASSERT(memcmp(a->params, b->params, a->n_params * 4) == 0);
    CU_ASSERT_EQUAL(st.files, 2);
    snprintf(p2, sizeof p2, "%s/model-00002-of-00002.safetensors", d);
    CU_ASSERT_FATAL(unlink(p2) == 0);
    int u01[2] = { 0, 1 }, u23[2] = { 2, 3 };
    model_part *lo = model_part_new(&cfg0, u01, 2, 1, 1), *hi = model_part_new(&cfg0, u23, 2, 1, 1);
    CU_ASSERT(hf_load_part(d, lo, &st, err) == 0);
    CU_ASSERT(st.files == 1 && !strcmp(st.names, "model-00001-of-00002.safetensors"));
    CU_ASSERT(memcmp(lo->params, a->params, lo->n_params * 4) == 0);
    CU_ASSERT(hf_load_part(d, hi, &st, err) != 0 && strstr(err, "model-00002-of-00002.safetensors"));
    CU_ASSERT(hf_check(d, &cfg0, err) != 0 && strstr(err, "model-00002-of-00002.safetensors"));
    /* a weight_map entry escaping the directory */
    write_text(d, "model.safetensors.index.json", "{\"weight_map\": {\"model.embed_tokens.weight\": \"../x\"}}");
    CU_ASSERT(hf_load_part(d, lo, &st, err) != 0 && strstr(err, "index.json") && strstr(err, "embed_tokens"));
    model_part_free(lo); model_part_free(hi);
    model_part_free(a); model_part_free(b);
}

/* expect: hf_load_part and hf_check of d refuse with err naming want1 and want2. */
static void expect_bad(const char *d, const char *want1, const char *want2)
{
    model_part *b = whole(&cfg0, 1);
    char err[ERR_LEN] = "", err2[ERR_LEN] = "";
    int rc = hf_load_part(d, b, NULL, err), rc2 = hf_check(d, &cfg0, err2);
    if (!(rc && strstr(err, want1) && strstr(err, want2)) || !(rc2 && strstr(err2, want1) && strstr(err2, want2)))
        fprintf(stderr, "\n  want \"%s\" and \"%s\", got (%d) %s | (%d) %s\n", want1, want2, rc, err, rc2, err2);
    CU_ASSERT(rc != 0 && strstr(err, want1) && strstr(err, want2));
    CU_ASSERT(rc2 != 0 && strstr(err2, want1) && strstr(err2, want2));
    model_part_free(b);
}

static void test_bad_inputs(void)
{
    model_part *a = whole(&cfg0, 7);
    const char *d = dir_path("missing");
    write_config(d, &cfg0, "");
    write_part(d, "model.safetensors", a, "F32", "model.layers.1.mlp.up_proj.weight", 0, 99);
    expect_bad(d, "missing/model.safetensors", "model.layers.1.mlp.up_proj.weight");

    d = dir_path("shape"); /* a model with another ffn_dim */
    model_config c2 = cfg0;
    c2.ffn_dim = 32;
    model_part *w = whole(&c2, 7);
    write_config(d, &cfg0, "");
    write_part(d, "model.safetensors", w, "F32", NULL, 0, 99);
    expect_bad(d, "shape/model.safetensors", "model.layers.0.mlp.gate_proj.weight: shape [32, 16], expected [24, 16]");
    model_part_free(w);

    d = dir_path("dtype"); /* the embedding stored as I32 */
    {
        st_entry e[1] = { { "model.embed_tokens.weight", "I32", 2, { 40, 16 }, a->params } };
        char p[600], err[ERR_LEN];
        snprintf(p, sizeof p, "%s/model.safetensors", d);
        CU_ASSERT_FATAL(st_write(p, e, 1, NULL, err) == 0);
        write_config(d, &cfg0, "");
        expect_bad(d, "dtype/model.safetensors", "model.embed_tokens.weight: dtype I32 not supported");
    }

    d = dir_path("trunc");
    write_config(d, &cfg0, "");
    write_part(d, "model.safetensors", a, "F32", NULL, 0, 99);
    char p[600];
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    struct stat sb;
    CU_ASSERT_FATAL(stat(p, &sb) == 0);
    CU_ASSERT_FATAL(truncate(p, sb.st_size - 10) == 0);
    expect_bad(d, "trunc/model.safetensors", "lm_head.weight"); /* the last tensor runs past the end */

    d = dir_path("offsets"); /* a header whose offsets point past the data */
    {
        const char *hdr = "{\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4096]}}";
        snprintf(p, sizeof p, "%s/model.safetensors", d);
        FILE *f = fopen(p, "wb");
        uint8_t len[8];
        put_u64le(len, strlen(hdr));
        fwrite(len, 1, 8, f);
        fwrite(hdr, 1, strlen(hdr), f);
        fwrite(a->params, 4, 2, f);
        fclose(f);
        write_config(d, &cfg0, "");
        expect_bad(d, "offsets/model.safetensors", "model.embed_tokens.weight");
    }
    d = dir_path("nofile");
    write_config(d, &cfg0, "");
    expect_bad(d, "nofile/model.safetensors", "cannot open");
    model_part_free(a);
}

/* Only the part's pages are read: the file's pages are dropped from the page
 * cache, a part of the last block and the head is loaded, and mincore shows
 * its tensors' pages resident and the embedding's (64 KiB, never asked for)
 * not. */
static void test_reads_only_its_pages(void)
{
    model_config c = cfg0;
    c.dim = 64; c.ffn_dim = 128; c.vocab_size = 256; c.n_kv_heads = 2;
    const char *d = dir_path("pages");
    model_part *a = whole(&c, 7);
    write_config(d, &c, "");
    write_part(d, "model.safetensors", a, "F32", NULL, 0, 99); /* fsynced: its pages are clean */
    char p[600], err[ERR_LEN];
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    int fd = open(p, O_RDONLY);
    CU_ASSERT_FATAL(fd >= 0);
    struct stat sb;
    fstat(fd, &sb);
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), np = ((size_t)sb.st_size + pg - 1) / pg;
    unsigned char *vec = calloc(np, 1);
    uint8_t lenb[8];
    CU_ASSERT_FATAL(pread(fd, lenb, 8, 0) == 8);
    uint64_t base = 8 + get_u64le(lenb);
    st_file *f;
    CU_ASSERT_FATAL(st_open(&f, p, err) == 0);
    const st_tensor *emb = st_find(f, "model.embed_tokens.weight"), *head = st_find(f, "lm_head.weight");
    CU_ASSERT_FATAL(emb && head);
    size_t e0 = (size_t)(base + emb->begin + pg - 1) / pg, e1 = (size_t)(base + emb->end) / pg; /* whole pages */
    size_t h0 = (size_t)(base + head->begin + pg - 1) / pg, h1 = (size_t)(base + head->end) / pg;
    st_close(f);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
    CU_ASSERT_FATAL(m != MAP_FAILED);
    CU_ASSERT_FATAL(mincore(m, (size_t)sb.st_size, vec) == 0);
    size_t resident = 0;
    for (size_t i = e0; i < e1; i++) resident += vec[i] & 1;
    if (resident) { /* a file system that keeps them: nothing to observe here */
        fprintf(stderr, "\n  note: the page cache kept the file's pages; the check is not possible here\n");
    } else {
        int units[2] = { 2, 3 };
        model_part *h = model_part_new(&c, units, 2, 1, 5);
        CU_ASSERT_FATAL(hf_load_part(d, h, NULL, err) == 0);
        CU_ASSERT(memcmp(h->params, a->params + a->unit_off[2], h->n_params * 4) == 0);
        CU_ASSERT_FATAL(mincore(m, (size_t)sb.st_size, vec) == 0);
        size_t emb_res = 0, head_res = 0;
        for (size_t i = e0; i < e1; i++) emb_res += vec[i] & 1;
        for (size_t i = h0; i < h1; i++) head_res += vec[i] & 1;
        if (emb_res || head_res != h1 - h0)
            fprintf(stderr, "\n  embedding pages resident %zu of %zu, lm_head %zu of %zu\n", emb_res, e1 - e0, head_res,
                    h1 - h0);
        CU_ASSERT(e1 - e0 >= 8 && emb_res == 0);
        CU_ASSERT(h1 - h0 >= 8 && head_res == h1 - h0);
        model_part_free(h);
    }
    munmap(m, (size_t)sb.st_size);
    close(fd);
    free(vec);
    model_part_free(a);
}

static void cleanup(void) { tests_rm_dir(tmpdir); }

int main(void)
{
    CU_TestInfo tests[] = {
        { "F16 to f32: subnormals, inf, NaN", test_f16 },
        { "BF16 to f32", test_bf16 },
        { "config.json, defaults, unsupported", test_config },
        { "F32 export layout loads bitwise", test_f32_bitwise },
        { "tied head on its own stage", test_tied_head },
        { "BF16 and F16 within rounding", test_half_precision },
        { "sharded: a part opens only its shards", test_sharded },
        { "bad inputs name file and tensor", test_bad_inputs },
        { "the mapped reader reads only the part's pages", test_reads_only_its_pages },
        CU_TEST_INFO_NULL,
    };
    int rc = tests_run("hf_load", tests);
    cleanup();
    return rc;
}
