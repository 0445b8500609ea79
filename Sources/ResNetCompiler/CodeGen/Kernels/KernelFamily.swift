/// A kernel family: a key holding everything that determines a kernel's code
/// (op, shapes, layouts, algorithm, tiles, epilogue), from which its C name
/// and its template values both derive, so two kernels with equal names are
/// equal code by construction. The call site (which buffers it reads) is not
/// part of the key.
protocol KernelFamily: Hashable {
    /// The template the family fills (`templates/NAME.mustache`).
    var template: String { get }
    /// A C identifier spelling out the key.
    var name: String { get }
    /// The values the template places; a function of the key only.
    var values: [String: Any] { get }
}

/// Where a vector conv's packed weights and padded bias are: `m->packed`
/// (inference, by the conv's name) or `m->tpacked` (the training step, which
/// packs each kernel's weights there right before it runs; a data gradient's
/// transposed kernel by the forward conv's name + "#T").
func packedWeights(_ node: Node, _ g: Graph, _ layout: ParameterLayout) -> [CEmitter.Argument] {
    let name = ParameterLayout.packName(node, g)
    let (pack, buffer) = g.training ? (layout.trainPacks[layout.trainPackIndex[name]!], "m->tpacked") : (layout.packOf[name]!, "m->packed")
    return [.pointer("\(buffer) + \(pack.pw)"), .pointer("\(buffer) + \(pack.pb)")]
}

extension Shape {
    /// The shape as kernel names spell it: `16x32x32`.
    var identifier: String { "\(c)x\(h)x\(w)" }
}

extension ParameterLayout {
    /// A kernel argument pointing at parameter `name` in `m->params`.
    func param(_ name: String) -> CEmitter.Argument { .pointer("m->params + \(offset[name]!)") }
    /// A kernel argument pointing at the gradient of parameter `name` in `m->grads`.
    func grad(_ name: String) -> CEmitter.Argument { .pointer("m->grads + \(offset[name]!)") }
}

extension KernelFamily {
    /// The view the emitter renders: the key's name and values, plus the call's arguments.
    func view(_ args: [CEmitter.Argument]) -> CEmitter.KernelView {
        var v = values
        v["fn"] = name
        return CEmitter.KernelView(template: template, fn: name, values: v, args: args)
    }
}

/// An epilogue shared by the conv families: bias (always present in a vector
/// conv: zero when the layer has none), the shortcut added, and ReLU.
struct Epilogue: Hashable {
    enum Shortcut: Hashable {
        /// The shortcut tensor, in the output's layout.
        case tensor
        /// Option A read in place: every `stride`th pixel of a `source`-shaped
        /// blocked tensor; output blocks beyond its channels add nothing.
        case zeroPad(stride: Int, source: Shape)
        /// A data gradient's option-A adjoint: every `stride`th pixel receives the
        /// gradient of the block output (`source`-shaped, blocked).
        case zeroPadAdjoint(stride: Int, source: Shape)
    }
    var shortcut: Shortcut?
    var relu: Bool
    /// The output is written over the shortcut tensor (PlanMemory): the two
    /// pointers alias, so neither is `restrict`; each element's shortcut is
    /// read before its output is stored, and no element is stored twice.
    var inPlace = false

    /// A node's epilogue: its shortcut (the data gradient's `gradShortcut`,
    /// read as the option-A adjoint) and its ReLU.
    static func of(_ node: Node, _ g: Graph) -> Epilogue {
        let gradient = node.op == .convGradData
        var shortcut: Shortcut?
        switch gradient ? node.attrs.gradShortcut : node.attrs.shortcut {
        case .tensor?: shortcut = .tensor
        case let .zeroPad(stride, _)? where gradient: shortcut = .zeroPadAdjoint(stride: stride, source: g.shape(node.inputs[1]))
        case let .zeroPad(stride, _)?: shortcut = .zeroPad(stride: stride, source: g.shape(node.inputs[1]))
        case nil: shortcut = nil
        }
        return Epilogue(shortcut: shortcut, relu: node.attrs.relu == true, inPlace: node.attrs.inPlace == true)
    }

    /// `_add`, `_addzp<C>x<H>x<W>s<stride>`, then `_relu`.
    var suffix: String {
        var s = ""
        switch shortcut {
        case .tensor?: s += "_add"
        case let .zeroPad(stride, source)?: s += "_addzp\(source.c)x\(source.h)x\(source.w)s\(stride)"
        case let .zeroPadAdjoint(stride, source)?: s += "_addzpT\(source.c)x\(source.h)x\(source.w)s\(stride)"
        case nil: break
        }
        return s + (relu ? "_relu" : "") + (inPlace ? "_inplace" : "")
    }

    /// Parts of the kernel's comment, after the conv's own.
    var parts: [String] {
        (shortcut == nil ? [] : ["add"]) + (relu ? ["relu"] : [])
    }

    func addValues(to v: inout [String: Any], block: Int) {
        switch shortcut {
        case .tensor?:
            v["hasShortcut"] = true
            v["tensorShortcut"] = true
        case let .zeroPad(stride, source)?, let .zeroPadAdjoint(stride, source)?:
            v["hasShortcut"] = true
            if case .zeroPad = shortcut! { v["zeroPadShortcut"] = true } else { v["zeroPadAdjoint"] = true }
            v["scC"] = source.c
            v["scBlocks"] = (source.c + block - 1) / block
            v["scH"] = source.h
            v["scW"] = source.w
            v["scStride"] = stride
        case nil:
            break
        }
        v["relu"] = relu
        v["inPlace"] = inPlace
    }
}
