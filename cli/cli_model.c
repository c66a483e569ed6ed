/* cli_model.c — subcommands that use a trained checkpoint: eval, sample, export.
 * CHECKPOINT may be a step directory, a checkpoints directory (its `latest` is
 * used) or a run directory; every file's checksum is verified first. eval and
 * sample also take a Hugging Face directory (config.json + model.safetensors, as
 * export writes it; cli_load_hf). */
#include "cli/cli.h"
#include "model/bpe.h"
#include "model/data.h"
#include "model/safetensors.h"
#include "model/util.h"
#include "run/run_metrics.h"
#include "stage/train.h"

#include <math.h>

#define SECRET_HELP                                                                          \
    "\n"                                                                                     \
    "A checkpoint trained with data.tokenizer is read with the run directory's copy,\n"        \
    "tokenizer.json (or --tokenizer FILE); without one, tokens are bytes.\n"                  \
    "Every file of the checkpoint is verified first. --secret-file F (default\n"               \
    "$PIPETRAIN_SECRET) is the training run's secret: with it the manifest's HMAC is\n"        \
    "required and checked, so a checkpoint changed by someone without the secret is\n"        \
    "refused.\n"

static const char eval_help[] =
    "usage: pipetrain eval CHECKPOINT --data FILE [--val-fraction F] [--json] [--secret-file F]\n"
    "                      [--tokenizer FILE]\n"
    "\n"
    "Mean cross-entropy over the validation split of FILE (its last F, default the\n"
    "fraction the checkpoint was trained with), in contiguous non-overlapping windows\n"
    "of seq_len+1 tokens from the split's start, and bits per byte: loss x tokens /\n"
    "bytes / ln 2, the bytes being those the scored tokens decode to (so byte-level\n"
    "and BPE models compare). --json prints {\"loss\", \"tokens\", \"bytes\",\n"
    "\"bits_per_byte\"} (the last two null for a .bin without a tokenizer).\n"
    "CHECKPOINT may also be a Hugging Face directory (config.json and model.safetensors\n"
    "or its sharded index, as `export` writes; seq_len = max_position_embeddings).\n"
    SECRET_HELP;
static const char sample_help[] =
    "usage: pipetrain sample CHECKPOINT [--prompt TEXT] [--tokens N] [--temperature T]\n"
    "                        [--top-k K] [--seed S] [--secret-file F] [--tokenizer FILE]\n"
    "\n"
    "Generates N (default 200) tokens after TEXT (default a newline) and prints\n"
    "them, decoded with the checkpoint's tokenizer (bytes without one). Temperature 0 picks the most likely token; top-k 0 keeps every token.\n"
    SECRET_HELP;
static const char export_help[] =
    "usage: pipetrain export CHECKPOINT --out DIR [--secret-file F]\n"
    "\n"
    "Writes DIR/model.safetensors (every stage's tensors merged, Hugging Face LLaMA\n"
    "names) and DIR/config.json (LlamaForCausalLM), loadable without conversion.\n"
    "With a tokenizer (the run's tokenizer.json or --tokenizer FILE) it is copied to\n"
    "DIR/tokenizer.json beside DIR/tokenizer_config.json (PreTrainedTokenizerFast,\n"
    "bos and eos \"<|endoftext|>\"), so AutoTokenizer loads DIR too.\n"
    SECRET_HELP;

/* The val_fraction recorded in the checkpoint's topology, or 0.1. */
static double ckpt_val_fraction(const run_ckpt *c)
{
    json_t *v = json_object_get(json_object_get(json_object_get(c->manifest, "topology"), "data"), "val_fraction");
    return json_is_number(v) ? json_number_value(v) : 0.1;
}

/* Windows stage_eval scores over the whole validation split. */
static size_t tokens_scored(const data_set *d, int seq_len) { return data_val_windows(d, (size_t)seq_len); }

