/* topo_schema.h — private to topo/topo*.c: the table that describes the topology
 * schema (one entry per JSON key: type, offset into the topo struct, range,
 * default) and the helpers the loader, the override code and the checks share.
 * Not part of the topo/ module's public contract; include topo/topo.h instead. */
#ifndef TOPO_SCHEMA_H
#define TOPO_SCHEMA_H

#include <jansson.h>
#include <stddef.h>

#include "topo/topo.h"

typedef enum { T_INT, T_I64, T_DBL, T_FLT, T_BOOL, T_STR, T_PATH, T_OBJ, T_ARR } ftype;

typedef struct field {
    const char *name;
    ftype type;
    size_t off;               /* into the struct this table describes */
    int req;                  /* required: no default */
    double lo, hi;            /* numeric range */
    int lo_open, hi_open;     /* exclusive bounds */
    double def;               /* numeric default; NAN = derived after decoding */
    const char *sdef;         /* string default; NULL = optional (absent stays NULL) */
    const char *const *choices; /* allowed strings, NULL-terminated */
    const struct field *sub;  /* T_OBJ / T_ARR element schema */
    size_t off2;              /* T_PATH: resolved path; T_ARR: int count */
    size_t esize;             /* T_ARR element size */
    int max_n;                /* T_ARR maximum length */
} field;

extern const field topo_top_fields[];   /* the whole document */
extern const field topo_sched_fields[]; /* "schedule" */
extern const char *const topo_recompute_kinds[]; /* train.recompute, stages.N.recompute */

/* What a field expects, in words ("an integer in 1..65535"), for messages. */
void topo_expected(const field *f, char *buf, size_t n);
/* The keys of a table, comma-separated, for "unknown key" messages. */
void topo_key_list(const field *tbl, char *buf, size_t n);
/* prefix.name, or name when prefix is empty. */
void topo_join_path(char *out, size_t n, const char *prefix, const char *name);
/* snprintf that may truncate silently (JSON paths in messages). */
void topo_fmt(char *buf, size_t n, const char *f, ...) __attribute__((format(printf, 3, 4)));
/* The entry named name in tbl, or NULL. */
const field *topo_find_field(const field *tbl, const char *name);

/* Applies one "KEY=VALUE" override to the JSON document (topo_set.c). Returns 0,
 * or -1 with a message naming file and the override. */
int topo_apply_set(json_t *root, const char *file, const char *set, char *err);
/* The address rules of topo_check.c, shared with topo_ps.c: a host that is a
 * numeric unicast address (0, or -1 with a message naming file and path), two
 * endpoints that are the same, a loopback host, and the JSON path of (stage s,
 * replica r)'s field (NULL: the process itself) in the form the file used. */
int topo_check_host(const char *file, const char *path, const char *host, char *err);
int topo_same_endpoint(const char *h1, int p1, const char *h2, int p2);
int topo_is_loopback(const char *host);
void topo_proc_path(const topo *t, int s, int r, const char *fieldname, char *buf, size_t n);
/* sync, parameter_servers and ps (topo_ps.c): sets t->sync_id; after the
 * stages' addresses are checked. Returns 0 or -1 with a message naming the field. */
int topo_check_ps(topo *t, char *err);
/* init_from (topo_init.c), before decoding: when root names a checkpoint
 * directory (resolved against dir), fills the model section's absent keys from
 * its config.json and checks those given against it. Returns 0 (also when
 * root has no usable init_from: decoding then reports it), or -1 with a
 * message naming file, the first differing model.* key and both values. */
int topo_init_from_model(json_t *root, const char *file, const char *dir, char *err);
/* Derived defaults and cross-field rules after decoding (topo_check.c). */
int topo_validate(topo *t, char *err);

#endif
