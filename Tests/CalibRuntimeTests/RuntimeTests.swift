import CalibDriver
import CalibFrontend
import CalibIR
import CalibKernels
import CalibRuntime
import CalibSupport
import Foundation
import XCTest

private let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardizedFileURL
private let example = root.appendingPathComponent("examples/masks.json").path

/// The example's kernels (generated/CalibKernels), linked into this test bundle.
private let linked = try! AttentionKernels(entryPoints: UnsafeRawPointer(calib_get_entry_points()))

final class RuntimeTests: XCTestCase {
    /// Seen on this machine: OpenMP can link yet run one thread. The kernels must use every core,
    /// or as many threads as OMP_NUM_THREADS asks for.
    func testKernelsRunOnAllThreads() throws {
        let asked = ProcessInfo.processInfo.environment["OMP_NUM_THREADS"].flatMap { Int($0) }.flatMap { $0 > 0 ? $0 : nil }
        let cores = asked ?? ProcessInfo.processInfo.activeProcessorCount
        XCTAssertEqual(linked.teamSize, cores)
        let program = Program(model: "t", shape: Shape(tokens: 64, headDim: 16, block: 16, layers: 1, heads: 1, steps: [0]),
                              plans: [densePlan(blocks: 4)], dispatch: [0], sourceHash: "h")
        XCTAssertEqual(try loadKernels(program).0.teamSize, cores)
    }

    func testModelTimestepsReachTheInfo() throws {
        let program = Program(model: "t", shape: Shape(tokens: 64, headDim: 16, block: 16, layers: 1, heads: 1, steps: [0, 1, 2],
                                                       modelTimesteps: [999, 500.5, 0.5]),
                              plans: [densePlan(blocks: 4)], dispatch: [0, 0, 0], sourceHash: "h")
        let info = try loadKernels(program).0.info
        XCTAssertEqual(info.timesteps, [999, 500.5, 0.5])
        XCTAssertEqual([2000, 749.75, 749.7, 250.5, 250.4, -1].map { info.step(nearestTo: $0) }, [0, 0, 1, 1, 2, 2])
    }

