/* test_2bw_optim.c — PipeDream-2BW's optimizer step (stage_2bw_optim_apply,
 * README "PipeDream-2BW") against a double-precision reference of its rule:
 * AdamW whose update divides the Nesterov-form first moment
 *   m̄ = β1·m̂ + (1-β1)·g'     (m̂ = m/(1-β1^t), g' the clipped gradient)
 * by sqrt(v̂) + ε, the compensation of the one-step-stale gradient; m, v, the
 * clipping, the learning rate and the decay are run_optim_apply's. Also: the
 * step is not plain AdamW (2bw without the compensation fails here).
 * That both trainers call it is checked bitwise by tests/t_2bw.sh. */
#include <float.h>
#include <math.h>

#include "base/base.h"
#include "model/model.h"
#include "model/optim.h"
#include "run/run.h"
#include "stage/train.h"
#include "topo/topo.h"
#include "tests/tests.h"

#define FEPS ((double)FLT_EPSILON)

static model_part *small_part(void)
{
    model_config c = { .dim = 8, .n_layers = 2, .n_heads = 2, .n_kv_heads = 1, .ffn_dim = 12,
                       .vocab_size = 16, .seq_len = 4, .norm_eps = 1e-5f, .rope_theta = 10000.0f,
                       .tie_embeddings = 0 };
    int units[4] = { 0, 1, 2, 3 };
    return model_part_new(&c, units, 4, 1, 77);
}

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static double uniform(void) /* [-1, 1) */
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static void test_rule(void)
{
    char *sets[] = { "train.steps=8", "train.warmup_steps=2", "train.lr=0.01", "train.min_lr=0.001",
                     "train.weight_decay=0.1", "train.beta1=0.9", "train.beta2=0.95", "train.grad_clip=1.0" };
    topo t;
    char err[ERR_LEN];
    int rc = topo_load(&t, "topologies/shakespeare-1stage.json", sets, 8, err);
    if (rc) fprintf(stderr, "\n  %s\n", err);
    CU_ASSERT_FATAL(rc == 0);
    model_part *p = small_part(), *q = small_part(); /* q: plain AdamW from p's state, for contrast */
    size_t n = p->n_params;
    optim_adamw *o = optim_new(n), *oq = optim_new(n);
    double *sq = xcalloc((size_t)p->n_units, sizeof *sq), *wd = xcalloc(n, sizeof *wd);
    for (int i = 0; i < p->n_tensors; i++)
        for (size_t j = 0; j < p->tensors[i].numel; j++)
            wd[p->tensors[i].offset + j] = p->tensors[i].ndim == 2 ? 0.1 : 0.0;
    const double b1 = 0.9, b2 = 0.95, eps = 1e-8;
    int ok = 1, differs = 0;
    for (long s = 0; s < 8; s++) {
        double amp = s & 1 ? 0.01 : 0.2; /* norms ~0.25 (not clipped) and ~5 (clipped) */
        for (size_t i = 0; i < n; i++) p->grads[i] = (float)(amp * uniform());
        optim_unit_sqnorms(p, sq);
        double norm = optim_global_norm(sq, p->n_units);
        double scale = norm > 1.0 ? 1.0 / (norm + 1e-6) : 1.0, lr = run_lr(&t, s);
        long ts = s + 1;
        double c1 = 1.0 / (1.0 - pow(b1, (double)ts)), c2 = 1.0 / (1.0 - pow(b2, (double)ts));
        /* plain AdamW from the same state */
        memcpy(q->params, p->params, n * sizeof(float));
        memcpy(q->grads, p->grads, n * sizeof(float));
        memcpy(oq->m, o->m, n * sizeof(float));
        memcpy(oq->v, o->v, n * sizeof(float));
        oq->step = o->step;
        run_optim_apply(&t, q, oq, s, norm);
        size_t bad = 0, worst = 0;
        double worst_r = 0, *want = xcalloc(n, sizeof *want), *tol = xcalloc(n, sizeof *tol);
        for (size_t i = 0; i < n; i++) {
            double g = (double)p->grads[i] * scale, w0 = p->params[i];
            double m = b1 * o->m[i] + (1 - b1) * g, v = b2 * o->v[i] + (1 - b2) * g * g;
            double mbar = b1 * m * c1 + (1 - b1) * g;
            double step = lr * (mbar / (sqrt(v * c2) + eps) + wd[i] * w0);
            want[i] = w0 - step;
            /* float arithmetic with β rounded to float: ~1e-5 of the update
             * (as test_optim.c), plus 4 epsilons of |w| for the last rounding */
            tol[i] = 4 * FEPS * fabs(w0) + 1e-5 * (fabs(step) + lr);
        }
        stage_2bw_optim_apply(&t, p, o, s, norm);
        CU_ASSERT_EQUAL(o->step, ts);
        for (size_t i = 0; i < n; i++) {
            double d = fabs((double)p->params[i] - want[i]), r = d / tol[i];
            if (!(r <= 1)) bad++;
            if (!(r <= worst_r)) { worst_r = r; worst = i; }
            if (s > 0 && fabs((double)p->params[i] - q->params[i]) > 10 * tol[i]) differs++;
        }
        if (bad)
            fprintf(stderr, "\n  step %ld: %zu/%zu off, worst [%zu] %.9g vs %.9g (%.3gx tolerance)\n", s, bad, n,
                    worst, (double)p->params[worst], want[worst], worst_r);
        ok &= bad == 0;
        free(want);
        free(tol);
    }
    CU_ASSERT(ok);
    /* from the second step on, the Nesterov form moves many elements well
     * beyond rounding away from plain AdamW */
    CU_ASSERT(differs > (int)n);
    free(sq);
    free(wd);
    optim_free(o);
    optim_free(oq);
    model_part_free(p);
    model_part_free(q);
    topo_free(&t);
}

