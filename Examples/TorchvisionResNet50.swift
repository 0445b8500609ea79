// torchvision's ResNet-50, so that its weights give its outputs. Compile it with:
//
//   resnet-compile Examples/TorchvisionResNet50.swift -o out
//
// The paper and torchvision differ in one place: a downsampling bottleneck
// (the first block of layer2, layer3 and layer4) strides on its first 1×1
// conv in the paper (He et al. 2015; `ResNet.imagenet(depth: 50)`, the
// zoo's default) and on its 3×3 conv in torchvision ("ResNet v1.5"). The
// parameters are the same names and shapes, so torchvision's weights load
// into either without an error; only this variant gives torchvision's
// probabilities. out/resnet50.h, out/resnet50.report and --emit summary
// state the variant that was compiled ("bottleneck variant: torchvision").
//
// Weights and an input from torchvision (Examples/torchvision_to_safetensors.py):
//
//   python3 Examples/torchvision_to_safetensors.py weights resnet50.safetensors --pretrained IMAGENET1K_V1
//   python3 Examples/torchvision_to_safetensors.py image photo.jpg photo.f32
//   make -C Examples/embed-c NET=resnet50 GEN=$PWD/out
//   Examples/embed-c/classify resnet50.safetensors photo.f32
import ResNetDSL

let resnet50 = try ResNet.imagenet(depth: 50, variant: .torchvision)
