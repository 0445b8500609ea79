import Foundation
import ResNetCompiler
import ResNetDSL
import ResNetTestSupport
import Testing

/// A seed gives the same initial weights, bit for bit, with every compiler,
/// optimisation level, ISA and OpenMP setting: `NAME_init_params` uses only
/// exactly rounded arithmetic (runtime.c's `rc_rng`), so every build must
/// equal `ReferenceInit`, the same algorithm in Swift. ISATests checks this
/// for each build of its kernel matrix (gcc and clang at -O3 with
/// -march=native, AVX2 and the portable path, with and without OpenMP, and
/// aarch64 under qemu) and SwiftInteropTests for SwiftPM's build of
/// generated/resnet20; the builds here add what those lack: -O0, and
/// contraction of multiply-adds into FMAs (gcc's default outside ISO mode,
/// and clang's -ffp-contract=fast) on an FMA target. Training's
/// reproducibility (run to run, and across --resume) is TrainCommandTests'.
@Suite(.temporaryFiles) struct DeterminismTests {
    /// One kernel of each init kind: conv weights (normal), a conv bias and
    /// the classifier (uniform), a batch norm (constants).
    static let initnet = Network("initnet", input: .image(channels: 16, height: 4, width: 4)) {
        Conv2D(96, kernel: 5, padding: 2, bias: true, name: "conv1")
        BatchNorm(name: "bn1")
        ReLU()
        GlobalAvgPool()
        Dense(10, name: "fc")
        Softmax()
    }.spec

    /// One build of initnet's C with the test driver.
    struct Build: Sendable, CustomStringConvertible {
        var toolchain: CBuild.Toolchain
        var description: String { toolchain.description }
    }

    static let builds: [Build] = {
        let fma = ISA.hostIsX86_64 ? ["-march=native"] : []
        var result: [Build] = []
        for cc in ISA.compilers {
            let openMP = ISA.hasOpenMP(cc)
            result.append(Build(toolchain: CBuild.Toolchain(cc: cc, openMP: cc == "clang" && openMP, extra: ["-O0"])))
            // gcc: -std=gnu11 (after CBuild's -std=c11) makes -ffp-contract=fast its default, as for
            // anyone who builds the C without -std; clang needs the flag.
            let contract = cc == "gcc" ? ["-std=gnu11"] : ["-ffp-contract=fast"]
            result.append(Build(toolchain: CBuild.Toolchain(cc: cc, openMP: cc == "gcc" && openMP, extra: ["-O3"] + fma + contract)))
        }
        return result
    }()

    @Test(arguments: builds)
    func initialWeightsAreTheReferenceBits(build: Build) throws {
        let model = try BuiltModel(Self.initnet, toolchain: build.toolchain)
        for seed: UInt64 in [0, 20_260_530] {
            let differences = try model.initialWeightDifferences(seed: seed)
            #expect(differences.isEmpty, "\(build) seed \(seed): \(differences.joined(separator: "; "))")
        }
        // NAME_create initialises with seed 0.
        let created = model.directory + "/created.safetensors"
        #expect(try model.drive(maxBatch: 1, ["save", created]).status == 0)
        #expect(try ReferenceInit.differences(savedAt: created, graph: model.graph, seed: 0).isEmpty)
    }

    /// The initialiser keeps torchvision's distributions (He et al. 2015's
    /// N(0, 2/fan_out) for convs): checked on ReferenceInit, which every
    /// build equals, for ResNet-20's 270k parameters.
    @Test func initialWeightsHaveTheSpecifiedDistributions() throws {
        let graph = try Pipeline.analyse(try ResNet.cifar(depth: 20, shortcut: .a).spec)
        let values = ReferenceInit.parameters(graph, seed: 3)
        var pooled: [Double] = []
        for p in graph.parameters {
            let x = values[p.name]!.map(Double.init)
            let n = Double(x.count)
            let mean = x.reduce(0, +) / n
            let variance = x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / n
            switch Initialiser(p) {
            case let .constant(value):
                #expect(x.allSatisfy { $0 == value }, "\(p.name): not all \(value)")
            case let .uniform(bound):
                #expect(x.allSatisfy { abs($0) <= bound }, "\(p.name): outside ±\(bound)")
                #expect(x.count < 100 || abs(variance / (bound * bound / 3) - 1) < 0.2, "\(p.name): variance \(variance)")
            case let .normal(std):
                // The sample variance of n normals is within 5 standard errors (√(2/n)).
                #expect(abs(variance / (std * std) - 1) < 5 * (2 / n).squareRoot(), "\(p.name): std \(variance.squareRoot()), expected \(std)")
                #expect(abs(mean) < 5 * std / n.squareRoot(), "\(p.name): mean \(mean)")
                pooled += x.map { $0 / std }
            }
        }
        // All convs together as one standard normal sample (≈ 270k values).
        let n = Double(pooled.count)
        var moments = [0.0, 0, 0, 0]
        for z in pooled {
            let z2 = z * z
            moments[0] += z / n
            moments[1] += z2 / n
            moments[2] += z2 * z / n
            moments[3] += z2 * z2 / n
        }
        // Each within about 5 standard errors (1, √2, √15 and √96 over √n).
        #expect(abs(moments[0]) < 0.01 && abs(moments[1] - 1) < 0.015 && abs(moments[2]) < 0.04 && abs(moments[3] - 3) < 0.1,
                "pooled conv weights / std: moments \(moments)")
        let beyond3 = Double(pooled.filter { abs($0) > 3 }.count) / n
        #expect(abs(beyond3 - 0.0027) < 0.0006, "P(|z| > 3) = \(beyond3), expected 0.0027")
    }
}
