import Foundation

/// The ONNX front end: a `ModelProto` (as PyTorch exports a ResNet) becomes
/// the compiler's graph IR plus the weights, named as `NAME_load` reads them.
///
/// Approach. Nodes are visited in the file's order (ONNX requires a
/// topological order). Each value is a constant, a feature map of the network
/// (an IR node plus its ONNX per-sample dims), or a pending pattern. Ops whose
/// inputs are all constants (or need only static shapes) are evaluated on the
/// spot (`ConstantOps`): that is the constant-folding pass, and it turns the
/// small subgraphs exporters write for pads and reshape targets into numbers.
/// Ops on feature maps are matched onto the IR:
///
/// - Conv (group 1, dilation 1, square kernel and stride, equal pads; with or
///   without bias — eval-mode exports fold batch norm into it) → `conv`
/// - BatchNormalization (inference, ε = 1e-5) → `batchNorm`; Relu → `relu`
/// - Add of two feature maps → `add` (a conv-produced operand goes first, so
///   the shortcut add can ride in that conv's epilogue)
/// - MaxPool (square, equal pads, no ceil mode) → `maxPool`
/// - GlobalAveragePool, AveragePool whose window is the whole map, ReduceMean
///   over H and W → `globalAvgPool`
/// - Flatten (axis 1), Reshape to N×(C·H·W), Squeeze/Unsqueeze of unit axes:
///   views, no node (`dense` reads its input flattened)
/// - Gemm (transA 0; alpha, beta folded into the weights) and MatMul by a
///   constant followed by Add of a constant → `dense`
/// - Softmax over the classes → `softmax`; Identity, and Dropout in inference, pass through
/// - Option A: Slice with steps on H and W of a feature map (start 0, to the
///   end) is a pending subsample; Pad of it (or of a feature map) that only
///   appends zero channels → `zeroPad` (stride, channels). A subsample read
///   by anything else becomes a `zeroPad` that adds no channels.
///
/// Anything else — another op, an attribute value the IR cannot express, a
/// data type other than FLOAT for feature maps, a dynamic dimension other
/// than the batch — is an error naming the node, its op and the reason.
public enum ONNXImporter {
    /// What an import produces: the lowered graph and every parameter's data,
    /// named as the IR names the parameters.
    public struct Imported {
        public var graph: Graph
        public var weights: [String: SafeTensors.Tensor]
        /// True when the graph's output is logits (no final Softmax).
        public var outputsLogits: Bool
    }

    /// The opsets of the default domain the importer maps.
    public static let opsets: ClosedRange<Int64> = 11...21

    /// Reads and imports `path`; the network is named `name` (default: the file's base name).
    public static func load(_ path: String, name: String? = nil) throws -> Imported {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDirectory) else { throw CompileError("no such model file: \(path)") }
        if isDirectory.boolValue { throw CompileError("\(path) is a directory, not a model file") }
        guard let data = fm.contents(atPath: path) else { throw CompileError("cannot read the model file \(path) (permission denied?)") }
        let base = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
        return try decode([UInt8](data), source: path, name: name ?? networkName(from: base))
    }

    /// A lower-case C identifier from a file name (`ResNet-18.onnx` → `resnet_18`).
    public static func networkName(from base: String) -> String {
        var s = String(base.lowercased().unicodeScalars.map { ("a"..."z").contains($0) || ("0"..."9").contains($0) ? Character($0) : "_" })
        if s.isEmpty || s.first!.isNumber { s = "net_" + s }
        while s.contains("__") { s = s.replacingOccurrences(of: "__", with: "_") }
        if s.hasPrefix("_") { s = "net" + s }
        return String(s.prefix(64))
    }

    /// Decodes and imports a serialized ModelProto.
    public static func decode(_ bytes: [UInt8], source: String, name: String) throws -> Imported {
        let model = try ONNXModel.decode(bytes, source: source)
        var importer = Importer(model: model, source: source, name: name)
        return try importer.run()
    }
}

/// One value of the ONNX graph, as the importer sees it.
private enum Value {
    case constant(ConstTensor)
    /// A feature map: IR node `id`, ONNX dims without the batch (C, H, W, or one flattened dim).
    case map(id: Int, dims: [Int])
    /// Every `sh`-th row and `sw`-th column of map `id` (dims: the source's), waiting for its Pad.
    case subsample(id: Int, dims: [Int], sh: Int, sw: Int)
    /// x · W for a constant W (weight out×in), waiting for the Add of its bias.
    case matmul(id: Int, weight: [Float], out: Int, inFeatures: Int, node: ONNXNode)
}

private struct Importer {
    let model: ONNXModel
    let source: String
    let name: String
    var opset: Int64 = 0
    var values: [String: Value] = [:]
    var nodes: [Node] = []
    var weights: [String: SafeTensors.Tensor] = [:]
    var usedNames: Set<String> = ["input"]
    /// The ONNX node being imported, for messages.
    var current = ONNXNode()

    init(model: ONNXModel, source: String, name: String) {
        self.model = model
        self.source = source
        self.name = name
    }

    func fail(_ reason: String) -> CompileError {
        CompileError("\(source): node '\(current.name)' (\(current.opType)): \(reason)")
    }

    func fail(_ node: ONNXNode, _ reason: String) -> CompileError {
        CompileError("\(source): node '\(node.name)' (\(node.opType)): \(reason)")
    }

