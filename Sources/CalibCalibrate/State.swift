// Streaming calibration (docs/calibration.md, section 7): inputs are folded one at a time into
// a state per (step, layer, head) whose size does not depend on how many were folded, and from
// which the batch rules give the same plans:
//
// - selection's union: a tile is kept when any input selected it;
// - the stability rule: input i's leave-one-out drop is the mass i puts on the tiles only i
//   selected, so per tile it is enough to know whether none, one or several inputs selected
//   it, and for one, which input and that input's mass there. A drop only falls as inputs are
//   added (a tile only i selected can only become shared), so once it is at or under the
//   stability threshold the input can never make the head dense: it is retired, its tiles
//   recorded as selected by several, which keeps the masks exact when the threshold is fixed
//   when inputs are folded;
// - reuse: query block j may reuse i when the L1 distance of their rows is within tolerance on
//   every input: one bit per pair, cleared by the first input that is farther apart, so the
//   tolerance is fixed when inputs are folded, like the selection.
//
// The CLI holds every head at once (80,000 at Wan 2.1 14B), so a head stays packed: the three
// tile cases as base-3 codes, five to a byte; owner and mass only for the single-owner tiles of
// inputs not retired; the reuse test as bits. Folding, merging and deciding unpack one head at a time.
// A state is a safetensors file (calibc-state/3) and states over disjoint inputs merge.

import CCalibrate
import CalibIR
import CalibFrontend
import CalibSafetensors
import Foundation

/// Base-3 codes five to a byte (c0 + 3·c1 + 9·c2 + 27·c3 + 81·c4, so a byte is at most 242) and
/// bits eight to a byte, least significant first; unused trailing codes and bits are 0.
public enum Packing {
    public static func codeBytes(_ codes: Int) -> Int { (codes + 4) / 5 }
    public static func bitBytes(_ bits: Int) -> Int { (bits + 7) / 8 }

    static let weights: [UInt8] = [1, 3, 9, 27, 81]
    /// The five codes of every byte value below 243, flat.
    static let digits: [UInt8] = (0..<243).flatMap { v in (0..<5).map { UInt8(v / Int(weights[$0]) % 3) } }
    /// How many of a byte's codes are 1 (the single-owner tiles it holds).
    static let ones: [Int] = (0..<256).map { v in v < 243 ? (0..<5).filter { digits[v * 5 + $0] == 1 }.count : 0 }

    public static func packCodes(_ codes: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: codeBytes(codes.count))
        for (t, c) in codes.enumerated() {
            precondition(c < 3)
            out[t / 5] += c * weights[t % 5]
        }
        return out
    }

    /// The first `count` codes; every byte must be below 243.
    public static func unpackCodes(_ bytes: ArraySlice<UInt8>, count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        for (m, byte) in bytes.enumerated() {
            for k in 0..<min(5, count - 5 * m) { out[5 * m + k] = digits[Int(byte) * 5 + k] }
        }
        return out
    }

    public static func packBits(_ bits: [Bool]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: bitBytes(bits.count))
        for (p, b) in bits.enumerated() where b { out[p >> 3] |= 1 << (p & 7) }
        return out
    }

    public static func unpackBits(_ bytes: ArraySlice<UInt8>, count: Int) -> [Bool] {
        (0..<count).map { bytes[bytes.startIndex + ($0 >> 3)] >> ($0 & 7) & 1 == 1 }
    }
}

/// What calibration keeps of the inputs folded so far for one (step, layer, head).
public struct HeadState: Equatable, Sendable {
    /// Tile codes: how many inputs selected the tile (several also when the one that did is retired).
    public static let none: UInt8 = 0, one: UInt8 = 1, several: UInt8 = 2

    public let blocks: Int
    /// Per tile (qb · blocks + kb) its code, packed (`Packing`).
    public internal(set) var tiles: [UInt8]
    /// For every code-1 tile, in tile order: the input that selected it, and its mass there.
    public internal(set) var owners: [UInt16]
    public internal(set) var ownerMass: [Float]
    /// The largest drop an input had when it was retired (0 while none was), rounded to F32: its
    /// drop now is at most that. It depends on when inputs retired, so on the order of folds
    /// and merges; the codes and owners do not.
    public internal(set) var retiredDrop: Float
    /// Bit p for the pair of query blocks i < j (row-major upper triangle): the L1 distance of
    /// their block-mass rows was within the reuse tolerance on every input folded.
    public internal(set) var reuse: [UInt8]

