// Reads the canonical text form (see Printer.swift) back into a Program.
//
// The text is often edited by hand (`calibc opt`), so nothing in it is trusted: every number is
// range-checked against `Limits` (the masks.json frontend's limits) before any arithmetic or
// allocation depends on it, and every rule the verifier checks is checked here first, with the
// line it breaks on. A program the parser accepts verifies. Memory and time are linear in the
// text: the lexer runs over its UTF-8 bytes one token ahead, reuse chains are walked once, and
// the dispatch table is allocated one (step, layer) row at a time as lines name them, so a
// short file cannot make it allocate the 10^7 entries its shape line may claim.

public struct IRParseError: Error, CustomStringConvertible, Equatable {
    public var line: Int
    public var message: String
    public var description: String { "line \(line): \(message)" }
}

public enum IRParser {
    public static func parse(_ text: String) throws -> Program {
        try parse(text, limits: ReaderLimits())
    }

    static func parse(_ text: String, limits: ReaderLimits) throws -> Program {
        var p = try Cursor(lexer: Lexer(bytes: Array(text.utf8)), limits: limits)
        return try p.program()
    }
}

/// The totals `Limits` sets for a whole program; tests lower them to reach each check with a
/// small file.
struct ReaderLimits {
    var plans = Limits.maxPlans
    var planRows = Limits.maxPlanRows
    var ranges = Limits.maxPlanRanges
}

/// A number as written: `value` is nil beyond Int's range or with a fraction or exponent
/// (`real`); the bytes `start ..< end` of the text are what messages quote.
private struct Number: Equatable {
    var value: Int?
    var start: Int
    var end: Int
    var real = false
}

private enum Token: Equatable {
    case word(String)  // [A-Za-z_][A-Za-z0-9_.]*
    case number(Number)
    case string(String)
    case name(String)  // @plan: [A-Za-z0-9_.-]+
    /// One of `{ } [ ] ( ) , :`, or `>` for `->` and `.` for `..`.
    case punct(Unicode.Scalar)
    case end
}

private func isWordStart(_ b: UInt8) -> Bool { (b | 0x20) >= 0x61 && (b | 0x20) <= 0x7a || b == 0x5f }
private func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
private func isWordChar(_ b: UInt8) -> Bool { isWordStart(b) || isDigit(b) || b == 0x2e }
private func isNameChar(_ b: UInt8) -> Bool { isWordChar(b) || b == 0x2d }

/// A name as messages show it: at most 40 characters (names hold only [A-Za-z0-9_.-]).
private func show(_ name: String) -> String {
    name.utf8.count <= 40 ? name : String(name.prefix(40)) + "…"
}

private struct Lexer {
    let bytes: [UInt8]
    var at = 0
    var line = 1

    /// The character at `i` as a message shows it: 'c' when printable ASCII, else U+XXXX.
    func describe(_ i: Int) -> String {
        let b = bytes[i]
        if b >= 0x20, b < 0x7f { return "'\(Character(Unicode.Scalar(b)))'" }
        var scalar = UInt32(b)
        if b >= 0x80 {
            var it = bytes[i...].makeIterator()
            var decoder = UTF8()
            if case .scalarValue(let s) = decoder.decode(&it) { scalar = s.value }
        }
        let hex = String(scalar, radix: 16, uppercase: true)
        return "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
    }

    func fail(_ message: String) -> IRParseError { IRParseError(line: line, message: message) }

    /// The next token and the line it starts on.
    mutating func next() throws -> (Token, Int) {
        while at < bytes.count {
            switch bytes[at] {
            case 0x0a: line += 1; at += 1
            case 0x20, 0x09, 0x0d: at += 1
            default: return (try token(), line)
            }
        }
        return (.end, line)
    }

