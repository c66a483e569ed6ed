/* wire_codec.h — encodings of float32 tensors for the wire (issue 14,
 * "compression on the wire"): fp32 (as is), bf16, fp16 and int8 blockwise
 * absmax. Pure functions over memory: no allocation, no threads, no I/O; the
 * stage runtime encodes on the compute thread that produced a tensor and
 * decodes on the one that consumes it. Knows no topology, layer or socket.
 *
 * Encodings (all little-endian, the byte order of every tensor on the wire):
 *   WIRE_FP32  n x float32, unchanged (4n bytes).
 *   WIRE_BF16  n x bfloat16 (2n bytes): the top half of the float32 rounded to
 *              nearest, ties to even. A finite value never becomes infinite: the
 *              few just below FLT_MAX that would round up to Inf give the
 *              largest finite bf16 (+-3.3895e38) instead. +-Inf stays +-Inf;
 *              NaN stays NaN (quiet, sign kept).
 *   WIRE_FP16  n x IEEE binary16 (2n bytes), round to nearest even, subnormals
 *              kept. A finite |x| > 65504 is CLAMPED to +-65504 (the largest
 *              finite half), never Inf; +-Inf stays +-Inf; NaN stays NaN (0x7e00
 *              with the sign). Below 2^-24 / 2 values flush to +-0.
 *   WIRE_INT8  the scheme SWARM uses: blocks of WIRE_INT8_BLOCK values (the last
 *              block may be shorter), first ceil(n/64) float32 scales (the
 *              block's largest |x|, "absmax"), then n int8 q = rint(x * (127 /
 *              absmax)) (round to nearest even, in -127..127). Decoding gives
 *              q * (absmax / 127). An all-zero block has scale 0 and decodes
 *              to zeros. A block holding a NaN or +-Inf has scale NaN and
 *              decodes to NaN throughout: a non-finite value is never turned
 *              into a finite one. n + 4 ceil(n/64) bytes.
 *
 * The vector paths (GCC/clang vector extensions, no intrinsics) and the
 * scalar code for tails do the same operations in the same order, so the
 * bits do not depend on the machine's vector width; wire_*_ref below are the
 * obviously-correct scalar references the tests compare against. */
#ifndef BASE_WIRE_CODEC_H
#define BASE_WIRE_CODEC_H

#include <stddef.h>
#include <stdint.h>

enum wire_enc { WIRE_FP32 = 0, WIRE_BF16 = 1, WIRE_FP16 = 2, WIRE_INT8 = 3, WIRE_N_ENC = 4 };

#define WIRE_INT8_BLOCK 64

/* "fp32", "bf16", "fp16", "int8"; NULL for an unknown value. Any thread. */
const char *wire_enc_name(int enc);
/* The encoding named s, or -1. Any thread. */
int wire_enc_parse(const char *s);
/* Bytes of n floats in encoding enc (0 for an unknown encoding). */
uint64_t wire_encoded_bytes(int enc, uint64_t n);

/* Encodes n floats at x into out (wire_encoded_bytes(enc, n) bytes; must not
 * overlap x). Any thread. */
void wire_encode(void *out, const float *x, size_t n, int enc);
/* Decodes wire_encoded_bytes(enc, n) bytes at in into n floats at x (must not
 * overlap in). Any thread. */
void wire_decode(float *x, const void *in, size_t n, int enc);

/* Scalar references, one value (or one int8 block of n <= 64 values) at a
 * time: the tests' yardstick for the vector paths. */
uint16_t wire_bf16_ref(float x);
uint16_t wire_fp16_ref(float x);
float wire_fp16_to_f32_ref(uint16_t h);
/* One block: *scale and q[0..n). */
void wire_int8_block_ref(float *scale, int8_t *q, const float *x, size_t n);

#endif
