/* cli_bench.c — `pipetrain bench KIND`: dispatches to the benchmark programs in
 * bench/. Each prints ratios against a baseline measured in the same run. */
#include <stdio.h>
#include <string.h>

#include "bench/bench_allreduce.h"
#include "bench/bench_compute.h"
#include "bench/bench_net.h"
#include "bench/bench_pipeline.h"
#include "bench/bench_ps.h"
#include "bench/bench_sched.h"
#include "bench/bench_wire.h"
#include "cli/cli.h"

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} benches[] = {
    { "allreduce", bench_allreduce_main, "ring all-reduce bus bandwidth against plain sockets in a ring" },
    { "compute", bench_compute_main, "training step FLOP/s against the sgemm ceiling" },
    { "net", bench_net_main, "transport throughput and latency against plain sockets" },
    { "pipeline", bench_pipeline_main, "2 stages x 1 thread against 1 stage x 1 thread, GPipe and 1F1B" },
    { "ps", bench_ps_main, "parameter servers: stragglers at staleness 0, 2, -1 against ps_model; --convergence" },
    { "schedule", bench_sched_main, "simulator speed on 1024 stages x 4096 micro-batches" },
    { "wire", bench_wire_main, "wire encodings (bf16, fp16, int8) GB/s on one core against the link time they save" },
};

int cli_bench_main(int argc, char **argv)
{
    size_t n = sizeof benches / sizeof benches[0];
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        FILE *f = argc < 2 ? stderr : stdout;
        fprintf(f, "usage: pipetrain bench KIND [--json] [options]   (pipetrain bench KIND --help)\n\nkinds:\n");
        for (size_t i = 0; i < n; i++) fprintf(f, "  %-9s %s\n", benches[i].name, benches[i].help);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < n; i++)
        if (!strcmp(argv[1], benches[i].name)) return benches[i].fn(argc - 1, argv + 1);
    return cli_usage_error("bench", "unknown benchmark '%s'", argv[1]);
}
