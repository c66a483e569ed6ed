/* fuzz_net_hello.c — libFuzzer target for the handshake parsers: the input is
 * split into a hello payload and an authentication proof, which go through
 * net_hello_parse, net_hello_check against a fixed local hello, and
 * net_auth_verify, as a node does with a stranger's first two frames. Also
 * checks that a parsed hello re-encodes to the same bytes and that a random
 * proof never verifies. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/net.h"
#include "net/net_wire.h"

static const uint8_t secret[] = "fuzzing-secret-0123456789";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[NET_ERR_LEN];
    if (size < 1) return 0;
    size_t cut = data[0] <= size - 1 ? data[0] : size - 1; /* hello length */
    const uint8_t *hello = data + 1, *proof = data + 1 + cut;
    size_t plen = size - 1 - cut;
    net_hello mine = { .version = NET_VERSION, .id = { NET_ROLE_STAGE, 0, 0 }, .run_id = 7 };
    memset(mine.topo_hash, 0xAB, NET_HASH_LEN);
    memset(mine.nonce, 0x11, NET_NONCE_LEN);
    uint8_t my_bytes[NET_HELLO_LEN];
    net_hello_encode(my_bytes, &mine);
    net_hello peer;
    if (net_hello_parse(hello, cut, &peer, err) != NET_OK) return 0;
    uint8_t again[NET_HELLO_LEN];
    net_hello_encode(again, &peer);
    if (memcmp(again, hello, NET_HELLO_LEN) != 0) abort();
    char name[48];
    net_peer_name(peer.id, name, sizeof name);
    if (net_hello_check(&mine, &peer, err) != NET_OK) return 0;
    int st = net_auth_verify(proof, plen, secret, sizeof secret - 1, hello, my_bytes, err);
    if (st == NET_OK) {
        /* only the genuine proof may pass */
        uint8_t want[NET_PROOF_LEN];
        net_auth_proof(want, secret, sizeof secret - 1, hello, my_bytes);
        if (plen != NET_PROOF_LEN || memcmp(want, proof, NET_PROOF_LEN) != 0) abort();
    }
    return 0;
}
