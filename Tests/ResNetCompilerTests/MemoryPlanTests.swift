import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import ResNetCompiler
import ResNetDSL
import ResNetTestSupport
import Testing

/// The memory planner by invariant, over a table of graphs, random graphs and
/// random lifetimes; `--emit plan`; the header's size macros; and models in
/// the caller's memory (`NAME_create_in`): poisoned, against the interpreter,
/// and under a counting allocator.
@Suite(.temporaryFiles) struct MemoryPlanTests {
    /// What every plan must satisfy: each buffer inside the arena and on a
    /// 64-byte line (16 floats), no two buffers live at the same step sharing a
    /// float, and lower bound ≤ arena ≤ naive sum (the lower bound being the
    /// most floats live at one step).
    static func checkInvariants(_ live: [PlanMemory.Buffer], offsets: (Int) -> Int, arena: Int, naive: Int, lowerBound: Int,
                                steps: Int, _ label: String) {
        for a in live {
            let at = offsets(a.id)
            #expect(at >= 0 && at + a.size <= arena, "\(label): buffer \(a.id) [\(at), \(at + a.size)) outside the arena of \(arena)")
            #expect(at % 16 == 0, "\(label): buffer \(a.id) at \(at) floats is not on a 64-byte line")
        }
        // Sweep in order of offset: only neighbours that overlap in space need their lifetimes compared.
        let byOffset = live.sorted { offsets($0.id) < offsets($1.id) }
        for (i, a) in byOffset.enumerated() {
            let end = offsets(a.id) + a.size
            for b in byOffset[(i + 1)...] {
                if offsets(b.id) >= end { break }
                let together = a.first <= b.last && b.first <= a.last
                #expect(!together, "\(label): buffers \(a.id) and \(b.id) overlap while both live")
            }
        }
        #expect(naive == live.reduce(0) { $0 + $1.size }, "\(label): naive sum")
        #expect(lowerBound == (PlanMemory.liveFloats(live, steps: steps).max() ?? 0), "\(label): lower bound")
        #expect(lowerBound <= arena && arena <= naive, "\(label): lower bound \(lowerBound), arena \(arena), naive \(naive)")
    }

    /// A planned graph's buffers against the invariants.
    static func checkPlan(_ g: Graph, _ label: String) throws {
        let plan = try #require(g.memory, "\(label): no memory plan")
        let live = PlanMemory.lifetimes(g).map { PlanMemory.Buffer(id: $0.id, size: $0.size, first: $0.first, last: $0.last) }
        #expect(live.allSatisfy { $0.first <= $0.last && $0.size % 16 == 0 }, "\(label): lifetimes")
        checkInvariants(live, offsets: { plan.offsets[$0] }, arena: plan.arenaFloats, naive: plan.naiveFloats,
                        lowerBound: plan.lowerBoundFloats, steps: g.nodes.count, label)
    }

    /// The inference and training graphs of `spec`, fused or not.
    static func graphs(_ spec: NetworkSpec, fuse: Bool) throws -> (inference: Graph, training: Graph) {
        let options = Pipeline.Options(fuse: fuse)
        return (try Pipeline.inference(options).run(try Lower.lower(spec)), try Pipeline.training(options).run(try Lower.lower(spec)))
    }

    static func tableSpec(_ name: String) throws -> NetworkSpec {
        switch name {
        case "mixnet": TestNetworks.mixnet()
        case "oddnet": TestNetworks.oddnet()
        case "resnet50": try ResNet.imagenet(depth: 50).spec
        case "plain34": try PlainNet.imagenet(depth: 34).spec
        case "resnet8b": try ResNet.cifar(depth: 8, shortcut: .b).spec
        case "gradnet": TrainingTests.smallNet()
        default: try ResNet.cifar(depth: 20).spec
        }
    }

    @Test(arguments: ["resnet20", "mixnet", "oddnet", "resnet50", "plain34", "resnet8b", "gradnet"])
    func tableOfGraphsInferenceAndTraining(name: String) throws {
        let spec = try Self.tableSpec(name)
        for fuse in [true, false] {
            let (inference, training) = try Self.graphs(spec, fuse: fuse)
            try Self.checkPlan(inference, "\(name) inference fuse=\(fuse)")
            try Self.checkPlan(training, "\(name) training fuse=\(fuse)")
        }
    }

