import CalibSafetensors
import Foundation
import XCTest

/// Builds a file by hand, independent of SafetensorsWriter: header JSON, then raw bytes.
private func file(header: String, data: [UInt8], declaredLength: UInt64? = nil) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("st-\(UUID().uuidString).safetensors").path
    let h = Array(header.utf8)
    let n = declaredLength ?? UInt64(h.count)
    var bytes = (0..<8).map { UInt8(truncatingIfNeeded: n >> (8 * UInt64($0))) }
    bytes += h + data
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return path
}

final class SafetensorsTests: XCTestCase {
    func testReadsHandMadeF32BF16AndF16() throws {
        // 1.0, -2.5 as F32; 1.0, -2.0 as BF16 (0x3F80, 0xC000); 1.0, 0.5 as F16 (0x3C00, 0x3800).
        let data: [UInt8] = [0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x20, 0xC0,
                             0x80, 0x3F, 0x00, 0xC0,
                             0x00, 0x3C, 0x00, 0x38]
        let header = """
            {"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[1,2],"data_offsets":[8,12]},\
            "c":{"dtype":"F16","shape":[2],"data_offsets":[12,16]},"__metadata__":{"model":"m"}}
            """
        let f = try SafetensorsFile(path: try file(header: header, data: data))
        XCTAssertEqual(try f.floats("a"), [1.0, -2.5])
        XCTAssertEqual(try f.floats("b"), [1.0, -2.0])
        XCTAssertEqual(try f.floats("c"), [1.0, 0.5])
        XCTAssertEqual(try f.floats("c", elements: 1..<2), [0.5])
        XCTAssertEqual(f.tensors["b"]?.shape, [1, 2])
        XCTAssertEqual(f.metadata, ["model": "m"])
    }

    func testWriterRoundTripsEveryDType() throws {
        var rng = SystemRandomNumberGenerator()
        let values = (0..<100).map { _ in Float.random(in: -4...4, using: &rng) }
        var w = SafetensorsWriter()
        w.metadata = ["k": "v \"quoted\""]
        for dtype in DType.allCases where dtype.isFloat { w.add(dtype.rawValue, values, shape: [10, 10], as: dtype) }
        w.add("U8", [0, 1, 242, 255] as [UInt8], shape: [2, 2])
        w.add("U16", [0, 1, 0x1234, 65535] as [UInt16], shape: [4])
        w.add("empty", [UInt16](), shape: [0])
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("rt-\(UUID().uuidString).safetensors").path
        try w.write(to: path)
        let f = try SafetensorsFile(path: path)
        XCTAssertEqual(f.metadata["k"], "v \"quoted\"")
        XCTAssertEqual(try f.floats("F32"), values)
        for (i, v) in try f.floats("BF16").enumerated() { XCTAssertEqual(v, values[i], accuracy: abs(values[i]) / 128) }
        for (i, v) in try f.floats("F16").enumerated() { XCTAssertEqual(v, values[i], accuracy: abs(values[i]) / 1024) }
        XCTAssertEqual(try f.bytes("U8"), [0, 1, 242, 255])
        XCTAssertEqual(try f.floats("U8"), [0, 1, 242, 255])
        XCTAssertEqual(try f.uint16s("U16"), [0, 1, 0x1234, 65535])
        XCTAssertEqual(try f.bytes("U16"), [0, 0, 1, 0, 0x34, 0x12, 0xff, 0xff])  // little-endian
        XCTAssertEqual(f.tensors["empty"]?.dtype, .u16)
        XCTAssertEqual(f.tensors["empty"]?.shape, [0])
        XCTAssertEqual(try f.uint16s("empty"), [])
    }

