import CCalibrate
import CalibCalibrate
import CalibDriver
import CalibFrontend
import CalibIR
import CalibPasses
import CalibRuntime
import CalibSafetensors
import CalibSynth
import CalibSupport
import Foundation
import XCTest

/// Six frames of 8×8 tokens (384), blocks of 16 tokens: four blocks (two token rows each) per frame.
func smallConfig() -> SynthConfig {
    var c = SynthConfig()
    (c.frames, c.height, c.width, c.layers, c.steps, c.stepGain, c.content) = (6, 8, 8, 1, [0, 5, 9], [0.7, 1, 1], 0)
    return c
}

/// Recordings of `prompts` prompts, written once per test class run.
enum Fixture {
    static let dir = FileManager.default.temporaryDirectory.appendingPathComponent("calibc-synth-\(UUID().uuidString)").path
    static let paths: [String] = try! Synth.write(smallConfig(), prompts: 3, seed: 7, to: dir)
    static var recordings: [Recording] { paths.map { try! Recording(path: $0) } }
    /// Calibrated on prompts 0 and 1, held out on prompt 2, block 16.
    static let calibration: Calibration = {
        var options = CalibrationOptions()
        options.block = 16
        return try! Calibrator.run(calibration: Array(recordings[0..<2]), holdout: [recordings[2]], options: options)
    }()
}

final class CalibrateTests: XCTestCase {
    func calibrate() throws -> Calibration { Fixture.calibration }

    func kept(_ c: Calibration, step: Int, head: Int) -> [Set<Int>] {
        let plan = c.program.plan(stepIndex: c.program.shape.steps.firstIndex(of: step)!, layer: 0, head: head)
        return plan.rows.map { row in
            var r = row
            while case .reuse(let s) = r { r = plan.rows[s] }
            return Set(r.spans.flatMap { Array($0.start..<$0.end) })
        }
    }

    func testSpatialHeadKeepsItsFrame() throws {
        let c = try calibrate()
        let rows = kept(c, step: 5, head: 0)
        for (q, k) in rows.enumerated() {
            let frame = q / 4
            XCTAssertTrue(Set((4 * frame)..<(4 * frame + 4)).isSubset(of: k), "q\(q) drops part of its own frame: \(k.sorted())")
            XCTAssertTrue(k.allSatisfy { abs($0 / 4 - frame) <= 1 }, "q\(q) reaches beyond the next frame: \(k.sorted())")
        }
        XCTAssertLessThan(c.heads.first { $0.step == 5 && $0.head == 0 }!.density, 0.1)
    }

    func testTemporalHeadKeepsTheSamePlaceInEveryFrame() throws {
        let c = try calibrate()
        for (q, k) in kept(c, step: 5, head: 1).enumerated() {
            let place = q % 4
            XCTAssertTrue(Set(stride(from: place, to: 24, by: 4)).isSubset(of: k), "q\(q) misses its place in some frame: \(k.sorted())")
            XCTAssertTrue(k.allSatisfy { abs($0 % 4 - place) <= 1 }, "q\(q) keeps other places: \(k.sorted())")
        }
    }

    func testInputDependentHeadBecomesDense() throws {
        let c = try calibrate()
        for report in c.heads where report.head == 5 {
            XCTAssertTrue(report.dense, "step \(report.step)")
            XCTAssertGreaterThan(report.leaveOneOutDrop!, 0.45, "the moving head should lose most of its mass without its own input")
        }
        for report in c.heads where report.head == 0 || report.head == 1 {
            XCTAssertFalse(report.dense)
            XCTAssertLessThanOrEqual(report.leaveOneOutDrop!, 0.05)
        }
    }

