import CalibCodegen
import CalibDriver
import CalibFrontend
import CalibIR
import CalibKernelSources
import CalibPasses
import CalibSupport
import Foundation
import XCTest

private let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardizedFileURL
private let example = root.appendingPathComponent("examples/masks.json").path

private func exampleFiles(target: any Target = CPUTarget()) throws -> [GeneratedFile] {
    var options = CompileOptions()
    options.target = target
    return try Driver.generate(try Frontend.load(path: example).program, source: "masks.json", options: options).files
}

private func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("calibc-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

private func contents(of dir: URL) throws -> [String: Data] {
    var out: [String: Data] = [:]
    let e = FileManager.default.enumerator(at: dir, includingPropertiesForKeys: [.isRegularFileKey])!
    for case let url as URL in e where (try url.resourceValues(forKeys: [.isRegularFileKey])).isRegularFile == true {
        out[String(url.path.dropFirst(dir.path.count))] = try Data(contentsOf: url)
    }
    return out
}

final class CodegenTests: XCTestCase {
    /// The committed generated/CalibKernels is the golden C output of the example: a stale
    /// copy fails here (regenerate with `make kernels`).
    func testCommittedKernelsMatchTheExample() throws {
        let committed = root.appendingPathComponent("generated/CalibKernels")
        for file in try exampleFiles() {
            let onDisk = try String(contentsOf: committed.appendingPathComponent(file.path), encoding: .utf8)
            XCTAssertEqual(onDisk, file.contents, "\(file.path) is stale: run `make kernels`")
        }
    }

    /// generated/CalibKernelsCUDA pins what the CUDA target emits for the example.
    func testCommittedCUDAKernelsMatchTheExample() throws {
        let committed = root.appendingPathComponent("generated/CalibKernelsCUDA")
        let files = try exampleFiles(target: CUDATarget())
        XCTAssertEqual(try contents(of: committed).keys.sorted(), files.map { "/" + $0.path }.sorted())
        for file in files {
            let onDisk = try String(contentsOf: committed.appendingPathComponent(file.path), encoding: .utf8)
            XCTAssertEqual(onDisk, file.contents, "\(file.path) is stale: run `make kernels`")
        }
    }

    func testBannersNameTheMaskAndThePasses() throws {
        let kernels = try XCTUnwrap(try exampleFiles().first { $0.path == "calib_kernels.c" })
        let hash = SHA256.hex([UInt8](try Data(contentsOf: URL(fileURLWithPath: example))))
        XCTAssertTrue(kernels.contents.hasPrefix("/* calib_kernels.c: copied by calibc from kernels/cpu/calib_kernels.c"))
        let tables = try XCTUnwrap(try exampleFiles().first { $0.path == "calib_schedule.c" })
        for file in [kernels, tables] {
            XCTAssertTrue(file.contents.contains("source: masks.json (sha256 \(hash))"))
            XCTAssertTrue(file.contents.contains("passes: merge-runs, collapse-reuse, dedupe, reorder, chunk\n"), file.path)
        }
        // The kernel itself is the file in the repository, byte for byte after the banner.
        let source = try KernelSources.text("cpu/calib_kernels.c")
        XCTAssertTrue(kernels.contents.hasSuffix("*/\n" + source))
    }

    func testTwoCompilesGiveIdenticalBytes() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = dir.appendingPathComponent("a"), b = dir.appendingPathComponent("b")
        var options = CompileOptions()
        options.shared = true
        try Driver.compile(masks: example, to: a.path, options: options)
        try Driver.compile(masks: example, to: b.path, options: options)
        let (ca, cb) = (try contents(of: a), try contents(of: b))
        XCTAssertEqual(ca.keys.sorted(), ["/calib_exp2.h", "/calib_internal.h", "/calib_kernels.c", "/calib_schedule.c", "/calib_tile.h",
                                         "/calibc-manifest.json", "/include/calib_abi.h", "/include/calib_kernels.h", "/include/module.modulemap",
                                         "/libcalibkernels.so"])
        XCTAssertEqual(ca, cb, "the shared library too: built in place with relative names, no build id")
        let manifest = String(decoding: ca["/calibc-manifest.json"]!, as: UTF8.self)
        XCTAssertTrue(manifest.contains("\"libcalibkernels.so\""), manifest)
    }

    /// `compile --shared` twice, into directories of different names (so the staging paths
    /// differ), gives the same library bytes: the build runs in the staging directory with
    /// relative names and no build id, so nothing of where it ran reaches the library.
    func testTwoSharedBuildsGiveIdenticalLibraries() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var libraries: [Data] = []
        for name in ["first", "second-with-a-longer-name"] {
            let out = dir.appendingPathComponent(name)
            var options = CompileOptions()
            options.shared = true
            try Driver.compile(masks: example, to: out.path, options: options)
            libraries.append(try Data(contentsOf: out.appendingPathComponent(options.target.libraryName)))
        }
        XCTAssertEqual(libraries[0].count, libraries[1].count)
        XCTAssertTrue(libraries[0] == libraries[1], "the two libraries differ")
    }

    func testLibclangRejectsBrokenCodeAndNothingIsWritten() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var files = try exampleFiles()
        let i = files.firstIndex { $0.path == "calib_schedule.c" }!
        files[i].contents += "\nstatic int unused_and_wrong(void) { return undeclared_name; }\n"
        let out = dir.appendingPathComponent("out")
        XCTAssertThrowsError(try CPUTarget().check(files)) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains("libclang rejects generated code"), message)
            XCTAssertTrue(message.contains("calib_schedule.c:"), message)
            XCTAssertTrue(message.contains("undeclared_name"), message)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
    }

    func testLibclangReportsWarningsToo() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var files = try exampleFiles()
        let i = files.firstIndex { $0.path == "calib_kernels.c" }!
        files[i].contents += "\nint calib_extra(void) { int x; return x; }\n"
        XCTAssertThrowsError(try CPUTarget().check(files)) { error in
            XCTAssertTrue("\(error)".contains("uninitialized"), "\(error)")
        }
    }

    func testRefusesToReplaceADirectoryItDidNotWrite() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let precious = dir.appendingPathComponent("notes.txt")
        try Data("keep me".utf8).write(to: precious)
        XCTAssertThrowsError(try OutputWriter.write(try exampleFiles(), to: dir.path, force: false)) { error in
            XCTAssertEqual("\(error)", "\(dir.path): holds files calibc did not write (notes.txt); move them away or choose another directory")
        }
        XCTAssertEqual(try String(contentsOf: precious, encoding: .utf8), "keep me")
        // --force replaces only what calibc writes: a user's file is named and kept.
        XCTAssertThrowsError(try OutputWriter.write(try exampleFiles(), to: dir.path, force: true)) { error in
            XCTAssertEqual("\(error)", "\(dir.path): holds files calibc did not write (notes.txt); move them away or choose another directory")
        }
        XCTAssertEqual(try String(contentsOf: precious, encoding: .utf8), "keep me")
        try FileManager.default.removeItem(at: precious)
        // A directory of calibc's file names without a manifest (an older calibc's, or a lost manifest): --force replaces it.
        try Data("/* old */".utf8).write(to: dir.appendingPathComponent("calib_kernels.c"))
        XCTAssertThrowsError(try OutputWriter.write(try exampleFiles(), to: dir.path, force: false)) { error in
            XCTAssertTrue("\(error)".contains("refusing to replace a directory calibc did not write"), "\(error)")
        }
        try OutputWriter.write(try exampleFiles(), to: dir.path, force: true)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent(Codegen.manifestName).path))
    }

    /// The longest `model` the frontend accepts (4095 bytes of UTF-8, with characters that
    /// need escapes) passes libclang's check: no "internal error" on valid input.
    func testLongestModelCompiles() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var program = try Frontend.load(path: example).program
        let unit = "é\"\\?\n*/ab"  // 2 + 1 + 1 + 1 + 1 + 2 + 2 = 10 bytes
        program.model = String(repeating: unit, count: 409) + "é\"x\n"
        XCTAssertEqual(program.model.utf8.count, Frontend.maxModelBytes)
        XCTAssertNoThrow(try Driver.compile(program, source: "masks.json", to: dir.appendingPathComponent("k").path, options: CompileOptions()))
    }

    func testRefusesAFileInPlaceOfTheDirectory() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("k")
        try Data("x".utf8).write(to: file)
        XCTAssertThrowsError(try OutputWriter.write(try exampleFiles(), to: file.path, force: true)) { error in
            XCTAssertEqual("\(error)", "\(file.path): exists and is not a directory")
        }
    }

    func testReplacesItsOwnOutputWithoutLeftovers() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("k")
        try OutputWriter.write(try exampleFiles(), to: out.path, force: false)
        try Data("stale".utf8).write(to: out.appendingPathComponent("calib_kernels.c"))
        try OutputWriter.write(try exampleFiles(), to: out.path, force: false)
        XCTAssertNotEqual(try String(contentsOf: out.appendingPathComponent("calib_kernels.c"), encoding: .utf8), "stale")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["k"])
        // A file the user put into calibc's directory is not calibc's to delete, even with --force.
        try Data("mine".utf8).write(to: out.appendingPathComponent("old.c"))
        for force in [false, true] {
            XCTAssertThrowsError(try OutputWriter.write(try exampleFiles(), to: out.path, force: force)) { error in
                XCTAssertEqual("\(error)", "\(out.path): holds files calibc did not write (old.c); move them away or choose another directory")
            }
        }
        XCTAssertEqual(try String(contentsOf: out.appendingPathComponent("old.c"), encoding: .utf8), "mine")
    }

    func testScheduleTablesMatchThePlan() throws {
        let plan = Plan(name: "p", rows: [.compute([Span(0, 2), Span(3, 4)]), .reuse(0), .compute([Span(1, 4)]), .compute([Span(0, 4)])])
        let program = Program(model: "m", shape: Shape(tokens: 64, headDim: 16, block: 16, layers: 1, heads: 1, steps: [3]),
                              plans: [plan], dispatch: [0], sourceHash: "h")
        let schedule = try Driver.generate(program, source: "x.json", options: CompileOptions()).files.first { $0.path == "calib_schedule.c" }!.contents
        XCTAssertTrue(schedule.contains("""
            /* 3 distinct rows: row r keeps key blocks calib_spans[2i] ..< calib_spans[2i+1] for i in calib_row_first[r] ..< calib_row_first[r+1] */
            const int32_t calib_row_first[] = {
                0,2,3,4,
            };
            const uint16_t calib_spans[] = {
                0,2,3,4,1,4,0,4,
            };

            /* plan p0 @p: 3 computed rows, 1 reused, 10 of 16 tiles (density 0.6250), 3 chunks */
            static const uint16_t p0_rows[] = {
                0,0,1,2,
            };
            static const uint16_t p0_order[] = {
                0,3,2,
            };
            static const int32_t p0_chunks[] = {
                1,2,0,1,2,3,
            };
            static const int32_t p0_reuse[] = {
                0,1,
            };
            """), schedule)
        // Chunks heaviest first: q3 (4 tiles), then q0 and q2 (3 each) in locality order; the dense baseline is one row per chunk.
        XCTAssertTrue(schedule.contains("const calib_plan calib_dense_plan = {dense_rows, dense_order, dense_chunks, 4, dense_reuse, 0};"), schedule)
        XCTAssertTrue(schedule.contains("const int32_t calib_steps[CALIB_STEPS] = {3};"), schedule)
    }
}

