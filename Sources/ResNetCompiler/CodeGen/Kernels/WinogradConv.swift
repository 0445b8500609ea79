/// Winograd F(4×4, 3×3) for stride-1 3×3 convolutions in the blocked layout
/// (templates/winograd.c.mustache, transforms in vector.c): forward, and a
/// stride-1 conv's data gradient (the same conv of ∂y with the transposed,
/// flipped kernel). Weights are transformed once per fold (inference) or per
/// step (training) by rc_pack_winograd. The epilogue is the direct family's.
struct WinogradConv: KernelFamily {
    var gradient: Bool
    var input: Shape
    var output: Shape
    var block: Int
    var padding: Int
    /// Tile rows per work item.
    var rows: Int
    var wide: VectorTile, narrow: VectorTile
    var epilogue: Epilogue
    var parts: [String]

    var template: String { "winograd.c" }

    /// The zero border read around the input, top and left: the conv's padding, or K−1−P for a data gradient.
    var padTop: Int { gradient ? 2 - padding : padding }

    var name: String {
        (gradient ? "k_convgd" : "k_conv") + "3x3s1p\(padding)_\(input.c)x\(input.h)x\(input.w)_b\(block)_\(output.c)_b\(block)"
            + epilogue.suffix + "_wino4r\(rows)_w\(wide.blocks)x\(wide.pixels)n\(narrow.blocks)x\(narrow.pixels)"
    }

    var values: [String: Any] {
        var v: [String: Any] = [
            "parts": parts.joined(separator: " + "), "inShape": "\(input)", "outShape": "\(output)",
            "c": input.c, "cb": (input.c + block - 1) / block, "h": input.h, "w": input.w,
            "oc": output.c, "ob": (output.c + block - 1) / block, "oh": output.h, "ow": output.w,
            "padTop": padTop, "rows": rows,
            "wideBlocks": wide.blocks, "widePixels": wide.pixels, "narrowBlocks": narrow.blocks, "narrowPixels": narrow.pixels,
            "what": gradient ? "∂x of 3×3/1 pad \(padding)" : "3×3/1 pad \(padding)",
        ]
        epilogue.addValues(to: &v, block: block)
        return v
    }

    static func make(_ node: Node, _ g: Graph, _ layout: ParameterLayout) -> CEmitter.KernelView {
        let a = node.attrs
        let gradient = node.op == .convGradData
        let f = gradient ? g.nodes[a.forward!] : node
        guard case let .winograd(rows)? = a.algorithm else { preconditionFailure("not a Winograd conv") }
        let epilogue = Epilogue.of(node, g)
        let family = WinogradConv(gradient: gradient, input: g.shape(node.inputs[0]), output: node.shape!,
                                  block: g.layout(node.id).block, padding: f.attrs.padding!, rows: rows,
                                  wide: a.wideTile!, narrow: a.narrowTile!,
                                  epilogue: epilogue,
                                  parts: a.fused ?? [gradient ? "convGradData" : "conv"])
        var args: [CEmitter.Argument] = [.buffer(node.inputs[0]), .scratch(node.id)] + packedWeights(node, g, layout)
        if epilogue.shortcut != nil { args.append(.buffer(node.inputs[1])) }
        return family.view(args)
    }
}
