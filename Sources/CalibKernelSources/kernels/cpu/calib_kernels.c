/* calibc's CPU attention kernels (C11 + OpenMP). The same file for every masks file: the shape
 * arrives as macros and the plans as tables from calib_internal.h / calib_schedule.c, which
 * `calibc compile` writes beside it. FlashAttention-style: per query block, each kept key block
 * goes through S = Q·Kᵀ, an online softmax in the log2 domain and acc += P·V (calib_tile.h);
 * skipped tiles are never visited, so there is no mask test at run time.
 *
 * Fast on the machine it runs on, not the one it was built on: calib_tile.h is compiled once per
 * x86 instruction set (AVX-512 with BF16 dot products for bf16 inputs, AVX-512, AVX2, SSE, and
 * plain C for shapes whose block or head_dim the vectors do not divide) and the widest one the
 * CPU has is chosen at load time.
 *
 * Work: every (batch, head) of a call and every chunk of its plan's rows (rows in locality order
 * cut at compile time into cost-balanced chunks, heaviest first) go into one pool that OpenMP
 * threads claim from an atomic counter, so any team size gets balanced work. Only static OpenMP
 * constructs: clang 21 lowers schedule(dynamic) to __kmpc_dispatch_deinit, which Debian 12's
 * libomp 14 lacks. */
