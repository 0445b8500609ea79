/// Recompute (training): batch-norm outputs are rebuilt in the backward pass
/// instead of being kept from the forward pass.
///
/// Requires FuseTraining (the forward BN + shortcut add + ReLU is one
/// `batchNormAct` node). A training step keeps, for the backward pass, every
/// tensor a gradient kernel reads: the conv outputs z (batch norm's backward
/// needs x̂ = (z − μ)/σ everywhere) and the BN outputs y (the next conv's
/// weight gradient reads its input; the ReLU mask reads y > 0). The y are cheap
/// to rebuild: y = ReLU(z · scale + shift (+ shortcut)) is one elementwise pass,
/// where a conv is hundreds of multiply-adds per output. So, as in-place
/// activated batch norm keeps only what cannot be rebuilt, the forward kernel
/// saves each channel's scale and shift beside its batch statistics, and a
/// `batchNormAct` with `recomputes` set — the same template, statistics
/// skipped — rebuilds y right before the first backward kernel that reads it.
/// It runs the same float operations on the same values, so the rebuilt y, and
/// every gradient, are the same bits as when y is kept; the forward y then
/// dies with the forward conv that reads it.
///
/// A block output y = ReLU(bn(z) + shortcut) needs its shortcut, which may be
/// a rebuilt block output itself: rebuilding it is a chain of applies back to
/// a stored tensor. Chains are capped at `maxChain` applies: a block output
/// whose chain would be longer is kept (a checkpoint), so every rebuild costs
/// at most `maxChain` elementwise passes and the backward pass stays linear
/// in the depth. 20 covers ResNet-110's longest chain (the stem and the 18
/// blocks of its first stage; option-A shortcuts start each later stage's
/// chain afresh), so no block output of it is kept. Measured on ResNet-110
/// at batch 32, one thread, CPU time per step, five runs each interleaved
/// (this VM spreads ±15%): chains of 4, best 462 ms, median 516; of 20, best
/// 471, median 536 (+2–4%), for training arenas of 578 and 538 MiB at batch
/// 128. Each rebuilt value gets a chain placed before its first backward use
/// and serving all of them. Sharing every chain would keep the rebuilt
/// tensors live as long as stored ones; rebuilding each from its stored root
/// costs L²/2 applies for a run of L block outputs (ResNet-110's step was
/// 7.5–13% slower than keeping everything at batch 128, where each apply
/// streams 24 MiB). So a chain longer than 2·`keepEvery` keeps every
/// `keepEvery`th block output it rebuilds, and the chains placed after it
/// start from those: about 2.5·L applies for L/4 more live tensors, and the
/// step measured 0.96–1.0× keeping everything (paired runs, BENCHMARKS.md).
///
/// A few convs are cheap beside what they hold, and are rebuilt too
/// (`rebuiltConvs`): a conv node with `recomputes` set runs its original's
/// kernel and weights on the rebuilt input — again the same bits — once,
/// before the first backward kernel that reads its output or its batch
/// norm's rebuild; the input block output's chain is placed before it and
/// also serves that block's conv1 weight gradient.
public struct Recompute: Pass {
    public var name: String { "Recompute" }
    /// The most applies one rebuild may take (1: only tensors whose inputs are stored).
    public var maxChain: Int
    /// Also rebuild a conv when it costs at most `narrowConvCost`
    /// multiply-adds per output value and reads a rebuildable output
    /// (`--recompute-narrow-convs`, on by default; CIFAR's first-stage
    /// conv1s): ResNet-1202's whole training model at batch 128 goes from
    /// 0.51× to 0.38× PyTorch's, for a ResNet-110 step 4–9% slower (paired
    /// runs: 1.04× at batch 32, two threads; 1.09× at batch 128, one thread,
    /// where the 16-channel Winograd conv is 12% of the step; BENCHMARKS.md).
    public var narrowConvs: Bool
    public static let narrowConvCost = 144
    /// A chain keeps the block outputs it rebuilds at every `keepEvery`th
    /// apply, for the chains after it (the backward pass needs the block
    /// outputs in reverse order): a run of L block outputs costs about
    /// L + L·(keepEvery − 1)/2 applies instead of L²/2, for L/keepEvery more
    /// tensors live at a time. Only chains longer than 2·keepEvery keep: in
    /// shorter ones the applies saved are few, and the tensors kept can be
    /// large (ResNet-50's layer3 outputs: 98 MiB each at batch 128).
    public var keepEvery: Int
    public init(maxChain: Int = 20, keepEvery: Int = 4, narrowConvs: Bool = true) {
        self.maxChain = maxChain
        self.keepEvery = keepEvery
        self.narrowConvs = narrowConvs
    }

