/// FuseEpilogues: conv (+ folded BN) → add(shortcut) → ReLU, or conv → ReLU,
/// becomes one kernel whose epilogue adds the shortcut and clamps.
///
/// Requires FoldBatchNorm (or runs on plain convs). The fused kernel takes the
/// place of the last node it absorbs, so a projection shortcut computed after
/// the branch's last conv in source order is ready when the kernel runs. An
/// option-A `zeroPad` shortcut read only by the add is not materialised: the
/// epilogue reads its input in place (every stride-th pixel, zero beyond the
/// input's channels), so no padding kernel and no padded buffer exist.
public struct FuseEpilogues: Pass {
    public var name: String { "FuseEpilogues" }
    public init() {}

    public func run(_ input: Graph) throws -> Graph {
        let g = input
        let readers = g.consumers()
        // For each conv, the nodes its kernel absorbs (itself first).
        var groupOf: [Int: [Int]] = [:]
        for node in g.nodes where node.op == .conv || node.op == .fusedConv {
            var group = [node.id]
            var last = node.id
            if readers[last].count == 1, g.nodes[readers[last][0]].op == .add, g.nodes[readers[last][0]].inputs[0] == last {
                last = readers[last][0]
                group.append(last)
            }
            if readers[last].count == 1, g.nodes[readers[last][0]].op == .relu {
                last = readers[last][0]
                group.append(last)
            }
            guard group.count > 1 else { continue }
            groupOf[last] = group
        }

        // The fused kernel takes the place of the last node it absorbs.
        var nodes = g.nodes
        var removed = Set<Int>()
        for (last, group) in groupOf {
            let conv = g.nodes[group[0]]
            var fused = conv
            fused.op = .fusedConv
            fused.id = last
            fused.shape = g.nodes[last].shape
            var parts = conv.attrs.fused ?? ["conv"]
            for member in group.dropFirst() {
                let m = g.nodes[member]
                if m.op == .add {
                    parts.append("add")
                    let (read, source) = ShortcutRead.of(m, in: g, readers: readers)
                    fused.attrs.shortcut = read
                    fused.inputs.append(source)
                } else {
                    parts.append("relu")
                    fused.attrs.relu = true
                }
            }
            fused.attrs.fused = parts
            nodes[last] = fused
            removed.formUnion(group.dropLast())
        }
        var out = g
        out.nodes = nodes
        return out.renumbered(order: g.nodes.indices.filter { !removed.contains($0) }).removingDeadNodes()
    }
}

extension ShortcutRead {
    /// How a kernel absorbing `add` reads its shortcut (inputs[1]): an option-A
    /// `zeroPad` read only by this add is read in place from its own input;
    /// anything else is added as a tensor. Returns the read and the node to read.
    static func of(_ add: Node, in g: Graph, readers: [[Int]]) -> (ShortcutRead, Int) {
        let s = g.nodes[add.inputs[1]]
        if s.op == .zeroPad, readers[s.id] == [add.id] {
            return (.zeroPad(stride: s.attrs.stride!, channels: g.shape(s.inputs[0]).c), s.inputs[0])
        }
        return (.tensor, s.id)
    }
}
