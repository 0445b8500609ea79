import Foundation
import ResNetCompiler
import ResNetDSL

/// The instruction-set paths of the generated C and the toolchains that select
/// them. The kernels put vector intrinsics behind the compilers' feature
/// macros (`__AVX512F__`, `__AVX2__` + `__FMA__`, `__ARM_NEON`) with a portable
/// C path for everything else, so which path a build takes is decided by its
/// flags alone: these variants pick each path on purpose, and the tests check
/// the macros each one defines, so a variant can never silently take another path.
public enum ISA {
    /// One way of building the generated C for the host: a name and the flags
    /// appended after CBuild's standard ones (`-std=c11 -O2` and `CBuild.warningFlags`).
    public struct Variant: Sendable, Hashable, CustomStringConvertible {
        /// "native", "avx2" or "portable".
        public var name: String
        public var flags: [String]
        /// Feature macros this variant's compiler must define, and must not.
        public var defines: [String]
        public var undefines: [String]
        public var description: String { name }

        /// This variant with compiler `cc`, serial or with OpenMP.
        public func toolchain(cc: String, openMP: Bool) -> CBuild.Toolchain {
            CBuild.Toolchain(cc: cc, openMP: openMP, extra: flags)
        }
    }

    /// The CPU's feature flags (the `flags` line of /proc/cpuinfo; empty where there is none).
    public static let cpuFlags: Set<String> = {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return [] }
        for line in text.split(separator: "\n") where line.hasPrefix("flags") || line.hasPrefix("Features") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            return Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
        }
        return []
    }()

    public static var hostIsX86_64: Bool {
        #if arch(x86_64)
        true
        #else
        false
        #endif
    }

    /// `-O3 -march=native`: whatever this CPU has (AVX-512F where it has it).
    public static let native: Variant = {
        var defines: [String] = [], undefines: [String] = []
        if hostIsX86_64 {
            if cpuFlags.contains("avx512f") { defines.append("__AVX512F__") } else { undefines.append("__AVX512F__") }
            if cpuFlags.contains("avx2") { defines.append("__AVX2__") }
            if cpuFlags.contains("fma") { defines.append("__FMA__") }
        }
        return Variant(name: "native", flags: ["-O3", "-march=native"], defines: defines, undefines: undefines)
    }()

    /// `-O3 -mavx2 -mfma -mno-avx512f`: the AVX2 + FMA path even on an AVX-512 machine.
    public static let avx2 = Variant(name: "avx2", flags: ["-O3", "-mavx2", "-mfma", "-mno-avx512f"],
                                     defines: ["__AVX2__", "__FMA__"], undefines: ["__AVX512F__"])

    /// `-O3` and no -m flag: the x86-64 baseline (SSE2), i.e. the portable C path.
    public static let portable = Variant(name: "portable", flags: ["-O3"], defines: [],
                                         undefines: hostIsX86_64 ? ["__AVX__", "__AVX2__", "__FMA__", "__AVX512F__"] : [])

    /// The variants this machine can run: native and portable everywhere; AVX2
    /// on x86-64 CPUs with avx2 and fma.
    public static let variants: [Variant] = {
        var result = [native]
        if hostIsX86_64 && cpuFlags.contains("avx2") && cpuFlags.contains("fma") { result.append(avx2) }
        result.append(portable)
        return result
    }()

    /// Why the AVX2 variant is missing from `variants`, or nil when it is there.
    public static var avx2SkipReason: String? {
        if !hostIsX86_64 { return "not an x86-64 host" }
        if !cpuFlags.contains("avx2") || !cpuFlags.contains("fma") { return "the CPU lacks avx2/fma (/proc/cpuinfo flags)" }
        return nil
    }

    /// C compilers found here (clang, gcc).
    public static var compilers: [String] { ["gcc", "clang"].filter { HostTools.which($0) != nil } }

    /// Whether `cc` links OpenMP here (clang needs libomp.so).
    public static func hasOpenMP(_ cc: String) -> Bool { HostTools.openMPFlags(for: cc) != nil }

    /// The macros `cc` predefines with `flags` (`cc -dM -E`): name → value.
    public static func predefinedMacros(cc: String, flags: [String]) throws -> [String: String] {
        let r = try CBuild.run(cc, flags + ["-dM", "-E", "-x", "c", "/dev/null"])
        guard r.status == 0 else { throw CBuild.BuildError(description: "\(cc) -dM -E failed: \(r.output)") }
        var result: [String: String] = [:]
        for line in r.output.split(separator: "\n") where line.hasPrefix("#define ") {
            let parts = line.dropFirst(8).split(separator: " ", maxSplits: 1)
            result[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        return result
    }

    /// Whether tests that need a tool must fail rather than skip (CI=true).
    public static var inCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }
}

