// Writes generated files so that the output directory is, at every instant, either the old
// complete set or the new one: everything goes to a sibling staging directory (manifest first),
// which then trades places with the old directory in one rename (Linux's RENAME_EXCHANGE).
// Leftovers of a killed compile are removed by the next one only when their contents prove
// that calibc wrote them.

import Foundation

public enum OutputWriter {
    /// Replaces `dir` with the files. `OutputPaths.checkDirectory`
    /// decides whether `dir` may be replaced (never an input's directory, the current directory
    /// or above it; only calibc's own files, or with `force` a directory of calibc's file names
    /// without a manifest). `finish` runs on the complete staging directory before it is moved
    /// into place (to build in it). The manifest (`Codegen.manifestName`) must be among the files.
    public static func write(_ files: [GeneratedFile], to dir: String, force: Bool, inputs: [String] = [],
                             generated: [String]? = nil, finish: (String) throws -> Void = { _ in }) throws {
        let fm = FileManager.default
        try OutputPaths.checkDirectory(dir, inputs: inputs, generated: generated ?? files.map(\.path), force: force)
        let target = URL(fileURLWithPath: OutputPaths.resolve(dir))
        let pid = ProcessInfo.processInfo.processIdentifier
        let staging = Leftovers.name(of: target, kind: .staging, pid: pid)
        let retired = Leftovers.name(of: target, kind: .retired, pid: pid)
        do {
            // A leftover may be an old set that goes back into place: check what is there now.
            if try Leftovers.clear(near: target) {
                try OutputPaths.checkDirectory(dir, inputs: inputs, generated: generated ?? files.map(\.path), force: force)
            }
            let exists = fm.fileExists(atPath: target.path)
            // The manifest goes first, so a staging directory killed at any point holds only
            // files its manifest names: the proof Leftovers.clear asks for.
            let ordered = files.filter { $0.path == Codegen.manifestName } + files.filter { $0.path != Codegen.manifestName }
            try step { try fm.createDirectory(at: staging, withIntermediateDirectories: true) }
            for file in ordered {
                let url = staging.appendingPathComponent(file.path)
                try step { try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true) }
                try step { try Data(file.contents.utf8).write(to: url) }
            }
            try step { try finish(staging.path) }
            if !exists {
                try step { try rename(staging, target) }
            } else if try step({ try exchange(staging, target) }) {
                try step { try fm.removeItem(at: staging) }  // now the old set
            } else {
                // No atomic exchange on this file system: the path is absent between these two
                // renames, and a compile killed there is restored by the next (Leftovers.clear).
                try step { try rename(target, retired) }
                try step { try rename(staging, target) }
                try step { try fm.removeItem(at: retired) }
            }
        } catch let error as CodegenError {
            try? fm.removeItem(at: staging)
            throw error
        } catch {
            try? fm.removeItem(at: staging)
            throw CodegenError(message: "\(dir): could not write the output: \(OutputPaths.describe(error))")
        }
    }

    /// Every file-system step of a write goes through here. CALIBC_KILL_AT_STEP=n (a test hook,
    /// Tests/CalibCodegenTests) kills the process before step n, so a test can stop a compile at
    /// each step in turn.
    @discardableResult
    static func step<R>(_ body: () throws -> R) rethrows -> R {
        stepsTaken += 1
        if stepsTaken == killAtStep { kill(getpid(), SIGKILL) }
        return try body()
    }

    nonisolated(unsafe) private static var stepsTaken = 0
    private static let killAtStep = ProcessInfo.processInfo.environment["CALIBC_KILL_AT_STEP"].flatMap { Int($0) }

    static func rename(_ from: URL, _ to: URL) throws {
        guard Foundation.rename(from.path, to.path) == 0 else {
            throw CodegenError(message: "\(to.path): could not move the output into place: \(String(cString: strerror(errno)))")
        }
    }

    /// Swaps two directories in one rename; false where the file system cannot.
    static func exchange(_ a: URL, _ b: URL) throws -> Bool {
        guard let renameat2 else { return false }
        if renameat2(AT_FDCWD, a.path, AT_FDCWD, b.path, 2 /* RENAME_EXCHANGE */) == 0 { return true }
        if errno == EINVAL || errno == ENOSYS || errno == ENOTSUP { return false }
        throw CodegenError(message: "\(b.path): could not move the output into place: \(String(cString: strerror(errno)))")
    }

    /// glibc 2.28's renameat2, looked up at run time (Swift's Glibc module does not declare it).
    private static let renameat2: (@convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32)? = {
        guard let symbol = dlsym(nil /* RTLD_DEFAULT */, "renameat2") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32).self)
    }()
}

/// Where a build in the staging directory puts its compiler's temporary files (TMPDIR), so that
/// a killed build leaves them inside what the next compile clears.
public let buildTemporaries = ".calibc-tmp"

/// The siblings a compile of `<dir>` stages in: `.<dir>.calibc-new-<pid>` (the new set; after an
/// exchange, the old one) and `.<dir>.calibc-old-<pid>` (the old set between the two renames of
/// file systems without an exchange).
enum Leftovers {
    enum Kind: String { case staging = "new", retired = "old" }

    static func name(of target: URL, kind: Kind, pid: Int32) -> URL {
        target.deletingLastPathComponent().appendingPathComponent(".\(target.lastPathComponent).calibc-\(kind.rawValue)-\(pid)")
    }

    /// The leftovers of killed compiles of `target`, where their process is gone and everything
    /// in them is calibc's: an old set parked between renames goes back into place if the path
    /// is absent; any other is deleted. Everything in it is calibc's when it is (empty, or only files its calibc manifest names, or
    /// an empty manifest alone: a kill between creating the manifest and writing it; a build's
    /// temporaries below `buildTemporaries`). Anything
    /// else is left where it is.
    /// Returns whether an old set went back into place.
    @discardableResult
    static func clear(near target: URL) throws -> Bool {
        let fm = FileManager.default
        let parent = target.deletingLastPathComponent()
        let prefix = ".\(target.lastPathComponent).calibc-"
        let names = ((try? fm.contentsOfDirectory(atPath: parent.path)) ?? []).filter { $0.hasPrefix(prefix) }.sorted()
        var restored = false
        for name in names {
            let rest = name.dropFirst(prefix.count).split(separator: "-", omittingEmptySubsequences: false)
            guard rest.count == 2, let kind = Kind(rawValue: String(rest[0])), let pid = Int32(rest[1]), pid > 0,
                  String(pid) == rest[1], kill(pid, 0) != 0, errno == ESRCH else { continue }
            let url = parent.appendingPathComponent(name)
            guard provablyOurs(url) else { continue }
            if kind == .retired, !fm.fileExists(atPath: target.path) {
                try OutputWriter.step { try OutputWriter.rename(url, target) }
                restored = true
                continue
            }
            try OutputWriter.step { try fm.removeItem(at: url) }
        }
        return restored
    }

    static func provablyOurs(_ dir: URL) -> Bool {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDir), isDir.boolValue,
              let present = try? OutputPaths.files(in: dir.path, shown: dir.path) else { return false }
        if present.isEmpty { return true }
        let manifest = dir.appendingPathComponent(Codegen.manifestName).path
        if present == [Codegen.manifestName] {
            let size = (try? FileManager.default.attributesOfItem(atPath: manifest))?[.size] as? Int
            if size == 0 { return true }
        }
        guard let listed = OutputPaths.manifestFiles(dir.path) else { return false }
        let ours = Set(listed + [Codegen.manifestName])
        return present.allSatisfy { ours.contains($0) || $0.hasPrefix(buildTemporaries + "/") }
    }
}
