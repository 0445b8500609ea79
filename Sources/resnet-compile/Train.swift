import ArgumentParser
import Foundation
import ResNetCompiler
import ResNetDSL

/// `resnet-compile train`: checks the arguments, picks the network, and hands
/// off to `TrainRunner` (compile to C, build the trainer, run it, plot).
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a network with SGD in the generated C, with the paper's CIFAR-10 recipe.",
        usage: "resnet-compile train [<file>] --data <path> [--test <path>] [-o <dir>] [--resume] [<options>]",
        discussion: """
        Compiles the network (FILE, or the built-in ResNet-20) to C, builds
        runtime/trainer.c against it with -O3 -march=native -fopenmp, and runs
        it. Defaults follow He et al. (2015), Sec. 4.2: per-pixel mean
        subtraction; 4-pixel zero padding, random crop and horizontal flip;
        batch 128; lr 0.1, divided by 10 at 32k and 48k iterations; 64k
        iterations; momentum 0.9; weight decay 1e-4. --warmup adds the
        ResNet-110 warm-up (lr 0.01 until the training error is below 80%).

        The run directory (-o, default runs/NAME) receives train.csv (a row
        every --print-every iterations: lr, loss, training/test error,
        images/s), checkpoint.safetensors + checkpoint.state (every
        --checkpoint-every iterations), mean.safetensors (the mean image: subtract
        it from inputs), NAME.safetensors (the trained weights) and errors.svg
        (error curves in the style of the paper's Fig. 6, also drawn when a run
        stops early). Ctrl-C writes a checkpoint; --resume continues exactly
        where the run stopped (same batches, same crops), so an interrupted run
        ends with the same weights as an uninterrupted one.

        The training error is measured in eval mode on a fixed subset of the
        training images (--train-error-images, original view) at every row, not
        on the augmented batches. Threads: OMP_NUM_THREADS.

        Examples:
          resnet-compile train --data cifar-10-batches-bin    # ResNet-20, the paper
          resnet-compile train r110.swift --data cifar-10-batches-bin --warmup
          resnet-compile train --data cifar-10-batches-bin --val 5000 -o runs/val
          resnet-compile train -o runs/resnet20 --resume      # after Ctrl-C
          resnet-compile train Examples/Digits.swift --pad 1 --no-flip \\
              --data data/digits-train.safetensors --test data/digits-test.safetensors
        """
    )

    enum Recipe: String, ExpressibleByArgument, CaseIterable {
        case paper, none
    }

    @Argument(help: "A .swift model file or a .json graph. Default: the built-in ResNet-20.")
    var file: String?

    @Option(help: ArgumentHelp(
        "Training data: a CIFAR-10 binary directory, or a safetensors file.",
        discussion: "A directory holds data_batch_1.bin … data_batch_5.bin (and test_batch.bin, the default test set). A safetensors file holds 'images' (N×C×H×W, U8 scaled by 1/255, or F32) and 'labels' (N; I32, I64 or U8). Not needed with --resume.",
        valueName: "path"))
    var data: String?

    @Option(help: ArgumentHelp("Test data: safetensors (images, labels) or a CIFAR-10 .bin file.", valueName: "path"))
    var test: String?

    @Option(help: "Which network, when the file defines several.")
    var network: String?

    @Option(help: ArgumentHelp("Seconds a .swift model file may take to compile, and then to run (default 120).", valueName: "seconds"))
    var evalTimeout: Double = ModelLoader.defaultEvalTimeout

    @Option(name: .shortAndLong, help: ArgumentHelp("The run directory (default: runs/NAME).", valueName: "dir"))
    var output: String?

    @Option(help: "paper: mean subtraction and pad/crop/flip augmentation (default); none: neither.")
    var recipe: Recipe?

    @Option(help: "Images per SGD step (default 128).")
    var batch: Int?

    @Option(help: "Initial learning rate (default 0.1).")
    var lr: Double?

    @Option(help: "Factor applied to the learning rate at each milestone (default 0.1).")
    var lrDecay: Double?

    @Option(help: ArgumentHelp("Iterations where the learning rate decays (default 32000,48000; 'none': constant).", valueName: "i,j,..."))
    var milestones: String?

    @Option(help: "SGD steps in all (default 64000).")
    var iterations: Int?

    @Option(help: "SGD momentum (default 0.9).")
    var momentum: Double?

    @Option(help: "L2 weight decay on every parameter (default 1e-4).")
    var weightDecay: Double?

    @Option(help: "Zero padding on each side before the random crop (default 4).")
    var pad: Int?

    @Flag(help: "No random horizontal flips.")
    var noFlip = false

    @Flag(help: "No padding, cropping or flipping.")
    var noAugment = false

    @Flag(help: "Do not subtract the mean image.")
    var noMean = false

    @Option(help: "Seeds initialisation, shuffling and augmentation (default 0).")
    var seed: Int?

    @Option(help: "Hold out the last N training images for validation (5000: the paper's 45k/5k split).")
    var val: Int?

    @Flag(help: "Warm up with --warmup-lr until the training error is below --warmup-error (the paper's ResNet-110).")
    var warmup = false

    @Option(help: "Learning rate while warming up (default 0.01).")
    var warmupLr: Double?

    @Option(help: ArgumentHelp("Warm-up ends below this training error, in % (default 80).", valueName: "percent"))
    var warmupError: Double?

    @Option(help: "Test (and validation) error every N iterations and at the end; 0: only at the end (default 1000).")
    var evalEvery: Int?

    @Option(help: "Checkpoint every N iterations and at the end; 0: only at the end (default 1000).")
    var checkpointEvery: Int?

    @Option(help: "A progress line and CSV row every N iterations (default 100).")
    var printEvery: Int?

    @Option(help: "Measure the training error on N fixed training images at each row; 0: never (default 1000).")
    var trainErrorImages: Int?

    @Option(help: "Checkpoint and stop after iteration N, as if interrupted; continue with --resume.")
    var stopAt: Int?

    @Flag(help: "Continue the run in the run directory from its last checkpoint (options not given are the run's).")
    var resume = false

    @Option(help: ArgumentHelp("C compiler for the trainer (default: $CC, else gcc, else clang).", valueName: "cc"))
    var cc: String?

    @Flag(help: "Build the trainer without OpenMP (one thread).")
    var noOpenmp = false

    @Option(help: ArgumentHelp("""
        Train data-parallel on N processes: the trainer is built with mpicc and run under \
        mpirun -np N; every batch (still --batch images) is split over the ranks and batch norm is \
        synchronized, so the run takes the steps of one process (default 1: no MPI).
        """, valueName: "N"))
    var ranks: Int = 1

    @Option(help: ArgumentHelp("An MPI hostfile for --ranks: the machines to run the ranks on (passed to mpirun).",
                               valueName: "file"))
    var hostfile: String?

    @Flag(name: .shortAndLong, help: "Print what the tool does besides training (compiling, building, plotting).")
    var verbose = false

    func validate() throws {
        try Compile.checkEvalTimeout(evalTimeout)
        if data == nil && !resume { throw ValidationError("--data is required (a CIFAR-10 binary directory or a safetensors file), unless --resume") }
        if let data, !FileManager.default.fileExists(atPath: data) { throw ValidationError("--data \(data) does not exist") }
        if let test, !FileManager.default.fileExists(atPath: test) { throw ValidationError("--test \(test) does not exist") }
        func atLeast(_ value: Int?, _ minimum: Int, _ flag: String) throws {
            if let value, value < minimum { throw ValidationError("\(flag) must be at least \(minimum)") }
        }
        try atLeast(batch, 1, "--batch")
        try atLeast(ranks, 1, "--ranks")
        if let hostfile, ranks == 1 { throw ValidationError("--hostfile \(hostfile) needs --ranks N (N > 1)") }
        if let hostfile, !FileManager.default.fileExists(atPath: hostfile) { throw ValidationError("--hostfile \(hostfile) does not exist") }
        if ranks > 1, (batch ?? 128) % ranks != 0 {
            throw ValidationError("--batch \(batch ?? 128) does not split evenly over --ranks \(ranks)")
        }
        try atLeast(iterations, 1, "--iterations")
        try atLeast(printEvery, 1, "--print-every")
        for (value, flag) in [(pad, "--pad"), (seed, "--seed"), (val, "--val"), (evalEvery, "--eval-every"),
                              (checkpointEvery, "--checkpoint-every"), (trainErrorImages, "--train-error-images"),
                              (stopAt, "--stop-at")] {
            try atLeast(value, 0, flag)
        }
        for (value, flag) in [(lr, "--lr"), (lrDecay, "--lr-decay"), (warmupLr, "--warmup-lr")] {
            if let value, !(value > 0 && value.isFinite) { throw ValidationError("\(flag) must be positive") }
        }
        for (value, flag) in [(momentum, "--momentum"), (weightDecay, "--weight-decay")] {
            if let value, !(value >= 0 && value.isFinite) { throw ValidationError("\(flag) must not be negative") }
        }
        if let warmupError, !(warmupError > 0 && warmupError <= 100) { throw ValidationError("--warmup-error must be in (0, 100]") }
    }

    /// The trainer's arguments: only what was given, so that a resumed run
    /// keeps the settings it recorded (trainer.c checks the rest).
    var trainerArguments: [String] {
        var a: [String] = []
        func add(_ flag: String, _ value: CustomStringConvertible?) {
            if let value { a += [flag, value.description] }
        }
        add("--data", data)
        add("--test", test)
        add("--recipe", recipe?.rawValue)
        add("--batch", batch)
        add("--lr", lr)
        add("--lr-decay", lrDecay)
        add("--milestones", milestones)
        add("--iterations", iterations)
        add("--momentum", momentum)
        add("--weight-decay", weightDecay)
        add("--pad", pad)
        add("--seed", seed)
        add("--val", val)
        add("--warmup-lr", warmupLr)
        add("--warmup-error", warmupError)
        add("--eval-every", evalEvery)
        add("--checkpoint-every", checkpointEvery)
        add("--print-every", printEvery)
        add("--train-error-images", trainErrorImages)
        add("--stop-at", stopAt)
        for (on, flag) in [(noFlip, "--no-flip"), (noAugment, "--no-augment"), (noMean, "--no-mean"),
                           (warmup, "--warmup"), (resume, "--resume")] where on {
            a.append(flag)
        }
        return a
    }

    func run() throws {
        let log: (String) -> Void = { if verbose { FileHandle.standardError.write(Data("resnet-compile train: \($0)\n".utf8)) } }
        let status: Int32
        do {
            let spec = try Compile.pick(Compile.networks(file, evalTimeout: evalTimeout, log: log), network)
            let directory = output ?? "runs/\(spec.name)"
            if !resume && FileManager.default.fileExists(atPath: directory + "/checkpoint.state") {
                throw CompileError("\(directory) already holds a run (checkpoint.state): continue it with --resume, or choose another -o")
            }
            if resume {
                guard let state = try? String(contentsOfFile: directory + "/checkpoint.state", encoding: .utf8) else {
                    throw CompileError("nothing to resume: \(directory)/checkpoint.state does not exist")
                }
                let recorded = state.split(separator: "\n").first { $0.hasPrefix("network ") }.map { String($0.dropFirst(8)) }
                if let recorded, recorded != spec.name {
                    throw CompileError("\(directory) holds a run of network '\(recorded)', not \(spec.name); pass the run's model file (resnet-compile train FILE -o \(directory) --resume)")
                }
            }
            let runner = try TrainRunner(options: TrainRunner.Options(
                output: directory, trainerArguments: trainerArguments, cc: cc, openMP: !noOpenmp,
                ranks: ranks, hostfile: hostfile, log: log))
            log("templates in \(runner.compiler.templates.directory) (\(runner.compiler.templates.origin)), trainer sources in \(runner.compiler.templates.runtimeDirectory)")
            status = try runner.run(spec)
        } catch let error as CompileError {
            FileHandle.standardError.write(Data("resnet-compile train: error: \(error)\n".utf8))
            throw ExitCode(1)
        }
        if status != 0 { throw ExitCode(status) }
    }
}