    /// 60 random networks (TestNetworks.random), inference and training, fused and not.
    @Test func randomGraphs() throws {
        for seed in UInt64(1)...60 {
            let spec = TestNetworks.random(seed: seed)
            let (inference, training) = try Self.graphs(spec, fuse: seed % 3 != 0)
            try Self.checkPlan(inference, "\(spec.name) inference")
            try Self.checkPlan(training, "\(spec.name) training")
        }
    }

    /// The placement alone on 400 sets of random lifetimes: sizes from one line
    /// to a few hundred, short and long lives, many buffers born at one step.
    @Test func randomLifetimes() {
        var rng = TestRandom(seed: 2026)
        for trial in 0..<400 {
            let steps = 1 + Int(rng.next() % 60)
            let count = Int(rng.next() % 80)
            let live = (0..<count).map { id -> PlanMemory.Buffer in
                let first = Int(rng.next() % UInt64(steps))
                let span = rng.next() % 4 == 0 ? Int(rng.next() % UInt64(steps - first)) : Int(rng.next() % UInt64(min(3, steps - first)))
                let size = 16 * (1 + Int(rng.next() % (rng.next() % 2 == 0 ? 4 : 300)))
                return PlanMemory.Buffer(id: id, size: size, first: first, last: first + span)
            }
            let p = PlanMemory.place(live, steps: steps)
            #expect(p.offsets.count == live.count)
            Self.checkInvariants(live, offsets: { p.offsets[$0] ?? -1 }, arena: p.arenaFloats, naive: p.naiveFloats,
                                 lowerBound: p.lowerBoundFloats, steps: steps, "trial \(trial)")
        }
        // Disjoint lives share everything; one step's buffers share nothing.
        let apart = (0..<5).map { PlanMemory.Buffer(id: $0, size: 32, first: $0, last: $0) }
        #expect(PlanMemory.place(apart, steps: 5).arenaFloats == 32)
        let together = (0..<5).map { PlanMemory.Buffer(id: $0, size: 32, first: 0, last: 4) }
        #expect(PlanMemory.place(together, steps: 5).arenaFloats == 160)
    }

    // MARK: - --emit plan and the header's macros

    /// The number a size macro of the header multiplies or adds, e.g.
    /// `#define RESNET20_ARENA_BYTES_INFER(batch) ((size_t)(batch) * (size_t)565504)`.
    static func macroFigure(_ header: String, _ macro: String) throws -> Int {
        let line = try #require(header.split(separator: "\n").first { $0.hasPrefix("#define \(macro)(batch) ") }, "no \(macro)")
        let numbers = line.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
        return try #require(numbers.last { $0 > 64 } ?? numbers.first { $0 > 64 }, "\(macro): no figure in \(line)")
    }

