/// Direct convolution into the blocked layout (NCHW16c) with a vector
/// microkernel (templates/conv_blocked.c.mustache): a register tile of
/// output pixels × output-channel blocks, input values broadcast, weights
/// streamed from the packed copy ([OB][CB][K][K][IB][16], see ParameterLayout).
/// The input is either blocked too or, for the network's first conv, the
/// caller's NCHW (input block 1). The same family computes a conv's data
/// gradient: a stride-1 conv of ∂y spread by the stride, bordered by K−1−P,
/// with the transposed, flipped kernel (`role: .dataGradient`).
struct BlockedConv: KernelFamily {
    enum Role: Hashable {
        case forward
        /// ∂x of a conv with this stride and padding; `input` is ∂y, `output` is ∂x.
        case dataGradient(stride: Int, padding: Int)
    }
    var role: Role
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

    /// The padded copy's geometry: input pixel (r, q) at (top + r·dilation, …) of a
    /// paddedH × paddedW buffer, and the stride the kernel then steps by.
    var padTop: Int, dilation: Int, paddedH: Int, paddedW: Int, step: Int
    var padded: Bool { role != .forward || padding > 0 }

    init(role: Role, input: Shape, inputBlock: Int, output: Shape, block: Int, kernel: Int, stride: Int, padding: Int,
         wide: VectorTile, narrow: VectorTile, epilogue: Epilogue, parts: [String]) {
        self.role = role
        self.input = input
        self.inputBlock = inputBlock
        self.output = output
        self.block = block
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
        self.wide = wide
        self.narrow = narrow
        self.epilogue = epilogue
        self.parts = parts
        switch role {
        case .forward:
            (padTop, dilation, paddedH, paddedW, step) = (padding, 1, input.h + 2 * padding, input.w + 2 * padding, stride)
        case let .dataGradient(s, p):
            (padTop, dilation, paddedH, paddedW, step) = (kernel - 1 - p, s, output.h + kernel - 1, output.w + kernel - 1, 1)
        }
    }

    var name: String {
        (role == .forward ? "k_conv" : "k_convgd")
            + "\(kernel)x\(kernel)s\(stride)p\(padding)_\(input.c)x\(input.h)x\(input.w)"
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
            "k": kernel, "s": step, "p": padding, "paddedInput": padded,
            "padTop": padTop, "dilation": dilation, "hp": paddedH, "wp": paddedW,
            "what": role == .forward ? "\(kernel)×\(kernel)/\(stride) pad \(padding)"
                : "∂x of \(kernel)×\(kernel)/\(stride) pad \(padding) (∂y spread ×\(dilation), border \(padTop))",
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
        let gradient = node.op == .convGradData
        let f = gradient ? g.nodes[a.forward!].attrs : a
        let epilogue = Epilogue.of(node, g)
        // A flattened 1×1 conv is the same kernel on one row of H·W pixels.
        var input = g.shape(node.inputs[0]), output = node.shape!
        if Schedule.flattensRows(node, g) {
            input = Shape(c: input.c, h: 1, w: input.h * input.w)
            output = Shape(c: output.c, h: 1, w: output.h * output.w)
        }
        let family = BlockedConv(role: gradient ? .dataGradient(stride: f.stride!, padding: f.padding!) : .forward,
                                 input: input, inputBlock: g.layout(node.inputs[0]).block,
                                 output: output, block: g.layout(node.id).block,
                                 kernel: f.kernel!, stride: f.stride!, padding: f.padding!,
                                 wide: a.wideTile!, narrow: a.narrowTile!,
                                 epilogue: epilogue,
                                 parts: a.fused ?? [gradient ? "convGradData" : "conv"])
        var args: [CEmitter.Argument] = [.buffer(node.inputs[0])]
        if family.padded { args.append(.scratch(node.id)) }
        args += packedWeights(node, g, layout)
        if epilogue.shortcut != nil { args.append(.buffer(node.inputs[1])) }
        return family.view(args)
    }
}
