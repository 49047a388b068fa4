// The CUDA target: Hopper kernels (kernels/cuda) over the same tables as the CPU target, built
// into a shared library with nvcc where it is installed.

import CalibIR
import CalibPasses

public struct CUDATarget: Target {
    public init() {}

    public var name: String { "cuda" }
    /// The kernel orders each plan's query blocks heaviest first when it uploads the tables.
    public var tail: [Pass] { [] }
    public var libraryName: String { "libcalibcuda.so" }
    public var outputNames: [String] { Codegen.tableNames + Self.kernelFiles + [libraryName, Codegen.manifestName] }

    static let kernelFiles = ["calib_cuda.cu", "include/calib_cuda.h"]

    public var buildCommand: [String] {
        ["nvcc", "-O3", "-gencode=arch=compute_90a,code=sm_90a", "-Xcompiler", "-fPIC", "-shared",
         "-I", "include", "calib_cuda.cu", "calib_schedule.c", "-o", libraryName]
    }

    public func emit(_ program: Program, _ provenance: Provenance) throws -> [GeneratedFile] {
        var files = Codegen.tables(program, provenance)
        for file in Self.kernelFiles { files.append(try Codegen.kernelFile("cuda/" + file, as: file, program, provenance)) }
        return files
    }

    /// The tables are C and are parsed by libclang; the .cu is a fixed file that `make cuda-check`
    /// compiles with nvcc for sm_90a.
    public func check(_ files: [GeneratedFile]) throws {
        try ClangCheck.check(files.filter { $0.path.hasSuffix(".c") || $0.path.hasSuffix(".h") && !$0.path.contains("cuda") },
                             language: "c", arguments: ["-std=c11"])
    }
}
