/// Where every parameter lives in the generated model's buffers.
///
/// `m->params` holds the state dict in its own order (so load and save are
/// straight copies); `m->folded` holds, for each conv with a folded batch norm,
/// the scaled weights and the bias, recomputed after every load; `m->packed`
/// holds, for each vector (blocked) conv, its weights repacked into
/// [OB][CB][K][K][IB][16] and its bias padded to the block, zeros in the padded
/// channels, repacked after every fold.
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
    /// One entry per blocked conv.
    var packs: [Pack] = []
    /// Packs by conv node name.
    var packOf: [String: Pack] = [:]
    /// Floats in `m->packed`.
    var packedFloats = 0
    /// Where each batch norm's batch statistics go during a training step
    /// (`m->bn_stats`: C means, then C unbiased variances).
    var statsOffset: [String: Int] = [:]
    var statsFloats = 0

    /// A conv + BN pair: offsets into `m->params` (cb −1: conv has no bias) and into `m->folded`.
    struct Fold {
        var w: Int, cb: Int, g: Int, b: Int, mu: Int, variance: Int
        var fw: Int, fb: Int, oc: Int, per: Int
    }

    /// A blocked conv's weights: read from `m->folded` (folded: true) or
    /// `m->params` at `w` (and bias at `b`, −1: none), written to `m->packed`
    /// at `pw` (and the padded bias at `pb`).
    struct Pack {
        var folded: Bool, w: Int, b: Int
        var oc: Int, c: Int, k: Int, ib: Int
        var pw: Int, pb: Int
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
        for node in graph.nodes where node.attrs.wideTile != nil {
            let ib = graph.layout(node.inputs[0]).block, block = graph.layout(node.id).block
            let x = graph.shape(node.inputs[0]), out = node.shape!, k = node.attrs.kernel!
            let ocp = (out.c + block - 1) / block * block, cp = (x.c + ib - 1) / ib * ib
            let pack: Pack
            if let fold = foldOf[node.name] {
                pack = Pack(folded: true, w: fold.fw, b: fold.fb, oc: out.c, c: x.c, k: k, ib: ib,
                            pw: packedFloats, pb: packedFloats + ocp * cp * k * k)
            } else {
                pack = Pack(folded: false, w: offset[node.name + ".weight"]!, b: offset[node.name + ".bias"] ?? -1,
                            oc: out.c, c: x.c, k: k, ib: ib, pw: packedFloats, pb: packedFloats + ocp * cp * k * k)
            }
            packedFloats += (ocp * cp * k * k + ocp + 15) / 16 * 16
            packs.append(pack)
            packOf[node.name] = pack
        }
    }
}
