/// Where every parameter lives in the generated model's buffers.
///
/// `m->params` holds the state dict in its own order (so load and save are
/// straight copies); `m->folded` holds, for each conv with a folded batch norm,
/// the scaled weights and the bias, recomputed after every load.
struct ParameterLayout {
    /// Offset (floats) of each parameter in `m->params`, by name.
    var offset: [String: Int] = [:]
    /// One entry per folded conv.
    var folds: [Fold] = []
    /// Folds by conv node name.
    var foldOf: [String: Fold] = [:]
    /// Floats in `m->folded`.
    var foldedFloats = 0
    /// Where each batch norm's batch statistics go during a training step
    /// (`m->bn_stats`: C means, then C unbiased variances).
    var statsOffset: [String: Int] = [:]
    var statsFloats = 0

    /// A conv + BN pair: offsets into `m->params` (cb −1: conv has no bias) and into `m->folded`.
    struct Fold {
        var w: Int, cb: Int, g: Int, b: Int, mu: Int, variance: Int
        var fw: Int, fb: Int, oc: Int, per: Int
    }

    init(_ graph: Graph) {
        var at = 0
        for p in graph.parameters {
            offset[p.name] = at
            at += p.count
        }
        for p in graph.parameters where p.kind == .runningMean {
            statsOffset[p.layer] = statsFloats
            statsFloats += 2 * p.count
        }
        for node in graph.nodes where node.op == .fusedConv {
            guard let bn = node.attrs.foldedBatchNorm else { continue }
            let weight = graph.parameters.first { $0.name == node.name + ".weight" }!
            let oc = weight.shape[0], per = weight.count / oc
            let fold = Fold(w: offset[node.name + ".weight"]!, cb: offset[node.name + ".bias"] ?? -1,
                            g: offset[bn + ".weight"]!, b: offset[bn + ".bias"]!,
                            mu: offset[bn + ".running_mean"]!, variance: offset[bn + ".running_var"]!,
                            fw: foldedFloats, fb: foldedFloats + weight.count, oc: oc, per: per)
            foldedFloats += weight.count + oc
            folds.append(fold)
            foldOf[node.name] = fold
        }
    }
}
