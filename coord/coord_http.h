/* coord_http.h — the live view of a run (issue 16, `run --http [HOST:]PORT`):
 * libevent's HTTP server on its own thread and event_base, serving what the
 * coordinator already gathers per step:
 *   /metrics     Prometheus text exposition format (pipetrain_* metrics)
 *   /api/status  JSON: run, step, losses, tokens/s, per process busy/wait/bubble,
 *                the latest step's timeline events
 *   /            one self-contained HTML page (inline JS/CSS/SVG) polling
 *                /api/status every second
 * Anything else is 404; methods other than GET/HEAD 405.
 *
 * Security: on loopback no authentication. Off loopback the caller must give
 * the run's shared secret, and every request must carry the token
 * hex(HMAC-SHA256(secret, "pipetrain live view")) as `Authorization: Bearer
 * TOKEN` or `?token=TOKEN` (compared in constant time; 401 otherwise). The
 * token grants reading the view only; the secret itself never leaves the
 * process.
 *
 * Threads: the server thread owns the event_base and the evhttp; the
 * coordinator's thread feeds it through the coord_http_* update calls below,
 * which only take a mutex (held for copying numbers: never blocks the
 * coordinator on a slow client). One object spans the whole run, restarts
 * included (each attempt's coordinator is handed the same one).
 *
 * Not here: the per-step data itself (coord/coord.c decodes NORM's live
 * trailer, stage/proto.h PROTO_START_LIVE), the files of the run (run/). */
#ifndef COORD_HTTP_H
#define COORD_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "topo/topo.h"

typedef struct coord_http coord_http;

/* Splits "[HOST:]PORT" ("[v6addr]:PORT" for IPv6) into host (cap bytes;
 * "127.0.0.1" when omitted) and *port (0..65535; 0 = ephemeral). Returns 0,
 * or -1 with err (ERR_LEN) naming what is wrong. Any thread. */
int coord_http_parse_addr(const char *spec, char *host, size_t cap, int *port, char *err);

/* 1 when every address host resolves to is a loopback address (127/8, ::1),
 * 0 otherwise (or when it does not resolve). Any thread. */
int coord_http_is_loopback(const char *host);

/* The bearer token for a secret: hex HMAC-SHA256(secret, "pipetrain live
 * view") into hex (65 bytes, NUL-terminated). Any thread. */
void coord_http_token(const uint8_t *secret, size_t len, char hex[65]);

/* Binds host:port and starts the server thread. t must outlive the object.
 * secret (len bytes, copied) NULL: no authentication (the caller checked the
 * address is loopback); else every request needs the token. Returns NULL with
 * err (ERR_LEN, naming the address and the reason, e.g. "address already in
 * use") when it cannot bind or start. */
coord_http *coord_http_new(const topo *t, const char *host, int port, uint64_t run_id, const uint8_t *secret,
                           size_t secret_len, char *err);

/* The port bound (the actual one when 0 was asked for). */
int coord_http_port(const coord_http *h);

/* Stops the thread (within about 100 ms), closes the socket and frees h.
 * NULL: no-op. Call from the thread that created it. */
void coord_http_free(coord_http *h);

/* ---- updates, from the coordinator's thread (they take the mutex) ---- */

/* A new attempt of run run_id begins at 0-based step first (restarts before it): the
 * processes' numbers of the previous attempt are dropped. */
void coord_http_attempt(coord_http *h, uint64_t run_id, long first, int restarts);

/* Decodes process p's live trailer (stage/proto.h: PROTO_LIVE_MAGIC, events,
 * stats) that came with its NORM of step s at recv_at (coordinator clock)
 * and keeps it. Returns 0, or -1 with err (ERR_LEN) when it is malformed
 * (bad magic, length, event count, an event of another step). */
int coord_http_live(coord_http *h, int p, long s, const uint8_t *buf, uint64_t len, double recv_at, char *err);

/* Step s (0-based) finished in dt seconds with these numbers (val NAN when
 * it did not evaluate). */
void coord_http_step(coord_http *h, long s, double loss, double lr, double norm, double val, double dt);

/* The run's state as /api/status shows it ("running", "done", "failed: ..."). */
void coord_http_state(coord_http *h, const char *state);

#endif
