/* The safetensors reader and writer (ref/safetensors.c).
 *
 * Malformed files are written byte by byte here, never through the writer under
 * test, each as its own test.  Every malformed case is read twice, from a file and
 * from memory, and each time the error must name the file (or the buffer's label)
 * and the field, and the output must be empty.  The writer is checked against bytes
 * written by hand from the format's description (and tests/py_scales_safetensors.py
 * checks it against a Python writer built from the same description). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvfp8/safetensors.h"

static char tmpdir[256];

static int make_tmp(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kvfp8-st-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmp(void **state) {
    (void)state;
    DIR *d = opendir(tmpdir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
            if (remove(p) != 0)
                rmdir(p);
        }
        closedir(d);
    }
    return rmdir(tmpdir);
}

static void write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* A file: the 8-byte length of `header` (as given, no padding added), the header,
 * then `data`. */
static size_t file_bytes(uint8_t *out, const char *header, const void *data, size_t dlen) {
    const size_t n = strlen(header);
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(out + 8, header, n);
    if (dlen)
        memcpy(out + 8 + n, data, dlen);
    return 8 + n + dlen;
}

static void assert_contains(const char *haystack, const char *needle) {
    if (!strstr(haystack, needle))
        fail_msg("expected \"%s\" in the error \"%s\"", needle, haystack);
}

static void assert_empty(const kvfp8_st_file *f) {
    assert_null(f->label);
    assert_null(f->tensors);
    assert_int_equal(f->count, 0);
    assert_null(f->metadata_keys);
    assert_int_equal(f->metadata_count, 0);
}

/* Reads the bytes from a file and from memory: both must fail with `want`, name the
 * file or label and contain every one of the NULL-terminated substrings. */
static void expect_error(const uint8_t *bytes, size_t len, kvfp8_status want, ...) {
    char path[512];
    snprintf(path, sizeof path, "%s/bad.safetensors", tmpdir);
    write_bytes(path, bytes, len);
    kvfp8_st_file f;
    memset(&f, 0x5A, sizeof f);
    assert_int_equal(kvfp8_st_read(path, NULL, NULL, &f), want);
    char err_file[512];
    snprintf(err_file, sizeof err_file, "%s", kvfp8_last_error());
    assert_empty(&f);
    memset(&f, 0x5A, sizeof f);
    assert_int_equal(kvfp8_st_parse(bytes, len, "in-memory.safetensors", NULL, NULL, &f), want);
    char err_mem[512];
    snprintf(err_mem, sizeof err_mem, "%s", kvfp8_last_error());
    assert_empty(&f);
    assert_contains(err_file, path);
    assert_contains(err_mem, "in-memory.safetensors");
    va_list ap;
    va_start(ap, want);
    for (const char *s; (s = va_arg(ap, const char *));) {
        assert_contains(err_file, s);
        assert_contains(err_mem, s);
    }
    va_end(ap);
}

static void expect_header_error(const char *header, const void *data, size_t dlen, const char *field, const char *detail) {
    uint8_t buf[4096];
    const size_t len = file_bytes(buf, header, data, dlen);
    expect_error(buf, len, KVFP8_ERR_FORMAT, field, detail, (const char *)NULL);
}

static const uint8_t four[4] = {0, 0, 0x80, 0x3F}; /* 1.0f */

/* ---- reading valid files -------------------------------------------------------------- */

