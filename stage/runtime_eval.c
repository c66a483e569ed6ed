/* runtime_eval.c — a stage's part in evaluating the validation split on an
 * evaluation step: forward passes only, batch by batch through its pipeline,
 * and on a data-parallel grid the split of the batches over the replica
 * pipelines and the ordered sum of their losses (see rt_eval in rt.h). It does
 * not decide when to evaluate (run_is_eval_step) nor how many windows
 * (run_eval_windows). */
#include "coll/coll.h"
#include "run/run.h"
#include "stage/rt.h"

#include <math.h>
#include <time.h>

/* ---- evaluation: forward-only through the pipeline, batch by batch ----
 * The validation windows are cut into batches of Bm sequences, numbered in
 * window order. With all-reduce replicas (r->dp) replica r's pipeline runs the
 * contiguous block coll_segment(n_batches, R, r) of them; otherwise (R = 1,
 * parameter servers) replica 0's runs them all. Batch j of a pipeline's block
 * is keyed mb = j. Stage 0 knows how many windows there are; every other stage
 * learns the batch size from the payload length, and an empty payload ends the
 * evaluation. The head stages then add the per-batch losses in batch order
 * (eval_chain), so the validation loss is bitwise R = 1's. */
static int eval_split(const rt *r) { return r->dp != NULL; }

/* The compute thread's CPU seconds (the evaluation's kernels run on it with one BLAS thread). */
static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* This pipeline's batches: [*lo, *lo + *n) of the evaluation's, Bm windows each. */
static void eval_block(const rt *r, size_t nw, size_t *lo, size_t *n)
{
    size_t nb = (nw + r->Bm - 1) / r->Bm;
    *lo = 0;
    *n = nb;
    if (eval_split(r)) coll_segment(nb, r->R, r->rep, lo, n);
}

/* The head stages of the replicas hand the running sum along their ring,
 * replica 0 -> 1 -> ... -> R-1 -> 0 (MSG_EVAL_SUM): replica r adds its block's
 * batch losses, in order, to its predecessor's sum, exactly the additions of
 * the one-pipeline loop `sum = 0; sum += loss[e]` (no partial sums: double
 * addition is not associative). Replica 0 ends with the total in *sum. */
static int eval_chain(rt *r, const double *loss, size_t n, double *sum)
{
    uint8_t buf[8];
    char what[96];
    int R = eval_split(r) ? r->R : 1, prev = (r->rep + R - 1) % R, next = (r->rep + 1) % R;
    net_key k = { MSG_EVAL_SUM, (uint64_t)r->step, 0, 0 };
    double s = 0;
    snprintf(what, sizeof what, "waiting for the validation loss sum from stage %d replica %d", r->K, prev);
    if (r->rep > 0) {
        if (rt_recv_sync(r, net_stage_id((uint16_t)r->K, (uint16_t)prev), k, buf, sizeof buf, what)) return -1;
        s = get_f64le(buf);
    }
    for (size_t j = 0; j < n; j++) s += loss[j];
    if (R > 1) {
        put_f64le(buf, s);
        if (rt_send_sync(r, net_stage_id((uint16_t)r->K, (uint16_t)next), k, buf, sizeof buf)) return -1;
    }
    if (r->rep == 0 && R > 1 && rt_recv_sync(r, net_stage_id((uint16_t)r->K, (uint16_t)prev), k, buf, sizeof buf, what))
        return -1;
    *sum = r->rep == 0 && R > 1 ? get_f64le(buf) : s;
    return 0;
}

/* Receives evaluation batch j of chunk c's from the previous stage into c->act_in[0]; *b its sequences. */
static int eval_recv(rt *r, rt_chunk *c, net_key k, size_t j, size_t *b)
{
    struct net_op *op = NULL;
    char nerr[NET_ERR_LEN], what[96];
    void *dst = c->wire_in ? (void *)c->wire_in[0] : (void *)c->act_in[0];
    snprintf(what, sizeof what, "waiting for evaluation batch %zu from stage %d", j, c->prev);
    if (net_recv_post(r->node, rt_peer(r, c->prev), k, dst, rt_wire_len(r, 0, r->Bm), &op, nerr))
        return rt_fail(r, "%s: %s", what, nerr);
    int rc = rt_await(r, op, what);
    *b = 0; /* any whole number of sequences (in the wire encoding) */
    if (!rc) rc = rt_wire_check(r, 0, op, b, what);
    net_op_free(op);
    if (rc) return -1;
    if (c->wire_in) rt_wire_unpack(r, 0, c->act_in[0], c->wire_in[0], *b);
    return 0;
}

/* Sends len bytes of chunk c's evaluation output to the next stage and waits until it is written. */
static int eval_send(rt *r, rt_chunk *c, net_key k, const void *out, uint64_t len, const char *what)
{
    struct net_op *op = NULL;
    if (rt_send_tag(r, rt_peer(r, c->next), k, out, len, rt_wire_enc(r, 0), &op)) return -1;
    int rc = rt_await(r, op, what);
    net_op_free(op);
    return rc;
}