    func testRejectsMalformedFiles() throws {
        func message(_ path: String) -> String {
            do {
                _ = try SafetensorsFile(path: path)
                return "accepted"
            } catch { return "\(error)".replacingOccurrences(of: path + ": ", with: "") }
        }
        let ok = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        XCTAssertEqual(message(try file(header: ok, data: [UInt8](repeating: 0, count: 8), declaredLength: 1000)),
                       "header length 1000 runs past the end of the 70-byte file")
        XCTAssertEqual(message(try file(header: ok, data: [UInt8](repeating: 0, count: 4))),
                       "tensor a: data_offsets [0, 8] lie outside the 4-byte data section")
        XCTAssertEqual(message(try file(header: #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8))),
                       "tensor a: shape [3] of F32 needs 12 bytes, data_offsets give 8")
        XCTAssertEqual(message(try file(header: #"{"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8))),
                       "tensor a: unsupported dtype I64 (expected F32, F16, BF16, U8 or U16)")
        XCTAssertEqual(message(try file(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#, data: [UInt8](repeating: 0, count: 8))),
                       "tensor a: data_offsets [8, 0] lie outside the 8-byte data section")
        XCTAssertEqual(message(try file(header: #"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, data: [])),
                       "tensor a: shape must hold non-negative integers")
        XCTAssertEqual(message(try file(header: #"{"a": [1, 2}"#, data: [])),
                       "header is not valid JSON (line 1, column 12): expected ',' or ']'")
        let zeros = [UInt8](repeating: 0, count: 8)
        XCTAssertEqual(message(try file(header: #"[1]"#, data: zeros)), "header must be a JSON object")
        XCTAssertEqual(message(try file(header: #"{"a": 1}"#, data: zeros)), "tensor a: expected an object")
        XCTAssertEqual(message(try file(header: #"{"a": {"shape": [2], "data_offsets": [0, 8]}}"#, data: zeros)), "tensor a: missing dtype")
        XCTAssertEqual(message(try file(header: #"{"a": {"dtype": "F32", "data_offsets": [0, 8]}}"#, data: zeros)), "tensor a: missing shape")
        XCTAssertEqual(message(try file(header: #"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0]}}"#, data: zeros)),
                       "tensor a: data_offsets must be [begin, end]")
        XCTAssertEqual(message(try file(header: #"{"__metadata__": [1]}"#, data: zeros)), "__metadata__ must be an object of strings")
        XCTAssertEqual(message(try file(header: #"{"__metadata__": {"k": 1}}"#, data: zeros)), "__metadata__.k must be a string")
        // Sizes from the file are multiplied with overflow checks (this one trapped with SIGILL).
        XCTAssertEqual(message(try file(header: #"{"a":{"dtype":"BF16","shape":[4294967296,1073741824,1],"data_offsets":[0,0]}}"#, data: zeros)),
                       "tensor a: shape [4294967296, 1073741824, 1] of BF16 needs more than 9223372036854775807 bytes, data_offsets give 0")
        XCTAssertEqual(message(try file(header: #"{"a":{"dtype":"F32","shape":[1099511627775,1099511627775,1099511627775],"data_offsets":[0,8]}}"#, data: zeros)),
                       "tensor a: shape [1099511627775, 1099511627775, 1099511627775] of F32 needs more than 9223372036854775807 bytes, data_offsets give 8")
        XCTAssertEqual(message(try file(header: #"{"a":{"dtype":"F32","shape":[2305843009213693952],"data_offsets":[0,8]}}"#, data: zeros)),
                       "tensor a: shape must hold non-negative integers")
        // Tensors may not share bytes.
        XCTAssertEqual(message(try file(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                                        data: [UInt8](repeating: 0, count: 12))),
                       "tensors a and b overlap: data_offsets [0, 8] and [4, 12]")
        XCTAssertEqual(message(try file(header: #"{"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}}"#,
                                        data: zeros)),
                       "tensors a and b overlap: data_offsets [0, 8] and [0, 8]")
        let short = FileManager.default.temporaryDirectory.appendingPathComponent("short-\(UUID().uuidString)").path
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: short))
        XCTAssertEqual(message(short), "file is 3 bytes, shorter than the 8-byte header length")
    }

    func testEmptyTensorsWithHugeDimensionsAreZeroElements() throws {
        let header = #"{"a":{"dtype":"F32","shape":[1099511627775,0,1099511627775],"data_offsets":[0,0]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        let f = try SafetensorsFile(path: try file(header: header, data: [0, 0, 0x80, 0x3F]))
        XCTAssertEqual(f.tensors["a"]?.count, 0)
        XCTAssertEqual(try f.floats("a"), [])
        XCTAssertEqual(try f.floats("b"), [1])
    }
}
