// Benchmarks, printed as tables (never run as tests: these machines are shared and noisy).
//
//   calib-bench kernels [N ...]     dense GFLOP/s against the measured FMA peak, bf16 against
//                                   fp32, sparse efficiency and reuse cost (docs/performance.md)
//   calib-bench scale               a Wan 2.1 14B-size mask set: parse, compile, build, merge, stats
//   calib-bench calibrate           calibration throughput and peak memory, the sweeps that chose
//                                   the calibration defaults and the threshold schedule per step,
//                                   streaming states, and the Wan 1.3B 480p shape (docs/calibration.md)
//   calib-bench state-size          the calibration state after 1 … 16 synthetic prompts, without
//                                   and with retirement, extrapolated to Wan 2.1 14B (docs/calibration.md §8)

import Foundation

func peakMemoryMiB() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
}

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now()
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
}

let mode = CommandLine.arguments.dropFirst().first ?? "calibrate"
do {
    switch mode {
    case "calibrate": try benchCalibrate()
    case "scale": try benchScale()
    case "state-size": try benchStateSize()
    case "kernels": try benchKernels(tokens: CommandLine.arguments.dropFirst(2).compactMap { Int($0) })
    default:
        FileHandle.standardError.write(Data("usage: calib-bench kernels [N ...] | calibrate | scale | state-size\n".utf8))
        exit(2)
    }
} catch {
    FileHandle.standardError.write(Data("calib-bench: \(error)\n".utf8))
    exit(1)
}
