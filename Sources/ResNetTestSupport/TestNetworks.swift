import ResNetDSL

/// Networks the tests share. `mixnet` matches Tests/Fixtures/make_fixtures.py.
public enum TestNetworks {
    /// Covers every layer and shortcut kind on a non-square input: a 5×5 conv
    /// with bias, max pool, a bottleneck with a projection shortcut (stride on
    /// the 3×3, torchvision style), an identity block, an option-A block, dense.
    /// The fixture's input and classes by default; TrainCommandTests trains it on the digits.
    public static func mixnet(input: Input = .image(channels: 3, height: 20, width: 24), classes: Int = 7) -> NetworkSpec {
        Network("mixnet", input: input) {
            Conv2D(8, kernel: 5, padding: 2, bias: true, name: "conv1")
            BatchNorm(name: "bn1")
            ReLU()
            MaxPool(kernel: 3, stride: 2, padding: 1)
            Residual(name: "layer1.0", shortcut: .projection) {
                Conv2D(4, kernel: 1, name: "conv1")
                BatchNorm(name: "bn1")
                ReLU()
                Conv2D(4, kernel: 3, stride: 2, padding: 1, name: "conv2")
                BatchNorm(name: "bn2")
                ReLU()
                Conv2D(16, kernel: 1, name: "conv3")
                BatchNorm(name: "bn3")
            }
            ReLU()
            Residual(name: "layer1.1") {
                Conv2D(16, kernel: 3, padding: 1, name: "conv1")
                BatchNorm(name: "bn1")
                ReLU()
                Conv2D(16, kernel: 3, padding: 1, name: "conv2")
                BatchNorm(name: "bn2")
            }
            ReLU()
            Residual(name: "layer2.0", shortcut: .zeroPad) {
                Conv2D(24, kernel: 3, stride: 2, padding: 1, name: "conv1")
                BatchNorm(name: "bn1")
                ReLU()
                Conv2D(24, kernel: 3, padding: 1, name: "conv2")
                BatchNorm(name: "bn2")
            }
            ReLU()
            GlobalAvgPool()
            Dense(classes, name: "fc")
            Softmax()
        }.spec
    }

    /// Bottleneck blocks in a row (torchvision style), small: the 1×1 reduce
    /// convs of the second and third blocks read the block before them, the
    /// case `Recompute` rebuilds convs for (as in ResNet-50's layers).
    public static func bottlenet() -> NetworkSpec {
        func bottleneck(_ name: String, inner: Int, out: Int, stride: Int, projection: Bool) -> Residual {
            Residual(name: name, shortcut: projection ? .projection : .identity) {
                Conv2D(inner, kernel: 1, name: "conv1")
                BatchNorm(name: "bn1")
                ReLU()
                Conv2D(inner, kernel: 3, stride: stride, padding: 1, name: "conv2")
                BatchNorm(name: "bn2")
                ReLU()
                Conv2D(out, kernel: 1, name: "conv3")
                BatchNorm(name: "bn3")
            }
        }
        return Network("bottlenet", input: .image(channels: 3, height: 12, width: 12)) {
            Conv2D(16, kernel: 3, padding: 1, name: "conv1")
            BatchNorm(name: "bn1")
            ReLU()
            bottleneck("layer1.0", inner: 8, out: 32, stride: 1, projection: true)
            ReLU()
            bottleneck("layer1.1", inner: 8, out: 32, stride: 1, projection: false)
            ReLU()
            bottleneck("layer2.0", inner: 16, out: 48, stride: 2, projection: true)
            ReLU()
            GlobalAvgPool()
            Dense(5, name: "fc")
            Softmax()
        }.spec
    }

    /// Odd corners: a conv with bias and no BN followed by ReLU, a conv with no
    /// epilogue at all, a strided 1×1 conv, max pool without padding, a dense
    /// layer on a non-pooled (flattened) input, and no softmax at the end.
    public static func oddnet() -> NetworkSpec {
        Network("oddnet", input: .image(channels: 2, height: 9, width: 7)) {
            Conv2D(5, kernel: 3, stride: 2, padding: 0, bias: true, name: "stem")
            ReLU()
            Conv2D(6, kernel: 1, stride: 1, name: "mix")
            MaxPool(kernel: 2, stride: 1)
            Residual(name: "block", shortcut: .projection) {
                Conv2D(6, kernel: 3, padding: 1, bias: true, name: "conv1")
                BatchNorm(name: "bn1")
            }
            Dense(4, name: "head")
        }.spec
    }

    /// A random small residual network, the same for the same seed: a 3×3
    /// stem (with or without bias) + BN + ReLU, maybe a max pool, one to three
    /// blocks (identity, option A or projection, stride 1 or 2, one or two
    /// convs of 1×1 or 3×3, maybe a ReLU inside), global average pooling or a
    /// dense layer on the flattened map, and softmax. Shapes stay valid by
    /// construction; for the planner's and create_in's property tests.
    public static func random(seed: UInt64) -> NetworkSpec {
        var rng = TestRandom(seed: seed)
        func pick(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
        var h = 4 + pick(9), w = 4 + pick(9)
        let input = Input.image(channels: 1 + pick(4), height: h, width: w)
        var width = 2 + pick(7)
        var layers: [any Layer] = [Conv2D(width, kernel: 3, padding: 1, bias: pick(2) == 0, name: "conv1"), BatchNorm(name: "bn1"), ReLU()]
        if pick(3) == 0 {
            layers.append(MaxPool(kernel: 3, stride: 2, padding: 1))
            h = (h - 1) / 2 + 1
            w = (w - 1) / 2 + 1
        }
        for b in 0..<(1 + pick(3)) {
            let shortcut: Shortcut = [.identity, .zeroPad, .projection][pick(3)]
            let stride = shortcut != .identity && h >= 3 && w >= 3 && pick(2) == 0 ? 2 : 1
            let out = switch shortcut {
            case .identity: width
            case .zeroPad: stride == 2 ? width + pick(4) : width + 1 + pick(4)
            case .projection: 2 + pick(9)
            }
            let first = stride == 2 || pick(2) == 0 ? 3 : 1
            let second = pick(3) == 0 ? 0 : [1, 3][pick(2)]
            let innerReLU = pick(2) == 0
            layers.append(Residual(name: "layer\(b + 1).0", shortcut: shortcut) {
                Conv2D(out, kernel: first, stride: stride, padding: first / 2, name: "conv1")
                BatchNorm(name: "bn1")
                if second > 0 {
                    if innerReLU { ReLU() }
                    Conv2D(out, kernel: second, padding: second / 2, name: "conv2")
                    BatchNorm(name: "bn2")
                }
            })
            layers.append(ReLU())
            width = out
            h = (h - 1) / stride + 1
            w = (w - 1) / stride + 1
        }
        if pick(4) > 0 { layers.append(GlobalAvgPool()) }
        layers.append(Dense(2 + pick(5), name: "fc"))
        layers.append(Softmax())
        return Network("rand\(seed)", input: input) { layers }.spec
    }

    /// The PyTorch fixtures' networks by name.
    public static func fixture(_ name: String) throws -> NetworkSpec {
        switch name {
        case "resnet20": try ResNet.cifar(depth: 20).spec
        case "resnet20b": try ResNet.cifar(depth: 20, shortcut: .b, name: "resnet20b").spec
        case "plain8": try PlainNet.cifar(depth: 8).spec
        case "mixnet": mixnet()
        case "resnet18tv": try ResNet.imagenet(depth: 18, variant: .torchvision, name: "resnet18tv").spec
        default: fatalError("no fixture network \(name)")
        }
    }
}
