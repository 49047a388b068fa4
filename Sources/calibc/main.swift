// calibc: argument parsing and reporting only; every stage is a library call.

import CalibCalibrate
import CalibCodegen
import CalibFrontend
import CalibIR
import CalibPasses
import CalibSynth
import Foundation

let usage = """
    calibc — compiles calibrated attention masks into C/OpenMP kernels

    usage:
      calibc compile <masks.json> -o <dir> [--threads N] [--merge-tolerance X] [--force] [--shared]
      calibc ir <masks.json> [--threads N] [--merge-tolerance X] [--print-after <pass>]
      calibc stats <masks.json> [--merge-tolerance X] [--show <step>,<layer>,<head>]
      calibc synth -o <dir> [--prompts N] [--seed S]
      calibc synth --masks wan14b -o <masks.json>
      calibc calibrate <recording.safetensors>... -o <masks.json> [--holdout <recording>]... [options]

    Run `calibc <command> --help` for a command's options.
    """

let compileHelp = """
    usage: calibc compile <masks.json> -o <dir> [--threads N] [--merge-tolerance X] [--force] [--shared]

    Writes a C target (sources, include/, module map) to <dir>, replacing it atomically.
      -o <dir>       output directory, e.g. generated/CalibKernels
      --threads N    threads the static schedule is balanced for (default 2)
      --merge-tolerance X
                     merge plans whose kept tiles differ in at most X (a fraction) into their
                     union: fewer plans, never fewer tiles for any (step, layer, head)
      --force        replace <dir> even if calibc did not write it
      --shared       also build <dir>/libcalibkernels.so with the same C ABI (for ctypes, dlopen)
    """

let irHelp = """
    usage: calibc ir <masks.json> [--threads N] [--merge-tolerance X] [--print-after <pass>]

    Prints the program in canonical IR text form, after all passes or after <pass>:
      parse (before any pass), \(Pipeline.passes.map(\.name).joined(separator: ", "))
    """

let statsHelp = """
    usage: calibc stats <masks.json> [--merge-tolerance X] [--show <step>,<layer>,<head>]

    Density per step, layer and head, unique plans, dedupe ratio and reuse fraction.
      --show s,l,h   draw the block mask of the plan used at step s, layer l, head h
    """

let synthHelp = """
    usage: calibc synth -o <dir> [--prompts N] [--seed S]
           calibc synth --masks wan14b -o <masks.json> [--seed S]

    Writes N recordings (prompt0.safetensors …, default 3) of video-like queries and keys:
    12 frames of 16×16 tokens (3072), head_dim 128, 2 layers × 6 heads, steps 0, 20, 40.
    Heads per layer: spatial, temporal, two local-3D windows, a sink, and one whose hot spot
    moves with the prompt (docs/calibration.md).

    With --masks wan14b it writes a mask set of Wan 2.1 14B's size instead (40 layers × 40 heads
    × 50 steps, 75,600 tokens, blocks of 128): spatial, temporal, local-3D, sink and dense heads,
    wider windows in the first 10 steps, small per-head differences.
    """

let calibrateHelp = """
    usage: calibc calibrate <recording.safetensors>... -o <masks.json> [--holdout <recording>]... [options]

    Measures block attention mass on the recordings and writes masks.json; held-out
    recordings are only used to report kept mass and output error.
      --block B              tile size in tokens (default 64)
      --mass T               keep, per query block, the fewest key blocks holding T of its mass on every input (default 0.95)
      --density R            or keep, per head, the heaviest R of all tiles
      --stability-drop X     a head is dense when leaving one input out loses more than X of its mass (default 0.05)
      --reuse-tolerance X    L1 distance of block-mass rows for a query block to reuse another (default 0.02; 0: off)
      --threads N            threads the compiled schedule will be balanced for (default 2)
    """

struct UsageError: Error, CustomStringConvertible {
    var description: String
}

/// Options after the command word: positional inputs plus `--name value` flags (repeatable).
struct Arguments {
    var inputs: [String] = []
    var all: [String: [String]] = [:]
    var flags: Set<String> = []

    init(_ args: ArraySlice<String>, valued: Set<String>, flags allowedFlags: Set<String> = []) throws {
        var it = args.makeIterator()
        while let a = it.next() {
            if a.hasPrefix("-"), a.count > 1 {
                let (name, inline) = a.contains("=") ? (String(a.prefix { $0 != "=" }), String(a.drop { $0 != "=" }.dropFirst())) : (a, nil)
                if valued.contains(name) {
                    guard let v = inline ?? it.next() else { throw UsageError(description: "\(name) needs a value") }
                    all[name, default: []].append(v)
                } else if allowedFlags.contains(name), inline == nil {
                    flags.insert(name)
                } else {
                    throw UsageError(description: "unknown option \(a)")
                }
            } else {
                inputs.append(a)
            }
        }
    }

