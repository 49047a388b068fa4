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

extension XCTestCase {
    /// `a` from a state, `b` from the batch path.
    func assertSame(_ a: Calibration, _ b: Calibration, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.program.plans, b.program.plans, label, file: file, line: line)
        XCTAssertEqual(a.program.dispatch, b.program.dispatch, label, file: file, line: line)
        XCTAssertEqual(MaskWriter.json(a.program, layout: a.layout), MaskWriter.json(b.program, layout: b.layout), label, file: file, line: line)
        for (x, y) in zip(a.heads, b.heads) {
            XCTAssertEqual(x.dense, y.dense, label, file: file, line: line)
            XCTAssertEqual(x.reusedBlocks, y.reusedBlocks, label, file: file, line: line)
            XCTAssertEqual(x.density, y.density, label, file: file, line: line)
            // Where the largest drop is a retired input's, the state knows the bound it retired
            // with (rounded to F32), at least the batch path's exact drop.
            if x.leaveOneOutIsBound {
                XCTAssertLessThanOrEqual(y.leaveOneOutDrop!, x.leaveOneOutDrop! + 1e-7, label, file: file, line: line)
            } else {
                XCTAssertEqual(x.leaveOneOutDrop ?? -1, y.leaveOneOutDrop ?? -1, accuracy: 1e-9, label, file: file, line: line)
            }
            XCTAssertFalse(y.leaveOneOutIsBound, label, file: file, line: line)
            XCTAssertEqual(x.heldOutMass ?? -1, y.heldOutMass ?? -1, accuracy: 1e-12, label, file: file, line: line)
            XCTAssertEqual(x.heldOutError ?? -1, y.heldOutError ?? -1, accuracy: 1e-12, label, file: file, line: line)
        }
    }
}

final class StreamingTests: XCTestCase {
    func options(_ change: (inout CalibrationOptions) -> Void = { _ in }) -> CalibrationOptions {
        var o = CalibrationOptions()
        o.block = 16
        change(&o)
        return o
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
        var dense = 0, reused = 0, sharedTiles = 0, bounds = 0
        for (label, o) in settings {
            let batch = try Calibrator.runBatch(calibration: Array(r[0..<3]), holdout: [r[3]], options: o)
            let stream = try Calibrator.run(calibration: Array(r[0..<3]), holdout: [r[3]], options: o)
            assertSame(stream, batch, label)
            bounds += stream.heads.filter(\.leaveOneOutIsBound).count
            dense += batch.heads.filter(\.dense).count
            reused += batch.heads.map(\.reusedBlocks).reduce(0, +)
            let state = try Calibrator.fold(Array(r[0..<3]), options: o)
            sharedTiles += state.heads.map { $0.codes.filter { $0 == HeadState.several }.count }.reduce(0, +)
            // Not every head is decided by one rule alone: some are dense, some are not.
            XCTAssertTrue(batch.heads.contains { $0.dense } && batch.heads.contains { !$0.dense }, label)
        }
        XCTAssertGreaterThan(dense, 0)
        XCTAssertGreaterThan(reused, 0)
        XCTAssertGreaterThan(sharedTiles, 0)
        XCTAssertGreaterThan(bounds, 0)  // inputs retired, in heads the masks still match on
    }

