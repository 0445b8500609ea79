/// InferShapes: every node's per-sample shape, PyTorch's arithmetic.
///
/// Requires Validate. Output size of conv and max pool is ⌊(H + 2p − k)/s⌋ + 1;
/// a size below 1 is an error naming the layer. Shortcut nodes lowered from a
/// residual block get their stride and channels from the branch output
/// (`shapeOf`): stride = input size / branch size, which must divide exactly.
/// Also collects the parameters in state-dict order and rejects sizes whose
/// byte counts overflow.
public struct InferShapes: Pass {
    public var name: String { "InferShapes" }
    public init() {}

    /// Largest tensor we agree to address: byte counts stay well inside Int and size_t.
    static let maxElements = Int(Int32.max) * 16

    public func run(_ input: Graph) throws -> Graph {
        var g = input
        var parameters: [Parameter] = []
        for id in g.nodes.indices {
            var node = g.nodes[id]
            if node.op == .input {
                guard let s = node.shape else { throw CompileError(layer: node.name, "input shape missing") }
                try Self.checkSize(s, node.name, batchHint: true)
                continue
            }
            let x = g.shape(node.inputs[0])
            let out: Shape
            switch node.op {
            case .input:
                fatalError("unreachable")
            case .conv:
                if let ref = node.attrs.shapeOf {
                    // Projection shortcut: channels and stride follow the branch.
                    let target = g.shape(ref)
                    node.attrs.outChannels = target.c
                    node.attrs.stride = try Self.shortcutStride(from: x, to: target, node.name)
                }
                let k = node.attrs.kernel!, s = node.attrs.stride!, p = node.attrs.padding!
                let oc = node.attrs.outChannels!
                out = Shape(c: oc, h: try Self.window(x.h, k, s, p, node.name, "height"),
                            w: try Self.window(x.w, k, s, p, node.name, "width"))
                try Self.checkSize(out, node.name, batchHint: false)   // the output's size is the clearer message
                let weight = try Self.parameter(node.name + ".weight", [oc, x.c, k, k], .weight, node.name)
                parameters.append(weight)
                if node.attrs.bias == true {
                    parameters.append(Parameter(name: node.name + ".bias", shape: [oc], kind: .bias, layer: node.name,
                                               fanIn: weight.count / oc))
                }
            case .batchNorm:
                out = x
                for (suffix, kind) in [("weight", Parameter.Kind.weight), ("bias", .bias),
                                       ("running_mean", .runningMean), ("running_var", .runningVar)] {
                    parameters.append(Parameter(name: "\(node.name).\(suffix)", shape: [x.c], kind: kind, layer: node.name))
                }
            case .relu, .softmax:
                out = x
            case .maxPool:
                let k = node.attrs.kernel!, s = node.attrs.stride!, p = node.attrs.padding!
                out = Shape(c: x.c, h: try Self.window(x.h, k, s, p, node.name, "height"),
                            w: try Self.window(x.w, k, s, p, node.name, "width"))
            case .globalAvgPool:
                out = Shape(c: x.c, h: 1, w: 1)
            case .dense:
                let o = node.attrs.outFeatures!
                out = Shape(c: o, h: 1, w: 1)
                parameters.append(try Self.parameter(node.name + ".weight", [o, x.count], .weight, node.name))
                parameters.append(Parameter(name: node.name + ".bias", shape: [o], kind: .bias, layer: node.name, fanIn: x.count))
            case .zeroPad:
                if let ref = node.attrs.shapeOf {
                    let target = g.shape(ref)
                    node.attrs.outChannels = target.c
                    node.attrs.stride = try Self.shortcutStride(from: x, to: target, node.name)
                }
                let s = node.attrs.stride!, oc = node.attrs.outChannels!
                if oc < x.c {
                    throw CompileError(layer: node.name, "zero-pad shortcut cannot reduce channels (\(x.c) → \(oc)); use .projection")
                }
                out = Shape(c: oc, h: (x.h - 1) / s + 1, w: (x.w - 1) / s + 1)
            case .add:
                let y = g.shape(node.inputs[1])
                if x != y {
                    // Shortcuts lowered as zeroPad/projection are resolved to the branch's
                    // shape above, so a mismatch here is an identity shortcut.
                    let block = node.name.hasSuffix(".add") ? String(node.name.dropLast(4)) : node.name
                    throw CompileError(layer: block, "identity shortcut, but the branch changes the shape \(y) → \(x); use shortcut .zeroPad or .projection")
                }
                out = x
            case .fusedConv, .batchNormAct, .loss, .convGradData, .convGradWeight, .batchNormGrad, .reluGrad,
                 .maxPoolGrad, .globalAvgPoolGrad, .denseGrad, .zeroPadGrad, .secondOutput, .sgdUpdate:
                throw CompileError(layer: node.name, "InferShapes runs before fusion and differentiation")
            }
            try Self.checkSize(out, node.name, batchHint: false)
            node.shape = out
            g.nodes[id] = node
        }
        let total = parameters.reduce(0) { $0.addingReportingOverflow($1.count).overflow ? Int.max : $0 + $1.count }
        if total > Self.maxElements {
            throw CompileError("network '\(g.name)': \(total) parameter elements; the byte count would overflow")
        }
        var names = Set<String>()
        for p in parameters where !names.insert(p.name).inserted {
            throw CompileError(layer: p.layer, "duplicate parameter name '\(p.name)'")
        }
        g.parameters = parameters
        return g
    }

