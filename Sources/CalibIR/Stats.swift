// Figures about a program that `calibc stats` prints and the demo reuses. Density is the
// fraction of (query block, key block) tiles computed; reused rows compute none.

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

    public func statsReport() -> String {
        let s = shape
        func f(_ x: Double) -> String {
            let v = Int((x * 1000).rounded())
            let frac = String(v % 1000)
            return "\(v / 1000)." + String(repeating: "0", count: 3 - frac.count) + frac
        }
        var out = "model \"\(model)\": tokens \(s.tokens), head_dim \(s.headDim), block \(s.block) (\(s.blocks)×\(s.blocks) blocks)\n"
        out += "dispatch: \(s.dispatchCount) (step, layer, head) → \(plans.count) unique plans"
        out += " (dedupe ratio \(f(Double(s.dispatchCount) / Double(plans.count)))×)\n"
        out += "density \(f(meanDensity())), reuse fraction \(f(reuseFraction))\n\nplans:\n"
        var uses = [Int](repeating: 0, count: plans.count)
        for d in dispatch { uses[d] += 1 }
        let width = plans.map(\.name.count).max() ?? 0
        for (i, p) in plans.enumerated() {
            out += "  @\(p.name + String(repeating: " ", count: width - p.name.count))  density \(f(p.density(blocks: s.blocks)))"
            out += "  computed rows \(p.computeRows.count)  reused rows \(p.reusedRows.count)  used by \(uses[i])\n"
        }
        out += "\ndensity by step: " + s.steps.enumerated().map { i, v in "\(v): \(f(meanDensity { st, _, _ in st == i }))" }.joined(separator: "  ") + "\n"
        out += "density by layer: " + (0..<s.layers).map { l in "\(l): \(f(meanDensity { _, ly, _ in ly == l }))" }.joined(separator: "  ") + "\n"
        out += "density by head: " + (0..<s.heads).map { h in "\(h): \(f(meanDensity { _, _, hd in hd == h }))" }.joined(separator: "  ") + "\n"
        return out
    }
}
