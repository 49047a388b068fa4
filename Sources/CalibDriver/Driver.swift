// The compiler driver: masks file (or a Program) → parse → common passes → the target's tail →
// emit → check → write → build. The command line, the benchmarks, the tests and the fuzzers all
// compile through here, so the sequence exists once.

import CalibCodegen
import CalibFrontend
import CalibIR
import CalibPasses
import Foundation

public struct CompileOptions {
    public var target: any Target = CPUTarget()
    /// Plans whose kept tiles differ by at most this fraction merge into their union (0: off).
    public var mergeTolerance: Double = 0
    /// Also build the target's shared library in the output directory.
    public var shared = false
    /// Replace an output directory calibc did not write.
    public var force = false

    public init() {}

    /// The passes that run, in order: the common pipeline, then the target's tail.
    public var passes: [Pass] { Pipeline.common(mergeTolerance: mergeTolerance) + target.tail }
}

/// What the driver did, step by step, for whoever prints progress.
public enum DriverEvent {
    case parsed(seconds: Double)
    case pass(name: String, seconds: Double, before: Program, after: Program)
    case emitted(seconds: Double)
    case checked(seconds: Double)
    /// The generated C was written without libclang's check (`reason`).
    case checkSkipped(reason: String)
    /// The target takes the masks of `file` on a slower kernel (`why`).
    case slower(file: String, why: String)
    case built(library: String, seconds: Double)
    /// The target's build tool is not installed: the sources are written, this command builds them.
    case buildSkipped(tool: String, command: String)
    case wrote(directory: String, seconds: Double)
}

public struct Compilation {
    public var program: Program
    public var files: [GeneratedFile]
}

public enum Driver {
    public static func load(_ path: String, report: (DriverEvent) -> Void = { _ in }) throws -> Masks {
        let start = DispatchTime.now()
        let masks = try Frontend.load(path: path)
        report(.parsed(seconds: elapsed(since: start)))
        return masks
    }

    /// Runs `passes`, verifying after each.
    public static func optimize(_ program: Program, _ passes: [Pass], report: (DriverEvent) -> Void = { _ in }) -> Program {
        var before = program
        var start = DispatchTime.now()
        return Pipeline.run(program, passes) { pass, p in
            report(.pass(name: pass.name, seconds: elapsed(since: start), before: before, after: p))
            before = p
            start = DispatchTime.now()
        }
    }

    /// Optimizes, emits and checks: the files of the output directory, nothing written yet.
    public static func generate(_ program: Program, source: String, options: CompileOptions,
                                report: (DriverEvent) -> Void = { _ in }) throws -> Compilation {
        let passes = options.passes
        let optimized = optimize(program, passes, report: report)
        var start = DispatchTime.now()
        let provenance = Provenance(source: source, passes: passes.map(\.name))
        var files = try options.target.emit(optimized, provenance)
        var listed = files.map(\.path)
        if options.shared, findTool(options.target.buildTool) != nil { listed.append(options.target.libraryName) }
        files.append(Codegen.manifest(optimized, provenance, target: options.target.name, files: listed + [Codegen.manifestName]))
        report(.emitted(seconds: elapsed(since: start)))
        start = DispatchTime.now()
        do {
            try options.target.check(files)
            report(.checked(seconds: elapsed(since: start)))
        } catch let e as CheckUnavailable {
            report(.checkSkipped(reason: e.reason))
        }
        return Compilation(program: optimized, files: files)
    }

    /// The whole compile of a masks file into `output`.
    @discardableResult
    public static func compile(masks path: String, to output: String, options: CompileOptions,
                               report: (DriverEvent) -> Void = { _ in }) throws -> Compilation {
        // The output is checked before the long work, and again when it is written.
        try OutputPaths.checkDirectory(output, inputs: [path], generated: options.target.outputNames, force: options.force)
        var parsed: [DriverEvent] = []  // reported once the target takes the shape: bad input prints nothing else
        let masks = try load(path) { parsed.append($0) }
        let fit = try fitShape(masks, path, options.target)
        parsed.forEach(report)
        fit.map(report)
        return try compile(masks.program, source: URL(fileURLWithPath: path).lastPathComponent, to: output,
                           options: options, inputs: [path], report: report)
    }

