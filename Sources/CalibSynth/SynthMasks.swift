// A calibration-sized mask set without running calibration: the shape of Wan 2.1 14B at 720p
// (40 layers × 40 heads × 50 steps = 80,000 (step, layer, head); 21 latent frames of 45 × 80
// = 75,600 tokens; blocks of 128 → 591 per side) with the redundancy real sets have: a head
// keeps its type and window across steps, early steps attend more widely, heads of one type
// differ by small per-head details, and a few heads are dense.

import CalibIR
import CalibSupport

public enum SynthMasks {
    public struct Config: Sendable {
        public var frames = 21, height = 45, width = 80
        public var block = 128, headDim = 128
        public var layers = 40, heads = 40
        public var steps = Array(0..<50)
        /// Steps before this one use wider windows.
        public var earlySteps = 10

        public init() {}

        public var tokens: Int { frames * height * width }
    }

    /// `progress(done, total)` is called after each layer.
    public static func program(_ c: Config, seed: UInt64, progress: (Int, Int) -> Void = { _, _ in }) -> Program {
        let shape = Shape(tokens: c.tokens, headDim: c.headDim, block: c.block, layers: c.layers, heads: c.heads, steps: c.steps)
        let n = shape.blocks
        let perFrame = Double(c.height * c.width) / Double(c.block)
        var plans: [Plan] = []
        var dispatch = [Int](repeating: 0, count: shape.dispatchCount)
        var rng = SplitMix64(seed: seed)
        let dense = Plan(name: "dense", rows: Array(repeating: .compute([Span(0, n)]), count: n))
        var denseIndex: Int?
        for layer in 0..<c.layers {
            for head in 0..<c.heads {
                // Type by head, window by a per-head draw; 1 head in 20 stays dense.
                let kind = (head * 7 + layer) % 20 == 0 ? 4 : (head + layer) % 4
                let width = 1 + Int.random(in: 0...2, using: &rng)
                let jitter = (0..<n).map { _ in Int.random(in: 0..<50, using: &rng) == 0 }  // a few rows keep one more block
                var phases: [Int] = []
                for wide in [true, false] {
                    if kind == 4 {
                        if denseIndex == nil {
                            denseIndex = plans.count
                            plans.append(dense)
                        }
                        phases.append(denseIndex!)
                        continue
                    }
                    let w = width + (wide ? 1 : 0)
                    let rows: [Row] = (0..<n).map { q in
                        let frame = Int(Double(q) / perFrame)
                        let inFrame = Double(q) - Double(frame) * perFrame
                        var kept = Set<Int>()
                        func frameBlocks(_ f: Int, around: Double? = nil, radius: Int = 0) {
                            guard f >= 0, f < c.frames else { return }
                            let start = Double(f) * perFrame
                            if let around {
                                let center = Int(start + around)
                                for k in (center - radius)...(center + radius) where k >= 0 && k < n { kept.insert(k) }
                            } else {
                                for k in Int(start)...min(n - 1, Int(start + perFrame)) { kept.insert(k) }
                            }
                        }
                        switch kind {
                        case 0:  // spatial: own frame, plus neighbours in the wide phase
                            for f in (frame - (w - 1) / 2)...(frame + (w - 1) / 2) { frameBlocks(f) }
                        case 1:  // temporal: the same place in every frame
                            for f in 0..<c.frames { frameBlocks(f, around: inFrame, radius: w - 1) }
                        case 2:  // local 3D window
                            for f in (frame - w)...(frame + w) { frameBlocks(f, around: inFrame, radius: w + 1) }
                        default:  // sink: the first frame and the diagonal
                            frameBlocks(0)
                            kept.insert(q)
                        }
                        if jitter[q] { kept.insert(min(n - 1, (kept.max() ?? 0) + 1)) }
                        return .compute(Span.runs(kept))
                    }
                    plans.append(Plan(name: "l\(layer)_h\(head)_\(wide ? "early" : "late")", rows: rows))
                    phases.append(plans.count - 1)
                }
                for (s, step) in c.steps.enumerated() {
                    dispatch[shape.dispatchIndex(stepIndex: s, layer: layer, head: head)] = phases[step < c.earlySteps ? 0 : 1]
                }
            }
            progress(layer + 1, c.layers)
        }
        return Program(model: "synthetic Wan 2.1 14B 720p", shape: shape, plans: plans, dispatch: dispatch, sourceHash: "")
    }
}