    var values: [String: String] { all.compactMapValues(\.last) }

    func requireInput() throws -> String {
        guard inputs.count == 1 else {
            throw UsageError(description: inputs.isEmpty ? "missing <masks.json>" : "unexpected argument \(inputs[1])")
        }
        return inputs[0]
    }

    func int(_ name: String, default value: Int) throws -> Int {
        guard let text = values[name] else { return value }
        guard let v = Int(text), v > 0 else { throw UsageError(description: "\(name) expects a positive integer, got \(text)") }
        return v
    }

    func fraction(_ name: String) throws -> Double? {
        guard let text = values[name] else { return nil }
        guard let v = Double(text), v >= 0, v <= 1 else { throw UsageError(description: "\(name) expects a number in [0, 1], got \(text)") }
        return v
    }
}

/// The masks file with the compile options of the command line applied.
func load(_ a: Arguments) throws -> Masks {
    var masks = try Frontend.load(path: try a.requireInput(), threads: try a.int("--threads", default: 2))
    masks.program.mergeTolerance = try a.fraction("--merge-tolerance") ?? 0
    return masks
}

func seconds(since start: DispatchTime) -> String {
    let ms = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e6
    return ms < 1000 ? String(format: "%.1f ms", ms) : String(format: "%.2f s", ms / 1000)
}

func compile(_ args: ArraySlice<String>) throws {
    let a = try Arguments(args, valued: ["-o", "--threads", "--merge-tolerance"], flags: ["--force", "--shared"])
    let input = try a.requireInput()
    guard let out = a.values["-o"] else { throw UsageError(description: "missing -o <dir>") }
    try OutputPaths.checkDirectory(out, inputs: [input], force: a.flags.contains("--force"))
    var t = DispatchTime.now()
    let masks = try load(a)
    print("parse      \(seconds(since: t))")
    t = DispatchTime.now()
    var passTimer = DispatchTime.now()
    var before = masks.program
    let program = Pipeline.run(masks.program) { pass, p in
        var note = ""
        if pass.name == "merge-similar", p.mergeTolerance > 0 {
            note = String(format: "  %d → %d plans, mean density %.4f → %.4f", before.plans.count, p.plans.count,
                          before.meanDensity(), p.meanDensity())
        }
        print("  \(pass.name.padding(toLength: 15, withPad: " ", startingAt: 0)) \(seconds(since: passTimer))\(note)")
        before = p
        passTimer = DispatchTime.now()
    }
    print("passes     \(seconds(since: t))")
    t = DispatchTime.now()
    let files = Codegen.emit(program, source: URL(fileURLWithPath: input).lastPathComponent, passes: Pipeline.passes.map(\.name))
    print("codegen    \(seconds(since: t))")
    t = DispatchTime.now()
    let shared = a.flags.contains("--shared")
    try OutputWriter.write(files, to: out, force: a.flags.contains("--force"), inputs: [input]) { staging in
        guard shared else { return }
        let build = DispatchTime.now()
        try SharedLibrary.build(sourceDir: staging, output: staging + "/" + SharedLibrary.fileName)
        print("shared lib  \(seconds(since: build))")
    }
    print("check+write \(seconds(since: t))")
    print("wrote \(out): \(program.plans.count) unique plans for \(program.shape.dispatchCount) (step, layer, head)")
}

func ir(_ args: ArraySlice<String>) throws {
    let a = try Arguments(args, valued: ["--threads", "--print-after", "--merge-tolerance"], flags: [])
    let masks = try load(a)
    let stop = a.values["--print-after"]
    if stop == "parse" {
        print(masks.program.text, terminator: "")
        return
    }
    if let stop, !Pipeline.passes.contains(where: { $0.name == stop }) {
        throw UsageError(description: "unknown pass \(stop); passes: parse, \(Pipeline.passes.map(\.name).joined(separator: ", "))")
    }
    var printed = false
    let final = Pipeline.run(masks.program) { pass, p in
        if pass.name == stop, !printed {
            print(p.text, terminator: "")
            printed = true
        }
    }
    if !printed { print(final.text, terminator: "") }
}

func stats(_ args: ArraySlice<String>) throws {
    let a = try Arguments(args, valued: ["--show", "--merge-tolerance"], flags: [])
    let show = try a.values["--show"].map { try HeadSelector(parsing: $0) }
    let progress = Progress("stats")  // parse, passes, statistics: 13 s on a Wan 2.1 14B-size set
    let masks = try load(a)
    try show?.check(masks.program.shape)
    progress.update(1, 3)
    let program = Pipeline.run(masks.program)
    progress.update(2, 3)
    let report = program.statsReport()
    progress.update(3, 3)
    print(report, terminator: "")
    if let show {
        let plan = program.plan(stepIndex: try show.check(program.shape), layer: show.layer, head: show.head)
        print("\nplan @\(plan.name) at step \(show.step) layer \(show.layer) head \(show.head) (rows: query blocks, columns: key blocks):")
        print(plan.drawing(), terminator: "")
    }
}

