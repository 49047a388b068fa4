// libFuzzer target: calibrate's per-head decisions on adversarial block masses (zeros,
// negatives, huge and tiny values, ties, rows that repeat) and options at the ends of their
// ranges. Whatever it decides must be a valid plan that masks.json can carry and compile reads.

import CalibCalibrate
import CalibFrontend
import CalibIR
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCalibrate(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    guard bytes.count >= 6 else { return 0 }
    // Header: blocks, inputs, selection, threshold, stability drop, reuse tolerance.
    let blocks = 1 + Int(bytes[0] % 12)
    let inputs = 1 + Int(bytes[1] % 3)
    let fraction = { (b: UInt8) -> Double in b < 6 ? [0, 1, 0.5, 0.95, 1e-9, 1 - 1e-9][Int(b)] : Double(b) / 255 }
    var options = CalibrationOptions()
    options.selection = bytes[2] & 1 == 0 ? .mass(fraction(bytes[3])) : .density(fraction(bytes[3]))
    options.stabilityDrop = fraction(bytes[4])
    options.reuseTolerance = fraction(bytes[5])
    let partialLast = bytes[2] & 2 != 0 && blocks > 1
    // Masses: 16-bit codes over a small alphabet of adversarial values, so ties and repeats are common.
    let alphabet: [Float] = [0, 1, -1, 0.5, 0.25, 1e-30, -1e-30, .leastNonzeroMagnitude, .greatestFiniteMagnitude,
                             -.greatestFiniteMagnitude, 1e30, 3, 0.001, 0.999, 2, 1e-7]
    var at = 6
    var masses: [[Float]] = []
    for _ in 0..<inputs {
        var m = [Float](repeating: 0, count: blocks * blocks)
        for i in m.indices where at < bytes.count {
            let code = bytes[at]
            m[i] = code < 128 ? alphabet[Int(code) % alphabet.count] : Float(code - 128) / 127
            at += 1
        }
        masses.append(m)
    }
    let (plan, report) = Calibrator.decide(masses: masses, blocks: blocks, partialLast: partialLast, options: options)
    guard report.density >= 0, report.density <= 1 else { fatalError("density \(report.density)") }
    // One block per side more when the last is partial: tokens = blocks × 4 - 1.
    let block = 4
    let shape = Shape(tokens: partialLast ? blocks * block - 1 : blocks * block, headDim: 8, block: block, layers: 1, heads: 1, steps: [0])
    var named = plan
    named.name = "p"
    let program = Program(model: "fuzz", shape: shape, plans: [named], dispatch: [0], sourceHash: "")
    do { try program.verify() } catch { fatalError("invalid plan: \(error)") }
    let text = MaskWriter.json(program, layout: nil)
    guard text.contains("\"p\"") || text.contains("\"dense\"") else { fatalError("the plan is missing from masks.json") }
    // The frontend costs tens of ms a call here (debug, ASan, two threads); verify() checks the same rules on
    // the IR, so the full masks.json round trip runs on one input in 32.
    if bytes[1] >> 3 == 0 {
        do { _ = try Frontend.parse(Array(text.utf8), file: "fuzz.json") } catch { fatalError("compile would refuse: \(error)") }
    }
    return 0
}
