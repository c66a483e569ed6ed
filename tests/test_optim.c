/* test_optim.c — the optimizer step against an independent double-precision
 * reference: AdamW (bias correction, decoupled weight decay on 2-D weights
 * only), the learning-rate schedule (linear warm-up, cosine decay to min_lr)
 * and clipping by the global gradient norm, over several steps of a small
 * model's real tensors, through the same calls the trainers make
 * (optim_unit_sqnorms, optim_global_norm, run_optim_apply, run_lr).
 * The bitwise tests compare one code path with itself; this one compares the
 * code with the formulas, so a wrong AdamW fails here.
 *
 * The reference, as the code intends it (PyTorch's AdamW and clip_grad_norm_):
 *   norm  = sqrt(Σ g²) over every gradient of the model
 *   scale = max_norm / (norm + 1e-6) when max_norm > 0 and norm > max_norm, else 1
 *   g'    = g · scale
 *   m     = β1·m + (1-β1)·g'          v = β2·v + (1-β2)·g'²       (t = 1, 2, ...)
 *   w     = w - lr_s · ( (m/(1-β1^t)) / (sqrt(v/(1-β2^t)) + 1e-8) + wd·w )
 *           with the old w in the decay term, wd only for 2-D weights
 *   lr_s  = lr·(s+1)/warmup for s < warmup (0-based), then
 *           min_lr + (lr - min_lr)·(1 + cos(π·(s-warmup)/(steps-1-warmup)))/2,
 *           so step `warmup` runs at lr and the last step at min_lr. */
#include <cblas.h>
#include <float.h>
#include <math.h>

#include "base/base.h"
#include "model/model.h"
#include "model/optim.h"
#include "run/run.h"
#include "topo/topo.h"
#include "tests/tests.h"

#define EPS_ADAM 1e-8 /* run_optim_apply's epsilon */
#define FEPS ((double)FLT_EPSILON)

static int load(topo *t, char **sets, int n)
{
    char err[ERR_LEN];
    int rc = topo_load(t, "topologies/shakespeare-1stage.json", sets, n, err);
    if (rc) fprintf(stderr, "\n  %s\n", err);
    return rc;
}

/* ---- the reference, in double ---- */

static double ref_lr(long s, long steps, long warmup, double lr, double min_lr)
{
    if (s < warmup) return lr * (double)(s + 1) / (double)warmup;
    long span = steps - 1 - warmup; /* the cosine runs from step `warmup` to the last */
    if (span <= 0) return lr;
    double frac = fmin(1.0, (double)(s - warmup) / (double)span);
    return min_lr + (lr - min_lr) * (1.0 + cos(M_PI * frac)) / 2.0;
}

static double ref_clip(double norm, double max_norm)
{
    return max_norm > 0 && norm > max_norm ? max_norm / (norm + 1e-6) : 1.0;
}

/* ---- the schedule ---- */

