import CalibFrontend
import CalibIR
import CalibSupport
import Foundation
import XCTest

/// Three query blocks (130 tokens, block 64: the last holds 2 tokens), two heads, two steps.
private let valid = """
    {
      "format": 1, "model": "tiny", "tokens": 130, "head_dim": 16, "block": 64,
      "layers": 1, "heads": 2, "timesteps": [0, 7],
      "patterns": {
        "diag": {"rows": [[[0, 1]], [[0, 2]], [[2, 3]]], "reuse": []},
        "bits": {"bitmap": "AQMH"}
      },
      "assignments": [
        {"steps": "*", "layers": "*", "heads": 0, "pattern": "diag"},
        {"steps": "0", "layers": "0", "heads": "1", "pattern": "bits"},
        {"steps": 7, "layers": "0", "heads": "1", "pattern": "dense"}
      ]
    }
    """

final class ValidationTests: XCTestCase {
    func parse(_ text: String) throws -> Masks {
        try Frontend.parse(Array(text.utf8), file: "m.json")
    }

    /// Applies `edit` to the valid document and expects an error at `path` containing `message`.
    func expectError(_ edit: (String) -> String, path: String, _ message: String, line: UInt = #line) {
        let text = edit(valid)
        XCTAssertNotEqual(text, valid, "the edit changed nothing", line: line)
        do {
            _ = try parse(text)
            XCTFail("accepted invalid masks", line: line)
        } catch let e as MaskError {
            XCTAssertEqual(e.file, "m.json", line: line)
            XCTAssertEqual(e.path, path, "\(e)", line: line)
            XCTAssertTrue(e.message.contains(message), "message was: \(e.message)", line: line)
        } catch {
            XCTFail("unexpected error \(error)", line: line)
        }
    }

    func replace(_ a: String, _ b: String) -> (String) -> String {
        { $0.replacingOccurrences(of: a, with: b) }
    }

    func testValidDocumentBuildsTheExpectedProgram() throws {
        let p = try parse(valid).program
        XCTAssertEqual(p.shape, Shape(tokens: 130, headDim: 16, block: 64, layers: 1, heads: 2, steps: [0, 7]))
        XCTAssertEqual(p.plans.map(\.name), ["diag", "bits", "dense"])
        XCTAssertEqual(p.plans[0].rows, [.compute([Span(0, 1)]), .compute([Span(0, 2)]), .compute([Span(2, 3)])])
        // AQMH = bytes 0x01 0x03 0x07: blocks {0}, {0,1}, {0,1,2}, one block per set bit.
        XCTAssertEqual(p.plans[1].rows, [.compute([Span(0, 1)]), .compute([Span(0, 2)]), .compute([Span(0, 3)])])
        XCTAssertEqual(p.plans[2].rows, Array(repeating: .compute([Span(0, 3)]), count: 3))
        XCTAssertEqual(p.dispatch, [0, 1, 0, 2])
        XCTAssertEqual(p.sourceHash, SHA256.hex(Array(valid.utf8)))
        XCTAssertNoThrow(try p.verify())
    }

    func testSyntaxErrorsGiveLineAndColumn() {
        expectError(replace("\"layers\": 1,", "\"layers\": 1,,"), path: "line 3, column 15", "invalid JSON: expected a string key")
        expectError({ String($0.dropLast(3)) }, path: "line 12, column 3", "invalid JSON: unexpected end of input")
        expectError(replace("\"model\": \"tiny\"", "\"model\": \"tiny\", \"model\": \"x\""), path: "line 2, column 33", "duplicate key \"model\"")
    }

    func testTopLevelFields() {
        expectError(replace("\"format\": 1", "\"format\": 2"), path: "$.format", "unsupported format version")
        expectError(replace("\"tokens\": 130", "\"tokens\": \"130\""), path: "$.tokens", "expected an integer, found a string")
        expectError(replace("\"tokens\": 130", "\"tokens\": 1000000000000"), path: "$.tokens", "expected an integer in 1...")
        expectError(replace("\"head_dim\": 16", "\"head_dim\": 16.5"), path: "$.head_dim", "expected an integer, found a number")
        expectError(replace("\"model\": \"tiny\", ", ""), path: "$", "missing required field \"model\"")
        expectError(replace("\"layers\": 1", "\"layers\": 1, \"leyers\": 2"), path: "$.leyers", "unknown field \"leyers\"")
        expectError(replace("[0, 7]", "[7, 0]"), path: "$.timesteps[1]", "strictly ascending")
        expectError(replace("[0, 7]", "[]"), path: "$.timesteps", "at least one timestep")
    }

