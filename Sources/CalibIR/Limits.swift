// The sizes calibc supports (docs/masks-format.md, "Limits"). The masks.json frontend
// (`Frontend.max…`) and the IR text reader (`IRParser`) refuse anything beyond them before
// allocating for it, so a hostile or mistaken header cannot make either allocate or overflow.

public enum Limits {
    /// Query (and key) blocks per side.
    public static let maxBlocks = 16_384
    public static let maxTokens = 1 << 28
    /// Timesteps × layers × heads: one dispatch entry each.
    public static let maxDispatch = 10_000_000
    public static let maxHeadDim = 512
    public static let maxBlock = 1024
    /// Layers and heads each.
    public static let maxLayers = 4096
    public static let maxHeads = 4096
    /// Timestep values are passed to the kernels as C `int`.
    public static let maxStep = Int(Int32.max)
    /// `model` in UTF-8 bytes: the generated code holds it as one C string literal, and C11
    /// compilers need only accept 4095 characters in one (clang -Wpedantic warns beyond).
    public static let maxModelBytes = 4095
    /// Frames, height and width of a layout, each.
    public static let maxLayoutSide = 100_000
    /// Key-block ranges over all patterns (bitmaps counted as their runs of set bits): the IR
    /// holds each one, about 34 bytes apiece through the passes. A Wan 2.1 14B-size set has 13M.
    public static let maxRanges = 1 << 25
    /// Key-block ranges over the distinct rows of all patterns: the generated tables hold each
    /// one, and libclang's check of them costs about 300 bytes and 4 µs apiece. Calibrated sets
    /// share rows (the Wan-size set has about 17,000 ranges in 5,800 distinct rows); random
    /// bitmaps do not.
    public static let maxDistinctRanges = 1 << 22
    /// Patterns, and patterns × query blocks: the generated tables hold a few declarations per
    /// distinct plan and a row id and order entry per query block of each (about 400 bytes and
    /// 4.5 µs apiece in libclang's check). The Wan-size set has 2,413 patterns, 1.4M rows.
    public static let maxPatterns = 65_536
    public static let maxPatternRows = 1 << 22

    // What a program made from a masks.json within the limits can hold: its patterns plus the
    // built-in `dense` plan (B rows of one range each). The passes never add plans, rows or ranges.

    /// Plans in one program.
    public static let maxPlans = maxPatterns + 1
    /// Plans × query blocks.
    public static let maxPlanRows = maxPatternRows + maxBlocks
    /// Key-block ranges over all plans.
    public static let maxPlanRanges = maxRanges + maxBlocks
    /// The source hash: the frontend writes a SHA-256 in hex (64 characters).
    public static let maxHashBytes = 64
}
