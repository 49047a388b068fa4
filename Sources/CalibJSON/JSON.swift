// A small JSON reader that keeps what error messages need: object key order, duplicate keys
// and the line and column of a syntax error. Foundation's decoder loses all three.

public indirect enum JSON: Equatable {
    case null
    case bool(Bool)
    /// `int` is set when the literal has no fraction or exponent and fits an Int.
    case number(Double, int: Int?)
    case string(String)
    case array([JSON])
    /// An array whose elements are all integers, kept flat.
    case integers([Int])
    /// An array whose elements are all two-integer arrays, kept flat as [a0, b0, a1, b1, …]:
    /// the key-block ranges that are the bulk of a masks file.
    case pairs([Int])
    case object([(key: String, value: JSON)])

    /// The elements of an array, whichever form it was read in.
    public var elements: [JSON]? {
        switch self {
        case .array(let items): return items
        case .integers(let values): return values.map { .number(Double($0), int: $0) }
        case .pairs(let flat): return stride(from: 0, to: flat.count, by: 2).map { .integers([flat[$0], flat[$0 + 1]]) }
        default: return nil
        }
    }

    public static func == (a: JSON, b: JSON) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.number(x, _), .number(y, _)): return x == y
        case let (.string(x), .string(y)): return x == y
        case (.array, _), (.integers, _), (.pairs, _):
            guard let x = a.elements, let y = b.elements else { return false }
            return x == y
        case let (.object(x), .object(y)): return x.map(\.key) == y.map(\.key) && x.map(\.value) == y.map(\.value)
        default: return false
        }
    }

    public var kind: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array, .integers, .pairs: return "an array"
        case .object: return "an object"
        }
    }
}

public struct JSONSyntaxError: Error, Equatable {
    public var line: Int
    public var column: Int
    public var message: String
}

public enum JSONReader {
    /// Deeper nesting than any masks file needs is refused instead of exhausting the stack.
    static let maxDepth = 64

    public static func parse(_ bytes: [UInt8]) throws -> JSON {
        try bytes.withUnsafeBufferPointer { buffer in
            var r = Reader(b: buffer)
            r.skipSpace()
            let value = try r.value(depth: 0)
            r.skipSpace()
            guard r.i == buffer.count else { throw r.fail("unexpected text after the top-level value") }
            return value
        }
    }
}

private struct Reader {
    let b: UnsafeBufferPointer<UInt8>
    var i = 0

    func fail(_ message: String) -> JSONSyntaxError {
        var line = 1, column = 1
        for j in 0..<min(i, b.count) {
            if b[j] == UInt8(ascii: "\n") { line += 1; column = 1 } else { column += 1 }
        }
        return JSONSyntaxError(line: line, column: column, message: message)
    }

    mutating func skipSpace() {
        while i < b.count, b[i] == 0x20 || b[i] == 0x0a || b[i] == 0x0d || b[i] == 0x09 { i += 1 }
    }

    mutating func literal(_ word: String, _ value: JSON) throws -> JSON {
        for c in word.utf8 {
            guard i < b.count, b[i] == c else { throw fail("invalid literal, expected '\(word)'") }
            i += 1
        }
        return value
    }

