/* kvfp8 — safetensors files: a validating reader and an atomic writer.
 *
 * A safetensors file is an 8-byte little-endian header length N, N bytes of JSON
 * header, then the data area.  The header maps each tensor name to
 * {"dtype", "shape", "data_offsets": [BEGIN, END]} with offsets relative to the start
 * of the data area, plus an optional "__metadata__" object of string values.  The
 * reader enforces the format's rules (docs/scales.md lists them with their source):
 * the header starts with '{' and is padded only with spaces, no key appears twice,
 * every tensor's byte size is dtype x shape, and the tensors tile the data area
 * exactly, with no hole and no overlap, so that no byte of a file goes unaccounted
 * (a file cannot double as another format).
 *
 * Every error names the file (or the label given for a memory buffer) and the field,
 * e.g. "/m/model.safetensors: tensor 'a.k_scale': data_offsets: [0, 6] holds 6 bytes
 * but dtype BF16 x shape [1] needs 2".  On error nothing is returned: the output
 * structure is left empty and everything allocated on the way is freed. */
#ifndef KVFP8_SAFETENSORS_H
#define KVFP8_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "kvfp8/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Every dtype the format defines.  The first three are the ones KV scales may be
 * stored in; the others are recognised (a file holding them is read) but
 * kvfp8_st_tensor_to_f32() reports them as unsupported. */
typedef enum {
    KVFP8_ST_F32 = 0,
    KVFP8_ST_F16 = 1,
    KVFP8_ST_BF16 = 2,
    KVFP8_ST_BOOL,
    KVFP8_ST_F4,
    KVFP8_ST_F6_E2M3,
    KVFP8_ST_F6_E3M2,
    KVFP8_ST_U8,
    KVFP8_ST_I8,
    KVFP8_ST_F8_E5M2,
    KVFP8_ST_F8_E4M3,
    KVFP8_ST_F8_E8M0,
    KVFP8_ST_F8_E4M3FNUZ,
    KVFP8_ST_F8_E5M2FNUZ,
    KVFP8_ST_I16,
    KVFP8_ST_U16,
    KVFP8_ST_I32,
    KVFP8_ST_U32,
    KVFP8_ST_C64,
    KVFP8_ST_F64,
    KVFP8_ST_I64,
    KVFP8_ST_U64
} kvfp8_st_dtype;
#define KVFP8_ST_DTYPE_COUNT 22

/* The format's spelling ("F32", "BF16", "F8_E4M3", ...). */
const char *kvfp8_st_dtype_name(kvfp8_st_dtype d);
/* Exact, case-sensitive, as the format requires. */
kvfp8_status kvfp8_st_dtype_parse(const char *name, kvfp8_st_dtype *out);
/* Bits per element (4 for F4, 6 for the F6 types, 8..64 for the others). */
unsigned kvfp8_st_dtype_bits(kvfp8_st_dtype d);
/* 1 for F32, F16 and BF16: the dtypes a KV scale may be stored in. */
int kvfp8_st_dtype_is_scale_float(kvfp8_st_dtype d);

/* Headers larger than this are refused, as the reference implementation does. */
#define KVFP8_ST_MAX_HEADER 100000000u

typedef struct {
    char *name;
    kvfp8_st_dtype dtype;
    size_t ndim;
    uint64_t *shape;   /* ndim entries; NULL for a 0-rank tensor (a scalar) */
    uint64_t numel;    /* product of shape (1 for a scalar, 0 for an empty tensor) */
    uint64_t begin;    /* data_offsets, relative to the start of the data area */
    uint64_t end;
    /* A copy of the tensor's end - begin bytes (little-endian, row-major), or NULL
     * when the filter passed to the reader did not select it or it has no bytes. */
    uint8_t *data;
} kvfp8_st_tensor;

typedef struct {
    char *label;               /* the path, or the label of a memory buffer */
    uint64_t header_len;       /* N */
    uint64_t data_len;         /* bytes after the header */
    size_t count;
    kvfp8_st_tensor *tensors;  /* sorted by data offset (then end offset) */
    size_t metadata_count;
    char **metadata_keys;      /* __metadata__, in the order the header lists it */
    char **metadata_values;
} kvfp8_st_file;

/* Chooses whose bytes the reader copies: return nonzero to load the tensor.  A
 * NULL filter loads every tensor.  The scales loader selects only scale names, so
 * that a multi-gigabyte weight shard costs one header read. */
typedef int (*kvfp8_st_filter)(const char *name, void *ctx);

/* Parses a whole file held in memory.  `label` names it in error messages.  On
 * success *out owns copies of everything (nothing points into `buf`). */
kvfp8_status kvfp8_st_parse(const uint8_t *buf, size_t len, const char *label,
                            kvfp8_st_filter filter, void *ctx, kvfp8_st_file *out);

/* Reads a file: the header, then only the selected tensors' bytes. */
kvfp8_status kvfp8_st_read(const char *path, kvfp8_st_filter filter, void *ctx,
                           kvfp8_st_file *out);

/* Frees everything and leaves *f empty (safe on an empty or already freed file). */
void kvfp8_st_free(kvfp8_st_file *f);

/* The tensor of that name, or NULL. */
const kvfp8_st_tensor *kvfp8_st_find(const kvfp8_st_file *f, const char *name);

/* Converts a loaded F32, F16 or BF16 tensor to float32 (exact for all three):
 * out receives t->numel values.  KVFP8_ERR_UNSUPPORTED for another dtype and
 * KVFP8_ERR_STATE for a tensor whose bytes were not loaded, each naming the file
 * and the tensor. */
kvfp8_status kvfp8_st_tensor_to_f32(const kvfp8_st_file *f, const kvfp8_st_tensor *t,
                                    float *out);

/* ---- writing ----------------------------------------------------------------------- */

typedef struct {
    const char *name;
    kvfp8_st_dtype dtype;
    size_t ndim;
    const uint64_t *shape;
    const void *data; /* numel x bits / 8 bytes, little-endian, row-major */
} kvfp8_st_entry;

/* Serializes the way the reference implementation does, so that the same tensors
 * give the same bytes: tensors ordered by dtype (widest alignment first, in the
 * format's dtype order) then by name, a compact JSON header with "__metadata__"
 * first, padded with spaces to a multiple of 8 bytes.  Metadata is written in the
 * order given.  Refuses (naming the entry and field) a duplicate name (the empty
 * name is a name), the name "__metadata__", a size that overflows or is not whole bytes, and
 * duplicate metadata keys.  *out is malloc'd; the caller frees it. */
kvfp8_status kvfp8_st_serialize(const kvfp8_st_entry *entries, size_t n,
                                const char *const *meta_keys, const char *const *meta_values,
                                size_t n_meta, uint8_t **out, size_t *out_len);

/* Writes a file atomically: the bytes go to a temporary file in the same folder,
 * which is flushed to disk and renamed over `path`; on any failure the temporary
 * file is removed and `path` is untouched (absent, or its old contents).  The new
 * file gets mode 0644. */
kvfp8_status kvfp8_st_write(const char *path, const kvfp8_st_entry *entries, size_t n,
                            const char *const *meta_keys, const char *const *meta_values,
                            size_t n_meta);

/* The same atomic write for any bytes (used for config.json as well). */
kvfp8_status kvfp8_write_file_atomic(const char *path, const void *data, size_t len);

#ifdef __cplusplus
}
#endif
#endif