static void test_read_valid_every_scale_dtype(void **state) {
    (void)state;
    /* 1.0 in F32, 0.5 in F16 (0x3800), 2^-7 in BF16 (0x3C00), and a 2x2 F16 tensor. */
    const uint8_t data[] = {0, 0, 0x80, 0x3F, 0x00, 0x38, 0x00, 0x3C, 0x00, 0x3C, 0x00, 0x40, 0x00, 0x42, 0x00, 0x44};
    const char *header = "{\"__metadata__\":{\"format\":\"pt\",\"who\":\"test\"},"
                         "\"c\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[6,8]},"
                         "\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                         "\"b\":{\"dtype\":\"F16\",\"shape\":[1,1,1],\"data_offsets\":[4,6]},"
                         "\"m\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[8,16]},"
                         "\"empty\":{\"dtype\":\"I32\",\"shape\":[0,5],\"data_offsets\":[16,16]}}    ";
    uint8_t buf[1024];
    const size_t len = file_bytes(buf, header, data, sizeof data);
    kvfp8_st_file f;
    assert_int_equal(kvfp8_st_parse(buf, len, "mem", NULL, NULL, &f), KVFP8_OK);
    assert_int_equal(f.count, 5);
    assert_int_equal(f.data_len, sizeof data);
    /* Sorted by offset. */
    assert_string_equal(f.tensors[0].name, "a");
    assert_string_equal(f.tensors[1].name, "b");
    assert_string_equal(f.tensors[2].name, "c");
    assert_string_equal(f.tensors[3].name, "m");
    assert_string_equal(f.tensors[4].name, "empty");
    assert_int_equal(f.tensors[0].ndim, 0);
    assert_int_equal(f.tensors[0].numel, 1);
    assert_int_equal(f.tensors[4].numel, 0);
    assert_null(f.tensors[4].data);
    assert_int_equal(f.metadata_count, 2);
    assert_string_equal(f.metadata_keys[0], "format");
    assert_string_equal(f.metadata_values[0], "pt");
    assert_string_equal(f.metadata_keys[1], "who");
    float v[4];
    assert_int_equal(kvfp8_st_tensor_to_f32(&f, kvfp8_st_find(&f, "a"), v), KVFP8_OK);
    assert_true(v[0] == 1.0f);
    assert_int_equal(kvfp8_st_tensor_to_f32(&f, kvfp8_st_find(&f, "b"), v), KVFP8_OK);
    assert_true(v[0] == 0.5f);
    assert_int_equal(kvfp8_st_tensor_to_f32(&f, kvfp8_st_find(&f, "c"), v), KVFP8_OK);
    assert_true(v[0] == 0x1p-7f);
    assert_int_equal(kvfp8_st_tensor_to_f32(&f, kvfp8_st_find(&f, "m"), v), KVFP8_OK);
    assert_true(v[0] == 1.0f && v[1] == 2.0f && v[2] == 3.0f && v[3] == 4.0f);
    /* I32 is recognised but is no scale dtype. */
    assert_int_equal(kvfp8_st_tensor_to_f32(&f, kvfp8_st_find(&f, "empty"), v), KVFP8_ERR_UNSUPPORTED);
    assert_contains(kvfp8_last_error(), "mem");
    assert_contains(kvfp8_last_error(), "'empty'");
    assert_contains(kvfp8_last_error(), "dtype");
    assert_null(kvfp8_st_find(&f, "zz"));
    kvfp8_st_free(&f);
    kvfp8_st_free(&f); /* freeing twice is harmless */
}

static int only_scales(const char *name, void *ctx) {
    (*(int *)ctx)++;
    return strstr(name, "scale") != NULL;
}

static void test_read_file_loads_only_selected_tensors(void **state) {
    (void)state;
    uint8_t data[4 + 64];
    memcpy(data, four, 4);
    memset(data + 4, 7, 64);
    const char *header = "{\"w\":{\"dtype\":\"U8\",\"shape\":[8,8],\"data_offsets\":[4,68]},"
                         "\"k_scale\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    uint8_t buf[1024];
    const size_t len = file_bytes(buf, header, data, sizeof data);
    char path[512];
    snprintf(path, sizeof path, "%s/m.safetensors", tmpdir);
    write_bytes(path, buf, len);
    kvfp8_st_file f;
    int calls = 0;
    assert_int_equal(kvfp8_st_read(path, only_scales, &calls, &f), KVFP8_OK);
    assert_int_equal(calls, 2);
    assert_string_equal(f.label, path);
    assert_non_null(kvfp8_st_find(&f, "k_scale")->data);
    assert_null(kvfp8_st_find(&f, "w")->data);
    float x;
    assert_int_equal(kvfp8_st_tensor_to_f32(&f, kvfp8_st_find(&f, "k_scale"), &x), KVFP8_OK);
    assert_true(x == 1.0f);
    kvfp8_st_free(&f);
}