    func testRepeatingRowsBecomeReuseAndIdenticalStepsMerge() throws {
        let c = try calibrate()
        let sink = c.heads.first { $0.step == 5 && $0.head == 4 }!
        XCTAssertGreaterThan(sink.reusedBlocks, 12)
        XCTAssertNotNil(sink.reuseExtraError)
        // Without content every query of a frame scores the keys alike: its reuse is exact.
        let spatial = c.heads.first { $0.step == 5 && $0.head == 0 }!
        XCTAssertGreaterThan(spatial.reusedBlocks, 0)
        XCTAssertEqual(spatial.reuseExtraError!, 0, accuracy: 1e-6)
        // Steps 5 and 9 see the same inputs, so one assignment covers both.
        let json = MaskWriter.json(c.program, layout: c.layout)
        XCTAssertTrue(json.contains("{\"steps\": \"5-9\", \"layers\": 0, \"heads\": 0,"), json)
        XCTAssertTrue(json.contains("{\"steps\": \"0\", \"layers\": 0, \"heads\": 0,"), json)
    }

    func testMasksFileRoundTripsAndIsDeterministic() throws {
        var options = CalibrationOptions()
        options.block = 16
        let a = try calibrate(), b = try Calibrator.run(calibration: Array(Fixture.recordings[0..<2]), holdout: [], options: options)
        let json = MaskWriter.json(a.program, layout: a.layout)
        XCTAssertEqual(json, MaskWriter.json(b.program, layout: b.layout))
        let parsed = try Frontend.parse(Array(json.utf8), file: "calibrated.json")
        XCTAssertEqual(parsed.layout, Layout(frames: 6, height: 8, width: 8, textTokens: 0, textFirst: false))
        let passes = CompileOptions().passes
        let (p, q) = (Driver.optimize(parsed.program, passes), Driver.optimize(a.program, passes))
        for d in 0..<p.dispatch.count { XCTAssertEqual(p.plans[p.dispatch[d]].rows, q.plans[q.dispatch[d]].rows) }
    }

    /// The block-mass kernel against a float64 softmax, for a partial last block and a custom scale,
    /// on all rows and on sampled rows (every 7th from the 3rd; every 48th, where the last block
    /// of 8 rows has none at 24 and is measured on its first).
    func testBlockMassMatchesFloat64() {
        var rng = SplitMix64(seed: 99)
        let (n, d, block) = (200, 32, 48)
        let q = rng.floats(n * d, scale: 2), k = rng.floats(n * d, scale: 2)
        let blocks = 5
        for step in [1, 7, 48] {
            var m = [Float](repeating: .nan, count: blocks * blocks)
            XCTAssertEqual(calib_block_mass(q, k, Int64(n), Int64(n), Int64(d), Int64(block), Int64(step), 0.3, &m), 0)
            for qb in 0..<blocks {
                let all = (qb * block)..<min(n, (qb + 1) * block)
                let sampled = all.filter { ($0 - all.lowerBound) % step == step / 2 }
                let rows = sampled.isEmpty ? [all.lowerBound] : sampled
                XCTAssertEqual(rows.count, step == 1 ? all.count : qb == 4 ? 1 : step == 7 ? 7 : 1)
                let expected = referenceBlockMass(q, k, d: d, rows: rows, keys: n, block: block, blocks: blocks)
                for kb in 0..<blocks { XCTAssertEqual(Double(m[qb * blocks + kb]), expected[kb], accuracy: 2e-6, "step \(step) M[\(qb)][\(kb)]") }
            }
        }
        var m = [Float](repeating: 0, count: blocks * blocks)
        XCTAssertEqual(calib_block_mass(q, k, Int64(n), Int64(n), Int64(d), Int64(block), 49, 0.3, &m), -1, "row_step beyond the block")
    }

