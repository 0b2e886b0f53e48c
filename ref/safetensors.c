/* safetensors reader and writer (see include/kvfp8/safetensors.h, docs/scales.md).
 *
 * The header is parsed with jansson; everything else is checked here, in the order a
 * reader needs it: the length field, the header's first and last bytes, the JSON,
 * each tensor's fields, then the tiling of the data area.  The reader fills the
 * output structure as it goes and frees it on the first error, so a caller never
 * sees a half-validated file. */
#include "kvfp8/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "kvfp8/fp8.h"

/* ---- dtypes ------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    unsigned bits;
    /* Position in the reference implementation's Dtype enum, which is in increasing
     * alignment order; the writer sorts by it (descending) to lay out tensors the
     * same way. */
    int rank;
} dtype_info;

static const dtype_info dtypes[KVFP8_ST_DTYPE_COUNT] = {
    [KVFP8_ST_F32] = {"F32", 32, 17},
    [KVFP8_ST_F16] = {"F16", 16, 13},
    [KVFP8_ST_BF16] = {"BF16", 16, 14},
    [KVFP8_ST_BOOL] = {"BOOL", 8, 0},
    [KVFP8_ST_F4] = {"F4", 4, 1},
    [KVFP8_ST_F6_E2M3] = {"F6_E2M3", 6, 2},
    [KVFP8_ST_F6_E3M2] = {"F6_E3M2", 6, 3},
    [KVFP8_ST_U8] = {"U8", 8, 4},
    [KVFP8_ST_I8] = {"I8", 8, 5},
    [KVFP8_ST_F8_E5M2] = {"F8_E5M2", 8, 6},
    [KVFP8_ST_F8_E4M3] = {"F8_E4M3", 8, 7},
    [KVFP8_ST_F8_E8M0] = {"F8_E8M0", 8, 8},
    [KVFP8_ST_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8, 9},
    [KVFP8_ST_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8, 10},
    [KVFP8_ST_I16] = {"I16", 16, 11},
    [KVFP8_ST_U16] = {"U16", 16, 12},
    [KVFP8_ST_I32] = {"I32", 32, 15},
    [KVFP8_ST_U32] = {"U32", 32, 16},
    [KVFP8_ST_C64] = {"C64", 64, 18},
    [KVFP8_ST_F64] = {"F64", 64, 19},
    [KVFP8_ST_I64] = {"I64", 64, 20},
    [KVFP8_ST_U64] = {"U64", 64, 21},
};

static int dtype_valid(kvfp8_st_dtype d) { return (unsigned)d < KVFP8_ST_DTYPE_COUNT; }

const char *kvfp8_st_dtype_name(kvfp8_st_dtype d) { return dtype_valid(d) ? dtypes[d].name : "?"; }

unsigned kvfp8_st_dtype_bits(kvfp8_st_dtype d) { return dtype_valid(d) ? dtypes[d].bits : 0; }

int kvfp8_st_dtype_is_scale_float(kvfp8_st_dtype d) {
    return d == KVFP8_ST_F32 || d == KVFP8_ST_F16 || d == KVFP8_ST_BF16;
}

kvfp8_status kvfp8_st_dtype_parse(const char *name, kvfp8_st_dtype *out) {
    for (int i = 0; name && i < KVFP8_ST_DTYPE_COUNT; i++)
        if (!strcmp(name, dtypes[i].name)) {
            *out = (kvfp8_st_dtype)i;
            return KVFP8_OK;
        }
    return kvfp8_fail(KVFP8_ERR_INVALID, "unknown safetensors dtype '%s'", name ? name : "(null)");
}

/* ---- errors ------------------------------------------------------------------------- */

/* "LABEL: FIELD: message": every reader and writer error has this shape so that a
 * caller (and the tests) can rely on the file and the field being named. */
