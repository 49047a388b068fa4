// libFuzzer target: any bytes through the masks.json frontend; what it accepts must survive
// the driver (passes, verifier, emission and the libclang check) and a print/parse round trip.

import CalibDriver
import CalibFrontend
import CalibIR

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMasks(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard let masks = try? Frontend.parse(Array(UnsafeBufferPointer(start: data, count: size)), file: "fuzz.json") else {
        return 0
    }
    let program: Program
    do {
        program = try Driver.generate(masks.program, source: "fuzz.json", options: CompileOptions()).program
    } catch {
        fatalError("valid masks failed to compile: \(error)")
    }
    guard (try? IRParser.parse(program.text)) == program else { fatalError("IR round trip changed the program") }
    return 0
}
