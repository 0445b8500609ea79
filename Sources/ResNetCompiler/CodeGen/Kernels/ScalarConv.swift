/// Direct convolution in plain NCHW with scalar loops the C compiler
/// vectorises (templates/conv.c.mustache): the forward conv with its bias or folded batch
/// norm and its epilogue, the data gradient and the weight gradient. It runs
/// wherever the graph is not blocked (`--no-fuse`, graphs `Schedule.canBlock`
/// rejects). The key describes the forward conv for all three: `input` is its
/// x and `output` its y, so a gradient's output is `input`.
struct ScalarConv: KernelFamily {
    enum Kind: Hashable {
        /// y = conv(x) + bias, then the epilogue, in `tile`s of output channels × row outputs.
        case forward(bias: Bias, tile: Tile, epilogue: Epilogue)
        /// ∂x, plus a gradient added in the epilogue (a tensor or the option-A
        /// adjoint). `tile`: ∂y is copied with a K−1−P border and convolved with
        /// the flipped kernel in register tiles (stride 1); nil: each ∂y is
        /// scattered over its window.
        case dataGradient(tile: Tile?, epilogue: Epilogue)
        /// ∂W and, with `bias`, ∂b. `tile`: OB output channels at a time over a
        /// zero-bordered copy of x; nil: one (o, c) pair at a time.
        case weightGradient(bias: Bool, tile: Tile?)
    }
    /// Where a forward conv's bias comes from.
    enum Bias: Hashable {
        case none
        /// The layer's own `.bias`.
        case own
        /// Batch norm folded into the weights and a bias (`m->folded`).
        case folded
    }
    var kind: Kind
    var input: Shape
    var output: Shape
    var kernel: Int, stride: Int, padding: Int

    var template: String { "conv.c" }

    /// e.g. `k_conv3x3s1p1_16x32x32_16_bn_add_relu_t4x8_padded`.
    var name: String {
        let geometry = "\(kernel)x\(kernel)s\(stride)p\(padding)_\(input.identifier)_\(output.c)"
        switch kind {
        case let .forward(bias, tile, epilogue):
            let source = bias == .folded ? "_bn" : bias == .own ? "_bias" : ""
            return "k_conv" + geometry + source + epilogue.suffix + Self.suffix(tile)
        case let .dataGradient(tile, epilogue):
            return "k_convgd" + geometry + (tile.map(Self.suffix) ?? "") + adjointSuffix(epilogue)
        case let .weightGradient(bias, tile):
            return "k_convgw" + geometry + (bias ? "_bias" : "") + (tile.map(Self.suffix) ?? "")
        }
    }

    /// The tile when it is not the default 4×16, and whether the input is padded first.
    static func suffix(_ t: Tile) -> String {
        (t.outChannels != 4 || t.width != 16 ? "_t\(t.outChannels)x\(t.width)" : "") + (t.paddedInput ? "_padded" : "")
    }

    /// The data gradient's added gradient: `_add`, or `_addzp<C>s<stride>_<source>`
    /// for the option-A adjoint. This spelling predates `Epilogue.suffix` and is
    /// kept so that the names of these kernels, already complete, did not change.
    func adjointSuffix(_ e: Epilogue) -> String {
        switch e.shortcut {
        case .tensor?: "_add"
        case let .zeroPadAdjoint(stride, source)?, let .zeroPad(stride, source)?:
            "_addzp\(input.c)s\(stride)_\(source.identifier)"
        case nil: ""
        }
    }

    var values: [String: Any] {
        var v: [String: Any] = [
            "inShape": "\(input)", "outShape": "\(output)",
            "c": input.c, "h": input.h, "w": input.w, "oc": output.c, "oh": output.h, "ow": output.w,
            "k": kernel, "s": stride, "p": padding,
        ]
        switch kind {
        case let .forward(bias, tile, epilogue):
            v["conv"] = true
            v["parts"] = (["conv"] + (bias == .folded ? ["bn"] : []) + epilogue.parts).joined(separator: " + ")
            v["ob"] = tile.outChannels
            v["tw"] = tile.width
            v["paddedInput"] = tile.paddedInput
            v["hasBias"] = bias != .none
            epilogue.addValues(to: &v, block: 1)
        case let .dataGradient(tile, epilogue):
            v["convGradData"] = true
            if let tile {
                v["paddedGrad"] = true
                v["ob"] = tile.outChannels
                v["tw"] = tile.width
            }
            epilogue.addValues(to: &v, block: 1)
        case let .weightGradient(bias, tile):
            v["convGradWeight"] = true
            if let tile {
                v["paddedInput"] = true
                v["ob"] = tile.outChannels
            }
            v["hasBias"] = bias
        }
        return v
    }

    /// The kernel for a conv, fused conv or conv gradient node in plain NCHW,
    /// and the call's arguments (inputs, scratch, weights and bias, shortcut).
    static func make(_ node: Node, _ g: Graph, _ layout: ParameterLayout) -> CEmitter.KernelView {
        let a = node.attrs
        let f = node.op == .conv || node.op == .fusedConv ? node : g.nodes[a.forward!]
        // The gradients' register tiles always work on a padded copy.
        let paddedTile = a.tile.flatMap { $0.paddedInput ? $0 : nil }
        var args: [CEmitter.Argument] = [.buffer(node.inputs[0])]
        let kind: Kind
        switch node.op {
        case .convGradData:
            kind = .dataGradient(tile: paddedTile, epilogue: Epilogue.of(node, g))
            if paddedTile != nil { args.append(.scratch(node.id)) }
            args.append(layout.param(f.name + ".weight"))
            if node.inputs.count > 1 { args.append(.buffer(node.inputs[1])) }
        case .convGradWeight:
            let bias = f.attrs.bias == true
            kind = .weightGradient(bias: bias, tile: paddedTile)
            args.append(.buffer(node.inputs[1]))
            if paddedTile != nil { args.append(.scratch(node.id)) }
            args.append(layout.grad(f.name + ".weight"))
            if bias { args.append(layout.grad(f.name + ".bias")) }
            args.append(.pointer("&m->reducer"))
        default:
            // Schedule tiles every plain conv; untiled, one output at a time.
            let tile = a.tile ?? Tile(outChannels: 1, width: 1)
            if tile.paddedInput { args.append(.scratch(node.id)) }
            let bias: Bias
            if node.op == .fusedConv, let fold = layout.foldOf[node.name] {
                bias = .folded
                args += [.pointer("m->folded + \(fold.fw)"), .pointer("m->folded + \(fold.fb)")]
            } else {
                bias = a.bias == true ? .own : .none
                args.append(layout.param(node.parameterLayer + ".weight"))
                if bias == .own { args.append(layout.param(node.parameterLayer + ".bias")) }
            }
            let epilogue = Epilogue.of(node, g)
            if epilogue.shortcut != nil { args.append(.buffer(node.inputs[1])) }
            kind = .forward(bias: bias, tile: tile, epilogue: epilogue)
        }
        let family = ScalarConv(kind: kind, input: g.shape(f.inputs[0]), output: f.shape!,
                                kernel: f.attrs.kernel!, stride: f.attrs.stride!, padding: f.attrs.padding!)
        return family.view(args)
    }
}
