// Swift over the C ABI of a compiled kernel set (Sources/CalibCodegen/kernels/cpu/include/
// calib_kernels.h, seen here as CCalibABI): a shared library built by `calibc compile --shared`
// and loaded at run time, or a generated SwiftPM target the caller links and hands over with
// `AttentionKernels(entryPoints: UnsafeRawPointer(calib_get_entry_points()))`.

import CCalibABI
import CalibSupport
import Foundation

public enum CalibError: Error, Equatable, CustomStringConvertible {
    case shapeMismatch(tokens: Int, headDim: Int, expectedTokens: Int, expectedHeadDim: Int)
    case noPlan(step: Int, layer: Int, head: Int)
    case badArgument(String)
    case outOfMemory
    case maskMismatch(file: String, expected: String, found: String)
    case library(String)

    public var description: String {
        switch self {
        case let .shapeMismatch(t, d, et, ed):
            return "shape mismatch: called with tokens \(t), head_dim \(d); kernels were compiled for tokens \(et), head_dim \(ed)"
        case let .noPlan(s, l, h): return h < 0 ? "no plan for step \(s), layer \(l)" : "no plan for step \(s), layer \(l), head \(h)"
        case let .badArgument(m): return "bad argument: \(m)"
        case .outOfMemory: return "out of memory for kernel scratch space"
        case let .maskMismatch(f, e, found):
            return "kernels were compiled from another masks file: \(f) has sha256 \(found), kernels carry \(e)"
        case let .library(m): return m
        }
    }
}

public struct KernelInfo: Equatable, Sendable {
    public var tokens: Int
    public var headDim: Int
    public var block: Int
    public var layers: Int
    public var heads: Int
    public var steps: [Int]
    /// The timestep the model receives at each step (masks.json's model_timesteps, or the steps).
    public var timesteps: [Float]
    public var plans: Int
    public var model: String
    public var maskSHA256: String
    /// Text tokens of a joint text–video sequence (0: video only), first or last in it.
    public var textTokens: Int = 0
    public var textFirst: Bool = false

    /// The step a call whose model received `timestep` runs: the one whose timestep is nearest,
    /// ties to the earlier step (as the Python package's `step_index`).
    public func step(nearestTo timestep: Float) -> Int {
        var best = 0
        for i in timesteps.indices where abs(timesteps[i] - timestep) < abs(timesteps[best] - timestep) { best = i }
        return steps[best]
    }
}

/// Element types the kernels take: the value passed as the ABI's dtype.
public protocol KernelElement {
    static var dtype: Int32 { get }
}

extension Float: KernelElement {
    public static var dtype: Int32 { Int32(CALIB_F32.rawValue) }
}

extension BFloat16: KernelElement {
    public static var dtype: Int32 { Int32(CALIB_BF16.rawValue) }
}

/// Where element (b, s, h, d) of a (batch, tokens, heads, head_dim) tensor lives: at
/// b·batch + s·token + h·head + d elements; head_dim is contiguous.
public struct Strides: Equatable, Sendable {
    public var batch: Int
    public var token: Int
    public var head: Int

    public init(batch: Int, token: Int, head: Int) {
        self.batch = batch
        self.token = token
        self.head = head
    }

    /// A packed (B, S, H, D) tensor, as diffusers holds Q, K, V before its transpose.
    public static func bshd(tokens: Int, heads: Int, headDim: Int) -> Strides {
        Strides(batch: tokens * heads * headDim, token: heads * headDim, head: headDim)
    }

    /// A packed (B, H, S, D) tensor.
    public static func bhsd(tokens: Int, heads: Int, headDim: Int) -> Strides {
        Strides(batch: heads * tokens * headDim, token: headDim, head: tokens * headDim)
    }

    /// Elements a buffer needs to hold every (b, s, h, d), or nil on overflow or negative strides.
    func span(batch b: Int, tokens: Int, heads: Int, headDim: Int) -> Int? {
        var last = headDim - 1
        for (stride, n) in [(batch, b), (token, tokens), (head, heads)] {
            guard stride >= 0 else { return nil }
            let (term, o1) = stride.multipliedReportingOverflow(by: n - 1)
            let (sum, o2) = last.addingReportingOverflow(term)
            guard !o1, !o2 else { return nil }
            last = sum
        }
        return last + 1
    }

    var c: [Int64] { [Int64(batch), Int64(token), Int64(head)] }
}

