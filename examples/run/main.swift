// Runs compiled kernels on every (step, layer, head) of a masks file and reports, per head,
// density, relative L2 error against the dense kernel, and sparse vs dense time.
//
//   calib-run <masks.json> [--library <libcalibkernels.so>] [--recording <file.safetensors>]
//
// Without --library it runs the kernels linked into this package (generated/CalibKernels).
// With --recording it takes Q, K (and V when recorded; seeded noise otherwise) from a
// recording, e.g. a held-out prompt; without, seeded random inputs, and each plan is also
// checked against its own float64 reference.

import CalibCalibrate
import CalibDriver
import CalibIR
import CalibKernels
import CalibRuntime
import CalibSupport
import Foundation

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("calib-run: \(message)\n".utf8))
    exit(1)
}

var args = Array(CommandLine.arguments.dropFirst())
func option(_ name: String) -> String? {
    guard let i = args.firstIndex(of: name) else { return nil }
    guard i + 1 < args.count else { fail("\(name) needs a value") }
    defer { args.removeSubrange(i...(i + 1)) }
    return args[i + 1]
}
let libraryPath = option("--library"), recordingPath = option("--recording")
guard args.count == 1 else { fail("usage: calib-run <masks.json> [--library <lib.so>] [--recording <file.safetensors>]") }
let masksPath = args[0]

do {
    let kernels = try libraryPath.map(AttentionKernels.init(libraryPath:)) ?? AttentionKernels(entryPoints: UnsafeRawPointer(calib_get_entry_points()))
    try kernels.requireSource(masksFile: masksPath)
    let program = Driver.optimize(try Driver.load(masksPath).program, CompileOptions().passes)
    let recording = try recordingPath.map(Recording.init(path:))
    let (n, d, block) = (program.shape.tokens, program.shape.headDim, program.shape.block)
    if let recording, recording.tokens != n || recording.headDim != d {
        fail("\(recordingPath!) holds \(recording.tokens) tokens of head_dim \(recording.headDim), the masks \(n) of \(d)")
    }
    print("kernels: \(libraryPath ?? "linked generated/CalibKernels"), model \"\(kernels.info.model)\", \(kernels.info.plans) plans, \(kernels.teamSize) threads, \(kernels.isa)")
    print("inputs:  \(recordingPath ?? "seeded random"); tokens \(n), head_dim \(d), block \(block)\n")

    func milliseconds(_ body: () throws -> Void) rethrows -> Double {
        try body()  // warm caches and the OpenMP thread pool
        let start = DispatchTime.now()
        for _ in 0..<3 { try body() }
        return Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 3e6
    }

    print("step layer head  plan           density  err vs dense  sparse ms  dense ms  speedup")
    var totals = (sparse: 0.0, dense: 0.0, worst: 0.0, planError: 0.0)
    var checkedPlans: Set<Int> = []
    var rng = SplitMix64(seed: 2026)
    for (s, step) in program.shape.steps.enumerated() {
        for layer in 0..<program.shape.layers {
            for head in 0..<program.shape.heads {
                let q, k, v: [Float]
                if let r = recording, r.steps.contains(step), layer < r.layers, head < r.heads {
                    q = try r.head("q", step: step, layer: layer, head: head)
                    k = try r.head("k", step: step, layer: layer, head: head)
                    v = r.hasValues ? try r.head("v", step: step, layer: layer, head: head) : rng.floats(n * d)
                } else if recording != nil {
                    fail("\(recordingPath!) has no step \(step) layer \(layer) head \(head)")
                } else {
                    (q, k, v) = (rng.floats(n * d, scale: 2), rng.floats(n * d, scale: 2), rng.floats(n * d))
                }
                var sparse = [Float](repeating: .nan, count: n * d), dense = sparse
                let (sparseMs, denseMs) = try q.withUnsafeBufferPointer { qp in
                    try k.withUnsafeBufferPointer { kp in
                        try v.withUnsafeBufferPointer { vp in
                            let a = try sparse.withUnsafeMutableBufferPointer { op in
                                try milliseconds { try kernels.attention(step: step, layer: layer, head: head, q: qp, k: kp, v: vp, out: op, tokens: n, headDim: d) }
                            }
                            let b = try dense.withUnsafeMutableBufferPointer { op in
                                try milliseconds { try kernels.denseAttention(q: qp, k: kp, v: vp, out: op, tokens: n, headDim: d) }
                            }
                            return (a, b)
                        }
                    }
                }
                let planIndex = program.dispatch[program.shape.dispatchIndex(stepIndex: s, layer: layer, head: head)]
                let plan = program.plans[planIndex]
                let error = Reference.relativeError(sparse, dense.map(Double.init))
                totals.sparse += sparseMs
                totals.dense += denseMs
                totals.worst = max(totals.worst, error)
                if recording == nil, checkedPlans.insert(planIndex).inserted {
                    let exact = Reference.attention(of: plan, q: q, k: k, v: v, tokens: n, headDim: d, block: block)
                    totals.planError = max(totals.planError, Reference.relativeError(sparse, exact))
                }
                print(String(format: "%4d %5d %4d  %@ %7.3f  %12.2e  %9.2f  %8.2f  %6.2fx", step, layer, head,
                             ("@" + plan.name).padding(toLength: 14, withPad: " ", startingAt: 0),
                             plan.density(blocks: program.shape.blocks), error, sparseMs, denseMs, denseMs / sparseMs))
            }
        }
    }
    print(String(format: "\nmean density %.3f, %d unique plans, %.1f%% of query blocks reused", program.meanDensity(),
                 program.plans.count, 100 * program.reuseFraction))
    print(String(format: "all heads: sparse %.1f ms, dense %.1f ms (%.2fx); worst relative L2 error vs dense %.2e",
                 totals.sparse, totals.dense, totals.dense / totals.sparse, totals.worst))
    if recording == nil {
        print(String(format: "max relative error vs each plan's float64 reference %.2e", totals.planError))
        print("(on random inputs the error vs dense measures what the masks drop, not kernel accuracy)")
        if totals.planError > 1e-5 { exit(1) }
    }
} catch {
    fail("\(error)")
}
