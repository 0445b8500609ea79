import Foundation
import ResNetCompiler
import ResNetTestSupport
import Testing

/// Weights without a file system: `NAME_load_buffer`, `--embed-weights`
/// (`NAME_weights.c` and `NAME_init_embedded`), and `--no-train`'s
/// inference-only C, on ResNet-20 with the PyTorch fixture, through the built
/// tool and Tests/Drivers/driver.c.
@Suite(.serialized, .temporaryFiles) struct EmbedTests {
    static let fixtures = CBuild.root + "/Tests/Fixtures/"
    static let weights = fixtures + "resnet20.weights.safetensors"

    /// A network compiled by the tool with `options` into a fresh directory,
    /// and the driver built against it (with NAME_weights.c when there is one).
    struct Build {
        var directory: String
        var driver: String

        init(_ options: [String]) throws {
            directory = try CBuild.temporaryDirectory("embed") + "/out"
            let r = try HostTools.run(CLITests.tool, ["-o", directory] + options, environment: ["XDG_CACHE_HOME": CLITests.emptyCache])
            guard r.status == 0 else { throw CompileError("resnet-compile \(options): \(r.output)") }
            let embedded = FileManager.default.fileExists(atPath: directory + "/resnet20_weights.c")
            driver = directory + "/driver"
            // The object on its own too, for its symbols. -O0: these tests
            // compare loading paths, not kernels, and it builds in a tenth of the time.
            try CBuild.compileObject(directory + "/resnet20.c", output: directory + "/resnet20.o", extra: ["-O0"])
            try CBuild.compile([CBuild.root + "/Tests/Drivers/driver.c", directory + "/resnet20.o"]
                               + (embedded ? [directory + "/resnet20_weights.c"] : []), output: driver,
                               extra: ["-O0", "-I", directory, "-DNET=resnet20", "-DUNET=RESNET20", "-DNET_HEADER=\"resnet20.h\""]
                               + (embedded ? ["-DNET_EMBEDDED"] : []))
        }

        func drive(_ commands: [String]) throws -> (status: Int32, lines: [String]) {
            let r = try CBuild.run(driver, ["3"] + commands)
            return (r.status, r.output.split(separator: "\n").map(String.init))
        }

        /// The probabilities for the fixture's three images after `setup`.
        func probabilities(after setup: [String]) throws -> Data {
            let dir = try CBuild.temporaryDirectory("embed-run")
            let io = try SafeTensors.read(EmbedTests.fixtures + "resnet20.io.safetensors")
            try io["input"]!.bytes.write(to: URL(fileURLWithPath: dir + "/x.f32"))
            let r = try drive(setup + ["infer", dir + "/x.f32", "3", dir + "/p.f32"])
            #expect(r.status == 0, "\(setup): \(r.lines)")
            return try Data(contentsOf: URL(fileURLWithPath: dir + "/p.f32"))
        }
    }

    static let embedded = Result { try Build(["--embed-weights", weights]) }

    /// The same file loaded three ways gives the same bits, and PyTorch's probabilities.
    @Test func fileBufferAndEmbeddedWeightsGiveIdenticalProbabilities() throws {
        let build = try Self.embedded.get()
        let fromFile = try build.probabilities(after: ["load", Self.weights])
        let fromBuffer = try build.probabilities(after: ["loadbuf", Self.weights])
        let embedded = try build.probabilities(after: ["embedded"])
        #expect(fromBuffer == fromFile)
        #expect(embedded == fromFile)
        let probs = fromFile.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let torch = try SafeTensors.read(Self.fixtures + "resnet20.io.safetensors")["probs"]!.floats
        #expect(maxAbsDifference(probs, torch) <= 1e-4)
        // The embedded bytes are the state dict as NAME_save writes it.
        let dir = try CBuild.temporaryDirectory("embed-save")
        #expect(try build.drive(["embedded", "save", dir + "/saved.safetensors"]).status == 0)
        let saved = try Data(contentsOf: URL(fileURLWithPath: dir + "/saved.safetensors"))
        let graph = try Pipeline.analyse(BuiltIn.resnet20())
        let canonical = try EmbeddedWeights(try Data(contentsOf: URL(fileURLWithPath: Self.weights)), source: Self.weights, graph: graph)
        #expect(canonical.bytes == saved)
    }

