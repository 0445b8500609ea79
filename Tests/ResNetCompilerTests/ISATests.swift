import Foundation
import ResNetCompiler
import ResNetDSL
import ResNetTestSupport
import Testing

/// One small network that puts one kernel (or one block) on an awkward shape,
/// ending in the classifier the C API needs.
struct KernelCase: Sendable, CustomStringConvertible {
    var name: String
    var make: @Sendable (String) -> NetworkSpec
    var description: String { name }

    /// Conv → BN → ReLU on the given input, then the classifier.
    static func convBNReLU(_ name: String, input: (c: Int, h: Int, w: Int), out: Int, kernel: Int = 3,
                           stride: Int = 1, padding: Int = 1, classes: Int = 5) -> KernelCase {
        KernelCase(name: name) { net in
            Network(net, input: .image(channels: input.c, height: input.h, width: input.w)) {
                Conv2D(out, kernel: kernel, stride: stride, padding: padding, name: "conv1")
                BatchNorm(name: "bn1")
                ReLU()
                GlobalAvgPool()
                Dense(classes, name: "fc")
                Softmax()
            }.spec
        }
    }

    static let all: [KernelCase] = [
        // Channel counts that are not a multiple of a 16-lane (or 8- or 4-lane)
        // vector, the first on an odd, non-square 7×9 map.
        convBNReLU("ch5to7", input: (5, 7, 9), out: 7),
        convBNReLU("ch20to33", input: (20, 6, 6), out: 33, classes: 7),
        // Map rows shorter than a 16-wide tile (and than 4 lanes); 11×5 is also odd and non-square.
        convBNReLU("width3", input: (4, 12, 3), out: 17),
        convBNReLU("map11x5", input: (3, 11, 5), out: 12, classes: 3),
        // Stride 2 on odd sizes: unpadded 11×11 → 5×5, then padded 5×5 → 3×3.
        KernelCase(name: "stride2") { net in
            Network(net, input: .image(channels: 8, height: 11, width: 11)) {
                Conv2D(9, kernel: 3, stride: 2, padding: 0, name: "conv1")
                BatchNorm(name: "bn1")
                ReLU()
                Conv2D(16, kernel: 3, stride: 2, padding: 1, name: "conv2")
                BatchNorm(name: "bn2")
                ReLU()
                GlobalAvgPool()
                Dense(5, name: "fc")
                Softmax()
            }.spec
        },
        // 1×1 convs, stride 1 and 2.
        KernelCase(name: "pointwise") { net in
            Network(net, input: .image(channels: 12, height: 7, width: 9)) {
                Conv2D(20, kernel: 1, name: "conv1")
                BatchNorm(name: "bn1")
                ReLU()
                Conv2D(8, kernel: 1, stride: 2, name: "conv2")
                BatchNorm(name: "bn2")
                ReLU()
                GlobalAvgPool()
                Dense(5, name: "fc")
                Softmax()
            }.spec
        },
        // A 5×5 conv with bias: with BN after it, and with only a ReLU.
        KernelCase(name: "conv5bias") { net in
            Network(net, input: .image(channels: 3, height: 10, width: 13)) {
                Conv2D(6, kernel: 5, padding: 2, bias: true, name: "conv1")
                BatchNorm(name: "bn1")
                ReLU()
                Conv2D(10, kernel: 5, padding: 2, bias: true, name: "conv2")
                ReLU()
                GlobalAvgPool()
                Dense(4, name: "fc")
                Softmax()
            }.spec
        },
        // The ImageNet stem: 7×7 stride-2 pad-3 conv, then 3×3/2 max pool (odd input).
        KernelCase(name: "stem7") { net in
            Network(net, input: .image(channels: 3, height: 23, width: 21)) {
                Conv2D(8, kernel: 7, stride: 2, padding: 3, name: "conv1")
                BatchNorm(name: "bn1")
                ReLU()
                MaxPool(kernel: 3, stride: 2, padding: 1)
                GlobalAvgPool()
                Dense(6, name: "fc")
                Softmax()
            }.spec
        },
        // An identity block on an odd map with 10 channels.
        KernelCase(name: "identity") { net in
            Network(net, input: .image(channels: 3, height: 7, width: 9)) {
                Conv2D(10, kernel: 3, padding: 1, name: "conv1")
                BatchNorm(name: "bn1")
                ReLU()
                Residual(name: "layer1.0", shortcut: .identity) {
                    Conv2D(10, kernel: 3, padding: 1, name: "conv1")
                    BatchNorm(name: "bn1")
                    ReLU()
                    Conv2D(10, kernel: 3, padding: 1, name: "conv2")
                    BatchNorm(name: "bn2")
                }
                ReLU()
                GlobalAvgPool()
                Dense(5, name: "fc")
                Softmax()
            }.spec
        },
        // Option A: stride 2 on an odd map, 24 → 40 channels (16 zero channels appended).
        KernelCase(name: "zeropad") { net in
            Network(net, input: .image(channels: 3, height: 9, width: 11)) {
                Conv2D(24, kernel: 3, padding: 1, name: "conv1")
                BatchNorm(name: "bn1")
                ReLU()
                Residual(name: "layer2.0", shortcut: .zeroPad) {
                    Conv2D(40, kernel: 3, stride: 2, padding: 1, name: "conv1")
                    BatchNorm(name: "bn1")
                    ReLU()
                    Conv2D(40, kernel: 3, padding: 1, name: "conv2")
                    BatchNorm(name: "bn2")
                }
                ReLU()
                GlobalAvgPool()
                Dense(10, name: "fc")
                Softmax()
            }.spec
        },
        // A bottleneck on a 5×7 map: its stride-1 1×1 convs run as one row of 35
        // pixels (Schedule.flattensRows), the last with the identity shortcut added.
        KernelCase(name: "bottleneck") { net in
            Network(net, input: .image(channels: 3, height: 5, width: 7)) {
                Conv2D(20, kernel: 3, padding: 1, name: "conv1")
                BatchNorm(name: "bn1")
                ReLU()
                Residual(name: "layer1.0", shortcut: .identity) {
                    Conv2D(9, kernel: 1, name: "conv1")
                    BatchNorm(name: "bn1")
                    ReLU()
                    Conv2D(9, kernel: 3, padding: 1, name: "conv2")
                    BatchNorm(name: "bn2")
                    ReLU()
                    Conv2D(20, kernel: 1, name: "conv3")
                    BatchNorm(name: "bn3")
                }
                ReLU()
                GlobalAvgPool()
                Dense(4, name: "fc")
                Softmax()
            }.spec
        },
        // A projection block (1×1 stride-2 conv + BN on the shortcut), 12 → 20 channels.
        KernelCase(name: "projection") { net in
            Network(net, input: .image(channels: 3, height: 11, width: 7)) {
                Conv2D(12, kernel: 3, padding: 1, name: "conv1")
                BatchNorm(name: "bn1")
                ReLU()
                Residual(name: "layer2.0", shortcut: .projection) {
                    Conv2D(20, kernel: 3, stride: 2, padding: 1, name: "conv1")
                    BatchNorm(name: "bn1")
                    ReLU()
                    Conv2D(20, kernel: 3, padding: 1, name: "conv2")
                    BatchNorm(name: "bn2")
                }
                ReLU()
                GlobalAvgPool()
                Dense(7, name: "fc")
                Softmax()
            }.spec
        },
    ]

