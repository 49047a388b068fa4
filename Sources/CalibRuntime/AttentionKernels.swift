// Swift over the generated C ABI: either the kernels linked into this package (the
// CalibKernels target) or a shared library built by `calibc` and loaded at run time.

import CalibIR
import CalibKernels
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
        case let .noPlan(s, l, h): return "no plan for step \(s), layer \(l), head \(h)"
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
    public var plans: Int
    public var threads: Int
    public var model: String
    public var maskSHA256: String
}

/// A set of compiled kernels. Calls on different heads may run concurrently.
public final class AttentionKernels: @unchecked Sendable {
    typealias AttentionFn = @convention(c) (Int32, Int32, Int32, UnsafePointer<Float>?, UnsafePointer<Float>?,
                                            UnsafePointer<Float>?, UnsafeMutablePointer<Float>?,
                                            Int64, Int64, Int64, Int64, Int64, Int64) -> Int32
    typealias AttentionBF16Fn = @convention(c) (Int32, Int32, Int32, UnsafePointer<UInt16>?, UnsafePointer<UInt16>?,
                                                UnsafePointer<UInt16>?, UnsafeMutablePointer<Float>?,
                                                Int64, Int64, Int64, Int64, Int64, Int64) -> Int32
    typealias DenseFn = @convention(c) (UnsafePointer<Float>?, UnsafePointer<Float>?, UnsafePointer<Float>?,
                                        UnsafeMutablePointer<Float>?, Int64, Int64, Int64, Int64, Int64, Int64) -> Int32
    typealias DenseBF16Fn = @convention(c) (UnsafePointer<UInt16>?, UnsafePointer<UInt16>?, UnsafePointer<UInt16>?,
                                            UnsafeMutablePointer<Float>?, Int64, Int64, Int64, Int64, Int64, Int64) -> Int32
    typealias InfoFn = @convention(c) () -> UnsafePointer<calib_info>?
    typealias TeamFn = @convention(c) () -> Int32

    private let attentionFn: AttentionFn
    private let attentionBF16Fn: AttentionBF16Fn
    private let denseFn: DenseFn
    private let denseBF16Fn: DenseBF16Fn
    private let teamFn: TeamFn
    private let handle: UnsafeMutableRawPointer?
    public let info: KernelInfo

    /// The kernels compiled into this package from the bundled example (generated/CalibKernels).
    public static let linked = AttentionKernels(attention: calib_attention, attentionBF16: calib_attention_bf16,
                                                dense: calib_dense_attention, denseBF16: calib_dense_attention_bf16,
                                                info: calib_get_info, team: calib_team_size, handle: nil)

    /// Loads a shared library built from a `calibc compile` output.
    public convenience init(libraryPath: String) throws {
        guard let h = dlopen(libraryPath, RTLD_NOW | RTLD_LOCAL) else {
            throw CalibError.library("cannot load \(libraryPath): \(String(cString: dlerror()))")
        }
        func symbol<T>(_ name: String, _: T.Type) throws -> T {
            guard let p = dlsym(h, name) else { throw CalibError.library("\(libraryPath) has no symbol \(name)") }
            return unsafeBitCast(p, to: T.self)
        }
        self.init(attention: try symbol("calib_attention", AttentionFn.self),
                  attentionBF16: try symbol("calib_attention_bf16", AttentionBF16Fn.self),
                  dense: try symbol("calib_dense_attention", DenseFn.self),
                  denseBF16: try symbol("calib_dense_attention_bf16", DenseBF16Fn.self),
                  info: try symbol("calib_get_info", InfoFn.self), team: try symbol("calib_team_size", TeamFn.self), handle: h)
    }

    private init(attention: AttentionFn, attentionBF16: AttentionBF16Fn, dense: DenseFn, denseBF16: DenseBF16Fn,
                 info: InfoFn, team: TeamFn, handle: UnsafeMutableRawPointer?) {
        attentionFn = attention
        attentionBF16Fn = attentionBF16
        denseFn = dense
        denseBF16Fn = denseBF16
        teamFn = team
        self.handle = handle
        let i = info()!.pointee
        self.info = KernelInfo(tokens: Int(i.tokens), headDim: Int(i.head_dim), block: Int(i.block), layers: Int(i.layers),
                               heads: Int(i.heads), steps: (0..<Int(i.step_count)).map { Int(i.steps[$0]) },
                               plans: Int(i.plans), threads: Int(i.threads),
                               model: String(cString: i.model), maskSHA256: String(cString: i.mask_sha256))
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
    public var teamSize: Int { Int(teamFn()) }

    /// One head's attention over the plan of (step, layer, head). Each buffer holds `tokens`
    /// rows of `headDim` values, `stride` values apart (default: packed).
    public func attention(step: Int, layer: Int, head: Int,
                          q: UnsafeBufferPointer<Float>, k: UnsafeBufferPointer<Float>, v: UnsafeBufferPointer<Float>,
                          out: UnsafeMutableBufferPointer<Float>, tokens: Int, headDim: Int, stride: Int? = nil) throws {
        let (s, l, h) = try ids(step, layer, head)
        try invoke(q, k, v, out, tokens: tokens, headDim: headDim, stride: stride, at: (step, layer, head)) {
            attentionFn(s, l, h, $0, $1, $2, $3, Int64(tokens), Int64(headDim), $4, $4, $4, $4)
        }
    }

    /// The same with bfloat16 inputs.
    public func attention(step: Int, layer: Int, head: Int,
                          q: UnsafeBufferPointer<BFloat16>, k: UnsafeBufferPointer<BFloat16>, v: UnsafeBufferPointer<BFloat16>,
                          out: UnsafeMutableBufferPointer<Float>, tokens: Int, headDim: Int, stride: Int? = nil) throws {
        let (s, l, h) = try ids(step, layer, head)
        try invoke(q, k, v, out, tokens: tokens, headDim: headDim, stride: stride, at: (step, layer, head)) {
            attentionBF16Fn(s, l, h, bits($0), bits($1), bits($2), $3, Int64(tokens), Int64(headDim), $4, $4, $4, $4)
        }
    }

    /// The same kernel computing every tile: the dense baseline.
    public func denseAttention(q: UnsafeBufferPointer<Float>, k: UnsafeBufferPointer<Float>, v: UnsafeBufferPointer<Float>,
                               out: UnsafeMutableBufferPointer<Float>, tokens: Int, headDim: Int, stride: Int? = nil) throws {
        try invoke(q, k, v, out, tokens: tokens, headDim: headDim, stride: stride, at: (-1, -1, -1)) {
            denseFn($0, $1, $2, $3, Int64(tokens), Int64(headDim), $4, $4, $4, $4)
        }
    }

    public func denseAttention(q: UnsafeBufferPointer<BFloat16>, k: UnsafeBufferPointer<BFloat16>, v: UnsafeBufferPointer<BFloat16>,
                               out: UnsafeMutableBufferPointer<Float>, tokens: Int, headDim: Int, stride: Int? = nil) throws {
        try invoke(q, k, v, out, tokens: tokens, headDim: headDim, stride: stride, at: (-1, -1, -1)) {
            denseBF16Fn(bits($0), bits($1), bits($2), $3, Int64(tokens), Int64(headDim), $4, $4, $4, $4)
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
        let needed = (tokens - 1) * stride + headDim
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
