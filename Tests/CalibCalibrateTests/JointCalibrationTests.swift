import CCalibrate
import CalibCalibrate
import CalibFrontend
import CalibIR
import CalibRuntime
import CalibSafetensors
import CalibSupport
import CalibSynth
import Foundation
import XCTest

/// The small shape with moving content and 64 text tokens: 384 video tokens, then text (448),
/// blocks of 16: video blocks 0–23, text blocks 24–27.
func jointConfig(textFirst: Bool = false) -> SynthConfig {
    var c = smallConfig()
    (c.content, c.textTokens, c.textFirst) = (1, 64, textFirst)
    return c
}

/// Four prompts of `jointConfig()`: prompt 0 has 41 valid text tokens (text block 26 holds 9
/// of them, block 27 is wholly padding), the others their own lengths in 32…64.
enum JointFixture {
    static let dir = FileManager.default.temporaryDirectory.appendingPathComponent("calibc-joint-\(UUID().uuidString)").path
    static let paths: [String] = try! Synth.write(jointConfig(), prompts: 4, seed: 11, to: dir)
    static var recordings: [Recording] { paths.map { try! Recording(path: $0) } }
}

final class JointCalibrationTests: XCTestCase {
    func options(_ change: (inout CalibrationOptions) -> Void = { _ in }) -> CalibrationOptions {
        var o = CalibrationOptions()
        o.block = 16
        change(&o)
        return o
    }

    /// A copy of `r` with every tensor as F32 and NaN planted in each head's padded rows.
    func withNaNPadding(_ r: Recording, to path: String) throws -> Recording {
        var w = SafetensorsWriter()
        w.metadata = r.file.metadata
        for (name, info) in r.file.tensors.sorted(by: { $0.key < $1.key }) {
            var values = try r.file.floats(name)
            for h in 0..<r.heads {
                for t in r.validTokens..<r.tokens {
                    for i in 0..<r.headDim { values[(h * r.tokens + t) * r.headDim + i] = .nan }
                }
            }
            w.add(name, values, shape: info.shape, as: .f32)
        }
        try w.write(to: path)
        return try Recording(path: path)
    }

    func testTextValidMetadata() throws {
        let r = JointFixture.recordings
        XCTAssertEqual(r[0].textValid, 41)
        XCTAssertEqual(r[0].validTokens, 384 + 41)
        XCTAssertEqual(r[0].layout, Layout(frames: 6, height: 8, width: 8, textTokens: 64, textFirst: false))
        XCTAssertEqual(r[0].file.metadata["text_valid"], "41")
        XCTAssertEqual(r[0].file.metadata["text_position"], "last")
        let lengths = r.map { $0.textValid! }
        XCTAssertTrue(lengths.dropFirst().allSatisfy { (32...64).contains($0) }, "\(lengths)")
        XCTAssertGreaterThan(Set(lengths).count, 2, "prompts should differ in text length: \(lengths)")

        // 6 tokens of head_dim 4, one head; NaN in the last token, which is padding when text_valid < 2.
        var values = [Float](repeating: 0.5, count: 6 * 4)
        values[5 * 4 + 1] = .nan
        func message(_ metadata: [String: String]) -> String {
            var w = SafetensorsWriter()
            w.metadata = metadata
            w.add("step0.layer0.q", values, shape: [1, 6, 4], as: .f32)
            w.add("step0.layer0.k", values, shape: [1, 6, 4], as: .f32)
            let path = JointFixture.dir + "/meta-\(UUID().uuidString).safetensors"
            try! w.write(to: path)
            do {
                let r = try Recording(path: path)
                _ = try r.head("q", step: 0, layer: 0, head: 0)
                return "accepted, \(r.validTokens) valid"
            } catch { return "\(error)".replacingOccurrences(of: path, with: "FILE") }
        }
        XCTAssertEqual(message(["text_tokens": "2", "text_position": "last", "text_valid": "1"]), "accepted, 5 valid")
        XCTAssertEqual(message(["frames": "4", "height": "1", "width": "1", "text_tokens": "2", "text_valid": "0"]), "accepted, 4 valid")
        XCTAssertEqual(message(["text_tokens": "2", "text_valid": "2"]), "FILE: tensor step0.layer0.q head 0 holds nan at token 5, dim 1")
        XCTAssertEqual(message(["text_tokens": "2", "text_position": "first", "text_valid": "1"]),
                       "FILE: metadata text_valid is given, but text_position is first; only text last (padding at the end of the sequence) has a valid length")
        XCTAssertEqual(message(["text_tokens": "0", "text_valid": "0"]),
                       "FILE: metadata text_valid is given, but text_tokens is \"0\"; expected text_tokens > 0 (text_valid counts the valid ones among them)")
        XCTAssertEqual(message(["text_valid": "1"]),
                       "FILE: metadata text_valid is given, but text_tokens is missing; expected text_tokens > 0 (text_valid counts the valid ones among them)")
        for bad in ["3", "-1", "1.5", ""] {
            XCTAssertEqual(message(["text_tokens": "2", "text_valid": bad]),
                           "FILE: metadata text_valid \"\(bad)\" must be an integer in 0...2 (text_tokens)")
        }
        XCTAssertEqual(message(["text_tokens": "7", "text_valid": "1"]), "FILE: metadata text_tokens 7 is more than the 6 tokens the tensors hold")
        XCTAssertEqual(message(["text_tokens": "6", "text_valid": "0"]), "FILE: metadata text_valid 0 leaves no valid token: every token is text")
    }