    mutating func run() throws -> ONNXImporter.Imported {
        guard let version = model.opsets[""] else { throw CompileError("\(source): the model imports no opset of the default ONNX domain") }
        guard ONNXImporter.opsets.contains(version) else {
            throw CompileError("\(source): opset \(version) is not supported (the importer maps opsets \(ONNXImporter.opsets.lowerBound) to \(ONNXImporter.opsets.upperBound))")
        }
        opset = version
        let g = model.graph
        for t in g.initializers {
            do {
                values[t.name] = .constant(try ConstTensor(t))
            } catch let r as Reason {
                throw CompileError("\(source): initializer '\(t.name)': \(r.text)")
            }
        }
        try addInput(g)
        for node in g.nodes {
            current = node
            do {
                try importNode(node)
            } catch let r as Reason {
                throw fail(r.text)
            }
        }
        guard g.outputs.count == 1 else {
            throw CompileError("\(source): the graph has \(g.outputs.count) outputs; one (N×classes) is supported")
        }
        let outName = g.outputs[0].name
        current = ONNXNode(name: "graph output '\(outName)'", opType: "output")
        guard let value = values[outName] else { throw CompileError("\(source): the graph output '\(outName)' is not computed by any node") }
        let out: Int, dims: [Int]
        do {
            (out, dims) = try map(value, outName)
        } catch let r as Reason {
            throw fail(r.text)
        }
        guard out != 0 else { throw CompileError("\(source): the graph output '\(outName)' is the input itself; the graph computes nothing") }
        guard dims.count == 1 else {
            throw CompileError("\(source): the graph output '\(outName)' has per-sample shape \(dims); an N×classes output (logits or probabilities) is supported")
        }
        // Keep the output's ancestors, in order (the output comes last).
        var live = Array(repeating: false, count: nodes.count)
        live[out] = true
        live[0] = true
        for node in nodes.reversed() where live[node.id] { for i in node.inputs { live[i] = true } }
        var graph = Graph(name: name, nodes: nodes).renumbered(order: nodes.indices.filter { live[$0] })
        graph.bottleneck = BottleneckStride.of(graph)
        var kept: [String: SafeTensors.Tensor] = [:]
        let layers = Set(graph.nodes.map(\.name))
        for (key, t) in weights where layers.contains(String(key[..<key.lastIndex(of: ".")!])) { kept[key] = t }
        return ONNXImporter.Imported(graph: graph, weights: kept, outputsLogits: graph.output.op != .softmax)
    }

    /// The one graph input that is not an initializer: FLOAT, N×C×H×W.
    mutating func addInput(_ g: ONNXGraph) throws {
        let initialised = Set(g.initializers.map(\.name))
        let real = g.inputs.filter { !initialised.contains($0.name) }
        guard real.count == 1 else {
            throw CompileError("\(source): the graph has \(real.count) inputs besides its initializers; one image batch (N×C×H×W) is supported")
        }
        let v = real[0]
        guard v.elemType == 1 else {
            throw CompileError("\(source): graph input '\(v.name)' has element type \(ConstTensor.typeName(v.elemType ?? 0)); FLOAT is supported")
        }
        guard let dims = v.dims, dims.count == 4 else {
            throw CompileError("\(source): graph input '\(v.name)' must be 4-D (N×C×H×W), got \(v.dims.map { "\($0.count)-D" } ?? "no shape")")
        }
        var chw: [Int] = []
        for (k, d) in dims.enumerated().dropFirst() {
            guard case let .value(n) = d, n > 0, n <= Int64(InferShapes.maxElements) else {
                throw CompileError("\(source): graph input '\(v.name)': dimension \(k) (\(["N", "C", "H", "W"][k])) is \(Self.describe(d)); only the batch may be dynamic")
            }
            chw.append(Int(n))
        }
        do {
            try Self.checkSize(chw)
        } catch let r as Reason {
            throw CompileError("\(source): graph input '\(v.name)': \(r.text)")
        }
        nodes.append(Node(id: 0, op: .input, name: "input", inputs: [], shape: Shape(c: chw[0], h: chw[1], w: chw[2])))
        values[v.name] = .map(id: 0, dims: chw)
    }

    /// A feature map's per-sample element count stays addressable (checked products, no trap).
    static func checkSize(_ dims: [Int]) throws {
        var n = 1
        for d in dims {
            let (p, o) = n.multipliedReportingOverflow(by: d)
            guard d > 0, !o, p <= InferShapes.maxElements else {
                throw Reason("an output of per-sample shape \(dims) is empty or too large (its byte count would overflow)")
            }
            n = p
        }
    }

    static func describe(_ d: ONNXValueInfo.Dim) -> String {
        switch d {
        case let .value(n): "\(n)"
        case let .param(p): "symbolic ('\(p)')"
        case .unknown: "unknown"
        }
    }

    // MARK: - Values

    func value(_ node: ONNXNode, _ k: Int) throws -> Value? {
        guard k < node.inputs.count, !node.inputs[k].isEmpty else { return nil }
        guard let v = values[node.inputs[k]] else { throw Reason("input '\(node.inputs[k])' is not produced by an earlier node, an initializer or the graph input") }
        return v
    }

