import Foundation
import ResNetDSL

/// The front door of the library: network spec in, C files out. The CLI and
/// the tests both go through here.
public struct Compiler {
    public var templates: Templates
    public var options: Pipeline.Options

    public init(templates: Templates? = nil, options: Pipeline.Options = Pipeline.Options()) throws {
        self.templates = try templates ?? Templates()
        self.options = options
    }

    /// Everything one compilation produces, in memory.
    public struct Artifacts {
        public var graph: Graph
        /// The training graph (forward, backward, update), memory-planned;
        /// nil when the options leave training out (`--no-train`).
        public var training: Graph?
        public var files: [(name: String, contents: String)]
    }

    /// Runs the pipeline; `dumpAfter` receives the IR text after the named pass.
    public func compile(_ spec: NetworkSpec, dumpAfter: String? = nil, dump: (String) -> Void = { _ in }) throws -> Artifacts {
        try checkDumpAfter(dumpAfter)
        return try compile(lowered: try Lower.lower(spec), dumpAfter: dumpAfter, dump: dump)
    }

    func checkDumpAfter(_ dumpAfter: String?) throws {
        let front = Pipeline.analysis
        var known = ["Lower"]
        let training = options.training ? Pipeline.trainingTail(options).names : []
        for name in front.names + Pipeline.inferenceTail(options).names + training where !known.contains(name) {
            known.append(name)
        }
        if let wanted = dumpAfter, !known.contains(wanted) {
            throw CompileError("unknown pass '\(wanted)' for --dump-after; the passes are: \(known.joined(separator: ", "))")
        }
    }

    /// Runs the pipeline on a graph already in the IR (lowered from the DSL or
    /// imported from ONNX); `dumpAfter: "Lower"` prints it as given.
    public func compile(lowered: Graph, dumpAfter: String? = nil, dump: (String) -> Void = { _ in }) throws -> Artifacts {
        try checkDumpAfter(dumpAfter)
        var lowered = lowered
        // A graph built by hand has not been through a front end.
        if lowered.bottleneck == nil { lowered.bottleneck = BottleneckStride.of(lowered) }
        let front = Pipeline.analysis
        let inference = Pipeline.inferenceTail(options)
        let trainingTail = Pipeline.trainingTail(options)
        var dumped = ""
        if dumpAfter == "Lower" { dumped += IRPrinter.print(lowered) }
        // The shared front runs once; then the inference graph and the training step.
        let analysed = try front.run(lowered) { name, g in
            if name == dumpAfter { dumped += IRPrinter.print(g) }
        }
        let graph = try inference.run(analysed) { name, g in
            if name == dumpAfter { dumped += "// inference\n" + IRPrinter.print(g) }
        }
        let training = try options.training ? trainingTail.run(analysed) { name, g in
            if name == dumpAfter { dumped += "// training\n" + IRPrinter.print(g) }
        } : nil
        if !dumped.isEmpty { dump(dumped) }
        let c = try CEmitter(templates: templates).emit(graph, training: training)
        let name = graph.name
        return Artifacts(graph: graph, training: training, files: [
            (name + ".h", c.header),
            (name + ".c", c.source),
            ("module.modulemap", c.moduleMap),
            (name + ".report", Self.report(graph, training: training)),
        ])
    }

