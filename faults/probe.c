/* The two-request probe, in process or in a fork()ed child under a watchdog
 * (include/kvfp8/probe.h).  The child reports through a pipe: framed records, a
 * result snapshot ('R') at every milestone and in its last words, and the engine
 * log ('L'); the parent keeps the last snapshot and reads the exit status. */
#include "kvfp8/probe.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kvfp8/calibration.h"

static const char *const outcome_names[] = {"ok", "crash", "error", "timeout"};

const char *kvfp8_outcome_name(kvfp8_outcome o) { return (unsigned)o < 4 ? outcome_names[o] : "?"; }

void kvfp8_probe_default_config(kvfp8_probe_config *c) {
    memset(c, 0, sizeof *c);
    c->kv_cache_dtype = "auto";
    c->n_requests = 2;
    c->max_tokens = 4;
    c->timeout_s = 60.0;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- the child's channel ----------------------------------------------------------- */

typedef struct {
    int fd;                     /* the pipe to the parent; -1 in process */
    kvfp8_probe_result *r;
    FILE *log;                  /* memstream behind the engine log */
    char *log_buf;
    size_t log_len, log_sent;
} probe_io;

static void write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        const ssize_t k = write(fd, c, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return;
        c += k;
        n -= (size_t)k;
    }
}

static void send_record(int fd, char type, const void *p, size_t n) {
    const uint32_t len = (uint32_t)n;
    write_all(fd, &type, 1);
    write_all(fd, &len, 4);
    write_all(fd, p, n);
}

/* A snapshot of the result and the log written since the last one. */
static void milestone(probe_io *io) {
    if (!io || io->fd < 0)
        return;
    if (io->log) {
        fflush(io->log);
        if (io->log_len > io->log_sent) {
            send_record(io->fd, 'L', io->log_buf + io->log_sent, io->log_len - io->log_sent);
            io->log_sent = io->log_len;
        }
    }
    kvfp8_probe_result snap = *io->r;
    snap.log = NULL;
    snap.log_len = 0;
    send_record(io->fd, 'R', &snap, sizeof snap);
}

static void log_line(probe_io *io, const char *fmt, const char *a, const char *b) {
    if (io && io->log) {
        fprintf(io->log, fmt, a, b);
        fflush(io->log);
    }
}

/* See faults/faults.c: a coverage build's counters, written before the child dies. */
extern void __gcov_dump(void) __attribute__((weak));

/* The platform says the worker dies here: record it, then die for real. */
static void child_on_crash(void *ctx, const char *site, const kvfp8_capability *cap) {
    probe_io *io = ctx;
    kvfp8_probe_result *r = io->r;
    r->outcome = KVFP8_OUTCOME_CRASH;
    snprintf(r->site, sizeof r->site, "%s", site);
    snprintf(r->error_type, sizeof r->error_type, "%s", cap->error_type);
    snprintf(r->error, sizeof r->error, "%s", cap->message);
    log_line(io, "ERROR: worker died at %s: %s\n", site, cap->message);
    milestone(io);
    if (__gcov_dump)
        __gcov_dump();
    abort();
}

/* An injected crash or hang is about to happen. */
static void child_last_words(void *ctx, const char *site, kvfp8_fault_action a, const char *message) {
    probe_io *io = ctx;
    kvfp8_probe_result *r = io->r;
    r->outcome = a == KVFP8_FAULT_HANG ? KVFP8_OUTCOME_TIMEOUT : KVFP8_OUTCOME_CRASH;
    snprintf(r->site, sizeof r->site, "%s", site);
    snprintf(r->error, sizeof r->error, "%s", message);
    r->faults_fired = kvfp8_faults_fired();
    log_line(io, "ERROR: %s%s\n", message, a == KVFP8_FAULT_HANG ? " (hanging)" : " (dying)");
    milestone(io);
}

/* ---- the probe itself ------------------------------------------------------------------ */

