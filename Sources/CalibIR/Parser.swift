// Reads the canonical text form (see Printer.swift) back into a Program.

public struct IRParseError: Error, CustomStringConvertible, Equatable {
    public var line: Int
    public var message: String
    public var description: String { "line \(line): \(message)" }
}

public enum IRParser {
    public static func parse(_ text: String) throws -> Program {
        var p = Cursor(tokens: try tokenize(text))
        return try p.program()
    }
}

private enum Token: Equatable {
    case word(String)
    case number(Int)
    case string(String)
    case name(String)  // @plan
    case punct(String)
}

private struct Located {
    var token: Token
    var line: Int
}

private func isNameChar(_ c: Character) -> Bool {
    c.isLetter || c.isNumber || c == "_" || c == "." || c == "-"
}

private func tokenize(_ text: String) throws -> [Located] {
    var out: [Located] = []
    var line = 1
    let chars = Array(text)
    var i = 0
    while i < chars.count {
        let c = chars[i]
        if c == "\n" { line += 1; i += 1; continue }
        if c == " " || c == "\t" || c == "\r" { i += 1; continue }
        if c.isASCII && c.isNumber {
            var j = i
            while j < chars.count, chars[j].isASCII, chars[j].isNumber { j += 1 }
            guard let v = Int(String(chars[i..<j])) else {
                throw IRParseError(line: line, message: "number out of range")
            }
            out.append(Located(token: .number(v), line: line))
            i = j
        } else if c.isLetter || c == "_" {
            var j = i
            while j < chars.count, chars[j].isLetter || chars[j].isNumber || chars[j] == "_" || chars[j] == "." {
                j += 1
            }
            out.append(Located(token: .word(String(chars[i..<j])), line: line))
            i = j
        } else if c == "@" {
            var j = i + 1
            while j < chars.count, isNameChar(chars[j]) { j += 1 }
            guard j > i + 1 else { throw IRParseError(line: line, message: "expected a plan name after '@'") }
            out.append(Located(token: .name(String(chars[(i + 1)..<j])), line: line))
            i = j
        } else if c == "\"" {
            var s = ""
            var j = i + 1
            while true {
                guard j < chars.count, chars[j] != "\n" else {
                    throw IRParseError(line: line, message: "unterminated string")
                }
                if chars[j] == "\"" { break }
                if chars[j] == "\\", j + 1 < chars.count {
                    j += 1
                    s.append(chars[j] == "n" ? "\n" : chars[j])
                } else {
                    s.append(chars[j])
                }
                j += 1
            }
            out.append(Located(token: .string(s), line: line))
            i = j + 1
        } else if c == "-", i + 1 < chars.count, chars[i + 1] == ">" {
            out.append(Located(token: .punct("->"), line: line))
            i += 2
        } else if c == ".", i + 1 < chars.count, chars[i + 1] == "." {
            out.append(Located(token: .punct(".."), line: line))
            i += 2
        } else if "{}[](),:".contains(c) {
            out.append(Located(token: .punct(String(c)), line: line))
            i += 1
        } else {
            throw IRParseError(line: line, message: "unexpected character '\(c)'")
        }
    }
    return out
}

private struct Cursor {
    var tokens: [Located]
    var at = 0

    var line: Int { at < tokens.count ? tokens[at].line : (tokens.last?.line ?? 1) }
    var peek: Token? { at < tokens.count ? tokens[at].token : nil }

    func fail(_ message: String) -> IRParseError { IRParseError(line: line, message: message) }

    mutating func next() -> Token? {
        defer { at += 1 }
        return peek
    }

    mutating func expect(_ token: Token, _ what: String) throws {
        guard peek == token else { throw fail("expected \(what)") }
        at += 1
    }

    mutating func keyword(_ w: String) throws { try expect(.word(w), "'\(w)'") }
    mutating func punct(_ p: String) throws { try expect(.punct(p), "'\(p)'") }

    mutating func number(_ what: String) throws -> Int {
        guard case .number(let v)? = peek else { throw fail("expected \(what)") }
        at += 1
        return v
    }

    mutating func string(_ what: String) throws -> String {
        guard case .string(let v)? = peek else { throw fail("expected \(what)") }
        at += 1
        return v
    }

    mutating func name() throws -> String {
        guard case .name(let v)? = peek else { throw fail("expected a plan name '@…'") }
        at += 1
        return v
    }

