import CalibIR
import CalibRuntime
import CalibSupport
import Foundation
import XCTest

/// Joint text–video sequences with the text last and padded (calib_attention_joint): padded keys
/// take no part and padded rows are zeros, for every instruction set, both layouts, fp32 and bf16.
final class JointTests: XCTestCase {
    /// Video not a multiple of the block (141 of 64), text lengths 0, 1, block − 1, block + 1 and
    /// all 130 in one batch; NaN planted in the padded keys and values must reach no valid output.
    func testPaddedTextTakesNoPartOnEveryInstructionSet() throws {
        var rng = SplitMix64(seed: freshSeed(#function))
        let (video, text, d, block, heads) = (141, 130, 32, 64, 2)
        let tokens = video + text, blocks = (tokens + block - 1) / block
        let lengths: [Int32] = [0, 1, Int32(block - 1), Int32(block + 1), Int32(text)]
        let batch = lengths.count
        let plans = [densePlan(blocks: blocks), randomPlan("r", blocks: blocks, partialLast: true, reuse: true, rng: &rng)]
        let program = Program(model: "t", shape: Shape(tokens: tokens, headDim: d, block: block, layers: 1, heads: heads, steps: [0],
                                                       textTokens: text, textFirst: false),
                              plans: plans, dispatch: [0, 1], sourceHash: "h")
        let (instances, optimized) = try loadKernelsForEveryISA(program)
        let count = batch * tokens * heads * d
        let q = rng.floats(count, scale: 2), k = rng.floats(count, scale: 2), v = rng.floats(count)
        for layout in ["bshd", "bhsd"] {
            let s = layout == "bshd" ? Strides.bshd(tokens: tokens, heads: heads, headDim: d) : .bhsd(tokens: tokens, heads: heads, headDim: d)
            let end = { (b: Int) in video + Int(lengths[b]) }
            var (kp, vp) = (k, v)
            for b in 0..<batch {
                for t in end(b)..<tokens {
                    for h in 0..<heads {
                        for x in 0..<d { kp[b * s.batch + t * s.token + h * s.head + x] = .nan; vp[b * s.batch + t * s.token + h * s.head + x] = .nan }
                    }
                }
            }
            let pick = { (x: [Float], b: Int, h: Int) in (0..<tokens).flatMap { t in x[(b * s.batch + t * s.token + h * s.head)...].prefix(d) } }
            let (qh, kh, vh) = (q.map(BFloat16.init), kp.map(BFloat16.init), vp.map(BFloat16.init))
            let rounded = { (x: [BFloat16], b: Int, h: Int) in pick(x.map(\.float), b, h) }
            // The float64 answers, once per (batch element, head): every instance must give them.
            var exact: [[Double]] = [], exactH: [[Double]] = []
            for b in 0..<batch {
                for h in 0..<heads {
                    let plan = optimized.plan(stepIndex: 0, layer: 0, head: h)
                    exact.append(Reference.attention(of: plan, q: pick(q, b, h), k: pick(kp, b, h), v: pick(vp, b, h), tokens: tokens,
                                                     headDim: d, block: block, validEnd: end(b)))
                    exactH.append(Reference.attention(of: plan, q: rounded(qh, b, h), k: rounded(kh, b, h), v: rounded(vh, b, h),
                                                      tokens: tokens, headDim: d, block: block, validEnd: end(b)))
                }
            }
            for kernels in instances {
                var out = [Float](repeating: .nan, count: count)
                try kernels.attentionLayer(step: 0, layer: 0, batch: batch, q: q, k: kp, v: vp, out: &out, strides: (s, s, s, s),
                                           textLengths: lengths)
                var outh = [BFloat16](repeating: BFloat16(.nan), count: count)
                try kernels.attentionLayer(step: 0, layer: 0, batch: batch, q: qh, k: kh, v: vh, out: &outh, strides: (s, s, s, s),
                                           textLengths: lengths)
                XCTAssertFalse(out.contains { !$0.isFinite } || outh.contains { !$0.float.isFinite },
                               "\(kernels.isa) \(layout): NaN reached an output or a row was left unwritten")
                for b in 0..<batch {
                    for h in 0..<heads {
                        let what = "\(kernels.isa) \(layout) length \(lengths[b]) head \(h)"
                        XCTAssertLessThan(error(pick(out, b, h), exact[b * heads + h]), 1e-5, "fp32 \(what)")
                        XCTAssertLessThan(error(rounded(outh, b, h), exactH[b * heads + h]), 4e-3, "bf16 \(what)")
                        XCTAssertTrue(pick(out, b, h)[(end(b) * d)...].allSatisfy { $0 == 0 }, "\(what): padded rows are not zeros")
                    }
                }
            }
        }
    }

    /// Lengths of the wrong count or beyond the text, and lengths for kernels whose text comes
    /// first (where padding is no suffix), are refused before anything is written.
    func testBadTextLengthsAreRefused() throws {
        var rng = SplitMix64(seed: freshSeed(#function))
        let (tokens, text, d, block) = (100, 20, 16, 16)
        let blocks = (tokens + block - 1) / block
        for first in [false, true] {
            let program = Program(model: "t", shape: Shape(tokens: tokens, headDim: d, block: block, layers: 1, heads: 1, steps: [0],
                                                           textTokens: text, textFirst: first),
                                  plans: [densePlan(blocks: blocks)], dispatch: [0], sourceHash: "h")
            let (kernels, _) = try loadKernels(program)
            XCTAssertEqual(kernels.info.textTokens, text)
            XCTAssertEqual(kernels.info.textFirst, first)
            let x = rng.floats(2 * tokens * d)
            var out = [Float](repeating: .nan, count: x.count)
            let s = Strides.bshd(tokens: tokens, heads: 1, headDim: d)
            for lengths: [Int32] in first ? [[3, 4]] : [[3], [3, 21], [-1, 0]] {
                XCTAssertThrowsError(try kernels.attentionLayer(step: 0, layer: 0, batch: 2, q: x, k: x, v: x, out: &out,
                                                                strides: (s, s, s, s), textLengths: lengths), "\(lengths) first \(first)")
                XCTAssertTrue(out.allSatisfy(\.isNaN), "a refused call wrote its output")
            }
        }
    }

    /// The relative error, or, where the answer is all zeros (a random plan whose valid rows keep
    /// only padded key blocks: every row zero), the largest magnitude `a` holds.
    private func error(_ a: [Float], _ exact: [Double]) -> Double {
        exact.allSatisfy { $0 == 0 } ? Double(a.map(abs).max() ?? 0) : Reference.relativeError(a, exact)
    }
}
