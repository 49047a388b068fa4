// Pictures and text drawings whose size follows the request, not the plan (docs/scale.md):
// checked against per-tile references, the way they were drawn before they were bounded.

import CalibIR
import CalibPictures
import CalibSupport
import XCTest

private typealias RGB = (UInt8, UInt8, UInt8)

/// Random plans of `blocks` rows, some reusing an earlier compute row.
private func randomPlan(_ blocks: Int, _ rng: inout some RandomNumberGenerator) -> Plan {
    var rows: [Row] = []
    for q in 0..<blocks {
        if q > 0, Int.random(in: 0..<4, using: &rng) == 0 {
            rows.append(.reuse(Int.random(in: 0..<q, using: &rng)))
            continue
        }
        var spans: [Span] = []
        var at = Int.random(in: 0..<blocks, using: &rng)
        while at < blocks {
            let end = Int.random(in: (at + 1)...blocks, using: &rng)
            spans.append(Span(at, end))
            at = end + Int.random(in: 1...max(1, blocks / 3), using: &rng)
        }
        rows.append(.compute(spans))
    }
    return Plan(name: "p", rows: rows)
}

final class BoundedPictureTests: XCTestCase {
    /// The drawing as it was made from a B × B grid of flags.
    private func gridDrawing(_ plan: Plan, width: Int) -> String {
        let n = plan.rows.count
        let cell = max(1, (n + width - 1) / width), cells = (n + cell - 1) / cell
        let shades: [Character] = ["·", "░", "▒", "▓", "█"]
        var kept = [[Bool]](repeating: [Bool](repeating: false, count: n), count: n)
        for (q, row) in plan.rows.enumerated() { for s in row.spans { for k in s.start..<s.end { kept[q][k] = true } } }
        var out = cell > 1 ? "(each character is \(cell)×\(cell) blocks)\n" : ""
        for cq in 0..<cells {
            let qs = (cq * cell)..<min(n, (cq + 1) * cell)
            if cell == 1, case .reuse(let source) = plan.rows[cq] {
                out += String(repeating: "-", count: cells) + "  q\(cq) reuses q\(source)\n"
                continue
            }
            for ck in 0..<cells {
                let ks = (ck * cell)..<min(n, (ck + 1) * cell)
                let on = qs.reduce(0) { acc, q in acc + ks.filter { kept[q][$0] }.count }
                out.append(on == 0 ? shades[0] : shades[max(1, Int((Double(on) / Double(qs.count * ks.count) * 4).rounded()))])
            }
            out += "\n"
        }
        return out
    }

