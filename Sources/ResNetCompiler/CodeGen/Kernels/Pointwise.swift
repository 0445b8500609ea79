/// Element-wise kernels, the materialised option-A shortcut, and their
/// gradients (templates/pointwise.c.mustache): what a graph runs when ReLU,
/// the residual add and the zero-padded shortcut are not fused into a conv or
/// batch norm (`--no-fuse`, or a ReLU or add no kernel could absorb). ReLU
/// and add run over the floats a tensor occupies in its layout, so one kernel
/// serves every shape of that size.
struct Pointwise: KernelFamily {
    enum Kind: Hashable {
        /// y = max(x, 0) over `floats` floats per image.
        case relu(floats: Int)
        /// y = x + s over `floats` floats per image.
        case add(floats: Int)
        /// dx = dy where y > 0, over `floats` floats per image.
        case reluGrad(floats: Int)
        /// Option A: every `stride`th pixel of `input`, channels beyond its own zero.
        case zeroPad(input: Shape, output: Shape, stride: Int)
        /// Its adjoint: `input` is the padded tensor's gradient, `output` the unpadded one's.
        case zeroPadGrad(input: Shape, output: Shape, stride: Int)
    }
    var kind: Kind

    var template: String { "pointwise.c" }

    var name: String {
        switch kind {
        case let .relu(floats): "k_relu_\(floats)"
        case let .add(floats): "k_add_\(floats)"
        case let .reluGrad(floats): "k_relugrad_\(floats)"
        case let .zeroPad(input, output, stride): "k_zeropad_\(input.identifier)_\(output.c)s\(stride)"
        // The unpadded tensor's height and width do not follow from the padded one's (11 or 12 rows → 6).
        case let .zeroPadGrad(input, output, stride): "k_zeropadgrad_\(input.identifier)_\(output.identifier)s\(stride)"
        }
    }

    var values: [String: Any] {
        switch kind {
        case let .relu(floats): return ["relu": true, "count": floats]
        case let .add(floats): return ["add": true, "count": floats]
        case let .reluGrad(floats): return ["reluGrad": true, "count": floats]
        case let .zeroPad(input, output, stride), let .zeroPadGrad(input, output, stride):
            var v: [String: Any] = [
                "inShape": "\(input)", "outShape": "\(output)", "s": stride,
                "c": input.c, "h": input.h, "w": input.w, "oc": output.c, "oh": output.h, "ow": output.w,
            ]
            if case .zeroPad = kind { v["zeroPad"] = true } else { v["zeroPadGrad"] = true }
            return v
        }
    }

    static func make(_ node: Node, _ g: Graph, _ layout: ParameterLayout) -> CEmitter.KernelView {
        let input = g.shape(node.inputs[0]), output = node.shape!
        let kind: Kind
        switch node.op {
        case .relu: kind = .relu(floats: g.storedFloats(node.id))
        case .add: kind = .add(floats: g.storedFloats(node.id))
        case .reluGrad: kind = .reluGrad(floats: output.count)
        case .zeroPad: kind = .zeroPad(input: input, output: output, stride: node.attrs.stride!)
        default: kind = .zeroPadGrad(input: input, output: output, stride: node.attrs.stride!)
        }
        return Pointwise(kind: kind).view(node.inputs.map(CEmitter.Argument.buffer))
    }
}
