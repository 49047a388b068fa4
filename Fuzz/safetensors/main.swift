// libFuzzer target: any bytes as a safetensors file; every tensor it accepts must read back.

import CalibSafetensors
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafetensors(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard let file = try? SafetensorsFile(data: Data(bytes: data, count: size), path: "fuzz.safetensors") else { return 0 }
    for (name, info) in file.tensors where info.count <= 1 << 16 {
        guard let values = try? file.floats(name), values.count == info.count else { fatalError("accepted tensor \(name) did not read back") }
    }
    return 0
}
