import Foundation
import ResNetCompiler
import ResNetDSL
import ResNetTestSupport
import Testing

/// The training step: the interpreter's gradients against finite differences,
/// the generated C against the interpreter and against PyTorch.
@Suite(.temporaryFiles) struct TrainingTests {
    /// A small network with every op the backward pass handles: conv with and
    /// without bias, stride, padding, BN, ReLU, max pool, identity, option-A
    /// and projection shortcuts, global average pool, dense.
    static func smallNet(_ name: String = "gradnet") -> NetworkSpec {
        Network(name, input: .image(channels: 2, height: 7, width: 6)) {
            Conv2D(4, kernel: 3, padding: 1, bias: true, name: "conv1")
            BatchNorm(name: "bn1")
            ReLU()
            MaxPool(kernel: 3, stride: 2, padding: 1)
            Residual(name: "layer1.0") {
                Conv2D(4, kernel: 3, padding: 1, name: "conv1")
                BatchNorm(name: "bn1")
                ReLU()
                Conv2D(4, kernel: 3, padding: 1, name: "conv2")
                BatchNorm(name: "bn2")
            }
            ReLU()
            Residual(name: "layer2.0", shortcut: .zeroPad) {
                Conv2D(6, kernel: 3, stride: 2, padding: 1, name: "conv1")
                BatchNorm(name: "bn1")
            }
            ReLU()
            Residual(name: "layer3.0", shortcut: .projection) {
                Conv2D(8, kernel: 1, name: "conv1")
                BatchNorm(name: "bn1")
            }
            ReLU()
            GlobalAvgPool()
            Dense(5, name: "fc")
            Softmax()
        }.spec
    }

    static func batch(_ graph: Graph, n: Int, seed: UInt64) -> (input: [Float], labels: [Int32]) {
        var rng = TestRandom(seed: seed)
        let input = rng.floats(n * graph.shape(0).count)
        let labels = (0..<n).map { _ in Int32(rng.next() % UInt64(graph.classes)) }
        return (input, labels)
    }

    /// Central differences in float64 on the interpreter's loss, for a sample
    /// of every trainable tensor's elements.
    @Test func interpreterGradientsMatchFiniteDifferences() throws {
        let graph = try Pipeline.analyseTraining(Self.smallNet())
        let params = randomParameters(graph, seed: 21).mapValues { $0.map(Double.init) }
        let (input, labels) = Self.batch(graph, n: 3, seed: 22)
        let result = try Interpreter(graph: graph, doubleParameters: params)
            .trainStep(input, labels: labels.map(Int.init), batch: 3)
        var rng = TestRandom(seed: 23)
        var worst = 0.0
        for p in graph.parameters where p.trainable {
            let analytic = try #require(result.gradients[p.name], "no gradient for \(p.name)")
            #expect(analytic.count == p.count)
            for _ in 0..<3 {
                let j = Int(rng.next() % UInt64(p.count))
                let h = 1e-6
                var plus = params, minus = params
                plus[p.name]![j] += h
                minus[p.name]![j] -= h
                let lp = try Interpreter(graph: graph, doubleParameters: plus).trainStep(input, labels: labels.map(Int.init), batch: 3).loss
                let lm = try Interpreter(graph: graph, doubleParameters: minus).trainStep(input, labels: labels.map(Int.init), batch: 3).loss
                let numeric = (lp - lm) / (2 * h)
                let error = abs(numeric - analytic[j]) / max(1e-3, abs(numeric) + abs(analytic[j]))
                worst = max(worst, error)
                #expect(error < 1e-5, "\(p.name)[\(j)]: numeric \(numeric) vs analytic \(analytic[j])")
            }
        }
        print("finite differences: worst relative error \(worst)")
    }

