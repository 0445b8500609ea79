#!/usr/bin/env python3
"""PyTorch reference fixtures for resnet-compile.

What the fixtures are for
-------------------------
The compiler's generated C (and its reference interpreter) must give the same
inference results as PyTorch for the same weights and inputs (DESIGN.md §3:
probabilities within 1e-4 absolute, float32). The tests must not need PyTorch,
so this script runs PyTorch once and the results are committed. For every
network NAME it writes, next to this script:

  NAME.weights.safetensors  the model's state_dict(), torchvision names, F32
                            tensors plus the I64 scalar `*.num_batches_tracked`
                            (what NAME_load must accept).
  NAME.io.safetensors       `input`  N×C×H×W F32, values ~ N(0, 1)
                                     (see make_input)
                            `probs`  N×classes F32 = softmax(model(input)) in
                                     model.eval() mode, computed in float32.

The networks:
  resnet20    CIFAR ResNet-20 of the paper (Sec. 4.2), option-A shortcuts
              (stride-2 subsample + zero channels appended after the input's).
  resnet20b   the same with option-B shortcuts (1×1 conv + BN named
              layerS.0.downsample.{0,1}) where the shape changes.
  mixnet      a small net that covers every layer and shortcut kind at once:
              conv with bias, 5×5 kernel, max pool with padding, bottleneck
              with projection, basic with identity, basic with zero-pad;
              H ≠ W (20×24) so transposed indexing shows up; 7 classes.
  resnet18tv  torchvision.models.resnet18 itself (ImageNet, 224×224, N = 2);
              proves that the names/shapes match torchvision exactly.
  plain8      CIFAR PlainNet with depth 8 (one block per stage, no shortcut,
              no add), same parameter names as the residual version.

Weights are random but well conditioned, so that probabilities are not
saturated (a saturated softmax would hide errors): conv weights
kaiming-normal (fan_out, relu) as torchvision initialises them, BN
γ ~ U(0.5, 1.5), β ~ N(0, 0.2), running_mean ~ N(0, 0.2),
running_var ~ U(0.5, 2.0), num_batches_tracked = 7, conv bias ~ N(0, 0.2),
fc weight ~ N(0, 0.1) and fc bias ~ N(0, 0.1). fc.weight is then
conditioned (calibrate_fc): the direction of the mean pooled feature is
removed from its rows and it is scaled to a per-network target logit std,
so rows differ from each other and the largest probability per row lies
between 0.2 and 0.9. The input is N(0, 1) per value but has per-image
structure (make_input), again so that rows differ. Every network has its
own fixed seed; inputs use a second generator so they do not depend on
how many random numbers the initialisation drew.

Produced with: Python 3.11.7, torch 2.15.0 (CPU, 2 threads),
torchvision 0.29.2, safetensors 0.8.0, numpy 2.4.6.
The versions actually used are also stored in each file's safetensors
`__metadata__` and printed by the script.

Regenerate (from any directory):
    python3 Tests/Fixtures/make_fixtures.py            # all networks
    python3 Tests/Fixtures/make_fixtures.py mixnet     # just some
The output is byte-for-byte deterministic for a given torch version and
machine; the script also re-loads every file it wrote, rebuilds the net from
it with load_state_dict(strict=True) and checks it gives the same probs.
Every file carries one safetensors `__metadata__` entry, "source" (a loader
must skip `__metadata__`, as every safetensors reader does).
"""

import copy
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))


# --------------------------------------------------------------------------
# Network definitions
# --------------------------------------------------------------------------

def zero_pad_shortcut(x, out_c, stride):
    """Option A (paper Sec. 3.3): take every stride-th pixel starting at (0, 0)
    and append (out_c - in_c) all-zero channels AFTER the input's channels."""
    x = x[:, :, ::stride, ::stride]
    zeros = x.new_zeros(x.shape[0], out_c - x.shape[1], x.shape[2], x.shape[3])
    return torch.cat([x, zeros], 1)


