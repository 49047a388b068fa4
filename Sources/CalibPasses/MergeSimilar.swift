import CalibIR

/// With tolerance x > 0, merges plans whose kept tiles differ in at most x of
/// the larger plan's tiles into their union, so no (step, layer, head) loses a tile it kept.
/// Greedy in plan order: each plan joins the first merged group whose union stays within x of
/// it. Plans with reused rows keep their own (a union would change what they copy).
public func mergeSimilar(_ program: Program, tolerance x: Double) -> Program {
    guard x > 0 else { return program }
    let n = program.shape.blocks, words = (n + 63) / 64
    var p = program
    var groups: [(bits: [UInt64], rowCounts: [Int], count: Int, plan: Int)] = []
    var remap = Array(program.plans.indices)
    var merged: [Plan] = []
    for (i, plan) in program.plans.enumerated() {
        guard plan.reusedRows.isEmpty else {
            remap[i] = merged.count
            merged.append(plan)
            continue
        }
        var bits = [UInt64](repeating: 0, count: n * words)
        for (q, row) in plan.rows.enumerated() {
            for span in row.spans { for k in span.start..<span.end { bits[q * words + k / 64] |= 1 << UInt64(k % 64) } }
        }
        let count = plan.cost
        let rowCounts = plan.rows.map(\.cost)
        let joined = groups.firstIndex { g in
            // The union must stay within x of both: |A ∪ B| − |A ∩ B| ≤ x · max(|A|, |B|). Per-row
            // counts bound the difference from below and rule most groups out cheaply.
            let limit = x * Double(max(g.count, count))
            guard Double(abs(g.count - count)) <= limit else { return false }
            var lower = 0
            for q in 0..<n { lower += abs(g.rowCounts[q] - rowCounts[q]) }
            guard Double(lower) <= limit else { return false }
            var differ = 0
            for w in 0..<bits.count { differ += (g.bits[w] ^ bits[w]).nonzeroBitCount }
            return Double(differ) <= x * Double(max(g.count, count))
        }
        if let g = joined {
            for w in 0..<bits.count { groups[g].bits[w] |= bits[w] }
            groups[g].count = groups[g].bits.reduce(0) { $0 + $1.nonzeroBitCount }
            groups[g].rowCounts = (0..<n).map { q in groups[g].bits[(q * words)..<((q + 1) * words)].reduce(0) { $0 + $1.nonzeroBitCount } }
            remap[i] = groups[g].plan
        } else {
            remap[i] = merged.count
            groups.append((bits, rowCounts, count, merged.count))
            merged.append(plan)
        }
    }
    for g in groups {
        merged[g.plan].rows = (0..<n).map { q in
            var kept = Set<Int>()
            for k in 0..<n where g.bits[q * words + k / 64] >> UInt64(k % 64) & 1 == 1 { kept.insert(k) }
            return .compute(Span.runs(kept))
        }
    }
    p.plans = merged
    p.dispatch = program.dispatch.map { remap[$0] }
    return p
}
