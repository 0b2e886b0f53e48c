/* Resolving a backend by name or path: the built-ins, the CUDA library that
 * `make cuda` builds, and vendors' shared objects (dlopen + kvfp8_backend_entry).
 *
 * The loader decides what is an error and what is "not here": a CUDA library that
 * is absent or cannot be loaded (no driver, no runtime) is KVFP8_ERR_UNSUPPORTED,
 * which the conformance runner reports as NOT_SUPPORTED for every test; a vendor
 * object that exists but is wrong (another ABI, no entry point, a symbol it needs is
 * missing) is an error that names the file and the missing piece. */
#include "kvfp8/backend.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CUDA_LIBRARY "libkvfp8_cuda.so"

/* Re-records the current reason with the object's path appended, so a message from
 * kvfp8_backend_open (which knows only the table's name) says which file it was. */
static kvfp8_status with_path(kvfp8_status st, const char *path) {
    char reason[400];
    snprintf(reason, sizeof reason, "%s", kvfp8_last_error());
    return kvfp8_fail(st, "%s [%s]", reason, path);
}

static kvfp8_status open_object(const char *path, const char *label, kvfp8_backend *out) {
    memset(out, 0, sizeof *out);
    struct stat sb;
    const int same = !strcmp(label, path);
    if (stat(path, &sb) != 0)
        return kvfp8_fail(KVFP8_ERR_IO, "backend %s: %s%s%s", label, same ? "" : path, same ? "" : ": ",
                          strerror(errno));
    (void)dlerror();
    /* RTLD_NOW: a symbol the object needs and nobody provides is reported here, by
     * name, rather than as a crash on first call.  RTLD_LOCAL: two backends may use
     * the same internal names. */
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *why = dlerror();
        return kvfp8_fail(KVFP8_ERR_IO, "backend %s: cannot load it: %s", label, why ? why : "dlopen failed");
    }
    (void)dlerror();
    void *sym = dlsym(handle, KVFP8_BACKEND_ENTRY_SYMBOL);
    if (!sym) {
        dlclose(handle);
        return kvfp8_fail(KVFP8_ERR_FORMAT,
                          "backend %s: no symbol %s in %s (a kvfp8 backend exports "
                          "`const kvfp8_backend_ops *kvfp8_backend_entry(uint32_t host_abi)`; see docs/porting.md)",
                          label, KVFP8_BACKEND_ENTRY_SYMBOL, path);
    }
    kvfp8_backend_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry); /* object pointer to function pointer, as POSIX allows */
    const kvfp8_backend_ops *ops = entry(KVFP8_BACKEND_ABI_VERSION);
    if (!ops) {
        dlclose(handle);
        return kvfp8_fail(KVFP8_ERR_FORMAT, "backend %s: %s(%u) returned no table (it does not speak ABI version %u)",
                          label, KVFP8_BACKEND_ENTRY_SYMBOL, KVFP8_BACKEND_ABI_VERSION, KVFP8_BACKEND_ABI_VERSION);
    }
    kvfp8_status st = kvfp8_backend_open(ops, out);
    if (st != KVFP8_OK) {
        st = with_path(st, path);
        dlclose(handle);
        return st;
    }
    out->dl_handle = handle;
    return KVFP8_OK;
}

/* The directory of the running program, for "next to the tool". */
static int program_dir(char *dir, size_t cap) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return 0;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return 0;
    *slash = '\0';
    return snprintf(dir, cap, "%s", exe) < (int)cap;
}

static kvfp8_status open_cuda(const char *path, kvfp8_backend *out) {
    kvfp8_status st = open_object(path, "cuda", out);
    if (st == KVFP8_ERR_IO) /* the library is there but its CUDA runtime or driver is not */
        return kvfp8_fail(KVFP8_ERR_UNSUPPORTED, "cuda backend not available: %.400s", kvfp8_last_error());
    if (st == KVFP8_ERR_UNSUPPORTED) { /* create() found no device */
        char reason[400];
        snprintf(reason, sizeof reason, "%s", kvfp8_last_error());
        if (strncmp(reason, "cuda backend not available", 26) != 0)
            return kvfp8_fail(st, "cuda backend not available: %s", reason);
    }
    return st;
}

static kvfp8_status load_cuda(kvfp8_backend *out) {
    const char *env = getenv("KVFP8_CUDA_BACKEND");
    if (env && *env) {
        if (access(env, R_OK) != 0)
            return kvfp8_fail(KVFP8_ERR_UNSUPPORTED, "cuda backend not available: KVFP8_CUDA_BACKEND=%s: %s", env,
                              strerror(errno));
        return open_cuda(env, out);
    }
    char dir[PATH_MAX], path[PATH_MAX + 32];
    if (program_dir(dir, sizeof dir)) {
        static const char *const where[] = {"%s/" CUDA_LIBRARY, "%s/../lib/" CUDA_LIBRARY};
        for (size_t i = 0; i < sizeof where / sizeof where[0]; i++) {
            snprintf(path, sizeof path, where[i], dir);
            if (access(path, F_OK) == 0)
                return open_cuda(path, out);
        }
    } else {
        snprintf(dir, sizeof dir, "(the program's directory: unknown)");
    }
    return kvfp8_fail(KVFP8_ERR_UNSUPPORTED,
                      "cuda backend not available: no " CUDA_LIBRARY " in %.300s or %.300s/../lib (build it with "
                      "`make cuda` on a machine with nvcc, or set KVFP8_CUDA_BACKEND to its path)",
                      dir, dir);
}

kvfp8_status kvfp8_backend_load(const char *name, kvfp8_backend *out) {
    memset(out, 0, sizeof *out);
    if (!name || !*name)
        return kvfp8_fail(KVFP8_ERR_INVALID, "backend: no name given (ref, cpu, cuda, or the path of a shared object)");
    if (!strcmp(name, "ref"))
        return kvfp8_backend_open(kvfp8_backend_ref(), out);
    if (!strcmp(name, "cpu"))
        return kvfp8_backend_open(kvfp8_backend_cpu(), out);
    if (!strcmp(name, "cuda"))
        return load_cuda(out);
    if (!strchr(name, '/'))
        return kvfp8_fail(KVFP8_ERR_INVALID,
                          "unknown backend '%s' (ref, cpu, cuda, or the path of a shared object such as "
                          "./libkvfp8_example.so)",
                          name);
    return open_object(name, name, out);
}
