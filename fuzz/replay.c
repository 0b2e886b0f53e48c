/* Standalone replay driver: runs a libFuzzer target's LLVMFuzzerTestOneInput over
 * every file of the given corpus folders, without libFuzzer.  `make test` links one
 * per target (fuzz/fuzz_<name>.c) and replays fuzz/corpus/<name>/, so every input
 * that ever found a bug stays a regression test.  A target reports a finding by
 * aborting; the driver names the file first so the log says which input it was. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("[  FAILED  ] replay %s: cannot open\n", path);
        return -1;
    }
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            uint8_t *grown = realloc(buf, cap *= 2);
            if (!grown) {
                free(buf);
                buf = NULL;
            }
            buf = grown;
        }
    }
    fclose(f);
    if (!buf) {
        printf("[  FAILED  ] replay %s: out of memory\n", path);
        return -1;
    }
    fprintf(stderr, "replaying %s (%zu bytes)\n", path, n);
    (void)LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s NAME CORPUS_DIR...\n", argv[0]);
        return 2;
    }
    long files = 0;
    for (int i = 2; i < argc; i++) {
        DIR *d = opendir(argv[i]);
        if (!d) {
            printf("[  FAILED  ] fuzz_replay_%s: corpus folder %s is missing\n", argv[1], argv[i]);
            return 1;
        }
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
            struct stat st;
            if (stat(path, &st) || !S_ISREG(st.st_mode))
                continue;
            if (replay_file(path)) {
                closedir(d);
                return 1;
            }
            files++;
        }
        closedir(d);
    }
    if (files == 0) {
        printf("[  FAILED  ] fuzz_replay_%s: no corpus inputs found\n", argv[1]);
        return 1;
    }
    printf("[       OK ] fuzz_replay_%s: %ld corpus inputs replayed\n", argv[1], files);
    return 0;
}
