@testable import CalibCodegen
import Foundation
import XCTest

/// The calibc of this build, beside the test runner (not whatever an earlier build left in .build/debug).
private let calibc = Bundle.main.executableURL!.deletingLastPathComponent().appendingPathComponent("calibc").path

/// `calibc compile` stopped at each of its file-system steps in turn (CALIBC_KILL_AT_STEP, see
/// OutputWriter.step) leaves the old complete output or the new one, never neither; the next
/// compile clears what the killed one left and nothing else, even siblings named like its own.
final class InterruptedCompileTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: calibc), "needs the calibc binary beside the tests")
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("calibc-kill-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        if let dir { try? FileManager.default.removeItem(at: dir) }
    }

    func testKilledAtEveryStepLeavesTheOldOutputOrTheNew() throws {
        let a = try masks("a", tokens: 300), b = try masks("b", tokens: 400)
        let out = dir.appendingPathComponent("out")
        let decoys = try plantDecoys(beside: out)
        try compile(a, out)
        let expectA = try contents(of: out)
        try compile(b, out)
        let expectB = try contents(of: out)
        XCTAssertNotEqual(expectA, expectB)

        // Alternate: each round starts from the other masks' complete output.
        var (old, new, oldExpected, newExpected) = (b, a, expectB, expectA)
        var step = 1, sawOld = false, sawNew = false
        while true {
            let status = try compile(new, out, killAtStep: step)
            let now = try contents(of: out)
            XCTAssertTrue(now == oldExpected || now == newExpected, "killed before step \(step): the output is neither the old set nor the new")
            if now == oldExpected { sawOld = true } else { sawNew = true }
            try compile(new, out)
            XCTAssertEqual(try contents(of: out), newExpected, "the compile after a kill before step \(step)")
            XCTAssertEqual(try siblings(), (["a.json", "b.json", "out"] + decoys).sorted(), "leftovers after a kill before step \(step)")
            if status == 0 { break }  // the whole write ran without reaching the step
            XCTAssertEqual(status, 128 + SIGKILL)
            step += 1
            (old, new, oldExpected, newExpected) = (new, old, newExpected, oldExpected)
            XCTAssertLessThan(step, 200)
        }
        XCTAssertTrue(sawOld && sawNew, "kills fell only on one side of the exchange")
        XCTAssertGreaterThan(step, 10, "too few steps: the hook is not reached")
        try checkDecoysUntouched()
        _ = old
    }

    /// A compile with --shared killed while its compiler runs leaves no compiler running, and
    /// the next compile removes the staged directory with the compiler's temporaries in it.
    func testKilledSharedBuildLeavesNoCompilerRunning() throws {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"), "needs util-linux's setpriv")
        let a = try masks("a", tokens: 300)
        let out = dir.appendingPathComponent("out")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: calibc)
        process.arguments = ["compile", a.path, "-o", out.path, "--shared"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        var child: Int32?
        for _ in 0..<2000 where child == nil {
            // The child is env, then setpriv, then the compiler itself (one pid, exec'd in turn).
            child = children(of: process.processIdentifier).first { command(of: $0) == "clang" }
            if child == nil { Thread.sleep(forTimeInterval: 0.005) }
        }
        let compiler = try XCTUnwrap(child, "the build never started")
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        var alive = true
        for _ in 0..<400 where alive {
            alive = kill(compiler, 0) == 0 && !isZombie(compiler)
            if alive { Thread.sleep(forTimeInterval: 0.01) }
        }
        XCTAssertFalse(alive, "the compiler outlived the killed compile")
        try compile(a, out)
        XCTAssertEqual(try siblings(), ["a.json", "out"])
    }

    /// An old set parked between the two renames of a file system without an exchange goes back
    /// into place when the path is absent; leftovers that are not provably calibc's stay.
    func testLeftoversAreRestoredOrKeptUnlessProvablyCalibcs() throws {
        let a = try masks("a", tokens: 300)
        let out = dir.appendingPathComponent("out")
        try compile(a, out)
        let expected = try contents(of: out)
        let dead = deadPID()
        try FileManager.default.moveItem(at: out, to: dir.appendingPathComponent(".out.calibc-old-\(dead)"))
        XCTAssertTrue(try Leftovers.clear(near: out))
        XCTAssertEqual(try contents(of: out), expected)
        let decoys = try plantDecoys(beside: out)
        XCTAssertFalse(try Leftovers.clear(near: out))
        XCTAssertEqual(try siblings(), (["a.json", "out"] + decoys).sorted())
        try checkDecoysUntouched()
    }

    // MARK: helpers

    private var decoyContents: [String: [String: Data]] = [:]

    /// Siblings named like calibc's leftovers of a dead process that calibc did not write, or
    /// that hold something besides what their manifest lists.
    private func plantDecoys(beside out: URL) throws -> [String] {
        let manifest = Data("{\"generator\": \"calibc\", \"files\": [\"calib_kernels.c\", \"calibc-manifest.json\"]}".utf8)
        let planted: [(String, [String: Data])] = [
            (".out.calibc-new-\(deadPID())", ["precious.txt": Data("mine".utf8)]),
            (".out.calibc-new-\(deadPID())", ["calibc-manifest.json": manifest, "calib_kernels.c": Data(), "notes.md": Data("x".utf8)]),
            (".out.calibc-old-\(deadPID())", ["calib_kernels.c": Data("no manifest".utf8)]),
        ]
        for (name, files) in planted {
            let d = dir.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
            for (file, data) in files { try data.write(to: d.appendingPathComponent(file)) }
            decoyContents[name] = files
        }
        return planted.map(\.0).sorted()
    }

    private func checkDecoysUntouched() throws {
        for (name, files) in decoyContents {
            XCTAssertEqual(try contents(of: dir.appendingPathComponent(name)), files.reduce(into: [:]) { $0["/" + $1.key] = $1.value })
        }
    }

    private func masks(_ name: String, tokens: Int) throws -> URL {
        let url = dir.appendingPathComponent("\(name).json")
        try Data("""
            {"format": 1, "model": "\(name)", "tokens": \(tokens), "head_dim": 32, "block": 32, "layers": 1, "heads": 2,
             "timesteps": [0, 1], "patterns": {},
             "assignments": [{"steps": "*", "layers": "*", "heads": "*", "pattern": "dense"}]}
            """.utf8).write(to: url)
        return url
    }

    @discardableResult
    private func compile(_ masks: URL, _ out: URL, killAtStep: Int? = nil) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: calibc)
        process.arguments = ["compile", masks.path, "-o", out.path]
        if let killAtStep { process.environment = ProcessInfo.processInfo.environment.merging(["CALIBC_KILL_AT_STEP": "\(killAtStep)"]) { $1 } }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        if killAtStep == nil { XCTAssertEqual(process.terminationStatus, 0, "compile \(masks.lastPathComponent)") }
        return process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    }

    private func siblings() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
    }

    private func contents(of dir: URL) throws -> [String: Data] {
        var out: [String: Data] = [:]
        guard let e = FileManager.default.enumerator(at: dir, includingPropertiesForKeys: [.isRegularFileKey]) else { return out }
        for case let url as URL in e where (try url.resourceValues(forKeys: [.isRegularFileKey])).isRegularFile == true {
            out[String(url.path.dropFirst(dir.path.count))] = try Data(contentsOf: url)
        }
        return out
    }

    /// The pid of a process that has exited.
    private func deadPID() -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/true")
        try? p.run()
        p.waitUntilExit()
        return p.processIdentifier
    }

    private func children(of pid: Int32) -> [Int32] {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8)) ?? ""
        return text.split(separator: " ").compactMap { Int32($0) }
    }

    private func command(of pid: Int32) -> String {
        ((try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private func isZombie(_ pid: Int32) -> Bool {
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        return stat.split(separator: ")").last?.split(separator: " ").first == "Z"
    }
}
