/* cli.h — subcommand entry points of bin/pipetrain. Each takes the arguments
 * after "pipetrain" (argv[0] is the subcommand name) and returns the exit status. */
#ifndef CLI_CLI_H
#define CLI_CLI_H

int cli_bench_main(int argc, char **argv);

#endif