    /// Held-out mass and error against a float64 brute force, on a held-out recording that
    /// carries its own V, for a head with reuse and one without.
    func testHeldOutFiguresMatchBruteForce() throws {
        let source = Fixture.recordings[2]
        var rng = SplitMix64(seed: 5)
        var writer = SafetensorsWriter()
        writer.metadata = source.file.metadata
        let shape = [source.heads, source.tokens, source.headDim]
        var values: [String: [Float]] = [:]
        for step in source.steps {
            let v = rng.floats(source.heads * source.tokens * source.headDim)
            values["\(step)"] = v
            for kind in ["q", "k"] { writer.add("step\(step).layer0.\(kind)", try source.file.floats("step\(step).layer0.\(kind)"), shape: shape, as: .f32) }
            writer.add("step\(step).layer0.v", v, shape: shape, as: .f32)
        }
        let path = Fixture.dir + "/holdout-with-v.safetensors"
        try writer.write(to: path)
        var options = CalibrationOptions()
        options.block = 16
        let c = try Calibrator.run(calibration: Array(Fixture.recordings[0..<2]), holdout: [try Recording(path: path)], options: options)
        let (n, d, block) = (source.tokens, source.headDim, 16)
        for head in [1, 4] {
            let report = c.heads.first { $0.step == 5 && $0.head == head }!
            let plan = c.program.plan(stepIndex: 1, layer: 0, head: head)
            let q = try source.head("q", step: 5, layer: 0, head: head), k = try source.head("k", step: 5, layer: 0, head: head)
            let v = Array(values["5"]![(head * n * d)..<((head + 1) * n * d)])
            let dense = Reference.attention(q: q, k: k, v: v, tokens: n, headDim: d)
            let sparse = Reference.attention(of: plan, q: q, k: k, v: v, tokens: n, headDim: d, block: block)
            var err = 0.0, norm = 0.0
            for i in 0..<(n * d) {
                err += (sparse[i] - dense[i]) * (sparse[i] - dense[i])
                norm += dense[i] * dense[i]
            }
            XCTAssertEqual(report.heldOutError!, (err / norm).squareRoot(), accuracy: 1e-4, "head \(head)")
            // Kept mass: each row's softmax mass on its (source's) kept key blocks, averaged per block.
            let keptKeys = kept(c, step: 5, head: head)
            var mass = 0.0
            var e = [Double](repeating: 0, count: n)
            for i in 0..<n {
                for j in 0..<n {
                    var dot = 0.0
                    for x in 0..<d { dot += Double(q[i * d + x]) * Double(k[j * d + x]) }
                    e[j] = dot / Double(d).squareRoot()
                }
                let top = e.max()!
                var total = 0.0, inKept = 0.0
                for j in 0..<n {
                    let p = exp(e[j] - top)
                    total += p
                    if keptKeys[i / block].contains(j / block) { inKept += p }
                }
                mass += inKept / total / Double(n)
            }
            XCTAssertEqual(report.heldOutMass!, mass, accuracy: 1e-5, "head \(head)")
        }
    }

    /// A recording reduced to block mass (as the diffusers recorder writes at full resolution)
    /// calibrates to the same plans as the raw Q/K it came from.
    func testBlockMassRecordingsGiveTheSamePlans() throws {
        var paths: [String] = []
        for (i, r) in Fixture.recordings[0..<2].enumerated() {
            var w = SafetensorsWriter()
            w.metadata = ["mass_block": "16", "tokens": "\(r.tokens)", "head_dim": "\(r.headDim)"]
            for step in r.steps {
                var all: [Float] = []
                for head in 0..<r.heads {
                    var m = [Float](repeating: 0, count: 24 * 24)
                    let q = try r.head("q", step: step, layer: 0, head: head), k = try r.head("k", step: step, layer: 0, head: head)
                    XCTAssertEqual(calib_block_mass(q, k, Int64(r.tokens), Int64(r.tokens), Int64(r.headDim), 16, 1, Float(r.scale), &m), 0)
                    all += m
                }
                w.add("step\(step).layer0.mass", all, shape: [r.heads, 24, 24], as: .f32)
            }
            paths.append(Fixture.dir + "/mass\(i).safetensors")
            try w.write(to: paths.last!)
        }
        var options = CalibrationOptions()
        options.block = 16
        let fromMass = try Calibrator.run(calibration: try paths.map(Recording.init(path:)), holdout: [], options: options)
        XCTAssertEqual(fromMass.program.plans, Fixture.calibration.program.plans)
        XCTAssertEqual(fromMass.program.dispatch, Fixture.calibration.program.dispatch)
        options.block = 32
        XCTAssertThrowsError(try Calibrator.run(calibration: try paths.map(Recording.init(path:)), holdout: [], options: options)) { e in
            XCTAssertTrue("\(e)".hasSuffix("holds block mass for blocks of 16 tokens; calibrate with --block 16"), "\(e)")
        }
    }

