import CBench
import CalibIR
import CalibRuntime
import CalibSupport
import Foundation
import XCTest

final class KernelTests: XCTestCase {
    /// Random plans (with reuse) against the float64 answer of each plan, for shapes where the
    /// last block is partial, head_dim 64 and 128, and blocks of 32 and 64.
    func testKernelsMatchTheFloat64ReferenceOfEachPlan() throws {
        var rng = SplitMix64(seed: freshSeed(#function))
        for (tokens, headDim, block) in [(300, 64, 64), (200, 128, 32), (256, 64, 64), (70, 16, 16)] {
            let blocks = (tokens + block - 1) / block
            let partial = tokens % block != 0
            let plans = (0..<3).map { randomPlan("r\($0)", blocks: blocks, partialLast: partial, reuse: $0 > 0, rng: &rng) }
            let program = Program(model: "t", shape: Shape(tokens: tokens, headDim: headDim, block: block, layers: 1, heads: 3, steps: [4]),
                                  plans: plans, dispatch: [0, 1, 2], sourceHash: "h")
            let (kernels, optimized) = try loadKernels(program)
            let q = rng.floats(tokens * headDim, scale: 2), k = rng.floats(tokens * headDim, scale: 2), v = rng.floats(tokens * headDim)
            for head in 0..<3 {
                let out = try runHead(kernels, step: 4, head: head, q: q, k: k, v: v)
                XCTAssertFalse(out.contains { !$0.isFinite }, "a row was left unwritten")
                let exact = Reference.attention(of: optimized.plan(stepIndex: 0, layer: 0, head: head), q: q, k: k, v: v,
                                                tokens: tokens, headDim: headDim, block: block)
                let error = Reference.relativeError(out, exact)
                XCTAssertLessThan(error, 1e-5, "tokens \(tokens) head_dim \(headDim) block \(block) head \(head)")
            }
        }
    }

    /// Every instruction-set instance this machine runs (CALIBC_ISA caps the choice), fp32 and
    /// bfloat16 inputs against the float64 answer on the same (rounded) values: bf16 widened to
    /// fp32 meets the fp32 bound; the AVX-512 BF16 instance rounds P to bf16 (2^-9 relative).
    func testEveryInstructionSetAndBFloat16Inputs() throws {
        var rng = SplitMix64(seed: freshSeed(#function))
        for (tokens, headDim, block) in [(301, 64, 64), (200, 128, 32)] {
            let blocks = (tokens + block - 1) / block
            let plans = [densePlan(blocks: blocks), randomPlan("r", blocks: blocks, partialLast: tokens % block != 0, reuse: true, rng: &rng)]
            let program = Program(model: "t", shape: Shape(tokens: tokens, headDim: headDim, block: block, layers: 1, heads: 2, steps: [0]),
                                  plans: plans, dispatch: [0, 1], sourceHash: "h")
            let q = rng.floats(tokens * headDim, scale: 2).map(BFloat16.init), k = rng.floats(tokens * headDim, scale: 2).map(BFloat16.init)
            let v = rng.floats(tokens * headDim).map(BFloat16.init)
            let (qf, kf, vf) = (q.map(\.float), k.map(\.float), v.map(\.float))
            var seen: [String] = []
            for isa in ["avx512-bf16", "avx512", "avx2", "sse", "portable"] {
                let (kernels, optimized) = try loadKernels(program, isa: isa)
                seen.append(kernels.isa)
                let (flags, bound) = (kernels.isa, kernels.isa == "avx512-bf16" ? 4e-3 : 1e-5)
                for head in 0..<2 {
                    let exact = Reference.attention(of: optimized.plan(stepIndex: 0, layer: 0, head: head), q: qf, k: kf, v: vf,
                                                    tokens: tokens, headDim: headDim, block: block)
                    let out = try runHeadBF16(kernels, step: 0, head: head, q: q, k: k, v: v)
                    let error = Reference.relativeError(out, exact)
                    if head == 1 { print("bf16 inputs, \(flags), tokens \(tokens): relative error \(error)") }
                    XCTAssertLessThan(error, bound, "bf16 \(flags) tokens \(tokens) head \(head)")
                    let out32 = try runHead(kernels, step: 0, head: head, q: qf, k: kf, v: vf)
                    XCTAssertLessThan(Reference.relativeError(out32, exact), 1e-5, "fp32 \(flags) tokens \(tokens) head \(head)")
                }
            }
            XCTAssertTrue(seen.contains("portable") && seen.contains("sse"), "\(seen)")
        }
    }

    func testAllDensePlanEqualsDenseAttention() throws {
        var rng = SplitMix64(seed: freshSeed(#function))
        for (tokens, headDim) in [(333, 64), (190, 128)] {
            let block = 64, blocks = (tokens + block - 1) / block
            let program = Program(model: "t", shape: Shape(tokens: tokens, headDim: headDim, block: block, layers: 1, heads: 1, steps: [0]),
                                  plans: [densePlan(blocks: blocks)], dispatch: [0], sourceHash: "h")
            let (kernels, _) = try loadKernels(program)
            let q = rng.floats(tokens * headDim, scale: 3), k = rng.floats(tokens * headDim, scale: 3), v = rng.floats(tokens * headDim)
            let reference = Reference.attention(q: q, k: k, v: v, tokens: tokens, headDim: headDim)
            XCTAssertLessThan(Reference.relativeError(try runHead(kernels, step: 0, head: 0, q: q, k: k, v: v), reference), 1e-5)
            var dense = [Float](repeating: .nan, count: tokens * headDim)
            try withBuffers(q, k, v, &dense) { try kernels.denseAttention(q: $0, k: $1, v: $2, out: $3, tokens: tokens, headDim: headDim) }
            XCTAssertLessThan(Reference.relativeError(dense, reference), 1e-5)
        }
    }

    /// NaN and huge values planted in every key/value block a plan skips change nothing.
    func testSkippedTilesAreNeverRead() throws {
        var rng = SplitMix64(seed: freshSeed(#function))
        let (tokens, d, block) = (300, 64, 32)
        let blocks = 10
        // Every row keeps key blocks in [0, 4) ∪ [7, 8); 4, 5, 6, 8 and the partial 9 are skipped by all.
        let rows: [Row] = (0..<blocks).map { q in
            q == 3 ? .reuse(1) : .compute(q % 2 == 0 ? [Span(0, 4), Span(7, 8)] : [Span(q % 4, q % 4 + 1)])
        }
        let program = Program(model: "t", shape: Shape(tokens: tokens, headDim: d, block: block, layers: 1, heads: 1, steps: [0]),
                              plans: [Plan(name: "p", rows: rows)], dispatch: [0], sourceHash: "h")
        let (kernels, optimized) = try loadKernels(program)
        let q = rng.floats(tokens * d), k = rng.floats(tokens * d), v = rng.floats(tokens * d)
        let clean = try runHead(kernels, step: 0, head: 0, q: q, k: k, v: v)
        var (kp, vp) = (k, v)
        for kb in [4, 5, 6, 8, 9] {
            for t in (kb * block)..<min(tokens, (kb + 1) * block) {
                for c in 0..<d {
                    kp[t * d + c] = c % 2 == 0 ? .nan : 1e30
                    vp[t * d + c] = c % 2 == 0 ? .infinity : .nan
                }
            }
        }
        let poisoned = try runHead(kernels, step: 0, head: 0, q: q, k: kp, v: vp)
        XCTAssertEqual(poisoned, clean)
        let exact = Reference.attention(of: optimized.plans[0], q: q, k: k, v: v, tokens: tokens, headDim: d, block: block)
        XCTAssertLessThan(Reference.relativeError(poisoned, exact), 1e-5)
    }

    func testReusedRowsEqualTheirSource() throws {
        var rng = SplitMix64(seed: freshSeed(#function))
        let (tokens, d, block) = (260, 64, 64)
        // q1 → q0 directly; q3 → q2 → q0 is a chain the compiler collapses; q4 is partial.
        let rows: [Row] = [.compute([Span(0, 5)]), .reuse(0), .reuse(0), .reuse(2), .compute([Span(2, 5)])]
        let program = Program(model: "t", shape: Shape(tokens: tokens, headDim: d, block: block, layers: 1, heads: 1, steps: [0]),
                              plans: [Plan(name: "p", rows: rows)], dispatch: [0], sourceHash: "h")
        let (kernels, _) = try loadKernels(program)
        let out = try runHead(kernels, step: 0, head: 0, q: rng.floats(tokens * d), k: rng.floats(tokens * d), v: rng.floats(tokens * d))
        let rowsOf = { (b: Int) in Array(out[(b * block * d)..<((b + 1) * block * d)]) }
        XCTAssertFalse(rowsOf(0).contains { $0.isNaN })
        for target in 1...3 { XCTAssertEqual(rowsOf(target), rowsOf(0), "q\(target)") }
    }

    /// Rows `stride` floats apart, as in a (tokens, heads, head_dim) tensor, give the packed answer.
    func testStridedBuffers() throws {
        var rng = SplitMix64(seed: freshSeed(#function))
        let (tokens, d, block, heads) = (200, 64, 64, 3)
        let plan = randomPlan("p", blocks: 4, partialLast: true, reuse: true, rng: &rng)
        let program = Program(model: "t", shape: Shape(tokens: tokens, headDim: d, block: block, layers: 1, heads: 1, steps: [0]),
                              plans: [plan], dispatch: [0], sourceHash: "h")
        let (kernels, _) = try loadKernels(program)
        let q = rng.floats(tokens * heads * d), k = rng.floats(tokens * heads * d), v = rng.floats(tokens * heads * d)
        let head = 1
        func pick(_ x: [Float]) -> [Float] {
            var out: [Float] = []
            for t in 0..<tokens {
                let start = (t * heads + head) * d
                out += x[start..<(start + d)]
            }
            return out
        }
        let packed = try runHead(kernels, step: 0, head: 0, q: pick(q), k: pick(k), v: pick(v))
        var out = [Float](repeating: .nan, count: tokens * heads * d)
        try withBuffers(q, k, v, &out) { qp, kp, vp, op in
            let offset = head * d
            try kernels.attention(step: 0, layer: 0, head: 0,
                                  q: UnsafeBufferPointer(rebasing: qp[offset...]), k: UnsafeBufferPointer(rebasing: kp[offset...]),
                                  v: UnsafeBufferPointer(rebasing: vp[offset...]), out: UnsafeMutableBufferPointer(rebasing: op[offset...]),
                                  tokens: tokens, headDim: d, stride: heads * d)
        }
        XCTAssertEqual(pick(out), packed)
        XCTAssertTrue(out[0..<d].allSatisfy(\.isNaN), "another head's rows were written")
    }
}

/// The layer entry: all (batch, head) of a (step, layer) in one call.
final class LayerCallTests: XCTestCase {
    /// Element (b, s, h, d) of a packed tensor in `layout` ("bshd" or "bhsd").
    private func strides(_ layout: String, tokens: Int, heads: Int, headDim: Int) -> Strides {
        layout == "bshd" ? .bshd(tokens: tokens, heads: heads, headDim: headDim) : .bhsd(tokens: tokens, heads: heads, headDim: headDim)
    }

    private func head(_ x: [Float], _ s: Strides, b: Int, h: Int, tokens: Int, headDim: Int) -> [Float] {
        (0..<tokens).flatMap { t in x[(b * s.batch + t * s.token + h * s.head)...].prefix(headDim) }
    }

    /// Both layouts, fp32 and bf16 (bf16 out, so the bound is bf16 rounding of the output), odd N,
    /// batch 2, into NaN-poisoned outputs, against each head's float64 plan reference.
    func testBothLayoutsAndDtypesAgainstTheReference() throws {
        var rng = SplitMix64(seed: freshSeed(#function))
        let (tokens, d, block, heads, batch) = (333, 64, 64, 3, 2)
        let blocks = (tokens + block - 1) / block
        let plans = [densePlan(blocks: blocks)] + (1..<heads).map { randomPlan("r\($0)", blocks: blocks, partialLast: true, reuse: true, rng: &rng) }
        let program = Program(model: "t", shape: Shape(tokens: tokens, headDim: d, block: block, layers: 2, heads: heads, steps: [3, 7]),
                              plans: plans, dispatch: [0, 1, 2, 1, 2, 0, 2, 0, 1, 0, 0, 0], sourceHash: "h")
        let (kernels, optimized) = try loadKernels(program)
        let count = batch * tokens * heads * d
        let q = rng.floats(count, scale: 2), k = rng.floats(count, scale: 2), v = rng.floats(count)
        for layout in ["bshd", "bhsd"] {
            let s = strides(layout, tokens: tokens, heads: heads, headDim: d)
            var out = [Float](repeating: .nan, count: count)
            try kernels.attentionLayer(step: 7, layer: 0, batch: batch, q: q, k: k, v: v, out: &out, strides: (s, s, s, s))
            XCTAssertFalse(out.contains { $0.isNaN }, "\(layout): an element was left unwritten")
            let (qh, kh, vh) = (q.map(BFloat16.init), k.map(BFloat16.init), v.map(BFloat16.init))
            var outh = [BFloat16](repeating: BFloat16(.nan), count: count)
            try kernels.attentionLayer(step: 7, layer: 0, batch: batch, q: qh, k: kh, v: vh, out: &outh, strides: (s, s, s, s))
            for b in 0..<batch {
                for h in 0..<heads {
                    let plan = optimized.plan(stepIndex: 1, layer: 0, head: h)
                    let pick = { (x: [Float]) in self.head(x, s, b: b, h: h, tokens: tokens, headDim: d) }
                    let exact = Reference.attention(of: plan, q: pick(q), k: pick(k), v: pick(v), tokens: tokens, headDim: d, block: block)
                    XCTAssertLessThan(Reference.relativeError(pick(out), exact), 1e-5, "fp32 \(layout) b \(b) h \(h)")
                    let rounded = { (x: [BFloat16]) in self.head(x.map(\.float), s, b: b, h: h, tokens: tokens, headDim: d) }
                    let exactH = Reference.attention(of: plan, q: rounded(qh), k: rounded(kh), v: rounded(vh), tokens: tokens, headDim: d, block: block)
                    XCTAssertLessThan(Reference.relativeError(rounded(outh), exactH), 4e-3, "bf16 \(layout) b \(b) h \(h)")
                }
            }
        }
    }

    /// The dense layer entry equals every head's dense reference; the (B, H, S, D) layout gives
    /// the same bits as (B, S, H, D) on the same values.
    func testDenseLayerAndLayoutsGiveTheSameBits() throws {
        var rng = SplitMix64(seed: freshSeed(#function))
        let (tokens, d, heads) = (200, 32, 2)
        let program = Program(model: "t", shape: Shape(tokens: tokens, headDim: d, block: 32, layers: 1, heads: heads, steps: [0]),
                              plans: [densePlan(blocks: 7)], dispatch: [0, 0], sourceHash: "h")
        let (kernels, _) = try loadKernels(program)
        let a = Strides.bshd(tokens: tokens, heads: heads, headDim: d), b = Strides.bhsd(tokens: tokens, heads: heads, headDim: d)
        let count = tokens * heads * d
        let q = rng.floats(count, scale: 3), k = rng.floats(count, scale: 3), v = rng.floats(count)
        // The same tensors re-laid out as (B, H, S, D).
        func relayout(_ x: [Float]) -> [Float] {
            var y = [Float](repeating: 0, count: count)
            for t in 0..<tokens { for h in 0..<heads { for c in 0..<d { y[h * b.head + t * b.token + c] = x[t * a.token + h * a.head + c] } } }
            return y
        }
        var outA = [Float](repeating: .nan, count: count), outB = outA
        try kernels.denseAttentionLayer(batch: 1, q: q, k: k, v: v, out: &outA, strides: (a, a, a, a))
        let (qb, kb, vb) = (relayout(q), relayout(k), relayout(v))
        try kernels.attentionLayer(step: 0, layer: 0, batch: 1, q: qb, k: kb, v: vb, out: &outB, strides: (b, b, b, b))
        XCTAssertEqual(relayout(outA), outB)
        for h in 0..<heads {
            let pick = { (x: [Float]) in self.head(x, a, b: 0, h: h, tokens: tokens, headDim: d) }
            let reference = Reference.attention(q: pick(q), k: pick(k), v: pick(v), tokens: tokens, headDim: d)
            XCTAssertLessThan(Reference.relativeError(pick(outA), reference), 1e-5)
        }
    }

    /// Results do not depend on the team size: each query block is computed by one thread in a
    /// fixed order of key blocks, so 1, 3, 7 and 16 threads on any machine give the same bits.
    func testTeamSizeDoesNotChangeTheResult() throws {
        var rng = SplitMix64(seed: freshSeed(#function))
        let (tokens, d, heads) = (700, 64, 4)
        let blocks = 11
        let plans = (0..<heads).map { randomPlan("r\($0)", blocks: blocks, partialLast: true, reuse: true, rng: &rng) }
        let program = Program(model: "t", shape: Shape(tokens: tokens, headDim: d, block: 64, layers: 1, heads: heads, steps: [0]),
                              plans: plans, dispatch: Array(0..<heads), sourceHash: "h")
        let (kernels, _) = try loadKernels(program)
        let s = Strides.bshd(tokens: tokens, heads: heads, headDim: d)
        let count = 2 * tokens * heads * d
        let q = rng.floats(count, scale: 2), k = rng.floats(count, scale: 2), v = rng.floats(count)
        var results: [[Float]] = []
        defer { calib_bench_set_threads(Int32(ProcessInfo.processInfo.activeProcessorCount)) }
        for threads in [1, 3, 7, 16] {
            calib_bench_set_threads(Int32(threads))
            XCTAssertEqual(kernels.teamSize, threads)
            var out = [Float](repeating: .nan, count: count)
            try kernels.attentionLayer(step: 0, layer: 0, batch: 2, q: q, k: k, v: v, out: &out, strides: (s, s, s, s))
            results.append(out)
        }
        for (i, r) in results.enumerated().dropFirst() { XCTAssertEqual(r, results[0], "team \([1, 3, 7, 16][i]) differs from 1 thread") }
    }

    /// Shapes, strides and buffers that do not fit are refused before anything runs.
    func testMismatchedShapesAndStridesAreRefused() throws {
        let program = Program(model: "t", shape: Shape(tokens: 100, headDim: 16, block: 16, layers: 1, heads: 2, steps: [0]),
                              plans: [densePlan(blocks: 7)], dispatch: [0, 0], sourceHash: "h")
        let (kernels, _) = try loadKernels(program)
        let good = Strides.bshd(tokens: 100, heads: 2, headDim: 16)
        let x = [Float](repeating: 1, count: 2 * 100 * 2 * 16)
        var out = [Float](repeating: .nan, count: x.count)
        func call(step: Int = 0, layer: Int = 0, batch: Int = 2, q: Strides? = nil, out o: Strides? = nil, short: Bool = false) -> CalibError? {
            let qx = short ? Array(x.dropLast()) : x
            do {
                try kernels.attentionLayer(step: step, layer: layer, batch: batch, q: qx, k: x, v: x, out: &out,
                                           strides: (q ?? good, good, good, o ?? good))
                return nil
            } catch { return error as? CalibError }
        }
        XCTAssertNil(call())
        XCTAssertEqual(call(step: 1), .noPlan(step: 1, layer: 0, head: -1))
        XCTAssertEqual(call(layer: 1), .noPlan(step: 0, layer: 1, head: -1))
        XCTAssertEqual(call(short: true), .badArgument("q holds 6399 elements, needs 6400 at strides Strides(batch: 3200, token: 32, head: 16)"))
        XCTAssertEqual(call(q: Strides(batch: -1, token: 32, head: 16)), .badArgument("q strides Strides(batch: -1, token: 32, head: 16) overflow or are negative"))
        XCTAssertEqual(call(q: Strides(batch: 3200, token: Int.max / 2, head: 16)),
                       .badArgument("q strides Strides(batch: 3200, token: 4611686018427387903, head: 16) overflow or are negative"))
        // Heads of out that overlap each other: the kernel refuses (status 3), nothing is written.
        out = [Float](repeating: .nan, count: x.count)
        XCTAssertEqual(call(out: Strides(batch: 3200, token: 32, head: 8)), .badArgument("kernel returned status 3"))
        XCTAssertTrue(out.allSatisfy(\.isNaN))
        // q may broadcast (stride 0 over heads): a read-only view, allowed.
        XCTAssertNil(call(q: Strides(batch: 3200, token: 32, head: 0)))
    }
}
