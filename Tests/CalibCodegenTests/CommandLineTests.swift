// calibc's argument and output-path checks as a user meets them: exit status, one line on
// stderr, nothing printed or written before the check. Runs the calibc built beside the tests
// in a sandbox temporary directory.

import Foundation
import XCTest

private let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardizedFileURL

final class CommandLineTests: XCTestCase {
    var sandbox: URL!

    override func setUpWithError() throws {
        sandbox = FileManager.default.temporaryDirectory.appendingPathComponent("calibc-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: sandbox, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: root.appendingPathComponent("examples/masks.json"), to: sandbox.appendingPathComponent("masks.json"))
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: sandbox)
    }

    /// Runs calibc in the sandbox: exit status, stdout, stderr.
    func calibc(_ args: String...) throws -> (status: Int32, out: String, err: String) {
        try runProcess(try builtCalibc(), args, in: sandbox)
    }

    /// Where libclang cannot be opened (a calibc copied to a GPU machine without LLVM), compile
    /// still writes what it writes with the check, and says once that the C went unparsed.
    func testCompileWithoutLibclangSaysItsCheckWasSkipped() throws {
        let broken = sandbox.appendingPathComponent("lib")
        try FileManager.default.createDirectory(at: broken, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: broken.appendingPathComponent("libclang-14.so.1").path, contents: Data())
        for target in ["cpu", "cuda"] {
            let checked = try calibc("compile", "masks.json", "-o", "checked-\(target)", "--target", target)
            XCTAssertEqual(checked.status, 0, checked.err)
            XCTAssertFalse(checked.out.contains("skipped"), checked.out)
            let unchecked = try runProcess(try builtCalibc(), ["compile", "masks.json", "-o", "unchecked-\(target)", "--target", target],
                                           in: sandbox, environment: ["LD_LIBRARY_PATH": broken.path])
            XCTAssertEqual(unchecked.status, 0, unchecked.err)
            let lines = unchecked.out.split(separator: "\n").filter { $0.contains("libclang") }
            XCTAssertEqual(lines.count, 1, unchecked.out)
            XCTAssertTrue(lines[0].hasPrefix("check       skipped: libclang-14 could not be opened (") && lines[0].contains("libclang1-14"),
                          unchecked.out)
            let names = try FileManager.default.contentsOfDirectory(atPath: sandbox.appendingPathComponent("checked-\(target)").path).sorted()
            for name in names {
                XCTAssertEqual(FileManager.default.contents(atPath: sandbox.appendingPathComponent("checked-\(target)/\(name)").path),
                               FileManager.default.contents(atPath: sandbox.appendingPathComponent("unchecked-\(target)/\(name)").path), name)
            }
        }
    }

    /// Masks the CUDA target runs on its slower kernel (the example: block 64) are said to, once,
    /// naming the file and why; the CPU target has no such note.
    func testCompileSaysOnceWhenTheCUDATargetTakesItsSlowerKernel() throws {
        let cuda = try calibc("compile", "masks.json", "-o", "cuda", "--target", "cuda")
        XCTAssertEqual(cuda.status, 0, cuda.err)
        XCTAssertEqual(cuda.out.split(separator: "\n").filter { $0.hasPrefix("note: ") },
                       ["note: masks.json: block 64 with head_dim 64 runs on the CUDA target's portable mma.sync kernel; "
                        + "its Hopper wgmma kernel, and precision \"fp8\", take block 128 with head_dim 64 or 128"])
        let cpu = try calibc("compile", "masks.json", "-o", "cpu")
        XCTAssertEqual(cpu.status, 0, cpu.err)
        XCTAssertFalse(cpu.out.contains("note:"), cpu.out)
    }

    /// No command is a usage error (status 2, usage on stderr); --help is not.
    func testNoCommandIsAUsageError() throws {
        let none = try calibc()
        XCTAssertEqual(none.status, 2)
        XCTAssertTrue(none.out.isEmpty)
        XCTAssertTrue(none.err.contains("calibc: no command given") && none.err.contains("usage:"), none.err)
        let help = try calibc("--help")
        XCTAssertEqual(help.status, 0)
        XCTAssertTrue(help.out.contains("usage:"))
    }

    /// `stats --show` with a (step, layer, head) the masks lack fails before any statistic.
    func testStatsChecksShowBeforeWork() throws {
        var r = try calibc("stats", "masks.json", "--show", "99,0,0")
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(r.out, "")
        XCTAssertEqual(r.err, "calibc: --show 99,0,0: no timestep 99 (the masks have 0, 25, 49)\n")
        r = try calibc("stats", "masks.json", "--show", "25,0,99")
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(r.out, "")
        XCTAssertTrue(r.err.hasPrefix("calibc: --show 25,0,99: no head 99 (the masks have heads 0..."), r.err)
        r = try calibc("stats", "masks.json", "--show", "1,2")
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(r.out, "")
        XCTAssertEqual(r.err, "calibc: --show expects <step>,<layer>,<head> (three integers), got \"1,2\"\n")
        r = try calibc("stats", "masks.json", "--show", "25,0,3")
        XCTAssertEqual(r.status, 0)
        XCTAssertTrue(r.out.contains("plan @"), r.out)
    }

    func testOutputPathsAreCheckedBeforeWork() throws {
        let before = try Data(contentsOf: sandbox.appendingPathComponent("masks.json"))
        var r = try calibc("compile", "masks.json", "-o", "", "--force")
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.out, "", "nothing ran before the check")
        XCTAssertEqual(r.err, "calibc: error: the output path is empty (an unset shell variable?); give -o a file or directory name\n")
        r = try calibc("compile", "masks.json", "-o", ".", "--force")
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.out, "")
        XCTAssertEqual(r.err, "calibc: error: .: is the current directory or a directory above it; calibc will not replace it\n")
        r = try calibc("calibrate", "masks.json", "-o", "./masks.json")
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.err, "calibc: error: ./masks.json: is also an input; calibc will not overwrite its input\n")
        r = try calibc("calibrate", "masks.json", "-o", "out.json", "--block", "100000000")
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(r.err.split(separator: "\n").first, "calibc: --block expects an integer in 1…1024, got 100000000")
        r = try calibc("compile", "masks.json", "-o", "k", "--threads", "2")
        XCTAssertEqual(r.status, 2, "compile takes no thread count: the kernels adapt at run time")
        XCTAssertEqual(r.err.split(separator: "\n").first, "calibc: unknown option --threads")
        XCTAssertEqual(try Data(contentsOf: sandbox.appendingPathComponent("masks.json")), before)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: sandbox.path), ["masks.json"])
    }
}