    public func run(_ input: Graph) throws -> Graph {
        guard let lossID = input.nodes.firstIndex(where: { $0.op == .loss }) else { return input }
        let readers = input.consumers()
        let isBackward = { (id: Int) in id > lossID }
        // Applies needed to rebuild each forward batch-norm output from stored
        // values: every one, since a rebuilt block output reads its shortcut,
        // which may be one the backward pass never reads itself (a projection
        // shortcut's batch norm: rebuilt from its conv's output, not kept).
        var depth: [Int: Int] = [:]
        for node in input.nodes[..<lossID] where node.op == .batchNormAct && node.attrs.recomputes == nil {
            let chain = 1 + (node.inputs.count > 1 ? depth[node.inputs[1]] ?? 0 : 0)
            if chain <= maxChain { depth[node.id] = chain }
        }
        let convs = Self.rebuiltConvs(input, lossID: lossID, readers: readers, depth: depth, narrow: narrowConvs)
        // A rebuilt conv's first use: the first backward kernel that reads it or its batch norm's rebuild.
        var convFirst: [Int: Int] = [:]
        for conv in convs {
            let bn = readers[conv].first { !isBackward($0) }!
            if let first = (readers[conv] + readers[bn]).filter(isBackward).min() { convFirst[conv] = first }
        }
        // The outputs the backward pass reads, or a rebuilt conv reads: each
        // is rebuilt before its first use (by a chain of its own, or from
        // what an earlier chain kept).
        var rootFirst: [Int: Int] = [:]
        for value in depth.keys {
            let uses = readers[value].filter(isBackward) + convs.filter { input.nodes[$0].inputs[0] == value }.compactMap { convFirst[$0] }
            if let first = uses.min() { rootFirst[value] = first }
        }
        guard !rootFirst.isEmpty else { return input }

        var builder = GraphBuilder(graph: input)
        var before: [Int: [Int]] = [:]   // original node id → rebuilt nodes placed right before it
        var redirect: [Int: [Int: Int]] = [:]   // backward reader → (forward value → its rebuild)
        var rebuiltRoot: [Int: Int] = [:], rebuiltConv: [Int: Int] = [:]
        // Rebuilt block outputs a chain passed through at a depth that is a
        // multiple of keepEvery: later chains start from them (id, and the
        // original node they were placed before).
        var kept: [Int: (id: Int, at: Int)] = [:]
        /// Appends the nodes that rebuild `value` (its inputs' chains first) for
        /// a use at `first`; returns the rebuilt id.
        func rebuild(_ value: Int, at first: Int, keep: Bool, into chain: inout [Int]) -> Int {
            if let id = rebuiltConv[value] { return id }
            if let k = kept[value], k.at <= first { return k.id }
            guard depth[value] != nil || convs.contains(value) else { return value }
            var node = input.nodes[value]
            if depth[value] != nil {   // a batch norm: its shortcut's chain; its z, if that is rebuilt (already)
                if node.inputs.count > 1 { node.inputs[1] = rebuild(node.inputs[1], at: first, keep: keep, into: &chain) }
                node.inputs[0] = rebuiltConv[node.inputs[0]] ?? node.inputs[0]
            } else {                   // a conv: its input's rebuild as a root, else a chain of its own
                node.inputs[0] = rebuiltRoot[node.inputs[0]] ?? rebuild(node.inputs[0], at: first, keep: keep, into: &chain)
            }
            node.attrs.recomputes = node.name
            let id = builder.add(node.op, name: node.name + ".again", inputs: node.inputs, attrs: node.attrs, shape: node.shape)
            chain.append(id)
            if keep, let d = depth[value], d % keepEvery == 0 { kept[value] = (id, first) }
            return id
        }
        /// Rebuilds `value` right before `first`, for all its backward readers.
        func place(_ value: Int, before first: Int) -> Int {
            var chain: [Int] = []
            let id = rebuild(value, at: first, keep: (depth[value] ?? 0) > 2 * keepEvery, into: &chain)
            before[first, default: []] += chain
            for reader in readers[value] where isBackward(reader) { redirect[reader, default: [:]][value] = id }
            return id
        }
        // First the roots rebuilt convs read; then each rebuilt conv, once,
        // serving its backward readers and its batch norm's rebuild; then the
        // other roots. Each group in the order the backward pass needs them,
        // so that a chain can start from what an earlier one kept.
        let convInputs = Set(convs.map { input.nodes[$0].inputs[0] })
        let byFirst = rootFirst.keys.sorted { (rootFirst[$0]!, $0) < (rootFirst[$1]!, $1) }
        for value in byFirst where convInputs.contains(value) {
            rebuiltRoot[value] = place(value, before: rootFirst[value]!)
        }
        for conv in convs.sorted() {
            if let first = convFirst[conv] { rebuiltConv[conv] = place(conv, before: first) }
        }
        for value in byFirst where !convInputs.contains(value) { _ = place(value, before: rootFirst[value]!) }
        for (reader, map) in redirect {
            builder.nodes[reader].inputs = builder.nodes[reader].inputs.map { map[$0] ?? $0 }
        }
        var g = input
        g.nodes = builder.nodes
        let order = input.nodes.indices.flatMap { (before[$0] ?? []) + [$0] }
        return g.renumbered(order: order)
    }

