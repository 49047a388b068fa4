// `calib-bench calibrate`: throughput, peak memory and the sweeps behind docs/calibration.md.

import CalibCalibrate
import CalibIR
import CalibSynth
import Foundation

/// Resets the peak resident size the kernel keeps for this process (Linux ≥ 4.0), so a later
/// `peakResidentMiB()` covers only what ran in between.
func resetPeakResident() {
    try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
}

/// VmHWM: the peak resident size since the last reset.
func peakResidentMiB() -> Double {
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    let line = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") } ?? ""
    return Double(line.split(separator: " ").dropFirst().first ?? "0").map { $0 / 1024 } ?? peakMemoryMiB()
}

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

    // Sampled rows: block mass from every S-th row of each query block (what makes calibration at
    // model scale affordable on a GPU, docs/calibration.md section 8), against every row.
    print("\nsampled rows: block mass from every S-th row of each query block (2 inputs; time without the held-out check)")
    print("option                        seconds  density  dense  reused  held-out mass  held-out error  worst head  tiles as S = 1")
    for block in [64, 128] {
        var exact = Set<Int>()
        for step in [1, 2, 4, 8, 16] {
            var o = CalibrationOptions()
            (o.block, o.rowStep) = (block, step)
            let time = try seconds { _ = try Calibrator.run(calibration: calibration, holdout: [], options: o) }
            let c = try Calibrator.run(calibration: calibration, holdout: holdout, options: o)
            // Kept tiles of every plan row, as (dispatch, query block, key block) numbers, to compare with S = 1.
            // A reused block counts with its source's key blocks.
            let tiles = Set(c.program.dispatch.enumerated().flatMap { d, p in
                let rows = c.program.plans[p].rows
                return rows.indices.flatMap { q -> [Int] in
                    let spans = if case .reuse(let source) = rows[q] { rows[source].spans } else { rows[q].spans }
                    return spans.flatMap { $0.start..<$0.end }.map { d * 1_000_000 + q * 1000 + $0 }
                }
            })
            if step == 1 { exact = tiles }
            let agree = Double(tiles.intersection(exact).count) / Double(tiles.union(exact).count)
            let n = Double(c.heads.count)
            print("--block \(block) --sample-rows \(step)".padding(toLength: 29, withPad: " ", startingAt: 0)
                  + String(format: " %7.2f  %7.3f  %5d  %5.1f%%  %13.3f  %14.2e  %10.2e  %13.3f", time,
                           c.heads.reduce(0) { $0 + $1.density } / n, c.heads.filter(\.dense).count, 100 * c.program.reuseFraction,
                           c.heads.reduce(0) { $0 + $1.heldOutMass! } / n, c.heads.reduce(0) { $0 + $1.heldOutError! } / n,
                           c.heads.map { $0.heldOutError! }.max()!, agree))
        }
    }

    // The threshold schedule against constants, per step (steps 0, 20, 40; step 0 attends more broadly).
    print("\nthreshold per step: constant --mass against --mass-schedule wan (T = 40: ε = 0.990, 0.847, 0.840)")
    print("option                     step  threshold  density  dense  held-out mass  held-out error  worst head")
    var rows: [(String, CalibrationOptions.Selection)] = [0.84, 0.9, 0.95, 0.99].map { ("--mass \($0)", .mass($0)) }
    rows.append(("--mass-schedule wan", .schedule(.wan)))
    for (label, selection) in rows {
        var o = CalibrationOptions()
        o.selection = selection
        let c = try Calibrator.run(calibration: calibration, holdout: holdout, options: o)
        for step in config.steps {
            let hs = c.heads.filter { $0.step == step }
            let n = Double(hs.count)
            let tau = selection.at(step: step, lastRecordedStep: config.steps.last!)
            guard case .mass(let t) = tau else { continue }
            print(label.padding(toLength: 26, withPad: " ", startingAt: 0) + String(format: " %4d  %9.3f  %7.3f  %5d  %13.3f  %14.2e  %10.2e", step, t,
                  hs.reduce(0) { $0 + $1.density } / n, hs.filter(\.dense).count, hs.reduce(0) { $0 + $1.heldOutMass! } / n,
                  hs.reduce(0) { $0 + $1.heldOutError! } / n, hs.map { $0.heldOutError! }.max()!))
        }
    }

    // Streaming: one state per prompt, merged, against one run over both.
    let stateDir = dir + "/states"
    try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true)
    var foldTime = 0.0
    for (i, r) in calibration.enumerated() {
        foldTime += try seconds { try Calibrator.fold([r], options: CalibrationOptions()).write(to: "\(stateDir)/\(i).safetensors") }
    }
    var merged: CalibrationState?
    let mergeTime = try seconds {
        var m = try CalibrationState(path: "\(stateDir)/0.safetensors")
        try m.merge(try CalibrationState(path: "\(stateDir)/1.safetensors"), file: "1", into: "0")
        merged = m
    }
    let fromStates = try Calibrator.finish(merged!, holdout: [], options: CalibrationOptions())
    let batch = try Calibrator.runBatch(calibration: calibration, holdout: [], options: CalibrationOptions())
    let stateBytes = (try FileManager.default.attributesOfItem(atPath: "\(stateDir)/0.safetensors")[.size] as? Int) ?? 0
    print(String(format: "\nstreaming: fold + write one state per prompt %.2f s for 2, state file %.2f MB each (any number of prompts), "
                 + "read + merge %.3f s; masks %@ the batch path's", foldTime, Double(stateBytes) / 1e6, mergeTime,
                 fromStates.program.plans == batch.program.plans && fromStates.program.dispatch == batch.program.dispatch ? "equal" : "DIFFER FROM"))

    try benchCalibrateWan(dir: dir + "/wan")
}

