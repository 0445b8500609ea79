import Foundation
import ResNetCompiler
import ResNetTestSupport
import Testing

/// The ONNX front end: the committed exports (Tests/Fixtures/make_onnx_fixtures.py)
/// against onnxruntime's outputs, a training step compiled from an ONNX file,
/// the CLI, rejected graphs, and malformed files (fuzzed, seeded, bounded).
@Suite(.temporaryFiles) struct ONNXTests {
    static let fixtures = CBuild.root + "/Tests/Fixtures/"

    static func imported(_ name: String) throws -> ONNXImporter.Imported {
        try ONNXImporter.load(fixtures + name + ".onnx")
    }

    /// Our C, loading the safetensors the import writes, against onnxruntime (within 1e-4).
    @Test(arguments: ["resnet8a", "resnet8b", "resnet18q"])
    func matchesONNXRuntime(name: String) throws {
        let imported = try Self.imported(name)
        let model = try BuiltModel(lowered: imported.graph)
        let weights = model.directory + "/\(name).safetensors"
        try ONNXImporter.safetensors(imported).write(to: URL(fileURLWithPath: weights))
        let io = try SafeTensors.read(Self.fixtures + name + ".onnx.io.safetensors")
        let input = io["input"]!, expected = io["output"]!
        let got = try model.infer(weights: weights, input: input.floats, batch: input.shape[0])
        let diff = maxAbsDifference(got, expected.floats)
        print("ONNX fixture \(name): max |C − onnxruntime| = \(diff)")
        #expect(diff <= 1e-4, "\(name): max |C − onnxruntime| = \(diff)")
        // The header says what NAME_infer returns.
        let header = model.files.first { $0.name == name + ".h" }!.contents
        #expect(header.contains("LOGITS") == imported.outputsLogits)
        #expect(imported.outputsLogits == (name != "resnet18q"))
    }

    /// Unfused (one kernel per op: the option-A zeroPad materialised, BN apart) gives the same.
    @Test(arguments: ["resnet8a", "resnet18q"])
    func unfusedMatchesONNXRuntime(name: String) throws {
        let imported = try Self.imported(name)
        let model = try BuiltModel(lowered: imported.graph, fuse: false)
        let weights = model.directory + "/\(name).safetensors"
        try ONNXImporter.safetensors(imported).write(to: URL(fileURLWithPath: weights))
        let io = try SafeTensors.read(Self.fixtures + name + ".onnx.io.safetensors")
        let got = try model.infer(weights: weights, input: io["input"]!.floats, batch: io["input"]!.shape[0])
        let diff = maxAbsDifference(got, io["output"]!.floats)
        #expect(diff <= 1e-4, "\(name) unfused: max |C − onnxruntime| = \(diff)")
    }

    /// The patterns of each export: option A read in place by the conv epilogue,
    /// folded batch norm as a conv bias, BN kept where it was exported.
    @Test func patternsMapOntoTheIR() throws {
        let a = try Self.imported("resnet8a").graph
        #expect(a.nodes.filter { $0.op == .zeroPad }.count == 2)
        #expect(a.nodes.filter { $0.op == .conv }.allSatisfy { $0.attrs.bias == true })
        #expect(!a.nodes.contains { $0.op == .batchNorm })
        #expect(a.nodes.contains { $0.op == .globalAvgPool } && a.output.op == .dense)
        let fused = try Pipeline.inference().run(a)
        #expect(!fused.nodes.contains { $0.op == .zeroPad }, "option A is read in place")
        let b = try Self.imported("resnet8b").graph
        #expect(b.nodes.filter { $0.op == .conv }.count == 9 && !b.nodes.contains { $0.op == .zeroPad })
        let q = try Self.imported("resnet18q").graph
        #expect(q.nodes.filter { $0.op == .batchNorm }.count == 20 && q.output.op == .softmax)
        #expect(q.nodes.contains { $0.op == .maxPool })
        // Unfolded exports keep torchvision's names, so a state dict loads as it is.
        let names = Set(try Pipeline.analysis.run(q).parameters.map(\.name))
        for n in ["conv1.weight", "bn1.running_var", "layer2.0.downsample.0.weight", "layer4.1.bn2.bias", "fc.weight"] {
            #expect(names.contains(n), "missing \(n)")
        }
    }