    private mutating func token() throws -> Token {
        let c = bytes[at]
        let negative = c == 0x2d && at + 1 < bytes.count && isDigit(bytes[at + 1])
        if isDigit(c) || negative {
            let start = at
            if negative { at += 1 }
            var value: Int? = 0
            while at < bytes.count, isDigit(bytes[at]) {
                if let v = value {
                    let (m, o1) = v.multipliedReportingOverflow(by: 10)
                    let (s, o2) = m.addingReportingOverflow(Int(bytes[at] - 0x30))
                    value = o1 || o2 ? nil : s
                }
                at += 1
            }
            var real = false
            func digits() { while at < bytes.count, isDigit(bytes[at]) { at += 1 } }
            // A fraction needs a digit after the point: `0..3` is a range.
            if at + 1 < bytes.count, bytes[at] == 0x2e, isDigit(bytes[at + 1]) {
                at += 1
                digits()
                real = true
            }
            if at < bytes.count, bytes[at] | 0x20 == 0x65 {
                let sign = at + 1 < bytes.count && (bytes[at + 1] == 0x2b || bytes[at + 1] == 0x2d) ? 1 : 0
                if at + 1 + sign < bytes.count, isDigit(bytes[at + 1 + sign]) {
                    at += 1 + sign
                    digits()
                    real = true
                }
            }
            return .number(Number(value: real ? nil : value.map { negative ? -$0 : $0 }, start: start, end: at, real: real))
        }
        if isWordStart(c) {
            let start = at
            while at < bytes.count, isWordChar(bytes[at]) { at += 1 }
            return .word(String(decoding: bytes[start..<at], as: UTF8.self))
        }
        switch c {
        case 0x40:  // @
            let start = at + 1
            at = start
            while at < bytes.count, isNameChar(bytes[at]) { at += 1 }
            guard at > start else {
                throw fail("expected a plan name after '@' (letters, digits, '_', '.' and '-')"
                           + (at < bytes.count ? ", found \(describe(at))" : ""))
            }
            return .name(String(decoding: bytes[start..<at], as: UTF8.self))
        case 0x22:  // "
            var s: [UInt8] = []
            at += 1
            while true {
                guard at < bytes.count, bytes[at] != 0x0a else { throw fail("unterminated string") }
                let b = bytes[at]
                if b == 0x22 { break }
                if b == 0x5c {
                    guard at + 1 < bytes.count else { throw fail("unterminated string") }
                    switch bytes[at + 1] {
                    case 0x22: s.append(0x22)
                    case 0x5c: s.append(0x5c)
                    case 0x6e: s.append(0x0a)
                    case 0x0a: throw fail("unterminated string")
                    case let e:
                        let shown = e >= 0x20 && e < 0x7f ? "'\\\(Character(Unicode.Scalar(e)))'" : "'\\' followed by \(describe(at + 1))"
                        throw fail("unknown escape \(shown) in a string (expected \\\", \\\\ or \\n)")
                    }
                    at += 2
                } else {
                    // Any other character, control characters included: the printer writes the
                    // model name's as they are (masks.json allows them, escaped).
                    s.append(b)
                    at += 1
                }
            }
            at += 1
            // Whole UTF-8 sequences only were copied (quotes, backslashes and newlines are ASCII).
            return .string(String(decoding: s, as: UTF8.self))
        case 0x2d where at + 1 < bytes.count && bytes[at + 1] == 0x3e:
            at += 2
            return .punct(">")
        case 0x2e where at + 1 < bytes.count && bytes[at + 1] == 0x2e:
            at += 2
            return .punct(".")
        case 0x7b, 0x7d, 0x5b, 0x5d, 0x28, 0x29, 0x2c, 0x3a:  // { } [ ] ( ) , :
            at += 1
            return .punct(Unicode.Scalar(c))
        default:
            throw fail("unexpected character \(describe(at))")
        }
    }
}

private struct Cursor {
    var lexer: Lexer
    let limits: ReaderLimits
    /// The token ahead and its line.
    var peek: Token = .end
    var line = 1
    /// The line of the last token read: where the file ends, errors point there.
    var lastLine = 1

    init(lexer: Lexer, limits: ReaderLimits) throws {
        self.lexer = lexer
        self.limits = limits
        try advance()
    }

    mutating func advance() throws {
        if peek != .end { lastLine = line }
        (peek, line) = try lexer.next()
        if peek == .end { line = lastLine }
    }

    func fail(_ message: String, line: Int? = nil) -> IRParseError {
        IRParseError(line: line ?? self.line, message: message + (peek == .end && line == nil ? ", found the end of the file" : ""))
    }

    mutating func expect(_ token: Token, _ what: String) throws {
        guard peek == token else { throw fail("expected \(what)") }
        try advance()
    }

    mutating func keyword(_ w: String) throws { try expect(.word(w), "'\(w)'") }
    mutating func punct(_ p: Unicode.Scalar) throws {
        try expect(.punct(p), p == ">" ? "'->'" : p == "." ? "'..'" : "'\(p)'")
    }

    /// A number as messages quote it: its digits, or how many there are when that is long.
    func text(_ n: Number) -> String {
        let negative = lexer.bytes[n.start] == 0x2d
        let digits = n.end - n.start - (negative ? 1 : 0)
        guard digits > 24 else { return String(decoding: lexer.bytes[n.start..<n.end], as: UTF8.self) }
        return "\(negative ? "a negative " : "a ")\(digits)-digit number"
    }