/// Calibration at Wan 2.1 1.3B 480p's sequence length (32,760 tokens): one layer, six heads (one
/// of each kind), step 20, two prompts calibrated on and a third held out, all as raw q/k.
func benchCalibrateWan(dir: String) throws {
    var config = SynthConfig.wan13b480p()
    (config.steps, config.stepGain) = ([20], [1])
    let synthTime = try seconds {
        _ = try Synth.write(config, prompts: 3, seed: 1, to: dir + "/qk")
    }
    let calibration = try [0, 1].map { try Recording(path: "\(dir)/qk/prompt\($0).safetensors") }
    let holdout = [try Recording(path: "\(dir)/qk/prompt2.safetensors")]
    var options = CalibrationOptions()
    options.block = 128
    print("\nWan 2.1 1.3B 480p shape: 21×30×52 = \(config.tokens) tokens, head_dim 128, blocks of 128 (256×256), "
          + "\(config.layers) layer × \(config.heads) heads × \(config.steps.count) step, q/k of 3 prompts written in \(String(format: "%.1f", synthTime)) s")
    resetPeakResident()
    var state: CalibrationState?
    let foldTime = try seconds { state = try Calibrator.fold(calibration, options: options) }
    let foldPeak = peakResidentMiB()
    let pairs = 2 * Double(config.heads * config.tokens * config.tokens)
    print(String(format: "fold 2 inputs:          %6.1f s, %.2e query·key pairs/s of block attention mass, peak resident %4.0f MiB", foldTime,
                 pairs / foldTime, foldPeak))
    var c: Calibration?
    let finishTime = try seconds { c = try Calibrator.finish(state!, holdout: holdout, options: options) }
    let n = Double(c!.heads.count)
    let finishPeak = peakResidentMiB()
    print(String(format: "decide + held-out check: %5.1f s (kept mass, dense and sparse outputs), peak resident %4.0f MiB", finishTime, finishPeak))
    print(String(format: "mean density %.3f, dense heads %d of %d, reused %.1f%%; held out: kept mass %.3f, relative L2 error %.2e, worst head %.2e",
                 c!.heads.reduce(0) { $0 + $1.density } / n, c!.heads.filter(\.dense).count, c!.heads.count,
                 100 * c!.program.reuseFraction, c!.heads.reduce(0) { $0 + $1.heldOutMass! } / n,
                 c!.heads.reduce(0) { $0 + $1.heldOutError! } / n, c!.heads.map { $0.heldOutError! }.max()!))
    print(String(format: "state: %.2f MB of tensors for %d heads (%.0f KB per head of 256×256 blocks)", Double(state!.tensorBytes) / 1e6,
                 state!.heads.count, Double(state!.tensorBytes) / n / 1024))
}
