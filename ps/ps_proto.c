/* ps_proto.c — encoders and checking decoders of the parameter servers' wire
 * messages (ps/ps_proto.h). Pure functions over byte arrays: no sockets, no
 * allocation. */
#include "ps/ps_proto.h"
#include "base/base.h"

#include <string.h>

int ps_proto_check_host(void)
{
    const uint32_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1 ? 0 : -1;
}

size_t ps_push_encode(uint8_t *out, int piece, long step, double norm, const float *g, size_t n)
{
    put_u32le(out, (uint32_t)piece);
    put_u32le(out + 4, (uint32_t)n);
    put_u64le(out + 8, (uint64_t)step);
    put_f64le(out + 16, norm);
    memcpy(out + PS_PUSH_HDR, g, n * sizeof(float));
    return PS_PUSH_HDR + n * sizeof(float);
}

int ps_push_decode(const ps_assignment *a, int worker, const uint8_t *in, uint64_t len, long key_step, int key_piece,
                   ps_push *p, char *why)
{
    if (len < PS_PUSH_HDR)
        return seterr(why, "push of %llu bytes is shorter than its %d-byte header", (unsigned long long)len,
                      PS_PUSH_HDR);
    uint32_t piece = get_u32le(in), n = get_u32le(in + 4);
    uint64_t step = get_u64le(in + 8);
    if ((uint64_t)n * sizeof(float) != len - PS_PUSH_HDR)
        return seterr(why, "push header says %u floats but %llu bytes follow it", n,
                      (unsigned long long)(len - PS_PUSH_HDR));
    if (piece >= (uint32_t)a->n_pieces)
        return seterr(why, "push names piece %u; the assignment has pieces 0..%d", piece, a->n_pieces - 1);
    if ((int)piece != key_piece || (long)step != key_step)
        return seterr(why, "push header says piece %u of step %llu but came as piece %d of step %ld", piece,
                      (unsigned long long)step, key_piece, key_step);
    *p = (ps_push){ .worker = worker, .step = (long)step, .piece = (int)piece, .norm = get_f64le(in + 16),
                    .grad = (const float *)(const void *)(in + PS_PUSH_HDR), .n = n };
    return 0;
}

void ps_piece_hdr_encode(uint8_t *out, int piece, size_t n, long version)
{
    put_u32le(out, (uint32_t)piece);
    put_u32le(out + 4, (uint32_t)n);
    put_u64le(out + 8, (uint64_t)version);
}

int ps_piece_hdr_check(const ps_assignment *a, int piece, int arrays, const uint8_t *in, uint64_t len, long *version,
                       char *err)
{
    if (piece < 0 || piece >= a->n_pieces) return seterr(err, "piece %d is not in the assignment", piece);
    const ps_piece *pc = &a->pieces[piece];
    uint64_t want = PS_PIECE_HDR + (uint64_t)pc->len * sizeof(float) * (uint64_t)arrays;
    if (len != want)
        return seterr(err, "piece %d (%s [%zu, %zu)) came with %llu bytes, expected %llu", piece, pc->name,
                      pc->tensor_off, pc->tensor_off + pc->len, (unsigned long long)len, (unsigned long long)want);
    if (get_u32le(in) != (uint32_t)piece || get_u32le(in + 4) != (uint32_t)pc->len)
        return seterr(err, "piece %d (%zu floats): the header says piece %u with %u floats", piece, pc->len,
                      get_u32le(in), get_u32le(in + 4));
    *version = (long)get_u64le(in + 8);
    return 0;
}

size_t ps_partials_encode(uint8_t *out, const ps_norm_partial *p, int n)
{
    put_u32le(out, (uint32_t)n);
    uint8_t *q = out + 4;
    for (int i = 0; i < n; i++, q += PS_PARTIAL_BYTES) {
        put_u32le(q, (uint32_t)p[i].unit);
        put_u32le(q + 4, (uint32_t)p[i].bucket);
        put_u32le(q + 8, (uint32_t)p[i].seg);
        put_f64le(q + 12, p[i].sq);
    }
    return 4 + (size_t)n * PS_PARTIAL_BYTES;
}

int ps_partials_decode(const uint8_t *in, uint64_t len, ps_norm_partial *out, int cap, char *err)
{
    if (len < 4) return seterr(err, "norm partials of %llu bytes: no count", (unsigned long long)len);
    uint32_t n = get_u32le(in);
    if (n > (uint32_t)cap) return seterr(err, "%u norm partials, the server holds %d blocks", n, cap);
    if (len != 4 + (uint64_t)n * PS_PARTIAL_BYTES)
        return seterr(err, "%u norm partials in %llu bytes, expected %llu", n, (unsigned long long)len,
                      (unsigned long long)(4 + (uint64_t)n * PS_PARTIAL_BYTES));
    const uint8_t *q = in + 4;
    for (uint32_t i = 0; i < n; i++, q += PS_PARTIAL_BYTES) {
        uint32_t u = get_u32le(q), b = get_u32le(q + 4), s = get_u32le(q + 8);
        if (u > 0x7fffffffu || b > 0x7fffffffu || s > 0x7fffffffu)
            return seterr(err, "norm partial %u: unit %u bucket %u segment %u out of range", i, u, b, s);
        out[i] = (ps_norm_partial){ (int)u, (int)b, (int)s, get_f64le(q + 12) };
    }
    return (int)n;
}

void ps_stats_encode(uint8_t out[PS_STATS_BYTES], const ps_net_stats *s)
{
    put_u64le(out, s->pushes);
    put_u64le(out + 8, s->refused);
    put_u64le(out + 16, s->bytes_received);
    put_u64le(out + 24, s->bytes_sent);
    put_u64le(out + 32, s->steps);
    put_f64le(out + 40, s->wall_s);
    for (int i = 0; i < PS_STALE_BUCKETS; i++) put_u64le(out + 48 + 8 * i, s->staleness[i]);
}

void ps_stats_decode(ps_net_stats *s, const uint8_t in[PS_STATS_BYTES])
{
    s->pushes = get_u64le(in);
    s->refused = get_u64le(in + 8);
    s->bytes_received = get_u64le(in + 16);
    s->bytes_sent = get_u64le(in + 24);
    s->steps = get_u64le(in + 32);
    s->wall_s = get_f64le(in + 40);
    for (int i = 0; i < PS_STALE_BUCKETS; i++) s->staleness[i] = get_u64le(in + 48 + 8 * i);
}

uint64_t ps_proto_max_payload(const ps_assignment *a)
{
    uint64_t mx = PS_PIECE_HDR + 3 * (uint64_t)a->max_block * sizeof(float); /* CKPT of the longest piece */
    uint64_t parts = 4 + (uint64_t)a->n_blocks * PS_PARTIAL_BYTES;
    if (parts > mx) mx = parts;
    if ((uint64_t)PS_STATS_BYTES > mx) mx = PS_STATS_BYTES;
    return mx;
}
