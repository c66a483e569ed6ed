/* cli_bench.c — `pipetrain bench KIND`: dispatches to the benchmark programs in bench/. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

int cli_bench_main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help")) {
        fprintf(argc < 2 ? stderr : stdout, "usage: pipetrain bench (compute|net|schedule) [--json]\n");
        return argc < 2 ? 2 : 0;
    }
    fprintf(stderr, "pipetrain bench: unknown benchmark '%s'\n", argv[1]);
    return 2;
}
