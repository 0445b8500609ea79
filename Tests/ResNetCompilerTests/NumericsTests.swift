import Foundation
import ResNetCompiler
import ResNetDSL
import ResNetTestSupport
import Testing

/// Generated C against the reference interpreter (float64) and PyTorch fixtures.
@Suite(.temporaryFiles) struct NumericsTests {
    /// C probabilities vs the interpreter's on random weights, fused and unfused.
    func checkAgainstInterpreter(_ spec: NetworkSpec, batches: [Int], fuse: Bool = true, seed: UInt64 = 7) throws {
        let model = try BuiltModel(spec, fuse: fuse)
        let unfused = try Pipeline.analyse(spec)
        let params = randomParameters(unfused, seed: seed)
        let weights = model.directory + "/weights.safetensors"
        try writeParameters(params, graph: unfused, to: weights)
        let interpreter = try Interpreter(graph: unfused, parameters: params)
        var rng = TestRandom(seed: seed + 1)
        for n in batches {
            let input = rng.floats(n * unfused.shape(0).count)
            let expected = try interpreter.forward(input, batch: n)
            let got = try model.infer(weights: weights, input: input, batch: n, maxBatch: n + 1)
            let diff = maxAbsDifference(got, expected)
            #expect(diff <= 1e-4, "\(spec.name) fuse=\(fuse) batch \(n): max |C − interpreter| = \(diff)")
        }
    }

    @Test func resnet20MatchesInterpreter() throws {
        try checkAgainstInterpreter(try ResNet.cifar(depth: 20).spec, batches: [1, 3])
    }

    @Test(arguments: [true, false])
    func mixnetMatchesInterpreter(fuse: Bool) throws {
        try checkAgainstInterpreter(TestNetworks.mixnet(), batches: [1, 4], fuse: fuse)
    }

    @Test(arguments: [true, false])
    func oddnetMatchesInterpreter(fuse: Bool) throws {
        try checkAgainstInterpreter(TestNetworks.oddnet(), batches: [1, 2], fuse: fuse)
    }

    @Test func optionBAndPlainMatchInterpreter() throws {
        try checkAgainstInterpreter(try ResNet.cifar(depth: 8, shortcut: .b).spec, batches: [2])
        try checkAgainstInterpreter(try ResNet.cifar(depth: 8, shortcut: .c, name: "resnet8c").spec, batches: [1])
        try checkAgainstInterpreter(try PlainNet.cifar(depth: 8).spec, batches: [2])
    }

    @Test func fusedAndUnfusedAgree() throws {
        let spec = try ResNet.cifar(depth: 20).spec
        let fused = try BuiltModel(spec, fuse: true)
        let unfused = try BuiltModel(spec, fuse: false)
        var rng = TestRandom(seed: 99)
        let input = rng.floats(2 * 3 * 32 * 32)
        let a = try fused.infer(weights: nil, input: input, batch: 2, seed: 5)
        let b = try unfused.infer(weights: nil, input: input, batch: 2, seed: 5)
        #expect(maxAbsDifference(a, b) <= 1e-5)
    }

    /// PyTorch's probabilities (Tests/Fixtures, made by make_fixtures.py) from the same weights.
    @Test(arguments: ["resnet20", "resnet20b", "mixnet", "plain8"])
    func matchesPyTorch(name: String) throws {
        try Self.checkAgainstPyTorch(name, model: try BuiltModel(try TestNetworks.fixture(name)), label: name)
    }

    /// A fixture network's C probabilities against PyTorch's (within 1e-4).
    static func checkAgainstPyTorch(_ name: String, model: BuiltModel, label: String) throws {
        let fixtures = CBuild.root + "/Tests/Fixtures/"
        let io = try SafeTensors.read(fixtures + name + ".io.safetensors")
        let input = io["input"]!, probs = io["probs"]!
        let n = input.shape[0]
        let got = try model.infer(weights: fixtures + name + ".weights.safetensors", input: input.floats, batch: n)
        let diff = maxAbsDifference(got, probs.floats)
        print("PyTorch fixture \(label): max |C − PyTorch| = \(diff)")
        #expect(diff <= 1e-4, "\(label): max |C − PyTorch| = \(diff)")
    }

    /// The interpreter itself agrees with PyTorch (it is the oracle for everything else).
    @Test(arguments: ["mixnet", "resnet20"])
    func interpreterMatchesPyTorch(name: String) throws {
        let fixtures = CBuild.root + "/Tests/Fixtures/"
        let io = try SafeTensors.read(fixtures + name + ".io.safetensors")
        let weights = try SafeTensors.read(fixtures + name + ".weights.safetensors")
        let graph = try Pipeline.analyse(try TestNetworks.fixture(name))
        let interpreter = try Interpreter(graph: graph, parameters: weights.mapValues(\.floats))
        let input = io["input"]!
        let got = try interpreter.forward(input.floats, batch: input.shape[0])
        #expect(maxAbsDifference(got, io["probs"]!.floats) <= 1e-5)
    }
}
