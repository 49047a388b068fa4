// Text from an input (a JSON key, a tensor name, a path, an argument) as an error message quotes
// it: every character that would act on a terminal instead of showing (ESC starts a terminal
// command, NUL and CR hide what follows) or would break the message's one line is written U+XXXX,
// as the IR reader writes the characters it refuses.

/// `text` with control characters (C0, DEL, C1), line and paragraph separators, and U+FFFD (what
/// invalid UTF-8 is read as) written U+XXXX; every other character as it is. Format characters
/// (zero-width spaces and joiners) stay as they are: they do not act on a terminal, and Python's
/// reader (python/calibc/masks.py), whose messages Tests/python holds to these, shows them so.
public func visible(_ text: String) -> String {
    guard text.unicodeScalars.contains(where: hidden) else { return text }
    var out = ""
    for c in text.unicodeScalars {
        if hidden(c) {
            let hex = String(c.value, radix: 16, uppercase: true)
            out += "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
        } else {
            out.unicodeScalars.append(c)
        }
    }
    return out
}

private func hidden(_ c: Unicode.Scalar) -> Bool {
    switch c.properties.generalCategory {
    case .control, .lineSeparator, .paragraphSeparator: return true
    default: return c == "\u{FFFD}"
    }
}
