import CalibFrontend
import XCTest

/// Every syntax error of the JSON reader, by message and position (docs/errors.md).
final class JSONSyntaxTests: XCTestCase {
    func error(_ text: String) -> String {
        do {
            _ = try Frontend.parse(Array(text.utf8), file: "j.json")
            return "accepted"
        } catch { return "\(error)" }
    }

    func testSyntaxErrors() {
        let cases: [(String, String)] = [
            ("", "j.json: line 1, column 1: invalid JSON: unexpected end of input, expected a value"),
            ("{\"a\": tru}", "j.json: line 1, column 10: invalid JSON: invalid literal, expected 'true'"),
            ("[1, 2", "j.json: line 1, column 6: invalid JSON: unexpected end of input, expected ',' or ']'"),
            ("[1 2]", "j.json: line 1, column 4: invalid JSON: expected ',' or ']'"),
            ("{\"a\" 1}", "j.json: line 1, column 6: invalid JSON: expected ':' after a key"),
            ("{\"a\": 1 \"b\": 2}", "j.json: line 1, column 9: invalid JSON: expected ',' or '}'"),
            ("{\"a\": 1", "j.json: line 1, column 8: invalid JSON: unexpected end of input, expected ',' or '}'"),
            ("{1: 2}", "j.json: line 1, column 2: invalid JSON: expected a string key"),
            ("[01]", "j.json: line 1, column 2: invalid JSON: leading zeros are not allowed"),
            ("[1.]", "j.json: line 1, column 4: invalid JSON: expected digits after '.'"),
            ("[1e]", "j.json: line 1, column 4: invalid JSON: expected digits in the exponent"),
            ("[-]", "j.json: line 1, column 3: invalid JSON: expected a value"),
            ("[\"a\nb\"]", "j.json: line 1, column 4: invalid JSON: control character in string"),
            ("[\"\\x\"]", "j.json: line 1, column 5: invalid JSON: invalid escape in string"),
            ("[\"\\u12\"]", "j.json: line 1, column 7: invalid JSON: invalid \\u escape"),
            ("[\"\\u12", "j.json: line 1, column 5: invalid JSON: truncated \\u escape"),
            ("[\"\\ud800\"]", "j.json: line 1, column 9: invalid JSON: unpaired surrogate in string"),
            ("[\"abc", "j.json: line 1, column 6: invalid JSON: unterminated string"),
            ("{} {}", "j.json: line 1, column 4: invalid JSON: unexpected text after the top-level value"),
            (String(repeating: "[", count: 100), "j.json: line 1, column 65: invalid JSON: nesting deeper than 64 levels"),
        ]
        for (text, expected) in cases { XCTAssertEqual(error(text), expected, text) }
        // Valid escapes (a surrogate pair, é) get as far as the schema.
        XCTAssertEqual(error("{\"s\\ud83d\\ude00\\u00e9\": 1}"), "j.json: $[\"s😀é\"]: unknown field \"s😀é\" "
                       + "(expected one of: format, model, tokens, head_dim, block, layers, heads, timesteps, model_timesteps, layout, patterns, assignments)")
        XCTAssertEqual(error("[1]"), "j.json: $: expected an object, found an array")
        do {
            _ = try Frontend.parse([0x5b, 0x22, 0xff, 0x22, 0x5d], file: "j.json")
            XCTFail("accepted invalid UTF-8")
        } catch {
            XCTAssertEqual("\(error)", "j.json: line 1, column 5: invalid JSON: string is not valid UTF-8")
        }
    }
}