/* ---- writing ------------------------------------------------------------------------------- */

static void test_writer_bytes_follow_the_format(void **state) {
    (void)state;
    /* Tensors go widest dtype first, then by name; "__metadata__" leads; the header
     * is compact JSON padded with spaces to a multiple of 8. */
    const uint16_t bf = 0x3F80, h = 0x3C00;
    const float f = 2.0f;
    const uint64_t one[1] = {1};
    const kvfp8_st_entry e[] = {
        {"z.bf16", KVFP8_ST_BF16, 1, one, &bf},
        {"y.f16", KVFP8_ST_F16, 1, one, &h},
        {"b.f32", KVFP8_ST_F32, 0, NULL, &f},
        {"a.f32", KVFP8_ST_F32, 1, one, &f},
    };
    const char *keys[] = {"format"}, *values[] = {"pt"};
    uint8_t *out;
    size_t len;
    assert_int_equal(kvfp8_st_serialize(e, 4, keys, values, 1, &out, &len), KVFP8_OK);
    const char *want = "{\"__metadata__\":{\"format\":\"pt\"},"
                       "\"a.f32\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                       "\"b.f32\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[4,8]},"
                       "\"z.bf16\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[8,10]},"
                       "\"y.f16\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[10,12]}}";
    const size_t wl = strlen(want), padded = (wl + 7) / 8 * 8;
    assert_int_equal(len, 8 + padded + 12);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | out[i];
    assert_int_equal(n, padded);
    assert_memory_equal(out + 8, want, wl);
    for (size_t i = wl; i < padded; i++)
        assert_int_equal(out[8 + i], ' ');
    const uint8_t data[12] = {0, 0, 0, 0x40, 0, 0, 0, 0x40, 0x80, 0x3F, 0x00, 0x3C};
    assert_memory_equal(out + 8 + padded, data, 12);
    /* And the reader reads it back. */
    kvfp8_st_file rf;
    assert_int_equal(kvfp8_st_parse(out, len, "w", NULL, NULL, &rf), KVFP8_OK);
    assert_int_equal(rf.count, 4);
    assert_string_equal(kvfp8_st_find(&rf, "b.f32")->name, "b.f32");
    kvfp8_st_free(&rf);
    free(out);
}

static void test_writer_round_trip_through_a_file(void **state) {
    (void)state;
    const float f[3] = {0.25f, 0.5f, 1.5f};
    const uint16_t h[3] = {0x3400, 0x3800, 0x3E00}; /* 0.25 0.5 1.5 in F16 */
    const uint16_t b[3] = {0x3E80, 0x3F00, 0x3FC0}; /* the same in BF16 */
    const uint64_t head3[3] = {3, 1, 1};
    const kvfp8_st_entry e[] = {
        {"f", KVFP8_ST_F32, 3, head3, f}, {"h", KVFP8_ST_F16, 3, head3, h}, {"b", KVFP8_ST_BF16, 3, head3, b}};
    char path[512];
    snprintf(path, sizeof path, "%s/rt.safetensors", tmpdir);
    assert_int_equal(kvfp8_st_write(path, e, 3, NULL, NULL, 0), KVFP8_OK);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0644);
    kvfp8_st_file rf;
    assert_int_equal(kvfp8_st_read(path, NULL, NULL, &rf), KVFP8_OK);
    assert_int_equal(rf.metadata_count, 0);
    const char *names[3] = {"f", "h", "b"};
    for (int i = 0; i < 3; i++) {
        const kvfp8_st_tensor *t = kvfp8_st_find(&rf, names[i]);
        assert_non_null(t);
        assert_int_equal(t->ndim, 3);
        assert_int_equal(t->shape[0], 3);
        float v[3];
        assert_int_equal(kvfp8_st_tensor_to_f32(&rf, t, v), KVFP8_OK);
        assert_memory_equal(v, f, sizeof f);
    }
    kvfp8_st_free(&rf);
}