    func testDrawingCountsTilesFromSpans() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<60 {
            let plan = randomPlan(Int.random(in: 1...70, using: &rng), &rng)
            for width in [3, 8, 96] { XCTAssertEqual(plan.drawing(width: width), gridDrawing(plan, width: width)) }
        }
        let dense = Plan(name: "dense", rows: Array(repeating: .compute([Span(0, 16_384)]), count: 16_384))
        let text = dense.drawing()
        XCTAssertTrue(text.hasPrefix("(each character is 171×171 blocks)\n"))
        XCTAssertEqual(text.split(separator: "\n").dropFirst().map { Set($0) }, Array(repeating: Set("█"), count: 96))
    }

    /// Each tile's colour as the picture paints it: kept dark, skipped white, a reused row orange
    /// with its source's column darker.
    private func tileColor(_ plan: Plan, _ q: Int, _ k: Int) -> RGB {
        switch plan.rows[q] {
        case .compute(let spans): return spans.contains { $0.start <= k && k < $0.end } ? (33, 52, 94) : (255, 255, 255)
        case .reuse(let source): return k == source ? (214, 96, 0) : (250, 214, 165)
        }
    }

    /// A plan of more blocks than `size`: each pixel is the rounded mean colour of the tiles it
    /// covers; of fewer, each tile is `size / B` pixels of its own colour.
    func testPlanPictureIsAboutSizePixelsASide() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<40 {
            let n = Int.random(in: 1...90, using: &rng), size = Int.random(in: 1...40, using: &rng)
            let plan = randomPlan(n, &rng)
            let image = Pictures.plan(plan, size: size)
            let f = n <= size ? 1 : (n + size - 1) / size, cells = (n + f - 1) / f, cell = max(1, size / cells)
            XCTAssertEqual([image.width, image.height], [cells * cell, cells * cell])
            XCTAssertLessThanOrEqual(image.width, max(size, n <= size ? n : size))
            for y in 0..<image.height {
                for x in 0..<image.width {
                    let qs = (y / cell * f)..<min(n, (y / cell + 1) * f), ks = (x / cell * f)..<min(n, (x / cell + 1) * f)
                    var sum = (0, 0, 0)
                    for q in qs {
                        for k in ks {
                            let c = tileColor(plan, q, k)
                            sum = (sum.0 + Int(c.0), sum.1 + Int(c.1), sum.2 + Int(c.2))
                        }
                    }
                    let tiles = qs.count * ks.count
                    let expected = [sum.0, sum.1, sum.2].map { UInt8(($0 + tiles / 2) / tiles) }
                    let i = 3 * (y * image.width + x)
                    XCTAssertEqual(Array(image.pixels[i..<(i + 3)]), expected, "n \(n) size \(size) pixel (\(x), \(y))")
                }
            }
        }
        // The built-in dense plan at the most blocks: 631 cells of 26 blocks (the last of 4), all dark.
        let dense = Plan(name: "dense", rows: Array(repeating: .compute([Span(0, 16_384)]), count: 16_384))
        let image = Pictures.plan(dense, size: 640)
        XCTAssertEqual([image.width, image.height], [631, 631])
        XCTAssertEqual(Set(stride(from: 0, to: image.pixels.count, by: 3).map { image.pixels[$0] }), [33])
    }

    /// More (step, layer) rows than fit: cells average them, and the picture stays about `size`.
    func testOverviewAveragesRowsPastItsSize() {
        let quarter = Plan(name: "q", rows: [.compute([Span(0, 1)]), .reuse(0)])  // density 0.25
        let full = Plan(name: "f", rows: [.compute([Span(0, 2)]), .compute([Span(0, 2)])])
        let (layers, heads, steps) = (4096, 2, 3)
        let dispatch = (0..<(steps * layers * heads)).map { $0 % 2 }  // head 0 quarter, head 1 full
        let p = Program(model: "m", shape: Shape(tokens: 2, headDim: 8, block: 1, layers: layers, heads: heads, steps: [0, 1, 2]),
                        plans: [quarter, full], dispatch: dispatch, sourceHash: "h")
        let image = Pictures.overview(p, size: 64)
        // 12,288 rows in 32 cells of 384, 2 pixels each; two heads of 32 pixels; no step lines.
        XCTAssertEqual([image.width, image.height], [64, 64])
        func pixel(_ x: Int, _ y: Int) -> [UInt8] { let i = 3 * (y * image.width + x); return Array(image.pixels[i..<(i + 3)]) }
        let shade = [UInt8(255 - 0.25 * (255 - 33)), UInt8(255 - 0.25 * (255 - 52)), UInt8(255 - 0.25 * (255 - 94))]
        for y in [0, 31, 63] {
            XCTAssertEqual(pixel(0, y), shade)
            XCTAssertEqual(pixel(63, y), [33, 52, 94])
        }
        // Few rows: one cell each (10 pixels high), a grey line between steps.
        let small = Program(model: "m", shape: Shape(tokens: 2, headDim: 8, block: 1, layers: 2, heads: 2, steps: [0, 1, 2]),
                            plans: [quarter, full], dispatch: (0..<12).map { $0 % 2 }, sourceHash: "h")
        let lined = Pictures.overview(small, size: 64)
        XCTAssertEqual([lined.width, lined.height], [64, 6 * 10 + 2])
        let line = 3 * (20 * lined.width)
        XCTAssertEqual(Array(lined.pixels[line..<(line + 3)]), [160, 160, 160])
    }
}