    mutating func intList(_ what: String) throws -> [Int] {
        try punct("[")
        var values: [Int] = []
        if peek != .punct("]") {
            values.append(try number(what))
            while peek == .punct(",") {
                at += 1
                values.append(try number(what))
            }
        }
        try punct("]")
        return values
    }

    mutating func program() throws -> Program {
        try keyword("calib.program")
        let model = try string("the model name")
        try keyword("hash")
        let hash = try string("the source hash")
        try keyword("shape")
        try keyword("tokens")
        let tokens = try number("tokens")
        try keyword("head_dim")
        let headDim = try number("head_dim")
        try keyword("block")
        let block = try number("block")
        try keyword("layers")
        let layers = try number("layers")
        try keyword("heads")
        let heads = try number("heads")
        try keyword("steps")
        let steps = try intList("a step")
        let shape = Shape(tokens: tokens, headDim: headDim, block: block, layers: layers, heads: heads, steps: steps)
        guard block > 0, tokens > 0 else { throw fail("tokens and block must be positive") }

        var plans: [Plan] = []
        var index: [String: Int] = [:]
        while peek == .word("plan") {
            let plan = try self.plan(blocks: shape.blocks)
            guard index[plan.name] == nil else { throw fail("plan @\(plan.name) defined twice") }
            index[plan.name] = plans.count
            plans.append(plan)
        }

        var dispatch = [Int?](repeating: nil, count: shape.dispatchCount)
        try keyword("dispatch")
        try punct("{")
        while peek == .word("step") {
            let entryLine = line
            at += 1
            let step = try number("a step")
            guard let s = steps.firstIndex(of: step) else { throw fail("step \(step) is not in the shape") }
            try keyword("layer")
            let layer = try number("a layer")
            try keyword("head")
            let first = try number("a head")
            var last = first
            if peek == .punct("..") {
                at += 1
                last = try number("the last head")
            }
            try punct("->")
            let planName = try name()
            guard let p = index[planName] else { throw IRParseError(line: entryLine, message: "unknown plan @\(planName)") }
            guard layer < layers, first <= last, last < heads else {
                throw IRParseError(line: entryLine, message: "layer or head out of range")
            }
            for head in first...last {
                let d = shape.dispatchIndex(stepIndex: s, layer: layer, head: head)
                guard dispatch[d] == nil else { throw IRParseError(line: entryLine, message: "step \(step) layer \(layer) head \(head) dispatched twice") }
                dispatch[d] = p
            }
        }
        try punct("}")
        guard peek == nil else { throw fail("unexpected text after the dispatch table") }
        guard let missing = dispatch.firstIndex(of: nil) else {
            return Program(model: model, shape: shape, plans: plans, dispatch: dispatch.map { $0! }, sourceHash: hash)
        }
        throw fail("dispatch table has no plan for entry \(missing)")
    }

    mutating func plan(blocks: Int) throws -> Plan {
        try keyword("plan")
        let name = try name()
        try punct("{")
        var rows: [Row] = []
        while case .word(let w)? = peek, w.hasPrefix("q") {
            guard w == "q\(rows.count)" else { throw fail("expected row q\(rows.count)") }
            at += 1
            try punct(":")
            if peek == .word("reuse") {
                at += 1
                guard case .word(let src)? = next(), src.hasPrefix("q"), let s = Int(src.dropFirst()) else {
                    throw fail("expected a source row 'qN'")
                }
                rows.append(.reuse(s))
            } else {
                try keyword("compute")
                var spans: [Span] = []
                while peek == .punct("[") {
                    at += 1
                    let start = try number("a span start")
                    try punct(",")
                    let end = try number("a span end")
                    try punct(")")
                    spans.append(Span(start, end))
                }
                guard !spans.isEmpty else { throw fail("a compute row needs at least one span") }
                rows.append(.compute(spans))
            }
        }
        guard rows.count == blocks else { throw fail("plan @\(name) has \(rows.count) rows, expected \(blocks)") }
        var plan = Plan(name: name, rows: rows)
        if peek == .word("order") {
            at += 1
            plan.order = try intList("a row")
        }
        if peek == .word("chunks") {
            at += 1
            plan.chunks = try intList("a chunk boundary")
        }
        try punct("}")
        return plan
    }
}
