/* coord_fake.h — what the coordinator suites' fake processes share (threads
 * of the test with their own net nodes that speak stage/proto.h by hand):
 * a frame sent to the coordinator. Header-only, static inline, so every
 * suite links on its own. */
#ifndef TESTS_COORD_FAKE_H
#define TESTS_COORD_FAKE_H

#include <stdint.h>

#include "net/net.h"

/* Sends len bytes at buf to the coordinator under key (type, step) and waits
 * for them to be written, each wait (room to queue, the write) at most 5 s:
 * NET_OK, or the failure's NET_* status (the reason is dropped). */
static inline int fsend(struct net_node *n, uint16_t type, long step, const void *buf, uint64_t len)
{
    struct net_op *op = NULL;
    char e[NET_ERR_LEN];
    int st = net_send(n, net_coord_id(), (net_key){ type, (uint64_t)step, 0, 0 }, buf, len, 5000, &op, e);
    if (st == NET_OK) st = net_wait(op, 5000, e);
    net_op_free(op);
    return st;
}

#endif
