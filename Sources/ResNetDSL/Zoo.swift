/// The networks of He, Zhang, Ren, Sun, "Deep Residual Learning for Image
/// Recognition" (2015, arXiv:1512.03385), with their depth tables kept as data.
///
/// - CIFAR-10 (Sec. 4.2): 6n+2 layers, 3×3 convs on 32/16/8-pixel maps with
///   16/32/64 filters; shortcuts option A (zero padding) by default.
/// - ImageNet (Sec. 3.3, Table 1): 7×7/2 stem and 3×3/2 max pool, four stages;
///   basic blocks for 18/34, bottlenecks for 50/101/152; option B by default.
///
/// Parameter names follow torchvision (`layer2.0.conv1.weight`,
/// `layer2.0.downsample.0.weight`, `fc.bias`).

/// Which shortcut the blocks use (the paper's Table 3).
public enum ShortcutOption: String, Sendable, CaseIterable {
    /// Zero-padding shortcuts where dimensions change; identity elsewhere.
    case a
    /// Projection shortcuts where dimensions change; identity elsewhere.
    case b
    /// Projection shortcuts everywhere.
    case c

    /// The shortcut of a block that does (or does not) change the shape.
    func shortcut(changesShape: Bool) -> Shortcut {
        switch self {
        case .a: changesShape ? .zeroPad : .identity
        case .b: changesShape ? .projection : .identity
        case .c: .projection
        }
    }
}

/// Where a bottleneck block puts its stride.
public enum BottleneckVariant: String, Sendable, CaseIterable {
    /// The paper: stride 2 on the first 1×1 conv (3.8 billion multiply-adds for ResNet-50).
    case paper
    /// torchvision (v1.5): stride 2 on the 3×3 conv, so torchvision weights give its outputs.
    case torchvision
}

/// Errors in zoo arguments.
public struct ZooError: Error, CustomStringConvertible {
    public let description: String
}

/// Block counts per stage, from the paper.
public enum DepthTable {
    /// ImageNet (Table 1): depth → blocks per stage, and whether blocks are bottlenecks.
    public static let imagenet: [Int: (blocks: [Int], bottleneck: Bool)] = [
        18: ([2, 2, 2, 2], false),
        34: ([3, 4, 6, 3], false),
        50: ([3, 4, 6, 3], true),
        101: ([3, 4, 23, 3], true),
        152: ([3, 8, 36, 3], true),
    ]
    /// ImageNet stage widths (inner width for bottlenecks; outer is 4×).
    public static let imagenetWidths = [64, 128, 256, 512]
    /// CIFAR stage widths and the depths the paper names (6n+2).
    public static let cifarWidths = [16, 32, 64]
    public static let cifarNamedDepths = [20, 32, 44, 56, 110, 1202]
}

/// A basic block's branch: two 3×3 convs (Sec. 3.3). `prefix` is prepended to
/// names (empty inside a `Residual`, the block's name plus a dot in a plain net).
func basicBranch(_ prefix: String, width: Int, stride: Int) -> [LayerSpec] {
    Sequential {
        Conv2D(width, kernel: 3, stride: stride, padding: 1, name: prefix + "conv1")
        BatchNorm(name: prefix + "bn1")
        ReLU()
        Conv2D(width, kernel: 3, padding: 1, name: prefix + "conv2")
        BatchNorm(name: prefix + "bn2")
    }.specs
}

/// A bottleneck's branch: 1×1, 3×3, 1×1 (4× outer width).
func bottleneckBranch(_ prefix: String, width: Int, stride: Int, variant: BottleneckVariant) -> [LayerSpec] {
    let (s1, s2) = variant == .paper ? (stride, 1) : (1, stride)
    return Sequential {
        Conv2D(width, kernel: 1, stride: s1, name: prefix + "conv1")
        BatchNorm(name: prefix + "bn1")
        ReLU()
        Conv2D(width, kernel: 3, stride: s2, padding: 1, name: prefix + "conv2")
        BatchNorm(name: prefix + "bn2")
        ReLU()
        Conv2D(width * 4, kernel: 1, name: prefix + "conv3")
        BatchNorm(name: prefix + "bn3")
    }.specs
}

/// One block: a residual block, or for a plain net the same layers without the shortcut.
func block(_ name: String, residual: Bool, shortcut: Shortcut, branch: (String) -> [LayerSpec]) -> [LayerSpec] {
    if residual {
        return Residual(name: name, shortcut: shortcut) { branch("") }.specs + ReLU().specs
    }
    return branch(name + ".") + ReLU().specs
}

