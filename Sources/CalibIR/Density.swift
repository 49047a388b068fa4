// Figures about a program: density is the fraction of (query block, key block) tiles computed;
// reused rows compute none.

extension Plan {
    public func density(blocks: Int) -> Double { Double(cost) / Double(blocks * blocks) }
}

extension Program {
    /// Mean density over the dispatch entries matching `filter(stepIndex, layer, head)`.
    public func meanDensity(_ filter: (Int, Int, Int) -> Bool = { _, _, _ in true }) -> Double {
        let b = shape.blocks
        let densities = plans.map { $0.density(blocks: b) }
        var sum = 0.0, count = 0
        for s in shape.steps.indices {
            for l in 0..<shape.layers {
                for h in 0..<shape.heads where filter(s, l, h) {
                    sum += densities[dispatch[shape.dispatchIndex(stepIndex: s, layer: l, head: h)]]
                    count += 1
                }
            }
        }
        return count == 0 ? 0 : sum / Double(count)
    }

    /// Fraction of query blocks, over all dispatch entries, that reuse another block's rows.
    public var reuseFraction: Double {
        let reused = dispatch.reduce(0) { $0 + plans[$1].reusedRows.count }
        return Double(reused) / Double(dispatch.count * shape.blocks)
    }
}
