// The kernels' home: kernels/include (the C ABI both targets share, seen by Swift as CCalibABI),
// kernels/cpu and kernels/cuda. They are real C and CUDA files, built and tested as such; the
// targets copy them into an output directory through this one reader, and nothing else in the
// package reads the folder.

import Foundation

public struct KernelSourceError: Error, CustomStringConvertible {
    public var path: String
    public var description: String {
        "calibc is incomplete: its kernel source kernels/\(path) is missing (install the calibc_CalibKernelSources.resources folder beside the binary)"
    }
}

public enum KernelSources {
    /// The text of kernels/<path>.
    public static func text(_ path: String) throws -> String {
        guard let root = Bundle.module.url(forResource: "kernels", withExtension: nil),
              let data = FileManager.default.contents(atPath: root.appendingPathComponent(path).path) else {
            throw KernelSourceError(path: path)
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// The ABI version a header of kernels/include defines as `macro` (0 when it cannot be read).
    public static func abiVersion(header: String, macro: String) -> Int {
        let prefix = "#define \(macro) "
        for line in ((try? text("include/" + header)) ?? "").split(separator: "\n") where line.hasPrefix(prefix) {
            return Int(line.dropFirst(prefix.count).prefix { $0.isNumber }) ?? 0
        }
        return 0
    }

    /// The LLVM 14 paths of kernels/llvm.mk (`NAME = value` lines), by name.
    public static let llvm: [String: String] = {
        var settings: [String: String] = [:]
        for line in ((try? text("llvm.mk")) ?? "").split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.count == 2 { settings[parts[0]] = parts[1] }
        }
        return settings
    }()
}
