// Streaming calibration (docs/calibration.md, "Streaming"): inputs are folded one at a time into
// a state per (step, layer, head) whose size does not depend on how many were folded, and from
// which the batch rules give the same plans:
//
// - selection's union: a tile is kept when any input selected it;
// - the stability rule: input i's leave-one-out drop is the mass i puts on the tiles only i
//   selected, so per tile it is enough to know whether none, one or several inputs selected
//   it, and for one, which input and that input's mass there;
// - reuse: query block j may reuse i when the L1 distance of their rows is within tolerance on
//   every input, i.e. when the largest distance over inputs is.
//
// A state is a safetensors file (calibc-state/1) and states over disjoint inputs merge.

import CCalibrate
import CalibIR
import CalibFrontend
import CalibSafetensors
import Foundation

/// What calibration keeps of the inputs folded so far for one (step, layer, head).
public struct HeadState: Equatable, Sendable {
    public static let unselected: Float = -1, shared: Float = -2

    public let blocks: Int
    /// Per tile (qb · blocks + kb): -1 when no input selected it, -2 when two or more did, else
    /// the index of the one input that did (exact in F32 up to 2^24 inputs).
    public internal(set) var owner: [Float]
    /// Per tile: the mass that one input put on it (0 unless `owner` ≥ 0).
    public internal(set) var ownerMass: [Float]
    /// Per pair of query blocks i < j (row-major upper triangle): the largest L1 distance between
    /// their block-mass rows over the inputs.
    public internal(set) var distance: [Float]

    public init(blocks: Int) {
        self.blocks = blocks
        owner = [Float](repeating: Self.unselected, count: blocks * blocks)
        ownerMass = [Float](repeating: 0, count: blocks * blocks)
        distance = [Float](repeating: 0, count: blocks * (blocks - 1) / 2)
    }

    init(blocks: Int, owner: [Float], ownerMass: [Float], distance: [Float]) {
        (self.blocks, self.owner, self.ownerMass, self.distance) = (blocks, owner, ownerMass, distance)
    }

    /// Folds input `input`'s block mass and its selection (kept key blocks per query block).
    public mutating func fold(mass m: [Float], selected: [Set<Int>], input: Int) {
        precondition(m.count == blocks * blocks && selected.count == blocks)
        for (q, keys) in selected.enumerated() {
            for k in keys {
                let t = q * blocks + k
                if owner[t] == Self.unselected {
                    owner[t] = Float(input)
                    ownerMass[t] = m[t]
                } else if owner[t] >= 0 {
                    owner[t] = Self.shared
                    ownerMass[t] = 0
                }
            }
        }
        if blocks > 1 { calib_row_distance_max(m, Int64(blocks), &distance) }
    }

    /// Merges a state over other inputs, numbered after this one's `offset` inputs.
    public mutating func merge(_ other: HeadState, offset: Int) {
        precondition(other.blocks == blocks)
        for t in owner.indices where other.owner[t] != Self.unselected {
            if owner[t] == Self.unselected {
                owner[t] = other.owner[t] >= 0 ? other.owner[t] + Float(offset) : other.owner[t]
                ownerMass[t] = other.ownerMass[t]
            } else {
                owner[t] = Self.shared
                ownerMass[t] = 0
            }
        }
        for p in distance.indices { distance[p] = max(distance[p], other.distance[p]) }
    }

    /// The kept key blocks of every query block: the union of all inputs' selections.
    public var union: [Set<Int>] {
        (0..<blocks).map { q in Set((0..<blocks).filter { owner[q * blocks + $0] != Self.unselected }) }
    }

    /// The largest leave-one-out drop over the inputs: Σ over the tiles only input i selected of
    /// i's mass there, divided by the number of query blocks.
    public var worstDrop: Double {
        var drops: [Int: Double] = [:]
        for t in owner.indices where owner[t] >= 0 { drops[Int(owner[t]), default: 0] += Double(ownerMass[t]) }
        return (drops.values.max() ?? 0) / Double(blocks)
    }

    public func distance(_ i: Int, _ j: Int) -> Float {
        let (a, b) = (min(i, j), max(i, j))
        return distance[a * blocks - a * (a + 1) / 2 + b - a - 1]
    }
}

/// The streaming state of a whole calibration: shape, selection, and one `HeadState` per
/// (step, layer, head) in dispatch order.
public struct CalibrationState: Sendable {
    public static let format = "calibc-state/1"

