/// FuseTraining: the training graph's epilogues, forward and backward matched.
///
/// Requires Differentiate. Batch norm in training uses the batch's statistics,
/// so it cannot fold into the conv; instead:
/// - forward: BN → add(shortcut) → ReLU (or BN → ReLU) becomes one
///   `batchNormAct` kernel after the conv, with an option-A shortcut read in
///   place (as in inference);
/// - backward, to match: the ReLU mask is applied inside that BN's gradient
///   kernel (`batchNormGrad` with `reluMask`), which also writes the masked
///   gradient as a second output when the shortcut needs it; and the sum of a
///   block input's two gradients is the epilogue of the branch's
///   `convGradData`, reading an option-A shortcut's gradient in place (the
///   adjoint of the forward read: every stride-th pixel of the first channels).
/// A node is absorbed only when nothing else reads its output.
public struct FuseTraining: Pass {
    public var name: String { "FuseTraining" }
    public init() {}

    public func run(_ input: Graph) throws -> Graph {
        var g = try fuseForward(input)
        g = fuseMasks(g)
        g = fuseGradientSums(g)
        return g
    }

    /// BN (+ add) (+ ReLU) → batchNormAct. Gradient nodes that name an absorbed
    /// node as their `forward` now name the fused one.
    func fuseForward(_ g: Graph) throws -> Graph {
        let readers = g.consumers()
        var nodes = g.nodes
        var removed = Set<Int>()
        var redirect: [Int: Int] = [:]   // absorbed node → fused node (for inputs and `forward`)
        var order = Array(nodes.indices)
        for bn in g.nodes where bn.op == .batchNorm {
            var group = [bn.id]
            var last = bn.id
            if readers[last].count == 1, g.nodes[readers[last][0]].op == .add, g.nodes[readers[last][0]].inputs[0] == last {
                last = readers[last][0]
                group.append(last)
            }
            if readers[last].count == 1, g.nodes[readers[last][0]].op == .relu {
                last = readers[last][0]
                group.append(last)
            }
            var fused = bn
            fused.op = .batchNormAct
            fused.shape = g.nodes[last].shape
            var parts = ["bn"]
            if group.count > 1, g.nodes[group[1]].op == .add {
                parts.append("add")
                let (read, source) = ShortcutRead.of(g.nodes[group[1]], in: g, readers: readers)
                fused.attrs.shortcut = read
                fused.inputs.append(source)
            }
            if g.nodes[last].op == .relu {
                parts.append("relu")
                fused.attrs.relu = true
            }
            fused.attrs.fused = parts
            // The fused node takes the place of the last absorbed node.
            nodes[last] = fused
            nodes[last].id = last
            for member in group where member != last {
                removed.insert(member)
                redirect[member] = last
            }
            redirect[bn.id] = last
        }
        for i in nodes.indices {
            nodes[i].inputs = nodes[i].inputs.map { redirect[$0] ?? $0 }
            if let f = nodes[i].attrs.forward, let r = redirect[f] { nodes[i].attrs.forward = r }
        }
        order.removeAll { removed.contains($0) }
        var out = g
        out.nodes = nodes
        return out.renumbered(order: order).removingDeadNodes()
    }

    /// reluGrad(dy, y) read by the BN's gradient → a mask inside batchNormGrad;
    /// its other readers (the shortcut's side) read a second output of that kernel.
    func fuseMasks(_ g: Graph) -> Graph {
        let readers = g.consumers()
        var nodes = g.nodes
        var order = Array(nodes.indices)
        var removed = Set<Int>()
        var extra: [(after: Int, node: Node)] = []
        for r in g.nodes where r.op == .reluGrad {
            let y = r.inputs[1]
            guard g.nodes[y].op == .batchNormAct, g.nodes[y].attrs.relu == true else { continue }
            guard let bnGrad = readers[r.id].first(where: {
                g.nodes[$0].op == .batchNormGrad && g.nodes[$0].attrs.forward == y && g.nodes[$0].inputs[0] == r.id
            }) else { continue }
            // The fused kernel runs where the ReLU's gradient ran: its inputs (dy,
            // z, y) exist there, and so does the masked gradient for the shortcut.
            var fused = nodes[bnGrad]
            fused.inputs = [r.inputs[0], fused.inputs[1], y]
            fused.attrs.reluMask = true
            fused.attrs.fused = ["relu", "bn"]
            fused.id = r.id
            nodes[r.id] = fused
            removed.insert(bnGrad)
            for o in readers[bnGrad] { nodes[o].inputs = nodes[o].inputs.map { $0 == bnGrad ? r.id : $0 } }
            let others = readers[r.id].filter { $0 != bnGrad }
            if !others.isEmpty {
                // The masked gradient is still needed (the shortcut's gradient): a second output.
                let second = Node(id: nodes.count + extra.count, op: .secondOutput, name: r.name, inputs: [r.id],
                                  shape: r.shape)
                extra.append((r.id, second))
                for o in others { nodes[o].inputs = nodes[o].inputs.map { $0 == r.id ? second.id : $0 } }
            }
        }
        nodes += extra.map(\.node)
        let secondAfter = Dictionary(uniqueKeysWithValues: extra.map { ($0.after, $0.node.id) })
        order = order.filter { !removed.contains($0) }.flatMap { id in secondAfter[id].map { [id, $0] } ?? [id] }
        var out = g
        out.nodes = nodes
        return out.renumbered(order: order).removingDeadNodes()
    }

    /// add(g1, g2) of two gradient contributions, one a convGradData read only
    /// by the add → that conv's epilogue (an option-A adjoint read in place).
    func fuseGradientSums(_ g: Graph) -> Graph {
        let readers = g.consumers()
        let lossID = g.nodes.firstIndex { $0.op == .loss } ?? g.nodes.count
        var nodes = g.nodes
        var order = Array(nodes.indices)
        var removed = Set<Int>()
        for add in g.nodes where add.op == .add && add.id > lossID {
            // Prefer the contribution computed last, so the other is ready.
            let candidates = add.inputs.enumerated().filter { _, v in
                g.nodes[v].op == .convGradData && readers[v] == [add.id] && g.nodes[v].attrs.gradShortcut == nil
            }
            guard let (position, conv) = candidates.max(by: { $0.element < $1.element }) else { continue }
            // The fused kernel runs where the add ran, after both contributions exist.
            let other = add.inputs[1 - position]
            var fused = nodes[conv]
            let o = g.nodes[other]
            if o.op == .zeroPadGrad, readers[other] == [add.id] {
                fused.attrs.gradShortcut = .zeroPad(stride: o.attrs.stride!, channels: o.shape!.c)
                fused.inputs.append(o.inputs[0])
                removed.insert(other)
            } else {
                fused.attrs.gradShortcut = .tensor
                fused.inputs.append(other)
            }
            fused.attrs.fused = ["convGradData", "add"]
            fused.id = add.id
            nodes[add.id] = fused
            removed.insert(conv)
        }
        order.removeAll { removed.contains($0) }
        var out = g
        out.nodes = nodes
        return out.renumbered(order: order).removingDeadNodes()
    }
}
