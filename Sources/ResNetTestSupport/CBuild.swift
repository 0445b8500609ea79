import Foundation
import ResNetCompiler
import ResNetDSL

/// Compiles generated C and runs it: what the tests need to check emitted code.
public enum CBuild {
    /// The repository root (this file is Sources/ResNetTestSupport/CBuild.swift).
    public static let root: String = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// The warnings every build of the generated C, the trainer and the test
    /// programs must pass with gcc and clang: any diagnostic fails the build.
    /// None is left off: -Wconversion includes -Wsign-conversion in C (and
    /// clang's -Wenum-float-conversion), so the C spells out every narrowing
    /// and every signed/unsigned or enum/float mix (README, "Safety").
    public static let warningFlags = ["-Wall", "-Wextra", "-Wpedantic", "-Wshadow", "-Wconversion", "-Werror"]

    /// A C compiler and the flags that make it use OpenMP.
    public struct Toolchain: CustomStringConvertible, Sendable {
        public var cc: String
        public var openMP: Bool
        /// Flags after the standard ones (e.g. -O3 -march=native).
        public var extra: [String] = []
        /// Linker inputs after the sources (a runtime a sanitizer needs).
        public var libraries: [String] = []
        public var description: String { "\(cc)\(openMP ? " -fopenmp" : "") \((extra + libraries).joined(separator: " "))" }

        /// The flags every build of generated code must pass warning-free.
        private var baseFlags: [String] { ["-std=c11", "-O2"] + CBuild.warningFlags + extra }

        /// Flags that compile a translation unit, without the linker flags
        /// (with -c, clang warns that -L DIR and -Wl,-rpath are unused).
        public var compileFlags: [String] { baseFlags + (openMP ? ["-fopenmp"] : []) }

        /// Flags that compile and link: with OpenMP, also where this compiler's runtime lives.
        public var flags: [String] {
            baseFlags + (openMP ? HostTools.openMPFlags(for: cc) ?? ["-fopenmp"] : [])
        }

        public init(cc: String, openMP: Bool, extra: [String] = [], libraries: [String] = []) {
            self.cc = cc
            self.openMP = openMP
            self.extra = extra
            self.libraries = libraries
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

    /// A fresh temporary directory, removed when the suite that made it ends
    /// (see `TemporaryFiles`).
    public static func temporaryDirectory(_ label: String = "test") throws -> String {
        // Cleanup's directory, but its lifetime is the suite's, not the process's.
        let dir = try Cleanup.makeTemporaryDirectory(label)
        Cleanup.unregister(dir)
        (TemporaryFiles.current ?? TemporaryFiles.process).add(dir)
        return dir
    }

    public struct BuildError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Compiles one source to an object file, not linked; throws with the
    /// compiler's output on failure or warnings.
    public static func compileObject(_ source: String, output: String, toolchain: Toolchain = standard,
                                     extra: [String] = []) throws {
        try build(toolchain.cc, toolchain.compileFlags + extra + ["-c", source, "-o", output])
    }

    /// Compiles `spec` to C in a fresh temporary directory: NAME.c, NAME.h and the rest.
    /// `recompute`: Pipeline.Options.recompute (batch-norm outputs rebuilt in the backward pass);
    /// `narrowConvs`: Pipeline.Options.recomputeNarrowConvs.
    public static func generate(_ spec: NetworkSpec, fuse: Bool = true, recompute: Bool = true,
                                narrowConvs: Bool = true) throws -> (directory: String, artifacts: Compiler.Artifacts) {
        try generate(lowered: try Lower.lower(spec), fuse: fuse, recompute: recompute, narrowConvs: narrowConvs)
    }

    /// The same for a graph already in the IR (an imported ONNX model).
    public static func generate(lowered: Graph, fuse: Bool = true, recompute: Bool = true,
                                narrowConvs: Bool = true) throws -> (directory: String, artifacts: Compiler.Artifacts) {
        let dir = try temporaryDirectory(lowered.name)
        let compiler = try Compiler(templates: Templates(directory: root + "/templates"),
                                    options: Pipeline.Options(fuse: fuse, recompute: recompute, recomputeNarrowConvs: narrowConvs))
        let artifacts = try compiler.compile(lowered: lowered)
        try AtomicWriter.write(artifacts.files, to: dir)
        return (dir, artifacts)
    }

    /// Compiles sources into an executable; throws with the compiler's output on failure or warnings.
    public static func compile(_ sources: [String], output: String, toolchain: Toolchain = standard,
                               extra: [String] = []) throws {
        try build(toolchain.cc, toolchain.flags + extra + sources + ["-o", output, "-lm"] + toolchain.libraries)
    }

    /// Runs the compiler; throws with its output when it fails or says anything.
    static func build(_ cc: String, _ args: [String]) throws {
        let result = try run(cc, args)
        if result.status != 0 || !result.output.isEmpty {
            throw BuildError(description: "\(cc) \(args.joined(separator: " ")) failed:\n\(result.output)")
        }
    }
}

/// The temporary directories a test suite made, removed when it ends unless
/// one of its tests failed or `RESNET_COMPILE_KEEP_TEMP=1` is set (then their
/// paths are printed). The test target's `.temporaryFiles` trait sets
/// `current` around each suite and marks it failed on any issue; a directory
/// made outside such a scope belongs to `process`, removed when the test
/// process exits (unless kept).
public final class TemporaryFiles: @unchecked Sendable {
    /// The scope of the running suite.
    @TaskLocal public static var current: TemporaryFiles?

