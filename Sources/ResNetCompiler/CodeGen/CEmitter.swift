import Foundation

/// The C emitter: fills the templates with "kernel views" of the final graph.
///
/// Requires a fused (or unfused), memory-planned graph. All arithmetic — loop
/// bounds, offsets into the parameter and arena buffers, which epilogue a
/// kernel has — is done here; the templates only place the numbers. Output is
/// deterministic: nodes in graph order, tables in state-dict order, no
/// timestamps and no paths.
public struct CEmitter {
    public let templates: Templates
    public static let version = "0.1.0"

    public init(templates: Templates) {
        self.templates = templates
    }

    /// The three files for network `graph.name`.
    public struct Output: Equatable {
        public var header: String
        public var source: String
        public var moduleMap: String
    }

    /// Emits the inference graph and, when given, the training graph of the
    /// same network into one C file.
    public func emit(_ graph: Graph, training: Graph? = nil) throws -> Output {
        guard let plan = graph.memory else { throw CompileError("C emitter needs a memory plan (run PlanMemory)") }
        var layout = ParameterLayout(graph)
        if let training { layout.addTrainingPacks(training) }
        let name = graph.name
        let uname = name.uppercased()
        let input = graph.shape(0)
        let summary = "Input \(input), \(graph.classes) classes, \(graph.parameterCount) parameter floats, \(Summary.macs(graph)) multiply-adds per image."

        // Layers with the same shapes and epilogue share one kernel, named by
        // what it computes (deep networks repeat a handful of block shapes);
        // the inference and training graphs share them too.
        var views: [String: KernelView] = [:]
        var order: [String] = []
        var users: [String: [String]] = [:]
        var seen: [String: Set<String>] = [:]
        func calls(for g: Graph, output: Bool) throws -> [String] {
            let plan = g.memory!
            let last = output ? g.nodes.count - 1 : -1
            func buffer(_ id: Int) -> String {
                if id == 0 { return "x" }
                if id == last { return "out" }
                return "arena + (size_t)\(plan.offsets[id]) * mb"
            }
            var lines: [String] = []
            var buckets = g.training ? GradientBuckets(graph, layout) : nil
            for node in g.nodes where ![.input, .secondOutput, .sgdUpdate].contains(node.op) {
                let view = try kernelView(node, g, layout)
                if views[view.fn] == nil {
                    views[view.fn] = view
                    order.append(view.fn)
                }
                if seen[view.fn, default: []].insert(node.name).inserted { users[view.fn, default: []].append(node.name) }
                var args = view.args.map { arg -> String in
                    switch arg {
                    case let .buffer(id): buffer(id)
                    case let .pointer(expression): expression
                    case let .scratch(id): "arena + (size_t)\(plan.offsets[g.nodes.count + id]) * mb"
                    case .partials: "arena + (size_t)TRAIN_ARENA_FLOATS * mb"
                    }
                }
                if node.shape != nil && node.op != .convGradWeight { args.append(buffer(node.id)) }
                args.append("n")
                // The training step packs a vector conv's weights right before it (one pack at a time).
                if g.training, args.contains(where: { $0.hasPrefix("m->tpacked + ") }) {
                    let name = ParameterLayout.packName(node, g)
                    lines.append("pack_train(m, \(layout.trainPackIndex[name]!)); /* \(name) */")
                }
                lines.append("\(view.fn)(\(args.joined(separator: ", "))); /* \(node.name) */")
                for case let .pointer(expression) in view.args where expression.hasPrefix("m->grads + ") {
                    buckets?.written(offset: Int(expression.dropFirst("m->grads + ".count))!)
                }
                if let line = buckets?.next(final: false) { lines.append(line) }
            }
            if let line = buckets?.next(final: true) { lines.append(line) }
            return lines
        }
        let inferenceCalls = try calls(for: graph, output: true)
        let trainingCalls = try training.map { try calls(for: $0, output: false) } ?? []
        var kernels: [[String: Any]] = []
        for fn in order {
            var values = views[fn]!.values
            let names = users[fn]!
            values["usedBy"] = names.count <= 4 ? names.joined(separator: ", ")
                : names.prefix(3).joined(separator: ", ") + " and \(names.count - 3) more"
            kernels.append(["code": try templates.render(views[fn]!.template, values)])
        }

        let params: [[String: Any]] = graph.parameters.map { p in
            let (kind, scale) = Initialiser(p).table
            let dims = p.shape + Array(repeating: 0, count: 4 - p.shape.count)
            return ["name": p.name, "ndim": p.shape.count, "shape": dims.map(String.init).joined(separator: ", "),
                    "offset": layout.offset[p.name]!, "count": p.count, "init": kind, "scale": String(format: "%.17g", scale),
                    "trainable": p.trainable ? 1 : 0]
        }
        let packs: [[String: Any]] = layout.packs.map { p in
            ["folded": p.folded ? 1 : 0, "w": p.w, "b": p.b, "oc": p.oc, "c": p.c, "k": p.k, "ib": p.ib, "pw": p.pw, "pb": p.pb,
             "winograd": p.winograd ? 1 : 0]
        }
        let folds: [[String: Any]] = layout.folds.map { f in
            ["w": f.w, "cb": f.cb, "g": f.g, "b": f.b, "mu": f.mu, "variance": f.variance,
             "fw": f.fw, "fb": f.fb, "oc": f.oc, "per": f.per]
        }
        let batchNorms = graph.batchNormNames
        let memory = ModelMemory(graph: graph, training: training, layout: layout)
        // Inference runs in a training model's arena too: it is the larger of the two.
        let trainArenaFloats = memory.trainArenaBytesPerImage / 4
        let memoryValues: [String: Any] = [
            "modelAlign": ModelMemory.alignment, "structBytes": memory.structBytes,
            "arenaBytesPerImage": memory.arenaBytesPerImage, "trainArenaBytesPerImage": memory.trainArenaBytesPerImage,
            "fixedInferBytes": memory.fixedInferBytes, "fixedTrainBytes": memory.fixedTrainBytes,
            "inferWeightBytes": memory.inferWeightBytes,
            "partialBytes": memory.partialBytes, "partialFloats": memory.partialBytes / 4,
            "dataParallelFloats": memory.dataParallelFloats, "dataParallelBytes": memory.dataParallelBytes,
        ]
        var context: [String: Any] = [
            "name": name, "uname": uname, "version": Self.version, "summary": summary,
            "hasBottleneck": graph.bottleneck != nil, "bottleneck": graph.bottleneck?.statement ?? "",
            "errors": try Self.errorCodes(try templates.runtimeSource("runtime.c")).map { ["suffix": $0.suffix, "value": $0.value, "comment": $0.comment] },
            "logits": graph.output.op != .softmax,
            "inputC": input.c, "inputH": input.h, "inputW": input.w, "classes": graph.classes,
            "paramCount": graph.parameterCount, "paramTensorCount": graph.parameters.count,
            "params": params,
            "bnCount": batchNorms.count, "hasBatchNorm": !batchNorms.isEmpty, "batchNorms": batchNorms,
            "foldCount": layout.folds.count, "hasFolds": !layout.folds.isEmpty, "folds": folds,
            "foldedFloats": layout.foldedFloats,
            "packCount": layout.packs.count, "hasPacks": !layout.packs.isEmpty, "packs": packs,
            "packedFloats": layout.packedFloats, "block": Schedule.block,
            "trainPackCount": layout.trainPacks.count, "hasTrainPacks": !layout.trainPacks.isEmpty,
            "trainPackedFloats": layout.trainPackedFloats,
            "trainPacks": layout.trainPacks.map { p -> [String: Any] in
                ["w": p.w, "b": p.b, "oc": p.oc, "c": p.c, "k": p.k, "ib": p.ib, "pw": p.pw, "pb": p.pb, "transpose": p.transpose ? 1 : 0,
                 "winograd": p.winograd ? 1 : 0]
            },
            "arenaFloats": plan.arenaFloats, "naiveFloats": plan.naiveFloats, "lowerBoundFloats": plan.lowerBoundFloats,
            "kernels": kernels, "kernelCount": kernels.count, "calls": inferenceCalls,
            "hasTraining": training != nil, "trainingCalls": trainingCalls,
            "bucketFloats": GradientBuckets.minimumFloats,
            "trainArenaFloats": trainArenaFloats,
            "trainNaiveFloats": training?.memory?.naiveFloats ?? 0,
            "trainLowerBoundFloats": training?.memory?.lowerBoundFloats ?? 0,
            "statsFloats": max(1, layout.statsFloats),
            "bnStats": graph.batchNormNames.map { bn -> [String: Any] in
                ["mean": layout.offset[bn + ".running_mean"]!, "variance": layout.offset[bn + ".running_var"]!,
                 "stats": layout.statsOffset[bn]!, "channels": layout.count[bn + ".running_mean"]!]
            },
            "trainableCount": graph.parameters.filter(\.trainable).count,
            "checkpointNameBytes": graph.parameters.filter(\.trainable).reduce(1) { $0 + "optimizer.momentum_buffer.".utf8.count + $1.name.utf8.count + 1 },
            "minBatchNormPlane": training.map { t in
                t.nodes.filter { $0.op == .batchNorm || $0.op == .batchNormAct }.map { t.shape($0.inputs[0]).h * t.shape($0.inputs[0]).w }.min() ?? 2
            } ?? 2,
        ]
        for (key, value) in memoryValues { context[key] = value }
        let header = try templates.render("header.h", context)
        let source = try templates.render("model.c", context)
        let moduleMap = try templates.render("module.modulemap", context)
        return Output(header: Self.tidy(header), source: Self.tidy(source), moduleMap: Self.tidy(moduleMap))
    }

