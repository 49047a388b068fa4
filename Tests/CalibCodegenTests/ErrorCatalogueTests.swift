// docs/errors.md held both ways: calibc is run over a table of bad inputs, one or more for every
// entry of the document's tables; each message it prints must match an entry, and each entry
// must be matched by some input. An entry is a pattern: `…` and `<name>` stand for any text, a
// number for any number (a run of letters, digits and dots), the rest is literal; it matches the
// end of a message, after the file and position the message starts with.

import CalibFrontend
@testable import CalibIR
import Foundation
import XCTest

private let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardizedFileURL

/// The calibc built beside these tests, whatever the build path.
func builtCalibc() throws -> String {
    let tool = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("calibc").path
    try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: tool), "needs the calibc binary built beside the tests")
    return tool
}

/// Runs `tool` with `args` in `directory`: exit status, stdout, stderr.
func runProcess(_ tool: String, _ args: [String], in directory: URL,
                environment: [String: String] = [:]) throws -> (status: Int32, out: String, err: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: tool)
    p.arguments = args
    p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    p.currentDirectoryURL = directory
    let out = Pipe(), err = Pipe()
    (p.standardOutput, p.standardError) = (out, err)
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

/// One entry of docs/errors.md.
struct Entry {
    let section: String
    let text: String
    let regex: NSRegularExpression

    /// Entries the inputs here cannot bring about, with why.
    static let unreachable: [String: String] = [
        "out of memory measuring block mass": "needs an allocation to fail",
        "out of memory measuring plan error": "needs an allocation to fail",
        "internal error: calibrate produced masks that compile refuses: …": "a calibrate bug",
        "internal error: libclang rejects generated code:…": "a compiler bug",
        "internal error: libclang could not parse generated <file> (error 1)": "a compiler bug",
        "<tool> failed building <file>:…": "needs a broken C or CUDA compiler",
        "<dir>: could not move the output into place: <reason>": "needs the output directory to change during the rename",
        "<dir>: cannot list the directory": "needs a directory its owner cannot list (not for root)",
    ]

    /// The entries of every table but the run-time one: in each row's last cell, the first code
    /// span of each item (items are separated by " · "; what follows the span is a note).
    static func catalogue() throws -> [Entry] {
        let doc = try String(contentsOf: root.appendingPathComponent("docs/errors.md"), encoding: .utf8)
        var entries: [Entry] = []
        var section = ""
        let lines = doc.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for (i, line) in lines.enumerated() {
            if line.hasPrefix("## ") { section = String(line.dropFirst(3)) }
            guard line.hasPrefix("|"), !section.hasPrefix("Run time") else { continue }
            let isRule = line.allSatisfy { "|-: ".contains($0) }
            let isHeader = i + 1 < lines.count && lines[i + 1].hasPrefix("|---")
            guard !isRule, !isHeader else { continue }
            let cells = line.split(separator: "|", omittingEmptySubsequences: true)
            guard let last = cells.last else { continue }
            for item in last.components(separatedBy: " · ") {
                let parts = item.components(separatedBy: "`")
                guard parts.count >= 3 else { continue }
                entries.append(Entry(section: section, text: parts[1], regex: try pattern(parts[1])))
            }
        }
        return entries
    }

    static func pattern(_ text: String) throws -> NSRegularExpression {
        var out = "(?:^|: )"
        let chars = Array(text)
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if c == "…" {
                out += ".*"
                i += 1
            } else if c == "<", let close = chars[i...].firstIndex(of: ">"),
                      chars[(i + 1)..<close].allSatisfy({ $0.isLetter || $0.isNumber || " ._-".contains($0) }), close > i + 1 {
                out += ".+"
                i = close + 1
            } else if c.isASCII, c.isNumber {
                while i < chars.count, chars[i].isASCII, chars[i].isNumber || (chars[i] == "." && i + 1 < chars.count && chars[i + 1].isNumber) {
                    i += 1
                }
                out += "[-+0-9A-Za-z.]+"
            } else {
                out += NSRegularExpression.escapedPattern(for: String(c))
                i += 1
            }
        }
        return try NSRegularExpression(pattern: out + "$")
    }

    func matches(_ message: String) -> Bool {
        regex.firstMatch(in: message, range: NSRange(message.startIndex..., in: message)) != nil
    }
}

/// A file the inputs below need, written before calibc runs.
private struct Fixture {
    let name: String
    let bytes: [UInt8]
    init(_ name: String, _ bytes: [UInt8]) { (self.name, self.bytes) = (name, bytes) }
    init(_ name: String, _ text: String) { self.init(name, Array(text.utf8)) }
}

/// A command and the message it must give: `status`, and `fragment` somewhere in the message
/// (so the input reaches the entry it was written for).
private struct Case {
    let args: [String]
    let status: Int32
    let fragment: String
}

// MARK: - Inputs

/// A masks.json: 130 tokens in blocks of 64 (3 blocks, the last partial), 1 layer, 2 heads,
/// steps 0 and 7, one pattern "bits"; `fields` replace (or, as nil, remove) top-level fields.
private func masks(_ fields: [String: String?] = [:], patterns: String? = nil, assignments: String? = nil) -> String {
    var top: [(String, String)] = [
        ("format", "1"), ("model", "\"m\""), ("tokens", "130"), ("head_dim", "64"), ("block", "64"), ("layers", "1"),
        ("heads", "2"), ("timesteps", "[0, 7]"),
        ("patterns", patterns ?? #"{"bits": {"rows": [[[0, 1]], [[0, 2]], [[0, 3]]]}}"#),
        ("assignments", assignments ?? #"[{"steps": "*", "layers": "*", "heads": "*", "pattern": "bits"}]"#),
    ]
    for (k, v) in fields {
        if let i = top.firstIndex(where: { $0.0 == k }) {
            if let v { top[i].1 = v } else { top.remove(at: i) }
        } else if let v {
            top.append((k, v))
        }
    }
    return "{" + top.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}\n"
}

/// A pattern's fields as `patterns` of `masks`.
private func pattern(_ body: String) -> String { #"{"bits": "# + body + "}" }

/// The IR of a program like IRReaderTests' sample: 250 tokens in blocks of 64 (4 blocks, the
/// last partial), 1 layer, 3 heads, step 5.
private let program = """
    calib.program "m" hash "abc"
    shape tokens 250 head_dim 64 block 64 layers 1 heads 3 steps [5]

    plan @a {
      q0: compute [0, 2) [3, 4)
      q1: compute [1, 2)
      q2: compute [0, 4)
      q3: reuse q1
      order [1, 0, 2]
      chunks [0, 2, 3]
    }

    plan @b {
      q0: compute [0, 4)
      q1: compute [0, 4)
      q2: compute [0, 4)
      q3: compute [0, 4)
    }

    dispatch {
      step 5 layer 0 head 0..1 -> @a
      step 5 layer 0 head 2 -> @b
    }

    """

private func ir(_ edits: (String, String)...) -> String {
    var text = program
    for (old, new) in edits {
        precondition(text.contains(old), old)
        text = text.replacingOccurrences(of: old, with: new)
    }
    return text
}

/// A safetensors file: tensors (name, dtype, shape, bytes) laid out in order, or a header as given.
private func safetensors(_ tensors: [(String, String, [Int], [UInt8])], metadata: [String: String] = [:], header: String? = nil,
                         data: [UInt8]? = nil) -> [UInt8] {
    var fields: [String] = []
    if !metadata.isEmpty {
        fields.append("\"__metadata__\": {" + metadata.sorted { $0.key < $1.key }.map { "\"\($0.key)\": \"\($0.value)\"" }.joined(separator: ", ") + "}")
    }
    var offset = 0, body: [UInt8] = []
    for (name, dtype, shape, bytes) in tensors {
        fields.append("\"\(name)\": {\"dtype\": \"\(dtype)\", \"shape\": \(shape), \"data_offsets\": [\(offset), \(offset + bytes.count)]}")
        offset += bytes.count
        body += bytes
    }
    let text = Array((header ?? "{" + fields.joined(separator: ", ") + "}").utf8)
    return withUnsafeBytes(of: UInt64(text.count).littleEndian, Array.init) + text + (data ?? body)
}

private func f32(_ values: [Float]) -> [UInt8] { values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) } }