    /// Directories made outside any suite's scope.
    public static let process: TemporaryFiles = {
        let scope = TemporaryFiles(label: "test process")
        atexit { TemporaryFiles.process.finish() }
        return scope
    }()

    /// Set to 1 to keep every test's temporary directories.
    public static let keepEnvironmentKey = "RESNET_COMPILE_KEEP_TEMP"

    public let label: String
    private let lock = NSLock()
    private var paths: [String] = []
    private var failed = false

    public init(label: String) {
        self.label = label
    }

    public func add(_ path: String) {
        lock.withLock { paths.append(path) }
    }

    /// A test in the scope recorded an issue: keep its files for a look.
    public func markFailed() {
        lock.withLock { failed = true }
    }

    /// Removes the directories, or says where they are when they are kept.
    public func finish() {
        let (paths, failed) = lock.withLock { () -> ([String], Bool) in
            defer { self.paths = [] }
            return (self.paths, self.failed)
        }
        if paths.isEmpty { return }
        let keep = ProcessInfo.processInfo.environment[Self.keepEnvironmentKey] == "1"
        if keep || failed {
            let why = keep ? "\(Self.keepEnvironmentKey)=1" : "a test failed"
            FileHandle.standardError.write(Data("\(label): kept \(paths.count) temporary director\(paths.count == 1 ? "y" : "ies") (\(why)):\n".utf8)
                + Data(paths.map { "  \($0)\n" }.joined().utf8))
            return
        }
        for path in paths { try? FileManager.default.removeItem(atPath: path) }
    }
}

/// A network compiled to C and built with the test driver (Tests/Drivers/driver.c).
public struct BuiltModel: Sendable {
    public var name: String
    public var directory: String
    public var executable: String
    public var graph: Graph
    public var files: [(name: String, contents: String)]
    /// How the driver builds its model: nil, `NAME_create`; false or true,
    /// `NAME_create_in` for inference only or to train too, in a block of
    /// exactly `UNAME_MODEL_BYTES_*(max_batch)` bytes filled with 0xFF (NaN).
    public var createIn: Bool?

    /// Compiles `spec` with the given options and builds the driver against it.
    public init(_ spec: NetworkSpec, fuse: Bool = true, recompute: Bool = true, narrowConvs: Bool = true,
                toolchain: CBuild.Toolchain = CBuild.standard) throws {
        try self.init(lowered: try Lower.lower(spec), fuse: fuse, recompute: recompute, narrowConvs: narrowConvs,
                      toolchain: toolchain)
    }

    /// The same for a graph already in the IR (an imported ONNX model).
    public init(lowered: Graph, fuse: Bool = true, recompute: Bool = true, narrowConvs: Bool = true,
                toolchain: CBuild.Toolchain = CBuild.standard) throws {
        let (dir, artifacts) = try CBuild.generate(lowered: lowered, fuse: fuse, recompute: recompute, narrowConvs: narrowConvs)
        name = lowered.name
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
        let mode = createIn.map { ["--in", $0 ? "train" : "infer"] } ?? []
        let r = try CBuild.run(executable, mode + [String(maxBatch)] + commands)
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
