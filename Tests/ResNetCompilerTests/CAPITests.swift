import Foundation
import ResNetCompiler
import ResNetDSL
import ResNetTestSupport
import Testing

/// The generated C API on bad input: every check returns an error code and a
/// message, and nothing is changed or half-written.
@Suite(.serialized, .temporaryFiles) struct CAPITests {
    static let model: Result<BuiltModel, Error> = Result { try BuiltModel(TestNetworks.mixnet()) }

    /// A valid weight file for mixnet, its tensors, and a scratch directory.
    func setup() throws -> (BuiltModel, String, [(String, SafeTensors.Tensor)]) {
        let model = try Self.model.get()
        let graph = try Pipeline.analyse(TestNetworks.mixnet())
        let params = randomParameters(graph, seed: 11)
        var tensors: [(String, SafeTensors.Tensor)] = graph.parameters.map { ($0.name, SafeTensors.Tensor(params[$0.name]!, shape: $0.shape)) }
        tensors.append(("bn1.num_batches_tracked", SafeTensors.Tensor(int64: [5], shape: [])))
        let dir = try CBuild.temporaryDirectory("capi")
        return (model, dir, tensors)
    }

    /// Writes a file and returns the driver's answer to loading it.
    func load(_ model: BuiltModel, _ path: String) throws -> String {
        try model.drive(maxBatch: 1, ["load", path]).lines.last ?? ""
    }

