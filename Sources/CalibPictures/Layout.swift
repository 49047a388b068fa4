// Plans and programs as pictures (`calibc draw`, the calibration report): a plan's block mask,
// and an overview of density over steps, layers and heads. A picture is about `size` pixels on
// a side whatever the input: past that, each pixel shows the mean of what it covers, so memory
// and time grow with the pixels and the plan's spans, never with B² tiles or every entry drawn
// large (a plan of 16,384 blocks drawn a pixel a block took 4 GB).

import CalibIR
import CalibSupport

public enum Pictures {
    typealias Color = (UInt8, UInt8, UInt8)
    static let kept: Color = (33, 52, 94), skipped: Color = (255, 255, 255)
    static let reused: Color = (250, 214, 165), source: Color = (214, 96, 0)

    /// A plan's block mask, about `size` pixels on a side: `size / B` pixels a block (at least
    /// one) up to `size` blocks; beyond, a pixel for each ⌈B / size⌉ × ⌈B / size⌉ tiles in their
    /// mean colour. Kept tiles dark, skipped white, a reused query block's row in orange with a
    /// mark at the column of its source.
    public static func plan(_ plan: Plan, size: Int = 640) -> RGBImage {
        let n = plan.rows.count, size = max(1, size)
        let f = n <= size ? 1 : (n + size - 1) / size  // blocks per cell, each way
        let cells = (n + f - 1) / f
        let cell = max(1, size / cells)  // pixels per cell, each way
        var image = RGBImage(width: cells * cell, height: cells * cell)
        var keptTiles = [Int](repeating: 0, count: cells), sources = [Int](repeating: 0, count: cells)
        var full = [Int](repeating: 0, count: cells + 1)  // differences: whole cells a span covers
        for row in 0..<cells {
            let qs = (row * f)..<min(n, (row + 1) * f)
            for c in 0..<cells { (keptTiles[c], sources[c], full[c]) = (0, 0, 0) }
            var reusing = 0
            for q in qs {
                switch plan.rows[q] {
                case .compute(let spans):
                    for s in spans {
                        let (first, last) = (s.start / f, (s.end - 1) / f)
                        if first == last {
                            keptTiles[first] += s.count
                        } else {
                            keptTiles[first] += (first + 1) * f - s.start
                            keptTiles[last] += s.end - last * f
                            full[first + 1] += f
                            full[last] -= f
                        }
                    }
                case .reuse(let from):
                    reusing += 1
                    sources[from / f] += 1
                }
            }
            var covered = 0
            for c in 0..<cells {
                covered += full[c]
                let width = min(n, (c + 1) * f) - c * f, tiles = qs.count * width
                let k = keptTiles[c] + covered, orange = reusing * width - sources[c]
                let blank = tiles - k - reusing * width
                func mean(_ channel: (Color) -> UInt8) -> UInt8 {
                    let sum = k * Int(channel(kept)) + orange * Int(channel(reused)) + sources[c] * Int(channel(source))
                        + blank * Int(channel(skipped))
                    return UInt8((sum + tiles / 2) / tiles)
                }
                image.fill(x: c * cell, y: row * cell, width: cell, height: cell, (mean { $0.0 }, mean { $0.1 }, mean { $0.2 }))
            }
        }
        return image
    }

    /// Density of every (step, layer, head): heads across, (step, layer) down in step-major order,
    /// white at density 0 to dark blue at 1, a grey line between steps. At most `size / 2` cells
    /// each way: past that a cell is the mean of ⌈heads / (size / 2)⌉ heads and as many
    /// (step, layer) rows, and step lines are left out when cells straddle steps.
    public static func overview(_ program: Program, size: Int = 640) -> RGBImage {
        let shape = program.shape
        let (rows, cols) = (shape.steps.count * shape.layers, shape.heads)
        let most = max(1, size / 2)
        let (fr, fc) = ((rows + most - 1) / most, (cols + most - 1) / most)  // rows and heads per cell
        let (gridRows, gridCols) = ((rows + fr - 1) / fr, (cols + fc - 1) / fc)
        let cw = max(2, size / gridCols), ch = max(2, min(cw, size / gridRows))
        let gap = fr == 1 && shape.layers > 1 ? 1 : 0
        let steps = shape.steps.count
        var image = RGBImage(width: gridCols * cw, height: gridRows * ch + (gap == 1 ? steps - 1 : 0), fill: (160, 160, 160))
        let densities = program.plans.map { $0.density(blocks: shape.blocks) }
        var sums = [Double](repeating: 0, count: gridCols)
        for gr in 0..<gridRows {
            let rs = (gr * fr)..<min(rows, (gr + 1) * fr)
            for c in 0..<gridCols { sums[c] = 0 }
            for r in rs {
                for h in 0..<cols { sums[h / fc] += densities[program.dispatch[r * cols + h]] }
            }
            let y = gr * ch + (gap == 1 ? gr / shape.layers : 0)
            for c in 0..<gridCols {
                let entries = rs.count * (min(cols, (c + 1) * fc) - c * fc)
                let t = max(0, min(1, sums[c] / Double(entries)))
                let color = (UInt8(255 - t * (255 - 33)), UInt8(255 - t * (255 - 52)), UInt8(255 - t * (255 - 94)))
                image.fill(x: c * cw, y: y, width: cw, height: ch, color)
            }
        }
        return image
    }
}
