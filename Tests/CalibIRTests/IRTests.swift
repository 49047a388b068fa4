import CalibIR
import XCTest

/// Four query blocks; q3 reuses q1; two plans, one step, one layer, three heads.
func sampleProgram() -> Program {
    let a = Plan(name: "a", rows: [.compute([Span(0, 2), Span(3, 4)]), .compute([Span(1, 2)]), .compute([Span(0, 4)]), .reuse(1)],
                 order: [1, 0, 2], chunks: [0, 2, 3])
    let b = Plan(name: "b.v2-x", rows: Array(repeating: .compute([Span(0, 4)]), count: 4))
    return Program(model: "m \"q\"", shape: Shape(tokens: 250, headDim: 64, block: 64, layers: 1, heads: 3, steps: [5]),
                   plans: [a, b], dispatch: [0, 0, 1], sourceHash: "abc")
}

final class IRTests: XCTestCase {
    func testPrintedFormIsReadable() {
        XCTAssertEqual(sampleProgram().text, """
            calib.program "m \\"q\\"" hash "abc"
            shape tokens 250 head_dim 64 block 64 layers 1 heads 3 steps [5]

            plan @a {
              q0: compute [0, 2) [3, 4)
              q1: compute [1, 2)
              q2: compute [0, 4)
              q3: reuse q1
              order [1, 0, 2]
              chunks [0, 2, 3]
            }

            plan @b.v2-x {
              q0: compute [0, 4)
              q1: compute [0, 4)
              q2: compute [0, 4)
              q3: compute [0, 4)
            }

            dispatch {
              step 5 layer 0 head 0..1 -> @a
              step 5 layer 0 head 2 -> @b.v2-x
            }

            """)
    }

    func testRoundTrip() throws {
        let p = sampleProgram()
        XCTAssertEqual(try IRParser.parse(p.text), p)
        var q = p
        q.plans[0].order = nil
        q.plans[0].chunks = nil
        XCTAssertEqual(try IRParser.parse(q.text), q)
        // Model timesteps: Float's shortest text reads back to the same floats.
        var t = p
        t.shape.modelTimesteps = (0..<p.shape.steps.count).map { [999, 0.1, 1e-5, 16_777_216, 979.2456][$0 % 5] }
        XCTAssertTrue(t.text.contains("model_timesteps [999.0"), t.text)
        XCTAssertEqual(try IRParser.parse(t.text), t)
        // A joint sequence's text segment, either end.
        for first in [false, true] {
            var j = t
            (j.shape.textTokens, j.shape.textFirst) = (56, first)
            XCTAssertTrue(j.text.contains("text 56 \(first ? "first" : "last")\n"), j.text)
            XCTAssertEqual(try IRParser.parse(j.text), j)
        }
        let timesteps = t.text.split(separator: "\n")[2]
        for (line, message) in [("text 250 last", "line 4: shape text: 250 text tokens leave no video tokens of the 250"),
                                ("text 5 middle", "line 4: shape text: expected first or last after the text tokens")] {
            let bad = t.text.replacingOccurrences(of: timesteps + "\n", with: timesteps + "\n" + line + "\n")
            XCTAssertThrowsError(try IRParser.parse(bad)) { XCTAssertEqual("\($0)", message) }
        }
    }

    func testParseErrorsNameTheLine() {
        func error(_ text: String) -> String {
            do {
                _ = try IRParser.parse(text)
                return "accepted"
            } catch { return "\(error)" }
        }
        let good = sampleProgram().text
        XCTAssertEqual(error(good.replacingOccurrences(of: "q2: compute", with: "q7: compute")), "line 7: expected row q2")
        XCTAssertEqual(error(good.replacingOccurrences(of: "-> @b.v2-x", with: "-> @c")), "line 22: unknown plan @c")
        XCTAssertEqual(error(good.replacingOccurrences(of: "head 2 ->", with: "head 1 ->")), "line 22: step 5 layer 0 head 1 dispatched twice")
        XCTAssertEqual(error(good.replacingOccurrences(of: "  step 5 layer 0 head 2 -> @b.v2-x\n", with: "")), "line 22: dispatch table has no plan for entry 2")
        XCTAssertEqual(error(good.replacingOccurrences(of: "[3, 4)", with: "[3, 4]")), "line 5: expected ')'")
        XCTAssertEqual(error(good + "x"), "line 24: unexpected text after the dispatch table")
    }

