/// Prints the graph as a person reads it, one node per line:
/// `%5 = fusedConv[conv+bn+add+relu] layer1.0.conv2 (%4, %1 zeroPad/2) k3 s1 p1 → 16×32×32 @arena+0`.
public enum IRPrinter {
    public static func print(_ g: Graph) -> String {
        var lines = ["graph \(g.name) {"]
        for node in g.nodes {
            var parts: [String] = []
            let kind = node.attrs.fused.map { "\(node.op.rawValue)[\($0.joined(separator: "+"))]" } ?? node.op.rawValue
            parts.append("%\(node.id) = \(kind) \(node.name)")
            var inputs = node.inputs.map { "%\($0)" }
            if case let .zeroPad(stride, channels)? = node.attrs.shortcut, inputs.count > 1 {
                inputs[1] += " zeroPad(stride \(stride), from \(channels) ch)"
            }
            if !inputs.isEmpty { parts.append("(" + inputs.joined(separator: ", ") + ")") }
            let a = node.attrs
            var attrs: [String] = []
            if let v = a.outChannels { attrs.append("out=\(v)") }
            if let v = a.outFeatures { attrs.append("out=\(v)") }
            if let v = a.kernel { attrs.append("k=\(v)") }
            if let v = a.stride { attrs.append("s=\(v)") }
            if let v = a.padding, v > 0 { attrs.append("p=\(v)") }
            if a.bias == true { attrs.append("bias") }
            if let v = a.foldedBatchNorm { attrs.append("bn=\(v)") }
            if let v = a.shapeOf { attrs.append("shapeOf=%\(v)") }
            if let v = a.forward { attrs.append("of=%\(v)") }
            if let v = a.gradOf { attrs.append("writes ∂\(v).*") }
            if a.reluMask == true { attrs.append("relu-mask") }
            if let v = a.recomputes {
                attrs.append(node.op == .conv ? "recomputes \(v) (its weights, its rebuilt input)" : "recomputes \(v) from saved scale/shift")
            }
            if let wide = a.wideTile, let narrow = a.narrowTile {
                attrs.append("\(a.algorithm ?? .direct) tile avx512=\(wide) avx2/neon/portable=\(narrow)"
                             + (a.tile?.paddedInput == true ? " padded-input" : "")
                             + (Schedule.flattensRows(node, g) ? " one-row-of-\(Schedule.directRow(node, g))px" : ""))
            } else if let t = a.tile { attrs.append("tile=\(t.outChannels)×\(t.width)") }
            if let l = a.layout { attrs.append("layout=\(l)") }
            if case let .zeroPad(stride, channels)? = a.gradShortcut {
                attrs.append("+ option-A adjoint of %\(node.inputs.last!) (stride \(stride), \(channels) ch)")
            } else if a.gradShortcut == .tensor {
                attrs.append("+ %\(node.inputs.last!)")
            }
            if !attrs.isEmpty { parts.append(attrs.joined(separator: " ")) }
            if let s = node.shape { parts.append("→ \(s)") }
            if let m = g.memory, m.offsets[node.id] >= 0 { parts.append("@arena+\(m.offsets[node.id])") }
            lines.append("  " + parts.joined(separator: " "))
        }
        if let m = g.memory {
            lines.append("  // arena \(m.arenaFloats) floats/sample (naive \(m.naiveFloats), lower bound \(m.lowerBoundFloats))")
        }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }
}
