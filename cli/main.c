/* kvfp8 — the command-line tool: dispatch to subcommands (cli/cmd_*.c). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} subcommand;

static const subcommand subcommands[] = {
    {"fp8", kvfp8_cmd_fp8, "FP8 tables, encode and decode under a named vendor profile"},
    {"hash", kvfp8_cmd_hash, "vLLM prefix-cache block hashes of token ids"},
    {"run", kvfp8_cmd_run, "serve prompts with the tiny model: FP8 KV cache, prefix caching, metrics"},
    {"calibrate", kvfp8_cmd_calibrate, "write k/v scales (none, random-token, dataset) as llm-compressor does"},
    {"quality", kvfp8_cmd_quality, "attention error, saturation and agreement of each calibration vs BF16"},
    {"scales", kvfp8_cmd_scales, "KV-cache scales of a checkpoint as vLLM loads them; write, fingerprint"},
    {"conform", kvfp8_cmd_conform, "conformance suites against a backend (ref, cpu, cuda, a plugin): report"},
    {"faults", kvfp8_cmd_faults, "fault sites (list, parse, sweep), platform profiles, known issues"},
    {"matrix", kvfp8_cmd_matrix, "the seed guide's 2x2 isolation matrix on a platform profile, process-isolated"},
    {"plan", kvfp8_cmd_plan, "safe kv_cache_dtype / prefix caching for a platform and workload; --verify"},
    {"verify", kvfp8_cmd_verify, "the seed guide's verification checklist, against the engine or a log"},
};

static void usage(FILE *f) {
    fprintf(f,
            "kvfp8 — a reference for FP8 KV caches with prefix caching\n"
            "\n"
            "usage: kvfp8 <command> [options]      (kvfp8 <command> --help for details)\n"
            "\n"
            "commands:\n");
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        fprintf(f, "  %-10s %s\n", subcommands[i].name, subcommands[i].summary);
    fprintf(f,
            "\n"
            "Conventions: results go to standard output, diagnostics to standard error.\n"
            "Exit status: 0 success, 1 the command ran and found a failure, 2 bad input\n"
            "(the message names the argument, and nothing is written to standard output).\n"
            "\n"
            "Examples:\n"
            "  kvfp8 fp8 encode --format e4m3fn --mode sat --profile nvidia 448 465 -1e30\n"
            "  kvfp8 fp8 decode --format e4m3fn 7e 80 7f\n"
            "  kvfp8 fp8 table --format e5m2 --profile torch\n"
            "  kvfp8 hash --algo sha256 --block-size 16 --seed 0 1 2 3 ... 16\n"
            "  kvfp8 conform --backend cpu --report build/report/cpu\n");
}

int kvfp8_cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "kvfp8 %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return KVFP8_EXIT_USAGE;
}

int kvfp8_cli_main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return KVFP8_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return KVFP8_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        puts("kvfp8 0.1.0");
        return KVFP8_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        if (!strcmp(argv[1], subcommands[i].name))
            return subcommands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "kvfp8: unknown command '%s' (kvfp8 --help lists them)\n", argv[1]);
    return KVFP8_EXIT_USAGE;
}

/* The fuzz target for the command line (fuzz/fuzz_cli.c) links everything but this. */
#ifndef KVFP8_CLI_NO_MAIN
int main(int argc, char **argv) { return kvfp8_cli_main(argc, argv); }
#endif
