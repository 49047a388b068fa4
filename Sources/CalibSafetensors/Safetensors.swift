// The safetensors container (https://huggingface.co/docs/safetensors): an 8-byte
// little-endian header length, a JSON header naming each tensor's dtype, shape and byte
// range, then raw little-endian data. Read through a memory map, converted to Float on demand;
// the integer dtypes (U8, U16) carry calibration states' packed codes and input indices.

import CalibSupport
import CalibJSON
import Foundation

public enum DType: String, Sendable, CaseIterable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16", u8 = "U8", u16 = "U16"

    public var size: Int {
        switch self {
        case .f32: return 4
        case .f16, .bf16, .u16: return 2
        case .u8: return 1
        }
    }

    public var isFloat: Bool { self == .f32 || self == .f16 || self == .bf16 }
}

public struct SafetensorsError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var message: String
    public var description: String { "\(file): \(message)" }
}

public struct TensorInfo: Equatable, Sendable {
    public var dtype: DType
    public var shape: [Int]
    /// Byte range within the data section.
    public var range: Range<Int>

    /// Elements; the reader has checked that the bytes fit in `Int`, and a zero dimension
    /// makes the product zero before any other dimension can overflow it.
    public var count: Int { shape.contains(0) ? 0 : shape.reduce(1, *) }
}

public final class SafetensorsFile: @unchecked Sendable {
    public let path: String
    public let tensors: [String: TensorInfo]
    public let metadata: [String: String]
    private let data: Data
    private let dataStart: Int

    /// Refuses headers larger than this before reading them (the format's own reference limit).
    static let maxHeader = 100_000_000

    public convenience init(path: String) throws {
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) else {
            throw SafetensorsError(file: path, message: "cannot read the file")
        }
        try self.init(data: data, path: path)
    }

    /// `path` names the bytes in errors.
    public init(data: Data, path: String) throws {
        self.path = path
        func fail(_ m: String) -> SafetensorsError { SafetensorsError(file: path, message: m) }
        self.data = data
        guard data.count >= 8 else { throw fail("file is \(data.count) bytes, shorter than the 8-byte header length") }
        let headerLength = data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard headerLength <= UInt64(Self.maxHeader), Int(headerLength) <= data.count - 8 else {
            throw fail("header length \(headerLength) runs past the end of the \(data.count)-byte file")
        }
        dataStart = 8 + Int(headerLength)
        let json: JSON
        do {
            json = try JSONReader.parse(Array(data[8..<dataStart]))
        } catch let e as JSONSyntaxError {
            throw fail("header is not valid JSON (line \(e.line), column \(e.column)): \(e.message)")
        }
        guard case .object(let members) = json else { throw fail("header must be a JSON object") }
        var tensors: [String: TensorInfo] = [:]
        var metadata: [String: String] = [:]
        let dataLength = data.count - dataStart
        for (name, value) in members {
            if name == "__metadata__" {
                guard case .object(let entries) = value else { throw fail("__metadata__ must be an object of strings") }
                for (k, v) in entries {
                    guard case .string(let s) = v else { throw fail("__metadata__.\(k) must be a string") }
                    metadata[k] = s
                }
                continue
            }
            guard case .object(let fields) = value else { throw fail("tensor \(name): expected an object") }
            func field(_ key: String) -> JSON? { fields.first { $0.key == key }?.value }
            guard case .string(let dt)? = field("dtype") else { throw fail("tensor \(name): missing dtype") }
            guard let dtype = DType(rawValue: dt) else {
                throw fail("tensor \(name): unsupported dtype \(dt) (expected F32, F16, BF16, U8 or U16)")
            }
            guard let dims = field("shape")?.elements else { throw fail("tensor \(name): missing shape") }
            var shape: [Int] = []
            for d in dims {
                guard case .number(_, let n?) = d, n >= 0, n < 1 << 40 else { throw fail("tensor \(name): shape must hold non-negative integers") }
                shape.append(n)
            }
            guard let offsets = field("data_offsets")?.elements, offsets.count == 2,
                  case .number(_, let begin?) = offsets[0], case .number(_, let end?) = offsets[1] else {
                throw fail("tensor \(name): data_offsets must be [begin, end]")
            }
            guard begin >= 0, begin <= end, end <= dataLength else {
                throw fail("tensor \(name): data_offsets [\(begin), \(end)] lie outside the \(dataLength)-byte data section")
            }
            // Sizes come from the file: multiplied with overflow checks, never trusted to fit.
            guard let bytes = Self.byteCount(shape: shape, elementSize: dtype.size) else {
                throw fail("tensor \(name): shape \(shape) of \(dtype.rawValue) needs more than \(Int.max) bytes, data_offsets give \(end - begin)")
            }
            guard bytes == end - begin else {
                throw fail("tensor \(name): shape \(shape) of \(dtype.rawValue) needs \(bytes) bytes, data_offsets give \(end - begin)")
            }
            tensors[name] = TensorInfo(dtype: dtype, shape: shape, range: begin..<end)
        }
        // Two tensors may not share bytes (the format requires disjoint ranges; a writer that
        // overlaps them is broken or hostile). Empty ranges share nothing.
        let ordered = tensors.filter { !$0.value.range.isEmpty }.sorted { ($0.value.range.lowerBound, $0.key) < ($1.value.range.lowerBound, $1.key) }
        for (a, b) in zip(ordered, ordered.dropFirst()) where b.value.range.lowerBound < a.value.range.upperBound {
            throw fail("tensors \(a.key) and \(b.key) overlap: data_offsets [\(a.value.range.lowerBound), \(a.value.range.upperBound)] and [\(b.value.range.lowerBound), \(b.value.range.upperBound)]")
        }
        self.tensors = tensors
        self.metadata = metadata
    }

    /// The bytes of a tensor of `shape`, or nil when the product overflows `Int`.
    public static func byteCount(shape: [Int], elementSize: Int) -> Int? {
        if shape.contains(0) { return 0 }
        var total = elementSize
        for d in shape {
            guard d >= 0 else { return nil }
            let (m, overflow) = total.multipliedReportingOverflow(by: d)
            if overflow { return nil }
            total = m
        }
        return total
    }

    /// Elements `range` (in elements, default all) of a tensor as Float.
    public func floats(_ name: String, elements: Range<Int>? = nil) throws -> [Float] {
        guard let t = tensors[name] else { throw SafetensorsError(file: path, message: "no tensor named \(name)") }
        let r = elements ?? 0..<t.count
        precondition(r.lowerBound >= 0 && r.upperBound <= t.count)
        let start = dataStart + t.range.lowerBound + r.lowerBound * t.dtype.size
        return data.withUnsafeBytes { raw in
            let base = raw.baseAddress!.advanced(by: start)
            switch t.dtype {
            case .f32:
                return (0..<r.count).map { Float(bitPattern: UInt32(littleEndian: base.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
            case .bf16:
                return (0..<r.count).map { BFloat16(bits: UInt16(littleEndian: base.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self))).float }
            case .f16:
                return (0..<r.count).map { Float(Float16(bitPattern: UInt16(littleEndian: base.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self)))) }
            case .u8:
                return (0..<r.count).map { Float(base.load(fromByteOffset: $0, as: UInt8.self)) }
            case .u16:
                return (0..<r.count).map { Float(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self))) }
            }
        }
    }

    /// A tensor's raw little-endian bytes, whatever its dtype.
    public func bytes(_ name: String) throws -> [UInt8] {
        guard let t = tensors[name] else { throw SafetensorsError(file: path, message: "no tensor named \(name)") }
        return [UInt8](data[(data.startIndex + dataStart + t.range.lowerBound)..<(data.startIndex + dataStart + t.range.upperBound)])
    }

    /// A U16 tensor's values.
    public func uint16s(_ name: String) throws -> [UInt16] {
        guard let t = tensors[name] else { throw SafetensorsError(file: path, message: "no tensor named \(name)") }
        precondition(t.dtype == .u16, "uint16s reads U16 tensors")
        let raw = try bytes(name)
        return (0..<t.count).map { UInt16(raw[2 * $0]) | UInt16(raw[2 * $0 + 1]) << 8 }
    }
}