int cli_eval_main(int argc, char **argv)
{
    if (cli_wants_help(argc, argv, eval_help)) return 0;
    const char *ckpt = NULL, *data = NULL, *secret = NULL, *tokf = NULL;
    int json = 0;
    double vf = -1;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--data")) { if (!v) return cli_usage_error("eval", "--data expects a file"); data = argv[++i]; }
        else if (!strcmp(argv[i], "--secret-file")) { if (!v) return cli_usage_error("eval", "--secret-file expects a file"); secret = argv[++i]; }
        else if (!strcmp(argv[i], "--tokenizer")) { if (!v) return cli_usage_error("eval", "--tokenizer expects a file"); tokf = argv[++i]; }
        else if (!strcmp(argv[i], "--val-fraction")) { if (cli_parse_double("eval", "--val-fraction", v, 0, 0.999999, &vf)) return 2; i++; }
        else if (argv[i][0] == '-') return cli_usage_error("eval", "unknown option '%s'", argv[i]);
        else if (!ckpt) ckpt = argv[i];
        else return cli_usage_error("eval", "unexpected argument '%s'", argv[i]);
    }
    if (!ckpt || !data) return cli_usage_error("eval", "CHECKPOINT and --data FILE are required");
    char err[ERR_LEN];
    run_ckpt ck;
    model_part *p = cli_load_model(ckpt, secret, 16, &ck, err);
    if (!p) { fprintf(stderr, "pipetrain eval: %s\n", err); return 2; }
    data_set d;
    bpe *tok = NULL;
    int rc = cli_ckpt_tokenizer("eval", &ck, tokf, &tok, NULL, 0);
    if (vf < 0) vf = ckpt_val_fraction(&ck);
    data_use_tokenizer(tok);
    if (rc) {
    } else if (data_load(&d, data, "auto", ck.cfg.vocab_size, vf, ck.cfg.seq_len, err)) {
        fprintf(stderr, "pipetrain eval: %s\n", err);
        rc = 2;
    } else {
        size_t tokens, bytes = cli_val_bytes(&d, tok, tokens_scored(&d, ck.cfg.seq_len), (size_t)ck.cfg.seq_len, data);
        double loss = stage_eval(p, &d, 0, 16, &tokens);
        double bpb = bytes ? loss * (double)tokens / (double)bytes / log(2.0) : NAN;
        char bs[32] = "null", bb[32] = "null";
        if (bytes) { snprintf(bs, sizeof bs, "%zu", bytes); snprintf(bb, sizeof bb, "%.6f", bpb); }
        if (json) printf("{\"loss\": %.6f, \"tokens\": %zu, \"bytes\": %s, \"bits_per_byte\": %s}\n", loss, tokens, bs, bb);
        else printf("val_loss %.4f over %zu tokens (%zu windows of %d) from %s, step %ld; %s bits/byte over %s bytes\n",
                    loss, tokens, tokens / (size_t)ck.cfg.seq_len, ck.cfg.seq_len + 1, data, ck.step,
                    bytes ? bb : "n/a", bs);
        data_free(&d);
    }
    data_use_tokenizer(NULL);
    bpe_free(tok);
    model_part_free(p);
    run_ckpt_close(&ck);
    return rc;
}

