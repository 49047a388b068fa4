import CalibIR
import CalibRuntime
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
                                  threads: 2, plans: plans, dispatch: [0, 1, 2], sourceHash: "h")
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

    /// bfloat16 inputs against the float64 answer on the same (rounded) values. With AVX-512
    /// BF16 the probabilities are rounded to bfloat16 for P·V, hence the looser bound; the
    /// portable build (-mno-avx512f) widens to fp32 and meets the fp32 bound. Both builds also
    /// run the fp32 entry point through the portable loops.
    func testBFloat16InputsAndThePortableBuild() throws {
        var rng = SplitMix64(seed: freshSeed(#function))
        for (tokens, headDim, block) in [(300, 64, 64), (200, 128, 32)] {
            let blocks = (tokens + block - 1) / block
            let plans = [densePlan(blocks: blocks), randomPlan("r", blocks: blocks, partialLast: tokens % block != 0, reuse: true, rng: &rng)]
            let program = Program(model: "t", shape: Shape(tokens: tokens, headDim: headDim, block: block, layers: 1, heads: 2, steps: [0]),
                                  threads: 2, plans: plans, dispatch: [0, 1], sourceHash: "h")
            let q = rng.floats(tokens * headDim, scale: 2).map(BFloat16.init), k = rng.floats(tokens * headDim, scale: 2).map(BFloat16.init)
            let v = rng.floats(tokens * headDim).map(BFloat16.init)
            let (qf, kf, vf) = (q.map(\.float), k.map(\.float), v.map(\.float))
            for (flags, bound) in [([String](), 5e-3), (["-mno-avx512f"], 1e-5)] {
                let (kernels, optimized) = try loadKernels(program, flags: flags)
                for head in 0..<2 {
                    let exact = Reference.attention(of: optimized.plan(stepIndex: 0, layer: 0, head: head), q: qf, k: kf, v: vf,
                                                    tokens: tokens, headDim: headDim, block: block)
                    let out = try runHeadBF16(kernels, step: 0, head: head, q: q, k: k, v: v)
                    XCTAssertLessThan(Reference.relativeError(out, exact), bound, "bf16 \(flags) tokens \(tokens) head \(head)")
                    let out32 = try runHead(kernels, step: 0, head: head, q: qf, k: kf, v: vf)
                    XCTAssertLessThan(Reference.relativeError(out32, exact), 1e-5, "fp32 \(flags) tokens \(tokens) head \(head)")
                }
            }
        }
    }

    func testAllDensePlanEqualsDenseAttention() throws {
        var rng = SplitMix64(seed: freshSeed(#function))
        for (tokens, headDim) in [(333, 64), (190, 128)] {
            let block = 64, blocks = (tokens + block - 1) / block
            let program = Program(model: "t", shape: Shape(tokens: tokens, headDim: headDim, block: block, layers: 1, heads: 1, steps: [0]),
                                  threads: 2, plans: [densePlan(blocks: blocks)], dispatch: [0], sourceHash: "h")
            let (kernels, _) = try loadKernels(program)
            let q = rng.floats(tokens * headDim, scale: 3), k = rng.floats(tokens * headDim, scale: 3), v = rng.floats(tokens * headDim)
            let reference = Reference.attention(q: q, k: k, v: v, tokens: tokens, headDim: headDim)
            XCTAssertLessThan(Reference.relativeError(try runHead(kernels, step: 0, head: 0, q: q, k: k, v: v), reference), 1e-5)
            var dense = [Float](repeating: .nan, count: tokens * headDim)
            try q.withUnsafeBufferPointer { qp in
                try k.withUnsafeBufferPointer { kp in
                    try v.withUnsafeBufferPointer { vp in
                        try dense.withUnsafeMutableBufferPointer { op in
                            try kernels.denseAttention(q: qp, k: kp, v: vp, out: op, tokens: tokens, headDim: headDim)
                        }
                    }
                }
            }
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
                              threads: 2, plans: [Plan(name: "p", rows: rows)], dispatch: [0], sourceHash: "h")
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
                              threads: 2, plans: [Plan(name: "p", rows: rows)], dispatch: [0], sourceHash: "h")
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
                              threads: 2, plans: [plan], dispatch: [0], sourceHash: "h")
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
        try q.withUnsafeBufferPointer { qp in
            try k.withUnsafeBufferPointer { kp in
                try v.withUnsafeBufferPointer { vp in
                    try out.withUnsafeMutableBufferPointer { op in
                        let offset = head * d
                        try kernels.attention(step: 0, layer: 0, head: 0,
                                              q: UnsafeBufferPointer(rebasing: qp[offset...]), k: UnsafeBufferPointer(rebasing: kp[offset...]),
                                              v: UnsafeBufferPointer(rebasing: vp[offset...]), out: UnsafeMutableBufferPointer(rebasing: op[offset...]),
                                              tokens: tokens, headDim: d, stride: heads * d)
                    }
                }
            }
        }
        XCTAssertEqual(pick(out), packed)
        XCTAssertTrue(out[0..<d].allSatisfy(\.isNaN), "another head's rows were written")
    }
}
