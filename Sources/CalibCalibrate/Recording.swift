// One prompt's recorded attention inputs (docs/recordings.md): a safetensors file holding
// `step{t}.layer{l}.q`, `.k` and optionally `.v`, each (heads, tokens, head_dim), or, reduced
// by the recorder when raw Q/K would be too big, `step{t}.layer{l}.mass` (heads, blocks, blocks).

import CalibFrontend
import CalibIR
import CalibSafetensors
import Foundation

public struct RecordingError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var message: String
    public var description: String { "\(file): \(message)" }
}

public struct Recording: @unchecked Sendable {
    public let file: SafetensorsFile
    public let model: String
    public let steps: [Int]
    public let layers: Int
    public let heads: Int
    public let tokens: Int
    public let headDim: Int
    public let hasValues: Bool
    /// The block size of recorded block mass; nil when the file holds q and k.
    public let massBlock: Int?
    public let layout: Layout?
    /// Of a joint sequence with text last, how many of its `text_tokens` slots hold this prompt's
    /// text (metadata `text_valid`); the rest are padding. Nil when every token is valid.
    public let textValid: Int?
    /// The tokens that take part in attention: all but the text padding, which ends the sequence.
    public let validTokens: Int
    /// The timestep the model's transformer received at each step (metadata `model_timesteps`),
    /// or empty when the file does not say.
    public let modelTimesteps: [Float]
    /// Softmax scale; 1/√head_dim unless the file's metadata sets `scale`.
    public let scale: Double

    public init(path: String) throws {
        try self.init(file: try SafetensorsFile(path: path))
    }

