// The tables every target reads: the plans and dispatch table as static C arrays, the contract
// between the compiler and each target's kernels. Rows are pooled across plans (a row is a
// list of key spans, and plans of one head type share most of theirs), so the tables grow
// with the unique rows plus one row id and one order entry per query block of each unique
// plan; the kernel code does not grow at all.

import CalibIR
import CalibPasses

enum Tables {
    /// calib_internal.h: the shape as macros and the declarations of the tables, for every target.
    static func header(_ program: Program, banner: String) -> String {
        let s = program.shape
        let rows = pool(program).count
        return """
        \(banner)
        #ifndef CALIB_INTERNAL_H
        #define CALIB_INTERNAL_H

        #include <stdint.h>

        #define CALIB_TOKENS \(s.tokens)
        #define CALIB_HEAD_DIM \(s.headDim)
        #define CALIB_BLOCK \(s.block)
        #define CALIB_BLOCKS \(s.blocks)
        #define CALIB_LAYERS \(s.layers)
        #define CALIB_HEADS \(s.heads)
        #define CALIB_STEPS \(s.steps.count)
        #define CALIB_PLANS \(program.plans.count)
        /* Joint text–video attention: text tokens in the sequence, and whether they come first. */
        #define CALIB_TEXT_TOKENS \(s.textTokens)
        #define CALIB_TEXT_FIRST \(s.textFirst ? 1 : 0)

        /* One plan: the pooled row (key spans) of each query block; the compute rows in locality
         * order, cut into chunks given as (first, end) pairs into `order`, heaviest chunk first;
         * reused blocks as (source, target) pairs sorted by source. */
        typedef struct calib_plan {
            const \(rowType(rows)) *rows;
            const uint16_t *order;
            const int32_t *chunks;
            int32_t chunk_count;
            const int32_t *reuse;
            int32_t reuse_count;
        } calib_plan;

        #if defined(__GNUC__) && !defined(__CUDACC__)
        #define CALIB_HIDDEN __attribute__((visibility("hidden")))
        #else
        #define CALIB_HIDDEN
        #endif

        #ifdef __cplusplus
        extern "C" {
        #endif
        extern const int32_t calib_row_first[] CALIB_HIDDEN;
        extern const uint16_t calib_spans[] CALIB_HIDDEN;
        extern const calib_plan calib_plans[CALIB_PLANS] CALIB_HIDDEN;
        extern const calib_plan calib_dense_plan CALIB_HIDDEN; /* every tile: the baseline */
        extern const \(dispatchType(program)) calib_dispatch[CALIB_STEPS * CALIB_LAYERS * CALIB_HEADS] CALIB_HIDDEN;
        extern const int32_t calib_steps[CALIB_STEPS] CALIB_HIDDEN;
        extern const float calib_timesteps[CALIB_STEPS] CALIB_HIDDEN;
        extern const char calib_model[] CALIB_HIDDEN;
        extern const char calib_mask_sha256[] CALIB_HIDDEN;
        #ifdef __cplusplus
        }
        #endif

        #endif

        """
    }

    /// The distinct rows (span lists) in order of first use; the dense row comes last.
    static func pool(_ program: Program) -> [[Span]] {
        var seen: Set<[Span]> = []
        var pool: [[Span]] = []
        for plan in program.plans {
            for row in plan.rows where !row.spans.isEmpty && seen.insert(row.spans).inserted { pool.append(row.spans) }
        }
        let dense = [Span(0, program.shape.blocks)]
        if seen.insert(dense).inserted { pool.append(dense) }
        return pool
    }

    static func rowType(_ rows: Int) -> String { rows <= Int(UInt16.max) ? "uint16_t" : "int32_t" }

    static func dispatchType(_ program: Program) -> String {
        program.plans.count <= Int(UInt16.max) ? "uint16_t" : "int32_t"
    }

