// The IR every stage speaks: a program is a shape, a list of unique plans and a dispatch table
// from (step, layer, head) to a plan. Value types throughout, so equality and hashing (which
// dedupe relies on) come from the compiler.

/// The attention problem one program is compiled for.
public struct Shape: Hashable, Sendable {
    public var tokens: Int
    public var headDim: Int
    public var block: Int
    public var layers: Int
    public var heads: Int
    /// The diffusion steps the program has plans for, ascending; the ABI is called with these values.
    public var steps: [Int]
    /// The timestep the model's transformer receives at each step (empty: the step values
    /// themselves), distinct: the runtime picks the step whose timestep is nearest to the one a
    /// call receives, so no caller counts calls.
    public var modelTimesteps: [Float]
    /// Text tokens in the sequence beside the video ones (joint text–video attention; 0: none),
    /// the first `textTokens` of it or the last. Padded text at the end of a text-last segment
    /// takes no part when a call gives the valid text lengths (docs/masks-format.md).
    public var textTokens: Int
    public var textFirst: Bool

    public init(tokens: Int, headDim: Int, block: Int, layers: Int, heads: Int, steps: [Int], modelTimesteps: [Float] = [],
                textTokens: Int = 0, textFirst: Bool = false) {
        self.tokens = tokens
        self.headDim = headDim
        self.block = block
        self.layers = layers
        self.heads = heads
        self.steps = steps
        self.modelTimesteps = modelTimesteps
        self.textTokens = textTokens
        self.textFirst = textFirst
    }

    /// What a call's timestep is matched against, per step.
    public var callTimesteps: [Float] { modelTimesteps.isEmpty ? steps.map(Float.init) : modelTimesteps }

    /// A value that two of `timesteps` share, if any.
    public static func repeatedTimestep(_ timesteps: [Float]) -> Float? {
        let sorted = timesteps.sorted()
        return zip(sorted, sorted.dropFirst()).first(where: { $0 == $1 })?.0
    }

    /// Query and key blocks per side; the last one is partial when `tokens` is not a multiple of `block`.
    public var blocks: Int { (tokens + block - 1) / block }
    public var dispatchCount: Int { steps.count * layers * heads }

    public func dispatchIndex(stepIndex: Int, layer: Int, head: Int) -> Int {
        (stepIndex * layers + layer) * heads + head
    }
}

/// Key blocks `start ..< end` computed densely for one query block.
public struct Span: Hashable, Comparable, Sendable {
    public var start: Int
    public var end: Int

    public init(_ start: Int, _ end: Int) {
        self.start = start
        self.end = end
    }

    public var count: Int { end - start }

    public static func < (a: Span, b: Span) -> Bool {
        (a.start, a.end) < (b.start, b.end)
    }

    /// The runs of consecutive blocks in `blocks`, ascending.
    public static func runs(_ blocks: Set<Int>) -> [Span] {
        var out: [Span] = []
        for k in blocks.sorted() {
            if let last = out.last, last.end == k { out[out.count - 1].end = k + 1 } else { out.append(Span(k, k + 1)) }
        }
        return out
    }
}

/// One query block of a plan. Key blocks outside the spans are skipped tiles.
public enum Row: Hashable, Sendable {
    case compute([Span])
    /// The output rows are copied from the given query block of the same plan.
    case reuse(Int)

    public var spans: [Span] {
        if case .compute(let spans) = self { return spans }
        return []
    }

    /// Kept tiles: the work this row costs.
    public var cost: Int { spans.reduce(0) { $0 + $1.count } }
}

public struct Plan: Hashable, Sendable {
    public var name: String
    public var rows: [Row]
    /// The compute rows in the order they run (set by `reorder`).
    public var order: [Int]?
    /// Cuts `order` into cost-balanced chunks, `chunks[c] ..< chunks[c + 1]`, that threads claim
    /// at run time (set by the CPU target's `chunk`).
    public var chunks: [Int]?

    public init(name: String, rows: [Row], order: [Int]? = nil, chunks: [Int]? = nil) {
        self.name = name
        self.rows = rows
        self.order = order
        self.chunks = chunks
    }

    public var computeRows: [Int] { rows.indices.filter { rows[$0].spans.count > 0 } }
    public var reusedRows: [Int] { rows.indices.filter { if case .reuse = rows[$0] { return true } else { return false } } }
    public var cost: Int { rows.reduce(0) { $0 + $1.cost } }
}

public struct Program: Hashable, Sendable {
    public var model: String
    public var shape: Shape
    public var plans: [Plan]
    /// Plan index per `shape.dispatchIndex(stepIndex:layer:head:)`.
    public var dispatch: [Int]
    /// Content hash of the masks.json this program came from, carried into the kernels.
    public var sourceHash: String

    public init(model: String, shape: Shape, plans: [Plan], dispatch: [Int], sourceHash: String) {
        self.model = model
        self.shape = shape
        self.plans = plans
        self.dispatch = dispatch
        self.sourceHash = sourceHash
    }

    public func plan(stepIndex: Int, layer: Int, head: Int) -> Plan {
        plans[dispatch[shape.dispatchIndex(stepIndex: stepIndex, layer: layer, head: head)]]
    }
}
