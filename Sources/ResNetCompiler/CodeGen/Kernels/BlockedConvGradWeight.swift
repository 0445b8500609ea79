/// A conv's weight (and bias) gradient from a blocked ∂y
/// (templates/convgw_blocked.c.mustache): per group of images, output block
/// and input block, a partial ∂W built band by band (`bandRows` output rows,
/// whose ∂y and input rows stay in L1), every tap and group of input channels
/// in vector accumulators (all IB channels with 32 registers, 4 with 16); the
/// groups' partials added in order and unpacked into the state-dict layout of
/// `m->grads`.
struct BlockedConvGradWeight: KernelFamily {
    var input: Shape
    var inputBlock: Int
    var output: Shape
    var block: Int
    var kernel: Int, stride: Int, padding: Int
    var bias: Bool
    /// Output rows per band (Schedule: `Tile.width` of the weight gradient).
    var bandRows: Int

    var template: String { "convgw_blocked.c" }

    var name: String {
        "k_convgw\(kernel)x\(kernel)s\(stride)p\(padding)_\(input.c)x\(input.h)x\(input.w)"
            + (inputBlock == 1 ? "_nchw" : "_b\(inputBlock)") + "_\(output.c)_b\(block)_r\(bandRows)" + (bias ? "_bias" : "")
    }

    var values: [String: Any] {
        [
            "inShape": "\(input)", "outShape": "\(output)", "inLayout": inputBlock == 1 ? "NCHW" : "NCHW\(inputBlock)c",
            "c": input.c, "ib": inputBlock, "cb": (input.c + inputBlock - 1) / inputBlock, "h": input.h, "w": input.w,
            "oc": output.c, "ob": (output.c + block - 1) / block, "oh": output.h, "ow": output.w,
            "k": kernel, "s": stride, "p": padding, "hasBias": bias,
            "bandRows": bandRows, "lanesWide": inputBlock, "lanesNarrow": [4, 2, 1].first { inputBlock % $0 == 0 }!,
        ]
    }

    static func make(_ node: Node, _ g: Graph, _ layout: ParameterLayout) -> CEmitter.KernelView {
        let f = g.nodes[node.attrs.forward!], fa = f.attrs
        let family = BlockedConvGradWeight(input: g.shape(f.inputs[0]), inputBlock: g.layout(f.inputs[0]).block,
                                           output: f.shape!, block: g.layout(node.inputs[0]).block,
                                           kernel: fa.kernel!, stride: fa.stride!, padding: fa.padding!, bias: fa.bias == true,
                                           bandRows: node.attrs.tile!.width)
        var args: [CEmitter.Argument] = [.buffer(node.inputs[0]), .buffer(node.inputs[1]), .partials,
                                         layout.grad(f.name + ".weight")]
        if fa.bias == true { args.append(layout.grad(f.name + ".bias")) }
        args.append(.pointer("&m->reducer"))
        return family.view(args)
    }
}