    func testRecordingErrors() throws {
        _ = Fixture.paths  // creates Fixture.dir when this test runs alone
        func message(_ build: (inout SafetensorsWriter) -> Void) -> String {
            var w = SafetensorsWriter()
            build(&w)
            let path = Fixture.dir + "/bad-\(UUID().uuidString).safetensors"
            try! w.write(to: path)
            do {
                let r = try Recording(path: path)
                _ = try r.head("q", step: r.steps[0], layer: 0, head: 0)
                return "accepted"
            } catch { return "\(error)".replacingOccurrences(of: path + ": ", with: "") }
        }
        let ones = [Float](repeating: 1, count: 2 * 4 * 8)
        XCTAssertEqual(message { _ in }, "holds no tensors")
        XCTAssertThrowsError(try Recording(path: Fixture.dir + "/missing.safetensors")) { e in
            XCTAssertEqual("\(e)", Fixture.dir + "/missing.safetensors: cannot read the file")
        }
        XCTAssertEqual(message { $0.add("step0.layer0.q", ones, shape: [2, 4, 8], as: .f32); $0.add("step0.layer0.k", ones, shape: [2, 4, 8], as: .f32) }, "accepted")
        XCTAssertEqual(message { $0.add("step0.layer0.query", ones, shape: [2, 4, 8], as: .f32) },
                       "unexpected tensor step0.layer0.query (expected step{t}.layer{l}.q, .k, .v or .mass)")
        for odd in ["step0.layer0..q", "step+0.layer0.q", "step00.layer0.q", "step0.layer-0.q"] {
            XCTAssertEqual(message { $0.add(odd, ones, shape: [2, 4, 8], as: .f32); $0.add("step0.layer0.k", ones, shape: [2, 4, 8], as: .f32) },
                           "unexpected tensor \(odd) (expected step{t}.layer{l}.q, .k, .v or .mass)")
        }
        XCTAssertEqual(message { $0.add("step0.layer0.q", ones, shape: [2, 4, 8], as: .f32) }, "step 0 layer 0 lacks its q or k tensor")
        XCTAssertEqual(message { $0.add("step0.layer0.q", [UInt8](repeating: 1, count: 64), shape: [2, 4, 8]) },
                       "tensor step0.layer0.q is U8; a recording holds F32, BF16 or F16")
        XCTAssertEqual(message { $0.add("step0.layer0.q", ones, shape: [2, 4, 8], as: .f32); $0.add("step0.layer0.k", ones, shape: [4, 2, 8], as: .f32) },
                       "tensor step0.layer0.q has shape [2, 4, 8], but other tensors have [4, 2, 8]")
        var bad = ones
        bad[9] = .nan
        XCTAssertEqual(message { $0.add("step0.layer0.q", bad, shape: [2, 4, 8], as: .f32); $0.add("step0.layer0.k", ones, shape: [2, 4, 8], as: .f32) },
                       "tensor step0.layer0.q head 0 holds nan at token 1, dim 1")
        XCTAssertEqual(message {
            $0.metadata = ["frames": "3", "height": "1", "width": "1"]
            $0.add("step0.layer0.q", ones, shape: [2, 4, 8], as: .f32); $0.add("step0.layer0.k", ones, shape: [2, 4, 8], as: .f32)
        }, "metadata frames × height × width + text_tokens = 3, but tensors hold 4 tokens")
        XCTAssertEqual(message {
            $0.metadata = ["scale": "-1"]
            $0.add("step0.layer0.q", ones, shape: [2, 4, 8], as: .f32); $0.add("step0.layer0.k", ones, shape: [2, 4, 8], as: .f32)
        }, "metadata scale \"-1\" is not a positive number")
        XCTAssertEqual(message {
            for l in 0..<2 { $0.add("step0.layer\(l).q", ones, shape: [2, 4, 8], as: .f32); $0.add("step0.layer\(l).k", ones, shape: [2, 4, 8], as: .f32) }
            $0.add("step0.layer0.v", ones, shape: [2, 4, 8], as: .f32)
        }, "some (step, layer) have a v tensor and some do not")
        XCTAssertEqual(message { $0.add("step0.layer0.q", ones, shape: [64], as: .f32) },
                       "tensor step0.layer0.q has shape [64], expected three positive dimensions")
        let mass = [Float](repeating: 0.25, count: 2 * 4 * 4)
        XCTAssertEqual(message { $0.add("step0.layer0.mass", mass, shape: [2, 4, 4], as: .f32) },
                       "a file with block mass needs metadata mass_block (a positive integer)")
        XCTAssertEqual(message {
            $0.metadata = ["mass_block": "16", "tokens": "100", "head_dim": "8"]
            $0.add("step0.layer0.mass", mass, shape: [2, 4, 4], as: .f32)
        }, "mass tensors must all be (heads, 7, 7) for 100 tokens in blocks of 16")
        XCTAssertEqual(message {
            $0.metadata = ["mass_block": "16", "tokens": "64", "head_dim": "8"]
            $0.add("step0.layer0.mass", mass, shape: [2, 4, 4], as: .f32); $0.add("step0.layer0.q", ones, shape: [2, 4, 8], as: .f32)
        }, "step 0 layer 0: a file with block mass holds only .mass tensors")

        // What calibrate would write into masks.json must be what compile accepts.
        let qk = { (w: inout SafetensorsWriter, step: String, layer: Int) in
            w.add("step\(step).layer\(layer).q", ones, shape: [2, 4, 8], as: .f32); w.add("step\(step).layer\(layer).k", ones, shape: [2, 4, 8], as: .f32)
        }
        XCTAssertEqual(message { qk(&$0, "2147483648", 0) },
                       "tensor step2147483648.layer0.k: step 2147483648 is more than the 2147483647 a masks file allows")
        XCTAssertEqual(message { qk(&$0, "2147483647", 0) }, "accepted")
        XCTAssertEqual(message { qk(&$0, "99999999999999999999", 0) },
                       "unexpected tensor step99999999999999999999.layer0.k (expected step{t}.layer{l}.q, .k, .v or .mass)")
        XCTAssertEqual(message { qk(&$0, "0", 4096) },
                       "tensor step0.layer4096.k: layer 4096 is beyond the 4096 layers a masks file allows")
        XCTAssertEqual(message { qk(&$0, "0", 9223372036854775807) },
                       "tensor step0.layer9223372036854775807.k: layer 9223372036854775807 is beyond the 4096 layers a masks file allows")
        XCTAssertEqual(message {
            $0.add("step0.layer0.q", [Float](repeating: 1, count: 1024), shape: [1, 1, 1024], as: .bf16)
            $0.add("step0.layer0.k", [Float](repeating: 1, count: 1024), shape: [1, 1, 1024], as: .bf16)
        }, "head_dim 1024 is more than the 512 a masks file allows")
        XCTAssertEqual(message {
            $0.add("step0.layer0.q", [Float](repeating: 1, count: 4097), shape: [4097, 1, 1], as: .bf16)
            $0.add("step0.layer0.k", [Float](repeating: 1, count: 4097), shape: [4097, 1, 1], as: .bf16)
        }, "heads 4097 is more than the 4096 a masks file allows")
        XCTAssertEqual(message { $0.metadata = ["model": String(repeating: "m", count: 4096)]; qk(&$0, "0", 0) },
                       "metadata model is 4096 bytes of UTF-8, more than the 4095 a masks file allows")
        for bad in [["frames": "9223372036854775807", "height": "9223372036854775807", "width": "2"],
                    ["frames": "-1", "height": "-4", "width": "1"], ["frames": "4", "height": "1", "width": "1", "text_tokens": "-4"]] {
            XCTAssertEqual(message { $0.metadata = bad; qk(&$0, "0", 0) },
                           "metadata frames, height and width must be integers in 1...100000 and text_tokens in 0...268435456")
        }
        XCTAssertEqual(message {
            $0.metadata = ["mass_block": "16", "tokens": "9223372036854775807", "head_dim": "8"]
            $0.add("step0.layer0.mass", mass, shape: [2, 4, 4], as: .f32)
        }, "metadata tokens 9223372036854775807 is more than the 268435456 a masks file allows")
        XCTAssertEqual(message {
            $0.metadata = ["mass_block": "4096", "tokens": "64", "head_dim": "8"]
            $0.add("step0.layer0.mass", mass, shape: [2, 4, 4], as: .f32)
        }, "metadata mass_block 4096 is more than the 1024 a masks file allows")
    }

