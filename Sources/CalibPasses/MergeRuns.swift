import CalibIR

/// Joins touching spans (`[0, 3) [3, 5)` → `[0, 5)`), so the kernel streams each run of
/// key blocks in one loop; bitmaps arrive one block at a time.
@Sendable public func mergeRuns(_ program: Program) -> Program {
    var p = program
    for i in p.plans.indices {
        p.plans[i].rows = p.plans[i].rows.map { row in
            guard case .compute(let spans) = row else { return row }
            var merged: [Span] = []
            for span in spans {
                if let last = merged.last, last.end == span.start {
                    merged[merged.count - 1].end = span.end
                } else {
                    merged.append(span)
                }
            }
            return .compute(merged)
        }
    }
    return p
}
