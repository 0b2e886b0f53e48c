/* Strict readers for the fields of the faults/ data files (jansson underneath):
 * every error names the file label and the field path, e.g.
 * "platforms.json: profiles[2].paths.decode.native[1]: unknown encoding 'fp9'".
 * Internal to faults/ (not installed). */
#ifndef KVFP8_FAULTS_JSON_FIELDS_H
#define KVFP8_FAULTS_JSON_FIELDS_H

#include <stddef.h>

#include <jansson.h>

#include "kvfp8/status.h"

/* Every key of obj is in allowed (NULL-terminated). */
kvfp8_status kvfp8_jf_keys(const json_t *obj, const char *const *allowed, const char *label, const char *path);
/* obj[key] as a string into dst (cap bytes including the NUL). */
kvfp8_status kvfp8_jf_str(const json_t *obj, const char *key, int required, char *dst, size_t cap, const char *label,
                          const char *path);
/* obj[key] as a boolean; absent and optional: *dst = dflt. */
kvfp8_status kvfp8_jf_bool(const json_t *obj, const char *key, int required, int dflt, int *dst, const char *label,
                           const char *path);
/* obj[key] as an array of at most max strings of at most width - 1 bytes each. */
kvfp8_status kvfp8_jf_strs(const json_t *obj, const char *key, int required, char *dst, size_t width, int max,
                           int *n, const char *label, const char *path);
/* obj[key] as an object or array (type JSON_OBJECT / JSON_ARRAY). */
kvfp8_status kvfp8_jf_child(const json_t *obj, const char *key, int required, json_type type, json_t **out,
                            const char *label, const char *path);
/* Parses text as one of kvfp8's data documents: a JSON object (no duplicate keys, no
 * trailing data) with exactly the keys "schema" (must equal `schema`), "about" and
 * `list_key` (an array, returned in *list).  On success the caller owns *root. */
kvfp8_status kvfp8_jf_load_document(const char *text, size_t len, const char *label, const char *schema,
                                    const char *list_key, json_t **root, json_t **list);
/* Reads a whole file (at most 4 MiB) into a NUL-terminated buffer. */
kvfp8_status kvfp8_jf_read_file(const char *path, char **text, size_t *len);

#endif