    /// Training steps compiled from the ONNX file run and give finite losses.
    /// Both exports are eval-mode, so batch norm is folded into the convs and the
    /// graph that trains has convs with bias and no BN (without BN to keep the
    /// scale, resnet8b's loss rises even at lr 1e-4; its gradients match the
    /// interpreter's, below, so that is the network, not the step).
    @Test(arguments: ["resnet8a", "resnet8b"])
    func trainingStepRuns(name: String) throws {
        let imported = try Self.imported(name)
        let model = try BuiltModel(lowered: imported.graph)
        let weights = model.directory + "/\(name).safetensors"
        try ONNXImporter.safetensors(imported).write(to: URL(fileURLWithPath: weights))
        let io = try SafeTensors.read(Self.fixtures + name + ".onnx.io.safetensors")
        let input = io["input"]!
        let n = input.shape[0]
        let labels = (0..<n).map { Int32($0 % 10) }
        let losses = try model.train(weights: weights, steps: [(input.floats, labels), (input.floats, labels)], batch: n, lr: 1e-4,
                                     save: model.directory + "/trained.safetensors")
        #expect(losses.count == 2 && losses.allSatisfy(\.isFinite), "losses \(losses)")
        print("ONNX \(name): losses of two steps at lr 1e-4: \(losses)")
    }

    /// The C training step's gradients (one step, lr 1, no momentum or decay:
    /// p − p′ is the gradient) against the float64 interpreter's on the
    /// imported graph and weights.
    @Test(arguments: ["resnet8a", "resnet8b"])
    func trainingGradientsMatchInterpreter(name: String) throws {
        let imported = try Self.imported(name)
        let graph = try Pipeline.analyseTraining(lowered: imported.graph)
        let model = try BuiltModel(lowered: imported.graph)
        let weights = model.directory + "/\(name).safetensors", after = model.directory + "/after.safetensors"
        try ONNXImporter.safetensors(imported).write(to: URL(fileURLWithPath: weights))
        let input = try SafeTensors.read(Self.fixtures + name + ".onnx.io.safetensors")["input"]!
        let n = input.shape[0]
        let labels = (0..<n).map { Int32($0 % 10) }
        let losses = try model.train(weights: weights, steps: [(input.floats, labels)], batch: n, lr: 1, momentum: 0, weightDecay: 0, save: after)
        let params = imported.weights.mapValues(\.floats)
        let reference = try Interpreter(graph: graph, parameters: params).trainStep(input.floats, labels: labels.map(Int.init), batch: n)
        #expect(abs(Double(losses[0]) - reference.loss) <= 1e-4 * abs(reference.loss), "loss \(losses[0]) vs \(reference.loss)")
        let updated = try SafeTensors.read(after)
        for p in graph.parameters where p.trainable {
            let cGrad = zip(params[p.name]!, updated[p.name]!.floats).map { Double($0) - Double($1) }
            let expected = reference.gradients[p.name]!
            let scale = expected.map(abs).max()!
            let floor = 4e-7 * Double(params[p.name]!.map(abs).max()!)
            #expect(maxAbsDifference(cGrad, expected) <= 1e-3 * scale + floor, "\(name): ∂\(p.name)")
        }
    }

    /// `resnet-compile FILE.onnx -o DIR` writes the C and the weights; a bad file writes nothing.
    @Test func cliWritesTheWeightsBesideTheC() throws {
        let dir = try CBuild.temporaryDirectory("onnx-cli")
        let out = dir + "/out"
        let r = try HostTools.run(CLITests.tool, [Self.fixtures + "resnet8a.onnx", "-o", out],
                                  environment: ["XDG_CACHE_HOME": CLITests.emptyCache])
        #expect(r.status == 0, "\(r.output)")
        let files = try FileManager.default.contentsOfDirectory(atPath: out).sorted()
        #expect(files == ["module.modulemap", "resnet8a.c", "resnet8a.h", "resnet8a.report", "resnet8a.safetensors"])
        let written = try Data(contentsOf: URL(fileURLWithPath: out + "/resnet8a.safetensors"))
        #expect(written == (try ONNXImporter.safetensors(try Self.imported("resnet8a"))))
        let summary = try HostTools.run(CLITests.tool, [Self.fixtures + "resnet18q.onnx", "--emit", "summary", "--network", "tiny18"],
                                        environment: ["XDG_CACHE_HOME": CLITests.emptyCache])
        #expect(summary.status == 0 && summary.output.contains("total params="), "\(summary.output)")

        let bad = dir + "/bad.onnx"
        try Data(try Data(contentsOf: URL(fileURLWithPath: Self.fixtures + "resnet8a.onnx")).prefix(5000)).write(to: URL(fileURLWithPath: bad))
        let r2 = try HostTools.run(CLITests.tool, [bad, "-o", dir + "/never"], environment: ["XDG_CACHE_HOME": CLITests.emptyCache])
        #expect(r2.status == 1 && r2.output.contains("malformed ONNX protobuf"), "\(r2.output)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/never"))
    }

