/* cli_tokenizer.c — `pipetrain tokenizer train` (learn a byte-level BPE and write
 * a Hugging Face tokenizer.json), `pipetrain tokenize` (a text file to a nanoGPT
 * .bin), and the glue that gives a topology's data.tokenizer to the data loader
 * and a checkpoint's tokenizer to sample/eval/export. The BPE is model/bpe.h. */
#include "cli/cli.h"
#include "model/bpe.h"
#include "model/data.h"
#include "model/util.h"
#include "run/run.h"

#include <errno.h>
#include <sys/stat.h>
#include <time.h>

static const char train_help[] =
    "usage: pipetrain tokenizer train CORPUS --vocab N --out tokenizer.json\n"
    "\n"
    "Learns a byte-level BPE (GPT-2 style: GPT-2's pre-tokenizer regex, bytes as\n"
    "printable symbols) of N ids from the text file CORPUS: ids 0..255 are the bytes,\n"
    "then one id per merge, then \"<|endoftext|>\" as id N-1. Writes a Hugging Face\n"
    "tokenizer.json that the tokenizers library loads and encodes to the same ids.\n";
static const char tokenize_help[] =
    "usage: pipetrain tokenize TOKENIZER.json CORPUS --out DATA.bin\n"
    "\n"
    "Encodes the text file CORPUS with a Hugging Face byte-level BPE tokenizer.json\n"
    "(ours or GPT-2's) and writes the ids as nanoGPT's .bin: little-endian uint16,\n"
    "or uint32 when the vocabulary has more than 65536 ids (then DATA must end in\n"
    "\".u32.bin\", which is how the loader knows; a .u32.bin may also be asked for).\n";

/* Reads a whole file; NULL with err naming it. */
static uint8_t *read_all(const char *path, size_t *n, char *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return seterr(err, "%s: cannot open: %s", path, strerror(errno)), NULL;
    struct stat st;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        fclose(f);
        return seterr(err, "%s: not a regular file", path), NULL;
    }
    uint8_t *buf = xmalloc((size_t)st.st_size + 1);
    *n = fread(buf, 1, (size_t)st.st_size, f);
    int bad = ferror(f) || *n != (size_t)st.st_size;
    fclose(f);
    if (bad) {
        free(buf);
        return seterr(err, "%s: read failed (changed while reading?)", path), NULL;
    }
    return buf;
}

static int tokenizer_train(int argc, char **argv)
{
    const char *corpus = NULL, *out = NULL;
    long vocab = 0;
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(s, "--vocab")) { if (cli_parse_long("tokenizer", s, v, 0, 1 << 24, &vocab)) return 2; i++; }
        else if (!strcmp(s, "--out")) { if (!v) return cli_usage_error("tokenizer", "--out expects a file"); out = argv[++i]; }
        else if (s[0] == '-') return cli_usage_error("tokenizer", "unknown option '%s'", s);
        else if (!corpus) corpus = s;
        else return cli_usage_error("tokenizer", "unexpected argument '%s'", s);
    }
    if (!corpus || !out || !vocab) return cli_usage_error("tokenizer", "train needs CORPUS, --vocab N and --out FILE");
    if (vocab < 257)
        return cli_usage_error("tokenizer", "--vocab: expected at least 257 (256 byte tokens + \"%s\"), found %ld",
                               BPE_EOT, vocab);
    char err[ERR_LEN];
    size_t n;
    uint8_t *text = read_all(corpus, &n, err);
    if (!text) { fprintf(stderr, "pipetrain tokenizer: %s\n", err); return 2; }
    if (!n) { /* 257 ids that no text taught: refused rather than written as if learned */
        free(text);
        fprintf(stderr, "pipetrain tokenizer: %s: empty file (offset 0): no text to learn merges from\n", corpus);
        return 2;
    }
    double t0 = base_now();
    bpe *b = bpe_train(text, n, (int)vocab, err);
    double secs = base_now() - t0;
    free(text);
    if (!b) { fprintf(stderr, "pipetrain tokenizer: %s\n", err); return 2; }
    int rc = 0;
    if (bpe_save(b, out, err)) { fprintf(stderr, "pipetrain tokenizer: %s\n", err); rc = 1; }
    else {
        printf("learned %d merges from %zu bytes of %s in %.2f s: vocabulary %d (256 bytes + merges + %s = id %d), "
               "wrote %s\n", bpe_n_merges(b), n, corpus, secs, bpe_vocab_size(b), BPE_EOT, bpe_eot_id(b), out);
        if (bpe_vocab_size(b) < vocab)
            printf("note: no pair occurs twice after %d merges, so the vocabulary is %d, not %ld\n", bpe_n_merges(b),
                   bpe_vocab_size(b), vocab);
    }
    bpe_free(b);
    return rc;
}

