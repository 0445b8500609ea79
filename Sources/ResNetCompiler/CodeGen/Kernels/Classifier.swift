/// The classifier in plain layout (templates/classifier.c.mustache): the
/// fully connected layer, softmax, the mean softmax cross-entropy with its
/// gradient, and the dense layer's gradient. Sums over the batch are in
/// double, in image order.
struct Classifier: KernelFamily {
    enum Kind: Hashable {
        /// y = W x + b, `inputs` → `outputs` features.
        case dense(inputs: Int, outputs: Int)
        case softmax(classes: Int)
        /// The loss of the logits and ∂loss/∂logits.
        case loss(classes: Int)
        /// ∂x, ∂W and ∂b of a dense layer `inputs` → `outputs`.
        case denseGrad(inputs: Int, outputs: Int)
    }
    var kind: Kind

    var template: String { "classifier.c" }

    var name: String {
        switch kind {
        case let .dense(i, o): "k_dense_\(i)_\(o)"
        case let .softmax(k): "k_softmax_\(k)"
        case let .loss(k): "k_loss_\(k)"
        case let .denseGrad(i, o): "k_densegrad_\(i)_\(o)"
        }
    }

    var values: [String: Any] {
        switch kind {
        case let .dense(i, o): ["dense": true, "inCount": i, "outCount": o]
        case let .softmax(k): ["softmax": true, "count": k]
        case let .loss(k): ["loss": true, "count": k]
        case let .denseGrad(i, o): ["denseGrad": true, "inCount": i, "outCount": o]
        }
    }

    static func make(_ node: Node, _ g: Graph, _ layout: ParameterLayout) -> CEmitter.KernelView {
        let x = CEmitter.Argument.buffer(node.inputs[0])
        switch node.op {
        case .dense:
            let family = Classifier(kind: .dense(inputs: g.shape(node.inputs[0]).count, outputs: node.shape!.c))
            return family.view([x, layout.param(node.name + ".weight"), layout.param(node.name + ".bias")])
        case .softmax:
            return Classifier(kind: .softmax(classes: node.shape!.count)).view([x])
        case .loss:
            return Classifier(kind: .loss(classes: node.shape!.count)).view([x, .pointer("labels"), .pointer("&m->loss"), .pointer("&m->reducer")])
        default:
            let f = g.nodes[node.attrs.forward!]
            let family = Classifier(kind: .denseGrad(inputs: node.shape!.count, outputs: g.shape(node.inputs[0]).count))
            return family.view([x, .buffer(node.inputs[1]), layout.param(f.name + ".weight"),
                                layout.grad(f.name + ".weight"), layout.grad(f.name + ".bias"), .pointer("&m->reducer")])
        }
    }
}
