// `<step>,<layer>,<head>` on the command line (`calibc stats --show`): parsed before any work
// and checked against the program's shape as soon as that is known, so a typo costs nothing.

/// A command-line argument that is malformed or names something the input does not have
/// (calibc exits with status 2, as for other usage errors).
public struct ArgumentError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

public struct HeadSelector: Equatable, Sendable {
    public var step: Int, layer: Int, head: Int
    /// The text as given, for messages.
    public var text: String

    public init(parsing text: String, option: String = "--show") throws {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { Int($0) }
        guard parts.count == 3, let step = parts[0], let layer = parts[1], let head = parts[2] else {
            throw ArgumentError("\(option) expects <step>,<layer>,<head> (three integers), got \"\(text)\"")
        }
        (self.step, self.layer, self.head, self.text) = (step, layer, head, text)
    }

    /// The index of `step` among the shape's steps; throws when the step, layer or head does not exist.
    @discardableResult
    public func check(_ shape: Shape, option: String = "--show") throws -> Int {
        guard let s = shape.steps.firstIndex(of: step) else {
            let steps = shape.steps.count <= 8 ? shape.steps.map(String.init).joined(separator: ", ")
                : shape.steps.prefix(4).map(String.init).joined(separator: ", ") + ", …, " + String(shape.steps.last!)
            throw ArgumentError("\(option) \(text): no timestep \(step) (the masks have \(steps))")
        }
        guard (0..<shape.layers).contains(layer) else {
            throw ArgumentError("\(option) \(text): no layer \(layer) (the masks have layers 0...\(shape.layers - 1))")
        }
        guard (0..<shape.heads).contains(head) else {
            throw ArgumentError("\(option) \(text): no head \(head) (the masks have heads 0...\(shape.heads - 1))")
        }
        return s
    }
}
