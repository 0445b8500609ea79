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