    /// No input folded: no tile selected, and no pair ruled out for reuse yet.
    public init(blocks: Int) {
        self.blocks = blocks
        tiles = [UInt8](repeating: 0, count: Packing.codeBytes(blocks * blocks))
        (owners, ownerMass, retiredDrop) = ([], [], 0)
        // Every pair's bit set, the unused bits of the last byte clear (a byte a pair unpacked first
        // would be 134 MB at B = 16,384).
        let pairs = blocks * (blocks - 1) / 2
        reuse = [UInt8](repeating: 0xff, count: Packing.bitBytes(pairs))
        if pairs % 8 != 0 { reuse[reuse.count - 1] = UInt8(1 << (pairs % 8) - 1) }
    }

    init(blocks: Int, tiles: [UInt8], owners: [UInt16], ownerMass: [Float], retiredDrop: Float, reuse: [UInt8]) {
        (self.blocks, self.tiles, self.owners, self.ownerMass) = (blocks, tiles, owners, ownerMass)
        (self.retiredDrop, self.reuse) = (retiredDrop, reuse)
    }

    var pairs: Int { blocks * (blocks - 1) / 2 }

    /// Every tile's code, unpacked.
    public var codes: [UInt8] { Packing.unpackCodes(tiles[...], count: blocks * blocks) }

    /// Bytes of this head's tensors in a state file.
    public var bytes: Int { tiles.count + reuse.count + 4 + 6 * owners.count }

    /// Folds input `input`'s block mass and its selection (kept key blocks per query block); a
    /// pair stays reusable only when its rows are within `reuseTolerance` (0: reuse off); then
    /// retires the inputs whose drop is at most `stabilityDrop`.
    public mutating func fold(mass m: [Float], selected: [Set<Int>], input: Int, reuseTolerance: Double, stabilityDrop: Double) {
        precondition(selected.count == blocks)
        var chosen = [Bool](repeating: false, count: blocks * blocks)
        for (q, keys) in selected.enumerated() { for k in keys { chosen[q * blocks + k] = true } }
        fold(mass: m, chosen: chosen, input: input, reuseTolerance: reuseTolerance, stabilityDrop: stabilityDrop)
    }

    /// `fold` with the selection as one flag per tile (`Calibrator.chosen`).
    mutating func fold(mass m: [Float], chosen: [Bool], input: Int, reuseTolerance: Double, stabilityDrop: Double) {
        precondition(m.count == blocks * blocks && chosen.count == blocks * blocks && input <= Int(UInt16.max))
        var codes = self.codes, kept: [UInt16] = [], keptMass: [Float] = []
        var old = 0  // the next code-1 tile's entry in `owners`
        for t in codes.indices {
            switch codes[t] {
            case Self.none where chosen[t]:
                codes[t] = Self.one
                kept.append(UInt16(input))
                keptMass.append(m[t])
            case Self.one:
                if chosen[t] {
                    codes[t] = Self.several
                } else {
                    kept.append(owners[old])
                    keptMass.append(ownerMass[old])
                }
                old += 1
            default: break
            }
        }
        store(codes, kept, keptMass, stabilityDrop: stabilityDrop)
        guard reuseTolerance > 0 else {
            reuse = [UInt8](repeating: 0, count: reuse.count)
            return
        }
        guard pairs > 0 else { return }
        var distance = [Double](repeating: 0, count: pairs)
        calib_row_distance(m, Int64(blocks), &distance)
        for p in 0..<pairs where !(distance[p] <= reuseTolerance) { reuse[p >> 3] &= ~(1 << UInt8(p & 7)) }
    }

