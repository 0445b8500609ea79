/// The compiler's IR: a flat list of nodes in topological order, each with an
/// op, its inputs (indices of earlier nodes) and attributes. One node type, one
/// op enum (a comment per case), and a printer (`IRPrinter`) so a person can
/// read the graph after any pass.

/// Per-sample tensor shape: channels × height × width (batch is a runtime value).
public struct Shape: Hashable, Codable, Sendable, CustomStringConvertible {
    public var c: Int
    public var h: Int
    public var w: Int
    public init(c: Int, h: Int, w: Int) {
        self.c = c
        self.h = h
        self.w = w
    }
    /// Elements per sample.
    public var count: Int { c * h * w }
    public var description: String { "\(c)×\(h)×\(w)" }
}

/// What a node computes.
public enum Op: String, Codable, Sendable, CaseIterable {
    case input          // the network input, N×C×H×W
    case conv           // 2-D convolution, weight O×I×k×k, optional bias (nn.Conv2d)
    case batchNorm      // per-channel normalisation (eval: running statistics; train: batch statistics)
    case relu           // max(x, 0)
    case maxPool        // max over k×k windows, padding −∞
    case globalAvgPool  // mean over each feature map → C×1×1
    case dense          // fully connected on the flattened input (nn.Linear)
    case softmax        // softmax over classes
    case add            // inputs[0] (residual branch) + inputs[1] (shortcut)
    case zeroPad        // option-A shortcut: every stride-th pixel, zero channels appended
    case fusedConv      // conv + folded BN + epilogue (shortcut add, ReLU) as one kernel

    // Training (built by Differentiate; batch norm then uses batch statistics).
    case batchNormAct   // train-mode BN + epilogue (shortcut add, ReLU) as one kernel
    case loss           // mean softmax cross-entropy of logits vs labels; output ∂loss/∂logits
    case convGradData   // ∂/∂x of a conv: inputs [dy] (+ a gradient to add in the epilogue)
    case convGradWeight // ∂/∂W (and ∂/∂b) of a conv: inputs [dy, x]; writes parameter gradients
    case batchNormGrad  // ∂/∂z of train-mode BN: inputs [dy, z] (+ y for a fused ReLU mask); writes ∂γ, ∂β
    case reluGrad       // dy where y > 0: inputs [dy, y]
    case maxPoolGrad    // routes dy to each window's (first) maximum: inputs [dy, x]
    case globalAvgPoolGrad // dy / (H·W) over each map: inputs [dy]
    case denseGrad      // ∂/∂x of a dense layer: inputs [dy, x]; writes ∂W, ∂b
    case zeroPadGrad    // the option-A shortcut's adjoint: inputs [dy]
    case secondOutput   // a second buffer written by inputs[0]'s kernel (no kernel of its own)
    case sgdUpdate      // SGD with momentum and weight decay on every parameter, BN running statistics
}

/// How a tensor's channels are stored (chosen by Schedule).
public enum Layout: Hashable, Codable, Sendable, CustomStringConvertible {
    /// NCHW: each channel's H×W map contiguous (the caller's layout, and the training graph's).
    case plain
    /// NCHW[b]c: blocks of `b` channels, the channels of one pixel contiguous within a
    /// block; the channel count padded up to a multiple of `b` with zeros.
    case blocked(Int)

    /// Channels per block (1 for plain).
    public var block: Int {
        if case let .blocked(b) = self { return b }
        return 1
    }
    /// Channels stored for `channels` real ones.
    public func padded(_ channels: Int) -> Int { (channels + block - 1) / block * block }
    public var description: String {
        switch self {
        case .plain: "NCHW"
        case let .blocked(b): "NCHW\(b)c"
        }
    }
}

/// A register tile of a vector kernel: `pixels` output pixels × `blocks` output
/// channel blocks accumulated in vector registers.
public struct VectorTile: Hashable, Codable, Sendable, CustomStringConvertible {
    public var blocks: Int
    public var pixels: Int
    public init(blocks: Int, pixels: Int) {
        self.blocks = blocks
        self.pixels = pixels
    }
    public var description: String { "\(pixels)px×\(blocks)blk" }
}

/// How a convolution is computed (chosen by Schedule).
public enum Algorithm: Hashable, Codable, Sendable, CustomStringConvertible {
    /// Direct: each output accumulated from its K×K window.
    case direct
    /// Winograd F(4×4, 3×3) (stride-1 3×3 only): 4×4 output tiles, `rows`
    /// tile rows of an image per work item.
    case winograd(rows: Int)
    public var description: String {
        switch self {
        case .direct: "direct"
        case let .winograd(rows): "winograd F(4x4,3x3) rows=\(rows)"
        }
    }
}

