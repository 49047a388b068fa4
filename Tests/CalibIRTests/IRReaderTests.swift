@testable import CalibIR
import Foundation
import XCTest

/// The IR text reader on hostile edits (docs/errors.md, "IR text (calibc opt)"): each class of
/// change gives its message with the line, never a trap or a large allocation, and whatever is
/// accepted verifies and round-trips.
final class IRReaderTests: XCTestCase {
    /// sampleProgram() (IRTests.swift) as text: 250 tokens in blocks of 64 (4 blocks, the last
    /// partial), 1 layer, 3 heads, step 5; plan @a on lines 4-11, @b.v2-x on 13-18, dispatch 20-23.
    let good = sampleProgram().text

    func error(_ text: String, limits: ReaderLimits = ReaderLimits()) -> String {
        do {
            let p = try IRParser.parse(text, limits: limits)
            XCTAssertNoThrow(try p.verify(), "accepted text must verify")
            return "accepted"
        } catch let e as IRParseError {
            return "\(e)"
        } catch {
            return "unexpected error type: \(error)"
        }
    }

    func edit(_ old: String, _ new: String) -> String {
        XCTAssertTrue(good.contains(old), old)
        return good.replacingOccurrences(of: old, with: new)
    }

    static let fixtures: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("CalibPassesTests/Fixtures")

    func fixtureTexts() throws -> [(String, String)] {
        var out: [(String, String)] = []
        for dir in [Self.fixtures, Self.fixtures.appendingPathComponent("passes")] {
            for name in try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() where name.hasSuffix(".ir") {
                out.append((name, try String(contentsOf: dir.appendingPathComponent(name), encoding: .utf8)))
            }
        }
        XCTAssertGreaterThanOrEqual(out.count, 14)
        return out
    }

    func testGoldenFixturesStillRoundTrip() throws {
        for (name, text) in try fixtureTexts() {
            let p = try IRParser.parse(text)
            XCTAssertNoThrow(try p.verify(), name)
            XCTAssertEqual(p.text, text, "\(name) prints back byte for byte")
            XCTAssertEqual(try IRParser.parse(p.text), p, name)
        }
        // Carriage returns (a file saved on Windows) are white space.
        XCTAssertEqual(try IRParser.parse(good.replacingOccurrences(of: "\n", with: "\r\n")), sampleProgram())
    }

    func testShapeNumbersOutOfRange() {
        XCTAssertEqual(error(edit("tokens 250", "tokens 99999999999999999999999")),
                       "line 2: shape tokens: expected an integer in 1...268435456, found 99999999999999999999999")
        XCTAssertEqual(error(edit("tokens 250", "tokens " + String(repeating: "9", count: 5000))),
                       "line 2: shape tokens: expected an integer in 1...268435456, found a 5000-digit number")
        XCTAssertEqual(error(edit("tokens 250", "tokens 268435457")), "line 2: shape tokens: expected an integer in 1...268435456, found 268435457")
        XCTAssertEqual(error(edit("tokens 250", "tokens 0")), "line 2: shape tokens: expected an integer in 1...268435456, found 0")
        XCTAssertEqual(error(edit("head_dim 64", "head_dim 513")), "line 2: shape head_dim: expected an integer in 1...512, found 513")
        XCTAssertEqual(error(edit("head_dim 64", "head_dim 0")), "line 2: shape head_dim: expected an integer in 1...512, found 0")
        XCTAssertEqual(error(edit("block 64", "block 1025")), "line 2: shape block: expected an integer in 1...1024, found 1025")
        XCTAssertEqual(error(edit("block 64", "block 0")), "line 2: shape block: expected an integer in 1...1024, found 0")
        XCTAssertEqual(error(edit("tokens 250", "tokens 268435456")),
                       "line 2: tokens / block gives 4194304 blocks per side, more than the 16384 supported")
        XCTAssertEqual(error(edit("layers 1", "layers 4097")), "line 2: shape layers: expected an integer in 1...4096, found 4097")
        XCTAssertEqual(error(edit("heads 3", "heads 9223372036854775807")),
                       "line 2: shape heads: expected an integer in 1...4096, found 9223372036854775807")
        XCTAssertEqual(error(edit("steps [5]", "steps [2147483648]")),
                       "line 2: shape steps: expected an integer in 0...2147483647, found 2147483648")
        XCTAssertEqual(error(edit("steps [5]", "steps [5, 5]")), "line 2: shape steps: steps must be strictly ascending (5 after 5)")
        XCTAssertEqual(error(edit("steps [5]", "steps []")), "line 2: shape steps: expected at least one step")
        // The product is refused at the step that crosses 10^7, before any table exists.
        XCTAssertEqual(error(edit("layers 1 heads 3 steps [5]", "layers 4096 heads 4096 steps [0, 1]")),
                       "line 2: shape steps: 1 steps × 4096 layers × 4096 heads is more than the 10000000 (step, layer, head) supported")
        let many = (0...1_000_000).map(String.init).joined(separator: ", ")
        XCTAssertEqual(error(edit("layers 1 heads 3 steps [5]", "layers 10 heads 1 steps [\(many)]")),
                       "line 2: shape steps: 1000001 steps × 10 layers × 1 heads is more than the 10000000 (step, layer, head) supported")
    }