/* Draws a token from logits (V) with temperature and top-k. */
static int pick(const float *logits, int V, double temp, int top_k, rng_t *r, double *prob)
{
    int best = 0;
    for (int i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
    if (temp <= 0) return best;
    /* the k-th largest logit is the cut-off */
    float cut = -INFINITY;
    if (top_k > 0 && top_k < V) {
        for (int i = 0; i < V; i++) prob[i] = logits[i];
        for (int k = 0; k < top_k; k++) {
            int m = -1;
            for (int i = 0; i < V; i++) if (prob[i] > -INFINITY && (m < 0 || prob[i] > prob[m])) m = i;
            cut = (float)prob[m];
            prob[m] = -INFINITY;
        }
    }
    double sum = 0;
    for (int i = 0; i < V; i++) sum += prob[i] = logits[i] >= cut ? exp((logits[i] - logits[best]) / temp) : 0;
    double u = rng_uniform(r) * sum;
    for (int i = 0; i < V; i++) if ((u -= prob[i]) < 0 && prob[i] > 0) return i;
    return best;
}

int cli_sample_main(int argc, char **argv)
{
    if (cli_wants_help(argc, argv, sample_help)) return 0;
    const char *ckpt = NULL, *prompt = "\n", *secret = NULL, *tokf = NULL;
    long ntok = 200, top_k = 0, seed = 1;
    double temp = 1.0;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(s, "--prompt")) { if (!v) return cli_usage_error("sample", "--prompt expects text"); prompt = argv[++i]; }
        else if (!strcmp(s, "--secret-file")) { if (!v) return cli_usage_error("sample", "--secret-file expects a file"); secret = argv[++i]; }
        else if (!strcmp(s, "--tokenizer")) { if (!v) return cli_usage_error("sample", "--tokenizer expects a file"); tokf = argv[++i]; }
        else if (!strcmp(s, "--tokens")) { if (cli_parse_long("sample", s, v, 0, 100000000, &ntok)) return 2; i++; }
        else if (!strcmp(s, "--top-k")) { if (cli_parse_long("sample", s, v, 0, 1 << 20, &top_k)) return 2; i++; }
        else if (!strcmp(s, "--seed")) { if (cli_parse_long("sample", s, v, 0, 0x7fffffffffffffffL, &seed)) return 2; i++; }
        else if (!strcmp(s, "--temperature")) { if (cli_parse_double("sample", s, v, 0, 100, &temp)) return 2; i++; }
        else if (s[0] == '-') return cli_usage_error("sample", "unknown option '%s'", s);
        else if (!ckpt) ckpt = s;
        else return cli_usage_error("sample", "unexpected argument '%s'", s);
    }
    if (!ckpt) return cli_usage_error("sample", "a CHECKPOINT is required");
    char err[ERR_LEN];
    run_ckpt ck;
    model_part *p = cli_load_model(ckpt, secret, 1, &ck, err);
    if (!p) { fprintf(stderr, "pipetrain sample: %s\n", err); return 2; }
    bpe *tok = NULL;
    if (cli_ckpt_tokenizer("sample", &ck, tokf, &tok, NULL, 0)) {
        model_part_free(p); run_ckpt_close(&ck);
        return 2;
    }
    if (!tok && ck.cfg.vocab_size < 256) {
        fprintf(stderr, "pipetrain sample: %s: vocabulary of %d is not byte-level\n", ck.dir, ck.cfg.vocab_size);
        model_part_free(p); run_ckpt_close(&ck);
        return 2;
    }
    size_t T = (size_t)ck.cfg.seq_len, plen = strlen(prompt), n = plen ? plen : 1;
    int *pids = NULL;
    if (tok && plen) n = bpe_encode(tok, (const uint8_t *)prompt, plen, &pids);
    int *ctx = xmalloc((n + (size_t)ntok) * sizeof(int)), V = ck.cfg.vocab_size;
    double *prob = xmalloc((size_t)V * sizeof(double));
    if (pids) memcpy(ctx, pids, n * sizeof(int));
    else if (plen) data_encode_text(ctx, prompt, plen);
    else ctx[0] = tok ? bpe_token_id(tok, (const uint8_t *)"\n", 1) : '\n';
    free(pids);
    model_slot *s = model_slots_new(p, 0, p->n_units, 1);
    s[p->n_units - 1].tokens = NULL; /* logits, no loss */
    rng_t r = rng_for((uint64_t)seed, "sample");
    fwrite(prompt, 1, plen, stdout);
    for (long k = 0; k < ntok; k++) {
        size_t len = n < T ? n : T;
        memcpy(s[0].tokens, ctx + n - len, len * sizeof(int));
        model_forward(p, 0, p->n_units, s, NULL, NULL, 1, len);
        const float *logits = model_logits(p, &s[p->n_units - 1], 1, len) + (len - 1) * (size_t)V;
        int next = pick(logits, V, temp, (int)top_k, &r, prob);
        ctx[n++] = next;
        size_t blen;
        const uint8_t *b = tok ? bpe_token(tok, next, &blen) : NULL;
        if (b) fwrite(b, 1, blen, stdout);
        else putchar(next);
        fflush(stdout);
    }
    putchar('\n');
    model_slots_free(s);
    bpe_free(tok);
    free(ctx); free(prob);
    model_part_free(p);
    run_ckpt_close(&ck);
    return 0;
}

