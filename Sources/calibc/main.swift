// calibc: argument parsing and reporting only; every stage is a library call (CalibDriver for
// compiling). Usage errors exit 2, input errors 1.

import CalibCalibrate
import CalibCodegen
import CalibDriver
import CalibFrontend
import CalibIR
import CalibKernelSources
import CalibPasses
import CalibPictures
import CalibSupport
import CalibSynth
import Foundation

let version = "calibc 0.4.0 (kernel C ABI \(KernelSources.abiVersion(header: "calib_kernels.h", macro: "CALIB_ABI_VERSION")), "
    + "CUDA ABI \(KernelSources.abiVersion(header: "calib_cuda.h", macro: "CALIB_CUDA_ABI_VERSION")))"

func seconds(_ s: Double) -> String {
    s < 1 ? String(format: "%.1f ms", s * 1000) : String(format: "%.2f s", s)
}

func seconds(since start: DispatchTime) -> String {
    seconds(Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9)
}

let mergeOption = Option(name: "--merge-tolerance", value: "X", help: """
    merge plans whose kept tiles differ in at most X (a fraction) into their
    union: fewer plans, never fewer tiles for any (step, layer, head); default off
    """)
let targetOption = Option(name: "--target", value: "T", help: "code generation target: \(Targets.all.map(\.name).joined(separator: " or ")) (default cpu)")

func compileOptions(_ a: Parsed) throws -> CompileOptions {
    var options = CompileOptions()
    options.mergeTolerance = try a.fraction("--merge-tolerance") ?? 0
    if let name = a.value("--target") {
        guard let target = Targets.named(name) else {
            throw UsageError(description: "unknown --target \(name) (known: \(Targets.all.map(\.name).joined(separator: ", ")))")
        }
        options.target = target
    }
    return options
}

/// Runs `write`, which writes `path` (a file, or a directory of them); a file-system failure is
/// described as `OutputPaths.write` describes one, in words, not as a Foundation error's text.
func writing<T>(_ path: String, _ write: () throws -> T) throws -> T {
    do {
        return try write()
    } catch let e as NSError where e.domain == NSCocoaErrorDomain || e.domain == NSPOSIXErrorDomain {
        throw OutputPathError(message: "\(path): could not write the output: \(OutputPaths.describe(e))")
    }
}

/// Prints the driver's steps as `compile` reports them.
func printEvent(_ event: DriverEvent) {
    switch event {
    case .parsed(let s): print("parse       \(seconds(s))")
    case let .pass(name, s, before, after):
        var note = ""
        if name == "merge-similar" {
            note = String(format: "  %d → %d plans, mean density %.4f → %.4f", before.plans.count, after.plans.count,
                          before.meanDensity(), after.meanDensity())
        }
        print("  \(name.padding(toLength: 15, withPad: " ", startingAt: 0)) \(seconds(s))\(note)")
    case .emitted(let s): print("codegen     \(seconds(s))")
    case .checked(let s): print("check       \(seconds(s))")
    case .checkSkipped(let reason): print("check       skipped: \(reason); the C files are written unparsed")
    case let .slower(file, why): print("note: \(file): \(why)")
    case let .built(library, s): print("shared lib  \(seconds(s))  \(library)")
    case let .buildSkipped(tool, command): print("\(tool) is not installed here: the sources are written; build them with\n  \(command)")
    case let .wrote(directory, s): print("write       \(seconds(s))  \(directory)")
    }
}

