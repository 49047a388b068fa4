import CalibIR

/// The largest chunk, as a share of a plan's cost: with 64, a team of up to 16 threads balances a
/// single head to within a few percent, and a layer call (all heads in one pool) has heads × 64
/// large pieces; cutting finer everywhere costs locality between neighbouring rows.
public let chunksPerPlan = 64
/// The last chunks shrink towards cost / `finestChunks` (a single row, where a row costs more),
/// so the team ends within a small piece of work of each other whatever its size: a 2×
/// oversubscribed team on 16 cores ran a head of 64 equal chunks at 0.83 efficiency.
public let finestChunks = 512

/// Cuts each plan's row order into contiguous chunks that threads claim at run time, heaviest
/// first (guided self-scheduling, decided at compile time): a chunk closes once its cost reaches
/// the remaining cost / 16, at most cost / `chunksPerPlan` and at least cost / `finestChunks`.
/// So the first three quarters of the work go in large chunks that walk rows in locality order,
/// and the rest in ever smaller ones that fill the gaps at the end of a call for any team size.
/// A row heavier than the target is a chunk of its own.
@Sendable public func chunk(_ program: Program) -> Program {
    var p = program
    for i in p.plans.indices { p.plans[i] = chunk(p.plans[i]) }
    return p
}

/// The cost at which a chunk closes when `remaining` of a plan's `total` is not yet in a chunk.
public func chunkTarget(remaining: Int, total: Int) -> Int {
    let largest = max(1, (total + chunksPerPlan - 1) / chunksPerPlan)
    let finest = max(1, (total + finestChunks - 1) / finestChunks)
    return min(largest, max(finest, remaining / 16))
}

public func chunk(_ plan: Plan) -> Plan {
    var plan = plan
    let order = plan.order ?? plan.computeRows
    var chunks = [0]
    var (running, remaining) = (0, plan.cost)
    for (at, q) in order.enumerated() {
        running += plan.rows[q].cost
        if running >= chunkTarget(remaining: remaining, total: plan.cost) || at == order.count - 1 {
            chunks.append(at + 1)
            remaining -= running
            running = 0
        }
    }
    plan.order = order
    plan.chunks = chunks
    return plan
}