static void record_failure(kvfp8_probe_result *r, const kvfp8_platform_session *s, int platform, const char *text) {
    const int crashed = platform && s->crashed;
    r->outcome = crashed ? KVFP8_OUTCOME_CRASH : KVFP8_OUTCOME_ERROR;
    snprintf(r->error, sizeof r->error, "%s", text);
    r->detected = !strncmp(text, "corruption detected: ", 21);
    if (platform && s->failed_site[0] && !s->failure.ok && strstr(text, s->failure.message)) {
        snprintf(r->site, sizeof r->site, "%s", s->failed_site);
        snprintf(r->error_type, sizeof r->error_type, "%s", s->failure.error_type);
    }
}

static void probe_body(const kvfp8_probe_config *c, kvfp8_probe_result *r, probe_io *io) {
    const double t0 = now_ms();
    kvfp8_engine_config ec;
    kvfp8_engine_default_config(&ec);
    ec.kv_cache_dtype = c->kv_cache_dtype ? c->kv_cache_dtype : "auto";
    ec.enable_prefix_caching = c->enable_prefix_caching;
    ec.max_chunk_tokens = c->max_chunk_tokens;
    ec.detectors = c->detectors ? c->detectors : KVFP8_DETECT_ALL;
    if (c->block_size > 0)
        ec.block_size = c->block_size;
    if (c->num_blocks > 0)
        ec.num_blocks = c->num_blocks;
    ec.k_scales = c->k_scales;
    ec.v_scales = c->v_scales;
    ec.scale_count = c->scale_count;
    ec.scales_source = c->scales_source;
    ec.calculate_kv_scales = c->calculate_kv_scales;
    ec.log = io ? io->log : NULL;
    ec.fp8_fnuz = c->fp8_fnuz;
    kvfp8_platform_session session;
    memset(&session, 0, sizeof session);
    r->failed_request = 0;
    if (c->platform) {
        session.on_crash = io && io->fd >= 0 ? child_on_crash : NULL;
        session.on_crash_ctx = io;
        if (kvfp8_platform_attach(&session, c->platform, &ec) != KVFP8_OK) {
            record_failure(r, &session, 1, kvfp8_last_error());
            log_line(io, "ERROR: engine startup failed: %s%s\n", kvfp8_last_error(), "");
            goto out;
        }
    }
    milestone(io);
    kvfp8_engine *e = NULL;
    if (kvfp8_engine_create(&ec, c->model, &e) != KVFP8_OK) {
        record_failure(r, &session, c->platform != NULL, kvfp8_last_error());
        log_line(io, "ERROR: engine startup failed: %s%s\n", kvfp8_last_error(), "");
        goto out;
    }
    int64_t seed_tokens[1024];
    const int64_t *prompt = c->prompt;
    int n = c->n_prompt;
    if (!prompt) {
        n = kvfp8_tokenize(c->model, kvfp8_seed_prompt(), seed_tokens, 1024);
        prompt = seed_tokens;
    }
    const int n_req = c->n_requests < 1 ? 1 : c->n_requests > KVFP8_PROBE_MAX_REQUESTS ? KVFP8_PROBE_MAX_REQUESTS
                                                                                       : c->n_requests;
    const int max_tokens = c->max_tokens < 1 ? 1 : c->max_tokens > KVFP8_PROBE_MAX_TOKENS ? KVFP8_PROBE_MAX_TOKENS
                                                                                          : c->max_tokens;
    int failed = 0;
    for (int i = 0; i < n_req; i++) {
        char id[16];
        snprintf(id, sizeof id, "req-%d", i + 1);
        r->failed_request = i + 1;
        milestone(io);
        kvfp8_request_result res;
        if (kvfp8_engine_generate(e, id, prompt, n, max_tokens, &res) != KVFP8_OK) {
            record_failure(r, &session, c->platform != NULL, kvfp8_last_error());
            log_line(io, "ERROR: request %s failed: %s\n", id, kvfp8_last_error());
            failed = 1;
            break;
        }
        kvfp8_probe_request *q = &r->req[i];
        q->prompt_tokens = res.prompt_tokens;
        q->hit_tokens = res.hit_tokens;
        q->computed_tokens = res.computed_tokens;
        q->ttft_ms = res.ttft_ms;
        q->total_ms = res.total_ms;
        snprintf(q->first_site, sizeof q->first_site, "%s", res.first_site ? res.first_site : "");
        q->n_output = res.n_output;
        memcpy(q->output, res.output, sizeof(int64_t) * (size_t)res.n_output);
        r->n_done = i + 1;
    }
    kvfp8_engine_get_metrics(e, &r->metrics);
    kvfp8_engine_destroy(e);
    if (!failed) {
        r->outcome = KVFP8_OUTCOME_OK;
        r->failed_request = -1;
    }
    /* cold versus warm: the last request (warm when prefix caching hits) against the
     * first (always cold); BF16 and uniform reads promise equality, FP8 with mixed
     * reads a tolerance (spec/vllm-kv.md read family 2; TensorRT-LLM #15503) */
    snprintf(r->cold_warm, sizeof r->cold_warm, "n/a");
    if (r->n_done >= 2) {
        const kvfp8_probe_request *a = &r->req[0], *b = &r->req[r->n_done - 1];
        int same = 0;
        while (same < a->n_output && same < b->n_output && a->output[same] == b->output[same])
            same++;
        r->cold_warm_agree = same;
        snprintf(r->cold_warm, sizeof r->cold_warm, "%s",
                 same == a->n_output && a->n_output == b->n_output ? "identical"
                 : same >= 1                                        ? "near-identical"
                                                                    : "divergent");
    }
out:
    r->software_conversions = session.software_conversions;
    r->faults_fired = kvfp8_faults_fired();
    r->wall_ms = now_ms() - t0;
}