    /// load_buffer with bad bytes: the code, the model as it was, and a
    /// message that names the tensor.
    @Test func badBuffersAreRefusedAndChangeNothing() throws {
        let build = try Self.embedded.get()
        let dir = try CBuild.temporaryDirectory("embed-bad")
        let good = try Data(contentsOf: URL(fileURLWithPath: Self.weights))
        let tensors = try SafeTensors.read(Self.weights)
        func variant(_ name: String, _ edit: (inout [String: SafeTensors.Tensor]) -> Void) throws -> String {
            try SafeTensors.writeVariant(of: tensors, to: dir + "/" + name + ".safetensors", edit)
        }
        try good.prefix(good.count - 100).write(to: URL(fileURLWithPath: dir + "/truncated.safetensors"))
        let cases: [(String, String, Int, String)] = [
            ("truncated", dir + "/truncated.safetensors", -5, "lie outside the"),
            ("wrong name", try variant("name") { $0["layer9.0.conv1.weight"] = $0.removeValue(forKey: "layer3.2.conv1.weight") },
             -7, ": layer9.0.conv1.weight: not in the model"),
            ("wrong shape", try variant("shape") { $0["conv1.weight"]!.shape = [16, 3, 9] },
             -10, ": conv1.weight: shape [16,3,3,3] expected, file has [16,3,9]"),
            ("a tensor missing", try variant("missing") { $0["fc.bias"] = nil }, -8, ": fc.bias: missing from the file"),
        ]
        for (what, path, code, why) in cases {
            let r = try build.drive(["embedded", "save", dir + "/before.safetensors", "tryloadbuf", path,
                                     "save", dir + "/after.safetensors"])
            #expect(r.status == 0 && r.lines.count == 4, "\(what): \(r.lines)")
            #expect(r.lines[2].hasPrefix("error \(code) ") && r.lines[2].contains(why), "\(what): \(r.lines[2])")
            #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/before.safetensors"))
                    == Data(contentsOf: URL(fileURLWithPath: dir + "/after.safetensors")), "\(what) changed the model")
        }
        // NULL bytes and an empty buffer (driver.c's badargs).
        let lines = try build.drive(["badargs"]).lines.filter { $0.hasPrefix("load_buffer(") }
        #expect(lines == ["load_buffer(NULL model) -1", "load_buffer(NULL bytes) -1 bytes is NULL",
                          "load_buffer(len 0) -5 0 bytes is shorter than the 8-byte header length"])
    }

    /// --no-train: inference-only C that builds warning-free, infers the same
    /// bits, exports no training function, and refuses to make a model that trains.
    @Test func noTrainIsInferenceOnlyAndInfersTheSame() throws {
        let full = try Self.embedded.get()
        let inferenceOnly = try Build(["--no-train"])
        #expect(try inferenceOnly.probabilities(after: ["load", Self.weights]) == full.probabilities(after: ["load", Self.weights]))
        let header = try String(contentsOfFile: inferenceOnly.directory + "/resnet20.h", encoding: .utf8)
        #expect(header.contains("#define RESNET20_TRAINING 0") && !header.contains("int resnet20_train_step("))
        let nm = try CBuild.run("nm", ["-g", "--defined-only", inferenceOnly.directory + "/resnet20.o"])
        let symbols = nm.output.split(separator: "\n").compactMap { $0.split(separator: " ").last.map(String.init) }.sorted()
        let api = ["create", "create_in", "destroy", "arena_bytes", "init_params", "load", "load_buffer", "save", "infer",
                   "strerror", "last_error"]
        #expect(symbols == api.map { "resnet20_" + $0 }.sorted())
        let refusals = try inferenceOnly.drive(["badargs"]).lines.suffix(3)
        #expect(Array(refusals) == ["arena_bytes(1,1) 0", "create_in(training=1) NULL", "create_in(training=0) non-NULL"])
        // Less than 60% of the full C (ResNet-20: 45%; README, "Inference only").
        let size = { (dir: String) in try FileManager.default.attributesOfItem(atPath: dir + "/resnet20.c")[.size] as! Int }
        #expect(try Double(size(inferenceOnly.directory)) < 0.6 * Double(size(full.directory)))
    }
}
