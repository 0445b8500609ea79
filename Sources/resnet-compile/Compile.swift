import ArgumentParser
import Foundation
import ResNetCompiler
import ResNetDSL

/// `resnet-compile`: a thin shell over ResNetCompiler. It parses and checks
/// arguments, then hands off to the library.
@main
struct Compile: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resnet-compile",
        abstract: "Compile a residual network described in Swift (or JSON) to standalone OpenMP C.",
        discussion: """
        With no FILE, compiles the built-in CIFAR ResNet-20 of He et al. (2015).
        An .onnx file (a ResNet exported from PyTorch, opsets 11 to 21) is
        imported: its initializers are written to DIR/NAME.safetensors under
        the names NAME_load reads.
        A .swift model file is compiled against the ResNetDSL library and run,
        as SwiftPM evaluates Package.swift; every Network it creates at top
        level is registered. A model file is a program that runs at compile
        time: compiling it and running it may each take --eval-timeout seconds
        (default 120). Writes NAME.c, NAME.h, module.modulemap and NAME.report
        into DIR atomically (--emit plan: NAME.plan.json and NAME.plan.svg):
        on any error nothing is left there. Interrupted or
        terminated, the compiler stops every process it started and removes
        its temporary files (exit status 128 + signal).

        Examples:
          resnet-compile -o out                        # built-in ResNet-20
          resnet-compile Examples/ResNet20.swift -o out
          resnet-compile model.swift --network tiny --emit summary
          resnet-compile resnet18.onnx -o out          # + out/resnet18.safetensors
          resnet-compile --emit ir --dump-after FuseEpilogues
          resnet-compile --emit plan --plan-batch 64 -o out
        """,
        version: CEmitter.version,
        subcommands: [Train.self]
    )

    /// `train` is listed as a subcommand, but ArgumentParser fills a command's
    /// own positionals before it looks for a subcommand name, so FILE would
    /// take the word "train". Route it here (a model file named `train` is
    /// still reachable as `./train`).
    static func main() {
        // Ctrl-C, kill and a closed terminal stop the children (swiftc, the
        // model file, the C compiler) with us and remove temporary files.
        Cleanup.installSignalHandlers(program: "resnet-compile")
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "train" {
            Train.main(Array(arguments.dropFirst()))
        } else if arguments.first == "help" && arguments.dropFirst().first == "train" {
            Train.main(["--help"])
        } else {
            main(arguments)
        }
    }

    enum Emit: String, ExpressibleByArgument, CaseIterable {
        case c, ir, summary, plan
    }

    @Argument(help: "A .swift model file, a .json graph or an .onnx model (its weights are written as DIR/NAME.safetensors). Default: the built-in ResNet-20.")
    var file: String?

    @Option(name: .shortAndLong, help: "Output directory for --emit c.")
    var output: String = "."

    @Option(help: "Which network, when the file defines several; for an .onnx file, the network's name (default: the file's base name).")
    var network: String?

    @Option(help: ArgumentHelp("Seconds a .swift model file may take to compile, and then to run; past that it is stopped and the compile fails (default 120).",
                               valueName: "seconds"))
    var evalTimeout: Double = ModelLoader.defaultEvalTimeout

    @Option(help: "c: write the C files; ir: print the final IR; summary: print the per-layer table; plan: write DIR/NAME.plan.json and DIR/NAME.plan.svg (the memory plan of inference and training).")
    var emit: Emit = .c

    @Option(help: ArgumentHelp("The batch whose bytes --emit plan reports (default 1).", valueName: "B"))
    var planBatch: Int = 1

    @Flag(help: "Same as --emit summary (the paper's Table 1 for the network).")
    var summary = false

    @Option(help: "Print the IR after this pass: Lower, Validate, InferShapes, FoldBatchNorm, FuseEpilogues, Schedule, PlanMemory (inference); Differentiate, FuseTraining, Recompute (training).")
    var dumpAfter: String?

    @Flag(help: "Skip FoldBatchNorm, FuseEpilogues and FuseTraining: one kernel per op (for checking fusion).")
    var noFuse = false

    @Flag(inversion: .prefixedNo,
          help: ArgumentHelp("Training: rebuild batch-norm outputs in the backward pass from the conv outputs and the saved scale and shift, instead of keeping them (default on).",
                             discussion: "The same gradients, bit for bit; about 0.6x the training arena of ResNet-20. --no-recompute keeps every one."))
    var recompute = true

    @Flag(inversion: .prefixedNo,
          help: ArgumentHelp("Training, with --recompute: also rebuild convs of at most 144 multiply-adds per output value that read a rebuildable output (CIFAR's first-stage conv1s; default on).",
                             discussion: "The same gradients, bit for bit. ResNet-1202's whole training model at batch 128: 0.51x -> 0.38x PyTorch's, for a step 4-9% slower (ResNet-110)."))
    var recomputeNarrowConvs = true

    @Flag(help: "Inference-only C: no training step, checkpoints, optimizer or all-reduce hook (smaller C and object code).")
    var noTrain = false

    @Option(help: ArgumentHelp("Check a weight file against the network and write it into DIR/NAME_weights.c as a const array that NAME_init_embedded loads without file I/O.",
                               valueName: "FILE.safetensors"))
    var embedWeights: String?

    @Flag(help: ArgumentHelp("Measure the candidate schedules (direct or Winograd, register tiles) of each distinct conv on this machine and record the fastest in the tune cache; this and later compiles use them.",
                             discussion: "Keyed by layer shape, the ISA the C compiler targets and the thread count (OMP_NUM_THREADS, else every core)."))
    var tune = false

    @Option(help: "The tune cache to write (--tune) and read. Default: $XDG_CACHE_HOME/resnet-compile/tune.json (~/.cache/…); read only if it exists.")
    var tuneCache: String?

    @Option(help: "The C compiler --tune builds its measurements with (default: $CC, else cc).")
    var cc: String?

    @Flag(name: .shortAndLong, help: "Print progress to stderr.")
    var verbose = false

    func validate() throws {
        try Self.checkEvalTimeout(evalTimeout)
        // Bytes at the batch must stay far inside Int: a million images is plenty.
        if !(1...1_000_000).contains(planBatch) { throw ValidationError("--plan-batch must be between 1 and 1000000") }
        if embedWeights != nil && (summary || emit != .c) { throw ValidationError("--embed-weights writes C: it needs --emit c") }
    }

    static func checkEvalTimeout(_ seconds: Double) throws {
        if !(seconds > 0 && seconds.isFinite) { throw ValidationError("--eval-timeout must be a positive number of seconds") }
    }

    func run() throws {
        do {
            try compile()
        } catch let error as CompileError {
            FileHandle.standardError.write(Data("resnet-compile: error: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }

    func compile() throws {
        let log: (String) -> Void = { if verbose { FileHandle.standardError.write(Data("resnet-compile: \($0)\n".utf8)) } }
        // The network as IR: lowered from the DSL, or imported from ONNX with its weights.
        let lowered: Graph
        var weights: Data?
        if let file, file.hasSuffix(".onnx") {
            log("importing \(file)")
            let imported = try ONNXImporter.load(file, name: network)
            lowered = imported.graph
            weights = try ONNXImporter.safetensors(imported)
            log("imported \(file): \(lowered.nodes.count - 1) layers, output \(imported.outputsLogits ? "logits" : "softmax probabilities")")
        } else {
            lowered = try Lower.lower(try Self.pick(Self.networks(file, evalTimeout: evalTimeout, log: log), network))
        }
        let name = lowered.name
        log("network \(name)")
        let clock = ContinuousClock()
        let start = clock.now
        let choices = try tuneChoices(lowered, log: log)
        let compiler = try Compiler(options: Pipeline.Options(fuse: !noFuse, choices: choices, recompute: recompute,
                                                              recomputeNarrowConvs: recomputeNarrowConvs, training: !noTrain))
        log("templates in \(compiler.templates.directory) (\(compiler.templates.origin)), C runtime in \(compiler.templates.runtimeDirectory)")
        var dumped = ""
        let artifacts = try compiler.compile(lowered: lowered, dumpAfter: dumpAfter) { dumped = $0 }
        let elapsed = clock.now - start
        log("compiled \(name) (\(artifacts.graph.nodes.count - 1) kernel calls) in \(elapsed.formatted(.units(allowed: [.seconds, .milliseconds])))")
        if !dumped.isEmpty { print(dumped, terminator: "") }
        switch summary ? .summary : emit {
        case .c:
            var files = artifacts.files.map { (name: $0.name, data: Data($0.contents.utf8)) }
            if let weights { files.append((name + ".safetensors", weights)) }
            var streams = files.map { file in (name: file.name, write: { (h: FileHandle) in try h.write(contentsOf: file.data) }) }
            if let embedWeights {
                // Checked before anything is written: a mismatch leaves DIR as it was.
                guard let data = FileManager.default.contents(atPath: embedWeights) else { throw CompileError("cannot read \(embedWeights)") }
                let embedded = try EmbeddedWeights(data, source: embedWeights, graph: artifacts.graph)
                let templates = compiler.templates
                streams.append((name + "_weights.c", { try embedded.write(name: name, templates: templates, to: $0) }))
                log("\(embedWeights): \(embedded.tensorCount) tensors, \(embedded.bytes.count) bytes to embed")
            }
            try AtomicWriter.write(streams: streams, to: output)
            log("wrote \(streams.map(\.name).joined(separator: ", ")) to \(output)")
            if !verbose && dumpAfter == nil {
                print("resnet-compile: \(name) → \(output)/\(name).c, \(name).h, module.modulemap" + (weights == nil ? "" : ", \(name).safetensors")
                      + (embedWeights == nil ? "" : ", \(name)_weights.c"))
            }
        case .ir:
            if dumpAfter == nil { print(IRPrinter.print(artifacts.graph), terminator: "") }
        case .summary:
            print(Summary.table(try Pipeline.analysis.run(lowered)), terminator: "")
        case .plan:
            let files = try PlanFiles.files(artifacts.graph, training: artifacts.training, batch: planBatch)
            try AtomicWriter.write(files, to: output)
            for m in PlanFiles.modes(artifacts.graph, training: artifacts.training, batch: planBatch) {
                let ratio = String(format: "%.3f", Double(m.arenaBytes) / Double(max(1, m.lowerBoundBytes)))
                print("resnet-compile: \(name) \(m.mode) batch \(m.batch): arena \(m.arenaBytes) bytes (\(ratio) × lower bound \(m.lowerBoundBytes)), naive \(m.naiveBytes), whole model \(m.modelBytes)")
            }
            print("resnet-compile: \(name) → \(output)/\(files.map(\.name).joined(separator: ", "))")
        }
    }

    /// The measured schedules for this machine: `--tune` measures what the
    /// cache lacks and saves it; otherwise an existing cache is read. Without
    /// either, the cost model decides (no probe is built).
    func tuneChoices(_ lowered: Graph, log: @escaping (String) -> Void) throws -> [String: TuneCache.Choice] {
        let path = tuneCache ?? TuneCache.defaultPath
        guard tune || FileManager.default.fileExists(atPath: path) else { return [:] }
        var cache = try TuneCache.load(path)
        if !tune && cache.entries.isEmpty { return [:] }
        let env = ProcessInfo.processInfo.environment
        let compilerName = cc ?? env["CC"].flatMap { $0.isEmpty ? nil : $0 } ?? "cc"
        guard HostTools.which(compilerName) != nil else { throw CompileError("--tune: C compiler '\(compilerName)' not found (set --cc or CC)") }
        let threads = env["OMP_NUM_THREADS"].flatMap { Int($0) }.flatMap { $0 > 0 ? $0 : nil } ?? ProcessInfo.processInfo.activeProcessorCount
        var tuner = Tuner(cc: compilerName, threads: threads, templates: try Templates())
        tuner.log = tune ? { FileHandle.standardError.write(Data("resnet-compile: \($0)\n".utf8)) } : log
        let target = try tuner.target()
        if tune {
            let measured = try tuner.tune(lowered: lowered, options: Pipeline.Options(fuse: !noFuse), cache: &cache, target: target)
            try cache.save(path)
            FileHandle.standardError.write(Data("resnet-compile: tune cache \(path): \(measured) conv shape(s) measured for \(target), \(cache.entries.count) entries\n".utf8))
        }
        let choices = cache.choices(for: target)
        log("tune cache \(path): \(choices.count) entries for \(target)")
        return choices
    }

    /// The networks a model file defines, or the built-in ResNet-20 without one.
    static func networks(_ file: String?, evalTimeout: Double, log: @escaping (String) -> Void) throws -> [NetworkSpec] {
        guard let file else { return [try BuiltIn.resnet20()] }
        var loader = ModelLoader(evalTimeout: evalTimeout)
        loader.log = log
        return try loader.load(file)
    }

    static func pick(_ networks: [NetworkSpec], _ name: String?) throws -> NetworkSpec {
        if let name {
            guard let n = networks.first(where: { $0.name == name }) else {
                throw CompileError("no network named '\(name)'; the file defines: \(networks.map(\.name).joined(separator: ", "))")
            }
            return n
        }
        guard let first = networks.first else { throw CompileError("the file defines no network") }
        if networks.count > 1 {
            throw CompileError("the file defines \(networks.count) networks (\(networks.map(\.name).joined(separator: ", "))); pick one with --network NAME")
        }
        return first
    }
}
