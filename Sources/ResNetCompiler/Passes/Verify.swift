/// Verify: the IR's invariants, checked after every pass of the pipeline (as
/// QBE runs its `ssacheck` between passes), so a pass that breaks one fails at
/// that pass with its name rather than as wrong numbers in the C.
///
/// Checked: inputs come from earlier nodes; once shapes are inferred every
/// node that produces a tensor has one; layouts agree across edges (a blocked
/// kernel reads blocked tensors, the classifier and the loss read NCHW, an
/// elementwise op keeps its input's layout); vector tiles divide the output
/// blocks they tile and fit the row; a kernel that copies its input has the
/// scratch for the copy; a memory plan keeps every buffer inside the arena and
/// 64-byte aligned. (That no two live buffers overlap is the planner's own
/// invariant, tested over a table of graphs.)
public enum Verify {
    public static func check(_ g: Graph, after pass: String) throws {
        func fail(_ node: Node, _ why: String) -> CompileError {
            CompileError("internal error after \(pass): node %\(node.id) \(node.op.rawValue) '\(node.name)': \(why)")
        }
        let shaped = g.output.shape != nil   // InferShapes has run
        for (position, node) in g.nodes.enumerated() {
            if node.id != position { throw fail(node, "its id is not its position \(position)") }
            if node.inputs.contains(where: { $0 < 0 || $0 >= node.id }) { throw fail(node, "reads a node that is not earlier") }
            if shaped && node.shape == nil && ![.convGradWeight, .sgdUpdate].contains(node.op) {
                throw fail(node, "has no shape after shapes were inferred")
            }
            let layout = g.layout(node.id)
            let ins = node.inputs.map { g.layout($0) }
            switch node.op {
            case .dense, .softmax, .loss, .denseGrad, .globalAvgPoolGrad:
                if ins.contains(where: { $0 != .plain }) { throw fail(node, "reads a blocked tensor; it expects NCHW") }
            case .globalAvgPool:
                if layout != .plain { throw fail(node, "must write NCHW for the classifier") }
            case .relu, .add, .maxPool, .batchNormAct, .batchNormGrad, .secondOutput, .maxPoolGrad:
                if let bad = ins.first(where: { $0 != layout }) { throw fail(node, "reads \(bad) but writes \(layout)") }
            default:
                break
            }
            if let wide = node.attrs.wideTile, let narrow = node.attrs.narrowTile {
                guard layout != .plain, let out = node.shape else { throw fail(node, "a vector tile on an NCHW output") }
                let blocks = (out.c + layout.block - 1) / layout.block
                let row = node.attrs.algorithm == nil ? Schedule.directRow(node, g) : out.w
                for t in [wide, narrow] where t.blocks < 1 || blocks % t.blocks != 0 || t.pixels < 1 || t.pixels > row {
                    throw fail(node, "tile \(t) does not divide \(blocks) output blocks × \(row) pixels")
                }
                if node.op != .convGradData, node.inputs.dropFirst().contains(where: { g.layout($0) != layout }) {
                    throw fail(node, "reads its shortcut in another layout than it writes")
                }
            }
            if node.attrs.tile?.paddedInput == true && (node.attrs.scratch ?? 0) <= 0 {
                throw fail(node, "copies its input but has no scratch")
            }
        }
        if let plan = g.memory {
            for b in PlanMemory.lifetimes(g) {
                let at = plan.offsets[b.id]
                guard at >= 0, at + b.size <= plan.arenaFloats, at % 16 == 0 else {
                    throw CompileError("internal error after \(pass): buffer \(b.id) at \(at) (+\(b.size)) is outside the arena of \(plan.arenaFloats) floats or not 64-byte aligned")
                }
            }
        }
    }
}
