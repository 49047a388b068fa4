// libFuzzer target: any bytes through the IR text reader as `calibc opt` reads a file (UTF-8
// decoded with replacement, then IRParser.parse); what it accepts must verify and survive a
// print/parse round trip. Whatever it refuses must be an IRParseError naming a line.

import CalibIR

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzIR(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let program: Program
    do {
        program = try IRParser.parse(text)
    } catch let e as IRParseError {
        guard e.line >= 1 else { fatalError("error without a line: \(e)") }
        return 0
    } catch {
        fatalError("the reader threw something other than IRParseError: \(error)")
    }
    do { try program.verify() } catch { fatalError("accepted IR does not verify: \(error)") }
    let printed = program.text
    guard let again = try? IRParser.parse(printed) else { fatalError("printed IR does not parse back") }
    guard again == program else { fatalError("IR round trip changed the program") }
    guard again.text == printed else { fatalError("printing is not stable") }
    return 0
}
