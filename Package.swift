// swift-tools-version:5.9
import PackageDescription

// Debian 12's libomp-dev (LLVM 14) is the OpenMP runtime the toolchain's clang can use;
// libclang-dev (LLVM 14) is what CalibCodegen checks every emitted C file with. These flags live
// here and in CalibCodegen's Toolchain (for the libraries calibc builds), nowhere else.
let ompInclude = "/usr/lib/llvm-14/lib/clang/14.0.6/include"
let llvmLib = "/usr/lib/llvm-14/lib"
let openMPC: [CSetting] = [.unsafeFlags(["-O3", "-march=native", "-fopenmp", "-idirafter", ompInclude])]
/// Generated kernels choose their instruction set at load time, so they are built for any x86-64.
let kernelC: [CSetting] = [.unsafeFlags(["-O3", "-fopenmp", "-idirafter", ompInclude])]
let openMPLink: [LinkerSetting] = [.unsafeFlags(["-L\(llvmLib)", "-lomp", "-Xlinker", "-rpath", "-Xlinker", llvmLib])]

// libFuzzer targets, built only for `make fuzz` (their entry point is libFuzzer's main).
let fuzzing = Context.environment["CALIBC_FUZZ"] != nil
let fuzzTargets: [Target] = fuzzing ? [
    .executableTarget(name: "fuzz-masks", dependencies: ["CalibDriver", "CalibFrontend"], path: "Fuzz/masks",
                      swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
    .executableTarget(name: "fuzz-safetensors", dependencies: ["CalibSafetensors"], path: "Fuzz/safetensors",
                      swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
    .executableTarget(name: "fuzz-recording", dependencies: ["CalibCalibrate", "CalibSafetensors"], path: "Fuzz/recording",
                      swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
    .executableTarget(name: "fuzz-calibrate", dependencies: ["CalibCalibrate", "CalibFrontend", "CalibIR"], path: "Fuzz/calibrate",
                      swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
    .executableTarget(name: "fuzz-ir", dependencies: ["CalibIR"], path: "Fuzz/ir",
                      swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
] : []

let package = Package(
    name: "calibc",
    products: [
        .executable(name: "calibc", targets: ["calibc"]),
        .library(name: "CalibRuntime", targets: ["CalibRuntime"]),
    ],
    targets: [
        .target(name: "CalibSupport"),
        .target(name: "CalibIR"),
        .target(name: "CalibJSON"),
        .target(name: "CalibFrontend", dependencies: ["CalibIR", "CalibJSON", "CalibSupport"]),
        .target(name: "CalibPasses", dependencies: ["CalibIR"]),
        .target(name: "CalibPictures", dependencies: ["CalibIR", "CalibSupport"]),
        .systemLibrary(name: "CClang", path: "Sources/CClang"),
        // Emitters per target; the kernels themselves are the C and CUDA files under kernels/.
        .target(
            name: "CalibCodegen",
            dependencies: ["CalibIR", "CalibJSON", "CalibPasses", "CClang"],
            resources: [.copy("kernels")],
            swiftSettings: [.unsafeFlags(["-Xcc", "-I/usr/lib/llvm-14/include"])]
        ),
        .target(name: "CalibDriver", dependencies: ["CalibCodegen", "CalibFrontend", "CalibPasses", "CalibIR"]),
        // The kernels of the bundled example, written by `make kernels`; never edited by hand.
        .target(
            name: "CalibKernels",
            path: "generated/CalibKernels",
            exclude: ["calibc-manifest.json"],
            cSettings: kernelC,
            linkerSettings: openMPLink
        ),
        // The C ABI header of the CPU kernels, as the runtime sees it.
        .systemLibrary(name: "CCalibABI", path: "Sources/CCalibABI"),
        .target(name: "CalibRuntime", dependencies: ["CCalibABI", "CalibSupport"]),
        .target(name: "CalibSafetensors", dependencies: ["CalibJSON", "CalibSupport"]),
        // Dense measurements for calibration (block attention mass, plan error), C/OpenMP.
        .target(
            name: "CCalibrate",
            cSettings: openMPC,
            linkerSettings: openMPLink
        ),
        .target(name: "CalibCalibrate", dependencies: ["CalibIR", "CalibFrontend", "CalibPictures", "CalibSafetensors", "CalibSupport", "CCalibrate"]),
        .target(name: "CalibSynth", dependencies: ["CalibIR", "CalibSafetensors", "CalibSupport", "CCalibrate"]),
        .executableTarget(
            name: "calibc",
            dependencies: ["CalibDriver", "CalibIR", "CalibFrontend", "CalibPasses", "CalibCodegen", "CalibCalibrate", "CalibPictures", "CalibSupport", "CalibSynth"]
        ),
        .target(name: "CBench", cSettings: openMPC, linkerSettings: openMPLink),
        .executableTarget(
            name: "calib-bench",
            dependencies: ["CalibDriver", "CalibCalibrate", "CalibSynth", "CalibIR", "CalibJSON", "CalibFrontend", "CalibPasses",
                           "CalibCodegen", "CalibRuntime", "CalibSupport", "CBench"]
        ),
        .executableTarget(name: "calib-run", dependencies: ["CalibRuntime", "CalibKernels", "CalibDriver", "CalibFrontend",
                                                           "CalibPasses", "CalibCalibrate"], path: "examples/run"),
        .testTarget(name: "CalibSupportTests", dependencies: ["CalibSupport"]),
        .testTarget(name: "CalibIRTests", dependencies: ["CalibIR", "CalibPictures", "CalibSupport"]),
        .testTarget(name: "CalibFrontendTests", dependencies: ["CalibFrontend", "CalibSupport"]),
        .testTarget(name: "CalibPassesTests", dependencies: ["CalibPasses", "CalibFrontend", "CalibDriver"], exclude: ["Fixtures"]),
        .testTarget(name: "CalibCodegenTests", dependencies: ["CalibDriver", "CalibCodegen", "CalibPasses", "CalibFrontend", "CalibSupport"]),
        .testTarget(name: "CalibSafetensorsTests", dependencies: ["CalibSafetensors", "CalibSupport"]),
        .testTarget(name: "CalibCalibrateTests", dependencies: ["CalibCalibrate", "CalibSynth", "CalibSafetensors", "CalibRuntime",
                                                                "CalibFrontend", "CalibPasses", "CalibDriver", "CalibSupport"]),
        .testTarget(name: "CalibRuntimeTests", dependencies: ["CalibRuntime", "CalibKernels", "CBench", "CalibDriver", "CalibCodegen",
                                                              "CalibPasses", "CalibFrontend", "CalibSupport"]),
    ] + fuzzTargets
)