let compile = Command(
    name: "compile", operands: "<masks.json>... -o <dir>",
    summary: """
        Writes a target's sources (tables, kernels, headers) to <dir>, replacing it atomically;
        several masks files of one model (one per token grid) give an artifact: <dir>/<shape>/ each
        and <dir>/shapes.json, from which the runtime picks by the grid of each call.
        """,
    options: [
        Option(name: "-o", value: "<dir>", help: "output directory, e.g. generated/CalibKernels"),
        targetOption, mergeOption,
        Option(name: "--force", value: nil, help: "replace <dir> even if calibc did not write it"),
        Option(name: "--shared", value: nil, help: """
            also build the shared library (cpu: <dir>/libcalibkernels.so with clang;
            cuda: <dir>/libcalibcuda.so with nvcc, where installed)
            """),
    ]) { a in
    guard !a.operands.isEmpty else { throw UsageError(description: "missing <masks.json>") }
    let out = try a.required("-o", "<dir>")
    var options = try compileOptions(a)
    options.shared = a.flag("--shared")
    options.force = a.flag("--force")
    if a.operands.count == 1 {
        let result = try Driver.compile(masks: a.operands[0], to: out, options: options, report: printEvent)
        print("wrote \(out): \(result.program.plans.count) unique plans for \(result.program.shape.dispatchCount) (step, layer, head)")
    } else {
        let results = try Driver.compile(masks: a.operands, to: out, options: options, report: printEvent)
        print("wrote \(out): \(results.count) shapes, " + results.map { "\($0.program.shape.tokens) tokens: \($0.program.plans.count) unique plans" }.joined(separator: ", "))
    }
}

let ir = Command(
    name: "ir", operands: "<masks.json>",
    summary: "Prints the program in canonical IR text form (docs/ir.md), after every pass or after one.",
    options: [
        Option(name: "--print-after", value: "<pass>", help: "parse (before any pass), or a pass: \(Pipeline.names.joined(separator: ", "))"),
        targetOption, mergeOption,
    ]) { a in
    let options = try compileOptions(a)
    let stop = a.value("--print-after")
    let passes = options.passes
    if let stop, stop != "parse", !passes.contains(where: { $0.name == stop }) {
        throw UsageError(description: "pass \(stop) does not run here; passes: parse, \(passes.map(\.name).joined(separator: ", "))")
    }
    let masks = try Driver.load(try a.operand("<masks.json>"))
    if stop == "parse" {
        print(masks.program.text, terminator: "")
        return
    }
    var printed = false
    let final = Driver.optimize(masks.program, passes) { event in
        if case let .pass(name, _, _, p) = event, name == stop, !printed {
            print(p.text, terminator: "")
            printed = true
        }
    }
    if !printed { print(final.text, terminator: "") }
}

let opt = Command(
    name: "opt", operands: "<file.ir>",
    summary: "Reads canonical IR text, runs the named passes in order and prints the result (the tests' golden files).",
    options: [
        Option(name: "--passes", value: "<a,b,…>", help: "passes to run, comma-separated: \(Pipeline.names.joined(separator: ", "))"),
        mergeOption,
    ]) { a in
    let path = try a.operand("<file.ir>")
    let tolerance = try a.fraction("--merge-tolerance") ?? 0
    let names = try a.required("--passes", "<a,b,…>").split(separator: ",").map(String.init)
    let passes = try names.map { name in
        guard let pass = Pipeline.named(name, mergeTolerance: tolerance) else {
            throw UsageError(description: "unknown pass \(name); passes: \(Pipeline.names.joined(separator: ", "))")
        }
        return pass
    }
    guard let data = FileManager.default.contents(atPath: path) else { throw CodegenError(message: "\(path): cannot read the file") }
    let program: Program
    do {
        program = try IRParser.parse(String(decoding: data, as: UTF8.self))
        try program.verify()
    } catch {
        throw CodegenError(message: "\(path): \(error)")
    }
    print(Driver.optimize(program, passes).text, terminator: "")
}

let stats = Command(
    name: "stats", operands: "<masks.json>",
    summary: "Density per step, layer and head, unique plans, dedupe ratio and reuse fraction.",
    options: [
        mergeOption,
        Option(name: "--show", value: "<step>,<layer>,<head>", help: "draw the block mask of the plan used at that (step, layer, head)"),
    ]) { a in
    let input = try a.operand("<masks.json>")
    let options = try compileOptions(a)
    let show = try a.value("--show").map { try HeadSelector(parsing: $0) }
    let progress = Progress("stats")  // parse, passes, statistics: 13 s on a Wan 2.1 14B-size set
    let masks = try Driver.load(input)
    let stepIndex = try show?.check(masks.program.shape)
    progress.update(1, 3)
    let program = Driver.optimize(masks.program, options.passes)
    progress.update(2, 3)
    let report = program.statsReport()
    progress.update(3, 3)
    print(report, terminator: "")
    if let show, let s = stepIndex {
        let plan = program.plan(stepIndex: s, layer: show.layer, head: show.head)
        print("\nplan @\(plan.name) at step \(show.step) layer \(show.layer) head \(show.head) (rows: query blocks, columns: key blocks):")
        print(plan.drawing(), terminator: "")
    }
}