    /// The convs whose outputs are rebuilt too, because they are cheap beside
    /// what they hold: at most `maxCost` multiply-adds per output value
    /// (k²·C_in), and either the network's first conv reading the image or a
    /// bottleneck's 1×1 reduce conv (stride 1, fewer outputs than inputs, its
    /// input a rebuildable block output) — ResNet-50's stem and the conv1 of
    /// its layer1, layer2 and first layer3 blocks. Each must feed one batch
    /// norm whose output is no block's shortcut (so no rebuild chain runs
    /// through it). With `narrow`, also any stride-1 conv of at most
    /// `narrowConvCost` that reads a rebuildable output. Measured on torchvision's ResNet-50: every such conv
    /// rebuilt (to C_in 2,048) made the step 12% slower than with the batch
    /// norms alone rebuilt; see BENCHMARKS.md for the cap's figures.
    static let maxCost = 512
    static func rebuiltConvs(_ g: Graph, lossID: Int, readers: [[Int]], depth: [Int: Int], narrow: Bool) -> Set<Int> {
        var shortcuts = Set<Int>()
        for node in g.nodes[..<lossID] where node.op == .batchNormAct && node.inputs.count > 1 { shortcuts.insert(node.inputs[1]) }
        var result = Set<Int>()
        for node in g.nodes[..<lossID] where node.op == .conv && node.attrs.recomputes == nil {
            let forward = readers[node.id].filter { $0 < lossID }
            guard forward.count == 1, g.nodes[forward[0]].op == .batchNormAct, g.nodes[forward[0]].inputs[0] == node.id,
                  !shortcuts.contains(forward[0]), readers[node.id].contains(where: { $0 > lossID }) else { continue }
            let source = g.nodes[node.inputs[0]], a = node.attrs
            let k = a.kernel ?? 1, cin = g.shape(source.id).c
            let cheap = k * k * cin <= maxCost && (source.op == .input
                || (k == 1 && a.stride == 1 && g.shape(node.id).c < cin && depth[source.id] != nil))
                || (narrow && k * k * cin <= narrowConvCost && a.stride == 1 && depth[source.id] != nil)
            if cheap { result.insert(node.id) }
        }
        return result
    }
}