/// Deterministic values in (-1, 1).
private func noise(_ n: Int, seed: UInt64) -> [Float] {
    var x = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    return (0..<n).map { _ in
        x ^= x << 13; x ^= x >> 7; x ^= x << 17
        return Float(x >> 40) / Float(1 << 23) - 1
    }
}

/// A recording of q and k (F32): `steps` × 1 layer × `heads` heads × 64 tokens × head_dim 4.
private func recording(steps: [Int] = [0, 9], heads: Int = 3, seed: UInt64 = 1, metadata: [String: String] = ["format": "calibc-recording/1"]) -> [UInt8] {
    var tensors: [(String, String, [Int], [UInt8])] = []
    for (i, s) in steps.enumerated() {
        for kind in ["k", "q"] {
            tensors.append(("step\(s).layer0.\(kind)", "F32", [heads, 64, 4], f32(noise(heads * 256, seed: seed * 100 + UInt64(i * 2) + (kind == "q" ? 1 : 0)))))
        }
    }
    return safetensors(tensors, metadata: metadata)
}

/// One tensor `name` of `shape` (F32 zeros) and `metadata`: for the recording rules.
private func one(_ name: String, _ shape: [Int], dtype: String = "F32", metadata: [String: String] = [:]) -> [UInt8] {
    safetensors([(name, dtype, shape, [UInt8](repeating: 0, count: shape.reduce(1, *) * (dtype == "U8" ? 1 : 4)))], metadata: metadata)
}

/// A safetensors file as names, dtypes, shapes, bytes and metadata, to change and write back.
private struct Tensors {
    var metadata: [String: String]
    var tensors: [String: (dtype: String, shape: [Int], bytes: [UInt8])]

    init(_ bytes: [UInt8]) throws {
        let n = Int(bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        let header = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + n)])) as? [String: Any])
        metadata = header["__metadata__"] as? [String: String] ?? [:]
        tensors = [:]
        for (name, value) in header where name != "__metadata__" {
            let info = try XCTUnwrap(value as? [String: Any])
            let offsets = try XCTUnwrap(info["data_offsets"] as? [Int])
            tensors[name] = (try XCTUnwrap(info["dtype"] as? String), try XCTUnwrap(info["shape"] as? [Int]),
                             Array(bytes[(8 + n + offsets[0])..<(8 + n + offsets[1])]))
        }
    }

    var bytes: [UInt8] {
        safetensors(tensors.sorted { $0.key < $1.key }.map { ($0.key, $0.value.dtype, $0.value.shape, $0.value.bytes) }, metadata: metadata)
    }
}

final class ErrorCatalogueTests: XCTestCase {
    var sandbox: URL!

