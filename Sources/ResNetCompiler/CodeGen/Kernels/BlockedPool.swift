/// Pooling in the blocked layout (templates/pool_blocked.c.mustache): max
/// pool blocked → blocked, one channel block per vector; the global average
/// pool reads blocked and writes NCHW (C×1×1), which is where the layout
/// converts back for the classifier.
struct BlockedPool: KernelFamily {
    enum Kind: Hashable {
        case max(kernel: Int, stride: Int, padding: Int)
        case globalAverage
        /// ∂ of max pool: dy (output-shaped) routed to each window's first maximum of x.
        case maxGradient(kernel: Int, stride: Int, padding: Int)
        /// ∂ of global average pool: NCHW C×1×1 → blocked.
        case globalAverageGradient
    }
    var kind: Kind
    var input: Shape
    var output: Shape
    var block: Int

    var template: String { "pool_blocked.c" }

    var name: String { kind.name("\(input.identifier)_b\(block)") }

    var values: [String: Any] {
        var v: [String: Any] = [
            "inShape": "\(input)", "outShape": "\(output)", "c": input.c, "cb": (input.c + block - 1) / block,
            "h": input.h, "w": input.w, "oc": output.c, "oh": output.h, "ow": output.w, "hw": input.h * input.w,
        ]
        kind.addValues(to: &v)
        if kind == .globalAverageGradient { v["oc"] = input.c }
        return v
    }

    /// Forward kernels are keyed by their input; gradients by the forward's input (their output).
    static func make(_ node: Node, _ g: Graph) -> CEmitter.KernelView {
        switch node.op {
        case .maxPool, .globalAvgPool:
            let a = node.attrs
            let kind: Kind = node.op == .maxPool ? .max(kernel: a.kernel!, stride: a.stride!, padding: a.padding!) : .globalAverage
            let family = BlockedPool(kind: kind, input: g.shape(node.inputs[0]), output: node.shape!,
                                     block: g.layout(node.inputs[0]).block)
            return family.view([.buffer(node.inputs[0])])
        default:
            let f = g.nodes[node.attrs.forward!], a = f.attrs
            let kind: Kind = node.op == .maxPoolGrad ? .maxGradient(kernel: a.kernel!, stride: a.stride!, padding: a.padding!)
                : .globalAverageGradient
            let family = BlockedPool(kind: kind, input: node.shape!, output: f.shape!, block: g.layout(node.id).block)
            return family.view(node.inputs.map(CEmitter.Argument.buffer))
        }
    }
}

extension BlockedPool.Kind {
    /// The kernel's name for a pool over `dims` (the forward's input), e.g. `k_maxpool3s2p1_<dims>`.
    func name(_ dims: String) -> String {
        switch self {
        case let .max(k, s, p): "k_maxpool\(k)s\(s)p\(p)_\(dims)"
        case .globalAverage: "k_avgpool_\(dims)"
        case let .maxGradient(k, s, p): "k_maxpoolgrad\(k)s\(s)p\(p)_\(dims)"
        case .globalAverageGradient: "k_avgpoolgrad_\(dims)"
        }
    }

    /// Which kernel of the template, and the window of a max pool.
    func addValues(to v: inout [String: Any]) {
        switch self {
        case let .max(k, s, p), let .maxGradient(k, s, p):
            if case .max = self { v["maxPool"] = true } else { v["maxPoolGrad"] = true }
            v["k"] = k
            v["s"] = s
            v["p"] = p
        case .globalAverage:
            v["globalAvgPool"] = true
        case .globalAverageGradient:
            v["globalAvgPoolGrad"] = true
        }
    }
}