#include <calib_kernels.h>
#include "calib_internal.h"
#include "calib_exp2.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* The micro-kernels are chains of a·b + c. clang fuses each into one FMA (its default
 * -ffp-contract=on); gcc in ISO C mode (-std=c11) fuses none, which halves the arithmetic rate
 * of every instance (the 16-core Xeon's first tables in docs/performance.md were that). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=fast")
#endif

#define D CALIB_HEAD_DIM
#define B CALIB_BLOCK
#define NB CALIB_BLOCKS
#define LAST_ROWS (CALIB_TOKENS - (NB - 1) * B) /* tokens in the last, possibly partial, block */
/* Scores in the log2 domain: q·k · log2(e)/sqrt(D). */
#define CALIB_SCORE_SCALE (1.4426950408889634f / sqrtf((float)D))

/* One call: element (b, s, h, d) of x is at x + (b·xs[0] + s·xs[1] + h·xs[2] + d) elements. */
typedef struct call {
    int32_t in, out_dtype;  /* CALIB_F32 or CALIB_BF16 */
    const char *q, *k, *v;
    char *out;
    int64_t qs[3], ks[3], vs[3], os[3];
    int64_t batch, heads;
    const calib_plan *const *plans; /* per head */
    const int32_t *text_lengths;    /* per batch element, or NULL: every text token valid */
} call;

/* The tensors of one (batch, head). */
typedef struct slice {
    const char *q, *k, *v;
    char *out;
} slice;

/* Rows past the block that a micro-kernel's last group may compute into (calib_tile.h). */
#define PAD 8

/* Per-thread working set for one query block (heap, freed at the end of the call). */
typedef struct scratch {
    float qt[D][B] __attribute__((aligned(64)));              /* the query tile, transposed and scaled */
    float st[B + PAD][B + PAD] __attribute__((aligned(64)));  /* scores, then probabilities, key-major */
    float acc[B + PAD][D] __attribute__((aligned(64)));
    float m[B + PAD] __attribute__((aligned(64)));            /* running max (log2 domain) */
    float l[B + PAD] __attribute__((aligned(64)));            /* running sum */
    float alpha[B + PAD] __attribute__((aligned(64)));        /* this tile's rescale of acc */
    float kw[B][D] __attribute__((aligned(64)));              /* bf16 keys and values widened, per tile */
    float vw[B][D] __attribute__((aligned(64)));
    /* The AVX-512 BF16 instance's bf16 pairs (calib_tile.h, DOT_BF16): queries (d, d+1), then per
     * tile probabilities and values (j, j+1). That instance needs D and B even (multiples of 16);
     * the halves round up so that an odd D or B, which the format allows, still declares arrays. */
    uint32_t qp[(D + 1) / 2][B] __attribute__((aligned(64)));
    uint32_t pp[(B + PAD) / 2][B + PAD] __attribute__((aligned(64)));
    uint32_t vp[(B + 1) / 2][D] __attribute__((aligned(64)));
} scratch;

static inline __attribute__((always_inline)) float input(const char *p, const int bf16) {
    if (bf16) {
        uint16_t h;
        memcpy(&h, p, sizeof h);
        const uint32_t u = (uint32_t)h << 16;
        float f;
        memcpy(&f, &u, sizeof f);
        return f;
    }
    float f;
    memcpy(&f, p, sizeof f);
    return f;
}

/* Round to nearest even, as torch does. */
static inline uint16_t to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN stays NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* ---- the arithmetic, once per instruction set ---- */

#define NAME(x) x##_scalar
#define LANES 1
#define MAXACC 12
#define WIDE 2
#include "calib_tile.h"
#undef NAME
#undef LANES
#undef MAXACC
#undef WIDE

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define X86 1
#include <cpuid.h>
#include <immintrin.h>
#if defined(__clang__)
#define TARGET(isa) _Pragma(isa)
#define AVX2_BEGIN TARGET("clang attribute push(__attribute__((target(\"avx2,fma\"))), apply_to = function)")
#define AVX512_BEGIN TARGET("clang attribute push(__attribute__((target(\"avx512f,avx512bw,avx512dq,avx512vl,avx2,fma\"))), apply_to = function)")
#define AVX512BF16_BEGIN TARGET("clang attribute push(__attribute__((target(\"avx512bf16,avx512f,avx512bw,avx512dq,avx512vl,avx2,fma\"))), apply_to = function)")
#define TARGET_END TARGET("clang attribute pop")
#else
#define AVX2_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma\")")
#define AVX512_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx512f,avx512bw,avx512dq,avx512vl,avx2,fma\")")
#define AVX512BF16_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx512bf16,avx512f,avx512bw,avx512dq,avx512vl,avx2,fma\")")
#define TARGET_END _Pragma("GCC pop_options")
#endif
#else
#define X86 0
#endif

/* SSE2 is part of x86-64 itself: no target attribute needed. */
#define HAVE_SSE (X86 && B % 4 == 0 && D % 4 == 0)
#define HAVE_AVX2 (X86 && B % 8 == 0 && D % 8 == 0)
#define HAVE_AVX512 (X86 && B % 16 == 0 && D % 16 == 0)

#if HAVE_SSE
#define NAME(x) x##_sse
#define LANES 4
#define MAXACC 12
#define WIDE 2
#include "calib_tile.h"
#undef NAME
#undef LANES
#undef MAXACC
#undef WIDE
#endif

#if HAVE_AVX2
AVX2_BEGIN
#define NAME(x) x##_avx2
#define LANES 8
#define MAXACC 12
#define WIDE 2
#include "calib_tile.h"
#undef NAME
#undef LANES
#undef MAXACC
#undef WIDE
TARGET_END
#endif

#if HAVE_AVX512
AVX512_BEGIN
#define NAME(x) x##_avx512
#define LANES 16
#define MAXACC 24
#define WIDE 4
#include "calib_tile.h"
#undef NAME
#undef LANES
#undef MAXACC
#undef WIDE
TARGET_END
#endif

#if HAVE_AVX512
AVX512BF16_BEGIN
#define NAME(x) x##_avx512bf16
#define LANES 16
#define MAXACC 24
#define WIDE 4
#define DOT_BF16 1
#include "calib_tile.h"
#undef NAME
#undef LANES
#undef MAXACC
#undef WIDE
#undef DOT_BF16
TARGET_END
#endif

typedef void (*block_fn)(const call *, scratch *, const slice *, int, const uint16_t *, int32_t, int64_t);

static block_fn chosen;
static const char *chosen_name;

#if HAVE_AVX512
/* AVX-512 BF16 (CPUID leaf 7, subleaf 1, EAX bit 5), asked of CPUID itself: older compilers'
 * __builtin_cpu_supports does not know the name. */
static int has_avx512bf16(void) {
    unsigned a, b, c, d;
    return __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a >> 5 & 1);
}
#endif

/* The widest instance this shape has and this CPU runs; chosen once, when the library loads.
 * CALIBC_ISA=avx512 (or avx2, sse, portable) caps the choice: every instance can be checked on
 * one machine. */
