// A plan drawn as a grid of block characters (FlexAttention's BlockMask.to_string idea):
// one character per query × key block, or per square of blocks when the plan is wider
// than `width`, shaded by the fraction of computed tiles it covers.

extension Plan {
    public func drawing(width: Int = 96) -> String {
        let n = rows.count
        let cell = max(1, (n + width - 1) / width)
        let cells = (n + cell - 1) / cell
        let shades: [Character] = ["·", "░", "▒", "▓", "█"]
        var kept = [[Bool]](repeating: [Bool](repeating: false, count: n), count: n)
        for (q, row) in rows.enumerated() {
            for span in row.spans { for k in span.start..<span.end { kept[q][k] = true } }
        }
        var out = ""
        if cell > 1 { out += "(each character is \(cell)×\(cell) blocks)\n" }
        for cq in 0..<cells {
            let qs = (cq * cell)..<min(n, (cq + 1) * cell)
            if cell == 1, case .reuse(let source) = rows[cq] {
                out += String(repeating: "-", count: cells) + "  q\(cq) reuses q\(source)\n"
                continue
            }
            var line = ""
            for ck in 0..<cells {
                let ks = (ck * cell)..<min(n, (ck + 1) * cell)
                var on = 0
                for q in qs { for k in ks where kept[q][k] { on += 1 } }
                let fraction = Double(on) / Double(qs.count * ks.count)
                line.append(on == 0 ? shades[0] : shades[max(1, Int((fraction * 4).rounded()))])
            }
            out += line + "\n"
        }
        return out
    }
}