    /// One C step with lr 1, no momentum and no decay moves each parameter by
    /// exactly its gradient: p − p′ is the C's gradient.
    func checkGradients(_ spec: NetworkSpec, fuse: Bool, n: Int) throws {
        let graph = try Pipeline.analyseTraining(spec)
        let model = try BuiltModel(spec, fuse: fuse)
        let params = randomParameters(graph, seed: 31)
        let weights = model.directory + "/w.safetensors", after = model.directory + "/after.safetensors"
        try writeParameters(params, graph: graph, to: weights)
        let step = Self.batch(graph, n: n, seed: 32)
        let losses = try model.train(weights: weights, steps: [step], batch: n, lr: 1, momentum: 0, weightDecay: 0, save: after)
        let reference = try Interpreter(graph: graph, parameters: params).trainStep(step.input, labels: step.labels.map(Int.init), batch: n)
        #expect(abs(Double(losses[0]) - reference.loss) <= 1e-4 * abs(reference.loss), "loss \(losses[0]) vs \(reference.loss)")
        let updated = try SafeTensors.read(after)
        for p in graph.parameters {
            let new = updated[p.name]!.floats
            switch p.kind {
            case .weight, .bias:
                let cGrad = zip(params[p.name]!, new).map { Double($0) - Double($1) }
                let expected = reference.gradients[p.name]!
                // p − p′ carries the rounding of p itself (about 1e-7·|p|): an absolute
                // floor covers gradients that are truly zero (a conv bias before BN).
                let scale = expected.map(abs).max()!
                let floor = 4e-7 * Double(params[p.name]!.map(abs).max()!)
                #expect(maxAbsDifference(cGrad, expected) <= 1e-3 * scale + floor, "\(spec.name) fuse=\(fuse): ∂\(p.name)")
            case .runningMean, .runningVar:
                let stats = reference.batchStatistics[p.layer]!
                let batch = p.kind == .runningMean ? stats.mean : stats.variance
                let expected = zip(params[p.name]!, batch).map { 0.9 * Double($0) + 0.1 * $1 }
                #expect(maxAbsDifference(new, expected) <= 1e-5 * (expected.map(abs).max()! + 1), "\(p.name)")
            }
        }
        for bn in graph.batchNormNames { #expect(updated[bn + ".num_batches_tracked"]?.ints == [4]) }  // 3 in the file + 1
    }

    @Test(arguments: [true, false])
    func cGradientsMatchInterpreter(fuse: Bool) throws {
        try checkGradients(Self.smallNet(), fuse: fuse, n: 3)
    }

    @Test func cGradientsMatchInterpreterOnResNet8() throws {
        try checkGradients(try ResNet.cifar(depth: 8).spec, fuse: true, n: 2)
        try checkGradients(TestNetworks.mixnet(), fuse: true, n: 6)
    }

    /// Ten steps of PyTorch's SGD (Tests/Fixtures/make_train_fixtures.py).
    @Test(arguments: ["mixnet", "resnet20"])
    func tenStepsMatchPyTorch(name: String) throws {
        let fixture = try SafeTensors.read(CBuild.root + "/Tests/Fixtures/\(name).train.safetensors")
        let spec = try TestNetworks.fixture(name)
        let graph = try Pipeline.analyseTraining(spec)
        let model = try BuiltModel(spec)
        let weights = model.directory + "/init.safetensors", after = model.directory + "/final.safetensors"
        let initial = fixture.filter { $0.key.hasPrefix("init.") }.map { (String($0.key.dropFirst(5)), $0.value) }.sorted { $0.0 < $1.0 }
        try SafeTensors.write(initial, to: weights)
        let inputs = fixture["inputs"]!, labels = fixture["labels"]!, hyper = fixture["hyper"]!.floats
        let n = inputs.shape[1], image = inputs.shape[2...].reduce(1, *)
        let x = inputs.floats, y = labels.ints
        let steps = (0..<10).map { t in (Array(x[(t * n * image)..<((t + 1) * n * image)]), y[(t * n)..<((t + 1) * n)].map { Int32($0) }) }
        let losses = try model.train(weights: weights, steps: steps, batch: n, lr: hyper[0], momentum: hyper[1],
                                     weightDecay: hyper[2], save: after)
        let expectedLosses = fixture["losses"]!.floats
        var worstLoss = 0.0, worstParam = 0.0
        for (a, b) in zip(losses, expectedLosses) { worstLoss = max(worstLoss, Double(abs(a - b) / abs(b))) }
        #expect(worstLoss <= 1e-4, "\(name): losses \(losses) vs \(expectedLosses)")
        let final = try SafeTensors.read(after)
        for p in graph.parameters {
            let expected = fixture["final." + p.name]!.floats
            let scale = Double(expected.map(abs).max()!)
            let diff = maxAbsDifference(final[p.name]!.floats, expected)
            worstParam = max(worstParam, diff / max(scale, 1e-12))
            #expect(diff <= 1e-3 * scale + 1e-6, "\(name): \(p.name) differs by \(diff) (scale \(scale))")
        }
        for bn in graph.batchNormNames {
            #expect(final[bn + ".num_batches_tracked"]?.ints == fixture["final.\(bn).num_batches_tracked"]?.ints)
        }
        print("PyTorch training fixture \(name): worst loss rel diff \(worstLoss), worst param rel diff \(worstParam)")
    }

    /// Checkpoint after 3 steps, load it in a fresh process, take 2 more:
    /// exactly the same bytes as 5 steps without stopping.
    @Test func checkpointResumeIsExact() throws {
        let spec = TestNetworks.mixnet()
        let graph = try Pipeline.analyseTraining(spec)
        let model = try BuiltModel(spec)
        let dir = model.directory
        let steps = (0..<5).map { Self.batch(graph, n: 4, seed: 40 + UInt64($0)) }
        _ = try model.train(weights: nil, steps: steps, batch: 4, lr: 0.05, save: dir + "/straight.safetensors",
                            before: ["init", "3"])
        _ = try model.train(weights: nil, steps: Array(steps[0..<3]), batch: 4, lr: 0.05, save: dir + "/half.safetensors",
                            before: ["init", "3"], checkpoint: dir + "/cp.safetensors")
        _ = try model.train(weights: nil, steps: Array(steps[3...]), batch: 4, lr: 0.05, save: dir + "/resumed.safetensors",
                            before: ["loadcp", dir + "/cp.safetensors"])
        let a = try Data(contentsOf: URL(fileURLWithPath: dir + "/straight.safetensors"))
        let b = try Data(contentsOf: URL(fileURLWithPath: dir + "/resumed.safetensors"))
        #expect(a == b)
        let cp = try SafeTensors.read(dir + "/cp.safetensors")
        #expect(cp["optimizer.step"]?.ints == [3])
        #expect(cp["optimizer.momentum_buffer.fc.weight"]?.shape == [7, 24])
    }

    /// A non-finite loss is an error and the parameters stay as they were.
    @Test func nonFiniteLossChangesNothing() throws {
        let spec = TestNetworks.mixnet()
        let model = try BuiltModel(spec)
        let dir = model.directory
        var x = [Float](repeating: 0.5, count: 2 * 3 * 20 * 24)
        x[17] = .nan
        try x.withUnsafeBytes { Data($0) }.write(to: URL(fileURLWithPath: dir + "/nan.f32"))
        try [Int32(1), 2].withUnsafeBytes { Data($0) }.write(to: URL(fileURLWithPath: dir + "/labels.i32"))
        let r = try model.drive(maxBatch: 2, ["init", "5", "save", dir + "/before.safetensors",
                                              "trytrain", dir + "/nan.f32", dir + "/labels.i32", "2", "0.1",
                                              "save", dir + "/after.safetensors"])
        #expect(r.lines == ["ok", "ok", "error -13 \(r.lines[2].dropFirst(10))", "ok"])
        #expect(r.lines[2].hasPrefix("error -13 "))
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/before.safetensors"))
            == Data(contentsOf: URL(fileURLWithPath: dir + "/after.safetensors")))
    }

