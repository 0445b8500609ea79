import Foundation
import ResNetCompiler
import ResNetDSL
import ResNetTestSupport
import Testing

/// Using torchvision's ResNets: the bottleneck variant is recorded, checked and
/// stated wherever a user looks (header, report, summary), the example model
/// file compiles as torchvision's ResNet-50, and the example script prepares
/// images exactly as torchvision does.
@Suite(.temporaryFiles) struct TorchvisionTests {
    /// The zoo records the variant of bottleneck networks in the spec (and so
    /// in the JSON a model file writes); networks without bottlenecks keep the
    /// JSON they always had.
    @Test func zooRecordsTheVariantOfBottleneckNetworks() throws {
        #expect(try ResNet.imagenet(depth: 50).spec.bottleneck == "paper")
        #expect(try ResNet.imagenet(depth: 101, variant: .torchvision).spec.bottleneck == "torchvision")
        #expect(try ResNet.imagenet(depth: 18, variant: .torchvision).spec.bottleneck == nil)
        #expect(try ResNet.cifar(depth: 20).spec.bottleneck == nil)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let tv = String(decoding: try encoder.encode(ResNet.imagenet(depth: 50, variant: .torchvision).spec), as: UTF8.self)
        #expect(tv.contains(#""bottleneck":"torchvision""#))
        let cifar = String(decoding: try encoder.encode(ResNet.cifar(depth: 20).spec), as: UTF8.self)
        #expect(!cifar.contains("bottleneck"))
    }

    /// The placement is read from the layers, so a JSON graph written before
    /// the field existed is stated correctly, and a recorded variant that the
    /// layers contradict is an error naming the block.
    @Test func placementComesFromTheLayersAndIsChecked() throws {
        var tv = try ResNet.imagenet(depth: 50, variant: .torchvision).spec
        #expect(try Lower.lower(tv).bottleneck == .torchvision)
        #expect(try Lower.lower(ResNet.imagenet(depth: 152).spec).bottleneck == .paper)
        #expect(try Lower.lower(ResNet.imagenet(depth: 34).spec).bottleneck == .noBottlenecks)
        #expect(try Lower.lower(TestNetworks.mixnet()).bottleneck == .torchvision)
        tv.bottleneck = nil
        #expect(try Lower.lower(tv).bottleneck == .torchvision, "an old JSON graph")
        tv.bottleneck = "paper"
        let wrong = #expect(throws: CompileError.self) { try Lower.lower(tv) }
        #expect("\(wrong!)" == "network 'resnet50' records bottleneck variant 'paper', but block 'layer2.0' strides on its 3×3 conv (torchvision's placement)")
        tv.bottleneck = "v1.5"
        let unknown = #expect(throws: CompileError.self) { try Lower.lower(tv) }
        #expect("\(unknown!)".contains("unknown bottleneck variant 'v1.5' (expected paper or torchvision)"))
        var basic = try ResNet.imagenet(depth: 18).spec
        basic.bottleneck = "torchvision"
        let none = #expect(throws: CompileError.self) { try Lower.lower(basic) }
        #expect("\(none!)".contains("records bottleneck variant 'torchvision', but it has no bottleneck blocks"))
    }

    /// A graph shaped as an ONNX eval-mode export (batch norm folded into
    /// biased convs, the projection as the add's first operand) is read the
    /// same way, as are blocks without a stride and blocks that disagree.
    @Test func placementOfExportedGraphs() throws {
        /// One bottleneck block with a projection shortcut; strides of its three convs.
        func block(_ g: inout [Node], _ x: Int, _ name: String, strides: [Int], projectionFirst: Bool) -> Int {
            func add(_ op: Op, _ suffix: String, _ inputs: [Int], kernel: Int? = nil, stride: Int = 1) -> Int {
                var a = Attributes()
                if let kernel { (a.kernel, a.stride, a.outChannels, a.bias, a.padding) = (kernel, stride, 8, true, kernel / 2) }
                g.append(Node(id: g.count, op: op, name: name + suffix, inputs: inputs, attrs: a))
                return g.count - 1
            }
            var y = add(.conv, ".conv1", [x], kernel: 1, stride: strides[0])
            y = add(.relu, ".relu1", [y])
            y = add(.conv, ".conv2", [y], kernel: 3, stride: strides[1])
            y = add(.relu, ".relu2", [y])
            y = add(.conv, ".conv3", [y], kernel: 1, stride: strides[2])
            let projection = add(.conv, ".downsample.0", [x], kernel: 1, stride: strides.max()!)
            let sum = add(.add, "", projectionFirst ? [projection, y] : [y, projection])
            return add(.relu, ".relu3", [sum])
        }
        func graph(_ blocks: [[Int]]) -> Graph {
            var nodes = [Node(id: 0, op: .input, name: "input", inputs: [])]
            var x = 0
            for (i, strides) in blocks.enumerated() {
                x = block(&nodes, x, "/layer\(i)/Add", strides: strides, projectionFirst: i % 2 == 0)
            }
            return Graph(name: "exported", nodes: nodes)
        }
        #expect(BottleneckStride.of(graph([[1, 1, 1], [1, 2, 1], [1, 1, 1], [1, 2, 1]])) == .torchvision)
        #expect(BottleneckStride.of(graph([[2, 1, 1], [1, 1, 1]])) == .paper)
        #expect(BottleneckStride.of(graph([[1, 1, 1], [1, 1, 1]])) == .unstrided)
        #expect(BottleneckStride.of(graph([[2, 1, 1], [1, 2, 1]])) == .mixed)
        #expect(BottleneckStride.of(graph([[1, 1, 2]])) == .mixed)
        // The committed ONNX exports are basic-block networks.
        for name in ["resnet8a", "resnet8b", "resnet18q"] {
            let imported = try ONNXImporter.load(CBuild.root + "/Tests/Fixtures/\(name).onnx", name: nil)
            #expect(imported.graph.bottleneck == .noBottlenecks, "\(name)")
        }
    }