    /// One of the runtime's return codes: `RC_` + `suffix`, its value and what it means.
    struct ErrorCode: Equatable {
        var suffix: String
        var value: Int
        var comment: String
    }

    /// The return codes `runtime/runtime.c` defines (`#define RC_ERR_NULL (-1) /* … */`),
    /// in its order: the header's `enum NAME_error` is made from them, so the
    /// C runtime stays the one place that numbers and describes the codes.
    static func errorCodes(_ runtime: String) throws -> [ErrorCode] {
        var codes: [ErrorCode] = []
        for line in runtime.split(separator: "\n") where line.hasPrefix("#define RC_OK") || line.hasPrefix("#define RC_ERR_") {
            let words = line.dropFirst("#define RC_".count).split(separator: " ", maxSplits: 1)
            let rest = words.count > 1 ? words[1].drop { $0 == " " } : ""
            let number = rest.prefix { $0 != "/" }.filter { !"() ".contains($0) }
            guard let value = Int(number) else { throw CompileError("runtime.c: cannot read the code in '\(line)'") }
            guard let open = rest.range(of: "/*"), let close = rest.range(of: "*/") else {
                throw CompileError("runtime.c: the code in '\(line)' has no comment saying what it means")
            }
            let comment = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            codes.append(ErrorCode(suffix: String(words[0]), value: value, comment: comment))
        }
        guard codes.first?.suffix == "OK", codes.first?.value == 0, codes.count > 1 else {
            throw CompileError("runtime.c: found no RC_OK and RC_ERR_* codes")
        }
        return codes
    }