    /// The backward graph is in the IR, and fused to match the forward.
    @Test func backwardIsFusedToMatchTheForward() throws {
        let g = try Pipeline.training().run(try Lower.lower(try ResNet.cifar(depth: 20).spec))
        func count(_ op: Op) -> Int { g.nodes.filter { $0.op == op }.count }
        // 19 forward batch norms, and the outputs Recompute rebuilds in the backward pass.
        let rebuilt = g.nodes.filter { $0.op == .batchNormAct && $0.attrs.recomputes != nil }.count
        #expect(count(.batchNormAct) - rebuilt == 19 && rebuilt > 9 && count(.batchNorm) == 0 && count(.relu) == 0)
        #expect(count(.reluGrad) == 0 && count(.add) == 0 && count(.zeroPad) == 0 && count(.zeroPadGrad) == 0)
        #expect(count(.batchNormGrad) == 19 && g.nodes.filter { $0.op == .batchNormGrad && $0.attrs.reluMask == true }.count == 19)
        #expect(count(.convGradWeight) == 19 && count(.convGradData) == 18)
        // Every block input's two gradients are summed in a conv's epilogue; two of them read option A in place.
        let sums = g.nodes.filter { $0.op == .convGradData && $0.attrs.gradShortcut != nil }
        #expect(sums.count == 9)
        #expect(sums.filter { if case .zeroPad? = $0.attrs.gradShortcut { true } else { false } }.count == 2)
        #expect(count(.secondOutput) == 9)
        #expect(g.nodes.last?.op == .sgdUpdate)
    }
}
