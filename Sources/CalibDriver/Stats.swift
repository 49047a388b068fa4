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
        out += "\ndensity by step: " + s.steps.enumerated().map { i, v in "\(v): \(f(meanDensity { st, _, _ in st == i }))" }.joined(separator: "  ") + "\n"
        out += "density by layer: " + (0..<s.layers).map { l in "\(l): \(f(meanDensity { _, ly, _ in ly == l }))" }.joined(separator: "  ") + "\n"
        out += "density by head: " + (0..<s.heads).map { h in "\(h): \(f(meanDensity { _, _, hd in hd == h }))" }.joined(separator: "  ") + "\n"
        return out
    }
}