static kvfp8_status failf(kvfp8_status s, const char *label, const char *field, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static kvfp8_status failf(kvfp8_status s, const char *label, const char *field, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kvfp8_fail(s, "%s: %s: %s", label, field, msg);
}

/* The field of one tensor, "tensor 'NAME': FIELD", for failf.  Long names are cut so
 * that the message keeps its tail (the problem itself). */
static const char *tensor_field(char *buf, size_t cap, const char *name, const char *field) {
    if (strlen(name) > 160)
        snprintf(buf, cap, "tensor '%.150s...': %s", name, field);
    else
        snprintf(buf, cap, "tensor '%s': %s", name, field);
    return buf;
}

/* ---- freeing ----------------------------------------------------------------------- */

void kvfp8_st_free(kvfp8_st_file *f) {
    if (!f)
        return;
    for (size_t i = 0; i < f->count; i++) {
        free(f->tensors[i].name);
        free(f->tensors[i].shape);
        free(f->tensors[i].data);
    }
    free(f->tensors);
    for (size_t i = 0; i < f->metadata_count; i++) {
        free(f->metadata_keys[i]);
        free(f->metadata_values[i]);
    }
    free(f->metadata_keys);
    free(f->metadata_values);
    free(f->label);
    memset(f, 0, sizeof *f);
}

/* ---- header ------------------------------------------------------------------------- */

static uint64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static kvfp8_status nomem(const char *label) {
    return failf(KVFP8_ERR_NOMEM, label, "memory", "out of memory");
}

/* A JSON value that must be an integer in [0, 2^63). */
static int get_u64(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return 0;
    *out = (uint64_t)json_integer_value(v);
    return 1;
}

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return json_integer_value(v) < 0 ? "a negative integer" : "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

static kvfp8_status parse_tensor(const char *label, const char *name, const json_t *v,
                                 uint64_t data_len, kvfp8_st_tensor *t) {
    char field[256];
    if (!json_is_object(v))
        return failf(KVFP8_ERR_FORMAT, label, tensor_field(field, sizeof field, name, "entry"),
                     "must be an object {\"dtype\", \"shape\", \"data_offsets\"}, got %s", json_kind(v));
    if (!(t->name = strdup(name)))
        return nomem(label);

    const json_t *dt = json_object_get(v, "dtype");
    if (!dt)
        return failf(KVFP8_ERR_FORMAT, label, tensor_field(field, sizeof field, name, "dtype"), "missing");
    if (!json_is_string(dt))
        return failf(KVFP8_ERR_FORMAT, label, tensor_field(field, sizeof field, name, "dtype"),
                     "must be a string, got %s", json_kind(dt));
    int found = 0;
    for (int i = 0; i < KVFP8_ST_DTYPE_COUNT; i++)
        if (!strcmp(json_string_value(dt), dtypes[i].name)) {
            t->dtype = (kvfp8_st_dtype)i;
            found = 1;
        }
    if (!found)
        return failf(KVFP8_ERR_FORMAT, label, tensor_field(field, sizeof field, name, "dtype"),
                     "unknown dtype '%.40s'", json_string_value(dt));

    const json_t *sh = json_object_get(v, "shape");
    if (!sh)
        return failf(KVFP8_ERR_FORMAT, label, tensor_field(field, sizeof field, name, "shape"), "missing");
    if (!json_is_array(sh))
        return failf(KVFP8_ERR_FORMAT, label, tensor_field(field, sizeof field, name, "shape"),
                     "must be an array of non-negative integers, got %s", json_kind(sh));
    t->ndim = json_array_size(sh);
    if (t->ndim && !(t->shape = calloc(t->ndim, sizeof *t->shape)))
        return nomem(label);
    uint64_t numel = 1;
    int overflow = 0;
    for (size_t i = 0; i < t->ndim; i++) {
        const json_t *d = json_array_get(sh, i);
        if (!get_u64(d, &t->shape[i]))
            return failf(KVFP8_ERR_FORMAT, label, tensor_field(field, sizeof field, name, "shape"),
                         "element %zu must be a non-negative integer, got %s", i, json_kind(d));
        if (t->shape[i] == 0)
            numel = 0;
        else if (numel > UINT64_MAX / t->shape[i])
            overflow = 1;
        else
            numel *= t->shape[i];
    }
    /* An overflowing product only matters when no dimension is 0. */
    if (overflow && numel != 0)
        return failf(KVFP8_ERR_FORMAT, label, tensor_field(field, sizeof field, name, "shape"),
                     "element count overflows 64 bits");
    t->numel = numel;

    const json_t *off = json_object_get(v, "data_offsets");
    if (!off)
        return failf(KVFP8_ERR_FORMAT, label, tensor_field(field, sizeof field, name, "data_offsets"),
                     "missing");
    if (!json_is_array(off) || json_array_size(off) != 2)
        return failf(KVFP8_ERR_FORMAT, label, tensor_field(field, sizeof field, name, "data_offsets"),
                     "must be an array [BEGIN, END] of two non-negative integers, got %s",
                     json_is_array(off) ? "an array of another length" : json_kind(off));
    for (int i = 0; i < 2; i++) {
        const json_t *o = json_array_get(off, (size_t)i);
        if (!get_u64(o, i ? &t->end : &t->begin))
            return failf(KVFP8_ERR_FORMAT, label,
                         tensor_field(field, sizeof field, name, "data_offsets"),
                         "%s must be a non-negative integer, got %s", i ? "END" : "BEGIN", json_kind(o));
    }
    if (t->end < t->begin)
        return failf(KVFP8_ERR_FORMAT, label, tensor_field(field, sizeof field, name, "data_offsets"),
                     "[%llu, %llu] ends before it begins", (unsigned long long)t->begin,
                     (unsigned long long)t->end);
    if (t->end > data_len)
        return failf(KVFP8_ERR_FORMAT, label, tensor_field(field, sizeof field, name, "data_offsets"),
                     "[%llu, %llu] lies outside the data area (%llu bytes after the header)",
                     (unsigned long long)t->begin, (unsigned long long)t->end,
                     (unsigned long long)data_len);

    const unsigned bits = dtypes[t->dtype].bits;
    if (numel > UINT64_MAX / bits)
        return failf(KVFP8_ERR_FORMAT, label, tensor_field(field, sizeof field, name, "shape"),
                     "byte size overflows 64 bits");
    const uint64_t nbits = numel * bits;
    if (nbits % 8)
        return failf(KVFP8_ERR_FORMAT, label, tensor_field(field, sizeof field, name, "shape"),
                     "dtype %s x %llu elements is not a whole number of bytes", dtypes[t->dtype].name,
                     (unsigned long long)numel);
    if (nbits / 8 != t->end - t->begin)
        return failf(KVFP8_ERR_FORMAT, label, tensor_field(field, sizeof field, name, "data_offsets"),
                     "[%llu, %llu] holds %llu bytes but dtype %s x %llu elements needs %llu",
                     (unsigned long long)t->begin, (unsigned long long)t->end,
                     (unsigned long long)(t->end - t->begin), dtypes[t->dtype].name,
                     (unsigned long long)numel, (unsigned long long)(nbits / 8));
    return KVFP8_OK;
}

static int by_offset(const void *a, const void *b) {
    const kvfp8_st_tensor *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Parses and validates the N header bytes against a data area of data_len bytes,
 * filling everything but the tensors' bytes.  On error the caller frees *out. */
static kvfp8_status parse_header(const char *hdr, uint64_t n, uint64_t data_len, const char *label,
                                 kvfp8_st_file *out) {
    char field[256];
    if (n == 0)
        return failf(KVFP8_ERR_FORMAT, label, "header", "is empty: it must be a JSON object beginning with '{'");
    if (hdr[0] != '{')
        return failf(KVFP8_ERR_FORMAT, label, "header", "must begin with '{' (0x7B), found byte 0x%02X",
                     (unsigned)(unsigned char)hdr[0]);
    /* The format allows trailing padding with spaces only; jansson by itself would
     * accept any JSON white space after the object. */
    uint64_t last = n - 1;
    while (last > 0 && hdr[last] == ' ')
        last--;
    if (hdr[last] != '}')
        return failf(KVFP8_ERR_FORMAT, label, "header",
                     "must end with '}' followed only by space (0x20) padding, found byte 0x%02X at offset %llu",
                     (unsigned)(unsigned char)hdr[last], (unsigned long long)last);

    json_error_t err;
    json_t *root = json_loadb(hdr, (size_t)n, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return failf(KVFP8_ERR_FORMAT, label, "header", "invalid JSON at line %d column %d: %s", err.line,
                     err.column, err.text);
    kvfp8_status st = KVFP8_OK;
    if (!json_is_object(root)) {
        st = failf(KVFP8_ERR_FORMAT, label, "header", "must be a JSON object");
        goto done;
    }

    const size_t keys = json_object_size(root);
    if (keys && !(out->tensors = calloc(keys, sizeof *out->tensors))) {
        st = nomem(label);
        goto done;
    }
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(value)) {
                st = failf(KVFP8_ERR_FORMAT, label, "__metadata__",
                           "must be an object of string values, got %s", json_kind(value));
                goto done;
            }
            const size_t m = json_object_size(value);
            if (m && (!(out->metadata_keys = calloc(m, sizeof(char *))) ||
                      !(out->metadata_values = calloc(m, sizeof(char *))))) {
                st = nomem(label);
                goto done;
            }
            const char *mk;
            json_t *mv;
            json_object_foreach(value, mk, mv) {
                if (!json_is_string(mv)) {
                    snprintf(field, sizeof field, "__metadata__['%.150s']", mk);
                    st = failf(KVFP8_ERR_FORMAT, label, field, "must be a string, got %s", json_kind(mv));
                    goto done;
                }
                char *k = strdup(mk), *s = strdup(json_string_value(mv));
                if (!k || !s) {
                    free(k);
                    free(s);
                    st = nomem(label);
                    goto done;
                }
                out->metadata_keys[out->metadata_count] = k;
                out->metadata_values[out->metadata_count++] = s;
            }
            continue;
        }
        kvfp8_st_tensor *t = &out->tensors[out->count++];
        if ((st = parse_tensor(label, key, value, data_len, t)) != KVFP8_OK)
            goto done;
    }

    /* The tensors must tile the data area: sorted by offset, each begins where the
     * previous one ended, and the last ends at the end of the file. */
    if (out->count > 1)
        qsort(out->tensors, out->count, sizeof *out->tensors, by_offset);
    uint64_t pos = 0;
    for (size_t i = 0; i < out->count; i++) {
        const kvfp8_st_tensor *t = &out->tensors[i];
        if (t->begin < pos) {
            st = failf(KVFP8_ERR_FORMAT, label, tensor_field(field, sizeof field, t->name, "data_offsets"),
                       "[%llu, %llu] overlaps tensor '%.120s', which ends at %llu",
                       (unsigned long long)t->begin, (unsigned long long)t->end, out->tensors[i - 1].name,
                       (unsigned long long)pos);
            goto done;
        }
        if (t->begin > pos) {
            st = failf(KVFP8_ERR_FORMAT, label, tensor_field(field, sizeof field, t->name, "data_offsets"),
                       "[%llu, %llu] is not contiguous: bytes [%llu, %llu) of the data area belong to no tensor",
                       (unsigned long long)t->begin, (unsigned long long)t->end, (unsigned long long)pos,
                       (unsigned long long)t->begin);
            goto done;
        }
        pos = t->end;
    }
    if (pos != data_len)
        st = failf(KVFP8_ERR_FORMAT, label, "data_offsets",
                   "the tensors cover %llu bytes but the data area has %llu: bytes [%llu, %llu) belong to no tensor",
                   (unsigned long long)pos, (unsigned long long)data_len, (unsigned long long)pos,
                   (unsigned long long)data_len);
done:
    json_decref(root);
    return st;
}

