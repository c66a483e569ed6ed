/* cli_balance.h — `pipetrain balance` (the automatic stage balancer) and the
 * imbalance warning `pipetrain check` prints. */
#ifndef CLI_CLI_BALANCE_H
#define CLI_CLI_BALANCE_H

#include <stdio.h>

#include "topo/topo.h"

/* Entry point; argv[0] is "balance". Returns 0, 1 on a run-time failure, 2 on
 * bad usage or input (including a layer too large for --memory-limit). */
int cli_balance_main(int argc, char **argv);

/* Prints one warning line to f when t's stages are more than 20% imbalanced by
 * the balancer's FLOP cost model (a stage's forward+backward FLOPs per BLAS
 * thread above 1.2x the stages' mean) and a contiguous split of the layers
 * (DP over split points) lowers the largest, suggesting `pipetrain balance`;
 * nothing otherwise (a 3-stage split of 4 blocks is as even as it gets). Main thread; pure computation. */
void cli_balance_warn(const topo *t, FILE *f);

#endif
