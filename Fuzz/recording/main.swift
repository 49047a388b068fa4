// libFuzzer target: any bytes as a recording (docs/recordings.md). The size arithmetic of the
// safetensors reader and of Recording (shapes, offsets, steps, layers, metadata sizes) must
// refuse what does not fit with an error, never trap; every head of a recording it accepts
// must read back with the size the shape promises, and small ones go through block mass.

import CalibCalibrate
import CalibSafetensors
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRecording(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard let file = try? SafetensorsFile(data: Data(bytes: data, count: size), path: "fuzz.safetensors"),
          let r = try? Recording(file: file) else { return 0 }
    guard r.heads >= 1, r.tokens >= 1, r.headDim >= 1, r.layers >= 1, !r.steps.isEmpty else { fatalError("accepted an empty shape") }
    let kind = r.massBlock == nil ? "q" : "mass"
    let step = r.steps[0]
    guard let info = file.tensors["step\(step).layer0.\(kind)"] else { fatalError("accepted a recording without step \(step) layer 0") }
    guard info.count <= 1 << 16 else { return 0 }
    for head in 0..<r.heads {
        guard let values = try? r.head(kind, step: step, layer: 0, head: head) else { continue }  // non-finite values
        guard values.count * r.heads == info.count else { fatalError("head \(head) read \(values.count) of \(info.count) values") }
    }
    var options = CalibrationOptions()
    options.block = r.massBlock ?? max(1, r.tokens / 4)
    if let c = try? Calibrator.run(calibration: [r], holdout: [], options: options) {
        guard (try? c.program.verify()) != nil else { fatalError("calibration gave an invalid program") }
    }
    return 0
}