    /// Examples/TorchvisionResNet50.swift compiles with the tool, and the
    /// header, the report and the summary say "torchvision" (the checked-in
    /// zoo ResNet-50 says "paper").
    @Test func exampleCompilesAsTorchvisionsResNet50() throws {
        let out = try CBuild.temporaryDirectory("torchvision") + "/out"
        let example = CBuild.root + "/Examples/TorchvisionResNet50.swift"
        let r = try HostTools.run(CLITests.tool, [example, "-o", out], environment: ["XDG_CACHE_HOME": CLITests.emptyCache])
        #expect(r.status == 0, "\(r.output)")
        let line = BottleneckStride.torchvision.statement
        #expect(line.hasPrefix("bottleneck variant: torchvision ("))
        #expect(try String(contentsOfFile: out + "/resnet50.h", encoding: .utf8).contains(" * " + line + "\n"))
        #expect(try String(contentsOfFile: out + "/resnet50.report", encoding: .utf8).contains("\n" + line + "\n"))
        let summary = try HostTools.run(CLITests.tool, [example, "--emit", "summary"], environment: ["XDG_CACHE_HOME": CLITests.emptyCache])
        #expect(summary.output.contains("\n" + line + "\n"), "\(summary.output)")
        #expect(summary.output.hasSuffix("total params=25557032 macs=4089184256\n"))
        let golden = try String(contentsOfFile: CBuild.root + "/generated/resnet50/resnet50.h", encoding: .utf8)
        #expect(golden.contains(" * " + BottleneckStride.paper.statement + "\n"))
        #expect(BottleneckStride.paper.statement.contains("torchvision's weights need variant: .torchvision"))
    }

    static let python = HostTools.which("python3")
    static let pythonRuns = python != nil || ISA.inCI

    /// The example script's image preparation (its plain-Python path: no
    /// packages needed) gives exactly the tensors torchvision's Resize,
    /// CenterCrop, ToTensor and Normalize gave for the committed PNG
    /// (Tests/Fixtures/make_image_fixture.py): shrinking, enlarging, and a
    /// short side that already fits; as safetensors and as raw float32.
    @Test(.enabled(if: pythonRuns, "needs python3 (no packages)"))
    func imagePreparationMatchesTorchvision() throws {
        let python = try #require(Self.python, "python3 not found")
        let dir = try CBuild.temporaryDirectory("prep")
        let fixtures = CBuild.root + "/Tests/Fixtures/"
        let expected = try SafeTensors.read(fixtures + "prep_image.safetensors")
        for (resize, crop) in [(12, 9), (40, 35), (19, 19)] {
            let out = dir + "/prep\(resize).safetensors"
            let r = try HostTools.run(python, [CBuild.root + "/Examples/torchvision_to_safetensors.py", "image", fixtures + "prep_image.png",
                                               out, "--resize", "\(resize)", "--crop", "\(crop)", "--pure"])
            try #require(r.status == 0, "\(r.output)")
            let want = try #require(expected["resize\(resize)_crop\(crop)"])
            let got = try #require(try SafeTensors.read(out)["input"])
            #expect(got.dtype == "F32" && got.shape == [1, 3, crop, crop])
            #expect(got.bytes == want.bytes, "resize \(resize) crop \(crop): max difference \(zip(got.floats, want.floats).map { abs($0 - $1) }.max() ?? 0)")
        }
        let raw = dir + "/prep.f32"
        let r = try HostTools.run(python, [CBuild.root + "/Examples/torchvision_to_safetensors.py", "image", fixtures + "prep_image.png",
                                           raw, "--resize", "12", "--crop", "9", "--pure"])
        #expect(r.status == 0 && r.output.contains("31×19 → 19×12 (plain Python), crop 9 at (5, 2)"), "\(r.output)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: raw)) == expected["resize12_crop9"]?.bytes)
    }
}
