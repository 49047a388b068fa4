// Video-like queries and keys without trained weights. Random weights give flat attention
// (about 95% of blocks needed for 95% of the mass), which says nothing about calibration;
// these heads have the structure trained video DiTs show:
//
// - tokens in frame-major (frame, row, col) raster order, as Wan, Mochi and HunyuanVideo;
// - a position-only vector rotated by Wan-style 3D RoPE (head_dim 128 = 44 t + 42 h + 42 w
//   dims, interleaved pairs, theta 10000). q·k then depends on the position offset alone,
//   peaked at zero; the energy on each axis sets the head type. Energy on t only: the score
//   ignores (h, w), so a query attends to its own frame ("spatial"); on h and w only: the same
//   place in every frame ("temporal"); on all three: a local 3D window;
// - smooth moving content (blobs drifting across frames, different per prompt) added to q
//   and k, so attention also follows content and varies between prompts;
// - a sink head, whose queries all share one direction and attend to the first frame, so
//   its attention rows repeat (reuse);
// - an input-dependent head that sends most of its mass to a patch whose position changes
//   per prompt: no static mask serves it, and calibration must find that out;
// - optionally a text segment, first or last, as joint text–video models (Mochi 1,
//   HunyuanVideo, CogVideoX) have: a few text keys draw mass from every video query, as
//   attention sinks do, text queries attend broadly, and with text last each prompt has its own
//   valid length (the rest padding).

import CCalibrate
import CalibIR
import CalibSupport
import CalibSafetensors
import Foundation

public struct SynthConfig: Sendable {
    public var frames = 12, height = 16, width = 16
    public var headDim = 128
    public var layers = 2, heads = 6
    public var steps = [0, 20, 40]
    /// Early denoising steps attend more broadly: gains scale by these per step.
    public var stepGain: [Double] = [0.7, 1.0, 1.0]
    /// Strength of the prompt-dependent content; 0 leaves pure positional heads.
    public var content = 1.0

    /// When set, recordings hold block mass in blocks of this many tokens (`.mass` tensors,
    /// docs/recordings.md) instead of raw q and k: what a recorder writes at full resolution.
    public var massBlock: Int?
    public var model = "synthetic-video-dit"
    /// Text tokens in the sequence, after the video or (`textFirst`) before it; 0: video only, as Wan.
    public var textTokens = 0
    public var textFirst = false

    public init() {}

    /// Wan 2.1 1.3B at 480p: 21 latent frames of 30 × 52 tokens (32,760), head_dim 128; by
    /// default one layer of the six head kinds at steps 0, 20, 40 (the model has 30 × 12 × 50).
    public static func wan13b480p() -> SynthConfig {
        var c = SynthConfig()
        (c.frames, c.height, c.width, c.layers, c.model) = (21, 30, 52, 1, "synthetic-wan2.1-1.3b-480p")
        return c
    }

    public var videoTokens: Int { frames * height * width }
    public var tokens: Int { videoTokens + textTokens }

    /// How many text tokens prompt p has, the rest being padding; nil where none is padding
    /// (no text, or text first, which CogVideoX never pads). Prompt 0 has N/2 + N/8 + 1, so its
    /// text ends inside a block at the usual block sizes; the others between N/2 and N.
    public func textValid(prompt: Int, seed: UInt64) -> Int? {
        guard textTokens > 0, !textFirst else { return nil }
        if prompt == 0 { return min(textTokens, textTokens / 2 + textTokens / 8 + 1) }
        var rng = SplitMix64(seed: seed ^ (UInt64(prompt + 1) &* 0x2545_F491_4F6C_DD1D))
        return Int.random(in: (textTokens / 2)...textTokens, using: &rng)
    }
}

public struct SynthError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

public enum HeadKind: String, CaseIterable, Sendable {
    case spatial, temporal, local3d, sink, moving
}

public enum Synth {
    /// Head h of every layer, cycling: the mix a video DiT layer shows.
    public static func kind(head: Int) -> HeadKind {
        [.spatial, .temporal, .local3d, .local3d, .sink, .moving][head % 6]
    }

