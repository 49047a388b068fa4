#!/usr/bin/env python3
"""Stage removal for the lab notebook (issue 29: what bounds the wgmma kernel's loop, where
Nsight Compute cannot run): copies of a compiled set whose wgmma kernel leaves one stage out,
each timed beside the set itself by bench_versions.py. Their outputs are wrong by design; only
their times mean anything.

  no-softmax   P = S packed as it is: no maxima, exponentials, sums or rescaling
  no-pv        no P V products
  no-qk        no Q Kᵀ products (S left at zero)
  softmax-only neither product: the softmax alone, with its waits and turns
  loads-only   neither product nor the softmax: the loop's loads, waits, turns and P's packing
               (is the rate K and V come from L2 what both halves run into?)
  skeleton     loads-only with no-loads' producer (K and V copied only into each stage's first
               tiles, its barriers still passed): the loop's handshakes, windows and P's packing
               with no traffic (the consumers must still wait, or they pass an empty barrier's
               phase twice before the producer looks and it never sees it: run 91 hung so)
  no-loads     K and V loaded into each stage once (a CTA's first tiles), then never again (the
               producer arrives on their barriers with no bytes): all of the loop's arithmetic
               and none of its traffic
  no-pingpong  the bf16/f16 warpgroups issue their products without taking turns (FP8 takes none)
  fp8-turns    the FP8 warpgroups take turns as bf16's do (correct output): since P's codes need no
               exponentials (v21), does a softmax short enough to hide under the other warpgroup's
               products make the turns pay again (3% slower in run 64, v16)?
  pack-trunc   P packed to bf16 by truncation (one byte permute a pair) instead of cvt.rn
               (F2FP): is the conversion on the special-function unit's path?
  half-ex2     half the exponentials replaced by a multiply: how much the exponentials weigh
  half-span    each row's first half of its kept key blocks only (producer and consumers alike)
  half-stride  every other kept key block of each row, as many as half-span: the same work over the
               whole head's K and V where half-span's reads half of it (Wan 14B: is it the working
               set that costs the scattered plans memory traffic and clock?)
  head-major   the work list ordered head by head (heaviest first within a head) instead of in
               groups of the heads whose K and V fit in L2 (correct output)
  all-heads    the 16 cost classes across all heads, as before the groups (correct output)
  fma-exp2-eighth, fma-exp2-quarter, fma-exp2-half
               an eighth (a quarter, half) of the exponentials computed on the FMA units (a
               degree-3 polynomial of the fraction, the integer part added to the exponent bits;
               relative error 1.0e-4) instead of the special-function unit: correct output
  fma2-exp2-quarter
               a quarter so with a degree-2 polynomial (relative error 1.7e-3: below e4m3's
               rounding of P, so correct for the FP8 instances, not for bf16)
  stale-max    the exponentials taken against the row's reference before the tile, so they need
               not wait for the tile's maxima (wrong where a maximum moves: what exponentials
               ahead of the maxima would gain before the corrections they need; docs/gpu.md; `fp8`
               takes them so already, with the corrections)

usage: python3 Tests/GPU/ablate.py SET_DIR [VARIANT ...]   (default: every variant; writes
       SET_DIR-<variant>/ beside it and prints the bench_versions.py arguments for the set and
       each variant)"""
import os
import shutil
import sys

SOFTMAX = """                moved = sm.exponentiate<kGroups, (kTextLast > 0), Ops::kLog2Gain, Ops::kSlack, !Ops::kTensorSums, kAhead && kPV,
                                        kCodes, kSumRef && kPV>(sc, scale, f0, f1, ahead);"""
NO_SOFTMAX = """                moved = false;"""
PV = """                Ops::pv(o, pa, dv0 + sp * kVDesc);"""
QK = """                Ops::qk(sc, dq, dk0 + s * kKDesc, apart);"""
ZERO_S = """#pragma unroll
                for (int e = 0; e < 64; ++e) sc[e] = 0.f;"""
