/* work_list_check.cu: work.cuh's split lists for every (step, layer) of a set's tables, checked on
 * the host (no GPU): each row's items add up to its kept blocks, and every wait of the kernel's
 * producer (a first half for its slot's previous second half, a second half for its first) is
 * for an item earlier in the list, for one batch element and two; so the earliest unfinished item
 * never waits and no launch can hang (run 87's did, on a list whose first halves of one head
 * waited for second halves listed after them). It also runs the wgmma kernel's grid in time (CTA
 * c's first item is c, and each CTA takes its next from the counter as it starts one; an item
 * takes its kept blocks plus one) with those waits and prints the share of the CTAs' time spent
 * waiting, the split's cost that the list order decides.
 * usage (cuda_check.sh does it): nvcc -std=c++17 -L NVCC_DIR/../lib -I SET -I SET/include
 *     Tests/GPU/work_list_check.cu SET/calib_schedule.c -o CHECK && CHECK [--every] [--ctas N] [--layers]
 * --every: every row with a quarter of its blocks on each side split (CALIB_CUDA_SPLIT=1), not
 * only the scattered ones; --layers: a line per (step, layer). */
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <queue>
#include <tuple>

extern "C" {
#include "calib_internal.h"
}
#include "work.cuh"

using namespace calib_cuda_detail;

namespace {

int failures = 0;

void fail(int step, int layer, const char *what) {
    if (++failures <= 10) fprintf(stderr, "step index %d layer %d: %s\n", step, layer, what);
}

/* For each item of one batch element, the index of the item it waits for, or -1. */
std::vector<int64_t> waits_of(const std::vector<int4> &items, int step, int layer) {
    std::vector<int64_t> on(items.size(), -1);
    /* per (head mod kSets, query block): use -> (first half index, second half index) */
    std::map<std::pair<int, int>, std::map<int, std::pair<int64_t, int64_t>>> slots;
    for (size_t i = 0; i < items.size(); ++i) {
        const int4 it = items[i];
        const int part = item_part(it);
        if (part == 0) continue;
        auto &use = slots[{(it.x & 0xfff) % SplitSlots::kSets, it.y & 0xffff}][item_use(it)];
        if (part == 1) use.first = (int64_t)i + 1; else use.second = (int64_t)i + 1; /* 0: not seen */
    }
    for (auto &slot : slots) {
        int expect = 0;
        int64_t prev_second = 0;
        for (auto &use : slot.second) {
            if (use.first != expect++) fail(step, layer, "a slot's uses are not 0, 1, 2, ...");
            const int64_t f = use.second.first, s = use.second.second;
            if (!f || !s) { fail(step, layer, "a split row lacks a half"); continue; }
            on[f - 1] = prev_second - 1; /* -1 for the first use */
            on[s - 1] = f - 1;
            prev_second = s;
        }
    }
    return on;
}

/* The share of the CTAs' time spent waiting, with `batch` elements (index item * batch + b). */
double stall_share(const std::vector<int4> &items, const std::vector<int64_t> &on, int batch, int ctas, int step, int layer) {
    const int64_t total = (int64_t)items.size() * batch;
    const int64_t grid = std::min<int64_t>(ctas, total);
    std::vector<double> free_at(grid, 0.0), end(total, 0.0);
    double waited = 0.0, busy = 0.0;
    /* (when, CTA): the counter's claims in the order they reach it */
    std::priority_queue<std::pair<double, int64_t>, std::vector<std::pair<double, int64_t>>, std::greater<>> claims;
    auto run = [&](int64_t c, int64_t idx) {
        const int64_t item = idx / batch, b = idx % batch;
        double start = free_at[c];
        if (on[item] >= 0) {
            const int64_t dep = on[item] * batch + b;
            if (dep >= idx) fail(step, layer, "an item waits for one listed after it");
            else if (end[dep] > start) { waited += end[dep] - start; start = end[dep]; }
        }
        const double len = item_blocks(items[item]) + 1.0;
        end[idx] = free_at[c] = start + len;
        busy += len;
        claims.push({start, c});
    };
    for (int64_t c = 0; c < grid; ++c) run(c, c);
    for (int64_t next = grid; next < total; ++next) {
        const int64_t c = claims.top().second;
        claims.pop();
        run(c, next);
    }
    return waited / (waited + busy);
}

} // namespace

int main(int argc, char **argv) {
    int mode = kSplitScattered, ctas = 132;
    bool layers = false;
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--every")) mode = kSplitEvery;
        else if (!strcmp(argv[i], "--layers")) layers = true;
        else if (!strcmp(argv[i], "--ctas") && i + 1 < argc) ctas = atoi(argv[++i]);
        else { fprintf(stderr, "usage: %s [--every] [--ctas N] [--layers]\n", argv[0]); return 2; }
    }
    if (!kMaySplit) {
        printf("work_list_check: no split lists for this set (kMaySplit false)\n");
        return 0;
    }
    int split_rows = 0;
    double worst = 0.0;
    uint64_t hash = 1469598103934665603ull; /* FNV-1a over every list: a rule change that should move no row shows it */
    for (int step = 0; step < CALIB_STEPS; ++step)
        for (int layer = 0; layer < CALIB_LAYERS; ++layer) {
            std::vector<int32_t> targets, plain_targets;
            const std::vector<int4> items = work_list(step, layer, 0, CALIB_HEADS, 50 << 20, mode, targets);
            const std::vector<int4> plain = work_list(step, layer, 0, CALIB_HEADS, 50 << 20, kSplitNone, plain_targets);
            /* Each row's blocks: its items' (part 1 those below kMid) add up to the plain item's. */
            std::map<std::pair<int, int>, int> blocks, low;
            for (const int4 &it : items) {
                for (const int v : {it.x, it.y, it.z, it.w}) hash = (hash ^ (uint32_t)v) * 1099511628211ull;
                blocks[{it.x & 0xfff, it.y & 0xffff}] += item_blocks(it);
                if (item_part(it) == 1) low[{it.x & 0xfff, it.y & 0xffff}] += item_blocks(it);
                split_rows += item_part(it) == 1;
            }
            if (targets != plain_targets) fail(step, layer, "the reuse targets differ from the plain list's");
            for (const int4 &it : plain) {
                const std::pair<int, int> key{it.x & 0xfff, it.y & 0xffff};
                if (blocks[key] != item_blocks(it)) fail(step, layer, "a row's items do not add up to its kept blocks");
                if (low.count(key) && low[key] != row_cost(it.z, kMid)) fail(step, layer, "a first half is not the row's blocks below the middle");
            }
            const std::vector<int64_t> on = waits_of(items, step, layer);
            for (int batch = 1; batch <= 2; ++batch) {
                const double share = stall_share(items, on, batch, ctas, step, layer);
                if (batch == 1 && layers) printf("step index %d layer %d: %zu items, waiting %.4f of the CTAs' time\n", step, layer, items.size(), share);
                worst = std::max(worst, share);
            }
        }
    printf("work_list_check: %s, %d rows split, waiting at most %.4f, lists %016llx; %d failures\n",
           mode == kSplitEvery ? "every balanced row" : "scattered rows", split_rows, worst, (unsigned long long)hash, failures);
    return failures ? 1 : 0;
}