__attribute__((constructor)) static void choose_isa(void) {
    const char *cap = getenv("CALIBC_ISA");
    const int most = !cap ? 4 : !strcmp(cap, "avx512") ? 3 : !strcmp(cap, "avx2") ? 2 : !strcmp(cap, "sse") ? 1
                   : !strcmp(cap, "portable") ? 0 : 4;
    chosen = query_block_scalar;
    chosen_name = "portable";
    (void)most;
#if X86
    __builtin_cpu_init();
#if HAVE_AVX512
    if (most >= 3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl")) {
        const int bf16 = most >= 4 && has_avx512bf16();
        chosen = bf16 ? query_block_avx512bf16 : query_block_avx512;
        chosen_name = bf16 ? "avx512-bf16" : "avx512";
        return;
    }
#endif
#if HAVE_AVX2
    if (most >= 2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        chosen = query_block_avx2;
        chosen_name = "avx2";
        return;
    }
#endif
#if HAVE_SSE
    if (most >= 1) {
        chosen = query_block_sse;
        chosen_name = "sse";
    }
#endif
#endif
}

/* Output rows of query block qb (acc / l), also stored as the rows of every block that reuses
 * it: reuse costs those stores, nothing else. Rows at or past `end` (padded text) are zeros, and
 * so is a row that no valid key reached (l = 0). */
static void store(const call *c, const scratch *w, const slice *h, int qb, const int32_t *pairs, int32_t ntargets,
                  int64_t end) {
    const int rows = qb == NB - 1 ? LAST_ROWS : B;
    const int64_t es = c->out_dtype == CALIB_BF16 ? 2 : 4;
    for (int i = 0; i < rows; i++) {
        const float inv = w->l[i] > 0.0f ? 1.0f / w->l[i] : 0.0f;
        for (int32_t t = -1; t < ntargets; t++) {
            const int64_t target = t < 0 ? qb : pairs[2 * t + 1];
            /* A partial last block takes only its own rows. */
            if (target == NB - 1 && i >= LAST_ROWS) continue;
            const float scale = target * B + i < end ? inv : 0.0f;
            char *o = h->out + (target * B + i) * c->os[1] * es;
            if (c->out_dtype == CALIB_BF16) {
                uint16_t *ob = (uint16_t *)o;
                for (int d = 0; d < D; d++) ob[d] = scale == 0.0f ? 0 : to_bf16(w->acc[i][d] * scale);
            } else {
                float *of = (float *)o;
                for (int d = 0; d < D; d++) of[d] = scale == 0.0f ? 0.0f : w->acc[i][d] * scale;
            }
        }
    }
}

/* One query block of plan p for one (batch, head). */
static void row(const call *c, scratch *w, const slice *h, const calib_plan *p, int qb, int64_t valid_end) {
    const int32_t id = p->rows[qb], first = calib_row_first[id];
    /* The (source, target) pairs whose source is qb: a binary search in the sorted list. */
    int32_t lo = 0, hi = p->reuse_count;
    while (lo < hi) {
        const int32_t mid = (lo + hi) / 2;
        if (p->reuse[2 * mid] < qb) lo = mid + 1; else hi = mid;
    }
    int32_t end = lo;
    while (end < p->reuse_count && p->reuse[2 * end] == qb) end++;
    chosen(c, w, h, qb, calib_spans + 2 * first, calib_row_first[id + 1] - first, valid_end);
    store(c, w, h, qb, p->reuse + 2 * lo, end - lo, valid_end);
}

/* A test that includes this file may count the work items each thread takes. */
#ifndef CALIB_TRACE_ITEM
#define CALIB_TRACE_ITEM(thread) ((void)0)
#endif

/* The pool: item i is chunk i % most (chunks are sorted heaviest first) of (batch, head)
 * i / most, so the team works through one head's keys and values together while they are in
 * cache, each head heaviest chunk first; heads with fewer chunks skip the indices they lack. */
