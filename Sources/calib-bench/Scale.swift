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
/// (wait4's rusage: RUSAGE_CHILDREN would give the largest child so far). The kernel counts this
/// process's own high-water mark into the child's when it execs, so children run while this
/// process is small: inputs are written a piece at a time (`TextFile`), and the set is parsed
/// here only after every child has run.
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

/// A file written in pieces of about a megabyte, so this process never holds the whole text.
private final class TextFile {
    let handle: FileHandle
    var buffer = ""

    init(_ path: String) throws {
        FileManager.default.createFile(atPath: path, contents: nil)
        handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    }

    func write(_ text: String) throws {
        buffer += text
        if buffer.utf8.count > 1 << 20 { try flush() }
    }

    func close() throws {
        try flush()
        try handle.close()
    }

    private func flush() throws {
        try handle.write(contentsOf: Data(buffer.utf8))
        buffer = ""
    }
}

/// The most patterns, each distinct, with the most rows between them: 65,536 patterns of 64
/// query blocks (2^22 pattern rows); row q keeps [q, q + 1), or [q, q + 2) where bit q of the
/// pattern's number is set, so every pattern differs and the rows are few.
private func writePlanLimitMasks(_ path: String) throws -> (rows: Int, ranges: Int, distinct: Int) {
    let blocks = 64, patterns = 65_536
    let file = try TextFile(path)
    try file.write("{\"format\": 1, \"model\": \"plans\", \"tokens\": \(blocks), \"head_dim\": 8, \"block\": 1, ")
    try file.write("\"layers\": 16, \"heads\": 4096, \"timesteps\": [0], \"patterns\": {")
    for p in 0..<patterns {
        let rows = (0..<blocks).map { q in "[[\(q),\(min(blocks, q + 1 + (q < 16 ? p >> q & 1 : 0)))]]" }
        try file.write((p == 0 ? "" : ",") + "\"p\(p)\":{\"rows\":[" + rows.joined(separator: ",") + "]}")
    }
    try file.write("},\"assignments\":[")
    for p in 0..<patterns { try file.write((p == 0 ? "" : ",") + "{\"steps\":\"*\",\"layers\":\(p / 4096),\"heads\":\(p % 4096),\"pattern\":\"p\(p)\"}") }
    try file.write("]}\n")
    try file.close()
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
    let file = try TextFile(path)
    try file.write("{\"format\": 1, \"model\": \"limits\", \"tokens\": \(blocks), \"head_dim\": 8, \"block\": 1, ")
    try file.write("\"layers\": \(layers), \"heads\": \(heads), \"timesteps\": [0], \"patterns\": {")
    for p in 0..<patterns {
        let source = p % distinctPatterns, rotate = p / distinctPatterns
        let bitmap = (0..<blocks).flatMap { q in row(source * blocks + (q + rotate) % blocks) }
        try file.write((p == 0 ? "" : ", ") + "\"p\(p)\": {\"bitmap\": \"\(Data(bitmap).base64EncodedString())\"}")
    }
    try file.write("}, \"assignments\": [")
    try file.write((0..<patterns).map { p in
        "{\"steps\": \"*\", \"layers\": \"\(p * layers / patterns)-\((p + 1) * layers / patterns - 1)\", \"heads\": \"*\", \"pattern\": \"p\(p)\"}"
    }.joined(separator: ", "))
    try file.write("]}\n")
    try file.close()
    return (patterns * blocks * perRow, distinctPatterns * blocks * perRow, layers * heads)
}

/// A masks.json of one pattern-free shape: every (step, layer, head) runs the built-in dense plan.
private func denseMasks(_ path: String, tokens: Int, block: Int, layers: Int, heads: Int, steps: Int) throws {
    let text = "{\"format\": 1, \"model\": \"adversarial\", \"tokens\": \(tokens), \"head_dim\": 64, \"block\": \(block), "
        + "\"layers\": \(layers), \"heads\": \(heads), \"timesteps\": [\((0..<steps).map(String.init).joined(separator: ", "))], "
        + "\"patterns\": {}, \"assignments\": [{\"steps\": \"*\", \"layers\": \"*\", \"heads\": \"*\", \"pattern\": \"dense\"}]}\n"
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
}

