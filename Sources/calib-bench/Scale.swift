// `calib-bench scale`: a Wan 2.1 14B-size mask set (calibc synth --masks wan14b) through the
// release calibc, timed as a user would run it: file size, parse throughput, compile wall time
// and peak memory, C build time, code and table sizes, near-duplicate merging, and stats.

import CalibCodegen
import CalibFrontend
import CalibIR
import CalibJSON
import CalibSupport
import Foundation

/// Runs `tool` with stdout discarded; wall time and that child's own peak resident memory
/// (wait4's rusage: RUSAGE_CHILDREN would give the largest child so far).
private func run(_ tool: String, _ args: [String]) throws -> (seconds: Double, peakMiB: Double) {
    var actions: posix_spawn_file_actions_t = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    let argv = ([tool] + args).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    let start = DispatchTime.now()
    guard posix_spawn(&pid, tool, &actions, nil, argv, environ) == 0 else {
        throw CocoaError(.executableLoad, userInfo: [NSLocalizedDescriptionKey: "cannot run \(tool)"])
    }
    var status: Int32 = 0
    var usage = rusage()
    while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
    guard status == 0 else { throw CocoaError(.executableLoad, userInfo: [NSLocalizedDescriptionKey: "\(tool) \(args.joined(separator: " ")) failed"]) }
    return (Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9, Double(usage.ru_maxrss) / 1024)
}

/// The most patterns, each distinct, with the most rows between them: 65,536 patterns of 64
/// query blocks (2^22 pattern rows); row q keeps [q, q + 1), or [q, q + 2) where bit q of the
/// pattern's number is set, so every pattern differs and the rows are few.
private func writePlanLimitMasks(_ path: String) throws -> (rows: Int, ranges: Int, distinct: Int) {
    let blocks = 64, patterns = 65_536
    var text = "{\"format\": 1, \"model\": \"plans\", \"tokens\": \(blocks), \"head_dim\": 8, \"block\": 1, "
    text += "\"layers\": 16, \"heads\": 4096, \"timesteps\": [0], \"patterns\": {"
    for p in 0..<patterns {
        let rows = (0..<blocks).map { q in "[[\(q),\(min(blocks, q + 1 + (q < 16 ? p >> q & 1 : 0)))]]" }
        text += (p == 0 ? "" : ",") + "\"p\(p)\":{\"rows\":[" + rows.joined(separator: ",") + "]}"
    }
    text += "},\"assignments\":["
    text += (0..<patterns).map { p in "{\"steps\":\"*\",\"layers\":\(p / 4096),\"heads\":\(p % 4096),\"pattern\":\"p\(p)\"}" }
        .joined(separator: ",")
    text += "]}\n"
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    return (patterns * blocks, patterns * blocks, 2 * blocks)
}

/// The largest masks file the format allows, on every limit at once (docs/masks-format.md,
/// "Limits"): 10^7 (step, layer, head), 2^25 key-block ranges of which 2^22 lie in distinct
/// rows. 1024 blocks per side; a row keeps 341 single blocks 3 apart, shifted by the bits of
/// its id, so rows are distinct where wanted; 12 patterns of distinct rows, 84 more that
/// rotate those rows (no new distinct row). Bitmaps keep the file at 17 MB.
private func writeLimitMasks(_ path: String) throws -> (ranges: Int, distinct: Int, dispatch: Int) {
    let blocks = 1024, stride = blocks / 8, perRow = 341, distinctPatterns = 12, patterns = 96
    let layers = 4096, heads = 2441
    func row(_ id: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: stride)
        for i in 0..<perRow {
            let k = 3 * i + (id >> (i % 20) & 1)
            bytes[k / 8] |= 1 << UInt8(k % 8)
        }
        return bytes
    }
    var text = "{\"format\": 1, \"model\": \"limits\", \"tokens\": \(blocks), \"head_dim\": 8, \"block\": 1, "
    text += "\"layers\": \(layers), \"heads\": \(heads), \"timesteps\": [0], \"patterns\": {"
    for p in 0..<patterns {
        let source = p % distinctPatterns, rotate = p / distinctPatterns
        let bitmap = (0..<blocks).flatMap { q in row(source * blocks + (q + rotate) % blocks) }
        text += (p == 0 ? "" : ", ") + "\"p\(p)\": {\"bitmap\": \"\(Data(bitmap).base64EncodedString())\"}"
    }
    text += "}, \"assignments\": ["
    text += (0..<patterns).map { p in
        "{\"steps\": \"*\", \"layers\": \"\(p * layers / patterns)-\((p + 1) * layers / patterns - 1)\", \"heads\": \"*\", \"pattern\": \"p\(p)\"}"
    }.joined(separator: ", ")
    text += "]}\n"
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    return (patterns * blocks * perRow, distinctPatterns * blocks * perRow, layers * heads)
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

    print("\nat the format's limits (docs/masks-format.md, \"Limits\"):")
    let limit = dir + "/limits.json"
    let counts = try writeLimitMasks(limit)
    let limitBytes = size(limit)
    let atLimit = try run(calibc, ["compile", limit, "-o", dir + "/limits"])
    // The stated bound: 2 × file + 34 B × ranges + 300 B × distinct-row ranges + 110 B × dispatch entries (+ 100 MB base).
    let bound = (2.0 * Double(limitBytes) + 34 * Double(counts.ranges) + 300 * Double(counts.distinct) + 110 * Double(counts.dispatch)) / 1048576 + 100
    print(String(format: "  %.1f MB file: %d ranges, %d in distinct rows, %d (step, layer, head)", Double(limitBytes) / 1e6,
                 counts.ranges, counts.distinct, counts.dispatch))
    print(String(format: "  calibc compile             %8.2f s  wall, peak memory %.0f MiB (stated bound %.0f MiB)", atLimit.seconds,
                 atLimit.peakMiB, bound))
    try? FileManager.default.removeItem(atPath: dir + "/limits")
    let plans = dir + "/plans.json"
    let planCounts = try writePlanLimitMasks(plans)
    let planBytes = size(plans)
    let atPlanLimit = try run(calibc, ["compile", plans, "-o", dir + "/plans"])
    let planBound = (2.0 * Double(planBytes) + 34 * Double(planCounts.ranges) + 300 * Double(planCounts.distinct)
                     + 400 * Double(planCounts.rows) + 110 * Double(planCounts.rows / 64)) / 1048576 + 100
    print(String(format: "  %.1f MB file: %d patterns × 64 rows (%d pattern rows), %d ranges", Double(planBytes) / 1e6,
                 planCounts.rows / 64, planCounts.rows, planCounts.ranges))
    print(String(format: "  calibc compile             %8.2f s  wall, peak memory %.0f MiB (stated bound %.0f MiB)", atPlanLimit.seconds,
                 atPlanLimit.peakMiB, planBound))
    try? FileManager.default.removeItem(atPath: dir + "/plans")

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
