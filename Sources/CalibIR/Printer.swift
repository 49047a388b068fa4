// The canonical text form of a program. `IRParser` reads it back, so a golden dump is also a
// test input; any change here must keep `parse(print(p)) == p`.
//
//   calib.program "example" hash "9f2c…"
//   shape tokens 2100 head_dim 64 block 64 layers 2 heads 4 steps [0, 25, 49]
//   model_timesteps [999.0, 500.0, 20.0]             (when the masks give the model's timesteps)
//   text 256 last                                    (joint attention: text tokens, first or last)
//
//   plan @spatial {
//     q0: compute [0, 4) [16, 20)
//     q1: reuse q0
//     order [0, 2]
//     chunks [0, 1, 2]
//   }
//
//   dispatch {
//     step 0 layer 0 head 0..3 -> @spatial
//   }

extension Program {
    public var text: String {
        var out = "calib.program \(quoted(model)) hash \(quoted(sourceHash))\n"
        out += "shape tokens \(shape.tokens) head_dim \(shape.headDim) block \(shape.block)"
        out += " layers \(shape.layers) heads \(shape.heads) steps \(list(shape.steps))\n"
        if !shape.modelTimesteps.isEmpty {
            // Float's description is the shortest text that reads back to the same value.
            out += "model_timesteps [\(shape.modelTimesteps.map { "\($0)" }.joined(separator: ", "))]\n"
        }
        if shape.textTokens > 0 {
            out += "text \(shape.textTokens) \(shape.textFirst ? "first" : "last")\n"
        }
        for plan in plans {
            out += "\n" + plan.text
        }
        out += "\ndispatch {\n"
        for (s, step) in shape.steps.enumerated() {
            for layer in 0..<shape.layers {
                var head = 0
                while head < shape.heads {
                    let p = dispatch[shape.dispatchIndex(stepIndex: s, layer: layer, head: head)]
                    var last = head
                    while last + 1 < shape.heads,
                          dispatch[shape.dispatchIndex(stepIndex: s, layer: layer, head: last + 1)] == p {
                        last += 1
                    }
                    let heads = last == head ? "\(head)" : "\(head)..\(last)"
                    out += "  step \(step) layer \(layer) head \(heads) -> @\(plans[p].name)\n"
                    head = last + 1
                }
            }
        }
        out += "}\n"
        return out
    }
}

extension Plan {
    public var text: String {
        var out = "plan @\(name) {\n"
        for (q, row) in rows.enumerated() {
            switch row {
            case .compute(let spans):
                out += "  q\(q): compute " + spans.map { "[\($0.start), \($0.end))" }.joined(separator: " ") + "\n"
            case .reuse(let source):
                out += "  q\(q): reuse q\(source)\n"
            }
        }
        if let order { out += "  order \(list(order))\n" }
        if let chunks { out += "  chunks \(list(chunks))\n" }
        return out + "}\n"
    }
}

private func list(_ values: [Int]) -> String {
    "[" + values.map(String.init).joined(separator: ", ") + "]"
}

func quoted(_ s: String) -> String {
    var out = "\""
    for c in s.unicodeScalars {
        switch c {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        default: out.unicodeScalars.append(c)
        }
    }
    return out + "\""
}