int cli_tokenizer_main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "train")) {
        if (cli_wants_help(argc, argv, train_help)) return 0;
        return tokenizer_train(argc, argv);
    }
    if (cli_wants_help(argc, argv, train_help)) return 0;
    return cli_usage_error("tokenizer", "expected a subcommand: train (pipetrain tokenizer train --help)");
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !memcmp(s + a - b, suffix, b);
}

int cli_tokenize_main(int argc, char **argv)
{
    if (cli_wants_help(argc, argv, tokenize_help)) return 0;
    const char *tokf = NULL, *corpus = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out")) { if (i + 1 >= argc) return cli_usage_error("tokenize", "--out expects a file"); out = argv[++i]; }
        else if (argv[i][0] == '-') return cli_usage_error("tokenize", "unknown option '%s'", argv[i]);
        else if (!tokf) tokf = argv[i];
        else if (!corpus) corpus = argv[i];
        else return cli_usage_error("tokenize", "unexpected argument '%s'", argv[i]);
    }
    if (!tokf || !corpus || !out) return cli_usage_error("tokenize", "TOKENIZER.json, CORPUS and --out FILE are required");
    char err[ERR_LEN];
    bpe *b = bpe_load(tokf, err);
    if (!b) { fprintf(stderr, "pipetrain tokenize: %s\n", err); return 2; }
    int wide = bpe_vocab_size(b) > 65536 || ends_with(out, ".u32.bin"), rc = 2;
    size_t n, m = 0;
    uint8_t *text = NULL;
    int *ids = NULL;
    if (wide && !ends_with(out, ".u32.bin")) {
        fprintf(stderr, "pipetrain tokenize: %s: %d ids need uint32 tokens: name the output *.u32.bin\n", tokf,
                bpe_vocab_size(b));
        goto done;
    }
    if (!(text = read_all(corpus, &n, err))) { fprintf(stderr, "pipetrain tokenize: %s\n", err); goto done; }
    if (!n) { /* an empty .bin no loader can train on: nothing is written */
        fprintf(stderr, "pipetrain tokenize: %s: empty file (offset 0): no text to encode\n", corpus);
        goto done;
    }
    double t0 = base_now();
    m = bpe_encode(b, text, n, &ids);
    double secs = base_now() - t0;
    rc = 1;
    if (wide) {
        uint8_t *buf = xmalloc(4 * m + 1);
        for (size_t i = 0; i < m; i++) put_u32le(buf + 4 * i, (uint32_t)ids[i]);
        int w = base_write_durable(out, buf, 4 * m, err);
        free(buf);
        if (w) { fprintf(stderr, "pipetrain tokenize: %s\n", err); goto done; }
    } else {
        uint16_t *t16 = xmalloc(2 * m + 2);
        for (size_t i = 0; i < m; i++) t16[i] = (uint16_t)ids[i];
        int w = data_write_bin(out, t16, m, err);
        free(t16);
        if (w) { fprintf(stderr, "pipetrain tokenize: %s\n", err); goto done; }
    }
    printf("%zu bytes -> %zu tokens (%.3f bytes/token) in %.2f s, vocabulary %d, wrote %s (%s)\n", n, m,
           m ? (double)n / (double)m : 0.0, secs, bpe_vocab_size(b), out, wide ? "uint32" : "uint16");
    rc = 0;
done:
    free(text);
    free(ids);
    bpe_free(b);
    return rc;
}

/* ---- glue for run, stage, sample, eval, export ----------------------------- */

