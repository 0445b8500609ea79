/// Pooling in plain NCHW (templates/pool.c.mustache): max pool with its padding checked per tap,
/// global average pool, and their gradients. The kinds are the blocked
/// family's; the key describes the forward pool (`input` its x, `output` its
/// y) for the gradients too.
struct ScalarPool: KernelFamily {
    typealias Kind = BlockedPool.Kind
    var kind: Kind
    var input: Shape
    var output: Shape

    var template: String { "pool.c" }

    var name: String { kind.name(input.identifier) }

    var values: [String: Any] {
        var v: [String: Any] = [
            "inShape": "\(input)", "outShape": "\(output)", "c": input.c, "h": input.h, "w": input.w,
            "oh": output.h, "ow": output.w, "hw": input.h * input.w,
        ]
        kind.addValues(to: &v)
        return v
    }

    static func make(_ node: Node, _ g: Graph, _ layout: ParameterLayout) -> CEmitter.KernelView {
        let gradient = node.op == .maxPoolGrad || node.op == .globalAvgPoolGrad
        let f = gradient ? g.nodes[node.attrs.forward!] : node
        let a = f.attrs
        let kind: Kind = switch node.op {
        case .maxPool: .max(kernel: a.kernel!, stride: a.stride!, padding: a.padding!)
        case .maxPoolGrad: .maxGradient(kernel: a.kernel!, stride: a.stride!, padding: a.padding!)
        case .globalAvgPool: .globalAverage
        default: .globalAverageGradient
        }
        let family = ScalarPool(kind: kind, input: g.shape(f.inputs[0]), output: f.shape!)
        return family.view(node.inputs.map(CEmitter.Argument.buffer))
    }
}