    // MARK: - Rejected graphs

    /// Imports a model built by `ONNXWriter`, expecting an error that contains every string of `expected`.
    func expectRejected(_ model: ONNXWriter.Model, _ expected: [String]) {
        do {
            _ = try ONNXImporter.decode(model.bytes, source: "test.onnx", name: "test")
            Issue.record("imported, expected an error containing \(expected)")
        } catch let error as CompileError {
            for text in expected { #expect(error.description.contains(text), "\(error)") }
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test func theSmallModelImports() throws {
        let imported = try ONNXImporter.decode(ONNXWriter.Model.small().bytes, source: "test.onnx", name: "small")
        #expect(imported.graph.nodes.map(\.op) == [.input, .conv, .relu, .globalAvgPool, .dense])
        #expect(imported.outputsLogits)
        _ = try Compiler().compile(lowered: imported.graph)
    }

    /// MatMul by a constant + Add of a constant is the same dense layer as Gemm
    /// with transB (the in×out weight transposed); ReduceMean without keepdims
    /// and a final Softmax map too.
    @Test func matMulPlusAddIsDense() throws {
        let gemm = try ONNXImporter.decode(ONNXWriter.Model.small().bytes, source: "g.onnx", name: "g")
        var m = ONNXWriter.Model.small()
        m.nodes[2] = ONNXWriter.Node(op: "ReduceMean", name: "mean", inputs: ["r"], outputs: ["f"], attributes: [.ints("axes", [2, 3]), .int("keepdims", 0)])
        m.nodes[3] = ONNXWriter.Node(op: "MatMul", name: "/fc/MatMul", inputs: ["f", "wt"], outputs: ["mm"])
        m.nodes[4] = ONNXWriter.Node(op: "Add", name: "/fc/Add", inputs: ["mm", "fc.bias"], outputs: ["logits"])
        m.nodes.append(ONNXWriter.Node(op: "Softmax", name: "/Softmax", inputs: ["logits"], outputs: ["y"], attributes: [.int("axis", 1)]))
        let w = m.initializers[2].values   // 5×4, row-major
        m.initializers.append(ONNXWriter.Tensor(name: "wt", dims: [4, 5], values: (0..<20).map { w[($0 % 5) * 4 + $0 / 5] }))
        let matmul = try ONNXImporter.decode(m.bytes, source: "m.onnx", name: "m")
        #expect(matmul.graph.nodes.map(\.op) == [.input, .conv, .relu, .globalAvgPool, .dense, .softmax])
        #expect(!matmul.outputsLogits)
        let dense = matmul.graph.nodes[4].name
        #expect(matmul.weights[dense + ".weight"] == gemm.weights["fc.weight"])
        #expect(matmul.weights[dense + ".bias"] == gemm.weights["fc.bias"])
    }

    @Test func unsupportedOpIsNamed() {
        var m = ONNXWriter.Model.small()
        m.nodes[1].op = "Sigmoid"
        expectRejected(m, ["node 'act' (Sigmoid)", "operator Sigmoid is not supported"])
    }

    @Test func unsupportedAttributeValuesAreNamed() {
        var m = ONNXWriter.Model.small()
        m.nodes[0].attributes.append(.int("group", 2))
        expectRejected(m, ["node 'conv' (Conv)", "group 2 is not supported"])
        m = .small()
        m.nodes[0].attributes.append(.ints("dilations", [2, 2]))
        expectRejected(m, ["node 'conv' (Conv)", "dilations [2, 2]"])
        m = .small()
        m.nodes[0].attributes.append(.ints("pads", [1, 0, 1, 0]))
        expectRejected(m, ["node 'conv' (Conv)", "pads [1, 0, 1, 0] are not the same on every side"])
        m = .small()
        m.nodes[2] = ONNXWriter.Node(op: "ReduceMean", name: "mean", inputs: ["r"], outputs: ["p"], attributes: [.ints("axes", [1, 2])])
        expectRejected(m, ["node 'mean' (ReduceMean)", "axes [1, 2]"])
    }

    @Test func unsupportedDataTypesAreNamed() {
        var m = ONNXWriter.Model.small()
        m.inputType = 10
        expectRejected(m, ["graph input 'x'", "FLOAT16 (10)"])
        m = .small()
        m.initializers[0].dataType = 10
        expectRejected(m, ["initializer 'w'", "FLOAT16 (10)"])
    }

    @Test func dynamicShapesOtherThanTheBatchAreRejected() {
        var m = ONNXWriter.Model.small()
        m.inputDims = [.param("N"), .value(3), .param("H"), .value(8)]
        expectRejected(m, ["graph input 'x'", "dimension 2 (H) is symbolic ('H')", "only the batch may be dynamic"])
        m = .small()
        m.inputDims = [.param("batch"), .value(3), .value(8), .value(8)]
        #expect(throws: Never.self) { try ONNXImporter.decode(m.bytes, source: "test.onnx", name: "t") }
    }

    @Test func otherOpsetsAndDomainsAreRejected() {
        var m = ONNXWriter.Model.small()
        m.opset = 9
        expectRejected(m, ["opset 9 is not supported", "11 to 21"])
        m = .small()
        m.nodes[1].domain = "com.microsoft"
        expectRejected(m, ["node 'act' (Relu)", "domain 'com.microsoft'"])
    }

    // MARK: - Malformed files

    /// Truncations and byte mutations of the committed exports, with a fixed
    /// seed and a bounded number of tries: each is an error or an import, never a crash.
    @Test(arguments: ["resnet8a", "resnet8b"])
    func mutatedFilesNeverCrash(name: String) throws {
        let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Self.fixtures + name + ".onnx")))
        var rng = TestRandom(seed: name == "resnet8a" ? 11 : 12)
        func below(_ n: Int) -> Int { Int(rng.next() % UInt64(max(n, 1))) }
        var errors = 0, imports = 0
        for iteration in 0..<150 {
            var bytes = original
            switch iteration % 3 {
            case 0:
                bytes = Array(bytes.prefix(below(bytes.count)))
            case 1:
                for _ in 0..<(1 + below(8)) { bytes[below(bytes.count)] = UInt8(truncatingIfNeeded: rng.next()) }
            default:
                // Structure is in the first and last parts (nodes, then initializer headers); hit those.
                let hot = min(bytes.count, 4096)
                for _ in 0..<(1 + below(4)) {
                    let at = below(2) == 0 ? below(hot) : bytes.count - 1 - below(hot)
                    bytes[at] = UInt8(truncatingIfNeeded: rng.next())
                }
            }
            do {
                let imported = try ONNXImporter.decode(bytes, source: "mutated.onnx", name: "mutated")
                _ = try ONNXImporter.safetensors(imported)
                imports += 1
            } catch is CompileError {
                errors += 1
            }
        }
        print("ONNX fuzz \(name): 150 mutations, \(errors) errors, \(imports) imports")
        #expect(errors + imports == 150)
        #expect(errors > 40, "most truncations and structural mutations are errors")
    }

