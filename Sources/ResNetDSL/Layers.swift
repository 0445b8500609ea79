/// The layers of the DSL. Each is a small value that turns into a `LayerSpec`;
/// the builder below collects them. Semantics follow PyTorch (see DESIGN §3).

/// Anything that can stand in a network body: the built-in layers, a
/// `Residual`, or a user type composed of them.
public protocol Layer {
    /// The layers this value stands for, as data (usually exactly one).
    var specs: [LayerSpec] { get }
}

/// 2-D convolution, `nn.Conv2d`: weight O×I×k×k, output ⌊(H + 2p − k)/s⌋ + 1.
public struct Conv2D: Layer {
    public var spec: LayerSpec
    public init(_ outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0, bias: Bool = false, name: String) {
        spec = LayerSpec(op: "conv2d", name: name, outChannels: outChannels, kernel: kernel,
                         stride: stride, padding: padding, bias: bias)
    }
    public var specs: [LayerSpec] { [spec] }
}

/// Batch normalisation over channels, `nn.BatchNorm2d` (eps 1e-5, momentum 0.1).
public struct BatchNorm: Layer {
    public var spec: LayerSpec
    public init(name: String) { spec = LayerSpec(op: "batchNorm", name: name) }
    public var specs: [LayerSpec] { [spec] }
}

/// max(x, 0).
public struct ReLU: Layer {
    public init() {}
    public var specs: [LayerSpec] { [LayerSpec(op: "relu")] }
}

/// Max pooling, `nn.MaxPool2d`; padding counts as −∞.
public struct MaxPool: Layer {
    public var spec: LayerSpec
    public init(kernel: Int, stride: Int, padding: Int = 0) {
        spec = LayerSpec(op: "maxPool", kernel: kernel, stride: stride, padding: padding)
    }
    public var specs: [LayerSpec] { [spec] }
}

/// Average over each whole feature map: N×C×H×W → N×C×1×1.
public struct GlobalAvgPool: Layer {
    public init() {}
    public var specs: [LayerSpec] { [LayerSpec(op: "globalAvgPool")] }
}

/// Fully connected, `nn.Linear` (weight out×in, with bias); its input is flattened.
public struct Dense: Layer {
    public var spec: LayerSpec
    public init(_ out: Int, name: String) { spec = LayerSpec(op: "dense", name: name, outFeatures: out) }
    public var specs: [LayerSpec] { [spec] }
}

/// Softmax over classes; the network's output is probabilities.
public struct Softmax: Layer {
    public init() {}
    public var specs: [LayerSpec] { [LayerSpec(op: "softmax")] }
}

/// How a residual block's input reaches the addition (the paper's options).
public enum Shortcut: String, Codable, Sendable, CaseIterable {
    /// y = F(x) + x; the branch must keep the shape.
    case identity
    /// Option A: subsample by the stride (every stride-th pixel from (0, 0)) and
    /// append zero channels; no parameters.
    case zeroPad
    /// Options B/C: 1×1 convolution with the stride, then batch norm, named
    /// `NAME.downsample.0` and `NAME.downsample.1`.
    case projection
}

/// y = F(x) + shortcut(x). The ReLU after the addition is a separate `ReLU()`.
/// The shortcut's stride and channels follow from the branch's output shape.
public struct Residual: Layer {
    public var spec: LayerSpec
    public init(name: String, shortcut: Shortcut = .identity, @LayerBuilder _ body: () -> [LayerSpec]) {
        spec = LayerSpec(op: "residual", name: name, shortcut: shortcut.rawValue, body: body())
    }
    public var specs: [LayerSpec] { [spec] }
}

/// Several layers as one value, for functions that return more than one layer.
public struct Sequential: Layer {
    public var specs: [LayerSpec]
    public init(@LayerBuilder _ body: () -> [LayerSpec]) { specs = body() }
}

/// Collects layers written one per line, with Swift `if`/`for` in between.
/// It builds values (specs), not types, so any number of layers composes.
@resultBuilder
public enum LayerBuilder {
    public static func buildExpression(_ layer: some Layer) -> [LayerSpec] { layer.specs }
    public static func buildExpression(_ layers: [any Layer]) -> [LayerSpec] { layers.flatMap(\.specs) }
    public static func buildExpression(_ specs: [LayerSpec]) -> [LayerSpec] { specs }
    public static func buildBlock(_ parts: [LayerSpec]...) -> [LayerSpec] { parts.flatMap { $0 } }
    public static func buildOptional(_ part: [LayerSpec]?) -> [LayerSpec] { part ?? [] }
    public static func buildEither(first part: [LayerSpec]) -> [LayerSpec] { part }
    public static func buildEither(second part: [LayerSpec]) -> [LayerSpec] { part }
    public static func buildArray(_ parts: [[LayerSpec]]) -> [LayerSpec] { parts.flatMap { $0 } }
}

/// A spec is itself a layer, so data read from JSON composes with the DSL.
extension LayerSpec: Layer {
    public var specs: [LayerSpec] { [self] }
}
