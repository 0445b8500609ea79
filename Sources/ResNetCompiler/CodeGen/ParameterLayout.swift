/// Where every parameter lives in the generated model's buffers.
///
/// `m->params` holds the state dict in its own order (so load and save are
/// straight copies); `m->folded` holds, for each conv with a folded batch norm,
/// the scaled weights and the bias, recomputed after every load.
struct ParameterLayout {
    /// Offset (floats) of each parameter in `m->params`, by name.
    var offset: [String: Int] = [:]
    /// Elements of each parameter, by name.
    var count: [String: Int] = [:]
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
        var shape: [String: [Int]] = [:]
        for p in graph.parameters {
            offset[p.name] = at
            count[p.name] = p.count
            shape[p.name] = p.shape
            at += p.count
        }
        for p in graph.parameters where p.kind == .runningMean {
            statsOffset[p.layer] = statsFloats
            statsFloats += 2 * p.count
        }
        for node in graph.nodes where node.op == .fusedConv {
            guard let bn = node.attrs.foldedBatchNorm else { continue }
            let weightShape = shape[node.name + ".weight"]!, weightCount = count[node.name + ".weight"]!
            let oc = weightShape[0], per = weightCount / oc
            let fold = Fold(w: offset[node.name + ".weight"]!, cb: offset[node.name + ".bias"] ?? -1,
                            g: offset[bn + ".weight"]!, b: offset[bn + ".bias"]!,
                            mu: offset[bn + ".running_mean"]!, variance: offset[bn + ".running_var"]!,
                            fw: foldedFloats, fb: foldedFloats + weightCount, oc: oc, per: per)
            foldedFloats += weightCount + oc
            folds.append(fold)
            foldOf[node.name] = fold
        }
    }
}