/// A set of compiled kernels. Calls may run concurrently.
public final class AttentionKernels: @unchecked Sendable {
    private let entry: calib_entry_points
    private let handle: UnsafeMutableRawPointer?
    public let info: KernelInfo

    /// Loads a shared library built from a `calibc compile --shared` output.
    public convenience init(libraryPath: String) throws {
        guard let h = dlopen(libraryPath, RTLD_NOW | RTLD_LOCAL) else {
            throw CalibError.library("cannot load \(libraryPath): \(String(cString: dlerror()))")
        }
        typealias EntryFn = @convention(c) () -> UnsafeRawPointer?
        guard let symbol = dlsym(h, "calib_get_entry_points"), let table = unsafeBitCast(symbol, to: EntryFn.self)() else {
            dlclose(h)
            throw CalibError.library("\(libraryPath) is not a calibc kernel library (no calib_get_entry_points)")
        }
        try self.init(entryPoints: table, handle: h)
    }

    /// A linked kernel set: `calib_get_entry_points()` of its generated target.
    public convenience init(entryPoints: UnsafeRawPointer) throws {
        try self.init(entryPoints: entryPoints, handle: nil)
    }

    private init(entryPoints: UnsafeRawPointer, handle: UnsafeMutableRawPointer?) throws {
        let version = entryPoints.load(as: Int32.self)
        guard version == CALIB_ABI_VERSION else {
            if let handle { dlclose(handle) }
            throw CalibError.library("kernels have C ABI version \(version); this runtime speaks \(CALIB_ABI_VERSION): recompile them with this calibc")
        }
        entry = entryPoints.load(as: calib_entry_points.self)
        self.handle = handle
        let i = entry.get_info()!.pointee
        info = KernelInfo(tokens: Int(i.tokens), headDim: Int(i.head_dim), block: Int(i.block), layers: Int(i.layers),
                          heads: Int(i.heads), steps: (0..<Int(i.step_count)).map { Int(i.steps[$0]) },
                          timesteps: (0..<Int(i.step_count)).map { i.timesteps[$0] }, plans: Int(i.plans),
                          model: String(cString: i.model), maskSHA256: String(cString: i.mask_sha256),
                          textTokens: Int(i.text_tokens), textFirst: i.text_first != 0)
    }

    deinit {
        if let handle { dlclose(handle) }
    }

