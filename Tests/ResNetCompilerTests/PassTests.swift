import Foundation
import ResNetCompiler
import ResNetDSL
import ResNetTestSupport
import Testing

/// Pass-level tests: counts after fusion, IR invariants, the memory planner.
@Suite(.temporaryFiles) struct PassTests {
    /// Runs the inference pipeline, checking the graph after every pass.
    func compile(_ spec: NetworkSpec, fuse: Bool = true) throws -> Graph {
        try Pipeline.inference(Pipeline.Options(fuse: fuse)).run(try Lower.lower(spec)) { pass, g in
            Self.verify(g, after: pass)
        }
    }

    /// The IR verifier: topological inputs, every shape known after InferShapes.
    static func verify(_ g: Graph, after pass: String) {
        for node in g.nodes {
            #expect(node.id == g.nodes.firstIndex(of: node), "\(pass): node ids out of order")
            #expect(node.inputs.allSatisfy { $0 >= 0 && $0 < node.id }, "\(pass): \(node.name) reads a later node")
            if pass != "Validate" { #expect(node.shape != nil, "\(pass): \(node.name) has no shape") }
        }
    }

    func count(_ g: Graph, _ op: Op) -> Int { g.nodes.filter { $0.op == op }.count }

    @Test func resnet20FusesToOneKernelPerConv() throws {
        let g = try compile(try ResNet.cifar(depth: 20).spec)
        let kernels = g.nodes.count - 1  // every node but the input is one kernel
        #expect(count(g, .fusedConv) == 19)
        #expect(count(g, .globalAvgPool) == 1 && count(g, .dense) == 1 && count(g, .softmax) == 1)
        #expect(kernels == 19 + 3)
        for op in [Op.batchNorm, .relu, .add, .zeroPad, .conv] {
            #expect(count(g, op) == 0, "a separate \(op) kernel is left")
        }
        // 9 blocks: every second conv adds its shortcut; 2 of them read option A in place.
        let adds = g.nodes.filter { $0.attrs.shortcut != nil }
        #expect(adds.count == 9)
        #expect(adds.filter { if case .zeroPad? = $0.attrs.shortcut { true } else { false } }.count == 2)
        #expect(g.nodes.filter { $0.op == .fusedConv }.allSatisfy { $0.attrs.relu == true })
    }

    @Test func unfusedKeepsEveryOp() throws {
        let g = try compile(try ResNet.cifar(depth: 20).spec, fuse: false)
        #expect(count(g, .conv) == 19 && count(g, .batchNorm) == 19 && count(g, .relu) == 19)
        #expect(count(g, .add) == 9 && count(g, .zeroPad) == 2)
    }

    @Test func projectionShortcutIsComputedBeforeTheKernelThatAddsIt() throws {
        let g = try compile(TestNetworks.mixnet())
        let block = g.nodes.first { $0.name == "layer1.0.conv3" }!
        #expect(block.attrs.fused == ["conv", "bn", "add", "relu"])
        #expect(block.attrs.shortcut == .tensor)
        #expect(g.nodes[block.inputs[1]].name == "layer1.0.downsample.0")
        #expect(g.nodes[block.inputs[1]].attrs.foldedBatchNorm == "layer1.0.downsample.1")
    }

    @Test func shortcutStrideAndChannelsFollowTheBranch() throws {
        let g = try Pipeline.analyse(try ResNet.imagenet(depth: 50).spec)
        let ds = g.nodes.first { $0.name == "layer2.0.downsample.0" }!
        #expect(ds.attrs.stride == 2 && ds.attrs.outChannels == 512)
        let first = g.nodes.first { $0.name == "layer1.0.downsample.0" }!
        #expect(first.attrs.stride == 1 && first.attrs.outChannels == 256)
    }

    /// No two buffers that are live at the same time overlap, over a table of networks.
    @Test(arguments: ["resnet20", "mixnet", "oddnet", "resnet50", "plain34"])
    func memoryPlanNeverOverlapsLiveBuffers(name: String) throws {
        let spec: NetworkSpec = switch name {
        case "mixnet": TestNetworks.mixnet()
        case "oddnet": TestNetworks.oddnet()
        case "resnet50": try ResNet.imagenet(depth: 50).spec
        case "plain34": try PlainNet.imagenet(depth: 34).spec
        default: try ResNet.cifar(depth: 20).spec
        }
        for fuse in [true, false] {
            let g = try compile(spec, fuse: fuse)
            let plan = try #require(g.memory)
            let live = PlanMemory.lifetimes(g)
            for a in live {
                #expect(plan.offsets[a.id] >= 0 && plan.offsets[a.id] + a.size <= plan.arenaFloats)
                for b in live where b.id < a.id && a.first <= b.last && b.first <= a.last {
                    let disjoint = plan.offsets[a.id] + a.size <= plan.offsets[b.id]
                        || plan.offsets[b.id] + b.size <= plan.offsets[a.id]
                    #expect(disjoint, "\(name): buffers \(a.id) and \(b.id) overlap while both live")
                }
            }
            #expect(plan.lowerBoundFloats <= plan.arenaFloats && plan.arenaFloats <= plan.naiveFloats)
        }
    }

    @Test func dumpAfterPrintsTheGraphAfterThatPass() throws {
        let compiler = try Compiler(templates: Templates(directory: CBuild.root + "/templates"))
        var text = ""
        _ = try compiler.compile(try ResNet.cifar(depth: 20).spec, dumpAfter: "FoldBatchNorm") { text = $0 }
        #expect(text.contains("fusedConv[conv+bn] layer1.0.conv1"))
        #expect(text.contains("= add layer1.0.add"))
        #expect(throws: CompileError.self) {
            _ = try compiler.compile(try ResNet.cifar(depth: 20).spec, dumpAfter: "NoSuchPass")
        }
    }

    @Test func jsonRoundTripGivesTheSameGraph() throws {
        let spec = TestNetworks.mixnet()
        let data = try JSONEncoder().encode(ModelFile(networks: [spec]))
        let decoded = try ModelLoader.decode(data, source: "test.json")
        #expect(try Pipeline.analyse(decoded.networks[0]) == Pipeline.analyse(spec))
    }
}
