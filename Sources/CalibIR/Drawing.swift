// A plan drawn as a grid of block characters (FlexAttention's BlockMask.to_string idea):
// one character per query × key block, or per square of blocks when the plan is wider
// than `width`, shaded by the fraction of computed tiles it covers.

extension Plan {
    /// Time grows with the plan's spans and its rows × `width`, memory with `width`: tiles are
    /// counted from the spans, a row of characters at a time (a B × B grid of tiles would be
    /// 268 MB at B = 16,384).
    public func drawing(width: Int = 96) -> String {
        let n = rows.count
        let cell = max(1, (n + width - 1) / width)
        let cells = (n + cell - 1) / cell
        let shades: [Character] = ["·", "░", "▒", "▓", "█"]
        var out = ""
        if cell > 1 { out += "(each character is \(cell)×\(cell) blocks)\n" }
        var on = [Int](repeating: 0, count: cells)
        for cq in 0..<cells {
            let qs = (cq * cell)..<min(n, (cq + 1) * cell)
            if cell == 1, case .reuse(let source) = rows[cq] {
                out += String(repeating: "-", count: cells) + "  q\(cq) reuses q\(source)\n"
                continue
            }
            for i in on.indices { on[i] = 0 }
            for q in qs {
                for span in rows[q].spans {
                    for ck in (span.start / cell)...((span.end - 1) / cell) {
                        on[ck] += min(span.end, (ck + 1) * cell) - max(span.start, ck * cell)
                    }
                }
            }
            var line = ""
            for ck in 0..<cells {
                let fraction = Double(on[ck]) / Double(qs.count * (min(n, (ck + 1) * cell) - ck * cell))
                line.append(on[ck] == 0 ? shades[0] : shades[max(1, Int((fraction * 4).rounded()))])
            }
            out += line + "\n"
        }
        return out
    }
}
