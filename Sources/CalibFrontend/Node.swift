import CalibJSON

// A JSON value together with where it sits, so every check can say exactly what was wrong where.

public struct MaskError: Error, CustomStringConvertible, Equatable {
    public var file: String
    /// A JSONPath such as `$.patterns.spatial.rows[42]`, or `line:column` for a syntax error.
    public var path: String
    public var message: String

    public var description: String { "\(file): \(path): \(message)" }
}

struct Node {
    let value: JSON
    let path: String
    let file: String

    func fail(_ message: String) -> MaskError { MaskError(file: file, path: path, message: message) }

    func expected(_ what: String) -> MaskError { fail("expected \(what), found \(value.kind)") }

    func child(_ key: String, _ value: JSON) -> Node {
        let simple = key.unicodeScalars.allSatisfy { $0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_" }
        let step = simple && !key.isEmpty ? ".\(key)" : "[\"\(visible(key))\"]"
        return Node(value: value, path: path + step, file: file)
    }

    func element(_ index: Int, _ value: JSON) -> Node {
        Node(value: value, path: "\(path)[\(index)]", file: file)
    }

    /// The members of an object, after checking that every key is one this format knows.
    func object(allowed: [String]) throws -> Members {
        guard case .object(let members) = value else { throw expected("an object") }
        for (key, _) in members where !allowed.contains(key) {
            throw child(key, .null).fail("unknown field \"\(visible(key))\" (expected one of: \(allowed.joined(separator: ", ")))")
        }
        return Members(node: self, members: members)
    }

    func array() throws -> [Node] {
        guard let items = value.elements else { throw expected("an array") }
        return items.enumerated().map { element($0.offset, $0.element) }
    }

    func int(in range: ClosedRange<Int>) throws -> Int {
        guard case .number(_, let int?) = value else { throw expected("an integer") }
        guard range.contains(int) else { throw fail("expected an integer in \(range.lowerBound)...\(range.upperBound), found \(int)") }
        return int
    }

    /// A finite number a C float holds, rounded to Float.
    func float() throws -> Float {
        guard case .number(let d, _) = value else { throw expected("a number") }
        guard Float(d).isFinite else { throw fail("expected a number a C float holds, found \(d)") }
        return Float(d)
    }

    func string() throws -> String {
        guard case .string(let s) = value else { throw expected("a string") }
        return s
    }
}

struct Members {
    let node: Node
    let members: [(key: String, value: JSON)]

    func optional(_ key: String) -> Node? {
        members.first { $0.key == key }.map { node.child(key, $0.value) }
    }

    func required(_ key: String) throws -> Node {
        guard let n = optional(key) else { throw node.fail("missing required field \"\(key)\"") }
        return n
    }

    var all: [(key: String, node: Node)] { members.map { ($0.key, node.child($0.key, $0.value)) } }
}
