import ResNetDSL

/// Where a network's downsampling bottleneck blocks put their stride, read
/// from the graph itself.
///
/// He et al. (2015) put it on the first 1×1 conv of the block; torchvision's
/// ResNet v1.5 on the 3×3. The two networks have the same parameter names and
/// shapes, so torchvision's weights load into either without an error, and
/// only `.torchvision` gives torchvision's outputs. The header, the report and
/// `--emit summary` state which one was compiled, so the mistake cannot go
/// unseen.
///
/// A bottleneck block is found from its `add`: the two operands are followed
/// back (along each node's first input) to the block's input, where they
/// meet; the operand with three convs of kernels 1, 3, 1 on the way is the
/// branch. This works on any graph before fusion, whatever the front end:
/// the DSL's, a JSON graph's or an ONNX export's (batch norm folded or not).
public enum BottleneckStride: String, Hashable, Codable, Sendable, CaseIterable {
    /// No bottleneck blocks (basic blocks, plain nets). Not `none`, which
    /// `Graph.bottleneck == .none` would read as Optional's.
    case noBottlenecks = "none"
    /// Every strided bottleneck strides on its first 1×1 conv (the paper).
    case paper
    /// Every strided bottleneck strides on its 3×3 conv (torchvision v1.5).
    case torchvision
    /// Bottleneck blocks, none of them strided: both placements are this network.
    case unstrided
    /// Strided bottlenecks that disagree, or stride elsewhere (on the last 1×1, or twice).
    case mixed

    /// One line for the header, the report and the summary.
    public var statement: String {
        switch self {
        case .noBottlenecks:
            "bottleneck variant: none (no bottleneck blocks)"
        case .paper:
            "bottleneck variant: paper (stride on the first 1×1 conv of each downsampling bottleneck, as He et al. 2015); "
                + "torchvision's weights need variant: .torchvision"
        case .torchvision:
            "bottleneck variant: torchvision (stride on the 3×3 conv of each downsampling bottleneck, torchvision's ResNet v1.5); "
                + "torchvision's weights load as they are"
        case .unstrided:
            "bottleneck variant: either (no bottleneck block is strided, so the paper's and torchvision's placements are the same network)"
        case .mixed:
            "bottleneck variant: mixed (the strided bottlenecks do not all put the stride on the same conv: neither the paper's nor torchvision's placement)"
        }
    }

    /// Where one bottleneck block strides.
    struct Block {
        /// The block's name (its `add` node's, without `.add`).
        var name: String
        var placement: BottleneckStride
    }

    /// The nodes a residual block's branch and shortcut may hold, at most:
    /// three convs with their batch norms and ReLUs, and a projection. The
    /// walks back from an `add` stop there, so finding the blocks stays
    /// linear in the graph (ResNet-1202 has 600 adds).
    static let blockReach = 16

    /// The bottleneck blocks of an unfused graph, in order.
    static func blocks(_ g: Graph) -> [Block] {
        /// `start` and the nodes before it along first inputs, nearest first.
        func path(from start: Int) -> [Int] {
            var ids = [start]
            while ids.count < blockReach, let next = g.nodes[ids[ids.count - 1]].inputs.first { ids.append(next) }
            return ids
        }
        var result: [Block] = []
        for add in g.nodes where add.op == .add && add.inputs.count == 2 {
            let first = path(from: add.inputs[0]), second = path(from: add.inputs[1])
            // The block input: where the operands' paths meet.
            guard let meet = first.first(where: second.contains),
                  let inFirst = first.firstIndex(of: meet), let inSecond = second.firstIndex(of: meet) else { continue }
            for side in [first[..<inFirst], second[..<inSecond]] {
                let convs = side.reversed().map { g.nodes[$0] }.filter { $0.op == .conv }
                guard convs.map({ $0.attrs.kernel ?? 0 }) == [1, 3, 1] else { continue }
                let strided = convs.map { ($0.attrs.stride ?? 1) > 1 }
                let placement: BottleneckStride = switch (strided[0], strided[1], strided[2]) {
                case (false, false, false): .unstrided
                case (true, false, false): .paper
                case (false, true, false): .torchvision
                default: .mixed
                }
                let name = add.name.hasSuffix(".add") ? String(add.name.dropLast(4)) : add.name
                result.append(Block(name: name, placement: placement))
                break
            }
        }
        return result
    }

    /// The placement of the whole graph (unfused: before FoldBatchNorm and FuseEpilogues).
    public static func of(_ g: Graph) -> BottleneckStride {
        let blocks = blocks(g)
        if blocks.isEmpty { return .noBottlenecks }
        let strided = Set(blocks.map(\.placement)).subtracting([.unstrided])
        if strided.isEmpty { return .unstrided }
        return strided.count == 1 ? strided.first! : .mixed
    }

    /// The placement of a lowered DSL network, checked against the one its
    /// spec records (`NetworkSpec.bottleneck`, when present).
    static func checked(_ g: Graph, declared: String?) throws -> BottleneckStride {
        let found = of(g)
        guard let declared else { return found }
        guard let variant = BottleneckVariant(rawValue: declared) else {
            throw CompileError("network '\(g.name)': unknown bottleneck variant '\(declared)' (expected "
                + BottleneckVariant.allCases.map(\.rawValue).joined(separator: " or ") + ")")
        }
        let wanted: BottleneckStride = variant == .paper ? .paper : .torchvision
        if found == wanted || found == .unstrided { return found }
        let reason = found == .noBottlenecks ? "it has no bottleneck blocks"
            : blocks(g).first { $0.placement != wanted && $0.placement != .unstrided }
                .map { "block '\($0.name)' strides \(Self.describe($0.placement))" } ?? "its blocks disagree"
        throw CompileError("network '\(g.name)' records bottleneck variant '\(declared)', but \(reason)")
    }

    /// Where a block strides, in words.
    static func describe(_ placement: BottleneckStride) -> String {
        switch placement {
        case .paper: "on its first 1×1 conv (the paper's placement)"
        case .torchvision: "on its 3×3 conv (torchvision's placement)"
        case .mixed: "on its last 1×1 conv or on two convs"
        case .noBottlenecks, .unstrided: "nowhere"
        }
    }
}
