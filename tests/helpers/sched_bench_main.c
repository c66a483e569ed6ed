/* sched_bench_main.c — runs `pipetrain bench schedule` standalone until cli/
 * dispatches to it (helpers link only the library, so the source is included). */
#include "bench/bench_sched.c"

int main(int argc, char **argv)
{
    char name[] = "schedule";
    argv[0] = name;
    return bench_sched_main(argc, argv);
}
