/* sched_cli_main.c — runs `pipetrain schedule` standalone (bin/tests/sched_cli_main
 * ARGS...) until cli/main.c dispatches to it. Helpers link only against the
 * library and cli/ objects live in bin/pipetrain, so the command's source is
 * compiled into this program directly (as bench_compute_run.c does). */
#include "cli/cli_schedule.c"

int main(int argc, char **argv)
{
    char name[] = "schedule";
    argv[0] = name;
    return cli_schedule_main(argc, argv);
}
