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
    /// (`m->bn_stats`: C means, C unbiased variances, then the scale and shift
    /// its forward kernel applied, for a rebuild in the backward pass; see
    /// `statsFloats(channels:)`).
    var statsOffset: [String: Int] = [:]
    var statsFloats = 0

    /// Floats of one batch norm's statistics: mean and unbiased variance (C
    /// each, read by the running-statistics update), then scale and shift for
    /// every stored channel (C rounded up to a 16-channel block: the blocked
    /// kernel loads them a block at a time).
    static func statsFloats(channels c: Int) -> Int { 2 * c + 2 * statsBlock(c) }
    /// Offsets of the scale and shift within one batch norm's statistics.
    static func statsScale(channels c: Int) -> Int { 2 * c }
    static func statsShift(channels c: Int) -> Int { 2 * c + statsBlock(c) }
    private static func statsBlock(_ c: Int) -> Int { (c + 15) / 16 * 16 }

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
        /// Packed for the data gradient: input and output channels swapped, taps flipped.
        var transpose = false
        /// Winograd: U = G g Gᵀ, [36][OB][CP][16].
        var winograd = false

        /// The pack of vector conv (or data gradient) `node` of `g`, whose
        /// weights (and bias `b`, −1: none; a data gradient has none) are at `w`
        /// in `m->folded` (`folded`) or `m->params`, placed at `at`, which
        /// moves past it to the next cache line.
        static func of(_ node: Node, _ g: Graph, folded: Bool, w: Int, b: Int, at: inout Int) -> Pack {
            let transpose = node.op == .convGradData
            let forward = transpose ? g.nodes[node.attrs.forward!] : node
            let x = g.shape(forward.inputs[0]), y = forward.shape!, k = forward.attrs.kernel!
            // The kernel's own input (∂y for a data gradient) and output channels.
            let ib = g.layout(node.inputs[0]).block
            let (inC, outC) = transpose ? (y.c, x.c) : (x.c, y.c)
            let winograd = node.attrs.algorithm != nil && node.attrs.algorithm != .direct
            let floats = weightFloats(outC: outC, inC: inC, k: k, ib: ib, winograd: winograd)
            let pack = Pack(folded: folded, w: w, b: transpose ? -1 : b, oc: y.c, c: x.c, k: k, ib: ib,
                            pw: at, pb: at + floats, transpose: transpose, winograd: winograd)
            at += (floats + (outC + 15) / 16 * 16 + 15) / 16 * 16
            return pack
        }

        /// Floats the packed weights take (before the bias), for `oc` output and `c` input channels.
        static func weightFloats(outC: Int, inC: Int, k: Int, ib: Int, winograd: Bool) -> Int {
            let ocp = (outC + 15) / 16 * 16, cp = (inC + ib - 1) / ib * ib
            return winograd ? 36 * ocp * cp : ocp * cp * k * k
        }
    }

    /// The training step's packs (from `m->params` into `m->tpacked`, right
    /// before the kernel that reads them, every step): each blocked forward
    /// conv by its name, and each blocked data gradient's transposed kernel by
    /// the forward conv's name + "#T". One at a time, so every pack starts at
    /// 0 and `m->tpacked` holds the largest (`trainPackedFloats`).
    var trainPacks: [Pack] = []
    /// Each training pack's index in `trainPacks` (TRAIN_PACKS in the C), by name.
    var trainPackIndex: [String: Int] = [:]
    var trainPackedFloats = 0

    /// The name a vector conv's (or data gradient's) pack goes by: a data
    /// gradient's transposed kernel is the forward conv's name + "#T"; a
    /// rebuilt conv (Recompute) reads its original's.
    static func packName(_ node: Node, _ g: Graph) -> String {
        node.op == .convGradData ? g.nodes[node.attrs.forward!].name + "#T" : node.parameterLayer
    }

    /// Adds the packs of the training graph's blocked convs and data gradients.
    mutating func addTrainingPacks(_ t: Graph) {
        for node in t.nodes where node.attrs.wideTile != nil && node.attrs.recomputes == nil {
            let forward = node.op == .convGradData ? t.nodes[node.attrs.forward!] : node
            var at = 0
            let pack = Pack.of(node, t, folded: false, w: offset[forward.name + ".weight"]!,
                               b: offset[forward.name + ".bias"] ?? -1, at: &at)
            trainPackedFloats = max(trainPackedFloats, at)
            trainPackIndex[Self.packName(node, t)] = trainPacks.count
            trainPacks.append(pack)
        }
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
            statsFloats += Self.statsFloats(channels: p.count)
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
            let fold = foldOf[node.name]
            let pack = Pack.of(node, graph, folded: fold != nil, w: fold?.fw ?? offset[node.name + ".weight"]!,
                               b: fold?.fb ?? offset[node.name + ".bias"] ?? -1, at: &packedFloats)
            packs.append(pack)
            packOf[node.name] = pack
        }
    }
}
