// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "resnet-compile",
    products: [
        .executable(name: "resnet-compile", targets: ["resnet-compile"]),
        // Model files are compiled against this library, the way SwiftPM
        // compiles Package.swift against PackageDescription.
        .library(name: "ResNetDSL", type: .dynamic, targets: ["ResNetDSL"]),
        .library(name: "ResNetCompiler", targets: ["ResNetCompiler"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.0.0"),
    ],
    targets: [
        .target(name: "ResNetDSL"),
        .target(
            name: "ResNetCompiler",
            dependencies: [
                "ResNetDSL",
                .product(name: "Mustache", package: "swift-mustache"),
            ]
        ),
        .executableTarget(
            name: "resnet-compile",
            dependencies: [
                "ResNetCompiler",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The checked-in compiler output, built as C and called from Swift:
        // this is how generated code links back into Swift.
        .target(name: "resnet20", path: "generated/resnet20", exclude: ["resnet20.report"], publicHeadersPath: ".",
                cSettings: [.unsafeFlags(["-O2"])]),
        .target(name: "resnet50", path: "generated/resnet50", exclude: ["resnet50.report"], publicHeadersPath: ".",
                cSettings: [.unsafeFlags(["-O2"])]),
        .target(name: "ResNetTestSupport", dependencies: ["ResNetCompiler"]),
        .testTarget(
            name: "ResNetCompilerTests",
            dependencies: ["ResNetCompiler", "ResNetDSL", "ResNetTestSupport", "resnet20", "resnet50"]
        ),
    ]
)
