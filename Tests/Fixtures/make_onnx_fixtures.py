#!/usr/bin/env python3
"""ONNX fixtures for resnet-compile's ONNX front end (`resnet-compile FILE.onnx`).

For every network NAME it writes, next to this script:

  NAME.onnx               the model exported by PyTorch's TorchScript-based
                          exporter (torch.onnx.export(..., dynamo=False)), with
                          random weights; initializers inside the file.
  NAME.onnx.io.safetensors
                          `input`   N×C×H×W F32 (make_fixtures.make_input)
                          `output`  what onnxruntime (CPU provider, graph
                                    optimisations off) returns for `input`:
                                    logits, or probabilities when the network
                                    ends in a softmax.

The networks (weights initialised as make_fixtures.init_weights does, then
fc conditioned by make_fixtures.calibrate_fc, so the softmax of the logits is
not saturated):

  resnet8a   CIFAR ResNet-8 (6n+2, n = 1), option-A shortcuts written as
             PyTorch code usually writes them: F.pad(x[:, :, ::2, ::2],
             (0, 0, 0, 0, 0, extra)), so the export has Slice with steps and
             a Pad whose pads come from a Constant/ConstantOfShape/Concat/
             Reshape/Slice/Transpose/Cast subgraph; x.mean((2, 3)) is
             ReduceMean. eval mode: batch norm folded into the convs
             (initializers `onnx::Conv_*`, convs with bias). Opset 11,
             dynamic batch. Output: logits.
  resnet8b   the same net with option-B shortcuts (1×1 conv + BN, also
             folded), F.avg_pool2d(x, x.size(3)) (AveragePool over the whole
             map), x.view(x.size(0), -1) (Reshape whose shape comes from
             Shape/Gather/Unsqueeze/Concat). Opset 17, dynamic batch.
             Output: logits.
  resnet18q  torchvision.models.resnet18's architecture (7×7/2 stem, 3×3/2
             max pool, four stages of basic blocks with option-B downsample,
             adaptive average pool, flatten, fc to 1000 classes) at a quarter
             of its width (16, 32, 64, 128 channels), input 3×224×224, N = 2 (with one
             image calibrate_fc would remove the only feature direction).
             Full width would be 45 MB of weights (already committed once as
             resnet18tv.weights.safetensors); a quarter is 3.4 MB. Exported
             with do_constant_folding=False and training=PRESERVE, so batch
             norm stays BatchNormalization nodes with the state-dict
             initializer names; a softmax at the end. Opset 21, static
             batch. Output: probabilities.

Regenerate (needs torch, torchvision, onnx, onnxruntime, safetensors):
    python3 Tests/Fixtures/make_onnx_fixtures.py            # all
    python3 Tests/Fixtures/make_onnx_fixtures.py resnet8a   # some
"""

import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_fixtures as mf  # noqa: E402  (init_weights, calibrate_fc, make_input)


class PadBlock(nn.Module):
    """A basic block whose option-A shortcut is F.pad of a strided slice."""

    def __init__(self, in_c, out_c, stride, option):
        super().__init__()
        self.in_c, self.out_c, self.stride, self.option = in_c, out_c, stride, option
        self.conv1 = nn.Conv2d(in_c, out_c, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_c)
        self.conv2 = nn.Conv2d(out_c, out_c, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_c)
        self.changes = stride != 1 or in_c != out_c
        if self.changes and option == "B":
            self.downsample = nn.Sequential(nn.Conv2d(in_c, out_c, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_c))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if not self.changes:
            sc = x
        elif self.option == "A":
            s = self.stride
            sc = F.pad(x[:, :, ::s, ::s], (0, 0, 0, 0, 0, self.out_c - self.in_c))
        else:
            sc = self.downsample(x)
        out += sc
        return F.relu(out)


class CifarNet(nn.Module):
    def __init__(self, n, option, softmax):
        super().__init__()
        self.option, self.softmax = option, softmax
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_c = 16
        for s, width in enumerate((16, 32, 64), start=1):
            blocks = []
            for i in range(n):
                stride = 2 if (s > 1 and i == 0) else 1
                blocks.append(PadBlock(in_c, width, stride, option))
                in_c = width
            setattr(self, f"layer{s}", nn.Sequential(*blocks))
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        if self.option == "A":
            x = x.mean(dim=(2, 3))
        else:
            x = F.avg_pool2d(x, x.size()[3])
            x = x.view(x.size(0), -1)
        x = self.fc(x)
        return torch.softmax(x, dim=1) if self.softmax else x


