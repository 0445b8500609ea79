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
/// 128. Each backward use gets a fresh chain
/// (sharing one would keep the rebuilt tensors live as long as the stored
/// ones were).
public struct Recompute: Pass {
    public var name: String { "Recompute" }
    /// The most applies one rebuild may take (1: only tensors whose inputs are stored).
    public var maxChain: Int
    public init(maxChain: Int = 20) { self.maxChain = maxChain }

    public func run(_ input: Graph) throws -> Graph {
        guard let lossID = input.nodes.firstIndex(where: { $0.op == .loss }) else { return input }
        let readers = input.consumers()
        // Applies needed to rebuild each forward batch-norm output from stored
        // values: every one, since a rebuilt block output reads its shortcut,
        // which may be one the backward pass never reads itself (a projection
        // shortcut's batch norm: rebuilt from its conv's output, not kept).
        var depth: [Int: Int] = [:]
        for node in input.nodes[..<lossID] where node.op == .batchNormAct && node.attrs.recomputes == nil {
            let chain = 1 + (node.inputs.count > 1 ? depth[node.inputs[1]] ?? 0 : 0)
            if chain <= maxChain { depth[node.id] = chain }
        }
        // The outputs the backward pass reads: each gets its own rebuild chain.
        let roots = depth.keys.filter { readers[$0].contains { $0 > lossID } }
        guard !roots.isEmpty else { return input }

        var builder = GraphBuilder(graph: input)
        var before: [Int: [Int]] = [:]   // original node id → rebuilt nodes placed right before it
        var redirect: [Int: [Int: Int]] = [:]   // backward reader → (forward value → its rebuild)
        /// Appends the nodes that rebuild `value` (its shortcut's chain first); returns the rebuilt id.
        func rebuild(_ value: Int, into chain: inout [Int]) -> Int {
            guard depth[value] != nil else { return value }
            var node = input.nodes[value]
            if node.inputs.count > 1 { node.inputs[1] = rebuild(node.inputs[1], into: &chain) }
            node.attrs.recomputes = node.name
            let id = builder.add(.batchNormAct, name: node.name + ".again", inputs: node.inputs, attrs: node.attrs,
                                 shape: node.shape)
            chain.append(id)
            return id
        }
        for value in roots.sorted() {
            let backward = readers[value].filter { $0 > lossID }
            var chain: [Int] = []
            let rebuilt = rebuild(value, into: &chain)
            before[backward.min()!, default: []] += chain
            for reader in backward { redirect[reader, default: [:]][value] = rebuilt }
        }
        for (reader, map) in redirect {
            builder.nodes[reader].inputs = builder.nodes[reader].inputs.map { map[$0] ?? $0 }
        }
        var g = input
        g.nodes = builder.nodes
        let order = input.nodes.indices.flatMap { (before[$0] ?? []) + [$0] }
        return g.renumbered(order: order)
    }
}
