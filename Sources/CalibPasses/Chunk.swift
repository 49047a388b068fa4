import CalibIR

/// Chunks per plan: the granularity at which threads share a head's rows. With 64, a team of up
/// to 16 threads balances a single head to within a few percent, and a layer call (all heads in
/// one pool) has heads × 64 pieces; cutting finer costs locality between neighbouring rows.
public let chunksPerPlan = 64

/// Cuts each plan's row order into contiguous chunks of near-equal cost (kept tiles) that threads
/// claim at run time, so the schedule suits any team size while each chunk still walks rows in
/// locality order. A chunk closes once its cost reaches total / `chunksPerPlan`; a row heavier
/// than that is a chunk of its own.
@Sendable public func chunk(_ program: Program) -> Program {
    var p = program
    for i in p.plans.indices { p.plans[i] = chunk(p.plans[i]) }
    return p
}

public func chunk(_ plan: Plan) -> Plan {
    var plan = plan
    let order = plan.order ?? plan.computeRows
    let target = max(1, (plan.cost + chunksPerPlan - 1) / chunksPerPlan)
    var chunks = [0]
    var running = 0
    for (at, q) in order.enumerated() {
        running += plan.rows[q].cost
        if running >= target || at == order.count - 1 {
            chunks.append(at + 1)
            running = 0
        }
    }
    plan.order = order
    plan.chunks = chunks
    return plan
}
