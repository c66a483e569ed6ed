/* pool.h — private to model/: a tiny fork-join pool that spreads independent
 * work items over as many threads as OpenBLAS uses (openblas_get_num_threads),
 * so the kernels between matrix products use the cores the products use.
 * Items are claimed dynamically but each item's arithmetic does not depend on
 * which thread runs it, so results are the same bits for any thread count.
 * Items must not call pool_for. Several threads may call pool_for at once:
 * one gets the pool, the others run their items serially. Nothing here
 * allocates once the threads and scratch buffers reach their steady sizes. */
#ifndef MODEL_POOL_H
#define MODEL_POOL_H

#include <stddef.h>

/* fn(ctx, item, worker) for item = 0..n-1; worker in [0, threads) names the
 * calling thread (for pool_scratch). Returns when all items are done. */
typedef void (*pool_fn)(void *ctx, size_t item, int worker);
void pool_for(size_t n, pool_fn fn, void *ctx);
/* pool_for on `threads` threads (the caller included) instead of OpenBLAS's
 * count: for a caller that has set OpenBLAS to one thread meanwhile. */
void pool_for_threads(int threads, size_t n, pool_fn fn, void *ctx);

/* A per-worker scratch buffer of at least `floats` floats, valid until the
 * next pool_scratch call by the same worker with a larger size (worker 0's
 * belongs to the calling thread). Exits via xmalloc on allocation failure. */
float *pool_scratch(int worker, size_t floats);

/* Splits n rows into chunks for pool_for: number of chunks, and the row range
 * [lo, hi) of chunk i. Chunks depend only on n, never on the thread count. */
size_t pool_chunks(size_t n, size_t min_rows);
void pool_chunk_range(size_t n, size_t chunks, size_t i, size_t *lo, size_t *hi);

#endif