/// An aarch64 cross toolchain: `aarch64-linux-gnu-gcc` (Debian's
/// gcc-aarch64-linux-gnu) builds static executables that run under user-mode
/// qemu (qemu-user's `qemu-aarch64`, or qemu-user-static's `qemu-aarch64-static`).
/// The generated C takes its NEON path there (aarch64 always has `__ARM_NEON`).
public struct CrossTarget: Sendable, CustomStringConvertible {
    public var cc: String
    /// The emulator that runs the target's executables.
    public var emulator: String
    public var description: String { "\(cc) -static, run by \(emulator)" }

    /// The cross compiler, and the emulator's path.
    public static let aarch64Compiler = "aarch64-linux-gnu-gcc"
    public static var aarch64Emulator: String? {
        HostTools.which("qemu-aarch64") ?? HostTools.which("qemu-aarch64-static")
    }

    /// The aarch64 target, or nil when the cross compiler or qemu is missing.
    public static let aarch64: CrossTarget? = {
        guard HostTools.which(aarch64Compiler) != nil, let emulator = aarch64Emulator else { return nil }
        return CrossTarget(cc: aarch64Compiler, emulator: emulator)
    }()

    /// What is missing for `aarch64`, with how `make deps` installs it.
    public static var aarch64Missing: String {
        var missing: [String] = []
        if HostTools.which(aarch64Compiler) == nil { missing.append("\(aarch64Compiler) (apt-get install gcc-aarch64-linux-gnu)") }
        if aarch64Emulator == nil { missing.append("qemu-aarch64 (apt-get install qemu-user)") }
        return missing.isEmpty ? "nothing" : missing.joined(separator: ", ") + "; `make deps` installs both"
    }

    /// Serial, static, `-O3` (the NEON path) and the standard warning flags.
    /// (Static OpenMP is not used: glibc's static libgomp makes the linker warn about dlopen.)
    public func toolchain(extra: [String] = []) -> CBuild.Toolchain {
        CBuild.Toolchain(cc: cc, openMP: false, extra: ["-O3", "-static"] + extra)
    }

    /// Compiles `spec` to C, builds Tests/Drivers/driver.c against it with the
    /// cross compiler, and returns a BuiltModel whose driver runs under qemu
    /// (its `executable` is a two-line script that execs the emulator on the
    /// real binary), so `infer`, `train` and `drive` work as on the host.
    public func build(_ spec: NetworkSpec, fuse: Bool = true, extra: [String] = []) throws -> BuiltModel {
        var model = try BuiltModel(spec, fuse: fuse, toolchain: toolchain(extra: extra))
        let binary = model.directory + "/driver.aarch64", script = model.directory + "/driver-qemu"
        try FileManager.default.moveItem(atPath: model.executable, toPath: binary)
        try "#!/bin/sh\nexec '\(emulator)' '\(binary)' \"$@\"\n".write(toFile: script, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: script)
        model.executable = script
        return model
    }
}

/// The generated C's training step against the float64 interpreter, as
/// TrainingTests.checkGradients does it, for any built model (any toolchain):
/// one step with lr 1, no momentum and no decay moves each parameter by exactly
/// its gradient, so p − p′ is the C's gradient.
public struct GradientComparison: Sendable {
    public struct Entry: Sendable, CustomStringConvertible {
        public var name: String
        public var difference: Double
        public var allowed: Double
        /// The largest |expected| value (the gradient's scale), for relative reports.
        public var scale: Double
        public var ok: Bool { difference <= allowed }
        public var isGradient: Bool { name.hasPrefix("∂") }
        public var description: String { "\(name): \(difference) (allowed \(allowed), scale \(scale))" }
    }
    public var loss: Float
    public var referenceLoss: Double
    public var lossOK: Bool { abs(Double(loss) - referenceLoss) <= 1e-4 * abs(referenceLoss) }
    /// Every parameter (gradients for weights and biases, the running statistics for BN).
    public var entries: [Entry]
    /// num_batches_tracked after the step, per BN (the file holds 3, so 4 is right).
    public var counters: [String: [Int]]
    public var failures: [Entry] { entries.filter { !$0.ok } }
    /// The gradient with the largest difference relative to its scale, and that ratio, for reports
    /// (gradients that are zero in exact arithmetic, e.g. a conv bias before BN, left out).
    public var worstGradient: (entry: Entry, relative: Double)? {
        entries.filter { $0.isGradient && $0.scale > 1e-6 }.map { ($0, $0.difference / $0.scale) }.max { $0.1 < $1.1 }
    }