static kvfp8_status check_config(const kvfp8_probe_config *c) {
    if (!c->model)
        return kvfp8_fail(KVFP8_ERR_INVALID, "probe: no model");
    if (c->prompt && (c->n_prompt < 1 || c->n_prompt > 8192))
        return kvfp8_fail(KVFP8_ERR_INVALID, "probe: prompt of %d tokens (1..8192)", c->n_prompt);
    return KVFP8_OK;
}

static void result_init(kvfp8_probe_result *r) {
    memset(r, 0, sizeof *r);
    r->outcome = KVFP8_OUTCOME_ERROR;
    r->failed_request = 0;
    r->exit_status = 0;
    snprintf(r->cold_warm, sizeof r->cold_warm, "n/a");
}

kvfp8_status kvfp8_probe_run(const kvfp8_probe_config *c, kvfp8_probe_result *r) {
    result_init(r);
    kvfp8_status st = check_config(c);
    if (st != KVFP8_OK)
        return st;
    if (c->faults)
        (void)kvfp8_faults_arm_from_env();
    if (c->faults && (st = kvfp8_faults_arm_spec(c->faults, "probe faults")) != KVFP8_OK)
        return st;
    probe_io io = {-1, r, NULL, NULL, 0, 0};
    if (c->capture_log)
        io.log = open_memstream(&io.log_buf, &io.log_len);
    probe_body(c, r, &io);
    if (c->faults)
        kvfp8_faults_disarm();
    if (io.log) {
        fclose(io.log);
        r->log = io.log_buf;
        r->log_len = io.log_len;
    }
    return KVFP8_OK;
}

static void child_main(const kvfp8_probe_config *c, int fd) {
    kvfp8_probe_result r;
    result_init(&r);
    r.isolated = 1;
    probe_io io = {fd, &r, NULL, NULL, 0, 0};
    if (c->capture_log)
        io.log = open_memstream(&io.log_buf, &io.log_len);
    kvfp8_faults_set_last_words(child_last_words, &io);
    /* the run's own spec replaces KVFP8_FAULTS (read first, so that the engine does
     * not read it later over the spec) */
    if (c->faults)
        (void)kvfp8_faults_arm_from_env();
    if (c->faults && kvfp8_faults_arm_spec(c->faults, "probe faults") != KVFP8_OK) {
        snprintf(r.error, sizeof r.error, "%s", kvfp8_last_error());
        milestone(&io);
        _exit(3);
    }
    probe_body(c, &r, &io);
    milestone(&io);
    if (io.log) {
        fclose(io.log);
        free(io.log_buf);
    }
    close(fd);
    /* exit, not _exit: a coverage build writes the child's counters at exit (stdio
     * was flushed before the fork, so nothing is written twice) */
    exit(0);
}

