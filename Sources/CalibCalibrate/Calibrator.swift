// The offline calibration of CalibAtt: from recorded queries and keys, per (step, layer,
// head), the key blocks each query block needs, the heads no static mask can serve, and the
// query blocks whose rows repeat; then a check on inputs calibration never saw.
// docs/calibration.md gives every rule and where its default comes from.

import CCalibrate
import CalibFrontend
import CalibIR
import CalibSupport
import Foundation

public struct CalibrationOptions: Sendable {
    public enum Selection: Sendable, Equatable {
        /// Per query block, the fewest key blocks holding this fraction of its mass, on every input.
        case mass(Double)
        /// Per head, the most massive tiles up to this fraction of all tiles.
        case density(Double)
    }

    public var block = 64
    public var selection = Selection.mass(0.95)
    /// A head becomes dense when, for some calibration input, the mask built from the other
    /// inputs keeps this much less of that input's mass than the mask built from all of them.
    public var stabilityDrop = 0.05
    /// Largest L1 distance between two block-mass rows, on every input, for one to reuse the other; 0 turns reuse off.
    public var reuseTolerance = 0.02

    public init() {}

    /// Refuses options no calibration can use; called before any recording is measured.
    public func validate() throws {
        guard (1...Frontend.maxBlock).contains(block) else { throw CalibrationError(message: "--block must be in 1...\(Frontend.maxBlock), got \(block)") }
        let fractions: [(String, Double)]
        switch selection {
        case .mass(let t): fractions = [("--mass", t)]
        case .density(let r): fractions = [("--density", r)]
        }
        for (name, x) in fractions + [("--stability-drop", stabilityDrop), ("--reuse-tolerance", reuseTolerance)] {
            guard x >= 0, x <= 1 else { throw CalibrationError(message: "\(name) must be in [0, 1], got \(x)") }
        }
    }
}

public struct CalibrationError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// What calibration measured for one (step, layer, head).
public struct HeadReport: Sendable {
    public var step: Int, layer: Int, head: Int
    public var density: Double
    /// Mass kept on the worst calibration input by the mask of the other inputs (nil with one input).
    public var leaveOneOutMass: Double?
    public var dense: Bool
    public var reusedBlocks: Int
    /// Mean over held-out inputs; nil without any.
    public var heldOutMass: Double?
    public var heldOutError: Double?
    /// Held-out error with reuse minus the error with those blocks computed.
    public var reuseExtraError: Double?
}

public struct Calibration: Sendable {
    public var program: Program
    public var layout: Layout?
    public var heads: [HeadReport]
}

public enum Calibrator {
    public static func run(calibration: [Recording], holdout: [Recording], options: CalibrationOptions,
                           progress: (Int, Int) -> Void = { _, _ in }) throws -> Calibration {
        guard let first = calibration.first else { throw CalibrationError(message: "no calibration recordings given") }
        for r in calibration + holdout {
            guard r.steps == first.steps, r.layers == first.layers, r.heads == first.heads, r.tokens == first.tokens,
                  r.headDim == first.headDim, r.scale == first.scale else {
                throw CalibrationError(message: "\(r.file.path): steps, layers or (heads, tokens, head_dim) differ from \(first.file.path)")
            }
        }
        try options.validate()
        let shape = Shape(tokens: first.tokens, headDim: first.headDim, block: options.block, layers: first.layers,
                          heads: first.heads, steps: first.steps)
        let blocks = shape.blocks
        guard blocks <= Frontend.maxBlocks else { throw CalibrationError(message: "\(blocks) blocks per side exceeds \(Frontend.maxBlocks)") }

        var plans: [Plan] = []
        var planIndex: [[Row]: Int] = [:]
        var dispatch = [Int](repeating: 0, count: shape.dispatchCount)
        var reports: [HeadReport] = []
        let units = shape.dispatchCount * (calibration.count + holdout.count)
        var done = 0
        for (s, step) in shape.steps.enumerated() {
            for layer in 0..<shape.layers {
                for head in 0..<shape.heads {
                    var masses: [[Float]] = []
                    for r in calibration {
                        masses.append(try blockMass(r, step: step, layer: layer, head: head, block: options.block))
                        done += 1
                        progress(done, units)
                    }
                    var (plan, report) = decide(masses: masses, blocks: blocks, partialLast: shape.tokens % options.block != 0,
                                                options: options)
                    plan.name = report.dense ? "dense" : "s\(step)_l\(layer)_h\(head)"  // named by its first user
                    (report.step, report.layer, report.head) = (step, layer, head)
                    if !holdout.isEmpty {
                        // Output error needs q and k; recordings reduced to block mass give kept mass only.
                        var mass = 0.0, error = 0.0, extra = 0.0, withOutputs = 0
                        for (i, r) in holdout.enumerated() {
                            let m = try blockMass(r, step: step, layer: layer, head: head, block: options.block)
                            mass += keptMass(plan, m, blocks: blocks)
                            if r.massBlock == nil {
                                let e = try planError(plan, r, step: step, layer: layer, head: head, block: options.block, seed: UInt64(i))
                                error += e
                                withOutputs += 1
                                if !plan.reusedRows.isEmpty {
                                    extra += e - (try planError(withoutReuse(plan, masses: masses, options: options), r, step: step,
                                                                layer: layer, head: head, block: options.block, seed: UInt64(i)))
                                }
                            }
                            done += 1
                            progress(done, units)
                        }
                        let n = Double(withOutputs)
                        report.heldOutMass = mass / Double(holdout.count)
                        report.heldOutError = withOutputs > 0 ? error / n : nil
                        report.reuseExtraError = plan.reusedRows.isEmpty || withOutputs == 0 ? nil : extra / n
                    }
                    let index = planIndex[plan.rows] ?? plans.count
                    if index == plans.count {
                        planIndex[plan.rows] = index
                        plans.append(plan)
                    }
                    dispatch[shape.dispatchIndex(stepIndex: s, layer: layer, head: head)] = index
                    reports.append(report)
                }
            }
        }
        let program = Program(model: first.model, shape: shape, plans: plans, dispatch: dispatch,
                              sourceHash: "")
        return Calibration(program: program, layout: first.layout, heads: reports)
    }