    /// Writes `prompt0.safetensors` … into `dir`; prompt p differs only by its seed.
    /// `first` skips prompts: `first: 2, prompts: 1` writes only prompt2.safetensors.
    public static func write(_ config: SynthConfig, prompts: Int, first: Int = 0, seed: UInt64, to dir: String,
                             progress: (Int, Int) -> Void = { _, _ in }) throws -> [String] {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var paths: [String] = []
        let total = prompts * config.steps.count * config.layers
        var done = 0
        for p in first..<(first + prompts) {
            var writer = SafetensorsWriter()
            writer.metadata = ["format": "calibc-recording/1", "model": config.model, "frames": "\(config.frames)",
                               "height": "\(config.height)", "width": "\(config.width)", "text_tokens": "\(config.textTokens)",
                               "prompt": "\(p)", "seed": "\(seed)"]
            if config.textTokens > 0 { writer.metadata["text_position"] = config.textFirst ? "first" : "last" }
            let valid = config.textValid(prompt: p, seed: seed)
            if let valid { writer.metadata["text_valid"] = "\(valid)" }
            for (s, step) in config.steps.enumerated() {
                for layer in 0..<config.layers {
                    let (q, k) = queriesAndKeys(config, prompt: p, seed: seed, stepIndex: s, layer: layer)
                    let shape = [config.heads, config.tokens, config.headDim]
                    if let block = config.massBlock {
                        // As the recorder would: bf16 q and k reduced to block mass, never stored.
                        let blocks = (config.tokens + block - 1) / block, per = config.tokens * config.headDim
                        var mass: [Float] = []
                        for h in 0..<config.heads {
                            let qh = q[(h * per)..<((h + 1) * per)].map { BFloat16($0).float }
                            let kh = k[(h * per)..<((h + 1) * per)].map { BFloat16($0).float }
                            var m = [Float](repeating: 0, count: blocks * blocks)
                            let tokens = config.tokens - config.textTokens + (valid ?? config.textTokens)
                            guard calib_block_mass(qh, kh, Int64(config.tokens), Int64(tokens), Int64(config.headDim), Int64(block), 1,
                                                   Float(1 / Double(config.headDim).squareRoot()), &m) == 0 else {
                                throw SynthError(message: "out of memory measuring block mass")
                            }
                            mass += m
                        }
                        writer.add("step\(step).layer\(layer).mass", mass, shape: [config.heads, blocks, blocks], as: .f32)
                    } else {
                        writer.add("step\(step).layer\(layer).q", q, shape: shape, as: .bf16)
                        writer.add("step\(step).layer\(layer).k", k, shape: shape, as: .bf16)
                    }
                    done += 1
                    progress(done, total)
                }
            }
            if let block = config.massBlock {
                writer.metadata["mass_block"] = "\(block)"
                writer.metadata["tokens"] = "\(config.tokens)"
                writer.metadata["head_dim"] = "\(config.headDim)"
            }
            let path = (dir as NSString).appendingPathComponent("prompt\(p).safetensors")
            try writer.write(to: path)
            paths.append(path)
        }
        return paths
    }

    /// (heads, tokens, head_dim) queries and keys of one step and layer for one prompt.
    public static func queriesAndKeys(_ c: SynthConfig, prompt: Int, seed: UInt64, stepIndex: Int, layer: Int) -> ([Float], [Float]) {
        let n = c.tokens, d = c.headDim
        let (video, videoStart) = (c.videoTokens, c.textFirst ? c.textTokens : 0)
        precondition(d % 6 == 2 || d % 6 == 4 || d % 6 == 0, "head_dim must split into three even RoPE sections")
        let content = contentField(c, prompt: prompt, seed: seed)
        var q = [Float](repeating: 0, count: c.heads * n * d), k = q
        for h in 0..<c.heads {
            // Weights: fixed per (layer, head) whatever the prompt.
            var weights = SplitMix64(seed: seed &+ UInt64(layer * 1000 + h) &* 0x9E37_79B9)
            // The prompt: content, hot-spot position.
            var input = SplitMix64(seed: seed &+ UInt64(prompt + 1) &* 0xD1B5_4A32_D192_ED03 &+ UInt64(layer * 1000 + h))
            let kind = kind(head: h)
            let gain = c.stepGain[stepIndex] * (1 + 0.08 * Double(layer))
            let (energy, rope): ([Double], Double) = switch kind {
            case .spatial: ([1, 0, 0], 32)
            case .temporal: ([0, 0.5, 0.5], 36)
            case .local3d: h % 6 == 2 ? ([0.34, 0.33, 0.33], 28) : ([0.6, 0.2, 0.2], 24)
            case .sink: ([0.34, 0.33, 0.33], 2)
            case .moving: ([0.34, 0.33, 0.33], 8)
            }
            let base = ropeBase(energy: energy, gain: rope * gain, headDim: d)
            // Content enters through a per-head projection of the blob field.
            let rank = content.rank
            let aq = (0..<(d * rank)).map { _ in weights.gaussian() / Double(rank).squareRoot() }
            let ak = aq.map { $0 + 0.3 * weights.gaussian() / Double(rank).squareRoot() }
            let contentGain = (kind == .sink ? 0.5 : 2.0) * gain * c.content
            var shared = (0..<d).map { _ in weights.gaussian() }
            let norm = shared.reduce(0) { $0 + $1 * $1 }.squareRoot()
            shared = shared.map { $0 / norm * Double(d).squareRoot().squareRoot() * 3.364 }  // |u|²/√d = 11.3 at any d
            // The patch the moving head's keys light up: 4×4 tokens at a prompt-dependent place.
            // Rows cycle with the prompt, so two prompts never light up the same block rows.
            let py = 4 * ((prompt + layer + h) % max(1, c.height / 4)), px = Int.random(in: 0...(c.width - 4), using: &input)
            let text = c.textTokens > 0 ? Text(headDim: d, seed: seed, layer: layer, head: h) : nil
            for t in 0..<video {
                let f = t / (c.height * c.width), y = (t / c.width) % c.height, x = t % c.width
                let rotated = rotate(base, f: f, y: y, x: x, headDim: d)
                var qv = rotated, kv = rotated
                for i in 0..<d {
                    var cq = 0.0, ck = 0.0
                    for r in 0..<rank {
                        cq += aq[i * rank + r] * content.values[t * rank + r]
                        ck += ak[i * rank + r] * content.values[t * rank + r]
                    }
                    qv[i] += contentGain * cq
                    kv[i] += contentGain * ck
                }
                switch kind {
                case .sink:
                    for i in 0..<d {
                        qv[i] += shared[i]
                        kv[i] += f == 0 ? 0.6 * shared[i] : 0
                    }
                case .moving:
                    let inPatch = (py..<(py + 4)).contains(y) && (px..<(px + 4)).contains(x)
                    for i in 0..<d {
                        qv[i] += 0.6 * shared[i]
                        kv[i] += inPatch ? 0.85 * shared[i] : 0
                    }
                default: break
                }
                if let text {
                    text.project(&qv)
                    text.project(&kv)
                }
                for i in 0..<d {
                    q[(h * n + videoStart + t) * d + i] = Float(qv[i])
                    k[(h * n + videoStart + t) * d + i] = Float(kv[i])
                }
            }
            text?.join(c, prompt: prompt, seed: seed, layer: layer, head: h, q: &q, k: &k)
        }
        return (q, k)
    }

