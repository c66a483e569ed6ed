/* runtime_2bw.c — the buffers of the asynchronous pipeline (PipeDream-2BW,
 * schedule.kind "2bw"): two weight versions, two gradients, two batches, and
 * AdamW deferred while the next step's micro-batches are already running. The
 * step itself (which version each action uses) is rt_step's, in runtime.c. The
 * one-process reference of the same arithmetic is stage/train.c. */
#include "model/util.h"
#include "run/run.h"
#include "stage/rt.h"
#include "stage/train.h"

#include <string.h>

static size_t wbytes(const rt *r) { return r->part->n_params * sizeof(float); }

void rt_2bw_setup(rt *r)
{
    if (!r->twobw) return;
    r->own_params = r->wv[0] = r->part->params;
    r->own_grads = r->gv[0] = r->part->grads;
    r->wv[1] = xmalloc(wbytes(r));
    memcpy(r->wv[1], r->wv[0], wbytes(r)); /* W(-1) = W(0) */
    r->gv[1] = xcalloc(r->part->n_params, sizeof(float));
    r->xb[0] = r->x;
    r->yb[0] = r->y;
    r->xb[1] = xcalloc(r->B * r->T, sizeof(int));
    r->yb[1] = xcalloc(r->B * r->T, sizeof(int));
    r->steplist = xcalloc(r->sched->len[r->K] + (size_t)r->M + 1, sizeof(sched_action));
    r->opt_pending = -1;
    r->stats.extra_weight_bytes = 2 * (uint64_t)wbytes(r); /* W(t-1) beside W(t), and the pending gradient */
}

int rt_2bw_resume(rt *r, long first)
{
    if (!r->twobw) return 0;
    char cerr[ERR_LEN];
    float *cur = r->wv[first & 1], *prev = r->wv[(first - 1) & 1];
    if (cur != r->part->params) memcpy(cur, r->part->params, wbytes(r));
    int found = run_resume_prev(r->t, r->o->out_dir, first, r->part, prev, cerr);
    if (found < 0) return rt_fail(r, "resuming: %s", cerr);
    if (!found) memcpy(prev, cur, wbytes(r)); /* from a synchronous run's checkpoint: as at step 0 */
    r->part->params = cur;
    r->sampled = first;
    if (r->has_data) r->sampler_after[(first - 1) & 1] = data_sampler_get_state(&r->sampler);
    return 0;
}

void rt_2bw_batch(rt *r, long u)
{
    for (; r->has_data && r->sampled <= u; r->sampled++) {
        int q = (int)(r->sampled & 1);
        data_sample_batch(&r->sampler, &r->data, r->xb[q], r->yb[q], r->B, r->T);
        r->sampler_after[q] = data_sampler_get_state(&r->sampler);
    }
}

int rt_2bw_optim(rt *r)
{
    long p = r->opt_pending;
    if (p < 0) return 0;
    double t0 = rt_now();
    uint8_t buf[8];
    net_key k = { MSG_NORM_REPLY, (uint64_t)p, 0, 0 };
    if (rt_recv_sync(r, net_coord_id(), k, buf, 8, "waiting for the global gradient norm from the coordinator"))
        return -1;
    /* W(p+1) = AdamW(W(p), g(p)) into the buffer of W(p-1): step p, the last
     * to use it, has finished its backwards on this stage */
    float *params = r->part->params, *grads = r->part->grads, *dst = r->wv[(p + 1) & 1];
    memcpy(dst, r->wv[p & 1], wbytes(r));
    r->part->params = dst;
    r->part->grads = r->gv[p & 1];
    stage_2bw_optim_apply(r->t, r->part, r->opt, p, get_f64le(buf)); /* stage/train.h */
    /* the synchronous warm-up: step p+1 computes on W(p+1), held by both versions */
    if (stage_2bw_sync_step(r->t, p)) memcpy(r->wv[p & 1], dst, wbytes(r));
    r->part->params = params == dst ? dst : params;
    r->part->grads = grads;
    r->opt_pending = -1;
    r->stats.optim_s += rt_now() - t0;
    return 0;
}

const float *rt_2bw_ckpt_weights(rt *r)
{
    if (!r->twobw) return NULL;
    r->part->params = r->wv[(r->step + 1) & 1];
    return r->wv[r->step & 1];
}

void rt_2bw_free(rt *r)
{
    if (!r->twobw) return;
    if (r->part) {
        r->part->params = r->own_params;
        r->part->grads = r->own_grads;
    }
    free(r->wv[1]);
    free(r->gv[1]);
    free(r->xb[1]);
    free(r->yb[1]);
    free(r->steplist);
    r->x = r->xb[0];
    r->y = r->yb[0];
}
