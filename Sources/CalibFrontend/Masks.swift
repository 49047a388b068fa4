// masks.json (format 1, docs/masks-format.md) → IR. Every rule of the format is checked here,
// with the JSON path of the offending value, so later stages only see valid programs.

import CalibIR
import CalibJSON
import CalibSupport
import Foundation

/// Frames × height × width of video tokens plus text tokens; used to draw masks.
public struct Layout: Hashable, Sendable {
    public var frames: Int
    public var height: Int
    public var width: Int
    public var textTokens: Int
    /// Whether text tokens come before the video tokens.
    public var textFirst: Bool

    public init(frames: Int, height: Int, width: Int, textTokens: Int, textFirst: Bool) {
        self.frames = frames
        self.height = height
        self.width = width
        self.textTokens = textTokens
        self.textFirst = textFirst
    }
}

public struct Masks: Sendable {
    public var program: Program
    public var layout: Layout?
}

/// The limits on what the generated tables hold (docs/masks-format.md, "Limits"); the
/// defaults are the format's. Tests lower them to reach each check with a small file.
public struct TableLimits: Sendable {
    public var ranges = Frontend.maxRanges
    public var distinctRanges = Frontend.maxDistinctRanges
    public var patterns = Frontend.maxPatterns
    public var patternRows = Frontend.maxPatternRows
    public init() {}
}

public enum Frontend {
    /// Bounds that keep a hostile or mistaken header from allocating before anything is read;
    /// they live in CalibIR (`Limits.swift`), which the IR text reader shares.
    public static let maxBlocks = Limits.maxBlocks
    public static let maxTokens = Limits.maxTokens
    public static let maxDispatch = Limits.maxDispatch
    public static let maxHeadDim = Limits.maxHeadDim
    public static let maxBlock = Limits.maxBlock
    public static let maxLayers = Limits.maxLayers
    public static let maxHeads = Limits.maxHeads
    public static let maxStep = Limits.maxStep
    public static let maxModelBytes = Limits.maxModelBytes
    public static let maxLayoutSide = Limits.maxLayoutSide
    public static let maxRanges = Limits.maxRanges
    public static let maxDistinctRanges = Limits.maxDistinctRanges
    public static let maxPatterns = Limits.maxPatterns
    public static let maxPatternRows = Limits.maxPatternRows

    public static func load(path: String) throws -> Masks {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw MaskError(file: path, path: "$", message: "cannot read the file")
        }
        return try parse(Array(data), file: path)
    }

    /// The content hash is computed on the second core while the first parses.
    public static func parse(_ bytes: [UInt8], file: String, limits: TableLimits = TableLimits()) throws -> Masks {
        var hash = ""
        var result: Result<Masks, Error>!
        DispatchQueue.concurrentPerform(iterations: 2) { task in
            guard task == 0 else {
                hash = SHA256.hex(bytes)
                return
            }
            result = Result {
                let json: JSON
                do {
                    json = try JSONReader.parse(bytes)
                } catch let e as JSONSyntaxError {
                    throw MaskError(file: file, path: "line \(e.line), column \(e.column)", message: "invalid JSON: \(e.message)")
                }
                var decoder = Decoder(file: file, limits: limits)
                return try decoder.masks(Node(value: json, path: "$", file: file))
            }
        }
        var masks = try result.get()
        masks.program.sourceHash = hash
        return masks
    }
}

/// A row's ranges with a precomputed FNV-1a hash: Set<[Span]> would push every range through
/// SipHash, about half the frontend's time on a Wan-size set.
private struct RowKey: Hashable {
    let spans: [Span]
    let hash: Int

    init(_ spans: [Span]) {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for s in spans {
            h = (h ^ UInt64(truncatingIfNeeded: s.start)) &* 0x100_0000_01b3
            h = (h ^ UInt64(truncatingIfNeeded: s.end)) &* 0x100_0000_01b3
        }
        self.spans = spans
        self.hash = Int(truncatingIfNeeded: h)
    }

    static func == (a: RowKey, b: RowKey) -> Bool { a.hash == b.hash && a.spans == b.spans }
    func hash(into hasher: inout Hasher) { hasher.combine(hash) }
}