def make_resnet18q():
    import torchvision
    from torchvision.models.resnet import BasicBlock, ResNet
    m = ResNet(BasicBlock, [2, 2, 2, 2], num_classes=1000)
    # torchvision fixes the widths at 64…512; rebuild each layer at a quarter.
    m.inplanes = 16
    m.conv1 = nn.Conv2d(3, 16, kernel_size=7, stride=2, padding=3, bias=False)
    m.bn1 = nn.BatchNorm2d(16)
    m.layer1 = m._make_layer(BasicBlock, 16, 2)
    m.layer2 = m._make_layer(BasicBlock, 32, 2, stride=2)
    m.layer3 = m._make_layer(BasicBlock, 64, 2, stride=2)
    m.layer4 = m._make_layer(BasicBlock, 128, 2, stride=2)
    m.fc = nn.Linear(128, 1000)
    del torchvision
    # The exported graph ends in Softmax (torchvision's forward returns logits).
    m.forward = lambda x: torch.softmax(ResNet.forward(m, x), dim=1)
    return m


# name: (constructor, input C×H×W, batch N, seed, target logit std, opset,
#        dynamic batch, keep batch norm)
NETWORKS = {
    "resnet8a": (lambda: CifarNet(1, "A", False), (3, 32, 32), 3, 2008, 1.5, 11, True, False),
    "resnet8b": (lambda: CifarNet(1, "B", False), (3, 32, 32), 3, 2009, 1.5, 17, True, False),
    "resnet18q": (make_resnet18q, (3, 224, 224), 2, 2018, 4.0, 21, False, True),
}


@torch.no_grad()
def make(name):
    import onnx
    import onnxruntime as ort
    from safetensors.numpy import save_file
    ctor, (c, h, w), n, seed, target_std, opset, dynamic, keep_bn = NETWORKS[name]
    model = ctor()
    mf.init_weights(model, torch.Generator().manual_seed(seed))
    model.eval()
    x = mf.make_input(n, c, h, w, torch.Generator().manual_seed(seed + 500_000)).contiguous()
    mf.calibrate_fc(model, x, target_std)
    path = os.path.join(HERE, f"{name}.onnx")
    kwargs = dict(dynamo=False, opset_version=opset, input_names=["input"], output_names=["output"])
    if dynamic:
        kwargs["dynamic_axes"] = {"input": {0: "N"}, "output": {0: "N"}}
    if keep_bn:
        kwargs["do_constant_folding"] = False
        kwargs["training"] = torch.onnx.TrainingMode.PRESERVE
    torch.onnx.export(model, (x,), path, **kwargs)
    os.chmod(path, 0o644)
    proto = onnx.load(path)
    onnx.checker.check_model(proto)
    ops = sorted({node.op_type for node in proto.graph.node})
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": x.numpy()})[0]
    ref = model(x).numpy()
    diff = float(np.abs(out - ref).max())
    assert diff < 1e-4, f"onnxruntime and PyTorch differ by {diff}: {out[0][:4]} {ref[0][:4]}"
    meta = {"source": f"Tests/Fixtures/make_onnx_fixtures.py network={name} opset={opset} "
                      f"torch={torch.__version__} onnx={onnx.__version__} onnxruntime={ort.__version__}"}
    iopath = os.path.join(HERE, f"{name}.onnx.io.safetensors")
    save_file({"input": x.numpy(), "output": np.ascontiguousarray(out, dtype=np.float32)}, iopath, metadata=meta)
    os.chmod(iopath, 0o644)
    probs = out if proto.graph.node[-1].op_type == "Softmax" else torch.softmax(torch.from_numpy(out), 1).numpy()
    print(f"{name}: opset {opset}, {len(proto.graph.node)} nodes, {len(proto.graph.initializer)} initializers, "
          f"{os.path.getsize(path)} bytes; ops {', '.join(ops)}")
    print(f"  onnxruntime vs PyTorch max |diff| {diff:.2e}; max prob per row {np.round(probs.max(1), 3).tolist()}")


def main(argv):
    torch.set_num_threads(2)
    names = argv or list(NETWORKS)
    for nm in names:
        if nm not in NETWORKS:
            sys.exit(f"unknown network {nm!r}; known: {', '.join(NETWORKS)}")
    for nm in names:
        make(nm)


if __name__ == "__main__":
    main(sys.argv[1:])