    /// An integer in `range`; `field` names it in messages.
    mutating func int(_ field: @autoclosure () -> String, _ range: ClosedRange<Int>) throws -> Int {
        guard case .number(let n) = peek else { throw fail("\(field()): expected an integer") }
        guard let v = n.value, range.contains(v) else {
            throw fail("\(field()): expected an integer in \(range.lowerBound)...\(range.upperBound), found \(text(n))")
        }
        try advance()
        return v
    }

    /// A finite number that a C float holds (integers included), rounded to Float.
    mutating func float(_ field: @autoclosure () -> String) throws -> Float {
        guard case .number(let n) = peek else { throw fail("\(field()): expected a number") }
        let text = String(decoding: lexer.bytes[n.start..<n.end], as: UTF8.self)
        guard let d = Double(text), d.isFinite, Float(d).isFinite else {
            throw fail("\(field()): expected a finite number a C float holds, found \(self.text(n))")
        }
        try advance()
        return Float(d)
    }

    mutating func string(_ what: String) throws -> String {
        guard case .string(let v) = peek else { throw fail("expected \(what)") }
        try advance()
        return v
    }

    mutating func name() throws -> String {
        guard case .name(let v) = peek else { throw fail("expected a plan name '@…'") }
        try advance()
        return v
    }

    /// `[a, b, …]`, each element read by `element`.
    mutating func list(_ element: (inout Cursor) throws -> Void) throws {
        try punct("[")
        if peek != .punct("]") {
            try element(&self)
            while peek == .punct(",") {
                try advance()
                try element(&self)
            }
        }
        try punct("]")
    }