    func testVerifierCatchesBrokenInvariants() {
        func message(_ edit: (inout Program) -> Void) -> String {
            var p = sampleProgram()
            edit(&p)
            do {
                try p.verify()
                return "valid"
            } catch { return "\(error)" }
        }
        XCTAssertEqual(message { _ in }, "valid")
        XCTAssertEqual(message { $0.plans[0].rows[1] = .reuse(0); $0.plans[0].rows[0] = .reuse(1) }, "plan @a: q0 is on a reuse cycle")
        XCTAssertEqual(message { $0.plans[0].rows[0] = .compute([Span(2, 3), Span(0, 1)]) },
                       "plan @a: q0 span [0, 1) is empty, out of range, unsorted or overlapping")
        XCTAssertEqual(message { $0.plans[0].rows[2] = .compute([Span(0, 5)]) },
                       "plan @a: q2 span [0, 5) is empty, out of range, unsorted or overlapping")
        XCTAssertEqual(message { $0.plans[0].rows[3] = .reuse(3) }, "plan @a: q3 reuses invalid row 3")
        // 250 tokens: block 3 holds 58 rows, too few to stand in for a full block.
        XCTAssertEqual(message { $0.plans[0].rows[1] = .reuse(3); $0.plans[0].rows[3] = .compute([Span(0, 1)]) },
                       "plan @a: q1 reuses the partial last block")
        XCTAssertEqual(message { $0.plans[0].order = [0, 1] }, "plan @a: order is not a permutation of the compute rows")
        XCTAssertEqual(message { $0.plans[0].chunks = [0, 2, 2, 3] }, "plan @a: chunks must rise strictly from 0 to 3")
        XCTAssertEqual(message { $0.plans[0].chunks = [0, 2] }, "plan @a: chunks must rise strictly from 0 to 3")
        XCTAssertEqual(message { $0.dispatch[2] = 2 }, "dispatch names plan 2 of 2")
        XCTAssertEqual(message { $0.shape.steps = [] }, "steps must be non-empty and strictly ascending")
    }

    func testDrawingShowsKeptAndReusedBlocks() {
        XCTAssertEqual(sampleProgram().plans[0].drawing(), """
            ██·█
            ·█··
            ████
            ----  q3 reuses q1

            """)
        let wide = Plan(name: "w", rows: (0..<8).map { q in .compute([Span(q, q + 1)]) })
        XCTAssertEqual(wide.drawing(width: 4), "(each character is 2×2 blocks)\n▒···\n·▒··\n··▒·\n···▒\n")
    }

    func testDensityAndReuseFraction() {
        let p = sampleProgram()
        XCTAssertEqual(p.plans[0].cost, 8)
        XCTAssertEqual(p.meanDensity(), (8.0 / 16 * 2 + 1) / 3, accuracy: 1e-12)
        XCTAssertEqual(p.reuseFraction, 2.0 / 12, accuracy: 1e-12)
    }

    func testHeadSelectorParsesAndChecks() throws {
        let shape = Shape(tokens: 64, headDim: 8, block: 16, layers: 2, heads: 3, steps: [0, 25, 49])
        XCTAssertEqual(try HeadSelector(parsing: "25,1,2").check(shape), 1)
        func message(_ text: String) -> String {
            do { try HeadSelector(parsing: text).check(shape); return "accepted" } catch { return "\(error)" }
        }
        XCTAssertEqual(message("99,0,0"), "--show 99,0,0: no timestep 99 (the masks have 0, 25, 49)")
        XCTAssertEqual(message("0,2,0"), "--show 0,2,0: no layer 2 (the masks have layers 0...1)")
        XCTAssertEqual(message("0,0,-1"), "--show 0,0,-1: no head -1 (the masks have heads 0...2)")
        for bad in ["1,2", "a,b,c", "1,2,3,4", "", "1,,2"] {
            XCTAssertEqual(message(bad), "--show expects <step>,<layer>,<head> (three integers), got \"\(bad)\"")
        }
        let many = Shape(tokens: 64, headDim: 8, block: 16, layers: 1, heads: 1, steps: Array(0..<50))
        XCTAssertThrowsError(try HeadSelector(parsing: "50,0,0").check(many)) { error in
            XCTAssertEqual("\(error)", "--show 50,0,0: no timestep 50 (the masks have 0, 1, 2, 3, …, 49)")
        }
    }
}