K_LOADS = """            mbar_expect_tx(r.k_full(stage), apart ? Ops::kKBytes : Ops::kKBytesAlone);
#pragma unroll
            for (int k = 0; k < kSubs; ++k) Ops::load_k(r.sk + stage * Ops::kKBytes, k, &tk, r.k_full(stage), row0[k], h, b);
            if constexpr (Ops::kQkFp8) {
                if (apart) {
#pragma unroll
                    for (int k = 0; k < kSubs; ++k) Ops::load_kx(r.sk + stage * Ops::kKBytes, k, &tv, r.k_full(stage), row0[k], h, b);
                }
            }"""
V_LOADS = """            mbar_expect_tx(r.v_full(stage), Ops::kVBytes);
#pragma unroll
            for (int k = 0; k < kSubs; ++k) Ops::load_v(r.sv + stage * Ops::kVStage, k, &tv, p, r.v_full(stage), row0[k], h, b);"""
ONCE = "round == 0 && first < kStages * kSubs"
NO_K_LOADS = K_LOADS.replace("apart ? Ops::kKBytes : Ops::kKBytesAlone);", f"{ONCE} ? (apart ? Ops::kKBytes : Ops::kKBytesAlone) : 0);") \
    .replace(") Ops::load_k(", f") if ({ONCE}) Ops::load_k(").replace(") Ops::load_kx(", f") if ({ONCE}) Ops::load_kx(")
NO_V_LOADS = V_LOADS.replace("Ops::kVBytes);", f"{ONCE} ? Ops::kVBytes : 0);").replace(") Ops::load_v", f") if ({ONCE}) Ops::load_v")
NSUB = "nsub = item_blocks(it) * (128 / kSub);"
HALF_NSUB = "nsub = ((item_blocks(it) + 1) / 2) * (128 / kSub);"
NTILES = "ntiles = (item_blocks(it) * (128 / kSub) + kSubs - 1) / kSubs;"
HALF_NTILES = "ntiles = (((item_blocks(it) + 1) / 2) * (128 / kSub) + kSubs - 1) / kSubs;"
NEXT_BLOCK = """            sub = 0;
            ++kb;
        }
        return first;"""
SKIP_BLOCK = """            sub = 0;
            ++kb;
            if (kb >= hi && i + 1 < last) span_at(p, ++i, kb, hi);
            ++kb;
        }
        return first;"""
TURNS = """    static constexpr bool kTurns = true; /* the warpgroups take turns at the tensor cores (consume) */"""
NO_TURNS = """    static constexpr bool kTurns = false;"""
FP8_TURNS = """    static constexpr bool kTurns = true;"""

PACK = """        pa[2 * g] = Pack<T>::two(e0, e1);
        pa[2 * g + 1] = Pack<T>::two(e2, e3);"""
TRUNC = """        pa[2 * g] = __byte_perm(__float_as_uint(e0), __float_as_uint(e1), 0x7632);
        pa[2 * g + 1] = __byte_perm(__float_as_uint(e2), __float_as_uint(e3), 0x7632);"""
EX2 = """            s[4 * j + 1] = fast_exp2(fmaf(s[4 * j + 1], scale_log2, -g0));"""
EX2_HALF = """            s[4 * j + 1] = s[4 * j] * s[4 * j + 1];"""
EX2_3 = """            s[4 * j + 3] = fast_exp2(fmaf(s[4 * j + 3], scale_log2, -g1));"""
EX2_3_HALF = """            s[4 * j + 3] = s[4 * j + 2] * s[4 * j + 3];"""

FMA_EXP2 = """__device__ __forceinline__ float fma_exp2(float x) {
    const float xc = fmaxf(x, -127.f);
    const float t = xc + 12582912.f; /* 1.5 * 2^23: xc rounded to an integer j, held in t's low bits */
    const float f = xc - (t - 12582912.f);
    const float p = fmaf(fmaf(fmaf(0.05592203512787819f, f, 0.24264007806777954f), f, 0.6931210160255432f), f,
                         0.9999244809150696f);
    return x < -127.f ? 0.f : __int_as_float(__float_as_int(p) + (__float_as_int(t) << 23));
}

struct OnlineSoftmax {"""
CUBIC = "fmaf(fmaf(fmaf(0.05592203512787819f, f, 0.24264007806777954f), f, 0.6931210160255432f), f,\n                         0.9999244809150696f)"
assert CUBIC in FMA_EXP2  # the degree-2 variant below is the degree-3 one with this replaced
FMA2_EXP2 = FMA_EXP2.replace(CUBIC, "fmaf(fmaf(0.23841807f, f, 0.70342755f), f, 1.0004423f)")
FMA_E1_EIGHTH = """            s[4 * j + 1] = (j & 1) ? fast_exp2(fmaf(s[4 * j + 1], scale_log2, -g0)) : fma_exp2(fmaf(s[4 * j + 1], scale_log2, -g0));"""
FMA_E1 = """            s[4 * j + 1] = fma_exp2(fmaf(s[4 * j + 1], scale_log2, -g0));"""
FMA_E3 = """            s[4 * j + 3] = fma_exp2(fmaf(s[4 * j + 3], scale_log2, -g1));"""