    /// One head's text tokens. Video queries and keys are projected off a per-head direction u
    /// (which leaves video–video scores as they were but for one of head_dim dimensions); then
    /// the video queries gain one fixed component along u and each text key lies along u, so a
    /// text key scores about the same against every video query, as an attention sink does.
    /// Scores are set against the head's video scores: with M the mean over video queries of
    /// their largest video score (after the softmax scale), a few strong text tokens (the first,
    /// and three placed per prompt within the valid text) score about M + 1 + b, the rest about
    /// M − 5 + b, with b in [−4, 0] per head, so some heads send much of a video query's mass to
    /// text and others little; noise in the text keys adds a position-dependent ±1. Text queries
    /// are noise whose scores against video keys spread about ±1: they attend broadly.
    struct Text {
        let u: [Double]
        let bias: Double

        init(headDim d: Int, seed: UInt64, layer: Int, head: Int) {
            // Fixed per (layer, head), as weights, and drawn apart from the video's streams, which
            // stay what they are without text.
            var weights = SplitMix64(seed: seed ^ 0x7E47_0000_7E47 &+ UInt64(layer * 1000 + head) &* 0x9E37_79B9)
            let g = (0..<d).map { _ in weights.gaussian() }
            let norm = g.reduce(0) { $0 + $1 * $1 }.squareRoot()
            u = g.map { $0 / norm }
            bias = Double.random(in: -4...0, using: &weights)
        }

        func project(_ v: inout [Double]) {
            let along = zip(v, u).reduce(0) { $0 + $1.0 * $1.1 }
            for i in v.indices { v[i] -= along * u[i] }
        }