/// IR text of `plans` plans of `blocks` rows each, `row(plan, q)` giving each row's line, one
/// (step, layer, head) per plan (4,096 heads a layer).
private func irText(_ path: String, plans: Int, blocks: Int, row: (Int, Int) -> String) throws {
    let heads = min(plans, 4096)
    precondition(plans % heads == 0)
    let file = try TextFile(path)
    try file.write("calib.program \"adversarial\" hash \"0\"\nshape tokens \(blocks) head_dim 8 block 1 layers \(plans / heads) heads \(heads) steps [0]\n")
    for p in 0..<plans {
        try file.write("\nplan @p\(p) {\n")
        for q in 0..<blocks { try file.write("  q\(q): " + row(p, q) + "\n") }
        try file.write("}\n")
    }
    try file.write("\ndispatch {\n")
    for p in 0..<plans { try file.write("  step 0 layer \(p / heads) head \(p % heads) -> @p\(p)\n") }
    try file.write("}\n")
    try file.close()
}

/// A recording of one head's q and k (F32, head_dim 1, random), for `calibrate --block 1`.
private func tinyRecording(_ path: String, tokens: Int) throws {
    var rng = SplitMix64(seed: 3)
    let tensorBytes = 4 * tokens
    var header = "{\"step0.layer0.k\": {\"dtype\": \"F32\", \"shape\": [1, \(tokens), 1], \"data_offsets\": [0, \(tensorBytes)]}, "
    header += "\"step0.layer0.q\": {\"dtype\": \"F32\", \"shape\": [1, \(tokens), 1], \"data_offsets\": [\(tensorBytes), \(2 * tensorBytes)]}}"
    var bytes = withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian, Array.init) + Array(header.utf8)
    for v in rng.floats(2 * tokens) { bytes += withUnsafeBytes(of: (2 * v).bitPattern.littleEndian, Array.init) }
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