/// How a fused conv's epilogue reads the shortcut it adds.
public enum ShortcutRead: Hashable, Codable, Sendable {
    /// Add inputs[1] element by element (same shape as the output).
    case tensor
    /// Option A read in place from inputs[1]: pixel (y·stride, x·stride) of its
    /// first `channels` channels; channels beyond are zero. Never materialised.
    case zeroPad(stride: Int, channels: Int)
}

/// Attributes of a node; which ones are set depends on the op.
public struct Attributes: Hashable, Codable, Sendable {
    /// conv: output channels. zeroPad: output channels (resolved by InferShapes).
    public var outChannels: Int?
    /// dense: output features.
    public var outFeatures: Int?
    /// conv / maxPool: kernel size (square).
    public var kernel: Int?
    /// conv / maxPool / zeroPad: stride.
    public var stride: Int?
    /// conv / maxPool: padding on every side.
    public var padding: Int?
    /// conv: has its own bias parameter.
    public var bias: Bool?
    /// Shortcut nodes lowered from a residual block whose stride and channels
    /// are not written in the model: InferShapes sets them from this node's shape
    /// (the branch output).
    public var shapeOf: Int?
    /// fusedConv: the folded batch norm's name (its parameters are read at fold time).
    public var foldedBatchNorm: String?
    /// fusedConv: ReLU applied last.
    public var relu: Bool?
    /// fusedConv: a shortcut added before the ReLU.
    public var shortcut: ShortcutRead?
    /// fusedConv (inference, vector kernels): the output is written over the
    /// shortcut tensor, which dies here (set by PlanMemory; the two share a buffer).
    public var inPlace: Bool?
    /// Which parts make up a fused kernel, for its name (e.g. ["conv", "bn", "add", "relu"]).
    public var fused: [String]?
    /// Gradient nodes: the forward node they differentiate.
    public var forward: Int?
    /// Gradient nodes that write parameter gradients: the layer whose parameters.
    public var gradOf: String?
    /// batchNormGrad: apply the ReLU mask (y = inputs[2] > 0) to dy first.
    public var reluMask: Bool?
    /// A node rebuilt in the backward pass (Recompute). batchNormAct: the
    /// batch-norm layer whose scale and shift, saved by its forward kernel in
    /// the same step, it applies to inputs[0] (no statistics computed, same
    /// bits). conv: the conv whose weights (and packs) it runs again on its
    /// rebuilt input.
    public var recomputes: String?
    /// convGradData: a gradient added in the epilogue (inputs[1]), read as the
    /// option-A adjoint when `.zeroPad` (scatter to every stride-th pixel).
    public var gradShortcut: ShortcutRead?
    /// conv / fusedConv / convGradData: the loop tile chosen by Schedule.
    public var tile: Tile?
    /// Floats per sample of arena scratch the kernel uses while it runs (a padded input copy).
    public var scratch: Int?
    /// convGradWeight (blocked): floats of one partial ∂W, the sum over one group
    /// of images; the partials live in the arena's partials region (MemoryPlan).
    public var partial: Int?
    /// The layout of the node's output (nil: plain NCHW), chosen by Schedule.
    public var layout: Layout?
    /// Vector convolutions: the register tile for ISAs with 32 vector registers
    /// (AVX-512) and for the others (AVX2, NEON, portable C), chosen by Schedule.
    public var wideTile: VectorTile?
    public var narrowTile: VectorTile?
    /// Vector convolutions: direct or Winograd (nil: direct).
    public var algorithm: Algorithm?

    public init() {}
}

/// One operation of the graph.
public struct Node: Hashable, Codable, Sendable {
    /// Position in `Graph.nodes`.
    public var id: Int
    public var op: Op
    /// Layer name (torchvision style for parameterised layers, generated for the rest).
    public var name: String
    /// Producers, by id; always earlier nodes.
    public var inputs: [Int]
    public var attrs: Attributes
    /// Per-sample output shape, once InferShapes has run.
    public var shape: Shape?

    public init(id: Int, op: Op, name: String, inputs: [Int], attrs: Attributes = Attributes(), shape: Shape? = nil) {
        self.id = id
        self.op = op
        self.name = name
        self.inputs = inputs
        self.attrs = attrs
        self.shape = shape
    }

    /// The layer whose parameters (and packed weights) this node's kernel
    /// reads: its own, or for a node Recompute rebuilt, its original's.
    public var parameterLayer: String { attrs.recomputes ?? name }
}