final class CUDATargetTests: XCTestCase {
    /// The CUDA target writes the same tables beside its kernel; without nvcc, --shared says how
    /// to build instead of failing.
    func testCUDATargetWritesTablesAndKernel() throws {
        let cpu = try exampleFiles(), cuda = try exampleFiles(target: CUDATarget())
        XCTAssertEqual(cuda.map(\.path).sorted(), ["build.sh", "calib_cuda.cu", "calib_internal.h", "calib_schedule.c", "calibc-manifest.json",
                                                   "epilogue.cuh", "include/calib_abi.h", "include/calib_cuda.h", "mma_kernel.cuh",
                                                   "ptx.cuh", "quantize.cuh", "softmax.cuh", "wgmma_kernel.cuh", "work.cuh"])
        // The same header and the same row pool and dispatch table; the CPU target's chunks differ.
        let body = { (files: [GeneratedFile], path: String) in files.first { $0.path == path }!.contents.components(separatedBy: "*/").dropFirst() }
        XCTAssertEqual(body(cpu, "calib_internal.h"), body(cuda, "calib_internal.h"))
        let pool = { (files: [GeneratedFile]) in body(files, "calib_schedule.c").prefix(2).joined().components(separatedBy: "\n\n/* plan p0")[0] }
        XCTAssertEqual(pool(cpu), pool(cuda))
        XCTAssertEqual(body(cpu, "calib_schedule.c").last, body(cuda, "calib_schedule.c").last, "the dispatch table")
        XCTAssertTrue(cuda.first { $0.path == "calibc-manifest.json" }!.contents.contains("\"target\": \"cuda\""))
    }

