// The output-path rules (Sources/CalibCodegen/OutputPaths.swift), each in a sandbox temporary
// directory: the working tree is never the current directory of these tests.

import CalibCodegen
import CalibDriver
import CalibFrontend
import Foundation
import XCTest

private let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardizedFileURL

private func files() throws -> [GeneratedFile] {
    let program = try Frontend.load(path: root.appendingPathComponent("examples/masks.json").path).program
    return try Driver.generate(program, source: "masks.json", options: CompileOptions()).files
}

final class OutputPathTests: XCTestCase {
    var sandbox: URL!
    var previous = ""

    /// A fresh directory `sandbox/work/deeper` that is the current directory during the test, with
    /// `sandbox/work/in/masks.json` as an input.
    override func setUpWithError() throws {
        sandbox = FileManager.default.temporaryDirectory.appendingPathComponent("calibc-paths-\(UUID().uuidString)").resolvingSymlinksInPath()
        let deeper = sandbox.appendingPathComponent("work/deeper")
        try FileManager.default.createDirectory(at: deeper, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: sandbox.appendingPathComponent("work/in"), withIntermediateDirectories: true)
        try Data("{}".utf8).write(to: sandbox.appendingPathComponent("work/in/masks.json"))
        previous = FileManager.default.currentDirectoryPath
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(deeper.path))
    }

    override func tearDownWithError() throws {
        FileManager.default.changeCurrentDirectoryPath(previous)
        try? FileManager.default.removeItem(at: sandbox)
    }

    private func message(_ body: () throws -> Void) -> String {
        do {
            try body()
            return "accepted"
        } catch { return "\(error)" }
    }

    private var input: String { sandbox.appendingPathComponent("work/in/masks.json").path }

    func testNeverReplacesTheCurrentDirectoryOrAbove() throws {
        XCTAssertEqual(message { try OutputPaths.checkDirectory("", inputs: [], generated: CPUTarget().outputNames, force: true) },
                       "the output path is empty (an unset shell variable?); give -o a file or directory name")
        for path in [".", "..", "../..", "./", sandbox.path, "/", "../deeper"] {
            XCTAssertEqual(message { try OutputWriter.write(try files(), to: path, force: true) },
                           "\(path): is the current directory or a directory above it; calibc will not replace it")
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: input))
        // A new directory below the current one is fine.
        try OutputWriter.write(try files(), to: "kernels", force: false)
        XCTAssertTrue(FileManager.default.fileExists(atPath: "kernels/calibc-manifest.json"))
    }

    func testNeverReplacesADirectoryHoldingAnInput() throws {
        let dir = sandbox.appendingPathComponent("work/in").path
        // Its own directory, named three ways, with and without --force, and a directory above it.
        for (path, force) in [(dir, true), ("../in", true), ("../in/", false)] {
            XCTAssertEqual(message { try OutputWriter.write(try files(), to: path, force: force, inputs: [self.input]) },
                           "\(path): holds the input \(input); calibc will not replace it")
        }
        let nested = sandbox.appendingPathComponent("data/sub/rec.safetensors").path
        try FileManager.default.createDirectory(atPath: sandbox.appendingPathComponent("data/sub").path, withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: nested))
        XCTAssertEqual(message { try OutputPaths.checkDirectory("../../data", inputs: [self.input, nested], generated: CPUTarget().outputNames, force: true) },
                       "../../data: holds the input \(nested); calibc will not replace it")
        XCTAssertEqual(try String(contentsOfFile: input, encoding: .utf8), "{}")
    }

    func testFileOutputsNeverOverwriteAnInput() throws {
        let link = sandbox.appendingPathComponent("link.json").path
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: input)
        let hard = sandbox.appendingPathComponent("hard.json").path
        try FileManager.default.linkItem(atPath: input, toPath: hard)
        for path in [input, "../in/masks.json", "../in/./masks.json", link, hard] {
            XCTAssertEqual(message { try OutputPaths.checkFile(path, inputs: [self.input]) },
                           "\(path): is also an input; calibc will not overwrite its input")
        }
        XCTAssertEqual(message { try OutputPaths.checkFile("", inputs: [self.input]) },
                       "the output path is empty (an unset shell variable?); give -o a file or directory name")
        XCTAssertEqual(message { try OutputPaths.checkFile("..", inputs: []) },
                       "..: is the current directory or a directory above it; calibc will not replace it")
        XCTAssertEqual(message { try OutputPaths.checkFile("../in", inputs: []) }, "../in: is a directory; give a file name")
        XCTAssertEqual(message { try OutputPaths.checkFile("nowhere/masks.json", inputs: []) },
                       "nowhere/masks.json: the directory \(sandbox.path)/work/deeper/nowhere does not exist")
        XCTAssertEqual(message { try OutputPaths.checkFile("masks.json", inputs: [self.input]) }, "accepted")
        XCTAssertEqual(try String(contentsOfFile: input, encoding: .utf8), "{}")
    }

    func testWriteErrorsAreWords() {
        let text = message { try OutputPaths.write(Data("x".utf8), to: "nowhere/masks.json") }
        XCTAssertEqual(text, "nowhere/masks.json: could not write the output: No such file or directory")
        XCTAssertFalse(text.contains("Domain"))
    }
}
