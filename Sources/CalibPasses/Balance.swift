import CalibIR

/// Cuts each plan's row order into `program.threads` contiguous parts of near-equal cost
/// (kept tiles), so the kernel needs no run-time scheduling and each thread still walks
/// rows in locality order. A cut goes where the running cost first reaches its share.
@Sendable public func balance(_ program: Program) -> Program {
    var p = program
    let threads = program.threads
    for i in p.plans.indices {
        let plan = p.plans[i]
        let order = plan.order ?? plan.computeRows
        let total = plan.cost
        var parts = [0]
        var running = 0
        var at = 0
        for t in 1..<threads {
            // Cut before row `at` if that leaves this part closer to its share than after it.
            let share = Double(total) * Double(t) / Double(threads)
            while at < order.count {
                let next = running + plan.rows[order[at]].cost
                if Double(next) - share > share - Double(running) { break }
                running = next
                at += 1
            }
            parts.append(at)
        }
        parts.append(order.count)
        p.plans[i].order = order
        p.plans[i].parts = parts
    }
    return p
}
