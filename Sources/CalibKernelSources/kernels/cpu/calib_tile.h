/* The arithmetic of one query block: S = Q·Kᵀ over each kept key block, the online softmax, and
 * acc = alpha·acc + P·V, for one instruction set. calib_kernels.c includes this file once per
 * instruction set, with a target attribute around it and these macros set:
 *   NAME(x)  x with the instruction set's suffix (every name here is per instruction set)
 *   LANES    floats per vector register (16 AVX-512, 8 AVX2, 4 SSE, 1 scalar)
 *   MAXACC   accumulator vectors a micro-kernel may keep in registers
 *   WIDE     vectors per micro-kernel row (accumulators + a row of loads + a broadcast must fit
 *            the register file: 12 + 2 + 1 of AVX2's 16, 24 + 4 + 1 of AVX-512's 32)
 * The vectors are the compiler's vector extensions, so each instance is the same C compiled for
 * its registers. S is kept transposed (key-major, st[j][i]): queries run along the vector lanes,
 * so keys and values are read in place (any strides, no packing) and the softmax needs no
 * horizontal reduction. Only a key block that ends past the sequence's valid end (the partial
 * last block, or the one where padded text begins) runs with cols < B.
 * DOT_BF16, where defined, is an AVX-512 BF16 instance: bf16 inputs take the pair dot products
 * below instead of being widened. */

typedef float NAME(vf) __attribute__((vector_size(4 * LANES), aligned(4)));
typedef int32_t NAME(vi) __attribute__((vector_size(4 * LANES), aligned(4)));
typedef uint32_t NAME(vu) __attribute__((vector_size(4 * LANES), aligned(4)));
typedef uint16_t NAME(vh) __attribute__((vector_size(2 * LANES), aligned(2)));

/* Register blocking: S takes SR keys × SC vectors of queries, P·V PR query rows × PC vectors of
 * head_dim, within MAXACC accumulators (enough independent chains to cover the FMA latency on
 * both pipes). The vector counts divide the block and head_dim; SR and PR need not divide B:
 * the last group runs past it into scratch padding whose results are never stored. */
#define NAME_FIT(n, c) ((n) % (LANES * (c)) == 0 && (c) <= WIDE)
#define NAME_SC (NAME_FIT(B, 4) ? 4 : NAME_FIT(B, 2) ? 2 : 1)
#define NAME_PC (NAME_FIT(D, 4) ? 4 : NAME_FIT(D, 2) ? 2 : 1)
#define NAME_SR (MAXACC / NAME_SC > PAD ? PAD : MAXACC / NAME_SC)
#define NAME_PR (MAXACC / NAME_PC > PAD ? PAD : MAXACC / NAME_PC)
/* Bytes per input element; bf16 is a compile-time constant wherever this is used. */
#define ES (bf16 ? 2 : 4)

static inline __attribute__((always_inline)) NAME(vf) NAME(vmax)(NAME(vf) a, NAME(vf) b) {
    const NAME(vi) take_b = a < b;
    return (NAME(vf))(((NAME(vi))a & ~take_b) | ((NAME(vi))b & take_b));
}

/* calib_exp2f on a vector: the same clamp, rounding and polynomial. */
static inline __attribute__((always_inline)) NAME(vf) NAME(vexp2)(NAME(vf) x) {
    x = NAME(vmax)(x, (NAME(vf)){0} - 126.0f);
    const NAME(vf) n = (x + CALIB_ROUND_MAGIC) - CALIB_ROUND_MAGIC;
    const NAME(vi) bits = (__builtin_convertvector(n, NAME(vi)) + 127) << 23;
    return CALIB_EXP2_POLY(x - n) * (NAME(vf))bits;
}

/* LANES consecutive bfloat16 values as floats. */
static inline __attribute__((always_inline)) NAME(vf) NAME(vbf16)(const uint16_t *p) {
    return (NAME(vf))(__builtin_convertvector(*(const NAME(vh) *)p, NAME(vu)) << 16);
}

