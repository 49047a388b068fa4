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

/// Four prompts of the small shape with moving content, so selections, leave-one-out drops and
/// row distances differ between prompts (the plain fixture's prompts differ only in the moving head).
enum ContentFixture {
    static let dir = FileManager.default.temporaryDirectory.appendingPathComponent("calibc-stream-\(UUID().uuidString)").path
    static let paths: [String] = {
        var c = smallConfig()
        c.content = 1
        return try! Synth.write(c, prompts: 4, seed: 11, to: dir)
    }()
    static var recordings: [Recording] { paths.map { try! Recording(path: $0) } }
}

final class StreamingTests: XCTestCase {
    func options(_ change: (inout CalibrationOptions) -> Void = { _ in }) -> CalibrationOptions {
        var o = CalibrationOptions()
        o.block = 16
        change(&o)
        return o
    }

    func assertSame(_ a: Calibration, _ b: Calibration, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.program.plans, b.program.plans, label, file: file, line: line)
        XCTAssertEqual(a.program.dispatch, b.program.dispatch, label, file: file, line: line)
        XCTAssertEqual(MaskWriter.json(a.program, layout: a.layout), MaskWriter.json(b.program, layout: b.layout), label, file: file, line: line)
        for (x, y) in zip(a.heads, b.heads) {
            XCTAssertEqual(x.dense, y.dense, label, file: file, line: line)
            XCTAssertEqual(x.reusedBlocks, y.reusedBlocks, label, file: file, line: line)
            XCTAssertEqual(x.density, y.density, label, file: file, line: line)
            XCTAssertEqual(x.leaveOneOutDrop ?? -1, y.leaveOneOutDrop ?? -1, accuracy: 1e-9, label, file: file, line: line)
            XCTAssertEqual(x.heldOutMass ?? -1, y.heldOutMass ?? -1, accuracy: 1e-12, label, file: file, line: line)
            XCTAssertEqual(x.heldOutError ?? -1, y.heldOutError ?? -1, accuracy: 1e-12, label, file: file, line: line)
        }
    }

    /// The streaming path (fold one input at a time, then decide) gives the batch path's masks
    /// under every selection and rule setting, on inputs where the rules have work to do.
    func testStreamingMatchesBatch() throws {
        let r = ContentFixture.recordings
        let settings: [(String, CalibrationOptions)] = [
            ("defaults", options()),
            ("--mass 0.9", options { $0.selection = .mass(0.9) }),
            ("--density 0.25", options { $0.selection = .density(0.25) }),
            ("--mass-schedule wan", options { $0.selection = .schedule(.wan) }),
            ("--stability-drop 0.02", options { $0.stabilityDrop = 0.02 }),
            ("--reuse-tolerance 0.1", options { $0.reuseTolerance = 0.1 }),
        ]
        var dense = 0, reused = 0, sharedTiles = 0
        for (label, o) in settings {
            let batch = try Calibrator.runBatch(calibration: Array(r[0..<3]), holdout: [r[3]], options: o)
            let stream = try Calibrator.run(calibration: Array(r[0..<3]), holdout: [r[3]], options: o)
            assertSame(stream, batch, label)
            dense += batch.heads.filter(\.dense).count
            reused += batch.heads.map(\.reusedBlocks).reduce(0, +)
            let state = try Calibrator.fold(Array(r[0..<3]), options: o)
            sharedTiles += state.heads.map { $0.owner.filter { $0 == HeadState.shared }.count }.reduce(0, +)
            // Not every head is decided by one rule alone: some are dense, some are not.
            XCTAssertTrue(batch.heads.contains { $0.dense } && batch.heads.contains { !$0.dense }, label)
        }
        XCTAssertGreaterThan(dense, 0)
        XCTAssertGreaterThan(reused, 0)
        XCTAssertGreaterThan(sharedTiles, 0)
    }

    /// Merging the states of two disjoint sets of prompts equals folding all of them in one run,
    /// in memory and through the files.
    func testMergedStatesEqualOneRun() throws {
        let r = ContentFixture.recordings
        let o = options()
        let all = try Calibrator.fold(r, options: o)
        var a = try Calibrator.fold(Array(r[0..<2]), options: o)
        let b = try Calibrator.fold(Array(r[2..<4]), options: o)
        try a.merge(b, file: "b", into: "a")
        XCTAssertEqual(a.inputs, 4)
        XCTAssertEqual(a.heads, all.heads)

        let dir = ContentFixture.dir
        var files: [String] = []
        for (i, part) in [Array(r[0..<1]), Array(r[1..<3]), Array(r[3..<4])].enumerated() {
            files.append("\(dir)/state\(i).safetensors")
            try Calibrator.fold(part, options: o).write(to: files.last!)
        }
        var merged = try CalibrationState(path: files[0])
        for f in files.dropFirst() { try merged.merge(try CalibrationState(path: f), file: f, into: files[0]) }
        XCTAssertEqual(merged.heads, all.heads)
        XCTAssertEqual(merged.inputs, 4)
        let fromMerge = try Calibrator.finish(merged, holdout: [], options: o)
        let batch = try Calibrator.runBatch(calibration: r, holdout: [], options: o)
        assertSame(fromMerge, batch, "merged files")
        XCTAssertEqual(fromMerge.layout, batch.layout)
    }

    func testStateFileRoundTripsAndIsChecked() throws {
        let r = ContentFixture.recordings
        let dir = ContentFixture.dir
        let state = try Calibrator.fold(Array(r[0..<2]), options: options())
        let path = "\(dir)/roundtrip.safetensors"
        try state.write(to: path)
        let read = try CalibrationState(path: path)
        XCTAssertEqual(read.heads, state.heads)
        XCTAssertEqual(read.shape, state.shape)
        XCTAssertEqual(read.selection, "mass 0.95")
        XCTAssertEqual(read.scale, state.scale)
        XCTAssertEqual(read.layout, state.layout)
        // The size does not grow with the inputs folded.
        let four = "\(dir)/four.safetensors"
        try Calibrator.fold(r, options: options()).write(to: four)
        let size = { (p: String) in try FileManager.default.attributesOfItem(atPath: p)[.size] as! Int }
        XCTAssertEqual(try size(four), try size(path))
        XCTAssertEqual(state.tensorBytes, state.heads.count * 4 * (2 * 24 * 24 + 24 * 23 / 2))

        func message(_ path: String) -> String {
            do { _ = try CalibrationState(path: path); return "accepted" } catch { return "\(error)" }
        }
        // One query block: no pairs, one placeholder distance per head.
        let single = try Calibrator.fold(Array(r[0..<2]), options: options { $0.block = 512 })
        try single.write(to: "\(dir)/single.safetensors")
        XCTAssertEqual(try CalibrationState(path: "\(dir)/single.safetensors").heads, single.heads)
        XCTAssertEqual(single.heads[0].distance, [])
        // A recording is not a state.
        XCTAssertEqual(message(ContentFixture.paths[0]),
                       "\(ContentFixture.paths[0]): not a calibration state (metadata format is \"calibc-recording/1\", expected \"calibc-state/1\")")
        // Values a fold could not have written.
        let file = try SafetensorsFile(path: path)
        func rewrite(_ name: String, _ change: (inout [Float]) -> Void) throws -> String {
            var w = SafetensorsWriter()
            w.metadata = file.metadata
            for (n, info) in file.tensors.sorted(by: { $0.key < $1.key }) {
                var v = try file.floats(n)
                if n == name { change(&v) }
                w.add(n, v, shape: info.shape, as: .f32)
            }
            let bad = "\(dir)/bad-\(UUID().uuidString).safetensors"
            try w.write(to: bad)
            return message(bad).replacingOccurrences(of: bad + ": ", with: "")
        }
        XCTAssertEqual(try rewrite("step0.layer0.owner") { $0[3] = 2 },
                       "tensor step0.layer0.owner holds 2.0 at 3; expected -1, -2 or an input index below 2")
        XCTAssertEqual(try rewrite("step5.layer0.owner_mass") { $0[7] = .nan },
                       "tensor step5.layer0.owner_mass holds nan at 7; expected a mass in [0, 1] where owner ≥ 0, else 0")
        XCTAssertEqual(try rewrite("step9.layer0.distance") { $0[0] = -1 },
                       "tensor step9.layer0.distance holds -1.0 at 0; expected an L1 distance in [0, 2]")
        func withMetadata(_ key: String, _ value: String?, dtype: DType = .f32) throws -> String {
            var w = SafetensorsWriter()
            w.metadata = file.metadata
            w.metadata[key] = value
            for (n, info) in file.tensors.sorted(by: { $0.key < $1.key }) { w.add(n, try file.floats(n), shape: info.shape, as: dtype) }
            let bad = "\(dir)/bad-\(UUID().uuidString).safetensors"
            try w.write(to: bad)
            return message(bad).replacingOccurrences(of: bad + ": ", with: "")
        }
        XCTAssertEqual(try withMetadata("inputs", "0"), "metadata inputs must be an integer in 1…16777216")
        XCTAssertEqual(try withMetadata("block", nil), "metadata block must be an integer in 1…1024")
        XCTAssertEqual(try withMetadata("steps", "0,x"), "metadata steps must list step indices, e.g. \"0,20,40\"")
        XCTAssertEqual(try withMetadata("steps", "5,0"), "metadata steps must be strictly ascending")
        XCTAssertEqual(try withMetadata("scale", "-2"), "metadata scale must be a positive number")
        XCTAssertEqual(try withMetadata("selection", nil), "metadata selection is missing")
        XCTAssertEqual(try withMetadata("model", "m", dtype: .f16), "tensor step0.layer0.owner is F16 [6, 24, 24], expected F32 [6, 24, 24]")
        var w = SafetensorsWriter()
        w.metadata = file.metadata
        w.add("step0.layer0.distance", [0], shape: [1], as: .f32)
        let missing = "\(dir)/missing-tensor.safetensors"
        try w.write(to: missing)
        XCTAssertEqual(message(missing), "\(missing): missing tensor step0.layer0.owner")

        // States merge only with the same selection and shape.
        var a = state
        let other = try Calibrator.fold(Array(r[2..<3]), options: options { $0.selection = .mass(0.9) })
        XCTAssertThrowsError(try a.merge(other, file: "b.safetensors", into: "a.safetensors")) { e in
            XCTAssertEqual("\(e)", "b.safetensors: selection mass 0.9 differs from a.safetensors's mass 0.95")
        }
        let coarse = try Calibrator.fold(Array(r[2..<3]), options: options { $0.block = 32 })
        XCTAssertThrowsError(try a.merge(coarse, file: "b.safetensors", into: "a.safetensors")) { e in
            XCTAssertEqual("\(e)", "b.safetensors: shape (steps, layers, heads, tokens, head_dim, block) steps 0,5,9, 1 layers, 6 heads, 384 tokens, head_dim 128, block 32 differs from a.safetensors's steps 0,5,9, 1 layers, 6 heads, 384 tokens, head_dim 128, block 16")
        }
    }

    func testScheduleParsesAndIsValidated() throws {
        let wan = try MassSchedule.parse("wan")
        XCTAssertEqual(wan, .wan)
        XCTAssertEqual(wan.threshold(step: 0, lastRecordedStep: 49), 0.99, accuracy: 1e-12)
        XCTAssertEqual(wan.threshold(step: 49, lastRecordedStep: 49), 0.84, accuracy: 5e-4)
        XCTAssertGreaterThan(wan.threshold(step: 49, lastRecordedStep: 49), 0.84)
        // Falls monotonically from the noisiest step to the last.
        let values = (0...49).map { wan.threshold(step: $0, lastRecordedStep: 49) }
        XCTAssertTrue(zip(values, values.dropFirst()).allSatisfy { $0 > $1 })
        XCTAssertEqual(try MassSchedule.parse("wan:49").lastStep, 49)
        XCTAssertEqual(try MassSchedule.parse("wan:49").threshold(step: 49, lastRecordedStep: 20), values[49])
        let e = try MassSchedule.parse("exp:0.8,0.95,2")
        XCTAssertEqual(e, MassSchedule(final: 0.8, initial: 0.95, rate: 2))
        XCTAssertEqual(e.threshold(step: 20, lastRecordedStep: 40), 0.8 + 0.15 * exp(-1), accuracy: 1e-12)
        XCTAssertEqual(try MassSchedule.parse(e.description), e)
        XCTAssertEqual(try MassSchedule.parse("exp:0.8,0.95,2,50").description, "exp:0.8,0.95,2.0,50")

        func message(_ text: String) -> String {
            do { _ = try MassSchedule.parse(text); return "accepted" } catch { return "\(error)" }
        }
        XCTAssertEqual(message("linear"), "--mass-schedule linear: unknown schedule linear (expected wan, wan:T, exp:A,C,k or exp:A,C,k,T)")
        XCTAssertEqual(message("exp:0.8,0.9"), "--mass-schedule exp:0.8,0.9: expected wan, wan:T, exp:A,C,k or exp:A,C,k,T")
        XCTAssertEqual(message("exp:1.2,0.9,3"), "--mass-schedule exp:1.2,0.9,3: A must be a mass fraction in (0, 1], got 1.2")
        XCTAssertEqual(message("exp:0.8,0,3"), "--mass-schedule exp:0.8,0,3: C must be a mass fraction in (0, 1], got 0")
        XCTAssertEqual(message("exp:0.8,x,3"), "--mass-schedule exp:0.8,x,3: C must be a mass fraction in (0, 1], got x")
        XCTAssertEqual(message("exp:0.8,0.9,-1"), "--mass-schedule exp:0.8,0.9,-1: k must be a non-negative number, got -1")
        XCTAssertEqual(message("exp:0.8,0.9,inf"), "--mass-schedule exp:0.8,0.9,inf: k must be a non-negative number, got inf")
        XCTAssertEqual(message("wan:0"), "--mass-schedule wan:0: T must be a positive integer (the last step index), got 0")
        XCTAssertEqual(message("wan:1,2"), "--mass-schedule wan:1,2: expected wan, wan:T, exp:A,C,k or exp:A,C,k,T")

        // A fixed T below a recorded step is refused against the recordings.
        let r = ContentFixture.recordings
        XCTAssertThrowsError(try Calibrator.fold(r, options: options { $0.selection = .schedule(try! MassSchedule.parse("wan:5")) })) { e in
            XCTAssertEqual("\(e)", "--mass-schedule exp:0.84,0.99,6.0,5: T = 5, but the recordings hold step 9; T is the last step index")
        }
    }

    /// A schedule calibrates each step as `--mass ε(t)` would, and changes the plans.
    func testScheduleAppliesItsThresholdPerStep() throws {
        let r = Array(ContentFixture.recordings[0..<2])
        let schedule = MassSchedule(final: 0.8, initial: 0.99, rate: 3)
        let scheduled = try Calibrator.run(calibration: r, holdout: [], options: options { $0.selection = .schedule(schedule) })
        let shape = scheduled.program.shape
        for (s, step) in shape.steps.enumerated() {
            let tau = schedule.threshold(step: step, lastRecordedStep: 9)
            let constant = try Calibrator.run(calibration: r, holdout: [], options: options { $0.selection = .mass(tau) })
            for head in 0..<shape.heads {
                XCTAssertEqual(scheduled.program.plan(stepIndex: s, layer: 0, head: head).rows,
                               constant.program.plan(stepIndex: s, layer: 0, head: head).rows, "step \(step) head \(head), τ \(tau)")
            }
        }
        // k = 0 is the constant C.
        let flat = try Calibrator.run(calibration: r, holdout: [], options: options { $0.selection = .schedule(MassSchedule(final: 0.5, initial: 0.9, rate: 0)) })
        let constant = try Calibrator.run(calibration: r, holdout: [], options: options { $0.selection = .mass(0.9) })
        XCTAssertEqual(flat.program.plans, constant.program.plans)
        // Against a constant 0.99: the same tiles at step 0 (ε = C), fewer at the later steps.
        let stateScheduled = try Calibrator.fold(r, options: options { $0.selection = .schedule(schedule) })
        let state99 = try Calibrator.fold(r, options: options { $0.selection = .mass(0.99) })
        func tiles(_ state: CalibrationState, _ s: Int) -> Int {
            (0..<shape.heads).map { state.head(stepIndex: s, layer: 0, head: $0).owner.filter { $0 != HeadState.unselected }.count }.reduce(0, +)
        }
        XCTAssertEqual(tiles(stateScheduled, 0), tiles(state99, 0))
        XCTAssertLessThan(tiles(stateScheduled, 1), tiles(state99, 1))
        XCTAssertLessThan(tiles(stateScheduled, 2), tiles(stateScheduled, 1))
    }

    /// The pair-distance kernel against a direct computation, folded twice (the max).
    func testRowDistanceKernel() {
        var rng = SplitMix64(seed: 3)
        let b = 13
        let m1 = rng.floats(b * b), m2 = rng.floats(b * b)
        var d = [Float](repeating: 0, count: b * (b - 1) / 2)
        calib_row_distance_max(m1, Int64(b), &d)
        calib_row_distance_max(m2, Int64(b), &d)
        var state = HeadState(blocks: b)
        state.fold(mass: m1, selected: Array(repeating: [], count: b), input: 0)
        state.fold(mass: m2, selected: Array(repeating: [], count: b), input: 1)
        func l1(_ m: [Float], _ i: Int, _ j: Int) -> Double { (0..<b).reduce(0.0) { $0 + Double(abs(m[i * b + $1] - m[j * b + $1])) } }
        for i in 0..<b {
            for j in (i + 1)..<b {
                let expected = Float(max(l1(m1, i, j), l1(m2, i, j)))
                XCTAssertEqual(d[i * b - i * (i + 1) / 2 + j - i - 1], expected, "pair \(i), \(j)")
                XCTAssertEqual(state.distance(j, i), expected)
            }
        }
    }

    /// Owners: none, one (with its mass), several; merge renumbers the other side's inputs.
    func testOwnerBookkeeping() {
        let b = 2
        var s = HeadState(blocks: b)
        let m: [Float] = [0.7, 0.3, 0.4, 0.6]
        s.fold(mass: m, selected: [[0], [1]], input: 0)
        s.fold(mass: m, selected: [[0, 1], [1]], input: 1)
        XCTAssertEqual(s.owner, [HeadState.shared, 1, HeadState.unselected, HeadState.shared])
        XCTAssertEqual(s.ownerMass, [0, 0.3, 0, 0])
        XCTAssertEqual(s.worstDrop, 0.15, accuracy: 1e-7)  // input 1 alone keeps 0.3 on row 0: 0.3 / 2 rows
        var t = HeadState(blocks: b)
        t.fold(mass: m, selected: [[0], [0]], input: 0)
        s.merge(t, offset: 2)
        XCTAssertEqual(s.owner, [HeadState.shared, 1, 2, HeadState.shared])
        XCTAssertEqual(s.ownerMass, [0, 0.3, 0.4, 0])
        XCTAssertEqual(s.union, [[0, 1], [0, 1]])
        XCTAssertEqual(s.worstDrop, 0.2, accuracy: 1e-7)
    }

    /// The command line: usage errors exit 2 with their message; a merge through files writes
    /// the masks of one run over all prompts.
    func testCommandLine() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardizedFileURL
        let calibc = root.appendingPathComponent(".build/debug/calibc").path
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: calibc), "needs the calibc binary of `swift build`")
        func run(_ args: [String]) throws -> (Int32, String, String) {
            let p = Process(), out = Pipe(), err = Pipe()
            p.executableURL = URL(fileURLWithPath: calibc)
            p.arguments = args
            (p.standardOutput, p.standardError) = (out, err)
            try p.run()
            let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
        }
        let rec = ContentFixture.paths, dir = ContentFixture.dir
        for (args, message) in [
            (["calibrate", rec[0]], "missing -o <masks.json> (or --state-out <state>)"),
            (["calibrate", "-o", "m.json"], "missing <recording.safetensors>"),
            (["calibrate", "--merge", "-o", "m.json"], "missing <state.safetensors>"),
            (["calibrate", rec[0], "--mass", "0.9", "--density", "0.2", "-o", "m.json"], "give one of --mass, --mass-schedule and --density"),
            (["calibrate", rec[0], "--mass", "0.9", "--mass-schedule", "wan", "-o", "m.json"], "give one of --mass, --mass-schedule and --density"),
            (["calibrate", rec[0], "--mass", "0", "-o", "m.json"], "--mass expects a number in (0, 1], got 0"),
            (["calibrate", "--merge", "a", "--mass", "0.9", "-o", "m.json"], "--mass is fixed in the calibration states and cannot be given with --merge"),
            (["calibrate", "--merge", "a", "--block", "32", "-o", "m.json"], "--block is fixed in the calibration states and cannot be given with --merge"),
            (["calibrate", rec[0], "--mass-schedule", "exp:0.8,0.9,-1", "-o", "m.json"], "--mass-schedule exp:0.8,0.9,-1: k must be a non-negative number, got -1"),
            (["synth", "-o", dir + "/x", "--shape", "big"], "unknown --shape big (known: small, wan1.3b-480p)"),
            (["synth", "-o", dir + "/x", "--steps", "5,1"], "--steps expects strictly ascending step indices like 0,20,40, got 5,1"),
        ] {
            let (status, _, err) = try run(args)
            XCTAssertEqual(status, 2, args.joined(separator: " "))
            XCTAssertEqual(err.split(separator: "\n").first.map(String.init), "calibc: " + message)
        }
        // Two states from two runs, merged, give the masks of one run over both prompts.
        for i in 0..<2 {
            let (status, out, err) = try run(["calibrate", rec[i], "--block", "16", "--state-out", "\(dir)/cli\(i).safetensors"])
            XCTAssertEqual(status, 0, err)
            XCTAssertTrue(out.hasPrefix("wrote \(dir)/cli\(i).safetensors: the state of 1 inputs, 18 (step, layer, head)"), out)
        }
        XCTAssertEqual(try run(["calibrate", "--merge", "\(dir)/cli0.safetensors", "\(dir)/cli1.safetensors", "-o", "\(dir)/merged.json"]).0, 0)
        XCTAssertEqual(try run(["calibrate", rec[0], rec[1], "--block", "16", "-o", "\(dir)/one.json"]).0, 0)
        XCTAssertEqual(try String(contentsOfFile: "\(dir)/merged.json", encoding: .utf8), try String(contentsOfFile: "\(dir)/one.json", encoding: .utf8))
        let (status, _, err) = try run(["calibrate", "--merge", "\(dir)/cli0.safetensors", rec[1], "-o", "\(dir)/x.json"])
        XCTAssertEqual(status, 1)
        XCTAssertEqual(err, "calibc: error: \(rec[1]): not a calibration state (metadata format is \"calibc-recording/1\", expected \"calibc-state/1\")\n")
    }

    /// The block-mass kernel across key chunks (1024 keys): blocks that straddle chunk edges, a
    /// partial last block, and rows whose max arrives only in a later chunk (the rescale).
    func testBlockMassAcrossKeyChunks() {
        var rng = SplitMix64(seed: 17)
        let (n, d, block) = (2100, 8, 250)
        let q = rng.floats(n * d, scale: 1.5)
        var k = rng.floats(n * d, scale: 1.5)
        for c in 0..<d { k[2050 * d + c] = 4 * q[c] }  // query 0's heaviest key sits in the third chunk
        let blocks = 9
        var m = [Float](repeating: .nan, count: blocks * blocks)
        XCTAssertEqual(calib_block_mass(q, k, Int64(n), Int64(d), Int64(block), 1, 0.5, &m), 0)
        for qb in 0..<blocks {
            var expected = [Double](repeating: 0, count: blocks)
            let rows = (qb * block)..<min(n, (qb + 1) * block)
            for i in rows {
                var s = [Double](repeating: 0, count: n)
                for j in 0..<n {
                    var dot = 0.0
                    for c in 0..<d { dot += Double(q[i * d + c]) * Double(k[j * d + c]) }
                    s[j] = 0.5 * dot
                }
                let top = s.max()!
                var total = 0.0
                for j in 0..<n { s[j] = exp(s[j] - top); total += s[j] }
                for j in 0..<n { expected[j / block] += s[j] / total / Double(rows.count) }
            }
            for kb in 0..<blocks { XCTAssertEqual(Double(m[qb * blocks + kb]), expected[kb], accuracy: 2e-6, "M[\(qb)][\(kb)]") }
        }
        XCTAssertGreaterThan(m[8], 0.05)  // the planted key carries real mass for block 0
    }

    /// The plan-error kernel across key chunks against float64 attention: kept spans that cross
    /// chunk edges, a reused block, a partial last block.
    func testPlanErrorAcrossKeyChunks() {
        var rng = SplitMix64(seed: 23)
        let (n, d, block) = (2100, 8, 250)
        let q = rng.floats(n * d, scale: 1.5), k = rng.floats(n * d, scale: 1.5), v = rng.floats(n * d)
        var rows: [Row] = (0..<9).map { qb in
            let (lo, hi) = (max(0, qb - 1), min(9, qb + 2))
            return .compute(hi < 8 ? [Span(lo, hi), Span(8, 9)] : [Span(lo, 9)])
        }
        rows[5] = .reuse(3)
        let plan = Plan(name: "p", rows: rows)
        var rowSpan: [Int32] = [0], spans: [Int32] = [], reuse: [Int32] = []
        for row in plan.rows {
            switch row {
            case .compute(let ss): spans += ss.flatMap { [Int32($0.start), Int32($0.end)] }; reuse.append(-1)
            case .reuse(let source): reuse.append(Int32(source))
            }
            rowSpan.append(Int32(spans.count / 2))
        }
        var err = 0.0, norm = 0.0
        XCTAssertEqual(calib_plan_error(q, k, v, Int64(n), Int64(d), Int64(block), Float(1 / Double(d).squareRoot()),
                                        rowSpan, spans, reuse, &err, &norm), 0)
        let dense = Reference.attention(q: q, k: k, v: v, tokens: n, headDim: d)
        let sparse = Reference.attention(of: plan, q: q, k: k, v: v, tokens: n, headDim: d, block: block)
        var e = 0.0, nn = 0.0
        for i in 0..<(n * d) {
            e += (sparse[i] - dense[i]) * (sparse[i] - dense[i])
            nn += dense[i] * dense[i]
        }
        XCTAssertEqual(norm, nn, accuracy: 1e-4 * nn)
        XCTAssertEqual((err / norm).squareRoot(), (e / nn).squareRoot(), accuracy: 1e-5)
        XCTAssertGreaterThan(e / nn, 1e-3)  // the plan drops real mass
    }
}
