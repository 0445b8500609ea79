import Foundation
import ResNetCompiler
import ResNetTestSupport
import Testing

/// The built `resnet-compile` tool, run as a user runs it.
@Suite(.temporaryFiles) struct CLITests {
    /// The tool beside the test bundle (SwiftPM's build folder).
    static var tool: String {
        let beside = Bundle.main.executableURL!.deletingLastPathComponent().appendingPathComponent("resnet-compile").path
        if FileManager.default.isExecutableFile(atPath: beside) { return beside }
        return CBuild.root + "/.build/debug/resnet-compile"
    }

    /// Runs the tool with an empty cache directory, so that a tune cache a
    /// developer made (~/.cache/resnet-compile) does not change what it writes.
    func run(_ args: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
        try HostTools.run(Self.tool, args, environment: ["XDG_CACHE_HOME": Self.emptyCache].merging(environment) { $1 })
    }

    static let emptyCache = FileManager.default.temporaryDirectory.appendingPathComponent("resnet-compile-cli-cache-\(UUID().uuidString)").path

    func writeModel(_ source: String, name: String = "model.swift") throws -> (dir: String, path: String) {
        let dir = try CBuild.temporaryDirectory("cli")
        let path = dir + "/" + name
        try source.write(toFile: path, atomically: true, encoding: .utf8)
        return (dir, path)
    }

    @Test func helpDescribesTheTool() throws {
        let r = try run(["--help"])
        #expect(r.status == 0)
        for text in ["USAGE", "--output", "--network", "--emit", "--dump-after", "--no-fuse", "--eval-timeout", "ResNet-20"] {
            #expect(r.output.contains(text), "--help lacks \(text)")
        }
    }

    @Test func noFileCompilesTheBuiltInResNet20() throws {
        let out = try CBuild.temporaryDirectory("cli") + "/out"
        let r = try run(["-o", out])
        #expect(r.status == 0, "\(r.output)")
        for file in ["resnet20.c", "resnet20.h", "module.modulemap"] {
            let golden = try String(contentsOfFile: CBuild.root + "/generated/resnet20/" + file, encoding: .utf8)
            #expect(try String(contentsOfFile: out + "/" + file, encoding: .utf8) == golden)
        }
    }

    /// --embed-weights checks the file against the network before writing
    /// anything: a mismatch is an error naming the tensor, and DIR is left
    /// as it was (not created, or its files untouched).
    @Test func embedWeightsRejectsAMismatchedFileNamingTheTensor() throws {
        let dir = try CBuild.temporaryDirectory("cli")
        let good = try SafeTensors.read(CBuild.root + "/Tests/Fixtures/resnet20.weights.safetensors")
        try SafeTensors.writeVariant(of: good, to: dir + "/shape.safetensors") { $0["conv1.weight"]!.shape = [16, 27] }
        try SafeTensors.writeVariant(of: good, to: dir + "/extra.safetensors") { $0["layer9.0.conv1.weight"] = $0["layer3.2.conv1.weight"] }
        let existing = dir + "/existing"
        try FileManager.default.createDirectory(atPath: existing, withIntermediateDirectories: true)
        try "mine".write(toFile: existing + "/resnet20.c", atomically: true, encoding: .utf8)
        let cases = [
            ("shape", "resnet-compile: error: \(dir)/shape.safetensors: conv1.weight: shape [16,3,3,3] expected, file has [16,27]"),
            ("extra", "resnet-compile: error: \(dir)/extra.safetensors: layer9.0.conv1.weight: not in the model"),
        ]
        for (name, message) in cases {
            for out in [dir + "/new-" + name, existing] {
                let r = try run(["-o", out, "--embed-weights", dir + "/\(name).safetensors"])
                #expect(r.status == 1 && r.output.contains(message), "\(r.output)")
            }
            #expect(!FileManager.default.fileExists(atPath: dir + "/new-" + name))
            #expect(try FileManager.default.contentsOfDirectory(atPath: existing) == ["resnet20.c"])
            #expect(try String(contentsOfFile: existing + "/resnet20.c", encoding: .utf8) == "mine")
        }
        let r = try run(["--emit", "ir", "--embed-weights", dir + "/shape.safetensors"])
        #expect(r.status != 0 && r.output.contains("--embed-weights writes C: it needs --emit c"), "\(r.output)")
    }

