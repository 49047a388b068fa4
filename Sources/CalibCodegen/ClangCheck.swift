// Every emitted C file is parsed by libclang before anything is written: a diagnostic in
// generated code is a compiler bug, reported with its location rather than shipped. libclang is
// opened at run time (CClang), so a calibc without LLVM beside it still compiles, and says so.

internal import CClang
import CalibKernelSources
import Foundation

public enum Toolchain {
    /// Debian 12's libomp-dev (LLVM 14): omp.h and the runtime the toolchain's clang links
    /// (kernels/llvm.mk of CalibKernelSources).
    public static let ompInclude = KernelSources.llvm["OMP_INCLUDE"] ?? ""
    public static let ompLib = KernelSources.llvm["LLVM_LIB"] ?? ""
}

/// The check could not run: libclang is not installed here. The files are sound or not as
/// before; the driver says, once, that they were written unchecked.
public struct CheckUnavailable: Error {
    public let reason: String
}

enum ClangCheck {
    /// Parses each `.c` file of `files` with warnings on, as if the files lay in one directory
    /// (with `include/` on the include path).
    static func check(_ files: [GeneratedFile], language: String, arguments: [String]) throws {
        var why: UnsafePointer<CChar>?
        guard let lib = calib_libclang_open(&why)?.pointee else {
            throw CheckUnavailable(reason: "libclang-14 could not be opened (\(why.map { String(cString: $0) } ?? "unknown"); "
                                   + "Debian's libclang1-14 provides it)")
        }
        let root = "/calibc-check"
        let index = lib.createIndex(0, 0)
        defer { lib.disposeIndex(index) }
        let paths = files.map { root + "/" + $0.path }
        let args = ["-x", language] + arguments + ["-Wall", "-Wextra", "-Wpedantic", "-I", root, "-I", root + "/include"]
        try withCStrings(paths + files.map(\.contents) + args) { cs in
            let names = Array(cs[0..<files.count])
            let bodies = Array(cs[files.count..<(2 * files.count)])
            var argv: [UnsafePointer<CChar>?] = Array(cs[(2 * files.count)...]).map { UnsafePointer($0) }
            var unsaved = (0..<files.count).map { i in
                CXUnsavedFile(Filename: names[i], Contents: bodies[i], Length: UInt(files[i].contents.utf8.count))
            }
            for (i, file) in files.enumerated() where file.path.hasSuffix(".c") {
                var unit: CXTranslationUnit?
                let err = argv.withUnsafeMutableBufferPointer { a in
                    unsaved.withUnsafeMutableBufferPointer { u in
                        lib.parseTranslationUnit2(index, names[i], a.baseAddress, Int32(a.count), u.baseAddress,
                                                    UInt32(u.count), CXTranslationUnit_None.rawValue, &unit)
                    }
                }
                guard err == CXError_Success, let unit else {
                    throw CodegenError(message: "internal error: libclang could not parse generated \(file.path) (error \(err.rawValue))")
                }
                defer { lib.disposeTranslationUnit(unit) }
                var problems: [String] = []
                for d in 0..<lib.getNumDiagnostics(unit) {
                    let diag = lib.getDiagnostic(unit, d)
                    defer { lib.disposeDiagnostic(diag) }
                    guard lib.getDiagnosticSeverity(diag).rawValue >= CXDiagnostic_Warning.rawValue else { continue }
                    let text = lib.formatDiagnostic(diag, lib.defaultDiagnosticDisplayOptions())
                    problems.append(String(cString: lib.getCString(text)!))
                    lib.disposeString(text)
                }
                if !problems.isEmpty {
                    throw CodegenError(message: "internal error: libclang rejects generated code:\n" + problems.joined(separator: "\n"))
                }
            }
        }
    }

    private static func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>]) throws -> R) rethrows -> R {
        let cs = strings.map { strdup($0)! }
        defer { cs.forEach { free($0) } }
        return try body(cs)
    }
}
