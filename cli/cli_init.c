/* cli_init.c — `--init-from DIR` (issue 16) for run, check and stage, and
 * reading an exported Hugging Face directory as a model for eval and sample.
 * The loading itself is model/hf_load.c; the model section is topo/topo_init.c. */
#include "cli/cli.h"
#include "model/hf_load.h"
#include "model/util.h"

#include <sys/stat.h>
#include <unistd.h>

int cli_init_from_set(char *out, size_t n, const char *dir)
{
    char cwd[4096];
    if (dir[0] == '/' || !getcwd(cwd, sizeof cwd)) return snprintf(out, n, "init_from=%s", dir) < (int)n ? 0 : -1;
    return snprintf(out, n, "init_from=%s/%s", cwd, dir) < (int)n ? 0 : -1;
}

int cli_init_from_check(const char *cmd, const topo *t)
{
    char err[ERR_LEN];
    if (!t->init_from) return 0;
    if (hf_check(t->init_from, &t->model, err)) {
        fprintf(stderr, "pipetrain %s: %s: init_from: %s\n", cmd, t->path, err);
        return 2;
    }
    return 0;
}

static int exists(const char *dir, const char *name)
{
    char p[4200];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0;
}

int cli_is_hf_dir(const char *path)
{
    return exists(path, "config.json") && (exists(path, "model.safetensors") ||
                                           exists(path, "model.safetensors.index.json"));
}

model_part *cli_load_hf(const char *path, size_t max_batch, run_ckpt *ck, char *err)
{
    long max_pos;
    memset(ck, 0, sizeof *ck);
    if (hf_config_load(path, &ck->cfg, &max_pos, err)) return NULL;
    if (hf_check(path, &ck->cfg, err)) return NULL;
    int n = model_n_units(&ck->cfg);
    int *units = xmalloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) units[i] = i;
    model_part *p = model_part_new(&ck->cfg, units, n, max_batch, 0);
    free(units);
    if (hf_load_part(path, p, NULL, err)) {
        model_part_free(p);
        return NULL;
    }
    ck->dir = xstrdup(path);
    return p;
}