private func size(_ path: String) -> Int {
    (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
}

func benchScale() throws {
    let calibc = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("calibc").path
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("calib-bench-scale-\(getpid())").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    // First, while this process is small: its peak is the floor of what a child reports.
    try benchAdversarial(calibc, dir)

    let masks = dir + "/wan14b.json"
    let generate = try run(calibc, ["synth", "--masks", "wan14b", "-o", masks])
    let bytes = size(masks)
    let compile = try run(calibc, ["compile", masks, "-o", dir + "/kernels"])
    let kernels = size(dir + "/kernels/calib_kernels.c"), tables = size(dir + "/kernels/calib_schedule.c")
    let cpu = CPUTarget()
    let build = try seconds { try runTool(cpu.buildCommand, in: dir + "/kernels") }
    let library = size(dir + "/kernels/" + cpu.libraryName)
    let stats = try run(calibc, ["stats", masks])

    let limit = dir + "/limits.json"
    let counts = try writeLimitMasks(limit)
    let limitBytes = size(limit)
    let atLimit = try run(calibc, ["compile", limit, "-o", dir + "/limits"])
    try? FileManager.default.removeItem(atPath: dir + "/limits")
    let plans = dir + "/plans.json"
    let planCounts = try writePlanLimitMasks(plans)
    let planBytes = size(plans)
    let atPlanLimit = try run(calibc, ["compile", plans, "-o", dir + "/plans"])
    try? FileManager.default.removeItem(atPath: dir + "/plans")

    var merged: [String] = []
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
        merged.append(String(format: "  x = %.2f: %@; tables %.1f MB", x, note, Double(size(dir + "/merged/calib_schedule.c")) / 1e6))
    }

    // Last, in this process: the parse alone, its hash and its JSON tree.
    var parse: [Double] = []
    for _ in 0..<3 {
        parse.append(try seconds { _ = try Frontend.load(path: masks) })
    }
    let parseSeconds = parse.sorted()[1]
    let raw = [UInt8](try Data(contentsOf: URL(fileURLWithPath: masks)))
    let hash = seconds { _ = SHA256.hex(raw) }
    let tree = try seconds { _ = try JSONReader.parse(raw) }

    print(String(format: "mask set: 40 layers × 40 heads × 50 steps = 80000 (step, layer, head), 75600 tokens, 591 × 591 blocks"))
    print(String(format: "  masks.json                 %8.1f MB (written in %.1f s)", Double(bytes) / 1e6, generate.seconds))
    print(String(format: "  parse + validate           %8.2f s  (%.0f MB/s, median of 3)", parseSeconds, Double(bytes) / 1e6 / parseSeconds))
    print(String(format: "    SHA-256 %.2f s on the second core beside: JSON tree %.2f s, then decoding and validation", hash, tree))
    print(String(format: "  calibc compile             %8.2f s  wall, peak memory %.0f MiB (targets: 60 s, 4096 MiB)", compile.seconds, compile.peakMiB))
    print(String(format: "  generated C                %8.1f KB of kernel code (the same for every masks file)", Double(kernels) / 1e3))
    print(String(format: "                             %8.1f MB of tables (grows with unique plans and rows)", Double(tables) / 1e6))
    print(String(format: "  C build (clang -O3)        %8.2f s  (target: 120 s), library %.1f MB", build, Double(library) / 1e6))
    print(String(format: "  calibc stats               %8.2f s  (target: 10 s)", stats.seconds))

    print("\nat the format's limits (docs/masks-format.md, \"Limits\"):")
    // The stated bound: 2 × file + 34 B × ranges + 300 B × distinct-row ranges + 110 B × dispatch entries (+ 100 MB base).
    let bound = (2.0 * Double(limitBytes) + 34 * Double(counts.ranges) + 300 * Double(counts.distinct) + 110 * Double(counts.dispatch)) / 1048576 + 100
    print(String(format: "  %.1f MB file: %d ranges, %d in distinct rows, %d (step, layer, head)", Double(limitBytes) / 1e6,
                 counts.ranges, counts.distinct, counts.dispatch))
    print(String(format: "  calibc compile             %8.2f s  wall, peak memory %.0f MiB (stated bound %.0f MiB)", atLimit.seconds,
                 atLimit.peakMiB, bound))
    let planBound = (2.0 * Double(planBytes) + 34 * Double(planCounts.ranges) + 300 * Double(planCounts.distinct)
                     + 400 * Double(planCounts.rows) + 110 * Double(planCounts.rows / 64)) / 1048576 + 100
    print(String(format: "  %.1f MB file: %d patterns × 64 rows (%d pattern rows), %d ranges", Double(planBytes) / 1e6,
                 planCounts.rows / 64, planCounts.rows, planCounts.ranges))
    print(String(format: "  calibc compile             %8.2f s  wall, peak memory %.0f MiB (stated bound %.0f MiB)", atPlanLimit.seconds,
                 atPlanLimit.peakMiB, planBound))

    print("\nnear-duplicate merging (compile --merge-tolerance x):")
    merged.forEach { print($0) }
}

/// The bounds docs/scale.md states ("Other commands"), in bytes: the program through the passes,
/// a picture with its PNG encoding, and one calibrated head with its state.
private enum Bound {
    static let base = 80e6
    static func program(rows: Int, ranges: Int, entries: Int) -> Double { 300 * Double(rows) + 40 * Double(ranges) + 24 * Double(entries) }
    static func picture(pixels: Int) -> Double { 16 * Double(pixels) }
    /// The head at hand (16 B a tile) and its state at the most (codes, reuse bits, and 6 B for
    /// each tile as a single-owner tile).
    static func calibratedHead(blocks: Int) -> Double { (16 + 0.2 + 0.0625 + 6) * Double(blocks * blocks) }
}

