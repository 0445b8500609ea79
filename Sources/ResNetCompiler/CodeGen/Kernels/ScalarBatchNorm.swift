/// Batch norm in plain NCHW: eval mode with the running statistics
/// (templates/pointwise.c.mustache, for graphs where it is not folded into a
/// conv), and train mode with its epilogue and its gradient
/// (templates/train.c.mustache). One thread per channel, sums in double in
/// image order, so results do not depend on the thread count.
struct ScalarBatchNorm: KernelFamily {
    enum Kind: Hashable {
        /// y = (x − running mean) · γ / √(running var + ε) + β.
        case inference
        /// Batch statistics (saved for the running estimate), then the epilogue.
        case training(Epilogue)
        /// reluMask: g = dy where the forward output was positive; second: g is also written out.
        case gradient(reluMask: Bool, second: Bool)
    }
    var kind: Kind
    var shape: Shape

    var template: String { kind == .inference ? "pointwise.c" : "train.c" }

    var name: String {
        switch kind {
        case .inference: return "k_bn_\(shape.identifier)"
        case let .training(e): return "k_bntrain_\(shape.identifier)" + e.suffix
        case let .gradient(mask, second): return "k_bngrad_\(shape.identifier)" + (mask ? "_relu" : "") + (second ? "_out2" : "")
        }
    }

    var values: [String: Any] {
        var v: [String: Any] = ["outShape": "\(shape)", "c": shape.c, "oc": shape.c, "oh": shape.h, "ow": shape.w,
                                "hw": shape.h * shape.w]
        switch kind {
        case .inference:
            v["batchNorm"] = true
        case let .training(e):
            v["batchNormTrain"] = true
            v["parts"] = (["bn"] + e.parts).joined(separator: " + ")
            e.addValues(to: &v, block: 1)
        case let .gradient(mask, second):
            v["batchNormGrad"] = true
            v["reluMask"] = mask
            v["hasSecond"] = second
            v["parts"] = mask ? "BN + ReLU" : "BN"
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
        case .batchNorm, .batchNormAct:
            args += [layout.param(node.name + ".weight"), layout.param(node.name + ".bias"),
                     .pointer("m->bn_stats + \(layout.statsOffset[node.name]!)")]
            return ScalarBatchNorm(kind: .training(Epilogue.of(node, g)), shape: shape).view(args)
        default:
            let f = g.nodes[node.attrs.forward!]
            let second = g.secondOutput(of: node.id)
            args += [layout.param(f.name + ".weight"), layout.grad(f.name + ".weight"), layout.grad(f.name + ".bias")]
            if let second { args.append(.buffer(second.id)) }
            return ScalarBatchNorm(kind: .gradient(reluMask: node.attrs.reluMask == true, second: second != nil),
                                   shape: shape).view(args)
        }
    }
}
