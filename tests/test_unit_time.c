/* test_unit_time.c — per-unit timing of the passes (model_part.unit_time, the
 * source of costs.json's per-layer times): every unit's forward, backward-input
 * and backward-weight is recorded once per call, through the split passes and the
 * fused backward alike, in wall or thread CPU seconds, the ring keeps the last
 * `cap` samples, and timing changes no bit of the loss or the gradients. */
#include <math.h>

#include "model/model.h"
#include "tests/tests.h"

enum { TB = 2, T = 16 };

static model_config cfg(void)
{
    model_config c = { .dim = 32, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .ffn_dim = 44, .vocab_size = 256,
                       .seq_len = T, .norm_eps = 1e-5f, .rope_theta = 10000, .tie_embeddings = 0 };
    return c;
}

/* One micro-batch through p: forward, then B and W apart (fused = 0) or the
 * fused unit-by-unit backward. Returns the loss. */
static double micro_batch(model_part *p, int n, const int *tok, const int *tgt, int fused)
{
    model_slot *s = fused ? model_stash_new(p, 0, n, TB) : model_slots_new(p, 0, n, TB);
    memcpy(s[0].tokens, tok, TB * T * sizeof(int));
    memcpy(s[n - 1].tokens, tgt, TB * T * sizeof(int));
    double loss = model_forward(p, 0, n, s, NULL, NULL, TB, T);
    if (fused) {
        float *work = malloc(model_part_mem(p, 0, n, TB).work_unit);
        model_backward_fused(p, 0, n, s, work, NULL, NULL, TB, T, 0.01f, NULL, NULL);
        free(work);
    } else {
        model_backward_input(p, 0, n, s, NULL, NULL, TB, T, 0.01f);
        model_backward_weight(p, 0, n, s, TB, T);
    }
    model_slots_free(s);
    return loss;
}

static void test_unit_time(void)
{
    model_config c = cfg();
    int n = model_n_units(&c), units[8];
    for (int i = 0; i < n; i++) units[i] = i;
    model_part *plain = model_part_new(&c, units, n, TB, 21), *timed = model_part_new(&c, units, n, TB, 21);
    CU_ASSERT_PTR_NOT_NULL_FATAL(plain);
    CU_ASSERT_PTR_NOT_NULL_FATAL(timed);
    model_unit_timer u = { 2, calloc(3 * (size_t)n * 2, sizeof(double)), calloc(3 * (size_t)n, sizeof(unsigned long)), 0 };
    timed->unit_time = &u;
    int tok[TB * T], tgt[TB * T];
    for (int i = 0; i < TB * T; i++) {
        tok[i] = (i * 37 + 5) % 256;
        tgt[i] = (i * 11 + 3) % 256;
    }
    /* B and W apart: one call of each op of each unit */
    double l0 = micro_batch(plain, n, tok, tgt, 0), l1 = micro_batch(timed, n, tok, tgt, 0);
    CU_ASSERT(l0 == l1);
    int ones = 1, nonneg = 1;
    for (int k = 0; k < 3 * n; k++) {
        ones &= u.n[k] == 1;
        nonneg &= u.t[(size_t)k * 2] >= 0 && isfinite(u.t[(size_t)k * 2]);
    }
    CU_ASSERT(ones);
    CU_ASSERT(nonneg);
    /* the blocks (units 1..n-2) take measurable time: not all zero */
    double blocks = 0;
    for (int i = 1; i < n - 1; i++) blocks += u.t[(size_t)(3 * i) * 2];
    CU_ASSERT(blocks > 0);
    /* the fused backward: a second call of each op, B and W of a block summed over its stretches */
    l0 = micro_batch(plain, n, tok, tgt, 1);
    l1 = micro_batch(timed, n, tok, tgt, 1);
    CU_ASSERT(l0 == l1);
    int twos = 1;
    for (int k = 0; k < 3 * n; k++) twos &= u.n[k] == 2;
    CU_ASSERT(twos);
    /* a third call: the ring of 2 overwrites sample 0 */
    u.t[0] = -1;
    micro_batch(timed, n, tok, tgt, 0);
    micro_batch(plain, n, tok, tgt, 0);
    CU_ASSERT_EQUAL(u.n[0], 3);
    CU_ASSERT(u.t[0] >= 0);
    /* thread CPU time instead of wall time: recorded alike */
    u.cpu = 1;
    micro_batch(timed, n, tok, tgt, 1);
    micro_batch(plain, n, tok, tgt, 1);
    CU_ASSERT_EQUAL(u.n[3], 4); /* block 0's forward */
    CU_ASSERT(u.t[3 * 2 + 1] > 0 && u.t[3 * 2 + 1] < 10); /* its 4th sample, slot 1 of the ring: CPU seconds */
    /* timing changes no bit */
    CU_ASSERT(memcmp(plain->grads, timed->grads, plain->n_params * sizeof(float)) == 0);
    /* off again: nothing recorded */
    timed->unit_time = NULL;
    micro_batch(timed, n, tok, tgt, 0);
    CU_ASSERT_EQUAL(u.n[0], 4);
    free(u.t);
    free(u.n);
    model_part_free(plain);
    model_part_free(timed);
}

int main(void)
{
    CU_TestInfo tests[] = {
        { "per-unit timing of the passes", test_unit_time },
        CU_TEST_INFO_NULL,
    };
    return tests_run("unit_time", tests);
}