int cli_export_main(int argc, char **argv)
{
    if (cli_wants_help(argc, argv, export_help)) return 0;
    const char *ckpt = NULL, *out = NULL, *secret = NULL, *tokf = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer")) { if (i + 1 >= argc) return cli_usage_error("export", "--tokenizer expects a file"); tokf = argv[++i]; }
        else if (!strcmp(argv[i], "--secret-file")) { if (i + 1 >= argc) return cli_usage_error("export", "--secret-file expects a file"); secret = argv[++i]; }
        else if (!strcmp(argv[i], "--out")) { if (i + 1 >= argc) return cli_usage_error("export", "--out expects a directory"); out = argv[++i]; }
        else if (argv[i][0] == '-') return cli_usage_error("export", "unknown option '%s'", argv[i]);
        else if (!ckpt) ckpt = argv[i];
        else return cli_usage_error("export", "unexpected argument '%s'", argv[i]);
    }
    if (!ckpt || !out) return cli_usage_error("export", "CHECKPOINT and --out DIR are required");
    char err[ERR_LEN], path[4200];
    run_ckpt ck;
    model_part *p = cli_load_model(ckpt, secret, 1, &ck, err);
    if (!p) { fprintf(stderr, "pipetrain export: %s\n", err); return 2; }
    bpe *tok = NULL;
    char src[4200];
    if (cli_ckpt_tokenizer("export", &ck, tokf, &tok, src, sizeof src)) {
        model_part_free(p);
        run_ckpt_close(&ck);
        return 2;
    }
    int rc = 1;
    char *tcfg = NULL;
    st_entry *e = xcalloc((size_t)p->n_tensors, sizeof *e);
    for (int i = 0; i < p->n_tensors; i++) {
        const model_tensor *t = &p->tensors[i];
        e[i] = (st_entry){ t->name, "F32", t->ndim, { (int64_t)t->shape[0], (int64_t)t->shape[1] }, p->params + t->offset };
    }
    const model_config *c = &ck.cfg;
    const char *meta[] = { "format", "pt", NULL };
    json_t *cfg = json_pack("{s:[s],s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:f,s:f,s:b,s:s,s:s,s:b,s:b,s:f,s:f}",
                            "architectures", "LlamaForCausalLM", "model_type", "llama", "hidden_size", c->dim,
                            "intermediate_size", c->ffn_dim, "num_attention_heads", c->n_heads, "num_hidden_layers",
                            c->n_layers, "num_key_value_heads", c->n_kv_heads, "head_dim", c->dim / c->n_heads,
                            "vocab_size", c->vocab_size, "max_position_embeddings", c->seq_len, "rms_norm_eps",
                            (double)c->norm_eps, "rope_theta", (double)c->rope_theta, "tie_word_embeddings",
                            c->tie_embeddings, "hidden_act", "silu", "torch_dtype", "float32", "attention_bias", 0,
                            "mlp_bias", 0, "initializer_range", 0.02, "attention_dropout", 0.0);
    if (tok && bpe_eot_id(tok) >= 0) { /* "<|endoftext|>" is both, as GPT-2's */
        json_object_set_new(cfg, "bos_token_id", json_integer(bpe_eot_id(tok)));
        json_object_set_new(cfg, "eos_token_id", json_integer(bpe_eot_id(tok)));
    }
    char *text = json_dumps(cfg, JSON_INDENT(2));
    json_decref(cfg);
    if (tok) {
        json_t *tc = json_pack("{s:s,s:i,s:b,s:b,s:b}", "tokenizer_class", "PreTrainedTokenizerFast", "model_max_length",
                               c->seq_len, "clean_up_tokenization_spaces", 0, "add_bos_token", 0, "add_eos_token", 0);
        if (bpe_eot_id(tok) >= 0) {
            json_object_set_new(tc, "bos_token", json_string(BPE_EOT));
            json_object_set_new(tc, "eos_token", json_string(BPE_EOT));
        }
        tcfg = json_dumps(tc, JSON_INDENT(2));
        json_decref(tc);
    }
    if (run_mkdirs(out, err)) goto done;
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    if (st_write(path, e, p->n_tensors, meta, err)) goto done;
    snprintf(path, sizeof path, "%s/config.json", out);
    if (base_write_durable(path, text, strlen(text), err)) goto done;
    if (tok) {
        snprintf(path, sizeof path, "%s/tokenizer.json", out);
        if (cli_copy_file(src, path, err)) goto done;
        snprintf(path, sizeof path, "%s/tokenizer_config.json", out);
        if (base_write_durable(path, tcfg, strlen(tcfg), err)) goto done;
    }
    printf("exported step %ld (%zu parameters) to %s/model.safetensors and %s/config.json%s\n", ck.step, p->n_params,
           out, out, tok ? " with tokenizer.json and tokenizer_config.json" : "");
    rc = 0;
done:
    if (rc) fprintf(stderr, "pipetrain export: %s\n", err);
    free(text);
    free(tcfg);
    bpe_free(tok);
    free(e);
    model_part_free(p);
    run_ckpt_close(&ck);
    return rc;
}
