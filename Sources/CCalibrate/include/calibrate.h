/* Dense measurements calibration needs, without materialising the tokens × tokens matrix.
 * q, k, v hold `tokens` rows of `head_dim` floats, packed. Scores are q·k·scale. */
#ifndef CALIBRATE_H
#define CALIBRATE_H

#include <stdint.h>

/* mass[qb * blocks + kb] = mean over the rows i of query block qb of the softmax probability
 * row i puts on the keys of key block kb (blocks = ceil(tokens / block)). Rows sum to 1.
 * With row_step > 1 the mean is over the block's rows row_step/2, row_step/2 + row_step, …
 * only (its first row when it is too short for any), and the work is 1/row_step.
 * Returns 0, or -1 when scratch memory cannot be had or row_step is not in 1...block. */
int calib_block_mass(const float *q, const float *k, int64_t tokens, int64_t head_dim, int64_t block,
                     int64_t row_step, float scale, float *mass);

/* The output a plan gives against dense attention. Query block qb keeps key blocks
 * spans[2s] ..< spans[2s+1] for s in row_span[qb] ..< row_span[qb+1], or, when
 * reuse_source[qb] >= 0, copies the rows of that block. Writes Σ‖sparse − dense‖² and
 * Σ‖dense‖² over all rows (double). Returns 0, or -1 without memory. */
int calib_plan_error(const float *q, const float *k, const float *v, int64_t tokens, int64_t head_dim, int64_t block,
                     float scale, const int32_t *row_span, const int32_t *spans, const int32_t *reuse_source,
                     double *squared_error, double *squared_norm);

/* Streaming calibration's reuse test: for every pair of query blocks i < j, in row-major
 * upper-triangle order (pair (i, j) at i·blocks − i(i+1)/2 + j − i − 1),
 * distance[pair] = Σ_kb |mass[i][kb] − mass[j][kb]|, each difference and the sum in double,
 * kb ascending (the batch rule's sum, term for term). */
void calib_row_distance(const float *mass, int64_t blocks, double *distance);

#endif