    /// Merges a state over other inputs, numbered after this one's `offset` inputs, then retires
    /// the inputs whose drop is at most `stabilityDrop` (both states were folded with it).
    public mutating func merge(_ other: HeadState, offset: Int, stabilityDrop: Double) {
        precondition(other.blocks == blocks)
        var codes = self.codes
        let theirs = other.codes
        var kept: [UInt16] = [], keptMass: [Float] = []
        var (a, b) = (0, 0)  // the next code-1 tile's entry in each side's owners
        for t in codes.indices {
            switch (codes[t], theirs[t]) {
            case (Self.none, Self.none), (Self.several, Self.none): break
            case (Self.one, Self.none):
                kept.append(owners[a])
                keptMass.append(ownerMass[a])
                a += 1
            case (Self.none, Self.one):
                codes[t] = Self.one
                kept.append(other.owners[b] + UInt16(offset))
                keptMass.append(other.ownerMass[b])
                b += 1
            case (let mine, let their):
                if mine == Self.one { a += 1 }
                if their == Self.one { b += 1 }
                codes[t] = Self.several
            }
        }
        retiredDrop = max(retiredDrop, other.retiredDrop)
        store(codes, kept, keptMass, stabilityDrop: stabilityDrop)
        for i in reuse.indices { reuse[i] &= other.reuse[i] }
    }

    /// Each input's leave-one-out drop: the mass on the tiles only it selected, summed in tile
    /// order in double, over the number of query blocks (an input without such tiles has drop 0
    /// and no entry).
    static func drops(_ owners: [UInt16], _ mass: [Float], blocks: Int) -> [UInt16: Double] {
        var sums: [UInt16: Double] = [:]
        for (o, m) in zip(owners, mass) { sums[o, default: 0] += Double(m) }
        return sums.mapValues { $0 / Double(blocks) }
    }

    /// Packs the codes and owners after retiring every input whose drop is at most
    /// `stabilityDrop`: its tiles become code 2 and leave the owner list. Exact for the masks,
    /// since the drop only falls as inputs are added, so it can never again exceed the threshold.
    /// That holds with one input too, where the rule is not applied yet: a drop at most the
    /// threshold now is at most it when a second input makes the rule apply.
    private mutating func store(_ codes: [UInt8], _ owners: [UInt16], _ mass: [Float], stabilityDrop: Double) {
        var (codes, owners, mass) = (codes, owners, mass)
        let retiring = Self.drops(owners, mass, blocks: blocks).filter { $0.value <= stabilityDrop }
        if !retiring.isEmpty {
            retiredDrop = retiring.values.reduce(retiredDrop) { max($0, Float($1)) }
            var entry = 0, (kept, keptMass) = ([UInt16](), [Float]())
            for t in codes.indices where codes[t] == Self.one {
                if retiring[owners[entry]] != nil {
                    codes[t] = Self.several
                } else {
                    kept.append(owners[entry])
                    keptMass.append(mass[entry])
                }
                entry += 1
            }
            (owners, mass) = (kept, keptMass)
        }
        (tiles, self.owners, ownerMass) = (Packing.packCodes(codes), owners, mass)
    }

    /// The kept key blocks of every query block: the union of all inputs' selections.
    public var union: [Set<Int>] { keptSpans.map { Set($0.flatMap { $0.start..<$0.end }) } }

    /// `union` as runs of key blocks, the form calibration decides with:
    /// read straight from the codes, a few bytes a run where sets of blocks took tens a tile.
    public var keptSpans: [[Span]] {
        let codes = self.codes
        return (0..<blocks).map { q in
            var spans: [Span] = []
            var start = -1
            for k in 0..<blocks {
                let on = codes[q * blocks + k] != Self.none
                if on, start < 0 { start = k }
                if !on, start >= 0 { spans.append(Span(start, k)); start = -1 }
            }
            if start >= 0 { spans.append(Span(start, blocks)) }
            return spans
        }
    }

    /// The largest leave-one-out drop over the inputs not retired, all of which exceed the
    /// threshold they were folded with (0 without any).
    public var worstDrop: Double { Self.drops(owners, ownerMass, blocks: blocks).values.max() ?? 0 }

    /// Whether query blocks i and j were within the reuse tolerance on every input.
    public func mayReuse(_ i: Int, _ j: Int) -> Bool {
        let (a, b) = (min(i, j), max(i, j))
        let p = a * blocks - a * (a + 1) / 2 + b - a - 1
        return reuse[p >> 3] >> (p & 7) & 1 == 1
    }
}

