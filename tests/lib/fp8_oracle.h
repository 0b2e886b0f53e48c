/* An independent FP8 rounding oracle for tests: nearest value by brute-force search
 * over the decoded code points, ties to the even code.  It shares nothing with
 * ref/fp8.c's frexp/floor rounding, so agreement between the two is evidence. */
#ifndef KVFP8_TEST_FP8_ORACLE_H
#define KVFP8_TEST_FP8_ORACLE_H

#include <stdint.h>

#include "kvfp8/fp8.h"

/* Code for the exact value x under the rules' edge decisions. */
uint8_t kvfp8_test_oracle_encode(const kvfp8_fp8_rules *r, double x);

/* A float32 from its bits, and back. */
float kvfp8_test_f32(uint32_t bits);
uint32_t kvfp8_test_bits(float f);

/* Widening of f16 by the compiler's own _Float16 support (independent of
 * kvfp8_f16_to_f32). */
float kvfp8_test_f16_widen(uint16_t h);

/* xorshift64* for reproducible random cases. */
uint64_t kvfp8_test_rand(uint64_t *state);

#endif