    /// The target refuses, at the masks' `head_dim`, exactly the head_dims calib_cuda.cu's `#error`
    /// stops (read from the file), so no masks it takes fail in nvcc after the output is written.
    func testRefusesTheHeadDimsTheKernelsCannotTake() throws {
        let source = try KernelSources.text("cuda/calib_cuda.cu")
        let guardLine = try XCTUnwrap(source.split(separator: "\n").first { $0.hasPrefix("#if CALIB_HEAD_DIM %") })
        let words = guardLine.split(separator: " ")
        let multiple = try XCTUnwrap(Int(words[3])), most = try XCTUnwrap(Int(words[9]))
        XCTAssertEqual(guardLine, "#if CALIB_HEAD_DIM % \(multiple) != 0 || CALIB_HEAD_DIM > \(most)")
        for d in 1...2 * most {
            let shape = Shape(tokens: 256, headDim: d, block: 64, layers: 1, heads: 1, steps: [0])
            switch CUDATarget().fit(shape) {
            case .refused(let field, _):
                XCTAssertEqual(field, "head_dim")
                XCTAssertFalse(d % multiple == 0 && d <= most, "head_dim \(d) refused")
            case .fast, .slower: XCTAssertTrue(d % multiple == 0 && d <= most, "head_dim \(d) taken")
            }
            XCTAssertEqual(CPUTarget().fit(shape), .fast)
        }
    }

