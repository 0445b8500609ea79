import Foundation
import ResNetCompiler
import ResNetDSL
import ResNetTestSupport
import Testing

/// The paper's networks and its counts (He et al. 2015, Table 1 and Table 6).
@Suite(.temporaryFiles) struct ZooTests {
    /// Table 1: multiply-adds (billions) of the ImageNet ResNets, within 3%.
    @Test(arguments: [(18, 1.8), (34, 3.6), (50, 3.8), (101, 7.6), (152, 11.3)])
    func imagenetMultiplyAddsMatchTable1(depth: Int, billions: Double) throws {
        let g = try Pipeline.analyse(try ResNet.imagenet(depth: depth).spec)
        let macs = Double(Summary.macs(g)) / 1e9
        #expect(abs(macs - billions) / billions <= 0.03, "ResNet-\(depth): \(macs) billion vs the paper's \(billions)")
        #expect(g.classes == 1000 && g.shape(0) == Shape(c: 3, h: 224, w: 224))
    }

    /// Table 6: parameters (millions) of the CIFAR ResNets, within 2%.
    @Test(arguments: [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85), (110, 1.7), (1202, 19.4)])
    func cifarParametersMatchTable6(depth: Int, millions: Double) throws {
        let g = try Pipeline.analyse(try ResNet.cifar(depth: depth).spec)
        let params = Double(Summary.learnableParameters(g)) / 1e6
        #expect(abs(params - millions) / millions <= 0.02, "ResNet-\(depth): \(params)M vs the paper's \(millions)M")
        // 6n+2 weighted layers: 6n + 1 convs and the fully connected layer.
        #expect(g.nodes.filter { $0.op == .conv }.count + 1 == depth)
    }

    /// The summary table's last line is exactly the totals, as integers.
    @Test func summaryEndsWithTotalsLine() throws {
        let g = try Pipeline.analyse(try ResNet.imagenet(depth: 50).spec)
        let lines = Summary.table(g).split(separator: "\n")
        #expect(lines.last == "total params=\(Summary.learnableParameters(g)) macs=\(Summary.macs(g))")
        #expect(lines.contains { $0.contains("layer4.2.conv3") && $0.contains("2048×7×7") })
    }

    /// torchvision's resnet50 has 25,557,032 parameters and 4.09 billion
    /// multiply-adds; the paper's variant has the same parameters, fewer MACs.
    @Test func bottleneckVariantsDifferOnlyInWhereTheStrideIs() throws {
        let paper = try Pipeline.analyse(try ResNet.imagenet(depth: 50).spec)
        let tv = try Pipeline.analyse(try ResNet.imagenet(depth: 50, variant: .torchvision).spec)
        #expect(Summary.learnableParameters(paper) == 25_557_032)
        #expect(Summary.learnableParameters(tv) == 25_557_032)
        #expect(abs(Double(Summary.macs(tv)) / 1e9 - 4.09) < 0.02)
        let p = paper.nodes.first { $0.name == "layer2.0.conv1" }!, t = tv.nodes.first { $0.name == "layer2.0.conv1" }!
        #expect(p.attrs.stride == 2 && t.attrs.stride == 1)
    }

    /// Shortcut options as in Table 3: A has no projection parameters, B
    /// projects where the shape changes, C everywhere.
    @Test func shortcutOptionsOfTable3() throws {
        func projections(_ o: ShortcutOption) throws -> Int {
            try Pipeline.analyse(try ResNet.imagenet(depth: 34, shortcut: o).spec).nodes
                .filter { $0.name.hasSuffix("downsample.0") }.count
        }
        #expect(try projections(.a) == 0)
        #expect(try projections(.b) == 3)
        #expect(try projections(.c) == 16)
        let a = try Pipeline.analyse(try ResNet.imagenet(depth: 34, shortcut: .a).spec)
        #expect(a.nodes.filter { $0.op == .zeroPad }.count == 3)
    }

    @Test func plainNetsHaveTheSameLayersWithoutShortcuts() throws {
        for (plain, res) in [(try PlainNet.cifar(depth: 56), try ResNet.cifar(depth: 56)),
                             (try PlainNet.imagenet(depth: 34), try ResNet.imagenet(depth: 34, shortcut: .a))] {
            let p = try Pipeline.analyse(plain.spec), r = try Pipeline.analyse(res.spec)
            #expect(p.nodes.filter { $0.op == .add }.isEmpty)
            #expect(p.parameters.map(\.name) == r.parameters.map(\.name))
            #expect(Summary.macs(p) == Summary.macs(r))
        }
        #expect(try PlainNet.cifar(depth: 56).name == "plain56")
        #expect(throws: ZooError.self) { try PlainNet.imagenet(depth: 50) }
        #expect(throws: ZooError.self) { try ResNet.imagenet(depth: 19) }
        #expect(throws: ZooError.self) { try ResNet.cifar(depth: 21) }
    }

    /// torchvision's resnet18 state dict (names and shapes, from the fixture
    /// written with the safetensors library) is exactly the `.torchvision` variant's.
    @Test func torchvisionResNet18NamesAndShapesMatch() throws {
        let file = try SafeTensors.read(CBuild.root + "/Tests/Fixtures/resnet18tv.weights.safetensors")
        let g = try Pipeline.analyse(try ResNet.imagenet(depth: 18, variant: .torchvision).spec)
        var expected = Dictionary(uniqueKeysWithValues: g.parameters.map { ($0.name, $0.shape) })
        for bn in g.batchNormNames { expected[bn + ".num_batches_tracked"] = [] }
        #expect(Set(file.keys) == Set(expected.keys))
        for (name, tensor) in file { #expect(tensor.shape == expected[name], "\(name)") }
    }

    /// Every torchvision ResNet's state dict (names, order and shapes, recorded by
    /// Tests/Fixtures/make_torchvision_names.py) is exactly the `.torchvision`
    /// variant's parameters plus one num_batches_tracked per BN.
    @Test(arguments: [18, 34, 50, 101, 152])
    func torchvisionStateDictsMatch(depth: Int) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: CBuild.root + "/Tests/Fixtures/torchvision_state_dicts.json"))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let entries = try #require(json["resnet\(depth)"] as? [[Any]])
        let torchvision = entries.map { ($0[0] as! String, $0[1] as! [Int]) }
        let g = try Pipeline.analyse(try ResNet.imagenet(depth: depth, variant: .torchvision).spec)
        var ours: [(String, [Int])] = []
        for p in g.parameters {
            ours.append((p.name, p.shape))
            if p.kind == .runningVar { ours.append((p.layer + ".num_batches_tracked", [])) }
        }
        #expect(ours.map(\.0) == torchvision.map(\.0))
        #expect(ours.map(\.1) == torchvision.map(\.1))
    }

    /// ResNet-1202 compiles, its C builds, runs inference, and takes a training step.
    /// (With freshly initialised running statistics, eval-mode BN does not
    /// normalise, and 600 blocks of He-initialised branches overflow float32 —
    /// as they do in PyTorch. Zeroing each block's last BN γ, torchvision's
    /// `zero_init_residual`, keeps the forward pass finite.)
    @Test func resnet1202BuildsAndRuns() throws {
        let spec = try ResNet.cifar(depth: 1202).spec
        let model = try BuiltModel(spec)
        let graph = try Pipeline.analyse(spec)
        var params = randomParameters(graph, seed: 12)
        for p in graph.parameters where p.name.hasSuffix(".bn2.weight") {
            params[p.name] = Array(repeating: 0, count: p.count)
        }
        let weights = model.directory + "/w.safetensors"
        try writeParameters(params, graph: graph, to: weights)
        var rng = TestRandom(seed: 12)
        let input = rng.floats(2 * 3 * 32 * 32)
        let probs = try model.infer(weights: weights, input: input, batch: 2)
        #expect(probs.allSatisfy { $0.isFinite })
        #expect(abs(probs[0..<10].reduce(0, +) - 1) < 1e-4 && abs(probs[10..<20].reduce(0, +) - 1) < 1e-4)
        let losses = try model.train(weights: nil, steps: [(input, [3, 7])], batch: 2, lr: 0.1,
                                     save: model.directory + "/after.safetensors", before: ["init", "1"])
        #expect(losses.count == 1 && losses[0].isFinite)
    }

    /// torchvision weights give torchvision's probabilities (ResNet-18 at 224×224).
    @Test func torchvisionResNet18MatchesPyTorch() throws {
        let fixtures = CBuild.root + "/Tests/Fixtures/"
        let io = try SafeTensors.read(fixtures + "resnet18tv.io.safetensors")
        var tc = CBuild.standard
        tc.openMP = CBuild.toolchains.contains { $0.cc == tc.cc && $0.openMP }
        let model = try BuiltModel(try TestNetworks.fixture("resnet18tv"), toolchain: tc)
        let input = io["input"]!
        let got = try model.infer(weights: fixtures + "resnet18tv.weights.safetensors", input: input.floats, batch: input.shape[0])
        let diff = maxAbsDifference(got, io["probs"]!.floats)
        print("PyTorch fixture resnet18tv: max |C − PyTorch| = \(diff)")
        #expect(diff <= 1e-4)
    }
}