    func testNegativeNumbers() {
        XCTAssertEqual(error(edit("tokens 250", "tokens -250")), "line 2: shape tokens: expected an integer in 1...268435456, found -250")
        XCTAssertEqual(error(edit("steps [5]", "steps [-1]")), "line 2: shape steps: expected an integer in 0...2147483647, found -1")
        XCTAssertEqual(error(edit("[1, 2)", "[-1, 2)")), "line 6: q1 span start: expected an integer in 0...3, found -1")
        XCTAssertEqual(error(edit("head 2 ->", "head -2 ->")), "line 22: head: expected an integer in 0...2, found -2")
        XCTAssertEqual(error(edit("step 5 layer 0 head 2", "step -5 layer 0 head 2")), "line 22: step -5 is not in the shape")
        XCTAssertEqual(error(edit("order [1, 0, 2]", "order [1, -0, 2]")), "accepted")
        XCTAssertEqual(error(edit("order [1, 0, 2]", "order [1, -9223372036854775809, 2]")),
                       "line 9: order: expected an integer in 0...3, found -9223372036854775809")
    }

    func testSpansOutOfRange() {
        XCTAssertEqual(error(edit("[0, 4)\n  q3", "[0, 5)\n  q3")), "line 7: q2 span end: expected an integer in 1...4, found 5")
        XCTAssertEqual(error(edit("[3, 4)", "[4, 5)")), "line 5: q0 span start: expected an integer in 0...3, found 4")
        XCTAssertEqual(error(edit("[3, 4)", "[3, 9223372036854775808)")),
                       "line 5: q0 span end: expected an integer in 1...4, found 9223372036854775808")
        XCTAssertEqual(error(edit("[1, 2)", "[2, 2)")), "line 6: q1 span [2, 2) is empty: the end must exceed the start")
        XCTAssertEqual(error(edit("[1, 2)", "[3, 1)")), "line 6: q1 span [3, 1) is empty: the end must exceed the start")
        XCTAssertEqual(error(edit("[0, 2) [3, 4)", "[3, 4) [0, 2)")),
                       "line 5: q0 span [0, 2) overlaps or precedes [3, 4); spans must be sorted and disjoint")
        XCTAssertEqual(error(edit("[0, 2) [3, 4)", "[0, 2) [1, 4)")),
                       "line 5: q0 span [1, 4) overlaps or precedes [0, 2); spans must be sorted and disjoint")
        XCTAssertEqual(error(edit("q1: compute [1, 2)", "q1: compute")), "line 7: a compute row needs at least one span")
        XCTAssertEqual(error(edit("[0, 2) [3, 4)", "[0, 2) [2, 4)")), "accepted")  // touching is allowed
    }

    func testRowCounts() {
        XCTAssertEqual(error(edit("  q3: reuse q1\n", "")), "line 8: plan @a has 3 rows, expected 4")
        XCTAssertEqual(error(edit("  q3: reuse q1\n", "  q3: reuse q1\n  q4: compute [0, 1)\n")),
                       "line 9: plan @a has 4 query blocks (q0...q3); expected 'order', 'chunks' or '}'")
        XCTAssertEqual(error(edit("q2: compute", "q99999999999999999999999: compute")), "line 7: expected row q2")
        XCTAssertEqual(error(edit("q1: compute [1, 2)", "q1 compute [1, 2)")), "line 6: expected ':'")
    }

