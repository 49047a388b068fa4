// A small table-driven argument parser: each command declares its options once, and usage,
// help and the parser all come from that declaration.

import Foundation

struct UsageError: Error, CustomStringConvertible {
    var description: String
}

struct Option {
    let name: String
    /// The value's placeholder (`N`, `<dir>`); nil for a flag.
    let value: String?
    let help: String
    var repeatable = false
}

struct Command {
    let name: String
    /// Positional arguments as usage shows them.
    let operands: String
    let summary: String
    let options: [Option]
    var details = ""
    let run: (Parsed) throws -> Void

    var usage: String {
        let opts = options.map { o in o.value.map { "[\(o.name) \($0)]" } ?? "[\(o.name)]" }.joined(separator: " ")
        return "calibc \(name) \(operands) \(opts)".replacingOccurrences(of: "  ", with: " ")
    }

    var help: String {
        var out = "usage: \(usage)\n\n\(summary)\n"
        if !options.isEmpty {
            out += "\noptions:\n"
            let width = options.map { $0.name.count + ($0.value.map { $0.count + 1 } ?? 0) }.max()! + 2
            for o in options {
                let head = o.name + (o.value.map { " " + $0 } ?? "")
                let lines = o.help.split(separator: "\n")
                out += "  " + head.padding(toLength: width, withPad: " ", startingAt: 0) + lines[0] + "\n"
                for line in lines.dropFirst() { out += String(repeating: " ", count: width + 2) + line + "\n" }
            }
        }
        if !details.isEmpty { out += "\n" + details + "\n" }
        return out
    }

    func parse(_ args: ArraySlice<String>) throws -> Parsed {
        var parsed = Parsed()
        var it = args.makeIterator()
        while let a = it.next() {
            guard a.hasPrefix("-"), a.count > 1 else {
                parsed.operands.append(a)
                continue
            }
            let (name, inline) = a.contains("=") ? (String(a.prefix { $0 != "=" }), String(a.drop { $0 != "=" }.dropFirst())) : (a, nil)
            guard let option = options.first(where: { $0.name == name }) else { throw UsageError(description: "unknown option \(a)") }
            if option.value != nil {
                guard let v = inline ?? it.next() else { throw UsageError(description: "\(name) needs a value") }
                if !option.repeatable, parsed.values[name] != nil { throw UsageError(description: "\(name) given twice") }
                parsed.values[name, default: []].append(v)
            } else {
                guard inline == nil else { throw UsageError(description: "\(name) takes no value") }
                parsed.flags.insert(name)
            }
        }
        return parsed
    }
}

struct Parsed {
    var operands: [String] = []
    var values: [String: [String]] = [:]
    var flags: Set<String> = []

    func value(_ name: String) -> String? { values[name]?.last }
    func all(_ name: String) -> [String] { values[name] ?? [] }
    func flag(_ name: String) -> Bool { flags.contains(name) }

    func operand(_ what: String) throws -> String {
        guard operands.count == 1 else {
            throw UsageError(description: operands.isEmpty ? "missing \(what)" : "unexpected argument \(operands[1])")
        }
        return operands[0]
    }

    func required(_ name: String, _ what: String) throws -> String {
        guard let v = value(name) else { throw UsageError(description: "missing \(name) \(what)") }
        return v
    }

    func int(_ name: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
        guard let text = self.value(name) else { return value }
        guard let v = Int(text), range.contains(v) else {
            throw UsageError(description: "\(name) expects an integer in \(range.lowerBound)…\(range.upperBound), got \(text)")
        }
        return v
    }

    func fraction(_ name: String) throws -> Double? {
        guard let text = value(name) else { return nil }
        guard let v = Double(text), v >= 0, v <= 1 else { throw UsageError(description: "\(name) expects a number in [0, 1], got \(text)") }
        return v
    }
}
