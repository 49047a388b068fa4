// Runs the kernels linked into this package (generated/CalibKernels) on every
// (step, layer, head) of a masks file, checks each against a float64 reference of its own
// plan and of full attention, and times sparse against dense.
//
//   swift run -c release calib-demo examples/masks.json

import CalibFrontend
import CalibIR
import CalibPasses
import CalibRuntime
import Foundation

let path = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "examples/masks.json"
let kernels = AttentionKernels.linked
do {
    try kernels.requireSource(masksFile: path)
    let program = Pipeline.run(try Frontend.load(path: path, threads: kernels.info.threads).program)
    let (n, d, block) = (program.shape.tokens, program.shape.headDim, program.shape.block)
    print("kernels: model \"\(kernels.info.model)\", \(kernels.info.plans) plans, \(kernels.teamSize) threads")
    print("masks:   \(path), tokens \(n), head_dim \(d), block \(block), \(program.shape.dispatchCount) (step, layer, head)\n")

    var rng = SplitMix64(seed: 2026)
    let q = rng.floats(n * d, scale: 2), k = rng.floats(n * d, scale: 2), v = rng.floats(n * d)
    let dense = Reference.attention(q: q, k: k, v: v, tokens: n, headDim: d)
    var out = [Float](repeating: .nan, count: n * d)

    func time(_ body: () throws -> Void) rethrows -> Double {
        try body()  // warm caches and the OpenMP thread pool
        let start = DispatchTime.now()
        for _ in 0..<5 { try body() }
        return Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 5e6
    }
    let denseMs = try q.withUnsafeBufferPointer { qp in
        try k.withUnsafeBufferPointer { kp in
            try v.withUnsafeBufferPointer { vp in
                try out.withUnsafeMutableBufferPointer { op in
                    try time { try kernels.denseAttention(q: qp, k: kp, v: vp, out: op, tokens: n, headDim: d) }
                }
            }
        }
    }

    print("step layer head  plan            density  err vs plan  err vs dense   ms  (dense kernel \(String(format: "%.2f", denseMs)) ms)")
    var worstPlanError = 0.0
    var exactCache: [Int: [Double]] = [:]
    for (s, step) in program.shape.steps.enumerated() {
        for layer in 0..<program.shape.layers {
            for head in 0..<program.shape.heads {
                let planIndex = program.dispatch[program.shape.dispatchIndex(stepIndex: s, layer: layer, head: head)]
                let plan = program.plans[planIndex]
                out = [Float](repeating: .nan, count: n * d)
                let ms = try q.withUnsafeBufferPointer { qp in
                    try k.withUnsafeBufferPointer { kp in
                        try v.withUnsafeBufferPointer { vp in
                            try out.withUnsafeMutableBufferPointer { op in
                                try time { try kernels.attention(step: step, layer: layer, head: head, q: qp, k: kp, v: vp, out: op, tokens: n, headDim: d) }
                            }
                        }
                    }
                }
                let exact = exactCache[planIndex] ?? Reference.attention(of: plan, q: q, k: k, v: v, tokens: n, headDim: d, block: block)
                exactCache[planIndex] = exact
                let planError = Reference.relativeError(out, exact)
                worstPlanError = max(worstPlanError, planError)
                print(String(format: "%4d %5d %4d  %@  %7.3f  %11.2e  %12.2e  %5.2f", step, layer, head,
                             ("@" + plan.name).padding(toLength: 14, withPad: " ", startingAt: 0),
                             plan.density(blocks: program.shape.blocks), planError, Reference.relativeError(out, dense), ms))
            }
        }
    }
    print(String(format: "\nmean density %.3f; %d unique plans; max relative error vs each plan's float64 reference %.2e", program.meanDensity(), program.plans.count, worstPlanError))
    print("(error vs dense on these random inputs measures what the masks drop, not kernel accuracy)")
    if worstPlanError > 1e-5 { exit(1) }
} catch {
    FileHandle.standardError.write(Data("calib-demo: \(error)\n".utf8))
    exit(1)
}