    /// Block mass with padded keys and rows, against a float64 softmax over the valid tokens only
    /// and against the mass of the same q and k cut to the valid tokens, on all rows and on
    /// sampled ones. NaN in the padding shows that it is never read.
    func testBlockMassLeavesPaddingOut() {
        var rng = SplitMix64(seed: 31)
        let (n, valid, d, block) = (200, 150, 16, 48)  // blocks 0–2 valid, block 3 has 6 valid rows, block 4 none
        var q = rng.floats(n * d, scale: 2), k = rng.floats(n * d, scale: 2)
        for i in (valid * d)..<(n * d) { (q[i], k[i]) = (.nan, .nan) }
        let (blocks, cut) = (5, 4)
        for step in [1, 5] {
            var m = [Float](repeating: .nan, count: blocks * blocks)
            XCTAssertEqual(calib_block_mass(q, k, Int64(n), Int64(valid), Int64(d), Int64(block), Int64(step), 0.3, &m), 0)
            for qb in 0..<blocks {
                var expected = [Double](repeating: 0, count: blocks)
                let all = (qb * block)..<max(qb * block, min(valid, (qb + 1) * block))
                if !all.isEmpty {
                    let sampled = all.filter { ($0 - all.lowerBound) % step == step / 2 }
                    let rows = sampled.isEmpty ? [all.lowerBound] : sampled
                    expected = referenceBlockMass(q, k, d: d, rows: rows, keys: valid, block: block, blocks: blocks)
                }
                for kb in 0..<blocks { XCTAssertEqual(Double(m[qb * blocks + kb]), expected[kb], accuracy: 2e-6, "step \(step) M[\(qb)][\(kb)]") }
            }
            var truncated = [Float](repeating: .nan, count: cut * cut)
            XCTAssertEqual(calib_block_mass(Array(q[..<(valid * d)]), Array(k[..<(valid * d)]), Int64(valid), Int64(valid), Int64(d),
                                            Int64(block), Int64(step), 0.3, &truncated), 0)
            for qb in 0..<cut {
                XCTAssertEqual(Array(m[(qb * blocks)..<(qb * blocks + cut)]), Array(truncated[(qb * cut)..<((qb + 1) * cut)]), "step \(step) row \(qb)")
            }
        }
        var m = [Float](repeating: 0, count: blocks * blocks)
        for bad in [0, n + 1] {
            XCTAssertEqual(calib_block_mass(q, k, Int64(n), Int64(bad), Int64(d), Int64(block), 1, 0.3, &m), -1, "valid_tokens \(bad)")
        }
    }

    /// The plan error over the valid rows and keys against float64 attention on the tokens cut to
    /// the valid ones: spans reaching into padding, a row whose kept keys are all padding (a zero
    /// row, as the kernels write), a reused block, NaN in the padded q, k and v.
    func testPlanErrorLeavesPaddingOut() {
        var rng = SplitMix64(seed: 37)
        let (n, valid, d, block) = (200, 150, 8, 48)
        var q = rng.floats(n * d, scale: 1.5), k = rng.floats(n * d, scale: 1.5), v = rng.floats(n * d)
        for i in (valid * d)..<(n * d) { (q[i], k[i], v[i]) = (.nan, .nan, .nan) }
        let plan = Plan(name: "p", rows: [.compute([Span(0, 2)]), .compute([Span(1, 2), Span(3, 5)]), .compute([Span(4, 5)]),
                                          .reuse(0), .compute([Span(0, 5)])])
        let (rowSpan, spans, reuse) = Calibrator.planTables(plan)
        var err = 0.0, norm = 0.0
        XCTAssertEqual(calib_plan_error(q, k, v, Int64(n), Int64(valid), Int64(d), Int64(block), Float(1 / Double(d).squareRoot()),
                                        rowSpan, spans, reuse, &err, &norm), 0)
        let cut = valid * d
        let dense = Reference.attention(q: Array(q[..<cut]), k: Array(k[..<cut]), v: Array(v[..<cut]), tokens: valid, headDim: d)
        let sparse = Reference.attention(of: plan, q: q, k: k, v: v, tokens: n, headDim: d, block: block, validEnd: valid)
        XCTAssertTrue(sparse[(2 * block * d)..<(3 * block * d)].allSatisfy { $0 == 0 }, "block 2 keeps only padded keys")
        var e = 0.0, nn = 0.0
        for i in 0..<cut {
            e += (sparse[i] - dense[i]) * (sparse[i] - dense[i])
            nn += dense[i] * dense[i]
        }
        XCTAssertEqual(norm, nn, accuracy: 1e-4 * nn)
        XCTAssertEqual(err, e, accuracy: 1e-4 * e)
    }