static int run(const call *c) {
    const int64_t bh = c->batch * c->heads;
    int32_t most = 0;
    for (int64_t h = 0; h < c->heads; h++) most = c->plans[h]->chunk_count > most ? c->plans[h]->chunk_count : most;
    const int64_t total = bh * most;
    int64_t next = 0;
    int status = CALIB_OK;
    #pragma omp parallel
    {
        scratch *w = aligned_alloc(64, sizeof(scratch));
        if (!w) {
            #pragma omp atomic write
            status = CALIB_ERR_NO_MEMORY;
        }
        /* Every thread is up before the first claim, so a fast one cannot take a small pool alone. */
        #pragma omp barrier
        for (;;) {
            const int64_t i = __atomic_fetch_add(&next, 1, __ATOMIC_RELAXED);
            if (i >= total || !w) break;
            const int64_t b = i / most / c->heads, hh = i / most % c->heads, rank = i % most;
            const calib_plan *p = c->plans[hh];
            if (rank >= p->chunk_count) continue;
            CALIB_TRACE_ITEM(omp_get_thread_num());
            const slice h = {
                c->q + (b * c->qs[0] + hh * c->qs[2]) * (c->in == CALIB_BF16 ? 2 : 4),
                c->k + (b * c->ks[0] + hh * c->ks[2]) * (c->in == CALIB_BF16 ? 2 : 4),
                c->v + (b * c->vs[0] + hh * c->vs[2]) * (c->in == CALIB_BF16 ? 2 : 4),
                c->out + (b * c->os[0] + hh * c->os[2]) * (c->out_dtype == CALIB_BF16 ? 2 : 4),
            };
            /* Tokens past the valid text of element b take no part: keys are never read, rows zero. */
            const int64_t end = c->text_lengths ? CALIB_TOKENS - CALIB_TEXT_TOKENS + c->text_lengths[b] : CALIB_TOKENS;
            for (int32_t r = p->chunks[2 * rank]; r < p->chunks[2 * rank + 1]; r++) row(c, w, &h, p, p->order[r], end);
        }
        free(w);
    }
    return status;
}

/* ---- argument checks: everything is refused before any work starts ---- */

/* The largest element offset (b, s, h, d) can reach, or -1 when strides are negative or it
 * overflows an address. */
static int64_t extent(const int64_t s[3], int64_t batch, int64_t tokens, int64_t heads, int64_t es) {
    const int64_t n[3] = {batch, tokens, heads};
    int64_t last = D - 1;
    for (int a = 0; a < 3; a++) {
        int64_t term;
        if (s[a] < 0 || __builtin_mul_overflow(s[a], n[a] - 1, &term) || __builtin_add_overflow(last, term, &last)) return -1;
    }
    int64_t bytes;
    if (__builtin_mul_overflow(last + 1, es, &bytes)) return -1;
    return last;
}

/* No two (b, s, h, d) of out share an element: with the axes sorted by stride, each stride must
 * step over everything the smaller axes reach. */
static int disjoint(const int64_t s[3], int64_t batch, int64_t tokens, int64_t heads) {
    int64_t stride[4] = {1, s[0], s[1], s[2]}, n[4] = {D, batch, tokens, heads};
    for (int a = 1; a < 4; a++) {
        for (int b = a; b > 0 && stride[b] < stride[b - 1]; b--) {
            int64_t t = stride[b]; stride[b] = stride[b - 1]; stride[b - 1] = t;
            t = n[b]; n[b] = n[b - 1]; n[b - 1] = t;
        }
    }
    int64_t reach = 0; /* the largest offset the smaller axes reach */
    for (int a = 0; a < 4; a++) {
        if (n[a] == 1) continue;
        if (stride[a] <= reach) return 0;
        reach += stride[a] * (n[a] - 1);
    }
    return 1;
}

static int check(const call *c, int64_t tokens, int64_t head_dim) {
    if (c->in != CALIB_F32 && c->in != CALIB_BF16) return CALIB_ERR_ARGUMENT;
    if (c->out_dtype != CALIB_F32 && c->out_dtype != CALIB_BF16) return CALIB_ERR_ARGUMENT;
    if (tokens != CALIB_TOKENS || head_dim != D) return CALIB_ERR_SHAPE;
    if (!c->q || !c->k || !c->v || !c->out || c->batch < 1 || c->heads < 1) return CALIB_ERR_ARGUMENT;
    const int64_t in = c->in == CALIB_BF16 ? 2 : 4, out = c->out_dtype == CALIB_BF16 ? 2 : 4;
    if (extent(c->qs, c->batch, tokens, c->heads, in) < 0 || extent(c->ks, c->batch, tokens, c->heads, in) < 0 ||
        extent(c->vs, c->batch, tokens, c->heads, in) < 0 || extent(c->os, c->batch, tokens, c->heads, out) < 0)
        return CALIB_ERR_ARGUMENT;
    if (!disjoint(c->os, c->batch, tokens, c->heads)) return CALIB_ERR_ARGUMENT;
    return CALIB_OK;
}

static int step_index(int32_t step) {
    int lo = 0, hi = CALIB_STEPS;
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (calib_steps[mid] < step) lo = mid + 1; else hi = mid;
    }
    return lo < CALIB_STEPS && calib_steps[lo] == step ? lo : -1;
}

