/* Internal helpers of the FP8 reference shared by ref/ and cpu/ (not installed). */
#ifndef KVFP8_FP8_INTERNAL_H
#define KVFP8_FP8_INTERNAL_H

#include <stdint.h>

#include "kvfp8/fp8.h"

/* Round a >= 0 to nearest-even on a binary grid (see ref/fp8.c). */
double kvfp8_round_to_grid(double a, int mantissa_bits, int emin);

/* Encodes an exact value (any double) under the rules: the one place where the
 * edge decisions are applied. */
uint8_t kvfp8_fp8_encode_value_ref(const kvfp8_fp8_rules *r, double x);

/* The bit layout of a format; 0 for an unknown format. */
int kvfp8_fp8_shape(kvfp8_format f, int *exponent_bits, int *mantissa_bits, int *bias);

#endif
