// `calibc stats`: densities per step, layer and head, unique plans, dedupe ratio and reuse.

import CalibIR

extension Program {
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
        // One pass for all three: a filtered mean per step, layer and head would walk the whole
        // table once per row of output (10^5 steps: 10^10 entries). Each sum still adds its
        // entries in dispatch order, as such a mean would.
        let densities = plans.map { $0.density(blocks: s.blocks) }
        var (bySteps, byLayers, byHeads) = ([Double](repeating: 0, count: s.steps.count), [Double](repeating: 0, count: s.layers),
                                            [Double](repeating: 0, count: s.heads))
        for st in s.steps.indices {
            for l in 0..<s.layers {
                for h in 0..<s.heads {
                    let d = densities[dispatch[s.dispatchIndex(stepIndex: st, layer: l, head: h)]]
                    bySteps[st] += d
                    byLayers[l] += d
                    byHeads[h] += d
                }
            }
        }
        func line(_ labels: [Int], _ sums: [Double], _ entries: Int) -> String {
            zip(labels, sums).map { "\($0): \(f($1 / Double(entries)))" }.joined(separator: "  ") + "\n"
        }
        out += "\ndensity by step: " + line(s.steps, bySteps, s.layers * s.heads)
        out += "density by layer: " + line(Array(0..<s.layers), byLayers, s.steps.count * s.heads)
        out += "density by head: " + line(Array(0..<s.heads), byHeads, s.steps.count * s.layers)
        return out
    }
}
