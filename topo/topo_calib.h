/* topo_calib.h — calibration from several runs of one topology (issue 13): the
 * MEDIAN, over the runs' measured costs files (RUN_DIR/costs.json, which the
 * coordinator writes beside summary.json), of every cost they hold: per virtual
 * stage and action kind (F, B, W), per unit of the model and kind ("units"), and
 * per link (latency, bandwidth, link_bandwidth). One run on a shared machine is
 * a poor sample of its speed; the median of a few is robust to a disturbed one.
 * Used by `pipetrain balance --calibrate` and `pipetrain schedule --calibrate`
 * (both repeatable). */
#ifndef TOPO_TOPO_CALIB_H
#define TOPO_TOPO_CALIB_H

#include "topo/topo.h"

typedef struct {
    int n_runs;
    char **paths;           /* (n_runs) the costs files read, as resolved */
    int n_stages, n_chunks; /* the runs' layout ("stages", "chunks") */
    sched_costs *costs;     /* medians: f, b, w per virtual stage, latency,
                             * bandwidth; link_bandwidth (NULL unless a run has it)
                             * per link over the runs that sampled it (> 0); bytes
                             * zero; bw_early, w_in_order the first run's */
    int n_units;            /* units of "units", 0 when a run's file has none */
    double *uf, *ub, *uw;   /* (n_units) medians of "units" f, b, w; NULL when 0 */
    int **split;            /* (n_stages) units of each stage in the runs' split,
                             * from a summary.json beside a costs file ("stages"[i].
                             * "layers", replica 0) parsed for t's model; NULL when
                             * no run has one or no topology was given */
    int *split_n;           /* (n_stages) their counts, with split */
    char *split_from;       /* the summary.json the split was read from, with split */
} topo_calib;

/* Reads runs[0..n) (n >= 1; each a run directory, meaning RUN_DIR/costs.json, or
 * a costs file's path ending in ".json") and takes the median of each cost over
 * them (topo_calib_median). Refused, return 2 with err naming the file and the
 * field: a file that does not load (sched_costs_load's checks); a file whose
 * "stages"/"chunks" differ from the first run's; "units" of another length than
 * the first run's or, with t, than t's model has units (another model); the same
 * file twice; and, where a run directory has a summary.json (the one beside the
 * costs file): "params" (the model's parameter count) other than another run's
 * or, with t, t's model's (another model), and "stages"[i]."layers" holding other
 * units than another run's (another split) or, with t and same_split, than t's
 * stage i (schedule applies stage costs to the topology's stages; balance gives
 * same_split 0: it spreads them over the runs' own split). Without t the layers
 * are compared as written. Returns 0 with *out filled (free with topo_calib_free,
 * also after a failure), 1 when out of memory; err holds ERR_LEN bytes (base/base.h).
 * Any thread. */
int topo_calib_load(const char *const *runs, int n, const topo *t, int same_split, topo_calib *out, char *err);

/* Frees what c owns and zeroes it; a zeroed c is fine. */
void topo_calib_free(topo_calib *c);

/* The median of v[0..n) (n >= 1), sorting v: the middle value, or for an even n
 * the mean of the two middle values (as sched_measure's per-action medians; two
 * runs give their mean). NAN when n < 1. */
double topo_calib_median(double *v, int n);

#endif