let synth = Command(
    name: "synth", operands: "-o <dir>",
    summary: """
    Writes N recordings (prompt0.safetensors …, default 3) of video-like queries and keys:
    12 frames of 16×16 tokens (3072), head_dim 128, 2 layers × 6 heads, steps 0, 20, 40.
    Heads per layer: spatial, temporal, two local-3D windows, a sink, and one whose hot spot
    moves with the prompt (docs/calibration.md).
    """,
    options: [
        Option(name: "-o", value: "<path>", help: "output directory (or masks file with --masks)"),
        Option(name: "--prompts", value: "N", help: "recordings to write (default 3)"),
        Option(name: "--seed", value: "S", help: "random seed (default 1)"),
        Option(name: "--shape", value: "small|wan1.3b-480p", help: """
            small (the above) or Wan 2.1 1.3B at 480p: 21 frames of 30×52 tokens (32,760),
            head_dim 128, 1 layer × 6 heads, steps 0, 20, 40 (raw bf16 q and k: 100 MB
            per step of 6 heads, per prompt)
            """),
        Option(name: "--layers", value: "N", help: "layers (default 2 small, 1 wan1.3b-480p)"),
        Option(name: "--heads", value: "N", help: "heads per layer, cycling through the six kinds (default 6)"),
        Option(name: "--steps", value: "<t,t,…>", help: "step indices (default 0,20,40; step 0 attends more broadly)"),
        Option(name: "--text", value: "N", help: """
            N text tokens joined to the video (default 0), last as in Mochi 1 and
            HunyuanVideo or first as in CogVideoX: a few text keys draw mass from every
            video query, text queries attend broadly. Text last: each prompt has its own
            valid length (metadata text_valid; prompt 0: N/2 + N/8 + 1, others N/2…N)
            """),
        Option(name: "--text-position", value: "first|last", help: "where the text goes (default last)"),
        Option(name: "--mass-block", value: "B", help: """
            write block mass in blocks of B tokens (docs/recordings.md) instead of q and k,
            as a recorder does at full resolution; calibrate with --block B
            """),
        Option(name: "--masks", value: "wan14b", help: """
            write a mask set of Wan 2.1 14B's size instead (40 layers × 40 heads × 50 steps,
            75,600 tokens, blocks of 128): spatial, temporal, local-3D, sink and dense heads
            """),
    ]) { a in
    guard a.operands.isEmpty else { throw UsageError(description: "unexpected argument \(a.operands[0])") }
    let out = try a.required("-o", "<path>")
    let seed = UInt64(try a.int("--seed", default: 1, range: 0...Int.max))
    if let preset = a.value("--masks") {
        guard preset == "wan14b" else { throw UsageError(description: "unknown --masks preset \(preset) (known: wan14b)") }
        try OutputPaths.checkFile(out, inputs: [])
        let start = DispatchTime.now()
        let progress = Progress("synth")
        // Two halves of one bar, in thousandths: generating the plans, then writing the JSON.
        let program = SynthMasks.program(SynthMasks.Config(), seed: seed) { progress.update($0 * 1000 / $1, 2000) }
        let text = MaskWriter.json(program, layout: Layout(frames: 21, height: 45, width: 80, textTokens: 0, textFirst: false)) {
            progress.update(1000 + $0 * 1000 / $1, 2000)
        }
        try OutputPaths.write(Data(text.utf8), to: out)
        print("wrote \(out): \(text.utf8.count) bytes, \(program.shape.dispatchCount) (step, layer, head) in \(seconds(since: start))")
        return
    }
    var config: SynthConfig
    switch a.value("--shape") ?? "small" {
    case "small": config = SynthConfig()
    case "wan1.3b-480p": config = SynthConfig.wan13b480p()
    case let other: throw UsageError(description: "unknown --shape \(other) (known: small, wan1.3b-480p)")
    }
    config.layers = try a.int("--layers", default: config.layers, range: 1...100)
    config.heads = try a.int("--heads", default: config.heads, range: 1...128)
    if let text = a.value("--steps") {
        let steps = text.split(separator: ",", omittingEmptySubsequences: false).map { Int($0) }
        guard !steps.isEmpty, steps.allSatisfy({ ($0 ?? -1) >= 0 }), zip(steps, steps.dropFirst()).allSatisfy({ $0! < $1! }) else {
            throw UsageError(description: "--steps expects strictly ascending step indices like 0,20,40, got \(text)")
        }
        config.steps = steps.map { $0! }
        config.stepGain = config.steps.map { $0 == 0 ? 0.7 : 1.0 }
    }
    config.textTokens = try a.int("--text", default: 0, range: 0...100_000)
    switch a.value("--text-position") ?? "last" {
    case "last": config.textFirst = false
    case "first": config.textFirst = true
    case let other: throw UsageError(description: "--text-position expects first or last, got \(other)")
    }
    if a.value("--mass-block") != nil { config.massBlock = try a.int("--mass-block", default: 128, range: 1...1024) }
    try OutputPaths.checkFilesDirectory(out)
    let progress = Progress("synth")
    let prompts = try a.int("--prompts", default: 3, range: 1...1000)
    let paths = try writing(out) { try Synth.write(config, prompts: prompts, seed: seed, to: out, progress: progress.update) }
    print("wrote \(paths.joined(separator: ", "))")
}

