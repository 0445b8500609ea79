/// The serialised form of a network: what a model file produces and what the
/// compiler reads. It mirrors the DSL one to one (a tree, with residual blocks
/// nesting their branch), so any language can drive the compiler by writing
/// this JSON. The compiler lowers it to its flat graph IR.

/// One layer of a network, as data.
public struct LayerSpec: Codable, Hashable, Sendable {
    /// The layer kind: conv2d, batchNorm, relu, maxPool, globalAvgPool,
    /// dense, softmax or residual.
    public var op: String
    /// The layer's name; parameterised layers need one (torchvision style).
    public var name: String?
    public var outChannels: Int?
    public var outFeatures: Int?
    public var kernel: Int?
    public var stride: Int?
    public var padding: Int?
    public var bias: Bool?
    /// Residual only: identity, zeroPad or projection.
    public var shortcut: String?
    /// Residual only: the branch F(x).
    public var body: [LayerSpec]?

    public init(op: String, name: String? = nil, outChannels: Int? = nil, outFeatures: Int? = nil,
                kernel: Int? = nil, stride: Int? = nil, padding: Int? = nil, bias: Bool? = nil,
                shortcut: String? = nil, body: [LayerSpec]? = nil) {
        self.op = op
        self.name = name
        self.outChannels = outChannels
        self.outFeatures = outFeatures
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
        self.bias = bias
        self.shortcut = shortcut
        self.body = body
    }
}

/// The input of a network: one image of `channels`×`height`×`width` per sample.
public struct InputSpec: Codable, Hashable, Sendable {
    public var channels: Int
    public var height: Int
    public var width: Int
    public init(channels: Int, height: Int, width: Int) {
        self.channels = channels
        self.height = height
        self.width = width
    }
}

/// A whole network as data.
public struct NetworkSpec: Codable, Hashable, Sendable {
    public var name: String
    public var input: InputSpec
    public var layers: [LayerSpec]
    /// Where the network's downsampling bottleneck blocks put their stride,
    /// as the DSL built them: "paper" (the first 1×1 conv) or "torchvision"
    /// (the 3×3). Absent for networks without bottlenecks, and in JSON written
    /// before it existed. The two placements have the same parameter names
    /// and shapes but not the same outputs, so it is recorded rather than left
    /// for a reader to spot in the layers; the compiler checks it against the
    /// layers and states the placement in the header, the report and the summary.
    public var bottleneck: String?
    public init(name: String, input: InputSpec, layers: [LayerSpec], bottleneck: String? = nil) {
        self.name = name
        self.input = input
        self.layers = layers
        self.bottleneck = bottleneck
    }
}

/// What a model file writes when it runs: every network it registered, in
/// the order they were created.
public struct ModelFile: Codable, Hashable, Sendable {
    /// Identifies the format, so a stray JSON file is rejected with a clear message.
    public var format: String
    public var version: Int
    public var networks: [NetworkSpec]

    public static let formatName = "resnet-compile-model"
    public static let currentVersion = 1

    public init(networks: [NetworkSpec]) {
        self.format = Self.formatName
        self.version = Self.currentVersion
        self.networks = networks
    }
}