    /// The part of a state that does not depend on the order of folds and merges: everything
    /// but the retired drop, a bound that depends on when each input retired.
    func assertSameSelections(_ a: CalibrationState, _ b: CalibrationState, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.heads.map(\.tiles), b.heads.map(\.tiles), label, file: file, line: line)
        XCTAssertEqual(a.heads.map(\.owners), b.heads.map(\.owners), label, file: file, line: line)
        XCTAssertEqual(a.heads.map(\.ownerMass), b.heads.map(\.ownerMass), label, file: file, line: line)
        XCTAssertEqual(a.heads.map(\.reuse), b.heads.map(\.reuse), label, file: file, line: line)
    }

    /// A constructed head (B = 2, --mass 0.95, --stability-drop 0.05): input 0 alone selects
    /// tiles (0, 1) and (1, 1), 0.06 of mass each, a drop of 0.06 after two inputs, just above
    /// the threshold (the head is dense); the third input shares (1, 1), input 0's drop falls
    /// to 0.03, it retires and the owner list empties. At each count the plan and the report's
    /// drop are the batch path's; merging in another order gives the same codes and owners.
    func testRetirementWhenADropFallsBelowTheThreshold() {
        let masses: [[Float]] = [[0.94, 0.06, 0.94, 0.06], [0.96, 0.04, 0.96, 0.04], [0.96, 0.04, 0.5, 0.5]]
        let selections: [[Set<Int>]] = [[[0, 1], [0, 1]], [[0], [0]], [[0], [0, 1]]]  // what --mass 0.95 keeps
        let o = options { $0.selection = .mass(0.95) }
        func batch(_ n: Int) -> (Plan, HeadReport) {
            Calibrator.decide(masses: Array(masses[0..<n]), blocks: 2, partialLast: false, options: o)
        }
        var h = HeadState(blocks: 2)
        var drops: [Double] = []
        for (i, m) in masses.enumerated() {
            h.fold(mass: m, selected: selections[i], input: i, reuseTolerance: o.reuseTolerance, stabilityDrop: o.stabilityDrop)
            let (plan, report) = Calibrator.decide(h, inputs: i + 1, partialLast: false, options: o)
            let (expected, exact) = batch(i + 1)
            XCTAssertEqual(plan.rows, expected.rows, "\(i + 1) inputs")
            XCTAssertEqual(report.dense, exact.dense, "\(i + 1) inputs")
            drops.append(report.leaveOneOutDrop ?? -1)
            if i == 1 {
                XCTAssertEqual(h.owners, [0, 0])  // input 1 retired at once: it selected nothing alone
                XCTAssertEqual(h.retiredDrop, 0)
                XCTAssertTrue(report.dense)
                XCTAssertFalse(report.leaveOneOutIsBound)
                XCTAssertEqual(report.leaveOneOutDrop!, exact.leaveOneOutDrop!, accuracy: 1e-7)
            }
        }
        XCTAssertEqual(h.owners, [])
        XCTAssertEqual(h.codes, [HeadState.several, HeadState.several, HeadState.several, HeadState.several])
        XCTAssertEqual(h.retiredDrop, 0.03, accuracy: 1e-7)
        XCTAssertEqual(drops[0], -1)  // one input: no rule, no drop
        XCTAssertEqual(drops[1], 0.06, accuracy: 1e-7)
        XCTAssertEqual(drops[2], 0.03, accuracy: 1e-7)  // a bound: input 0's drop when it retired
        XCTAssertEqual(batch(3).1.leaveOneOutDrop!, 0.03, accuracy: 1e-7)
        XCTAssertTrue(Calibrator.decide(h, inputs: 3, partialLast: false, options: o).1.leaveOneOutIsBound)

        // The same three inputs as {0, 1} merged with {2}, and as {2} merged with {0, 1}: input 0
        // retires at the merge.
        var first = HeadState(blocks: 2), second = HeadState(blocks: 2)
        for i in 0..<2 { first.fold(mass: masses[i], selected: selections[i], input: i, reuseTolerance: 0.02, stabilityDrop: 0.05) }
        second.fold(mass: masses[2], selected: selections[2], input: 0, reuseTolerance: 0.02, stabilityDrop: 0.05)
        XCTAssertEqual(second.owners, [0, 0, 0])  // alone, input 2's drop is all it selected: 0.98
        var ab = first, ba = second
        ab.merge(second, offset: 2, stabilityDrop: 0.05)
        ba.merge(first, offset: 1, stabilityDrop: 0.05)
        XCTAssertEqual(ab, h)
        XCTAssertEqual(ba.codes, h.codes)
        XCTAssertEqual(ba.owners, [])

        // One input: the rule is not applied yet, but a drop at most the threshold retires, as
        // it can only fall: at threshold 1, input 0's drop of 1 retires it at once, and nothing
        // is dense later.
        let loose = options { $0.selection = .mass(0.95); $0.stabilityDrop = 1 }
        var one = HeadState(blocks: 2)
        one.fold(mass: masses[0], selected: selections[0], input: 0, reuseTolerance: 0.02, stabilityDrop: 1)
        XCTAssertEqual(one.owners, [])
        XCTAssertEqual(one.retiredDrop, 1)
        XCTAssertNil(Calibrator.decide(one, inputs: 1, partialLast: false, options: loose).1.leaveOneOutDrop)
        one.merge(second, offset: 1, stabilityDrop: 1)
        let exact = Calibrator.decide(masses: [masses[0], masses[2]], blocks: 2, partialLast: false, options: loose)
        XCTAssertEqual(Calibrator.decide(one, inputs: 2, partialLast: false, options: loose).0.rows, exact.0.rows)
    }

    /// On three prompts, every input of a head that is not dense has retired: its owner list is
    /// empty, though without retirement (threshold 0) it holds tiles; dense heads keep theirs.
    func testStableHeadsKeepNoOwners() throws {
        let r = Array(ContentFixture.recordings[0..<3])
        let state = try Calibrator.fold(r, options: options())
        let kept = try Calibrator.fold(r, options: options { $0.stabilityDrop = 0 })
        let c = try Calibrator.finish(state, holdout: [], options: options())
        var emptied = 0
        for (d, report) in c.heads.enumerated() {
            XCTAssertEqual(state.heads[d].owners.isEmpty, !report.dense, "head \(d)")
            if !report.dense && !kept.heads[d].owners.isEmpty { emptied += 1 }
        }
        XCTAssertGreaterThan(emptied, 0)
        XCTAssertTrue(c.heads.contains(where: \.dense))
        XCTAssertLessThan(state.tensorBytes, kept.tensorBytes)
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
        assertSameSelections(a, all, "in memory")

        let dir = ContentFixture.dir
        var files: [String] = []
        for (i, part) in [Array(r[0..<1]), Array(r[1..<3]), Array(r[3..<4])].enumerated() {
            files.append("\(dir)/state\(i).safetensors")
            try Calibrator.fold(part, options: o).write(to: files.last!)
        }
        var merged = try CalibrationState(path: files[0])
        for f in files.dropFirst() { try merged.merge(try CalibrationState(path: f), file: f, into: files[0]) }
        assertSameSelections(merged, all, "through the files")
        XCTAssertEqual(merged.inputs, 4)
        let fromMerge = try Calibrator.finish(merged, holdout: [], options: o)
        let batch = try Calibrator.runBatch(calibration: r, holdout: [], options: o)
        assertSame(fromMerge, batch, "merged files")
        assertSame(try Calibrator.finish(a, holdout: [], options: o), batch, "merged in memory")
        XCTAssertTrue(all.heads.contains { $0.retiredDrop > 0 })
        XCTAssertEqual(fromMerge.layout, batch.layout)
    }

    /// Sampled rows are part of the selection a state records: streaming still equals batch with
    /// them, a state of sampled rows does not merge with one of all rows, and recordings of
    /// block mass (already reduced) refuse them.
    func testSampledRowsAreFixedInTheState() throws {
        let r = ContentFixture.recordings
        let sampled = options { $0.rowStep = 4 }
        let a = try Calibrator.fold(Array(r[0..<2]), options: sampled)
        XCTAssertTrue(a.selection.hasSuffix("; rows 1/4"), a.selection)
        assertSame(try Calibrator.finish(a, holdout: [], options: sampled),
                   try Calibrator.runBatch(calibration: Array(r[0..<2]), holdout: [], options: sampled), "sampled rows")
        var all = try Calibrator.fold(Array(r[2..<4]), options: options())
        XCTAssertThrowsError(try all.merge(a, file: "a", into: "b")) { XCTAssertTrue("\($0)".contains("rows 1/4"), "\($0)") }

        var c = smallConfig()
        c.massBlock = 16
        let mass = try Synth.write(c, prompts: 1, seed: 3, to: ContentFixture.dir + "/mass").map { try Recording(path: $0) }
        XCTAssertThrowsError(try Calibrator.fold(mass, options: sampled)) {
            XCTAssertTrue("\($0)".contains("--sample-rows applies to recordings of q and k"), "\($0)")
        }
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
        XCTAssertEqual(read.reuseTolerance, 0.02)
        XCTAssertEqual(read.stabilityDrop, 0.05)
        XCTAssertEqual(read.scale, state.scale)
        XCTAssertEqual(read.layout, state.layout)
        // Per head 24 × 24 tiles (116 bytes of codes), 276 pairs (35 bytes of bits), 4 of retired drop, 6 per single-owner tile.
        let singles = state.heads.map(\.owners.count).reduce(0, +)
        XCTAssertEqual(state.tensorBytes, state.heads.count * (116 + 35 + 4) + 6 * singles)

        func message(_ path: String) -> String {
            do { _ = try CalibrationState(path: path); return "accepted" } catch { return "\(error)" }
        }
        // One query block: no pairs, zero-size reuse tensors; both inputs select the one tile, so
        // no tile has a single owner and the owner tensors are zero-size too.
        let single = try Calibrator.fold(Array(r[0..<2]), options: options { $0.block = 512 })
        try single.write(to: "\(dir)/single.safetensors")
        XCTAssertEqual(try CalibrationState(path: "\(dir)/single.safetensors").heads, single.heads)
        XCTAssertEqual(single.heads[0].reuse, [])
        XCTAssertEqual(single.heads.flatMap(\.owners), [])
        XCTAssertEqual(try SafetensorsFile(path: "\(dir)/single.safetensors").tensors["step0.layer0.owner"]?.shape, [0])
        // A recording is not a state.
        XCTAssertEqual(message(ContentFixture.paths[0]),
                       "\(ContentFixture.paths[0]): not a calibration state (metadata format is \"calibc-recording/1\", expected \"calibc-state/3\")")
        // Files and values a fold could not have written: the file's tensors, one of them changed.
        let file = try SafetensorsFile(path: path)
        func rewrite(_ name: String? = nil, metadata: [String: String?] = [:], _ change: (inout [UInt8], inout [Int]) -> Void = { _, _ in }) throws -> String {
            var w = SafetensorsWriter()
            w.metadata = file.metadata
            for (k, v) in metadata { w.metadata[k] = v }
            for (n, info) in file.tensors.sorted(by: { $0.key < $1.key }) {
                var (bytes, shape) = (try file.bytes(n), info.shape)
                if n == name { change(&bytes, &shape) }
                w.add(n, bytes: bytes, shape: shape, dtype: info.dtype)
            }
            let bad = "\(dir)/bad-\(UUID().uuidString).safetensors"
            try w.write(to: bad)
            return message(bad).replacingOccurrences(of: bad + ": ", with: "")
        }
        XCTAssertEqual(try rewrite(), "accepted")
        XCTAssertEqual(try rewrite(metadata: ["format": "calibc-state/1"]),
                       "format calibc-state/1 (the uncompressed state of earlier versions) is no longer read, expected \"calibc-state/3\"; fold the recordings again")
        XCTAssertEqual(try rewrite(metadata: ["format": "calibc-state/2"]),
                       "format calibc-state/2 (the state of earlier versions, which keeps every single-owner tile) is no longer read, expected \"calibc-state/3\"; fold the recordings again")
        XCTAssertEqual(try rewrite(metadata: ["stability_drop": nil]), "metadata stability_drop must be a number in [0, 1]")
        XCTAssertEqual(try rewrite("step0.layer0.retired_drop") { bytes, _ in bytes.replaceSubrange(4..<8, with: [0, 0, 0, 0x3f]) },
                       "tensor step0.layer0.retired_drop holds 0.5 for head 1; expected a drop in [0, 0.05] (stability_drop)")
        XCTAssertEqual(try rewrite("step0.layer0.tiles") { bytes, _ in bytes[3] = 243 },
                       "tensor step0.layer0.tiles holds 243 in byte 3 of head 0; expected at most 242 (five codes 0…2 per byte)")
        // 576 tiles fill 115 bytes and one code of the 116th: codes 1…4 of each head's last byte are unused.
        XCTAssertEqual(try rewrite("step0.layer0.tiles") { bytes, _ in bytes[2 * 116 + 115] = 2 * 3 },
                       "tensor step0.layer0.tiles sets a code for tile 576 of head 2, beyond its 576 tiles; expected 0")
        let owners = file.tensors["step0.layer0.owner"]!.count
        XCTAssertGreaterThan(owners, 0)
        XCTAssertEqual(try rewrite("step0.layer0.owner") { bytes, shape in bytes.removeLast(2); shape = [owners - 1] },
                       "tensor step0.layer0.owner holds \(owners - 1) owners, expected \(owners): one per tile exactly one input selected (code 1 in step0.layer0.tiles)")
        XCTAssertEqual(try rewrite("step0.layer0.owner") { bytes, _ in (bytes[6], bytes[7]) = (2, 0) },
                       "tensor step0.layer0.owner holds 2 at 3; expected an input index below 2")
        XCTAssertEqual(try rewrite("step5.layer0.owner_mass") { bytes, _ in bytes.replaceSubrange(0..<4, with: [0, 0, 0xc0, 0x7f]) },
                       "tensor step5.layer0.owner_mass holds nan at 0; expected a mass in [0, 1]")
        // 276 pairs fill 34 bytes and 4 bits of the 35th.
        XCTAssertEqual(try rewrite("step9.layer0.reuse") { bytes, _ in bytes[34] |= 1 << 5 },
                       "tensor step9.layer0.reuse sets bit 277 of head 0, beyond its 276 pairs; expected 0")
        XCTAssertEqual(try rewrite("step0.layer0.reuse", metadata: ["reuse_tolerance": "0.0"]) { bytes, _ in bytes[0] = 1 },
                       "tensor step0.layer0.reuse sets bits in byte 0 of head 0, but reuse_tolerance is 0 (reuse off); expected none")
        XCTAssertEqual(try rewrite(metadata: ["inputs": "0"]), "metadata inputs must be an integer in 1…65535")
        XCTAssertEqual(try rewrite(metadata: ["block": nil]), "metadata block must be an integer in 1…1024")
        XCTAssertEqual(try rewrite(metadata: ["steps": "0,x"]), "metadata steps must list step indices, e.g. \"0,20,40\"")
        XCTAssertEqual(try rewrite(metadata: ["steps": "5,0"]), "metadata steps must be strictly ascending")
        XCTAssertEqual(try rewrite(metadata: ["scale": "-2"]), "metadata scale must be a positive number")
        XCTAssertEqual(try rewrite(metadata: ["selection": nil]), "metadata selection is missing")
        XCTAssertEqual(try rewrite(metadata: ["reuse_tolerance": "1.5"]), "metadata reuse_tolerance must be a number in [0, 1]")
        XCTAssertEqual(try rewrite("step0.layer0.owner_mass") { bytes, shape in bytes += [0, 0, 0, 0]; shape = [shape[0] + 1] },
                       "tensor step0.layer0.owner_mass is F32 [\(owners + 1)], expected F32 [\(owners)]")
        var w = SafetensorsWriter()
        w.metadata = file.metadata
        w.add("step0.layer0.owner", [UInt16](), shape: [0])
        let missing = "\(dir)/missing-tensor.safetensors"
        try w.write(to: missing)
        XCTAssertEqual(message(missing), "\(missing): missing tensor step0.layer0.tiles")
        var f16 = SafetensorsWriter()
        f16.metadata = file.metadata
        f16.add("step0.layer0.tiles", [Float](repeating: 0, count: 6 * 116), shape: [6, 116], as: .f16)
        try f16.write(to: missing)
        XCTAssertEqual(message(missing), "\(missing): tensor step0.layer0.tiles is F16 [6, 116], expected U8 [6, 116]")

        // States merge only with the same selection, reuse tolerance and shape.
        var a = state
        let other = try Calibrator.fold(Array(r[2..<3]), options: options { $0.selection = .mass(0.9) })
        XCTAssertThrowsError(try a.merge(other, file: "b.safetensors", into: "a.safetensors")) { e in
            XCTAssertEqual("\(e)", "b.safetensors: selection mass 0.9 differs from a.safetensors's mass 0.95")
        }
        let tolerant = try Calibrator.fold(Array(r[2..<3]), options: options { $0.reuseTolerance = 0.1 })
        XCTAssertThrowsError(try a.merge(tolerant, file: "b.safetensors", into: "a.safetensors")) { e in
            XCTAssertEqual("\(e)", "b.safetensors: reuse tolerance 0.1 differs from a.safetensors's 0.02")
        }
        let steady = try Calibrator.fold(Array(r[2..<3]), options: options { $0.stabilityDrop = 0.1 })
        XCTAssertThrowsError(try a.merge(steady, file: "b.safetensors", into: "a.safetensors")) { e in
            XCTAssertEqual("\(e)", "b.safetensors: stability drop 0.1 differs from a.safetensors's 0.05")
        }
        let coarse = try Calibrator.fold(Array(r[2..<3]), options: options { $0.block = 32 })
        XCTAssertThrowsError(try a.merge(coarse, file: "b.safetensors", into: "a.safetensors")) { e in
            XCTAssertEqual("\(e)", "b.safetensors: shape (steps, layers, heads, tokens, head_dim, block) steps 0,5,9, 1 layers, 6 heads, 384 tokens, head_dim 128, block 32 differs from a.safetensors's steps 0,5,9, 1 layers, 6 heads, 384 tokens, head_dim 128, block 16")
        }
        // Owners are U16: at most 65,535 inputs.
        var many = state
        many.inputs = 65_534
        XCTAssertThrowsError(try a.merge(many, file: "b.safetensors", into: "a.safetensors")) { e in
            XCTAssertEqual("\(e)", "b.safetensors: merging gives 65536 inputs, more than the 65535 a state can number")
        }
        XCTAssertThrowsError(try Calibrator.fold(Array(repeating: r[0], count: 65_536), options: options())) { e in
            XCTAssertEqual("\(e)", "65536 calibration recordings, more than the 65535 a state can number")
        }
        // Deciding uses the tolerance and threshold the inputs were folded with, and refuses others.
        XCTAssertThrowsError(try Calibrator.finish(state, holdout: [], options: options { $0.reuseTolerance = 0.1 })) { e in
            XCTAssertEqual("\(e)", "the calibration state: --reuse-tolerance 0.1 differs from the state's 0.02, which was fixed when its inputs were folded (omit --reuse-tolerance to use it)")
        }
        XCTAssertThrowsError(try Calibrator.finish(state, holdout: [], options: options { $0.stabilityDrop = 0.1 })) { e in
            XCTAssertEqual("\(e)", "the calibration state: --stability-drop 0.1 differs from the state's 0.05, which was fixed when its inputs were folded (omit --stability-drop to use it)")
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
            (0..<shape.heads).map { state.head(stepIndex: s, layer: 0, head: $0).codes.filter { $0 != HeadState.none }.count }.reduce(0, +)
        }
        XCTAssertEqual(tiles(stateScheduled, 0), tiles(state99, 0))
        XCTAssertLessThan(tiles(stateScheduled, 1), tiles(state99, 1))
        XCTAssertLessThan(tiles(stateScheduled, 2), tiles(stateScheduled, 1))
    }

    /// The pair-distance kernel against a direct computation (the same double sum, so equal),
    /// and the reuse bits of two folds: set only where both inputs are within the tolerance.
    func testRowDistanceKernelAndReuseBits() {
        var rng = SplitMix64(seed: 3)
        let b = 13
        let m1 = rng.floats(b * b), m2 = rng.floats(b * b)
        func l1(_ m: [Float], _ i: Int, _ j: Int) -> Double { (0..<b).reduce(0.0) { $0 + abs(Double(m[i * b + $1]) - Double(m[j * b + $1])) } }
        var d = [Double](repeating: -1, count: b * (b - 1) / 2)
        calib_row_distance(m1, Int64(b), &d)
        var worst: [Double] = []
        for i in 0..<b {
            for j in (i + 1)..<b {
                XCTAssertEqual(d[i * b - i * (i + 1) / 2 + j - i - 1], l1(m1, i, j), "pair \(i), \(j)")
                worst.append(max(l1(m1, i, j), l1(m2, i, j)))
            }
        }
        let tolerance = worst.sorted()[worst.count / 2]  // about half the pairs stay reusable
        var state = HeadState(blocks: b), off = HeadState(blocks: b)
        for (i, m) in [m1, m2].enumerated() {
            state.fold(mass: m, selected: Array(repeating: [], count: b), input: i, reuseTolerance: tolerance, stabilityDrop: 0.05)
            off.fold(mass: m, selected: Array(repeating: [], count: b), input: i, reuseTolerance: 0, stabilityDrop: 0.05)
        }
        var reusable = 0
        for i in 0..<b {
            for j in (i + 1)..<b {
                XCTAssertEqual(state.mayReuse(j, i), l1(m1, i, j) <= tolerance && l1(m2, i, j) <= tolerance, "pair \(i), \(j)")
                reusable += state.mayReuse(i, j) ? 1 : 0
            }
        }
        XCTAssertEqual(reusable, worst.filter { $0 <= tolerance }.count)
        XCTAssertTrue(reusable > 0 && reusable < worst.count)
        XCTAssertEqual(off.reuse, [UInt8](repeating: 0, count: (b * (b - 1) / 2 + 7) / 8))  // tolerance 0: reuse off
    }

    /// Owners: none, one (with its mass), several; merge renumbers the other side's inputs.
    func testOwnerBookkeeping() {
        let b = 2
        var s = HeadState(blocks: b)
        let m: [Float] = [0.7, 0.3, 0.4, 0.6]
        s.fold(mass: m, selected: [[0], [1]], input: 0, reuseTolerance: 0.02, stabilityDrop: 0.05)
        s.fold(mass: m, selected: [[0, 1], [1]], input: 1, reuseTolerance: 0.02, stabilityDrop: 0.05)
        XCTAssertEqual(s.codes, [HeadState.several, HeadState.one, HeadState.none, HeadState.several])
        XCTAssertEqual(s.tiles, [59])  // 2 + 3·1 + 9·0 + 27·2
        XCTAssertEqual(s.owners, [1])
        XCTAssertEqual(s.ownerMass, [0.3])
        XCTAssertEqual(s.worstDrop, 0.15, accuracy: 1e-7)  // input 1 alone keeps 0.3 on row 0: 0.3 / 2 rows
        XCTAssertFalse(s.mayReuse(0, 1))  // the rows are 0.6 apart
        var t = HeadState(blocks: b)
        t.fold(mass: m, selected: [[0], [0]], input: 0, reuseTolerance: 0.02, stabilityDrop: 0.05)
        s.merge(t, offset: 2, stabilityDrop: 0.05)
        XCTAssertEqual(s.codes, [HeadState.several, HeadState.one, HeadState.one, HeadState.several])
        XCTAssertEqual(s.owners, [1, 2])
        XCTAssertEqual(s.ownerMass, [0.3, 0.4])
        XCTAssertEqual(s.union, [[0, 1], [0, 1]])
        XCTAssertEqual(s.worstDrop, 0.2, accuracy: 1e-7)
        // A pair stays reusable while every input's rows are within the tolerance, in merges too.
        var u = HeadState(blocks: b), v = HeadState(blocks: b)
        u.fold(mass: [0.5, 0.5, 0.505, 0.495], selected: [[0], [0]], input: 0, reuseTolerance: 0.02, stabilityDrop: 0.05)
        XCTAssertTrue(u.mayReuse(0, 1))
        v.fold(mass: [0.5, 0.5, 0.5, 0.5], selected: [[1], [0]], input: 0, reuseTolerance: 0.02, stabilityDrop: 0.05)
        u.merge(v, offset: 1, stabilityDrop: 0.05)
        XCTAssertTrue(u.mayReuse(0, 1))
        XCTAssertEqual(u.codes, [HeadState.one, HeadState.one, HeadState.several, HeadState.none])
        XCTAssertEqual(u.owners, [0, 1])
        u.merge(t, offset: 2, stabilityDrop: 0.05)
        XCTAssertFalse(u.mayReuse(0, 1))
    }

    /// Packed codes and bits round-trip, where B² is not a multiple of 5 and the pairs not of 8.
    func testPackingRoundTrips() {
        var rng = SplitMix64(seed: 5)
        for count in [0, 1, 4, 5, 6, 23 * 23, 24 * 24, 591 * 591] {
            let codes = (0..<count).map { _ in UInt8(rng.next() % 3) }
            let packed = Packing.packCodes(codes)
            XCTAssertEqual(packed.count, (count + 4) / 5, "\(count) codes")
            XCTAssertTrue(packed.allSatisfy { $0 <= 242 })
            XCTAssertEqual(Packing.unpackCodes(packed[...], count: count), codes, "\(count) codes")
        }
        // Tile 5m + k is code k of byte m, weighted 3^k; unused trailing codes are 0.
        XCTAssertEqual(Packing.packCodes([1, 2, 0, 1, 2, 2]), [196, 2])  // 1 + 2·3 + 0·9 + 1·27 + 2·81
        XCTAssertEqual(Packing.packCodes([2, 2, 2, 2, 2]), [242])
        for count in [0, 1, 7, 8, 9, 23 * 22 / 2, 24 * 23 / 2, 591 * 590 / 2] {
            let bits = (0..<count).map { _ in rng.next() % 2 == 1 }
            let packed = Packing.packBits(bits)
            XCTAssertEqual(packed.count, (count + 7) / 8, "\(count) bits")
            XCTAssertEqual(Packing.unpackBits(packed[...], count: count), bits, "\(count) bits")
            if count % 8 != 0 { XCTAssertEqual(packed.last! >> (count % 8), 0, "\(count) bits: padding") }
        }
        XCTAssertEqual(Packing.packBits([true, false, false, true, false, false, false, false, true]), [0b1001, 1])  // LSB first
    }

    /// The state of `make example`'s shape (3072 tokens in blocks of 64: B = 48; 3 steps × 2
    /// layers × 6 heads) is ⌈48²/5⌉ + ⌈48·47/2/8⌉ + 4 = 461 + 141 + 4 bytes per head (codes,
    /// reuse bits, the retired drop) and 6 per single-owner tile, plus the header, whatever the
    /// number of inputs. Threshold 0, so that no input with single-owner tiles retires.
    func testStateSizeIsPredicted() throws {
        let shape = Shape(tokens: 3072, headDim: 128, block: 64, layers: 2, heads: 6, steps: [0, 20, 40])
        var state = CalibrationState(shape: shape, model: "m", layout: nil, scale: 0.125, selection: "mass 0.95", reuseTolerance: 0.02,
                                     stabilityDrop: 0)
        var rng = SplitMix64(seed: 9)
        let b = 48
        for input in 0..<3 {
            for h in state.heads.indices {
                let m = rng.floats(b * b, scale: 0.5).map { abs($0) / Float(b) }
                let selected = (0..<b).map { q in Set((0..<b).filter { m[q * b + $0] > 0.4 / Float(b) }) }
                state.heads[h].fold(mass: m, selected: selected, input: input, reuseTolerance: 0.02, stabilityDrop: 0)
            }
            state.inputs += 1
        }
        let singles = state.heads.map { $0.codes.filter { $0 == HeadState.one }.count }.reduce(0, +)
        XCTAssertEqual(singles, state.heads.map(\.owners.count).reduce(0, +))
        XCTAssertGreaterThan(singles, 0)
        let predicted = 36 * (461 + 141 + 4) + 6 * singles
        XCTAssertEqual(state.tensorBytes, predicted)
        let path = ContentFixture.dir + "/size.safetensors"
        try FileManager.default.createDirectory(atPath: ContentFixture.dir, withIntermediateDirectories: true)
        try state.write(to: path)
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let header = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        XCTAssertEqual(data.count, 8 + header + predicted)
        XCTAssertEqual(try CalibrationState(path: path).heads, state.heads)
    }

    /// The command line: usage errors exit 2 with their message; a merge through files writes
    /// the masks of one run over all prompts.
    func testCommandLine() throws {
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
            let (status, _, err) = try runCalibc(args)
            XCTAssertEqual(status, 2, args.joined(separator: " "))
            XCTAssertEqual(err.split(separator: "\n").first.map(String.init), "calibc: " + message)
        }
        // Two states from two runs, merged, give the masks of one run over both prompts.
        for i in 0..<2 {
            let (status, out, err) = try runCalibc(["calibrate", rec[i], "--block", "16", "--state-out", "\(dir)/cli\(i).safetensors"])
            XCTAssertEqual(status, 0, err)
            XCTAssertTrue(out.hasPrefix("wrote \(dir)/cli\(i).safetensors: the state of 1 inputs, 18 (step, layer, head)"), out)
        }
        XCTAssertEqual(try runCalibc(["calibrate", "--merge", "\(dir)/cli0.safetensors", "\(dir)/cli1.safetensors", "-o", "\(dir)/merged.json"]).0, 0)
        XCTAssertEqual(try runCalibc(["calibrate", rec[0], rec[1], "--block", "16", "-o", "\(dir)/one.json"]).0, 0)
        XCTAssertEqual(try String(contentsOfFile: "\(dir)/merged.json", encoding: .utf8), try String(contentsOfFile: "\(dir)/one.json", encoding: .utf8))
        let (status, _, err) = try runCalibc(["calibrate", "--merge", "\(dir)/cli0.safetensors", rec[1], "-o", "\(dir)/x.json"])
        XCTAssertEqual(status, 1)
        XCTAssertEqual(err, "calibc: error: \(rec[1]): not a calibration state (metadata format is \"calibc-recording/1\", expected \"calibc-state/3\")\n")

        // The reuse tolerance and the stability threshold are the states': omitted, taken from
        // them; repeated, accepted; another value, or states folded with different ones, refused.
        let merge = ["calibrate", "--merge", "\(dir)/cli0.safetensors", "\(dir)/cli1.safetensors", "-o", "\(dir)/x.json"]
        for (option, name, folded, other) in [("--reuse-tolerance", "reuse tolerance", "0.02", "0.1"),
                                              ("--stability-drop", "stability drop", "0.05", "0.2")] {
            XCTAssertEqual(try runCalibc(merge + [option, folded]).0, 0)
            let refused = try runCalibc(merge + [option, other])
            XCTAssertEqual(refused.0, 1)
            XCTAssertEqual(refused.2, "calibc: error: \(dir)/cli0.safetensors: \(option) \(other) differs from the state's \(folded), which was fixed when its inputs were folded (omit \(option) to use it)\n")
            for i in 0..<2 {
                XCTAssertEqual(try runCalibc(["calibrate", rec[i], "--block", "16", option, other, "--state-out", "\(dir)/other\(i).safetensors"]).0, 0)
            }
            XCTAssertEqual(try runCalibc(["calibrate", "--merge", "\(dir)/other0.safetensors", "\(dir)/other1.safetensors", "-o", "\(dir)/other.json"]).0, 0)
            XCTAssertEqual(try runCalibc(["calibrate", rec[0], rec[1], "--block", "16", option, other, "-o", "\(dir)/other-one.json"]).0, 0)
            let masks = try String(contentsOfFile: "\(dir)/other.json", encoding: .utf8)
            XCTAssertEqual(masks, try String(contentsOfFile: "\(dir)/other-one.json", encoding: .utf8), option)
            XCTAssertNotEqual(masks, try String(contentsOfFile: "\(dir)/one.json", encoding: .utf8), option)  // the value mattered
            let mixed = try runCalibc(["calibrate", "--merge", "\(dir)/cli0.safetensors", "\(dir)/other1.safetensors", "-o", "\(dir)/x.json"])
            XCTAssertEqual(mixed.0, 1)
            XCTAssertEqual(mixed.2, "calibc: error: \(dir)/other1.safetensors: \(name) \(other) differs from \(dir)/cli0.safetensors's \(folded)\n")
        }
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
        XCTAssertEqual(calib_block_mass(q, k, Int64(n), Int64(n), Int64(d), Int64(block), 1, 0.5, &m), 0)
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
        let (rowSpan, spans, reuse) = Calibrator.planTables(plan)
        var err = 0.0, norm = 0.0
        XCTAssertEqual(calib_plan_error(q, k, v, Int64(n), Int64(n), Int64(d), Int64(block), Float(1 / Double(d).squareRoot()),
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
