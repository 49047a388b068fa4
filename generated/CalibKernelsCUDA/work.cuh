/* work.cuh: copied by calibc from kernels/cuda/work.cuh; do not edit, regenerate with `calibc compile`.
 * source: masks.json (sha256 5316e5d337ee81292d6f227e0e808540b12c1f531d4a31c8d073957788b8e284), model example-video-dit
 * shape: tokens 2100, head_dim 64, block 64 (33 blocks per side), 3 steps x 2 layers x 4 heads
 * passes: merge-runs, collapse-reuse, dedupe, reorder
 * plans: 5 unique for 24 (step, layer, head)
 */
/* work.cuh: the work of one (step, layer) and how the persistent grid walks it.
 *
 * One item per (batch, head, computed query block). The host lists a (step, layer)'s items once,
 * in groups of as many heads as the L2 cache holds the K and V of, in head order; within a group
 * heaviest first in 16 cost classes (cost = kept key blocks of the block's row), heads together
 * within a class, so concurrent CTAs share K and V in L2; each batch element repeats the list.
 * The wgmma kernel's CTA c takes item c, then each next item from a counter (Params::claims) as it
 * starts the one before: the items running at one time stay a short stretch of the list, so they
 * share K and V in L2 as the list's order means them to. (A fixed snake, c, 2G-1-c, 2G+c, ..., let a
 * CTA whose items ran short take its next a round ahead of the rest: at Wan 14B's scattered 0.1
 * the CTAs spread over more of the list than L2 holds; docs/gpu.md, "Items claimed from a
 * counter".) The mma kernel keeps the snake. A computed block also writes its output to every
 * query block that reuses it; reused blocks are never computed.
 *
 * Split lists (the bf16/f16 wgmma launch, where one head's 16-bit K and V exceed half the L2, as
 * at Wan 14B): a scattered row long enough to pay for a second item, with at least a quarter of
 * its kept key blocks in each half of the keys, is two items. Head h's first halves (with its
 * rows not split but for those wholly in the second half, which go with its second halves) are
 * listed after head h - 2's second halves and before head h - 1's, and its second halves after
 * head h + 1's first: the CTAs running at one time read half a head, and a second half starts a
 * section after its first ended (docs/gpu.md, "Two passes over a head's key halves"). The first
 * half leaves its rows' unnormalized O, references and sums in a slot (one per (head mod 3, batch
 * element, query block)) and the second takes them from there; a count per slot orders them
 * (SplitSlots). */
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>
#include <algorithm>
#include <vector>