/* Chunk c's part of evaluation batch j (global batch e, b sequences) after its
 * input is in `in`: forward, then the hand-over (*handed) or the send. The
 * head adds nothing here: it returns the batch's loss in *loss. */
static int eval_forward(rt *r, rt_chunk *c, rt_chunk *d, net_key k, size_t e, size_t b, const float *in,
                        size_t *handed, double *loss)
{
    size_t T = r->T, row = T * r->C * sizeof(float);
    model_slot *s = rt_slot_get(r, c);
    if (c->vs == 0)
        for (size_t i = 0; i < b; i++) data_val_window(&r->data, e * r->Bm + i, s[0].tokens + i * T, r->y + i * T, T);
    if (c->vs == r->V - 1) {
        int *tgt = s[c->hi - c->lo - 1].tokens, *scratch = r->x;
        for (size_t i = 0; i < b; i++) data_val_window(&r->data, e * r->Bm + i, scratch + i * T, tgt + i * T, T);
        double l = model_forward(r->part, c->lo, c->hi, s, in, NULL, b, T);
        if (!loss) {
            rt_slot_put(r, c, s);
            return rt_fail(r, "evaluation batch %zu came after the last one this replica scores", e);
        }
        *loss = l;
    } else {
        model_forward(r->part, c->lo, c->hi, s, in, c->act_out[0], b, T);
    }
    rt_slot_put(r, c, s);
    if (c->vs == r->V - 1) return 0;
    /* the wire encoding as in training (runtime_wire.c), a local hand-over too */
    const void *out = rt_wire_pack(r, 0, c->wire_out ? c->wire_out[0] : NULL, c->act_out[0], b);
    if (d) {
        if (out == c->act_out[0]) memcpy(d->act_in[0], c->act_out[0], b * row);
        else rt_wire_unpack(r, 0, d->act_in[0], out, b);
        *handed = b;
        return 0;
    }
    return eval_send(r, c, k, out, rt_wire_len(r, 0, b), "sending an evaluation batch");
}

int rt_eval(rt *r)
{
    if (r->rep > 0 && !eval_split(r)) return 0; /* replica 0's pipeline evaluates (stage/proto.h) */
    size_t nw = 0, lo = 0, nb = 0, T = r->T;
    if (r->has_data) nw = run_eval_windows(r->t, r->step, data_val_windows(&r->data, T));
    if (r->has_data) eval_block(r, nw, &lo, &nb);
    double *loss = r->holds_head ? xcalloc(nb ? nb : 1, sizeof(double)) : NULL, t0 = rt_now(), c0 = thread_cpu_s();
    size_t handed = 0, j; /* batch rows copied to the next chunk on this stage (the turn of a V) */
    int rc = 0;
    for (j = 0; !rc; j++) {
        int done = 0;
        for (int ci = 0; ci < r->n_chunks && !rc; ci++) {
            rt_chunk *c = &r->ch[ci];
            rt_chunk *d = c->next == r->K ? rt_local_chunk(r, c->vs + 1) : NULL;
            net_key k = { MSG_EVAL_ACT, (uint64_t)r->step, (uint32_t)j, (uint32_t)c->vs };
            size_t b = 0, e = lo + j;
            const float *in = NULL;
            if (c->vs == 0) b = j >= nb ? 0 : (nw - e * r->Bm < r->Bm ? nw - e * r->Bm : r->Bm);
            else if (c->prev == r->K) b = handed, in = c->act_in[0];
            else if (!(rc = eval_recv(r, c, k, j, &b))) in = c->act_in[0];
            if (rc) break;
            k.chunk = (uint32_t)(c->vs + 1);
            if (b == 0) { /* the end: an empty payload, tagged like the batches */
                done = 1;
                if (d) handed = 0;
                else if (c->vs < r->V - 1) rc = eval_send(r, c, k, c->act_out[0], 0, "sending the end of the evaluation");
                continue;
            }
            rc = eval_forward(r, c, d, k, e, b, in, &handed, loss && j < nb ? &loss[j] : NULL);
        }
        if (done) break;
    }
    double sum = 0;
    if (!rc && r->holds_head) rc = eval_chain(r, loss, nb, &sum);
    free(loss);
    if (rc) return -1;
    if (eval_split(r) && r->has_data)
        fprintf(stderr, "pipetrain stage %d replica %d: step %ld: evaluated batches %zu..%zu of %zu in %.3f s (%.3f s of CPU)\n",
                r->K, r->rep, r->step + 1, lo, lo + nb, (nw + r->Bm - 1) / r->Bm, rt_now() - t0, thread_cpu_s() - c0);
    if (!r->holds_head || r->rep > 0) return 0;
    uint8_t buf[16]; /* the head stage holds data, so nw is its window count too */
    put_f64le(buf, nw ? sum / (double)(nw * T) : NAN);
    put_u64le(buf + 8, nw * T);
    net_key k = { MSG_VAL, (uint64_t)r->step, 0, 0 };
    return rt_send_sync(r, net_coord_id(), k, buf, 16);
}