    mutating func value(depth: Int) throws -> JSON {
        guard depth < JSONReader.maxDepth else { throw fail("nesting deeper than \(JSONReader.maxDepth) levels") }
        guard i < b.count else { throw fail("unexpected end of input, expected a value") }
        switch b[i] {
        case UInt8(ascii: "{"):
            i += 1
            var members: [(key: String, value: JSON)] = []
            var seen = Set<String>()
            skipSpace()
            if i < b.count, b[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
            while true {
                skipSpace()
                guard i < b.count, b[i] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
                let keyStart = i
                let key = try string()
                guard seen.insert(key).inserted else {
                    i = keyStart
                    throw fail("duplicate key \"\(key)\"")
                }
                skipSpace()
                guard i < b.count, b[i] == UInt8(ascii: ":") else { throw fail("expected ':' after a key") }
                i += 1
                skipSpace()
                members.append((key, try value(depth: depth + 1)))
                skipSpace()
                guard i < b.count else { throw fail("unexpected end of input, expected ',' or '}'") }
                if b[i] == UInt8(ascii: ",") { i += 1; continue }
                if b[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
                throw fail("expected ',' or '}'")
            }
        case UInt8(ascii: "["):
            i += 1
            var items: [JSON] = []
            skipSpace()
            if i < b.count, b[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
            if let flat = integers() { return .integers(flat) }
            if let flat = pairs() { return .pairs(flat) }
            while true {
                skipSpace()
                items.append(try value(depth: depth + 1))
                skipSpace()
                guard i < b.count else { throw fail("unexpected end of input, expected ',' or ']'") }
                if b[i] == UInt8(ascii: ",") { i += 1; continue }
                if b[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                throw fail("expected ',' or ']'")
            }
        case UInt8(ascii: "\""):
            return .string(try string())
        case UInt8(ascii: "t"): return try literal("true", .bool(true))
        case UInt8(ascii: "f"): return try literal("false", .bool(false))
        case UInt8(ascii: "n"): return try literal("null", .null)
        default:
            return try number()
        }
    }

    /// An integer literal of at most 18 digits at the cursor (after spaces), consuming it and the
    /// spaces after; nil when the value is anything else (the caller rewinds).
    mutating func plainInteger() -> Int? {
        skipSpace()
        let negative = i < b.count && b[i] == UInt8(ascii: "-")
        if negative { i += 1 }
        let digits = i
        var v = 0
        while i < b.count, b[i] >= 0x30, b[i] <= 0x39, i - digits < 18 { v = v * 10 + Int(b[i] - 0x30); i += 1 }
        guard i > digits, i < b.count, b[i] != UInt8(ascii: "."), b[i] != UInt8(ascii: "e"), b[i] != UInt8(ascii: "E"),
              b[i] < 0x30 || b[i] > 0x39, b[digits] != 0x30 || i == digits + 1 else { return nil }
        skipSpace()
        return negative ? -v : v
    }

    /// Consumes `c` (after spaces) if it is next.
    mutating func take(_ c: UInt8) -> Bool {
        skipSpace()
        guard i < b.count, b[i] == c else { return false }
        i += 1
        return true
    }

    /// An array of plain integers, read without a JSON value per element; nil (and nothing
    /// consumed) when the array holds anything else. The opening bracket is already read.
    mutating func integers() -> [Int]? {
        let start = i
        var values: [Int] = []
        while let v = plainInteger() {
            values.append(v)
            if take(UInt8(ascii: ",")) { continue }
            if take(UInt8(ascii: "]")) { return values }
            break
        }
        i = start
        return nil
    }

    /// An array of [integer, integer] arrays, read flat; nil (and nothing consumed) otherwise.
    /// The opening bracket is already read.
    mutating func pairs() -> [Int]? {
        let start = i
        var flat: [Int] = []
        while take(UInt8(ascii: "[")), let a = plainInteger(), take(UInt8(ascii: ",")), let b2 = plainInteger(), take(UInt8(ascii: "]")) {
            flat.append(a)
            flat.append(b2)
            if take(UInt8(ascii: ",")) { continue }
            if take(UInt8(ascii: "]")) { return flat }
            break
        }
        i = start
        return nil
    }

    mutating func number() throws -> JSON {
        let start = i
        var integral = true
        if i < b.count, b[i] == UInt8(ascii: "-") { i += 1 }
        let digitsStart = i
        while i < b.count, b[i] >= 0x30, b[i] <= 0x39 { i += 1 }
        guard i > digitsStart else { throw fail("expected a value") }
        guard b[digitsStart] != 0x30 || i == digitsStart + 1 else {
            i = digitsStart
            throw fail("leading zeros are not allowed")
        }
        if i < b.count, b[i] == UInt8(ascii: ".") {
            integral = false
            i += 1
            let f = i
            while i < b.count, b[i] >= 0x30, b[i] <= 0x39 { i += 1 }
            guard i > f else { throw fail("expected digits after '.'") }
        }
        if i < b.count, b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") {
            integral = false
            i += 1
            if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") { i += 1 }
            let e = i
            while i < b.count, b[i] >= 0x30, b[i] <= 0x39 { i += 1 }
            guard i > e else { throw fail("expected digits in the exponent") }
        }
        // Integers, nearly every number in a masks file, are read without making a String.
        if integral, i - digitsStart <= 18 {
            var v = 0
            for j in digitsStart..<i { v = v * 10 + Int(b[j] - 0x30) }
            if b[start] == UInt8(ascii: "-") { v = -v }
            return .number(Double(v), int: v)
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: b[start..<i]), as: UTF8.self)
        let double = Double(text) ?? .nan
        return .number(double, int: integral ? Int(text) : nil)
    }

    mutating func string() throws -> String {
        i += 1  // opening quote
        // Fast path: no escapes (base64 bitmaps, names), one copy.
        var j = i
        while j < b.count, b[j] != UInt8(ascii: "\""), b[j] != UInt8(ascii: "\\"), b[j] >= 0x20, b[j] < 0x80 { j += 1 }
        if j < b.count, b[j] == UInt8(ascii: "\"") {
            // Plain ASCII (base64 bitmaps, names) is valid UTF-8 as it stands.
            let s = String(decoding: UnsafeBufferPointer(rebasing: b[i..<j]), as: UTF8.self)
            i = j + 1
            return s
        }
        var bytes: [UInt8] = []
        while true {
            guard i < b.count else { throw fail("unterminated string") }
            let c = b[i]
            if c == UInt8(ascii: "\"") { i += 1; break }
            guard c >= 0x20 else { throw fail("control character in string") }
            if c != UInt8(ascii: "\\") { bytes.append(c); i += 1; continue }
            i += 1
            guard i < b.count else { throw fail("unterminated string") }
            let e = b[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): bytes.append(e)
            case UInt8(ascii: "b"): bytes.append(0x08)
            case UInt8(ascii: "f"): bytes.append(0x0c)
            case UInt8(ascii: "n"): bytes.append(0x0a)
            case UInt8(ascii: "r"): bytes.append(0x0d)
            case UInt8(ascii: "t"): bytes.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if scalar >= 0xD800, scalar < 0xDC00 {
                    guard i + 1 < b.count, b[i] == UInt8(ascii: "\\"), b[i + 1] == UInt8(ascii: "u") else {
                        throw fail("unpaired surrogate in string")
                    }
                    i += 2
                    let low = try hex4()
                    guard low >= 0xDC00, low < 0xE000 else { throw fail("unpaired surrogate in string") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                }
                guard let u = Unicode.Scalar(scalar) else { throw fail("invalid \\u escape") }
                bytes.append(contentsOf: Array(String(Character(u)).utf8))
            default:
                throw fail("invalid escape in string")
            }
        }
        guard let s = String(validating: bytes, as: UTF8.self) else { throw fail("string is not valid UTF-8") }
        return s
    }

    mutating func hex4() throws -> UInt32 {
        guard i + 4 <= b.count else { throw fail("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = b[i]
            let d: UInt8
            switch c {
            case 0x30...0x39: d = c - 0x30
            case 0x61...0x66: d = c - 0x61 + 10
            case 0x41...0x46: d = c - 0x41 + 10
            default: throw fail("invalid \\u escape")
            }
            v = v << 4 | UInt32(d)
            i += 1
        }
        return v
    }
}

/// `s` as a JSON string literal.
public func jsonQuoted(_ s: String) -> String {
    var out = "\""
    for c in s.unicodeScalars {
        switch c {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case _ where c.value < 0x20:
            let hex = String(c.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(c)
        }
    }
    return out + "\""
}