    public var shape: Shape
    public var model: String
    public var layout: Layout?
    public var scale: Double
    /// How each input chose its tiles (`mass 0.95`, `density 0.25`, `mass-schedule exp:…`):
    /// fixed at folding, so only states with the same selection merge.
    public var selection: String
    /// Inputs folded so far.
    public var inputs: Int
    public var heads: [HeadState]

    public init(shape: Shape, model: String, layout: Layout?, scale: Double, selection: String) {
        (self.shape, self.model, self.layout, self.scale, self.selection, inputs) = (shape, model, layout, scale, selection, 0)
        heads = Array(repeating: HeadState(blocks: shape.blocks), count: shape.dispatchCount)
    }

    public func head(stepIndex s: Int, layer: Int, head: Int) -> HeadState {
        heads[shape.dispatchIndex(stepIndex: s, layer: layer, head: head)]
    }

    /// Bytes of the tensors: 8 per tile and 2 per tile for the pair distances, per head.
    public var tensorBytes: Int {
        let b = shape.blocks
        return shape.dispatchCount * 4 * (2 * b * b + b * (b - 1) / 2)
    }

    /// Merges `other` (over other inputs) into this state; its inputs are numbered after ours.
    public mutating func merge(_ other: CalibrationState, file: String, into first: String) throws {
        func check(_ what: String, _ a: String, _ b: String) throws {
            guard a == b else { throw CalibrationError(message: "\(file): \(what) \(b) differs from \(first)'s \(a)") }
        }
        try check("selection", selection, other.selection)
        try check("shape (steps, layers, heads, tokens, head_dim, block)", Self.describe(shape), Self.describe(other.shape))
        try check("scale", "\(scale)", "\(other.scale)")
        try check("model", model, other.model)
        for i in heads.indices { heads[i].merge(other.heads[i], offset: inputs) }
        inputs += other.inputs
    }

    static func describe(_ s: Shape) -> String {
        "steps \(s.steps.map(String.init).joined(separator: ",")), \(s.layers) layers, \(s.heads) heads, \(s.tokens) tokens, head_dim \(s.headDim), block \(s.block)"
    }

    // MARK: - The file

    /// Writes the state: per (step, layer) tensors `step{t}.layer{l}.owner` and `.owner_mass`
    /// (heads, blocks, blocks) and `.distance` (heads, blocks·(blocks−1)/2), all F32 (with one
    /// query block there are no pairs, and `.distance` holds one unused 0 per head).
    public func write(to path: String) throws {
        var w = SafetensorsWriter()
        w.metadata = ["format": Self.format, "model": model, "selection": selection, "inputs": "\(inputs)",
                      "steps": shape.steps.map(String.init).joined(separator: ","), "layers": "\(shape.layers)",
                      "heads": "\(shape.heads)", "tokens": "\(shape.tokens)", "head_dim": "\(shape.headDim)",
                      "block": "\(shape.block)", "scale": "\(scale)"]
        if let l = layout {
            w.metadata["frames"] = "\(l.frames)"
            w.metadata["height"] = "\(l.height)"
            w.metadata["width"] = "\(l.width)"
            w.metadata["text_tokens"] = "\(l.textTokens)"
            w.metadata["text_position"] = l.textFirst ? "first" : "last"
        }
        let b = shape.blocks
        for (s, step) in shape.steps.enumerated() {
            for layer in 0..<shape.layers {
                let hs = (0..<shape.heads).map { head(stepIndex: s, layer: layer, head: $0) }
                let name = "step\(step).layer\(layer)"
                w.add("\(name).owner", hs.flatMap(\.owner), shape: [shape.heads, b, b], as: .f32)
                w.add("\(name).owner_mass", hs.flatMap(\.ownerMass), shape: [shape.heads, b, b], as: .f32)
                let distance = b > 1 ? hs.flatMap(\.distance) : [Float](repeating: 0, count: shape.heads)
                w.add("\(name).distance", distance, shape: [shape.heads, max(1, b * (b - 1) / 2)], as: .f32)
            }
        }
        try w.write(to: path)
    }

