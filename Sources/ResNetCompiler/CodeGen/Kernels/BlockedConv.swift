/// Direct convolution into the blocked layout (NCHW16c) with a vector
/// microkernel (templates/conv_blocked.c.mustache): a register tile of
/// output pixels × output-channel blocks, input values broadcast, weights
/// streamed from the packed copy ([OB][CB][K][K][IB][16], see ParameterLayout).
/// The input is either blocked too or, for the network's first conv, the
/// caller's NCHW (input block 1).
struct BlockedConv: KernelFamily {
    var input: Shape
    /// Channels per input block: 16 (blocked) or 1 (NCHW).
    var inputBlock: Int
    var output: Shape
    var block: Int
    var kernel: Int, stride: Int, padding: Int
    var wide: VectorTile, narrow: VectorTile
    var epilogue: Epilogue
    /// Which layer parts it computes, for the comment (conv, bn, add, relu).
    var parts: [String]

    var template: String { "conv_blocked.c" }

    var name: String {
        "k_conv\(kernel)x\(kernel)s\(stride)p\(padding)_\(input.c)x\(input.h)x\(input.w)"
            + (inputBlock == 1 ? "_nchw" : "_b\(inputBlock)") + "_\(output.c)_b\(block)"
            + epilogue.suffix
            + "_w\(wide.blocks)x\(wide.pixels)n\(narrow.blocks)x\(narrow.pixels)"
    }

    var values: [String: Any] {
        var v: [String: Any] = [
            "parts": parts.joined(separator: " + "),
            "inShape": "\(input)", "outShape": "\(output)",
            "inLayout": inputBlock == 1 ? "NCHW" : "NCHW\(inputBlock)c",
            "c": input.c, "ib": inputBlock, "cb": (input.c + inputBlock - 1) / inputBlock,
            "h": input.h, "w": input.w,
            "oc": output.c, "ob": (output.c + block - 1) / block, "oh": output.h, "ow": output.w,
            "k": kernel, "s": stride, "p": padding, "paddedInput": padding > 0,
            "wideBlocks": wide.blocks, "widePixels": wide.pixels,
            "narrowBlocks": narrow.blocks, "narrowPixels": narrow.pixels,
        ]
        epilogue.addValues(to: &v, block: block)
        return v
    }

    /// The kernel for a scheduled conv node and the call's arguments
    /// (input, scratch, packed weights and bias, shortcut).
    static func make(_ node: Node, _ g: Graph, _ layout: ParameterLayout) -> CEmitter.KernelView {
        let a = node.attrs
        var shortcut: Epilogue.Shortcut?
        switch a.shortcut {
        case .tensor?: shortcut = .tensor
        case let .zeroPad(stride, _)?: shortcut = .zeroPad(stride: stride, source: g.shape(node.inputs[1]))
        case nil: shortcut = nil
        }
        let family = BlockedConv(input: g.shape(node.inputs[0]), inputBlock: g.layout(node.inputs[0]).block,
                                 output: node.shape!, block: g.layout(node.id).block,
                                 kernel: a.kernel!, stride: a.stride!, padding: a.padding!,
                                 wide: a.wideTile!, narrow: a.narrowTile!,
                                 epilogue: Epilogue(shortcut: shortcut, relu: a.relu == true),
                                 parts: a.fused ?? ["conv"])
        let pack = layout.packOf[node.name]!
        var args: [CEmitter.Argument] = [.buffer(node.inputs[0])]
        if a.padding! > 0 { args.append(.scratch(node.id)) }
        args += [.pointer("m->packed + \(pack.pw)"), .pointer("m->packed + \(pack.pb)")]
        if shortcut != nil { args.append(.buffer(node.inputs[1])) }
        return family.view(args)
    }
}
