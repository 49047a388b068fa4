// `calib-bench state-size`: what the calibration state keeps as prompts are folded, without and
// with retiring the inputs whose leave-one-out drop fell to the threshold (docs/calibration.md,
// sections 7 and 8), and what that makes of a state at Wan 2.1 14B's scale.

import CalibCalibrate
import CalibSynth
import Foundation

func benchStateSize() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("calib-bench-state-\(getpid())").path
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let config = SynthConfig()
    let recordings = try Synth.write(config, prompts: 16, seed: 1, to: dir).map(Recording.init(path:))
    let counts = [1, 2, 4, 8, 16]
    // Wan 2.1 14B at 720p: 40 layers × 40 heads × 50 steps, 75,600 tokens in blocks of 128.
    let (wanHeads, wanBlocks) = (80_000.0, 591)
    let wanFixed = wanHeads * Double(Packing.codeBytes(wanBlocks * wanBlocks) + Packing.bitBytes(wanBlocks * (wanBlocks - 1) / 2) + 4)
    print("the state after folding the first n of 16 synthetic prompts (calibc synth --prompts 16: \(config.tokens) tokens, "
          + "\(config.layers * config.heads * config.steps.count) heads, blocks of 64), as calibrate --state-out writes it; "
          + "threshold 0 retires only inputs that selected nothing alone, so it is the state without retirement")
    print(String(format: "Wan 2.1 14B: 80,000 heads of 591 × 591 blocks, fixed part %.3f GB, plus 6 bytes per single-owner tile\n", wanFixed / 1e9))
    // With retirement, the heads left with owners are the ones the stability rule makes dense.
    print("--stability-drop  prompts  union density  heads with owners  single-owner tiles  share   state bytes  Wan 14B state")
    for drop in [0.0, 0.05] {
        var options = CalibrationOptions()
        options.stabilityDrop = drop
        var state: CalibrationState?
        // Merging one-prompt states gives the codes and owners of folding the prompts in one run
        // (tested), and each count on the way.
        for (i, r) in recordings.enumerated() {
            let one = try Calibrator.fold([r], options: options)
            if state == nil { state = one } else { try state!.merge(one, file: r.file.path, into: recordings[0].file.path) }
            guard counts.contains(i + 1), let s = state else { continue }
            let tiles = s.heads.count * s.shape.blocks * s.shape.blocks
            let singles = s.heads.reduce(0) { $0 + $1.owners.count }
            let selected = s.heads.reduce(0) { $0 + $1.codes.filter { $0 != HeadState.none }.count }
            let share = Double(singles) / Double(tiles)
            let wan = wanFixed + 6 * share * wanHeads * Double(wanBlocks * wanBlocks)
            print(String(format: "%16.2f  %7d  %13.3f  %17d  %18d  %5.1f%%  %12d  %10.2f GB", drop, i + 1,
                         Double(selected) / Double(tiles), s.heads.filter { !$0.owners.isEmpty }.count, singles,
                         100 * share, s.tensorBytes, wan / 1e9))
        }
    }
}