    /// A parameter of `shape`, or an error when its element count (as bytes)
    /// would overflow; computed with checked products, so a huge size is an
    /// error, not a trap.
    static func parameter(_ name: String, _ shape: [Int], _ kind: Parameter.Kind, _ layer: String) throws -> Parameter {
        var count = 1
        for d in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: d)
            if overflow || product > maxElements {
                throw CompileError(layer: layer, "parameter \(name) (\(shape.map(String.init).joined(separator: "×"))) is too large: its byte count would overflow")
            }
            count = product
        }
        return Parameter(name: name, shape: shape, kind: kind, layer: layer)
    }

    /// ⌊(n + 2p − k)/s⌋ + 1, or an error when the window does not fit or the
    /// arithmetic would overflow.
    static func window(_ n: Int, _ k: Int, _ s: Int, _ p: Int, _ layer: String, _ axis: String) throws -> Int {
        let (twice, o1) = p.multipliedReportingOverflow(by: 2)
        let (padded, o2) = n.addingReportingOverflow(twice)
        if o1 || o2 || padded > maxElements {
            throw CompileError(layer: layer, "padding \(p) on the input \(axis) \(n) is too large: its byte count would overflow")
        }
        let span = padded - k
        if span < 0 {
            throw CompileError(layer: layer, "kernel \(k) with padding \(p) does not fit the input \(axis) \(n): the output would be empty")
        }
        return span / s + 1
    }

    /// The smallest stride that takes `x` to `target` in both axes, as
    /// PyTorch's ⌊(n − 1)/s⌋ + 1. Per axis the strides that work form a range,
    /// so this is their intersection (no search over every stride).
    static func shortcutStride(from x: Shape, to target: Shape, _ layer: String) throws -> Int {
        /// Strides s ≥ 1 with ⌊(n − 1)/s⌋ + 1 == t.
        func strides(_ n: Int, _ t: Int) -> ClosedRange<Int>? {
            guard n >= 1, t >= 1, t <= n else { return nil }
            if t == 1 { return n...Int.max }
            let low = (n - 1) / t + 1, high = (n - 1) / (t - 1)
            return low <= high ? low...high : nil
        }
        if let h = strides(x.h, target.h), let w = strides(x.w, target.w) {
            let low = max(h.lowerBound, w.lowerBound), high = min(h.upperBound, w.upperBound)
            if low <= high { return low }
        }
        throw CompileError(layer: layer, "no shortcut stride takes the block input \(x) to the branch output \(target)")
    }

    static func checkSize(_ s: Shape, _ layer: String, batchHint: Bool) throws {
        let (hw, o1) = s.h.multipliedReportingOverflow(by: s.w)
        let (n, o2) = hw.multipliedReportingOverflow(by: s.c)
        if o1 || o2 || n > maxElements {
            throw CompileError(layer: layer, "output \(s.c)×\(s.h)×\(s.w) is too large: its byte count would overflow")
        }
    }
}
