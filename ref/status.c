/* Status names and the thread-local "last error" buffer (see include/kvfp8/status.h). */
#include "kvfp8/status.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_error[512];

const char *kvfp8_status_name(kvfp8_status s) {
    switch (s) {
    case KVFP8_OK: return "ok";
    case KVFP8_ERR_INVALID: return "invalid";
    case KVFP8_ERR_UNSUPPORTED: return "unsupported";
    case KVFP8_ERR_NOMEM: return "out-of-memory";
    case KVFP8_ERR_IO: return "io";
    case KVFP8_ERR_FORMAT: return "format";
    case KVFP8_ERR_EXHAUSTED: return "exhausted";
    case KVFP8_ERR_STATE: return "state";
    }
    return "unknown";
}

const char *kvfp8_last_error(void) { return last_error; }

kvfp8_status kvfp8_fail(kvfp8_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return s;
}
