// IR → masks.json (format 1): one pattern per distinct plan, named by its first user, and
// one assignment per run of adjacent steps that share a plan, so repeated steps cost nothing.

import CalibIR
import CalibJSON
import Foundation

public enum MaskWriter {
    /// `progress(done, total)` is called as patterns and assignments are written.
    public static func json(_ program: Program, layout: Layout?, progress: (Int, Int) -> Void = { _, _ in }) -> String {
        let s = program.shape
        let blocks = s.blocks
        let denseRows = Array(repeating: Row.compute([Span(0, blocks)]), count: blocks)
        var out = "{\n  \"format\": 1,\n  \"model\": \(jsonQuoted(program.model)),\n"
        out += "  \"tokens\": \(s.tokens), \"head_dim\": \(s.headDim), \"block\": \(s.block),\n"
        out += "  \"layers\": \(s.layers), \"heads\": \(s.heads),\n"
        out += "  \"timesteps\": [\(s.steps.map(String.init).joined(separator: ", "))],\n"
        if !s.modelTimesteps.isEmpty {
            out += "  \"model_timesteps\": [\(s.modelTimesteps.map { "\($0)" }.joined(separator: ", "))],\n"
        }
        if let l = layout {
            out += "  \"layout\": {\"frames\": \(l.frames), \"height\": \(l.height), \"width\": \(l.width), "
            out += "\"text_tokens\": \(l.textTokens), \"text_position\": \"\(l.textFirst ? "first" : "last")\"},\n"
        }

        // Patterns by content, in order of first use.
        var nameOf: [[Row]: String] = [denseRows: "dense"]
        var patterns: [(String, Plan)] = []
        var used = Set(["dense"])
        for d in program.dispatch where nameOf[program.plans[d].rows] == nil {
            let plan = program.plans[d]
            var name = plan.name.isEmpty ? "p\(patterns.count)" : plan.name
            while used.contains(name) { name += "_" }
            used.insert(name)
            nameOf[plan.rows] = name
            patterns.append((name, plan))
        }
        out += "  \"patterns\": {"
        let total = patterns.count + s.layers
        out += patterns.enumerated().map { i, p in
            defer { if i % 64 == 63 { progress(i + 1, total) } }
            return "\n    \(jsonQuoted(p.0)): " + pattern(p.1)
        }.joined(separator: ",")
        progress(patterns.count, total)
        out += patterns.isEmpty ? "},\n" : "\n  },\n"

        var entries: [String] = []
        for layer in 0..<s.layers {
            defer { progress(patterns.count + layer + 1, total) }
            for head in 0..<s.heads {
                var i = 0
                while i < s.steps.count {
                    let name = nameOf[program.plan(stepIndex: i, layer: layer, head: head).rows]!
                    var j = i
                    while j + 1 < s.steps.count, nameOf[program.plan(stepIndex: j + 1, layer: layer, head: head).rows] == name { j += 1 }
                    let steps = i == j ? "\(s.steps[i])" : "\(s.steps[i])-\(s.steps[j])"
                    entries.append("{\"steps\": \"\(steps)\", \"layers\": \(layer), \"heads\": \(head), \"pattern\": \(jsonQuoted(name))}")
                    i = j + 1
                }
            }
        }
        out += "  \"assignments\": [\n    " + entries.joined(separator: ",\n    ") + "\n  ]\n}\n"
        return out
    }

    /// `rows` as ranges, one query block per line, or the base64 bitmap when that is shorter;
    /// reused blocks listed under `reuse`.
    static func pattern(_ plan: Plan) -> String {
        let blocks = plan.rows.count, stride = (blocks + 7) / 8
        let rangesLength = plan.rows.reduce(0) { $0 + 8 + 10 * $1.spans.count }
        if 4 * ((blocks * stride + 2) / 3) < rangesLength {
            var bytes = [UInt8](repeating: 0, count: blocks * stride)
            var reuse: [String] = []
            for (q, row) in plan.rows.enumerated() {
                if case .reuse(let source) = row { reuse.append("[\(q),\(source)]") }
                for span in row.spans {
                    for k in span.start..<span.end { bytes[q * stride + k / 8] |= 1 << UInt8(k % 8) }
                }
            }
            var out = "{\"bitmap\": \"\(Data(bytes).base64EncodedString())\""
            if !reuse.isEmpty { out += ", \"reuse\": [" + reuse.joined(separator: ",") + "]" }
            return out + "}"
        }
        var reuse: [String] = []
        let rows = plan.rows.enumerated().map { q, row -> String in
            switch row {
            case .compute(let spans): return "[" + spans.map { "[\($0.start),\($0.end)]" }.joined(separator: ",") + "]"
            case .reuse(let source):
                reuse.append("[\(q),\(source)]")
                return "[]"
            }
        }
        var out = "{\"rows\": [\n      " + rows.joined(separator: ",\n      ") + "]"
        if !reuse.isEmpty { out += ",\n      \"reuse\": [" + reuse.joined(separator: ",") + "]" }
        return out + "}"
    }
}