    func constant(_ node: ONNXNode, _ k: Int, _ what: String) throws -> ConstTensor {
        guard let v = try value(node, k) else { throw Reason("\(what) (input #\(k + 1)) is missing") }
        guard case let .constant(t) = v else { throw Reason("\(what) (input #\(k + 1), '\(node.inputs[k])') must be a constant (an initializer or computable at import), not computed from the network input") }
        return t
    }

    /// A feature map for input `k`, materialising pending patterns.
    mutating func map(_ node: ONNXNode, _ k: Int) throws -> (Int, [Int]) {
        guard let v = try value(node, k) else { throw Reason("input #\(k + 1) is missing") }
        return try map(v, node.inputs[k])
    }

    mutating func map(_ v: Value, _ what: String) throws -> (Int, [Int]) {
        switch v {
        case let .map(id, dims):
            return (id, dims)
        case .constant:
            throw Reason("input '\(what)' is a constant; this op is supported only on the network's feature maps")
        case let .subsample(id, dims, sh, sw):
            guard sh == sw else { throw Reason("a strided slice with different steps on H (\(sh)) and W (\(sw)) is not supported") }
            var a = Attributes()
            a.outChannels = dims[0]
            a.stride = sh
            let z = add(.zeroPad, name: layerName(current, parameters: false), inputs: [id], attrs: a)
            return (z, [dims[0], (dims[1] - 1) / sh + 1, (dims[2] - 1) / sw + 1])
        case let .matmul(id, weight, out, inFeatures, node):
            let d = dense(node, input: id, weight: weight, bias: Array(repeating: 0, count: out), out: out, inFeatures: inFeatures)
            return (d, [out])
        }
    }

    /// A 4-D (per-sample C×H×W) feature map.
    mutating func image(_ node: ONNXNode, _ k: Int) throws -> (Int, [Int]) {
        let (id, dims) = try map(node, k)
        guard dims.count == 3 else { throw Reason("expects an N×C×H×W input, got per-sample shape \(dims)") }
        return (id, dims)
    }

    mutating func add(_ op: Op, name: String, inputs: [Int], attrs: Attributes = Attributes()) -> Int {
        nodes.append(Node(id: nodes.count, op: op, name: name, inputs: inputs, attrs: attrs))
        return nodes.count - 1
    }

