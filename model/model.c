/* model.c — configuration checks, parameter layout and initialisation of the
 * pipeline units. */
#include "model/model.h"
#include "model/util.h"

#include <math.h>

int model_config_check(const model_config *c, char *err)
{
    if (c->dim <= 0) return seterr(err, "model.dim must be > 0 (got %d)", c->dim);
    if (c->n_layers <= 0) return seterr(err, "model.n_layers must be > 0 (got %d)", c->n_layers);
    if (c->n_heads <= 0) return seterr(err, "model.n_heads must be > 0 (got %d)", c->n_heads);
    if (c->n_kv_heads <= 0) return seterr(err, "model.n_kv_heads must be > 0 (got %d)", c->n_kv_heads);
    if (c->ffn_dim <= 0) return seterr(err, "model.ffn_dim must be > 0 (got %d)", c->ffn_dim);
    if (c->vocab_size <= 0 || c->vocab_size > 65536)
        return seterr(err, "model.vocab_size must be in 1..65536 (got %d)", c->vocab_size);
    if (c->seq_len <= 0) return seterr(err, "model.seq_len must be > 0 (got %d)", c->seq_len);
    if (c->dim % c->n_heads)
        return seterr(err, "model.n_heads (%d) must divide model.dim (%d)", c->n_heads, c->dim);
    if (c->n_heads % c->n_kv_heads)
        return seterr(err, "model.n_kv_heads (%d) must divide model.n_heads (%d)", c->n_kv_heads, c->n_heads);
    if ((c->dim / c->n_heads) % 2)
        return seterr(err, "model.dim / model.n_heads (%d) must be even for rotary embeddings",
                      c->dim / c->n_heads);
    if (!(c->norm_eps > 0)) return seterr(err, "model.norm_eps must be > 0");
    if (!(c->rope_theta > 0)) return seterr(err, "model.rope_theta must be > 0");
    /* Keep every size product far from overflow: per-block parameters and the
     * attention matrix of one sequence must stay below 2^40 elements. */
    const double lim = 1099511627776.0;
    double blk = (double)c->dim * c->dim * 4 + 3.0 * c->dim * c->ffn_dim;
    double emb = (double)c->vocab_size * c->dim;
    double att = (double)c->n_heads * c->seq_len * c->seq_len;
    if (blk > lim || emb > lim || att > lim || (double)c->n_layers * blk > lim)
        return seterr(err, "model sizes are absurd (dim %d, ffn_dim %d, n_layers %d, seq_len %d): "
                      "parameter or activation counts overflow", c->dim, c->ffn_dim, c->n_layers, c->seq_len);
    return 0;
}

model_flops model_unit_flops(const model_config *c, int unit, size_t batch, size_t seq)
{
    model_flops f = { 0, 0, 0 };
    double N = (double)batch * seq, C = c->dim, V = c->vocab_size, F = c->ffn_dim;
    double hd = (double)c->dim / c->n_heads, KV = hd * c->n_kv_heads;
    switch (model_unit_kind(c, unit)) {
    case UNIT_EMBED:
        break; /* a gather and a scatter-add: no multiply-adds */
    case UNIT_HEAD:
        f.fwd = 2 * N * C * V;
        f.bwd_input = 2 * N * C * V;
        f.bwd_weight = 2 * N * C * V;
        break;
    default: {
        double mm = 2 * N * (C * C * 2 + C * KV * 2 + 3 * C * F); /* q,o + k,v + gate,up,down */
        /* causal attention: scores and weighted values over the lower triangle */
        double att = 2.0 * 2 * batch * c->n_heads * hd * ((double)seq * (seq + 1) / 2);
        f.fwd = mm + att;
        f.bwd_input = mm + 2 * att; /* dP = dO V^T, dV = P^T dO, dQ, dK */
        f.bwd_weight = mm;
        break;
    }
    }
    return f;
}

