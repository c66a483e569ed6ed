/* pool.c — the fork-join pool behind pool_for (see pool.h). The caller is
 * worker 0 and works too; workers 1..W-1 are threads created on first use.
 * A job is open from its publication until the caller has seen every item
 * claimed; a worker joins an open job under the mutex, so a worker that wakes
 * late simply finds the job closed and goes back to waiting. Workers spin
 * briefly before sleeping, so back-to-back jobs (one per kernel) rarely pay a
 * futex round trip. One job at a time: a second calling thread that finds the
 * pool busy runs its own items serially. */
#include "model/pool.h"

#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "model/util.h"

enum { POOL_MAX = 64, SPIN_ROUNDS = 4000 };

static struct {
    pthread_mutex_t run;         /* held by the thread running a job */
    pthread_mutex_t mu;          /* guards the job fields and active */
    pthread_cond_t cv;
    int threads;                 /* worker threads started (excluding the caller) */
    atomic_ulong gen;            /* job generation; bumped per job */
    int open, want, active;      /* job accepts joiners; workers allowed; workers inside */
    pool_fn fn;
    void *ctx;
    size_t n;
    atomic_size_t next;          /* next unclaimed item */
    float *scratch[POOL_MAX];
    size_t scratch_n[POOL_MAX];
} P = { .run = PTHREAD_MUTEX_INITIALIZER, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static void drain(pool_fn fn, void *ctx, size_t n, int worker)
{
    for (;;) {
        size_t i = atomic_fetch_add_explicit(&P.next, 1, memory_order_relaxed);
        if (i >= n) return;
        fn(ctx, i, worker);
    }
}

static void *worker_main(void *arg)
{
    int id = (int)(size_t)arg;
    unsigned long seen = atomic_load(&P.gen);
    for (;;) {
        for (int s = 0; s < SPIN_ROUNDS && atomic_load_explicit(&P.gen, memory_order_relaxed) == seen; s++)
            if (s % 32 == 31) sched_yield();
        pthread_mutex_lock(&P.mu);
        while (atomic_load(&P.gen) == seen) pthread_cond_wait(&P.cv, &P.mu);
        seen = atomic_load(&P.gen);
        int join = P.open && id < P.want;
        pool_fn fn = P.fn;
        void *ctx = P.ctx;
        size_t n = P.n;
        if (join) P.active++;
        pthread_mutex_unlock(&P.mu);
        if (!join) continue;
        drain(fn, ctx, n, id);
        pthread_mutex_lock(&P.mu);
        P.active--;
        pthread_mutex_unlock(&P.mu);
    }
    return NULL;
}

/* After fork() the child has only the calling thread: forget the workers. */
static void after_fork_child(void)
{
    pthread_mutex_init(&P.run, NULL);
    pthread_mutex_init(&P.mu, NULL);
    pthread_cond_init(&P.cv, NULL);
    P.threads = 0;
    P.active = 0;
    P.open = 0;
}

static void ensure_threads(int want)
{
    static int atfork_done;
    if (!atfork_done) { pthread_atfork(NULL, NULL, after_fork_child); atfork_done = 1; }
    while (P.threads < want) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker_main, (void *)(size_t)(P.threads + 1))) break;
        pthread_detach(t);
        P.threads++;
    }
}

static void run_serial(size_t n, pool_fn fn, void *ctx)
{
    for (size_t i = 0; i < n; i++) fn(ctx, i, 0);
}

void pool_for(size_t n, pool_fn fn, void *ctx)
{
    pool_for_threads(openblas_get_num_threads(), n, fn, ctx);
}

void pool_for_threads(int w, size_t n, pool_fn fn, void *ctx)
{
    if (w > POOL_MAX) w = POOL_MAX;
    /* one job at a time: a caller that finds the pool busy (another thread's
     * job) runs its items itself rather than wait */
    if (w <= 1 || n <= 1 || pthread_mutex_trylock(&P.run)) {
        run_serial(n, fn, ctx);
        return;
    }
    ensure_threads(w - 1);
    pthread_mutex_lock(&P.mu);
    P.fn = fn; P.ctx = ctx; P.n = n; P.want = w; P.open = 1;
    atomic_store(&P.next, 0);
    atomic_fetch_add(&P.gen, 1);
    pthread_cond_broadcast(&P.cv);
    pthread_mutex_unlock(&P.mu);
    drain(fn, ctx, n, 0);
    /* every item is claimed: close the job, then wait for the joiners to finish */
    pthread_mutex_lock(&P.mu);
    P.open = 0;
    for (int s = 0; P.active > 0; s++) {
        pthread_mutex_unlock(&P.mu);
        if (s % 32 == 31) sched_yield();
        pthread_mutex_lock(&P.mu);
    }
    pthread_mutex_unlock(&P.mu);
    pthread_mutex_unlock(&P.run);
}

/* Worker 0 is whichever thread calls pool_for, so its scratch is per thread
 * (freed when the thread exits); workers 1.. keep theirs in P. */
typedef struct { float *p; size_t n; } scratch_buf;
static pthread_key_t caller_key;
static pthread_once_t caller_once = PTHREAD_ONCE_INIT;
static void caller_free(void *v)
{
    scratch_buf *b = v;
    free(b->p);
    free(b);
}
static void caller_init(void) { pthread_key_create(&caller_key, caller_free); }

static float *grow(float **p, size_t *have, size_t floats)
{
    if (*have < floats) {
        free(*p);
        *p = xmalloc(floats * sizeof(float));
        *have = floats;
    }
    return *p;
}

float *pool_scratch(int worker, size_t floats)
{
    if (worker > 0) return grow(&P.scratch[worker], &P.scratch_n[worker], floats);
    pthread_once(&caller_once, caller_init);
    scratch_buf *b = pthread_getspecific(caller_key);
    if (!b) {
        b = xcalloc(1, sizeof *b);
        pthread_setspecific(caller_key, b);
    }
    return grow(&b->p, &b->n, floats);
}

size_t pool_chunks(size_t n, size_t min_rows)
{
    size_t c = n / (min_rows ? min_rows : 1);
    if (c > 64) c = 64;
    return c ? c : 1;
}

void pool_chunk_range(size_t n, size_t chunks, size_t i, size_t *lo, size_t *hi)
{
    *lo = n * i / chunks;
    *hi = n * (i + 1) / chunks;
}