    /// A layer name from the exporter's node name (`/layer1/layer1.0/conv1/Conv`
    /// → `layer1.0.conv1`): each scope that extends the previous one replaces
    /// it, others nest. Parameterised layers take the scope (their parameters
    /// then get torchvision names); others add the op part. A weight
    /// initializer named `X.weight` names its layer `X`. Only [A-Za-z0-9_.]
    /// are kept; repeats get `_2`, `_3`, ….
    mutating func layerName(_ node: ONNXNode, parameters: Bool, weight: String? = nil) -> String {
        func clean(_ s: String) -> String {
            String(s.unicodeScalars.map { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_" || $0 == "." ? Character($0) : "_" })
                .trimmingCharacters(in: CharacterSet(charactersIn: "._"))
        }
        var base = ""
        if let w = weight, w.hasSuffix(".weight"), !w.contains("::") {
            base = clean(String(w.dropLast(".weight".count)))
        }
        if base.isEmpty {
            var parts = node.name.split(separator: "/").map(String.init)
            let last = parts.popLast() ?? ""
            var scope: [String] = []
            for p in parts {
                if let previous = scope.last, p.hasPrefix(previous + ".") { scope[scope.count - 1] = p } else { scope.append(p) }
            }
            if !parameters || scope.isEmpty { scope.append(last.isEmpty ? node.opType : last.lowercased()) }
            base = clean(scope.joined(separator: "."))
        }
        if base.isEmpty { base = node.opType.lowercased() }
        if base.isEmpty { base = "layer" }
        var candidate = base
        var k = 2
        while usedNames.contains(candidate) { candidate = "\(base)_\(k)"; k += 1 }
        usedNames.insert(candidate)
        return candidate
    }

    mutating func dense(_ node: ONNXNode, input: Int, weight: [Float], bias: [Float], out: Int, inFeatures: Int) -> Int {
        var a = Attributes()
        a.outFeatures = out
        let name = layerName(node, parameters: true, weight: node.inputs.count > 1 ? node.inputs[1] : nil)
        weights[name + ".weight"] = SafeTensors.Tensor(weight, shape: [out, inFeatures])
        weights[name + ".bias"] = SafeTensors.Tensor(bias, shape: [out])
        return add(.dense, name: name, inputs: [input], attrs: a)
    }

    // MARK: - Attributes

    func int(_ node: ONNXNode, _ name: String, default d: Int64) throws -> Int64 {
        guard let a = node.attributes[name] else { return d }
        guard a.type == 2 || (a.type == 0 && a.ints.isEmpty) else { throw Reason("attribute '\(name)' must be an integer") }
        return a.i
    }

    func ints(_ node: ONNXNode, _ name: String) throws -> [Int]? {
        guard let a = node.attributes[name] else { return nil }
        return try a.ints.map {
            guard let v = Int(exactly: $0), v >= -InferShapes.maxElements, v <= InferShapes.maxElements else { throw Reason("attribute '\(name)' has value \($0) out of range") }
            return v
        }
    }

    func string(_ node: ONNXNode, _ name: String, default d: String) -> String {
        node.attributes[name].map(\.string) ?? d
    }

    /// Rejects attributes the importer does not understand for this op.
    func only(_ node: ONNXNode, _ known: Set<String>) throws {
        for a in node.attributes.keys.sorted() where !known.contains(a) {
            throw Reason("attribute '\(a)' is not supported")
        }
    }

    /// Square kernel, equal strides and pads (ONNX order: begins then ends), unit dilations.
    func window(_ node: ONNXNode, kernel: [Int]) throws -> (k: Int, s: Int, p: Int) {
        let autoPad = string(node, "auto_pad", default: "NOTSET")
        guard autoPad == "NOTSET" || autoPad == "VALID" else { throw Reason("auto_pad \(autoPad) is not supported (export with explicit pads)") }
        guard kernel.count == 2, kernel[0] == kernel[1] else { throw Reason("kernel \(kernel) is not square 2-D") }
        let strides = try ints(node, "strides") ?? [1, 1]
        guard strides.count == 2, strides[0] == strides[1], strides[0] >= 1 else { throw Reason("strides \(strides) are not equal in H and W") }
        let pads = try ints(node, "pads") ?? [0, 0, 0, 0]
        guard pads.count == 4, Set(pads).count == 1, pads[0] >= 0 else { throw Reason("pads \(pads) are not the same on every side") }
        if autoPad == "VALID" && pads[0] != 0 { throw Reason("auto_pad VALID with pads \(pads)") }
        let dilations = try ints(node, "dilations") ?? [1, 1]
        guard dilations.allSatisfy({ $0 == 1 }) else { throw Reason("dilations \(dilations) are not supported (only 1)") }
        return (kernel[0], strides[0], pads[0])
    }

    static func windowOut(_ n: Int, _ k: Int, _ s: Int, _ p: Int) throws -> Int {
        let span = n + 2 * p - k
        guard span >= 0 else { throw Reason("kernel \(k) with padding \(p) does not fit the input size \(n)") }
        return span / s + 1
    }

    // MARK: - Nodes

    mutating func importNode(_ node: ONNXNode) throws {
        guard node.domain.isEmpty else { throw Reason("operator domain '\(node.domain)' is not supported (only the default ONNX domain)") }
        let op = node.opType
        let inputs = try (0..<node.inputs.count).map { try value(node, $0) }
        let constants = inputs.compactMap { v -> ConstTensor? in if case let .constant(t) = v { t } else { nil } }
        let present = inputs.compactMap { $0 }
        // Constant folding: every input known at import.
        if ConstantOps.names.contains(op), op != "Shape", constants.count == present.count {
            let folded = try ConstantOps.evaluate(node, inputs.map { v in if case let .constant(t) = v { t } else { nil } }, opset: opset)
            try define(node, .constant(folded))
            return
        }
        switch op {
        case "Shape":
            guard let x = inputs.first ?? nil else { throw Reason("input is missing") }
            let full: [Int64?]
            switch x {
            case let .constant(t): full = t.dims.map { Int64($0) }
            case let .map(_, dims): full = [nil] + dims.map { Int64($0) }
            case let .subsample(_, dims, sh, sw): full = [nil, Int64(dims[0]), Int64((dims[1] - 1) / sh + 1), Int64((dims[2] - 1) / sw + 1)]
            case let .matmul(_, _, out, _, _): full = [nil, Int64(out)]
            }
            let rank = full.count
            func clampAxis(_ a: Int64) -> Int { let v = a < 0 ? Int(a) + rank : Int(clamping: a); return min(max(v, 0), rank) }
            let start = clampAxis(try int(node, "start", default: 0))
            let end = clampAxis(try int(node, "end", default: Int64(rank)))
            let picked = start < end ? Array(full[start..<end]) : []
            try define(node, .constant(ConstTensor(ints: picked, dims: [picked.count])))
        case "Identity":
            guard let x = inputs.first ?? nil else { throw Reason("input is missing") }
            try define(node, x)
        case "Dropout":
            if node.outputs.count > 1 && !node.outputs[1].isEmpty { throw Reason("the mask output is not supported") }
            if inputs.count > 2, let t = inputs[2], case let .constant(c) = t, try c.ints().first != 0 {
                throw Reason("training_mode true is not supported (inference export)")
            }
            guard let x = inputs.first ?? nil else { throw Reason("input is missing") }
            try define(node, x)
        case "Conv":
            try conv(node)
        case "BatchNormalization":
            try batchNorm(node)
        case "Relu":
            let (x, dims) = try map(node, 0)
            try define(node, .map(id: add(.relu, name: layerName(node, parameters: false), inputs: [x]), dims: dims))
        case "Add":
            guard inputs.count == 2, let a = inputs[0], let b = inputs[1] else { throw Reason("Add needs two inputs") }
            try addNode(node, a, b)
        case "MaxPool":
            try only(node, ["kernel_shape", "strides", "pads", "dilations", "ceil_mode", "auto_pad", "storage_order"])
            if node.outputs.count > 1 && !node.outputs[1].isEmpty { throw Reason("the Indices output is not supported") }
            guard try int(node, "ceil_mode", default: 0) == 0 else { throw Reason("ceil_mode 1 is not supported") }
            guard try int(node, "storage_order", default: 0) == 0 else { throw Reason("storage_order 1 is not supported") }
            let (x, dims) = try image(node, 0)
            guard let kernel = try ints(node, "kernel_shape") else { throw Reason("kernel_shape is missing") }
            let (k, s, p) = try window(node, kernel: kernel)
            guard p <= k / 2 else { throw Reason("padding \(p) is more than half the kernel \(k)") }
            var a = Attributes()
            a.kernel = k; a.stride = s; a.padding = p
            let out = [dims[0], try Self.windowOut(dims[1], k, s, p), try Self.windowOut(dims[2], k, s, p)]
            try define(node, .map(id: add(.maxPool, name: layerName(node, parameters: false), inputs: [x], attrs: a), dims: out))
        case "GlobalAveragePool":
            let (x, dims) = try image(node, 0)
            try define(node, .map(id: add(.globalAvgPool, name: layerName(node, parameters: false), inputs: [x]), dims: [dims[0], 1, 1]))
        case "AveragePool":
            try only(node, ["kernel_shape", "strides", "pads", "ceil_mode", "count_include_pad", "auto_pad", "dilations"])
            let (x, dims) = try image(node, 0)
            guard let kernel = try ints(node, "kernel_shape") else { throw Reason("kernel_shape is missing") }
            guard kernel == [dims[1], dims[2]] else {
                throw Reason("an average pool of \(kernel) over a \(dims[1])×\(dims[2]) map is not supported (only a window covering the whole map, as a global average pool)")
            }
            guard (try ints(node, "pads") ?? [0, 0, 0, 0]).allSatisfy({ $0 == 0 }) else { throw Reason("padding is not supported") }
            guard (try ints(node, "dilations") ?? [1, 1]).allSatisfy({ $0 == 1 }) else { throw Reason("dilations are not supported") }
            let autoPad = string(node, "auto_pad", default: "NOTSET")
            guard autoPad == "NOTSET" || autoPad == "VALID" else { throw Reason("auto_pad \(autoPad) is not supported") }
            try define(node, .map(id: add(.globalAvgPool, name: layerName(node, parameters: false), inputs: [x]), dims: [dims[0], 1, 1]))
        case "ReduceMean":
            let (x, dims) = try image(node, 0)
            let axes: [Int]
            if opset >= 18 {
                axes = try inputs.count > 1 && inputs[1] != nil ? constant(node, 1, "axes").staticInts() : []
            } else {
                axes = try ints(node, "axes") ?? []
            }
            let normalised = try axes.map { try normaliseAxis($0, rank: 4) }.sorted()
            guard normalised == [2, 3] else { throw Reason("a mean over axes \(axes) is not supported (only over H and W, axes [2, 3])") }
            let keep = try int(node, "keepdims", default: 1) != 0
            try define(node, .map(id: add(.globalAvgPool, name: layerName(node, parameters: false), inputs: [x]), dims: keep ? [dims[0], 1, 1] : [dims[0]]))
        case "Flatten":
            let (x, dims) = try map(node, 0)
            let axis = try normaliseAxis(Int(try int(node, "axis", default: 1)), rank: dims.count + 1)
            guard axis == 1 else { throw Reason("Flatten with axis \(axis) is not supported (only axis 1: N × features)") }
            try define(node, .map(id: x, dims: [dims.reduce(1, *)]))
        case "Reshape":
            let (x, dims) = try map(node, 0)
            let target = try constant(node, 1, "shape").ints()
            try define(node, .map(id: x, dims: try view(dims, target, allowZero: try int(node, "allowzero", default: 0) != 0)))
        case "Squeeze", "Unsqueeze":
            let (x, dims) = try map(node, 0)
            let axes: [Int]?
            if opset >= 13 {
                axes = try inputs.count > 1 && inputs[1] != nil ? constant(node, 1, "axes").staticInts() : nil
            } else {
                axes = try ints(node, "axes")
            }
            let full = [Int.max] + dims   // the batch axis must stay where it is
            var out: [Int]
            if op == "Squeeze" {
                guard let axes else { throw Reason("Squeeze without axes is not supported (the batch could be squeezed)") }
                out = try ConstantOps.squeeze(full, axes)
            } else {
                guard let axes else { throw Reason("Unsqueeze needs axes") }
                out = try ConstantOps.unsqueeze(full, axes)
            }
            guard out.first == Int.max else { throw Reason("moves the batch axis") }
            out.removeFirst()
            try define(node, .map(id: x, dims: try checkView(dims, out)))
        case "Gemm":
            try gemm(node)
        case "MatMul":
            let (x, dims) = try map(node, 0)
            let w = try constant(node, 1, "B")
            guard dims.count == 1, w.dims.count == 2, w.dims[0] == dims[0] else {
                throw Reason("MatMul of N×\(dims) by \(w.dims) is not supported (only N×in by a constant in×out)")
            }
            let (inF, out) = (w.dims[0], w.dims[1])
            let v = try w.floats()
            var transposed = [Float](repeating: 0, count: v.count)
            for i in 0..<inF { for o in 0..<out { transposed[o * inF + i] = v[i * out + o] } }
            try define(node, .matmul(id: x, weight: transposed, out: out, inFeatures: inF, node: node))
        case "Softmax":
            let (x, dims) = try map(node, 0)
            let axis = try int(node, "axis", default: opset >= 13 ? -1 : 1)
            guard dims.count == 1, axis == 1 || axis == -1 else {
                throw Reason("softmax over axis \(axis) of per-sample shape \(dims) is not supported (only over the classes of an N×classes tensor)")
            }
            guard nodes[x].op != .input else { throw Reason("softmax of the network input is not supported") }
            try define(node, .map(id: add(.softmax, name: layerName(node, parameters: false), inputs: [x]), dims: dims))
        case "Slice":
            try slice(node)
        case "Pad":
            try pad(node)
        default:
            if ConstantOps.names.contains(op) {
                throw Reason("\(op) on a feature map is not supported (only on constants and shapes, folded at import)")
            }
            throw Reason("operator \(op) is not supported; supported: Conv, BatchNormalization, Relu, Add, MaxPool, GlobalAveragePool, AveragePool (whole map), ReduceMean (H, W), Flatten, Reshape, Squeeze, Unsqueeze, Gemm, MatMul, Softmax, Identity, Dropout, Slice and Pad (option-A shortcut), and on constants \(ConstantOps.names.sorted().joined(separator: ", "))")
        }
    }

    mutating func define(_ node: ONNXNode, _ v: Value) throws {
        guard let out = node.outputs.first, !out.isEmpty else { throw Reason("has no output") }
        if case let .map(_, dims) = v { try Self.checkSize(dims) }
        values[out] = v
        for extra in node.outputs.dropFirst() where !extra.isEmpty && node.opType != "Dropout" {
            throw Reason("a second output ('\(extra)') is not supported")
        }
    }

    /// The per-sample dims a Reshape target gives a feature map: the batch
    /// stays first (the batch symbol, 0, or a −1 the rest determines), and the
    /// rest is the map's own dims or flattened.
    func view(_ dims: [Int], _ target: [Int64?], allowZero: Bool) throws -> [Int] {
        guard let first = target.first else { throw Reason("reshape to a scalar is not supported") }
        let count = dims.reduce(1, *)
        var rest: [Int] = []
        for (k, t) in target.enumerated().dropFirst() {
            guard let t else { throw Reason("the batch size appears at position \(k) of the reshape target") }
            guard let v = Int(exactly: t), v >= -1, v <= InferShapes.maxElements else { throw Reason("reshape target entry \(t) is not supported") }
            if v == 0 && !allowZero {
                guard k <= dims.count else { throw Reason("entry 0 at position \(k) has no dimension to copy") }
                rest.append(dims[k - 1])
            } else {
                rest.append(v)
            }
        }
        let batchOK = first == nil || (first == 0 && !allowZero) || (first == -1 && !rest.contains(-1))
        guard batchOK else { throw Reason("the reshape target's first entry \(first.map(String.init) ?? "N") changes the batch dimension (only N×… views are supported)") }
        if let k = rest.firstIndex(of: -1) {
            guard rest.filter({ $0 == -1 }).count == 1 else { throw Reason("more than one -1 in the reshape target") }
            let known = rest.filter { $0 != -1 }.reduce(1, *)
            guard known > 0, count % known == 0 else { throw Reason("cannot reshape per-sample \(dims) to \(target)") }
            rest[k] = count / known
        }
        return try checkView(dims, rest)
    }

    /// A view keeps the elements and is either the map's C×H×W or flat.
    func checkView(_ dims: [Int], _ out: [Int]) throws -> [Int] {
        let count = dims.reduce(1, *)
        guard out.reduce(1, *) == count else { throw Reason("cannot view per-sample \(dims) as \(out)") }
        let squeezed = out.filter { $0 != 1 }
        if squeezed.count <= 1 { return [count] }
        if out == dims { return dims }
        throw Reason("a view of per-sample \(dims) as \(out) is not supported (only flattening to N×features)")
    }

    mutating func conv(_ node: ONNXNode) throws {
        try only(node, ["kernel_shape", "strides", "pads", "dilations", "group", "auto_pad"])
        let (x, dims) = try image(node, 0)
        let w = try constant(node, 1, "weight")
        guard w.dims.count == 4 else { throw Reason("weight has shape \(w.dims); O×I×kH×kW expected") }
        guard try int(node, "group", default: 1) == 1 else { throw Reason("group \(node.attributes["group"]!.i) is not supported (only 1)") }
        guard w.dims[1] == dims[0] else { throw Reason("weight expects \(w.dims[1]) input channels, the input has \(dims[0])") }
        let kernel = try ints(node, "kernel_shape") ?? [w.dims[2], w.dims[3]]
        guard kernel == [w.dims[2], w.dims[3]] else { throw Reason("kernel_shape \(kernel) does not match the weight \(w.dims)") }
        let (k, s, p) = try window(node, kernel: kernel)
        let oc = w.dims[0]
        guard oc > 0 else { throw Reason("weight has no output channels") }
        let b = try value(node, 2) == nil ? nil : constant(node, 2, "bias")
        if let b, b.count != oc { throw Reason("bias has \(b.count) values for \(oc) output channels") }
        let name = layerName(node, parameters: true, weight: node.inputs[1])
        var a = Attributes()
        a.outChannels = oc; a.kernel = k; a.stride = s; a.padding = p; a.bias = b != nil
        weights[name + ".weight"] = SafeTensors.Tensor(try w.floats(), shape: w.dims)
        if let b { weights[name + ".bias"] = SafeTensors.Tensor(try b.floats(), shape: [oc]) }
        let out = [oc, try Self.windowOut(dims[1], k, s, p), try Self.windowOut(dims[2], k, s, p)]
        try define(node, .map(id: add(.conv, name: name, inputs: [x], attrs: a), dims: out))
    }

    mutating func batchNorm(_ node: ONNXNode) throws {
        try only(node, ["epsilon", "momentum", "training_mode", "spatial"])
        guard try int(node, "training_mode", default: 0) == 0 else { throw Reason("training_mode 1 is not supported (export in eval mode)") }
        for extra in node.outputs.dropFirst() where !extra.isEmpty { throw Reason("the running-statistics outputs are not supported (export in eval mode)") }
        let eps = node.attributes["epsilon"]?.f ?? 1e-5
        guard eps == Float(1e-5) else { throw Reason("epsilon \(eps) is not supported (the compiler's batch norm uses PyTorch's 1e-5)") }
        let (x, dims) = try image(node, 0)
        let c = dims[0]
        let parts = try ["scale", "B", "mean", "var"].enumerated().map { k, what -> [Float] in
            let t = try constant(node, k + 1, what)
            guard t.count == c else { throw Reason("\(what) has \(t.count) values for \(c) channels") }
            return try t.floats()
        }
        let name = layerName(node, parameters: true, weight: node.inputs.count > 1 ? node.inputs[1] : nil)
        for (suffix, v) in zip(["weight", "bias", "running_mean", "running_var"], parts) {
            weights["\(name).\(suffix)"] = SafeTensors.Tensor(v, shape: [c])
        }
        guard parts[3].allSatisfy({ $0 >= 0 }) else { throw Reason("running variance has a negative value") }
        try define(node, .map(id: add(.batchNorm, name: name, inputs: [x]), dims: dims))
    }

    mutating func addNode(_ node: ONNXNode, _ a: Value, _ b: Value) throws {
        // x·W + b: the bias of a MatMul.
        for (m, c) in [(a, b), (b, a)] {
            if case let .matmul(id, weight, out, inF, mm) = m, case let .constant(bias) = c {
                guard bias.count == out, bias.dims.last == out else { throw Reason("bias of shape \(bias.dims) for \(out) outputs is not supported") }
                let d = dense(mm, input: id, weight: weight, bias: try bias.floats(), out: out, inFeatures: inF)
                try define(node, .map(id: d, dims: [out]))
                return
            }
        }
        if case .constant = a { throw Reason("adding a constant to a feature map is not supported (only as a MatMul's bias)") }
        if case .constant = b { throw Reason("adding a constant to a feature map is not supported (only as a MatMul's bias)") }
        var (x, xd) = try map(a, node.inputs[0])
        var (y, yd) = try map(b, node.inputs[1])
        guard xd.reduce(1, *) == yd.reduce(1, *), xd.count == yd.count || xd.count == 1 || yd.count == 1,
              nodes[x].op != .input || nodes[y].op != .input else {
            throw Reason("operands of per-sample shapes \(xd) and \(yd) differ (broadcasting is not supported)")
        }
        if xd.count == 3 && yd.count == 3 && xd != yd { throw Reason("operands of per-sample shapes \(xd) and \(yd) differ") }
        // The IR's add is branch + shortcut; the fused kernel absorbs the add into inputs[0]'s conv.
        let convLike: Set<Op> = [.conv, .batchNorm]
        if !convLike.contains(nodes[x].op) && convLike.contains(nodes[y].op) {
            swap(&x, &y)
            swap(&xd, &yd)
        }
        try define(node, .map(id: add(.add, name: layerName(node, parameters: false), inputs: [x, y]), dims: xd))
    }

    mutating func gemm(_ node: ONNXNode) throws {
        try only(node, ["alpha", "beta", "transA", "transB"])
        let (x, dims) = try map(node, 0)
        guard try int(node, "transA", default: 0) == 0 else { throw Reason("transA 1 is not supported") }
        let w = try constant(node, 1, "B")
        let transB = try int(node, "transB", default: 0) != 0
        guard dims.count == 1, w.dims.count == 2, (transB ? w.dims[1] : w.dims[0]) == dims[0] else {
            throw Reason("Gemm of N×\(dims) by \(w.dims) (transB \(transB ? 1 : 0)) is not supported")
        }
        let alpha = node.attributes["alpha"]?.f ?? 1, beta = node.attributes["beta"]?.f ?? 1
        let inF = dims[0], out = transB ? w.dims[0] : w.dims[1]
        var v = try w.floats().map { $0 * alpha }
        if !transB {
            var t = [Float](repeating: 0, count: v.count)
            for i in 0..<inF { for o in 0..<out { t[o * inF + i] = v[i * out + o] } }
            v = t
        }
        var bias = [Float](repeating: 0, count: out)
        if try value(node, 2) != nil {
            let c = try constant(node, 2, "C")
            let cv = try c.floats()
            if cv.count == out && c.dims.last == out {
                bias = cv.map { $0 * beta }
            } else if cv.count == 1 {
                bias = Array(repeating: cv[0] * beta, count: out)
            } else {
                throw Reason("C of shape \(c.dims) for \(out) outputs is not supported")
            }
        }
        try define(node, .map(id: dense(node, input: x, weight: v, bias: bias, out: out, inFeatures: inF), dims: [out]))
    }

    /// Slice of a feature map: every step-th row / column from 0 to the end
    /// (option A's x[:, :, ::s, ::s]); slicing the channels or batch whole is allowed.
    mutating func slice(_ node: ONNXNode) throws {
        guard let x = try value(node, 0) else { throw Reason("input is missing") }
        var (id, dims, sh, sw): (Int, [Int], Int, Int)
        switch x {
        case let .subsample(i, d, h, w): (id, dims, sh, sw) = (i, d, h, w)
        default:
            let (i, d) = try image(node, 0)
            (id, dims, sh, sw) = (i, d, 1, 1)
        }
        let starts = try constant(node, 1, "starts").staticInts(), ends = try constant(node, 2, "ends").staticInts()
        let axes = try value(node, 3) == nil ? Array(0..<starts.count) : constant(node, 3, "axes").staticInts()
        let steps = try value(node, 4) == nil ? Array(repeating: 1, count: starts.count) : constant(node, 4, "steps").staticInts()
        guard axes.count == starts.count, ends.count == starts.count, steps.count == starts.count else {
            throw Reason("starts, ends, axes and steps differ in length")
        }
        let current = [Int.max, dims[0], (dims[1] - 1) / sh + 1, (dims[2] - 1) / sw + 1]
        for k in starts.indices {
            let a = try normaliseAxis(axes[k], rank: 4)
            let whole = starts[k] == 0 && ends[k] >= current[a] && steps[k] >= 1
            guard whole else {
                throw Reason("a slice of axis \(a) from \(starts[k]) to \(ends[k]) step \(steps[k]) is not supported (only every step-th row or column from 0 to the end, as option A's x[:, :, ::s, ::s])")
            }
            guard steps[k] == 1 || a >= 2 else { throw Reason("a strided slice of axis \(a) is not supported (only of H and W)") }
            if a == 2 && steps[k] > 1 { guard sh == 1 else { throw Reason("H is sliced twice") }; sh = steps[k] }
            if a == 3 && steps[k] > 1 { guard sw == 1 else { throw Reason("W is sliced twice") }; sw = steps[k] }
        }
        try define(node, (sh, sw) == (1, 1) ? .map(id: id, dims: dims) : .subsample(id: id, dims: dims, sh: sh, sw: sw))
    }

    /// Pad that appends zero channels (option A), of a subsample or a feature map.
    mutating func pad(_ node: ONNXNode) throws {
        try only(node, ["mode"])
        let mode = string(node, "mode", default: "constant")
        guard mode == "constant" else { throw Reason("mode \(mode) is not supported (only constant zeros)") }
        guard let x = try value(node, 0) else { throw Reason("input is missing") }
        var pads = try constant(node, 1, "pads").staticInts()
        if try value(node, 2) != nil {
            let v = try constant(node, 2, "constant_value").floats()
            guard v.allSatisfy({ $0 == 0 }) else { throw Reason("padding with \(v) is not supported (only zeros)") }
        }
        if try value(node, 3) != nil {
            let axes = try constant(node, 3, "axes").staticInts().map { try normaliseAxis($0, rank: 4) }
            guard pads.count == 2 * axes.count else { throw Reason("pads \(pads) do not match axes \(axes)") }
            var full = Array(repeating: 0, count: 8)
            for (k, a) in axes.enumerated() { full[a] = pads[k]; full[4 + a] = pads[axes.count + k] }
            pads = full
        }
        guard pads.count == 8 else { throw Reason("pads \(pads) for a 4-D tensor expected 8 values") }
        let (id, dims, stride): (Int, [Int], Int)
        switch x {
        case let .subsample(i, d, sh, sw):
            guard sh == sw else { throw Reason("a strided slice with different steps on H (\(sh)) and W (\(sw)) is not supported") }
            (id, dims, stride) = (i, d, sh)
        default:
            let (i, d) = try image(node, 0)
            (id, dims, stride) = (i, d, 1)
        }
        let appended = pads[5]
        guard pads.enumerated().allSatisfy({ $0.offset == 5 || $0.element == 0 }), appended >= 0 else {
            throw Reason("pads \(pads) are not supported (only zero channels appended after the input's: [0, 0, 0, 0, 0, k, 0, 0], option A)")
        }
        let outDims = [dims[0] + appended, (dims[1] - 1) / stride + 1, (dims[2] - 1) / stride + 1]
        if appended == 0 && stride == 1 {
            try define(node, .map(id: id, dims: dims))
            return
        }
        var a = Attributes()
        a.outChannels = dims[0] + appended
        a.stride = stride
        try define(node, .map(id: add(.zeroPad, name: layerName(node, parameters: false), inputs: [id], attrs: a), dims: outDims))
    }
}

extension ONNXNode {
    init(name: String, opType: String) {
        self.init()
        self.name = name
        self.opType = opType
    }
}

extension ONNXImporter {
    /// The imported weights as a safetensors file, in state-dict order (the
    /// order InferShapes lists the parameters), under the names `NAME_load` reads.
    public static func safetensors(_ imported: Imported) throws -> Data {
        let analysed = try Pipeline.analysis.run(imported.graph)
        var tensors: [(String, SafeTensors.Tensor)] = []
        for p in analysed.parameters {
            guard let t = imported.weights[p.name], t.shape == p.shape else {
                throw CompileError("internal error: the ONNX import has no data of shape \(p.shape) for parameter \(p.name)")
            }
            tensors.append((p.name, t))
        }
        return SafeTensors.encode(tensors)
    }
}