/// Small inputs at the format's limits that made `opt`, `draw`, `stats` and `calibrate` take
/// time or memory out of proportion to them (docs/scale.md, "Other commands"): each row runs the
/// release calibc once and prints its wall time and peak memory beside the stated bound.
private func benchAdversarial(_ calibc: String, _ dir: String) throws {
    print("small adversarial inputs at the format's limits (bounds: docs/scale.md, \"Other commands\"):")
    let base = try run(calibc, ["--version"])
    print(String(format: "  %@ %7.2f s %6.0f MiB   (the process alone)", "calibc --version".padding(toLength: 44, withPad: " ", startingAt: 0),
                 base.seconds, base.peakMiB))
    func row(_ label: String, _ args: [String], input: String, bound: Double) throws {
        let r = try run(calibc, args)
        print(String(format: "  %@ %7.2f s %6.0f MiB   bound %5.0f MiB  (%@)", label.padding(toLength: 44, withPad: " ", startingAt: 0),
                     r.seconds, r.peakMiB, (Bound.base + bound) / 1048576, input))
    }
    func mb(_ path: String) -> String { String(format: "%.1f MB", Double(size(path)) / 1e6) }

    // opt: 256 plans of reuse chains of 16,384 rows (the plan-row limit; each chain walked from
    // each row took B² steps); merge-similar on 65,536 plans whose tile counts make half of them
    // scan 32,768 groups, and on 16 plans of 16,384 blocks (a B × B bitmap and B² rebuild each).
    let chains = dir + "/chains.ir"
    try irText(chains, plans: 256, blocks: 16_384) { _, q in q == 0 ? "compute [0, 1)" : "reuse q\(q - 1)" }
    try row("opt collapse-reuse, 256 × 16,384-row chains", ["opt", chains, "--passes=collapse-reuse"],
            input: mb(chains) + " of IR", bound: Bound.program(rows: 256 * 16_384, ranges: 256, entries: 256))
    let counts = dir + "/counts.ir"
    // Plans 0-32,767 keep 31 tiles (row 0 whole), the rest 16: each of the second half compares its
    // count with the 32,768 groups of the first before it finds 64 it may join. Rows 1-15 hold the
    // plan number's bits, so no two plans are within 5% of each other.
    try irText(counts, plans: 65_536, blocks: 16) { p, q in
        let bit = (p >> (q - 1)) & 1
        return q == 0 ? (p < 32_768 ? "compute [0, 16)" : "compute [0, 1)") : "compute [\(bit), \(bit + 1))"
    }
    try row("opt merge-similar 0.05, 65,536 plans", ["opt", counts, "--passes=merge-similar", "--merge-tolerance", "0.05"],
            input: mb(counts) + " of IR; 1.1e9 count compares", bound: Bound.program(rows: 1 << 20, ranges: 1 << 20, entries: 65_536))
    let wide = dir + "/wide.ir"
    try irText(wide, plans: 16, blocks: 16_384) { p, q in "compute [\(q), \(q == p ? q + 2 : q + 1))" }
    try row("opt merge-similar 0.01, 16 plans × 16,384", ["opt", wide, "--passes=merge-similar", "--merge-tolerance", "0.01"],
            input: mb(wide) + " of IR", bound: Bound.program(rows: 1 << 18, ranges: 1 << 18, entries: 16))

    // draw and stats --show: the built-in dense plan at 16,384 blocks, from a few hundred bytes.
    let dense = dir + "/dense.json"
    try denseMasks(dense, tokens: 16_384 * 1024, block: 1024, layers: 1, heads: 1, steps: 1)
    let denseSize = "\(size(dense)) B of masks.json", denseProgram = Bound.program(rows: 16_384, ranges: 16_384, entries: 1)
    try row("draw --show, 16,384 blocks, default size", ["draw", dense, "--show", "0,0,0", "-o", dir + "/plan.png"], input: denseSize,
            bound: denseProgram + Bound.picture(pixels: 640 * 640))
    try row("draw --show, 16,384 blocks, --size 8192", ["draw", dense, "--show", "0,0,0", "-o", dir + "/plan.png", "--size", "8192"],
            input: denseSize, bound: denseProgram + Bound.picture(pixels: 8192 * 8192))
    try row("stats --show, 16,384 blocks", ["stats", dense, "--show", "0,0,0"], input: denseSize, bound: denseProgram)

    // 10^7 (step, layer, head): 2,441 steps × 4,096 layers × 1 head, from 14 KB.
    let tall = dir + "/tall.json"
    try denseMasks(tall, tokens: 64, block: 64, layers: 4096, heads: 1, steps: 2441)
    let tallSize = String(format: "%.0f KB of masks.json", Double(size(tall)) / 1e3), tallProgram = Bound.program(rows: 1, ranges: 1, entries: 9_998_336)
    try row("draw --overview, 2,441 steps × 4,096 layers", ["draw", tall, "--overview", "-o", dir + "/overview.png"], input: tallSize,
            bound: tallProgram + Bound.picture(pixels: 640 * 640))
    try row("stats, 2,441 steps × 4,096 layers", ["stats", tall], input: tallSize, bound: tallProgram)

    // The masks.json reader: 200,000 timesteps named by a range selector (each step was looked up
    // by a scan), and a pattern whose reuse rows form one 16,384-row chain (walked from each row).
    let steps = dir + "/steps.json"
    try Data(("{\"format\": 1, \"model\": \"adversarial\", \"tokens\": 16, \"head_dim\": 8, \"block\": 16, \"layers\": 1, "
              + "\"heads\": 1, \"timesteps\": [\((0..<200_000).map(String.init).joined(separator: ","))], \"patterns\": {}, "
              + "\"assignments\": [{\"steps\": \"0-199999\", \"layers\": 0, \"heads\": 0, \"pattern\": \"dense\"}]}\n").utf8)
        .write(to: URL(fileURLWithPath: steps))
    try row("stats, 200,000 timesteps by \"0-199999\"", ["stats", steps], input: mb(steps) + " of masks.json",
            bound: Bound.program(rows: 1, ranges: 1, entries: 200_000) + 2 * Double(size(steps)))
    let chain = dir + "/chain.json"
    let chainRows = "[[0, 1]]" + String(repeating: ", []", count: 16_383)
    let chainPairs = (1..<16_384).map { "[\($0), \($0 - 1)]" }.joined(separator: ",")
    try Data(("{\"format\": 1, \"model\": \"adversarial\", \"tokens\": 16384, \"head_dim\": 8, \"block\": 1, \"layers\": 1, "
              + "\"heads\": 1, \"timesteps\": [0], \"patterns\": {\"c\": {\"rows\": [\(chainRows)], \"reuse\": [\(chainPairs)]}}, "
              + "\"assignments\": [{\"steps\": \"*\", \"layers\": \"*\", \"heads\": \"*\", \"pattern\": \"c\"}]}\n").utf8)
        .write(to: URL(fileURLWithPath: chain))
    try row("stats, a 16,384-row reuse chain", ["stats", chain], input: mb(chain) + " of masks.json",
            bound: Bound.program(rows: 16_384, ranges: 1, entries: 1) + 2 * Double(size(chain)))

    // calibrate: head_dim 1 and blocks of 1 token, so B = tokens from a file of 8 bytes a token.
    for tokens in [2048, 4096] {
        let recording = dir + "/tiny\(tokens).safetensors"
        try tinyRecording(recording, tokens: tokens)
        for tolerance in ["0", "0.02"] {
            try row("calibrate B = \(tokens), --reuse-tolerance \(tolerance)",
                    ["calibrate", recording, "--block", "1", "--reuse-tolerance", tolerance, "-o", dir + "/tiny.json"],
                    input: String(format: "%.0f KB recording", Double(size(recording)) / 1e3), bound: Bound.calibratedHead(blocks: tokens))
        }
    }
    print("")
}
