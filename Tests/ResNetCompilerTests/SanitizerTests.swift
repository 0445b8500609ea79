import Foundation
import ResNetCompiler
import ResNetDSL
import ResNetTestSupport
import Testing

/// The numerics checks again with the C built under the sanitizers (Sanitizer
/// finds a toolchain for each): AddressSanitizer + UndefinedBehaviorSanitizer
/// on inference and training against PyTorch and the interpreter, and
/// ThreadSanitizer on two networks used from three threads at once.
///
/// Two ISA paths are built: native (AVX-512 here, with its wide register
/// tiles) and AVX2 (the narrow tiles that portable C and NEON use too; the
/// portable path where the CPU has no AVX2). Every path loads and stores
/// whole 16-float vectors (vector.c), so paths with the same tiles touch the
/// same memory; ISATests checks every path's arithmetic. Without a sanitizer
/// toolchain a test is skipped with the reason, and fails when CI=true.
@Suite(.temporaryFiles) struct SanitizerTests {
    /// The native path and the narrow-tile one (the same on a CPU without AVX-512).
    static let paths: [ISA.Variant] = [ISA.native, ISA.variants.contains(ISA.avx2) ? ISA.avx2 : ISA.portable]

    /// `sanitizer`'s toolchain on an ISA path, or nil (skipped, with the
    /// reason printed) where there is none and this is not CI.
    static func toolchain(_ sanitizer: Sanitizer, openMP: Bool, path: ISA.Variant = ISA.native,
                          test: String) throws -> CBuild.Toolchain? {
        switch sanitizer.toolchain(openMP: openMP) {
        case .success(var toolchain):
            toolchain.extra = path.flags + toolchain.extra  // -O0 after the path's -O3
            return toolchain
        case .failure(let error):
            if ISA.inCI { throw error }
            print("\(test): skipped: \(error)")
            return nil
        }
    }

    // MARK: AddressSanitizer + UndefinedBehaviorSanitizer

    /// ASan + UBSan with OpenMP, so the parallel loops run too. The drivers run
    /// with the sanitizers' default options: a report exits 1 (UBSan's too,
    /// with -fno-sanitize-recover=all), and LeakSanitizer checks at exit.
    static func addressToolchain(_ test: String, path: ISA.Variant = ISA.native) throws -> CBuild.Toolchain? {
        try toolchain(.addressAndUndefined, openMP: true, path: path, test: test)
    }

    /// The PyTorch inference fixtures: ResNet-20 and mixnet (every layer and
    /// shortcut kind), on both paths.
    @Test(arguments: ["resnet20", "mixnet"], paths)
    func inferenceMatchesPyTorchUnderAddressSanitizer(name: String, path: ISA.Variant) throws {
        guard let toolchain = try Self.addressToolchain("\(name) ASan", path: path) else { return }
        let model = try BuiltModel(try TestNetworks.fixture(name), toolchain: toolchain)
        try NumericsTests.checkAgainstPyTorch(name, model: model, label: "\(name) [\(toolchain)]")
    }

    /// Ten SGD steps of mixnet's PyTorch training fixture (the tolerances of
    /// TrainingTests.tenStepsMatchPyTorch), and a checkpoint saved and loaded.
    @Test func trainingMatchesPyTorchUnderAddressSanitizer() throws {
        guard let toolchain = try Self.addressToolchain("mixnet training ASan") else { return }
        let model = try BuiltModel(try TestNetworks.fixture("mixnet"), toolchain: toolchain)
        let check = try PyTorchTrainingComparison(fixture: "mixnet", model: model)
        #expect(check.worstLossRelative <= 1e-4, "mixnet ASan: losses \(check.losses) vs \(check.expectedLosses)")
        for p in check.parameters where !(p.difference <= p.allowed) {
            Issue.record("mixnet ASan: \(p.name) differs by \(p.difference) (allowed \(p.allowed))")
        }
        #expect(check.parameters.count > 0 && check.countersMatch)
        let checkpoint = model.directory + "/asan.checkpoint"
        // badargs asks create for INT_MAX images, which must return NULL: ASan's
        // allocator aborts on such a request unless told to return NULL.
        let r = try HostTools.run(model.executable, ["2", "init", "1", "savecp", checkpoint, "loadcp", checkpoint, "badargs"],
                                  environment: ["ASAN_OPTIONS": "allocator_may_return_null=1"])
        #expect(r.status == 0 && r.output.contains("create(INT_MAX) NULL"), "\(r.output)")
        print("ASan mixnet training [\(toolchain)]: worst loss rel diff \(check.worstLossRelative), worst param rel diff \(check.worstParameterRelative)")
    }

