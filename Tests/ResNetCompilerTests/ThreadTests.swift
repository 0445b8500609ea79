import Foundation
import ResNetCompiler
import ResNetDSL
import ResNetTestSupport
import Testing

/// Threads change how work is split, never the result: the blocked kernels
/// split outputs (no shared writes), and every reduction (batch-norm
/// statistics, weight gradients) sums per-image partials in image order.
/// So one training step and one inference give the same bits run to run and
/// at any thread count.
@Suite(.temporaryFiles) struct ThreadTests {
    @Test func resultsAreBitIdenticalAtAnyThreadCount() throws {
        guard let omp = CBuild.toolchains.first(where: \.openMP) else {
            Issue.record("no C compiler with OpenMP on this machine")
            return
        }
        let spec = try ResNet.cifar(depth: 8, shortcut: .a).spec
        let model = try BuiltModel(spec, toolchain: omp)
        var rng = TestRandom(seed: 11)
        let n = 6
        let x = model.directory + "/x.f32", y = model.directory + "/y.i32"
        try rng.floats(n * 3 * 32 * 32).withUnsafeBytes { Data($0) }.write(to: URL(fileURLWithPath: x))
        try (0..<n).map { Int32($0 % 10) }.withUnsafeBytes { Data($0) }.write(to: URL(fileURLWithPath: y))
        var weights: [Data] = []
        var probs: [Data] = []
        for (k, threads) in [1, 2, 2, 3].enumerated() {
            let saved = model.directory + "/w\(k).safetensors", out = model.directory + "/p\(k).f32"
            let r = try HostTools.run(model.executable,
                                      [String(n), "init", "3", "train", x, y, String(n), "0.05", "train", x, y, String(n), "0.05",
                                       "save", saved, "infer", x, String(n), out],
                                      environment: ["OMP_NUM_THREADS": String(threads)])
            #expect(r.status == 0, "\(r.output)")
            weights.append(try Data(contentsOf: URL(fileURLWithPath: saved)))
            probs.append(try Data(contentsOf: URL(fileURLWithPath: out)))
        }
        #expect(Set(weights).count == 1, "weights after two steps differ between 1, 2, 2 and 3 threads")
        #expect(Set(probs).count == 1, "probabilities differ between 1, 2, 2 and 3 threads")
    }
}
