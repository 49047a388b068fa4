import CalibIR

/// How many groups a plan compares its rows with, at most: the first this many, in the order
/// they were formed, whose tile count is within tolerance of its own. Past that a plan may miss
/// a group it could have joined (it forms its own instead, and no tile is lost), but comparing
/// rows costs at most 64 × (B + ranges) per plan instead of that times every group so far; what
/// is left per pair of plan and group is one integer compare of their tile counts.
public let mergeCandidates = 64

/// With tolerance x > 0, merges plans whose kept tiles differ in at most x of
/// the larger plan's tiles into their union, so no (step, layer, head) loses a tile it kept.
/// Greedy in plan order: each plan joins the first merged group (of its `mergeCandidates`)
/// whose union stays within x of it. Plans with reused rows keep their own (a union would
/// change what they copy). Groups hold their rows as spans, as plans do: memory grows with
/// the plans' ranges, not with B² tiles per plan.
public func mergeSimilar(_ program: Program, tolerance x: Double) -> Program {
    guard x > 0 else { return program }
    struct Group {
        var rows: [[Span]]
        var rowCounts: [Int]
        var plan: Int
    }
    var groups: [Group] = []
    var counts: [Int] = []  // each group's tiles, apart from its rows: the scan for candidates reads only this
    var remap = Array(program.plans.indices)
    var merged: [Plan] = []
    for (i, plan) in program.plans.enumerated() {
        guard plan.reusedRows.isEmpty else {
            remap[i] = merged.count
            merged.append(plan)
            continue
        }
        let rows = plan.rows.map { runs($0.spans) }
        let rowCounts = rows.map(tiles)
        let count = rowCounts.reduce(0, +)
        var joined: Int?
        var compared = 0, g = 0
        while joined == nil, compared < mergeCandidates, g < counts.count {
            // The union must stay within x of both: |A ∪ B| − |A ∩ B| ≤ x · max(|A|, |B|). Total and
            // per-row counts bound the difference from below and rule most groups out cheaply.
            let limit = x * Double(max(counts[g], count))
            if Double(abs(counts[g] - count)) <= limit {
                compared += 1
                if within(limit, groups[g].rows, groups[g].rowCounts, rows, rowCounts) { joined = g }
            }
            g += 1
        }
        if let g = joined {
            for q in rows.indices where groups[g].rows[q] != rows[q] {
                groups[g].rows[q] = union(groups[g].rows[q], rows[q])
                counts[g] += tiles(groups[g].rows[q]) - groups[g].rowCounts[q]
                groups[g].rowCounts[q] = tiles(groups[g].rows[q])
            }
            remap[i] = groups[g].plan
        } else {
            remap[i] = merged.count
            groups.append(Group(rows: rows, rowCounts: rowCounts, plan: merged.count))
            counts.append(count)
            merged.append(plan)
        }
    }
    for g in groups { merged[g.plan].rows = g.rows.map { .compute($0) } }
    var p = program
    p.plans = merged
    p.dispatch = program.dispatch.map { remap[$0] }
    return p
}

/// Whether rows `a` and `b` differ in at most `limit` tiles, stopping as soon as they do not.
private func within(_ limit: Double, _ a: [[Span]], _ aCounts: [Int], _ b: [[Span]], _ bCounts: [Int]) -> Bool {
    var lower = 0
    for q in a.indices {
        lower += abs(aCounts[q] - bCounts[q])
        if Double(lower) > limit { return false }
    }
    var differ = 0
    for q in a.indices where a[q] != b[q] {
        differ += aCounts[q] + bCounts[q] - 2 * common(a[q], b[q])
        if Double(differ) > limit { return false }
    }
    return true
}

private func tiles(_ spans: [Span]) -> Int { spans.reduce(0) { $0 + $1.count } }

/// Sorted, disjoint spans with touching ones joined.
private func runs(_ spans: [Span]) -> [Span] {
    var out: [Span] = []
    out.reserveCapacity(spans.count)
    for s in spans {
        if let last = out.last, last.end >= s.start {
            out[out.count - 1].end = max(last.end, s.end)
        } else {
            out.append(s)
        }
    }
    return out
}

/// Tiles in both of two sorted, disjoint span lists.
private func common(_ a: [Span], _ b: [Span]) -> Int {
    var (i, j, n) = (0, 0, 0)
    while i < a.count, j < b.count {
        n += max(0, min(a[i].end, b[j].end) - max(a[i].start, b[j].start))
        if a[i].end < b[j].end { i += 1 } else { j += 1 }
    }
    return n
}

/// The union of two sorted, disjoint span lists, as runs.
private func union(_ a: [Span], _ b: [Span]) -> [Span] {
    var merged: [Span] = []
    merged.reserveCapacity(a.count + b.count)
    var (i, j) = (0, 0)
    while i < a.count || j < b.count {
        if j == b.count || (i < a.count && a[i].start <= b[j].start) {
            merged.append(a[i])
            i += 1
        } else {
            merged.append(b[j])
            j += 1
        }
    }
    return runs(merged)
}
