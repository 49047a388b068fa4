/* Dense measurements calibration needs, without materialising the tokens × tokens matrix.
 * q, k, v hold `tokens` rows of `head_dim` floats, packed. Scores are q·k·scale. */
#ifndef CALIBRATE_H
#define CALIBRATE_H

#include <stdint.h>

/* Tokens at or past `valid_tokens` (1...tokens) are padding (a joint model's unused text slots):
 * their keys take no part in any softmax and their rows in no mean or sum, and neither is read,
 * so they may hold anything. valid_tokens = tokens is plain attention. */

/* mass[qb * blocks + kb] = mean over the valid rows i of query block qb of the softmax
 * probability row i puts on the valid keys of key block kb (blocks = ceil(tokens / block)). Rows
 * sum to 1, except a query block wholly in padding, whose row is 0. With row_step > 1 the mean
 * is over the block's rows row_step/2, row_step/2 + row_step, … only (its first row when its
 * valid rows are too few for any), and the work is 1/row_step. Returns 0, or -1 when scratch
 * memory cannot be had, row_step is not in 1...block or valid_tokens not in 1...tokens. */
int calib_block_mass(const float *q, const float *k, int64_t tokens, int64_t valid_tokens, int64_t head_dim,
                     int64_t block, int64_t row_step, float scale, float *mass);

/* The output a plan gives against dense attention. Query block qb keeps key blocks
 * spans[2s] ..< spans[2s+1] for s in row_span[qb] ..< row_span[qb+1], or, when
 * reuse_source[qb] >= 0, copies the rows of that block. A sparse row whose kept keys are all
 * padding is zeros, as the kernels write it. Writes Σ‖sparse − dense‖² and Σ‖dense‖² over the
 * valid rows (double). Returns 0, or -1 without memory or with valid_tokens not in 1...tokens. */
int calib_plan_error(const float *q, const float *k, const float *v, int64_t tokens, int64_t valid_tokens, int64_t head_dim,
                     int64_t block, float scale, const int32_t *row_span, const int32_t *spans,
                     const int32_t *reuse_source, double *squared_error, double *squared_norm);

/* Streaming calibration's reuse test: for every pair of query blocks i < j, in row-major
 * upper-triangle order (pair (i, j) at i·blocks − i(i+1)/2 + j − i − 1),
 * distance[pair] = Σ_kb |mass[i][kb] − mass[j][kb]|, each difference and the sum in double,
 * kb ascending (the batch rule's sum, term for term). */
void calib_row_distance(const float *mass, int64_t blocks, double *distance);

#endif