    override func setUpWithError() throws {
        sandbox = FileManager.default.temporaryDirectory.appendingPathComponent("calibc-errors-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: sandbox, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: sandbox)
    }

    private func write(_ fixtures: [Fixture]) throws {
        for f in fixtures {
            let url = sandbox.appendingPathComponent(f.name)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(f.bytes).write(to: url)
        }
    }

    private func read(_ name: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: sandbox.appendingPathComponent(name))) }

    func testEveryMessageIsDocumentedAndEveryEntryIsProduced() throws {
        let calibc = try builtCalibc()
        let entries = try Entry.catalogue()
        XCTAssertGreaterThan(entries.count, 200)
        for text in Entry.unreachable.keys { XCTAssertTrue(entries.contains { $0.text == text }, "unreachable entry not in the doc: \(text)") }
        var hit = Set<Int>()

        /// The entries `message` matches; fails when it matches none.
        func check(_ message: String, _ what: String) {
            let matching = entries.indices.filter { entries[$0].matches(message) }
            XCTAssertFalse(matching.isEmpty, "not in docs/errors.md: \(message)   [\(what)]")
            hit.formUnion(matching)
        }

        try write(fixtures())
        try write(try derivedFixtures(calibc))
        // Two at a time: each run is a process start (tens of milliseconds), and none writes.
        let all = cases()
        var results = [Result<(status: Int32, out: String, err: String), Error>?](repeating: nil, count: all.count)
        let lock = NSLock()
        DispatchQueue.concurrentPerform(iterations: 2) { worker in
            for i in stride(from: worker, to: all.count, by: 2) {
                let r = Result { try runProcess(calibc, all[i].args, in: sandbox) }
                lock.lock()
                results[i] = r
                lock.unlock()
            }
        }
        for (c, result) in zip(all, results) {
            let r = try result!.get()
            let line = r.err.split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let what = c.args.joined(separator: " ")
            XCTAssertEqual(r.status, c.status, "\(what): \(line)")
            let prefix = r.status == 1 ? "calibc: error: " : "calibc: "
            XCTAssertTrue(line.hasPrefix(prefix), "\(what): \(line)")
            let message = String(line.dropFirst(prefix.count))
            XCTAssertTrue(message.contains(c.fragment), "\(what): expected …\(c.fragment)…, got \(message)")
            XCTAssertEqual(r.out, "", "\(what): nothing on stdout")
            check(message, what)
        }
        for (what, message) in try libraryMessages() { check(message, what) }

        for (i, e) in entries.enumerated() where !hit.contains(i) && Entry.unreachable[e.text] == nil {
            XCTFail("no input gives the entry of \"\(e.section)\": \(e.text)")
        }
    }

    /// Messages of the table limits, reached through the readers with the limits lowered (a
    /// file at the real limits is tens of MB); calibc prints them after `<file>: <where>: `.
    private func libraryMessages() throws -> [(String, String)] {
        func masksMessage(_ text: String, _ change: (inout TableLimits) -> Void) -> String {
            var limits = TableLimits()
            change(&limits)
            do {
                _ = try Frontend.parse(Array(text.utf8), file: "m.json", limits: limits)
                return "accepted"
            } catch {
                return "\(error)"
            }
        }
        func irMessage(_ change: (inout ReaderLimits) -> Void) -> String {
            var limits = ReaderLimits()
            change(&limits)
            do {
                _ = try IRParser.parse(program, limits: limits)
                return "accepted"
            } catch {
                return "m.ir: \(error)"
            }
        }
        let two = masks(patterns: #"{"bits": {"rows": [[[0, 1]], [[0, 2]], [[0, 3]]]}, "more": {"rows": [[[1, 2]], [[1, 3]], [[0, 1], [2, 3]]]}}"#)
        return [
            ("ranges", masksMessage(two) { $0.ranges = 4 }),
            ("distinct ranges", masksMessage(two) { $0.distinctRanges = 4 }),
            ("patterns", masksMessage(two) { $0.patterns = 1 }),
            ("pattern rows", masksMessage(two) { $0.patternRows = 5 }),
            ("plans", irMessage { $0.plans = 1 }),
            ("plan rows", irMessage { $0.planRows = 7 }),
            ("plan ranges", irMessage { $0.ranges = 6 }),
        ]
    }

    private func fixtures() -> [Fixture] {
        var f: [Fixture] = [Fixture("masks.json", masks()), Fixture("program.ir", program)]
        // masks.json syntax
        for (name, text) in [
            ("end", ""), ("array", "[1 2]"), ("object", #"{"a": 1 "b": 2}"#), ("colon", #"{"a" 1}"#), ("key", "{a: 1}"),
            ("duplicate", #"{"k": 1, "k": 2}"#), ("literal", "tru"), ("zeros", "01"), ("fraction", "1."), ("exponent", "1e"),
            ("value", "[1, ]"), ("escape", #"["\x"]"#), ("u", #"["\u12g4"]"#), ("truncated-u", #"["\u12"#),
            ("surrogate", #"["\ud800"]"#), ("unterminated", #"["abc"#), ("after", "{} x"),
            ("nesting", String(repeating: "[", count: 65) + String(repeating: "]", count: 65)),
        ] {
            f.append(Fixture("syntax-\(name).json", text))
        }
        f.append(Fixture("syntax-control.json", [0x5b, 0x22, 0x61, 0x01, 0x22, 0x5d]))
        f.append(Fixture("syntax-utf8.json", [0x5b, 0x22, 0xff, 0x22, 0x5d]))
        // masks.json values
        let values: [(String, String)] = [
            ("kind", masks(["tokens": "\"x\""])), ("range", masks(["tokens": "1000000000000"])),
            ("unknown", masks(["leyers": "1"])), ("missing", masks(["model": nil])), ("format", masks(["format": "2"])),
            ("blocks", masks(["tokens": "20000", "block": "1"])),
            ("model", masks(["model": "\"" + String(repeating: "m", count: 4096) + "\""])),
            ("no-steps", masks(["timesteps": "[]"])), ("steps-order", masks(["timesteps": "[7, 0]"])),
            ("dispatch", masks(["layers": "4096", "heads": "4096", "timesteps": "[0]"])),
            ("layout", masks(["layout": #"{"frames": 1, "height": 1, "width": 1, "text_tokens": 1}"#])),
            ("position", masks(["layout": #"{"frames": 2, "height": 1, "width": 64, "text_tokens": 2, "text_position": "middle"}"#])),
            ("dense", masks(patterns: #"{"dense": {"rows": [[[0, 1]], [[0, 2]], [[0, 3]]]}}"#)),
            ("name", masks(patterns: #"{"a b": {"rows": [[[0, 1]], [[0, 2]], [[0, 3]]]}}"#)),
            ("neither", masks(patterns: pattern("{}"))),
            ("both", masks(patterns: pattern(#"{"rows": [], "bitmap": ""}"#))),
            ("rows", masks(patterns: pattern(#"{"rows": [[[0, 1]], [[0, 2]]]}"#))),
            ("range-shape", masks(patterns: pattern(#"{"rows": [[[0]], [[0, 2]], [[0, 3]]]}"#))),
            ("range-empty", masks(patterns: pattern(#"{"rows": [[[2, 2]], [[0, 2]], [[0, 3]]]}"#))),
            ("range-order", masks(patterns: pattern(#"{"rows": [[[1, 3], [0, 2]], [[0, 2]], [[0, 3]]]}"#))),
            ("range-end", masks(patterns: pattern(#"{"rows": [[[0, 4]], [[0, 2]], [[0, 3]]]}"#))),
            ("row-empty", masks(patterns: pattern(#"{"rows": [[[0, 1]], [], [[0, 3]]]}"#))),
            ("base64", masks(patterns: pattern(#"{"bitmap": "!!"}"#))),
            ("bitmap-size", masks(patterns: pattern(#"{"bitmap": "AAAAAA=="}"#))),
            ("bitmap-padding", masks(patterns: pattern(#"{"bitmap": "AQEI"}"#))),
            ("reuse-pair", masks(patterns: pattern(#"{"rows": [[[0, 1]], [], [[0, 3]]], "reuse": [[1]]}"#))),
            ("reuse-self", masks(patterns: pattern(#"{"rows": [[[0, 1]], [], [[0, 3]]], "reuse": [[1, 1]]}"#))),
            ("reuse-twice", masks(patterns: pattern(#"{"rows": [[[0, 1]], [], [[0, 3]]], "reuse": [[1, 0], [1, 0]]}"#))),
            ("reuse-kept", masks(patterns: pattern(#"{"rows": [[[0, 1]], [], [[0, 3]]], "reuse": [[2, 0]]}"#))),
            ("reuse-partial", masks(patterns: pattern(#"{"rows": [[[0, 1]], [], [[0, 3]]], "reuse": [[1, 2]]}"#))),
            ("reuse-cycle", masks(patterns: pattern(#"{"rows": [[], [], [[0, 3]]], "reuse": [[0, 1], [1, 0]]}"#))),
            ("unknown-pattern", masks(assignments: #"[{"steps": "*", "layers": "*", "heads": "*", "pattern": "nope"}]"#)),
            ("no-step", masks(assignments: #"[{"steps": 8, "layers": "*", "heads": "*", "pattern": "bits"}]"#)),
            ("selector", masks(assignments: #"[{"steps": "1-", "layers": "*", "heads": "*", "pattern": "bits"}]"#)),
            ("selects-none", masks(assignments: #"[{"steps": "2-5", "layers": "*", "heads": "*", "pattern": "bits"}]"#)),
            ("assigned-twice", masks(assignments: #"[{"steps": "*", "layers": "*", "heads": "*", "pattern": "bits"}, {"steps": 0, "layers": 0, "heads": 1, "pattern": "bits"}]"#)),
            ("unassigned", masks(assignments: #"[{"steps": "*", "layers": "*", "heads": 0, "pattern": "bits"}]"#)),
            ("escaped-key", masks(["le\\u001byers": "1"])),
            ("mt-count", masks(["model_timesteps": "[1]"])), ("mt-repeat", masks(["model_timesteps": "[5, 5.0]"])),
            ("mt-float", masks(["model_timesteps": "[1e39, 5]"])), ("mt-kind", masks(["model_timesteps": "[\"x\", 5]"])),
        ]
        for (name, text) in values { f.append(Fixture("masks-\(name).json", text)) }
        // IR text
        let long = String(repeating: "m", count: 4096)
        let irs: [(String, String)] = [
            ("semicolon", ir(("[3, 4)", "[3; 4)"))), ("nul", ir(("order [1, 0, 2]", "order [1, 0, 2] \u{0}"))),
            ("brace", ir(("  chunks [0, 2, 3]\n", "  chunks [0, 2, 3]\n  order [1, 0, 2]\n"))),
            ("truncated", String(program.dropLast(3))), ("after", program + "x"),
            ("unterminated", ir(("hash \"abc\"", "hash \"abc"))), ("escape", ir(("hash \"abc\"", "hash \"ab\\tc\""))),
            ("model", ir(("\"m\" hash", "\"\(long)\" hash"))), ("hash", ir(("hash \"abc\"", "hash \"ab-c\""))),
            ("tokens", ir(("tokens 250", "tokens 99999999999999999999999"))), ("tokens-word", ir(("tokens 250", "tokens x"))),
            ("blocks", ir(("tokens 250", "tokens 268435456"))), ("steps-order", ir(("steps [5]", "steps [5, 5]"))),
            ("no-steps", ir(("steps [5]", "steps []"))),
            ("dispatch", ir(("layers 1 heads 3 steps [5]", "layers 4096 heads 4096 steps [0, 1]"))),
            ("twice", ir(("plan @b {", "plan @a {"))), ("rows", ir(("  q3: reuse q1\n", ""))),
            ("extra-row", ir(("  q3: reuse q1\n", "  q3: reuse q1\n  q4: compute [0, 1)\n"))),
            ("name", ir(("plan @b {", "plan @\u{e9} {"))), ("row", ir(("q2: compute [0, 4)\n  q3: reuse", "q7: compute [0, 4)\n  q3: reuse"))),
            ("no-span", ir(("q1: compute [1, 2)", "q1: compute"))), ("span-end", ir(("[0, 4)\n  q3: reuse", "[0, 5)\n  q3: reuse"))),
            ("span-empty", ir(("[1, 2)", "[2, 2)"))), ("span-order", ir(("[0, 2) [3, 4)", "[0, 2) [1, 4)"))),
            ("source", ir(("q3: reuse q1", "q3: reuse 1"))), ("source-range", ir(("q3: reuse q1", "q3: reuse q4"))),
            ("source-self", ir(("q3: reuse q1", "q3: reuse q3"))),
            ("source-partial", ir(("q1: compute [1, 2)", "q1: reuse q3"), ("q3: reuse q1", "q3: compute [0, 1)"))),
            ("cycle", ir(("q0: compute [0, 2) [3, 4)", "q0: reuse q1"), ("q1: compute [1, 2)", "q1: reuse q0"))),
            ("order-range", ir(("order [1, 0, 2]", "order [1, 0, 4]"))), ("order-reuse", ir(("order [1, 0, 2]", "order [1, 0, 3]"))),
            ("order-twice", ir(("order [1, 0, 2]", "order [1, 0, 1]"))), ("order-short", ir(("order [1, 0, 2]", "order [1, 0]"))),
            ("chunks-alone", ir(("  order [1, 0, 2]\n", ""))), ("chunks-start", ir(("chunks [0, 2, 3]", "chunks [1, 2, 3]"))),
            ("chunks-rise", ir(("chunks [0, 2, 3]", "chunks [0, 2, 2, 3]"))), ("chunks-range", ir(("chunks [0, 2, 3]", "chunks [0, 2, 4]"))),
            ("chunks-end", ir(("chunks [0, 2, 3]", "chunks [0, 2]"))),
            ("step", ir(("step 5 layer 0 head 2", "step 6 layer 0 head 2"))), ("layer", ir(("layer 0 head 2", "layer 1 head 2"))),
            ("head", ir(("head 2 ->", "head 3 ->"))), ("last-head", ir(("head 0..1", "head 1..0"))),
            ("plan", ir(("-> @b", "-> @c"))), ("dispatched-twice", ir(("head 0..1", "head 0..2"))),
            ("no-plan", ir(("head 0..1 ->", "head 0 ->"))),
            ("mt-word", ir(("steps [5]", "steps [5]\nmodel_timesteps [x]"))),
            ("mt-float", ir(("steps [5]", "steps [5]\nmodel_timesteps [1e39]"))),
            ("mt-more", ir(("steps [5]", "steps [5]\nmodel_timesteps [1, 2]"))),
            ("mt-count", ir(("steps [5]", "steps [5]\nmodel_timesteps []"))),
            ("mt-repeat", ir(("steps [5]", "steps [5, 6]\nmodel_timesteps [2, 2.0]"))),
            ("text-tokens", ir(("steps [5]", "steps [5]\ntext 250 last"))),
            ("text-where", ir(("steps [5]", "steps [5]\ntext 5 middle"))),
        ]
        for (name, text) in irs { f.append(Fixture("ir-\(name).ir", text)) }
        // Recordings
        let zero4 = [UInt8](repeating: 0, count: 4)
        let records: [(String, [UInt8])] = [
            ("short", [1, 2, 3]), ("header-length", [0xe8, 0x03, 0, 0, 0, 0, 0, 0] + Array("{}".utf8)),
            ("json", safetensors([], header: "[1 2]")), ("object", safetensors([], header: "[]")),
            ("outside", safetensors([], header: #"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 8]}}"#, data: zero4)),
            ("offsets", safetensors([], header: #"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}"#, data: zero4)),
            ("needs", safetensors([], header: #"{"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 4]}}"#, data: zero4)),
            ("negative", safetensors([], header: #"{"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}"#, data: zero4)),
            ("huge", safetensors([], header: #"{"a": {"dtype": "BF16", "shape": [4294967296, 1073741824, 1], "data_offsets": [0, 0]}}"#, data: [])),
            ("overlap", safetensors([], header: #"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}"#,
                                    data: [UInt8](repeating: 0, count: 12))),
            ("dtype", safetensors([], header: #"{"a": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}}"#, data: zero4 + zero4)),
            ("no-dtype", safetensors([], header: #"{"a": {"shape": [1], "data_offsets": [0, 4]}}"#, data: zero4)),
            ("no-shape", safetensors([], header: #"{"a": {"dtype": "F32", "data_offsets": [0, 4]}}"#, data: zero4)),
            ("not-object", safetensors([], header: #"{"a": 1}"#, data: [])),
            ("metadata", safetensors([], header: #"{"__metadata__": 1}"#, data: [])),
            ("metadata-value", safetensors([], header: #"{"__metadata__": {"k": 1}}"#, data: [])),
            ("name", one("step0.layer0.query", [1, 1, 1])), ("none", safetensors([])), ("u8", one("step0.layer0.q", [1, 1, 1], dtype: "U8")),
            ("shapes", safetensors([("step0.layer0.k", "F32", [4, 2, 8], [UInt8](repeating: 0, count: 256)),
                                    ("step0.layer0.q", "F32", [2, 4, 8], [UInt8](repeating: 0, count: 256))])),
            ("dims", one("step0.layer0.q", [2, 4])),
            ("lacks", one("step0.layer0.q", [1, 1, 1])),
            ("values", safetensors(["step0.layer0.k", "step0.layer0.q", "step0.layer1.k", "step0.layer1.q", "step0.layer1.v"].map { ($0, "F32", [1, 1, 1], zero4) })),
            ("nan", safetensors([("step0.layer0.k", "F32", [1, 2, 2], f32([0, 0, 0, 0])), ("step0.layer0.q", "F32", [1, 2, 2], f32([0, 0, 0, .nan]))])),
            ("layout", recording(metadata: ["frames": "1", "height": "1", "width": "3"])),
            ("scale", recording(metadata: ["scale": "x"])),
            ("layout-range", recording(metadata: ["frames": "0", "height": "1", "width": "64"])),
            ("step", one("step2147483648.layer0.k", [1, 1, 1])), ("layer", one("step0.layer4096.k", [1, 1, 1])),
            ("heads", safetensors(["step0.layer0.k", "step0.layer0.q"].map { ($0, "F32", [4097, 1, 1], [UInt8](repeating: 0, count: 4 * 4097)) })),
            ("head-dim", safetensors(["step0.layer0.k", "step0.layer0.q"].map { ($0, "F32", [1, 1, 1024], [UInt8](repeating: 0, count: 4096)) })),
            ("model", recording(metadata: ["model": String(repeating: "m", count: 4096)])),
            ("mass-tokens", one("step0.layer0.mass", [1, 1, 1], metadata: ["mass_block": "1024", "tokens": "268435457", "head_dim": "8"])),
            ("mass-block", one("step0.layer0.mass", [1, 1, 1], metadata: ["mass_block": "4096", "tokens": "8", "head_dim": "8"])),
            ("mass-needs", one("step0.layer0.mass", [1, 1, 1])),
            ("mass-only", safetensors([("step0.layer0.k", "F32", [1, 1, 1], zero4), ("step0.layer0.mass", "F32", [1, 1, 1], zero4),
                                       ("step0.layer0.q", "F32", [1, 1, 1], zero4)])),
            ("mass-shape", one("step0.layer0.mass", [1, 2, 2], metadata: ["mass_block": "16", "tokens": "384", "head_dim": "8"])),
            ("mass", one("step0.layer0.mass", [2, 4, 4], metadata: ["mass_block": "16", "tokens": "64", "head_dim": "4"])),
            ("long", safetensors(["step0.layer0.k", "step0.layer0.q"].map { ($0, "F32", [1, 16385, 1], [UInt8](repeating: 0, count: 4 * 16385)) })),
            ("rec", recording()), ("other", recording(seed: 2)), ("two-heads", recording(heads: 2)),
            ("timesteps", recording(metadata: ["model_timesteps": "1"])),
            ("timesteps-repeat", recording(metadata: ["model_timesteps": "1,1.0"])),
            ("timesteps-a", recording(metadata: ["model_timesteps": "999,500"])),
            ("timesteps-b", recording(seed: 2, metadata: ["model_timesteps": "999,400"])),
            ("text-none", recording(metadata: ["frames": "1", "height": "1", "width": "64", "text_tokens": "0", "text_valid": "3"])),
            ("text-first", recording(metadata: ["frames": "1", "height": "1", "width": "48", "text_tokens": "16",
                                                "text_position": "first", "text_valid": "3"])),
            ("text-valid", recording(metadata: ["frames": "1", "height": "1", "width": "48", "text_tokens": "16", "text_valid": "x"])),
            ("text-more", recording(metadata: ["text_tokens": "300", "text_valid": "3"])),
            ("text-nothing", recording(metadata: ["text_tokens": "64", "text_valid": "0"])),
        ]
        for (name, bytes) in records { f.append(Fixture("rec-\(name).safetensors", bytes)) }
        // Steps × layers × heads past 10^7: 2442 layers of 4096 heads, each (q, k) 4096 × 1 × 1.
        let layers = (0..<2442).flatMap { l in ["k", "q"].map { "\"step0.layer\(l).\($0)\"" } }
        var header = "{" + layers.enumerated().map { i, name in
            "\(name): {\"dtype\": \"F16\", \"shape\": [4096, 1, 1], \"data_offsets\": [\(i * 8192), \((i + 1) * 8192)]}"
        }.joined(separator: ", ") + "}"
        header += String(repeating: " ", count: (8 - header.utf8.count % 8) % 8)
        f.append(Fixture("rec-dispatch.safetensors.header", header))
        // Output paths
        f.append(Fixture("in/masks.json", masks()))
        f.append(Fixture("art-grid.json", masks(["layout": #"{"frames": 2, "height": 1, "width": 65}"#])))
        f.append(Fixture("hd72.json", masks(["head_dim": "72"])))
        f.append(Fixture("art-heads.json", masks(["heads": "1"], assignments: #"[{"steps": "*", "layers": "*", "heads": "*", "pattern": "dense"}]"#)))
        f.append(Fixture("theirs/notes.txt", "mine"))
        f.append(Fixture("unmarked/calib_kernels.c", "// from before"))
        f.append(Fixture("afile", "x"))
        f.append(Fixture("adir/keep", "x"))
        return f
    }

    /// Files made by calibc itself (calibration states) or too large to hold in memory here,
    /// and the states' hostile edits.
    private func derivedFixtures(_ calibc: String) throws -> [Fixture] {
        // A file holding steps × layers × heads past 10^7 holds 40 MB of tensors: made sparse.
        let header = try read("rec-dispatch.safetensors.header")
        let path = sandbox.appendingPathComponent("rec-dispatch.safetensors").path
        FileManager.default.createFile(atPath: path, contents: Data(withUnsafeBytes(of: UInt64(header.count).littleEndian, Array.init) + header))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: UInt64(8 + header.count + 2442 * 2 * 8192))
        try handle.close()
        // Tokens past 2^28: one head of 2^28 + 1 tokens × 1 dim, sparse too.
        let tokensHeader = Array(#"{"step0.layer0.k": {"dtype": "F16", "shape": [1, 268435457, 1], "data_offsets": [0, 536870914]}, "step0.layer0.q": {"dtype": "F16", "shape": [1, 268435457, 1], "data_offsets": [536870914, 1073741828]}}    "#.utf8)
        let tokensPath = sandbox.appendingPathComponent("rec-tokens.safetensors").path
        FileManager.default.createFile(atPath: tokensPath, contents: Data(withUnsafeBytes(of: UInt64(tokensHeader.count).littleEndian, Array.init) + tokensHeader))
        let tokens = try FileHandle(forWritingTo: URL(fileURLWithPath: tokensPath))
        try tokens.truncate(atOffset: UInt64(8 + tokensHeader.count + 1_073_741_828))
        try tokens.close()

        for (args, name) in [(["--block", "16"], "a"), (["--block", "16", "--mass", "0.9"], "mass"), (["--block", "16", "--reuse-tolerance", "0.1"], "tolerance"),
                             (["--block", "16", "--stability-drop", "0.1"], "drop"), (["--block", "32"], "block"),
                             (["--block", "16", "--reuse-tolerance", "0"], "noreuse")] {
            let r = try runProcess(calibc, ["calibrate", "rec-rec.safetensors"] + args + ["--state-out", "\(name).safetensors"], in: sandbox)
            XCTAssertEqual(r.status, 0, r.err)
        }
        for name in ["a", "b"] {
            let r = try runProcess(calibc, ["calibrate", "rec-timesteps-\(name).safetensors", "--block", "16", "--state-out", "ts-\(name).safetensors"], in: sandbox)
            XCTAssertEqual(r.status, 0, r.err)
        }
        let a = try Tensors(try read("a.safetensors"))
        var out: [Fixture] = []
        func edit(_ name: String, _ change: (inout Tensors) -> Void) {
            var t = a
            change(&t)
            out.append(Fixture("state-\(name).safetensors", t.bytes))
        }
        func bytes(_ t: inout Tensors, _ name: String, _ change: (inout [UInt8]) -> Void) {
            change(&t.tensors[name]!.bytes)
        }
        edit("format1") { $0.metadata["format"] = "calibc-state/1" }
        edit("format2") { $0.metadata["format"] = "calibc-state/2" }
        edit("inputs") { $0.metadata["inputs"] = "0" }
        edit("steps") { $0.metadata["steps"] = "0,x" }
        edit("steps-order") { $0.metadata["steps"] = "9,0" }
        edit("scale") { $0.metadata["scale"] = "-1" }
        edit("selection") { $0.metadata["selection"] = nil }
        edit("tolerance") { $0.metadata["reuse_tolerance"] = "2" }
        edit("step") { $0.metadata["steps"] = "0,2147483648" }
        edit("dispatch") { $0.metadata["layers"] = "4096"; $0.metadata["heads"] = "4096" }
        edit("blocks") { $0.metadata["tokens"] = "1000000"; $0.metadata["block"] = "1" }
        edit("model") { $0.metadata["model"] = String(repeating: "m", count: 4096) }
        edit("layout") { $0.metadata.merge(["frames": "1", "height": "1", "width": "1", "text_tokens": "1"]) { $1 } }
        edit("layout-range") { $0.metadata.merge(["frames": "0", "height": "1", "width": "64", "text_tokens": "0"]) { $1 } }
        edit("missing") { $0.tensors["step0.layer0.tiles"] = nil }
        edit("tiles-dtype") { $0.tensors["step0.layer0.tiles"]!.dtype = "F16"; $0.tensors["step0.layer0.tiles"]!.bytes += [UInt8](repeating: 0, count: 12) }
        edit("mass-shape") { $0.tensors["step0.layer0.owner_mass"]!.shape[0] += 1; $0.tensors["step0.layer0.owner_mass"]!.bytes += [0, 0, 0, 0] }
        edit("code") { bytes(&$0, "step0.layer0.tiles") { $0[0] = 243 } }
        edit("code-beyond") { bytes(&$0, "step0.layer0.tiles") { $0[3] = 2 * 3 } }  // 16 tiles: 3 bytes and one code of the 4th
        edit("owners") { t in
            let n = t.tensors["step0.layer0.owner"]!.shape[0]
            t.tensors["step0.layer0.owner"] = ("U16", [n - 1], Array(t.tensors["step0.layer0.owner"]!.bytes.dropLast(2)))
        }
        edit("owner") { bytes(&$0, "step0.layer0.owner") { $0[0] = 2 } }
        edit("owner-mass") { bytes(&$0, "step9.layer0.owner_mass") { $0.replaceSubrange(0..<4, with: [0, 0, 0xc0, 0x7f]) } }
        edit("retired") { bytes(&$0, "step0.layer0.retired_drop") { $0.replaceSubrange(4..<8, with: [0, 0, 0, 0x3f]) } }
        edit("reuse-beyond") { bytes(&$0, "step9.layer0.reuse") { $0[0] |= 1 << 6 } }  // 6 pairs
        edit("reuse-off") { $0.metadata["reuse_tolerance"] = "0.0"; bytes(&$0, "step0.layer0.reuse") { $0[0] |= 1 } }
        edit("scale-other") { $0.metadata["scale"] = "0.25" }
        edit("model-other") { $0.metadata["model"] = "m2" }
        edit("inputs-full") { $0.metadata["inputs"] = "65535" }
        return out
    }

    private func cases() -> [Case] {
        var c: [Case] = []
        func add(_ args: [String], _ status: Int32, _ fragment: String) { c.append(Case(args: args, status: status, fragment: fragment)) }
        // masks.json
        add(["stats", "nothing.json"], 1, "cannot read the file")
        for (name, fragment) in [
            ("end", "unexpected end of input, expected a value"), ("array", "expected ',' or ']'"), ("object", "expected ',' or '}'"),
            ("colon", "expected ':' after a key"), ("key", "expected a string key"), ("duplicate", "duplicate key \"k\""),
            ("literal", "invalid literal, expected 'true'"), ("zeros", "leading zeros"), ("fraction", "digits after '.'"),
            ("exponent", "digits in the exponent"), ("value", "expected a value"), ("control", "control character in string"),
            ("escape", "invalid escape in string"), ("u", "invalid \\u escape"), ("truncated-u", "truncated \\u escape"),
            ("surrogate", "unpaired surrogate"), ("unterminated", "unterminated string"), ("utf8", "not valid UTF-8"),
            ("after", "unexpected text after the top-level value"), ("nesting", "nesting deeper than 64 levels"),
        ] {
            add(["stats", "syntax-\(name).json"], 1, fragment)
        }
        for (name, fragment) in [
            ("kind", "expected an integer, found a string"), ("range", "found 1000000000000"), ("unknown", "unknown field \"leyers\""),
            ("missing", "missing required field \"model\""), ("format", "unsupported format"), ("blocks", "20000 blocks per side"),
            ("model", "4096 bytes of UTF-8"), ("no-steps", "at least one timestep"), ("steps-order", "(0 after 7)"),
            ("dispatch", "exceeds 10000000"), ("layout", "= 2, but tokens is 130"), ("position", "\"first\" or \"last\""),
            ("dense", "built in"), ("name", "pattern names use"), ("neither", "expected \"rows\" or \"bitmap\""), ("both", "not both"),
            ("rows", "expected 3 rows"), ("range-shape", "expected a key-block range"), ("range-empty", "empty range [2, 2)"),
            ("range-order", "overlaps or precedes"), ("range-end", "0...3, found 4"), ("row-empty", "keeps no key block"),
            ("base64", "expected base64 text"), ("bitmap-size", "found 4 bytes"), ("bitmap-padding", "padding bit 3"),
            ("reuse-pair", "[target, source]"), ("reuse-self", "cannot reuse itself"), ("reuse-twice", "already reuses"),
            ("reuse-kept", "must be empty"), ("reuse-partial", "partial last block"), ("reuse-cycle", "reuse cycle"),
            ("unknown-pattern", "unknown pattern \"nope\""), ("no-step", "timestep 8 does not exist"), ("selector", "found \"1-\""),
            ("selects-none", "selects no timestep"), ("assigned-twice", "already assigned pattern \"bits\""),
            ("unassigned", "has no pattern assigned"), ("escaped-key", "unknown field \"leU+001Byers\""),
            ("mt-count", "timesteps (2), found 1"), ("mt-repeat", "5.0 is the model timestep of two steps"),
            ("mt-float", "a C float holds, found 1e+39"), ("mt-kind", "expected a number, found a string"),
        ] {
            add(["stats", "masks-\(name).json"], 1, fragment)
        }
        // IR text
        add(["opt", "nothing.ir", "--passes=dedupe"], 1, "nothing.ir: cannot read the file")
        for (name, fragment) in [
            ("semicolon", "unexpected character ';'"), ("nul", "unexpected character U+0000"), ("brace", "expected '}'"),
            ("truncated", "found the end of the file"), ("after", "after the dispatch table"), ("unterminated", "unterminated string"),
            ("escape", "unknown escape '\\t'"), ("model", "4096 bytes of UTF-8"), ("hash", "the source hash"),
            ("tokens", "found 99999999999999999999999"), ("tokens-word", "shape tokens: expected an integer"),
            ("blocks", "blocks per side"), ("steps-order", "(5 after 5)"), ("no-steps", "at least one step"),
            ("dispatch", "(step, layer, head) supported"), ("twice", "plan @a defined twice"), ("rows", "has 3 rows, expected 4"),
            ("extra-row", "has 4 query blocks"), ("name", "found U+00E9"), ("row", "expected row q2"),
            ("no-span", "at least one span"), ("span-end", "q2 span end"), ("span-empty", "is empty"),
            ("span-order", "overlaps or precedes"), ("source", "expected a source row"), ("source-range", "q3 reuses q4"),
            ("source-self", "q3 cannot reuse itself"), ("source-partial", "the partial last block"), ("cycle", "reuse cycle"),
            ("order-range", "order: expected an integer in 0...3"), ("order-reuse", "order lists compute rows"),
            ("order-twice", "listed twice"), ("order-short", "order lists 2 of the 3"), ("chunks-alone", "chunks without an order"),
            ("chunks-start", "chunks must start at 0"), ("chunks-rise", "(2 after 2)"), ("chunks-range", "chunks: expected an integer"),
            ("chunks-end", "found last 2"), ("step", "step 6 is not in the shape"), ("layer", "layer: expected"),
            ("head", "head: expected"), ("last-head", "the last head"), ("plan", "unknown plan @c"),
            ("dispatched-twice", "dispatched twice"), ("no-plan", "no plan for entry"),
            ("mt-word", "shape model_timesteps: expected a number"), ("mt-float", "found 1e39"),
            ("mt-more", "more than the 1 steps"), ("mt-count", "0 timesteps for 1 steps"),
            ("mt-repeat", "2.0 is the timestep of two steps"), ("text-tokens", "leave no video tokens"),
            ("text-where", "expected first or last"),
        ] {
            add(["opt", "ir-\(name).ir", "--passes=dedupe"], 1, fragment)
        }
        // Recordings
        add(["calibrate", "nothing.safetensors", "-o", "m.json"], 1, "nothing.safetensors: cannot read the file")
        for (name, fragment) in [
            ("short", "shorter than the 8-byte header length"), ("header-length", "runs past the end"), ("json", "header is not valid JSON"),
            ("object", "header must be a JSON object"), ("outside", "lie outside"), ("offsets", "must be [begin, end]"),
            ("needs", "needs 12 bytes"), ("negative", "non-negative integers"), ("huge", "needs more than"), ("overlap", "overlap"),
            ("dtype", "unsupported dtype I64"), ("no-dtype", "missing dtype"), ("no-shape", "missing shape"),
            ("not-object", "expected an object"), ("metadata", "object of strings"), ("metadata-value", "__metadata__.k must be"),
            ("name", "unexpected tensor step0.layer0.query"), ("none", "holds no tensors"), ("u8", "is U8"),
            ("shapes", "but other tensors have"), ("dims", "three positive dimensions"), ("lacks", "lacks its q or k"),
            ("values", "have a v tensor"), ("nan", "holds nan"), ("layout", "but tensors hold 64 tokens"), ("scale", "scale \"x\""),
            ("layout-range", "must be integers in 1...100000"), ("step", "step 2147483648 is more"), ("layer", "layer 4096 is beyond"),
            ("heads", "heads 4097"), ("head-dim", "head_dim 1024"), ("dispatch", "steps × layers × heads"), ("tokens", "tokens 268435457"),
            ("model", "metadata model is 4096 bytes"), ("mass-tokens", "metadata tokens 268435457"),
            ("mass-block", "metadata mass_block 4096"), ("mass-needs", "needs metadata mass_block"), ("mass-only", "holds only .mass"),
            ("mass-shape", "mass tensors must all be"), ("timesteps", "one finite number per step (2)"),
            ("timesteps-repeat", "1.0 is the timestep of two steps"), ("text-none", "but text_tokens is \"0\""),
            ("text-first", "but text_position is first"), ("text-valid", "text_valid \"x\" must be"),
            ("text-more", "text_tokens 300 is more"), ("text-nothing", "leaves no valid token"),
        ] {
            add(["calibrate", "rec-\(name).safetensors", "-o", "m.json"], 1, fragment)
        }
        add(["calibrate", "rec-mass.safetensors", "--block", "8", "-o", "m.json"], 1, "calibrate with --block 16")
        add(["calibrate", "rec-mass.safetensors", "--block", "16", "--sample-rows", "2", "-o", "m.json"], 1, "already reduced")
        add(["calibrate", "rec-long.safetensors", "--block", "1", "-o", "m.json"], 1, "give a larger --block")
        add(["calibrate", "rec-rec.safetensors", "--mass-schedule", "exp:0.84,0.99,6.0,5", "-o", "m.json"], 1, "T = 5")
        add(["calibrate", "rec-rec.safetensors", "--holdout", "rec-two-heads.safetensors", "-o", "m.json"], 1, "differ from the calibration inputs")
        add(["calibrate", "rec-timesteps-a.safetensors", "rec-timesteps-b.safetensors", "-o", "m.json"], 1, "model_timesteps differ from")
        add(["calibrate", "--merge", "ts-a.safetensors", "ts-b.safetensors", "-o", "m.json"], 1, "model timesteps 999.0,400.0 differs")
        add(["calibrate"] + Array(repeating: "rec-mass.safetensors", count: 65_536) + ["--block", "16", "-o", "m.json"], 1, "65536 calibration recordings")
        // States
        add(["calibrate", "--merge", "rec-rec.safetensors", "-o", "m.json"], 1, "not a calibration state")
        for (name, fragment) in [
            ("format1", "calibc-state/1"), ("format2", "calibc-state/2"), ("inputs", "inputs must be an integer"),
            ("steps", "must list step indices"), ("steps-order", "strictly ascending"), ("scale", "scale must be"),
            ("selection", "selection is missing"), ("tolerance", "reuse_tolerance must be"), ("step", "step 2147483648"),
            ("dispatch", "33554432"), ("blocks", "1000000 blocks per side"), ("model", "4096 bytes"), ("layout", "but tokens is 64"),
            ("layout-range", "integers in 1...100000"), ("missing", "missing tensor"), ("tiles-dtype", "is F16"),
            ("mass-shape", "owner_mass is F32"), ("code", "holds 243"), ("code-beyond", "beyond its 16 tiles"),
            ("owners", "owners, expected"), ("owner", "expected an input index below 1"), ("owner-mass", "holds nan at 0"),
            ("retired", "retired_drop holds 0.5"), ("reuse-beyond", "beyond its 6 pairs"), ("reuse-off", "reuse off"),
        ] {
            add(["calibrate", "--merge", "state-\(name).safetensors", "-o", "m.json"], 1, fragment)
        }
        for (other, fragment) in [("mass", "selection mass 0.9 differs"), ("tolerance", "reuse tolerance 0.1 differs"),
                                  ("drop", "stability drop 0.1 differs"), ("block", "shape (steps"), ("state-scale-other", "scale 0.25 differs"),
                                  ("state-model-other", "model m2 differs"), ("state-inputs-full", "merging gives 65536 inputs")] {
            add(["calibrate", "--merge", "a.safetensors", "\(other).safetensors", "-o", "m.json"], 1, fragment)
        }
        add(["calibrate", "--merge", "a.safetensors", "--reuse-tolerance", "0.1", "-o", "m.json"], 1, "--reuse-tolerance 0.1 differs")
        add(["calibrate", "--merge", "a.safetensors", "--stability-drop", "0.1", "-o", "m.json"], 1, "--stability-drop 0.1 differs")
        // Output paths
        add(["compile", "masks.json", "masks.json", "-o", "art"], 1, "both hold plans for 130 tokens")
        add(["compile", "art-grid.json", "art-grid.json", "-o", "art"], 1, "both hold plans for the grid 2 × 1 × 65")
        add(["compile", "masks.json", "art-heads.json", "-o", "art"], 1, "an artifact holds one model's shapes")
        add(["compile", "hd72.json", "--target", "cuda", "-o", "k"], 1, "the CUDA target takes a multiple of 16")
        add(["compile", "masks.json", "hd72.json", "--target", "cuda", "-o", "art"], 1, "at most 256, found 72")
        add(["compile", "masks.json", "-o", ""], 1, "the output path is empty")
        add(["compile", "masks.json", "-o", "."], 1, "is the current directory")
        add(["compile", "in/masks.json", "-o", "in"], 1, "holds the input")
        add(["compile", "masks.json", "-o", "theirs"], 1, "notes.txt")
        add(["compile", "masks.json", "-o", "unmarked"], 1, "pass --force")
        add(["compile", "masks.json", "-o", "afile"], 1, "exists and is not a directory")
        add(["calibrate", "rec-rec.safetensors", "-o", "rec-rec.safetensors"], 1, "is also an input")
        add(["calibrate", "rec-rec.safetensors", "-o", "adir"], 1, "is a directory")
        add(["calibrate", "rec-rec.safetensors", "-o", "/dev/null"], 1, "not a regular file")
        add(["calibrate", "rec-rec.safetensors", "-o", "nowhere/m.json"], 1, "does not exist")
        add(["calibrate", "rec-rec.safetensors", "-o", "/proc/sys/calibc.json"], 1, "cannot write into /proc/sys")
        add(["draw", "masks.json", "--overview", "-o", "/proc/calibc.png"], 1, "could not write the output")
        add(["calibrate", "rec-rec.safetensors", "--block", "16", "--state-out", "/proc/calibc.safetensors"], 1, "could not write the output")
        // Command line
        add([], 2, "no command given")
        add(["comp"], 2, "unknown command comp")
        add(["compile", "masks.json", "--threads", "2"], 2, "unknown option --threads")
        add(["compile", "masks.json", "-o"], 2, "-o needs a value")
        add(["compile", "masks.json", "-o", "a", "-o", "b"], 2, "-o given twice")
        add(["compile", "masks.json", "-o", "k", "--force=yes"], 2, "--force takes no value")
        add(["stats"], 2, "missing <masks.json>")
        add(["stats", "masks.json", "b.json"], 2, "unexpected argument b.json")
        add(["compile", "masks.json"], 2, "missing -o <dir>")
        add(["draw", "masks.json", "-o", "x.png", "--overview", "--size", "5"], 2, "--size expects an integer in 16…8192, got 5")
        add(["calibrate", "rec-rec.safetensors", "-o", "m.json", "--block", "2048"], 2, "--block expects an integer in 1…1024")
        add(["calibrate", "rec-rec.safetensors", "-o", "m.json", "--sample-rows", "100"], 2, "--sample-rows expects an integer in 1…64")
        add(["stats", "masks.json", "--merge-tolerance", "2"], 2, "--merge-tolerance expects a number in [0, 1], got 2")
        add(["calibrate", "rec-rec.safetensors", "-o", "m.json", "--mass", "1.5"], 2, "--mass expects a number in [0, 1], got 1.5")
        add(["calibrate", "rec-rec.safetensors", "-o", "m.json", "--mass", "0"], 2, "--mass expects a number in (0, 1], got 0")
        add(["compile", "masks.json", "-o", "k", "--target", "gpu"], 2, "unknown --target gpu")
        add(["opt", "program.ir", "--passes=fold"], 2, "unknown pass fold")
        add(["ir", "masks.json", "--print-after", "chunk", "--target", "cuda"], 2, "pass chunk does not run here")
        add(["draw", "masks.json", "-o", "x.png"], 2, "give --show <step>,<layer>,<head> or --overview")
        add(["stats", "masks.json", "--show", "1,2"], 2, "(three integers), got \"1,2\"")
        add(["stats", "masks.json", "--show", "99,0,0"], 2, "no timestep 99 (the masks have 0, 7)")
        add(["stats", "masks.json", "--show", "7,5,0"], 2, "no layer 5 (the masks have layers 0...0)")
        add(["draw", "masks.json", "-o", "x.png", "--show", "7,0,9"], 2, "no head 9 (the masks have heads 0...1)")
        add(["synth", "-o", "s", "--shape", "big"], 2, "unknown --shape big")
        add(["synth", "-o", "s", "--steps", "5,1"], 2, "--steps expects strictly ascending")
        add(["synth", "-o", "s.json", "--masks", "huge"], 2, "unknown --masks preset huge")
        add(["calibrate", "rec-rec.safetensors"], 2, "missing -o <masks.json> (or --state-out <state>)")
        add(["calibrate", "-o", "m.json"], 2, "missing <recording.safetensors>")
        add(["calibrate", "--merge", "-o", "m.json"], 2, "missing <state.safetensors>")
        add(["calibrate", "rec-rec.safetensors", "--state-out", "s.safetensors", "--report", "r.html"], 2, "--report needs -o")
        add(["calibrate", "rec-rec.safetensors", "-o", "m.json", "--mass", "0.9", "--density", "0.2"], 2, "give one of")
        add(["calibrate", "--merge", "a.safetensors", "--sample-rows", "2", "-o", "m.json"], 2, "--sample-rows is fixed")
        add(["calibrate", "--merge", "a.safetensors", "--mass", "0.9", "-o", "m.json"], 2, "--mass is fixed")
        add(["calibrate", "rec-rec.safetensors", "-o", "m.json", "--mass-schedule", "linear"], 2, "unknown schedule linear")
        add(["calibrate", "rec-rec.safetensors", "-o", "m.json", "--mass-schedule", "exp:0.8,0.9"], 2, "expected wan, wan:T")
        add(["calibrate", "rec-rec.safetensors", "-o", "m.json", "--mass-schedule", "exp:1.2,0.9,3"], 2, "A must be a mass fraction")
        add(["calibrate", "rec-rec.safetensors", "-o", "m.json", "--mass-schedule", "exp:0.8,1.5,3"], 2, "C must be a mass fraction")
        add(["calibrate", "rec-rec.safetensors", "-o", "m.json", "--mass-schedule", "exp:0.8,0.9,-1"], 2, "k must be a non-negative")
        add(["calibrate", "rec-rec.safetensors", "-o", "m.json", "--mass-schedule", "wan:0"], 2, "T must be a positive integer")
        // Quoted arguments and paths are shown, not acted on.
        add(["comp\u{1B}[2Jile"], 2, "unknown command compU+001B[2Jile")
        add(["stats", "no\u{7}such.json"], 1, "noU+0007such.json: $: cannot read the file")
        return c
    }
}
