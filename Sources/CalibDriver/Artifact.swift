// An artifact: one model's kernels for several token grids (480p and 720p, several frame counts),
// each compiled as a single masks file would be, in `<dir>/<shape>/`, and `shapes.json`, which
// the runtime reads to pick a call's kernels by its grid (docs/python.md, "Artifacts").

import CalibCodegen
import CalibFrontend
import CalibIR
import CalibJSON

public struct ArtifactError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

enum Artifact {
    static let shapesName = "shapes.json"

    /// The directory of a shape: its grid (frames × height × width, and text tokens) when the
    /// masks give one, else its token count.
    static func shapeName(_ shape: Shape, _ layout: Layout?) -> String {
        guard let l = layout else { return "tokens\(shape.tokens)" }
        return "\(l.frames)x\(l.height)x\(l.width)" + (l.textTokens > 0 ? "+\(l.textTokens)\(l.textFirst ? "first" : "last")" : "")
    }

    static func describeGrid(_ shape: Shape, _ layout: Layout?) -> String {
        guard let l = layout else { return "\(shape.tokens) tokens" }
        return "the grid \(l.frames) × \(l.height) × \(l.width)" + (l.textTokens > 0 ? " with \(l.textTokens) text tokens" : "") + " (\(shape.tokens) tokens)"
    }

    static func describe(_ shape: Shape) -> String {
        "\(shape.layers) layers × \(shape.heads) heads of head_dim \(shape.headDim)"
    }

    /// Whether a call could match both: the same token count where either lacks a grid (the
    /// runtime then picks by tokens alone).
    static func overlaps(_ a: Masks, _ b: Masks) -> Bool {
        a.program.shape.tokens == b.program.shape.tokens && (a.layout == nil || b.layout == nil)
    }

    /// What `checkDirectory` may find in an artifact calibc wrote before there was a manifest.
    static func outputNames(_ shapes: [String], _ target: any Target) -> [String] {
        shapes.flatMap { name in target.outputNames.map { name + "/" + $0 } } + [shapesName]
    }

    static func shapes(_ entries: [(name: String, masks: Masks)], _ programs: [Program], target: any Target, built: Bool) -> GeneratedFile {
        var lines: [String] = []
        for (entry, program) in zip(entries, programs) {
            var fields = ["\"dir\": \(jsonQuoted(entry.name))", "\"tokens\": \(program.shape.tokens)"]
            if let l = entry.masks.layout {
                fields += ["\"frames\": \(l.frames)", "\"height\": \(l.height)", "\"width\": \(l.width)",
                           "\"text_tokens\": \(l.textTokens)", "\"text_position\": \"\(l.textFirst ? "first" : "last")\""]
            }
            fields += ["\"library\": \(jsonQuoted(entry.name + "/" + target.libraryName))", "\"mask_sha256\": \"\(program.sourceHash)\""]
            lines.append("    {" + fields.joined(separator: ", ") + "}")
        }
        let first = programs[0].shape
        return GeneratedFile(path: shapesName, contents: """
            {
              "generator": "calibc",
              "target": "\(target.name)",
              "model": \(jsonQuoted(programs[0].model)),
              "layers": \(first.layers), "heads": \(first.heads), "head_dim": \(first.headDim),
              "shapes": [
            \(lines.joined(separator: ",\n"))
              ]
            }

            """)
    }

    static func manifest(_ files: [String], target: String) -> GeneratedFile {
        GeneratedFile(path: Codegen.manifestName, contents: """
            {
              "generator": "calibc",
              "target": "\(target)",
              "files": [\((files + [Codegen.manifestName]).sorted().map(jsonQuoted).joined(separator: ", "))]
            }

            """)
    }
}
