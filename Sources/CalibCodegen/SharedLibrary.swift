// Builds a generated directory into a shared library with the same C ABI as the SwiftPM
// target, for callers outside Swift (ctypes) and for tests that load many variants.

import Foundation

public enum SharedLibrary {
    /// What `calibc compile --shared` builds inside the output directory.
    public static let fileName = "libcalibkernels.so"

    /// The flags the root Package.swift gives the CalibKernels target, plus what a shared object needs.
    /// `extra` follows `-march=native`, so `-mno-avx512f` selects the kernels' portable loops.
    public static func arguments(sourceDir: String, output: String, extra: [String] = []) -> [String] {
        ["clang", "-std=c11", "-O3", "-march=native"] + extra + ["-fopenmp", "-idirafter", Toolchain.ompInclude,
         "-I", sourceDir + "/include", "-shared", "-fPIC", "-Wl,-Bsymbolic",
         sourceDir + "/calib_kernels.c", sourceDir + "/calib_schedule.c",
         "-o", output, "-L", Toolchain.ompLib, "-lomp", "-Wl,-rpath," + Toolchain.ompLib]
    }

    public static func build(sourceDir: String, output: String, extra: [String] = []) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments(sourceDir: sourceDir, output: output, extra: extra)
        let pipe = Pipe()
        process.standardError = pipe
        process.standardOutput = pipe
        try process.run()
        let log = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw CodegenError(message: "building \(output) failed:\n\(log)")
        }
    }
}
