/* bench_compute_run.c — runs `bench compute` standalone (bin/tests/bench_compute_run
 * [--json] [--threads N] [--steps N]) until cli/ dispatches to it.
 * Helpers link only against the library, and bench/ objects live in bin/pipetrain,
 * so the bench source is compiled into this program directly. */
#include "bench/bench_compute.c"

int main(int argc, char **argv)
{
    char name[] = "compute";
    argv[0] = name;
    return bench_compute_main(argc, argv);
}
