/* topo_ps.c — the parameter-server keys of a topology: "sync", "parameter_servers"
 * and "ps" (see the schema in topo/topo.h). Which combinations are allowed and
 * the servers' addresses, with the same rules as the stages' (numeric unicast,
 * distinct from every process of the grid and the coordinator, loopback not
 * mixed with other machines). Assigning tensors to servers is ps/'s. */
#include "topo/topo.h"
#include "model/util.h"
#include "topo/topo_schema.h"

static int check_server(const topo *t, int j, char *err)
{
    const topo_addr *a = &t->parameter_servers[j];
    char path[64], other[64];
    snprintf(path, sizeof path, "parameter_servers.%d.host", j);
    if (topo_check_host(t->path, path, a->host, err)) return -1;
    int lo = topo_is_loopback(a->host);
    if (lo != topo_is_loopback(t->coordinator.host))
        return seterr(err, "%s: %s: %s is %s loopback address but coordinator.host (%s) is %s: peers on other "
                      "machines could not reach %s", t->path, path, a->host, lo ? "a" : "not a",
                      t->coordinator.host, lo ? "not" : "one", lo ? "it" : "the coordinator");
    snprintf(path, sizeof path, "parameter_servers.%d.port", j);
    if (topo_same_endpoint(a->host, a->port, t->coordinator.host, t->coordinator.port))
        return seterr(err, "%s: %s: %s:%d is also the coordinator's address", t->path, path, a->host, a->port);
    for (int s = 0; s < t->n_stages; s++)
        for (int r = 0; r < t->stages[s].n_replicas; r++) {
            const topo_replica *q = &t->stages[s].replicas[r];
            if (!topo_same_endpoint(a->host, a->port, q->host, q->port)) continue;
            topo_proc_path(t, s, r, NULL, other, sizeof other);
            return seterr(err, "%s: %s: %s:%d is also used by %s (host:port must be distinct)", t->path, path,
                          a->host, a->port, other);
        }
    for (int k = 0; k < j; k++)
        if (topo_same_endpoint(a->host, a->port, t->parameter_servers[k].host, t->parameter_servers[k].port))
            return seterr(err, "%s: %s: %s:%d is also used by parameter_servers.%d (host:port must be distinct)",
                          t->path, path, a->host, a->port, k);
    return 0;
}

int topo_check_ps(topo *t, char *err)
{
    t->sync_id = strcmp(t->sync, "ps") ? TOPO_SYNC_ALLREDUCE : TOPO_SYNC_PS;
    if (t->sync_id != TOPO_SYNC_PS) {
        if (t->n_servers > 0)
            return seterr(err, "%s: parameter_servers: only allowed with \"sync\": \"ps\" (sync is \"%s\")", t->path,
                          t->sync);
        if (t->ps_given)
            return seterr(err, "%s: ps: only allowed with \"sync\": \"ps\" (sync is \"%s\")", t->path, t->sync);
        return 0;
    }
    if (t->n_servers == 0)
        return seterr(err, "%s: parameter_servers: missing (required because sync is \"ps\": a non-empty array "
                      "of { host, port })", t->path);
    if (t->train.zero)
        return seterr(err, "%s: train.zero: 1 shards AdamW across replicas, but with \"sync\": \"ps\" the parameter "
                      "servers hold it (give 0)", t->path);
    for (int j = 0; j < t->n_servers; j++)
        if (check_server(t, j, err)) return -1;
    return 0;
}
