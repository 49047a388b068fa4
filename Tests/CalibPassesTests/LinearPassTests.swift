// The passes and `stats` on shapes that made them super-linear (docs/scale.md): results against
// the simple algorithms they replaced, which these tests keep as references. Correctness only;
// `make bench-scale` measures the time and memory.

import CalibDriver
import CalibIR
@testable import CalibPasses
import XCTest

private func program(blocks: Int, plans: [Plan], dispatch: [Int]? = nil, steps: [Int] = [0], layers: Int = 1) -> Program {
    let d = dispatch ?? Array(plans.indices)
    return Program(model: "t", shape: Shape(tokens: blocks, headDim: 8, block: 1, layers: layers, heads: d.count / (steps.count * layers),
                                            steps: steps),
                   plans: plans, dispatch: d, sourceHash: "h")
}

/// Random rows of `blocks` key blocks: sorted, disjoint spans, some touching.
private func randomRows(_ blocks: Int, _ rng: inout some RandomNumberGenerator) -> [Row] {
    (0..<blocks).map { _ in
        var spans: [Span] = []
        var at = Int.random(in: 0..<blocks, using: &rng)
        while at < blocks, spans.count < 4 {
            let end = Int.random(in: (at + 1)...min(blocks, at + 3), using: &rng)
            spans.append(Span(at, end))
            at = end + Int.random(in: 0...2, using: &rng)
        }
        return .compute(spans)
    }
}

final class LinearPassTests: XCTestCase {
    /// A chain of 16,384 rows (q_i reuses q_(i−1)) collapses onto q0, walked once, and random
    /// reuse forests collapse as following each chain to its end does.
    func testCollapseReuseFollowsLongChainsToTheirEnd() throws {
        let n = 16_384
        let chain = Plan(name: "c", rows: [.compute([Span(0, 1)])] + (1..<n).map { .reuse($0 - 1) })
        let collapsed = collapseReuse(program(blocks: n, plans: [chain]))
        XCTAssertNoThrow(try collapsed.verify())
        XCTAssertEqual(collapsed.plans[0].rows.dropFirst(), ArraySlice((1..<n).map { _ in Row.reuse(0) }))

        var rng = SystemRandomNumberGenerator()
        for _ in 0..<50 {
            let blocks = Int.random(in: 1...40, using: &rng)
            // Each row reuses an earlier one or computes, so there is no cycle.
            let rows: [Row] = (0..<blocks).map { q in
                q > 0 && Bool.random(using: &rng) ? .reuse(Int.random(in: 0..<q, using: &rng)) : .compute([Span(q, q + 1)])
            }
            let expected: [Row] = rows.map { row in
                guard case .reuse(var source) = row else { return row }
                while case .reuse(let next) = rows[source] { source = next }
                return .reuse(source)
            }
            XCTAssertEqual(CalibPasses.collapsed(rows), expected)
        }
    }

    /// The merging of the bitmap version, for a reference: every plan is compared with every group.
    private func bitmapMerge(_ program: Program, tolerance x: Double) -> Program {
        let n = program.shape.blocks
        var groups: [(kept: [Set<Int>], count: Int, plan: Int)] = []
        var remap = Array(program.plans.indices), merged: [Plan] = []
        for (i, plan) in program.plans.enumerated() {
            guard plan.reusedRows.isEmpty else {
                remap[i] = merged.count
                merged.append(plan)
                continue
            }
            let kept = plan.rows.map { Set($0.spans.flatMap { $0.start..<$0.end }) }
            let count = kept.reduce(0) { $0 + $1.count }
            if let g = groups.firstIndex(where: { g in
                Double(zip(g.kept, kept).reduce(0) { $0 + $1.0.symmetricDifference($1.1).count }) <= x * Double(max(g.count, count))
            }) {
                groups[g].kept = zip(groups[g].kept, kept).map { $0.union($1) }
                groups[g].count = groups[g].kept.reduce(0) { $0 + $1.count }
                remap[i] = groups[g].plan
            } else {
                remap[i] = merged.count
                groups.append((kept, count, merged.count))
                merged.append(plan)
            }
        }
        for g in groups { merged[g.plan].rows = (0..<n).map { .compute(Span.runs(g.kept[$0])) } }
        var p = program
        p.plans = merged
        p.dispatch = program.dispatch.map { remap[$0] }
        return p
    }