    @Test func badWeightFilesAreRejectedWithTheirReason() throws {
        let (model, dir, good) = try setup()
        func variant(_ name: String, _ edit: (inout [(String, SafeTensors.Tensor)]) -> Void) throws -> String {
            var t = good
            edit(&t)
            let path = dir + "/" + name + ".safetensors"
            try SafeTensors.write(t, to: path)
            return path
        }
        let goodPath = try variant("good") { _ in }
        #expect(try load(model, goodPath) == "ok")

        // The code, and NAME_last_error naming the tensor and what is wrong with it.
        let cases: [(String, String, Int, String)] = [
            ("missing file", dir + "/nope.safetensors", -4, dir + "/nope.safetensors: cannot open file"),
            ("unknown name", try variant("unknown") { $0.append(("layer9.conv1.weight", SafeTensors.Tensor([1], shape: [1]))) }, -7,
             "layer9.conv1.weight: not in the model"),
            ("missing name", try variant("missing") { $0.removeAll { $0.0 == "layer1.0.bn2.running_var" } }, -8,
             "layer1.0.bn2.running_var: missing from the file"),
            ("misnamed", try variant("misnamed") { t in
                let i = t.firstIndex { $0.0 == "fc.bias" }!
                t[i].0 = "fc.biases"
            }, -7, "fc.biases: not in the model"),
            ("mistyped", try variant("mistyped") { t in
                let i = t.firstIndex { $0.0 == "fc.bias" }!
                t[i].1 = SafeTensors.Tensor(dtype: "I32", shape: t[i].1.shape, bytes: t[i].1.bytes)
            }, -9, "fc.bias: dtype F32 expected, file has I32"),
            ("mis-shaped", try variant("misshaped") { t in
                let i = t.firstIndex { $0.0 == "conv1.weight" }!
                t[i].1.shape = [8, 3, 25]
            }, -10, "conv1.weight: shape [8,3,5,5] expected, file has [8,3,25]"),
            ("transposed", try variant("transposed") { t in
                let i = t.firstIndex { $0.0 == "fc.weight" }!
                t[i].1.shape = [24, 7]
            }, -10, "fc.weight: shape [7,24] expected, file has [24,7]"),
            ("non-finite", try variant("nan") { t in
                let i = t.firstIndex { $0.0 == "fc.bias" }!
                t[i].1 = SafeTensors.Tensor([1, 2, .nan, 4, 5, 6, 7], shape: [7])
            }, -13, "fc.bias: element 2 is not finite (NaN or Inf)"),
        ]
        for (what, path, code, why) in cases {
            let answer = try load(model, path)
            #expect(answer.hasPrefix("error \(code) ") && answer.hasSuffix(": " + why), "\(what): \(answer)")
        }
        // Truncated: cut the good file short, and a file too short for a header.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: goodPath))
        try bytes.prefix(bytes.count - 100).write(to: URL(fileURLWithPath: dir + "/truncated.safetensors"))
        #expect(try load(model, dir + "/truncated.safetensors").hasPrefix("error -5 "))
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: dir + "/tiny.safetensors"))
        #expect(try load(model, dir + "/tiny.safetensors").hasPrefix("error"))
        try Data(repeating: 0x41, count: 64).write(to: URL(fileURLWithPath: dir + "/garbage.safetensors"))
        #expect(try load(model, dir + "/garbage.safetensors").hasPrefix("error"))
    }

    /// A failed load leaves the model exactly as it was (all-or-nothing).
    @Test func failedLoadChangesNothing() throws {
        let (model, dir, good) = try setup()
        var bad = good
        bad.removeAll { $0.0 == "fc.bias" }  // everything else valid: would overwrite if not all-or-nothing
        try SafeTensors.write(bad, to: dir + "/bad.safetensors")
        try SafeTensors.write(good, to: dir + "/good.safetensors")
        let r = try model.drive(maxBatch: 1, ["load", dir + "/good.safetensors", "tryload", dir + "/bad.safetensors",
                                              "save", dir + "/after.safetensors"])
        #expect(r.status == 0 && r.lines == ["ok", "error -8 \(r.lines[1].dropFirst(9))", "ok"])
        #expect(r.lines[1].hasPrefix("error -8 "))
        let after = try SafeTensors.read(dir + "/after.safetensors")
        #expect(after.count == good.count - 1 + 9)  // mixnet has 9 BNs; every counter is saved
        for (name, tensor) in good where !name.hasSuffix("num_batches_tracked") {
            #expect(after[name] == tensor, "\(name) changed by a failed load")
        }
        #expect(after["bn1.num_batches_tracked"]?.ints == [5])
        #expect(after["layer1.0.bn1.num_batches_tracked"]?.ints == [0])
    }

    @Test func saveRoundTripsAndIsAtomic() throws {
        let (model, dir, _) = try setup()
        let path = dir + "/w.safetensors"
        #expect(try model.drive(maxBatch: 1, ["init", "9", "save", path]).status == 0)
        #expect(try model.drive(maxBatch: 1, ["load", path, "save", dir + "/w2.safetensors"]).status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data(contentsOf: URL(fileURLWithPath: dir + "/w2.safetensors")))
        // Saving into a missing directory fails and leaves nothing behind.
        let r = try model.drive(maxBatch: 1, ["save", dir + "/no/such/dir/w.safetensors"])
        #expect(r.lines.last?.hasPrefix("error -11") == true)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["w.safetensors", "w2.safetensors"])
        // init is deterministic per seed.
        #expect(try model.drive(maxBatch: 1, ["init", "9", "save", dir + "/w3.safetensors"]).status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data(contentsOf: URL(fileURLWithPath: dir + "/w3.safetensors")))
    }

    @Test func badArgumentsReturnErrorCodes() throws {
        let model = try Self.model.get()
        let r = try model.drive(maxBatch: 2, ["badargs"])
        let expected = [
            "create(0) NULL", "create(-1) NULL", "arena_bytes(0,0) 0",
            "infer(NULL model) -1", "infer(NULL x) -1", "infer(NULL probs) -1",
            "infer(n=0) -2", "infer(n=max+1) -2", "infer(n=-1) -2", "create(INT_MAX) NULL",
            "load(NULL path) -1", "load(NULL model) -1", "save(NULL path) -1", "save(NULL model) -1",
            "init_params(NULL) -1",
            "strerror(-9999) unknown error code", "strerror(-1...-17) distinct messages",
            "load_buffer(NULL model) -1", "load_buffer(NULL bytes) -1 bytes is NULL",
            "load_buffer(len 0) -5 0 bytes is shorter than the 8-byte header length", "last_error(NULL) no model (NULL)",
            "infer(n=0) -2 n = 0 is outside 1..max_batch (2)", "infer(NULL x) -1 x is NULL",
            "load(missing) -4 /nonexistent/w.safetensors: cannot open file", "after a success ''",
            "train_step(NULL labels) -1", "train_step(NULL loss) -1", "train_step(n=0) -2",
            "train_step(label=classes) -12", "train_step(lr=NaN) -14",
            "train_step(NULL model) -1", "train_step(NULL x) -1", "train_step(n=-1) -2", "train_step(n=max+1) -2",
            "train_step(label=-1) -12", "train_step(lr=-1) -14", "train_step(lr=Inf) -14",
            "set_optimizer(-1, 0) -14", "set_optimizer(NULL) -1", "set_optimizer(NaN, 0) -14", "set_optimizer(0, Inf) -14",
            "set_allreduce(NULL model) -1", "set_allreduce(replicas=0) -14", "set_allreduce(NULL fn, replicas=2) -14",
            "set_allreduce(NULL, 1) 0",
            "save_checkpoint(NULL) -1", "save_checkpoint(NULL model) -1",
            "load_checkpoint(missing) -4", "load_checkpoint(NULL path) -1", "load_checkpoint(NULL model) -1",
            "train_step(labels[1]=classes+5) -12 labels[1] = 12 is outside 0..6", "train_step(n=0) -2 n = 0 is outside 1..max_batch (2)",
        ]
        #expect(r.lines == expected)
    }

    /// A model trained one step (so momentum and running statistics are not
    /// their initial values), its checkpoint, and a scratch directory.
    func trainedCheckpoint() throws -> (BuiltModel, String, [String]) {
        let model = try Self.model.get()
        let dir = try CBuild.temporaryDirectory("capi-cp")
        var rng = TestRandom(seed: 21)
        let x = rng.floats(2 * 3 * 20 * 24)
        let labels: [Int32] = [1, 5]
        try Data(x.withUnsafeBufferPointer { Data(buffer: $0) }).write(to: URL(fileURLWithPath: dir + "/x.f32"))
        try Data(labels.withUnsafeBufferPointer { Data(buffer: $0) }).write(to: URL(fileURLWithPath: dir + "/labels.i32"))
        let start = ["init", "3", "train", dir + "/x.f32", dir + "/labels.i32", "2", "0.05"]
        let r = try model.drive(maxBatch: 2, start + ["savecp", dir + "/good.safetensors"])
        #expect(r.status == 0, "\(r.lines)")
        return (model, dir, start)
    }

    /// Every rejected call of the API (badargs) leaves parameters, momentum,
    /// running statistics and the step as they were.
    @Test func rejectedCallsChangeNothing() throws {
        let (model, dir, start) = try trainedCheckpoint()
        let r = try model.drive(maxBatch: 2, start + ["savecp", dir + "/before.safetensors", "badargs",
                                                      "savecp", dir + "/after.safetensors"])
        #expect(r.status == 0, "\(r.lines)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/before.safetensors"))
                == Data(contentsOf: URL(fileURLWithPath: dir + "/after.safetensors")))
    }

    /// NaN or Inf in the input gives a non-finite loss: an error, and the
    /// parameters, momentum buffers, running statistics and step count stay
    /// bit-identical.
    @Test func nonFiniteInputIsAnErrorAndChangesNothing() throws {
        let (model, dir, start) = try trainedCheckpoint()
        var rng = TestRandom(seed: 22)
        for (name, bad) in [("nan", Float.nan), ("inf", Float.infinity), ("-inf", -Float.infinity)] {
            var x = rng.floats(2 * 3 * 20 * 24)
            x[777] = bad
            let path = dir + "/x-\(name).f32"
            try Data(x.withUnsafeBufferPointer { Data(buffer: $0) }).write(to: URL(fileURLWithPath: path))
            let r = try model.drive(maxBatch: 2, start + ["trytrain", path, dir + "/labels.i32", "2", "0.05",
                                                          "savecp", dir + "/after-\(name).safetensors"])
            #expect(r.lines.contains { $0.hasPrefix("error -13 ") }, "\(name): \(r.lines)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/good.safetensors"))
                    == Data(contentsOf: URL(fileURLWithPath: dir + "/after-\(name).safetensors")), "\(name) changed the model")
        }
    }

    /// Bad checkpoints: another network's, and this network's with a wrong
    /// step or optimizer field or a missing/extra tensor. Each is refused with
    /// its code and the model (trained a step further after the checkpoint
    /// was written, so a partial load would show) is exactly as before.
    @Test func badCheckpointsAreRefusedAndChangeNothing() throws {
        let (model, dir, start) = try trainedCheckpoint()
        let good = try SafeTensors.read(dir + "/good.safetensors")
        let names = good.keys.sorted()
        func variant(_ name: String, _ edit: (inout [String: SafeTensors.Tensor]) -> Void) throws -> String {
            try SafeTensors.writeVariant(of: good, to: dir + "/cp-" + name + ".safetensors", edit)
        }
        let other = try BuiltModel(TestNetworks.oddnet())
        let otherPath = dir + "/other-network.safetensors"
        #expect(try other.drive(maxBatch: 2, ["init", "4", "savecp", otherPath]).status == 0)
        let cases: [(String, String, Int)] = [
            ("another network's checkpoint", otherPath, -7),
            ("negative step", try variant("step-negative") { $0["optimizer.step"] = SafeTensors.Tensor(int64: [-1], shape: []) }, -6),
            ("step as F32", try variant("step-f32") { $0["optimizer.step"] = SafeTensors.Tensor([3], shape: []) }, -9),
            ("step of shape [1]", try variant("step-shape") { $0["optimizer.step"] = SafeTensors.Tensor(int64: [1], shape: [1]) }, -10),
            ("step missing", try variant("step-missing") { $0["optimizer.step"] = nil }, -8),
            ("negative momentum", try variant("momentum-negative") { $0["optimizer.momentum"] = SafeTensors.Tensor([-0.9], shape: []) }, -6),
            ("NaN weight decay", try variant("decay-nan") { $0["optimizer.weight_decay"] = SafeTensors.Tensor([.nan], shape: []) }, -13),
            ("weight decay missing", try variant("decay-missing") { $0["optimizer.weight_decay"] = nil }, -8),
            ("unknown optimizer field", try variant("extra") { $0["optimizer.nesterov"] = SafeTensors.Tensor([1], shape: []) }, -7),
            ("a momentum buffer missing", try variant("buffer-missing") {
                $0[names.first { $0.hasPrefix("optimizer.momentum_buffer.") }!] = nil
            }, -8),
            ("a counter missing", try variant("counter-missing") { $0["bn1.num_batches_tracked"] = nil }, -8),
            ("a weight file, not a checkpoint", try variant("weights-only") { t in
                for k in t.keys where k.hasPrefix("optimizer.") { t[k] = nil }
            }, -8),
        ]
        let step = ["train", dir + "/x.f32", dir + "/labels.i32", "2", "0.05"]
        let before = try model.drive(maxBatch: 2, start + step + ["savecp", dir + "/before.safetensors"])
        #expect(before.status == 0)
        let expected = try Data(contentsOf: URL(fileURLWithPath: dir + "/before.safetensors"))
        for (what, path, code) in cases {
            let r = try model.drive(maxBatch: 2, start + step + ["tryloadcp", path, "savecp", dir + "/after.safetensors"])
            #expect(r.lines.contains { $0.hasPrefix("error \(code) ") }, "\(what): \(r.lines)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/after.safetensors")) == expected, "\(what) changed the model")
        }
        // The good checkpoint still loads, and its weights load with NAME_load.
        let ok = try model.drive(maxBatch: 2, ["loadcp", dir + "/good.safetensors", "savecp", dir + "/again.safetensors"])
        #expect(ok.status == 0, "\(ok.lines)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/again.safetensors"))
                == Data(contentsOf: URL(fileURLWithPath: dir + "/good.safetensors")))
    }

    /// Warning-free with every compiler here, with and without OpenMP, and the
    /// same probabilities from each.
    @Test func buildsWarningFreeWithEveryToolchain() throws {
        let spec = TestNetworks.mixnet()
        var results: [[Float]] = []
        var rng = TestRandom(seed: 4)
        let input = rng.floats(3 * 3 * 20 * 24)
        for toolchain in CBuild.toolchains {
            let model = try BuiltModel(spec, toolchain: toolchain)
            results.append(try model.infer(weights: nil, input: input, batch: 3, seed: 1))
        }
        // -O3 -march=native (vector code paths) is warning-free too.
        for cc in Set(CBuild.toolchains.map(\.cc)).sorted() {
            let model = try BuiltModel(spec, toolchain: CBuild.Toolchain(cc: cc, openMP: false, extra: ["-O3", "-march=native"]))
            results.append(try model.infer(weights: nil, input: input, batch: 3, seed: 1))
        }
        #expect(CBuild.toolchains.count >= 2, "found \(CBuild.toolchains)")
        for r in results.dropFirst() { #expect(maxAbsDifference(r, results[0]) <= 1e-5) }
    }
}
