import Foundation
import resnet20
import ResNetCompiler
import ResNetTestSupport
import Testing

/// generated/resnet20 is a SwiftPM C target: Swift calls the generated C
/// through its module map, as an app embedding a compiled network would.
@Suite(.temporaryFiles) struct SwiftInteropTests {
    @Test func swiftCallsTheGeneratedC() throws {
        #expect(RESNET20_INPUT_C == 3 && RESNET20_INPUT_H == 32 && RESNET20_INPUT_W == 32)
        #expect(RESNET20_NUM_CLASSES == 10)
        let model = try #require(resnet20_create(2))
        defer { resnet20_destroy(model) }
        #expect(resnet20_init_params(model, 42) == 0)
        // SwiftPM's C build gives ReferenceInit's bits too (DeterminismTests).
        let dir = try CBuild.temporaryDirectory("interop")
        #expect(resnet20_save(model, dir + "/init.safetensors") == 0)
        let graph = try Pipeline.analyse(try BuiltIn.resnet20())
        let differences = try ReferenceInit.differences(savedAt: dir + "/init.safetensors", graph: graph, seed: 42)
        #expect(differences.isEmpty, "\(differences.joined(separator: "; "))")
        var rng = TestRandom(seed: 3)
        let x = rng.floats(2 * 3 * 32 * 32)
        var probs = [Float](repeating: 0, count: 20)
        #expect(resnet20_infer(model, x, 2, &probs) == 0)
        for row in 0..<2 {
            let sum = probs[(row * 10)..<(row * 10 + 10)].reduce(0, +)
            #expect(abs(sum - 1) < 1e-5)
        }
        // Batch bounds and error messages come through too.
        #expect(resnet20_infer(model, x, 3, &probs) < 0)
        let message = String(cString: resnet20_strerror(resnet20_infer(model, x, 0, &probs)))
        #expect(message.contains("batch"))
    }

    /// The C the Swift target links is the same as the compiler's fresh output,
    /// and it agrees with the interpreter on PyTorch's ResNet-20 weights.
    @Test func swiftPathMatchesPyTorchFixture() throws {
        let fixtures = CBuild.root + "/Tests/Fixtures/"
        let io = try SafeTensors.read(fixtures + "resnet20.io.safetensors")
        let model = try #require(resnet20_create(3))
        defer { resnet20_destroy(model) }
        #expect(resnet20_load(model, fixtures + "resnet20.weights.safetensors") == 0)
        var probs = [Float](repeating: 0, count: 30)
        #expect(resnet20_infer(model, io["input"]!.floats, 3, &probs) == 0)
        #expect(maxAbsDifference(probs, io["probs"]!.floats) <= 1e-4)
    }
}

import resnet50
import ResNetDSL

/// generated/resnet50 (the paper's bottleneck variant, option B) from Swift.
@Suite(.temporaryFiles) struct ResNet50InteropTests {
    /// The checked-in, fused ResNet-50 agrees with an unfused build of the same
    /// network (one kernel per op, compiled by the test driver) on the same weights.
    @Test func resnet50FromSwiftMatchesUnfusedBuild() throws {
        #expect(RESNET50_INPUT_C == 3 && RESNET50_INPUT_H == 224 && RESNET50_NUM_CLASSES == 1000)
        let model = try #require(resnet50_create(1))
        defer { resnet50_destroy(model) }
        #expect(resnet50_init_params(model, 17) == 0)
        let dir = try CBuild.temporaryDirectory("r50")
        #expect(resnet50_save(model, dir + "/w.safetensors") == 0)
        let saved = try SafeTensors.read(dir + "/w.safetensors")
        let graph = try Pipeline.analyse(try ResNet.imagenet(depth: 50).spec)
        #expect(saved.count == graph.parameters.count + graph.batchNormNames.count)
        #expect(saved["layer4.2.conv3.weight"]?.shape == [2048, 512, 1, 1])

        var rng = TestRandom(seed: 8)
        let x = rng.floats(3 * 224 * 224)
        var probs = [Float](repeating: 0, count: 1000)
        #expect(resnet50_infer(model, x, 1, &probs) == 0)

        var tc = CBuild.standard
        tc.openMP = CBuild.toolchains.contains { $0.cc == tc.cc && $0.openMP }
        let unfused = try BuiltModel(try ResNet.imagenet(depth: 50).spec, fuse: false, toolchain: tc)
        let reference = try unfused.infer(weights: dir + "/w.safetensors", input: x, batch: 1)
        #expect(maxAbsDifference(probs, reference) <= 1e-5)
        #expect(abs(probs.reduce(0, +) - 1) < 1e-4)
    }
}