    public init(spec: NetworkSpec, model: BuiltModel, batch n: Int, seed: UInt64 = 31) throws {
        let graph = try Pipeline.analyseTraining(spec)
        let params = randomParameters(graph, seed: seed)
        let weights = model.directory + "/grad-w-\(UUID().uuidString).safetensors"
        let after = model.directory + "/grad-after-\(UUID().uuidString).safetensors"
        try writeParameters(params, graph: graph, to: weights)
        var rng = TestRandom(seed: seed + 1)
        let input = rng.floats(n * graph.shape(0).count)
        let labels = (0..<n).map { _ in Int32(rng.next() % UInt64(graph.classes)) }
        let losses = try model.train(weights: weights, steps: [(input, labels)], batch: n, lr: 1, momentum: 0,
                                     weightDecay: 0, save: after)
        let reference = try Interpreter(graph: graph, parameters: params).trainStep(input, labels: labels.map(Int.init), batch: n)
        loss = losses.first ?? .nan
        referenceLoss = reference.loss
        let updated = try SafeTensors.read(after)
        entries = []
        for p in graph.parameters {
            guard let new = updated[p.name]?.floats else {
                entries.append(Entry(name: p.name + " (missing)", difference: .infinity, allowed: 0, scale: 0))
                continue
            }
            switch p.kind {
            case .weight, .bias:
                let cGrad = zip(params[p.name]!, new).map { Double($0) - Double($1) }
                let expected = reference.gradients[p.name]!
                // p − p′ carries the rounding of p itself (about 1e-7·|p|): an absolute floor
                // covers gradients that are truly zero (a conv bias before BN).
                let scale = expected.map(abs).max()!
                let floor = 4e-7 * Double(params[p.name]!.map(abs).max()!)
                entries.append(Entry(name: "∂" + p.name, difference: maxAbsDifference(cGrad, expected), allowed: 1e-3 * scale + floor,
                                     scale: scale))
            case .runningMean, .runningVar:
                let stats = reference.batchStatistics[p.layer]!
                let batch = p.kind == .runningMean ? stats.mean : stats.variance
                let expected = zip(params[p.name]!, batch).map { 0.9 * Double($0) + 0.1 * $1 }
                let scale = expected.map(abs).max()!
                entries.append(Entry(name: p.name, difference: maxAbsDifference(new, expected), allowed: 1e-5 * (scale + 1),
                                     scale: scale))
            }
        }
        counters = Dictionary(uniqueKeysWithValues: graph.batchNormNames.map { ($0, updated[$0 + ".num_batches_tracked"]?.ints ?? []) })
    }
}

/// A model's training steps against a PyTorch training fixture
/// (Tests/Fixtures/NAME.train.safetensors, make_train_fixtures.py), with the
/// comparisons of TrainingTests.tenStepsMatchPyTorch: each step's loss within
/// 1e-4 relative, and, after all 10 steps, every parameter within 1e-3 of its
/// tensor's scale (+1e-6). With fewer steps only the losses are compared (the
/// fixture holds the parameters after step 10 only).
public struct PyTorchTrainingComparison: Sendable {
    public var losses: [Float]
    public var expectedLosses: [Float]
    public var worstLossRelative: Double
    /// (parameter, |C − PyTorch|, allowed); empty unless all 10 steps ran.
    public var parameters: [(name: String, difference: Double, allowed: Double)]
    public var worstParameterRelative: Double
    public var countersMatch: Bool

    public init(fixture name: String, model: BuiltModel, steps: Int = 10) throws {
        let fixture = try SafeTensors.read(CBuild.root + "/Tests/Fixtures/\(name).train.safetensors")
        let graph = try Pipeline.analyseTraining(try TestNetworks.fixture(name))
        let weights = model.directory + "/init-\(UUID().uuidString).safetensors"
        let after = model.directory + "/final-\(UUID().uuidString).safetensors"
        let initial = fixture.filter { $0.key.hasPrefix("init.") }.map { (String($0.key.dropFirst(5)), $0.value) }.sorted { $0.0 < $1.0 }
        try SafeTensors.write(initial, to: weights)
        let inputs = fixture["inputs"]!, labels = fixture["labels"]!, hyper = fixture["hyper"]!.floats
        let n = inputs.shape[1], image = inputs.shape[2...].reduce(1, *)
        let x = inputs.floats, y = labels.ints
        let batches = (0..<steps).map { t in
            (Array(x[(t * n * image)..<((t + 1) * n * image)]), y[(t * n)..<((t + 1) * n)].map { Int32($0) })
        }
        losses = try model.train(weights: weights, steps: batches, batch: n, lr: hyper[0], momentum: hyper[1],
                                 weightDecay: hyper[2], save: after)
        expectedLosses = Array(fixture["losses"]!.floats.prefix(steps))
        worstLossRelative = losses.count == expectedLosses.count
            ? zip(losses, expectedLosses).map { Double(abs($0 - $1) / abs($1)) }.max() ?? 0 : .infinity
        parameters = []
        worstParameterRelative = 0
        countersMatch = true
        guard steps == 10 else { return }
        let final = try SafeTensors.read(after)
        for p in graph.parameters {
            let expected = fixture["final." + p.name]!.floats
            let scale = Double(expected.map(abs).max()!)
            let diff = final[p.name].map { maxAbsDifference($0.floats, expected) } ?? .infinity
            worstParameterRelative = max(worstParameterRelative, diff / max(scale, 1e-12))
            parameters.append((p.name, diff, 1e-3 * scale + 1e-6))
        }
        for bn in graph.batchNormNames where final[bn + ".num_batches_tracked"]?.ints != fixture["final.\(bn).num_batches_tracked"]?.ints {
            countersMatch = false
        }
    }
}
