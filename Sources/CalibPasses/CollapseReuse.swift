import CalibIR

/// Points every reused row straight at the computed row at the end of its chain, so the
/// kernel copies each reused row once, after all computed rows are done.
@Sendable public func collapseReuse(_ program: Program) -> Program {
    var p = program
    for i in p.plans.indices {
        let rows = p.plans[i].rows
        p.plans[i].rows = rows.map { row in
            guard case .reuse(var source) = row else { return row }
            while case .reuse(let next) = rows[source] { source = next }
            return .reuse(source)
        }
    }
    return p
}