/* The 8-byte length field against the bytes that follow it. */
static kvfp8_status check_length(const char *label, uint64_t n, uint64_t after_length) {
    if (n > KVFP8_ST_MAX_HEADER)
        return failf(KVFP8_ERR_FORMAT, label, "header length",
                     "%llu bytes exceeds the %u-byte limit", (unsigned long long)n, KVFP8_ST_MAX_HEADER);
    if (n > after_length)
        return failf(KVFP8_ERR_FORMAT, label, "header length",
                     "%llu bytes declared but only %llu bytes follow the length field",
                     (unsigned long long)n, (unsigned long long)after_length);
    return KVFP8_OK;
}

static kvfp8_status start(kvfp8_st_file *out, const char *label) {
    memset(out, 0, sizeof *out);
    if (!(out->label = strdup(label ? label : "(buffer)")))
        return kvfp8_fail(KVFP8_ERR_NOMEM, "%s: memory: out of memory", label ? label : "(buffer)");
    return KVFP8_OK;
}

kvfp8_status kvfp8_st_parse(const uint8_t *buf, size_t len, const char *label, kvfp8_st_filter filter,
                            void *ctx, kvfp8_st_file *out) {
    kvfp8_status st = start(out, label);
    if (st != KVFP8_OK)
        return st;
    label = out->label;
    if (len < 8) {
        st = failf(KVFP8_ERR_FORMAT, label, "header length",
                   "truncated: %zu bytes, fewer than the 8-byte length field", len);
        goto fail;
    }
    const uint64_t n = le64(buf);
    if ((st = check_length(label, n, len - 8)) != KVFP8_OK)
        goto fail;
    out->header_len = n;
    out->data_len = len - 8 - n;
    if ((st = parse_header((const char *)buf + 8, n, out->data_len, label, out)) != KVFP8_OK)
        goto fail;
    const uint8_t *data = buf + 8 + n;
    for (size_t i = 0; i < out->count; i++) {
        kvfp8_st_tensor *t = &out->tensors[i];
        if (t->end == t->begin || (filter && !filter(t->name, ctx)))
            continue;
        if (!(t->data = malloc((size_t)(t->end - t->begin)))) {
            st = nomem(label);
            goto fail;
        }
        memcpy(t->data, data + t->begin, (size_t)(t->end - t->begin));
    }
    return KVFP8_OK;
fail:
    kvfp8_st_free(out);
    return st;
}

