// Plans and programs as pictures (`calibc draw`, the calibration report): a plan's block mask,
// and an overview of density over steps, layers and heads.

import CalibIR
import CalibSupport

extension Plan {
    /// One cell of `cell`×`cell` pixels per (query block, key block): kept tiles dark, skipped
    /// white, a reused query block's row in orange with a mark at the column of its source.
    func picture(cell: Int) -> (width: Int, height: Int, paint: [(x: Int, y: Int, w: Int, h: Int, color: (UInt8, UInt8, UInt8))]) {
        let n = rows.count
        var paint: [(x: Int, y: Int, w: Int, h: Int, color: (UInt8, UInt8, UInt8))] = []
        for (q, row) in rows.enumerated() {
            switch row {
            case .compute(let spans):
                for s in spans { paint.append((s.start * cell, q * cell, s.count * cell, cell, (33, 52, 94))) }
            case .reuse(let source):
                paint.append((0, q * cell, n * cell, cell, (250, 214, 165)))
                paint.append((source * cell, q * cell, cell, cell, (214, 96, 0)))
            }
        }
        return (n * cell, n * cell, paint)
    }
}

extension Program {
    /// Mean density of each (step, layer) row and head column: a heat map, dark where dense.
    func densityGrid() -> [[Double]] {
        let b = shape.blocks
        let densities = plans.map { $0.density(blocks: b) }
        return (0..<(shape.steps.count * shape.layers)).map { sl in
            (0..<shape.heads).map { h in densities[dispatch[sl * shape.heads + h]] }
        }
    }
}

public enum Pictures {
    /// A plan's block mask, about `size` pixels on a side (at least one pixel a block).
    public static func plan(_ plan: Plan, size: Int = 640) -> RGBImage {
        let cell = max(1, size / max(1, plan.rows.count))
        let (w, h, paint) = plan.picture(cell: cell)
        var image = RGBImage(width: w, height: h)
        for p in paint { image.fill(x: p.x, y: p.y, width: p.w, height: p.h, p.color) }
        return image
    }

    /// Density of every (step, layer, head): heads across, (step, layer) down in step-major order,
    /// white at density 0 to dark blue at 1, a grey line between steps.
    public static func overview(_ program: Program, size: Int = 640) -> RGBImage {
        let grid = program.densityGrid()
        let rows = grid.count, cols = program.shape.heads
        let cw = max(2, size / cols), ch = max(2, min(cw, size / max(1, rows)))
        let gap = program.shape.layers > 1 ? 1 : 0
        let steps = program.shape.steps.count
        var image = RGBImage(width: cols * cw, height: rows * ch + (steps - 1) * gap, fill: (160, 160, 160))
        for (r, line) in grid.enumerated() {
            let y = r * ch + (r / program.shape.layers) * gap
            for (c, d) in line.enumerated() {
                let t = max(0, min(1, d))
                let color = (UInt8(255 - t * (255 - 33)), UInt8(255 - t * (255 - 52)), UInt8(255 - t * (255 - 94)))
                image.fill(x: c * cw, y: y, width: cw, height: ch, color)
            }
        }
        return image
    }
}
