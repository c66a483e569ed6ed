/* trace_window.h — a stage's trace, bounded: the events of the most recent
 * steps in a ring buffer whose capacity is fixed when it is created, so a
 * stage's memory for its trace is flat however long the run (issue #10).
 *
 * Events are kept in the order they were pushed. A "step" is a run of
 * consecutive events with the same step number (the runtime records steps in
 * order). When a new step begins and the window already holds max_steps steps,
 * or when the ring is full, the oldest whole step is dropped, so the window
 * holds whole steps; only a single step with more events than the capacity
 * loses events (its later ones: counted by trace_window_dropped).
 *
 * Not here: taking the times (stage/runtime.c), sending the window
 * (stage/runtime_trace.c). One thread (the stage's compute thread) uses it. */
#ifndef STAGE_TRACE_WINDOW_H
#define STAGE_TRACE_WINDOW_H

#include <stddef.h>
#include <stdint.h>

#include "stage/proto.h"

/* Steps a stage keeps by default: the most recent TRACE_WINDOW_STEPS (the
 * coordinator measures the timeline from these). */
#define TRACE_WINDOW_STEPS 256
/* Hard cap on the events a stage keeps, whatever the schedule (32 bytes each:
 * 2 MiB; the coordinator accepts no more from a stage). A schedule with more
 * events per step keeps fewer steps. */
#define TRACE_WINDOW_MAX_EVENTS PROTO_TRACE_MAX_EVENTS

typedef struct trace_window trace_window;

/* A window of at most max_steps (>= 1) steps and cap_events (>= 1) events,
 * allocated here at once. Returns NULL when either is 0 or memory is short
 * (tracing is best effort: the caller records nothing then). */
trace_window *trace_window_new(size_t max_steps, size_t cap_events);
/* Frees w. NULL: no-op. */
void trace_window_free(trace_window *w);
/* Appends *e, first dropping the oldest whole step when e starts a step that
 * would exceed max_steps or when the ring is full (see above). */
void trace_window_push(trace_window *w, const proto_event *e);
/* Events held. */
size_t trace_window_len(const trace_window *w);
/* Steps held (runs of equal step numbers). */
size_t trace_window_steps(const trace_window *w);
/* The capacity in events given to trace_window_new. */
size_t trace_window_cap(const trace_window *w);
/* Events pushed but not held: dropped with old steps, or over the capacity
 * within one step. */
uint64_t trace_window_dropped(const trace_window *w);
/* Event i of the window, 0 the oldest; i < trace_window_len. The pointer is
 * valid until the next push. */
const proto_event *trace_window_at(const trace_window *w, size_t i);

/* The bound to give trace_window_new for a stage whose per-step action list
 * has n_actions actions over n_chunks chunks and m micro-batches: every
 * action records at most 2 compute events (a fused BW records B and W), and
 * every micro-batch of every chunk at most 2 waits and 2 sends; at most
 * TRACE_WINDOW_MAX_EVENTS. */
size_t trace_window_cap_for(size_t max_steps, size_t n_actions, size_t n_chunks, size_t m);

#endif