static kvfp8_status read_at(int fd, const char *label, const char *field, void *buf, uint64_t len,
                            uint64_t offset) {
    uint8_t *p = buf;
    while (len > 0) {
        const size_t chunk = len > (1u << 30) ? (1u << 30) : (size_t)len;
        const ssize_t got = pread(fd, p, chunk, (off_t)offset);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return failf(KVFP8_ERR_IO, label, field, "read failed: %s", strerror(errno));
        if (got == 0)
            return failf(KVFP8_ERR_FORMAT, label, field, "truncated: the file ended early");
        p += got;
        len -= (uint64_t)got;
        offset += (uint64_t)got;
    }
    return KVFP8_OK;
}

kvfp8_status kvfp8_st_read(const char *path, kvfp8_st_filter filter, void *ctx, kvfp8_st_file *out) {
    kvfp8_status st = start(out, path);
    if (st != KVFP8_OK)
        return st;
    const char *label = out->label;
    char *hdr = NULL;
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        st = failf(KVFP8_ERR_IO, label, "file", "cannot open: %s", strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        st = failf(KVFP8_ERR_IO, label, "file", "cannot stat: %s", strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = failf(KVFP8_ERR_IO, label, "file", "not a regular file");
        goto fail;
    }
    const uint64_t size = (uint64_t)sb.st_size;
    if (size < 8) {
        st = failf(KVFP8_ERR_FORMAT, label, "header length",
                   "truncated: the file has %llu bytes, fewer than the 8-byte length field",
                   (unsigned long long)size);
        goto fail;
    }
    uint8_t lenbuf[8];
    if ((st = read_at(fd, label, "header length", lenbuf, 8, 0)) != KVFP8_OK)
        goto fail;
    const uint64_t n = le64(lenbuf);
    if ((st = check_length(label, n, size - 8)) != KVFP8_OK)
        goto fail;
    if (!(hdr = malloc(n ? (size_t)n : 1))) {
        st = nomem(label);
        goto fail;
    }
    if ((st = read_at(fd, label, "header", hdr, n, 8)) != KVFP8_OK)
        goto fail;
    out->header_len = n;
    out->data_len = size - 8 - n;
    if ((st = parse_header(hdr, n, out->data_len, label, out)) != KVFP8_OK)
        goto fail;
    for (size_t i = 0; i < out->count; i++) {
        kvfp8_st_tensor *t = &out->tensors[i];
        if (t->end == t->begin || (filter && !filter(t->name, ctx)))
            continue;
        if (!(t->data = malloc((size_t)(t->end - t->begin)))) {
            st = nomem(label);
            goto fail;
        }
        char field[256];
        if ((st = read_at(fd, label, tensor_field(field, sizeof field, t->name, "data"), t->data,
                          t->end - t->begin, 8 + n + t->begin)) != KVFP8_OK)
            goto fail;
    }
    free(hdr);
    close(fd);
    return KVFP8_OK;
fail:
    free(hdr);
    if (fd >= 0)
        close(fd);
    kvfp8_st_free(out);
    return st;
}

const kvfp8_st_tensor *kvfp8_st_find(const kvfp8_st_file *f, const char *name) {
    for (size_t i = 0; f && name && i < f->count; i++)
        if (!strcmp(f->tensors[i].name, name))
            return &f->tensors[i];
    return NULL;
}

kvfp8_status kvfp8_st_tensor_to_f32(const kvfp8_st_file *f, const kvfp8_st_tensor *t, float *out) {
    char field[256];
    const char *label = f && f->label ? f->label : "(buffer)";
    if (!kvfp8_st_dtype_is_scale_float(t->dtype))
        return failf(KVFP8_ERR_UNSUPPORTED, label, tensor_field(field, sizeof field, t->name, "dtype"),
                     "%s is not supported here: expected F32, F16 or BF16", dtypes[t->dtype].name);
    if (t->numel && !t->data)
        return failf(KVFP8_ERR_STATE, label, tensor_field(field, sizeof field, t->name, "data"),
                     "the tensor's bytes were not loaded");
    for (uint64_t i = 0; i < t->numel; i++) {
        const uint8_t *p = t->data + i * (dtypes[t->dtype].bits / 8);
        switch (t->dtype) {
        case KVFP8_ST_F32: {
            const uint32_t b = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            memcpy(&out[i], &b, 4);
            break;
        }
        case KVFP8_ST_F16: out[i] = kvfp8_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); break;
        case KVFP8_ST_BF16: out[i] = kvfp8_bf16_to_f32((uint16_t)(p[0] | p[1] << 8)); break;
        default: break;
        }
    }
    return KVFP8_OK;
}