    /// A recording from a safetensors file already read (errors name `file.path`).
    public init(file: SafetensorsFile) throws {
        let path = file.path
        func fail(_ m: String) -> RecordingError { RecordingError(file: path, message: m) }
        self.file = file
        model = file.metadata["model"] ?? "unknown"
        var shape: [Int]?
        var found: [Int: Set<Int>] = [:]  // step → layers
        var kinds: [String: Set<String>] = [:]
        for (name, info) in file.tensors.sorted(by: { $0.key < $1.key }) {
            let parts = name.split(separator: ".")
            // Only the canonical spelling: every later lookup builds the name from the numbers, so
            // "step0.layer0..mass", "step+0" or "step00" would be accepted here and missing there.
            guard parts.count == 3, parts[0].hasPrefix("step"), let step = Int(parts[0].dropFirst(4)), step >= 0,
                  parts[1].hasPrefix("layer"), let layer = Int(parts[1].dropFirst(5)), layer >= 0,
                  ["q", "k", "v", "mass"].contains(parts[2]), name == "step\(step).layer\(layer).\(parts[2])" else {
                throw fail("unexpected tensor \(visible(name)) (expected step{t}.layer{l}.q, .k, .v or .mass)")
            }
            // Step values go into masks.json and to the kernels as C int; layers bound the loops below.
            guard step <= Frontend.maxStep else {
                throw fail("tensor \(name): step \(step) is more than the \(Frontend.maxStep) a masks file allows")
            }
            guard layer < Frontend.maxLayers else {
                throw fail("tensor \(name): layer \(layer) is beyond the \(Frontend.maxLayers) layers a masks file allows")
            }
            guard info.dtype.isFloat else { throw fail("tensor \(name) is \(info.dtype.rawValue); a recording holds F32, BF16 or F16") }
            guard info.shape.count == 3, info.shape.allSatisfy({ $0 > 0 }) else {
                throw fail("tensor \(name) has shape \(info.shape), expected three positive dimensions")
            }
            if parts[2] != "mass" {
                if let shape, shape != info.shape {
                    throw fail("tensor \(name) has shape \(info.shape), but other tensors have \(shape)")
                }
                shape = info.shape
            }
            kinds["\(step).\(layer)", default: []].insert(String(parts[2]))
            found[step, default: []].insert(layer)
        }
        guard !found.isEmpty else { throw fail("holds no tensors") }
        steps = found.keys.sorted()
        layers = (found.values.map { $0.max()! }.max() ?? 0) + 1
        let reduced = kinds.values.contains { $0.contains("mass") }
        for step in steps {
            for layer in 0..<layers {
                let have = kinds["\(step).\(layer)"] ?? []
                if reduced {
                    guard have == ["mass"] else { throw fail("step \(step) layer \(layer): a file with block mass holds only .mass tensors") }
                } else {
                    guard have.contains("q"), have.contains("k") else { throw fail("step \(step) layer \(layer) lacks its q or k tensor") }
                }
            }
        }
        let withValues = kinds.values.filter { $0.contains("v") }.count
        guard withValues == 0 || withValues == kinds.count else { throw fail("some (step, layer) have a v tensor and some do not") }
        hasValues = withValues > 0
        if reduced {
            func positive(_ key: String) throws -> Int {
                guard let v = file.metadata[key].flatMap({ Int($0) }), v > 0 else {
                    throw fail("a file with block mass needs metadata \(key) (a positive integer)")
                }
                return v
            }
            let block = try positive("mass_block")
            (tokens, headDim, massBlock) = (try positive("tokens"), try positive("head_dim"), block)
            guard block <= Frontend.maxBlock else { throw fail(Self.tooLarge("metadata mass_block", block, Frontend.maxBlock)) }
            guard tokens <= Frontend.maxTokens else { throw fail(Self.tooLarge("metadata tokens", tokens, Frontend.maxTokens)) }
            let blocks = (tokens + block - 1) / block
            let massShape = file.tensors.values.first!.shape
            guard file.tensors.values.allSatisfy({ $0.shape == massShape }), massShape[1] == blocks, massShape[2] == blocks else {
                throw fail("mass tensors must all be (heads, \(blocks), \(blocks)) for \(tokens) tokens in blocks of \(block)")
            }
            heads = massShape[0]
        } else {
            let shape = shape!
            (heads, tokens, headDim, massBlock) = (shape[0], shape[1], shape[2], nil)
        }
        // calibrate writes these into masks.json: refuse here what compile would refuse there.
        guard heads <= Frontend.maxHeads else { throw fail(Self.tooLarge("heads", heads, Frontend.maxHeads)) }
        guard tokens <= Frontend.maxTokens else { throw fail(Self.tooLarge("tokens", tokens, Frontend.maxTokens)) }
        guard headDim <= Frontend.maxHeadDim else { throw fail(Self.tooLarge("head_dim", headDim, Frontend.maxHeadDim)) }
        let dispatch = steps.count * layers * heads  // each factor is bounded above: no overflow
        guard dispatch <= Frontend.maxDispatch else {
            throw fail("steps × layers × heads = \(steps.count) × \(layers) × \(heads) = \(dispatch) is more than the \(Frontend.maxDispatch) a masks file allows")
        }
        guard model.utf8.count <= Frontend.maxModelBytes else {
            throw fail("metadata model is \(model.utf8.count) bytes of UTF-8, more than the \(Frontend.maxModelBytes) a masks file allows")
        }
        if let s = file.metadata["scale"] {
            guard let v = Double(s), v > 0, v.isFinite else { throw fail("metadata scale \"\(visible(s))\" is not a positive number") }
            scale = v
        } else {
            scale = 1 / Double(headDim).squareRoot()
        }
        modelTimesteps = try Self.modelTimesteps(file.metadata["model_timesteps"], steps: steps.count, fail: fail)
        let ints = ["frames", "height", "width", "text_tokens"].map { file.metadata[$0].flatMap { Int($0) } }
        if let f = ints[0], let h = ints[1], let w = ints[2] {
            let text = ints[3] ?? 0
            // The ranges of masks.json's layout, which also keep the product below from overflowing.
            guard [f, h, w].allSatisfy({ (1...Frontend.maxLayoutSide).contains($0) }), (0...Frontend.maxTokens).contains(text) else {
                throw fail("metadata frames, height and width must be integers in 1...\(Frontend.maxLayoutSide) and text_tokens in 0...\(Frontend.maxTokens)")
            }
            guard f * h * w + text == tokens else {
                throw fail("metadata frames × height × width + text_tokens = \(f * h * w + text), but tensors hold \(tokens) tokens")
            }
            layout = Layout(frames: f, height: h, width: w, textTokens: text, textFirst: file.metadata["text_position"] == "first")
        } else {
            layout = nil
        }
        let text = try Self.textValid(file.metadata, tokens: tokens, fail: fail)
        textValid = text?.valid
        validTokens = tokens - (text.map { $0.tokens - $0.valid } ?? 0)
    }