size_t model_unit_params(const model_config *c, int unit)
{
    size_t C = (size_t)c->dim, V = (size_t)c->vocab_size, F = (size_t)c->ffn_dim;
    size_t KV = C / (size_t)c->n_heads * (size_t)c->n_kv_heads;
    switch (model_unit_kind(c, unit)) {
    case UNIT_EMBED: return V * C;
    case UNIT_HEAD: return C + (c->tie_embeddings ? 0 : V * C);
    default: return 2 * C + 2 * C * C + 2 * C * KV + 3 * C * F;
    }
}

size_t model_unit_out_bytes(const model_config *c, int unit, size_t batch, size_t seq)
{
    if (model_unit_kind(c, unit) == UNIT_HEAD) return 0;
    return batch * seq * (size_t)c->dim * sizeof(float);
}

static int add_tensor(model_tensor *out, int n, int unit, const char *name, size_t rows, size_t cols,
                      size_t *off)
{
    model_tensor *t = &out[n];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->unit = unit;
    t->ndim = cols ? 2 : 1;
    t->shape[0] = rows;
    t->shape[1] = cols;
    t->numel = rows * (cols ? cols : 1);
    t->offset = *off;
    t->decay = cols != 0;
    *off += t->numel;
    return n + 1;
}

int model_unit_tensors(const model_config *c, int unit, model_tensor *out)
{
    size_t C = (size_t)c->dim, V = (size_t)c->vocab_size, F = (size_t)c->ffn_dim;
    size_t KV = C / (size_t)c->n_heads * (size_t)c->n_kv_heads, off = 0;
    int n = 0;
    char nm[80];
    switch (model_unit_kind(c, unit)) {
    case UNIT_EMBED:
        return add_tensor(out, 0, unit, "model.embed_tokens.weight", V, C, &off);
    case UNIT_HEAD:
        n = add_tensor(out, 0, unit, "model.norm.weight", C, 0, &off);
        if (!c->tie_embeddings) n = add_tensor(out, n, unit, "lm_head.weight", V, C, &off);
        return n;
    }
    static const struct { const char *name; int rows, cols; } blk[] = {
        /* rows/cols: 0 = C, 1 = KV, 2 = F, -1 = 1-D */
        { "input_layernorm", 0, -1 }, { "self_attn.q_proj", 0, 0 }, { "self_attn.k_proj", 1, 0 },
        { "self_attn.v_proj", 1, 0 }, { "self_attn.o_proj", 0, 0 }, { "post_attention_layernorm", 0, -1 },
        { "mlp.gate_proj", 2, 0 }, { "mlp.up_proj", 2, 0 }, { "mlp.down_proj", 0, 2 },
    };
    const size_t dims[3] = { C, KV, F };
    for (size_t i = 0; i < sizeof blk / sizeof blk[0]; i++) {
        snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", unit - 1, blk[i].name);
        n = add_tensor(out, n, unit, nm, dims[blk[i].rows], blk[i].cols < 0 ? 0 : dims[blk[i].cols], &off);
    }
    return n;
}

void model_tensor_init(const model_config *c, const model_tensor *t, float *w, uint64_t seed)
{
    if (t->ndim == 1) {
        for (size_t i = 0; i < t->numel; i++) w[i] = 1.0f;
        return;
    }
    double std = 0.02;
    if (strstr(t->name, "o_proj") || strstr(t->name, "down_proj")) std /= sqrt(2.0 * c->n_layers);
    rng_t r = rng_for(seed, t->name);
    for (size_t i = 0; i < t->numel; i += 2) {
        /* Box-Muller: two normals from two uniforms; 1-u keeps the log finite */
        double u1 = 1.0 - rng_uniform(&r), u2 = rng_uniform(&r);
        double m = sqrt(-2.0 * log(u1)), a = 2.0 * M_PI * u2;
        w[i] = (float)(std * m * cos(a));
        if (i + 1 < t->numel) w[i + 1] = (float)(std * m * sin(a));
    }
}