int cli_tokenizer_use(const char *cmd, const topo *t, bpe **tok)
{
    *tok = NULL;
    if (!t->data.tokenizer) return 0;
    char err[ERR_LEN];
    errno = 0;
    bpe *b = bpe_load(t->data.tokenizer, err);
    if (!b) {
        fprintf(stderr, "pipetrain %s: %s: data.tokenizer: %s\n", cmd, t->path, err);
        if (errno == ENOENT)
            fprintf(stderr, "pipetrain %s: HINT: `pipetrain tokenizer train CORPUS --vocab N --out FILE` makes one; "
                    "`make shakespeare-bpe` makes the one topologies/shakespeare-bpe.json names\n", cmd);
        return 2;
    }
    if (bpe_vocab_size(b) != t->model.vocab_size) {
        fprintf(stderr, "pipetrain %s: %s: model.vocab_size: expected %d (the vocabulary of data.tokenizer %s), "
                "found %d\n", cmd, t->path, bpe_vocab_size(b), t->data.tokenizer, t->model.vocab_size);
        bpe_free(b);
        return 2;
    }
    data_use_tokenizer(b);
    *tok = b;
    return 0;
}

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

int cli_ckpt_tokenizer(const char *cmd, const run_ckpt *ck, const char *given, bpe **tok, char *path_out, size_t cap)
{
    char path[4200] = "";
    *tok = NULL;
    if (given) snprintf(path, sizeof path, "%s", given);
    else {
        /* the run directory's copy: beside the step, or one or two levels up */
        static const char *const up[] = { "", "/..", "/../.." };
        for (int i = 0; i < 3 && !path[0]; i++) {
            snprintf(path, sizeof path, "%s%s/tokenizer.json", ck->dir, up[i]);
            if (!is_file(path)) path[0] = 0;
        }
        if (!path[0]) return 0; /* byte-level */
    }
    char err[ERR_LEN];
    bpe *b = bpe_load(path, err);
    if (!b) { fprintf(stderr, "pipetrain %s: %s\n", cmd, err); return 2; }
    if (bpe_vocab_size(b) != ck->cfg.vocab_size) {
        fprintf(stderr, "pipetrain %s: %s: vocabulary of %d ids, but the checkpoint's model.vocab_size is %d\n", cmd,
                path, bpe_vocab_size(b), ck->cfg.vocab_size);
        bpe_free(b);
        return 2;
    }
    *tok = b;
    if (path_out) snprintf(path_out, cap, "%s", path);
    return 0;
}

size_t cli_val_bytes(const data_set *d, const bpe *tok, size_t nw, size_t T, const char *path)
{
    size_t n = strlen(path);
    int is_bin = n >= 4 && !strcmp(path + n - 4, ".bin");
    if (!tok && is_bin && d->vocab_size > 256) return 0;
    if (!tok) return nw * T;
    size_t bytes = 0, len;
    for (size_t w = 0; w < nw; w++)
        for (size_t i = 1; i <= T; i++)
            if (bpe_token(tok, d->tokens[d->n_train + w * (T + 1) + i], &len)) bytes += len;
    return bytes;
}

void cli_summary_val_bytes(const topo *t, const bpe *tok)
{
    size_t T = (size_t)t->model.seq_len, n = t->data.path ? strlen(t->data.path) : 0;
    run_set_val_bytes(0, 0);
    if (!n) return;
    if (!tok) { /* no need to read the data: a token is a byte, or unknown */
        if (!(n >= 4 && !strcmp(t->data.path + n - 4, ".bin") && t->model.vocab_size > 256)) run_set_val_bytes(1, 1);
        return;
    }
    data_set d;
    char err[ERR_LEN];
    if (data_load(&d, t->data.path, t->data.format, t->model.vocab_size, t->data.val_fraction, t->model.seq_len, err))
        return; /* the stages report it */
    size_t nw = data_val_windows(&d, T);
    run_set_val_bytes((double)(nw * T), (double)cli_val_bytes(&d, tok, nw, T, t->data.path));
    data_free(&d);
}

int cli_copy_file(const char *src, const char *dst, char *err)
{
    size_t n;
    uint8_t *buf = read_all(src, &n, err);
    if (!buf) return -1;
    int rc = base_write_durable(dst, buf, n, err);
    free(buf);
    return rc;
}
