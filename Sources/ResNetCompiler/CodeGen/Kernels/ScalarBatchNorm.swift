/// Batch norm in plain NCHW (templates/batchnorm.c.mustache): eval mode with
/// the running statistics, for graphs where it is not folded into a conv, and
/// train mode with its epilogue and its gradient. Train mode sums a channel
/// on one thread, in double and in image order, so results do not depend on
/// the thread count; with replicas the sums are synchronized across them.
struct ScalarBatchNorm: KernelFamily {
    enum Kind: Hashable {
        /// y = (x − running mean) · γ / √(running var + ε) + β.
        case inference
        /// Train mode, forward with its epilogue or gradient: the blocked family's kinds.
        case training(BlockedBatchNorm.Kind)
    }
    var kind: Kind
    var shape: Shape

    var template: String { "batchnorm.c" }

    var name: String {
        switch kind {
        case .inference: "k_bn_\(shape.identifier)"
        case let .training(t): t.name(shape.identifier)
        }
    }

    var values: [String: Any] {
        var v: [String: Any] = ["outShape": "\(shape)", "c": shape.c, "oc": shape.c, "oh": shape.h, "ow": shape.w,
                                "hw": shape.h * shape.w]
        switch kind {
        case .inference: v["batchNorm"] = true
        case let .training(t): t.addValues(to: &v, block: 1, channels: shape.c)
        }
        return v
    }

    /// Eval-mode batch norm in an inference graph, train mode in a training graph
    /// (fused with its epilogue or not), and the gradient.
    static func make(_ node: Node, _ g: Graph, _ layout: ParameterLayout) -> CEmitter.KernelView {
        let shape = node.shape!
        var args = node.inputs.map(CEmitter.Argument.buffer)
        switch node.op {
        case .batchNorm where !g.training:
            args += ["weight", "bias", "running_mean", "running_var"].map { layout.param("\(node.name).\($0)") }
            return ScalarBatchNorm(kind: .inference, shape: shape).view(args)
        case .batchNormAct where node.attrs.recomputes != nil:
            args.append(.pointer("m->bn_stats + \(layout.statsOffset[node.attrs.recomputes!]!)"))
            return ScalarBatchNorm(kind: .training(.apply(Epilogue.of(node, g))), shape: shape).view(args)
        case .batchNorm, .batchNormAct:
            args += [layout.param(node.name + ".weight"), layout.param(node.name + ".bias"),
                     .pointer("m->bn_stats + \(layout.statsOffset[node.name]!)"), .pointer("&m->reducer")]
            return ScalarBatchNorm(kind: .training(.forward(Epilogue.of(node, g))), shape: shape).view(args)
        default:
            let f = g.nodes[node.attrs.forward!]
            let second = g.secondOutput(of: node.id)
            args += [layout.param(f.name + ".weight"), layout.grad(f.name + ".weight"), layout.grad(f.name + ".bias"),
                     .pointer("&m->reducer")]
            if let second { args.append(.buffer(second.id)) }
            let kind = BlockedBatchNorm.Kind.gradient(reluMask: node.attrs.reluMask == true, second: second != nil)
            return ScalarBatchNorm(kind: .training(kind), shape: shape).view(args)
        }
    }
}