/* schedule.warmup_sync_steps = 3: steps 0..2 are run_optim_apply's to the bit
 * (1f1b's arithmetic), steps 3.. the Nesterov form (not plain AdamW); absent,
 * a 2bw topology takes train.warmup_steps and any other kind 0. */
static void test_warmup(void)
{
    char *sets[] = { "train.steps=6", "train.warmup_steps=2", "train.lr=0.01", "schedule.kind=2bw",
                     "schedule.warmup_sync_steps=3" };
    topo t;
    char err[ERR_LEN];
    int rc = topo_load(&t, "topologies/shakespeare-1stage.json", sets, 5, err);
    if (rc) fprintf(stderr, "\n  %s\n", err);
    CU_ASSERT_FATAL(rc == 0);
    CU_ASSERT(stage_2bw_sync_step(&t, 0) && stage_2bw_sync_step(&t, 2) && !stage_2bw_sync_step(&t, 3));
    model_part *p = small_part(), *q = small_part();
    size_t n = p->n_params;
    optim_adamw *o = optim_new(n), *oq = optim_new(n);
    double *sq = xcalloc((size_t)p->n_units, sizeof *sq);
    for (long s = 0; s < 6; s++) {
        for (size_t i = 0; i < n; i++) p->grads[i] = q->grads[i] = (float)(0.05 * uniform());
        optim_unit_sqnorms(p, sq);
        double norm = optim_global_norm(sq, p->n_units);
        memcpy(q->params, p->params, n * sizeof(float));
        memcpy(oq->m, o->m, n * sizeof(float));
        memcpy(oq->v, o->v, n * sizeof(float));
        oq->step = o->step;
        run_optim_apply(&t, q, oq, s, norm);
        stage_2bw_optim_apply(&t, p, o, s, norm);
        int same = !memcmp(p->params, q->params, n * sizeof(float)) && !memcmp(o->m, oq->m, n * sizeof(float)) &&
                   !memcmp(o->v, oq->v, n * sizeof(float)) && o->step == oq->step;
        if (same != (s < 3)) fprintf(stderr, "\n  step %ld: %s plain AdamW\n", s, same ? "equals" : "differs from");
        CU_ASSERT_EQUAL(same, s < 3);
    }
    topo_free(&t);
    char *kind2bw[] = { "schedule.kind=2bw" }, *kind1f1b[] = { "schedule.kind=1f1b" };
    CU_ASSERT_FATAL(topo_load(&t, "topologies/shakespeare-1stage.json", kind2bw, 1, err) == 0);
    CU_ASSERT_EQUAL(t.schedule.warmup_sync_steps, 100); /* the file's train.warmup_steps */
    topo_free(&t);
    CU_ASSERT_FATAL(topo_load(&t, "topologies/shakespeare-1stage.json", kind1f1b, 1, err) == 0);
    CU_ASSERT_EQUAL(t.schedule.warmup_sync_steps, 0);
    CU_ASSERT(!stage_2bw_sync_step(&t, 0));
    topo_free(&t);
    free(sq);
    optim_free(o);
    optim_free(oq);
    model_part_free(p);
    model_part_free(q);
}

int main(void)
{
    CU_TestInfo tests[] = {
        { "2bw AdamW: Nesterov-form first moment, against the double reference", test_rule },
        { "2bw AdamW: plain AdamW during schedule.warmup_sync_steps, bitwise", test_warmup },
        CU_TEST_INFO_NULL,
    };
    return tests_run("2bw_optim", tests);
}
