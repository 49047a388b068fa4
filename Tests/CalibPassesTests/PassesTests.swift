import CalibDriver
import CalibFrontend
import CalibIR
import CalibPasses
import XCTest

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
private let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../examples/masks.json").path

private func fixture(_ name: String) throws -> String {
    try String(contentsOf: fixtures.appendingPathComponent(name), encoding: .utf8)
}

final class PassesTests: XCTestCase {
    /// Each pass against its before/after files in Fixtures/passes (what `calibc opt
    /// <name>.before.ir --passes=<name>` prints; regenerate with `make golden`, then read the diff).
    func testEachPassAgainstItsFixture() throws {
        for (name, tolerance) in [("merge-runs", 0.0), ("collapse-reuse", 0), ("dedupe", 0), ("merge-similar", 0.2), ("reorder", 0), ("chunk", 0)] {
            let before = try IRParser.parse(try fixture("passes/\(name).before.ir"))
            XCTAssertNoThrow(try before.verify(), name)
            let pass = try XCTUnwrap(Pipeline.named(name, mergeTolerance: tolerance))
            let after = Pipeline.run(before, [pass])
            XCTAssertEqual(after.text, try fixture("passes/\(name).after.ir"), name)
            XCTAssertEqual(try IRParser.parse(after.text), after, "\(name) round-trips")
        }
    }

    /// Chunks on random plans: contiguous, in locality order, near-equal cost, a heavy row alone.
    func testChunkCutsNearEqualCostPieces() {
        var rng = SystemRandomNumberGenerator()
        for blocks in [1, 5, 40, 300] {
            let rows: [Row] = (0..<blocks).map { _ in
                let s = Int.random(in: 0..<blocks, using: &rng)
                return .compute([Span(s, Int.random(in: (s + 1)...blocks, using: &rng))])
            }
            let p = reorder(Program(model: "t", shape: Shape(tokens: blocks * 16, headDim: 16, block: 16, layers: 1, heads: 1, steps: [0]),
                                    plans: [Plan(name: "a", rows: rows)], dispatch: [0], sourceHash: "h"))
            let plan = chunk(p).plans[0]
            XCTAssertNoThrow(try chunk(p).verify())
            XCTAssertEqual(plan.order, p.plans[0].order, "chunks keep the locality order")
            let bounds = plan.chunks!
            let costs = (0..<(bounds.count - 1)).map { c in plan.order![bounds[c]..<bounds[c + 1]].reduce(0) { $0 + rows[$1].cost } }
            let biggestRow = rows.map(\.cost).max()!
            XCTAssertLessThanOrEqual(costs.count, finestChunks + blocks)
            XCTAssertEqual(costs.reduce(0, +), plan.cost)
            // A chunk closes at the first row that reaches the target for the cost still left: no
            // chunk exceeds it by more than a row, and no chunk but the last stays under it.
            var remaining = plan.cost
            for (i, c) in costs.enumerated() {
                let target = chunkTarget(remaining: remaining, total: plan.cost)
                XCTAssertLessThan(c, target + biggestRow, "\(costs)")
                if i < costs.count - 1 { XCTAssertGreaterThanOrEqual(c, target, "\(costs)") }
                remaining -= c
            }
            // Large first (at most cost / 64 but for one row), small last (the end shrinks).
            let largest = (plan.cost + chunksPerPlan - 1) / chunksPerPlan
            XCTAssertLessThan(costs.max()!, largest + biggestRow)
        }
    }

    /// A dense head of 256 query blocks (Wan 480p at blocks of 128): chunks of 4 rows for the
    /// first three quarters, shrinking to single rows at the end, every row in exactly one chunk.
    func testChunksShrinkTowardsTheEnd() {
        let blocks = 256
        let plan = chunk(Plan(name: "d", rows: Array(repeating: .compute([Span(0, blocks)]), count: blocks)))
        let bounds = plan.chunks!
        let sizes = (0..<(bounds.count - 1)).map { bounds[$0 + 1] - bounds[$0] }
        XCTAssertEqual(sizes.reduce(0, +), blocks)
        XCTAssertEqual(Array(sizes.prefix(48)), Array(repeating: 4, count: 48), "\(sizes)")
        XCTAssertEqual(Array(sizes.suffix(8)), Array(repeating: 1, count: 8), "\(sizes)")
        XCTAssertEqual(sizes, sizes.sorted(by: >), "sizes never grow")
    }

    func testPipelineKeepsEveryDispatchAnswer() throws {
        let raw = try Frontend.load(path: example).program
        let optimized = Driver.optimize(raw, CompileOptions().passes)
        XCTAssertEqual(optimized.plans.count, 5)
        XCTAssertEqual(raw.plans.count, 6)
        for s in raw.shape.steps.indices {
            for l in 0..<raw.shape.layers {
                for h in 0..<raw.shape.heads {
                    let before = raw.plan(stepIndex: s, layer: l, head: h), after = optimized.plan(stepIndex: s, layer: l, head: h)
                    // Same kept blocks per query block once runs are merged and reuse is followed.
                    func kept(_ p: Plan, _ q: Int) -> Set<Int> {
                        var r = p.rows[q]
                        while case .reuse(let next) = r { r = p.rows[next] }
                        return Set(r.spans.flatMap { Array($0.start..<$0.end) })
                    }
                    for q in 0..<raw.shape.blocks { XCTAssertEqual(kept(before, q), kept(after, q)) }
                }
            }
        }
    }

    /// Golden dumps, regenerated by `make golden`: the parsed and the optimized example.
    func testGoldenDumpsOfTheExample() throws {
        let raw = try Frontend.load(path: example).program
        XCTAssertEqual(raw.text, try fixture("example.parse.ir"))
        XCTAssertEqual(Driver.optimize(raw, CompileOptions().passes).text, try fixture("example.ir"))
    }

    func testEveryStageRoundTripsThroughText() throws {
        var p = try Frontend.load(path: example).program
        XCTAssertEqual(try IRParser.parse(p.text), p)
        for pass in Pipeline.common(mergeTolerance: 0.05) + [Pipeline.named("chunk")!] {
            p = pass.run(p)
            XCTAssertEqual(try IRParser.parse(p.text), p, "after \(pass.name)")
        }
    }
}

final class MergeSimilarTests: XCTestCase {
    /// Beyond the fixture: tolerance 0 changes nothing, a tolerance below the difference merges
    /// nothing, and no (step, layer, head) ever loses a tile it kept.
    func testMergesOnlyWithinToleranceAndNeverDropsTiles() throws {
        let p = try IRParser.parse(try fixture("passes/merge-similar.before.ir"))
        XCTAssertEqual(mergeSimilar(p, tolerance: 0), p, "tolerance 0 must change nothing")
        XCTAssertEqual(mergeSimilar(p, tolerance: 0.1).plans.count, 4, "one tile in six is not within 10%")
        let merged = mergeSimilar(p, tolerance: 0.2)
        for h in 0..<4 {
            let before = p.plan(stepIndex: 0, layer: 0, head: h), after = merged.plan(stepIndex: 0, layer: 0, head: h)
            for (x, y) in zip(before.rows, after.rows) {
                XCTAssertTrue(Set(x.spans.flatMap { Array($0.start..<$0.end) }).isSubset(of: Set(y.spans.flatMap { Array($0.start..<$0.end) })))
            }
        }
    }
}
