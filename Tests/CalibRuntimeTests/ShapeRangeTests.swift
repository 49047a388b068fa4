import CalibCodegen
import CalibDriver
import CalibIR
import CalibPasses
import CalibRuntime
import CalibSupport
import Foundation
import XCTest

/// docs/masks-format.md allows head_dim 1…512 and block 1…1024: every one of those values must
/// compile on the CPU target (an "internal error" on valid input is a compiler bug), and the
/// kernels must be right for each kind of value on every instruction set.
final class ShapeRangeTests: XCTestCase {
    static let blocks = 1...1024, headDims = 1...512

    /// Every block and every head_dim through passes, emission and a warnings-on parse of the C.
    /// Block i goes with head_dim (37·i mod 512) + 1, so each head_dim appears twice, with
    /// blocks of every residue mod 16. calibc's own check (libclang) spends about 0.25 s a file
    /// parsing system headers; here they come from one precompiled header, so 1,024 files take
    /// seconds. The same files through calibc's check are in the numeric test below.
    func testEveryBlockAndHeadDimTheFormatAllowsCompiles() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("calibc-range-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let flags = ["-std=c11", "-fopenmp", "-idirafter", Toolchain.ompInclude]
        let headers = "#include <math.h>\n#include <omp.h>\n#include <stdint.h>\n#include <stdlib.h>\n#include <string.h>\n"
            + "#include <cpuid.h>\n#include <immintrin.h>\n"
        try headers.write(to: dir.appendingPathComponent("sys.h"), atomically: true, encoding: .utf8)
        let pch = dir.appendingPathComponent("sys.pch").path
        XCTAssertEqual(try run(["clang"] + flags + ["-x", "c-header", dir.appendingPathComponent("sys.h").path, "-o", pch]).status, 0)

        var coveredDims = Set<Int>()
        var failures: [String] = []
        let lock = NSLock()
        func fail(_ message: String) { lock.lock(); failures.append(message); lock.unlock() }
        let values = Array(Self.blocks)
        DispatchQueue.concurrentPerform(iterations: 2) { part in
            for block in values where block % 2 == part {
                let headDim = (37 * block) % Self.headDims.upperBound + 1
                let shapeDir = dir.appendingPathComponent("b\(block)")
                do {
                    let files = try emit(Self.program(tokens: 2 * block + 1, headDim: headDim, block: block))
                    for file in files {
                        let url = shapeDir.appendingPathComponent(file.path)
                        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                        try file.contents.write(to: url, atomically: false, encoding: .utf8)
                    }
                    let result = try run(["clang"] + flags + ["-include-pch", pch, "-Wall", "-Wextra", "-Wpedantic", "-Werror",
                                                              "-I", shapeDir.path, "-I", shapeDir.path + "/include", "-fsyntax-only",
                                                              shapeDir.appendingPathComponent("calib_kernels.c").path,
                                                              shapeDir.appendingPathComponent("calib_schedule.c").path])
                    if result.status != 0 { fail("block \(block) head_dim \(headDim):\n\(result.output.prefix(600))") }
                    try FileManager.default.removeItem(at: shapeDir)
                } catch {
                    fail("block \(block) head_dim \(headDim): \(error)")
                }
            }
        }
        for block in values { coveredDims.insert((37 * block) % Self.headDims.upperBound + 1) }
        XCTAssertEqual(coveredDims, Set(Self.headDims))
        XCTAssertEqual(failures.count, 0, failures.sorted().prefix(5).joined(separator: "\n"))
    }

    /// One shape per kind of value the kernels distinguish: their instances need block and
    /// head_dim to be multiples of 4, 8 or 16, and the register blocking divides them by 16, 32 or
    /// 64, so the pairs cover every residue class that changes the code (odd, 2, 4, 8, 16, 32 and
    /// 64 mod 64, for both), the smallest value and the largest, through calibc's own compile, on
    /// every instruction set, fp32 and bf16, against float64.
    func testEachKindOfBlockAndHeadDimMatchesFloat64OnEveryInstructionSet() throws {
        var rng = SplitMix64(seed: freshSeed(#function))
        let shapes = [(1, 1), (2, 3), (3, 2), (4, 8), (8, 4), (5, 16), (16, 5), (12, 32), (32, 12), (24, 64), (64, 24),
                      (46, 17), (48, 80), (80, 48), (96, 128), (100, 100), (7, 512), (1024, 7)]
        for (block, headDim) in shapes {
            let tokens = block >= 256 ? block + block / 3 : 3 * block + 1
            let blocks = (tokens + block - 1) / block
            let plans = [densePlan(blocks: blocks), randomPlan("r", blocks: blocks, partialLast: true, reuse: true, rng: &rng)]
            let program = Self.program(tokens: tokens, headDim: headDim, block: block, plans: plans)
            let q = rng.floats(tokens * headDim, scale: 2).map(BFloat16.init), k = rng.floats(tokens * headDim, scale: 2).map(BFloat16.init)
            let v = rng.floats(tokens * headDim).map(BFloat16.init)
            let (qf, kf, vf) = (q.map(\.float), k.map(\.float), v.map(\.float))
            var exact: [[Double]] = []
            var seen: Set<String> = []
            let (instances, optimized) = try loadKernelsForEveryISA(program)
            for kernels in instances {
                guard seen.insert(kernels.isa).inserted else { continue }
                if exact.isEmpty {
                    exact = (0..<2).map { Reference.attention(of: optimized.plan(stepIndex: 0, layer: 0, head: $0), q: qf, k: kf, v: vf,
                                                              tokens: tokens, headDim: headDim, block: block) }
                }
                let bf16Bound = kernels.isa == "avx512-bf16" ? 4e-3 : 1e-5
                for head in 0..<2 {
                    let what = "block \(block) head_dim \(headDim) tokens \(tokens) \(kernels.isa) head \(head)"
                    XCTAssertLessThan(Reference.relativeError(try runHead(kernels, step: 0, head: head, q: qf, k: kf, v: vf), exact[head]),
                                      1e-5, "fp32 " + what)
                    XCTAssertLessThan(Reference.relativeError(try runHeadBF16(kernels, step: 0, head: head, q: q, k: k, v: v), exact[head]),
                                      bf16Bound, "bf16 " + what)
                }
            }
            XCTAssertTrue(seen.contains("portable"), "block \(block) head_dim \(headDim): \(seen)")
        }
    }

    static func program(tokens: Int, headDim: Int, block: Int, plans: [Plan]? = nil) -> Program {
        let blocks = (tokens + block - 1) / block
        let plans = plans ?? [densePlan(blocks: blocks)]
        return Program(model: "range", shape: Shape(tokens: tokens, headDim: headDim, block: block, layers: 1, heads: plans.count, steps: [0]),
                       plans: plans, dispatch: Array(plans.indices), sourceHash: "h")
    }

    /// The CPU target's files for `program` after its passes, unchecked.
    private func emit(_ program: Program) throws -> [GeneratedFile] {
        let options = CompileOptions()
        let optimized = Driver.optimize(program, options.passes)
        return try options.target.emit(optimized, Provenance(source: "range.json", passes: options.passes.map(\.name)))
    }

    private func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }
}