namespace calib_cuda_detail {

constexpr int kTokens = CALIB_TOKENS;
constexpr int kDim = CALIB_HEAD_DIM;
constexpr int kBlock = CALIB_BLOCK;
constexpr int kBlocks = CALIB_BLOCKS;
/* Text tokens at the end of the sequence whose padding a call may give (calib_attention_joint). */
constexpr int kTextLast = CALIB_TEXT_FIRST ? 0 : CALIB_TEXT_TOKENS;

/* One step's list of a (layer, head range), for a step the device chooses. */
struct StepWork {
    const int4 *items;
    const int32_t *targets;
    int64_t count; /* items of one batch element */
};

/* One work item: x = head | (kept key blocks << 12), y = query block | (reuse target count << 16),
 * z = pooled row (-1: every key block), w = offset of its targets in the targets array. In a
 * split list (kMaySplit) x also holds the part in bits 30-31 (0 the whole row, 1 the keys below
 * kMid, 2 those from kMid on) and in bits 24-29 the slot's use: the how-manieth split row of its
 * slot this is in the list. */
constexpr bool kMaySplit = kBlocks < 4096;
constexpr int kMid = kBlocks / 2;
constexpr int kMaxUses = 64;
__host__ __device__ __forceinline__ int item_blocks(int4 it) { return kMaySplit ? (it.x >> 12) & 0xfff : it.x >> 12; }
__host__ __device__ __forceinline__ int item_part(int4 it) { return kMaySplit ? (int)((unsigned)it.x >> 30) : 0; }
__host__ __device__ __forceinline__ int item_use(int4 it) { return (it.x >> 24) & (kMaxUses - 1); }
struct Params {
    const int4 *items;
    const int32_t *targets;
    /* Set when the step is chosen on the device (a captured graph replays any step): items,
     * targets and total come from by_step[*step_index] (clamped to the steps), read at start. */
    const StepWork *by_step;
    const int32_t *step_index;
    int32_t step_count;
    /* Valid text tokens per batch element (device memory), or null: tokens from kTokens - kTextLast
     * + text_lengths[b] on are padding, which no softmax sees and whose rows are zeros. */
    const int32_t *text_lengths;
    const int32_t *row_first;
    const uint16_t *spans;
    int64_t total;  /* items × batch */
    int32_t batch;
    int32_t out_vec16; /* out 16-byte aligned with strides multiples of 8: 16-byte stores */
    float scale_log2;
    const void *q, *k, *v;
    void *out;
    int64_t qs0, qs1, qs2, ks0, ks1, ks2, vs0, vs1, vs2, os0, os1, os2;
    /* FP8 launches: the scales quantize.cuh wrote (q per (batch, head, block of 128), k and v
     * per (batch, head)), v's mean (per (batch, head, channel)), its vᵀ panels, and the heads
     * of the caller's tensors; null otherwise. Last, so the fields above keep the offsets the
     * bf16/f16 kernels were measured with. */
    const float *qscale, *kscale, *vscale, *vmean;
    const uint8_t *vt;
    int32_t heads;
    /* FP8 launches: a flag per item and the list of the flagged ones (its count first): items
     * whose exponentials, taken ahead of their maxima, may have overflowed (softmax.cuh,
     * OnlineSoftmax::Ahead), which the redo launch computes again. */
    uint32_t *redo_flags;
    int32_t *redo_list;
    /* Split lists: the slots (SplitSlots) and their counts, zeroed before the launch; null else. */
    float *split_state;
    uint32_t *split_counts;
    /* FP8 launches with Q Kᵀ on e4m3: each head's channels apart (quantize.cuh), whose bf16 step
     * runs only where the head has any; null otherwise. */
    const uint8_t *apart;
    /* The wgmma kernel's count of items taken after the grid's first, zeroed before the launch. */
    unsigned long long *claims;
};

/* A slot holds, for each of the 256 consumer threads, its O accumulators (kDim / 2) and its rows'
 * references and sums, as float4 columns (chunk j of every thread, then chunk j + 1), so a warp's
 * stores and loads are whole lines. Its count (zeroed before the launch) orders the halves: each
 * consumer thread adds 1 once its stores (first half) or loads (second) are done, so use u's
 * first half finds 512u (free) and its second 512u + 256 (filled), which the producer waits for
 * before it loads the item. */
struct SplitSlots {
    static constexpr int kSets = 3; /* a head's slots are free again two sections before the next use */
    static constexpr int kChunks = kDim / 8 + 1;
    static constexpr int64_t kFloats = (int64_t)kChunks * 256 * 4;
    static __host__ __device__ int64_t count(int64_t batch) { return kSets * batch * kBlocks; }
    static __device__ __forceinline__ int64_t slot(int h, int b, int batch, int qb) { return ((int64_t)(h % kSets) * batch + b) * kBlocks + qb; }
};

/* ---- device: the grid's walk over the items ---- */

/* p with the list of the step *p.step_index when the device chooses it, else p. */
__device__ __forceinline__ Params with_step(const Params &p) {
    Params w = p;
    if (p.by_step) {
        const int i = min(max(__ldg(p.step_index), 0), p.step_count - 1);
        const StepWork s = p.by_step[i];
        w.items = s.items;
        w.targets = s.targets;
        w.total = s.count * p.batch;
    }
    return w;
}

/* Where batch element b's valid tokens end: the sequence's end, or where its padded text begins
 * (a length outside 0 ..= kTextLast is clamped to it). */
__device__ __forceinline__ int valid_end(const Params &p, int b) {
    if constexpr (kTextLast == 0) {
        return kTokens;
    } else {
        if (!p.text_lengths) return kTokens;
        return kTokens - kTextLast + min(max(__ldg(p.text_lengths + b), 0), kTextLast);
    }
}

/* The mma kernel's item of a round: the snake. */
__host__ __device__ __forceinline__ int64_t item_index(int64_t round, int64_t grid, int64_t cta) {
    return round * grid + ((round & 1) ? grid - 1 - cta : cta);
}

__device__ __forceinline__ int4 load_item(const Params &p, int64_t idx, int &b) {
    if (p.batch == 1) { b = 0; return p.items[idx]; }
    b = (int)(idx % p.batch);
    return p.items[idx / p.batch];
}

/* The spans [first, last) of a pooled row; row -1 is one span of every key block (span -1). */
__device__ __forceinline__ void row_spans(const Params &p, int row, int &first, int &last) {
    if (row < 0) { first = -1; last = 0; } else { first = p.row_first[row]; last = p.row_first[row + 1]; }
}
__device__ __forceinline__ void span_at(const Params &p, int i, int &lo, int &hi) {
    if (i < 0) { lo = 0; hi = kBlocks; } else { lo = p.spans[2 * i]; hi = p.spans[2 * i + 1]; }
}

/* ---- host: the list ---- */

/* A row's kept key blocks below `mid` (all of them with mid = kBlocks). */
inline int row_cost(int row, int mid = kBlocks) {
    if (row < 0) return mid;
    int cost = 0;
    for (int i = calib_row_first[row]; i < calib_row_first[row + 1]; ++i)
        cost += std::max(0, std::min<int>(calib_spans[2 * i + 1], mid) - calib_spans[2 * i]);
    return cost;
}

/* The items of heads first_head ..< first_head + heads of one (step, layer) (dense when
 * step_index < 0), and in `targets` the reuse targets they name: every computed query block of
 * every head, heaviest first (a reuse target's stores count 1/16 of a key block). An item's head
 * is its index in the caller's tensors (h - first_head): a context-parallel rank holds a slice.
 * split: a split list (above), for plans only, of its scattered rows (kSplitScattered) or of every
 * row with a quarter of its blocks on each side (kSplitEvery: the tests' small shapes). */
enum SplitMode { kSplitNone, kSplitScattered, kSplitEvery };
/* A row is scattered when its kept blocks come in runs of at most this many on average: Wan 14B's
 * scattered rows (runs of 1.1-2) gained 4.5-6.5% split (docs/gpu.md, run 88); its calibrated-like
 * rows, a run or two per latent frame (5-13 blocks), whose neighbours read the same keys, lost up
 * to 22%. A count of spans would misjudge them: HunyuanVideo 720p's 33 latent frames give its
 * calibrated-like rows 34 spans, as many as a scattered row of Wan 14B. */
constexpr int kScatteredRun = 3;
/* ... with at least this many kept blocks: a second item's start and end cost about 2.3 tiles, and
 * on an H200 Wan 14B's scattered 0.1 rows (59 blocks) ran 3% slower split, its 0.2 rows (118)
 * 1.5% faster (docs/gpu.md, run 92). */
constexpr int kSplitMinBlocks = 96;
inline std::vector<int4> work_list(int step_index, int layer, int first_head, int heads, int l2_bytes, int split,
                                   std::vector<int32_t> &targets) {
    struct Entry { int cost; int4 item; int section; };
    if (!kMaySplit || step_index < 0) split = kSplitNone;
    std::vector<int> uses(split ? SplitSlots::kSets * kBlocks : 0, 0); /* per (head mod kSets, query block) */
    std::vector<Entry> entries;
    entries.reserve((size_t)heads * kBlocks);
    for (int h = 0; h < heads; ++h) {
        if (step_index < 0) {
            for (int qb = 0; qb < kBlocks; ++qb) entries.push_back({kBlocks, make_int4(h | (kBlocks << 12), qb, -1, 0), 0});
            continue;
        }
        const calib_plan &plan =
            calib_plans[calib_dispatch[((int64_t)step_index * CALIB_LAYERS + layer) * CALIB_HEADS + first_head + h]];
        std::vector<char> reused(kBlocks, 0);
        for (int i = 0; i < plan.reuse_count; ++i) reused[plan.reuse[2 * i + 1]] = 1;
        const size_t head_first = entries.size();
        bool head_split = false;
        int r = 0; /* reuse pairs are sorted by source */
        for (int qb = 0; qb < kBlocks; ++qb) {
            if (reused[qb]) continue;
            while (r < plan.reuse_count && plan.reuse[2 * r] < qb) ++r;
            const int toff = (int)targets.size();
            int nt = 0;
            for (; r < plan.reuse_count && plan.reuse[2 * r] == qb; ++r, ++nt) targets.push_back(plan.reuse[2 * r + 1]);
            const int row = (int)plan.rows[qb];
            const int cost = row_cost(row), low = split ? row_cost(row, kMid) : cost;
            const bool scattered = split == kSplitEvery || (row >= 0 && cost >= kSplitMinBlocks &&
                                                            cost <= kScatteredRun * (calib_row_first[row + 1] - calib_row_first[row]));
            if (split && scattered && 4 * low >= cost && 4 * (cost - low) >= cost && low > 0 && low < cost) {
                head_split = true;
                const int u = uses[(h % SplitSlots::kSets) * kBlocks + qb]++;
                if (u >= kMaxUses) return work_list(step_index, layer, first_head, heads, l2_bytes, kSplitNone, targets = {});
                const int tag = (u << 24) | h;
                entries.push_back({low * 16, make_int4(tag | (low << 12) | (1 << 30), qb, row, 0), 0});
                entries.push_back({(cost - low) * 16 + nt, make_int4(tag | ((cost - low) << 12) | (2 << 30), qb | (nt << 16), row, toff), 1});
            } else {
                /* Not split: with the second halves if it reads only keys from the middle on. */
                entries.push_back({cost * 16 + nt, make_int4(h | (cost << 12), qb | (nt << 16), row, toff), split && low == 0});
            }
        }
        if (!head_split) /* a head with no row split keeps the unsplit order */
            for (size_t i = head_first; i < entries.size(); ++i) entries[i].section = 0;
    }
    /* Heaviest first, in 16 cost classes; within a class heads stay together (the entries are in
     * head order), so the CTAs running at one time share their heads' K and V in L2. Classes
     * spanning every head would read each head's K and V from memory once a class where scattered
     * plans spread a head's rows over all classes (docs/gpu.md, "The work order"), so they are
     * taken within groups of heads whose K and V (16-bit) fit in L2 together. */
    int max_cost = 1;
    for (const Entry &e : entries) max_cost = std::max(max_cost, e.cost);
    for (Entry &e : entries) e.cost = (int)((int64_t)e.cost * 16 / (max_cost + 1));
    /* Split lists: sections by head, head h's first halves at 2h and its second at 2h + 3. */
    const int group = split ? 1 : std::max<int64_t>(1, l2_bytes / ((int64_t)kTokens * kDim * 4));
    auto phase = [group](const Entry &e) { return e.section ? 2 * (e.item.x & 0xfff) + 3 : 2 * ((e.item.x & 0xfff) / group); };
    std::stable_sort(entries.begin(), entries.end(), [&phase](const Entry &a, const Entry &b) {
        const int pa = phase(a), pb = phase(b);
        return pa != pb ? pa < pb : a.cost > b.cost;
    });
    std::vector<int4> items(entries.size());
    for (size_t i = 0; i < entries.size(); ++i) items[i] = entries[i].item;
    return items;
}

/* The pooled rows the plans' computed blocks name (the tables give no row count). */
inline int rows_in_use() {
    int nrows = 0;
    for (int pi = 0; pi < CALIB_PLANS; ++pi) {
        std::vector<char> reused(kBlocks, 0);
        for (int i = 0; i < calib_plans[pi].reuse_count; ++i) reused[calib_plans[pi].reuse[2 * i + 1]] = 1;
        for (int qb = 0; qb < kBlocks; ++qb)
            if (!reused[qb]) nrows = std::max(nrows, (int)calib_plans[pi].rows[qb] + 1);
    }
    return nrows;
}

} // namespace calib_cuda_detail
