/// Train-mode batch norm in the blocked layout (templates/bn_blocked.c.mustache):
/// the forward pass with its epilogue (shortcut add, ReLU) and the gradient
/// with its ReLU mask and second output. Sums are per image, then in image
/// order, so results do not depend on the thread count; with replicas
/// (`m->reducer`) the per-channel sums are synchronized across them.
struct BlockedBatchNorm: KernelFamily {
    enum Kind: Hashable {
        case forward(Epilogue)
        /// The forward's apply alone (Recompute): the scale and shift its forward kernel saved.
        case apply(Epilogue)
        /// reluMask: g = dy where the forward output was positive; second: g is also written out.
        case gradient(reluMask: Bool, second: Bool)
    }
    var kind: Kind
    var shape: Shape
    var block: Int

    var template: String { "bn_blocked.c" }

    var name: String { kind.name("\(shape.identifier)_b\(block)") }

    var values: [String: Any] {
        precondition(16 % block == 0, "scale and shift are saved for 16-channel blocks")
        var v: [String: Any] = ["outShape": "\(shape)", "oc": shape.c, "cb": (shape.c + block - 1) / block,
                                "oh": shape.h, "ow": shape.w]
        kind.addValues(to: &v, block: block, channels: shape.c)
        return v
    }

    static func make(_ node: Node, _ g: Graph, _ layout: ParameterLayout) -> CEmitter.KernelView {
        let a = node.attrs
        if node.op == .batchNormAct, let bn = node.attrs.recomputes {
            let family = BlockedBatchNorm(kind: .apply(Epilogue.of(node, g)), shape: node.shape!,
                                          block: g.layout(node.id).block)
            return family.view(node.inputs.map(CEmitter.Argument.buffer)
                + [.pointer("m->bn_stats + \(layout.statsOffset[bn]!)")])
        }
        if node.op == .batchNormAct {
            let family = BlockedBatchNorm(kind: .forward(Epilogue.of(node, g)),
                                          shape: node.shape!, block: g.layout(node.id).block)
            return family.view(node.inputs.map(CEmitter.Argument.buffer)
                + [layout.param(node.name + ".weight"), layout.param(node.name + ".bias"),
                   .pointer("m->bn_stats + \(layout.statsOffset[node.name]!)"), .scratch(node.id), .pointer("&m->reducer")])
        }
        let f = g.nodes[a.forward!]
        let second = g.secondOutput(of: node.id)
        let family = BlockedBatchNorm(kind: .gradient(reluMask: a.reluMask == true, second: second != nil),
                                      shape: node.shape!, block: g.layout(node.id).block)
        var args = node.inputs.map(CEmitter.Argument.buffer)
        args += [layout.param(f.name + ".weight"), .pointer("m->bn_stats + \(layout.statsOffset[f.name]!)"),
                 layout.grad(f.name + ".weight"), layout.grad(f.name + ".bias"), .scratch(node.id), .pointer("&m->reducer")]
        if let second { args.append(.buffer(second.id)) }
        return family.view(args)
    }
}

extension BlockedBatchNorm.Kind {
    /// The kernel's name for a `dims`-shaped batch norm, e.g. `k_bntrain_<dims>_add_relu`.
    func name(_ dims: String) -> String {
        switch self {
        case let .forward(e): "k_bntrain_\(dims)" + e.suffix
        case let .apply(e): "k_bnapply_\(dims)" + e.suffix
        case let .gradient(mask, second): "k_bngrad_\(dims)" + (mask ? "_relu" : "") + (second ? "_out2" : "")
        }
    }

    /// Which kernel of the template, its parts for the comment, and the epilogue or mask.
    func addValues(to v: inout [String: Any], block: Int, channels: Int) {
        v["statsScale"] = ParameterLayout.statsScale(channels: channels)
        v["statsShift"] = ParameterLayout.statsShift(channels: channels)
        switch self {
        case let .forward(e), let .apply(e):
            v["batchNormTrain"] = true
            if case .apply = self { v["applyOnly"] = true }
            v["parts"] = (["bn"] + e.parts).joined(separator: " + ")
            e.addValues(to: &v, block: block)
        case let .gradient(mask, second):
            v["batchNormGrad"] = true
            v["reluMask"] = mask
            v["hasSecond"] = second
            v["parts"] = mask ? "BN + ReLU" : "BN"
        }
    }
}
