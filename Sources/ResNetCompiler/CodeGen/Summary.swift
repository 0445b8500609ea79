import Foundation

/// The paper's Table 1 for any network: per layer, output size, kernel and
/// stride, parameters and multiply-adds, ending in `total params=P macs=M`.
///
/// Counts follow the paper's convention: multiply-adds of convolutions and the
/// fully connected layer (a conv output element costs C·k·k); batch norm,
/// ReLU, pooling and additions are not counted. Params are learnable weights
/// and biases (what torchvision's `numel` sum reports; running statistics aside).
public enum Summary {
    /// Multiply-adds per image of one node (conv and dense only).
    public static func macs(_ node: Node, _ g: Graph) -> Int {
        guard let out = node.shape else { return 0 }
        switch node.op {
        case .conv, .fusedConv:
            let x = g.shape(node.inputs[0])
            return out.count * x.c * node.attrs.kernel! * node.attrs.kernel!
        case .dense:
            return out.count * g.shape(node.inputs[0]).count
        default:
            return 0
        }
    }

    /// Multiply-adds per image of the whole network.
    public static func macs(_ g: Graph) -> Int { g.nodes.reduce(0) { $0 + macs($1, g) } }

    /// Learnable parameters (weights and biases; no running statistics).
    public static func learnableParameters(_ g: Graph) -> Int {
        g.parameters.filter(\.trainable).reduce(0) { $0 + $1.count }
    }

    /// The table, over the unfused graph (one row per layer that has a shape).
    public static func table(_ g: Graph) -> String {
        var rows: [[String]] = [["layer", "op", "output", "kernel/stride", "params", "mult-adds"]]
        let byLayer = Dictionary(grouping: g.parameters.filter(\.trainable), by: \.layer)
        for node in g.nodes where node.op != .input {
            var kernel = ""
            if let k = node.attrs.kernel, let s = node.attrs.stride { kernel = "\(k)×\(k)/\(s)" }
            let params = byLayer[node.name]?.reduce(0) { $0 + $1.count } ?? 0
            rows.append([node.name, node.op.rawValue, "\(node.shape!)", kernel,
                         params == 0 ? "" : "\(params)", macs(node, g) == 0 ? "" : "\(macs(node, g))"])
        }
        let widths = (0..<rows[0].count).map { c in rows.map { $0[c].count }.max()! }
        var lines = rows.map { row in
            row.enumerated().map { c, cell in
                c >= 4 ? String(repeating: " ", count: widths[c] - cell.count) + cell
                       : cell + String(repeating: " ", count: widths[c] - cell.count)
            }.joined(separator: "  ")
        }
        lines.insert(String(repeating: "-", count: lines[0].count), at: 1)
        let macs = Self.macs(g)
        lines.append((g.bottleneck ?? BottleneckStride.of(g)).statement)
        lines.append("network \(g.name): input \(g.shape(0)), \(g.classes) classes, "
            + String(format: "%.2fM params, %.3f billion multiply-adds", Double(learnableParameters(g)) / 1e6, Double(macs) / 1e9))
        lines.append("total params=\(learnableParameters(g)) macs=\(macs)")
        return lines.joined(separator: "\n") + "\n"
    }
}