    func testReuseOutOfRangeAndCycles() {
        XCTAssertEqual(error(edit("q3: reuse q1", "q3: reuse q4")), "line 8: q3 reuses q4: expected a query block in q0...q3")
        XCTAssertEqual(error(edit("q3: reuse q1", "q3: reuse q99999999999999999999999")),
                       "line 8: q3 reuses a row beyond Int's range: expected a query block in q0...q3")
        XCTAssertEqual(error(edit("q3: reuse q1", "q3: reuse q3")), "line 8: q3 cannot reuse itself")
        XCTAssertEqual(error(edit("q3: reuse q1", "q3: reuse q-1")), "line 8: expected a source row 'qN'")
        XCTAssertEqual(error(edit("q3: reuse q1", "q3: reuse 1")), "line 8: expected a source row 'qN'")
        XCTAssertEqual(error(edit("q3: reuse q1", "q3: reuse")), "line 9: expected a source row 'qN'")
        // 250 tokens: block 3 holds 58 rows, too few to stand in for a full block.
        XCTAssertEqual(error(edit("q1: compute [1, 2)", "q1: reuse q3").replacingOccurrences(of: "q3: reuse q1", with: "q3: compute [0, 1)")),
                       "line 6: q1 reuses q3, the partial last block, which cannot supply the 64 rows of a full block")
        // q0 → q1 → q2 → q1: the row named is one on the cycle.
        let cycle = edit("q0: compute [0, 2) [3, 4)", "q0: reuse q1")
            .replacingOccurrences(of: "q1: compute [1, 2)", with: "q1: reuse q2")
            .replacingOccurrences(of: "q2: compute [0, 4)", with: "q2: reuse q1")
            .replacingOccurrences(of: "q3: reuse q1", with: "q3: compute [0, 1)")
            .replacingOccurrences(of: "order [1, 0, 2]\n  chunks [0, 2, 3]", with: "order [3]")
        XCTAssertEqual(error(cycle), "line 6: plan @a: q1 is on a reuse cycle")
        XCTAssertEqual(error(cycle.replacingOccurrences(of: "q2: reuse q1", with: "q2: compute [0, 1)")
            .replacingOccurrences(of: "order [3]", with: "order [3, 2]")), "accepted")
        let two = edit("q0: compute [0, 2) [3, 4)", "q0: reuse q1").replacingOccurrences(of: "q1: compute [1, 2)", with: "q1: reuse q0")
        XCTAssertEqual(error(two), "line 5: plan @a: q0 is on a reuse cycle")
    }

    func testOrderAndChunks() {
        XCTAssertEqual(error(edit("order [1, 0, 2]", "order [1, 0, 4]")), "line 9: order: expected an integer in 0...3, found 4")
        XCTAssertEqual(error(edit("order [1, 0, 2]", "order [1, 0, 3]")), "line 9: order: q3 reuses another row; order lists compute rows")
        XCTAssertEqual(error(edit("order [1, 0, 2]", "order [1, 0, 1]")), "line 9: order: q1 is listed twice")
        XCTAssertEqual(error(edit("order [1, 0, 2]", "order [1, 0]")), "line 9: order lists 2 of the 3 compute rows")
        XCTAssertEqual(error(edit("order [1, 0, 2]", "order [1, 0, 2,]")), "line 9: order: expected an integer")
        XCTAssertEqual(error(edit("  order [1, 0, 2]\n", "")), "line 9: chunks without an order")
        XCTAssertEqual(error(edit("chunks [0, 2, 3]", "chunks [1, 2, 3]")), "line 10: chunks must start at 0, found 1")
        XCTAssertEqual(error(edit("chunks [0, 2, 3]", "chunks [0, 2, 2, 3]")), "line 10: chunks must rise strictly (2 after 2)")
        XCTAssertEqual(error(edit("chunks [0, 2, 3]", "chunks [0, 2, 4]")), "line 10: chunks: expected an integer in 0...3, found 4")
        XCTAssertEqual(error(edit("chunks [0, 2, 3]", "chunks [0, 2]")),
                       "line 10: chunks must rise strictly from 0 to 3 (the length of order), found last 2")
        XCTAssertEqual(error(edit("chunks [0, 2, 3]", "chunks []")),
                       "line 10: chunks must rise strictly from 0 to 3 (the length of order), found none")
        XCTAssertEqual(error(edit("  chunks [0, 2, 3]\n", "  chunks [0, 2, 3]\n  order [1, 0, 2]\n")), "line 11: expected '}'")
    }