    /// The plan, the multiply-adds and the arena, for a person to read.
    public static func report(_ g: Graph, training: Graph? = nil) -> String {
        var lines = ["resnet-compile \(CEmitter.version) report for \(g.name) (generated; do not edit)"]
        lines.append("input \(g.shape(0)), \(g.classes) classes")
        if let b = g.bottleneck { lines.append(b.statement) }
        lines.append("parameters: \(Summary.learnableParameters(g)) learnable, \(g.parameterCount) floats with running statistics")
        lines.append("multiply-adds per image: \(Summary.macs(g))")
        let kernels = g.nodes.count - 1
        lines.append("kernels: \(kernels)")
        if let m = g.memory {
            let kib = { (f: Int) in String(format: "%.1f KiB", Double(f * 4) / 1024) }
            lines.append("arena per image: \(kib(m.arenaFloats)) (naive \(kib(m.naiveFloats)), lower bound \(kib(m.lowerBoundFloats)))")
        }
        if let t = training, let m = t.memory {
            let kib = { (f: Int) in String(format: "%.1f KiB", Double(f * 4) / 1024) }
            lines.append("training arena per image: \(kib(m.arenaFloats)) (naive \(kib(m.naiveFloats)), lower bound \(kib(m.lowerBoundFloats)))"
                         + (m.partialFloats > 0 ? ", then weight-gradient partials of \(kib(m.partialFloats)) each, "
                            + "MemoryPlan.partials(maxBatch:) of them" : ""))
        }
        if g.memory != nil, training?.memory != nil || training == nil {
            // The figures of --emit plan (NAME.plan.json) at batch 1, and the header's macros.
            let uname = g.name.uppercased()
            for m in PlanFiles.modes(g, training: training, batch: 1) {
                let macro = "\(uname)_MODEL_BYTES_\(m.mode == "train" ? "TRAIN" : "INFER")(1)"
                lines.append("\(m.mode) at batch 1, bytes: arena \(m.arenaBytes), lower bound \(m.lowerBoundBytes), naive \(m.naiveBytes), "
                             + "whole model \(m.modelBytes) (\(macro)), \(m.buffers.count) buffers")
            }
        }
        lines.append("")
        lines.append("// inference")
        lines.append(IRPrinter.print(g))
        if let t = training {
            lines.append("// training")
            lines.append(IRPrinter.print(t))
        }
        return lines.joined(separator: "\n")
    }
}

/// Writes a set of files into a directory so that either all of them appear or
/// none does: each is written to a temporary file in the same directory, and
/// only when every one is complete are they renamed into place. A directory
/// this call created is removed again on failure.
public enum AtomicWriter {
    public static func write(_ files: [(name: String, contents: String)], to directory: String) throws {
        try write(files.map { (name: $0.name, data: Data($0.contents.utf8)) }, to: directory)
    }

    /// The same for files of bytes (the weights an ONNX import writes beside the C).
    public static func write(_ files: [(name: String, data: Data)], to directory: String) throws {
        try write(streams: files.map { file in (file.name, { try $0.write(contentsOf: file.data) }) }, to: directory)
    }

    /// The same for files each written by a function into its open file
    /// (`NAME_weights.c`, too large to hold as one string).
    public static func write(streams files: [(name: String, write: (FileHandle) throws -> Void)], to directory: String) throws {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        let existed = fm.fileExists(atPath: directory, isDirectory: &isDir)
        if existed && !isDir.boolValue { throw CompileError("\(directory) exists and is not a directory") }
        if !existed {
            // Registered with Cleanup (as are the temporaries), so a signal mid-write leaves nothing.
            Cleanup.register(directory)
            do {
                try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
            } catch {
                Cleanup.unregister(directory)
                throw CompileError("cannot create \(directory): \(error.localizedDescription)")
            }
        }
        var temporaries: [(String, String)] = []
        defer {
            for (temp, _) in temporaries { Cleanup.unregister(temp) }
            if !existed { Cleanup.unregister(directory) }
        }
        do {
            for file in files {
                let final = directory + "/" + file.name
                let temp = directory + "/.\(file.name).tmp-\(getpid())"
                Cleanup.register(temp)
                temporaries.append((temp, final))
                guard fm.createFile(atPath: temp, contents: nil), let handle = FileHandle(forWritingAtPath: temp) else {
                    throw CompileError("cannot write \(temp)")
                }
                do {
                    try file.write(handle)
                    try handle.close()
                } catch {
                    try? handle.close()
                    throw error as? CompileError ?? CompileError("cannot write \(temp): \(error.localizedDescription)")
                }
            }
            for (temp, final) in temporaries where rename(temp, final) != 0 {
                throw CompileError("cannot rename \(temp) to \(final): \(String(cString: strerror(errno)))")
            }
        } catch {
            for (temp, _) in temporaries { Cleanup.remove(temp) }
            if !existed { Cleanup.remove(directory) }
            throw error
        }
    }
}
