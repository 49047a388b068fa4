import CalibSupport
import XCTest

final class SupportTests: XCTestCase {
    func testSHA256KnownVectors() {
        XCTAssertEqual(SHA256.hex([UInt8]()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hex(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hex(Array(String(repeating: "a", count: 1000).utf8)),
                       "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    }

    func testBFloat16RoundsToNearestEven() {
        XCTAssertEqual(BFloat16(1.0).bits, 0x3F80)
        XCTAssertEqual(BFloat16(Float(bitPattern: 0x3F80_8000)).bits, 0x3F80)  // tie, even stays
        XCTAssertEqual(BFloat16(Float(bitPattern: 0x3F81_8000)).bits, 0x3F82)  // tie, odd rounds up
        XCTAssertEqual(BFloat16(Float(bitPattern: 0x3F80_8001)).bits, 0x3F81)
        XCTAssertTrue(BFloat16(.nan).float.isNaN)
    }

    func testSeededRandomRepeats() {
        var a = SplitMix64(seed: 7), b = SplitMix64(seed: 7), c = SplitMix64(seed: 8)
        let x = a.floats(16), y = b.floats(16), z = c.floats(16)
        XCTAssertEqual(x, y)
        XCTAssertNotEqual(x, z)
        XCTAssertTrue(x.allSatisfy { $0 >= -1 && $0 < 1 })
    }
}