private struct Decoder {
    let file: String
    let limits: TableLimits
    /// Key-block ranges of every pattern, and of the distinct rows (what the generated tables hold).
    var totalRanges = 0
    var distinctRanges = 0
    var distinctRows = Set<RowKey>()
    var lastRow: [Span] = [Span(-1, -1)]

    /// Counts one decoded row against the limits as soon as it exists, so a hostile pattern is
    /// refused before its ranges are all in memory.
    mutating func count(_ spans: [Span], _ node: @autoclosure () -> Node) throws {
        totalRanges += spans.count
        guard totalRanges <= limits.ranges else {
            throw node().fail("the patterns hold more than \(limits.ranges) key-block ranges in all")
        }
        // Neighbouring rows often repeat (a spatial head's rows within a frame): no hashing then.
        if spans == lastRow { return }
        lastRow = spans
        if distinctRows.insert(RowKey(spans)).inserted {
            distinctRanges += spans.count
            guard distinctRanges <= limits.distinctRanges else {
                throw node().fail("the distinct rows of all patterns hold more than \(limits.distinctRanges) key-block ranges in all")
            }
        }
    }

    mutating func masks(_ root: Node) throws -> Masks {
        let top = try root.object(allowed: ["format", "model", "tokens", "head_dim", "block", "layers", "heads",
                                            "timesteps", "model_timesteps", "layout", "patterns", "assignments"])
        let format = try top.required("format")
        guard try format.int(in: 0...Int.max) == 1 else { throw format.fail("unsupported format version (this calibc reads format 1)") }
        let modelNode = try top.required("model")
        let model = try modelNode.string()
        guard model.utf8.count <= Frontend.maxModelBytes else {
            throw modelNode.fail("model is \(model.utf8.count) bytes of UTF-8, more than the \(Frontend.maxModelBytes) supported")
        }
        let tokensNode = try top.required("tokens")
        let tokens = try tokensNode.int(in: 1...Frontend.maxTokens)
        let headDim = try top.required("head_dim").int(in: 1...Frontend.maxHeadDim)
        let blockNode = try top.required("block")
        let block = try blockNode.int(in: 1...Frontend.maxBlock)
        guard (tokens + block - 1) / block <= Frontend.maxBlocks else {
            throw blockNode.fail("tokens / block gives \((tokens + block - 1) / block) blocks per side, more than the \(Frontend.maxBlocks) supported")
        }
        let layers = try top.required("layers").int(in: 1...Frontend.maxLayers)
        let heads = try top.required("heads").int(in: 1...Frontend.maxHeads)
        let stepsNode = try top.required("timesteps")
        var steps: [Int] = []
        for n in try stepsNode.array() {
            let s = try n.int(in: 0...Frontend.maxStep)
            if let last = steps.last, s <= last { throw n.fail("timesteps must be strictly ascending (\(s) after \(last))") }
            steps.append(s)
        }
        guard !steps.isEmpty else { throw stepsNode.fail("expected at least one timestep") }
        var modelTimesteps: [Float] = []
        if let node = top.optional("model_timesteps") {
            let items = try node.array()
            guard items.count == steps.count else {
                throw node.fail("expected one model timestep per entry of timesteps (\(steps.count)), found \(items.count)")
            }
            modelTimesteps = try items.map { try $0.float() }
            if let repeated = Shape.repeatedTimestep(modelTimesteps) {
                throw node.fail("\(repeated) is the model timestep of two steps (a call could not tell them apart)")
            }
        }
        let layout = try top.optional("layout").map { try self.layout($0, tokens: tokens) }
        let shape = Shape(tokens: tokens, headDim: headDim, block: block, layers: layers, heads: heads, steps: steps,
                          modelTimesteps: modelTimesteps, textTokens: layout?.textTokens ?? 0,
                          textFirst: layout?.textFirst ?? false)
        guard shape.dispatchCount <= Frontend.maxDispatch else {
            throw stepsNode.fail("timesteps × layers × heads = \(shape.dispatchCount) exceeds \(Frontend.maxDispatch)")
        }

        var plans: [Plan] = []
        var planIndex: [String: Int] = [:]
        let patternsNode = try top.required("patterns")
        guard case .object(let members) = patternsNode.value else { throw patternsNode.expected("an object") }
        for (name, value) in members {
            let node = patternsNode.child(name, value)
            guard name != "dense" else { throw node.fail("\"dense\" is built in and cannot be redefined") }
            guard !name.isEmpty, name.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "_.-".unicodeScalars.contains($0)) }) else {
                throw node.fail("pattern names use letters, digits, '_', '.' and '-'")
            }
            guard plans.count < limits.patterns else { throw node.fail("more than \(limits.patterns) patterns") }
            guard (plans.count + 1) * shape.blocks <= limits.patternRows else {
                throw node.fail("\(plans.count + 1) patterns × \(shape.blocks) query blocks is more than the \(limits.patternRows) pattern rows supported")
            }
            planIndex[name] = plans.count
            plans.append(Plan(name: name, rows: try pattern(node, shape: shape)))
        }

        let dispatch = try assignments(try top.required("assignments"), shape: shape, plans: &plans, planIndex: &planIndex)
        let program = Program(model: model, shape: shape, plans: plans, dispatch: dispatch, sourceHash: "")
        return Masks(program: program, layout: layout)
    }

    func layout(_ node: Node, tokens: Int) throws -> Layout {
        let m = try node.object(allowed: ["frames", "height", "width", "text_tokens", "text_position"])
        let frames = try m.required("frames").int(in: 1...Frontend.maxLayoutSide)
        let height = try m.required("height").int(in: 1...Frontend.maxLayoutSide)
        let width = try m.required("width").int(in: 1...Frontend.maxLayoutSide)
        let text = try m.optional("text_tokens")?.int(in: 0...Frontend.maxTokens) ?? 0
        var textFirst = false
        if let p = m.optional("text_position") {
            switch try p.string() {
            case "first": textFirst = true
            case "last": textFirst = false
            default: throw p.fail("expected \"first\" or \"last\"")
            }
        }
        guard frames * height * width + text == tokens else {
            throw node.fail("frames × height × width + text_tokens = \(frames * height * width + text), but tokens is \(tokens)")
        }
        return Layout(frames: frames, height: height, width: width, textTokens: text, textFirst: textFirst)
    }

    mutating func pattern(_ node: Node, shape: Shape) throws -> [Row] {
        let m = try node.object(allowed: ["rows", "bitmap", "reuse"])
        let blocks = shape.blocks
        var kept: [[Span]]
        switch (m.optional("rows"), m.optional("bitmap")) {
        case (let rows?, nil): kept = try ranges(rows, blocks: blocks)
        case (nil, let bitmap?): kept = try self.bitmap(bitmap, blocks: blocks)
        case (nil, nil): throw node.fail("expected \"rows\" or \"bitmap\"")
        case (_?, _?): throw node.fail("give \"rows\" or \"bitmap\", not both")
        }

        var reuse = [Int?](repeating: nil, count: blocks)
        if let reuseNode = m.optional("reuse") {
            for pair in try reuseNode.array() {
                let items = try pair.array()
                guard items.count == 2 else { throw pair.fail("expected [target, source] query blocks") }
                let target = try items[0].int(in: 0...(blocks - 1))
                let source = try items[1].int(in: 0...(blocks - 1))
                guard target != source else { throw pair.fail("query block \(target) cannot reuse itself") }
                guard reuse[target] == nil else { throw pair.fail("query block \(target) already reuses query block \(reuse[target]!)") }
                guard kept[target].isEmpty else {
                    throw pair.fail("query block \(target) reuses query block \(source), so its kept key blocks must be empty")
                }
                if shape.tokens % shape.block != 0, source == blocks - 1 {
                    throw items[1].fail("query block \(source) is the partial last block and cannot supply the \(shape.block) rows of query block \(target)")
                }
                reuse[target] = source
            }
        }
        // Each chain is walked once: a row whose chain was followed to a computed row is settled,
        // and reaching a row of the walk in progress is a cycle (its first row is reported, as a
        // walk from every row would find first).
        var state = [UInt8](repeating: 0, count: blocks)  // 0 unvisited, 1 on the current walk, 2 settled
        for q in 0..<blocks where reuse[q] != nil && state[q] == 0 {
            var walk: [Int] = []
            var at = q
            while let next = reuse[at], state[at] == 0 {
                state[at] = 1
                walk.append(at)
                at = next
            }
            if state[at] == 1 {
                throw node.child("reuse", .null).fail("query block \(q) is on a reuse cycle")
            }
            for w in walk { state[w] = 2 }
        }
        var rows: [Row] = []
        for q in 0..<blocks {
            if let source = reuse[q] {
                rows.append(.reuse(source))
            } else {
                guard !kept[q].isEmpty else {
                    let where_ = m.optional("rows").map { $0.element(q, .null) } ?? node.child("bitmap", .null)
                    throw where_.fail("query block \(q) keeps no key block and reuses none")
                }
                rows.append(.compute(kept[q]))
            }
        }
        return rows
    }

    /// The hot loop of a large file: values are read straight from the JSON tree, and a Node
    /// (with its path) is only made to report an error.
    mutating func ranges(_ node: Node, blocks: Int) throws -> [[Span]] {
        guard let rows = node.value.elements else { throw node.expected("an array") }
        guard rows.count == blocks else { throw node.fail("expected \(blocks) rows (one per query block), found \(rows.count)") }
        var out: [[Span]] = []
        out.reserveCapacity(blocks)
        for (q, row) in rows.enumerated() {
            if case .pairs(let flat) = row {
                // The common case, read without a JSON value per range.
                var spans: [Span] = []
                spans.reserveCapacity(flat.count / 2)
                var at = 0
                while at < flat.count {
                    let (start, end) = (flat[at], flat[at + 1])
                    guard start >= 0, start < blocks, end <= blocks, start < end, start >= (spans.last?.end ?? 0) else {
                        try rangeError(node.element(q, row).element(at / 2, .integers([start, end])), blocks: blocks, after: spans.last)
                        break
                    }
                    spans.append(Span(start, end))
                    at += 2
                }
                try count(spans, node.element(q, row))
                out.append(spans)
                continue
            }
            guard let ranges = row.elements else { throw node.element(q, row).expected("an array") }
            var spans: [Span] = []
            spans.reserveCapacity(ranges.count)
            for (r, range) in ranges.enumerated() {
                guard case .integers(let ends) = range, ends.count == 2, case let (start, end) = (ends[0], ends[1]),
                      start >= 0, start < blocks, end >= 0, end <= blocks, start < end,
                      start >= (spans.last?.end ?? 0) else {
                    try rangeError(node.element(q, row).element(r, range), blocks: blocks, after: spans.last)
                    continue
                }
                spans.append(Span(start, end))
            }
            try count(spans, node.element(q, row))
            out.append(spans)
        }
        return out
    }

    /// Explains why `r` is not a valid range (always throws).
    func rangeError(_ r: Node, blocks: Int, after last: Span?) throws {
        let ends = try r.array()
        guard ends.count == 2 else { throw r.fail("expected a key-block range [start, end)") }
        let start = try ends[0].int(in: 0...(blocks - 1))
        let end = try ends[1].int(in: 0...blocks)
        guard start < end else { throw r.fail("empty range [\(start), \(end)): end must exceed start") }
        let l = last!
        throw r.fail("range [\(start), \(end)) overlaps or precedes [\(l.start), \(l.end)); ranges must be sorted and disjoint")
    }

    mutating func bitmap(_ node: Node, blocks: Int) throws -> [[Span]] {
        let text = try node.string()
        guard let data = Data(base64Encoded: text) else { throw node.fail("expected base64 text") }
        let stride = (blocks + 7) / 8
        guard data.count == blocks * stride else {
            throw node.fail("expected \(blocks) rows of \(stride) bytes (\(blocks * stride) bytes), found \(data.count) bytes")
        }
        let bytes = [UInt8](data)
        var out: [[Span]] = []
        out.reserveCapacity(blocks)
        for q in 0..<blocks {
            // Runs of set bits, a byte at a time: zero and full bytes cost one test each.
            let row = bytes[(q * stride)..<((q + 1) * stride)]
            if blocks % 8 != 0, row.last! >> UInt8(blocks % 8) != 0 {
                let bit = (0..<8).first { row.last! >> UInt8($0) & 1 == 1 && (stride - 1) * 8 + $0 >= blocks }!
                throw node.fail("row \(q) sets padding bit \((stride - 1) * 8 + bit) beyond the \(blocks) key blocks")
            }
            var spans: [Span] = []
            var start = -1
            for (i, byte) in row.enumerated() {
                if byte == 0 || byte == 0xff {
                    if byte == 0, start >= 0 { spans.append(Span(start, i * 8)); start = -1 }
                    if byte == 0xff, start < 0 { start = i * 8 }
                    continue
                }
                for bit in 0..<8 {
                    let on = byte >> UInt8(bit) & 1 == 1
                    if on, start < 0 { start = i * 8 + bit }
                    if !on, start >= 0 { spans.append(Span(start, i * 8 + bit)); start = -1 }
                }
            }
            if start >= 0 { spans.append(Span(start, min(blocks, stride * 8))) }
            try count(spans, node)
            out.append(spans)
        }
        return out
    }

    func assignments(_ node: Node, shape: Shape, plans: inout [Plan], planIndex: inout [String: Int]) throws -> [Int] {
        var dispatch = [Int](repeating: -1, count: shape.dispatchCount)
        let stepIndexOf = Dictionary(uniqueKeysWithValues: shape.steps.enumerated().map { ($1, $0) })
        for entry in try node.array() {
            let m = try entry.object(allowed: ["steps", "layers", "heads", "pattern"])
            let steps = try selector(try m.required("steps"), values: shape.steps, what: "timestep")
            let layers = try selector(try m.required("layers"), values: Array(0..<shape.layers), what: "layer")
            let heads = try selector(try m.required("heads"), values: Array(0..<shape.heads), what: "head")
            let patternNode = try m.required("pattern")
            let name = try patternNode.string()
            if name == "dense", planIndex[name] == nil {
                planIndex[name] = plans.count
                plans.append(Plan(name: "dense", rows: Array(repeating: .compute([Span(0, shape.blocks)]), count: shape.blocks)))
            }
            guard let p = planIndex[name] else { throw patternNode.fail("unknown pattern \"\(visible(name))\"") }
            for s in steps {
                let stepIndex = stepIndexOf[s]!
                for layer in layers {
                    for head in heads {
                        let d = shape.dispatchIndex(stepIndex: stepIndex, layer: layer, head: head)
                        guard dispatch[d] < 0 else {
                            throw entry.fail("timestep \(s) layer \(layer) head \(head) is already assigned pattern \"\(plans[dispatch[d]].name)\"")
                        }
                        dispatch[d] = p
                    }
                }
            }
        }
        if let missing = dispatch.firstIndex(of: -1) {
            let head = missing % shape.heads
            let layer = (missing / shape.heads) % shape.layers
            let step = shape.steps[missing / (shape.heads * shape.layers)]
            throw node.fail("timestep \(step) layer \(layer) head \(head) has no pattern assigned")
        }
        return dispatch
    }

    /// `"*"`, an integer, or a list such as `"0-3,8"`; the values must be among `values`.
    /// The values a selector names; `values` ascending. Each part costs a binary search plus what
    /// it selects, so a long list or range over 10^5 timesteps stays linear.
    func selector(_ node: Node, values: [Int], what: String) throws -> [Int] {
        /// The index of the first value ≥ x.
        func lowerBound(_ x: Int) -> Int {
            var lo = 0, hi = values.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if values[mid] < x { lo = mid + 1 } else { hi = mid }
            }
            return lo
        }
        var picked: [Int] = []
        if case .number = node.value {
            let v = try node.int(in: 0...Int.max)
            let i = lowerBound(v)
            guard i < values.count, values[i] == v else { throw node.fail("\(what) \(v) does not exist") }
            return [v]
        }
        let text = try node.string()
        if text == "*" { return values }
        var missing: Int?  // reported after the whole text parsed, as a syntax error comes first
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let ends = part.split(separator: "-", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard (1...2).contains(ends.count), let lo = ends.first!, let hi = ends.last!, lo <= hi else {
                throw node.fail("expected \"*\", an integer, or a list like \"0-3,8\"; found \"\(visible(text))\"")
            }
            let first = lowerBound(lo)
            if ends.count == 1, first == values.count || values[first] != lo { missing = missing ?? lo }
            var i = first
            while i < values.count, values[i] <= hi { picked.append(values[i]); i += 1 }
        }
        if let missing { throw node.fail("\(what) \(missing) does not exist") }
        if picked.isEmpty { throw node.fail("selects no \(what)") }
        return Array(Set(picked)).sorted()
    }
}
