/* bench_env.c — see bench_env.h. */
#include "bench/bench_env.h"

#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static cpu_set_t all_cpus;
int bench_cpu_a = -1, bench_cpu_b = -1;

void bench_cpus_init(void)
{
    if (sched_getaffinity(0, sizeof all_cpus, &all_cpus) != 0) return;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &all_cpus)) {
            if (bench_cpu_a < 0) bench_cpu_a = c;
            else if (bench_cpu_b < 0) bench_cpu_b = c;
        }
}

void bench_pin_self(int cpu)
{
    if (bench_cpu_a < 0) return;
    cpu_set_t set = all_cpus;
    if (cpu >= 0) {
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
    }
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

int bench_wait_quiet(void)
{
    pid_t self = (pid_t)syscall(SYS_gettid);
    for (int tries = 0; tries < 200; tries++) {
        DIR *d = opendir("/proc/self/task");
        int busy = 0;
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.' || atoi(e->d_name) == self) continue;
            char path[300], buf[256];
            snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
            FILE *f = fopen(path, "r");
            size_t k = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
            if (f) fclose(f);
            buf[k] = 0;
            const char *rp = strrchr(buf, ')'); /* "tid (comm) S ..." */
            busy += rp && rp[1] == ' ' && rp[2] == 'R';
        }
        if (d) closedir(d);
        if (!busy) return 0;
        usleep(10000);
    }
    return -1;
}