    func testBlocksPerSideAreBounded() {
        expectError(replace("\"tokens\": 130", "\"tokens\": 200000000"), path: "$.block", "more than the 16384 supported")
    }

    func testDeclaredSizesAreRefusedBeforeAllocating() {
        expectError(replace("\"layers\": 1, \"heads\": 2, \"timesteps\": [0, 7]", "\"layers\": 4000, \"heads\": 4000, \"timesteps\": [0, 7]"),
                    path: "$.timesteps", "timesteps × layers × heads = 32000000 exceeds 10000000")
        expectError(replace("\"steps\": 7,", "\"steps\": \"3-5\","), path: "$.assignments[2].steps", "selects no timestep")
    }

    /// The generated code holds `model` in one C string literal: 4095 bytes is what C11 (and
    /// clang -Wpedantic) accept, so longer is refused here rather than by libclang later.
    func testModelLengthIsWhatCompiles() throws {
        let longest = String(repeating: "é", count: 2047) + "x"  // 4095 bytes of UTF-8
        XCTAssertEqual(try parse(valid.replacingOccurrences(of: "\"tiny\"", with: "\"\(longest)\"")).program.model, longest)
        expectError(replace("\"tiny\"", "\"\(longest)y\""), path: "$.model", "model is 4096 bytes of UTF-8, more than the 4095 supported")
    }

    /// The distinct rows of all patterns are what the generated tables hold (and libclang
    /// checks): their key-block ranges are bounded, and counted while a bitmap is decoded.
    func testDistinctRowRangesAreBounded() {
        let blocks = 4096, stride = blocks / 8
        var bytes = [UInt8](repeating: 0x55, count: blocks * stride)  // 2048 ranges a row
        for q in 0..<blocks { bytes[q * stride + q % stride] = 0x57; bytes[q * stride + (q / stride + 1) % stride] = 0x5d }  // all rows distinct
        let doc = """
            {"format": 1, "model": "m", "tokens": \(blocks), "head_dim": 8, "block": 1, "layers": 1, "heads": 1, "timesteps": [0],
             "patterns": {"noise": {"bitmap": "\(Data(bytes).base64EncodedString())"}},
             "assignments": [{"steps": "*", "layers": "*", "heads": "*", "pattern": "noise"}]}
            """
        XCTAssertThrowsError(try parse(doc)) { error in
            XCTAssertEqual("\(error)", "m.json: $.patterns.noise.bitmap: the distinct rows of all patterns hold more than 4194304 key-block ranges in all")
        }
    }

    /// Patterns and their query-block rows are bounded before each pattern is decoded; ranges
    /// as each row is (the format's limits, lowered so that small files reach them).
    func testTableLimits() {
        func message(_ text: String, _ change: (inout TableLimits) -> Void) -> String {
            var limits = TableLimits()
            change(&limits)
            do { _ = try Frontend.parse(Array(text.utf8), file: "m.json", limits: limits); return "accepted" } catch { return "\(error)" }
        }
        XCTAssertEqual(message(valid) { $0.patterns = 2 }, "accepted")
        XCTAssertEqual(message(valid) { $0.patterns = 1 }, "m.json: $.patterns.bits: more than 1 patterns")
        XCTAssertEqual(message(valid) { $0.patternRows = 6 }, "accepted")
        XCTAssertEqual(message(valid) { $0.patternRows = 5 }, "m.json: $.patterns.bits: 2 patterns × 3 query blocks is more than the 5 pattern rows supported")
        // diag has 3 ranges in 3 distinct rows; bits (AQMH: 1, 3, 7) has [0,1], [0,2], [0,3], the first two
        // diag's rows again: 6 in all, 4 distinct.
        XCTAssertEqual(message(valid) { $0.ranges = 6; $0.distinctRanges = 4 }, "accepted")
        XCTAssertEqual(message(valid) { $0.ranges = 5 }, "m.json: $.patterns.bits.bitmap: the patterns hold more than 5 key-block ranges in all")
        XCTAssertEqual(message(valid) { $0.distinctRanges = 3 },
                       "m.json: $.patterns.bits.bitmap: the distinct rows of all patterns hold more than 3 key-block ranges in all")
        XCTAssertEqual(message(valid) { $0.ranges = 2 }, "m.json: $.patterns.diag.rows[2]: the patterns hold more than 2 key-block ranges in all")
        // The format's own: 65,536 patterns at most.
        let names = (0...65_536).map { "\"p\($0)\": {\"rows\": [[[0,1]]]}" }.joined(separator: ",")
        let many = """
            {"format": 1, "model": "m", "tokens": 1, "head_dim": 8, "block": 1, "layers": 1, "heads": 1, "timesteps": [0],
             "patterns": {\(names)}, "assignments": [{"steps": "*", "layers": "*", "heads": "*", "pattern": "p0"}]}
            """
        XCTAssertEqual(message(many) { _ in }, "m.json: $.patterns.p65536: more than 65536 patterns")
    }

