/* net_peer.c — a stage process for the transport tests: connects to a node at
 * HOST:PORT as stage STAGE, prints "ready" once authenticated, then optionally
 * sends COUNT messages of SIZE bytes (type 16, step i) and idles forever, so the
 * test can SIGKILL or SIGSTOP it. The secret comes from $NET_TEST_SECRET.
 * usage: net_peer HOST PORT STAGE [COUNT SIZE] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/net.h"

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: net_peer HOST PORT STAGE [COUNT SIZE]\n");
        return 2;
    }
    char err[NET_ERR_LEN];
    uint8_t secret[256];
    size_t slen = 0;
    if (net_secret_load(NULL, "NET_TEST_SECRET", secret, sizeof secret, &slen, err) != NET_OK) {
        fprintf(stderr, "net_peer: %s\n", err);
        return 2;
    }
    net_config cfg;
    net_config_init(&cfg);
    cfg.self = net_stage_id((uint16_t)atoi(argv[3]), 0);
    cfg.run_id = 7;
    memset(cfg.topo_hash, 0xAB, NET_HASH_LEN);
    cfg.secret = secret;
    cfg.secret_len = slen;
    cfg.heartbeat_ms = 100;
    cfg.dead_ms = 2000;
    struct net_node *n = net_node_new(&cfg, err);
    if (!n) {
        fprintf(stderr, "net_peer: %s\n", err);
        return 1;
    }
    net_peer_id coord = net_coord_id();
    if (net_connect(n, coord, argv[1], atoi(argv[2]), err) != NET_OK ||
        net_wait_peer(n, coord, 10000, err) != NET_OK) {
        fprintf(stderr, "net_peer: %s\n", err);
        net_node_free(n);
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    int count = argc > 5 ? atoi(argv[4]) : 0;
    size_t size = argc > 5 ? (size_t)atol(argv[5]) : 0;
    uint8_t *buf = calloc(1, size ? size : 1);
    for (int i = 0; i < count && buf; i++) {
        struct net_op *op = NULL;
        memset(buf, i & 0xff, size);
        net_key k = { 16, (uint64_t)i, 0, 0 };
        if (net_send(n, coord, k, buf, size, 10000, &op, err) != NET_OK ||
            net_wait(op, 10000, err) != NET_OK)
            fprintf(stderr, "net_peer: send %d: %s\n", i, err);
        net_op_free(op);
    }
    for (;;) pause();
}
