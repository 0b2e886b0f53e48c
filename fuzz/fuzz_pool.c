/* libFuzzer target: the block pool and prefix-cache manager against the simple
 * model (tests/lib/pool_model.c), in lock step through tests/lib/pool_check.c.
 *
 * Input: 5 bytes of configuration (pool size, block size, groups, caching, events,
 * window), then 5 bytes per operation.  Any difference between the real code and
 * the model, or any sanitizer report, aborts with the trace of the last operations.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined -Iinclude -Iref -Itests/lib \
 *          fuzz/fuzz_pool.c tests/lib/pool_model.c tests/lib/pool_check.c \
 *          ref/pool.c ref/prefix_manager.c ref/status.c -o fuzz_pool
 * Run:   ./fuzz_pool -max_total_time=30 fuzz/corpus/pool */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "pool_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 5) return 0;
    pool_check_config cfg = pool_check_config_from_bytes(data);
    pool_check *pc = pool_check_new(&cfg);
    if (!pc) return 0;
    /* Long inputs only slow the fuzzer down; the interesting states are reached
     * within a few thousand operations of a small pool. */
    size_t max_ops = 4096;
    for (size_t off = 5, k = 0; off + 5 <= size && k < max_ops; off += 5, k++) {
        pool_check_op op = pool_check_op_from_bytes(data + off);
        if (pool_check_step(pc, &op)) {
            pool_check_print_trace(pc, stderr);
            fflush(stderr);
            abort();
        }
    }
    pool_check_delete(pc);
    return 0;
}
