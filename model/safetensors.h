/* safetensors.h — reading and writing Hugging Face safetensors files, and the
 * durable-write helper the checkpoint code shares.
 *
 * Format: u64 little-endian header length N, then N bytes of a JSON object
 *   {"__metadata__": {"k": "v", ...},
 *    "name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...}
 * padded with spaces so that N is a multiple of 8, then the data buffer. Offsets
 * are relative to the data start; tensors are contiguous, in order, without gaps
 * or overlaps, and the last one ends exactly at the end of the file.
 *
 * The reader is paranoid: it checks the file size, the header length (<= 100 MB and
 * within the file), the JSON, every dtype, shape and offset, and the contiguity of
 * the data before it allocates or touches the data buffer. Every error names the
 * file and what is wrong. Data are little-endian (we assert a little-endian host).
 *
 * st_open_mapped maps the file instead of reading it, so only the pages of the
 * tensors a caller touches are read (a stage loading its layers of a large
 * checkpoint, model/hf_load.h).
 *
 * Not here: dtype conversion (hf_load.c), SHA-256 (the stage layer hashes). */
#ifndef MODEL_SAFETENSORS_H
#define MODEL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "model/util.h"

#define ST_MAX_HEADER 100000000ull /* largest header accepted, bytes (as HF) */
#define ST_MAX_DIMS 8               /* most dimensions a read tensor may have */

/* Bytes per element of a safetensors dtype name ("F32", "F64", "F16", "BF16",
 * "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL", "F8_E4M3",
 * "F8_E5M2"), or 0 for an unknown name. */
size_t st_dtype_size(const char *dtype);

/* ---- writing ------------------------------------------------------------- */

/* One tensor to write. shape[0..ndim) with 0 <= ndim <= 4; data holds
 * prod(shape) elements of dtype in host (= little-endian) order. */
typedef struct {
    const char *name;
    const char *dtype;
    int ndim;
    int64_t shape[4];
    const void *data;
} st_entry;

/* Writes n tensors, in the given order, to path, with optional metadata
 * meta_kv = {key0, value0, key1, value1, ..., NULL} (or NULL for none). Durable:
 * written to "path.tmp", fsynced, renamed, and the directory fsynced, so a crash
 * never leaves a partial file under path. Names must be unique, non-empty and not
 * "__metadata__". Returns 0, or -1 with a message naming the file (and the tensor)
 * in err; on error path is untouched and the temporary file removed. */
int st_write(const char *path, const st_entry *e, int n, const char *const *meta_kv, char *err);

/* Where st_write_fill's callback writes an entry's bytes. */
typedef struct st_sink st_sink;
/* Appends n bytes of the entry being filled to the file. Returns 0, or -1
 * (write error, or more bytes than the entry's size; st_write_fill reports
 * it). s == NULL: discards the bytes and returns 0 (so that a caller can run
 * the same callback without a file). */
int st_sink_write(st_sink *s, const void *data, size_t n);
/* Gives entry i's bytes, all of them, through st_sink_write, in order (they
 * may come in pieces: the callback need not hold the whole tensor at once).
 * Returns 0, or -1 with err. */
typedef int (*st_fill_fn)(void *arg, int i, st_sink *s, char *err);
/* st_write, except that an entry whose data is NULL (and whose size is not 0)
 * is written by fill(arg, i, ...) when its turn comes: entries are still
 * written in order, so the callback is called with ascending i. The bytes on
 * disk are those st_write writes for the same data. A callback failing, or
 * giving another count of bytes than the entry's, fails the write (err names
 * the file and the tensor); path is then untouched. */
int st_write_fill(const char *path, const st_entry *e, int n, const char *const *meta_kv, st_fill_fn fill,
                  void *arg, char *err);

/* ---- reading ------------------------------------------------------------- */

/* A tensor of an open file; valid until st_close. `data` points into the file's
 * data buffer (nbytes bytes, little-endian). It is aligned to the element size
 * whenever the tensor's begin offset is a multiple of it (always the case for
 * files st_write wrote with F32/F64/I64/I32); st_read copies and never cares. */
typedef struct {
    const char *name;
    const char *dtype;
    size_t dtype_size;           /* bytes per element */
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t numel;                /* product of shape (1 for ndim 0) */
    size_t nbytes;               /* numel * dtype_size */
    uint64_t begin, end;         /* data_offsets, relative to the data start */
    const void *data;
} st_tensor;

typedef struct st_file st_file; /* opaque: the parsed header and the data buffer */

/* Opens and fully validates path, then reads the data into memory. On success
 * *f owns everything (st_close frees it). Returns 0, or -1 with *f = NULL and a
 * message in err naming the file and the tensor, header field or byte offset. */
int st_open(st_file **f, const char *path, char *err);

/* st_open with the same checks, but the data buffer is the file mapped
 * read-only (mmap) rather than read: tensor data point into the mapping and
 * only the pages a caller touches are read from disk. The data pointers may be
 * unaligned (copy with memcpy). The file must not change while it is open
 * (a file truncated under the mapping raises SIGBUS). Same returns as st_open. */
int st_open_mapped(st_file **f, const char *path, char *err);

/* Frees everything; NULL does nothing. */
void st_close(st_file *f);

/* Number of tensors, and tensor i in file (data offset) order, 0 <= i < count. */
int st_count(const st_file *f);
const st_tensor *st_tensor_at(const st_file *f, int i);

/* The tensor named name, or NULL. */
const st_tensor *st_find(const st_file *f, const char *name);

/* The value of metadata key, or NULL when absent. Valid until st_close. */
const char *st_meta(const st_file *f, const char *key);

/* The path the file was opened from. */
const char *st_path(const st_file *f);

/* Copies tensor name into dst (n_expected elements of dtype). Returns 0, or -1
 * with a message naming the file and the tensor when it is missing, has another
 * dtype, or holds a different number of elements. */
int st_read(const st_file *f, const char *name, const char *dtype, void *dst,
            size_t n_expected, char *err);
/* st_read with dtype "F32". */
int st_read_f32(const st_file *f, const char *name, float *dst, size_t n_expected, char *err);

#endif
