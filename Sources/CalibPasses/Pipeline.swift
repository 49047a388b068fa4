// The table of contents of the optimizer: the passes, in the order they run. Targets append
// their own tail (the CPU target: `chunk`), so a pipeline is these plus that tail.

import CalibIR

/// A named, pure IR → IR function.
public struct Pass: Sendable {
    public let name: String
    public let run: @Sendable (Program) -> Program

    public init(name: String, run: @escaping @Sendable (Program) -> Program) {
        self.name = name
        self.run = run
    }
}

public enum Pipeline {
    /// The passes every target runs. `mergeTolerance` > 0 adds `merge-similar`.
    public static func common(mergeTolerance: Double = 0) -> [Pass] {
        var passes = [
            Pass(name: "merge-runs", run: mergeRuns),
            Pass(name: "collapse-reuse", run: collapseReuse),
            Pass(name: "dedupe", run: dedupe),
        ]
        if mergeTolerance > 0 {
            passes.append(Pass(name: "merge-similar") { mergeSimilar($0, tolerance: mergeTolerance) })
        }
        passes.append(Pass(name: "reorder", run: reorder))
        return passes
    }

    /// Every pass by name, for `calibc opt --passes=…`.
    public static func named(_ name: String, mergeTolerance: Double = 0) -> Pass? {
        switch name {
        case "merge-similar": return Pass(name: name) { mergeSimilar($0, tolerance: mergeTolerance) }
        case "chunk": return Pass(name: name, run: chunk)
        default: return common().first { $0.name == name }
        }
    }

    public static let names = ["merge-runs", "collapse-reuse", "dedupe", "merge-similar", "reorder", "chunk"]

    /// Runs `passes` in order, verifying the IR after each; `after` sees each result (for
    /// `--print-after` and timings).
    public static func run(_ program: Program, _ passes: [Pass], after: (Pass, Program) -> Void = { _, _ in }) -> Program {
        var p = program
        for pass in passes {
            p = pass.run(p)
            do {
                try p.verify()
            } catch {
                fatalError("internal error: pass \(pass.name) produced invalid IR: \(error)")
            }
            after(pass, p)
        }
        return p
    }
}
