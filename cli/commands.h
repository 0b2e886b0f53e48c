/* The kvfp8 tool's subcommands.  Each lives in its own cli/cmd_<name>.c and is listed
 * once in the table in cli/main.c.
 *
 * Conventions every subcommand keeps (outside checks rely on them):
 *  - results on standard output, diagnostics on standard error;
 *  - bad input: a message that names the argument, exit status 2, and nothing at all
 *    on standard output (a command buffers its output until the input is validated);
 *  - exit 1 when the command ran and found a failure, 0 on success. */
#ifndef KVFP8_CLI_COMMANDS_H
#define KVFP8_CLI_COMMANDS_H

#define KVFP8_EXIT_OK 0
#define KVFP8_EXIT_FAILED 1
#define KVFP8_EXIT_USAGE 2

/* The whole tool: main() calls it (cli/main.c). */
int kvfp8_cli_main(int argc, char **argv);

int kvfp8_cmd_fp8(int argc, char **argv);
int kvfp8_cmd_hash(int argc, char **argv);
int kvfp8_cmd_scales(int argc, char **argv);
int kvfp8_cmd_run(int argc, char **argv);
int kvfp8_cmd_calibrate(int argc, char **argv);
int kvfp8_cmd_quality(int argc, char **argv);
int kvfp8_cmd_conform(int argc, char **argv);
int kvfp8_cmd_faults(int argc, char **argv);
int kvfp8_cmd_matrix(int argc, char **argv);
int kvfp8_cmd_plan(int argc, char **argv);
int kvfp8_cmd_verify(int argc, char **argv);

/* Prints "kvfp8 <cmd>: <message>" on stderr and returns KVFP8_EXIT_USAGE. */
int kvfp8_cli_usage_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#endif