/// The streaming state of a whole calibration: shape, selection, and one `HeadState` per
/// (step, layer, head) in dispatch order.
public struct CalibrationState: Sendable {
    public static let format = "calibc-state/3"
    /// Owners are U16 in the file.
    public static let maxInputs = Int(UInt16.max)

    public var shape: Shape
    public var model: String
    public var layout: Layout?
    public var scale: Double
    /// How each input chose its tiles (`mass 0.95`, `density 0.25`, `mass-schedule exp:…`):
    /// fixed at folding, so only states with the same selection merge.
    public var selection: String
    /// The reuse bits' tolerance, also fixed at folding.
    public var reuseTolerance: Double
    /// The stability rule's threshold, fixed at folding too: inputs whose drop fell to it were
    /// retired (`HeadState`), which is exact only for this threshold.
    public var stabilityDrop: Double
    /// Inputs folded so far.
    public var inputs: Int
    public var heads: [HeadState]

    public init(shape: Shape, model: String, layout: Layout?, scale: Double, selection: String, reuseTolerance: Double,
                stabilityDrop: Double) {
        (self.shape, self.model, self.layout, self.scale, self.selection) = (shape, model, layout, scale, selection)
        (self.reuseTolerance, self.stabilityDrop, inputs) = (reuseTolerance, stabilityDrop, 0)
        heads = Array(repeating: HeadState(blocks: shape.blocks), count: shape.dispatchCount)
    }

    public func head(stepIndex s: Int, layer: Int, head: Int) -> HeadState {
        heads[shape.dispatchIndex(stepIndex: s, layer: layer, head: head)]
    }

    /// Bytes of the tensors: per head ⌈B²/5⌉ + ⌈B(B−1)/2/8⌉ + 4, and 6 per single-owner tile.
    public var tensorBytes: Int { heads.reduce(0) { $0 + $1.bytes } }

    /// Merges `other` (over other inputs) into this state; its inputs are numbered after ours.
    public mutating func merge(_ other: CalibrationState, file: String, into first: String) throws {
        func check(_ what: String, _ a: String, _ b: String) throws {
            guard a == b else { throw CalibrationError(message: "\(file): \(what) \(visible(b)) differs from \(first)'s \(visible(a))") }
        }
        try check("selection", selection, other.selection)
        try check("reuse tolerance", "\(reuseTolerance)", "\(other.reuseTolerance)")
        try check("stability drop", "\(stabilityDrop)", "\(other.stabilityDrop)")
        try check("shape (steps, layers, heads, tokens, head_dim, block)", Self.describe(shape), Self.describe(other.shape))
        try check("scale", "\(scale)", "\(other.scale)")
        try check("model timesteps", shape.modelTimesteps.map { "\($0)" }.joined(separator: ","),
                  other.shape.modelTimesteps.map { "\($0)" }.joined(separator: ","))
        try check("model", model, other.model)
        guard inputs + other.inputs <= Self.maxInputs else {
            throw CalibrationError(message: "\(file): merging gives \(inputs + other.inputs) inputs, more than the \(Self.maxInputs) a state can number")
        }
        for i in heads.indices { heads[i].merge(other.heads[i], offset: inputs, stabilityDrop: stabilityDrop) }
        inputs += other.inputs
    }

    /// Refuses deciding with another reuse tolerance or stability threshold than the ones the
    /// inputs were folded with (`file` names the state).
    public func checkFolded(_ options: CalibrationOptions, file: String) throws {
        for (option, given, folded) in [("--reuse-tolerance", options.reuseTolerance, reuseTolerance),
                                        ("--stability-drop", options.stabilityDrop, stabilityDrop)] where given != folded {
            throw CalibrationError(message: "\(file): \(option) \(given) differs from the state's \(folded), which was fixed when its inputs were folded (omit \(option) to use it)")
        }
    }

    static func describe(_ s: Shape) -> String {
        "steps \(s.steps.map(String.init).joined(separator: ",")), \(s.layers) layers, \(s.heads) heads, \(s.tokens) tokens, head_dim \(s.headDim), block \(s.block)"
    }