    func testLinkedKernelsAreTheExample() throws {
        let kernels = linked
        XCTAssertNoThrow(try kernels.requireSource(masksFile: example))
        let info = kernels.info
        XCTAssertEqual([info.tokens, info.headDim, info.block, info.layers, info.heads, info.plans], [2100, 64, 64, 2, 4, 5])
        XCTAssertEqual(info.steps, [0, 25, 49])
        XCTAssertEqual(info.timesteps, [0, 25, 49], "no model_timesteps: the step values")
        XCTAssertEqual([-5, 12.5, 13, 40, 1000].map { info.step(nearestTo: $0) }, [0, 0, 25, 49, 49])
        XCTAssertEqual(info.model, "example-video-dit")

        let other = FileManager.default.temporaryDirectory.appendingPathComponent("calibc-other-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: other) }
        var bytes = try Data(contentsOf: URL(fileURLWithPath: example))
        bytes.append(0x0a)
        try bytes.write(to: other)
        XCTAssertThrowsError(try kernels.requireSource(masksFile: other.path)) { error in
            guard case CalibError.maskMismatch = error else { return XCTFail("\(error)") }
        }
    }

    /// One sparse head of the linked example, against its float64 plan reference.
    func testLinkedKernelsComputeTheirPlan() throws {
        let kernels = linked
        let program = Driver.optimize(try Frontend.load(path: example).program, CompileOptions().passes)
        var rng = SplitMix64(seed: freshSeed(#function))
        let (n, d) = (2100, 64)
        let q = rng.floats(n * d, scale: 2), k = rng.floats(n * d, scale: 2), v = rng.floats(n * d)
        let out = try runHead(kernels, step: 25, layer: 1, head: 3, q: q, k: k, v: v)
        let plan = program.plan(stepIndex: 1, layer: 1, head: 3)
        XCTAssertEqual(plan.name, "spatial_reuse")
        let exact = Reference.attention(of: plan, q: q, k: k, v: v, tokens: n, headDim: d, block: 64)
        XCTAssertLessThan(Reference.relativeError(out, exact), 1e-5)
    }

    func testBadCallsThrowInsteadOfReadingOutOfBounds() throws {
        let kernels = linked
        let (n, d) = (2100, 64)
        let good = [Float](repeating: 0, count: n * d)
        var out = [Float](repeating: 0, count: n * d)
        func call(step: Int = 25, layer: Int = 0, head: Int = 0, tokens: Int = n, headDim: Int = d, short: Bool = false,
                  stride: Int? = nil) -> CalibError? {
            let q = short ? Array(good.dropLast()) : good
            do {
                try q.withUnsafeBufferPointer { qp in
                    try good.withUnsafeBufferPointer { kp in
                        try out.withUnsafeMutableBufferPointer { op in
                            try kernels.attention(step: step, layer: layer, head: head, q: qp, k: kp, v: kp, out: op,
                                                  tokens: tokens, headDim: headDim, stride: stride)
                        }
                    }
                }
                return nil
            } catch { return error as? CalibError }
        }
        XCTAssertNil(call())
        XCTAssertEqual(call(tokens: 2048), .shapeMismatch(tokens: 2048, headDim: 64, expectedTokens: 2100, expectedHeadDim: 64))
        XCTAssertEqual(call(headDim: 128), .shapeMismatch(tokens: 2100, headDim: 128, expectedTokens: 2100, expectedHeadDim: 64))
        XCTAssertEqual(call(step: 24), .noPlan(step: 24, layer: 0, head: 0))
        XCTAssertEqual(call(layer: 2), .noPlan(step: 25, layer: 2, head: 0))
        XCTAssertEqual(call(head: -1), .noPlan(step: 25, layer: 0, head: -1))
        XCTAssertEqual(call(step: Int(Int32.max) + 1), .noPlan(step: Int(Int32.max) + 1, layer: 0, head: 0))
        XCTAssertEqual(call(short: true), .badArgument("q holds 134399 floats, needs 134400 for 2100 tokens at stride 64"))
        XCTAssertEqual(call(stride: 65), .badArgument("q holds 134400 floats, needs 136499 for 2100 tokens at stride 65"))
        XCTAssertEqual(call(stride: 32), .badArgument("stride 32 is smaller than head_dim 64"))
    }

    /// Many threads, each on its own head and output, give the sequential answers bit for bit.
    func testConcurrentCallsOnDifferentHeads() throws {
        let kernels = linked
        var rng = SplitMix64(seed: freshSeed(#function))
        let (n, d) = (2100, 64)
        let q = rng.floats(n * d), k = rng.floats(n * d), v = rng.floats(n * d)
        let jobs = [(25, 0, 0), (25, 0, 1), (25, 0, 2), (25, 0, 3), (49, 1, 0), (49, 1, 1), (49, 0, 3), (25, 1, 2)]
        let expected = try jobs.map { try runHead(kernels, step: $0.0, layer: $0.1, head: $0.2, q: q, k: k, v: v) }
        final class Results: @unchecked Sendable {
            var outputs: [[Float]?]
            let lock = NSLock()
            init(_ n: Int) { outputs = Array(repeating: nil, count: n) }
        }
        let results = Results(jobs.count)
        DispatchQueue.concurrentPerform(iterations: jobs.count * 3) { i in
            let job = jobs[i % jobs.count]
            let out = try? runHead(kernels, step: job.0, layer: job.1, head: job.2, q: q, k: k, v: v)
            results.lock.lock()
            if out != expected[i % jobs.count] { results.outputs[i % jobs.count] = out ?? [] }
            results.lock.unlock()
        }
        XCTAssertTrue(results.outputs.allSatisfy { $0 == nil }, "a concurrent call differed from its sequential result")
    }
}
