// `calib-bench scale`: a Wan 2.1 14B-size mask set (calibc synth --masks wan14b) through the
// release calibc, timed as a user would run it: file size, parse throughput, compile wall time
// and peak memory, C build time, code and table sizes, near-duplicate merging, and stats.

import CalibCodegen
import CalibFrontend
import CalibIR
import CalibJSON
import CalibSupport
import Foundation

private func run(_ tool: String, _ args: [String]) throws -> (seconds: Double, peakMiB: Double) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: tool)
    p.arguments = args
    p.standardOutput = FileHandle.nullDevice
    var before = rusage()
    getrusage(RUSAGE_CHILDREN.rawValue, &before)
    let start = DispatchTime.now()
    try p.run()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw CocoaError(.executableLoad, userInfo: [NSLocalizedDescriptionKey: "\(tool) failed"]) }
    var after = rusage()
    getrusage(RUSAGE_CHILDREN.rawValue, &after)
    return (Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9, Double(after.ru_maxrss) / 1024)
}

private func size(_ path: String) -> Int {
    (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
}

func benchScale() throws {
    let calibc = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("calibc").path
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("calib-bench-scale-\(getpid())").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let masks = dir + "/wan14b.json"
    let generate = try run(calibc, ["synth", "--masks", "wan14b", "-o", masks])
    let bytes = size(masks)
    print(String(format: "mask set: 40 layers × 40 heads × 50 steps = 80000 (step, layer, head), 75600 tokens, 591 × 591 blocks"))
    print(String(format: "  masks.json                 %8.1f MB (written in %.1f s)", Double(bytes) / 1e6, generate.seconds))

    var parse: [Double] = []
    for _ in 0..<3 {
        parse.append(try seconds { _ = try Frontend.load(path: masks) })
    }
    let parseSeconds = parse.sorted()[1]
    print(String(format: "  parse + validate           %8.2f s  (%.0f MB/s, median of 3)", parseSeconds, Double(bytes) / 1e6 / parseSeconds))
    let raw = [UInt8](try Data(contentsOf: URL(fileURLWithPath: masks)))
    let hash = seconds { _ = SHA256.hex(raw) }
    let tree = try seconds { _ = try JSONReader.parse(raw) }
    print(String(format: "    SHA-256 %.2f s on the second core beside: JSON tree %.2f s, then decoding and validation", hash, tree))

    let compile = try run(calibc, ["compile", masks, "-o", dir + "/kernels"])
    print(String(format: "  calibc compile             %8.2f s  wall, peak memory %.0f MiB (targets: 60 s, 4096 MiB)", compile.seconds, compile.peakMiB))
    let kernels = size(dir + "/kernels/calib_kernels.c"), tables = size(dir + "/kernels/calib_schedule.c")
    print(String(format: "  generated C                %8.1f KB of kernel code (the same for every masks file)", Double(kernels) / 1e3))
    print(String(format: "                             %8.1f MB of tables (grows with unique plans and rows)", Double(tables) / 1e6))
    let cpu = CPUTarget()
    let build = try seconds { try runTool(cpu.buildCommand, in: dir + "/kernels") }
    print(String(format: "  C build (clang -O3)        %8.2f s  (target: 120 s), library %.1f MB", build,
                 Double(size(dir + "/kernels/" + cpu.libraryName)) / 1e6))
    let stats = try run(calibc, ["stats", masks])
    print(String(format: "  calibc stats               %8.2f s  (target: 10 s)", stats.seconds))

    print("\nnear-duplicate merging (compile --merge-tolerance x):")
    for x in [0.01, 0.05] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: calibc)
        p.arguments = ["compile", masks, "-o", dir + "/merged", "--force", "--merge-tolerance", String(x)]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        let line = output.split(separator: "\n").first { $0.contains("merge-similar") }.map(String.init) ?? "?"
        let note = line.components(separatedBy: "  ").filter { $0.contains("→") }.joined()
        print(String(format: "  x = %.2f: %@; tables %.1f MB", x, note, Double(size(dir + "/merged/calib_schedule.c")) / 1e6))
    }
}