    /// Throws unless these kernels were compiled from exactly the bytes of the masks file at `path`.
    public func requireSource(masksFile path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw CalibError.badArgument("cannot read \(path)") }
        let found = SHA256.hex(data)
        guard found == info.maskSHA256 else { throw CalibError.maskMismatch(file: path, expected: info.maskSHA256, found: found) }
    }

    /// Threads an OpenMP parallel region of these kernels runs on.
    public var teamSize: Int { Int(entry.team_size()) }

    /// The instruction set the kernels chose on this machine.
    public var isa: String { String(cString: entry.isa()!) }

    /// Every batch × head of (step, layer) in one call, each head over its own plan; q, k, v and
    /// out are (batch, tokens, heads, head_dim) tensors laid out as their strides say.
    /// `textLengths`: for kernels of a joint sequence with its text last, the valid text tokens of
    /// each batch element; the rest of its text is padding, which no softmax sees and whose
    /// output rows are zeros (calib_attention_joint).
    public func attentionLayer<T: KernelElement>(step: Int, layer: Int, batch: Int,
                                                 q: UnsafeBufferPointer<T>, k: UnsafeBufferPointer<T>, v: UnsafeBufferPointer<T>,
                                                 out: UnsafeMutableBufferPointer<T>, strides: (q: Strides, k: Strides, v: Strides, out: Strides),
                                                 textLengths: [Int32]? = nil) throws {
        if let textLengths {
            guard info.textTokens > 0, !info.textFirst else {
                throw CalibError.badArgument("text lengths need kernels of a sequence whose text comes last; these have \(info.textTokens) text tokens\(info.textFirst ? ", first" : "")")
            }
            guard textLengths.count == batch else {
                throw CalibError.badArgument("text lengths: expected \(batch) (one per batch element), got \(textLengths.count)")
            }
            if let bad = textLengths.first(where: { !(0...Int32(info.textTokens)).contains($0) }) { throw CalibError.badArgument("text lengths: \(bad) is outside 0...\(info.textTokens), the text tokens") }
        }
        try layerCall(step: step, layer: layer, dense: false, batch: batch, q, k, v, out, strides, textLengths: textLengths)
    }

    /// The same with every tile computed: the dense baseline.
    public func denseAttentionLayer<T: KernelElement>(batch: Int, q: UnsafeBufferPointer<T>, k: UnsafeBufferPointer<T>,
                                                      v: UnsafeBufferPointer<T>, out: UnsafeMutableBufferPointer<T>,
                                                      strides: (q: Strides, k: Strides, v: Strides, out: Strides)) throws {
        try layerCall(step: -1, layer: -1, dense: true, batch: batch, q, k, v, out, strides)
    }

    private func layerCall<T: KernelElement>(step: Int, layer: Int, dense: Bool, batch: Int, _ q: UnsafeBufferPointer<T>,
                                             _ k: UnsafeBufferPointer<T>, _ v: UnsafeBufferPointer<T>, _ out: UnsafeMutableBufferPointer<T>,
                                             _ strides: (q: Strides, k: Strides, v: Strides, out: Strides),
                                             textLengths: [Int32]? = nil) throws {
        let (n, h, d) = (info.tokens, info.heads, info.headDim)
        for (name, count, s) in [("q", q.count, strides.q), ("k", k.count, strides.k), ("v", v.count, strides.v), ("out", out.count, strides.out)] {
            guard let needed = s.span(batch: batch, tokens: n, heads: h, headDim: d) else {
                throw CalibError.badArgument("\(name) strides \(s) overflow or are negative")
            }
            guard count >= needed else { throw CalibError.badArgument("\(name) holds \(count) elements, needs \(needed) at strides \(s)") }
        }
        let (qs, ks, vs, os) = (strides.q.c, strides.k.c, strides.v.c, strides.out.c)
        let status: Int32
        if dense {
            status = entry.dense_attention_layer(T.dtype, q.baseAddress, k.baseAddress, v.baseAddress, out.baseAddress, Int64(batch),
                                                 Int64(n), Int64(h), Int64(d), qs, ks, vs, os)
        } else {
            guard let s = Int32(exactly: step), let l = Int32(exactly: layer) else { throw CalibError.noPlan(step: step, layer: layer, head: -1) }
            if let textLengths {
                status = entry.attention_joint(s, l, 0, T.dtype, q.baseAddress, k.baseAddress, v.baseAddress, out.baseAddress,
                                               Int64(batch), Int64(n), Int64(h), Int64(d), qs, ks, vs, os, textLengths)
            } else {
                status = entry.attention_layer(s, l, T.dtype, q.baseAddress, k.baseAddress, v.baseAddress, out.baseAddress, Int64(batch),
                                               Int64(n), Int64(h), Int64(d), qs, ks, vs, os)
            }
        }
        try check(status, tokens: n, headDim: d, step: step, layer: layer, head: -1)
    }

    /// One head's attention over the plan of (step, layer, head). Each buffer holds `tokens`
    /// rows of `headDim` values, `stride` values apart (default: packed).
    public func attention(step: Int, layer: Int, head: Int,
                          q: UnsafeBufferPointer<Float>, k: UnsafeBufferPointer<Float>, v: UnsafeBufferPointer<Float>,
                          out: UnsafeMutableBufferPointer<Float>, tokens: Int, headDim: Int, stride: Int? = nil) throws {
        let (s, l, h) = try ids(step, layer, head)
        try invoke(q, k, v, out, tokens: tokens, headDim: headDim, stride: stride, at: (step, layer, head)) {
            entry.attention(s, l, h, $0, $1, $2, $3, Int64(tokens), Int64(headDim), $4, $4, $4, $4)
        }
    }

    /// The same with bfloat16 inputs.
    public func attention(step: Int, layer: Int, head: Int,
                          q: UnsafeBufferPointer<BFloat16>, k: UnsafeBufferPointer<BFloat16>, v: UnsafeBufferPointer<BFloat16>,
                          out: UnsafeMutableBufferPointer<Float>, tokens: Int, headDim: Int, stride: Int? = nil) throws {
        let (s, l, h) = try ids(step, layer, head)
        try invoke(q, k, v, out, tokens: tokens, headDim: headDim, stride: stride, at: (step, layer, head)) {
            entry.attention_bf16(s, l, h, bits($0), bits($1), bits($2), $3, Int64(tokens), Int64(headDim), $4, $4, $4, $4)
        }
    }

    /// The same kernel computing every tile: the dense baseline.
    public func denseAttention(q: UnsafeBufferPointer<Float>, k: UnsafeBufferPointer<Float>, v: UnsafeBufferPointer<Float>,
                               out: UnsafeMutableBufferPointer<Float>, tokens: Int, headDim: Int, stride: Int? = nil) throws {
        try invoke(q, k, v, out, tokens: tokens, headDim: headDim, stride: stride, at: (-1, -1, -1)) {
            entry.dense_attention($0, $1, $2, $3, Int64(tokens), Int64(headDim), $4, $4, $4, $4)
        }
    }

    public func denseAttention(q: UnsafeBufferPointer<BFloat16>, k: UnsafeBufferPointer<BFloat16>, v: UnsafeBufferPointer<BFloat16>,
                               out: UnsafeMutableBufferPointer<Float>, tokens: Int, headDim: Int, stride: Int? = nil) throws {
        try invoke(q, k, v, out, tokens: tokens, headDim: headDim, stride: stride, at: (-1, -1, -1)) {
            entry.dense_attention_bf16(bits($0), bits($1), bits($2), $3, Int64(tokens), Int64(headDim), $4, $4, $4, $4)
        }
    }

    private func ids(_ step: Int, _ layer: Int, _ head: Int) throws -> (Int32, Int32, Int32) {
        guard let s = Int32(exactly: step), let l = Int32(exactly: layer), let h = Int32(exactly: head) else {
            throw CalibError.noPlan(step: step, layer: layer, head: head)
        }
        return (s, l, h)
    }

    private func bits(_ p: UnsafePointer<BFloat16>?) -> UnsafePointer<UInt16>? {
        p.map { UnsafeRawPointer($0).assumingMemoryBound(to: UInt16.self) }
    }

    private func invoke<T>(_ q: UnsafeBufferPointer<T>, _ k: UnsafeBufferPointer<T>, _ v: UnsafeBufferPointer<T>,
                           _ out: UnsafeMutableBufferPointer<Float>, tokens: Int, headDim: Int, stride: Int?,
                           at: (step: Int, layer: Int, head: Int),
                           _ kernel: (UnsafePointer<T>?, UnsafePointer<T>?, UnsafePointer<T>?, UnsafeMutablePointer<Float>?, Int64) -> Int32) throws {
        let st = stride ?? headDim
        try checkBuffers(counts: [("q", q.count), ("k", k.count), ("v", v.count), ("out", out.count)], tokens: tokens, headDim: headDim, stride: st)
        let status = kernel(q.baseAddress, k.baseAddress, v.baseAddress, out.baseAddress, Int64(st))
        try check(status, tokens: tokens, headDim: headDim, step: at.step, layer: at.layer, head: at.head)
    }

    /// Buffer sizes are checked here because the C side sees only pointers.
    private func checkBuffers(counts: [(String, Int)], tokens: Int, headDim: Int, stride: Int) throws {
        guard tokens == info.tokens, headDim == info.headDim else {
            throw CalibError.shapeMismatch(tokens: tokens, headDim: headDim, expectedTokens: info.tokens, expectedHeadDim: info.headDim)
        }
        guard stride >= headDim else { throw CalibError.badArgument("stride \(stride) is smaller than head_dim \(headDim)") }
        let (rows, o1) = (tokens - 1).multipliedReportingOverflow(by: stride)
        guard !o1 else { throw CalibError.badArgument("stride \(stride) overflows") }
        let needed = rows + headDim
        for (name, count) in counts where count < needed {
            throw CalibError.badArgument("\(name) holds \(count) floats, needs \(needed) for \(tokens) tokens at stride \(stride)")
        }
    }

    private func check(_ status: Int32, tokens: Int, headDim: Int, step: Int, layer: Int, head: Int) throws {
        switch Int(status) {
        case Int(CALIB_OK.rawValue): return
        case Int(CALIB_ERR_SHAPE.rawValue):
            throw CalibError.shapeMismatch(tokens: tokens, headDim: headDim, expectedTokens: info.tokens, expectedHeadDim: info.headDim)
        case Int(CALIB_ERR_NO_PLAN.rawValue): throw CalibError.noPlan(step: step, layer: layer, head: head)
        case Int(CALIB_ERR_NO_MEMORY.rawValue): throw CalibError.outOfMemory
        default: throw CalibError.badArgument("kernel returned status \(status)")
        }
    }
}