    @Test func planFilesAgreeWithThePlanAndTheHeader() throws {
        let compiler = try Compiler(templates: Templates(directory: CBuild.root + "/templates"))
        let artifacts = try compiler.compile(TestNetworks.mixnet())
        let training = try #require(artifacts.training)
        let header = try #require(artifacts.files.first { $0.name == "mixnet.h" }).contents
        let batch = 3
        let files = try PlanFiles.files(artifacts.graph, training: artifacts.training, batch: batch)
        #expect(files.map(\.name) == ["mixnet.plan.json", "mixnet.plan.svg"])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(files[0].contents.utf8)) as? [[String: Any]])
        #expect(json.map { $0["mode"] as? String } == ["infer", "train"])
        // The header's macros, as ModelMemory computes them (the C checks them against its own enums).
        let memory = ModelMemory(graph: artifacts.graph, training: training)
        #expect(try Self.macroFigure(header, "MIXNET_ARENA_BYTES_INFER") == memory.arenaBytesPerImage)
        #expect(header.contains("#define MIXNET_ARENA_BYTES_TRAIN(batch) ((size_t)(batch) * (size_t)\(memory.trainArenaBytesPerImage) \\\n"
                                + "    + (size_t)\(memory.partialBytes) * (size_t)((batch) < 16 ? (batch) : ((batch) + 7) / 8 > 16 ? ((batch) + 7) / 8 : 16))"))
        #expect(memory.partialBytes > 0 && memory.partialBytes == 4 * training.memory!.partialFloats)
        let fixed = [try Self.macroFigure(header, "MIXNET_MODEL_BYTES_INFER"), try Self.macroFigure(header, "MIXNET_MODEL_BYTES_TRAIN")]
        #expect(fixed == [memory.fixedInferBytes, memory.fixedTrainBytes])
        var boxes = 0
        for (k, (mode, graph)) in zip(json, [artifacts.graph, training]).enumerated() {
            let plan = try #require(graph.memory)
            // Training adds the weight-gradient partials: one region after the per-sample
            // arena, a buffer per weight-gradient kernel, live while it runs.
            let partials = graph.nodes.compactMap(\.attrs.partial)
            #expect(k == 0 ? partials.isEmpty : !partials.isEmpty)
            let region = 4 * plan.partialRegionFloats(maxBatch: batch)
            let partialBytes = partials.reduce(0) { $0 + 4 * $1 * MemoryPlan.partials(maxBatch: batch) }
            #expect(mode["batch"] as? Int == batch)
            #expect(mode["arena_bytes"] as? Int == plan.arenaFloats * 4 * batch + region)
            #expect(mode["naive_bytes"] as? Int == plan.naiveFloats * 4 * batch + partialBytes)
            let lowerBound = try #require(mode["lower_bound_bytes"] as? Int)
            #expect(lowerBound >= plan.lowerBoundFloats * 4 * batch && lowerBound <= plan.lowerBoundFloats * 4 * batch + region)
            // A training model's arena is the larger of the two (inference runs in it too).
            let arenaMacro = memory.arenaBytes(batch: batch, training: k == 1)
            #expect(k == 0 ? arenaMacro == plan.arenaFloats * 4 * batch : arenaMacro >= plan.arenaFloats * 4 * batch + region)
            // A training model keeps its inference weights in its arena, after the inference activations.
            let modelArena = k == 0 ? arenaMacro : max(arenaMacro, (memory.arenaBytes(batch: batch, training: false) + 63) / 64 * 64
                                                                + memory.foldedBytes + memory.packedBytes)
            #expect(mode["model_bytes"] as? Int == fixed[k] + modelArena)
            #expect(mode["model_bytes"] as? Int == memory.modelBytes(batch: batch, training: k == 1))
            let buffers = try #require(mode["buffers"] as? [[String: Any]])
            #expect(buffers.count == PlanMemory.lifetimes(graph).count + partials.count)
            boxes += buffers.count
            let live = buffers.enumerated().map { i, b in
                PlanMemory.Buffer(id: i, size: (b["bytes"] as! Int) / 4, first: b["first"] as! Int, last: b["last"] as! Int)
            }
            let offsets = buffers.map { ($0["offset"] as! Int) / 4 }
            #expect(buffers.allSatisfy { Set($0.keys) == ["name", "offset", "bytes", "first", "last"] })
            #expect(buffers.allSatisfy { ($0["offset"] as! Int) % (64 * batch) == 0 })
            Self.checkInvariants(live, offsets: { offsets[$0] }, arena: (mode["arena_bytes"] as! Int) / 4,
                                 naive: (mode["naive_bytes"] as! Int) / 4, lowerBound: lowerBound / 4,
                                 steps: graph.nodes.count, "plan.json \(k)")
        }
        let svg = files[1].contents
        #expect(svg.hasPrefix("<?xml") && svg.hasSuffix("</svg>\n"))
        let parser = XMLParser(data: Data(svg.utf8))
        #expect(parser.parse(), "the SVG is not well-formed XML: \(String(describing: parser.parserError))")
        #expect(svg.contains("lower bound"))
        #expect(svg.components(separatedBy: "<title>").count - 1 == boxes)
        // The report carries the same figures at batch 1.
        let report = try #require(artifacts.files.first { $0.name == "mixnet.report" }).contents
        let one = PlanFiles.modes(artifacts.graph, training: artifacts.training, batch: 1)
        for m in one {
            #expect(report.contains("\(m.mode) at batch 1, bytes: arena \(m.arenaBytes), lower bound \(m.lowerBoundBytes), naive \(m.naiveBytes), whole model \(m.modelBytes)"))
        }
    }

    @Test func emitPlanWritesTheFilesThroughTheTool() throws {
        let out = try CBuild.temporaryDirectory("plan") + "/out"
        let r = try HostTools.run(CLITests.tool, ["--emit", "plan", "--plan-batch", "2", "-o", out],
                                  environment: ["XDG_CACHE_HOME": CLITests.emptyCache])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("resnet20 infer batch 2: arena "))
        #expect(try FileManager.default.contentsOfDirectory(atPath: out).sorted() == ["resnet20.plan.json", "resnet20.plan.svg"])
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/resnet20.plan.json"))) as? [[String: Any]]
        #expect(json?.map { $0["batch"] as? Int } == [2, 2])
        let bad = try HostTools.run(CLITests.tool, ["--emit", "plan", "--plan-batch", "0", "-o", out + "2"],
                                    environment: ["XDG_CACHE_HOME": CLITests.emptyCache])
        #expect(bad.status != 0 && bad.output.contains("--plan-batch"))
        #expect(!FileManager.default.fileExists(atPath: out + "2"))
    }

    // MARK: - Models in the caller's memory

    /// The C from a poisoned create_in block against the interpreter: inference
    /// from a model built for inference only and from one built to train, and
    /// one training step's loss and gradients (lr 1, no momentum or decay, so
    /// p − p′ is the gradient). Every float of the block starts as NaN.
    func checkPoisonedAgainstInterpreter(_ spec: NetworkSpec, n: Int, seed: UInt64) throws {
        var model = try BuiltModel(spec)
        let unfused = try Pipeline.analyse(spec)
        let trainGraph = try Pipeline.analyseTraining(spec)
        let params = randomParameters(unfused, seed: seed)
        let weights = model.directory + "/weights.safetensors"
        try writeParameters(params, graph: unfused, to: weights)
        var rng = TestRandom(seed: seed + 1)
        let input = rng.floats(n * unfused.shape(0).count)
        let expected = try Interpreter(graph: unfused, parameters: params).forward(input, batch: n)
        for createIn in [nil, false, true] as [Bool?] {
            model.createIn = createIn
            let got = try model.infer(weights: weights, input: input, batch: n, maxBatch: n + 1)
            let diff = maxAbsDifference(got, expected)
            #expect(diff <= 1e-4, "\(spec.name) createIn=\(String(describing: createIn)): max |C − interpreter| = \(diff)")
        }
        model.createIn = true
        let labels = (0..<n).map { _ in Int32(rng.next() % UInt64(unfused.classes)) }
        let after = model.directory + "/after.safetensors"
        let losses = try model.train(weights: weights, steps: [(input, labels)], batch: n, lr: 1, momentum: 0, weightDecay: 0, save: after)
        let reference = try Interpreter(graph: trainGraph, parameters: params).trainStep(input, labels: labels.map(Int.init), batch: n)
        #expect(abs(Double(losses[0]) - reference.loss) <= 1e-4 * abs(reference.loss), "\(spec.name): loss \(losses[0]) vs \(reference.loss)")
        let updated = try SafeTensors.read(after)
        for p in trainGraph.parameters where p.trainable {
            let cGrad = zip(params[p.name]!, updated[p.name]!.floats).map { Double($0) - Double($1) }
            let want = reference.gradients[p.name]!
            let floor = 4e-7 * Double(params[p.name]!.map(abs).max()!)
            #expect(maxAbsDifference(cGrad, want) <= 1e-3 * want.map(abs).max()! + floor, "\(spec.name): ∂\(p.name)")
        }
        // Built for inference only, it refuses to train (and says why).
        model.createIn = false
        let x = model.directory + "/x.f32", y = model.directory + "/y.i32"
        try input.withUnsafeBytes { Data($0) }.write(to: URL(fileURLWithPath: x))
        try labels.withUnsafeBytes { Data($0) }.write(to: URL(fileURLWithPath: y))
        let refused = try model.drive(maxBatch: n, ["train", x, y, String(n), "0.1"])
        #expect(refused.lines.last?.hasPrefix("error -17 model has no training state") == true, "\(refused.lines)")
    }

    /// Recompute rebuilds batch-norm outputs in the backward pass: three
    /// training steps (momentum and weight decay on) give the same bytes —
    /// weights, running statistics, momentum buffers, losses — as the plan
    /// that keeps every output, at the same thread count, in a smaller arena.
    /// ResNet-20 and the mixnet run the blocked kernels (option A, a
    /// projection, a bottleneck, max pool), oddnet the NCHW ones; the mixnet's
    /// stem conv and bottlenet's 1×1 reduce convs are rebuilt too, and
    /// ResNet-20's first-stage convs (on by default; "resnet20 wide" turns
    /// that off). ResNet-56's chains (ten applies) are long enough to keep
    /// every fourth rebuilt block output for the chains after them.
    @Test(arguments: ["resnet20", "mixnet", "oddnet", "bottlenet", "resnet20 wide", "resnet56"])
    func recomputeGivesTheSameBitsInLessArena(name: String) throws {
        let narrow = !name.hasSuffix(" wide")
        let spec = switch name {
        case "resnet20", "resnet20 wide": try ResNet.cifar(depth: 20).spec
        case "resnet56": try ResNet.cifar(depth: 56).spec
        case "oddnet": TestNetworks.oddnet()
        case "bottlenet": TestNetworks.bottlenet()
        default: TestNetworks.mixnet()
        }
        let kept = try BuiltModel(spec, recompute: false), rebuilt = try BuiltModel(spec, recompute: true, narrowConvs: narrow)
        func plan(_ recompute: Bool) throws -> Graph {
            try Pipeline.training(Pipeline.Options(recompute: recompute, recomputeNarrowConvs: narrow)).run(try Lower.lower(spec))
        }
        let keptArena = try plan(false).memory!.arenaFloats, rebuiltGraph = try plan(true)
        let rebuiltArena = rebuiltGraph.memory!.arenaFloats
        let again = rebuiltGraph.nodes.filter { $0.attrs.recomputes != nil }.count
        #expect(again > 0, "\(name): nothing recomputed")
        let convs = rebuiltGraph.nodes.filter { $0.op == .conv && $0.attrs.recomputes != nil }.map(\.name)
        let firstStage = (0..<(name == "resnet56" ? 9 : 3)).map { "layer1.\($0).conv1.again" }
        let wanted: [String] = switch name {
        // The stem, 1×1 reduce convs, and (narrow) convs of at most 144
        // multiply-adds per output that read a rebuildable output (bottlenet's
        // 8-channel 3×3 conv2s, the 1×1 conv3s whose outputs no shortcut reads).
        case "mixnet": ["conv1.again", "layer1.1.conv1.again"]
        case "bottlenet": ["conv1.again", "layer1.0.conv1.again", "layer1.0.conv2.again", "layer1.1.conv1.again",
                           "layer1.1.conv2.again", "layer1.1.conv3.again", "layer2.0.conv1.again", "layer2.0.conv3.again"]
        case "resnet20", "resnet56": firstStage
        default: []
        }
        if name == "resnet56" {
            // Every rebuilt block output from its stored root (keepEvery
            // 4,000) takes 265 rebuilt batch norms; keeping every fourth, 113.
            let applies = rebuiltGraph.nodes.filter { $0.op == .batchNormAct && $0.attrs.recomputes != nil }.count
            #expect(applies < 120, "resnet56: \(applies) rebuilt batch norms")
        }
        #expect(convs.sorted() == wanted, "\(name): rebuilt convs \(convs)")
        // In oddnet and the mixnet the peak is elsewhere (a conv's scratch): the arena must not grow.
        #expect(name.hasPrefix("resnet") ? rebuiltArena < keptArena : rebuiltArena <= keptArena,
                "\(name): arena \(rebuiltArena) floats/image with recompute, \(keptArena) without")
        // The rebuilds run the blocked (NCHW16c) kernels, or for oddnet the NCHW ones.
        let source = rebuilt.files.first { $0.name == "\(spec.name).c" }!.contents
        let applies = source.components(separatedBy: "static void k_bnapply_").dropFirst().map { $0.prefix { $0 != "(" } }
        #expect(!applies.isEmpty && applies.allSatisfy { $0.contains("_b16") == (name != "oddnet") },
                "\(name): \(applies)")
        let n = 4, image = kept.graph.input.shape!.count, classes = kept.graph.classes
        var rng = TestRandom(seed: 5)
        let steps = (0..<3).map { _ in
            ((0..<(n * image)).map { _ in Float(rng.uniform(-1, 1)) },
             (0..<n).map { _ in Int32(rng.next() % UInt64(classes)) })
        }
        var results: [(losses: [Float], weights: Data, checkpoint: Data)] = []
        for model in [kept, rebuilt] {
            let save = model.directory + "/after.safetensors", cp = model.directory + "/after.ckpt.safetensors"
            let losses = try model.train(weights: nil, steps: steps, batch: n, lr: 0.05, save: save,
                                         before: ["init", "9"], checkpoint: cp)
            results.append((losses, try Data(contentsOf: URL(fileURLWithPath: save)),
                            try Data(contentsOf: URL(fileURLWithPath: cp))))
        }
        #expect(results[0].losses.map(\.bitPattern) == results[1].losses.map(\.bitPattern),
                "\(name): losses \(results[0].losses) kept, \(results[1].losses) rebuilt")
        #expect(results[0].weights == results[1].weights, "\(name): weights or running statistics differ")
        #expect(results[0].checkpoint == results[1].checkpoint, "\(name): momentum buffers differ")
        print("recompute \(name): \(again) rebuilt outputs; training arena \(rebuiltArena) vs \(keptArena) floats/image "
              + "(\(String(format: "%.3f", Double(rebuiltArena) / Double(keptArena)))x); same bytes after 3 steps")
    }

    @Test(arguments: [UInt64(3), 7])
    func randomNetworkFromPoisonedCallerMemoryMatchesInterpreter(seed: UInt64) throws {
        try checkPoisonedAgainstInterpreter(TestNetworks.random(seed: seed), n: 3, seed: seed)
    }

    @Test func mixnetFromPoisonedCallerMemoryMatchesInterpreter() throws {
        try checkPoisonedAgainstInterpreter(TestNetworks.mixnet(), n: 4, seed: 11)
    }

    /// Tests/Drivers/caller_memory.c against a random network (small, so four
    /// builds stay quick) with every compiler, with
    /// and without OpenMP: no allocator call from the model in create_in, infer
    /// or train_step; none at all without OpenMP; with OpenMP, none after the
    /// runtime's first parallel region (libgomp's thread pool), except from a
    /// libomp built with debug traces, which mallocs in every worksharing loop
    /// (counted and printed, never from the model). Also the refusals, the
    /// canaries around the block and bit-identity with NAME_create's model;
    /// replicas refused in a block without UNAME_DP_BYTES more, and trained
    /// with them (no allocator call) in one with.
    @Test func noAllocatorCallsInInferAndTrainStep() throws {
        let spec = TestNetworks.random(seed: 7), name = "rand7"
        let (dir, _) = try CBuild.generate(spec)
        for (k, toolchain) in CBuild.toolchains.enumerated() {
            let exe = dir + "/caller_memory\(k)"
            try CBuild.compile([CBuild.root + "/Tests/Drivers/caller_memory.c", dir + "/\(name).c"], output: exe, toolchain: toolchain,
                               extra: ["-I", dir, "-DNET=\(name)", "-DUNET=\(name.uppercased())", "-DNET_HEADER=\"\(name).h\""])
            let r = try HostTools.run(exe, ["3", "4"], environment: ["OMP_NUM_THREADS": "2"])
            #expect(r.status == 0, "\(toolchain): \(r.output)")
            var v: [String: Int] = [:]
            for line in r.output.split(separator: "\n") {
                let parts = line.split(separator: " ")
                if parts.count == 2, let value = Int(parts[1]) { v[String(parts[0])] = value }
            }
            print("caller_memory \(toolchain): \(v.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
            for key in ["arena_macros_agree", "attribution_works", "refusals_null", "refusals_write_nothing", "static_block_infer",
                        "calls_ok", "same_bits_as_create", "replicas_with_room"] {
                #expect(v[key] == 1, "\(toolchain): \(key) = \(String(describing: v[key]))")
            }
            #expect(v["static_block_train_refused"] == -17, "\(toolchain)")
            #expect(v["writes_outside_block"] == 0, "\(toolchain)")
            #expect(v["program_calls"] == 0, "\(toolchain): the model called the allocator")
            #expect(v["program_calls_with_replicas"] == 0, "\(toolchain): the model called the allocator")
            #expect(v["replicas_refused_without_room"] == -14, "\(toolchain)")
            #expect(v["create_in_calls"] == 0, "\(toolchain)")
            if !toolchain.openMP {
                for key in ["first_use_calls", "first_round_calls", "later_rounds_calls"] { #expect(v[key] == 0, "\(toolchain): \(key)") }
            } else if v["libomp_debug_traces"] != 1 {
                #expect(v["later_rounds_calls"] == 0, "\(toolchain): the OpenMP runtime allocates in the steady state")
            }
        }
    }
}