    mutating func program() throws -> Program {
        try keyword("calib.program")
        let modelLine = line
        let model = try string("the model name")
        guard model.utf8.count <= Limits.maxModelBytes else {
            throw fail("model is \(model.utf8.count) bytes of UTF-8, more than the \(Limits.maxModelBytes) supported", line: modelLine)
        }
        try keyword("hash")
        let hashLine = line
        let hash = try string("the source hash")
        guard hash.utf8.count <= Limits.maxHashBytes, hash.utf8.allSatisfy({ isDigit($0) || isWordStart($0) && $0 != 0x5f }) else {
            throw fail("the source hash must be at most \(Limits.maxHashBytes) letters and digits (a SHA-256 in hex)", line: hashLine)
        }

        try keyword("shape")
        try keyword("tokens")
        let tokens = try int("shape tokens", 1...Limits.maxTokens)
        try keyword("head_dim")
        let headDim = try int("shape head_dim", 1...Limits.maxHeadDim)
        try keyword("block")
        let blockLine = line
        let block = try int("shape block", 1...Limits.maxBlock)
        let blocks = (tokens + block - 1) / block
        guard blocks <= Limits.maxBlocks else {
            throw fail("tokens / block gives \(blocks) blocks per side, more than the \(Limits.maxBlocks) supported", line: blockLine)
        }
        try keyword("layers")
        let layers = try int("shape layers", 1...Limits.maxLayers)
        try keyword("heads")
        let heads = try int("shape heads", 1...Limits.maxHeads)
        try keyword("steps")
        var steps: [Int] = []
        try list { c in
            let stepLine = c.line
            let s = try c.int("shape steps", 0...Limits.maxStep)
            if let last = steps.last, s <= last {
                throw c.fail("shape steps: steps must be strictly ascending (\(s) after \(last))", line: stepLine)
            }
            // layers × heads ≤ 2^24 and the count only grows by one, so this cannot overflow.
            guard (steps.count + 1) * layers * heads <= Limits.maxDispatch else {
                throw c.fail("shape steps: \(steps.count + 1) steps × \(layers) layers × \(heads) heads is more than the \(Limits.maxDispatch) (step, layer, head) supported", line: stepLine)
            }
            steps.append(s)
        }
        guard !steps.isEmpty else { throw fail("shape steps: expected at least one step", line: lastLine) }
        var timesteps: [Float] = []
        if peek == .word("model_timesteps") {
            try advance()
            let listLine = line
            try list { c in
                guard timesteps.count < steps.count else {
                    throw c.fail("shape model_timesteps: more than the \(steps.count) steps", line: listLine)
                }
                timesteps.append(try c.float("shape model_timesteps"))
            }
            guard timesteps.count == steps.count else {
                throw fail("shape model_timesteps: \(timesteps.count) timesteps for \(steps.count) steps", line: listLine)
            }
            if let repeated = Shape.repeatedTimestep(timesteps) {
                throw fail("shape model_timesteps: \(repeated) is the timestep of two steps (a call could not tell them apart)", line: listLine)
            }
        }
        var textTokens = 0, textFirst = false
        if peek == .word("text") {
            try advance()
            let textLine = line
            textTokens = try int("shape text", 1...Limits.maxTokens)
            guard textTokens < tokens else {
                throw fail("shape text: \(textTokens) text tokens leave no video tokens of the \(tokens)", line: textLine)
            }
            if peek == .word("first") { textFirst = true } else if peek != .word("last") {
                throw fail("shape text: expected first or last after the text tokens", line: textLine)
            }
            try advance()
        }
        let shape = Shape(tokens: tokens, headDim: headDim, block: block, layers: layers, heads: heads, steps: steps,
                          modelTimesteps: timesteps, textTokens: textTokens, textFirst: textFirst)

        var plans: [Plan] = []
        var index: [String: Int] = [:]
        var ranges = 0
        while peek == .word("plan") {
            let planLine = line
            try advance()
            let name = try name()
            guard index[name] == nil else { throw fail("plan @\(show(name)) defined twice", line: planLine) }
            guard plans.count < limits.plans else { throw fail("more than \(limits.plans) plans", line: planLine) }
            guard (plans.count + 1) * blocks <= limits.planRows else {
                throw fail("\(plans.count + 1) plans × \(blocks) query blocks is more than the \(limits.planRows) plan rows supported", line: planLine)
            }
            index[name] = plans.count
            plans.append(try plan(name, shape: shape, ranges: &ranges))
        }

        try keyword("dispatch")
        try punct("{")
        // One row of `heads` plan indices (-1: not yet named) per (step, layer) a line names,
        // keyed by stepIndex × layers + layer.
        var table: [Int: [Int32]] = [:]
        var named = 0
        while peek == .word("step") {
            let entryLine = line
            try advance()
            guard case .number(let n) = peek else { throw fail("expected a step") }
            guard let value = n.value, let s = Self.index(of: value, in: steps) else { throw fail("step \(text(n)) is not in the shape") }
            try advance()
            try keyword("layer")
            let layer = try int("layer", 0...(layers - 1))
            try keyword("head")
            let first = try int("head", 0...(heads - 1))
            var last = first
            if peek == .punct(".") {
                try advance()
                last = try int("the last head", first...(heads - 1))
            }
            try punct(">")
            let planName = try name()
            guard let p = index[planName] else { throw fail("unknown plan @\(show(planName))", line: entryLine) }
            let key = s * layers + layer
            var row = table.removeValue(forKey: key) ?? [Int32](repeating: -1, count: heads)
            for head in first...last {
                guard row[head] < 0 else {
                    throw fail("step \(value) layer \(layer) head \(head) dispatched twice", line: entryLine)
                }
                row[head] = Int32(p)
            }
            named += last - first + 1
            table[key] = row
        }
        let closeLine = line
        try punct("}")
        guard peek == .end else { throw fail("unexpected text after the dispatch table") }
        guard named == shape.dispatchCount else {
            // The first entry no line names, found from the rows that exist (not by a walk over
            // every entry the shape line claims).
            var missing = table.count * heads
            var expected = 0
            for key in table.keys.sorted() {
                if key > expected { missing = expected * heads; break }
                if let h = table[key]!.firstIndex(of: -1) { missing = key * heads + h; break }
                expected = key + 1
            }
            throw fail("dispatch table has no plan for entry \(missing)", line: closeLine)
        }
        // Every entry is named, so the file has a line per (step, layer): the table is as large
        // as the text makes it.
        var dispatch: [Int] = []
        dispatch.reserveCapacity(named)
        for key in 0..<(steps.count * layers) {
            for p in table[key]! { dispatch.append(Int(p)) }
        }
        return Program(model: model, shape: shape, plans: plans, dispatch: dispatch, sourceHash: hash)
    }