static void test_lr_schedule(void)
{
    topo t;
    char *sets[] = { "train.steps=10", "train.warmup_steps=3", "train.lr=0.01", "train.min_lr=0.001" };
    CU_ASSERT_FATAL(load(&t, sets, 4) == 0);
    /* pinned by hand: warm-up reaches lr on its last step (s=2), the cosine
     * starts there at s=3, is half-way at s=6 (3 of 6 intervals) and ends at
     * min_lr on the last step */
    const double want[10] = { 0.01 / 3, 0.02 / 3, 0.01, 0.01, 0.001 + 0.009 * (1 + cos(M_PI / 6)) / 2,
                              0.001 + 0.009 * (1 + cos(M_PI / 3)) / 2, 0.0055,
                              0.001 + 0.009 * (1 + cos(2 * M_PI / 3)) / 2,
                              0.001 + 0.009 * (1 + cos(5 * M_PI / 6)) / 2, 0.001 };
    for (long s = 0; s < 10; s++) {
        /* both sides are a handful of double operations: 1e-12 relative is
         * thousands of ulps, and any schedule error is >= 1e-3 relative */
        double got = run_lr(&t, s);
        if (!(fabs(got - want[s]) <= 1e-12 * want[s])) {
            fprintf(stderr, "\n  run_lr(step %ld) = %.15g, want %.15g\n", s, got, want[s]);
            CU_FAIL("learning rate");
        }
        CU_ASSERT_DOUBLE_EQUAL(got, ref_lr(s, 10, 3, 0.01, 0.001), 1e-14);
    }
    topo_free(&t);
    /* no warm-up: the first step runs at lr; a 1-step run too */
    char *nowarm[] = { "train.steps=5", "train.warmup_steps=0", "train.lr=0.01", "train.min_lr=0.002" };
    CU_ASSERT_FATAL(load(&t, nowarm, 4) == 0);
    CU_ASSERT_DOUBLE_EQUAL(run_lr(&t, 0), 0.01, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(run_lr(&t, 2), 0.006, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(run_lr(&t, 4), 0.002, 1e-15);
    topo_free(&t);
    char *one[] = { "train.steps=1", "train.warmup_steps=0", "train.lr=0.01", "train.min_lr=0.002" };
    CU_ASSERT_FATAL(load(&t, one, 4) == 0);
    CU_ASSERT_DOUBLE_EQUAL(run_lr(&t, 0), 0.01, 1e-15);
    topo_free(&t);
}

/* ---- clipping ---- */

static void test_clip_scale(void)
{
    /* float results of double arithmetic: within half a float ulp (2^-24
     * relative); dropping the 1e-6 alone moves the value by 5e-7 relative */
    const double cases[][2] = { { 2.0, 1.0 }, { 3.7, 0.5 }, { 1e3, 1.0 }, { 1.0 + 1e-3, 1.0 } };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double want = ref_clip(cases[i][0], cases[i][1]);
        CU_ASSERT(fabs(optim_clip_scale(cases[i][0], cases[i][1]) - want) <= want * FEPS / 2);
    }
    /* at or below the limit and with clipping off, gradients pass unchanged */
    CU_ASSERT_EQUAL(optim_clip_scale(1.0, 1.0), 1.0f);
    CU_ASSERT_EQUAL(optim_clip_scale(0.999, 1.0), 1.0f);
    CU_ASSERT_EQUAL(optim_clip_scale(0.0, 1.0), 1.0f);
    CU_ASSERT_EQUAL(optim_clip_scale(50.0, 0.0), 1.0f);
}

/* ---- AdamW over several steps ---- */

/* A small LLaMA model, untied: 1-D norms (no decay) and 2-D weights (decay). */
static model_part *small_part(void)
{
    model_config c = { .dim = 8, .n_layers = 2, .n_heads = 2, .n_kv_heads = 1, .ffn_dim = 12,
                       .vocab_size = 16, .seq_len = 4, .norm_eps = 1e-5f, .rope_theta = 10000.0f,
                       .tie_embeddings = 0 };
    int units[4] = { 0, 1, 2, 3 };
    return model_part_new(&c, units, 4, 1, 77);
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double uniform(void) /* [-1, 1) */
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

/* Step s's gradients: amplitude `amp` (so the norm is above or below the clip
 * limit), and every 7th element 1e-7 as large, where sqrt(v̂) is near ε = 1e-8
 * and where ε sits matters. */
static void fill_grads(model_part *p, double amp)
{
    for (size_t i = 0; i < p->n_params; i++) p->grads[i] = (float)(amp * uniform() * (i % 7 == 3 ? 1e-7 : 1.0));
}

typedef struct {
    long steps, warmup;
    double lr, min_lr, wd, b1, b2, clip;
    double amp[2]; /* gradient amplitude of even and odd steps */
} adam_case;

/* worst-element report: returns 1 when every |got-want| <= tol[i] */
static int within(const char *what, long step, const float *got, const double *want, const double *tol, size_t n)
{
    size_t bad = 0, worst = 0;
    double worst_r = 0;
    for (size_t i = 0; i < n; i++) {
        double r = fabs((double)got[i] - want[i]) / tol[i];
        if (!(r <= 1)) bad++;
        if (!(r <= worst_r)) { worst_r = r; worst = i; }
    }
    if (bad)
        fprintf(stderr, "\n  step %ld %s: %zu/%zu outside tolerance, worst [%zu] %.9g vs %.9g (tol %.3g, %.3gx)\n",
                step, what, bad, n, worst, (double)got[worst], want[worst], tol[worst], worst_r);
    return bad == 0;
}

static void run_case(const adam_case *k)
{
    char s_steps[64], s_warm[64], s_lr[64], s_min[64], s_wd[64], s_b1[64], s_b2[64], s_clip[64];
    snprintf(s_steps, sizeof s_steps, "train.steps=%ld", k->steps);
    snprintf(s_warm, sizeof s_warm, "train.warmup_steps=%ld", k->warmup);
    snprintf(s_lr, sizeof s_lr, "train.lr=%.17g", k->lr);
    snprintf(s_min, sizeof s_min, "train.min_lr=%.17g", k->min_lr);
    snprintf(s_wd, sizeof s_wd, "train.weight_decay=%.17g", k->wd);
    snprintf(s_b1, sizeof s_b1, "train.beta1=%.17g", k->b1);
    snprintf(s_b2, sizeof s_b2, "train.beta2=%.17g", k->b2);
    snprintf(s_clip, sizeof s_clip, "train.grad_clip=%.17g", k->clip);
    char *sets[] = { s_steps, s_warm, s_lr, s_min, s_wd, s_b1, s_b2, s_clip };
    topo t;
    CU_ASSERT_FATAL(load(&t, sets, 8) == 0);

    model_part *p = small_part();
    size_t n = p->n_params;
    optim_adamw *o = optim_new(n);
    double *sq = xcalloc((size_t)p->n_units, sizeof *sq);
    /* wd per element from the tensor's shape, not from its decay flag */
    double *wd = xcalloc(n, sizeof *wd);
    int n_decay = 0, n_plain = 0;
    for (int i = 0; i < p->n_tensors; i++) {
        const model_tensor *ten = &p->tensors[i];
        for (size_t j = 0; j < ten->numel; j++) wd[ten->offset + j] = ten->ndim == 2 ? k->wd : 0.0;
        if (ten->ndim == 2) n_decay++; else n_plain++;
    }
    CU_ASSERT(n_decay > 0 && n_plain > 0);
    /* ref: the whole run in double from the same start; one: one step in
     * double from the code's own state before it (tight tolerance) */
    double *rw = xcalloc(n, sizeof *rw), *rm = xcalloc(n, sizeof *rm), *rv = xcalloc(n, sizeof *rv);
    double *ow = xcalloc(n, sizeof *ow), *om = xcalloc(n, sizeof *om), *ov = xcalloc(n, sizeof *ov);
    double *tw = xcalloc(n, sizeof *tw), *tm = xcalloc(n, sizeof *tm), *tv = xcalloc(n, sizeof *tv);
    for (size_t i = 0; i < n; i++) rw[i] = p->params[i];
    /* relative errors of β and 1-β as run_optim_apply rounds them to float */
    const double db1 = fabs((double)(float)k->b1 - k->b1) / k->b1,
                 d1b1 = fabs((1.0 - (double)(float)k->b1) - (1 - k->b1)) / (1 - k->b1),
                 db2 = fabs((double)(float)k->b2 - k->b2) / k->b2,
                 d1b2 = fabs((1.0 - (double)(float)k->b2) - (1 - k->b2)) / (1 - k->b2);
    int clipped = 0, unclipped = 0, ok = 1;

    for (long s = 0; s < k->steps; s++) {
        fill_grads(p, k->amp[s & 1]);
        /* the norm as the trainers compute it, against Σ g² in one double sum:
         * the same terms summed in another order, 1e-12 relative is ~1e4 ulps */
        optim_unit_sqnorms(p, sq);
        double norm = optim_global_norm(sq, p->n_units), rnorm = 0;
        for (size_t i = 0; i < n; i++) rnorm += (double)p->grads[i] * p->grads[i];
        rnorm = sqrt(rnorm);
        if (!(fabs(norm - rnorm) <= 1e-12 * rnorm)) {
            fprintf(stderr, "\n  step %ld: global norm %.17g, want %.17g\n", s, norm, rnorm);
            ok = 0;
        }
        double scale = ref_clip(rnorm, k->clip), lr = ref_lr(s, k->steps, k->warmup, k->lr, k->min_lr);
        if (scale < 1) clipped++; else unclipped++;
        long tstep = s + 1;
        double c1 = 1.0 / (1.0 - pow(k->b1, (double)tstep)), c2 = 1.0 / (1.0 - pow(k->b2, (double)tstep));
        for (size_t i = 0; i < n; i++) {
            double g = (double)p->grads[i] * scale;
            /* one step from the code's state */
            double m0 = o->m[i], v0 = o->v[i], w0 = p->params[i];
            om[i] = k->b1 * m0 + (1 - k->b1) * g;
            ov[i] = k->b2 * v0 + (1 - k->b2) * g * g;
            double step = lr * ((om[i] * c1) / (sqrt(ov[i] * c2) + EPS_ADAM) + wd[i] * w0);
            ow[i] = w0 - step;
            /* Tolerances. The code works in float with the hyper-parameters
             * rounded to float: β and 1-β carry the errors db and d1b of that
             * rounding (1-0.99f is 9.5e-7 off relative, 8 float epsilons), and
             * each operation rounds once more (2^-24). So m and v are within
             * those errors times their two terms plus 8 float epsilons of the
             * terms' size; the update term (about ten roundings,
             * c1 and c2 from powf) within 1e-5 relative, plus 1e-5·lr for the
             * cancellation inside m, whose error is relative to the gradient
             * history, not to m; w' is rounded once more (4 eps of |w|).
             * A wrong formula moves some element by far more: a missing bias
             * correction by tens of percent, the decay on the new weight by
             * lr·wd·|update| ≈ 1e-4 relative to the update, ε inside the sqrt
             * by orders of magnitude on the tiny-gradient elements. */
            tm[i] = (8 * FEPS + db1) * fabs(k->b1 * m0) + (8 * FEPS + d1b1) * fabs((1 - k->b1) * g) + 1e-30;
            tv[i] = (8 * FEPS + db2) * fabs(k->b2 * v0) + (8 * FEPS + d1b2) * fabs((1 - k->b2) * g * g) + 1e-45;
            tw[i] = 4 * FEPS * fabs(w0) + 1e-5 * (fabs(step) + lr);
            /* the whole run in double */
            rm[i] = k->b1 * rm[i] + (1 - k->b1) * g;
            rv[i] = k->b2 * rv[i] + (1 - k->b2) * g * g;
            rw[i] -= lr * ((rm[i] * c1) / (sqrt(rv[i] * c2) + EPS_ADAM) + wd[i] * rw[i]);
        }
        run_optim_apply(&t, p, o, s, norm);
        CU_ASSERT_EQUAL(o->step, tstep);
        ok &= within("m", s, o->m, om, tm, n);
        ok &= within("v", s, o->v, ov, tv, n);
        ok &= within("w", s, p->params, ow, tw, n);
    }
    /* The run against the double run: the per-step errors above add up (each
     * step's state differs by its tolerance and AdamW does not amplify it:
     * m, v are averages, the update is bounded), so ten times the per-step
     * bound per step taken. */
    for (size_t i = 0; i < n; i++) tw[i] = (double)k->steps * (40 * FEPS * fabs(rw[i]) + 1e-4 * k->lr);
    ok &= within("w after the run (vs the double-precision run)", k->steps, p->params, rw, tw, n);
    CU_ASSERT(ok);
    /* the case must exercise both sides of the clip limit when clipping is on */
    if (k->clip > 0) CU_ASSERT(clipped > 0 && unclipped > 0);

    free(rw); free(rm); free(rv); free(ow); free(om); free(ov); free(tw); free(tm); free(tv);
    free(wd); free(sq);
    optim_free(o);
    model_part_free(p);
    topo_free(&t);
}

static void test_adamw_warmup_cosine_clip(void)
{
    /* warm-up then cosine, clipping at 1.0: amplitude 0.2 gives a norm of ~5
     * for this model (clipped), 0.01 one of ~0.25 (not) */
    adam_case k = { 10, 3, 0.01, 0.001, 0.1, 0.9, 0.95, 1.0, { 0.2, 0.01 } };
    run_case(&k);
}

static void test_adamw_no_clip_no_warmup(void)
{
    /* clipping off, no warm-up, other betas and decay */
    adam_case k = { 6, 0, 0.003, 0.0003, 0.05, 0.8, 0.99, 0.0, { 3.0, 0.5 } };
    run_case(&k);
}

/* ZeRO-1's shard update: AdamW on ranges cut anywhere (across tensor
 * boundaries, some empty), moments packed, gives bitwise the full update, step
 * after step, and never touches what lies outside the ranges. */
static void test_adamw_ranges_bitwise(void)
{
    model_part *a = small_part(), *b = small_part();
    size_t n = a->n_params;
    optim_adamw *oa = optim_new(n);
    size_t cut[5] = { 0, 3, n / 3 + 1, n / 3 + 1, n - 7 }; /* range i = [cut[i], cut[i+1]) and the last to n */
    size_t off[5], len[5], own = 0;
    for (int i = 0; i < 5; i++) {
        off[i] = cut[i];
        len[i] = (i < 4 ? cut[i + 1] : n) - cut[i];
        own += len[i];
    }
    optim_adamw *ob = optim_new(own);
    optim_hparams h = { 0.01f, 0.9f, 0.95f, 1e-8f, 0.1f };
    for (int step = 0; step < 3; step++) {
        for (size_t j = 0; j < n; j++) a->grads[j] = b->grads[j] = (float)uniform();
        optim_adamw_step(oa, a, &h, 0.5f);
        optim_adamw_step_ranges(ob, b, &h, 0.5f, off, len, 5);
        CU_ASSERT_EQUAL(oa->step, ob->step);
        CU_ASSERT(memcmp(a->params, b->params, n * sizeof(float)) == 0);
        for (int i = 0, mo = 0; i < 5; mo += (int)len[i], i++)
            CU_ASSERT(memcmp(oa->m + off[i], ob->m + mo, len[i] * sizeof(float)) == 0 &&
                      memcmp(oa->v + off[i], ob->v + mo, len[i] * sizeof(float)) == 0);
    }
    /* a range leaving out [3, n/3+1): those weights stay as they were */
    model_part *c = small_part();
    optim_adamw *oc = optim_new(n);
    size_t o2[2] = { 0, n / 3 + 1 }, l2[2] = { 3, n - (n / 3 + 1) };
    float keep = c->params[10], first = c->params[0];
    for (size_t j = 0; j < n; j++) c->grads[j] = 1.0f;
    optim_adamw_step_ranges(oc, c, &h, 1.0f, o2, l2, 2);
    CU_ASSERT_EQUAL(c->params[10], keep);
    CU_ASSERT(c->params[0] != first);
    optim_free(oa); optim_free(ob); optim_free(oc);
    model_part_free(a); model_part_free(b); model_part_free(c);
}

/* The pool spreads AdamW over chunks and the sums of squares over units
 * (pool.h): at 1 and at 2 threads the weights, moments and per-unit sums are
 * the same bits, step after step, on a part of several AdamW chunks. */
static void test_threads_bitwise(void)
{
    model_config c = { .dim = 64, .n_layers = 3, .n_heads = 4, .n_kv_heads = 2, .ffn_dim = 256,
                       .vocab_size = 256, .seq_len = 4, .norm_eps = 1e-5f, .rope_theta = 10000.0f,
                       .tie_embeddings = 0 };
    int units[5] = { 0, 1, 2, 3, 4 };
    model_part *p[2] = { model_part_new(&c, units, 5, 1, 5), model_part_new(&c, units, 5, 1, 5) };
    size_t n = p[0]->n_params;
    CU_ASSERT_FATAL(n > 3 * 65536);
    optim_adamw *o[2] = { optim_new(n), optim_new(n) };
    double sq[2][5];
    optim_hparams h = { 0.01f, 0.9f, 0.95f, 1e-8f, 0.1f };
    int saved = openblas_get_num_threads();
    for (int step = 0; step < 3; step++) {
        for (size_t j = 0; j < n; j++) p[0]->grads[j] = p[1]->grads[j] = (float)uniform();
        for (int k = 0; k < 2; k++) {
            openblas_set_num_threads(2 - k);
            CU_ASSERT_EQUAL(openblas_get_num_threads(), 2 - k); /* the pool follows it */
            optim_unit_sqnorms(p[k], sq[k]);
            optim_adamw_step(o[k], p[k], &h, 0.5f);
        }
        CU_ASSERT(memcmp(sq[0], sq[1], sizeof sq[0]) == 0);
        CU_ASSERT(memcmp(p[0]->params, p[1]->params, n * sizeof(float)) == 0);
        CU_ASSERT(memcmp(o[0]->m, o[1]->m, n * sizeof(float)) == 0 && memcmp(o[0]->v, o[1]->v, n * sizeof(float)) == 0);
    }
    /* and the sums are the serial ones, elements in layout order */
    for (int u = 0; u < 5; u++) {
        size_t lo = p[0]->unit_off[u], hi = u + 1 < 5 ? p[0]->unit_off[u + 1] : n;
        double s = 0;
        for (size_t j = lo; j < hi; j++) s += (double)p[0]->grads[j] * p[0]->grads[j];
        CU_ASSERT(memcmp(&s, &sq[0][u], sizeof s) == 0);
    }
    openblas_set_num_threads(saved);
    for (int k = 0; k < 2; k++) { optim_free(o[k]); model_part_free(p[k]); }
}

int main(void)
{
    CU_TestInfo tests[] = {
        { "learning rate: warm-up, cosine, min_lr (pinned values and the reference)", test_lr_schedule },
        { "clip scale: max_norm/(norm+1e-6) above the limit, 1 at or below it and when off", test_clip_scale },
        { "AdamW with warm-up, cosine and clipping vs double precision, 10 steps", test_adamw_warmup_cosine_clip },
        { "AdamW without clipping or warm-up vs double precision, 6 steps", test_adamw_no_clip_no_warmup },
        { "AdamW on ranges (ZeRO-1 shard) is bitwise the full update", test_adamw_ranges_bitwise },
        { "AdamW and the per-unit sums of squares: the same bits at 1 and 2 threads", test_threads_bitwise },
        CU_TEST_INFO_NULL,
    };
    return tests_run("optim", tests);
}
