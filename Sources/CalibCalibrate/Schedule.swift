// The mass threshold per diffusion step (docs/calibration.md, "Threshold per step"): the paper's
// ε(t) = A + (C − A)·exp(−k·t/T), from C at the noisiest step (t = 0) towards A at the last (t = T).

import Foundation

public struct MassSchedule: Sendable, Equatable, CustomStringConvertible {
    /// A: the threshold the schedule decays towards (the last step's, to within (C − A)·e^(−k)).
    public var final: Double
    /// C: the threshold at step 0, the noisiest.
    public var initial: Double
    /// k: how fast ε falls from C to A over the T steps.
    public var rate: Double
    /// T: the last step index; nil takes the last step the recordings hold.
    public var lastStep: Int?

    public init(final: Double, initial: Double, rate: Double, lastStep: Int? = nil) {
        (self.final, self.initial, self.rate, self.lastStep) = (final, initial, rate, lastStep)
    }

    /// The paper's Wan 2.1 values: 0.99 at the noisiest step, 0.84 at the last. With A = 0.84 the
    /// curve only reaches A asymptotically; k = 6 puts the last step at 0.84 + 0.15·e^(−6) = 0.8404,
    /// within 0.0005 of 0.84 (any k ≥ ln(0.15 / 0.0005) = 5.70 does).
    public static let wan = MassSchedule(final: 0.84, initial: 0.99, rate: 6)
    public static let presets: [(name: String, schedule: MassSchedule)] = [("wan", .wan)]

    /// ε(step) with T = `lastStep` (or the given last recorded step).
    public func threshold(step: Int, lastRecordedStep: Int) -> Double {
        let t = Double(lastStep ?? lastRecordedStep)
        let x = t > 0 ? Double(step) / t : 0
        return final + (initial - final) * exp(-rate * x)
    }

    /// `exp:A,C,k,T`, the form `parse` reads back (T only when fixed).
    public var description: String {
        "exp:\(final),\(initial),\(rate)" + (lastStep.map { ",\($0)" } ?? "")
    }

    public static let syntax = "wan, wan:T, exp:A,C,k or exp:A,C,k,T"

    /// Reads `wan`, `wan:T`, `exp:A,C,k` or `exp:A,C,k,T`; A and C in (0, 1], k ≥ 0, T ≥ 1.
    public static func parse(_ text: String) throws -> MassSchedule {
        func fail(_ why: String) -> CalibrationError {
            CalibrationError(message: "--mass-schedule \(text): \(why)")
        }
        let (head, tail): (Substring, Substring?) = {
            guard let colon = text.firstIndex(of: ":") else { return (Substring(text), nil) }
            return (text[..<colon], text[text.index(after: colon)...])
        }()
        let fields = tail.map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) } ?? []
        func lastStep(_ s: String) throws -> Int {
            guard let t = Int(s), t >= 1 else { throw fail("T must be a positive integer (the last step index), got \(s)") }
            return t
        }
        var schedule: MassSchedule
        if let preset = presets.first(where: { $0.name == head }) {
            schedule = preset.schedule
            guard fields.count <= 1 else { throw fail("expected \(syntax)") }
            if let t = fields.first { schedule.lastStep = try lastStep(t) }
        } else if head == "exp" {
            guard fields.count == 3 || fields.count == 4 else { throw fail("expected \(syntax)") }
            let numbers = fields.prefix(3).map { Double($0) }
            for (name, (value, field)) in zip(["A", "C"], zip(numbers, fields)) {
                guard let v = value, v > 0, v <= 1 else { throw fail("\(name) must be a mass fraction in (0, 1], got \(field)") }
            }
            guard let k = numbers[2], k >= 0, k.isFinite else { throw fail("k must be a non-negative number, got \(fields[2])") }
            schedule = MassSchedule(final: numbers[0]!, initial: numbers[1]!, rate: k)
            if fields.count == 4 { schedule.lastStep = try lastStep(fields[3]) }
        } else {
            throw fail("unknown schedule \(head) (expected \(syntax))")
        }
        return schedule
    }
}