static int count_entries(const char *dir) {
    int n = 0;
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static void test_writer_failure_leaves_nothing_behind(void **state) {
    (void)state;
    const float f = 1.0f;
    const uint64_t one[1] = {1};
    const kvfp8_st_entry e = {"a", KVFP8_ST_F32, 1, one, &f};
    /* The target is a folder: the rename fails, and the temporary file must go. */
    char path[512];
    snprintf(path, sizeof path, "%s/target", tmpdir);
    assert_int_equal(mkdir(path, 0755), 0);
    assert_int_equal(kvfp8_st_write(path, &e, 1, NULL, NULL, 0), KVFP8_ERR_IO);
    assert_contains(kvfp8_last_error(), path);
    assert_int_equal(count_entries(tmpdir), 1);
    assert_int_equal(rmdir(path), 0);
    /* A folder that does not exist: nothing is created. */
    snprintf(path, sizeof path, "%s/missing/x.safetensors", tmpdir);
    assert_int_equal(kvfp8_st_write(path, &e, 1, NULL, NULL, 0), KVFP8_ERR_IO);
    assert_contains(kvfp8_last_error(), path);
    assert_int_equal(count_entries(tmpdir), 0);
    /* Invalid entries are refused before anything is written. */
    const kvfp8_st_entry dup[2] = {{"a", KVFP8_ST_F32, 1, one, &f}, {"a", KVFP8_ST_F32, 1, one, &f}};
    snprintf(path, sizeof path, "%s/dup.safetensors", tmpdir);
    assert_int_equal(kvfp8_st_write(path, dup, 2, NULL, NULL, 0), KVFP8_ERR_INVALID);
    assert_contains(kvfp8_last_error(), path);
    assert_contains(kvfp8_last_error(), "'a'");
    const kvfp8_st_entry reserved = {"__metadata__", KVFP8_ST_F32, 1, one, &f};
    assert_int_equal(kvfp8_st_write(path, &reserved, 1, NULL, NULL, 0), KVFP8_ERR_INVALID);
    const uint64_t three[1] = {3};
    const kvfp8_st_entry nibbles = {"n", KVFP8_ST_F4, 1, three, &f};
    assert_int_equal(kvfp8_st_write(path, &nibbles, 1, NULL, NULL, 0), KVFP8_ERR_INVALID);
    assert_contains(kvfp8_last_error(), "whole number of bytes");
    const char *keys[2] = {"k", "k"}, *values[2] = {"1", "2"};
    assert_int_equal(kvfp8_st_write(path, &e, 1, keys, values, 2), KVFP8_ERR_INVALID);
    assert_contains(kvfp8_last_error(), "__metadata__");
    assert_int_equal(count_entries(tmpdir), 0);
}

static void test_writer_accepts_every_name_the_reader_does(void **state) {
    (void)state;
    /* The empty name and non-ASCII names are names (found by fuzz_safetensors:
     * corpus input regress_empty_name.safetensors). */
    const float f[2] = {1.0f, 2.0f};
    const uint64_t one[1] = {1};
    const kvfp8_st_entry e[2] = {{"", KVFP8_ST_F32, 1, one, &f[0]}, {"k\xc3\xa9\"\\", KVFP8_ST_F32, 1, one, &f[1]}};
    uint8_t *out;
    size_t len;
    assert_int_equal(kvfp8_st_serialize(e, 2, NULL, NULL, 0, &out, &len), KVFP8_OK);
    kvfp8_st_file rf;
    assert_int_equal(kvfp8_st_parse(out, len, "w", NULL, NULL, &rf), KVFP8_OK);
    assert_non_null(kvfp8_st_find(&rf, ""));
    float x;
    assert_int_equal(kvfp8_st_tensor_to_f32(&rf, kvfp8_st_find(&rf, "k\xc3\xa9\"\\"), &x), KVFP8_OK);
    assert_true(x == 2.0f);
    kvfp8_st_free(&rf);
    free(out);
    /* A name that is not UTF-8 cannot be a JSON key. */
    const kvfp8_st_entry bad = {"\xff", KVFP8_ST_F32, 1, one, &f[0]};
    assert_int_equal(kvfp8_st_serialize(&bad, 1, NULL, NULL, 0, &out, &len), KVFP8_ERR_INVALID);
    assert_contains(kvfp8_last_error(), "UTF-8");
}

static void test_writer_replaces_an_existing_file_whole(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/x.safetensors", tmpdir);
    write_bytes(path, "old contents that are not safetensors", 37);
    const float f = 3.0f;
    const uint64_t one[1] = {1};
    const kvfp8_st_entry e = {"a", KVFP8_ST_F32, 1, one, &f};
    assert_int_equal(kvfp8_st_write(path, &e, 1, NULL, NULL, 0), KVFP8_OK);
    kvfp8_st_file rf;
    assert_int_equal(kvfp8_st_read(path, NULL, NULL, &rf), KVFP8_OK);
    assert_int_equal(rf.count, 1);
    kvfp8_st_free(&rf);
    assert_int_equal(count_entries(tmpdir), 1);
}

/* ---- malformed files, one test each --------------------------------------------------- */

static void test_bad_truncated_length_field(void **state) {
    (void)state;
    const uint8_t b[5] = {2, 0, 0, 0, 0};
    expect_error(b, sizeof b, KVFP8_ERR_FORMAT, "header length", "truncated", (const char *)NULL);
    expect_error(b, 0, KVFP8_ERR_FORMAT, "header length", "truncated", (const char *)NULL);
}

static void test_bad_header_length_beyond_file(void **state) {
    (void)state;
    uint8_t b[64];
    size_t len = file_bytes(b, "{}", NULL, 0);
    b[0] = 200; /* says 200 bytes, 2 follow */
    expect_error(b, len, KVFP8_ERR_FORMAT, "header length", "200 bytes declared but only 2", (const char *)NULL);
}

static void test_bad_header_length_over_limit(void **state) {
    (void)state;
    uint8_t b[16] = {0};
    const uint64_t n = (uint64_t)KVFP8_ST_MAX_HEADER + 1;
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(n >> (8 * i));
    expect_error(b, sizeof b, KVFP8_ERR_FORMAT, "header length", "limit", (const char *)NULL);
    memset(b, 0xFF, 8); /* 2^64 - 1 */
    expect_error(b, sizeof b, KVFP8_ERR_FORMAT, "header length", "limit", (const char *)NULL);
}

static void test_bad_header_empty(void **state) {
    (void)state;
    expect_header_error("", NULL, 0, "header", "empty");
}

static void test_bad_header_not_an_object(void **state) {
    (void)state;
    expect_header_error("[1, 2]  ", NULL, 0, "header", "must begin with '{'");
    expect_header_error(" {}     ", NULL, 0, "header", "must begin with '{'");
}

static void test_bad_header_padding_not_spaces(void **state) {
    (void)state;
    expect_header_error("{}\n", NULL, 0, "header", "space (0x20) padding");
    uint8_t b[32];
    size_t len = file_bytes(b, "{}xxxxxx", NULL, 0);
    memset(b + 10, 0, 6); /* NUL padding */
    expect_error(b, len, KVFP8_ERR_FORMAT, "header", "space (0x20) padding", (const char *)NULL);
}

static void test_bad_header_invalid_json(void **state) {
    (void)state;
    /* jansson's position is reported: line 2, column 7. */
    expect_header_error("{\"a\":\n  {\"dtype\" \"F32\"}}", NULL, 0, "header", "invalid JSON at line 2 column");
    expect_header_error("{\"a\": 1,}", NULL, 0, "header", "invalid JSON at line 1 column");
}

static void test_bad_header_invalid_utf8(void **state) {
    (void)state;
    expect_header_error("{\"\xff\":{}}", NULL, 0, "header", "invalid JSON");
}

static void test_bad_header_nan(void **state) {
    (void)state;
    /* Python's json.dumps writes NaN for float('nan'); it is not JSON. */
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[NaN],\"data_offsets\":[0,4]}}", four, 4, "header",
                        "invalid JSON");
}