/* qt[d][i] = q[i][d] · log2(e)/sqrt(D): scores come out in the log2 domain. Rows past `rows`
 * (the partial last block) are zero: computed, never stored. */
static inline __attribute__((always_inline)) void NAME(load_q)(const call *c, scratch *w, const char *q, int rows,
                                                                const int bf16) {
    for (int i = 0; i < B; i++)
        for (int d = 0; d < D; d++) w->qt[d][i] = i < rows ? input(q + (i * c->qs[1] + d) * ES, bf16) * CALIB_SCORE_SCALE : 0.0f;
}

/* The running softmax and the accumulator of a new query block. */
static inline __attribute__((always_inline)) void NAME(reset)(scratch *w) {
    for (int i = 0; i < B + PAD; i++) {
        w->m[i] = -INFINITY;
        w->l[i] = 0.0f;
        w->alpha[i] = 0.0f;
        for (int d = 0; d < D; d++) w->acc[i][d] = 0.0f;
    }
}

/* st[j][i] = Σ_d k[j][d]·qt[d][i] for keys j < cols of the block at `k` (float rows `stride`
 * apart). Past `cols` the key pointer stays on the last real key, so no load leaves the tensor;
 * those rows are never read. */
static inline __attribute__((always_inline)) void NAME(scores)(scratch *w, const float *k, const int64_t stride, const int cols) {
    enum { SR = NAME_SR, SC = NAME_SC };
    /* Query columns outer: their slice of qt (D × SC vectors) stays in L1 while the key rows
     * stream past it, instead of all of qt passing through L1 once per SR keys. */
    for (int i0 = 0; i0 < B; i0 += LANES * SC) {
        for (int j0 = 0; j0 < cols; j0 += SR) {
            const float *row[SR];
            for (int r = 0; r < SR; r++) row[r] = k + (int64_t)(j0 + r < cols ? j0 + r : cols - 1) * stride;
            NAME(vf) acc[SR][SC];
            for (int r = 0; r < SR; r++)
                for (int x = 0; x < SC; x++) acc[r][x] = (NAME(vf)){0};
            for (int d = 0; d < D; d++) {
                NAME(vf) qv[SC];
                for (int x = 0; x < SC; x++) qv[x] = *(const NAME(vf) *)&w->qt[d][i0 + LANES * x];
                for (int r = 0; r < SR; r++) {
                    const float kv = row[r][d];
                    for (int x = 0; x < SC; x++) acc[r][x] += kv * qv[x];
                }
            }
            for (int r = 0; r < SR; r++)
                for (int x = 0; x < SC; x++) *(NAME(vf) *)&w->st[j0 + r][i0 + LANES * x] = acc[r][x];
        }
    }
}

/* Scores → probabilities in place; running max and sum; alpha rescales what acc holds. */
static inline __attribute__((always_inline)) void NAME(softmax)(scratch *w, const int cols) {
    for (int i0 = 0; i0 < B; i0 += LANES) {
        const NAME(vf) old = *(const NAME(vf) *)&w->m[i0];
        NAME(vf) mx = old;
        for (int j = 0; j < cols; j++) mx = NAME(vmax)(mx, *(const NAME(vf) *)&w->st[j][i0]);
        const NAME(vf) alpha = NAME(vexp2)(old - mx);
        NAME(vf) sum = (NAME(vf)){0};
        for (int j = 0; j < cols; j++) {
            const NAME(vf) p = NAME(vexp2)(*(const NAME(vf) *)&w->st[j][i0] - mx);
            *(NAME(vf) *)&w->st[j][i0] = p;
            sum += p;
        }
        *(NAME(vf) *)&w->m[i0] = mx;
        *(NAME(vf) *)&w->alpha[i0] = alpha;
        *(NAME(vf) *)&w->l[i0] = *(const NAME(vf) *)&w->l[i0] * alpha + sum;
    }
}

