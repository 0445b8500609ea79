/// FoldBatchNorm (inference): a conv whose only reader is a batch norm becomes
/// one `fusedConv` whose weights and bias are the BN-scaled ones.
///
/// Requires InferShapes. In eval mode BN is the affine map
/// y = γ (x − μ)/√(σ² + ε) + β per channel, so with s = γ/√(σ² + ε) the pair is
/// a conv with weights s·W and bias β − s·μ (+ s·b if the conv had a bias). The
/// weights are loaded at run time, so the generated C does the arithmetic once
/// after every load or training step; this pass only records which BN folds
/// into which conv (`foldedBatchNorm`). Parameters keep their torchvision names.
public struct FoldBatchNorm: Pass {
    public var name: String { "FoldBatchNorm" }
    public init() {}

    public func run(_ input: Graph) throws -> Graph {
        var g = input
        let readers = g.consumers()
        var replacement = Array(g.nodes.indices)
        for node in g.nodes where node.op == .batchNorm {
            let producer = node.inputs[0]
            guard g.nodes[producer].op == .conv, readers[producer] == [node.id] else { continue }
            g.nodes[producer].op = .fusedConv
            g.nodes[producer].attrs.foldedBatchNorm = node.name
            g.nodes[producer].attrs.fused = ["conv", "bn"]
            replacement[node.id] = producer
        }
        for i in g.nodes.indices {
            g.nodes[i].inputs = g.nodes[i].inputs.map { replacement[$0] }
        }
        return g.removingDeadNodes()
    }
}