    /// Collapses runs of blank lines left by template sections; one trailing newline.
    static func tidy(_ text: String) -> String {
        var lines: [Substring] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.drop { $0 == " " }.isEmpty ? Substring("") : line
            if trimmed.isEmpty, lines.last?.isEmpty ?? true { continue }
            lines.append(trimmed)
        }
        while lines.last?.isEmpty == true { lines.removeLast() }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The gradient buckets of a training step with replicas: contiguous
    /// ranges of `m->grads`, from the end (the state-dict order is the
    /// forward order, so the backward pass completes it from the end), each
    /// summed across replicas exactly by the hook (`rc_allreduce_grads`: each
    /// gradient with what its rounding to float lost) right after the
    /// kernel that writes its last gradient, once it holds at least
    /// `minimumFloats` (256 KiB: large enough that a transport's per-call
    /// latency, tens of microseconds for MPI, is small beside the transfer,
    /// small enough that a ResNet-20 has several buckets to overlap with its
    /// backward pass); the rest at the end. Running statistics have no
    /// gradient and count as done (their slots are zeros).
    struct GradientBuckets {
        static let minimumFloats = 1 << 16
        var names: [String], offsets: [Int], done: [Bool]
        /// Parameters from `reduced` on are summed already; `end` is the first float after the unreduced ones.
        var reduced: Int, end: Int
        var index: [Int: Int] = [:]

