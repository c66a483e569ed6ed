/* ps_ckpt.c — a parameter server's pieces to and from a model_part and its
 * optim_adamw, the in-memory form run/run_ckpt.h's shards are written from and
 * loaded into (by tensor name, whatever split wrote them). Files are run/'s;
 * see the checkpoint notes in ps/ps.h. */
#include "ps/ps_int.h"

#include <string.h>

size_t ps_server_export(const ps_server *s, model_part *p, optim_adamw *o)
{
    size_t copied = 0;
    for (int l = 0; l < s->np; l++) {
        const ps_piece *pc = &s->a->pieces[s->idx[l]];
        size_t off = ps_piece_part_offset(pc, p);
        if (off == SIZE_MAX) continue;
        memcpy(p->params + off, s->w + s->poff[l], pc->len * sizeof(float));
        if (o) {
            memcpy(o->m + off, s->m + s->poff[l], pc->len * sizeof(float));
            memcpy(o->v + off, s->v + s->poff[l], pc->len * sizeof(float));
        }
        copied += pc->len;
    }
    return copied;
}

int ps_server_import(ps_server *s, const model_part *p, const optim_adamw *o, long steps, char *err)
{
    if (!o || o->n != p->n_params)
        return seterr(err, "parameter server %d: the AdamW state has %zu floats, the part %zu", s->j, o ? o->n : 0,
                      p->n_params);
    if (steps < 0) return seterr(err, "parameter server %d: cannot resume at step %ld", s->j, steps);
    for (int l = 0; l < s->np; l++)
        if (ps_piece_part_offset(&s->a->pieces[s->idx[l]], p) == SIZE_MAX)
            return seterr(err, "parameter server %d: %s (unit %d) is not in the loaded part", s->j,
                          s->a->pieces[s->idx[l]].name, s->a->pieces[s->idx[l]].unit);
    long updates = s->bound == 0 ? steps : steps * s->R;
    for (int l = 0; l < s->np; l++) {
        const ps_piece *pc = &s->a->pieces[s->idx[l]];
        size_t off = ps_piece_part_offset(pc, p);
        memcpy(s->w + s->poff[l], p->params + off, pc->len * sizeof(float));
        memcpy(s->m + s->poff[l], o->m + off, pc->len * sizeof(float));
        memcpy(s->v + s->poff[l], o->v + off, pc->len * sizeof(float));
        s->pstep[l] = s->pver[l] = updates;
    }
    for (int w = 0; w < s->R; w++) {
        s->clock[w] = steps;
        s->got[w] = 0;
        s->active[w] = 1;
    }
    memset(s->have, 0, (size_t)s->R * (size_t)s->np);
    if (s->pcount) { /* synchronous: nothing of a step summed yet */
        memset(s->pcount, 0, (size_t)s->np * sizeof(int));
        for (int b = 0; b < s->nblk; b++) s->blk_left[b] = s->blk_first[b + 1] - s->blk_first[b];
        s->n_summed = 0;
    }
    s->step = steps;
    s->state = PS_COLLECT;
    return 0;
}

size_t ps_server_piece_state(const ps_server *s, int piece, const float **w, const float **m, const float **v)
{
    int l = piece >= 0 && piece < s->a->n_pieces ? s->local[piece] : -1;
    *w = *m = *v = NULL;
    if (l < 0) return 0;
    *w = s->w + s->poff[l];
    *m = s->m + s->poff[l];
    *v = s->v + s->poff[l];
    return s->a->pieces[piece].len;
}