/* Parses the child's records: the last 'R' wins, 'L' chunks append to the log. */
static void read_records(const char *buf, size_t n, kvfp8_probe_result *r, int *got) {
    size_t at = 0;
    char *log = NULL;
    size_t log_len = 0;
    while (at + 5 <= n) {
        const char type = buf[at];
        uint32_t len;
        memcpy(&len, buf + at + 1, 4);
        if (at + 5 + len > n)
            break;
        const char *p = buf + at + 5;
        if (type == 'R' && len == sizeof *r) {
            memcpy(r, p, sizeof *r);
            *got = 1;
        } else if (type == 'L') {
            char *grown = realloc(log, log_len + len + 1);
            if (grown) {
                log = grown;
                memcpy(log + log_len, p, len);
                log_len += len;
                log[log_len] = 0;
            }
        }
        at += 5 + len;
    }
    r->log = log;
    r->log_len = log_len;
}

/* One child in flight. */
typedef struct {
    pid_t pid;
    int fd;
    double t0, deadline;
    char *buf;
    size_t n, cap;
    int timed_out;
} child;

static kvfp8_status spawn(const kvfp8_probe_config *c, child *ch) {
    memset(ch, 0, sizeof *ch);
    int fds[2];
    if (pipe(fds))
        return kvfp8_fail(KVFP8_ERR_IO, "probe: pipe: %s", strerror(errno));
    ch->cap = 1 << 14;
    ch->buf = malloc(ch->cap);
    if (!ch->buf) {
        close(fds[0]), close(fds[1]);
        return kvfp8_fail(KVFP8_ERR_NOMEM, "probe: buffer");
    }
    fflush(NULL); /* nothing buffered gets written twice */
    ch->t0 = now_ms();
    ch->deadline = ch->t0 + (c->timeout_s > 0 ? c->timeout_s : 60.0) * 1e3;
    ch->pid = fork();
    if (ch->pid < 0) {
        close(fds[0]), close(fds[1]);
        free(ch->buf);
        ch->buf = NULL;
        return kvfp8_fail(KVFP8_ERR_IO, "probe: fork: %s", strerror(errno));
    }
    if (ch->pid == 0) {
        close(fds[0]);
        child_main(c, fds[1]);
    }
    close(fds[1]);
    ch->fd = fds[0];
    return KVFP8_OK;
}