func synth(_ args: ArraySlice<String>) throws {
    let a = try Arguments(args, valued: ["-o", "--prompts", "--seed", "--masks"])
    guard a.inputs.isEmpty else { throw UsageError(description: "unexpected argument \(a.inputs[0])") }
    guard let out = a.values["-o"] else { throw UsageError(description: "missing -o <dir>") }
    if let preset = a.values["--masks"] {
        guard preset == "wan14b" else { throw UsageError(description: "unknown --masks preset \(preset) (known: wan14b)") }
        try OutputPaths.checkFile(out, inputs: [])
        let start = DispatchTime.now()
        let progress = Progress("synth")
        // Two halves of one bar, in thousandths: generating the plans, then writing the JSON.
        let program = SynthMasks.program(SynthMasks.Config(), seed: UInt64(try a.int("--seed", default: 1))) { progress.update($0 * 1000 / $1, 2000) }
        let text = MaskWriter.json(program, layout: Layout(frames: 21, height: 45, width: 80, textTokens: 0, textFirst: false)) {
            progress.update(1000 + $0 * 1000 / $1, 2000)
        }
        try OutputPaths.write(Data(text.utf8), to: out)
        print("wrote \(out): \(text.utf8.count) bytes, \(program.shape.dispatchCount) (step, layer, head) in \(seconds(since: start))")
        return
    }
    try OutputPaths.checkFilesDirectory(out)
    let progress = Progress("synth")
    let paths = try Synth.write(SynthConfig(), prompts: try a.int("--prompts", default: 3), seed: UInt64(try a.int("--seed", default: 1)),
                                to: out, progress: progress.update)
    print("wrote \(paths.joined(separator: ", "))")
}

func calibrate(_ args: ArraySlice<String>) throws {
    let a = try Arguments(args, valued: ["-o", "--holdout", "--block", "--mass", "--density", "--stability-drop", "--reuse-tolerance", "--threads"])
    guard !a.inputs.isEmpty else { throw UsageError(description: "missing <recording.safetensors>") }
    guard let out = a.values["-o"] else { throw UsageError(description: "missing -o <masks.json>") }
    var options = CalibrationOptions()
    options.block = try a.int("--block", default: 64)
    options.threads = try a.int("--threads", default: 2)
    switch (try a.fraction("--mass"), try a.fraction("--density")) {
    case (_?, _?): throw UsageError(description: "give --mass or --density, not both")
    case (let m?, nil): options.selection = .mass(m)
    case (nil, let d?): options.selection = .density(d)
    case (nil, nil): break
    }
    options.stabilityDrop = try a.fraction("--stability-drop") ?? options.stabilityDrop
    options.reuseTolerance = try a.fraction("--reuse-tolerance") ?? options.reuseTolerance
    try options.validate()
    try OutputPaths.checkFile(out, inputs: a.inputs + (a.all["--holdout"] ?? []))
    let start = DispatchTime.now()
    let recordings = try a.inputs.map(Recording.init(path:))
    let holdout = try (a.all["--holdout"] ?? []).map(Recording.init(path:))
    let result = try Calibrator.run(calibration: recordings, holdout: holdout, options: options, progress: Progress("calibrate").update)
    let text = try Calibrator.masksJSON(result, file: out)
    try OutputPaths.write(Data(text.utf8), to: out)
    print(CalibrationReport.text(result, calibrationInputs: recordings.count, holdoutInputs: holdout.count))
    print("wrote \(out) (\(text.utf8.count) bytes) in \(seconds(since: start))")
}

let argv = CommandLine.arguments
let command = argv.count > 1 ? argv[1] : "--help"
let rest = argv.dropFirst(2)
let helps = ["compile": compileHelp, "ir": irHelp, "stats": statsHelp, "synth": synthHelp, "calibrate": calibrateHelp]
do {
    if let help = helps[command], rest.contains("--help") || rest.contains("-h") {
        print(help)
        exit(0)
    }
    switch command {
    case "compile": try compile(rest)
    case "ir": try ir(rest)
    case "stats": try stats(rest)
    case "synth": try synth(rest)
    case "calibrate": try calibrate(rest)
    case "--help", "-h", "help":
        print(usage)
    default:
        throw UsageError(description: "unknown command \(command)")
    }
} catch let e as UsageError {
    FileHandle.standardError.write(Data("calibc: \(e.description)\n\n\(helps[command] ?? usage)\n".utf8))
    exit(2)
} catch let e as ArgumentError {
    FileHandle.standardError.write(Data("calibc: \(e.description)\n".utf8))
    exit(2)
} catch {
    FileHandle.standardError.write(Data("calibc: error: \(error)\n".utf8))
    exit(1)
}