    /// Reads a state written by `write`, checking every value is one `write` could have written.
    public init(path: String) throws {
        let file = try SafetensorsFile(path: path)
        func fail(_ m: String) -> CalibrationError { CalibrationError(message: "\(path): \(m)") }
        let meta = file.metadata
        guard meta["format"] == Self.format else {
            throw fail("not a calibration state (metadata format is \(meta["format"].map { "\"\($0)\"" } ?? "missing"), expected \"\(Self.format)\")")
        }
        func int(_ key: String, _ range: ClosedRange<Int>) throws -> Int {
            guard let v = meta[key].flatMap({ Int($0) }), range.contains(v) else {
                throw fail("metadata \(key) must be an integer in \(range.lowerBound)…\(range.upperBound)")
            }
            return v
        }
        let steps = try (meta["steps"] ?? "").split(separator: ",", omittingEmptySubsequences: false).map { part -> Int in
            guard let t = Int(part), t >= 0 else { throw fail("metadata steps must list step indices, e.g. \"0,20,40\"") }
            return t
        }
        guard !steps.isEmpty, zip(steps, steps.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw fail("metadata steps must be strictly ascending")
        }
        let shape = Shape(tokens: try int("tokens", 1...(1 << 28)), headDim: try int("head_dim", 1...512),
                          block: try int("block", 1...1024), layers: try int("layers", 1...100_000),
                          heads: try int("heads", 1...100_000), steps: steps)
        guard shape.blocks <= Frontend.maxBlocks else { throw fail("\(shape.blocks) blocks per side exceeds \(Frontend.maxBlocks)") }
        guard let scale = meta["scale"].flatMap({ Double($0) }), scale > 0, scale.isFinite else {
            throw fail("metadata scale must be a positive number")
        }
        guard let selection = meta["selection"], !selection.isEmpty else { throw fail("metadata selection is missing") }
        self.shape = shape
        self.scale = scale
        self.selection = selection
        model = meta["model"] ?? "unknown"
        let inputs = try int("inputs", 1...(1 << 24))
        self.inputs = inputs
        let ints = ["frames", "height", "width", "text_tokens"].map { meta[$0].flatMap { Int($0) } }
        if let f = ints[0], let h = ints[1], let w = ints[2], let text = ints[3] {
            layout = Layout(frames: f, height: h, width: w, textTokens: text, textFirst: meta["text_position"] == "first")
        } else {
            layout = nil
        }
        let b = shape.blocks, pairs = b * (b - 1) / 2
        var heads: [HeadState] = []
        heads.reserveCapacity(shape.dispatchCount)
        for step in steps {
            for layer in 0..<shape.layers {
                let name = "step\(step).layer\(layer)"
                func tensor(_ kind: String, _ expected: [Int]) throws -> [Float] {
                    guard let info = file.tensors["\(name).\(kind)"] else { throw fail("missing tensor \(name).\(kind)") }
                    guard info.shape == expected, info.dtype == .f32 else {
                        throw fail("tensor \(name).\(kind) is \(info.dtype.rawValue) \(info.shape), expected F32 \(expected)")
                    }
                    return try file.floats("\(name).\(kind)")
                }
                let owner = try tensor("owner", [shape.heads, b, b]), mass = try tensor("owner_mass", [shape.heads, b, b])
                let distance = try tensor("distance", [shape.heads, max(1, pairs)])
                if let bad = owner.firstIndex(where: { !($0 == -1 || $0 == -2 || ($0 >= 0 && $0 < Float(inputs) && $0.rounded() == $0)) }) {
                    throw fail("tensor \(name).owner holds \(owner[bad]) at \(bad); expected -1, -2 or an input index below \(inputs)")
                }
                if let bad = mass.indices.first(where: { !(mass[$0] >= 0 && mass[$0] <= 1) || (owner[$0] < 0 && mass[$0] != 0) }) {
                    throw fail("tensor \(name).owner_mass holds \(mass[bad]) at \(bad); expected a mass in [0, 1] where owner ≥ 0, else 0")
                }
                if let bad = distance.firstIndex(where: { !($0 >= 0 && $0 <= 2.01) }) {  // 2 for disjoint rows, plus rounding
                    throw fail("tensor \(name).distance holds \(distance[bad]) at \(bad); expected an L1 distance in [0, 2]")
                }
                for h in 0..<shape.heads {
                    let tiles = (h * b * b)..<((h + 1) * b * b)
                    heads.append(HeadState(blocks: b, owner: Array(owner[tiles]), ownerMass: Array(mass[tiles]),
                                           distance: Array(distance[(h * max(1, pairs))..<(h * max(1, pairs) + pairs)])))
                }
            }
        }
        self.heads = heads
    }
}