    /// With fewer groups than a plan compares with, merging on spans gives what the bitmap version
    /// gave; with more, it still never drops a tile and never merges beyond the tolerance.
    func testMergeSimilarOnSpansMatchesTheBitmapVersion() throws {
        var rng = SystemRandomNumberGenerator()
        for round in 0..<40 {
            let blocks = Int.random(in: 1...24, using: &rng)
            let base = randomRows(blocks, &rng)
            // Near copies of a few bases, so some merge and some do not.
            let plans: [Plan] = (0..<Int.random(in: 1...30, using: &rng)).map { i in
                var rows = Bool.random(using: &rng) ? base : randomRows(blocks, &rng)
                let q = Int.random(in: 0..<blocks, using: &rng)
                rows[q] = .compute([Span(q, q + 1)])
                if blocks > 1, i % 7 == 3 { rows[blocks - 1] = .reuse(0) }
                return Plan(name: "p\(i)", rows: rows)
            }
            let p = program(blocks: blocks, plans: plans)
            for x in [0.05, 0.2, 0.6] {
                let merged = mergeSimilar(p, tolerance: x)
                XCTAssertNoThrow(try merged.verify())
                XCTAssertEqual(merged, bitmapMerge(p, tolerance: x), "round \(round), x = \(x)")
            }
        }
    }

    func testMergeSimilarPastItsCandidatesKeepsEveryTile() throws {
        // 200 plans of one tile a row, pairwise 2 tiles apart: no two merge at x = 0.01, so every
        // plan has more groups before it than it compares with.
        let blocks = 16
        let plans = (0..<200).map { p in
            Plan(name: "p\(p)", rows: (0..<blocks).map { q in .compute([Span(q < 8 ? q : (p >> (q - 8)) & 1, (q < 8 ? q : (p >> (q - 8)) & 1) + 1)]) })
        }
        let p = program(blocks: blocks, plans: plans)
        let merged = mergeSimilar(p, tolerance: 0.01)
        XCTAssertEqual(merged.plans.count, 200)
        // At 0.2 they merge; every (step, layer, head) keeps its tiles, and its plan is within 0.2.
        let loose = mergeSimilar(p, tolerance: 0.2)
        XCTAssertLessThan(loose.plans.count, 200)
        for (d, old) in p.dispatch.enumerated() {
            let before = p.plans[old].rows.map { Set($0.spans.flatMap { $0.start..<$0.end }) }
            let after = loose.plans[loose.dispatch[d]].rows.map { Set($0.spans.flatMap { $0.start..<$0.end }) }
            XCTAssertTrue(zip(before, after).allSatisfy { $0.isSubset(of: $1) })
        }
    }

    /// A plan of 16,384 blocks and a near copy merge into their union (spans, not a 32 MB bitmap).
    func testMergeSimilarAtTheLargestPlan() throws {
        let n = 16_384
        let a = Plan(name: "a", rows: (0..<n).map { .compute([Span($0, min(n, $0 + 4))]) })
        var b = a
        b.name = "b"
        b.rows[7] = .compute([Span(7, 12)])
        let merged = mergeSimilar(program(blocks: n, plans: [a, b]), tolerance: 0.01)
        XCTAssertEqual(merged.plans.count, 1)
        XCTAssertEqual(merged.dispatch, [0, 0])
        XCTAssertEqual(merged.plans[0].rows[7], .compute([Span(7, 12)]))
        XCTAssertEqual(merged.plans[0].rows[8], .compute([Span(8, 12)]))
    }

    /// `stats` gives per step, layer and head the mean a filter over the whole table gives, on a
    /// program of many steps (a filtered mean per step was quadratic in them).
    func testStatsDensitiesMatchFilteredMeans() {
        let half = Plan(name: "half", rows: [.compute([Span(0, 1)]), .compute([Span(1, 2)])])
        let full = Plan(name: "full", rows: [.compute([Span(0, 2)]), .compute([Span(0, 2)])])
        let steps = Array(stride(from: 0, to: 3000, by: 3))
        let (layers, heads) = (2, 3)
        let dispatch = (0..<(steps.count * layers * heads)).map { ($0 % 7 == 0 || $0 % 5 == 1) ? 1 : 0 }
        let p = Program(model: "m", shape: Shape(tokens: 2, headDim: 8, block: 1, layers: layers, heads: heads, steps: steps),
                        plans: [half, full], dispatch: dispatch, sourceHash: "h")
        let lines = p.statsReport().split(separator: "\n")
        func f(_ x: Double) -> String {
            let v = Int((x * 1000).rounded())
            let frac = String(v % 1000)
            return "\(v / 1000)." + String(repeating: "0", count: 3 - frac.count) + frac
        }
        let bySteps = steps.enumerated().map { i, v in "\(v): \(f(p.meanDensity { s, _, _ in s == i }))" }.joined(separator: "  ")
        let byLayers = (0..<layers).map { l in "\(l): \(f(p.meanDensity { _, ly, _ in ly == l }))" }.joined(separator: "  ")
        let byHeads = (0..<heads).map { h in "\(h): \(f(p.meanDensity { _, _, hd in hd == h }))" }.joined(separator: "  ")
        XCTAssertEqual(lines.first { $0.hasPrefix("density by step: ") }, Substring("density by step: " + bySteps))
        XCTAssertEqual(lines.first { $0.hasPrefix("density by layer: ") }, Substring("density by layer: " + byLayers))
        XCTAssertEqual(lines.first { $0.hasPrefix("density by head: ") }, Substring("density by head: " + byHeads))
    }
}
