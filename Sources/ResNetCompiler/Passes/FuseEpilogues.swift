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
        var absorbedInto: [Int: Int] = [:]
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
            for member in group { absorbedInto[member] = last }
        }

        var nodes: [Node] = []
        var newID = Array(repeating: -1, count: g.nodes.count)
        for node in g.nodes {
            if let anchor = absorbedInto[node.id] {
                guard anchor == node.id, let group = groupOf[anchor] else { continue }
                let conv = g.nodes[group[0]]
                var fused = conv
                fused.op = .fusedConv
                fused.id = nodes.count
                fused.shape = node.shape
                fused.inputs = [newID[conv.inputs[0]]]
                var parts = conv.attrs.fused ?? ["conv"]
                for member in group.dropFirst() {
                    let m = g.nodes[member]
                    if m.op == .add {
                        parts.append("add")
                        let s = g.nodes[m.inputs[1]]
                        if s.op == .zeroPad, readers[s.id] == [m.id] {
                            fused.attrs.shortcut = .zeroPad(stride: s.attrs.stride!, channels: g.shape(s.inputs[0]).c)
                            fused.inputs.append(newID[s.inputs[0]])
                        } else {
                            fused.attrs.shortcut = .tensor
                            fused.inputs.append(newID[s.id])
                        }
                    } else {
                        parts.append("relu")
                        fused.attrs.relu = true
                    }
                }
                fused.attrs.fused = parts
                precondition(fused.inputs.allSatisfy { $0 >= 0 }, "fusion broke topological order")
                newID[node.id] = nodes.count
                nodes.append(fused)
            } else {
                var n = node
                n.id = nodes.count
                n.inputs = node.inputs.map { newID[$0] }
                newID[node.id] = nodes.count
                nodes.append(n)
            }
        }
        var out = g
        out.nodes = nodes
        return out.removingDeadNodes()
    }
}