/* acc[i] = alpha[i]·acc[i] + Σ_j p[j][i]·v[j], PR query rows × PC vectors of head_dim at a time;
 * v holds float rows `stride` apart. */
static inline __attribute__((always_inline)) void NAME(accumulate)(scratch *w, const float *v, const int64_t stride, const int cols) {
    enum { PR = NAME_PR, PC = NAME_PC };
    /* Head-dim columns outer: their slice of V (cols × PC vectors) stays in L1 while the query
     * rows pass, instead of all of V passing through L1 once per PR rows. */
    for (int d0 = 0; d0 < D; d0 += LANES * PC) {
        for (int i0 = 0; i0 < B; i0 += PR) {
            NAME(vf) o[PR][PC];
            for (int r = 0; r < PR; r++)
                for (int x = 0; x < PC; x++) o[r][x] = w->alpha[i0 + r] * *(const NAME(vf) *)&w->acc[i0 + r][d0 + LANES * x];
            for (int j = 0; j < cols; j++) {
                const float *row = v + j * stride + d0;
                NAME(vf) vv[PC];
                for (int x = 0; x < PC; x++) vv[x] = *(const NAME(vf) *)(row + LANES * x);
                for (int r = 0; r < PR; r++) {
                    const float p = w->st[j][i0 + r];
                    for (int x = 0; x < PC; x++) o[r][x] += p * vv[x];
                }
            }
            for (int r = 0; r < PR; r++)
                for (int x = 0; x < PC; x++) *(NAME(vf) *)&w->acc[i0 + r][d0 + LANES * x] = o[r][x];
        }
    }
}

/* bfloat16 rows widened to float once per tile (B·D conversions against B·B·D multiply-adds), so
 * the micro-kernels run on floats whatever the input type. */
static inline __attribute__((always_inline)) void NAME(widen)(float (*out)[D], const char *in, const int64_t stride, const int cols) {
    for (int j = 0; j < cols; j++) {
        const uint16_t *row = (const uint16_t *)in + j * stride;
        for (int d = 0; d < D; d += LANES) *(NAME(vf) *)&out[j][d] = NAME(vbf16)(row + d);
    }
}

#ifdef DOT_BF16
/* bf16 inputs with AVX-512 BF16: vdpbf16ps multiplies a pair of bf16 by a pair and adds both
 * products to one float lane, so Q·Kᵀ takes head_dim two at a time and P·V keys two at a time:
 * half the instructions of the widened path, and keys are never converted. Each lane holds one
 * query's pair (d, d+1), which is how a query row lies in the tensor; a key's pair is broadcast
 * straight from the caller's tensor; values and probabilities are interleaved per key pair
 * (j, j+1) once per tile. Products are exact in float; P is rounded to bf16 (2^-9 relative, as
 * GPU kernels do) while the running sum keeps the float P. */

static inline __attribute__((always_inline)) NAME(vf) NAME(dot2)(NAME(vf) acc, NAME(vu) a, NAME(vu) b) {
    return (NAME(vf))_mm512_dpbf16_ps((__m512)acc, (__m512bh)a, (__m512bh)b);
}

