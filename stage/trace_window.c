/* trace_window.c — the ring buffer of a stage's most recent steps' events
 * (see trace_window.h). */
#include "stage/trace_window.h"

#include <stdlib.h>

struct trace_window {
    proto_event *ev;  /* (cap) ring */
    size_t cap, head, len;
    size_t max_steps, n_steps;
    uint64_t dropped;
};

trace_window *trace_window_new(size_t max_steps, size_t cap_events)
{
    if (!max_steps || !cap_events) return NULL;
    trace_window *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    if (!(w->ev = malloc(cap_events * sizeof *w->ev))) {
        free(w);
        return NULL;
    }
    w->cap = cap_events;
    w->max_steps = max_steps;
    return w;
}

void trace_window_free(trace_window *w)
{
    if (!w) return;
    free(w->ev);
    free(w);
}

static proto_event *slot(const trace_window *w, size_t i) { return &w->ev[(w->head + i) % w->cap]; }

/* Drops the oldest step: the run of events sharing the head's step number. */
static void drop_oldest_step(trace_window *w)
{
    if (!w->len) { w->n_steps = 0; return; }
    uint64_t s = w->ev[w->head].step;
    while (w->len && w->ev[w->head].step == s) {
        w->head = (w->head + 1) % w->cap;
        w->len--;
        w->dropped++;
    }
    w->n_steps--;
}

void trace_window_push(trace_window *w, const proto_event *e)
{
    if (!w) return;
    if (!w->len || slot(w, w->len - 1)->step != e->step) {
        w->n_steps++;
        while (w->n_steps > w->max_steps) drop_oldest_step(w);
    }
    if (w->len == w->cap) {
        if (w->n_steps <= 1) { /* one step larger than the whole window: keep its start */
            w->dropped++;
            return;
        }
        drop_oldest_step(w);
    }
    *slot(w, w->len) = *e;
    w->len++;
}

size_t trace_window_len(const trace_window *w) { return w ? w->len : 0; }
size_t trace_window_steps(const trace_window *w) { return w ? w->n_steps : 0; }
size_t trace_window_cap(const trace_window *w) { return w ? w->cap : 0; }
uint64_t trace_window_dropped(const trace_window *w) { return w ? w->dropped : 0; }
const proto_event *trace_window_at(const trace_window *w, size_t i) { return slot(w, i); }

size_t trace_window_cap_for(size_t max_steps, size_t n_actions, size_t n_chunks, size_t m)
{
    size_t per = 2 * n_actions + 4 * n_chunks * m + 1;
    if (!max_steps) max_steps = 1;
    if (per > TRACE_WINDOW_MAX_EVENTS / max_steps) return TRACE_WINDOW_MAX_EVENTS;
    return per * max_steps;
}
