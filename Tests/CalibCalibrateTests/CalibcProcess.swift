import Foundation
import XCTest

/// Runs the calibc of this build (beside the test runner, not whatever an earlier build left in
/// .build/debug) with `args`: exit status, stdout, stderr. Skips the test where it is absent.
func runCalibc(_ args: [String]) throws -> (Int32, String, String) {
    let calibc = Bundle.main.executableURL!.deletingLastPathComponent().appendingPathComponent("calibc").path
    try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: calibc), "needs the calibc binary beside the tests")
    let p = Process(), out = Pipe(), err = Pipe()
    p.executableURL = URL(fileURLWithPath: calibc)
    p.arguments = args
    (p.standardOutput, p.standardError) = (out, err)
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}
