// The plans and dispatch table as static C tables: their size scales with the number of
// unique plans, the kernel code with nothing but the shape.

import CalibIR

enum ScheduleSource {
    static func tables(_ program: Program, banner: String) -> String {
        var out = banner + "\n#include \"calib_internal.h\"\n\n"
        out += "const char calib_model[] = \(cString(program.model));\n"
        out += "const char calib_mask_sha256[] = \"\(program.sourceHash)\";\n"
        out += "const int32_t calib_steps[CALIB_STEPS] = {\(program.shape.steps.map(String.init).joined(separator: ", "))};\n"
        let blocks = program.shape.blocks
        for (i, plan) in program.plans.enumerated() {
            let tiles = blocks * blocks
            let density = Double(plan.cost) / Double(tiles)
            out += "\n/* plan \(i) @\(plan.name): \(plan.computeRows.count) computed rows, \(plan.reusedRows.count) reused, "
            out += "\(plan.cost) of \(tiles) tiles (density \(formatDensity(density))) */\n"
            var spans: [Int] = []
            var rowSpan = [0]
            var reusers = [[Int]](repeating: [], count: plan.rows.count)
            for (q, row) in plan.rows.enumerated() {
                switch row {
                case .compute(let s): spans += s.flatMap { [$0.start, $0.end] }
                case .reuse(let source): reusers[source].append(q)
                }
                rowSpan.append(spans.count / 2)
            }
            let targetFirst = reusers.reduce(into: [0]) { $0.append($0.last! + $1.count) }
            out += array("p\(i)_spans", spans)
            out += array("p\(i)_row_span", rowSpan)
            out += array("p\(i)_order", plan.order ?? plan.computeRows)
            out += array("p\(i)_parts", plan.parts ?? [0, plan.computeRows.count])
            out += array("p\(i)_target_first", targetFirst)
            out += array("p\(i)_targets", reusers.flatMap { $0 })
        }
        out += "\nconst calib_plan calib_plans[CALIB_PLANS] = {\n"
        for (i, plan) in program.plans.enumerated() {
            out += "    {p\(i)_spans, p\(i)_row_span, p\(i)_order, p\(i)_parts, p\(i)_target_first, p\(i)_targets},\n"
        }
        out += "};\n\n"
        out += "/* plan index of (step, layer, head), step-major */\n"
        out += "const \(KernelSource.dispatchType(program)) calib_dispatch[CALIB_STEPS * CALIB_LAYERS * CALIB_HEADS] = {\n"
        out += numbers(program.dispatch) + "};\n"
        return out
    }

    /// Empty C arrays are not allowed; a plan without reused rows still gets one element.
    private static func array(_ name: String, _ values: [Int]) -> String {
        "static const int32_t \(name)[] = {\n" + numbers(values.isEmpty ? [0] : values) + "};\n"
    }

    private static func numbers(_ values: [Int]) -> String {
        var out = ""
        for chunk in stride(from: 0, to: values.count, by: 16) {
            out += "    " + values[chunk..<min(chunk + 16, values.count)].map { "\($0)," }.joined(separator: " ") + "\n"
        }
        return out
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