        /// Given head `h`'s video rows of q and k (projected off u), gives its video queries their
        /// component along u and writes its text rows.
        func join(_ c: SynthConfig, prompt: Int, seed: UInt64, layer: Int, head h: Int, q: inout [Float], k: inout [Float]) {
            let n = c.tokens, d = c.headDim, scale = 1 / Double(d).squareRoot()
            let (videoStart, textStart) = c.textFirst ? (c.textTokens, 0) : (0, c.videoTokens)
            // M and the mean squared norms of video queries and keys, from 64 queries spread evenly.
            let video = videoStart..<(videoStart + c.videoTokens)
            let sample = (0..<64).map { videoStart + $0 * c.videoTokens / 64 }
            var peak = 0.0, queryNorm = 0.0, keyNorm = 0.0
            q.withUnsafeBufferPointer { q in
                k.withUnsafeBufferPointer { k in
                    func dot(_ a: UnsafeBufferPointer<Float>, _ i: Int, _ b: UnsafeBufferPointer<Float>, _ j: Int) -> Double {
                        var sum = 0.0
                        for x in 0..<d { sum += Double(a[(h * n + i) * d + x]) * Double(b[(h * n + j) * d + x]) }
                        return sum
                    }
                    for t in sample {
                        peak += video.reduce(-Double.infinity) { max($0, dot(q, t, k, $1) * scale) } / 64
                        queryNorm += dot(q, t, q, t) / 64
                        keyNorm += dot(k, t, k, t) / 64
                    }
                }
            }
            let along = queryNorm.squareRoot()
            for t in video { for i in 0..<d { q[(h * n + t) * d + i] += Float(along * u[i]) } }
            var input = SplitMix64(seed: seed ^ 0x7E47_7E47 &+ UInt64(prompt + 1) &* 0xD1B5_4A32_D192_ED03 &+ UInt64(layer * 1000 + h))
            let valid = c.textValid(prompt: prompt, seed: seed) ?? c.textTokens
            let strong = Set([0] + (0..<3).map { _ in Int.random(in: 0..<max(valid, 1), using: &input) })
            for j in 0..<c.textTokens {
                let score = peak + bias + (strong.contains(j) ? 1 + Double.random(in: 0...1, using: &input) : Double.random(in: -6 ... -4, using: &input))
                let length = score / (scale * along)
                for i in 0..<d {
                    // Noise of these sizes gives dot products with a video query (key) spreading about ±1 after the scale.
                    k[(h * n + textStart + j) * d + i] = Float(length * u[i] + input.gaussian() / (scale * along))
                    q[(h * n + textStart + j) * d + i] = Float(input.gaussian() / (scale * keyNorm.squareRoot()))
                }
            }
        }
    }

    /// Wan's split of head_dim into t, h, w sections: h = w = 2·(d / 6), t the rest (44, 42, 42 at 128).
    static func sections(_ d: Int) -> [Int] {
        let hw = 2 * (d / 6)
        return [d - 2 * hw, hw, hw]
    }

    /// Amplitudes of the interleaved RoPE pairs before rotation: `energy` split over the t, h,
    /// w sections, spread evenly over each section's pairs.
    static func ropeBase(energy: [Double], gain: Double, headDim: Int) -> [Double] {
        var base = [Double](repeating: 0, count: headDim)
        var offset = 0
        for (axis, dims) in sections(headDim).enumerated() {
            let amplitude = (energy[axis] / Double(dims / 2)).squareRoot() * gain * pow(Double(headDim) / 128, 0.25)
            for p in 0..<(dims / 2) { base[offset + 2 * p] = amplitude }
            offset += dims
        }
        return base
    }

    /// Rotates each pair (2p, 2p+1) of a section by position · theta^(-2p / dims).
    static func rotate(_ base: [Double], f: Int, y: Int, x: Int, headDim: Int) -> [Double] {
        var out = base
        var offset = 0
        for (dims, pos) in zip(sections(headDim), [f, y, x]) {
            for p in 0..<(dims / 2) {
                let angle = Double(pos) * pow(10000, -Double(2 * p) / Double(dims))
                let (a, b) = (base[offset + 2 * p], base[offset + 2 * p + 1])
                out[offset + 2 * p] = a * cos(angle) - b * sin(angle)
                out[offset + 2 * p + 1] = a * sin(angle) + b * cos(angle)
            }
            offset += dims
        }
        return out
    }

    struct Content {
        var rank: Int
        var values: [Double]  // tokens × rank
    }

    /// Eight Gaussian blobs (σ = 2.5 tokens) drifting linearly across frames; where and how
    /// fast depends on the prompt.
    static func contentField(_ c: SynthConfig, prompt: Int, seed: UInt64) -> Content {
        var rng = SplitMix64(seed: seed ^ (UInt64(prompt + 1) &* 0xA24B_AED4_963E_E407))
        let rank = 8
        let blobs = (0..<rank).map { _ in
            (Double.random(in: 0..<Double(c.height), using: &rng), Double.random(in: 0..<Double(c.width), using: &rng),
             Double.random(in: -0.7...0.7, using: &rng), Double.random(in: -0.7...0.7, using: &rng))
        }
        var values = [Double](repeating: 0, count: c.videoTokens * rank)
        for t in 0..<c.videoTokens {
            let f = Double(t / (c.height * c.width)), y = Double((t / c.width) % c.height), x = Double(t % c.width)
            for (r, b) in blobs.enumerated() {
                let dy = y - (b.0 + b.2 * f), dx = x - (b.1 + b.3 * f)
                values[t * rank + r] = exp(-(dy * dy + dx * dx) / (2 * 2.5 * 2.5))
            }
        }
        return Content(rank: rank, values: values)
    }
}