    func testDispatch() {
        XCTAssertEqual(error(edit("step 5 layer 0 head 2", "step 6 layer 0 head 2")), "line 22: step 6 is not in the shape")
        XCTAssertEqual(error(edit("step 5 layer 0 head 2", "step 99999999999999999999 layer 0 head 2")),
                       "line 22: step 99999999999999999999 is not in the shape")
        XCTAssertEqual(error(edit("layer 0 head 2", "layer 1 head 2")), "line 22: layer: expected an integer in 0...0, found 1")
        XCTAssertEqual(error(edit("head 2 ->", "head 3 ->")), "line 22: head: expected an integer in 0...2, found 3")
        XCTAssertEqual(error(edit("head 0..1", "head 1..0")), "line 21: the last head: expected an integer in 1...2, found 0")
        XCTAssertEqual(error(edit("head 0..1", "head 0..3")), "line 21: the last head: expected an integer in 0...2, found 3")
        XCTAssertEqual(error(edit("head 0..1", "head 0..2")), "line 22: step 5 layer 0 head 2 dispatched twice")
        XCTAssertEqual(error(edit("-> @b.v2-x", "-> @c")), "line 22: unknown plan @c")
        XCTAssertEqual(error(edit("-> @b.v2-x", "-> @" + String(repeating: "c", count: 100_000))),
                       "line 22: unknown plan @cccccccccccccccccccccccccccccccccccccccc…")
        XCTAssertEqual(error(edit("  step 5 layer 0 head 0..1 -> @a\n", "")), "line 22: dispatch table has no plan for entry 0")
        XCTAssertEqual(error(edit("head 0..1 ->", "head 0 ->")), "line 23: dispatch table has no plan for entry 1")
        XCTAssertEqual(error(edit("plan @b.v2-x", "plan @a")), "line 13: plan @a defined twice")
    }

    func testStringsAndNames() {
        let long = String(repeating: "m", count: 4096)
        XCTAssertEqual(error(edit("\"m \\\"q\\\"\"", "\"\(long)\"")), "line 1: model is 4096 bytes of UTF-8, more than the 4095 supported")
        XCTAssertEqual(error(edit("\"m \\\"q\\\"\"", "\"\(long.dropFirst())\"")), "accepted")
        XCTAssertEqual(error(edit("hash \"abc\"", "hash \"ab\\\"c\"")), "line 1: the source hash must be at most 64 letters and digits (a SHA-256 in hex)")
        XCTAssertEqual(error(edit("hash \"abc\"", "hash \"\(String(repeating: "a", count: 65))\"")),
                       "line 1: the source hash must be at most 64 letters and digits (a SHA-256 in hex)")
        XCTAssertEqual(error(edit("hash \"abc\"", "hash \"abc")), "line 1: unterminated string")
        XCTAssertEqual(error(edit("hash \"abc\"", "hash \"ab\\tc\"")), "line 1: unknown escape '\\t' in a string (expected \\\", \\\\ or \\n)")
        XCTAssertEqual(error(edit("hash \"abc\"", "hash \"ab\\\u{1}c\"")),
                       "line 1: unknown escape '\\' followed by U+0001 in a string (expected \\\", \\\\ or \\n)")
        // NUL, ESC and other characters outside the name alphabet end a name, and are refused there.
        XCTAssertEqual(error(edit("plan @b.v2-x {", "plan @b.v2\u{0}-x {")), "line 13: unexpected character U+0000")
        XCTAssertEqual(error(edit("plan @b.v2-x {", "plan @b\u{1b}[31m {")), "line 13: unexpected character U+001B")
        XCTAssertEqual(error(edit("plan @b.v2-x {", "plan @\u{e9} {")),
                       "line 13: expected a plan name after '@' (letters, digits, '_', '.' and '-'), found U+00E9")
        XCTAssertEqual(error(edit("plan @b.v2-x {", "plan @ {")),
                       "line 13: expected a plan name after '@' (letters, digits, '_', '.' and '-'), found ' '")
        // The model name holds any characters (masks.json allows them, escaped); they round-trip.
        var p = sampleProgram()
        p.model = "a\u{0}b\u{1b}c\r\u{2028}\u{7f}é\n\"\\"
        XCTAssertEqual(try IRParser.parse(p.text), p)
    }