        init(_ graph: Graph, _ layout: ParameterLayout) {
            names = graph.parameters.map(\.name)
            offsets = names.map { layout.offset[$0]! }
            done = graph.parameters.map { !$0.trainable }
            reduced = names.count
            end = graph.parameterCount
            for (i, o) in offsets.enumerated() where index[o] == nil { index[o] = i }
        }

        /// A kernel wrote the gradient of the parameter at `offset`.
        mutating func written(offset: Int) {
            if let i = index[offset] { done[i] = true }
        }

        /// The reduction to emit now, if a bucket is complete (`final`: all that is left).
        mutating func next(final: Bool) -> String? {
            var first = reduced
            while first > 0 && (final || done[first - 1]) { first -= 1 }
            let start = first < names.count ? offsets[first] : end
            guard first < reduced, final || end - start >= Self.minimumFloats else { return nil }
            let line = "rc_allreduce_grads(&m->reducer, m->grads + \(start), \(end - start)); /* gradients: "
                + (first == reduced - 1 ? names[first] : "\(names[first]) … \(names[reduced - 1])") + " */"
            reduced = first
            end = start
            return line
        }
    }

    /// What one kernel needs: its template, the values it places, and its arguments.
    struct KernelView {
        var template: String
        var fn: String
        var values: [String: Any]
        /// The arguments before the output buffer and the batch size.
        var args: [Argument]
    }

    /// A kernel argument: another node's buffer, or a pointer into the model.
    enum Argument {
        case buffer(Int)
        case pointer(String)
        /// The node's scratch buffer in the arena.
        case scratch(Int)
        /// The arena's partials region (after the per-sample arena; MemoryPlan.partialFloats).
        case partials
    }

    /// The one dispatch from a node to its kernel family: the vector families
    /// where `Schedule` chose a vector conv or the blocked layout, the scalar
    /// NCHW ones otherwise. Each family's key names its kernel, so layers that
    /// compute the same thing share one.
    func kernelView(_ node: Node, _ g: Graph, _ layout: ParameterLayout) throws -> KernelView {
        if case .winograd? = node.attrs.algorithm { return WinogradConv.make(node, g, layout) }
        if node.attrs.wideTile != nil { return BlockedConv.make(node, g, layout) }
        let blocked = g.layout(node.id) != .plain || g.layout(node.inputs[0]) != .plain
        switch node.op {
        case .maxPool where blocked, .globalAvgPool where blocked, .maxPoolGrad where blocked,
             .globalAvgPoolGrad where blocked:
            return BlockedPool.make(node, g)
        case .batchNormAct where blocked, .batchNormGrad where blocked:
            return BlockedBatchNorm.make(node, g, layout)
        case .convGradWeight where blocked:
            return BlockedConvGradWeight.make(node, g, layout)
        case .conv, .fusedConv, .convGradData, .convGradWeight:
            return ScalarConv.make(node, g, layout)
        case .batchNorm, .batchNormAct, .batchNormGrad:
            return ScalarBatchNorm.make(node, g, layout)
        case .maxPool, .globalAvgPool, .maxPoolGrad, .globalAvgPoolGrad:
            return ScalarPool.make(node, g, layout)
        case .relu, .add, .zeroPad, .reluGrad, .zeroPadGrad:
            return Pointwise.make(node, g, layout)
        case .dense, .softmax, .loss, .denseGrad:
            return Classifier.make(node, g, layout)
        case .input, .secondOutput, .sgdUpdate:
            throw CompileError(layer: node.name, "\(node.op.rawValue) has no kernel")
        }
    }
}

