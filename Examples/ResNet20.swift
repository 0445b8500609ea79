// The CIFAR-10 ResNet-20 of He et al. (2015), Sec. 4.2, written out with the
// DSL rather than taken from the zoo (`ResNet.cifar(depth: 20)` builds the
// same network). Compile it with:
//
//   resnet-compile Examples/ResNet20.swift -o out
//
// 6n+2 layers with n = 3: a 3×3 conv with 16 filters, then three stages of
// n basic blocks on 32×32, 16×16 and 8×8 maps with 16, 32 and 64 filters,
// global average pooling, a 10-way fully connected layer and softmax.
// Where a stage halves the map and doubles the filters, the shortcut is the
// paper's option A: subsample and pad the new channels with zeros.
import ResNetDSL

/// One basic block: two 3×3 convs with batch norm; ReLU after the addition.
func basicBlock(_ name: String, width: Int, stride: Int) -> [any Layer] {
    [
        Residual(name: name, shortcut: stride == 1 ? .identity : .zeroPad) {
            Conv2D(width, kernel: 3, stride: stride, padding: 1, name: "conv1")
            BatchNorm(name: "bn1")
            ReLU()
            Conv2D(width, kernel: 3, padding: 1, name: "conv2")
            BatchNorm(name: "bn2")
        },
        ReLU(),
    ]
}

let n = 3
let widths = [16, 32, 64]

let resnet20 = Network("resnet20", input: .image(channels: 3, height: 32, width: 32)) {
    Conv2D(16, kernel: 3, padding: 1, name: "conv1")
    BatchNorm(name: "bn1")
    ReLU()
    for (stage, width) in widths.enumerated() {
        for i in 0..<n {
            basicBlock("layer\(stage + 1).\(i)", width: width, stride: stage > 0 && i == 0 ? 2 : 1)
        }
    }
    GlobalAvgPool()
    Dense(10, name: "fc")
    Softmax()
}
