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
        /// The same with a threshold per step: ε(t) = A + (C − A)·exp(−k·t/T).
        case schedule(MassSchedule)
        /// Per head, the most massive tiles up to this fraction of all tiles.
        case density(Double)

        /// The selection one step uses; a schedule becomes its step's `.mass`.
        public func at(step: Int, lastRecordedStep: Int) -> Selection {
            if case .schedule(let s) = self { return .mass(s.threshold(step: step, lastRecordedStep: lastRecordedStep)) }
            return self
        }

        /// As a calibration state records it (a schedule with its T resolved).
        public func text(lastRecordedStep: Int) -> String {
            switch self {
            case .mass(let t): return "mass \(t)"
            case .density(let r): return "density \(r)"
            case .schedule(var s):
                s.lastStep = s.lastStep ?? max(1, lastRecordedStep)
                return "mass-schedule \(s)"
            }
        }
    }

    public var block = 64
    public var selection = Selection.mass(0.95)
    /// Block mass from every `rowStep`-th row of each query block (1: every row); 1/rowStep of
    /// the work, at the price of a sampled mean (docs/calibration.md, "Sampled rows").
    public var rowStep = 1
    /// A head becomes dense when, for some calibration input, the mask built from the other
    /// inputs keeps this much less of that input's mass than the mask built from all of them.
    /// Fixed when inputs are folded into a state (inputs under it are retired there).
    public var stabilityDrop = 0.05
    /// Largest L1 distance between two block-mass rows, on every input, for one to reuse the other;
    /// 0 turns reuse off. Fixed when inputs are folded into a state.
    public var reuseTolerance = 0.02

    public init() {}

    /// Refuses options no calibration can use; called before any recording is measured.
    public func validate() throws {
        guard (1...Frontend.maxBlock).contains(block) else { throw CalibrationError(message: "--block must be in 1...\(Frontend.maxBlock), got \(block)") }
        guard (1...block).contains(rowStep) else { throw CalibrationError(message: "--sample-rows must be in 1...\(block) (the block size), got \(rowStep)") }
        let fractions: [(String, Double)]
        switch selection {
        case .mass(let t): fractions = [("--mass", t)]
        case .density(let r): fractions = [("--density", r)]
        case .schedule(let s): fractions = [("--mass-schedule A", s.final), ("--mass-schedule C", s.initial)]
        }
        for (name, x) in fractions + [("--stability-drop", stabilityDrop), ("--reuse-tolerance", reuseTolerance)] {
            guard x >= 0, x <= 1 else { throw CalibrationError(message: "\(name) must be in [0, 1], got \(x)") }
        }
    }

    /// The selection as a calibration state records it; states merge only when theirs agree, so
    /// sampled rows are part of it.
    public func selectionText(lastRecordedStep: Int) -> String {
        selection.text(lastRecordedStep: lastRecordedStep) + (rowStep > 1 ? "; rows 1/\(rowStep)" : "")
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
    /// The most mass a calibration input loses when the mask is built from the other inputs only:
    /// what the stability rule compares with `stabilityDrop` (nil with one input). From a state
    /// where the largest belongs to a retired input, an upper bound (`leaveOneOutIsBound`).
    public var leaveOneOutDrop: Double?
    public var leaveOneOutIsBound = false
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
    /// Calibrates on `calibration` and checks on `holdout`: the inputs are folded one at a time
    /// into a `CalibrationState` (`fold`), whose plans are then decided and checked (`finish`).
    public static func run(calibration: [Recording], holdout: [Recording], options: CalibrationOptions,
                           progress: (Int, Int) -> Void = { _, _ in }) throws -> Calibration {
        let perHead = calibration.count + holdout.count
        let state = try fold(calibration, options: options) { done, units in progress(done, units / calibration.count * perHead) }
        let folded = state.shape.dispatchCount * calibration.count
        return try finish(state, holdout: holdout, options: options) { done, units in progress(folded + done, folded + units) }
    }

    /// The shape every recording shares, checked.
    static func shape(_ recordings: [Recording], options: CalibrationOptions) throws -> Shape {
        guard let first = recordings.first else { throw CalibrationError(message: "no calibration recordings given") }
        for r in recordings {
            guard r.steps == first.steps, r.layers == first.layers, r.heads == first.heads, r.tokens == first.tokens,
                  r.headDim == first.headDim, r.scale == first.scale else {
                throw CalibrationError(message: "\(r.file.path): steps, layers or (heads, tokens, head_dim) differ from \(first.file.path)")
            }
            guard r.modelTimesteps == first.modelTimesteps else {
                throw CalibrationError(message: "\(r.file.path): model_timesteps differ from \(first.file.path)'s (one scheduler and step count for every recording)")
            }
        }
        try options.validate()
        if case .schedule(let s) = options.selection, let t = s.lastStep, let last = first.steps.last, last > t {
            throw CalibrationError(message: "--mass-schedule \(s): T = \(t), but the recordings hold step \(last); T is the last step index")
        }
        let shape = Shape(tokens: first.tokens, headDim: first.headDim, block: options.block, layers: first.layers,
                          heads: first.heads, steps: first.steps, modelTimesteps: first.modelTimesteps)
        guard shape.blocks <= Frontend.maxBlocks else {
            throw CalibrationError(message: "\(first.file.path): \(shape.tokens) tokens in blocks of \(shape.block) give \(shape.blocks) blocks per side, more than the \(Frontend.maxBlocks) a masks file allows; give a larger --block")
        }
        return shape
    }

    /// Refuses more calibration inputs than a state numbers; the command line asks before it
    /// opens them (each recording holds a mapping, and a process has some 65,000).
    public static func checkCount(_ recordings: Int) throws {
        guard recordings <= CalibrationState.maxInputs else {
            throw CalibrationError(message: "\(recordings) calibration recordings, more than the \(CalibrationState.maxInputs) a state can number")
        }
    }

    /// Folds the recordings, one input at a time per head, into a new state.
    public static func fold(_ recordings: [Recording], options: CalibrationOptions,
                            progress: (Int, Int) -> Void = { _, _ in }) throws -> CalibrationState {
        let shape = try shape(recordings, options: options)
        try checkCount(recordings.count)
        let first = recordings[0]
        let lastStep = shape.steps.last!
        let whole = textBlocks(first.layout, block: shape.block)
        // Inputs folded with text kept whole must not merge with inputs folded without.
        var state = CalibrationState(shape: shape, model: first.model, layout: first.layout, scale: first.scale,
                                     selection: options.selectionText(lastRecordedStep: lastStep) + (whole.isEmpty ? "" : "; text blocks whole"),
                                     reuseTolerance: options.reuseTolerance, stabilityDrop: options.stabilityDrop)
        let units = shape.dispatchCount * recordings.count
        var done = 0
        for (s, step) in shape.steps.enumerated() {
            let selection = options.selection.at(step: step, lastRecordedStep: lastStep)
            for layer in 0..<shape.layers {
                for head in 0..<shape.heads {
                    let d = shape.dispatchIndex(stepIndex: s, layer: layer, head: head)
                    for (i, r) in recordings.enumerated() {
                        let m = try blockMass(r, step: step, layer: layer, head: head, block: options.block, rowStep: options.rowStep)
                        state.heads[d].fold(mass: m, chosen: chosen(m, blocks: shape.blocks, selection, whole: whole), input: i,
                                            reuseTolerance: options.reuseTolerance, stabilityDrop: options.stabilityDrop)
                        done += 1
                        progress(done, units)
                    }
                }
            }
        }
        state.inputs = recordings.count
        return state
    }

    /// Plans from a state, checked on `holdout`; `options.reuseTolerance` and
    /// `options.stabilityDrop` must be the ones the state was folded with.
    public static func finish(_ state: CalibrationState, holdout: [Recording], options: CalibrationOptions,
                              progress: (Int, Int) -> Void = { _, _ in }) throws -> Calibration {
        try state.checkFolded(options, file: "the calibration state")
        let shape = state.shape
        for r in holdout {
            guard r.steps == shape.steps, r.layers == shape.layers, r.heads == shape.heads, r.tokens == shape.tokens,
                  r.headDim == shape.headDim, r.scale == state.scale else {
                throw CalibrationError(message: "\(r.file.path): steps, layers or (heads, tokens, head_dim) differ from the calibration inputs")
            }
        }
        var plans = Plans()
        var reports: [HeadReport] = []
        let units = shape.dispatchCount * holdout.count
        var done = 0
        for (s, step) in shape.steps.enumerated() {
            for layer in 0..<shape.layers {
                for head in 0..<shape.heads {
                    let h = state.head(stepIndex: s, layer: layer, head: head)
                    let kept = h.keptSpans
                    var (plan, report) = decide(h, kept: kept, inputs: state.inputs, partialLast: shape.tokens % shape.block != 0,
                                                options: options)
                    (report.step, report.layer, report.head) = (step, layer, head)
                    try check(plan, kept: kept, holdout: holdout, step: step, layer: layer, head: head, block: shape.block,
                              report: &report) { done += 1; progress(done, units) }
                    plans.add(plan, dense: report.dense, step: step, layer: layer, head: head)
                    reports.append(report)
                }
            }
        }
        return Calibration(program: Program(model: state.model, shape: shape, plans: plans.plans, dispatch: plans.dispatch,
                                            sourceHash: ""),
                           layout: state.layout, heads: reports)
    }

    /// The blocks that hold text tokens of a joint layout (empty without text): every input keeps
    /// their rows and columns whole, which beat calibrating them as video tiles on held-out error,
    /// density and dense heads alike (docs/calibration.md, "Joint text–video sequences").
    public static func textBlocks(_ layout: Layout?, block: Int) -> Range<Int> {
        guard let layout, layout.textTokens > 0 else { return 0..<0 }
        let video = layout.frames * layout.height * layout.width
        let (lo, hi) = layout.textFirst ? (0, layout.textTokens) : (video, video + layout.textTokens)
        return (lo / block)..<((hi + block - 1) / block)
    }

    /// Unique plans in order of first use, each named by its first user.
    struct Plans {
        var plans: [Plan] = []
        var index: [[Row]: Int] = [:]
        var dispatch: [Int] = []

        mutating func add(_ plan: Plan, dense: Bool, step: Int, layer: Int, head: Int) {
            var p = plan
            p.name = dense ? "dense" : "s\(step)_l\(layer)_h\(head)"
            let i = index[p.rows] ?? plans.count
            if i == plans.count {
                index[p.rows] = i
                plans.append(p)
            }
            dispatch.append(i)
        }
    }

    /// The plan of one head from its streaming state (folded with `options`' tolerance and threshold).
    public static func decide(_ h: HeadState, inputs: Int, partialLast: Bool, options: CalibrationOptions) -> (Plan, HeadReport) {
        decide(h, kept: h.keptSpans, inputs: inputs, partialLast: partialLast, options: options)
    }

    /// `decide` with the head's kept spans (`h.keptSpans`) already read from its codes.
    static func decide(_ h: HeadState, kept: [[Span]], inputs: Int, partialLast: Bool, options: CalibrationOptions) -> (Plan, HeadReport) {
        let blocks = h.blocks
        var report = HeadReport(step: 0, layer: 0, head: 0, density: 0, leaveOneOutDrop: nil, dense: false, reusedBlocks: 0)
        if inputs > 1 {
            // Retired inputs' drops are at most the threshold, so they never decide; they only
            // leave the largest drop unknown below the bound they retired with.
            let drop = h.worstDrop
            report.leaveOneOutIsBound = Double(h.retiredDrop) > drop
            report.leaveOneOutDrop = max(drop, Double(h.retiredDrop))
            report.dense = drop > options.stabilityDrop
        }
        if report.dense {
            report.density = 1
            return (Plan(name: "dense", rows: Array(repeating: .compute([Span(0, blocks)]), count: blocks)), report)
        }
        var rows = rowsOrDense(kept, blocks: blocks)
        if options.reuseTolerance > 0 {
            var representatives: [Int] = []
            for q in 0..<blocks where !kept[q].isEmpty {
                if let source = representatives.first(where: { h.mayReuse($0, q) }) {
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

    /// Held-out figures of one head's plan; `kept` gives reused blocks their own selection for
    /// the "reuse extra" comparison. Calls `tick` once per held-out input.
    static func check(_ plan: Plan, kept: [[Span]], holdout: [Recording], step: Int, layer: Int, head: Int, block: Int,
                      report: inout HeadReport, tick: () -> Void) throws {
        guard !holdout.isEmpty else { return }
        let blocks = plan.rows.count
        // Output error needs q and k; recordings reduced to block mass give kept mass only.
        var mass = 0.0, error = 0.0, extra = 0.0, withOutputs = 0
        for (i, r) in holdout.enumerated() {
            let m = try blockMass(r, step: step, layer: layer, head: head, block: block)
            mass += keptMass(plan, m, blocks: blocks)
            if r.massBlock == nil {
                let e = try planError(plan, r, step: step, layer: layer, head: head, block: block, seed: UInt64(i))
                error += e
                withOutputs += 1
                if !plan.reusedRows.isEmpty {
                    extra += e - (try planError(withoutReuse(plan, kept: kept), r, step: step, layer: layer, head: head,
                                                block: block, seed: UInt64(i)))
                }
            }
            tick()
        }
        let n = Double(withOutputs)
        report.heldOutMass = mass / Double(holdout.count)
        report.heldOutError = withOutputs > 0 ? error / n : nil
        report.reuseExtraError = plan.reusedRows.isEmpty || withOutputs == 0 ? nil : extra / n
    }

    /// The batch reference: every input's block mass of a head held at once, and the rules
    /// applied to them directly (docs/calibration.md). `run` must give the same plans.
    public static func runBatch(calibration: [Recording], holdout: [Recording], options: CalibrationOptions) throws -> Calibration {
        let shape = try shape(calibration, options: options)
        var plans = Plans()
        var reports: [HeadReport] = []
        let whole = textBlocks(calibration[0].layout, block: options.block)
        for step in shape.steps {
            let selection = options.selection.at(step: step, lastRecordedStep: shape.steps.last!)
            for layer in 0..<shape.layers {
                for head in 0..<shape.heads {
                    let masses = try calibration.map { try blockMass($0, step: step, layer: layer, head: head, block: options.block, rowStep: options.rowStep) }
                    var o = options
                    o.selection = selection
                    var (plan, report) = decide(masses: masses, blocks: shape.blocks, partialLast: shape.tokens % options.block != 0,
                                                options: o, whole: whole)
                    (report.step, report.layer, report.head) = (step, layer, head)
                    let selections = masses.map { select($0, blocks: shape.blocks, selection, whole: whole) }
                    let union = (0..<shape.blocks).map { q in selections.reduce(Set<Int>()) { $0.union($1[q]) } }
                    try check(plan, kept: union.map(Span.runs), holdout: holdout, step: step, layer: layer, head: head, block: options.block,
                              report: &report) {}
                    plans.add(plan, dense: report.dense, step: step, layer: layer, head: head)
                    reports.append(report)
                }
            }
        }
        return Calibration(program: Program(model: calibration[0].model, shape: shape, plans: plans.plans, dispatch: plans.dispatch,
                                            sourceHash: ""),
                           layout: calibration[0].layout, heads: reports)
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

    /// The batch rules on one head's block masses (`options.selection` already resolved to its
    /// step); query and key blocks in `whole` are kept whole (`textBlocks`).
    public static func decide(masses: [[Float]], blocks: Int, partialLast: Bool, options: CalibrationOptions,
                              whole: Range<Int> = 0..<0) -> (Plan, HeadReport) {
        let selections = masses.map { select($0, blocks: blocks, options.selection, whole: whole) }
        let union = (0..<blocks).map { q in selections.reduce(Set<Int>()) { $0.union($1[q]) } }
        var report = HeadReport(step: 0, layer: 0, head: 0, density: 0, leaveOneOutDrop: nil, dense: false, reusedBlocks: 0)
        if masses.count > 1 {
            var worstDrop = 0.0
            for (i, m) in masses.enumerated() {
                let others = (0..<blocks).map { q in selections.indices.filter { $0 != i }.reduce(Set<Int>()) { $0.union(selections[$1][q]) } }
                let loo = mass(m, others, blocks: blocks), all = mass(m, union, blocks: blocks)
                worstDrop = max(worstDrop, all - loo)
            }
            report.leaveOneOutDrop = worstDrop
            report.dense = worstDrop > options.stabilityDrop
        }
        if report.dense {
            report.density = 1
            return (Plan(name: "dense", rows: Array(repeating: .compute([Span(0, blocks)]), count: blocks)), report)
        }
        var rows = rowsOrDense(union.map(Span.runs), blocks: blocks)
        if options.reuseTolerance > 0 {
            var representatives: [Int] = []
            for q in 0..<blocks where !union[q].isEmpty {
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

    /// Each query block's kept spans as a row to compute; a query block no input measured (in
    /// every input's text padding) keeps every key block, since nothing says what it needs, and
    /// callers leave it out of reuse.
    static func rowsOrDense(_ kept: [[Span]], blocks: Int) -> [Row] {
        kept.map { .compute($0.isEmpty ? [Span(0, blocks)] : $0) }
    }

    /// Whether query block q measured anything on an input: a block wholly in a prompt's text
    /// padding has a zero row of block mass (`calib_block_mass`), every other a row summing to 1.
    static func measured(_ m: [Float], _ q: Int, blocks: Int) -> Bool {
        m[(q * blocks)..<((q + 1) * blocks)].contains { $0 > 0 }
    }

    /// Kept key blocks per query block on one input; blocks in `whole` are kept whole as rows and
    /// as columns, their mass counting towards each row's threshold.
    static func select(_ m: [Float], blocks: Int, _ selection: CalibrationOptions.Selection, whole: Range<Int> = 0..<0) -> [Set<Int>] {
        let chosen = chosen(m, blocks: blocks, selection, whole: whole)
        return (0..<blocks).map { q in Set((0..<blocks).filter { chosen[q * blocks + $0] }) }
    }

    /// `select` as one flag per tile (qb · blocks + kb): a byte a tile where sets of kept blocks
    /// take tens (2.7 GB more for a dense selection at B = 16,384).
    static func chosen(_ m: [Float], blocks: Int, _ selection: CalibrationOptions.Selection, whole: Range<Int> = 0..<0) -> [Bool] {
        var chosen = [Bool](repeating: false, count: blocks * blocks)
        switch selection {
        case .mass(let tau):
            var order = [Int32](repeating: 0, count: blocks)
            // A block the input did not measure selects nothing: the input has no evidence there.
            for q in 0..<blocks where measured(m, q, blocks: blocks) {
                let row = q * blocks
                if whole.contains(q) {
                    for k in 0..<blocks { chosen[row + k] = true }
                    continue
                }
                var any = false, total = 0.0
                for k in whole {
                    chosen[row + k] = true
                    any = true
                    total += Double(m[row + k])
                }
                for k in 0..<blocks { order[k] = Int32(k) }
                order.sort { m[row + Int($0)] > m[row + Int($1)] || (m[row + Int($0)] == m[row + Int($1)] && $0 < $1) }
                // At least one block per row, even for tau = 0: a query block that keeps nothing
                // is not a valid mask.
                for k in order where !whole.contains(Int(k)) && (!any || total < tau) {
                    chosen[row + Int(k)] = true
                    any = true
                    total += Double(m[row + Int(k)])
                }
            }
        case .density(let rho):
            // Every measured row keeps the whole blocks and its heaviest block; the rest of the
            // budget goes to the heaviest tiles of measured rows overall.
            let rows = (0..<blocks).map { measured(m, $0, blocks: blocks) }
            for q in 0..<blocks where rows[q] {
                for k in whole.contains(q) ? 0..<blocks : whole { chosen[q * blocks + k] = true }
                chosen[q * blocks + (0..<blocks).max { m[q * blocks + $0] < m[q * blocks + $1] }!] = true
            }
            let budget = Int((rho * Double(blocks * blocks)).rounded())
            var order = Array(0..<Int32(blocks * blocks))
            order.sort { m[Int($0)] > m[Int($1)] || (m[Int($0)] == m[Int($1)] && $0 < $1) }
            var count = chosen.filter { $0 }.count
            for t in order where count < budget && !chosen[Int(t)] && rows[Int(t) / blocks] {
                chosen[Int(t)] = true
                count += 1
            }
        case .schedule:
            preconditionFailure("a schedule is resolved to its step's .mass before selecting")
        }
        return chosen
    }

    static func mass(_ m: [Float], _ kept: [Set<Int>], blocks: Int) -> Double {
        (0..<blocks).reduce(0.0) { acc, q in acc + kept[q].reduce(0.0) { $0 + Double(m[q * blocks + $1]) } } / Double(blocks)
    }

    /// Mass kept per measured query block (blocks wholly in text padding have nothing to keep),
    /// a reused block judged by its source's key blocks (summed over the spans, in key order).
    static func keptMass(_ plan: Plan, _ m: [Float], blocks: Int) -> Double {
        var sum = 0.0, rows = 0
        for q in plan.rows.indices where measured(m, q, blocks: blocks) {
            var r = plan.rows[q]
            while case .reuse(let s) = r { r = plan.rows[s] }
            for span in r.spans { for k in span.start..<span.end { sum += Double(m[q * blocks + k]) } }
            rows += 1
        }
        return sum / Double(max(rows, 1))
    }

    /// Each difference in double, summed in key-block order: `calib_row_distance`'s sum.
    static func l1(_ m: [Float], _ a: Int, _ b: Int, blocks: Int) -> Double {
        (0..<blocks).reduce(0.0) { $0 + abs(Double(m[a * blocks + $1]) - Double(m[b * blocks + $1])) }
    }

    /// The plan with its reused blocks computed from their own selections (the union) instead.
    static func withoutReuse(_ plan: Plan, kept: [[Span]]) -> Plan {
        var p = plan
        for q in plan.reusedRows { p.rows[q] = .compute(kept[q]) }
        return p
    }

    static func blockMass(_ r: Recording, step: Int, layer: Int, head: Int, block: Int, rowStep: Int = 1) throws -> [Float] {
        if let recorded = r.massBlock {
            guard recorded == block else {
                throw CalibrationError(message: "\(r.file.path) holds block mass for blocks of \(recorded) tokens; calibrate with --block \(recorded)")
            }
            guard rowStep == 1 else {
                throw CalibrationError(message: "\(r.file.path) holds block mass already reduced; --sample-rows applies to recordings of q and k")
            }
            return try r.head("mass", step: step, layer: layer, head: head)
        }
        let q = try r.head("q", step: step, layer: layer, head: head), k = try r.head("k", step: step, layer: layer, head: head)
        let blocks = (r.tokens + block - 1) / block
        var m = [Float](repeating: 0, count: blocks * blocks)
        let status = calib_block_mass(q, k, Int64(r.tokens), Int64(r.validTokens), Int64(r.headDim), Int64(block), Int64(rowStep),
                                      Float(r.scale), &m)
        guard status == 0 else { throw CalibrationError(message: "out of memory measuring block mass") }
        return m
    }

    /// Relative L2 error of the plan's output against dense attention on one held-out input,
    /// with V from the recording or, when it has none, seeded uniform noise.
    static func planError(_ plan: Plan, _ r: Recording, step: Int, layer: Int, head: Int, block: Int, seed: UInt64) throws -> Double {
        let q = try r.head("q", step: step, layer: layer, head: head), k = try r.head("k", step: step, layer: layer, head: head)
        var rng = SplitMix64(seed: seed &* 7919 &+ UInt64(step * 1_000_000 + layer * 1000 + head))
        let v = r.hasValues ? try r.head("v", step: step, layer: layer, head: head) : rng.floats(r.tokens * r.headDim)
        let t = planTables(plan)
        var err = 0.0, norm = 0.0
        let status = calib_plan_error(q, k, v, Int64(r.tokens), Int64(r.validTokens), Int64(r.headDim), Int64(block),
                                      Float(r.scale), t.rowSpan, t.spans, t.reuse, &err, &norm)
        guard status == 0 else { throw CalibrationError(message: "out of memory measuring plan error") }
        return (err / norm).squareRoot()
    }

    /// A plan as `calib_plan_error` takes it: per query block its first span (`rowSpan`, one past
    /// the last entry closing the list), the spans as (start, end) pairs, and its reuse source or -1.
    public static func planTables(_ plan: Plan) -> (rowSpan: [Int32], spans: [Int32], reuse: [Int32]) {
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
        return (rowSpan, spans, reuse)
    }
}
