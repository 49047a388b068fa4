// Calibrated heads repeat their rows across steps, so the distinct rows of a calibrated set hold
// few key-block ranges (the Wan-size set about 17,000). Selections that look random (a model with
// random weights) repeat none, and their distinct rows can hold more ranges than compile's tables
// take (Limits.maxDistinctRanges). Such masks are made to fit by also keeping the shortest runs
// of skipped key blocks between two kept ones: kept mass only grows, at the cost of density.

import CalibIR

extension Calibrator {
    /// `c` with every run of at most `gap` skipped key blocks between two kept ranges kept too,
    /// for the smallest `gap` (0: `c` as it is) that brings the key-block ranges of the distinct
    /// rows within `limit`, or every row one range (then only the pattern-rows limit, which the
    /// rows themselves exceed, can still refuse it).
    public static func fitDistinctRanges(_ c: Calibration, limit: Int = Limits.maxDistinctRanges) -> (Calibration, gap: Int) {
        var fitted = c, gap = 0
        while distinctRanges(fitted.program) > limit && gap < c.program.shape.blocks {
            gap += 1
            fitted.program.plans = c.program.plans.map { closingGaps($0, upTo: gap) }
        }
        return (fitted, gap)
    }

    /// Ranges over the distinct rows of all plans, as the frontend counts them.
    static func distinctRanges(_ program: Program) -> Int {
        var seen = Set<[Span]>()
        var ranges = 0
        for plan in program.plans {
            for row in plan.rows where seen.insert(row.spans).inserted { ranges += row.spans.count }
        }
        return ranges
    }

    static func closingGaps(_ plan: Plan, upTo gap: Int) -> Plan {
        var closed = plan
        closed.rows = plan.rows.map { row in
            guard case .compute(let spans) = row, spans.count > 1 else { return row }
            var out: [Span] = [spans[0]]
            for span in spans.dropFirst() {
                if span.start - out[out.count - 1].end <= gap { out[out.count - 1].end = span.end } else { out.append(span) }
            }
            return .compute(out)
        }
        return closed
    }
}
