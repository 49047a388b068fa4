// calibc: argument parsing and reporting only; every stage is a library call.

import CalibCodegen
import CalibFrontend
import CalibIR
import CalibPasses
import Foundation

let usage = """
    calibc — compiles calibrated attention masks into C/OpenMP kernels

    usage:
      calibc compile <masks.json> -o <dir> [--threads N] [--force]
      calibc ir <masks.json> [--threads N] [--print-after <pass>]
      calibc stats <masks.json> [--show <step>,<layer>,<head>]

    Run `calibc <command> --help` for a command's options.
    """

let compileHelp = """
    usage: calibc compile <masks.json> -o <dir> [--threads N] [--force]

    Writes a C target (sources, include/, module map) to <dir>, replacing it atomically.
      -o <dir>       output directory, e.g. generated/CalibKernels
      --threads N    threads the static schedule is balanced for (default 2)
      --force        replace <dir> even if calibc did not write it
    """

let irHelp = """
    usage: calibc ir <masks.json> [--threads N] [--print-after <pass>]

    Prints the program in canonical IR text form, after all passes or after <pass>:
      parse (before any pass), \(Pipeline.passes.map(\.name).joined(separator: ", "))
    """

let statsHelp = """
    usage: calibc stats <masks.json> [--show <step>,<layer>,<head>]

    Density per step, layer and head, unique plans, dedupe ratio and reuse fraction.
      --show s,l,h   draw the block mask of the plan used at step s, layer l, head h
    """

struct UsageError: Error, CustomStringConvertible {
    var description: String
}

/// Options after the command word: one positional input plus `--name value` flags.
struct Arguments {
    var input: String?
    var values: [String: String] = [:]
    var flags: Set<String> = []

    init(_ args: ArraySlice<String>, valued: Set<String>, flags allowedFlags: Set<String>) throws {
        var it = args.makeIterator()
        while let a = it.next() {
            if a.hasPrefix("-") {
                let (name, inline) = a.contains("=") ? (String(a.prefix { $0 != "=" }), String(a.drop { $0 != "=" }.dropFirst())) : (a, nil)
                if valued.contains(name) {
                    guard let v = inline ?? it.next() else { throw UsageError(description: "\(name) needs a value") }
                    values[name] = v
                } else if allowedFlags.contains(name), inline == nil {
                    flags.insert(name)
                } else {
                    throw UsageError(description: "unknown option \(a)")
                }
            } else {
                guard input == nil else { throw UsageError(description: "unexpected argument \(a)") }
                input = a
            }
        }
    }

    func requireInput() throws -> String {
        guard let input else { throw UsageError(description: "missing <masks.json>") }
        return input
    }

    func int(_ name: String, default value: Int) throws -> Int {
        guard let text = values[name] else { return value }
        guard let v = Int(text), v > 0 else { throw UsageError(description: "\(name) expects a positive integer, got \(text)") }
        return v
    }
}

func seconds(since start: DispatchTime) -> String {
    let ms = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e6
    return ms < 1000 ? String(format: "%.1f ms", ms) : String(format: "%.2f s", ms / 1000)
}

func compile(_ args: ArraySlice<String>) throws {
    let a = try Arguments(args, valued: ["-o", "--threads"], flags: ["--force"])
    let input = try a.requireInput()
    guard let out = a.values["-o"] else { throw UsageError(description: "missing -o <dir>") }
    var t = DispatchTime.now()
    let masks = try Frontend.load(path: input, threads: try a.int("--threads", default: 2))
    print("parse      \(seconds(since: t))")
    t = DispatchTime.now()
    var passTimer = DispatchTime.now()
    let program = Pipeline.run(masks.program) { pass, _ in
        print("  \(pass.name.padding(toLength: 15, withPad: " ", startingAt: 0)) \(seconds(since: passTimer))")
        passTimer = DispatchTime.now()
    }
    print("passes     \(seconds(since: t))")
    t = DispatchTime.now()
    let files = Codegen.emit(program, source: URL(fileURLWithPath: input).lastPathComponent, passes: Pipeline.passes.map(\.name))
    print("codegen    \(seconds(since: t))")
    t = DispatchTime.now()
    try OutputWriter.write(files, to: out, force: a.flags.contains("--force"))
    print("check+write \(seconds(since: t))")
    print("wrote \(out): \(program.plans.count) unique plans for \(program.shape.dispatchCount) (step, layer, head)")
}

func ir(_ args: ArraySlice<String>) throws {
    let a = try Arguments(args, valued: ["--threads", "--print-after"], flags: [])
    let masks = try Frontend.load(path: try a.requireInput(), threads: try a.int("--threads", default: 2))
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
    let a = try Arguments(args, valued: ["--show"], flags: [])
    let masks = try Frontend.load(path: try a.requireInput(), threads: 2)
    let program = Pipeline.run(masks.program)
    print(program.statsReport(), terminator: "")
    if let show = a.values["--show"] {
        let parts = show.split(separator: ",").compactMap { Int($0) }
        guard parts.count == 3 else { throw UsageError(description: "--show expects <step>,<layer>,<head>") }
        guard let s = program.shape.steps.firstIndex(of: parts[0]), (0..<program.shape.layers).contains(parts[1]),
              (0..<program.shape.heads).contains(parts[2]) else {
            throw UsageError(description: "--show \(show): no such step, layer or head")
        }
        let plan = program.plan(stepIndex: s, layer: parts[1], head: parts[2])
        print("\nplan @\(plan.name) at step \(parts[0]) layer \(parts[1]) head \(parts[2]) (rows: query blocks, columns: key blocks):")
        print(plan.drawing(), terminator: "")
    }
}

let argv = CommandLine.arguments
let command = argv.count > 1 ? argv[1] : "--help"
let rest = argv.dropFirst(2)
let helps = ["compile": compileHelp, "ir": irHelp, "stats": statsHelp]
do {
    if let help = helps[command], rest.contains("--help") || rest.contains("-h") {
        print(help)
        exit(0)
    }
    switch command {
    case "compile": try compile(rest)
    case "ir": try ir(rest)
    case "stats": try stats(rest)
    case "--help", "-h", "help":
        print(usage)
    default:
        throw UsageError(description: "unknown command \(command)")
    }
} catch let e as UsageError {
    FileHandle.standardError.write(Data("calibc: \(e.description)\n\n\(helps[command] ?? usage)\n".utf8))
    exit(2)
} catch {
    FileHandle.standardError.write(Data("calibc: error: \(error)\n".utf8))
    exit(1)
}
