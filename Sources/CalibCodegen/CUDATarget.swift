// The CUDA target: Hopper kernels (kernels/cuda of CalibKernelSources) over the same tables as the
// CPU target, and build.sh, the one recipe that builds them: `--shared` runs it where nvcc is
// installed, and the GPU tests and benchmarks run it on the GPU machine.

import CalibIR
import CalibPasses

public struct CUDATarget: Target {
    public init() {}

    public var name: String { "cuda" }
    /// The kernel orders each plan's query blocks heaviest first when it uploads the tables.
    public var tail: [Pass] { [] }
    public var libraryName: String { "libcalibcuda.so" }
    public var outputNames: [String] {
        Codegen.tableNames + Self.kernelFiles.map(\.output) + [Self.buildScript, libraryName, Codegen.manifestName]
    }

    /// The translation unit calib_cuda.cu and the pieces it includes, copied verbatim (after a banner).
    static let kernelFiles: [(source: String, output: String)] =
        ["calib_cuda.cu", "ptx.cuh", "work.cuh", "softmax.cuh", "epilogue.cuh", "mma_kernel.cuh", "quantize.cuh", "wgmma_kernel.cuh"]
            .map { ("cuda/" + $0, $0) }
        + [("include/calib_abi.h", "include/calib_abi.h"), ("include/calib_cuda.h", "include/calib_cuda.h")]

    static let buildScript = "build.sh"

    /// Both kernels step through head_dim 16 channels an MMA, and the mma.sync kernel holds a
    /// row's output in registers, 256 channels at most (calib_cuda.cu's `#error` says the same
    /// to a build of edited sources); the wgmma kernel takes the shapes of `kWgmmaShape`
    /// (wgmma_kernel.cuh) and the mma.sync kernel the rest.
    public func fit(_ shape: Shape) -> ShapeFit {
        if shape.headDim % 16 != 0 || shape.headDim > 256 {
            return .refused(field: "head_dim", message: "the CUDA target takes a multiple of 16, at most 256, found \(shape.headDim) (the CPU target takes any)")
        }
        if shape.block == 128 && (shape.headDim == 64 || shape.headDim == 128) { return .fast }
        return .slower("block \(shape.block) with head_dim \(shape.headDim) runs on the CUDA target's portable mma.sync kernel; "
                       + "its Hopper wgmma kernel, and precision \"fp8\", take block 128 with head_dim 64 or 128")
    }

    public var buildTool: String { "nvcc" }
    public var buildCommand: [String] { ["sh", Self.buildScript] }

    public func emit(_ program: Program, _ provenance: Provenance) throws -> [GeneratedFile] {
        var files = Codegen.tables(program, provenance)
        files += try Codegen.kernelFiles(Self.kernelFiles, program, provenance)
        files.append(GeneratedFile(path: Self.buildScript, contents: Codegen.shellBanner(Self.buildScript, program, provenance) + "\n" + Self.recipe))
        return files
    }

    /// sm_90a: the wgmma kernel needs the architecture-specific features of Hopper. The flags of
    /// `--check` change diagnostics only, so the code it checks is the code users build.
    static let recipe = """
        # Builds libcalibcuda.so in this directory (`calibc compile --target cuda --shared` runs it).
        # NVCC names the compiler (default: nvcc on PATH); NVCC_FLAGS adds flags, e.g. -DCALIB_CUDA_TRACE.
        # `sh build.sh --check` compiles the kernel alone with warnings as errors and prints ptxas'
        # register and spill report on stderr; it links nothing, so it needs no CUDA runtime.
        set -eu
        cd "$(dirname "$0")"
        nvcc=${NVCC:-nvcc}
        flags="-O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -Xcompiler -fPIC -I include ${NVCC_FLAGS:-}"
        if [ "${1:-}" = --check ]; then
            obj=$(mktemp)
            trap 'rm -f "$obj"' EXIT
            "$nvcc" $flags -Xcompiler -Wall,-Wextra -Werror all-warnings -Xptxas -v -c calib_cuda.cu -o "$obj"
            exit 0
        fi
        "$nvcc" $flags -shared calib_cuda.cu calib_schedule.c -o libcalibcuda.so

        """

    /// The tables are C and are parsed by libclang; the CUDA sources are fixed files that
    /// `make cuda-check` compiles with nvcc for sm_90a.
    public func check(_ files: [GeneratedFile]) throws {
        try ClangCheck.check(files.filter { $0.path.hasSuffix(".c") || $0.path.hasSuffix(".h") && !$0.path.contains("cuda") },
                             language: "c", arguments: ["-std=c11"])
    }
}
