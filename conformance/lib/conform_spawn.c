/* Child processes of the conformance runner: one per test, in its own process group,
 * with a wall-clock timeout that kills the whole group.
 *
 * The child's output and its result descriptor go to anonymous temporary files, not
 * pipes: a child that writes a lot while the parent is only waiting can never block
 * on a full pipe, and whatever it wrote before it crashed is still there to read. */
#include "kvfp8/conform.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define OUTPUT_KEEP (64 * 1024)

static volatile pid_t current_child;

int kvfp8_conform_current_child(void) { return (int)current_child; }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int anonymous_file(void) {
    const char *dir = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/kvfp8-conform-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd >= 0)
        unlink(path);
    return fd;
}

/* The file's contents, keeping the last `keep` bytes (0: all), NUL-terminated. */
static char *slurp(int fd, size_t keep) {
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        return strdup("");
    size_t size = (size_t)sb.st_size, from = keep && size > keep ? size - keep : 0;
    char *buf = malloc(size - from + 1);
    if (!buf)
        return NULL;
    size_t got = 0;
    while (got < size - from) {
        ssize_t r = pread(fd, buf + got, size - from - got, (off_t)(from + got));
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    buf[got] = '\0';
    return buf;
}

/* Under a sanitizer build (make sanitize) the child's runtime would catch a crash
 * and exit 1, which reads as FAIL, and would report cmocka's abandoned allocations
 * (a failing test longjmps out) as leaks.  So in the child: signals are left to kill
 * it (CRASH), leaks are not checked, and a sanitizer finding exits with a status of
 * its own (CRASH, named as such).  Options already set come first; ours win. */
static void sanitizer_options(void) {
    static const char *const vars[] = {"ASAN_OPTIONS", "UBSAN_OPTIONS"};
    char buf[2048];
    for (size_t i = 0; i < 2; i++) {
        const char *old = getenv(vars[i]);
        snprintf(buf, sizeof buf, "%s%sexitcode=%d:detect_leaks=0:handle_segv=0:handle_sigbus=0:handle_sigfpe=0:"
                                  "handle_sigill=0:handle_abort=0",
                 old ? old : "", old && *old ? ":" : "", KVFP8_CONFORM_EXIT_SANITIZER);
        setenv(vars[i], buf, 1);
    }
}

kvfp8_status kvfp8_conform_spawn(char *const argv[], double timeout_s, kvfp8_conform_child *out) {
    memset(out, 0, sizeof *out);
    int log = anonymous_file(), chan = anonymous_file();
    if (log < 0 || chan < 0) {
        if (log >= 0)
            close(log);
        if (chan >= 0)
            close(chan);
        return kvfp8_fail(KVFP8_ERR_IO, "conform: temporary file: %s", strerror(errno));
    }
    fflush(NULL); /* nothing buffered here is written twice by the child */
    const double start = now();
    pid_t pid = fork();
    if (pid < 0) {
        close(log), close(chan);
        return kvfp8_fail(KVFP8_ERR_IO, "conform: fork: %s", strerror(errno));
    }
    if (pid == 0) {
        setpgid(0, 0);
        /* the result descriptor is 3 in every child; stdin is closed on purpose */
        if (dup2(log, 1) != 1 || dup2(log, 2) != 2 || (chan != 3 && dup2(chan, 3) != 3))
            _exit(126);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0 && devnull != 0) {
            dup2(devnull, 0);
            close(devnull);
        }
        setenv(KVFP8_CONFORM_FD_ENV, "3", 1);
        sanitizer_options();
        execv(argv[0], argv);
        dprintf(2, "conform: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid); /* also from here: no race with the child's own call */
    current_child = pid;
    int status = 0;
    useconds_t nap = 200;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR)
            break;
        if (now() - start >= timeout_s) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
            out->timed_out = 1;
            break;
        }
        usleep(nap);
        if (nap < 10000)
            nap *= 2;
    }
    kill(-pid, SIGKILL); /* anything the test left behind in its group */
    current_child = 0;
    out->seconds = now() - start;
    if (WIFSIGNALED(status))
        out->signal = WTERMSIG(status);
    else if (WIFEXITED(status))
        out->exit_code = WEXITSTATUS(status);
    out->output = slurp(log, OUTPUT_KEEP);
    out->channel = slurp(chan, 0);
    close(log), close(chan);
    if (!out->output || !out->channel) {
        kvfp8_conform_child_free(out);
        return kvfp8_fail(KVFP8_ERR_NOMEM, "conform: child output");
    }
    return KVFP8_OK;
}

void kvfp8_conform_child_free(kvfp8_conform_child *c) {
    free(c->output), free(c->channel);
    c->output = c->channel = NULL;
}