    static func named(_ name: String) -> KernelCase { all.first { $0.name == name }! }
}

/// Every ISA path of the generated C — AVX-512 (-march=native here), AVX2 + FMA,
/// portable C on the x86-64 baseline, and NEON on aarch64 under qemu — against
/// the float64 interpreter on awkward shapes, against PyTorch, and warning-free;
/// and every build's initial weights are ReferenceInit's bits.
@Suite(.temporaryFiles) struct ISATests {
    // MARK: toolchains select the paths they name

    /// Each variant's compiler defines the feature macros of its path and not the
    /// others' (so e.g. the AVX2 build can never take the AVX-512 path).
    @Test(arguments: ISA.variants)
    func variantDefinesItsFeatureMacros(variant: ISA.Variant) throws {
        #expect(!ISA.compilers.isEmpty)
        for cc in ISA.compilers {
            let macros = try ISA.predefinedMacros(cc: cc, flags: variant.flags)
            for m in variant.defines { #expect(macros[m] != nil, "\(cc) \(variant.flags): \(m) not defined") }
            for m in variant.undefines { #expect(macros[m] == nil, "\(cc) \(variant.flags): \(m) defined") }
        }
    }

    /// This machine has AVX-512 (so native is the AVX-512 path) or says why the AVX2 variant is skipped.
    @Test func hostPathsAreKnown() {
        guard ISA.hostIsX86_64 else { return }
        print("ISA: cpu has avx512f=\(ISA.cpuFlags.contains("avx512f")) avx2=\(ISA.cpuFlags.contains("avx2")) fma=\(ISA.cpuFlags.contains("fma")); variants \(ISA.variants.map(\.name))")
        if let reason = ISA.avx2SkipReason { print("ISA: AVX2 variant skipped: \(reason)") }
        #expect(!ISA.cpuFlags.isEmpty, "no flags line in /proc/cpuinfo")
    }

    // MARK: kernel matrix

    /// Every (compiler, OpenMP) pair that builds here: gcc and clang, serial, then with OpenMP where it links.
    static let combinations: [(cc: String, openMP: Bool)] = {
        let compilers = ISA.compilers.isEmpty ? ["cc"] : ISA.compilers
        return compilers.map { ($0, false) } + compilers.filter(ISA.hasOpenMP).map { ($0, true) }
    }()

    /// The toolchain for one matrix cell: the (compiler, OpenMP) pairs rotate over
    /// the cases, shifted per variant, so every variant is built by gcc and by
    /// clang, each with and without OpenMP (the vector kernels inside parallel
    /// loops too), without building every case four times.
    static func matrixToolchain(_ kernel: KernelCase, _ variant: ISA.Variant) -> CBuild.Toolchain {
        let i = KernelCase.all.firstIndex { $0.name == kernel.name }!, j = ISA.variants.firstIndex(of: variant) ?? 0
        let c = combinations[(i + j) % combinations.count]
        return variant.toolchain(cc: c.cc, openMP: c.openMP)
    }

    /// C probabilities against the interpreter at batch 1 and 3 on random weights;
    /// returns the worst difference.
    @discardableResult
    static func checkAgainstInterpreter(_ spec: NetworkSpec, model: BuiltModel, label: String, seed: UInt64 = 7) throws -> Double {
        let graph = try Pipeline.analyse(spec)
        let params = randomParameters(graph, seed: seed)
        let weights = model.directory + "/weights.safetensors"
        try writeParameters(params, graph: graph, to: weights)
        let interpreter = try Interpreter(graph: graph, parameters: params)
        var rng = TestRandom(seed: seed + 1)
        var worst = 0.0
        for n in [1, 3] {
            let input = rng.floats(n * graph.shape(0).count)
            let expected = try interpreter.forward(input, batch: n)
            let got = try model.infer(weights: weights, input: input, batch: n, maxBatch: n + 1)
            let diff = maxAbsDifference(got, expected)
            worst = max(worst, diff)
            #expect(diff <= 1e-4, "\(label) batch \(n): max |C − interpreter| = \(diff)")
        }
        return worst
    }

    /// Every case on every host path against the interpreter: probabilities at
    /// batch 1 and 3, and, in the same binary (every build has the training step),
    /// one SGD step's gradients, running statistics and loss at batch 3.
    @Test(arguments: KernelCase.all, ISA.variants)
    func kernelMatchesInterpreter(kernel: KernelCase, variant: ISA.Variant) throws {
        let spec = kernel.make(kernel.name)
        let toolchain = Self.matrixToolchain(kernel, variant)
        let label = "\(kernel) [\(variant): \(toolchain)]"
        let model = try BuiltModel(spec, toolchain: toolchain)
        let worst = try Self.checkAgainstInterpreter(spec, model: model, label: label)
        try Self.expectNoWiderVectors(model.executable, variant: variant, label: label)
        let gradients = try Self.checkGradients(spec, model: model, label: label)
        try Self.checkInitialWeights(model, label: label)
        print("ISA matrix \(kernel.name) \(variant.name) [\(toolchain)]: max |C − interpreter| = \(worst); training: \(gradients)")
    }

    /// One training step against the interpreter (GradientComparison, the
    /// tolerances of TrainingTests.checkGradients); returns a summary line.
    static func checkGradients(_ spec: NetworkSpec, model: BuiltModel, label: String) throws -> String {
        let check = try GradientComparison(spec: spec, model: model, batch: 3)
        #expect(check.lossOK, "\(label): loss \(check.loss) vs \(check.referenceLoss)")
        #expect(!check.entries.isEmpty)
        for e in check.failures { Issue.record("\(label): \(e)") }
        #expect(check.counters.values.allSatisfy { $0 == [4] }, "\(label): num_batches_tracked \(check.counters)")
        return "loss rel diff \(abs(Double(check.loss) - check.referenceLoss) / abs(check.referenceLoss)), "
            + "worst gradient rel diff \(check.worstGradient.map { "\($0.relative) (\($0.entry.name))" } ?? "-")"
    }

    /// NAME_init_params gives ReferenceInit's bits in this build too (see
    /// DeterminismTests): the same seed, the same weights on every path.
    static func checkInitialWeights(_ model: BuiltModel, label: String) throws {
        let differences = try model.initialWeightDifferences(seed: 20_260_530)
        #expect(differences.isEmpty, "\(label): initial weights: \(differences.joined(separator: "; "))")
    }

    /// Nothing wider than the variant's path in its binary: no zmm in the AVX2
    /// build, no ymm or zmm in the baseline build (kernels choose their path by
    /// feature macros at compile time, never by run-time dispatch to code this
    /// CPU level may lack).
    static func expectNoWiderVectors(_ executable: String, variant: ISA.Variant, label: String) throws {
        guard ISA.hostIsX86_64 else { return }
        let registers = try vectorRegisters(executable)
        switch variant.name {
        case "avx2": #expect(registers.zmm == 0, "\(label): \(registers.zmm) instructions on zmm in the AVX2 build")
        case "portable": #expect(registers.zmm + registers.ymm == 0, "\(label): AVX code (ymm \(registers.ymm), zmm \(registers.zmm)) in the baseline build")
        default: break
        }
    }

    // MARK: warning-free builds of every path

    /// One build of the warning-free test: a variant, a compiler, OpenMP or not.
    struct Build: Sendable, CustomStringConvertible {
        var variant: ISA.Variant
        var cc: String
        var openMP: Bool
        var toolchain: CBuild.Toolchain { variant.toolchain(cc: cc, openMP: openMP) }
        var description: String { toolchain.description }
    }

    /// -O3 -march=native with every compiler here, with and without OpenMP (the
    /// kernel matrix builds AVX2 and portable with every compiler and OpenMP
    /// setting too, on its one-layer networks).
    static let warningFreeBuilds: [Build] = combinations.map { Build(variant: ISA.native, cc: $0.cc, openMP: $0.openMP) }

    /// A network with every layer and shortcut kind (mixnet) built with
    /// CBuild.warningFlags (-Wall -Wextra -Wpedantic -Wshadow -Wconversion
    /// -Werror: any diagnostic fails the build) and checked against the
    /// interpreter, and the trainer (runtime/trainer.c, with the runtime and
    /// data reader it includes) compiled against its header with the same
    /// flags. (Every other build of the suite uses these flags too: the kernel
    /// matrix on every path, aarch64.) Once the kernels use AVX-512 intrinsics
    /// (the C names `__AVX512F__`), the native binary of an AVX-512 machine must
    /// use zmm registers with every compiler (clang's auto-vectoriser alone uses
    /// none there today).
    @Test(arguments: warningFreeBuilds)
    func warningFreeOnEveryCompiler(build: Build) throws {
        #expect(ISA.compilers.count >= 2 || !ISA.inCI, "CI has gcc and clang; found \(ISA.compilers)")
        let spec = TestNetworks.mixnet(), toolchain = build.toolchain, variant = build.variant
        let model = try BuiltModel(spec, toolchain: toolchain)
        try Self.compileTrainer(model, toolchain: toolchain)
        let worst = try Self.checkAgainstInterpreter(spec, model: model, label: "mixnet [\(toolchain)]")
        try Self.expectNoWiderVectors(model.executable, variant: variant, label: "mixnet [\(toolchain)]")
        try Self.checkInitialWeights(model, label: "mixnet [\(toolchain)]")
        let registers = try Self.vectorRegisters(model.executable)
        print("ISA warning-free mixnet [\(toolchain)]: max |C − interpreter| = \(worst); instructions on zmm \(registers.zmm), ymm \(registers.ymm)")
        guard ISA.hostIsX86_64 else { return }
        #expect(model.files.contains { $0.name == "mixnet.c" })
        let source = model.files.filter { $0.name.hasSuffix(".c") || $0.name.hasSuffix(".h") }.map(\.contents).joined()
        if variant.name == "native" && variant.defines.contains("__AVX512F__") && source.contains("__AVX512F__") {
            #expect(registers.zmm > 0, "\(toolchain): the C has an AVX-512 path but the binary uses no zmm")
        }
    }

    /// runtime/trainer.c against a built model's header (compiled, not linked:
    /// the model's C is already built); throws on any diagnostic.
    static func compileTrainer(_ model: BuiltModel, toolchain: CBuild.Toolchain) throws {
        try CBuild.compileObject(CBuild.root + "/runtime/trainer.c", output: model.directory + "/trainer.o", toolchain: toolchain,
                                 extra: ["-I", model.directory, "-DNET=\(model.name)", "-DUNET=\(model.name.uppercased())",
                                         "-DNET_HEADER=\"\(model.name).h\""])
    }

    /// How many instructions of an executable name zmm / ymm registers (objdump -d).
    static func vectorRegisters(_ executable: String) throws -> (zmm: Int, ymm: Int) {
        guard HostTools.which("objdump") != nil else { return (0, 0) }
        let r = try CBuild.run("objdump", ["-d", "--no-show-raw-insn", executable])
        guard r.status == 0 else { return (0, 0) }
        var zmm = 0, ymm = 0
        for line in r.output.split(separator: "\n") {
            if line.contains("%zmm") { zmm += 1 } else if line.contains("%ymm") { ymm += 1 }
        }
        return (zmm, ymm)
    }

    // MARK: aarch64 (NEON) under qemu

    /// Present, or CI=true (where a missing cross toolchain must fail, not skip).
    static let armRuns = CrossTarget.aarch64 != nil || ISA.inCI
    static let armSkip: Comment = "aarch64 cross toolchain missing: \(CrossTarget.aarch64Missing)"

    static func armTarget() throws -> CrossTarget {
        try #require(CrossTarget.aarch64, "aarch64 cross toolchain missing (CI=true): \(CrossTarget.aarch64Missing)")
    }

    /// The cross compiler takes the NEON path.
    @Test(.enabled(if: armRuns, armSkip))
    func armDefinesNEON() throws {
        let arm = try Self.armTarget()
        let macros = try ISA.predefinedMacros(cc: arm.cc, flags: arm.toolchain().extra)
        #expect(macros["__aarch64__"] != nil && macros["__ARM_NEON"] != nil)
        #expect(macros["__AVX2__"] == nil && macros["__SSE2__"] == nil)
    }

    /// ResNet-20 with PyTorch's weights, built for aarch64 and run under qemu:
    /// PyTorch's probabilities within 1e-4.
    @Test(.enabled(if: armRuns, armSkip))
    func armResNet20MatchesPyTorch() throws {
        let arm = try Self.armTarget()
        let fixtures = CBuild.root + "/Tests/Fixtures/"
        let io = try SafeTensors.read(fixtures + "resnet20.io.safetensors")
        let input = io["input"]!, probs = io["probs"]!
        let model = try arm.build(try TestNetworks.fixture("resnet20"))
        let got = try model.infer(weights: fixtures + "resnet20.weights.safetensors", input: input.floats, batch: input.shape[0])
        let diff = maxAbsDifference(got, probs.floats)
        print("ISA aarch64 (qemu) resnet20: max |C − PyTorch| = \(diff)")
        #expect(diff <= 1e-4, "aarch64 resnet20: max |C − PyTorch| = \(diff)")
    }

    /// Ten SGD steps of the mixnet PyTorch fixture (every layer and shortcut kind)
    /// under qemu: losses within 1e-4 and parameters within 1e-3 relative, as
    /// TrainingTests.tenStepsMatchPyTorch checks the host build; and the trainer
    /// compiles warning-free for aarch64. (ResNet-20's training fixture takes
    /// ~25 s per step under emulation.)
    @Test(.enabled(if: armRuns, armSkip))
    func armTrainingMatchesPyTorch() throws {
        let arm = try Self.armTarget()
        let model = try arm.build(try TestNetworks.fixture("mixnet"))
        try Self.compileTrainer(model, toolchain: arm.toolchain())
        let check = try PyTorchTrainingComparison(fixture: "mixnet", model: model)
        #expect(check.worstLossRelative <= 1e-4, "aarch64 mixnet: losses \(check.losses) vs \(check.expectedLosses)")
        for p in check.parameters where !(p.difference <= p.allowed) {
            Issue.record("aarch64 mixnet: \(p.name) differs by \(p.difference) (allowed \(p.allowed))")
        }
        #expect(check.parameters.count > 0 && check.countersMatch)
        print("ISA aarch64 (qemu) mixnet training: worst loss rel diff \(check.worstLossRelative), worst param rel diff \(check.worstParameterRelative)")
    }

    /// Part of the kernel matrix on the NEON path (4 lanes: 5, 7, 9 and 3 are all
    /// awkward there), against the interpreter at batch 1 and 3, and one training step.
    @Test(.enabled(if: armRuns, armSkip),
          arguments: ["ch5to7", "width3", "map11x5", "stride2", "stem7", "zeropad", "projection", "bottleneck"])
    func armKernelMatchesInterpreter(kernel name: String) throws {
        let arm = try Self.armTarget()
        let kernel = KernelCase.named(name)
        let spec = kernel.make(kernel.name)
        let model = try arm.build(spec)
        let label = "\(name) [aarch64 qemu: \(arm.toolchain())]"
        let worst = try Self.checkAgainstInterpreter(spec, model: model, label: label)
        let gradients = try Self.checkGradients(spec, model: model, label: label)
        try Self.checkInitialWeights(model, label: label)
        print("ISA matrix \(name) aarch64 [\(arm.toolchain())] (qemu): max |C − interpreter| = \(worst); training: \(gradients)")
    }
}