static const calib_plan *plan_of(int s, int32_t layer, int32_t head) {
    return &calib_plans[calib_dispatch[((int64_t)s * CALIB_LAYERS + layer) * CALIB_HEADS + head]];
}

/* Heads first_head ..< first_head + heads of (step, layer), or of the dense baseline. */
static int layer_call(int32_t step, int32_t layer, int32_t first_head, int dense, int32_t dtype, const void *q, const void *k,
                      const void *v, void *out, int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim,
                      const int64_t qs[3], const int64_t ks[3], const int64_t vs[3], const int64_t os[3],
                      const int32_t *text_lengths) {
    if (!qs || !ks || !vs || !os) return CALIB_ERR_ARGUMENT;
    if (first_head < 0 || heads < 1 || heads > CALIB_HEADS - first_head) return CALIB_ERR_SHAPE;
    call c = {dtype, dtype, q, k, v, out, {0}, {0}, {0}, {0}, batch, heads, NULL, text_lengths};
    memcpy(c.qs, qs, sizeof c.qs), memcpy(c.ks, ks, sizeof c.ks), memcpy(c.vs, vs, sizeof c.vs), memcpy(c.os, os, sizeof c.os);
    int status = check(&c, tokens, head_dim);
    if (status != CALIB_OK) return status;
    if (text_lengths) {
        /* Valid lengths only where padding is a suffix of the sequence: text last. */
        if (CALIB_TEXT_TOKENS == 0 || CALIB_TEXT_FIRST) return CALIB_ERR_ARGUMENT;
        for (int64_t b = 0; b < batch; b++)
            if (text_lengths[b] < 0 || text_lengths[b] > CALIB_TEXT_TOKENS) return CALIB_ERR_ARGUMENT;
    }
    const calib_plan *plans[CALIB_HEADS];
    if (dense) {
        for (int h = 0; h < heads; h++) plans[h] = &calib_dense_plan;
    } else {
        const int s = step_index(step);
        if (s < 0 || layer < 0 || layer >= CALIB_LAYERS) return CALIB_ERR_NO_PLAN;
        for (int h = 0; h < heads; h++) plans[h] = plan_of(s, layer, first_head + h);
    }
    c.plans = plans;
    return run(&c);
}

int calib_attention_layer(int32_t step, int32_t layer, int32_t dtype, const void *q, const void *k, const void *v, void *out,
                          int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim, const int64_t q_strides[3],
                          const int64_t k_strides[3], const int64_t v_strides[3], const int64_t out_strides[3]) {
    if (heads != CALIB_HEADS) return CALIB_ERR_SHAPE;
    return layer_call(step, layer, 0, 0, dtype, q, k, v, out, batch, tokens, heads, head_dim, q_strides, k_strides, v_strides,
                      out_strides, NULL);
}

int calib_attention_heads(int32_t step, int32_t layer, int32_t first_head, int32_t dtype, const void *q, const void *k,
                          const void *v, void *out, int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim,
                          const int64_t q_strides[3], const int64_t k_strides[3], const int64_t v_strides[3],
                          const int64_t out_strides[3]) {
    return layer_call(step, layer, first_head, 0, dtype, q, k, v, out, batch, tokens, heads, head_dim, q_strides, k_strides,
                      v_strides, out_strides, NULL);
}

int calib_attention_joint(int32_t step, int32_t layer, int32_t first_head, int32_t dtype, const void *q, const void *k,
                          const void *v, void *out, int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim,
                          const int64_t q_strides[3], const int64_t k_strides[3], const int64_t v_strides[3],
                          const int64_t out_strides[3], const int32_t *text_lengths) {
    return layer_call(step, layer, first_head, 0, dtype, q, k, v, out, batch, tokens, heads, head_dim, q_strides, k_strides,
                      v_strides, out_strides, text_lengths);
}

int calib_dense_attention_layer(int32_t dtype, const void *q, const void *k, const void *v, void *out, int64_t batch,
                                int64_t tokens, int64_t heads, int64_t head_dim, const int64_t q_strides[3],
                                const int64_t k_strides[3], const int64_t v_strides[3], const int64_t out_strides[3]) {
    if (heads != CALIB_HEADS) return CALIB_ERR_SHAPE;
    return layer_call(0, 0, 0, 1, dtype, q, k, v, out, batch, tokens, heads, head_dim, q_strides, k_strides, v_strides,
                      out_strides, NULL);
}