/* Round to nearest even, keeping the bf16 in the high half (probabilities: finite, ≥ 0). */
static inline __attribute__((always_inline)) NAME(vu) NAME(round_bf16)(NAME(vf) x) {
    const NAME(vu) u = (NAME(vu))x;
    return (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
}

/* qp[dp][i] = q[i][2dp], q[i][2dp + 1] as one word; rows past `rows` are zero. The scale is applied
 * to the scores instead, so q is not rounded twice. */
static inline __attribute__((always_inline)) void NAME(load_q2)(const call *c, scratch *w, const char *q, int rows) {
    for (int i = 0; i < B; i++)
        for (int dp = 0; dp < D / 2; dp++) {
            uint32_t pair = 0;
            if (i < rows) memcpy(&pair, q + (i * c->qs[1] + 2 * dp) * 2, sizeof pair);
            w->qp[dp][i] = pair;
        }
}

static inline __attribute__((always_inline)) void NAME(scores2)(scratch *w, const uint16_t *k, const int64_t stride, const int cols) {
    enum { SR = NAME_SR, SC = NAME_SC };
    for (int i0 = 0; i0 < B; i0 += LANES * SC) {
        for (int j0 = 0; j0 < cols; j0 += SR) {
            const uint16_t *row[SR];
            for (int r = 0; r < SR; r++) row[r] = k + (int64_t)(j0 + r < cols ? j0 + r : cols - 1) * stride;
            NAME(vf) acc[SR][SC];
            for (int r = 0; r < SR; r++)
                for (int x = 0; x < SC; x++) acc[r][x] = (NAME(vf)){0};
            for (int dp = 0; dp < D / 2; dp++) {
                NAME(vu) qv[SC];
                for (int x = 0; x < SC; x++) qv[x] = *(const NAME(vu) *)&w->qp[dp][i0 + LANES * x];
                for (int r = 0; r < SR; r++) {
                    uint32_t pair;
                    memcpy(&pair, row[r] + 2 * dp, sizeof pair);
                    const NAME(vu) kv = (NAME(vu)){0} + pair;
                    for (int x = 0; x < SC; x++) acc[r][x] = NAME(dot2)(acc[r][x], qv[x], kv);
                }
            }
            for (int r = 0; r < SR; r++)
                for (int x = 0; x < SC; x++) *(NAME(vf) *)&w->st[j0 + r][i0 + LANES * x] = acc[r][x] * CALIB_SCORE_SCALE;
        }
    }
}

/* pp[jp][i] = p[2jp][i], p[2jp + 1][i] as bf16 in one word, and vp[jp][d] likewise for v; past an
 * odd `cols` the second of the pair is zero (no row of v beyond the tensor is read). */
static inline __attribute__((always_inline)) void NAME(pair_up)(scratch *w, const uint16_t *v, const int64_t stride, const int cols) {
    for (int jp = 0; jp < (cols + 1) / 2; jp++) {
        const int odd = 2 * jp + 1 == cols;
        for (int i0 = 0; i0 < B; i0 += LANES) {
            const NAME(vu) lo = NAME(round_bf16)(*(const NAME(vf) *)&w->st[2 * jp][i0]) >> 16;
            const NAME(vu) hi = odd ? (NAME(vu)){0} : NAME(round_bf16)(*(const NAME(vf) *)&w->st[2 * jp + 1][i0]);
            *(NAME(vu) *)&w->pp[jp][i0] = lo | hi;
        }
        const uint16_t *a = v + 2 * jp * stride, *b = odd ? a : a + stride;
        for (int d = 0; d < D; d += LANES) {
            const NAME(vu) lo = __builtin_convertvector(*(const NAME(vh) *)(a + d), NAME(vu));
            const NAME(vu) hi = odd ? (NAME(vu)){0} : __builtin_convertvector(*(const NAME(vh) *)(b + d), NAME(vu)) << 16;
            *(NAME(vu) *)&w->vp[jp][d] = lo | hi;
        }
    }
}

/* acc[i] = alpha[i]·acc[i] + Σ_jp pp[jp][i]·vp[jp], as accumulate() but two keys a step. */
static inline __attribute__((always_inline)) void NAME(accumulate2)(scratch *w, const int cols) {
    enum { PR = NAME_PR, PC = NAME_PC };
    for (int d0 = 0; d0 < D; d0 += LANES * PC) {
        for (int i0 = 0; i0 < B; i0 += PR) {
            NAME(vf) o[PR][PC];
            for (int r = 0; r < PR; r++)
                for (int x = 0; x < PC; x++) o[r][x] = w->alpha[i0 + r] * *(const NAME(vf) *)&w->acc[i0 + r][d0 + LANES * x];
            for (int jp = 0; jp < (cols + 1) / 2; jp++) {
                NAME(vu) vv[PC];
                for (int x = 0; x < PC; x++) vv[x] = *(const NAME(vu) *)&w->vp[jp][d0 + LANES * x];
                for (int r = 0; r < PR; r++) {
                    const NAME(vu) p = (NAME(vu)){0} + w->pp[jp][i0 + r];
                    for (int x = 0; x < PC; x++) o[r][x] = NAME(dot2)(o[r][x], p, vv[x]);
                }
            }
            for (int r = 0; r < PR; r++)
                for (int x = 0; x < PC; x++) *(NAME(vf) *)&w->acc[i0 + r][d0 + LANES * x] = o[r][x];
        }
    }
}
#endif

/* One key block into the running softmax of the query tile. Inlined with cols == B for every
 * full block, so only the partial last block pays for bounds. */
static inline __attribute__((always_inline)) void NAME(tile)(const call *c, scratch *w, const char *k, const char *v,
                                                              const int cols, const int bf16) {
    if (bf16) {
#ifdef DOT_BF16
        NAME(scores2)(w, (const uint16_t *)k, c->ks[1], cols);
        NAME(softmax)(w, cols);
        NAME(pair_up)(w, (const uint16_t *)v, c->vs[1], cols);
        NAME(accumulate2)(w, cols);
        return;
#endif
        NAME(widen)(w->kw, k, c->ks[1], cols);
        NAME(widen)(w->vw, v, c->vs[1], cols);
        NAME(scores)(w, &w->kw[0][0], D, cols);
        NAME(softmax)(w, cols);
        NAME(accumulate)(w, &w->vw[0][0], D, cols);
    } else {
        NAME(scores)(w, (const float *)k, c->ks[1], cols);
        NAME(softmax)(w, cols);
        NAME(accumulate)(w, (const float *)v, c->vs[1], cols);
    }
}

static inline __attribute__((always_inline)) void NAME(block)(const call *c, scratch *w, const slice *h, int qb,
                                                               const uint16_t *spans, int32_t nspans, int64_t end,
                                                               const int bf16) {
    const int rows = qb == NB - 1 ? LAST_ROWS : B;
    const char *q = h->q + (int64_t)qb * B * c->qs[1] * ES;
#ifdef DOT_BF16
    if (bf16) {
        NAME(load_q2)(c, w, q, rows);
    } else {
        NAME(load_q)(c, w, q, rows, bf16);
    }
#else
    NAME(load_q)(c, w, q, rows, bf16);
#endif
    NAME(reset)(w);
    for (int32_t sp = 0; sp < nspans; sp++) {
        for (int32_t kb = spans[2 * sp]; kb < spans[2 * sp + 1]; kb++) {
            /* Keys at or past `end` (the sequence's, or padded text's) are never read. */
            const int64_t cols = end - (int64_t)kb * B;
            if (cols <= 0) break;
            const char *k = h->k + (int64_t)kb * B * c->ks[1] * ES, *v = h->v + (int64_t)kb * B * c->vs[1] * ES;
            if (cols < B) {
                NAME(tile)(c, w, k, v, (int)cols, bf16);
            } else {
                NAME(tile)(c, w, k, v, B, bf16);
            }
        }
    }
}

/* The entry calib_kernels.c dispatches to: one query block of one head, into w->acc and w->l. */
static void NAME(query_block)(const call *c, scratch *w, const slice *h, int qb, const uint16_t *spans, int32_t nspans,
                              int64_t end) {
    if (c->in == CALIB_BF16) {
        NAME(block)(c, w, h, qb, spans, nspans, end, 1);
    } else {
        NAME(block)(c, w, h, qb, spans, nspans, end, 0);
    }
}

#undef NAME_SR
#undef NAME_PR
#undef NAME_FIT
#undef NAME_SC
#undef NAME_PC
#undef ES
