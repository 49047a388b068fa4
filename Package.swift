// swift-tools-version:5.9
import Foundation
import PackageDescription

// Debian 12's libomp-dev (LLVM 14) is the OpenMP runtime the toolchain's clang can use;
// libclang-dev (LLVM 14) is what CalibCodegen checks every emitted C file with. Their paths are
// written once, in kernels/llvm.mk, which the Makefile and calibc (for the libraries it builds)
// read too.
let llvm: [String: String] = {
    let path = Context.packageDirectory + "/Sources/CalibKernelSources/kernels/llvm.mk"
    var settings: [String: String] = [:]
    for line in ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n") where !line.hasPrefix("#") {
        let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
        if parts.count == 2 { settings[parts[0]] = parts[1] }
    }
    return settings
}()
let ompInclude = llvm["OMP_INCLUDE"]!
let llvmLib = llvm["LLVM_LIB"]!
/// `make dist` builds calibc for other machines: AVX2 at most, instead of this machine's best.
let march = Context.environment["CALIBC_DIST"] != nil ? "-march=x86-64-v3" : "-march=native"
let openMPC: [CSetting] = [.unsafeFlags(["-O3", march, "-fopenmp", "-idirafter", ompInclude])]
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
        // libclang, opened at run time (dlopen) for the check of generated C.
        .target(name: "CClang", cSettings: [.unsafeFlags(["-I" + llvm["LLVM_INCLUDE"]!])], linkerSettings: [.linkedLibrary("dl")]),
        // The kernels themselves (kernels/include, cpu, cuda), read by the targets through one accessor.
        .target(name: "CalibKernelSources", resources: [.copy("kernels")]),
        // Their public headers as a C module: the ABI for the runtime, calib_exp2.h for calibration.
        .target(name: "CCalibABI", path: "Sources/CalibKernelSources/kernels/include", publicHeadersPath: "."),
        // Emitters per target.
        .target(
            name: "CalibCodegen",
            dependencies: ["CalibIR", "CalibJSON", "CalibPasses", "CalibKernelSources", "CClang"],
            swiftSettings: [.unsafeFlags(["-Xcc", "-I" + llvm["LLVM_INCLUDE"]!])]
        ),
        .target(name: "CalibDriver", dependencies: ["CalibCodegen", "CalibFrontend", "CalibJSON", "CalibPasses", "CalibIR"]),
        // The kernels of the bundled example, written by `make kernels`; never edited by hand.
        .target(
            name: "CalibKernels",
            path: "generated/CalibKernels",
            exclude: ["calibc-manifest.json"],
            cSettings: kernelC,
            linkerSettings: openMPLink
        ),
        .target(name: "CalibRuntime", dependencies: ["CCalibABI", "CalibIR", "CalibSupport"]),
        .target(name: "CalibSafetensors", dependencies: ["CalibJSON", "CalibSupport"]),
        // Dense measurements for calibration (block attention mass, plan error), C/OpenMP.
        .target(
            name: "CCalibrate",
            dependencies: ["CCalibABI"],
            cSettings: openMPC,
            linkerSettings: openMPLink
        ),
        .target(name: "CalibCalibrate", dependencies: ["CalibIR", "CalibFrontend", "CalibPictures", "CalibSafetensors", "CalibSupport", "CCalibrate"]),
        .target(name: "CalibSynth", dependencies: ["CalibIR", "CalibSafetensors", "CalibSupport", "CCalibrate"]),
        .executableTarget(
            name: "calibc",
            dependencies: ["CalibDriver", "CalibIR", "CalibFrontend", "CalibPasses", "CalibCodegen", "CalibCalibrate", "CalibKernelSources", "CalibPictures", "CalibSupport", "CalibSynth"]
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
        .testTarget(name: "CalibCodegenTests", dependencies: ["CalibDriver", "CalibCodegen", "CalibKernelSources", "CalibPasses", "CalibFrontend", "CalibSupport"]),
        .testTarget(name: "CalibSafetensorsTests", dependencies: ["CalibSafetensors", "CalibSupport"]),
        .testTarget(name: "CalibCalibrateTests", dependencies: ["CalibCalibrate", "CalibSynth", "CalibSafetensors", "CalibRuntime",
                                                                "CalibFrontend", "CalibPasses", "CalibDriver", "CalibSupport"]),
        .testTarget(name: "CalibRuntimeTests", dependencies: ["CalibRuntime", "CalibKernels", "CBench", "CalibDriver", "CalibCodegen",
                                                              "CalibPasses", "CalibFrontend", "CalibSupport"]),
    ] + fuzzTargets
)
