// The plans and dispatch table as static C tables. Rows are pooled across plans (a row is a
// list of key spans, and plans of one head type share most of theirs), so the tables grow
// with the unique rows plus one row id and one order entry per query block of each unique
// plan; the kernel code does not grow at all.

import CalibIR

enum ScheduleSource {
    static func tables(_ program: Program, banner: String) -> String {
        var out = banner + "\n#include \"calib_internal.h\"\n\n"
        out += "const char calib_model[] = \(cString(program.model));\n"
        out += "const char calib_mask_sha256[] = \"\(program.sourceHash)\";\n"
        out += "const int32_t calib_steps[CALIB_STEPS] = {\(program.shape.steps.map(String.init).joined(separator: ","))};\n"

        // The row pool, in order of first use.
        var rowID: [[Span]: Int] = [:]
        var pool: [[Span]] = []
        for plan in program.plans {
            for row in plan.rows where !row.spans.isEmpty && rowID[row.spans] == nil {
                rowID[row.spans] = pool.count
                pool.append(row.spans)
            }
        }
        out += "\n/* \(pool.count) distinct rows: row r keeps key blocks calib_spans[2i] ..< calib_spans[2i+1] for i in calib_row_first[r] ..< calib_row_first[r+1] */\n"
        out += array("const int32_t calib_row_first[]", pool.reduce(into: [0]) { $0.append($0.last! + $1.count) }, isStatic: false)
        out += array("const uint16_t calib_spans[]", pool.flatMap { $0.flatMap { [$0.start, $0.end] } }, isStatic: false)

        let blocks = program.shape.blocks
        for (i, plan) in program.plans.enumerated() {
            let tiles = blocks * blocks
            out += "\n/* plan \(i) @\(plan.name): \(plan.computeRows.count) computed rows, \(plan.reusedRows.count) reused, "
            out += "\(plan.cost) of \(tiles) tiles (density \(formatDensity(Double(plan.cost) / Double(tiles)))) */\n"
            out += array("static const \(KernelSource.rowType(pool.count)) p\(i)_rows[]", plan.rows.map { rowID[$0.spans] ?? 0 })
            out += array("static const uint16_t p\(i)_order[]", plan.order ?? plan.computeRows)
            out += array("static const int32_t p\(i)_parts[]", plan.parts ?? [0, plan.computeRows.count])
            let reuse = plan.rows.enumerated().compactMap { q, row -> (Int, Int)? in
                if case .reuse(let source) = row { return (source, q) } else { return nil }
            }.sorted { $0 < $1 }
            out += array("static const int32_t p\(i)_reuse[]", reuse.flatMap { [$0.0, $0.1] })
        }
        out += "\nconst calib_plan calib_plans[CALIB_PLANS] = {\n"
        for (i, plan) in program.plans.enumerated() {
            out += "    {p\(i)_rows, p\(i)_order, p\(i)_parts, p\(i)_reuse, \(plan.reusedRows.count)},\n"
        }
        out += "};\n\n"
        out += "/* plan index of (step, layer, head), step-major */\n"
        out += array("const \(KernelSource.dispatchType(program)) calib_dispatch[CALIB_STEPS * CALIB_LAYERS * CALIB_HEADS]", program.dispatch, isStatic: false)
        return out
    }

    /// Empty C arrays are not allowed; an empty list still gets one element.
    private static func array(_ declaration: String, _ values: [Int], isStatic: Bool = true) -> String {
        var out = declaration + " = {\n"
        let list = values.isEmpty ? [0] : values
        for chunk in stride(from: 0, to: list.count, by: 24) {
            out += "    " + list[chunk..<min(chunk + 24, list.count)].map(String.init).joined(separator: ",") + ",\n"
        }
        return out + "};\n"
    }
}

func formatDensity(_ x: Double) -> String {
    let scaled = Int((x * 10000).rounded())
    let frac = String(scaled % 10000)
    return "\(scaled / 10000)." + String(repeating: "0", count: 4 - frac.count) + frac
}

func cString(_ s: String) -> String {
    var out = "\""
    for b in s.utf8 {
        switch b {
        case UInt8(ascii: "\""): out += "\\\""
        case UInt8(ascii: "\\"): out += "\\\\"
        case 0x20..<0x7f where b != UInt8(ascii: "?"): out.unicodeScalars.append(Unicode.Scalar(b))
        default: out += "\\" + String(b, radix: 8).leftPadded(to: 3)
        }
    }
    return out + "\""
}

extension String {
    func leftPadded(to n: Int) -> String { String(repeating: "0", count: max(0, n - count)) + self }
}