    /// What a recording's padding holds never reaches the masks or the held-out figures, and the
    /// padding is honoured: the same tensors read as all valid calibrate otherwise.
    func testPaddingIsNeverRead() throws {
        let r = JointFixture.recordings
        let planted = try r.indices.map { try withNaNPadding(r[$0], to: JointFixture.dir + "/nan\($0).safetensors") }
        let clean = try Calibrator.run(calibration: Array(r[0..<3]), holdout: [r[3]], options: options())
        let nan = try Calibrator.run(calibration: Array(planted[0..<3]), holdout: [planted[3]], options: options())
        XCTAssertEqual(MaskWriter.json(nan.program, layout: nan.layout), MaskWriter.json(clean.program, layout: clean.layout))
        for (a, b) in zip(nan.heads, clean.heads) {
            XCTAssertEqual(a.leaveOneOutDrop, b.leaveOneOutDrop)
            XCTAssertEqual(a.heldOutMass, b.heldOutMass)
            XCTAssertEqual(a.heldOutError, b.heldOutError)
            XCTAssertEqual(a.reuseExtraError, b.reuseExtraError)
        }
        XCTAssertTrue(clean.heads.allSatisfy { $0.heldOutError!.isFinite && $0.heldOutMass!.isFinite })

        var allValid: [Recording] = []
        for (i, recording) in r[0..<3].enumerated() {
            var w = SafetensorsWriter()
            w.metadata = recording.file.metadata.filter { $0.key != "text_valid" }
            for (name, info) in recording.file.tensors.sorted(by: { $0.key < $1.key }) {
                w.add(name, try recording.file.floats(name), shape: info.shape, as: .f32)
            }
            try w.write(to: JointFixture.dir + "/valid\(i).safetensors")
            allValid.append(try Recording(path: JointFixture.dir + "/valid\(i).safetensors"))
        }
        let unpadded = try Calibrator.run(calibration: allValid, holdout: [], options: options())
        XCTAssertNotEqual(unpadded.program.plans, clean.program.plans)
    }

    /// Text blocks (24–27) are kept whole as rows and columns in every plan, and a query block no
    /// calibration input measured (block 27 is padding in prompt 0) computes every key block and
    /// takes no part in reuse.
    func testTextBlocksAreWholeAndUnmeasuredBlocksDense() throws {
        XCTAssertEqual(Calibrator.textBlocks(JointFixture.recordings[0].layout, block: 16), 24..<28)
        XCTAssertEqual(Calibrator.textBlocks(Layout(frames: 6, height: 8, width: 8, textTokens: 64, textFirst: true), block: 48), 0..<2)
        XCTAssertEqual(Calibrator.textBlocks(Layout(frames: 6, height: 8, width: 8, textTokens: 0, textFirst: false), block: 16), 0..<0)
        XCTAssertEqual(Calibrator.textBlocks(nil, block: 16), 0..<0)
        let c = try Calibrator.run(calibration: [JointFixture.recordings[0]], holdout: [], options: options())
        for (d, p) in c.program.dispatch.enumerated() {
            let plan = c.program.plans[p]
            for (q, row) in plan.rows.enumerated() {
                if q == 27 { XCTAssertEqual(row, .compute([Span(0, 28)]), "dispatch \(d)") }
                if case .reuse(let source) = row { XCTAssertNotEqual(source, 27, "dispatch \(d)") }
                guard case .compute(let spans) = row else { continue }
                let kept = Set(spans.flatMap { $0.start..<$0.end })
                XCTAssertTrue(Set(24..<28).isSubset(of: kept), "dispatch \(d) row \(q): \(kept.sorted())")
                if q >= 24 { XCTAssertEqual(kept.count, 28, "dispatch \(d) text row \(q)") }
            }
        }
    }