let calibrate = Command(
    name: "calibrate", operands: "<recording.safetensors>... -o <masks.json>",
    summary: """
    Measures block attention mass on the recordings and writes masks.json; held-out
    recordings are only used to report kept mass and output error (docs/calibration.md).
    Inputs are folded one at a time into a calibration state (--state-out writes it);
    with --merge the operands are such states, merged before the masks are decided.
    """,
    options: [
        Option(name: "-o", value: "<masks.json>", help: "the masks file to write"),
        Option(name: "--state-out", value: "<state>", help: "also (or only) write the calibration state, a safetensors file"),
        Option(name: "--merge", value: nil, help: """
            the operands are calibration states (from --state-out) over different
            prompts: merge them, then decide the masks as one run over all their prompts
            """),
        Option(name: "--holdout", value: "<recording>", help: "a recording to check on, not calibrate on", repeatable: true),
        Option(name: "--block", value: "B", help: "tile size in tokens, 1…1024 (default 64)"),
        Option(name: "--mass", value: "T", help: "keep, per query block, the fewest key blocks holding T of its mass on every input (default 0.95)"),
        Option(name: "--mass-schedule", value: "S", help: """
            or a threshold per step, ε(t) = A + (C − A)·exp(−k·t/T): \(MassSchedule.syntax)
            (wan: 0.99 at step 0 down to 0.84 at T; T defaults to the last recorded step)
            """),
        Option(name: "--density", value: "R", help: "or keep, per head, the heaviest R of all tiles"),
        Option(name: "--sample-rows", value: "S", help: "measure block mass on every S-th row of each query block (default 1: all rows; S times less work)"),
        Option(name: "--stability-drop", value: "X", help: """
            a head is dense when leaving one input out loses more than X of its mass
            (default 0.05); fixed when inputs are folded, as --reuse-tolerance
            """),
        Option(name: "--reuse-tolerance", value: "X", help: """
            L1 distance of block-mass rows, on every input, for a query block to reuse
            another (default 0.02; 0: off); fixed when inputs are folded: with --merge the
            states' value is used, and another value is refused
            """),
        Option(name: "--report", value: "<report.html>", help: "also write the calibration report as a page with the masks drawn"),
    ]) { a in
    guard !a.operands.isEmpty else { throw UsageError(description: a.flag("--merge") ? "missing <state.safetensors>" : "missing <recording.safetensors>") }
    let out = a.value("-o"), stateOut = a.value("--state-out")
    guard out != nil || stateOut != nil else { throw UsageError(description: "missing -o <masks.json> (or --state-out <state>)") }
    var options = CalibrationOptions()
    let selectionOptions = ["--block", "--mass", "--mass-schedule", "--density", "--sample-rows"]
    if a.flag("--merge"), let fixed = selectionOptions.first(where: { a.value($0) != nil }) {
        throw UsageError(description: "\(fixed) is fixed in the calibration states and cannot be given with --merge")
    }
    options.block = try a.int("--block", default: 64, range: 1...1024)
    options.rowStep = try a.int("--sample-rows", default: 1, range: 1...options.block)
    let mass = try a.fraction("--mass")
    if let mass, mass == 0 { throw UsageError(description: "--mass expects a number in (0, 1], got \(a.value("--mass")!)") }
    let schedule = try a.value("--mass-schedule").map { text in
        do { return try MassSchedule.parse(text) } catch let e as CalibrationError { throw UsageError(description: e.message) }
    }
    switch (mass, schedule, try a.fraction("--density")) {
    case (let m?, nil, nil): options.selection = .mass(m)
    case (nil, let s?, nil): options.selection = .schedule(s)
    case (nil, nil, let d?): options.selection = .density(d)
    case (nil, nil, nil): break
    default: throw UsageError(description: "give one of --mass, --mass-schedule and --density")
    }
    options.stabilityDrop = try a.fraction("--stability-drop") ?? options.stabilityDrop
    options.reuseTolerance = try a.fraction("--reuse-tolerance") ?? options.reuseTolerance
    try options.validate()
    let inputs = a.operands + a.all("--holdout")
    if let out { try OutputPaths.checkFile(out, inputs: inputs) }
    if let stateOut { try OutputPaths.checkFile(stateOut, inputs: inputs + [out].compactMap { $0 }) }
    if let report = a.value("--report") {
        guard let out else { throw UsageError(description: "--report needs -o <masks.json>") }
        try OutputPaths.checkFile(report, inputs: inputs + [out] + [stateOut].compactMap { $0 })
    }
    let start = DispatchTime.now()
    let holdout = try a.all("--holdout").map(Recording.init(path:))
    let progress = Progress("calibrate")
    var state: CalibrationState
    if a.flag("--merge") {
        state = try CalibrationState(path: a.operands[0])
        for path in a.operands.dropFirst() { try state.merge(try CalibrationState(path: path), file: path, into: a.operands[0]) }
        if a.value("--reuse-tolerance") == nil { options.reuseTolerance = state.reuseTolerance }
        if a.value("--stability-drop") == nil { options.stabilityDrop = state.stabilityDrop }
        try state.checkFolded(options, file: a.operands[0])
    } else {
        try Calibrator.checkCount(a.operands.count)
        let recordings = try a.operands.map(Recording.init(path:))
        let perHead = recordings.count + (out == nil ? 0 : holdout.count)
        state = try Calibrator.fold(recordings, options: options) { done, units in progress.update(done, units / recordings.count * perHead) }
    }
    if let stateOut {
        try writing(stateOut) { try state.write(to: stateOut) }  // atomic, as OutputPaths.write
        print("wrote \(stateOut): the state of \(state.inputs) inputs, \(state.heads.count) (step, layer, head), \(state.tensorBytes) bytes of tensors")
    }
    guard let out else { return }
    let folded = a.flag("--merge") ? 0 : state.heads.count * state.inputs
    let finished = try Calibrator.finish(state, holdout: holdout, options: options) { done, units in progress.update(folded + done, folded + units) }
    let (result, gap) = Calibrator.fitDistinctRanges(finished)
    if gap > 0 {
        print(String(format: "note: the plans' distinct rows held more key-block ranges than compile's tables take (%d): "
                     + "runs of up to %d skipped blocks between kept ones are kept too, mean density %.4f → %.4f "
                     + "(the figures below are of the plans before)", Limits.maxDistinctRanges, gap,
                     finished.program.meanDensity(), result.program.meanDensity()))
    }
    let text = try Calibrator.masksJSON(result, file: out)
    try OutputPaths.write(Data(text.utf8), to: out)
    print(CalibrationReport.text(result, calibrationInputs: state.inputs, holdoutInputs: holdout.count))
    print("wrote \(out) (\(text.utf8.count) bytes) in \(seconds(since: start))")
    if let report = a.value("--report") {
        let page = HTMLReport.page(result, calibrationInputs: state.inputs, holdoutInputs: holdout.count)
        try OutputPaths.write(Data(page.utf8), to: report)
        print("wrote \(report)")
    }
}

