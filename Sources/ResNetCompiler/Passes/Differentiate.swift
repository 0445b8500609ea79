/// Differentiate (training): appends the backward graph and the optimiser step.
///
/// Requires InferShapes on an unfused graph. The forward nodes stay as they
/// are but now mean PyTorch's `model.train()` (batch norm normalises with the
/// batch's statistics). A final softmax is replaced by `loss`: the mean
/// softmax cross-entropy of its input (the logits) against the labels, whose
/// output is ∂loss/∂logits. Then, walking the forward nodes backwards, each
/// node turns the gradient of its output into gradients of its inputs
/// (reverse-mode differentiation). A value read by two nodes — a residual
/// block's input, read by the branch and the shortcut — receives two
/// contributions, summed by an `add`; an `add` passes its gradient to both
/// inputs unchanged. Parameter gradients are written by `convGradWeight`,
/// `batchNormGrad` and `denseGrad`; `sgdUpdate`, last, applies SGD with
/// momentum and weight decay and updates the BN running statistics.
public struct Differentiate: Pass {
    public var name: String { "Differentiate" }
    public init() {}

    public func run(_ forward: Graph) throws -> Graph {
        var g = forward
        var last = g.nodes.count - 1
        if g.nodes[last].op == .softmax {
            g.nodes.removeLast()
            last -= 1
        }
        for node in g.nodes where node.op == .softmax {
            throw CompileError(layer: node.name, "softmax is supported only as the last layer when training (the loss includes it)")
        }
        for node in g.nodes where node.op == .fusedConv || node.op == .batchNormAct {
            throw CompileError(layer: node.name, "Differentiate needs the unfused graph (run it before fusion)")
        }
        let logits = last
        var builder = GraphBuilder(graph: g)
        let loss = builder.add(.loss, name: "loss", inputs: [logits], shape: g.shape(logits))

        // Gradient of each forward value so far (node id of the backward value).
        var gradient: [Int: Int] = [logits: loss]
        func contribute(_ value: Int, _ grad: Int) {
            if let existing = gradient[value] {
                gradient[value] = builder.add(.add, name: builder.nodes[value].name + ".grad_sum",
                                              inputs: [existing, grad], shape: builder.nodes[value].shape)
            } else {
                gradient[value] = grad
            }
        }
        var parameterGradients: [Int] = []

        for node in g.nodes[1...logits].reversed() {
            guard let dy = gradient[node.id] else { continue }  // nothing downstream depends on it
            let x = node.inputs[0]
            let xShape = g.shape(x)
            var a = Attributes()
            a.forward = node.id
            let grad = node.name + ".grad"
            switch node.op {
            case .conv:
                a.gradOf = node.name
                parameterGradients.append(builder.add(.convGradWeight, name: node.name + ".grad_weight", inputs: [dy, x], attrs: a, shape: nil))
                if g.nodes[x].op != .input {
                    a.gradOf = nil
                    contribute(x, builder.add(.convGradData, name: grad, inputs: [dy], attrs: a, shape: xShape))
                }
            case .batchNorm:
                a.gradOf = node.name
                let gz = builder.add(.batchNormGrad, name: grad, inputs: [dy, x], attrs: a, shape: xShape)
                parameterGradients.append(gz)
                contribute(x, gz)
            case .relu:
                contribute(x, builder.add(.reluGrad, name: grad, inputs: [dy, node.id], attrs: a, shape: xShape))
            case .maxPool:
                contribute(x, builder.add(.maxPoolGrad, name: grad, inputs: [dy, x], attrs: a, shape: xShape))
            case .globalAvgPool:
                contribute(x, builder.add(.globalAvgPoolGrad, name: grad, inputs: [dy], attrs: a, shape: xShape))
            case .dense:
                a.gradOf = node.name
                let gx = builder.add(.denseGrad, name: grad, inputs: [dy, x], attrs: a, shape: xShape)
                parameterGradients.append(gx)
                if g.nodes[x].op != .input { contribute(x, gx) }
            case .add:
                contribute(node.inputs[0], dy)
                contribute(node.inputs[1], dy)
            case .zeroPad:
                a.stride = node.attrs.stride
                contribute(x, builder.add(.zeroPadGrad, name: grad, inputs: [dy], attrs: a, shape: xShape))
            case .input, .softmax, .fusedConv, .batchNormAct, .loss, .convGradData, .convGradWeight, .batchNormGrad,
                 .reluGrad, .maxPoolGrad, .globalAvgPoolGrad, .denseGrad, .zeroPadGrad, .secondOutput, .sgdUpdate:
                throw CompileError(layer: node.name, "cannot differentiate \(node.op.rawValue)")
            }
        }
        _ = builder.add(.sgdUpdate, name: "sgd", inputs: parameterGradients.sorted(), shape: nil)
        var out = g
        out.nodes = builder.nodes
        return out
    }
}

/// Appends nodes to a graph, numbering them.
struct GraphBuilder {
    var nodes: [Node]
    init(graph: Graph) { nodes = graph.nodes }

    mutating func add(_ op: Op, name: String, inputs: [Int], attrs: Attributes = Attributes(), shape: Shape?) -> Int {
        nodes.append(Node(id: nodes.count, op: op, name: name, inputs: inputs, attrs: attrs, shape: shape))
        return nodes.count - 1
    }
}
