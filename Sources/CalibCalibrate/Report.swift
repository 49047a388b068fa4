// The table `calibc calibrate` prints: per head, what was kept and what it costs on held-out inputs.

import CalibIR
import Foundation

public enum CalibrationReport {
    /// One line under the table: what each column means (docs/calibration.md has the rules).
    public static let legend = "density: kept tiles; loo drop: the most mass an input loses under the others' mask "
        + "(≤: at most, where inputs under --stability-drop were retired); dense: unstable, "
        + "computed fully; reused: query blocks copied; reuse extra: held-out error added by reuse (docs/calibration.md)\n"

    /// The loo drop column: exact, or "≤" a bound.
    public static func drop(_ h: HeadReport) -> String {
        guard let d = h.leaveOneOutDrop else { return "-" }
        return (h.leaveOneOutIsBound ? "≤" : "") + String(format: "%.3f", d)
    }

    public static func text(_ c: Calibration, calibrationInputs: Int, holdoutInputs: Int) -> String {
        let s = c.program.shape
        var out = "calibrated \(s.dispatchCount) (step, layer, head) on \(calibrationInputs) inputs, checked on \(holdoutInputs) held out; "
        out += "tokens \(s.tokens), block \(s.block) (\(s.blocks)×\(s.blocks))\n\n"
        out += "step layer head  density  loo drop  dense  reused  held-out mass  held-out error  reuse extra\n"
        func f(_ x: Double?, _ format: String) -> String { x.map { String(format: format, $0) } ?? "-" }
        for h in c.heads {
            out += String(format: "%4d %5d %4d  %7.3f  %8@  %5@  %6d  %13@  %14@  %11@\n", h.step, h.layer, h.head, h.density,
                          drop(h), h.dense ? "yes" : "no", h.reusedBlocks, f(h.heldOutMass, "%.3f"),
                          f(h.heldOutError, "%.2e"), f(h.reuseExtraError, "%.1e"))
        }
        out += legend
        let n = Double(c.heads.count)
        out += String(format: "\nmean density %.3f, dense heads %d of %d, reused query blocks %.1f%%\n",
                      c.heads.reduce(0) { $0 + $1.density } / n, c.heads.filter(\.dense).count, c.heads.count,
                      100 * c.program.reuseFraction)
        if holdoutInputs > 0 {
            let mass = c.heads.reduce(0) { $0 + ($1.heldOutMass ?? 0) } / n
            out += String(format: "held out: mean kept mass %.3f", mass)
            let errors = c.heads.compactMap(\.heldOutError)
            if !errors.isEmpty {
                out += String(format: ", mean relative L2 error %.2e, worst head %.2e", errors.reduce(0, +) / Double(errors.count), errors.max()!)
            }
            out += "\n"
        }
        return out
    }
}