let draw = Command(
    name: "draw", operands: "<masks.json> -o <file.png>",
    summary: "Draws a plan's block mask, or the density of every (step, layer, head), as a PNG.",
    options: [
        Option(name: "-o", value: "<file.png>", help: "the picture to write"),
        Option(name: "--show", value: "<step>,<layer>,<head>", help: "the plan of that (step, layer, head): dark tiles computed, orange rows reused"),
        Option(name: "--overview", value: nil, help: "density per (step, layer) row and head column, white 0 to dark blue 1"),
        Option(name: "--size", value: "PIXELS", help: "about this many pixels on a side (default 640)"),
    ]) { a in
    let input = try a.operand("<masks.json>")
    let out = try a.required("-o", "<file.png>")
    let size = try a.int("--size", default: 640, range: 16...8192)
    guard (a.value("--show") != nil) != a.flag("--overview") else { throw UsageError(description: "give --show <step>,<layer>,<head> or --overview") }
    let show = try a.value("--show").map { try HeadSelector(parsing: $0) }
    try OutputPaths.checkFile(out, inputs: [input])
    let program = try Driver.load(input).program
    let image: RGBImage
    if let show {
        let s = try show.check(program.shape)
        image = Pictures.plan(Driver.optimize(program, Pipeline.common()).plan(stepIndex: s, layer: show.layer, head: show.head), size: size)
    } else {
        image = Pictures.overview(program, size: size)
    }
    try OutputPaths.write(Data(image.png), to: out)
    print("wrote \(out) (\(image.width)×\(image.height))")
}

