// Writes generated files so that the output directory is always either the old complete
// set or the new one: everything goes to a sibling temp directory first, then renames.

import Foundation

public enum OutputWriter {
    /// Replaces `dir` with the files. `OutputPaths.checkDirectory`
    /// decides whether `dir` may be replaced (never an input's directory, the current directory
    /// or above it; only calibc's own files, or with `force` a directory of calibc's file names
    /// without a manifest). `finish` runs on the complete staging directory before it is moved
    /// into place (to build in it).
    public static func write(_ files: [GeneratedFile], to dir: String, force: Bool, inputs: [String] = [],
                             generated: [String]? = nil, finish: (String) throws -> Void = { _ in }) throws {
        let fm = FileManager.default
        try OutputPaths.checkDirectory(dir, inputs: inputs, generated: generated ?? files.map(\.path), force: force)
        let target = URL(fileURLWithPath: OutputPaths.resolve(dir))
        let exists = fm.fileExists(atPath: target.path)

        let parent = target.deletingLastPathComponent()
        let pid = ProcessInfo.processInfo.processIdentifier
        removeAbandoned(near: target)
        let staging = parent.appendingPathComponent(".\(target.lastPathComponent).calibc-new-\(pid)")
        let retired = parent.appendingPathComponent(".\(target.lastPathComponent).calibc-old-\(pid)")
        try? fm.removeItem(at: staging)
        do {
            try fm.createDirectory(at: staging, withIntermediateDirectories: true)
            for file in files {
                let url = staging.appendingPathComponent(file.path)
                try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                try Data(file.contents.utf8).write(to: url)
            }
            try finish(staging.path)
            if exists { try fm.moveItem(at: target, to: retired) }
            try fm.moveItem(at: staging, to: target)
            if exists { try fm.removeItem(at: retired) }
        } catch let error as CodegenError {
            try? fm.removeItem(at: staging)
            throw error
        } catch {
            try? fm.removeItem(at: staging)
            throw CodegenError(message: "\(dir): could not write the output: \(OutputPaths.describe(error))")
        }
    }

    /// Staging directories of compiles that were killed before their rename: their process is gone.
    private static func removeAbandoned(near target: URL) {
        let parent = target.deletingLastPathComponent()
        let prefix = ".\(target.lastPathComponent).calibc-"
        for name in (try? FileManager.default.contentsOfDirectory(atPath: parent.path)) ?? [] where name.hasPrefix(prefix) {
            guard let pid = Int32(name.split(separator: "-").last ?? ""), kill(pid, 0) != 0, errno == ESRCH else { continue }
            try? FileManager.default.removeItem(at: parent.appendingPathComponent(name))
        }
    }
}