/* ---- writing ------------------------------------------------------------------------ */

typedef struct {
    const kvfp8_st_entry *e;
    uint64_t bytes;
} entry_ref;

static int by_layout(const void *a, const void *b) {
    const kvfp8_st_entry *x = ((const entry_ref *)a)->e, *y = ((const entry_ref *)b)->e;
    if (dtypes[x->dtype].rank != dtypes[y->dtype].rank)
        return dtypes[x->dtype].rank > dtypes[y->dtype].rank ? -1 : 1;
    return strcmp(x->name, y->name);
}

static kvfp8_status wfail(const char *field, const char *fmt, const char *arg) {
    return kvfp8_fail(KVFP8_ERR_INVALID, "safetensors writer: %s: %s%s", field, fmt, arg ? arg : "");
}

kvfp8_status kvfp8_st_serialize(const kvfp8_st_entry *entries, size_t n, const char *const *meta_keys,
                                const char *const *meta_values, size_t n_meta, uint8_t **out,
                                size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    char field[256];
    entry_ref *refs = n ? calloc(n, sizeof *refs) : NULL;
    json_t *root = json_object(), *meta = NULL;
    char *text = NULL;
    kvfp8_status st = KVFP8_OK;
    if ((n && !refs) || !root) {
        st = kvfp8_fail(KVFP8_ERR_NOMEM, "safetensors writer: memory: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const kvfp8_st_entry *e = &entries[i];
        const char *name = e->name ? e->name : "";
        /* Any string is a name, the empty one included, as the format and the
         * reader allow; only the metadata key is reserved. */
        tensor_field(field, sizeof field, name, "name");
        if (!strcmp(name, "__metadata__")) {
            st = wfail(field, "is reserved for the metadata", NULL);
            goto done;
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(name, entries[j].name)) {
                st = wfail(field, "appears twice", NULL);
                goto done;
            }
        if (!dtype_valid(e->dtype)) {
            st = wfail(tensor_field(field, sizeof field, name, "dtype"), "is not a safetensors dtype", NULL);
            goto done;
        }
        uint64_t numel = 1;
        int overflow = 0;
        for (size_t d = 0; d < e->ndim; d++) {
            if (e->shape[d] > (uint64_t)INT64_MAX) {
                st = wfail(tensor_field(field, sizeof field, name, "shape"), "a dimension exceeds 2^63-1", NULL);
                goto done;
            }
            if (e->shape[d] == 0)
                numel = 0;
            else if (numel > UINT64_MAX / e->shape[d])
                overflow = 1;
            else
                numel *= e->shape[d];
        }
        if ((overflow && numel) || numel > UINT64_MAX / 64) {
            st = wfail(tensor_field(field, sizeof field, name, "shape"), "the byte size overflows", NULL);
            goto done;
        }
        if (numel * dtypes[e->dtype].bits % 8) {
            st = wfail(tensor_field(field, sizeof field, name, "shape"), "is not a whole number of bytes", NULL);
            goto done;
        }
        refs[i].e = e;
        refs[i].bytes = numel * dtypes[e->dtype].bits / 8;
        if (refs[i].bytes && !e->data) {
            st = wfail(tensor_field(field, sizeof field, name, "data"), "is NULL", NULL);
            goto done;
        }
    }
    if (n > 1)
        qsort(refs, n, sizeof *refs, by_layout);

    if (n_meta) {
        if (!(meta = json_object()) || json_object_set_new(root, "__metadata__", meta)) {
            st = kvfp8_fail(KVFP8_ERR_NOMEM, "safetensors writer: memory: out of memory");
            goto done;
        }
        for (size_t i = 0; i < n_meta; i++) {
            if (!meta_keys[i] || !meta_values[i]) {
                st = wfail("__metadata__", "a key or value is NULL", NULL);
                goto done;
            }
            if (json_object_get(meta, meta_keys[i])) {
                st = wfail("__metadata__", "duplicate key ", meta_keys[i]);
                goto done;
            }
            json_t *s = json_string(meta_values[i]);
            if (!s || json_object_set_new(meta, meta_keys[i], s)) {
                st = wfail("__metadata__", "key or value is not valid UTF-8: ", meta_keys[i]);
                goto done;
            }
        }
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < n; i++) {
        const kvfp8_st_entry *e = refs[i].e;
        json_t *info = json_object(), *shape = json_array(), *offs = json_array();
        int bad = !info || !shape || !offs;
        if (!bad) {
            bad |= json_object_set_new(info, "dtype", json_string(dtypes[e->dtype].name));
            for (size_t d = 0; d < e->ndim; d++)
                bad |= json_array_append_new(shape, json_integer((json_int_t)e->shape[d]));
            bad |= json_object_set_new(info, "shape", shape);
            shape = NULL;
            bad |= json_array_append_new(offs, json_integer((json_int_t)offset));
            bad |= json_array_append_new(offs, json_integer((json_int_t)(offset + refs[i].bytes)));
            bad |= json_object_set_new(info, "data_offsets", offs);
            offs = NULL;
        }
        json_decref(shape);
        json_decref(offs);
        /* json_object_set_new fails for a key that is not valid UTF-8. */
        if (bad || json_object_set_new(root, e->name, info)) {
            if (bad)
                json_decref(info);
            st = wfail(tensor_field(field, sizeof field, e->name, "name"),
                       "could not be stored (not valid UTF-8, or out of memory)", NULL);
            goto done;
        }
        offset += refs[i].bytes;
    }
    if (!(text = json_dumps(root, JSON_COMPACT))) {
        st = kvfp8_fail(KVFP8_ERR_NOMEM, "safetensors writer: memory: out of memory");
        goto done;
    }
    const size_t hlen = strlen(text), padded = (hlen + 7) / 8 * 8;
    if (padded > KVFP8_ST_MAX_HEADER || offset > SIZE_MAX - 8 - padded) {
        st = wfail("header", "too large", NULL);
        goto done;
    }
    const size_t total = 8 + padded + (size_t)offset;
    uint8_t *buf = malloc(total);
    if (!buf) {
        st = kvfp8_fail(KVFP8_ERR_NOMEM, "safetensors writer: memory: out of memory");
        goto done;
    }
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    memcpy(buf + 8, text, hlen);
    memset(buf + 8 + hlen, ' ', padded - hlen);
    uint8_t *p = buf + 8 + padded;
    for (size_t i = 0; i < n; i++) {
        if (refs[i].bytes)
            memcpy(p, refs[i].e->data, (size_t)refs[i].bytes);
        p += refs[i].bytes;
    }
    *out = buf;
    *out_len = total;
done:
    free(text);
    json_decref(root);
    free(refs);
    return st;
}

kvfp8_status kvfp8_write_file_atomic(const char *path, const void *data, size_t len) {
    const size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp)
        return kvfp8_fail(KVFP8_ERR_NOMEM, "%s: memory: out of memory", path);
    /* The temporary file sits next to the target, so the rename never crosses a
     * file system and replaces the target in one step. */
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp-XXXXXX", 12);
    const int fd = mkstemp(tmp);
    if (fd < 0) {
        kvfp8_status st = failf(KVFP8_ERR_IO, path, "file", "cannot create a temporary file: %s", strerror(errno));
        free(tmp);
        return st;
    }
    kvfp8_status st = KVFP8_OK;
    const uint8_t *p = data;
    size_t left = len;
    if (fchmod(fd, 0644) != 0)
        st = failf(KVFP8_ERR_IO, path, "file", "cannot set the mode: %s", strerror(errno));
    while (st == KVFP8_OK && left > 0) {
        const ssize_t put = write(fd, p, left);
        if (put < 0 && errno == EINTR)
            continue;
        if (put <= 0) {
            st = failf(KVFP8_ERR_IO, path, "file", "write failed: %s", put < 0 ? strerror(errno) : "no progress");
            break;
        }
        p += put;
        left -= (size_t)put;
    }
    if (st == KVFP8_OK && fsync(fd) != 0)
        st = failf(KVFP8_ERR_IO, path, "file", "fsync failed: %s", strerror(errno));
    if (close(fd) != 0 && st == KVFP8_OK)
        st = failf(KVFP8_ERR_IO, path, "file", "close failed: %s", strerror(errno));
    if (st == KVFP8_OK && rename(tmp, path) != 0)
        st = failf(KVFP8_ERR_IO, path, "file", "cannot rename the temporary file into place: %s", strerror(errno));
    if (st != KVFP8_OK) {
        unlink(tmp);
    } else {
        /* Make the rename itself durable; a folder that cannot be synced (some file
         * systems refuse) still holds the complete file. */
        char *dir = strdup(path);
        if (dir) {
            char *slash = strrchr(dir, '/');
            const char *d = slash ? (slash == dir ? "/" : (*slash = '\0', dir)) : ".";
            const int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dfd >= 0) {
                (void)fsync(dfd);
                close(dfd);
            }
            free(dir);
        }
    }
    free(tmp);
    return st;
}

kvfp8_status kvfp8_st_write(const char *path, const kvfp8_st_entry *entries, size_t n,
                            const char *const *meta_keys, const char *const *meta_values, size_t n_meta) {
    uint8_t *buf;
    size_t len;
    kvfp8_status st = kvfp8_st_serialize(entries, n, meta_keys, meta_values, n_meta, &buf, &len);
    if (st != KVFP8_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", kvfp8_last_error());
        return kvfp8_fail(st, "%s: %s", path, why);
    }
    st = kvfp8_write_file_atomic(path, buf, len);
    free(buf);
    return st;
}
