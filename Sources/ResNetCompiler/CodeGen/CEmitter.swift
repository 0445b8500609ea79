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
                    }
                }
                if node.shape != nil && node.op != .convGradWeight { args.append(buffer(node.id)) }
                args.append("n")
                lines.append("\(view.fn)(\(args.joined(separator: ", "))); /* \(node.name) */")
            }
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
            let (kind, scale) = Self.initialiser(p)
            let dims = p.shape + Array(repeating: 0, count: 4 - p.shape.count)
            return ["name": p.name, "ndim": p.shape.count, "shape": dims.map(String.init).joined(separator: ", "),
                    "offset": layout.offset[p.name]!, "count": p.count, "init": kind, "scale": scale,
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
        let context: [String: Any] = [
            "name": name, "uname": uname, "version": Self.version, "summary": summary,
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
            "trainArenaFloats": training?.memory?.arenaFloats ?? 0,
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
        let header = try templates.render("header.h", context)
        let source = try templates.render("model.c", context)
        let moduleMap = try templates.render("module.modulemap", context)
        return Output(header: Self.tidy(header), source: Self.tidy(source), moduleMap: Self.tidy(moduleMap))
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

    /// torchvision's initialisation: conv kaiming-normal (fan_out, ReLU gain),
    /// Linear and conv biases uniform ±1/√fan_in, BN γ = 1, β = 0, μ = 0, σ² = 1.
    static func initialiser(_ p: Parameter) -> (kind: Int, scale: String) {
        let normal = 0, uniform = 1, constant = 2
        func fmt(_ v: Double) -> String { String(format: "%.17g", v) }
        switch p.kind {
        case .runningMean: return (constant, "0")
        case .runningVar: return (constant, "1")
        case .weight where p.shape.count == 1: return (constant, "1")
        case .bias where p.fanIn == nil: return (constant, "0")
        case .weight where p.shape.count == 4:
            let fanOut = p.shape[0] * p.shape[2] * p.shape[3]
            return (normal, fmt((2.0 / Double(fanOut)).squareRoot()))
        case .weight:
            return (uniform, fmt(1.0 / Double(p.shape[1]).squareRoot()))
        case .bias:
            return (uniform, fmt(1.0 / Double(max(1, p.fanIn!)).squareRoot()))
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
    }

    /// A C identifier naming what a kernel computes, e.g.
    /// `k_conv3x3s1p1_16x32x32_16_bn_add_relu`; equal names mean equal code.
    static func functionName(_ node: Node, _ g: Graph) -> String {
        let x = node.inputs.isEmpty ? node.shape! : g.shape(node.inputs[0])
        let y = node.shape ?? x
        func dims(_ s: Shape) -> String { "\(s.c)x\(s.h)x\(s.w)" }
        let a = node.attrs
        switch node.op {
        case .conv, .fusedConv:
            var name = "k_conv\(a.kernel!)x\(a.kernel!)s\(a.stride!)p\(a.padding!)_\(dims(x))_\(y.c)"
            if a.foldedBatchNorm != nil { name += "_bn" } else if a.bias == true { name += "_bias" }
            name += shortcutSuffix(a.shortcut)
            if a.relu == true { name += "_relu" }
            return name + tileSuffix(a.tile)
        case .batchNorm where g.training: return "k_bntrain_\(dims(y))"
        case .batchNorm: return "k_bn_\(dims(y))"
        case .batchNormAct:
            return "k_bntrain_\(dims(y))" + shortcutSuffix(a.shortcut) + (a.relu == true ? "_relu" : "")
        case .loss: return "k_loss_\(y.count)"
        case .convGradData, .convGradWeight:
            let f = g.nodes[a.forward!], fx = g.shape(f.inputs[0]), fa = f.attrs
            var name = (node.op == .convGradData ? "k_convgd" : "k_convgw")
                + "\(fa.kernel!)x\(fa.kernel!)s\(fa.stride!)p\(fa.padding!)_\(dims(fx))_\(f.shape!.c)"
            if node.op == .convGradWeight && fa.bias == true { name += "_bias" }
            name += tileSuffix(a.tile) + shortcutSuffix(a.gradShortcut)
            if case .zeroPad? = a.gradShortcut { name += "_\(dims(g.shape(node.inputs[1])))" }
            return name
        case .batchNormGrad:
            let second = g.secondOutput(of: node.id) != nil
            return "k_bngrad_\(dims(y))" + (a.reluMask == true ? "_relu" : "") + (second ? "_out2" : "")
        case .reluGrad: return "k_relugrad_\(y.count)"
        case .maxPoolGrad:
            let f = g.nodes[a.forward!].attrs
            return "k_maxpoolgrad\(f.kernel!)s\(f.stride!)p\(f.padding!)_\(dims(y))"
        case .globalAvgPoolGrad: return "k_avgpoolgrad_\(dims(y))"
        case .denseGrad: return "k_densegrad_\(y.count)_\(x.count)"
        case .zeroPadGrad: return "k_zeropadgrad_\(dims(x))_\(y.c)s\(a.stride!)"
        case .secondOutput, .sgdUpdate: return "k_none"
        case .relu: return "k_relu_\(g.storedFloats(node.id))"
        case .add: return "k_add_\(g.storedFloats(node.id))"
        case .zeroPad: return "k_zeropad_\(dims(x))_\(y.c)s\(a.stride!)"
        case .maxPool: return "k_maxpool\(a.kernel!)s\(a.stride!)p\(a.padding!)_\(dims(x))"
        case .globalAvgPool: return "k_avgpool_\(dims(x))"
        case .dense: return "k_dense_\(x.count)_\(y.c)"
        case .softmax: return "k_softmax_\(y.count)"
        case .input: return "k_input"
        }
    }

    /// `_add`, or `_addzp<channels>s<stride>` for an option-A read, or nothing.
    static func shortcutSuffix(_ read: ShortcutRead?) -> String {
        switch read {
        case .tensor?: "_add"
        case let .zeroPad(stride, channels)?: "_addzp\(channels)s\(stride)"
        case nil: ""
        }
    }

    /// The tile when it is not the default 4×16, and whether the input is padded first.
    static func tileSuffix(_ tile: Tile?) -> String {
        guard let t = tile else { return "" }
        return (t.outChannels != 4 || t.width != 16 ? "_t\(t.outChannels)x\(t.width)" : "")
            + (t.paddedInput ? "_padded" : "")
    }

    /// The values a template needs for a shortcut read from `source`
    /// (`scC` is the channel count the read is indexed with).
    static func shortcutValues(_ v: inout [String: Any], _ read: ShortcutRead?, source: Shape?, channels scC: Int? = nil) {
        switch read {
        case .tensor?:
            v["hasShortcut"] = true
            v["tensorShortcut"] = true
        case let .zeroPad(stride, channels)?:
            v["hasShortcut"] = true
            v["zeroPadShortcut"] = true
            v["scC"] = scC ?? channels
            v["scH"] = source!.h
            v["scW"] = source!.w
            v["scStride"] = stride
        case nil:
            break
        }
    }

    func kernelView(_ node: Node, _ g: Graph, _ layout: ParameterLayout) throws -> KernelView {
        // The vector families (blocked layout) carry their own keys.
        if case .winograd? = node.attrs.algorithm { return WinogradConv.make(node, g, layout) }
        if node.attrs.wideTile != nil { return BlockedConv.make(node, g, layout) }
        if g.layout(node.id) != .plain || g.layout(node.inputs[0]) != .plain {
            switch node.op {
            case .maxPool, .globalAvgPool, .maxPoolGrad, .globalAvgPoolGrad: return BlockedPool.make(node, g)
            case .batchNormAct, .batchNormGrad: return BlockedBatchNorm.make(node, g, layout)
            case .convGradWeight: return BlockedConvGradWeight.make(node, g, layout)
            default: break
            }
        }
        let inShape = g.shape(node.inputs[0])
        let out = node.shape ?? inShape
        let fn = Self.functionName(node, g)
        var v: [String: Any] = [
            "fn": fn, "inShape": "\(inShape)", "outShape": "\(out)",
            "c": inShape.c, "h": inShape.h, "w": inShape.w, "oc": out.c, "oh": out.h, "ow": out.w,
            "count": out.count, "hw": out.h * out.w,
        ]
        func p(_ name: String) -> String { "m->params + \(layout.offset[name]!)" }
        switch node.op {
        case .conv, .fusedConv:
            v["k"] = node.attrs.kernel!
            v["s"] = node.attrs.stride!
            v["p"] = node.attrs.padding!
            v["parts"] = (node.attrs.fused ?? ["conv"]).joined(separator: " + ")
            let tile = node.attrs.tile ?? Tile(outChannels: 1, width: 1)
            v["ob"] = tile.outChannels
            v["tw"] = tile.width
            v["paddedInput"] = tile.paddedInput
            var args: [Argument] = [.buffer(node.inputs[0])]
            if tile.paddedInput { args.append(.scratch(node.id)) }
            if node.op == .fusedConv, let fold = layout.foldOf[node.name] {
                args += [.pointer("m->folded + \(fold.fw)"), .pointer("m->folded + \(fold.fb)")]
                v["hasBias"] = true
            } else {
                args.append(.pointer(p(node.name + ".weight")))
                if node.attrs.bias == true {
                    args.append(.pointer(p(node.name + ".bias")))
                    v["hasBias"] = true
                }
            }
            if node.attrs.shortcut != nil {
                Self.shortcutValues(&v, node.attrs.shortcut, source: g.shape(node.inputs[1]))
                args.append(.buffer(node.inputs[1]))
            }
            v["relu"] = node.attrs.relu == true
            return KernelView(template: "conv.c", fn: fn, values: v, args: args)
        case .batchNorm where g.training, .batchNormAct:
            return trainingView(node, g, layout, v)
        case .batchNorm:
            v["batchNorm"] = true
            let ps = ["weight", "bias", "running_mean", "running_var"].map { Argument.pointer(p("\(node.name).\($0)")) }
            return KernelView(template: "pointwise.c", fn: fn, values: v, args: [.buffer(node.inputs[0])] + ps)
        case .relu:
            v["relu"] = true
            v["count"] = g.storedFloats(node.id)
            return KernelView(template: "pointwise.c", fn: fn, values: v, args: [.buffer(node.inputs[0])])
        case .add:
            v["add"] = true
            v["count"] = g.storedFloats(node.id)
            return KernelView(template: "pointwise.c", fn: fn, values: v, args: node.inputs.map(Argument.buffer))
        case .zeroPad:
            v["zeroPad"] = true
            v["s"] = node.attrs.stride!
            return KernelView(template: "pointwise.c", fn: fn, values: v, args: [.buffer(node.inputs[0])])
        case .maxPool:
            v["maxPool"] = true
            v["k"] = node.attrs.kernel!
            v["s"] = node.attrs.stride!
            v["p"] = node.attrs.padding!
            return KernelView(template: "pointwise.c", fn: fn, values: v, args: [.buffer(node.inputs[0])])
        case .globalAvgPool:
            v["globalAvgPool"] = true
            v["hw"] = inShape.h * inShape.w
            return KernelView(template: "pointwise.c", fn: fn, values: v, args: [.buffer(node.inputs[0])])
        case .dense:
            v["dense"] = true
            v["inCount"] = inShape.count
            v["outCount"] = out.count
            return KernelView(template: "pointwise.c", fn: fn, values: v, args: [.buffer(node.inputs[0]), .pointer(p(node.name + ".weight")), .pointer(p(node.name + ".bias"))])
        case .softmax:
            v["softmax"] = true
            return KernelView(template: "pointwise.c", fn: fn, values: v, args: [.buffer(node.inputs[0])])
        case .loss, .convGradData, .convGradWeight, .batchNormGrad, .reluGrad, .maxPoolGrad, .globalAvgPoolGrad,
             .denseGrad, .zeroPadGrad:
            return trainingView(node, g, layout, v)
        case .input, .secondOutput, .sgdUpdate:
            throw CompileError(layer: node.name, "\(node.op.rawValue) has no kernel")
        }
    }

    /// Kernel views of the training graph's ops (templates/train.c.mustache).
    func trainingView(_ node: Node, _ g: Graph, _ layout: ParameterLayout, _ base: [String: Any]) -> KernelView {
        var v = base
        let fn = v["fn"] as! String
        func p(_ name: String) -> String { "m->params + \(layout.offset[name]!)" }
        func grad(_ name: String) -> String { "m->grads + \(layout.offset[name]!)" }
        let a = node.attrs
        switch node.op {
        case .batchNorm, .batchNormAct:
            v["batchNormTrain"] = true
            v["parts"] = (a.fused ?? ["bn"]).joined(separator: " + ")
            Self.shortcutValues(&v, a.shortcut, source: node.inputs.count > 1 ? g.shape(node.inputs[1]) : nil)
            v["relu"] = a.relu == true
            var args: [Argument] = node.inputs.map(Argument.buffer)
            args += [.pointer(p(node.name + ".weight")), .pointer(p(node.name + ".bias")),
                     .pointer("m->bn_stats + \(layout.statsOffset[node.name]!)")]
            return KernelView(template: "train.c", fn: fn, values: v, args: args)
        case .loss:
            v["loss"] = true
            return KernelView(template: "train.c", fn: fn, values: v,
                              args: [.buffer(node.inputs[0]), .pointer("labels"), .pointer("&m->loss")])
        case .convGradData:
            let f = g.nodes[a.forward!]
            v["convGradData"] = true
            v["k"] = f.attrs.kernel!
            v["s"] = f.attrs.stride!
            v["p"] = f.attrs.padding!
            // The gradient being added is read with its own (block output) channel count.
            let source = node.inputs.count > 1 ? g.shape(node.inputs[1]) : nil
            Self.shortcutValues(&v, a.gradShortcut, source: source, channels: source?.c)
            if let tile = a.tile {
                v["paddedGrad"] = true
                v["ob"] = tile.outChannels
                v["tw"] = tile.width
            }
            var args: [Argument] = [.buffer(node.inputs[0])]
            if a.tile?.paddedInput == true { args.append(.scratch(node.id)) }
            args.append(.pointer(p(f.name + ".weight")))
            if node.inputs.count > 1 { args.append(.buffer(node.inputs[1])) }
            return KernelView(template: "train.c", fn: fn, values: v, args: args)
        case .convGradWeight:
            let f = g.nodes[a.forward!]
            let x = g.shape(f.inputs[0]), y = f.shape!
            v["convGradWeight"] = true
            v["k"] = f.attrs.kernel!
            v["s"] = f.attrs.stride!
            v["p"] = f.attrs.padding!
            for (key, value) in ["c": x.c, "h": x.h, "w": x.w, "oc": y.c, "oh": y.h, "ow": y.w] { v[key] = value }
            v["inShape"] = "\(x)"
            v["outShape"] = "\(y)"
            var args: [Argument] = [.buffer(node.inputs[0]), .buffer(node.inputs[1])]
            if let tile = a.tile, tile.paddedInput {
                v["paddedInput"] = true
                v["ob"] = tile.outChannels
                args.append(.scratch(node.id))
            }
            args.append(.pointer(grad(f.name + ".weight")))
            if f.attrs.bias == true {
                v["hasBias"] = true
                args.append(.pointer(grad(f.name + ".bias")))
            }
            return KernelView(template: "train.c", fn: fn, values: v, args: args)
        case .batchNormGrad:
            let f = g.nodes[a.forward!]
            v["batchNormGrad"] = true
            v["reluMask"] = a.reluMask == true
            v["parts"] = a.reluMask == true ? "BN + ReLU" : "BN"
            var args: [Argument] = node.inputs.map(Argument.buffer)
            args += [.pointer(p(f.name + ".weight")), .pointer(grad(f.name + ".weight")), .pointer(grad(f.name + ".bias"))]
            if let second = g.secondOutput(of: node.id) {
                v["hasSecond"] = true
                args.append(.buffer(second.id))
            }
            return KernelView(template: "train.c", fn: fn, values: v, args: args)
        case .reluGrad:
            v["reluGrad"] = true
            return KernelView(template: "train.c", fn: fn, values: v, args: node.inputs.map(Argument.buffer))
        case .maxPoolGrad:
            let f = g.nodes[a.forward!]
            v["maxPoolGrad"] = true
            v["k"] = f.attrs.kernel!
            v["s"] = f.attrs.stride!
            v["p"] = f.attrs.padding!
            return KernelView(template: "train.c", fn: fn, values: v, args: node.inputs.map(Argument.buffer))
        case .globalAvgPoolGrad:
            v["globalAvgPoolGrad"] = true
            return KernelView(template: "train.c", fn: fn, values: v, args: [.buffer(node.inputs[0])])
        case .denseGrad:
            let f = g.nodes[a.forward!]
            v["denseGrad"] = true
            v["outCount"] = g.shape(node.inputs[0]).count
            return KernelView(template: "train.c", fn: fn, values: v,
                              args: [.buffer(node.inputs[0]), .buffer(node.inputs[1]), .pointer(p(f.name + ".weight")),
                                     .pointer(grad(f.name + ".weight")), .pointer(grad(f.name + ".bias"))])
        case .zeroPadGrad:
            v["zeroPadGrad"] = true
            v["s"] = a.stride!
            return KernelView(template: "train.c", fn: fn, values: v, args: [.buffer(node.inputs[0])])
        default:
            preconditionFailure("not a training op: \(node.op)")
        }
    }
}