    // MARK: - The file

    /// Writes the state: per (step, layer) `step{t}.layer{l}.tiles` (U8, heads × ⌈B²/5⌉),
    /// `.owner` (U16) and `.owner_mass` (F32) of every code-1 tile in (head, tile) order,
    /// `.retired_drop` (F32, heads) and `.reuse` (U8, heads × ⌈B(B−1)/2/8⌉). Tensors go in name
    /// order, as calibc.calibration.save writes them, so both give the same bytes.
    public func write(to path: String) throws {
        var w = SafetensorsWriter()
        w.metadata = ["format": Self.format, "model": model, "selection": selection, "inputs": "\(inputs)",
                      "reuse_tolerance": "\(reuseTolerance)", "stability_drop": "\(stabilityDrop)",
                      "steps": shape.steps.map(String.init).joined(separator: ","), "layers": "\(shape.layers)",
                      "heads": "\(shape.heads)", "tokens": "\(shape.tokens)", "head_dim": "\(shape.headDim)",
                      "block": "\(shape.block)", "scale": "\(scale)"]
        if !shape.modelTimesteps.isEmpty {
            w.metadata["model_timesteps"] = shape.modelTimesteps.map { "\($0)" }.joined(separator: ",")
        }
        if let l = layout {
            w.metadata["frames"] = "\(l.frames)"
            w.metadata["height"] = "\(l.height)"
            w.metadata["width"] = "\(l.width)"
            w.metadata["text_tokens"] = "\(l.textTokens)"
            w.metadata["text_position"] = l.textFirst ? "first" : "last"
        }
        // Name order: "step{t}.layer{l}." prefixes sorted as text (none is a prefix of another),
        // then owner < owner_mass < retired_drop < reuse < tiles within each.
        let prefixes = shape.steps.enumerated().flatMap { s, step in (0..<shape.layers).map { ("step\(step).layer\($0).", s, $0) } }
        for (name, s, layer) in prefixes.sorted(by: { $0.0 < $1.0 }) {
            let hs = (0..<shape.heads).map { head(stepIndex: s, layer: layer, head: $0) }
            let owners = hs.flatMap(\.owners)
            w.add(name + "owner", owners, shape: [owners.count])
            w.add(name + "owner_mass", hs.flatMap(\.ownerMass), shape: [owners.count], as: .f32)
            w.add(name + "retired_drop", hs.map(\.retiredDrop), shape: [shape.heads], as: .f32)
            w.add(name + "reuse", hs.flatMap(\.reuse), shape: [shape.heads, hs[0].reuse.count])
            w.add(name + "tiles", hs.flatMap(\.tiles), shape: [shape.heads, hs[0].tiles.count])
        }
        try w.write(to: path)
    }

