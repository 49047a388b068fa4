import CalibIR
import CalibPictures
import CalibSupport
import Foundation
import XCTest

final class PictureTests: XCTestCase {
    /// Decodes what PNG.swift writes (stored zlib blocks): checks the signature, every chunk's
    /// CRC against zlib's, the header, and returns the pixels.
    private func decode(_ png: [UInt8]) throws -> (width: Int, height: Int, rgb: [UInt8]) {
        XCTAssertEqual(Array(png.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        var at = 8, width = 0, height = 0
        var idat: [UInt8] = []
        func u32(_ i: Int) -> Int { Int(png[i]) << 24 | Int(png[i + 1]) << 16 | Int(png[i + 2]) << 8 | Int(png[i + 3]) }
        while at < png.count {
            let length = u32(at), type = String(decoding: png[(at + 4)..<(at + 8)], as: UTF8.self)
            let data = Array(png[(at + 8)..<(at + 8 + length)])
            // The CRC table of the PNG specification, built independently of PNG.swift's.
            var c: UInt32 = 0xFFFF_FFFF
            for b in Array(type.utf8) + data {
                c ^= UInt32(b)
                for _ in 0..<8 { c = (c >> 1) ^ (c & 1 == 1 ? 0xEDB8_8320 : 0) }
            }
            XCTAssertEqual(UInt32(u32(at + 8 + length)), c ^ 0xFFFF_FFFF, "CRC of \(type)")
            if type == "IHDR" { (width, height) = (u32(at + 8), u32(at + 12)); XCTAssertEqual(Array(data[8...]), [8, 2, 0, 0, 0]) }
            if type == "IDAT" { idat += data }
            at += 12 + length
        }
        var raw: [UInt8] = []
        var i = 2
        while true {
            let last = idat[i] & 1
            let n: Int = Int(idat[i + 1]) | (Int(idat[i + 2]) << 8)
            raw += idat[(i + 5)..<(i + 5 + n)]
            i += 5 + n
            if last == 1 { break }
        }
        XCTAssertEqual(raw.count, height * (width * 3 + 1))
        let stride = width * 3 + 1
        var rgb: [UInt8] = []
        for y in 0..<height { rgb += raw[(y * stride + 1)..<((y + 1) * stride)] }
        return (width, height, rgb)
    }

    func testPlanPictureShowsKeptSkippedAndReusedTiles() throws {
        let plan = Plan(name: "p", rows: [.compute([Span(0, 1), Span(2, 3)]), .reuse(0), .compute([Span(1, 3)])])
        let image = try decode(Pictures.plan(plan, size: 6).png)
        XCTAssertEqual([image.width, image.height], [6, 6])
        func pixel(_ qb: Int, _ kb: Int) -> [UInt8] { let i = 3 * ((qb * 2) * 6 + kb * 2); return Array(image.rgb[i..<(i + 3)]) }
        let (kept, skipped, reused, source): ([UInt8], [UInt8], [UInt8], [UInt8]) = ([33, 52, 94], [255, 255, 255], [250, 214, 165], [214, 96, 0])
        XCTAssertEqual([pixel(0, 0), pixel(0, 1), pixel(0, 2)], [kept, skipped, kept])
        XCTAssertEqual([pixel(1, 0), pixel(1, 1), pixel(1, 2)], [source, reused, reused])
        XCTAssertEqual([pixel(2, 0), pixel(2, 1), pixel(2, 2)], [skipped, kept, kept])
    }

    func testOverviewShadesByDensity() throws {
        let dense = Plan(name: "d", rows: Array(repeating: .compute([Span(0, 2)]), count: 2))
        let half = Plan(name: "h", rows: [.compute([Span(0, 1)]), .compute([Span(1, 2)])])
        let program = Program(model: "m", shape: Shape(tokens: 32, headDim: 16, block: 16, layers: 1, heads: 2, steps: [0]),
                              plans: [dense, half], dispatch: [0, 1], sourceHash: "h")
        let image = try decode(Pictures.overview(program, size: 20).png)
        XCTAssertEqual(Array(image.rgb[0..<3]), [33, 52, 94], "density 1 is dark")
        let right = 3 * (image.width - 1)
        XCTAssertEqual(Array(image.rgb[right..<(right + 3)]), [144, 153, 174], "density 0.5 halfway to white")
    }
}
