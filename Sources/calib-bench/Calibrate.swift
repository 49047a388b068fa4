// `calib-bench calibrate`: throughput, peak memory and the sweeps behind docs/calibration.md.

import CalibCalibrate
import CalibIR
import CalibSynth
import Foundation

func benchCalibrate() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("calib-bench-\(getpid())").path
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let config = SynthConfig()
    var paths: [String] = []
    let synthTime = try seconds { paths = try Synth.write(config, prompts: 3, seed: 1, to: dir) }
    let recordings = try paths.map(Recording.init(path:))
    let (calibration, holdout) = (Array(recordings[0..<2]), [recordings[2]])
    print("synthetic recordings: \(config.frames)×\(config.height)×\(config.width) = \(config.tokens) tokens, head_dim \(config.headDim), "
          + "\(config.layers) layers × \(config.heads) heads × \(config.steps.count) steps, 3 prompts, written in \(String(format: "%.1f", synthTime)) s\n")

    let heads = Double(config.layers * config.heads * config.steps.count)
    let pairs = heads * Double(config.tokens * config.tokens)
    let plain = try seconds { _ = try Calibrator.run(calibration: calibration, holdout: [], options: CalibrationOptions()) }
    print(String(format: "calibrate, 2 inputs:                 %5.2f s, %.2e query·key pairs/s of block attention mass", plain, 2 * pairs / plain))
    let checked = try seconds { _ = try Calibrator.run(calibration: calibration, holdout: holdout, options: CalibrationOptions()) }
    print(String(format: "calibrate, 2 inputs + 1 held out:    %5.2f s (the held-out check also computes dense and sparse outputs)", checked))
    print(String(format: "peak memory of this process:         %5.0f MiB (recordings are memory-mapped; one head is in memory at a time)\n", peakMemoryMiB()))

    func row(_ label: String, _ options: CalibrationOptions) throws {
        let c = try Calibrator.run(calibration: calibration, holdout: holdout, options: options)
        let n = Double(c.heads.count)
        let density = c.heads.reduce(0) { $0 + $1.density } / n
        let mass = c.heads.reduce(0) { $0 + $1.heldOutMass! } / n
        let error = c.heads.reduce(0) { $0 + $1.heldOutError! } / n
        let worst = c.heads.map { $0.heldOutError! }.max()!
        let extra = c.heads.compactMap(\.reuseExtraError)
        print(label.padding(toLength: 26, withPad: " ", startingAt: 0) + String(format: " %7.3f  %5d  %5.1f%%  %13.3f  %14.2e  %10.2e  %11@", density, c.heads.filter(\.dense).count,
                     100 * c.program.reuseFraction, mass, error, worst,
                     extra.isEmpty ? "-" : String(format: "%.1e", extra.reduce(0, +) / Double(extra.count))))
    }
    print("sweep (one option varied, the others at their defaults; held out on a third prompt)")
    print("option                     density  dense  reused  held-out mass  held-out error  worst head  reuse extra")
    for tau in [0.9, 0.95, 0.98] {
        var o = CalibrationOptions()
        o.selection = .mass(tau)
        try row("--mass \(tau)", o)
    }
    for rho in [0.1, 0.25, 0.5] {
        var o = CalibrationOptions()
        o.selection = .density(rho)
        try row("--density \(rho)", o)
    }
    for drop in [0.02, 0.05, 0.1, 1.0] {
        var o = CalibrationOptions()
        o.stabilityDrop = drop
        try row("--stability-drop \(drop)", o)
    }
    for tol in [0.0, 0.02, 0.05, 0.1] {
        var o = CalibrationOptions()
        o.reuseTolerance = tol
        try row("--reuse-tolerance \(tol)", o)
    }
}
