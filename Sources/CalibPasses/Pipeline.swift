// The table of contents of the optimizer: the passes, in the order they run.

import CalibIR

/// A named, pure IR → IR function.
public struct Pass: Sendable {
    public let name: String
    public let run: @Sendable (Program) -> Program
}

public enum Pipeline {
    public static let passes: [Pass] = [
        Pass(name: "merge-runs", run: mergeRuns),
        Pass(name: "collapse-reuse", run: collapseReuse),
        Pass(name: "dedupe", run: dedupe),
        Pass(name: "merge-similar", run: mergeSimilar),
        Pass(name: "reorder", run: reorder),
        Pass(name: "balance", run: balance),
    ]

    /// Runs every pass, verifying the IR after each; `after` sees each result (for
    /// `--print-after` and timings).
    public static func run(_ program: Program, after: (Pass, Program) -> Void = { _, _ in }) -> Program {
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