    /// The shapes the wgmma kernel takes (wgmma_kernel.cuh's `kWgmmaShape`, read from the file)
    /// are the fast ones; any other the target takes is said to run slower, naming why.
    func testSaysWhichShapesRunOnTheSlowerKernel() throws {
        let source = try KernelSources.text("cuda/wgmma_kernel.cuh")
        XCTAssertTrue(source.contains("constexpr bool kWgmmaShape = kBlock == 128 && (kDim == 64 || kDim == 128);"))
        for block in [32, 64, 128, 256] {
            for d in [32, 64, 80, 128, 256] {
                let fit = CUDATarget().fit(Shape(tokens: 1024, headDim: d, block: block, layers: 1, heads: 1, steps: [0]))
                if block == 128 && (d == 64 || d == 128) {
                    XCTAssertEqual(fit, .fast)
                } else {
                    XCTAssertEqual(fit, .slower("block \(block) with head_dim \(d) runs on the CUDA target's portable mma.sync "
                                                + "kernel; its Hopper wgmma kernel, and precision \"fp8\", take block 128 with head_dim 64 or 128"))
                }
            }
        }
    }

    /// `--shared` with nvcc on PATH runs the directory's build.sh (the recipe the GPU tests and
    /// benchmarks run too); without it, it writes the sources and says how to build them. A stand-in
    /// nvcc records its arguments, so both paths run on any machine.
    func testSharedRunsTheDirectorysRecipeOrSaysHowToRunIt() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let bin = dir.appendingPathComponent("bin"), log = dir.appendingPathComponent("nvcc.log")
        try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
        // The last argument names the output; the stand-in writes it and logs the command line.
        try "#!/bin/sh\necho \"$@\" > \(log.path)\nfor a; do out=$a; done\necho library > \"$out\"\n"
            .write(to: bin.appendingPathComponent("nvcc"), atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: bin.appendingPathComponent("nvcc").path)
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        defer { setenv("PATH", path, 1) }
        var options = CompileOptions()
        options.target = CUDATarget()
        options.shared = true

        setenv("PATH", bin.path + ":/usr/bin:/bin", 1)
        var built: String?
        try Driver.compile(masks: example, to: dir.appendingPathComponent("built").path, options: options) { event in
            if case let .built(library, _) = event { built = library }
        }
        XCTAssertEqual(built, dir.path + "/built/libcalibcuda.so")
        XCTAssertEqual(try String(contentsOf: dir.appendingPathComponent("built/libcalibcuda.so"), encoding: .utf8), "library\n")
        XCTAssertEqual(try String(contentsOf: log, encoding: .utf8),
                       "-O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -Xcompiler -fPIC -I include -shared calib_cuda.cu calib_schedule.c -o libcalibcuda.so\n")

        setenv("PATH", "/usr/bin:/bin", 1)
        try XCTSkipIf(findTool("nvcc") != nil, "nvcc is installed in /usr/bin")
        var skipped: String?
        try Driver.compile(masks: example, to: dir.appendingPathComponent("cuda").path, options: options) { event in
            if case let .buildSkipped(tool, command) = event { skipped = tool + ": " + command }
        }
        XCTAssertEqual(skipped, "nvcc: cd \(dir.path)/cuda && sh build.sh")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("cuda/build.sh").path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("cuda/libcalibcuda.so").path))
    }
}