    /// Awkward shapes (vector tails, short rows, odd strides, flattened 1×1
    /// rows, option A's zero channels) and oddnet's corners, against the
    /// interpreter: inference at batch 1 and 3, and one training step.
    @Test(arguments: ["ch5to7", "width3", "stride2", "bottleneck", "zeropad", "oddnet"], paths)
    func kernelsMatchInterpreterUnderAddressSanitizer(name: String, path: ISA.Variant) throws {
        guard let toolchain = try Self.addressToolchain("\(name) ASan", path: path) else { return }
        let spec = name == "oddnet" ? TestNetworks.oddnet() : KernelCase.named(name).make(name)
        let model = try BuiltModel(spec, toolchain: toolchain)
        let label = "\(name) [\(toolchain)]"
        let worst = try ISATests.checkAgainstInterpreter(spec, model: model, label: label)
        let hasTraining = model.files.contains { $0.contents.contains("\(name)_train_step(") }
        let gradients = hasTraining ? try ISATests.checkGradients(spec, model: model, label: label) : "no training step"
        print("ASan \(name) [\(toolchain)]: max |C − interpreter| = \(worst); training: \(gradients)")
    }

    /// runtime/trainer.c, the `resnet-compile train` program, around a small
    /// network on the 8×8 digits in data/: reading both files, the mean image,
    /// augmented batches, evaluation, checkpoints, a stop and a resume.
    @Test func trainerUnderAddressSanitizer() throws {
        guard let toolchain = try Self.addressToolchain("trainer ASan") else { return }
        let spec = try ResNet.cifar(depth: 8, name: "tinydigits", input: .image(channels: 1, height: 8, width: 8)).spec
        let (dir, _) = try CBuild.generate(spec)
        let exe = dir + "/train-tinydigits"
        try CBuild.compile([CBuild.root + "/runtime/trainer.c", dir + "/tinydigits.c"], output: exe, toolchain: toolchain,
                           extra: ["-I", dir, "-DNET=tinydigits", "-DUNET=TINYDIGITS", "-DNET_HEADER=\"tinydigits.h\""])
        let run = dir + "/run"
        let stopped = try HostTools.run(exe, ["--data", CBuild.root + "/data/digits-train.safetensors",
                                              "--test", CBuild.root + "/data/digits-test.safetensors", "--out", run,
                                              "--batch", "8", "--pad", "1", "--val", "32", "--iterations", "12",
                                              "--milestones", "6", "--print-every", "2", "--eval-every", "6",
                                              "--checkpoint-every", "4", "--train-error-images", "32", "--stop-at", "5"])
        #expect(stopped.status == 0 && stopped.output.contains("stopped (--stop-at) at iteration 5"), "\(stopped.output)")
        let resumed = try HostTools.run(exe, ["--out", run, "--resume"])
        #expect(resumed.status == 0 && resumed.output.contains("train: done: 12 iterations"), "\(resumed.output)")
        #expect(FileManager.default.fileExists(atPath: run + "/tinydigits.safetensors"))
    }

    // MARK: ThreadSanitizer

    /// Tests/Drivers/two_models.c with resnet8 and mixnet under ThreadSanitizer:
    /// both networks (and a second resnet8 model) infer and train at the same
    /// time in three threads, each with the bits it gets alone, and no data
    /// race. Serial C, and with OpenMP: LLVM's Archer then tells TSan how the
    /// uninstrumented OpenMP runtime orders the threads (without it every
    /// parallel region is a false race); gcc's libgomp has no such support.
    /// With OpenMP on both paths: their tiles split the parallel loops differently.
    @Test(arguments: [(false, ISA.native)] + paths.map { (true, $0) })
    func twoModelsInThreadsUnderThreadSanitizer(openMP: Bool, path: ISA.Variant) throws {
        guard let toolchain = try Self.toolchain(.thread, openMP: openMP, path: path,
                                                 test: "TSan \(path)\(openMP ? " -fopenmp" : "")") else { return }
        let a = try CBuild.generate(try ResNet.cifar(depth: 8).spec), b = try CBuild.generate(TestNetworks.mixnet())
        let exe = a.directory + "/two_models"
        try CBuild.compile([CBuild.root + "/Tests/Drivers/two_models.c", a.directory + "/resnet8.c", b.directory + "/mixnet.c"],
                           output: exe, toolchain: toolchain,
                           extra: ["-pthread", "-I", a.directory, "-I", b.directory,
                                   "-DNET_A=resnet8", "-DUNET_A=RESNET8", "-DNET_A_HEADER=\"resnet8.h\"",
                                   "-DNET_B=mixnet", "-DUNET_B=MIXNET", "-DNET_B_HEADER=\"mixnet.h\""])
        let environment = Sanitizer.thread.environment(openMP: openMP).merging(["OMP_NUM_THREADS": "2"]) { $1 }
        let r = try HostTools.run(exe, [], environment: environment)
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.components(separatedBy: "identical alone and in threads").count == 4, "\(r.output)")
        #expect(!r.output.contains("ThreadSanitizer"), "\(r.output)")
        if openMP { #expect(r.output.contains(Sanitizer.archerBanner), "Archer did not load: \(r.output)") }
        print("TSan two models [\(toolchain)]:\n\(r.output)")
    }
}