    /// masks.json of a calibration, checked by the frontend `compile` uses: calibrate never
    /// writes a file that compile refuses (a failure here is a calibrate bug).
    public static func masksJSON(_ c: Calibration, file: String) throws -> String {
        let text = MaskWriter.json(c.program, layout: c.layout)
        do {
            _ = try Frontend.parse(Array(text.utf8), file: file)
        } catch {
            throw CalibrationError(message: "internal error: calibrate produced masks that compile refuses: \(error)")
        }
        return text
    }

    /// The plan of one head from its block masses on the calibration inputs.
    public static func decide(masses: [[Float]], blocks: Int, partialLast: Bool, options: CalibrationOptions) -> (Plan, HeadReport) {
        let selections = masses.map { select($0, blocks: blocks, options.selection) }
        let union = (0..<blocks).map { q in selections.reduce(Set<Int>()) { $0.union($1[q]) } }
        var report = HeadReport(step: 0, layer: 0, head: 0, density: 0, leaveOneOutMass: nil, dense: false, reusedBlocks: 0)
        if masses.count > 1 {
            var worst = Double.infinity, worstDrop = 0.0
            for (i, m) in masses.enumerated() {
                let others = (0..<blocks).map { q in selections.indices.filter { $0 != i }.reduce(Set<Int>()) { $0.union(selections[$1][q]) } }
                let loo = mass(m, others, blocks: blocks), all = mass(m, union, blocks: blocks)
                worst = min(worst, loo)
                worstDrop = max(worstDrop, all - loo)
            }
            report.leaveOneOutMass = worst
            report.dense = worstDrop > options.stabilityDrop
        }
        if report.dense {
            report.density = 1
            return (Plan(name: "dense", rows: Array(repeating: .compute([Span(0, blocks)]), count: blocks)), report)
        }
        var rows: [Row] = union.map { .compute(Span.runs($0)) }
        if options.reuseTolerance > 0 {
            var representatives: [Int] = []
            for q in 0..<blocks {
                let source = representatives.first { i in
                    masses.allSatisfy { m in l1(m, i, q, blocks: blocks) <= options.reuseTolerance }
                }
                if let source {
                    rows[q] = .reuse(source)
                } else if !(partialLast && q == blocks - 1) {
                    representatives.append(q)
                }
            }
        }
        let plan = Plan(name: "", rows: rows)
        report.reusedBlocks = plan.reusedRows.count
        report.density = plan.density(blocks: blocks)
        return (plan, report)
    }

