/* topo_wire.c — the "wire" section of the topology (issue 14): the encodings
 * of the tensors between virtual stages, their byte counts per micro-batch
 * (what `check` prints and what a link model needs) and the lines `check`
 * prints. The encodings themselves are base/wire_codec.c; the stage runtime
 * applies them (stage/runtime.c). */
#include "topo/topo.h"
#include "base/wire_codec.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void topo_resolve_wire(topo *t)
{
    int a = wire_enc_parse(t->wire.activations), g = wire_enc_parse(t->wire.gradients);
    t->wire.act_enc = a < 0 ? WIRE_FP32 : a; /* absent; decoding refused any other name */
    t->wire.grad_enc = g < 0 ? WIRE_FP32 : g;
}

uint64_t topo_wire_bytes(const topo *t, int unit, int grad)
{
    size_t b = model_unit_out_bytes(&t->model, unit, (size_t)topo_micro_batch(t), (size_t)t->model.seq_len);
    return wire_encoded_bytes(grad ? t->wire.grad_enc : t->wire.act_enc, b / sizeof(float));
}

void topo_print_wire(const topo *t, FILE *f)
{
    const char *a = wire_enc_name(t->wire.act_enc), *g = wire_enc_name(t->wire.grad_enc);
    fprintf(f, "wire (activations %s, gradients %s): bytes per micro-batch across each boundary\n", a, g);
    int V = t->n_stages * t->chunks_per_stage;
    if (V < 2) /* the one-stage trainer hands no tensor over: nothing to encode */
        fprintf(f, "  one virtual stage: no boundary, nothing is encoded (the setting has no effect)\n");
    for (int vs = 0; vs + 1 < V; vs++) {
        int c, s = topo_stage_of_virtual(t, vs, &c), c2, s2 = topo_stage_of_virtual(t, vs + 1, &c2);
        if (s < 0 || s2 < 0) continue;
        const topo_chunk *ch = &t->stages[s].chunks[c];
        int last = ch->first_unit + ch->n_units - 1;
        uint64_t fp = (uint64_t)model_unit_out_bytes(&t->model, last, (size_t)topo_micro_batch(t),
                                                     (size_t)t->model.seq_len);
        fprintf(f, "  virtual stage %d -> %d (stage %d -> %d%s): forward %" PRIu64 " B %s, backward %" PRIu64
                " B %s (fp32 %" PRIu64 " B each way)\n", vs, vs + 1, s, s2, s == s2 ? ", a local copy" : "",
                topo_wire_bytes(t, last, 0), a, topo_wire_bytes(t, last, 1), g, fp);
    }
}

int topo_parse_rate(const char *s, double *out)
{
    static const struct { const char *u; double k; } units[] = {
        { "", 1 }, { "bit", 1 / 8.0 }, { "kbit", 1e3 / 8 }, { "mbit", 1e6 / 8 }, { "gbit", 1e9 / 8 },
        { "B/s", 1 }, { "kB/s", 1e3 }, { "MB/s", 1e6 }, { "GB/s", 1e9 },
    };
    if (!s) return -1;
    char *end;
    double v = strtod(s, &end);
    if (end == s || !(v > 0) || !isfinite(v)) return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcmp(end, units[i].u)) {
            *out = v * units[i].k;
            return isfinite(*out) && *out > 0 ? 0 : -1;
        }
    return -1;
}