    func testLayoutMustAddUp() {
        expectError(replace("\"layers\": 1", "\"layers\": 1, \"layout\": {\"frames\": 2, \"height\": 8, \"width\": 8, \"text_tokens\": 2, \"text_position\": \"middle\"}"),
                    path: "$.layout.text_position", "expected \"first\" or \"last\"")
        expectError(replace("\"layers\": 1", "\"layers\": 1, \"layout\": {\"frames\": 2, \"height\": 8, \"width\": 8}"),
                    path: "$.layout", "frames × height × width + text_tokens = 128, but tokens is 130")
    }

    func testRanges() {
        expectError(replace("[[0, 1]], [[0, 2]]", "[[0, 1]], [[2, 2]]"), path: "$.patterns.diag.rows[1][0]", "empty range [2, 2)")
        expectError(replace("[[0, 1]], [[0, 2]]", "[[0, 1]], [[0, 2], [1, 3]]"), path: "$.patterns.diag.rows[1][1]", "overlaps")
        expectError(replace("[[2, 3]]]", "[[2, 4]]]"), path: "$.patterns.diag.rows[2][0][1]", "expected an integer in 0...3, found 4")
        expectError(replace("[[2, 3]]]", "[[2, 3, 4]]]"), path: "$.patterns.diag.rows[2][0]", "expected a key-block range")
        expectError(replace(", [[2, 3]]]", "]"), path: "$.patterns.diag.rows", "expected 3 rows (one per query block), found 2")
        expectError(replace("[[2, 3]]]", "[]]"), path: "$.patterns.diag.rows[2]", "keeps no key block and reuses none")
    }

    func testBitmaps() {
        expectError(replace("AQMH", "AQM"), path: "$.patterns.bits.bitmap", "expected base64 text")
        expectError(replace("AQMH", "AQMHAA=="), path: "$.patterns.bits.bitmap", "expected 3 rows of 1 bytes (3 bytes), found 4 bytes")
        expectError(replace("AQMH", "AQMP"), path: "$.patterns.bits.bitmap", "row 2 sets padding bit 3")
        expectError(replace("\"bitmap\": \"AQMH\"", "\"bitmap\": \"AQMH\", \"rows\": []"), path: "$.patterns.bits", "not both")
        expectError(replace("{\"bitmap\": \"AQMH\"}", "{}"), path: "$.patterns.bits", "expected \"rows\" or \"bitmap\"")
    }

    func testReuse() {
        let reuse = { (r: String) in self.replace("[[0, 2]], [[2, 3]]], \"reuse\": []", "[], [[2, 3]]], \"reuse\": \(r)") }
        XCTAssertNoThrow(try parse(reuse("[[1, 0]]")(valid)))
        expectError(reuse("[[1, 1]]"), path: "$.patterns.diag.reuse[0]", "cannot reuse itself")
        expectError(reuse("[[1]]"), path: "$.patterns.diag.reuse[0]", "expected [target, source] query blocks")
        expectError(reuse("[[1, 0], [1, 0]]"), path: "$.patterns.diag.reuse[1]", "already reuses")
        expectError(reuse("[[1, 2]]"), path: "$.patterns.diag.reuse[0][1]", "partial last block")
        expectError(reuse("[[1, 5]]"), path: "$.patterns.diag.reuse[0][1]", "expected an integer in 0...2")
        expectError(replace("\"reuse\": []", "\"reuse\": [[2, 0]]"), path: "$.patterns.diag.reuse[0]", "its kept key blocks must be empty")
        expectError(replace("[[[0, 1]], [[0, 2]], [[2, 3]]], \"reuse\": []", "[[], [], [[2, 3]]], \"reuse\": [[0, 1], [1, 0]]"),
                    path: "$.patterns.diag.reuse", "query block 0 is on a reuse cycle")
    }

