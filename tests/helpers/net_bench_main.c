/* net_bench_main.c — runs `bench net` standalone (bin/tests/net_bench_main
 * [--json] [--mib N] [--trials N]) until cli/ dispatches to it. Helpers link only
 * against the library and bench/ objects live in bin/pipetrain, so the bench
 * source is compiled into this program directly. */
#include "bench/bench_net.c"

int main(int argc, char **argv)
{
    char name[] = "net";
    argv[0] = name;
    return bench_net_main(argc, argv);
}