    /// Metadata `text_valid` with the `text_tokens` it counts in. Only where text ends the
    /// sequence, so that its padding is a suffix the kernels cut off by length (text first, as
    /// CogVideoX's, is never padded).
    static func textValid(_ metadata: [String: String], tokens: Int, fail: (String) -> any Error) throws -> (tokens: Int, valid: Int)? {
        guard let given = metadata["text_valid"] else { return nil }
        guard let text = metadata["text_tokens"].flatMap({ Int($0) }), text > 0 else {
            let found = metadata["text_tokens"].map { "\"\(visible($0))\"" } ?? "missing"
            throw fail("metadata text_valid is given, but text_tokens is \(found); expected text_tokens > 0 (text_valid counts the valid ones among them)")
        }
        guard text <= tokens else { throw fail("metadata text_tokens \(text) is more than the \(tokens) tokens the tensors hold") }
        guard metadata["text_position"] != "first" else {
            throw fail("metadata text_valid is given, but text_position is first; only text last (padding at the end of the sequence) has a valid length")
        }
        guard let valid = Int(given), (0...text).contains(valid) else {
            throw fail("metadata text_valid \"\(visible(given))\" must be an integer in 0...\(text) (text_tokens)")
        }
        guard tokens - text + valid > 0 else { throw fail("metadata text_valid 0 leaves no valid token: every token is text") }
        return (text, valid)
    }

    /// Metadata `model_timesteps`: one finite number per step in step order, comma-separated,
    /// distinct (as masks.json's `model_timesteps`); nil gives none.
    static func modelTimesteps(_ text: String?, steps: Int, fail: (String) -> any Error) throws -> [Float] {
        guard let text else { return [] }
        let values = text.split(separator: ",", omittingEmptySubsequences: false).map { Float(String($0)) }
        guard values.count == steps, values.allSatisfy({ $0?.isFinite == true }) else {
            throw fail("metadata model_timesteps must list one finite number per step (\(steps)), comma-separated")
        }
        let timesteps = values.map { $0! }
        if let repeated = Shape.repeatedTimestep(timesteps) {
            throw fail("metadata model_timesteps: \(repeated) is the timestep of two steps")
        }
        return timesteps
    }

    static func tooLarge(_ what: String, _ value: Int, _ max: Int) -> String {
        "\(what) \(value) is more than the \(max) a masks file allows"
    }

    /// One head of one tensor (`tokens × headDim` floats, or blocks × blocks for "mass");
    /// non-finite values are refused, except in the text padding, which nothing reads.
    public func head(_ kind: String, step: Int, layer: Int, head: Int) throws -> [Float] {
        let name = "step\(step).layer\(layer).\(kind)"
        let per = kind == "mass" ? file.tensors[name]!.shape[1] * file.tensors[name]!.shape[2] : tokens * headDim
        let values = try file.floats(name, elements: (head * per)..<((head + 1) * per))
        let read = kind == "mass" ? per : validTokens * headDim
        if let bad = values[..<read].firstIndex(where: { !$0.isFinite }) {
            throw RecordingError(file: file.path, message: "tensor \(name) head \(head) holds \(values[bad]) at token \(bad / headDim), dim \(bad % headDim)")
        }
        return values
    }
}