    func testGarbageBytesAndTruncation() {
        XCTAssertEqual(error(""), "line 1: expected 'calib.program', found the end of the file")
        XCTAssertEqual(error("\u{feff}" + good), "line 1: unexpected character U+FEFF")
        XCTAssertEqual(error(String(decoding: [0xff, 0xfe, 0x00], as: UTF8.self)), "line 1: unexpected character U+FFFD")
        XCTAssertEqual(error(edit("order [1, 0, 2]", "order [1, 0, 2] \u{0}")), "line 9: unexpected character U+0000")
        XCTAssertEqual(error(edit("[3, 4)", "[3, 4]")), "line 5: expected ')'")
        XCTAssertEqual(error(edit("[3, 4)", "[3; 4)")), "line 5: unexpected character ';'")
        XCTAssertEqual(error(edit("[3, 4)", "[3, 4.5)")), "line 5: q0 span end: expected an integer in 1...4, found 4.5")
        XCTAssertEqual(error(edit("[3, 4)", "[3, .5)")), "line 5: unexpected character '.'")
        XCTAssertEqual(error(good + "x"), "line 24: unexpected text after the dispatch table")
        XCTAssertEqual(error(String(good.dropLast(3))), "line 22: expected '}', found the end of the file")
        // Every prefix of a file is refused with a line, or (cut after the last '}') is the file.
        let bytes = Array(good.utf8)
        for n in 0..<bytes.count {
            let text = String(decoding: bytes[..<n], as: UTF8.self)
            let result = error(text)
            if result == "accepted" {
                XCTAssertEqual(try IRParser.parse(text), sampleProgram(), "prefix of \(n) bytes")
            } else {
                XCTAssertTrue(result.hasPrefix("line "), "prefix of \(n) bytes: \(result)")
            }
        }
    }

    /// Any byte in any position, and any number replaced by a hostile value: refused with a
    /// line, or accepted, verified and printed back to the same program.
    func testEveryEditIsRefusedOrValid() throws {
        let texts = try fixtureTexts().map(\.1).filter { $0.utf8.count < 3000 } + [good]
        let values = ["0", "1", "-1", "3", "4", "5", "64", "16384", "16385", "2147483648", "9223372036854775807",
                      "9223372036854775808", "99999999999999999999999999"]
        var accepted = 0, refused = 0
        func check(_ text: String) {
            do {
                let p = try IRParser.parse(text)
                XCTAssertNoThrow(try p.verify())
                XCTAssertEqual(try IRParser.parse(p.text), p)
                accepted += 1
            } catch is IRParseError {
                refused += 1
            } catch {
                XCTFail("\(error)")
            }
        }
        for text in texts {
            let bytes = Array(text.utf8)
            var i = 0
            while i < bytes.count {
                guard bytes[i] >= 0x30, bytes[i] <= 0x39 else { i += 1; continue }
                var j = i
                while j < bytes.count, bytes[j] >= 0x30, bytes[j] <= 0x39 { j += 1 }
                for v in values {
                    check(String(decoding: bytes[..<i] + Array(v.utf8) + bytes[j...], as: UTF8.self))
                }
                i = j
            }
        }
        let bytes = Array(good.utf8)
        for i in stride(from: 0, to: bytes.count, by: 3) {
            for b: UInt8 in [0x00, 0x1b, 0x22, 0x5c, 0x2d, 0x40, 0x5b, 0x0a, 0x71, 0x7f] {
                var copy = bytes
                copy[i] = b
                check(String(decoding: copy, as: UTF8.self))
            }
        }
        XCTAssertGreaterThan(accepted, 20)
        XCTAssertGreaterThan(refused, 1000)
    }

