import CalibCodegen
import CalibDriver
import CalibIR
import CalibRuntime
import CalibSupport
import Foundation
import XCTest

/// Compiles `program` through the driver into a shared library and loads it. `isa` caps the
/// instruction set the library picks when it loads (CALIBC_ISA), so every instance can be checked.
func loadKernels(_ program: Program, isa: String? = nil) throws -> (AttentionKernels, Program) {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("calibc-rt-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: dir) }
    var options = CompileOptions()
    options.shared = true
    let result = try Driver.compile(program, source: "test.json", to: dir.path, options: options)
    if let isa { setenv("CALIBC_ISA", isa, 1) }
    defer { unsetenv("CALIBC_ISA") }
    // dlopen keeps the mapping after the file is deleted.
    return (try AttentionKernels(libraryPath: dir.appendingPathComponent(options.target.libraryName).path), result.program)
}

/// One compile of `program`, loaded once per instruction set (CALIBC_ISA is read when a library
/// loads, so each instance loads from its own copy of the file); an instance the shape or the
/// machine lacks falls back to a narrower one, so kernels may repeat an `isa`.
func loadKernelsForEveryISA(_ program: Program) throws -> ([AttentionKernels], Program) {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("calibc-rt-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: dir) }
    var options = CompileOptions()
    options.shared = true
    let result = try Driver.compile(program, source: "test.json", to: dir.path, options: options)
    defer { unsetenv("CALIBC_ISA") }
    let kernels = try ["avx512-bf16", "avx512", "avx2", "sse", "portable"].map { isa in
        let copy = dir.appendingPathComponent("\(isa).so")
        try FileManager.default.copyItem(at: dir.appendingPathComponent(options.target.libraryName), to: copy)
        setenv("CALIBC_ISA", isa, 1)
        return try AttentionKernels(libraryPath: copy.path)
    }
    return (kernels, result.program)
}

/// Random plans with the shapes masks take: spans, full rows, reuse of earlier full blocks.
func randomPlan(_ name: String, blocks: Int, partialLast: Bool, reuse: Bool, rng: inout SplitMix64) -> Plan {
    var rows: [Row] = []
    for q in 0..<blocks {
        let sources = (0..<q).filter { if case .compute = rows[$0] { return !(partialLast && $0 == blocks - 1) } else { return false } }
        if reuse, !sources.isEmpty, Int.random(in: 0..<4, using: &rng) == 0 {
            rows.append(.reuse(sources.randomElement(using: &rng)!))
            continue
        }
        var spans: [Span] = []
        var at = Int.random(in: 0..<blocks, using: &rng)
        while at < blocks, spans.count < 3 {
            let end = Int.random(in: (at + 1)...min(blocks, at + 3), using: &rng)
            spans.append(Span(at, end))
            at = end + Int.random(in: 1...3, using: &rng)
        }
        rows.append(.compute(spans))
    }
    return Plan(name: name, rows: rows)
}

func densePlan(blocks: Int) -> Plan {
    Plan(name: "dense", rows: Array(repeating: .compute([Span(0, blocks)]), count: blocks))
}

/// A fresh seed per run, printed so a failure can be replayed.
func freshSeed(_ test: String) -> UInt64 {
    let seed = UInt64.random(in: 0...UInt64.max)
    print("\(test): seed \(seed)")
    return seed
}

/// q, k, v and out as the buffers the kernel entries take, each used only inside its
/// `withUnsafe…BufferPointer`: a pointer returned out of one dangles once the optimizer ends its
/// array's life, which an optimized test build showed (a layout check read another array's values).
func withBuffers<T, U, R>(_ q: [T], _ k: [T], _ v: [T], _ out: inout [U],
                          _ body: (UnsafeBufferPointer<T>, UnsafeBufferPointer<T>, UnsafeBufferPointer<T>, UnsafeMutableBufferPointer<U>) throws -> R) rethrows -> R {
    try q.withUnsafeBufferPointer { qp in
        try k.withUnsafeBufferPointer { kp in
            try v.withUnsafeBufferPointer { vp in
                try out.withUnsafeMutableBufferPointer { op in try body(qp, kp, vp, op) }
            }
        }
    }
}

/// Runs one head on packed inputs into a NaN-poisoned output.
func runHead(_ kernels: AttentionKernels, step: Int, layer: Int = 0, head: Int, q: [Float], k: [Float], v: [Float]) throws -> [Float] {
    let n = kernels.info.tokens, d = kernels.info.headDim
    var out = [Float](repeating: .nan, count: n * d)
    try withBuffers(q, k, v, &out) { try kernels.attention(step: step, layer: layer, head: head, q: $0, k: $1, v: $2, out: $3, tokens: n, headDim: d) }
    return out
}

/// Runs one head on packed bfloat16 inputs into a NaN-poisoned float output.
func runHeadBF16(_ kernels: AttentionKernels, step: Int, head: Int, q: [BFloat16], k: [BFloat16], v: [BFloat16]) throws -> [Float] {
    let n = kernels.info.tokens, d = kernels.info.headDim
    var out = [Float](repeating: .nan, count: n * d)
    try withBuffers(q, k, v, &out) { try kernels.attention(step: step, layer: 0, head: head, q: $0, k: $1, v: $2, out: $3, tokens: n, headDim: d) }
    return out
}

/// The layer calls on arrays (withBuffers).
extension AttentionKernels {
    func attentionLayer<T: KernelElement>(step: Int, layer: Int, batch: Int, q: [T], k: [T], v: [T], out: inout [T],
                                          strides: (q: Strides, k: Strides, v: Strides, out: Strides), textLengths: [Int32]? = nil) throws {
        try withBuffers(q, k, v, &out) {
            try attentionLayer(step: step, layer: layer, batch: batch, q: $0, k: $1, v: $2, out: $3, strides: strides, textLengths: textLengths)
        }
    }

    func denseAttentionLayer<T: KernelElement>(batch: Int, q: [T], k: [T], v: [T], out: inout [T],
                                               strides: (q: Strides, k: Strides, v: Strides, out: Strides)) throws {
        try withBuffers(q, k, v, &out) { try denseAttentionLayer(batch: batch, q: $0, k: $1, v: $2, out: $3, strides: strides) }
    }
}