/// Writes tensors in the order given, so the same tensors give the same bytes.
public struct SafetensorsWriter {
    private var entries: [(name: String, dtype: DType, shape: [Int], bytes: [UInt8])] = []
    public var metadata: [String: String] = [:]

    public init() {}

    /// Float values, stored as a float dtype.
    public mutating func add(_ name: String, _ values: [Float], shape: [Int], as dtype: DType) {
        precondition(shape.reduce(1, *) == values.count && dtype.isFloat)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(values.count * dtype.size)
        for v in values {
            switch dtype {
            case .f32:
                let b = v.bitPattern
                bytes += [UInt8(b & 0xff), UInt8(b >> 8 & 0xff), UInt8(b >> 16 & 0xff), UInt8(b >> 24)]
            case .bf16:
                let b = BFloat16(v).bits
                bytes += [UInt8(b & 0xff), UInt8(b >> 8)]
            case .f16:
                let b = Float16(v).bitPattern
                bytes += [UInt8(b & 0xff), UInt8(b >> 8)]
            case .u8, .u16:
                preconditionFailure("integer dtypes are added as integers")
            }
        }
        entries.append((name, dtype, shape, bytes))
    }

    public mutating func add(_ name: String, _ values: [UInt8], shape: [Int]) {
        precondition(shape.reduce(1, *) == values.count)
        entries.append((name, .u8, shape, values))
    }

    public mutating func add(_ name: String, _ values: [UInt16], shape: [Int]) {
        precondition(shape.reduce(1, *) == values.count)
        entries.append((name, .u16, shape, values.flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] }))
    }

    /// Raw little-endian bytes of any dtype (what `SafetensorsFile.bytes` reads back).
    public mutating func add(_ name: String, bytes: [UInt8], shape: [Int], dtype: DType) {
        precondition(SafetensorsFile.byteCount(shape: shape, elementSize: dtype.size) == bytes.count)
        entries.append((name, dtype, shape, bytes))
    }

    public func write(to path: String) throws {
        var header = "{"
        if !metadata.isEmpty {
            header += "\"__metadata__\":{" + metadata.keys.sorted().map { "\(jsonQuoted($0)):\(jsonQuoted(metadata[$0]!))" }.joined(separator: ",") + "},"
        }
        var offset = 0
        header += entries.map { e in
            defer { offset += e.bytes.count }
            return "\(jsonQuoted(e.name)):{\"dtype\":\"\(e.dtype.rawValue)\",\"shape\":[\(e.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + e.bytes.count)]}"
        }.joined(separator: ",")
        header += "}"
        while (header.utf8.count + 8) % 8 != 0 { header += " " }  // data starts 8-byte aligned
        var out = Data()
        let n = UInt64(header.utf8.count)
        out.append(contentsOf: (0..<8).map { UInt8(truncatingIfNeeded: n >> (8 * UInt64($0))) })
        out.append(contentsOf: Array(header.utf8))
        for e in entries { out.append(contentsOf: e.bytes) }
        try out.write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}
