// Calibration whose memory follows what the files hold (docs/scale.md, "calibrate"): a state's
// metadata cannot claim more than it brings, the kept tiles are read as spans, and the report's
// pictures and counts do not grow with B² or with the table squared.

@testable import CalibCalibrate
import CalibFrontend
import CalibIR
import CalibSafetensors
import CalibSupport
import Foundation
import XCTest

final class BoundedCalibrationTests: XCTestCase {
    var dir: String!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("calibc-bounded-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// A state of one (step, layer, head), B = 2, with `metadata` changed.
    private func stateMessage(_ metadata: [String: String]) throws -> String {
        var h = HeadState(blocks: 2)
        h.fold(mass: [0.6, 0.4, 0.3, 0.7], selected: [[0], [1]], input: 0, reuseTolerance: 0.02, stabilityDrop: 0.05)
        var state = CalibrationState(shape: Shape(tokens: 2, headDim: 4, block: 1, layers: 1, heads: 1, steps: [0]), model: "m",
                                     layout: nil, scale: 0.5, selection: "mass 0.95", reuseTolerance: 0.02, stabilityDrop: 0.05)
        state.heads = [h]
        state.inputs = 1
        let path = dir + "/state.safetensors"
        try state.write(to: path)
        let file = try SafetensorsFile(path: path)
        var w = SafetensorsWriter()
        w.metadata = file.metadata.merging(metadata) { $1 }
        for (name, info) in file.tensors.sorted(by: { $0.key < $1.key }) {
            w.add(name, bytes: try file.bytes(name), shape: info.shape, dtype: info.dtype)
        }
        let changed = dir + "/changed.safetensors"
        try w.write(to: changed)
        do {
            _ = try CalibrationState(path: changed)
            return "accepted"
        } catch {
            return "\(error)".replacingOccurrences(of: changed + ": ", with: "")
        }
    }

    /// Metadata is checked against what a masks file allows before anything is allocated for it:
    /// a few hundred bytes claiming 4096 × 4096 heads are refused, not reserved for.
    func testStateMetadataIsBoundedBeforeAllocating() throws {
        XCTAssertEqual(try stateMessage([:]), "accepted")
        XCTAssertEqual(try stateMessage(["layers": "4096", "heads": "4096"]),
                       "metadata steps × layers × heads = 1 × 4096 × 4096 = 16777216 is more than the 10000000 a masks file allows")
        XCTAssertEqual(try stateMessage(["heads": "100000"]), "metadata heads must be an integer in 1…4096")
        // Within the limit, the claim still has to be met by the tensors before any head is kept.
        XCTAssertEqual(try stateMessage(["layers": "4096", "heads": "2441"]), "tensor step0.layer0.tiles is U8 [1, 1], expected U8 [2441, 1]")
        XCTAssertEqual(try stateMessage(["steps": "2147483648"]), "metadata step 2147483648 is more than the 2147483647 a masks file allows")
        XCTAssertEqual(try stateMessage(["model": String(repeating: "x", count: 4096)]),
                       "metadata model is 4096 bytes of UTF-8, more than the 4095 a masks file allows")
        XCTAssertEqual(try stateMessage(["tokens": "1000000"]),
                       "metadata tokens / block gives 1000000 blocks per side, more than the 16384 a masks file allows")
        let layout = ["frames": "1", "height": "1", "width": "1", "text_tokens": "1"]
        XCTAssertEqual(try stateMessage(layout), "accepted")
        XCTAssertEqual(try stateMessage(layout.merging(["text_tokens": "2"]) { $1 }),
                       "metadata frames × height × width + text_tokens = 3, but tokens is 2")
        XCTAssertEqual(try stateMessage(layout.merging(["frames": "100001"]) { $1 }),
                       "metadata frames, height and width must be integers in 1...100000 and text_tokens in 0...268435456")
        XCTAssertEqual(try stateMessage(["format": "calibc-\u{1B}[2Jstate"]),
                       "not a calibration state (metadata format is \"calibc-U+001B[2Jstate\", expected \"calibc-state/3\")")
    }

    /// The kept tiles as runs: exactly the tiles some input selected.
    func testKeptSpansAreTheSelectedTiles() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<30 {
            let b = Int.random(in: 1...20, using: &rng)
            var h = HeadState(blocks: b)
            for input in 0..<3 {
                let m = (0..<(b * b)).map { _ in Float.random(in: 0...1, using: &rng) }
                h.fold(mass: m, chosen: m.map { $0 > 0.6 }, input: input, reuseTolerance: 0.02, stabilityDrop: 0.05)
            }
            let codes = h.codes
            for (q, spans) in h.keptSpans.enumerated() {
                XCTAssertEqual(spans, Span.runs(Set((0..<b).filter { codes[q * b + $0] != HeadState.none })))
            }
        }
        // Every pair reusable before any input, the unused bits of the last byte clear.
        XCTAssertEqual(HeadState(blocks: 5).reuse, [0xff, 0x03])
        XCTAssertEqual(HeadState(blocks: 17).reuse, Packing.packBits(Array(repeating: true, count: 136)))
    }

    /// A recording whose tokens at --block give more blocks than a masks file holds is refused
    /// with its name.
    func testTooManyBlocksNamesTheRecording() throws {
        var w = SafetensorsWriter()
        let zeros = [Float](repeating: 0.5, count: 16_385)
        w.add("step0.layer0.q", zeros, shape: [1, 16_385, 1], as: .f32)
        w.add("step0.layer0.k", zeros, shape: [1, 16_385, 1], as: .f32)
        let path = dir + "/long.safetensors"
        try w.write(to: path)
        var options = CalibrationOptions()
        options.block = 1
        XCTAssertThrowsError(try Calibrator.fold([try Recording(path: path)], options: options)) {
            XCTAssertEqual("\($0)", "\(path): 16385 tokens in blocks of 1 give 16385 blocks per side, more than the 16384 a masks file allows; give a larger --block")
        }
    }

