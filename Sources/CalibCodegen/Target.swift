// The seam between the compiler and a target: what a target adds to the pipeline, the files it
// emits, how they are checked before anything is written, and how they are built.

import CalibIR
import CalibPasses
import Foundation

public protocol Target: Sendable {
    /// The name `calibc compile --target` takes.
    var name: String { get }
    /// Passes this target runs after the common pipeline.
    var tail: [Pass] { get }
    /// The files of the output directory (the driver adds the manifest).
    func emit(_ program: Program, _ provenance: Provenance) throws -> [GeneratedFile]
    /// Rejects generated files that would not compile (a compiler bug), before anything is written.
    func check(_ files: [GeneratedFile]) throws
    /// What `--shared` builds inside the output directory.
    var libraryName: String { get }
    /// Every name this target may write into an output directory (the manifest and library
    /// included): with `--force`, a directory of these names alone may be replaced.
    var outputNames: [String] { get }
    /// The command that builds it, run in the output directory with relative names.
    var buildCommand: [String] { get }
    /// The compiler the build needs on PATH; without it `--shared` writes the sources and says
    /// how to build them.
    var buildTool: String { get }
    /// How this target's kernels take masks of `shape`, asked before anything is written.
    func fit(_ shape: Shape) -> ShapeFit
}

/// How a target's kernels take a shape.
public enum ShapeFit: Equatable, Sendable {
    /// By its fastest kernels.
    case fast
    /// By a slower kernel; why, for the user to read once.
    case slower(String)
    /// Not at all: the masks.json field at fault, and what the target takes.
    case refused(field: String, message: String)
}

extension Target {
    public var buildTool: String { buildCommand[0] }
    public func fit(_ shape: Shape) -> ShapeFit { .fast }
}

public enum Targets {
    public static let all: [any Target] = [CPUTarget(), CUDATarget()]

    public static func named(_ name: String) -> (any Target)? { all.first { $0.name == name } }
}

/// Runs a build tool with `dir` as its working directory and relative file names, so nothing
/// about where the directory was staged ends up in the output. Its temporary files go below
/// `dir/.calibc-tmp` (removed afterwards), and where util-linux's setpriv is installed the tool
/// dies with calibc: a killed compile leaves no compiler running and nothing outside `dir`.
public func runTool(_ arguments: [String], in dir: String) throws {
    let temporaries = dir + "/" + buildTemporaries
    try FileManager.default.createDirectory(atPath: temporaries, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: temporaries) }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["TMPDIR=" + temporaries] + (findTool("setpriv").map { [$0, "--pdeathsig", "KILL"] } ?? []) + arguments
    process.currentDirectoryURL = URL(fileURLWithPath: dir)
    let pipe = Pipe()
    process.standardError = pipe
    process.standardOutput = pipe
    try process.run()
    let log = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw CodegenError(message: "\(arguments[0]) failed building \(arguments.last ?? ""):\n\(log)")
    }
}

/// The first executable named `tool` on PATH.
public func findTool(_ tool: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    for dir in path.split(separator: ":") {
        let candidate = "\(dir)/\(tool)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
}