/// A learned or tracked tensor of the network, torchvision-named.
public struct Parameter: Hashable, Codable, Sendable {
    public enum Kind: String, Codable, Sendable {
        case weight, bias, runningMean, runningVar
    }
    public var name: String
    public var shape: [Int]
    public var kind: Kind
    /// The layer it belongs to.
    public var layer: String
    /// Conv and dense biases: inputs per output (PyTorch's bias init bound is 1/√fanIn).
    public var fanIn: Int? = nil
    public var count: Int { shape.reduce(1, *) }
    /// Learned by SGD (weights and biases), as opposed to running statistics.
    public var trainable: Bool { kind == .weight || kind == .bias }
}

/// A whole network: nodes in topological order; the last one is the output.
public struct Graph: Hashable, Codable, Sendable {
    public var name: String
    public var nodes: [Node]
    /// Every parameter in state-dict order (set by InferShapes, kept through fusion).
    public var parameters: [Parameter] = []
    /// Arena offsets, once PlanMemory has run.
    public var memory: MemoryPlan?
    /// Where the bottleneck blocks stride, found by the front end on the
    /// unfused graph (Lower, the ONNX importer) and kept through the passes,
    /// which no longer show it once blocks are fused.
    public var bottleneck: BottleneckStride?

    public init(name: String, nodes: [Node]) {
        self.name = name
        self.nodes = nodes
    }

    /// The output node (the last one).
    public var output: Node { nodes[nodes.count - 1] }
    /// The input node (the first one).
    public var input: Node { nodes[0] }

    /// Shape of node `id`; only valid after InferShapes.
    public func shape(_ id: Int) -> Shape { nodes[id].shape! }

    /// Layout of node `id`'s output.
    public func layout(_ id: Int) -> Layout { nodes[id].attrs.layout ?? .plain }

    /// Floats per sample node `id`'s output occupies in its layout (padded channels included).
    public func storedFloats(_ id: Int) -> Int {
        let s = shape(id)
        return layout(id).padded(s.c) * s.h * s.w
    }

    /// For every node, the ids of the nodes that read it.
    public func consumers() -> [[Int]] {
        var result = Array(repeating: [Int](), count: nodes.count)
        for node in nodes {
            for i in node.inputs { result[i].append(node.id) }
        }
        return result
    }

    /// The second output written by node `id`'s kernel, if it has one (it sits right after it).
    public func secondOutput(of id: Int) -> Node? {
        id + 1 < nodes.count && nodes[id + 1].op == .secondOutput && nodes[id + 1].inputs == [id] ? nodes[id + 1] : nil
    }

    /// Batch-norm layer names, in order (their running statistics and counters).
    public var batchNormNames: [String] {
        var seen: [String] = []
        for p in parameters where p.kind == .runningMean { seen.append(p.layer) }
        return seen
    }

    /// Number of classes: the output's channel count (the loss's, when training).
    public var classes: Int {
        if let loss = nodes.first(where: { $0.op == .loss }) { return loss.shape!.c }
        return shape(nodes.count - 1).c
    }

    /// True for a training graph (Differentiate has run).
    public var training: Bool { nodes.contains { $0.op == .loss } }

    /// Total parameter elements (running statistics included).
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.count } }

    /// Drops nodes nothing reads (except the input and the output) and renumbers the rest.
    public func removingDeadNodes() -> Graph {
        var live = Array(repeating: false, count: nodes.count)
        live[nodes.count - 1] = true
        live[0] = true
        for node in nodes.reversed() where live[node.id] {
            for i in node.inputs { live[i] = true }
        }
        return renumbered(order: nodes.indices.filter { live[$0] })
    }

    /// The nodes at ids `order`, in that order, renumbered 0…: inputs must
    /// come earlier; `forward` and `shapeOf` references to dropped nodes become nil.
    public func renumbered(order: [Int]) -> Graph {
        var newID = Array(repeating: -1, count: nodes.count)
        for (i, old) in order.enumerated() { newID[old] = i }
        var g = self
        g.nodes = order.enumerated().map { i, old in
            var n = nodes[old]
            n.id = i
            n.inputs = n.inputs.map { newID[$0] }
            precondition(n.inputs.allSatisfy { $0 >= 0 && $0 < i }, "\(n.name) reads a dropped or later node")
            if let s = n.attrs.shapeOf { n.attrs.shapeOf = newID[s] >= 0 ? newID[s] : nil }
            if let f = n.attrs.forward { n.attrs.forward = newID[f] >= 0 ? newID[f] : nil }
            return n
        }
        return g
    }
}
