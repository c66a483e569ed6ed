/* bench_env.h — what a benchmark needs from its process to measure cleanly:
 * a known CPU placement and no other thread of its own running. */
#ifndef BENCH_BENCH_ENV_H
#define BENCH_BENCH_ENV_H

/* The first two CPUs this process may use (-1 when there are fewer), set by
 * bench_cpus_init. */
extern int bench_cpu_a, bench_cpu_b;
void bench_cpus_init(void);
/* Pins the calling thread to cpu; -1: back to every CPU the process started
 * with. No-op before bench_cpus_init. */
void bench_pin_self(int cpu);
/* Waits (up to 2 s) until every other thread of this process is asleep.
 * OpenBLAS starts a worker thread when the library loads, and it spins on
 * sched_yield for about 0.1 s before it sleeps; while it spins it holds a CPU
 * that the first measurements need. Returns 0 when the process went quiet. */
int bench_wait_quiet(void);

#endif
