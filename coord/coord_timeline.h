/* coord_timeline.h — private to the coordinator: from the gathered trace to the
 * measured timeline (OUT/timeline.svg), the calibrated costs (OUT/costs.json) and
 * the "timing" object of summary.json. See coord_timeline.c. */
#ifndef COORD_TIMELINE_H
#define COORD_TIMELINE_H

#include <jansson.h>

#include "stage/proto.h"
#include "topo/topo.h"

/* Measures the run's events ev[k][0..n_ev[k]) (times on one clock) against the
 * schedule the topology names, writes OUT/timeline.svg (the representative step:
 * median compute span of the steps after the first), OUT/timeline-predicted.svg
 * (sched_simulate with the run's own mean F/B/W costs per virtual stage and the
 * measured transfer latency) and OUT/costs.json (those costs, for `pipetrain
 * schedule --calibrate OUT`). Returns 0 with a new JSON object in *timing for
 * summary.json, or 1 with err (nothing measurable, a write error). */
int coord_timeline(const topo *t, const char *out_dir, proto_event *const *ev, const size_t *n_ev, json_t **timing,
                   char *err);

#endif