    func testTotalsAreRefusedBeforeTheyAreRead() {
        var limits = ReaderLimits()
        limits.plans = 1
        XCTAssertEqual(error(good, limits: limits), "line 13: more than 1 plans")
        limits = ReaderLimits()
        limits.planRows = 7
        XCTAssertEqual(error(good, limits: limits), "line 13: 2 plans × 4 query blocks is more than the 7 plan rows supported")
        limits = ReaderLimits()
        limits.ranges = 6
        XCTAssertEqual(error(good, limits: limits), "line 16: the plans hold more than 6 key-block ranges in all")
        XCTAssertEqual(Limits.maxPlans, Limits.maxPatterns + 1)
        XCTAssertEqual(Limits.maxPlanRows, (1 << 22) + 16_384)
        XCTAssertEqual(Limits.maxPlanRanges, (1 << 25) + 16_384)
    }

    /// The shape line may claim 10^7 (step, layer, head); a short file that names few of them
    /// must not allocate the table (160 MB for the old reader) or walk it.
    func testShortFileClaimingTheLargestTableIsCheap() {
        let text = """
            calib.program "m" hash "h"
            shape tokens 1 head_dim 1 block 1 layers 1000 heads 1000 steps [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
            plan @a {
              q0: compute [0, 1)
            }
            dispatch {
              step 9 layer 999 head 0..999 -> @a
              step 0 layer 0 head 0..998 -> @a
            }
            """
        let before = maxResidentBytes()
        let start = Date()
        XCTAssertEqual(error(text), "line 9: dispatch table has no plan for entry 999")
        XCTAssertEqual(error(text.replacingOccurrences(of: "head 0..998", with: "head 0..999")), "line 9: dispatch table has no plan for entry 1000")
        XCTAssertLessThan(Date().timeIntervalSince(start), 0.5)
        XCTAssertLessThan(maxResidentBytes() - before, 50 << 20)
    }

    /// Long reuse chains (every row reusing the next, B = 16384) in the parser and the verifier:
    /// each chain is walked once, not once per row (B² = 2.7e8 steps).
    func testLongReuseChainsAreLinear() throws {
        let blocks = Limits.maxBlocks
        for forward in [true, false] {
            var text = "calib.program \"m\" hash \"h\"\nshape tokens \(blocks) head_dim 1 block 1 layers 1 heads 1 steps [0]\n\nplan @a {\n"
            for q in 0..<blocks {
                let computes = forward ? q == 0 : q == blocks - 1
                text += computes ? "  q\(q): compute [0, \(blocks))\n" : "  q\(q): reuse q\(forward ? q - 1 : q + 1)\n"
            }
            text += "}\n\ndispatch {\n  step 0 layer 0 head 0 -> @a\n}\n"
            let start = Date()
            let p = try IRParser.parse(text)
            try p.verify()
            XCTAssertEqual(p.text, text)
            XCTAssertLessThan(Date().timeIntervalSince(start), 5, "forward \(forward)")
            // One cycle through all of them, closed at the end.
            let cyclic = text.replacingOccurrences(of: forward ? "q0: compute [0, \(blocks))" : "q\(blocks - 1): compute [0, \(blocks))",
                                                   with: forward ? "q0: reuse q\(blocks - 1)" : "q\(blocks - 1): reuse q0")
            XCTAssertEqual(error(cyclic), "line 5: plan @a: q0 is on a reuse cycle")
            var broken = p
            broken.plans[0].rows[forward ? 0 : blocks - 1] = .reuse(forward ? blocks - 1 : 0)
            XCTAssertThrowsError(try broken.verify()) { XCTAssertEqual("\($0)", "plan @a: q0 is on a reuse cycle") }
        }
    }

    /// A full-size dispatch table (10^6 entries here, 10^7 allowed) and many steps parse in time
    /// linear in the text: steps are found by binary search, not a scan per line.
    func testLargeValidTables() throws {
        let steps = Array(0..<1000)
        var text = "calib.program \"m\" hash \"h\"\nshape tokens 1 head_dim 1 block 1 layers 10 heads 100 steps \(steps)\n\n"
        text += "plan @a {\n  q0: compute [0, 1)\n}\n\ndispatch {\n"
        for s in steps { for l in 0..<10 { text += "  step \(s) layer \(l) head 0..99 -> @a\n" } }
        text += "}\n"
        let start = Date()
        let p = try IRParser.parse(text)
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
        XCTAssertEqual(p.dispatch.count, 1_000_000)
        XCTAssertEqual(p.text, text)
    }
}

private func maxResidentBytes() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return usage.ru_maxrss * 1024
}
