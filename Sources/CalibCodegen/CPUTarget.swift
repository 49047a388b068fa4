// The CPU target: C11 + OpenMP kernels (kernels/cpu of CalibKernelSources), the tables, a module
// map so the directory is a SwiftPM C target, and a shared library built with clang.

import CalibIR
import CalibPasses

public struct CPUTarget: Target {
    public init() {}

    public var name: String { "cpu" }
    public var tail: [Pass] { [Pass(name: "chunk", run: chunk)] }
    public var libraryName: String { "libcalibkernels.so" }
    public var outputNames: [String] {
        Codegen.tableNames + Self.kernelFiles.map(\.output) + ["include/module.modulemap", libraryName, Codegen.manifestName]
    }

    /// Kernel sources copied verbatim (after a banner).
    static let kernelFiles: [(source: String, output: String)] = [
        ("cpu/calib_kernels.c", "calib_kernels.c"), ("cpu/calib_tile.h", "calib_tile.h"),
        ("include/calib_exp2.h", "calib_exp2.h"),
        ("include/calib_abi.h", "include/calib_abi.h"), ("include/calib_kernels.h", "include/calib_kernels.h"),
    ]

    public func emit(_ program: Program, _ provenance: Provenance) throws -> [GeneratedFile] {
        var files = Codegen.tables(program, provenance)
        files += try Codegen.kernelFiles(Self.kernelFiles, program, provenance)
        files.append(GeneratedFile(path: "include/module.modulemap",
                                   contents: "module CalibKernels {\n    header \"calib_kernels.h\"\n    export *\n}\n"))
        return files
    }

    public func check(_ files: [GeneratedFile]) throws {
        try ClangCheck.check(files, language: "c", arguments: ["-std=c11", "-fopenmp", "-idirafter", Toolchain.ompInclude])
    }

    /// The flags of the CalibKernels target in Package.swift, plus what a shared object needs. No
    /// -march: the kernels pick their instruction set on the machine they run on.
    public var buildCommand: [String] {
        ["clang", "-std=c11", "-O3", "-fopenmp", "-idirafter", Toolchain.ompInclude,
         "-I", "include", "-shared", "-fPIC", "-Wl,-Bsymbolic", "-Wl,--build-id=none",
         "calib_kernels.c", "calib_schedule.c",
         "-o", libraryName, "-L", Toolchain.ompLib, "-lomp", "-Wl,-rpath," + Toolchain.ompLib]
    }
}