static void test_bad_duplicate_tensor_name(void **state) {
    (void)state;
    const uint8_t d[8] = {0};
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                        d, 8, "header", "duplicate object key");
}

static void test_bad_tensor_entry_not_object(void **state) {
    (void)state;
    expect_header_error("{\"a\":[1,2]}", NULL, 0, "tensor 'a': entry", "must be an object");
}

static void test_bad_dtype_missing(void **state) {
    (void)state;
    expect_header_error("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", four, 4, "tensor 'a': dtype", "missing");
}

static void test_bad_dtype_wrong_type(void **state) {
    (void)state;
    expect_header_error("{\"a\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", four, 4, "tensor 'a': dtype",
                        "must be a string");
}

static void test_bad_dtype_unknown(void **state) {
    (void)state;
    expect_header_error("{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", four, 4,
                        "tensor 'a': dtype", "unknown dtype 'f32'");
}

static void test_bad_shape_missing(void **state) {
    (void)state;
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", four, 4, "tensor 'a': shape", "missing");
}

static void test_bad_shape_wrong_type(void **state) {
    (void)state;
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":\"1\",\"data_offsets\":[0,4]}}", four, 4,
                        "tensor 'a': shape", "must be an array");
}

static void test_bad_shape_negative_or_real(void **state) {
    (void)state;
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", four, 4,
                        "tensor 'a': shape", "element 0 must be a non-negative integer, got a negative integer");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1, 1.0],\"data_offsets\":[0,4]}}", four, 4,
                        "tensor 'a': shape", "element 1 must be a non-negative integer, got a real number");
}