    /// Synthetic text behaves as described (docs/calibration.md): some heads send a fifth or more
    /// of their video queries' mass to text, text queries spread theirs over most key blocks.
    func testSyntheticTextAttention() throws {
        let r = JointFixture.recordings[1]  // all 28 blocks measured
        var heavy = 0
        for head in 0..<r.heads {
            let q = try r.head("q", step: 5, layer: 0, head: head), k = try r.head("k", step: 5, layer: 0, head: head)
            var m = [Float](repeating: 0, count: 28 * 28)
            XCTAssertEqual(calib_block_mass(q, k, Int64(r.tokens), Int64(r.validTokens), Int64(r.headDim), 16, 1, Float(r.scale), &m), 0)
            let toText = (0..<24).map { qb in (24..<28).reduce(0.0) { $0 + Double(m[qb * 28 + $1]) } }
            if toText.reduce(0, +) / 24 >= 0.2 { heavy += 1 }
            for qb in 24..<26 where Synth.kind(head: head) != .sink {
                XCTAssertLessThan(m[(qb * 28)..<(qb * 28 + 28)].max()!, 0.2, "head \(head): text block \(qb) attends narrowly")
            }
        }
        XCTAssertGreaterThanOrEqual(heavy, 2)
    }

    /// Recordings from `Synth` with text, last and first, calibrate into masks.json with the
    /// joint layout, which compile's frontend reads back.
    func testSynthJointRecordingsCalibrateEndToEnd() throws {
        let last = try Calibrator.run(calibration: Array(JointFixture.recordings[0..<3]), holdout: [JointFixture.recordings[3]],
                                      options: options())
        let json = try Calibrator.masksJSON(last, file: "joint.json")
        XCTAssertTrue(json.contains("\"text_tokens\": 64, \"text_position\": \"last\""), json)
        XCTAssertEqual(try Frontend.parse(Array(json.utf8), file: "joint.json").layout,
                       Layout(frames: 6, height: 8, width: 8, textTokens: 64, textFirst: false))
        XCTAssertEqual(last.program.shape.tokens, 448)

        let dir = JointFixture.dir + "/first"
        let first = try Synth.write(jointConfig(textFirst: true), prompts: 2, seed: 3, to: dir).map(Recording.init(path:))
        XCTAssertNil(first[0].file.metadata["text_valid"])
        XCTAssertEqual(first[0].file.metadata["text_position"], "first")
        XCTAssertEqual(first[0].validTokens, 448)
        let c = try Calibrator.run(calibration: first, holdout: [], options: options())
        let text = try Calibrator.masksJSON(c, file: "first.json")
        XCTAssertEqual(try Frontend.parse(Array(text.utf8), file: "first.json").layout,
                       Layout(frames: 6, height: 8, width: 8, textTokens: 64, textFirst: true))
    }

    /// Streaming equals batch on joint recordings of different text lengths, under the mass and
    /// the density rules; merged states read back from files equal one run over all prompts.
    func testJointStreamingAndMergeMatchBatch() throws {
        let r = JointFixture.recordings
        for (label, o) in [("mass", options()), ("density", options { $0.selection = .density(0.25) })] {
            let batch = try Calibrator.runBatch(calibration: Array(r[0..<3]), holdout: [r[3]], options: o)
            assertSame(try Calibrator.run(calibration: Array(r[0..<3]), holdout: [r[3]], options: o), batch, label)
            let parts = [[r[0]], [r[1], r[2]]]
            var merged: CalibrationState?
            for (i, part) in parts.enumerated() {
                let path = JointFixture.dir + "/\(label)-state\(i).safetensors"
                try Calibrator.fold(part, options: o).write(to: path)
                let state = try CalibrationState(path: path)
                XCTAssertTrue(state.selection.hasSuffix("; text blocks whole"), state.selection)
                if merged == nil { merged = state } else { try merged!.merge(state, file: path, into: "first") }
            }
            assertSame(try Calibrator.finish(merged!, holdout: [r[3]], options: o), batch, label + ", merged")
        }
    }

    /// `calibc synth --text` writes what its help says, and a bad position is a usage error.
    func testSynthCommandLine() throws {
        let help = try runCalibc(["synth", "--help"]).1
        XCTAssertTrue(help.contains("--text N ") && help.contains("--text-position first|last"), help)
        let dir = JointFixture.dir + "/cli"
        XCTAssertEqual(try runCalibc(["synth", "-o", dir, "--prompts", "1", "--layers", "1", "--heads", "1", "--steps", "0", "--text", "16"]).0, 0)
        let r = try Recording(path: dir + "/prompt0.safetensors")
        XCTAssertEqual(r.layout, Layout(frames: 12, height: 16, width: 16, textTokens: 16, textFirst: false))
        XCTAssertEqual(r.textValid, 11)
        let bad = try runCalibc(["synth", "-o", dir + "2", "--text", "16", "--text-position", "middle"])
        XCTAssertEqual(bad.0, 2)
        XCTAssertTrue(bad.2.hasPrefix("calibc: --text-position expects first or last, got middle\n"), bad.2)
    }
}