let commands = [compile, ir, opt, stats, draw, synth, calibrate]

let usage = """
    \(version): compiles calibrated attention masks into attention kernels

    usage:
    \(commands.map { "  " + $0.usage }.joined(separator: "\n"))
      calibc --version

    Run `calibc <command> --help` for a command's options.
    """

let argv = CommandLine.arguments
/// One line on stderr, with what the input or the command line put there made visible (`visible`).
func report(_ line: String) {
    FileHandle.standardError.write(Data(visible(line).utf8))
}

// No command at all is a usage error (status 2, the usage on stderr), as in other compilers.
guard argv.count > 1 else {
    FileHandle.standardError.write(Data("calibc: no command given\n\n\(usage)\n".utf8))
    exit(2)
}
let word = argv[1]
let rest = argv.dropFirst(2)
let command = commands.first { $0.name == word }
do {
    switch word {
    case "--help", "-h", "help": print(usage)
    case "--version": print(version)
    default:
        guard let command else { throw UsageError(description: "unknown command \(word)") }
        if rest.contains("--help") || rest.contains("-h") {
            print(command.help, terminator: "")
        } else {
            try command.run(try command.parse(rest))
        }
    }
} catch let e as UsageError {
    report("calibc: \(e.description)")
    FileHandle.standardError.write(Data("\n\n\(command?.help ?? usage)\n".utf8))
    exit(2)
} catch let e as ArgumentError {
    report("calibc: \(e.description)")
    FileHandle.standardError.write(Data("\n".utf8))
    exit(2)
} catch {
    report("calibc: error: \(error)")
    FileHandle.standardError.write(Data("\n".utf8))
    exit(1)
}
