/* bench_wire.h — `pipetrain bench wire`: the speed of the wire encodings
 * (base/wire_codec.h) on one core, against the transfer time they save. */
#ifndef BENCH_BENCH_WIRE_H
#define BENCH_BENCH_WIRE_H

/* argv[0] is "wire"; options [--json] [--floats N] [--reps N] [--help].
 * Prints per encoding the encode and decode rates (GB/s of float32 input)
 * and the link speed up to which encoding + decoding costs less than the
 * transfer time it saves. Returns 0, or 2 on bad usage (message on stderr). */
int bench_wire_main(int argc, char **argv);

#endif