    func testPatternNames() {
        expectError(replace("\"bits\": {", "\"dense\": {"), path: "$.patterns.dense", "built in")
        expectError(replace("\"bits\": {", "\"a b\": {"), path: "$.patterns[\"a b\"]", "pattern names use")
    }

    func testAssignments() {
        expectError(replace("\"pattern\": \"bits\"", "\"pattern\": \"nope\""), path: "$.assignments[1].pattern", "unknown pattern \"nope\"")
        expectError(replace("\"steps\": 7,", "\"steps\": \"0\","), path: "$.assignments[2]", "timestep 0 layer 0 head 1 is already assigned pattern \"bits\"")
        expectError(replace("\"steps\": 7,", "\"steps\": 8,"), path: "$.assignments[2].steps", "timestep 8 does not exist")
        expectError(replace("\"heads\": \"1\"", "\"heads\": \"1-\""), path: "$.assignments[1].heads", "expected \"*\", an integer, or a list")
        expectError(replace("\"heads\": \"1\"", "\"heads\": \"0-5\""), path: "$.assignments[1]", "already assigned")
        expectError(replace(",\n    {\"steps\": 7, \"layers\": \"0\", \"heads\": \"1\", \"pattern\": \"dense\"}", ""),
                    path: "$.assignments", "timestep 7 layer 0 head 1 has no pattern assigned")
        expectError(replace("\"pattern\": \"dense\"", "\"pattern\": \"dense\", \"weight\": 1"), path: "$.assignments[2].weight", "unknown field")
    }

    func testFileErrorsNameTheFile() {
        XCTAssertThrowsError(try Frontend.load(path: "/nonexistent/masks.json")) { e in
            XCTAssertEqual("\(e)", "/nonexistent/masks.json: $: cannot read the file")
        }
    }

    func testTheBundledExampleIsValid() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../examples/masks.json")
        let masks = try Frontend.load(path: url.path)
        XCTAssertEqual(masks.layout, Layout(frames: 8, height: 16, width: 16, textTokens: 52, textFirst: false))
        XCTAssertNoThrow(try masks.program.verify())
    }
}

final class MaskWriterTests: XCTestCase {
    /// Scattered rows are written as a bitmap, compact ones as ranges; both read back the same.
    func testWriterPicksTheShorterEncodingAndRoundTrips() throws {
        let blocks = 200
        let scattered = Plan(name: "stripes", rows: (0..<blocks).map { q in q == 3 ? .reuse(1) : .compute((0..<50).map { Span(4 * $0 + q % 4, 4 * $0 + q % 4 + 1) }) })
        let compact = Plan(name: "window", rows: (0..<blocks).map { q in .compute([Span(max(0, q - 1), min(blocks, q + 2))]) })
        let program = Program(model: "w", shape: Shape(tokens: blocks * 16 - 5, headDim: 32, block: 16, layers: 1, heads: 2, steps: [0, 1, 2]),
                              plans: [scattered, compact], dispatch: [0, 1, 0, 1, 1, 1], sourceHash: "")
        let json = MaskWriter.json(program, layout: nil)
        XCTAssertTrue(json.contains("\"stripes\": {\"bitmap\": "), json)
        XCTAssertTrue(json.contains("\"window\": {\"rows\": "), json)
        XCTAssertTrue(json.contains("{\"steps\": \"0-1\", \"layers\": 0, \"heads\": 0, \"pattern\": \"stripes\"}"), json)
        let parsed = try Frontend.parse(Array(json.utf8), file: "w.json").program
        for d in 0..<program.dispatch.count { XCTAssertEqual(parsed.plans[parsed.dispatch[d]].rows, program.plans[program.dispatch[d]].rows) }
    }
}
