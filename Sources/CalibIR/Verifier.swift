// Invariants every stage may rely on. The frontend reports user errors with JSON paths before
// building IR; a failure here after a pass is a compiler bug, after `IRParser` a bad dump.

public struct IRVerifyError: Error, CustomStringConvertible, Equatable {
    public var message: String
    public var description: String { message }
}

extension Program {
    public func verify() throws {
        func fail(_ m: String) -> IRVerifyError { IRVerifyError(message: m) }
        let blocks = shape.blocks
        guard shape.tokens > 0, shape.block > 0, shape.headDim > 0, shape.layers > 0, shape.heads > 0 else {
            throw fail("shape sizes must be positive")
        }
        guard !shape.steps.isEmpty, zip(shape.steps, shape.steps.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw fail("steps must be non-empty and strictly ascending")
        }
        guard dispatch.count == shape.dispatchCount else { throw fail("dispatch table has \(dispatch.count) entries, expected \(shape.dispatchCount)") }
        if let bad = dispatch.first(where: { $0 < 0 || $0 >= plans.count }) { throw fail("dispatch names plan \(bad) of \(plans.count)") }
        var names = Set<String>()
        for plan in plans {
            guard names.insert(plan.name).inserted else { throw fail("plan @\(plan.name) defined twice") }
            try plan.verify(blocks: blocks, partialLast: shape.tokens % shape.block != 0)
        }
    }
}

extension Plan {
    func verify(blocks: Int, partialLast: Bool) throws {
        func fail(_ m: String) -> IRVerifyError { IRVerifyError(message: "plan @\(name): \(m)") }
        guard rows.count == blocks else { throw fail("\(rows.count) rows, expected \(blocks)") }
        for (q, row) in rows.enumerated() {
            switch row {
            case .compute(let spans):
                guard !spans.isEmpty else { throw fail("q\(q) computes nothing") }
                var previousEnd = -1
                for span in spans {
                    guard span.start >= 0, span.start < span.end, span.end <= blocks, span.start >= previousEnd else {
                        throw fail("q\(q) span [\(span.start), \(span.end)) is empty, out of range, unsorted or overlapping")
                    }
                    previousEnd = span.end
                }
            case .reuse(let source):
                guard source >= 0, source < blocks, source != q else { throw fail("q\(q) reuses invalid row \(source)") }
                // The last block may be partial: it cannot supply the rows of a full block.
                guard !(partialLast && source == blocks - 1) else { throw fail("q\(q) reuses the partial last block") }
                var seen: Set<Int> = [q]
                var at = source
                while case .reuse(let next) = rows[at] {
                    guard seen.insert(at).inserted, next >= 0, next < blocks else { throw fail("q\(q) is on a reuse cycle") }
                    at = next
                }
            }
        }
        if let order, order.sorted() != computeRows { throw fail("order is not a permutation of the compute rows") }
        if let chunks {
            guard let order else { throw fail("chunks without an order") }
            guard chunks.first == 0, chunks.last == order.count, zip(chunks, chunks.dropFirst()).allSatisfy({ $0 < $1 }) else {
                throw fail("chunks must rise strictly from 0 to \(order.count)")
            }
        }
    }
}
