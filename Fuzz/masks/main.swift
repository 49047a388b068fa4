// libFuzzer target: any bytes through the masks.json frontend; what it accepts must survive
// the passes, the verifier, a print/parse round trip and C emission.

import CalibCodegen
import CalibFrontend
import CalibIR
import CalibPasses

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMasks(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard let masks = try? Frontend.parse(Array(UnsafeBufferPointer(start: data, count: size)), file: "fuzz.json", threads: 2) else {
        return 0
    }
    let program = Pipeline.run(masks.program)
    guard (try? IRParser.parse(program.text)) == program else { fatalError("IR round trip changed the program") }
    _ = Codegen.emit(program, source: "fuzz.json", passes: [])
    return 0
}