static void test_bad_shape_overflow(void **state) {
    (void)state;
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", four,
                        4, "tensor 'a': shape", "overflows");
    expect_header_error("{\"a\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,4]}}", four, 4,
                        "tensor 'a': shape", "overflows");
}

static void test_bad_shape_not_whole_bytes(void **state) {
    (void)state;
    expect_header_error("{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,4]}}", four, 4,
                        "tensor 'a': shape", "not a whole number of bytes");
}

static void test_bad_offsets_missing(void **state) {
    (void)state;
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", four, 4, "tensor 'a': data_offsets", "missing");
}

static void test_bad_offsets_wrong_type(void **state) {
    (void)state;
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{\"b\":0}}}", four, 4,
                        "tensor 'a': data_offsets", "got an object");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", four, 4,
                        "tensor 'a': data_offsets", "array of another length");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,\"4\"]}}", four, 4,
                        "tensor 'a': data_offsets", "END must be a non-negative integer, got a string");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", four, 4,
                        "tensor 'a': data_offsets", "BEGIN must be a non-negative integer");
}

static void test_bad_offsets_reversed(void **state) {
    (void)state;
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", four, 4,
                        "tensor 'a': data_offsets", "ends before it begins");
}

static void test_bad_offsets_outside_data(void **state) {
    (void)state;
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", four, 4,
                        "tensor 'a': data_offsets", "[4, 8] lies outside the data area (4 bytes");
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,18446744073709551615]}}", four, 4,
                        "header", "invalid JSON"); /* past jansson's integers */
}

static void test_bad_offsets_overlap(void **state) {
    (void)state;
    const uint8_t d[6] = {0};
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}",
                        d, 6, "tensor 'b': data_offsets", "overlaps tensor 'a'");
}

static void test_bad_offsets_hole(void **state) {
    (void)state;
    const uint8_t d[10] = {0};
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[6,10]}}",
                        d, 10, "tensor 'b': data_offsets", "not contiguous: bytes [4, 6)");
    /* A file whose first tensor does not start at 0. */
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}", d, 6,
                        "tensor 'a': data_offsets", "not contiguous: bytes [0, 2)");
}

static void test_bad_data_after_last_tensor(void **state) {
    (void)state;
    const uint8_t d[8] = {0};
    expect_header_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", d, 8, "data_offsets",
                        "bytes [4, 8) belong to no tensor");
    expect_header_error("{}", d, 1, "data_offsets", "bytes [0, 1) belong to no tensor");
}