    @Test func swiftModelFileCompiles() throws {
        let out = try CBuild.temporaryDirectory("cli") + "/out"
        let r = try run([CBuild.root + "/Examples/ResNet20.swift", "-o", out])
        #expect(r.status == 0, "\(r.output)")
        let golden = try String(contentsOfFile: CBuild.root + "/generated/resnet20/resnet20.c", encoding: .utf8)
        #expect(try String(contentsOfFile: out + "/resnet20.c", encoding: .utf8) == golden)
    }

    @Test func swiftErrorsShowFileAndLineAndWriteNothing() throws {
        let (dir, path) = try writeModel("""
            import ResNetDSL
            let net = Network("tiny", input: .image(channels: 3, height: 8, width: 8)) {
                Conv2D(4, kernel: 3, name: "conv1")
                NoSuchLayer()
            }
            """)
        let out = dir + "/out"
        let r = try run([path, "-o", out])
        #expect(r.status != 0)
        #expect(r.output.contains("model.swift:4:"), "\(r.output)")
        #expect(r.output.contains("error:"))
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test func invalidNetworkNamesTheLayerAndLeavesTheDirectoryAlone() throws {
        let (dir, path) = try writeModel("""
            import ResNetDSL
            let net = Network("tiny", input: .image(channels: 3, height: 8, width: 8)) {
                Conv2D(4, kernel: 3, padding: 1, name: "conv1")
                Residual(name: "layer1.0") {
                    Conv2D(8, kernel: 3, stride: 2, padding: 1, name: "conv1")
                }
            }
            """)
        let out = dir + "/out"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try "keep".write(toFile: out + "/tiny.c", atomically: true, encoding: .utf8)
        let r = try run([path, "-o", out])
        #expect(r.status == 1)
        #expect(r.output.contains("error: layer 'layer1.0': identity shortcut, but the branch changes the shape"), "\(r.output)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: out) == ["tiny.c"])
        #expect(try String(contentsOfFile: out + "/tiny.c", encoding: .utf8) == "keep")
    }

    @Test func severalNetworksNeedNetworkOption() throws {
        let (dir, path) = try writeModel("""
            import ResNetDSL
            let a = try ResNet.cifar(depth: 8, name: "small")
            let b = try PlainNet.cifar(depth: 8)
            """)
        let r = try run([path, "-o", dir + "/out"])
        #expect(r.status == 1)
        #expect(r.output.contains("defines 2 networks (small, plain8); pick one with --network NAME"), "\(r.output)")
        let picked = try run([path, "-o", dir + "/out", "--network", "plain8"])
        #expect(picked.status == 0, "\(picked.output)")
        #expect(FileManager.default.fileExists(atPath: dir + "/out/plain8.c"))
        let wrong = try run([path, "--network", "nope"])
        #expect(wrong.output.contains("no network named 'nope'; the file defines: small, plain8"))
    }

    @Test func modelFileThatFailsAtRunTimeIsReported() throws {
        let (_, path) = try writeModel("""
            import ResNetDSL
            let net = try ResNet.cifar(depth: 21)
            """)
        let r = try run([path, "--emit", "summary"])
        #expect(r.status == 1)
        #expect(r.output.contains("CIFAR depth must be 6n+2"), "\(r.output)")
    }

    @Test func emitSummaryEndsWithTotals() throws {
        let r = try run(["--emit", "summary"])
        #expect(r.status == 0)
        let last = r.output.split(separator: "\n").last.map(String.init)
        #expect(last == "total params=269722 macs=40551040")
        #expect(try run(["--summary"]).output == r.output)
    }

    @Test func emitIRAndDumpAfter() throws {
        let ir = try run(["--emit", "ir"])
        #expect(ir.output.contains("fusedConv[conv+bn+add+relu] layer3.2.conv2"))
        let dump = try run(["--emit", "ir", "--dump-after", "InferShapes"])
        #expect(dump.output.contains("= batchNorm layer3.2.bn2"))
        let backward = try run(["--emit", "ir", "--dump-after", "Differentiate"])
        #expect(backward.output.contains("// training"))
        #expect(backward.output.contains("= loss loss"))
        #expect(backward.output.contains("= convGradWeight layer3.2.conv2.grad_weight"))
        #expect(backward.output.contains("= sgdUpdate sgd"))
        let fused = try run(["--emit", "ir", "--dump-after", "FuseTraining"])
        #expect(fused.output.contains("batchNormGrad[relu+bn] layer3.2.bn2.grad"))
        let bad = try run(["--dump-after", "Nope"])
        #expect(bad.status == 1 && bad.output.contains("unknown pass 'Nope'"))
    }

    @Test func jsonGraphCompiles() throws {
        let dir = try CBuild.temporaryDirectory("cli")
        let json = #"""
            {"format":"resnet-compile-model","version":1,"networks":[{"name":"fromjson",
             "input":{"channels":1,"height":8,"width":8},
             "layers":[{"op":"conv2d","name":"conv1","outChannels":4,"kernel":3,"padding":1},
                       {"op":"batchNorm","name":"bn1"},{"op":"relu"},
                       {"op":"residual","name":"layer1.0","shortcut":"zeroPad","body":[
                          {"op":"conv2d","name":"conv1","outChannels":8,"kernel":3,"stride":2,"padding":1},
                          {"op":"batchNorm","name":"bn1"}]},
                       {"op":"relu"},{"op":"globalAvgPool"},{"op":"dense","name":"fc","outFeatures":3},{"op":"softmax"}]}]}
            """#
        try json.write(toFile: dir + "/m.json", atomically: true, encoding: .utf8)
        let r = try run([dir + "/m.json", "-o", dir + "/out"])
        #expect(r.status == 0, "\(r.output)")
        #expect(FileManager.default.fileExists(atPath: dir + "/out/fromjson.h"))
        let bad = try run([dir + "/nothere.json"])
        #expect(bad.status == 1 && bad.output.contains("no such model file"))
    }

    /// --tune measures each conv shape, writes the cache, and a later compile
    /// with that cache writes the same C without measuring; a malformed cache
    /// is an error that names the file.
    @Test func tuneRecordsChoicesThatLaterCompilesReuse() throws {
        let (dir, path) = try writeModel("""
            import ResNetDSL
            let net = Network("tiny", input: .image(channels: 16, height: 8, width: 8)) {
                Conv2D(16, kernel: 3, padding: 1, name: "conv1")
                BatchNorm(name: "bn1")
                ReLU()
                Conv2D(16, kernel: 3, padding: 1, name: "conv2")
                BatchNorm(name: "bn2")
                ReLU()
                GlobalAvgPool()
                Dense(3, name: "fc")
                Softmax()
            }
            """)
        let cache = dir + "/tune.json"
        let env = ["OMP_NUM_THREADS": "2"]
        let first = try run([path, "--tune", "--tune-cache", cache, "-o", dir + "/a"], environment: env)
        #expect(first.status == 0, "\(first.output)")
        #expect(first.output.contains("tune cache \(cache): 2 conv shape(s) measured"), "\(first.output)")
        let recorded = try TuneCache.load(cache)
        #expect(recorded.entries.count == 2)
        #expect(recorded.entries.keys.allSatisfy { $0.hasSuffix("|2t") && $0.hasPrefix("conv3x3s1p1 16x8x8") })
        #expect(recorded.entries.values.allSatisfy { ($0.seconds ?? 0) > 0 })
        let again = try run([path, "--tune-cache", cache, "-o", dir + "/b"], environment: env)
        #expect(again.status == 0 && !again.output.contains("measured"), "\(again.output)")
        #expect(try String(contentsOfFile: dir + "/a/tiny.c", encoding: .utf8) == String(contentsOfFile: dir + "/b/tiny.c", encoding: .utf8))
        try "not json".write(toFile: cache, atomically: true, encoding: .utf8)
        let bad = try run([path, "--tune-cache", cache, "-o", dir + "/c"], environment: env)
        #expect(bad.status == 1 && bad.output.contains("tune cache \(cache) is not a resnet-compile tune cache"), "\(bad.output)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/c"))
    }
}