    /// The whole compile of a program; `source` is the name its banners quote.
    @discardableResult
    public static func compile(_ program: Program, source: String, to output: String, options: CompileOptions,
                               inputs: [String] = [], report: (DriverEvent) -> Void = { _ in }) throws -> Compilation {
        let compilation = try generate(program, source: source, options: options, report: report)
        let target = options.target
        let start = DispatchTime.now()
        try OutputWriter.write(compilation.files, to: output, force: options.force, inputs: inputs,
                               generated: target.outputNames) { staging in
            guard options.shared else { return }
            guard findTool(target.buildTool) != nil else {
                report(.buildSkipped(tool: target.buildTool, command: "cd \(output) && " + target.buildCommand.joined(separator: " ")))
                return
            }
            let build = DispatchTime.now()
            try runTool(target.buildCommand, in: staging)
            report(.built(library: output + "/" + target.libraryName, seconds: elapsed(since: build)))
        }
        report(.wrote(directory: output, seconds: elapsed(since: start)))
        return compilation
    }

    /// Several masks files of one model, one per token grid, into one artifact: `output/<shape>/`
    /// holds each one's kernels as a single compile writes them, and `shapes.json` lists them
    /// for the runtime to pick by the grid of each call. Written and built as one directory, in
    /// one rename. Two files of one grid, or of different models' layers, heads or head_dim,
    /// are refused before anything is written.
    @discardableResult
    public static func compile(masks paths: [String], to output: String, options: CompileOptions,
                               report: (DriverEvent) -> Void = { _ in }) throws -> [Compilation] {
        let target = options.target
        var loaded: [(path: String, masks: Masks, name: String)] = []
        var parsed: [DriverEvent] = []  // reported once every file is known good: bad input prints nothing else
        for path in paths {
            let masks = try load(path) { parsed.append($0) }
            try fitShape(masks, path, target).map { parsed.append($0) }
            let shape = masks.program.shape
            let name = Artifact.shapeName(shape, masks.layout)
            if let first = loaded.first, first.masks.program.shape.layers != shape.layers || first.masks.program.shape.heads != shape.heads
                || first.masks.program.shape.headDim != shape.headDim {
                throw ArtifactError(message: "\(path): \(shape.layers) layers × \(shape.heads) heads of head_dim \(shape.headDim) differ from \(first.path)'s \(Artifact.describe(first.masks.program.shape)); an artifact holds one model's shapes")
            }
            if let same = loaded.first(where: { $0.name == name || Artifact.overlaps($0.masks, masks) }) {
                throw ArtifactError(message: "\(path) and \(same.path) both hold plans for \(Artifact.describeGrid(shape, masks.layout)); an artifact holds one plan set per shape")
            }
            loaded.append((path, masks, name))
        }
        try OutputPaths.checkDirectory(output, inputs: paths, generated: Artifact.outputNames(loaded.map(\.name), target), force: options.force)
        parsed.forEach(report)
        var compilations: [Compilation] = []
        var files: [GeneratedFile] = []
        for entry in loaded {
            let c = try generate(entry.masks.program, source: URL(fileURLWithPath: entry.path).lastPathComponent, options: options, report: report)
            compilations.append(c)
            files += c.files.map { GeneratedFile(path: entry.name + "/" + $0.path, contents: $0.contents) }
        }
        let built = options.shared && findTool(target.buildTool) != nil
        files.append(Artifact.shapes(loaded.map { ($0.name, $0.masks) }, compilations.map(\.program), target: target, built: built))
        files.append(Artifact.manifest(files.map(\.path) + (built ? loaded.map { $0.name + "/" + target.libraryName } : []), target: target.name))
        let start = DispatchTime.now()
        try OutputWriter.write(files, to: output, force: options.force, inputs: paths) { staging in
            guard options.shared else { return }
            guard built else {
                report(.buildSkipped(tool: target.buildTool, command: loaded.map { "(cd \(output)/\($0.name) && " + target.buildCommand.joined(separator: " ") + ")" }.joined(separator: "; ")))
                return
            }
            for entry in loaded {
                let build = DispatchTime.now()
                try runTool(target.buildCommand, in: staging + "/" + entry.name)
                report(.built(library: output + "/" + entry.name + "/" + target.libraryName, seconds: elapsed(since: build)))
            }
        }
        report(.wrote(directory: output, seconds: elapsed(since: start)))
        return compilations
    }

    /// Masks of a shape the target cannot compile, refused in the input's terms; the event that
    /// says a slower kernel takes them.
    static func fitShape(_ masks: Masks, _ path: String, _ target: any Target) throws -> DriverEvent? {
        switch target.fit(masks.program.shape) {
        case .fast: return nil
        case let .slower(why): return .slower(file: path, why: why)
        case let .refused(field, message): throw CodegenError(message: "\(path): $.\(field): \(message)")
        }
    }

    static func elapsed(since start: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
    }
}