func cifarNet(name: String, depth: Int, residual: Bool, option: ShortcutOption,
              input: Input, classes: Int) throws -> Network {
    guard depth >= 8, (depth - 2) % 6 == 0 else {
        throw ZooError(description: "CIFAR depth must be 6n+2 with n ≥ 1 (20, 32, 44, 56, 110, 1202), got \(depth)")
    }
    let n = (depth - 2) / 6
    let widths = DepthTable.cifarWidths
    return Network(name, input: input) {
        Conv2D(widths[0], kernel: 3, padding: 1, name: "conv1")
        BatchNorm(name: "bn1")
        ReLU()
        for (stage, width) in widths.enumerated() {
            for i in 0..<n {
                let stride = (stage > 0 && i == 0) ? 2 : 1
                let changes = stride != 1
                block("layer\(stage + 1).\(i)", residual: residual,
                      shortcut: option.shortcut(changesShape: changes)) {
                    basicBranch($0, width: width, stride: stride)
                }
            }
        }
        GlobalAvgPool()
        Dense(classes, name: "fc")
        Softmax()
    }
}

func imagenetNet(name: String, depth: Int, residual: Bool, option: ShortcutOption,
                 variant: BottleneckVariant, input: Input, classes: Int) throws -> Network {
    guard let entry = DepthTable.imagenet[depth] else {
        throw ZooError(description: "ImageNet depth must be one of 18, 34, 50, 101, 152, got \(depth)")
    }
    if !residual && entry.bottleneck {
        throw ZooError(description: "PlainNet.imagenet supports depths 18 and 34, got \(depth)")
    }
    return Network(name, input: input, bottleneck: entry.bottleneck ? variant : nil) {
        Conv2D(64, kernel: 7, stride: 2, padding: 3, name: "conv1")
        BatchNorm(name: "bn1")
        ReLU()
        MaxPool(kernel: 3, stride: 2, padding: 1)
        for (stage, blocks) in entry.blocks.enumerated() {
            let width = DepthTable.imagenetWidths[stage]
            for i in 0..<blocks {
                let stride = (stage > 0 && i == 0) ? 2 : 1
                let outChannels = entry.bottleneck ? width * 4 : width
                let stageInput = stage == 0 ? 64 : DepthTable.imagenetWidths[stage - 1] * (entry.bottleneck ? 4 : 1)
                let changes = stride != 1 || (i == 0 && stageInput != outChannels)
                block("layer\(stage + 1).\(i)", residual: residual,
                      shortcut: option.shortcut(changesShape: changes)) { prefix in
                    entry.bottleneck
                        ? bottleneckBranch(prefix, width: width, stride: stride, variant: variant)
                        : basicBranch(prefix, width: width, stride: stride)
                }
            }
        }
        GlobalAvgPool()
        Dense(classes, name: "fc")
        Softmax()
    }
}

/// Residual networks of the paper.
public enum ResNet {
    /// CIFAR-10 ResNet with 6n+2 layers (20, 32, 44, 56, 110, 1202 in the paper).
    /// Named `resnet<depth>` unless `name` is given.
    public static func cifar(depth: Int, shortcut: ShortcutOption = .a, name: String? = nil,
                             input: Input = .image(channels: 3, height: 32, width: 32),
                             classes: Int = 10) throws -> Network {
        try cifarNet(name: name ?? "resnet\(depth)", depth: depth, residual: true, option: shortcut,
                     input: input, classes: classes)
    }

    /// ImageNet ResNet-18/34 (basic blocks) or 50/101/152 (bottlenecks), option B by default.
    /// `variant` places the bottlenecks' stride: `.paper` (the default, the
    /// paper's 3.8 billion multiply-adds) or `.torchvision`, which torchvision's
    /// weights need (loaded into `.paper` they give other outputs, silently).
    public static func imagenet(depth: Int, shortcut: ShortcutOption = .b, variant: BottleneckVariant = .paper,
                                name: String? = nil,
                                input: Input = .image(channels: 3, height: 224, width: 224),
                                classes: Int = 1000) throws -> Network {
        try imagenetNet(name: name ?? "resnet\(depth)", depth: depth, residual: true, option: shortcut,
                        variant: variant, input: input, classes: classes)
    }
}

/// The paper's plain counterparts: the same layers, no shortcuts.
public enum PlainNet {
    /// CIFAR plain net with 6n+2 layers; named `plain<depth>`.
    public static func cifar(depth: Int, name: String? = nil,
                             input: Input = .image(channels: 3, height: 32, width: 32),
                             classes: Int = 10) throws -> Network {
        try cifarNet(name: name ?? "plain\(depth)", depth: depth, residual: false, option: .a,
                     input: input, classes: classes)
    }

    /// ImageNet plain-18/34; named `plain<depth>`.
    public static func imagenet(depth: Int, name: String? = nil,
                                input: Input = .image(channels: 3, height: 224, width: 224),
                                classes: Int = 1000) throws -> Network {
        try imagenetNet(name: name ?? "plain\(depth)", depth: depth, residual: false, option: .b,
                        variant: .paper, input: input, classes: classes)
    }
}
