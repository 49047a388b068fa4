// Plain float64 attention, written independently of the generated kernels: the yardstick
// tests and the demo measure every kernel against.

import CalibIR
import Foundation

public enum Reference {
    /// softmax(q kᵀ / sqrt(d)) v for packed [tokens][headDim] inputs, in float64. `rows`
    /// restricts the query rows computed (others are left as NaN).
    public static func attention(q: [Float], k: [Float], v: [Float], tokens: Int, headDim: Int,
                                 rows: Range<Int>? = nil) -> [Double] {
        var out = [Double](repeating: .nan, count: tokens * headDim)
        let scale = 1.0 / Double(headDim).squareRoot()
        var scores = [Double](repeating: 0, count: tokens)
        for i in rows ?? 0..<tokens {
            var best = -Double.infinity
            for j in 0..<tokens {
                var dot = 0.0
                for d in 0..<headDim { dot += Double(q[i * headDim + d]) * Double(k[j * headDim + d]) }
                scores[j] = dot * scale
                best = max(best, scores[j])
            }
            var sum = 0.0
            for j in 0..<tokens {
                scores[j] = exp(scores[j] - best)
                sum += scores[j]
            }
            for d in 0..<headDim {
                var acc = 0.0
                for j in 0..<tokens { acc += scores[j] * Double(v[j * headDim + d]) }
                out[i * headDim + d] = acc / sum
            }
        }
        return out
    }

    /// The exact answer of a plan: each computed query block attends only to its key spans,
    /// and a reused block gets its source's rows. Tokens from `validEnd` on (padded text of a
    /// joint sequence) are no key, and their rows are zeros, as is a row left with no key.
    public static func attention(of plan: Plan, q: [Float], k: [Float], v: [Float], tokens: Int, headDim: Int,
                                 block: Int, validEnd: Int? = nil) -> [Double] {
        var out = [Double](repeating: .nan, count: tokens * headDim)
        let scale = 1.0 / Double(headDim).squareRoot()
        let end = validEnd ?? tokens
        for qb in plan.rows.indices {
            var source = qb
            while case .reuse(let next) = plan.rows[source] { source = next }
            let keys = plan.rows[source].spans.flatMap { ($0.start * block)..<max($0.start * block, min(end, $0.end * block)) }
            for r in 0..<min(block, tokens - qb * block) {
                if qb * block + r >= end || keys.isEmpty {
                    for d in 0..<headDim { out[(qb * block + r) * headDim + d] = 0 }
                    continue
                }
                let i = source * block + r
                var scores = keys.map { j -> Double in
                    var dot = 0.0
                    for d in 0..<headDim { dot += Double(q[i * headDim + d]) * Double(k[j * headDim + d]) }
                    return dot * scale
                }
                let best = scores.max() ?? 0
                scores = scores.map { exp($0 - best) }
                let sum = scores.reduce(0, +)
                for d in 0..<headDim {
                    var acc = 0.0
                    for (n, j) in keys.enumerated() { acc += scores[n] * Double(v[j * headDim + d]) }
                    out[(qb * block + r) * headDim + d] = acc / sum
                }
            }
        }
        return out
    }

    /// ‖a − b‖₂ / ‖b‖₂ over all elements.
    public static func relativeError(_ a: [Float], _ b: [Double]) -> Double {
        var num = 0.0, den = 0.0
        for i in b.indices {
            let diff = Double(a[i]) - b[i]
            num += diff * diff
            den += b[i] * b[i]
        }
        return (num / den).squareRoot()
    }
}