    /// Hand-made malformed protobuf: every kind of bad wire data is an error.
    @Test func malformedProtobufIsAnError() {
        let cases: [([UInt8], String)] = [
            ([0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f], "runs past the end"),      // graph: length 4 GiB
            ([0x08, 0x80, 0x80], "truncated varint"),
            ([0x08] + Array(repeating: 0xff, count: 10) + [0x01], "varint"),
            ([0x0b], "wire type 3"),
            ([0x00], "field number 0"),
            ([0x3d, 0x00, 0x00], "field ModelProto.graph has wire type 5"),
            ([], "no graph"),
        ]
        for (bytes, text) in cases {
            #expect {
                try ONNXImporter.decode(bytes, source: "m.onnx", name: "m")
            } throws: { error in
                (error as? CompileError)?.description.contains(text) == true
            }
        }
    }
}

/// A minimal ONNX writer for tests: builds small ModelProtos field by field.
struct ONNXWriter {
    enum Attribute {
        case int(String, Int64)
        case ints(String, [Int64])
        case float(String, Float)
        var bytes: [UInt8] {
            switch self {
            case let .int(n, v): ONNXWriter.string(1, n) + ONNXWriter.varintField(20, 2) + ONNXWriter.varintField(3, UInt64(bitPattern: v))
            case let .ints(n, v): ONNXWriter.string(1, n) + ONNXWriter.varintField(20, 7) + v.flatMap { ONNXWriter.varintField(8, UInt64(bitPattern: $0)) }
            case let .float(n, v): ONNXWriter.string(1, n) + ONNXWriter.varintField(20, 1) + [0x15] + ONNXWriter.le32(v.bitPattern)
            }
        }
    }

