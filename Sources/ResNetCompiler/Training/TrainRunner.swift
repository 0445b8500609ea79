import Foundation
import ResNetDSL

/// Trains a network end to end: compiles it to C with `Compiler`, builds
/// `runtime/trainer.c` against the generated C with OpenMP, runs the trainer
/// with its output streaming to the terminal, and plots `errors.svg` from the
/// trainer's `train.csv`, also when the trainer stopped early or failed.
///
/// Everything lands in one run directory:
///
///     OUT/build/NAME.c NAME.h trainer.c runtime.c dataset.c train-NAME   the program (rebuilt only when its sources change)
///     OUT/train.csv  checkpoint.safetensors  checkpoint.state  mean.safetensors   written by the trainer
///     OUT/NAME.safetensors  errors.svg                                            the results
///
/// The trainer itself (data, recipe, checkpoints, exact resumption) is
/// `runtime/trainer.c` (with the safetensors reader it shares with the
/// generated C, `runtime/runtime.c`, and its data reader `runtime/dataset.c`);
/// this type only builds and runs it.
public struct TrainRunner {
    /// How to build and run the trainer.
    public struct Options {
        /// The run directory (the trainer's `--out`).
        public var output: String
        /// Arguments passed to the trainer as they are (`--data PATH`, `--batch 64`, `--resume`, ...).
        public var trainerArguments: [String]
        /// The C compiler; nil: `$CC`, else gcc, else clang, else cc.
        public var cc: String?
        /// Build with `-fopenmp` (threads); without it the trainer is serial.
        public var openMP: Bool
        /// Processes to train on (> 1: built with mpicc, run under mpirun -np ranks).
        public var ranks: Int
        /// mpirun's --hostfile (several machines); nil: this machine.
        public var hostfile: String?
        /// Progress lines of the runner itself (compiling, building, plotting).
        public var log: (String) -> Void

        public init(output: String, trainerArguments: [String], cc: String? = nil, openMP: Bool = true,
                    ranks: Int = 1, hostfile: String? = nil, log: @escaping (String) -> Void = { _ in }) {
            self.output = output
            self.trainerArguments = trainerArguments
            self.cc = cc
            self.openMP = openMP
            self.ranks = ranks
            self.hostfile = hostfile
            self.log = log
        }
    }

    public var options: Options
    public var compiler: Compiler

    public init(options: Options, compiler: Compiler? = nil) throws {
        self.options = options
        self.compiler = try compiler ?? Compiler()
    }

    /// The trainer's sources in `runtime/`: the program, and the C it includes.
    public static let trainerSources = ["trainer.c", "runtime.c", "dataset.c"]

    /// The build directory inside the run directory.
    public var buildDirectory: String { options.output + "/build" }

    /// Compiles, builds, runs and plots; returns the trainer's exit status
    /// (128 + N when a signal N ended it). Throws only when nothing could be run.
    public func run(_ spec: NetworkSpec) throws -> Int32 {
        let executable = try build(spec)
        let status = try execute(executable)
        plot(name: spec.name)
        return status
    }

