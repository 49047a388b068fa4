// `calibc calibrate --report report.html`: what calibration decided, per head, as a page a
// person reads in a browser, with the density overview and each unique plan drawn inline (one
// pixel a block, scaled up by the browser, so the page stays small).

import CalibIR
import CalibPictures
import CalibSupport
import Foundation

public enum HTMLReport {
    public static func page(_ c: Calibration, calibrationInputs: Int, holdoutInputs: Int) -> String {
        let s = c.program.shape
        func png(_ image: RGBImage) -> String { "data:image/png;base64," + Data(image.png).base64EncodedString() }
        func esc(_ t: String) -> String {
            t.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        }
        func f(_ x: Double?, _ format: String) -> String { x.map { String(format: format, $0) } ?? "–" }
        var out = """
            <!doctype html>
            <html><head><meta charset="utf-8"><title>calibc calibration: \(esc(c.program.model))</title>
            <style>
            body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
            table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: right; border-bottom: 1px solid #eee; }
            th { background: #f4f4f4; } tr.dense td { color: #a33; } img { image-rendering: pixelated; border: 1px solid #ccc; }
            .plans { display: flex; flex-wrap: wrap; gap: 1.5em; } figure { margin: 0; } figcaption { font-size: 12px; }
            </style></head><body>
            <h1>Calibration of \(esc(c.program.model))</h1>
            <p>\(s.dispatchCount) (step, layer, head) calibrated on \(calibrationInputs) inputs, checked on \(holdoutInputs) held out;
            \(s.tokens) tokens, head_dim \(s.headDim), blocks of \(s.block) (\(s.blocks)×\(s.blocks) tiles per head);
            mean density \(f(c.heads.reduce(0) { $0 + $1.density } / Double(max(1, c.heads.count)), "%.3f")),
            \(c.heads.filter(\.dense).count) dense heads, \(f(100 * c.program.reuseFraction, "%.1f"))% of query blocks reused.</p>
            <h2>Density by (step, layer) and head</h2>
            <p>Heads across, one row per (step, layer), steps \(s.steps.map(String.init).joined(separator: ", ")) top to bottom; white is
            density 0, dark blue 1.</p>
            <img src="\(png(Pictures.overview(c.program, size: overviewSize(s))))" alt="density overview" style="width: 480px">
            <h2>Per head</h2>
            <table><tr><th>step</th><th>layer</th><th>head</th><th>plan</th><th>density</th><th>leave-one-out drop</th>
            <th>dense (unstable)</th><th>reused blocks</th><th>held-out mass</th><th>held-out error</th><th>reuse extra error</th></tr>

            """
        // The reports are in dispatch order, as `finish` appends them.
        for (d, h) in c.heads.enumerated() {
            let plan = c.program.plans[c.program.dispatch[d]]
            out += "<tr\(h.dense ? " class=\"dense\"" : "")><td>\(h.step)</td><td>\(h.layer)</td><td>\(h.head)</td><td>@\(esc(plan.name))</td>"
            out += "<td>\(f(h.density, "%.3f"))</td><td>\(CalibrationReport.drop(h))</td><td>\(h.dense ? "yes" : "no")</td>"
            out += "<td>\(h.reusedBlocks)</td><td>\(f(h.heldOutMass, "%.3f"))</td><td>\(f(h.heldOutError, "%.2e"))</td>"
            out += "<td>\(f(h.reuseExtraError, "%.1e"))</td></tr>\n"
        }
        out += """
            </table>
            <p>Leave-one-out drop: the most mass a calibration input loses under the mask built from the other inputs (a head
            above the stability threshold becomes dense; ≤ marks a bound, where inputs under the threshold were retired while
            folding). Held-out error: relative L2 error of the output against dense attention
            on inputs calibration never saw. Reuse extra error: how much of that error reused query blocks add.</p>
            <h2>Plans</h2>
            <p>Rows are query blocks, columns key blocks: dark tiles are computed, white ones skipped; an orange row copies the
            output of the query block marked in it.</p>
            <div class="plans">

            """
        var uses = [Int](repeating: 0, count: c.program.plans.count)
        for p in c.program.dispatch { uses[p] += 1 }
        for (i, plan) in c.program.plans.enumerated() {
            // Shown 240 pixels wide: no more pixels than that, so a plan costs the page at most
            // 240² pixels however many blocks it has.
            let picture = Pictures.plan(plan, size: min(plan.rows.count, 240))
            out += "<figure><img src=\"\(png(picture))\" alt=\"plan \(esc(plan.name))\" style=\"width: 240px\">"
            out += "<figcaption>@\(esc(plan.name)): "
            out += "density \(f(plan.density(blocks: s.blocks), "%.3f")), used by \(uses[i])</figcaption></figure>\n"
        }
        return out + "</div></body></html>\n"
    }

    /// The overview's size: 4 pixels a head and 2 a (step, layer) where that stays within 1024
    /// pixels a side (the page shows it 480 wide); past that, its cells average.
    static func overviewSize(_ s: Shape) -> Int {
        min(1024, max(4 * s.heads, 2 * s.steps.count * s.layers))
    }
}
