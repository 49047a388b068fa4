// The rules every calibc output path obeys, checked before any long work starts:
//
// - never delete or overwrite an input, the current directory or any directory above it
//   (`-o ""` from an unset shell variable, `-o .`, `-o ..`, the input's own directory);
// - a directory output is replaced only when everything in it is calibc's: the files its
//   `calibc-manifest.json` names (and the manifest), or, with `--force` and no manifest, only
//   files with the names calibc writes. Anything else is named in the error and left alone;
// - errors say what is wrong in words (no NSCocoaErrorDomain codes).

import Foundation

public struct OutputPathError: Error, CustomStringConvertible, Equatable {
    public var message: String
    public var description: String { message }
    public init(message: String) { self.message = message }
}

public enum OutputPaths {
    /// `path` made absolute with symbolic links resolved as far as the path exists, and `.`
    /// and `..` removed from the rest.
    public static func resolve(_ path: String) -> String {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        var components = absolute.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        var rest: [String] = []
        var base = "/"
        while true {
            let candidate = "/" + components.joined(separator: "/")
            if let real = realpath(candidate, nil) {
                base = String(cString: real)
                free(real)
                break
            }
            guard let last = components.popLast() else { break }
            rest.insert(last, at: 0)
        }
        var parts = base.split(separator: "/").map(String.init)
        for c in rest {
            switch c {
            case ".": continue
            case "..": _ = parts.popLast()
            default: parts.append(c)
            }
        }
        return "/" + parts.joined(separator: "/")
    }

    /// Whether `inner` is `outer` or lies below it (both resolved).
    static func contains(_ outer: String, _ inner: String) -> Bool {
        outer == inner || outer == "/" || inner.hasPrefix(outer + "/")
    }

    /// The checks common to files and directories: not empty, not the current directory or
    /// above it.
    private static func checkCommon(_ path: String) throws -> String {
        guard !path.isEmpty else {
            throw OutputPathError(message: "the output path is empty (an unset shell variable?); give -o a file or directory name")
        }
        let target = resolve(path)
        let cwd = resolve(FileManager.default.currentDirectoryPath)
        if contains(target, cwd) {
            throw OutputPathError(message: "\(path): is the current directory or a directory above it; calibc will not replace it")
        }
        return target
    }

    /// A directory that `compile` will replace as a whole with the files at `generated` (paths
    /// relative to it; a target's `outputNames`). Returns normally when replacing it loses
    /// nothing that is not calibc's.
    public static func checkDirectory(_ dir: String, inputs: [String], generated: [String], force: Bool) throws {
        let target = try checkCommon(dir)
        for input in inputs where contains(target, resolve(input)) {
            throw OutputPathError(message: "\(dir): holds the input \(input); calibc will not replace it")
        }
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: target, isDirectory: &isDir) else { return }
        guard isDir.boolValue else { throw OutputPathError(message: "\(dir): exists and is not a directory") }
        let present = try files(in: target, shown: dir)
        if present.isEmpty { return }
        let manifest = manifestFiles(target)
        let ours = Set((manifest ?? generated) + [Codegen.manifestName])
        let others = present.filter { !ours.contains($0) }
        if !others.isEmpty {
            let shown = others.prefix(5).joined(separator: ", ") + (others.count > 5 ? ", and \(others.count - 5) more" : "")
            throw OutputPathError(message: "\(dir): holds files calibc did not write (\(shown)); move them away or choose another directory")
        }
        if manifest == nil, !force {
            throw OutputPathError(message: "\(dir): refusing to replace a directory calibc did not write (no \(Codegen.manifestName)); pass --force to replace it")
        }
    }

    /// A single output file (`calibrate -o`, `synth --masks -o`), written atomically later.
    public static func checkFile(_ path: String, inputs: [String]) throws {
        let target = try checkCommon(path)
        for input in inputs where resolve(input) == target || sameFile(input, path) {
            throw OutputPathError(message: "\(path): is also an input; calibc will not overwrite its input")
        }
        let fm = FileManager.default
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: target, isDirectory: &isDir) {
            guard !isDir.boolValue else { throw OutputPathError(message: "\(path): is a directory; give a file name") }
            var st = stat()
            guard stat(target, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
                throw OutputPathError(message: "\(path): exists and is not a regular file")
            }
        }
        let parent = (target as NSString).deletingLastPathComponent
        guard fm.fileExists(atPath: parent, isDirectory: &isDir), isDir.boolValue else {
            throw OutputPathError(message: "\(path): the directory \(parent) does not exist")
        }
        guard access(parent, W_OK) == 0 else {
            throw OutputPathError(message: "\(path): cannot write into \(parent): \(String(cString: strerror(errno)))")
        }
    }

    /// A directory that receives new files beside what is there (`synth -o <dir>`).
    public static func checkFilesDirectory(_ dir: String) throws {
        guard !dir.isEmpty else {
            throw OutputPathError(message: "the output path is empty (an unset shell variable?); give -o a directory name")
        }
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: resolve(dir), isDirectory: &isDir), !isDir.boolValue {
            throw OutputPathError(message: "\(dir): exists and is not a directory")
        }
    }

    /// Writes `data` to `path` atomically; a failure is described in words.
    public static func write(_ data: Data, to path: String) throws {
        do {
            try data.write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw OutputPathError(message: "\(path): could not write the output: \(describe(error))")
        }
    }

    /// A file-system error as a person reads it: the POSIX reason when there is one.
    public static func describe(_ error: Error) -> String {
        let ns = error as NSError
        var e: NSError? = ns
        while let current = e {
            if current.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(current.code))) }
            e = current.userInfo[NSUnderlyingErrorKey] as? NSError
        }
        if ns.domain == NSCocoaErrorDomain {
            switch CocoaError.Code(rawValue: ns.code) {
            case .fileNoSuchFile, .fileReadNoSuchFile: return "No such file or directory"
            case .fileWriteNoPermission, .fileReadNoPermission: return "Permission denied"
            case .fileWriteOutOfSpace: return "No space left on device"
            case .fileWriteVolumeReadOnly: return "Read-only file system"
            case .fileWriteFileExists: return "File exists"
            default: break
            }
        }
        return ns.localizedDescription
    }

    /// Paths of every non-directory entry below `dir`, relative to it, sorted.
    static func files(in dir: String, shown: String) throws -> [String] {
        let fm = FileManager.default
        guard let names = try? fm.subpathsOfDirectory(atPath: dir) else {
            throw OutputPathError(message: "\(shown): cannot list the directory")
        }
        return names.filter { name in
            var isDir: ObjCBool = false
            // A symbolic link counts as a file (replacing the directory deletes the link, not its target).
            let attributes = try? fm.attributesOfItem(atPath: dir + "/" + name)
            if (attributes?[.type] as? FileAttributeType) == .typeSymbolicLink { return true }
            return !(fm.fileExists(atPath: dir + "/" + name, isDirectory: &isDir) && isDir.boolValue)
        }.sorted()
    }

    /// The files a calibc manifest in `dir` names, or nil when there is none (or it is not one).
    static func manifestFiles(_ dir: String) -> [String]? {
        guard let data = FileManager.default.contents(atPath: dir + "/" + Codegen.manifestName),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              object["generator"] as? String == "calibc", let files = object["files"] as? [String] else { return nil }
        return files
    }

    private static func sameFile(_ a: String, _ b: String) -> Bool {
        var sa = stat(), sb = stat()
        guard stat(a, &sa) == 0, stat(b, &sb) == 0 else { return false }
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
    }
}