/* One head: batch 1, heads 1, rows `*_stride` elements apart; rows of q, k, v may not overlap
 * either (stride >= head_dim), as in ABI 1. */
static int head_call(int32_t step, int32_t layer, int32_t head, int dense, int32_t in, const void *q, const void *k,
                     const void *v, float *out, int64_t tokens, int64_t head_dim, int64_t q_stride, int64_t k_stride,
                     int64_t v_stride, int64_t out_stride) {
    if (q_stride < head_dim || k_stride < head_dim || v_stride < head_dim || out_stride < head_dim) {
        return tokens != CALIB_TOKENS || head_dim != D ? CALIB_ERR_SHAPE : CALIB_ERR_ARGUMENT;
    }
    call c = {in, CALIB_F32, q, k, v, (char *)out, {0, q_stride, 0}, {0, k_stride, 0}, {0, v_stride, 0},
              {0, out_stride, 0}, 1, 1, NULL, NULL};
    int status = check(&c, tokens, head_dim);
    if (status != CALIB_OK) return status;
    const calib_plan *plan = &calib_dense_plan;
    if (!dense) {
        const int s = step_index(step);
        if (s < 0 || layer < 0 || layer >= CALIB_LAYERS || head < 0 || head >= CALIB_HEADS) return CALIB_ERR_NO_PLAN;
        plan = plan_of(s, layer, head);
    }
    c.plans = &plan;
    return run(&c);
}

int calib_attention(int32_t step, int32_t layer, int32_t head, const float *q, const float *k, const float *v, float *out,
                    int64_t tokens, int64_t head_dim, int64_t q_stride, int64_t k_stride, int64_t v_stride,
                    int64_t out_stride) {
    return head_call(step, layer, head, 0, CALIB_F32, q, k, v, out, tokens, head_dim, q_stride, k_stride, v_stride, out_stride);
}

int calib_attention_bf16(int32_t step, int32_t layer, int32_t head, const uint16_t *q, const uint16_t *k,
                         const uint16_t *v, float *out, int64_t tokens, int64_t head_dim, int64_t q_stride,
                         int64_t k_stride, int64_t v_stride, int64_t out_stride) {
    return head_call(step, layer, head, 0, CALIB_BF16, q, k, v, out, tokens, head_dim, q_stride, k_stride, v_stride, out_stride);
}

int calib_dense_attention(const float *q, const float *k, const float *v, float *out, int64_t tokens, int64_t head_dim,
                          int64_t q_stride, int64_t k_stride, int64_t v_stride, int64_t out_stride) {
    return head_call(0, 0, 0, 1, CALIB_F32, q, k, v, out, tokens, head_dim, q_stride, k_stride, v_stride, out_stride);
}

int calib_dense_attention_bf16(const uint16_t *q, const uint16_t *k, const uint16_t *v, float *out, int64_t tokens,
                               int64_t head_dim, int64_t q_stride, int64_t k_stride, int64_t v_stride, int64_t out_stride) {
    return head_call(0, 0, 0, 1, CALIB_BF16, q, k, v, out, tokens, head_dim, q_stride, k_stride, v_stride, out_stride);
}

int calib_team_size(void) {
    int size = 0;
    #pragma omp parallel
    {
        #pragma omp single
        size = omp_get_num_threads();
    }
    return size;
}

const char *calib_isa(void) { return chosen_name; }

const calib_info *calib_get_info(void) {
    static const calib_info info = {
        CALIB_ABI_VERSION, CALIB_TOKENS, CALIB_HEAD_DIM, CALIB_BLOCK, CALIB_LAYERS, CALIB_HEADS,
        CALIB_PLANS, CALIB_STEPS, calib_steps, calib_model, calib_mask_sha256, calib_timesteps,
        CALIB_TEXT_TOKENS, CALIB_TEXT_FIRST,
    };
    return &info;
}

const calib_entry_points *calib_get_entry_points(void) {
    static const calib_entry_points entry = {
        CALIB_ABI_VERSION, calib_get_info, calib_attention_layer, calib_dense_attention_layer, calib_attention,
        calib_attention_bf16, calib_dense_attention, calib_dense_attention_bf16, calib_team_size, calib_isa,
        calib_attention_heads, calib_attention_joint,
    };
    return &entry;
}