    /// The report's columns are explained right under the table.
    func testReportHasALegendUnderTheTable() throws {
        let lines = CalibrationReport.text(try calibrate(), calibrationInputs: 2, holdoutInputs: 1).split(separator: "\n", omittingEmptySubsequences: false)
        let header = try XCTUnwrap(lines.firstIndex { $0.hasPrefix("step layer head") })
        let legend = try XCTUnwrap(lines.firstIndex { $0.hasPrefix("density: kept tiles") })
        XCTAssertEqual(legend, header + 1 + Fixture.calibration.heads.count)
        for column in ["loo drop", "reuse extra", "dense", "reused"] { XCTAssertTrue(lines[legend].contains(column + ":")) }
    }

    /// Options are checked before any recording is measured, with ranges.
    func testOptionRanges() throws {
        func message(_ change: (inout CalibrationOptions) -> Void) -> String {
            var o = CalibrationOptions()
            change(&o)
            do { try o.validate(); return "accepted" } catch { return "\(error)" }
        }
        XCTAssertEqual(message { $0.block = 1024 }, "accepted")
        XCTAssertEqual(message { $0.block = 2048 }, "--block must be in 1...1024, got 2048")
        XCTAssertEqual(message { $0.selection = .mass(1.5) }, "--mass must be in [0, 1], got 1.5")
        XCTAssertEqual(message { $0.reuseTolerance = -1 }, "--reuse-tolerance must be in [0, 1], got -1.0")
    }