    /// `value`'s index in the ascending `steps`.
    static func index(of value: Int, in steps: [Int]) -> Int? {
        var lo = 0, hi = steps.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if steps[mid] < value { lo = mid + 1 } else { hi = mid }
        }
        return lo < steps.count && steps[lo] == value ? lo : nil
    }

    /// The row number in a word `qN`, or nil (Int.max when N is beyond Int's range).
    static func rowNumber(_ word: String) -> Int? {
        let digits = word.utf8.dropFirst()
        guard word.utf8.first == 0x71, !digits.isEmpty, digits.allSatisfy(isDigit) else { return nil }
        var v = 0
        for d in digits {
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(Int(d - 0x30))
            guard !o1, !o2 else { return Int.max }
            v = s
        }
        return v
    }

    /// The body of `plan @name { … }` after the name.
    mutating func plan(_ name: String, shape: Shape, ranges: inout Int) throws -> Plan {
        let blocks = shape.blocks
        let partialLast = shape.tokens % shape.block != 0
        try punct("{")
        var rows: [Row] = []
        var rowLines: [Int] = []
        while case .word(let w) = peek, w.hasPrefix("q") {
            let q = rows.count
            guard q < blocks else {
                throw fail("plan @\(show(name)) has \(blocks) query blocks (q0...q\(blocks - 1)); expected 'order', 'chunks' or '}'")
            }
            guard Self.rowNumber(w) == q else { throw fail("expected row q\(q)") }
            rowLines.append(line)
            try advance()
            try punct(":")
            if peek == .word("reuse") {
                try advance()
                guard case .word(let src) = peek, let s = Self.rowNumber(src) else {
                    throw fail("expected a source row 'qN'")
                }
                guard s < blocks else {
                    throw fail("q\(q) reuses \(s == Int.max ? "a row beyond Int's range" : "q\(s)"): expected a query block in q0...q\(blocks - 1)")
                }
                guard s != q else { throw fail("q\(q) cannot reuse itself") }
                // The last block may be partial: it cannot supply the rows of a full block.
                guard !(partialLast && s == blocks - 1) else {
                    throw fail("q\(q) reuses q\(s), the partial last block, which cannot supply the \(shape.block) rows of a full block")
                }
                try advance()
                rows.append(.reuse(s))
            } else {
                try keyword("compute")
                var spans: [Span] = []
                while peek == .punct("[") {
                    let spanLine = line
                    try advance()
                    let start = try int("q\(q) span start", 0...(blocks - 1))
                    try punct(",")
                    let end = try int("q\(q) span end", 1...blocks)
                    try punct(")")
                    guard start < end else {
                        throw fail("q\(q) span [\(start), \(end)) is empty: the end must exceed the start", line: spanLine)
                    }
                    if let l = spans.last, start < l.end {
                        throw fail("q\(q) span [\(start), \(end)) overlaps or precedes [\(l.start), \(l.end)); spans must be sorted and disjoint", line: spanLine)
                    }
                    ranges += 1
                    guard ranges <= limits.ranges else {
                        throw fail("the plans hold more than \(limits.ranges) key-block ranges in all", line: spanLine)
                    }
                    spans.append(Span(start, end))
                }
                guard !spans.isEmpty else { throw fail("a compute row needs at least one span") }
                rows.append(.compute(spans))
            }
        }
        guard rows.count == blocks else { throw fail("plan @\(show(name)) has \(rows.count) rows, expected \(blocks)") }
        var plan = Plan(name: name, rows: rows)
        if let q = plan.reuseCycle() {
            throw fail("plan @\(show(name)): q\(q) is on a reuse cycle", line: rowLines[q])
        }
        if peek == .word("order") {
            let orderLine = line
            try advance()
            var listed = [Bool](repeating: false, count: blocks)
            var order: [Int] = []
            try list { c in
                let r = try c.int("order", 0...(blocks - 1))
                // `r` was read: the error points at the line it was on.
                guard rows[r].spans.count > 0 else { throw c.fail("order: q\(r) reuses another row; order lists compute rows", line: c.lastLine) }
                guard !listed[r] else { throw c.fail("order: q\(r) is listed twice", line: c.lastLine) }
                listed[r] = true
                order.append(r)
            }
            let computeRows = rows.reduce(0) { $0 + ($1.spans.isEmpty ? 0 : 1) }
            guard order.count == computeRows else {
                throw fail("order lists \(order.count) of the \(computeRows) compute rows", line: orderLine)
            }
            plan.order = order
        }
        if peek == .word("chunks") {
            guard let order = plan.order else { throw fail("chunks without an order") }
            let chunksLine = line
            try advance()
            var chunks: [Int] = []
            try list { c in
                let v = try c.int("chunks", 0...order.count)
                if chunks.isEmpty, v != 0 { throw c.fail("chunks must start at 0, found \(v)", line: c.lastLine) }
                if let last = chunks.last, v <= last { throw c.fail("chunks must rise strictly (\(v) after \(last))", line: c.lastLine) }
                chunks.append(v)
            }
            guard chunks.last == order.count else {
                throw fail("chunks must rise strictly from 0 to \(order.count) (the length of order), found \(chunks.last.map { "last \($0)" } ?? "none")", line: chunksLine)
            }
            plan.chunks = chunks
        }
        try punct("}")
        return plan
    }
}
