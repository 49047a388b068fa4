import CalibIR

/// Points every reused row straight at the computed row at the end of its chain, so the
/// kernel copies each reused row once, after all computed rows are done.
@Sendable public func collapseReuse(_ program: Program) -> Program {
    var p = program
    for i in p.plans.indices { p.plans[i].rows = collapsed(p.plans[i].rows) }
    return p
}

/// Linear in the rows however long the chains: a walk stops at the first row already resolved,
/// and every row it passed takes that row's end (walking from each row alone would cost B² on
/// a chain of B rows). The rows are verified, so no chain is a cycle.
func collapsed(_ rows: [Row]) -> [Row] {
    var end = [Int](repeating: -1, count: rows.count)  // the compute row each row's chain ends at
    var path: [Int] = []
    for q in rows.indices where end[q] < 0 {
        var at = q
        while end[at] < 0, case .reuse(let next) = rows[at] {
            path.append(at)
            at = next
        }
        if end[at] < 0 { end[at] = at }
        for r in path { end[r] = end[at] }
        path.removeAll(keepingCapacity: true)
    }
    return rows.indices.map { end[$0] == $0 ? rows[$0] : .reuse(end[$0]) }
}
