/*
 * Hugging Face safetensors: the checkpoint format we load pretrained weights from and save our own
 * weights in, so that a qstar checkpoint can be opened by transformers and vice versa.
 *
 * A file is: an 8-byte little-endian uint64 N, N bytes of JSON header, then the data block. The
 * header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets into the
 * data block) plus an optional "__metadata__" object of string -> string. Large models are sharded:
 * a directory holds model.safetensors.index.json whose "weight_map" names the shard of each tensor.
 *
 * The reader validates every header up front (so a bad checkpoint fails before any training work
 * starts, with one line naming the file), then reads tensors one at a time at their offsets: a
 * 30 GB checkpoint is never held in memory whole. Any problem with the input is fatal().
 */
#ifndef QSTAR_SAFETENSORS_H
#define QSTAR_SAFETENSORS_H

#include <stdint.h>

typedef enum { ST_F32, ST_F16, ST_BF16, ST_I32, ST_I64, ST_OTHER } StDtype;

typedef struct {
    char* name;
    StDtype dtype;
    char dtype_name[16];     // as in the header, e.g. "BF16"
    int ndim;
    int64_t shape[8];
    int64_t numel;
    const char* file;        // path of the file holding it
    uint64_t file_offset;    // absolute byte offset of the data in that file
    uint64_t nbytes;
} StTensor;

typedef struct StIndex StIndex;  // opaque

// path: a .safetensors file, or a directory containing model.safetensors or
// model.safetensors.index.json (the index is preferred when both exist). Every file is validated
// here; tensors keep header order, shards in name order.
StIndex* st_open(const char* path);
int st_count(const StIndex* st);
const StTensor* st_tensor(const StIndex* st, int i);
const StTensor* st_find(const StIndex* st, const char* name);   // NULL if absent
// From __metadata__ of the (first) file; NULL if absent.
const char* st_metadata(const StIndex* st, const char* key);
// Reads a tensor as float, converting F16/BF16 exactly. The shape must match expected_shape exactly.
void st_read_f32(const StIndex* st, const StTensor* t, float* dst, const int64_t* expected_shape, int expected_ndim);
// Reads a tensor's bytes unconverted (t->nbytes of them, little-endian), for integer tensors.
void st_read_raw(const StIndex* st, const StTensor* t, void* dst);
void st_close(StIndex* st);

// Bytes per element of a safetensors dtype name ("F32" -> 4), or 0 when the name is unknown.
int st_dtype_size(const char* dtype_name);

typedef struct {
    const char* name;
    int ndim;
    int64_t shape[8];
    const float* data;
    int bf16;  // 0: stored as F32; 1: as BF16, each value rounded to nearest even (exact for bf16 values)
} StWriteTensor;

// Writes one safetensors file atomically (a reader sees the previous file or the complete new one,
// never a partial one): each tensor F32, or BF16 where its bf16 flag is set. metadata: NULL or
// {"key", "value", ..., NULL}; "format": "pt" is always included because transformers refuses files
// without it. Tensors are stored in the given order; the data block starts 8-byte aligned (a BF16
// tensor may leave the next one 2-byte aligned only: safetensors requires no more). Names must be unique.
void st_write(const char* path, const StWriteTensor* tensors, int n, const char* const* metadata);
// st_write's older name, from when every tensor was F32 (it still is unless a tensor sets bf16).
void st_write_f32(const char* path, const StWriteTensor* tensors, int n, const char* const* metadata);

#endif