    /// Kept key blocks per query block on one input.
    static func select(_ m: [Float], blocks: Int, _ selection: CalibrationOptions.Selection) -> [Set<Int>] {
        switch selection {
        case .mass(let tau):
            return (0..<blocks).map { q in
                let order = (0..<blocks).sorted { m[q * blocks + $0] > m[q * blocks + $1] || (m[q * blocks + $0] == m[q * blocks + $1] && $0 < $1) }
                var kept = Set<Int>(), total = 0.0
                // At least one block per row, even for tau = 0 or rows without positive mass:
                // a query block that keeps nothing is not a valid mask.
                for k in order where kept.isEmpty || total < tau {
                    kept.insert(k)
                    total += Double(m[q * blocks + k])
                }
                return kept
            }
        case .density(let rho):
            // Every row keeps its heaviest block; the rest of the budget goes to the heaviest tiles overall.
            var kept = (0..<blocks).map { q in Set([(0..<blocks).max { m[q * blocks + $0] < m[q * blocks + $1] }!]) }
            let budget = Int((rho * Double(blocks * blocks)).rounded())
            let order = (0..<(blocks * blocks)).sorted { m[$0] > m[$1] || (m[$0] == m[$1] && $0 < $1) }
            var count = blocks
            for t in order where count < budget {
                if kept[t / blocks].insert(t % blocks).inserted { count += 1 }
            }
            return kept
        }
    }

    static func mass(_ m: [Float], _ kept: [Set<Int>], blocks: Int) -> Double {
        (0..<blocks).reduce(0.0) { acc, q in acc + kept[q].reduce(0.0) { $0 + Double(m[q * blocks + $1]) } } / Double(blocks)
    }

    /// Mass kept per query block, a reused block judged by its source's key blocks.
    static func keptMass(_ plan: Plan, _ m: [Float], blocks: Int) -> Double {
        let kept = plan.rows.map { row -> Set<Int> in
            var r = row
            while case .reuse(let s) = r { r = plan.rows[s] }
            return Set(r.spans.flatMap { Array($0.start..<$0.end) })
        }
        return mass(m, kept, blocks: blocks)
    }

    static func l1(_ m: [Float], _ a: Int, _ b: Int, blocks: Int) -> Double {
        (0..<blocks).reduce(0.0) { $0 + Double(abs(m[a * blocks + $1] - m[b * blocks + $1])) }
    }

    /// The plan with its reused blocks computed from their own selections instead.
    static func withoutReuse(_ plan: Plan, masses: [[Float]], options: CalibrationOptions) -> Plan {
        let blocks = plan.rows.count
        let selections = masses.map { select($0, blocks: blocks, options.selection) }
        var p = plan
        for q in plan.reusedRows {
            p.rows[q] = .compute(Span.runs(selections.reduce(Set<Int>()) { $0.union($1[q]) }))
        }
        return p
    }

    static func blockMass(_ r: Recording, step: Int, layer: Int, head: Int, block: Int) throws -> [Float] {
        if let recorded = r.massBlock {
            guard recorded == block else {
                throw CalibrationError(message: "\(r.file.path) holds block mass for blocks of \(recorded) tokens; calibrate with --block \(recorded)")
            }
            return try r.head("mass", step: step, layer: layer, head: head)
        }
        let q = try r.head("q", step: step, layer: layer, head: head), k = try r.head("k", step: step, layer: layer, head: head)
        let blocks = (r.tokens + block - 1) / block
        var m = [Float](repeating: 0, count: blocks * blocks)
        let status = calib_block_mass(q, k, Int64(r.tokens), Int64(r.headDim), Int64(block), Float(r.scale), &m)
        guard status == 0 else { throw CalibrationError(message: "out of memory measuring block mass") }
        return m
    }

    /// Relative L2 error of the plan's output against dense attention on one held-out input,
    /// with V from the recording or, when it has none, seeded uniform noise.
    static func planError(_ plan: Plan, _ r: Recording, step: Int, layer: Int, head: Int, block: Int, seed: UInt64) throws -> Double {
        let q = try r.head("q", step: step, layer: layer, head: head), k = try r.head("k", step: step, layer: layer, head: head)
        var rng = SplitMix64(seed: seed &* 7919 &+ UInt64(step * 1_000_000 + layer * 1000 + head))
        let v = r.hasValues ? try r.head("v", step: step, layer: layer, head: head) : rng.floats(r.tokens * r.headDim)
        var rowSpan: [Int32] = [0], spans: [Int32] = [], reuse: [Int32] = []
        for row in plan.rows {
            switch row {
            case .compute(let s):
                spans += s.flatMap { [Int32($0.start), Int32($0.end)] }
                reuse.append(-1)
            case .reuse(let source):
                reuse.append(Int32(source))
            }
            rowSpan.append(Int32(spans.count / 2))
        }
        var err = 0.0, norm = 0.0
        let status = calib_plan_error(q, k, v, Int64(r.tokens), Int64(r.headDim), Int64(block), Float(r.scale),
                                      rowSpan, spans, reuse, &err, &norm)
        guard status == 0 else { throw CalibrationError(message: "out of memory measuring plan error") }
        return (err / norm).squareRoot()
    }
}