    /// Reads a state written by `write`, checking every value is one `write` could have written.
    public init(path: String) throws {
        let file = try SafetensorsFile(path: path)
        func fail(_ m: String) -> CalibrationError { CalibrationError(message: "\(path): \(m)") }
        let meta = file.metadata
        let earlier = ["calibc-state/1": "the uncompressed state of earlier versions",
                       "calibc-state/2": "the state of earlier versions, which keeps every single-owner tile"]
        if let format = meta["format"], let what = earlier[format] {
            throw fail("format \(format) (\(what)) is no longer read, expected \"\(Self.format)\"; fold the recordings again")
        }
        guard meta["format"] == Self.format else {
            throw fail("not a calibration state (metadata format is \(meta["format"].map { "\"\(visible($0))\"" } ?? "missing"), expected \"\(Self.format)\")")
        }
        func int(_ key: String, _ range: ClosedRange<Int>) throws -> Int {
            guard let v = meta[key].flatMap({ Int($0) }), range.contains(v) else {
                throw fail("metadata \(key) must be an integer in \(range.lowerBound)…\(range.upperBound)")
            }
            return v
        }
        let steps = try (meta["steps"] ?? "").split(separator: ",", omittingEmptySubsequences: false).map { part -> Int in
            guard let t = Int(part), t >= 0 else { throw fail("metadata steps must list step indices, e.g. \"0,20,40\"") }
            guard t <= Frontend.maxStep else { throw fail(Recording.tooLarge("metadata step", t, Frontend.maxStep)) }
            return t
        }
        guard !steps.isEmpty, zip(steps, steps.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw fail("metadata steps must be strictly ascending")
        }
        let shape = Shape(tokens: try int("tokens", 1...(1 << 28)), headDim: try int("head_dim", 1...512),
                          block: try int("block", 1...1024), layers: try int("layers", 1...Frontend.maxLayers),
                          heads: try int("heads", 1...Frontend.maxHeads), steps: steps,
                          modelTimesteps: try Recording.modelTimesteps(meta["model_timesteps"], steps: steps.count, fail: fail))
        guard shape.blocks <= Frontend.maxBlocks else {
            throw fail("metadata tokens / block gives \(shape.blocks) blocks per side, more than the \(Frontend.maxBlocks) a masks file allows")
        }
        // What the state is decided into must be what compile reads, as for a recording.
        guard shape.dispatchCount <= Frontend.maxDispatch else {
            throw fail("metadata steps × layers × heads = \(steps.count) × \(shape.layers) × \(shape.heads) = \(shape.dispatchCount) is more than the \(Frontend.maxDispatch) a masks file allows")
        }
        guard let scale = meta["scale"].flatMap({ Double($0) }), scale > 0, scale.isFinite else {
            throw fail("metadata scale must be a positive number")
        }
        guard let selection = meta["selection"], !selection.isEmpty else { throw fail("metadata selection is missing") }
        func fraction(_ key: String) throws -> Double {
            guard let x = meta[key].flatMap({ Double($0) }), x >= 0, x <= 1 else { throw fail("metadata \(key) must be a number in [0, 1]") }
            return x
        }
        let tolerance = try fraction("reuse_tolerance"), stabilityDrop = try fraction("stability_drop")
        self.shape = shape
        self.scale = scale
        self.selection = selection
        reuseTolerance = tolerance
        self.stabilityDrop = stabilityDrop
        model = meta["model"] ?? "unknown"
        guard model.utf8.count <= Frontend.maxModelBytes else {
            throw fail("metadata model is \(model.utf8.count) bytes of UTF-8, more than the \(Frontend.maxModelBytes) a masks file allows")
        }
        let inputs = try int("inputs", 1...Self.maxInputs)
        self.inputs = inputs
        let ints = ["frames", "height", "width", "text_tokens"].map { meta[$0].flatMap { Int($0) } }
        if let f = ints[0], let h = ints[1], let w = ints[2], let text = ints[3] {
            guard [f, h, w].allSatisfy({ (1...Frontend.maxLayoutSide).contains($0) }), (0...Frontend.maxTokens).contains(text) else {
                throw fail("metadata frames, height and width must be integers in 1...\(Frontend.maxLayoutSide) and text_tokens in 0...\(Frontend.maxTokens)")
            }
            guard f * h * w + text == shape.tokens else {
                throw fail("metadata frames × height × width + text_tokens = \(f * h * w + text), but tokens is \(shape.tokens)")
            }
            layout = Layout(frames: f, height: h, width: w, textTokens: text, textFirst: meta["text_position"] == "first")
        } else {
            layout = nil
        }
        let b = shape.blocks, pairs = b * (b - 1) / 2
        let tileBytes = Packing.codeBytes(b * b), pairBytes = Packing.bitBytes(pairs)
        // The last byte of a head's codes (bits) uses only this many codes (bits); the rest are 0.
        let lastCodes = b * b - 5 * (tileBytes - 1), lastBits = pairs - 8 * (pairBytes - 1)
        // Grown as heads are read, each from tensors the file holds: the metadata alone may
        // claim 10^7 of them.
        var heads: [HeadState] = []
        for step in steps {
            for layer in 0..<shape.layers {
                let name = "step\(step).layer\(layer)"
                func info(_ kind: String, _ dtype: DType, _ expected: [Int]?) throws -> TensorInfo {
                    guard let info = file.tensors["\(name).\(kind)"] else { throw fail("missing tensor \(name).\(kind)") }
                    guard info.dtype == dtype, info.shape == expected ?? [info.count] else {
                        throw fail("tensor \(name).\(kind) is \(info.dtype.rawValue) \(info.shape), expected \(dtype.rawValue) \(expected.map { "\($0)" } ?? "[n]")")
                    }
                    return info
                }
                _ = try info("tiles", .u8, [shape.heads, tileBytes])
                let tiles = try file.bytes("\(name).tiles")
                var singles: [Int] = []  // per head
                for h in 0..<shape.heads {
                    let head = tiles[(h * tileBytes)..<((h + 1) * tileBytes)]
                    if let m = head.firstIndex(where: { $0 > 242 }) {
                        throw fail("tensor \(name).tiles holds \(tiles[m]) in byte \(m - h * tileBytes) of head \(h); expected at most 242 (five codes 0…2 per byte)")
                    }
                    if let last = head.last, let k = (lastCodes..<5).first(where: { Packing.digits[Int(last) * 5 + $0] != 0 }) {
                        throw fail("tensor \(name).tiles sets a code for tile \(b * b + k - lastCodes) of head \(h), beyond its \(b * b) tiles; expected 0")
                    }
                    singles.append(head.reduce(0) { $0 + Packing.ones[Int($1)] })
                }
                let n = singles.reduce(0, +)
                let ownerInfo = try info("owner", .u16, nil)
                guard ownerInfo.count == n else {
                    throw fail("tensor \(name).owner holds \(ownerInfo.count) owners, expected \(n): one per tile exactly one input selected (code 1 in \(name).tiles)")
                }
                _ = try info("owner_mass", .f32, [n])
                let owners = try file.uint16s("\(name).owner"), mass = try file.floats("\(name).owner_mass")
                if let bad = owners.firstIndex(where: { Int($0) >= inputs }) {
                    throw fail("tensor \(name).owner holds \(owners[bad]) at \(bad); expected an input index below \(inputs)")
                }
                if let bad = mass.firstIndex(where: { !($0 >= 0 && $0 <= 1) }) {
                    throw fail("tensor \(name).owner_mass holds \(mass[bad]) at \(bad); expected a mass in [0, 1]")
                }
                // Whether every input left in the owners has a drop above the threshold is not
                // checked: the GPU sums the drops in another order, which may differ in the last bit.
                _ = try info("retired_drop", .f32, [shape.heads])
                let retired = try file.floats("\(name).retired_drop")
                if let bad = retired.firstIndex(where: { !($0 >= 0 && $0 <= Float(stabilityDrop)) }) {
                    throw fail("tensor \(name).retired_drop holds \(retired[bad]) for head \(bad); expected a drop in [0, \(Float(stabilityDrop))] (stability_drop)")
                }
                _ = try info("reuse", .u8, [shape.heads, pairBytes])
                let reuse = try file.bytes("\(name).reuse")
                for h in 0..<shape.heads where pairBytes > 0 {
                    let head = reuse[(h * pairBytes)..<((h + 1) * pairBytes)]
                    if let k = (lastBits..<8).first(where: { head.last! >> $0 & 1 == 1 }) {
                        throw fail("tensor \(name).reuse sets bit \(pairs + k - lastBits) of head \(h), beyond its \(pairs) pairs; expected 0")
                    }
                    if tolerance == 0, let m = head.firstIndex(where: { $0 != 0 }) {
                        throw fail("tensor \(name).reuse sets bits in byte \(m - h * pairBytes) of head \(h), but reuse_tolerance is 0 (reuse off); expected none")
                    }
                }
                var start = 0
                for h in 0..<shape.heads {
                    let own = start..<(start + singles[h])
                    start = own.upperBound
                    heads.append(HeadState(blocks: b, tiles: Array(tiles[(h * tileBytes)..<((h + 1) * tileBytes)]),
                                           owners: Array(owners[own]), ownerMass: Array(mass[own]), retiredDrop: retired[h],
                                           reuse: Array(reuse[(h * pairBytes)..<((h + 1) * pairBytes)])))
                }
            }
        }
        self.heads = heads
    }
}
