/* bench_pipeline_run.c — runs `bench pipeline` standalone
 * (bin/tests/bench_pipeline_run [options]) until cli/ dispatches to it. Helpers
 * link only against the library, and bench/ objects live in bin/pipetrain, so
 * the bench source is compiled into this program directly. The runs it starts
 * use bin/pipetrain (found beside this program's directory) unless --bin is given. */
#include "bench/bench_pipeline.c"

int main(int argc, char **argv)
{
    char self[PATH_MAX], bin[PATH_MAX + 16], name[] = "pipeline", opt[] = "--bin";
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    char *args[argc + 3];
    int k = 0;
    args[k++] = name;
    if (n > 0) {
        self[n] = 0;
        char *slash = strrchr(self, '/');
        if (slash) *slash = 0;                       /* bin/tests */
        slash = strrchr(self, '/');
        if (slash) *slash = 0;                       /* bin */
        snprintf(bin, sizeof bin, "%s/pipetrain", self);
        args[k++] = opt;
        args[k++] = bin;
    }
    for (int i = 1; i < argc; i++) args[k++] = argv[i]; /* a later --bin wins */
    args[k] = NULL;
    return bench_pipeline_main(k, args);
}