GAIN = """        const float g0 = (kAhead ? a0 : b0) - (float)kLog2Gain, g1 = (kAhead ? a1 : b1) - (float)kLog2Gain;"""
STALE_GAIN = """        const float g0 = a0 - (float)kLog2Gain, g1 = a1 - (float)kLog2Gain;"""

GROUP = """    const int group = split ? 1 : std::max<int64_t>(1, l2_bytes / ((int64_t)kTokens * kDim * 4));"""
BY_HEAD = """    const int group = 1;"""
ALL_HEADS = """    const int group = split ? 1 : 4096;"""

VARIANTS = {
    "no-softmax": [(SOFTMAX, NO_SOFTMAX)],
    "no-pv": [(PV, "")],
    "no-qk": [(QK, ZERO_S)],
    "softmax-only": [(PV, ""), (QK, ZERO_S)],
    "loads-only": [(PV, ""), (QK, ZERO_S), (SOFTMAX, NO_SOFTMAX)],
    "skeleton": [(PV, ""), (QK, ZERO_S), (SOFTMAX, NO_SOFTMAX), (K_LOADS, NO_K_LOADS), (V_LOADS, NO_V_LOADS)],
    "no-loads": [(K_LOADS, NO_K_LOADS), (V_LOADS, NO_V_LOADS)],
    "no-pingpong": [(TURNS, NO_TURNS)],
    "fp8-turns": [(NO_TURNS, FP8_TURNS)],
    "pack-trunc": [(PACK, TRUNC)],
    "half-ex2": [(EX2, EX2_HALF), (EX2_3, EX2_3_HALF)],
    "half-span": [(NSUB, HALF_NSUB), (NTILES, HALF_NTILES)],
    "half-stride": [(NSUB, HALF_NSUB), (NTILES, HALF_NTILES), (NEXT_BLOCK, SKIP_BLOCK)],
    "head-major": [(GROUP, BY_HEAD)],
    "all-heads": [(GROUP, ALL_HEADS)],
    "fma-exp2-eighth": [("struct OnlineSoftmax {", FMA_EXP2), (EX2, FMA_E1_EIGHTH)],
    "fma2-exp2-quarter": [("struct OnlineSoftmax {", FMA2_EXP2), (EX2, FMA_E1)],
    "fma-exp2-quarter": [("struct OnlineSoftmax {", FMA_EXP2), (EX2, FMA_E1)],
    "fma-exp2-half": [("struct OnlineSoftmax {", FMA_EXP2), (EX2, FMA_E1), (EX2_3, FMA_E3)],
    "stale-max": [(GAIN, STALE_GAIN)],
}


def main():
    src = sys.argv[1].rstrip("/")
    name = os.path.basename(src)
    files = {f: open(os.path.join(src, f)).read() for f in ("wgmma_kernel.cuh", "softmax.cuh", "work.cuh")}
    args = [f"{name}={src}/libcalibcuda.so:{src}.json"]
    for variant in sys.argv[2:] or VARIANTS:
        texts = dict(files)
        for old, new in VARIANTS[variant]:
            where = [f for f, text in texts.items() if old in text]
            if not where:
                sys.exit(f"{variant}: the kernel no longer has the code this variant removes:\n{old}")
            texts[where[0]] = texts[where[0]].replace(old, new)
        dst = f"{src}-{variant}"
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.so"))
        for f, text in texts.items():
            with open(os.path.join(dst, f), "w") as out:
                out.write(text)
        args.append(f"{name}-{variant}={dst}/libcalibcuda.so:{src}.json")
    print(" ".join(args))


if __name__ == "__main__":
    main()
