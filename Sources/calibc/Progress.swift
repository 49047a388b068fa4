// Progress of long runs: a bar redrawn in place on a terminal, a line every few seconds
// otherwise (CI logs), both with an ETA from the rate so far; silent for work under a second.

import Foundation

final class Progress {
    let label: String
    let start = DispatchTime.now()
    let terminal = isatty(STDERR_FILENO) == 1
    var lastLine = 0.0

    init(_ label: String) { self.label = label }

    func update(_ done: Int, _ total: Int) {
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
        // Work that finishes within a second prints nothing.
        if lastLine == 0, elapsed < 1 { return }
        if lastLine == 0 { lastLine = -5 }  // the first update after a second prints at once
        let eta = done > 0 ? elapsed / Double(done) * Double(total - done) : 0
        let percent = total > 0 ? 100 * done / total : 100
        if terminal {
            let filled = percent * 30 / 100
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: 30 - filled)
            FileHandle.standardError.write(Data(String(format: "\r%@ %@ %3d%%  %d/%d  ETA %.0fs ", label, bar, percent, done, total, eta).utf8))
            if done == total { FileHandle.standardError.write(Data("\n".utf8)) }
        } else if elapsed - lastLine >= 5 || done == total {
            lastLine = elapsed
            FileHandle.standardError.write(Data(String(format: "%@: %d/%d (%d%%), %.0fs elapsed, ETA %.0fs\n", label, done, total, percent, elapsed, eta).utf8))
        }
    }
}