class Block(nn.Module):
    """One residual (or plain) block with torchvision parameter names.

    kind:     'basic'      conv1 3×3 (stride) → bn1 → relu → conv2 3×3 → bn2
              'bottleneck' conv1 1×1 → bn1 → relu → conv2 3×3 (stride) → bn2
                           → relu → conv3 1×1 → bn3   (stride on the 3×3, as
                           torchvision does)
    shortcut: 'identity'   y = relu(F(x) + x)
              'zeropad'    y = relu(F(x) + zero_pad_shortcut(x))   (option A)
              'projection' y = relu(F(x) + downsample(x)), downsample =
                           Sequential(Conv2d 1×1 stride s, BatchNorm2d) (B/C)
              'none'       y = relu(F(x))   (PlainNet: no shortcut, no add)
    """

    def __init__(self, kind, in_c, mid_c, out_c, stride, shortcut):
        super().__init__()
        self.kind, self.shortcut, self.stride, self.out_c = kind, shortcut, stride, out_c
        if kind == "basic":
            self.conv1 = nn.Conv2d(in_c, out_c, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(out_c)
            self.conv2 = nn.Conv2d(out_c, out_c, 3, stride=1, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(out_c)
        elif kind == "bottleneck":
            self.conv1 = nn.Conv2d(in_c, mid_c, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(mid_c)
            self.conv2 = nn.Conv2d(mid_c, mid_c, 3, stride=stride, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(mid_c)
            self.conv3 = nn.Conv2d(mid_c, out_c, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(out_c)
        else:
            raise ValueError(kind)
        if shortcut == "projection":
            self.downsample = nn.Sequential(
                nn.Conv2d(in_c, out_c, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_c),
            )
        elif shortcut not in ("identity", "zeropad", "none"):
            raise ValueError(shortcut)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.kind == "bottleneck":
            out = self.bn3(self.conv3(F.relu(out)))
        if self.shortcut == "none":
            return F.relu(out)
        if self.shortcut == "identity":
            sc = x
        elif self.shortcut == "zeropad":
            sc = zero_pad_shortcut(x, self.out_c, self.stride)
        else:
            sc = self.downsample(x)
        assert sc.shape == out.shape, (sc.shape, out.shape)
        return F.relu(out + sc)          # ReLU after the addition (paper Eq. 1)


class CifarResNet(nn.Module):
    """Paper Sec. 4.2: 6n+2 layers. option 'A' (zero pad), 'B' (projection
    where the shape changes) or 'plain' (no shortcuts). forward() returns
    logits; the fixture applies softmax."""

    def __init__(self, n, option, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_c = 16
        for s, width in enumerate((16, 32, 64), start=1):
            blocks = []
            for i in range(n):
                stride = 2 if (s > 1 and i == 0) else 1
                changes = stride != 1 or in_c != width
                if option == "plain":
                    sc = "none"
                elif not changes:
                    sc = "identity"
                else:
                    sc = {"A": "zeropad", "B": "projection"}[option]
                blocks.append(Block("basic", in_c, width, width, stride, sc))
                in_c = width
            setattr(self, f"layer{s}", nn.Sequential(*blocks))
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean(dim=(2, 3)))          # global average pool


class MixNet(nn.Module):
    """Input 3×20×24, 7 classes. Shapes in comments are C×H×W."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 5, stride=1, padding=2, bias=True)   # 8×20×24
        self.bn1 = nn.BatchNorm2d(8)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)               # 8×10×12
        self.layer1 = nn.Sequential(
            Block("bottleneck", 8, 4, 16, 2, "projection"),               # 16×5×6
            Block("basic", 16, 16, 16, 1, "identity"),                    # 16×5×6
        )
        self.layer2 = nn.Sequential(
            Block("basic", 16, 24, 24, 2, "zeropad"),                     # 24×3×3
        )
        self.fc = nn.Linear(24, 7)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(x.mean(dim=(2, 3)))


def make_resnet18tv():
    import torchvision
    return torchvision.models.resnet18(weights=None, num_classes=1000)


# name: (constructor, input C×H×W, batch N, seed, target logit std)
NETWORKS = {
    "resnet20":   (lambda: CifarResNet(3, "A"),      (3, 32, 32),   3, 1020, 1.5),
    "resnet20b":  (lambda: CifarResNet(3, "B"),      (3, 32, 32),   3, 1021, 1.5),
    "mixnet":     (MixNet,                           (3, 20, 24),   3, 1030, 1.5),
    "resnet18tv": (make_resnet18tv,                  (3, 224, 224), 2, 1018, 4.0),
    "plain8":     (lambda: CifarResNet(1, "plain"),  (3, 32, 32),   3, 1008, 1.5),
}


# --------------------------------------------------------------------------
# Initialisation, fixtures, checks
# --------------------------------------------------------------------------

def make_input(n, c, h, w, gen):
    """Values are N(0, 1) (each the sum of three independent normals whose
    variances add to 1), but with per-image structure: a per-(image, channel)
    offset and a coarse 4×4-pixel-block field on top of white noise. With
    pure white noise every image has almost the same global-average-pooled
    features, so all rows of `probs` would be nearly equal and the fixture
    would not show whether each image is processed correctly."""
    offset = torch.randn(n, c, 1, 1, generator=gen)
    coarse = torch.randn(n, c, (h + 3) // 4, (w + 3) // 4, generator=gen)
    coarse = coarse.repeat_interleave(4, 2).repeat_interleave(4, 3)[:, :, :h, :w]
    white = torch.randn(n, c, h, w, generator=gen)
    return (0.3 ** 0.5) * offset + (0.3 ** 0.5) * coarse + (0.4 ** 0.5) * white


@torch.no_grad()
def calibrate_fc(model, x, target_std):
    """Condition the classifier so the softmax is informative. After ReLU the
    pooled features share a large positive mean μ that is almost the same for
    every image, so fc·μ would dominate the logits and every row would give
    the same answer. Remove the μ direction from each row of fc.weight, then
    scale fc.weight so the logits (without bias) have the target standard
    deviation per row on average. A deterministic, rank-1-plus-scale change
    to a normal fc.weight."""
    feats = []
    hook = model.fc.register_forward_pre_hook(lambda mod, inp: feats.append(inp[0]))
    model(x)
    hook.remove()
    f = feats[0]                                     # N × features
    mu = f.mean(0)
    W = model.fc.weight
    W -= torch.outer(W @ mu, mu) / mu.dot(mu)
    W *= target_std / (f @ W.t()).std(dim=1).mean()
    return mu.abs().mean().item(), f.std(0).mean().item()


@torch.no_grad()
def init_weights(model, gen, fc_std=0.1, fc_bias_std=0.1):
    for m in model.modules():                       # registration order
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu",
                                    generator=gen)
            if m.bias is not None:
                m.bias.normal_(0.0, 0.2, generator=gen)
        elif isinstance(m, nn.BatchNorm2d):
            assert m.eps == 1e-5 and m.momentum == 0.1
            m.weight.uniform_(0.5, 1.5, generator=gen)
            m.bias.normal_(0.0, 0.2, generator=gen)
            m.running_mean.normal_(0.0, 0.2, generator=gen)
            m.running_var.uniform_(0.5, 2.0, generator=gen)
            m.num_batches_tracked.fill_(7)
        elif isinstance(m, nn.Linear):
            m.weight.normal_(0.0, fc_std, generator=gen)
            m.bias.normal_(0.0, fc_bias_std, generator=gen)


def versions():
    import safetensors
    import torchvision
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
    }


def file_summary(path):
    t = load_file(path)
    return os.path.getsize(path), len(t)


@torch.no_grad()
def make(name):
    ctor, (c, h, w), n, seed, target_std = NETWORKS[name]
    model = ctor()
    init_weights(model, torch.Generator().manual_seed(seed))
    model.eval()
    x = make_input(n, c, h, w, torch.Generator().manual_seed(seed + 500_000)).contiguous()
    feat_mean, feat_spread = calibrate_fc(model, x, target_std)

    logits = model(x)
    probs = torch.softmax(logits, dim=1)
    model64 = copy.deepcopy(model).double()
    probs64 = torch.softmax(model64(x.double()), dim=1)
    diff = (probs.double() - probs64).abs().max().item()

    # One metadata entry only: safetensors (Rust) writes the metadata map in
    # hash order, so several entries would make the bytes differ run to run.
    meta = {"source": f"Tests/Fixtures/make_fixtures.py network={name} "
                      + " ".join(f"{k}={v}" for k, v in versions().items())}
    sd = model.state_dict()
    wpath = os.path.join(HERE, f"{name}.weights.safetensors")
    iopath = os.path.join(HERE, f"{name}.io.safetensors")
    save_file({k: v.contiguous() for k, v in sd.items()}, wpath, metadata=meta)
    save_file({"input": x.contiguous(), "probs": probs.contiguous()}, iopath, metadata=meta)
    for p in (wpath, iopath):
        os.chmod(p, 0o644)      # safetensors creates files 0600

    # ---- checks: reload what was written, rebuild the net from it ----
    wt = load_file(wpath)
    assert set(wt) == set(sd), "key mismatch after reload"
    for k, v in sd.items():
        assert wt[k].dtype == (torch.int64 if k.endswith("num_batches_tracked") else torch.float32), k
        assert wt[k].shape == v.shape and torch.equal(wt[k], v), k
    fresh = ctor()
    fresh.load_state_dict(wt, strict=True)
    fresh.eval()
    io = load_file(iopath)
    assert torch.equal(torch.softmax(fresh(io["input"]), 1), io["probs"]), "reload changes probs"
    if name == "resnet18tv":
        ref = list(make_resnet18tv().state_dict().keys())
        assert list(sd.keys()) == ref, "state_dict keys differ from torchvision resnet18"
        assert set(wt) == set(ref)
        for k, v in make_resnet18tv().state_dict().items():
            assert wt[k].shape == v.shape, k
        print("  resnet18tv: state_dict keys == torchvision.models.resnet18() keys "
              f"({len(ref)} keys, same order, same shapes)")

    # ---- stats ----
    pmax = probs.max(dim=1).values
    lstd = logits.std(dim=1)
    spread = logits.std(dim=0).mean().item()     # how much rows differ from each other
    nparams = sum(v.numel() for k, v in sd.items() if not k.endswith("num_batches_tracked")
                  and "running" not in k)
    print(f"{name}: input {n}x{c}x{h}x{w}, classes {probs.shape[1]}, "
          f"learnable params {nparams}, seed {seed}")
    print(f"  pooled features: mean |mu| {feat_mean:.3f}, between-image std {feat_spread:.3f}")
    print(f"  max-prob per row: {[round(v, 4) for v in pmax.tolist()]}")
    print(f"  logit std per row: {[round(v, 3) for v in lstd.tolist()]}, "
          f"between-row logit std (mean over classes): {spread:.3f}")
    print(f"  argmax per row: {probs.argmax(1).tolist()}")
    print(f"  max |probs_f32 - probs_f64| = {diff:.3e}")
    for p in (wpath, iopath):
        size, count = file_summary(p)
        print(f"  {os.path.basename(p)}: {size} bytes, {count} tensors")
    return sd


def main(argv):
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    names = argv or list(NETWORKS)
    for nm in names:
        if nm not in NETWORKS:
            sys.exit(f"unknown network {nm!r}; known: {', '.join(NETWORKS)}")
    print("versions:", versions())
    for nm in names:
        make(nm)


if __name__ == "__main__":
    main(sys.argv[1:])
