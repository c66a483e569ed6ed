/* runtime_wire.c — the stage's tensors on the wire (issue 14, "compression on
 * the wire"): the activation a virtual stage hands to the next and the
 * gradient it hands back travel in the topology's wire encodings (topo.h
 * "wire", base/wire_codec.h). Encoding runs on the compute thread that made
 * the tensor, right after the action; decoding on the compute thread that
 * consumes it, right before the action. A hand-over between two chunks of
 * the same stage (a V's turn, or interleaving on one stage) goes through the
 * same encode and decode, so the numbers depend on the virtual-stage split
 * only, never on where the virtual stages run. The frame's payload tag says
 * the encoding; a frame whose tag or length is not the expected one is
 * refused (the receive buffer is the encoded size, so a longer one is
 * refused by net/ before it is read). Not here: the codecs, the transport. */
#include "base/wire_codec.h"
#include "stage/rt.h"

#include <inttypes.h>
#include <stdio.h>

int rt_wire_enc(const rt *r, int grad) { return grad ? r->t->wire.grad_enc : r->t->wire.act_enc; }

static size_t row_floats(const rt *r) { return r->T * r->C; }

uint64_t rt_wire_len(const rt *r, int grad, size_t rows)
{
    return wire_encoded_bytes(rt_wire_enc(r, grad), (uint64_t)(rows * row_floats(r)));
}

const void *rt_wire_pack(rt *r, int grad, uint8_t *wbuf, const float *x, size_t rows)
{
    int enc = rt_wire_enc(r, grad);
    if (enc == WIRE_FP32) return x;
    double t0 = rt_now();
    wire_encode(wbuf, x, rows * row_floats(r), enc);
    r->wire_s[0] += rt_now() - t0;
    r->wire_floats[0] += rows * row_floats(r);
    return wbuf;
}

void rt_wire_unpack(rt *r, int grad, float *x, const uint8_t *wbuf, size_t rows)
{
    int enc = rt_wire_enc(r, grad);
    if (enc == WIRE_FP32) return;
    double t0 = rt_now();
    wire_decode(x, wbuf, rows * row_floats(r), enc);
    r->wire_s[1] += rt_now() - t0;
    r->wire_floats[1] += rows * row_floats(r);
}

void rt_wire_report(const rt *r)
{
    if (!r->t->wire.act_enc && !r->t->wire.grad_enc) return;
    double mb[2] = { (double)r->wire_floats[0] * 4 / 1e6, (double)r->wire_floats[1] * 4 / 1e6 };
    fprintf(stderr, "pipetrain stage %d replica %d: wire (activations %s, gradients %s): encoded %.2f MB of fp32 in "
            "%.4f s (%.2f GB/s), decoded %.2f MB in %.4f s (%.2f GB/s)\n", r->K, r->rep,
            wire_enc_name(r->t->wire.act_enc), wire_enc_name(r->t->wire.grad_enc), mb[0], r->wire_s[0],
            r->wire_s[0] > 0 ? mb[0] / 1e3 / r->wire_s[0] : 0, mb[1], r->wire_s[1],
            r->wire_s[1] > 0 ? mb[1] / 1e3 / r->wire_s[1] : 0);
}

int rt_wire_check(rt *r, int grad, struct net_op *op, size_t *rows, const char *what)
{
    int enc = rt_wire_enc(r, grad);
    unsigned tag = net_op_tag(op);
    uint64_t len = net_op_len(op);
    const char *tname = wire_enc_name((int)tag);
    if (tag != (unsigned)enc)
        return rt_fail(r, "%s: the frame's payload encoding is %s (tag %u), wire.%s is %s", what,
                       tname ? tname : "unknown", tag, grad ? "gradients" : "activations", wire_enc_name(enc));
    size_t want = rows ? *rows : 0;
    if (rows && !want) { /* any whole number of sequences up to Bm */
        for (size_t b = 0; b <= r->Bm; b++)
            if (rt_wire_len(r, grad, b) == len) { *rows = b; return 0; }
        return rt_fail(r, "%s: a payload of %" PRIu64 " bytes is no whole number of sequences (up to %zu) in %s",
                       what, len, r->Bm, wire_enc_name(enc));
    }
    if (!rows) want = r->Bm;
    if (len != rt_wire_len(r, grad, want))
        return rt_fail(r, "%s: the payload is %" PRIu64 " bytes, %zu sequences in %s are %" PRIu64 " bytes", what,
                       len, want, wire_enc_name(enc), rt_wire_len(r, grad, want));
    return 0;
}

void rt_wire_alloc(rt *r, rt_chunk *c)
{
    uint8_t ***bufs[4] = { &c->wire_in, &c->wire_out, &c->wire_gin, &c->wire_gout };
    int need[4] = { c->vs > 0, c->vs < r->V - 1, c->vs < r->V - 1, c->vs > 0 };
    int grad[4] = { 0, 0, 1, 1 };
    for (int j = 0; j < 4; j++) {
        if (!need[j] || rt_wire_enc(r, grad[j]) == WIRE_FP32) continue;
        *bufs[j] = xcalloc((size_t)r->NQ, sizeof(uint8_t *));
        for (int mb = 0; mb < r->NQ; mb++) (*bufs[j])[mb] = xmalloc(rt_wire_len(r, grad[j], r->Bm));
    }
}

void rt_wire_free(rt *r, rt_chunk *c)
{
    uint8_t **bufs[4] = { c->wire_in, c->wire_out, c->wire_gin, c->wire_gout };
    for (int j = 0; j < 4; j++) {
        for (int mb = 0; bufs[j] && mb < r->NQ; mb++) free(bufs[j][mb]);
        free(bufs[j]);
    }
}