    struct Node {
        var op: String
        var name: String
        var inputs: [String]
        var outputs: [String]
        var attributes: [Attribute] = []
        var domain = ""
        var bytes: [UInt8] {
            inputs.flatMap { ONNXWriter.string(1, $0) } + outputs.flatMap { ONNXWriter.string(2, $0) } + ONNXWriter.string(3, name)
                + ONNXWriter.string(4, op) + attributes.flatMap { ONNXWriter.message(5, $0.bytes) }
                + (domain.isEmpty ? [] : ONNXWriter.string(7, domain))
        }
    }

    struct Tensor {
        var name: String
        var dims: [Int64]
        var values: [Float]
        var dataType: Int64 = 1
        var bytes: [UInt8] {
            dims.flatMap { ONNXWriter.varintField(1, UInt64(bitPattern: $0)) } + ONNXWriter.varintField(2, UInt64(dataType))
                + ONNXWriter.string(8, name) + ONNXWriter.message(9, values.flatMap { ONNXWriter.le32($0.bitPattern) })
        }
    }

    enum Dim {
        case value(Int64)
        case param(String)
    }

    struct Model {
        var opset: Int64 = 13
        var nodes: [Node]
        var initializers: [Tensor]
        var inputType: Int64 = 1
        var inputDims: [Dim] = [.param("N"), .value(3), .value(8), .value(8)]

        /// x (N×3×8×8) → Conv 3×3 pad 1 (4 channels, bias) → Relu → GlobalAveragePool → Flatten → Gemm (5 classes).
        static func small() -> Model {
            Model(nodes: [
                Node(op: "Conv", name: "conv", inputs: ["x", "w", "b"], outputs: ["c"],
                     attributes: [.ints("kernel_shape", [3, 3]), .ints("pads", [1, 1, 1, 1]), .ints("strides", [1, 1])]),
                Node(op: "Relu", name: "act", inputs: ["c"], outputs: ["r"]),
                Node(op: "GlobalAveragePool", name: "pool", inputs: ["r"], outputs: ["p"]),
                Node(op: "Flatten", name: "flat", inputs: ["p"], outputs: ["f"], attributes: [.int("axis", 1)]),
                Node(op: "Gemm", name: "fc", inputs: ["f", "fc.weight", "fc.bias"], outputs: ["y"], attributes: [.int("transB", 1)]),
            ], initializers: [
                Tensor(name: "w", dims: [4, 3, 3, 3], values: (0..<108).map { Float($0 % 7) * 0.1 - 0.3 }),
                Tensor(name: "b", dims: [4], values: [0.1, -0.2, 0.3, 0]),
                Tensor(name: "fc.weight", dims: [5, 4], values: (0..<20).map { Float($0 % 5) * 0.2 - 0.4 }),
                Tensor(name: "fc.bias", dims: [5], values: [0, 0.1, 0.2, 0.3, 0.4]),
            ])
        }

        var bytes: [UInt8] {
            let dims = inputDims.flatMap { d -> [UInt8] in
                switch d {
                case let .value(v): ONNXWriter.message(1, ONNXWriter.varintField(1, UInt64(bitPattern: v)))
                case let .param(p): ONNXWriter.message(1, ONNXWriter.string(2, p))
                }
            }
            let inputType = ONNXWriter.message(1, ONNXWriter.varintField(1, UInt64(self.inputType)) + ONNXWriter.message(2, dims))
            let input = ONNXWriter.string(1, "x") + ONNXWriter.message(2, inputType)
            let output = ONNXWriter.string(1, "y")
            let graph = nodes.flatMap { ONNXWriter.message(1, $0.bytes) } + ONNXWriter.string(2, "g")
                + initializers.flatMap { ONNXWriter.message(5, $0.bytes) } + ONNXWriter.message(11, input) + ONNXWriter.message(12, output)
            return ONNXWriter.varintField(1, 8) + ONNXWriter.message(8, ONNXWriter.varintField(2, UInt64(opset))) + ONNXWriter.message(7, graph)
        }
    }

    static func varint(_ v: UInt64) -> [UInt8] {
        var v = v, out: [UInt8] = []
        while v >= 0x80 { out.append(UInt8(v & 0x7f) | 0x80); v >>= 7 }
        out.append(UInt8(v))
        return out
    }

    static func varintField(_ field: Int, _ v: UInt64) -> [UInt8] { varint(UInt64(field << 3)) + varint(v) }

    static func message(_ field: Int, _ payload: [UInt8]) -> [UInt8] { varint(UInt64(field << 3 | 2)) + varint(UInt64(payload.count)) + payload }

    static func string(_ field: Int, _ s: String) -> [UInt8] { message(field, Array(s.utf8)) }

    static func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
}
