// swift-tools-version:5.9
import PackageDescription

// Debian 12's libomp-dev (LLVM 14) is the OpenMP runtime the toolchain's clang can use;
// libclang-dev (LLVM 14) is what CalibCodegen checks every emitted C file with.
let ompInclude = "/usr/lib/llvm-14/lib/clang/14.0.6/include"
let llvmLib = "/usr/lib/llvm-14/lib"
let openMPC: [CSetting] = [.unsafeFlags(["-O3", "-march=native", "-fopenmp", "-idirafter", ompInclude])]
let openMPLink: [LinkerSetting] = [.unsafeFlags(["-L\(llvmLib)", "-lomp", "-Xlinker", "-rpath", "-Xlinker", llvmLib])]

// libFuzzer targets, built only for `make fuzz` (their entry point is libFuzzer's main).
let fuzzing = Context.environment["CALIBC_FUZZ"] != nil
let fuzzTargets: [Target] = fuzzing ? [
    .executableTarget(name: "fuzz-masks", dependencies: ["CalibFrontend", "CalibPasses", "CalibCodegen"], path: "Fuzz/masks",
                      swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
    .executableTarget(name: "fuzz-safetensors", dependencies: ["CalibSafetensors"], path: "Fuzz/safetensors",
                      swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
    .executableTarget(name: "fuzz-recording", dependencies: ["CalibCalibrate", "CalibSafetensors"], path: "Fuzz/recording",
                      swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
    .executableTarget(name: "fuzz-calibrate", dependencies: ["CalibCalibrate", "CalibFrontend", "CalibIR"], path: "Fuzz/calibrate",
                      swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
] : []

let package = Package(
    name: "calibc",
    products: [
        .executable(name: "calibc", targets: ["calibc"]),
        .library(name: "CalibRuntime", targets: ["CalibRuntime"]),
    ],
    targets: [
        .target(name: "CalibIR"),
        .target(name: "CalibJSON"),
        .target(name: "CalibFrontend", dependencies: ["CalibIR", "CalibJSON"]),
        .target(name: "CalibPasses", dependencies: ["CalibIR"]),
        .systemLibrary(name: "CClang", path: "Sources/CClang"),
        .target(
            name: "CalibCodegen",
            dependencies: ["CalibIR", "CalibJSON", "CClang"],
            swiftSettings: [.unsafeFlags(["-Xcc", "-I/usr/lib/llvm-14/include"])]
        ),
        // The kernels of the bundled example, written by `make kernels`; never edited by hand.
        .target(
            name: "CalibKernels",
            path: "generated/CalibKernels",
            exclude: ["calibc-manifest.json"],
            cSettings: openMPC,
            linkerSettings: openMPLink
        ),
        .target(name: "CalibRuntime", dependencies: ["CalibKernels", "CalibIR"]),
        .target(name: "CalibSafetensors", dependencies: ["CalibIR", "CalibJSON"]),
        // Dense measurements for calibration (block attention mass, plan error), C/OpenMP.
        .target(
            name: "CCalibrate",
            cSettings: openMPC,
            linkerSettings: openMPLink
        ),
        .target(name: "CalibCalibrate", dependencies: ["CalibIR", "CalibFrontend", "CalibSafetensors", "CCalibrate"]),
        .target(name: "CalibSynth", dependencies: ["CalibSafetensors"]),
        .executableTarget(
            name: "calibc",
            dependencies: ["CalibIR", "CalibFrontend", "CalibPasses", "CalibCodegen", "CalibCalibrate", "CalibSynth"]
        ),
        .target(name: "CBench", cSettings: openMPC, linkerSettings: openMPLink),
        .executableTarget(
            name: "calib-bench",
            dependencies: ["CalibCalibrate", "CalibSynth", "CalibIR", "CalibJSON", "CalibFrontend", "CalibPasses", "CalibCodegen",
                           "CalibRuntime", "CBench"]
        ),
        .executableTarget(name: "calib-run", dependencies: ["CalibRuntime", "CalibFrontend", "CalibPasses", "CalibCalibrate"], path: "examples/run"),
        .testTarget(name: "CalibIRTests", dependencies: ["CalibIR"]),
        .testTarget(name: "CalibFrontendTests", dependencies: ["CalibFrontend"]),
        .testTarget(name: "CalibPassesTests", dependencies: ["CalibPasses", "CalibFrontend"], exclude: ["Fixtures"]),
        .testTarget(name: "CalibCodegenTests", dependencies: ["CalibCodegen", "CalibPasses", "CalibFrontend"]),
        .testTarget(name: "CalibSafetensorsTests", dependencies: ["CalibSafetensors"]),
        .testTarget(name: "CalibCalibrateTests", dependencies: ["CalibCalibrate", "CalibSynth", "CalibSafetensors", "CalibRuntime", "CalibFrontend", "CalibPasses"]),
        .testTarget(name: "CalibRuntimeTests", dependencies: ["CalibRuntime", "CalibCodegen", "CalibPasses", "CalibFrontend"]),
    ] + fuzzTargets
)
