// Invariants every stage may rely on. The frontend reports user errors with JSON paths before
// building IR; a failure here after a pass is a compiler bug, after `IRParser` a bad dump.

public struct IRVerifyError: Error, CustomStringConvertible, Equatable {
    public var message: String
    public var description: String { message }
}

extension Program {
    public func verify() throws {
        func fail(_ m: String) -> IRVerifyError { IRVerifyError(message: m) }
        guard shape.tokens > 0, shape.block > 0, shape.headDim > 0, shape.layers > 0, shape.heads > 0 else {
            throw fail("shape sizes must be positive")
        }
        // Overflow-checked, so a shape built in code cannot trap here (IRParser and the
        // frontend refuse anything beyond Limits first).
        let (sl, o1) = shape.steps.count.multipliedReportingOverflow(by: shape.layers)
        let (slh, o2) = sl.multipliedReportingOverflow(by: shape.heads)
        guard !shape.tokens.addingReportingOverflow(shape.block - 1).overflow, !o1, !o2, slh <= Int32.max else {
            throw fail("shape sizes overflow")
        }
        let blocks = shape.blocks
        guard !shape.steps.isEmpty, zip(shape.steps, shape.steps.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw fail("steps must be non-empty and strictly ascending")
        }
        guard shape.modelTimesteps.isEmpty || shape.modelTimesteps.count == shape.steps.count,
              shape.modelTimesteps.allSatisfy(\.isFinite), Shape.repeatedTimestep(shape.modelTimesteps) == nil else {
            throw fail("timesteps must be empty or one finite, distinct value per step")
        }
        guard (0..<shape.tokens).contains(shape.textTokens) else {
            throw fail("text tokens must be in 0..<tokens, got \(shape.textTokens)")
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
            }
        }
        if let q = reuseCycle() { throw fail("q\(q) is on a reuse cycle") }
        if let order, order.sorted() != computeRows { throw fail("order is not a permutation of the compute rows") }
        if let chunks {
            guard let order else { throw fail("chunks without an order") }
            guard chunks.first == 0, chunks.last == order.count, zip(chunks, chunks.dropFirst()).allSatisfy({ $0 < $1 }) else {
                throw fail("chunks must rise strictly from 0 to \(order.count)")
            }
        }
    }
}

extension Plan {
    /// A row on a reuse cycle, or nil; rows' sources must be in range. Linear in the rows: each
    /// chain is walked once, however long (a chain of B rows walked from every row would cost B²).
    func reuseCycle() -> Int? {
        // 0: not seen, 1: on the chain being walked, 2: its chain ends at a compute row.
        var state = [UInt8](repeating: 0, count: rows.count)
        for q in rows.indices where state[q] == 0 {
            var at = q
            while state[at] == 0, case .reuse(let next) = rows[at] {
                state[at] = 1
                at = next
            }
            if state[at] == 1 { return at }
            at = q
            while state[at] == 1, case .reuse(let next) = rows[at] {
                state[at] = 2
                at = next
            }
        }
        return nil
    }
}