    /// `--mass 0` kept no key block in any row: a masks file compile refuses. Every row keeps at
    /// least its heaviest block, and what calibrate writes parses.
    func testZeroMassStillKeepsABlockPerRow() throws {
        var options = CalibrationOptions()
        options.block = 16
        options.selection = .mass(0)
        let c = try Calibrator.run(calibration: Array(Fixture.recordings[0..<2]), holdout: [], options: options)
        try c.program.verify()
        let text = try Calibrator.masksJSON(c, file: "zero.json")
        XCTAssertNoThrow(try Frontend.parse(Array(text.utf8), file: "zero.json"))
    }
}

/// The float64 reference of one query block's mass: the softmax (scale 0.3) of each of `rows`
/// over keys 0 ..< `keys`, summed per key block and averaged over the rows.
func referenceBlockMass(_ q: [Float], _ k: [Float], d: Int, rows: [Int], keys: Int, block: Int, blocks: Int) -> [Double] {
    var mass = [Double](repeating: 0, count: blocks)
    for i in rows {
        let s = (0..<keys).map { j in 0.3 * (0..<d).reduce(0.0) { $0 + Double(q[i * d + $1]) * Double(k[j * d + $1]) } }
        let top = s.max()!
        let e = s.map { exp($0 - top) }
        let total = e.reduce(0, +)
        for j in 0..<keys { mass[j / block] += e[j] / total / Double(rows.count) }
    }
    return mass
}