static void test_bad_byte_size_mismatch(void **state) {
    (void)state;
    expect_header_error("{\"a\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,4]}}", four, 4,
                        "tensor 'a': data_offsets", "holds 4 bytes but dtype BF16 x 1 elements needs 2");
}

static void test_bad_metadata(void **state) {
    (void)state;
    expect_header_error("{\"__metadata__\":{\"format\":\"pt\",\"n\":1}}", NULL, 0, "__metadata__['n']",
                        "must be a string, got an integer");
    expect_header_error("{\"__metadata__\":[\"pt\"]}", NULL, 0, "__metadata__", "must be an object");
}

static void test_bad_file_missing(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/absent.safetensors", tmpdir);
    kvfp8_st_file f;
    assert_int_equal(kvfp8_st_read(path, NULL, NULL, &f), KVFP8_ERR_IO);
    assert_contains(kvfp8_last_error(), path);
    assert_contains(kvfp8_last_error(), "file: cannot open");
    assert_empty(&f);
    assert_int_equal(kvfp8_st_read(tmpdir, NULL, NULL, &f), KVFP8_ERR_IO);
    assert_contains(kvfp8_last_error(), "not a regular file");
    assert_empty(&f);
}

static void test_dtype_names(void **state) {
    (void)state;
    for (int i = 0; i < KVFP8_ST_DTYPE_COUNT; i++) {
        kvfp8_st_dtype d;
        assert_int_equal(kvfp8_st_dtype_parse(kvfp8_st_dtype_name((kvfp8_st_dtype)i), &d), KVFP8_OK);
        assert_int_equal(d, i);
        assert_true(kvfp8_st_dtype_bits(d) >= 4);
    }
    kvfp8_st_dtype d;
    assert_int_equal(kvfp8_st_dtype_parse("bf16", &d), KVFP8_ERR_INVALID);
    assert_int_equal(kvfp8_st_dtype_bits(KVFP8_ST_BF16), 16);
    assert_int_equal(kvfp8_st_dtype_bits(KVFP8_ST_F6_E2M3), 6);
}

#define T(name) cmocka_unit_test_setup_teardown(name, make_tmp, remove_tmp)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_read_valid_every_scale_dtype),
        T(test_read_file_loads_only_selected_tensors),
        T(test_writer_bytes_follow_the_format),
        T(test_writer_round_trip_through_a_file),
        T(test_writer_failure_leaves_nothing_behind),
        T(test_writer_accepts_every_name_the_reader_does),
        T(test_writer_replaces_an_existing_file_whole),
        T(test_bad_truncated_length_field),
        T(test_bad_header_length_beyond_file),
        T(test_bad_header_length_over_limit),
        T(test_bad_header_empty),
        T(test_bad_header_not_an_object),
        T(test_bad_header_padding_not_spaces),
        T(test_bad_header_invalid_json),
        T(test_bad_header_invalid_utf8),
        T(test_bad_header_nan),
        T(test_bad_duplicate_tensor_name),
        T(test_bad_tensor_entry_not_object),
        T(test_bad_dtype_missing),
        T(test_bad_dtype_wrong_type),
        T(test_bad_dtype_unknown),
        T(test_bad_shape_missing),
        T(test_bad_shape_wrong_type),
        T(test_bad_shape_negative_or_real),
        T(test_bad_shape_overflow),
        T(test_bad_shape_not_whole_bytes),
        T(test_bad_offsets_missing),
        T(test_bad_offsets_wrong_type),
        T(test_bad_offsets_reversed),
        T(test_bad_offsets_outside_data),
        T(test_bad_offsets_overlap),
        T(test_bad_offsets_hole),
        T(test_bad_data_after_last_tensor),
        T(test_bad_byte_size_mismatch),
        T(test_bad_metadata),
        T(test_bad_file_missing),
        T(test_dtype_names),
    };
    return cmocka_run_group_tests_name("safetensors", tests, NULL, NULL);
}
