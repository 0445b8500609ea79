import Foundation
import ResNetCompiler
import ResNetDSL

/// Compiles generated C and runs it: what the tests need to check emitted code.
public enum CBuild {
    /// The repository root (this file is Sources/ResNetTestSupport/CBuild.swift).
    public static let root: String = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// A C compiler and the flags that make it use OpenMP.
    public struct Toolchain: CustomStringConvertible, Sendable {
        public var cc: String
        public var openMP: Bool
        /// Flags after the standard ones (e.g. -O3 -march=native).
        public var extra: [String] = []
        public var description: String { "\(cc)\(openMP ? " -fopenmp" : "") \(extra.joined(separator: " "))" }

        /// Flags every build of generated code must pass warning-free.
        public var flags: [String] {
            let f = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror"] + extra
            return openMP ? f + (HostTools.openMPFlags(for: cc) ?? ["-fopenmp"]) : f
        }

        public init(cc: String, openMP: Bool, extra: [String] = []) {
            self.cc = cc
            self.openMP = openMP
            self.extra = extra
        }
    }

    /// Compilers found on this machine, each with and without OpenMP where it links.
    public static let toolchains: [Toolchain] = {
        var result: [Toolchain] = []
        for cc in ["clang", "gcc"] where HostTools.which(cc) != nil {
            result.append(Toolchain(cc: cc, openMP: false))
            if HostTools.openMPFlags(for: cc) != nil { result.append(Toolchain(cc: cc, openMP: true)) }
        }
        return result
    }()

    /// The default toolchain for behaviour tests: the first one found, serial.
    public static var standard: Toolchain { toolchains.first ?? Toolchain(cc: "cc", openMP: false) }

    /// Runs a program; stdout and stderr together.
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String], in directory: String? = nil) throws -> (status: Int32, output: String) {
        try HostTools.run(executable, arguments, in: directory)
    }

    /// A fresh temporary directory.
    public static func temporaryDirectory(_ label: String = "test") throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("resnet-compile-\(label)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    public struct BuildError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Compiles sources into an executable; throws with the compiler's output on failure or warnings.
    public static func compile(_ sources: [String], output: String, toolchain: Toolchain = standard,
                               extra: [String] = []) throws {
        let args = toolchain.flags + extra + sources + ["-o", output, "-lm"]
        let result = try run(toolchain.cc, args)
        if result.status != 0 || !result.output.isEmpty {
            throw BuildError(description: "\(toolchain.cc) \(args.joined(separator: " ")) failed:\n\(result.output)")
        }
    }
}

/// A network compiled to C and built with the test driver (Tests/Drivers/driver.c).
public struct BuiltModel: Sendable {
    public var name: String
    public var directory: String
    public var executable: String
    public var graph: Graph
    public var files: [(name: String, contents: String)]

    /// Compiles `spec` with the given options and builds the driver against it.
    public init(_ spec: NetworkSpec, fuse: Bool = true, toolchain: CBuild.Toolchain = CBuild.standard) throws {
        let dir = try CBuild.temporaryDirectory(spec.name)
        let compiler = try Compiler(templates: Templates(directory: CBuild.root + "/templates"), options: Pipeline.Options(fuse: fuse))
        let artifacts = try compiler.compile(spec)
        try AtomicWriter.write(artifacts.files, to: dir)
        name = spec.name
        directory = dir
        graph = artifacts.graph
        files = artifacts.files
        executable = dir + "/driver"
        try CBuild.compile([CBuild.root + "/Tests/Drivers/driver.c", dir + "/\(name).c"], output: executable,
                           toolchain: toolchain,
                           extra: ["-I", dir, "-DNET=\(name)", "-DUNET=\(name.uppercased())", "-DNET_HEADER=\"\(name).h\""])
    }

    /// Runs the driver with commands; returns its output lines and exit status.
    @discardableResult
    public func drive(maxBatch: Int, _ commands: [String]) throws -> (status: Int32, lines: [String]) {
        let r = try CBuild.run(executable, [String(maxBatch)] + commands)
        return (r.status, r.output.split(separator: "\n").map(String.init))
    }

    /// Loads `weights` (or He-initialises with `seed` when nil) and runs inference.
    public func infer(weights: String?, input: [Float], batch: Int, maxBatch: Int? = nil, seed: UInt64 = 0) throws -> [Float] {
        let inPath = directory + "/input-\(UUID().uuidString).f32"
        let outPath = directory + "/probs-\(UUID().uuidString).f32"
        try input.withUnsafeBytes { Data($0) }.write(to: URL(fileURLWithPath: inPath))
        let setup = weights.map { ["load", $0] } ?? ["init", String(seed)]
        let r = try drive(maxBatch: maxBatch ?? batch, setup + ["infer", inPath, String(batch), outPath])
        guard r.status == 0 else {
            throw CBuild.BuildError(description: "driver failed: \(r.lines.joined(separator: "\n"))")
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: outPath))
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }
}

extension BuiltModel {
    /// Runs training steps in one process (from `weights`, or He init with `seed`),
    /// then saves the weights (and a checkpoint when `checkpoint` is given).
    /// Returns the losses, or the first error line.
    public func train(weights: String?, steps: [(input: [Float], labels: [Int32])], batch n: Int, lr: Float,
                      momentum: Float = 0.9, weightDecay: Float = 1e-4, save: String,
                      before: [String] = [], checkpoint: String? = nil) throws -> [Float] {
        var commands = before + (weights.map { ["load", $0] } ?? [])
        commands += ["opt", "\(momentum)", "\(weightDecay)"]
        for (k, step) in steps.enumerated() {
            let x = directory + "/train-x-\(k)-\(UUID().uuidString)", y = directory + "/train-y-\(k)-\(UUID().uuidString)"
            try step.input.withUnsafeBytes { Data($0) }.write(to: URL(fileURLWithPath: x))
            try step.labels.withUnsafeBytes { Data($0) }.write(to: URL(fileURLWithPath: y))
            commands += ["train", x, y, String(n), "\(lr)"]
        }
        commands += ["save", save]
        if let checkpoint { commands += ["savecp", checkpoint] }
        let r = try drive(maxBatch: n, commands)
        guard r.status == 0 else { throw CBuild.BuildError(description: "training failed: \(r.lines.joined(separator: "\n"))") }
        return r.lines.filter { $0.hasPrefix("loss ") }.map { Float($0.dropFirst(5))! }
    }
}
