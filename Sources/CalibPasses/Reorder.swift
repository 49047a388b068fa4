import CalibIR

/// Orders the compute rows of each plan by their key spans, so rows reading the same K/V
/// tiles run back to back while those tiles are still in cache. Ties keep query order.
@Sendable public func reorder(_ program: Program) -> Program {
    var p = program
    for i in p.plans.indices {
        let rows = p.plans[i].rows
        let order = p.plans[i].computeRows.sorted { a, b in
            let (x, y) = (rows[a].spans, rows[b].spans)
            return x.lexicographicallyPrecedes(y) || (x == y && a < b)
        }
        p.plans[i].order = order
    }
    return p
}