    /// calib_schedule.c: the plans and dispatch table as static C tables.
    static func source(_ program: Program, banner: String) -> String {
        var out = banner + "\n#include \"calib_internal.h\"\n\n"
        out += "const char calib_model[] = \(cString(program.model));\n"
        out += "const char calib_mask_sha256[] = \"\(program.sourceHash)\";\n"
        out += "const int32_t calib_steps[CALIB_STEPS] = {\(program.shape.steps.map(String.init).joined(separator: ","))};\n"
        // Float's description reads back to the same float, so the C literal is exact.
        out += "const float calib_timesteps[CALIB_STEPS] = {\(program.shape.callTimesteps.map { "\($0)f" }.joined(separator: ","))};\n"

        let pool = pool(program)
        let rowID = Dictionary(uniqueKeysWithValues: pool.enumerated().map { ($1, $0) })
        out += "\n/* \(pool.count) distinct rows: row r keeps key blocks calib_spans[2i] ..< calib_spans[2i+1] for i in calib_row_first[r] ..< calib_row_first[r+1] */\n"
        out += array("const int32_t calib_row_first[]", pool.reduce(into: [0]) { $0.append($0.last! + $1.count) }, isStatic: false)
        out += array("const uint16_t calib_spans[]", pool.flatMap { $0.flatMap { [$0.start, $0.end] } }, isStatic: false)

        let blocks = program.shape.blocks
        let type = rowType(pool.count)
        func plan(_ plan: Plan, _ name: String) -> String {
            let order = plan.order ?? plan.computeRows
            let bounds = plan.chunks ?? [0, order.count]
            // Heaviest chunk first, so the long ones never start last; ties keep locality order.
            var chunks: [(index: Int, cost: Int)] = []
            for c in 0..<(bounds.count - 1) {
                chunks.append((c, order[bounds[c]..<bounds[c + 1]].reduce(0) { $0 + plan.rows[$1].cost }))
            }
            chunks.sort { $0.cost > $1.cost || ($0.cost == $1.cost && $0.index < $1.index) }
            let reuse = plan.rows.enumerated().compactMap { q, row -> (Int, Int)? in
                if case .reuse(let source) = row { return (source, q) } else { return nil }
            }.sorted { $0 < $1 }
            let tiles = blocks * blocks
            var out = "\n/* plan \(name) @\(plan.name): \(plan.computeRows.count) computed rows, \(plan.reusedRows.count) reused, "
            out += "\(plan.cost) of \(tiles) tiles (density \(formatDensity(Double(plan.cost) / Double(tiles)))), \(chunks.count) chunks */\n"
            out += array("static const \(type) \(name)_rows[]", plan.rows.map { rowID[$0.spans] ?? 0 })
            out += array("static const uint16_t \(name)_order[]", order)
            out += array("static const int32_t \(name)_chunks[]", chunks.flatMap { [bounds[$0.index], bounds[$0.index + 1]] })
            out += array("static const int32_t \(name)_reuse[]", reuse.flatMap { [$0.0, $0.1] })
            return out
        }
        for (i, p) in program.plans.enumerated() { out += plan(p, "p\(i)") }
        let dense = chunk(Plan(name: "dense", rows: Array(repeating: .compute([Span(0, blocks)]), count: blocks)))
        out += plan(dense, "dense")
        func entry(_ name: String, _ p: Plan) -> String {
            "{\(name)_rows, \(name)_order, \(name)_chunks, \((p.chunks?.count ?? 2) - 1), \(name)_reuse, \(p.reusedRows.count)}"
        }
        out += "\nconst calib_plan calib_plans[CALIB_PLANS] = {\n"
        for (i, p) in program.plans.enumerated() { out += "    \(entry("p\(i)", p)),\n" }
        out += "};\n"
        out += "const calib_plan calib_dense_plan = \(entry("dense", dense));\n\n"
        out += "/* plan index of (step, layer, head), step-major */\n"
        out += array("const \(dispatchType(program)) calib_dispatch[CALIB_STEPS * CALIB_LAYERS * CALIB_HEADS]", program.dispatch, isStatic: false)
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
