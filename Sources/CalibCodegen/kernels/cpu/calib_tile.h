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
 * horizontal reduction. Only the partial last key block runs with cols < B. */

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
    const float scale = 1.4426950408889634f / sqrtf((float)D);
    for (int i = 0; i < B + PAD; i++) {
        for (int d = 0; d < D && i < B; d++) w->qt[d][i] = i < rows ? input(q + (i * c->qs[1] + d) * ES, bf16) * scale : 0.0f;
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

/* One key block into the running softmax of the query tile. Inlined with cols == B for every
 * full block, so only the partial last block pays for bounds. */
static inline __attribute__((always_inline)) void NAME(tile)(const call *c, scratch *w, const char *k, const char *v,
                                                              const int cols, const int bf16) {
    if (bf16) {
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
                                                               const uint16_t *spans, int32_t nspans, const int bf16) {
    const int rows = qb == NB - 1 ? LAST_ROWS : B;
    NAME(load_q)(c, w, h->q + (int64_t)qb * B * c->qs[1] * ES, rows, bf16);
    for (int32_t sp = 0; sp < nspans; sp++) {
        for (int32_t kb = spans[2 * sp]; kb < spans[2 * sp + 1]; kb++) {
            const char *k = h->k + (int64_t)kb * B * c->ks[1] * ES, *v = h->v + (int64_t)kb * B * c->vs[1] * ES;
            if (kb == NB - 1 && LAST_ROWS != B) {
                NAME(tile)(c, w, k, v, LAST_ROWS, bf16);
            } else {
                NAME(tile)(c, w, k, v, B, bf16);
            }
        }
    }
}

/* The entry calib_kernels.c dispatches to: one query block of one head, into w->acc and w->l. */
static void NAME(query_block)(const call *c, scratch *w, const slice *h, int qb, const uint16_t *spans, int32_t nspans) {
    if (c->in == CALIB_BF16) {
        NAME(block)(c, w, h, qb, spans, nspans, 1);
    } else {
        NAME(block)(c, w, h, qb, spans, nspans, 0);
    }
}

#undef NAME_SR
#undef NAME_PR
#undef NAME_FIT
#undef NAME_SC
#undef NAME_PC
#undef ES
