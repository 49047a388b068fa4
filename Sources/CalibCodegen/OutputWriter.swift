// Writes generated files so that the output directory is always either the old complete
// set or the new one: everything goes to a sibling temp directory first, then renames.

import Foundation

public enum OutputWriter {
    /// Replaces `dir` with the files. A directory calibc did not
    /// write (no manifest, not empty) is only replaced with `force`. `finish` runs on the
    /// complete staging directory before it is moved into place (to build in it).
    public static func write(_ files: [GeneratedFile], to dir: String, force: Bool,
                             finish: (String) throws -> Void = { _ in }) throws {
        let fm = FileManager.default
        let target = URL(fileURLWithPath: dir).standardizedFileURL
        var isDir: ObjCBool = false
        let exists = fm.fileExists(atPath: target.path, isDirectory: &isDir)
        if exists {
            guard isDir.boolValue else { throw CodegenError(message: "\(dir): exists and is not a directory") }
            let ours = fm.fileExists(atPath: target.appendingPathComponent(Codegen.manifestName).path)
            let empty = (try? fm.contentsOfDirectory(atPath: target.path).isEmpty) ?? false
            guard ours || empty || force else {
                throw CodegenError(message: "\(dir): refusing to replace a directory calibc did not write (no \(Codegen.manifestName)); pass --force to replace it")
            }
        }

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
            throw CodegenError(message: "\(dir): could not write the output: \(error.localizedDescription)")
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