    /// Compiles the network and builds the trainer; returns the executable's path.
    public func build(_ spec: NetworkSpec) throws -> String {
        let clock = ContinuousClock()
        var start = clock.now
        let artifacts = try compiler.compile(spec)
        let name = spec.name
        guard let header = artifacts.files.first(where: { $0.name == name + ".h" })?.contents,
              header.contains(name + "_train_step(") else {
            throw CompileError("the generated C for \(name) has no training step (\(name)_train_step); this compiler cannot train it yet")
        }
        let files = try artifacts.files + Self.trainerSources.map { ($0, try compiler.templates.runtimeSource($0)) }
        options.log("compiled \(name) to C in \(Self.seconds(clock.now - start))")

        let executable = buildDirectory + "/train-" + name
        let toolchain = try options.ranks > 1 ? Self.mpiToolchain(openMP: options.openMP)
            : Self.toolchain(cc: options.cc, openMP: options.openMP, log: options.log)
        let arguments = toolchain.flags + [
            "-DNET=\(name)", "-DUNET=\(name.uppercased())", "-DNET_HEADER=\"\(name).h\"", "-I", buildDirectory,
            buildDirectory + "/trainer.c", buildDirectory + "/\(name).c", "-o", executable, "-lm",
        ]
        // The build command and every source, as text: when none changed since
        // the last build (a resumed run), the executable is reused.
        let recipe = ([toolchain.cc] + arguments).joined(separator: " ") + "\n"
        let stamp = ("build.txt", recipe)
        if Self.unchanged(files + [stamp], in: buildDirectory) && FileManager.default.isExecutableFile(atPath: executable) {
            options.log("reusing \(executable) (sources and flags unchanged)")
            return executable
        }
        try AtomicWriter.write(files, to: buildDirectory)
        try? FileManager.default.removeItem(atPath: buildDirectory + "/build.txt")
        start = clock.now
        options.log("building \(executable): \(toolchain.cc) \(toolchain.flags.joined(separator: " "))")
        // The compiler's temporaries go into a directory that is removed on every exit, signals included.
        let result = try Cleanup.withTemporaryDirectory("cc") { scratch in
            try HostTools.run(toolchain.cc, arguments, environment: ["TMPDIR": scratch])
        }
        if result.status != 0 {
            throw CompileError("\(toolchain.cc) failed to build the trainer (exit \(result.status)):\n"
                + result.output.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        if !result.output.isEmpty { FileHandle.standardError.write(Data(result.output.utf8)) }
        try AtomicWriter.write([stamp], to: buildDirectory)
        options.log("built the trainer in \(Self.seconds(clock.now - start))")
        return executable
    }

    /// Runs the trainer with stdout and stderr going straight to ours.
    ///
    /// Foundation starts the trainer in a process group of its own, so the
    /// terminal's Ctrl-C reaches only this process: `Cleanup`'s handlers pass
    /// SIGINT and SIGTERM on to the trainer, which writes a checkpoint and
    /// exits 130, and this process stays alive to plot. A signal that comes
    /// while no trainer runs (compiling, building) kills what runs and exits.
    public func execute(_ executable: String) throws -> Int32 {
        Cleanup.installSignalHandlers(program: "resnet-compile train")
        let process = Process()
        if options.ranks > 1 {
            let mpirun = try Self.mpiTool("mpirun")
            process.executableURL = URL(fileURLWithPath: mpirun)
            process.arguments = Self.mpirunArguments(ranks: options.ranks, hostfile: options.hostfile)
                + [executable] + options.trainerArguments + ["--out", options.output]
            options.log("running \(options.ranks) ranks: \(mpirun) \(process.arguments!.prefix(while: { $0 != executable }).joined(separator: " ")) \(executable) …")
        } else {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = options.trainerArguments + ["--out", options.output]
        }
        let child: pid_t
        do {
            child = try Cleanup.spawn(forwardSignals: true) {
                try process.run()
                return process.processIdentifier
            }
        } catch {
            throw CompileError("cannot run \(executable): \(error.localizedDescription)")
        }
        defer { Cleanup.forget(child) }
        process.waitUntilExit()
        Cleanup.pauseIfStopping()
        if process.terminationReason == .uncaughtSignal { return 128 + process.terminationStatus }
        return process.terminationStatus
    }

    /// Renders OUT/errors.svg from OUT/train.csv when it has rows; a problem
    /// here is reported but does not hide how the training ended.
    @discardableResult
    public func plot(name: String) -> String? {
        let csv = options.output + "/train.csv"
        guard let text = try? String(contentsOfFile: csv, encoding: .utf8) else { return nil }
        do {
            let run = try ErrorPlot.parse(csv: text, name: name, source: csv)
            if run.train.isEmpty && run.test.isEmpty && run.validation.isEmpty { return nil }
            var title = name
            if let last = run.test.last {
                title += String(format: ": test error %.2f%% at iteration %.0f", last.error, last.iteration)
            }
            try AtomicWriter.write([("errors.svg", ErrorPlot.svg([run], title: title))], to: options.output)
            options.log("plotted \(options.output)/errors.svg")
            return options.output + "/errors.svg"
        } catch {
            FileHandle.standardError.write(Data("resnet-compile train: warning: no plot: \(error)\n".utf8))
            return nil
        }
    }

    /// A C compiler and its flags for the trainer.
    public struct Toolchain: Sendable {
        public var cc: String
        public var flags: [String]
    }

    /// `-std=c11 -O3 -march=native -fopenmp`, with clang's libomp found by
    /// `-L`/`-rpath` (Debian keeps it under /usr/lib/llvm-N/lib); serial when
    /// OpenMP is off or clang has no libomp.
    public static func toolchain(cc: String?, openMP: Bool, log: (String) -> Void = { _ in }) -> Toolchain {
        let environment = ProcessInfo.processInfo.environment["CC"].flatMap { $0.isEmpty ? nil : $0 }
        let compiler = cc ?? environment ?? ["gcc", "clang", "cc"].first { HostTools.which($0) != nil } ?? "cc"
        let flags = ["-std=c11", "-O3", "-march=native"]
        guard openMP else { return Toolchain(cc: compiler, flags: flags) }
        guard let openMPFlags = HostTools.openMPFlags(for: compiler) else {
            log("warning: no libomp.so for \(compiler) (install libomp-dev); building the trainer without OpenMP (one thread)")
            return Toolchain(cc: compiler, flags: flags)
        }
        return Toolchain(cc: compiler, flags: flags + openMPFlags)
    }

    /// OpenMPI's `mpicc` and `mpirun`, or an error that says how to get them.
    static func mpiTool(_ name: String) throws -> String {
        guard let path = HostTools.which(name) else {
            throw CompileError("--ranks needs OpenMPI's \(name) on PATH (Debian: apt-get install openmpi-bin libopenmpi-dev; `make deps` does it)")
        }
        return path
    }

    /// The trainer built with `mpicc` (OpenMPI's wrapper around its C compiler, gcc by default)
    /// and -DRC_MPI: `-std=c11 -O3 -march=native [-fopenmp]`.
    public static func mpiToolchain(openMP: Bool) throws -> Toolchain {
        Toolchain(cc: try mpiTool("mpicc"), flags: ["-std=c11", "-O3", "-march=native", "-DRC_MPI"] + (openMP ? ["-fopenmp"] : []))
    }

    /// `mpirun -np N`, with `--hostfile FILE` for several machines; on this
    /// machine with more ranks than cores allowed (`--oversubscribe`), and as
    /// root (containers) with `--allow-run-as-root`. No binding: each rank's
    /// OpenMP threads use the cores the OS gives them (OMP_NUM_THREADS per rank).
    public static func mpirunArguments(ranks: Int, hostfile: String?) -> [String] {
        var args = ["-np", String(ranks), "--bind-to", "none"]
        if let hostfile { args += ["--hostfile", hostfile] } else { args.append("--oversubscribe") }
        if getuid() == 0 { args.append("--allow-run-as-root") }
        return args
    }

    /// Whether every file already has exactly these contents in `directory`.
    static func unchanged(_ files: [(name: String, contents: String)], in directory: String) -> Bool {
        files.allSatisfy { file in
            FileManager.default.contents(atPath: directory + "/" + file.name) == Data(file.contents.utf8)
        }
    }

    static func seconds(_ d: Duration) -> String {
        let (s, attoseconds) = d.components
        return String(format: "%.1f s", Double(s) + Double(attoseconds) / 1e18)
    }
}
