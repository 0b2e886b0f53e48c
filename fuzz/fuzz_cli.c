/* The command line: arbitrary argument vectors through the tool's own dispatcher.
 *
 * The input is split on NUL bytes into arguments.  Only commands that neither write
 * files, fork, nor run for long are reachable (fp8, hash, scales show/round, faults
 * list): the first argument is mapped onto that list.  Standard input is /dev/null
 * and standard output is discarded.  What the target finds: crashes, leaks and
 * undefined behaviour in option parsing and error paths, and any exit status other
 * than 0, 1 or 2 (the tool's documented statuses). */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const commands[] = {"fp8", "hash", "scales", "--help", "--version"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int once;
    if (!once) {
        once = 1;
        if (!freopen("/dev/null", "r", stdin))
            abort();
    }
    if (size == 0 || size > 4096)
        return 0;
    char *copy = malloc(size + 1);
    if (!copy)
        abort();
    memcpy(copy, data + 1, size - 1);
    copy[size - 1] = 0;
    char *argv[66];
    int argc = 0;
    argv[argc++] = "kvfp8";
    argv[argc++] = (char *)commands[data[0] % (sizeof commands / sizeof commands[0])];
    for (size_t i = 0; i < size - 1 && argc < 64;) {
        argv[argc++] = copy + i;
        i += strlen(copy + i) + 1;
    }
    argv[argc] = NULL;
    /* scales: only the read-only subcommands */
    if (!strcmp(argv[1], "scales") && argc > 2 && strcmp(argv[2], "show") && strcmp(argv[2], "round")) {
        free(copy);
        return 0;
    }
    /* hash without token ids would read standard input: /dev/null, fine.  The
     * tool's standard output is discarded for the call only, so that the replay
     * driver's own result line still reaches the log. */
    fflush(stdout);
    const int saved = dup(1), devnull = open("/dev/null", O_WRONLY);
    if (saved < 0 || devnull < 0 || dup2(devnull, 1) < 0)
        abort();
    int rc = kvfp8_cli_main(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    close(devnull);
    free(copy);
    if (rc < 0 || rc > 2) {
        fprintf(stderr, "kvfp8 exited %d, not 0, 1 or 2\n", rc);
        abort();
    }
    return 0;
}
