/* main.c — the pipetrain command: dispatches to subcommands.
 * Exit status: 0 success, 1 run-time failure, 2 bad usage or bad input. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_balance.h"
#include "cli/cli_schedule.h"

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} commands[] = {
    { "run", cli_run_main, "train the model a topology describes" },
    { "stage", cli_stage_main, "run one pipeline stage (started on each host)" },
    { "server", cli_server_main, "run one parameter server (\"sync\": \"ps\"; started on each server host)" },
    { "check", cli_check_main, "validate a topology and print its partition" },
    { "balance", cli_balance_main, "choose each stage's layers to minimise the simulated step time" },
    { "schedule", cli_schedule_main, "generate, validate, simulate and draw micro-batch schedules" },
    { "eval", cli_eval_main, "validation loss of a checkpoint" },
    { "sample", cli_sample_main, "generate text from a checkpoint" },
    { "export", cli_export_main, "write a checkpoint as Hugging Face model.safetensors + config.json" },
    { "bench", cli_bench_main, "measure compute, transport or scheduler speed" },
    { "tokenizer", cli_tokenizer_main, "train a byte-level BPE tokenizer (Hugging Face tokenizer.json)" },
    { "tokenize", cli_tokenize_main, "encode a text file with a tokenizer.json into a .bin of token ids" },
};

static void usage(FILE *f)
{
    fprintf(f, "usage: pipetrain <command> [options]   (pipetrain <command> --help)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv)
{
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "--version")) {
        printf("pipetrain %s\n", PIPETRAIN_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "pipetrain: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
