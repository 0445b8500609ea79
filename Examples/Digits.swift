// A CIFAR-style ResNet (He et al. 2015, Sec. 4.2) sized for scikit-learn's
// 8×8 handwritten digits: one input channel, three stages on 8×8, 4×4 and
// 2×2 maps with 16, 32 and 64 filters, option-A shortcuts, 10 classes.
//
//   resnet-compile train Examples/Digits.swift --data data/digits-train.safetensors \
//       --test data/digits-test.safetensors -o out/digits
import ResNetDSL

let digits = try ResNet.cifar(depth: 14, name: "digits", input: .image(channels: 1, height: 8, width: 8))
