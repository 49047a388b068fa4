import CalibIR

/// Keeps one plan per distinct row content, in order of first use by the dispatch table, and
/// drops unused plans. The survivor keeps the name of its first user.
@Sendable public func dedupe(_ program: Program) -> Program {
    var p = program
    var byContent: [[Row]: Int] = [:]
    var remap = [Int?](repeating: nil, count: program.plans.count)
    var plans: [Plan] = []
    p.dispatch = program.dispatch.map { old in
        if let new = remap[old] { return new }
        let plan = program.plans[old]
        let new = byContent[plan.rows] ?? {
            plans.append(plan)
            byContent[plan.rows] = plans.count - 1
            return plans.count - 1
        }()
        remap[old] = new
        return new
    }
    p.plans = plans
    return p
}
