/* bench_wire.c — `pipetrain bench wire`. For each wire encoding (fp32 as the
 * baseline copy, bf16, fp16, int8) encodes and decodes a tensor of N floats
 * (default 4 Mi, 16 MiB: an activation of batch 8 x 1024 tokens x 512, well
 * beyond the caches like real ones) on the calling thread, best of R reps,
 * and prints GB/s of float32 data, the bytes on the wire and the break-even
 * link speed: the rate at which the bytes saved take as long to send as the
 * encode + decode take (below it compression wins; the two ends work in
 * parallel with the link in a pipeline, so this is the pessimistic bound).
 * A benchmark: asserts nothing. Reads no files. */
#include "bench/bench_wire.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/wire_codec.h"
#include "bench/bench_env.h"
#include "cli/cli.h"

static int usage(void)
{
    fprintf(stderr, "usage: pipetrain bench wire [--json] [--floats N] [--reps N]\n");
    return 2;
}

int bench_wire_main(int argc, char **argv)
{
    size_t n = 4u << 20;
    int reps = 7, json = 0;
    for (int i = 1; i < argc; i++) {
        char *end;
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(); return 0; }
        else if (!strcmp(argv[i], "--floats") && i + 1 < argc) {
            n = (size_t)strtoull(argv[++i], &end, 10);
            if (*end || n < 1 || n > (1u << 28)) return cli_usage_error("bench wire", "--floats: expected 1..268435456, found '%s'", argv[i]);
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = (int)strtol(argv[++i], &end, 10);
            if (*end || reps < 1 || reps > 1000) return cli_usage_error("bench wire", "--reps: expected 1..1000, found '%s'", argv[i]);
        } else {
            return cli_usage_error("bench wire", "unknown option '%s'", argv[i]);
        }
    }
    bench_cpus_init();
    bench_pin_self(bench_cpu_a);
    float *x = xmalloc(n * sizeof(float)), *y = xmalloc(n * sizeof(float));
    size_t wn = 0; /* the largest encoding: int8 outgrows fp32 below 2 floats (a 4-byte scale + 1) */
    for (int e = 0; e < WIRE_N_ENC; e++)
        if (wire_encoded_bytes(e, n) > wn) wn = (size_t)wire_encoded_bytes(e, n);
    uint8_t *w = xmalloc(wn);
    uint64_t s = 88172645463325252ull;
    for (size_t i = 0; i < n; i++) { /* activation-like: mostly small, a few large */
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        x[i] = ((float)(s >> 40) / 16777216.0f - 0.5f) * ((s & 63) ? 2.0f : 40.0f);
    }
    memset(y, 0, n * sizeof(float));
    memset(w, 0, wn);
    if (json) printf("{\"floats\": %zu, \"encodings\": [", n);
    else printf("wire encodings on one core, %zu floats (%.1f MiB), best of %d\n%-6s %12s %12s %14s %16s\n", n,
                (double)n * 4 / 1048576, reps, "enc", "encode GB/s", "decode GB/s", "bytes/float", "break-even link");
    for (int e = 0; e < WIRE_N_ENC; e++) {
        double be = 1e30, bd = 1e30;
        for (int r = 0; r < reps; r++) {
            double t0 = base_now();
            wire_encode(w, x, n, e);
            double t1 = base_now();
            wire_decode(y, w, n, e);
            double t2 = base_now();
            if (t1 - t0 < be) be = t1 - t0;
            if (t2 - t1 < bd) bd = t2 - t1;
        }
        double gb = (double)n * 4 / 1e9, wire = (double)wire_encoded_bytes(e, n);
        double saved_bits = ((double)n * 4 - wire) * 8, even = e ? saved_bits / (be + bd) : 0;
        /* no bytes saved (int8 of 1 float): no link is slow enough; "never", JSON null */
        char even_s[32] = "null";
        if (saved_bits > 0 && isfinite(even)) snprintf(even_s, sizeof even_s, "%.2f", even / 1e9);
        if (json)
            printf("%s{\"enc\": \"%s\", \"encode_gb_s\": %.3f, \"decode_gb_s\": %.3f, \"bytes_per_float\": %.4f, "
                   "\"break_even_gbit_s\": %s}", e ? ", " : "", wire_enc_name(e), gb / be, gb / bd, wire / (double)n,
                   e ? even_s : "0.00");
        else if (e && saved_bits > 0 && isfinite(even))
            printf("%-6s %12.2f %12.2f %14.4f %11.1f Gb/s\n", wire_enc_name(e), gb / be, gb / bd, wire / (double)n,
                   even / 1e9);
        else if (e)
            printf("%-6s %12.2f %12.2f %14.4f %16s\n", wire_enc_name(e), gb / be, gb / bd, wire / (double)n, "never");
        else
            printf("%-6s %12.2f %12.2f %14.4f %16s\n", "fp32", gb / be, gb / bd, 4.0, "(memcpy)");
    }
    if (json) printf("]}\n");
    free(x); free(y); free(w);
    return 0;
}