/* Reads what is there; 1 at end of stream (the child exited, died or was killed). */
static int pump(child *ch) {
    for (;;) {
        if (ch->n == ch->cap) {
            char *grown = realloc(ch->buf, ch->cap * 2);
            if (!grown)
                return 1; /* keep what we have */
            ch->buf = grown;
            ch->cap *= 2;
        }
        const ssize_t k = read(ch->fd, ch->buf + ch->n, ch->cap - ch->n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (k <= 0)
            return 1;
        ch->n += (size_t)k;
        return 0;
    }
}

static void finish(child *ch, const kvfp8_probe_config *c, kvfp8_probe_result *r) {
    while (!pump(ch))
        ; /* drain: after a kill, what the child wrote before it died */
    close(ch->fd);
    int status = 0;
    while (waitpid(ch->pid, &status, 0) < 0 && errno == EINTR)
        ;
    int got = 0;
    read_records(ch->buf, ch->n, r, &got);
    free(ch->buf);
    ch->buf = NULL;
    const double timeout_ms = (c->timeout_s > 0 ? c->timeout_s : 60.0) * 1e3;
    r->isolated = 1;
    r->wall_ms = now_ms() - ch->t0;
    r->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r->signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    if (ch->timed_out) {
        r->outcome = KVFP8_OUTCOME_TIMEOUT;
        if (!got || !r->error[0]) {
            snprintf(r->error, sizeof r->error, "no answer within %.3g s: killed", timeout_ms / 1e3);
        } else {
            char tmp[sizeof r->error];
            snprintf(tmp, sizeof tmp, "%s", r->error);
            snprintf(r->error, sizeof r->error, "%.400s; no answer within %.3g s: killed", tmp, timeout_ms / 1e3);
        }
    } else if (WIFSIGNALED(status)) {
        r->outcome = KVFP8_OUTCOME_CRASH;
        if (!got || !r->error[0])
            snprintf(r->error, sizeof r->error, "killed by signal %d (%s) with no message", r->signal,
                     strsignal(r->signal));
    } else if (!got) {
        r->outcome = KVFP8_OUTCOME_ERROR;
        snprintf(r->error, sizeof r->error, "the probe process exited with status %d and no result", r->exit_status);
    } else if (r->exit_status != 0) {
        r->outcome = KVFP8_OUTCOME_ERROR;
        if (!r->error[0])
            snprintf(r->error, sizeof r->error, "the probe process exited with status %d", r->exit_status);
    }
}

kvfp8_status kvfp8_probe_run_many(const kvfp8_probe_config *cs, size_t n, int parallel, kvfp8_probe_result *rs) {
    for (size_t i = 0; i < n; i++)
        result_init(&rs[i]);
    for (size_t i = 0; i < n; i++) {
        kvfp8_status st = check_config(&cs[i]);
        if (st != KVFP8_OK)
            return st;
    }
    if (parallel < 1)
        parallel = 1;
    if (parallel > 64)
        parallel = 64;
    child run[64];
    size_t which[64];
    int running = 0;
    size_t next = 0;
    kvfp8_status st = KVFP8_OK;
    while (next < n || running) {
        while (st == KVFP8_OK && running < parallel && next < n) {
            if ((st = spawn(&cs[next], &run[running])) != KVFP8_OK)
                break;
            which[running++] = next++;
        }
        if (!running)
            break;
        struct pollfd pfd[64];
        double soonest = run[0].deadline;
        for (int i = 0; i < running; i++) {
            pfd[i].fd = run[i].fd;
            pfd[i].events = POLLIN;
            pfd[i].revents = 0;
            if (run[i].deadline < soonest)
                soonest = run[i].deadline;
        }
        const double left = soonest - now_ms();
        const int pr = poll(pfd, (nfds_t)running, left <= 0 ? 0 : left > 1e6 ? 1000000 : (int)left + 1);
        if (pr < 0 && errno != EINTR) {
            st = kvfp8_fail(KVFP8_ERR_IO, "probe: poll: %s", strerror(errno));
            for (int i = 0; i < running; i++)
                kill(run[i].pid, SIGKILL);
        }
        const double t = now_ms();
        for (int i = 0; i < running;) {
            int ended = 0;
            if (pr > 0 && (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                ended = pump(&run[i]);
            if (!ended && (t >= run[i].deadline || st != KVFP8_OK)) {
                run[i].timed_out = st == KVFP8_OK;
                kill(run[i].pid, SIGKILL);
                ended = 1;
            }
            if (ended) {
                finish(&run[i], &cs[which[i]], &rs[which[i]]);
                run[i] = run[running - 1];
                pfd[i] = pfd[running - 1];
                which[i] = which[running - 1];
                running--;
            } else {
                i++;
            }
        }
    }
    return st;
}

kvfp8_status kvfp8_probe_run_isolated(const kvfp8_probe_config *c, kvfp8_probe_result *r) {
    return kvfp8_probe_run_many(c, 1, 1, r);
}

void kvfp8_probe_result_free(kvfp8_probe_result *r) {
    free(r->log);
    r->log = NULL;
    r->log_len = 0;
}