    /// Each plan is drawn at most 240 pixels a side and counted once per use.
    func testReportPicturesAndCountsAreBounded() throws {
        let n = 1000
        let wide = Plan(name: "wide", rows: (0..<n).map { .compute([Span($0, $0 + 1)]) })
        let dense = Plan(name: "dense", rows: Array(repeating: .compute([Span(0, n)]), count: n))
        let shape = Shape(tokens: n, headDim: 8, block: 1, layers: 1, heads: 3, steps: [0, 1])
        let dispatch = [0, 1, 0, 0, 0, 1]
        let heads = dispatch.indices.map { d in
            HeadReport(step: d / 3, layer: 0, head: d % 3, density: 0, leaveOneOutDrop: nil, dense: dispatch[d] == 1, reusedBlocks: 0)
        }
        let c = Calibration(program: Program(model: "m", shape: shape, plans: [wide, dense], dispatch: dispatch, sourceHash: ""),
                            layout: nil, heads: heads)
        let page = HTMLReport.page(c, calibrationInputs: 1, holdoutInputs: 0)
        XCTAssertTrue(page.contains("@wide: density 0.001, used by 4"), page)
        XCTAssertTrue(page.contains("@dense: density 1.000, used by 2"))
        XCTAssertEqual(page.components(separatedBy: "<td>@dense</td>").count - 1, 2)
        // Widths in the PNG headers: the overview, then each plan at 200 cells of 5 blocks.
        let widths = page.components(separatedBy: "data:image/png;base64,").dropFirst().map { part -> Int in
            let png = [UInt8](Data(base64Encoded: String(part.prefix { $0 != "\"" }))!)
            return Int(png[16]) << 24 | Int(png[17]) << 16 | Int(png[18]) << 8 | Int(png[19])
        }
        XCTAssertEqual(widths.dropFirst(), [200, 200])
    }

    /// Plans whose distinct rows hold more key-block ranges than compile's tables take (random
    /// weights' selections) are fitted by keeping the shortest gaps too: the smallest gap length
    /// that fits, every kept block still kept, nothing added but gaps of at most that length, and
    /// a file the frontend takes under that limit where it refused the plans as they were.
    func testPlansBeyondTheTablesLimitAreFittedByKeepingShortGaps() throws {
        var rng = SplitMix64(seed: 7)
        let n = 64
        let plans = (0..<6).map { i in
            Plan(name: "p\(i)", rows: (0..<n).map { _ in .compute(Span.runs(Set((0..<n).filter { _ in Bool.random(using: &rng) }))) })
        }
        let shape = Shape(tokens: n * 4, headDim: 8, block: 4, layers: 2, heads: 3, steps: [0])
        let heads = (0..<6).map { HeadReport(step: 0, layer: $0 / 3, head: $0 % 3, density: 0, leaveOneOutDrop: nil, dense: false, reusedBlocks: 0) }
        let c = Calibration(program: Program(model: "m", shape: shape, plans: plans, dispatch: Array(0..<6), sourceHash: ""),
                            layout: nil, heads: heads)
        let before = Calibrator.distinctRanges(c.program)
        XCTAssertEqual(Calibrator.fitDistinctRanges(c, limit: before).gap, 0)
        XCTAssertEqual(Calibrator.fitDistinctRanges(c, limit: before).0.program, c.program)

        let limit = before / 3
        let (fitted, gap) = Calibrator.fitDistinctRanges(c, limit: limit)
        XCTAssertGreaterThan(gap, 1)
        XCTAssertLessThanOrEqual(Calibrator.distinctRanges(fitted.program), limit)
        var short = c.program
        short.plans = plans.map { Calibrator.closingGaps($0, upTo: gap - 1) }
        XCTAssertGreaterThan(Calibrator.distinctRanges(short), limit)
        for (p, f) in zip(plans, fitted.program.plans) {
            for (row, fittedRow) in zip(p.rows, f.rows) {
                let kept = Set(row.spans.flatMap { $0.start..<$0.end }), now = Set(fittedRow.spans.flatMap { $0.start..<$0.end })
                XCTAssertTrue(kept.isSubset(of: now))
                // What was added fills gaps between kept blocks, none longer than `gap`.
                for (a, b) in zip(row.spans, row.spans.dropFirst()) {
                    let filled = (a.end..<b.start).filter { now.contains($0) }
                    XCTAssertTrue(filled.isEmpty || (filled.count == b.start - a.end && filled.count <= gap))
                }
                XCTAssertEqual(now.subtracting(kept).allSatisfy { k in row.spans.contains { $0.start > k } && row.spans.contains { $0.end <= k } }, true)
            }
        }
        // A limit no gap length reaches (fewer ranges than distinct rows): every row one range.
        let (whole, wholeGap) = Calibrator.fitDistinctRanges(c, limit: 1)
        XCTAssertEqual(wholeGap, n)
        XCTAssertTrue(whole.program.plans.allSatisfy { $0.rows.allSatisfy { $0.spans.count <= 1 } })
        var limits = TableLimits()
        limits.distinctRanges = limit
        XCTAssertThrowsError(try Frontend.parse(Array(MaskWriter.json(c.program, layout: nil).utf8), file: "m.json", limits: limits))
        XCTAssertNoThrow(try Frontend.parse(Array(MaskWriter.json(fitted.program, layout: nil).utf8), file: "m.json", limits: limits))
    }
}
