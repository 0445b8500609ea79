#!/usr/bin/env python3
"""PyTorch reference fixtures for the training step (DESIGN.md §3).

`NAME_train_step` must do what one iteration of this PyTorch loop does:

    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                          weight_decay=weight_decay)   # dampening 0, no Nesterov
    opt.zero_grad()
    loss = F.cross_entropy(model(x), labels)          # mean over the batch
    loss.backward()
    opt.step()                                         # returns loss.item()

i.e. BN normalises with the batch statistics (biased variance) and updates
running_mean / running_var with momentum 0.1 (running_var from the UNBIASED
batch variance, n/(n-1)), num_batches_tracked += 1; weight decay applies to
every parameter (conv/fc weights and biases, BN weight and bias); SGD:
    g   = grad + weight_decay * p
    buf = g                          (first step)
    buf = momentum * buf + g         (later steps)
    p   = p - lr * buf

For every network NAME it writes, next to this script, NAME.train.safetensors:

  init.<state-dict name>     the model before step 1 (F32; *.num_batches_tracked
                             I64 scalar = 7), torchvision names as in
                             NAME.weights.safetensors
  inputs                     10×N×C×H×W F32: step t uses inputs[t]
  labels                     10×N I32: step t uses labels[t]
  hyper                      F32 [3] = lr, momentum, weight_decay
  losses                     F32 [10]: loss.item() of step t (the mean
                             cross-entropy of the forward pass of step t,
                             before that step's update)
  final.<state-dict name>    the model after 10 steps (num_batches_tracked = 17)
  momentum.<param name>      SGD momentum buffers after 10 steps (one per
                             trainable parameter, i.e. named_parameters())
  grads.<param name>         dL/dp of step 1 (p.grad after the first
                             backward, before weight decay and the update)

The networks are resnet20 (batch 8) and mixnet (batch 6) of make_fixtures.py,
initialised as there (init_weights, calibrate_fc on the 10·N inputs in eval
mode) but from their own seeds. The same 10 steps are also run in float64
from the same start; the script prints how far float32 is from float64 (the
loss/parameter tolerances of DESIGN.md §3 are 1e-4 / 1e-3 relative), reloads
the file it wrote and checks that a fresh float32 run from `init.*` gives
bit-identical results.

Regenerate (from any directory):
    python3 Tests/Fixtures/make_train_fixtures.py            # both networks
    python3 Tests/Fixtures/make_train_fixtures.py mixnet     # just some
"""

import copy
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_fixtures import (CifarResNet, MixNet, init_weights,  # noqa: E402
                           make_input, versions)

STEPS = 10
MOMENTUM, WEIGHT_DECAY = 0.9, 1e-4

# name: (constructor, input C×H×W, batch N, classes, seed, target logit std, lr)
# lr: the largest that keeps float32 within ~1e-5 of float64 for the losses
# and the parameters after 10 steps, over many seeds (see the README and
# --seeds). resnet20 needs a tiny one: ReLU inputs within rounding distance of
# 0 flip between float32 and float64 every few steps, each flip changes some
# gradients by ~1 %, and the resulting parameter difference flips more ReLUs
# at the next step; with lr 1e-4 this already reaches 2-5e-4 for 2 seeds in 10.
NETWORKS = {
    "resnet20": (lambda: CifarResNet(3, "A"), (3, 32, 32), 8, 10, 2020, 1.5, 2e-5),
    "mixnet":   (MixNet,                      (3, 20, 24), 6, 7,  2030, 1.5, 0.02),
}


def initial_model(name, seed=None):
    ctor, (c, h, w), n, classes, seed0, target_std, _ = NETWORKS[name]
    seed = seed0 if seed is None else seed
    model = ctor()
    init_weights(model, torch.Generator().manual_seed(seed))
    inputs = make_input(STEPS * n, c, h, w, torch.Generator().manual_seed(seed + 500_000))
    inputs = inputs.reshape(STEPS, n, c, h, w).contiguous()
    labels = torch.randint(0, classes, (STEPS, n),
                           generator=torch.Generator().manual_seed(seed + 600_000))
    calibrate_fc_train(model, inputs, target_std)
    return model, inputs, labels.to(torch.int32)


@torch.no_grad()
def calibrate_fc_train(model, inputs, target_std):
    """make_fixtures.calibrate_fc, but for training: the pooled features are
    those of train mode (BN on the statistics of each step's batch), which is
    what the loss sees. Runs on a copy, so the running statistics of `model`
    are untouched; only model.fc.weight changes (the mean-feature direction is
    projected out of its rows and it is scaled so the logits without bias
    have std target_std per row on average)."""
    probe = copy.deepcopy(model).train()
    feats = []
    hook = probe.fc.register_forward_pre_hook(lambda mod, inp: feats.append(inp[0]))
    for x in inputs:
        probe(x)
    hook.remove()
    f = torch.cat(feats)                             # (STEPS·N) × features
    mu = f.mean(0)
    W = model.fc.weight
    W -= torch.outer(W @ mu, mu) / mu.dot(mu)
    W *= target_std / (f @ W.t()).std(dim=1).mean()


def train(model0, inputs, labels, dtype, hyper):
    """Runs the STEPS steps on a copy of model0 in `dtype`. Returns (model,
    losses [python floats], grads of step 1, momentum buffers)."""
    lr, momentum, weight_decay = hyper
    model = copy.deepcopy(model0).to(dtype)        # num_batches_tracked stays I64
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                          dampening=0.0, weight_decay=weight_decay, nesterov=False)
    losses, grads = [], None
    for t in range(STEPS):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(inputs[t].to(dtype)), labels[t].long())
        loss.backward()
        if t == 0:
            grads = {k: p.grad.detach().clone() for k, p in model.named_parameters()}
        losses.append(loss.item())
        opt.step()
    mom = {k: opt.state[p]["momentum_buffer"].detach().clone()
           for k, p in model.named_parameters()}
    return model, losses, grads, mom


def hyper_of(name):
    """(lr, momentum, weight_decay) rounded to float32: exactly the values in
    the file's `hyper`, and the ones both the float32 and float64 runs use."""
    return tuple(torch.tensor([NETWORKS[name][6], MOMENTUM, WEIGHT_DECAY],
                              dtype=torch.float32).tolist())


def rel(a, b):
    """max |a − b| / max |b| (b the float64 reference)."""
    a, b = a.double(), b.double()
    scale = b.abs().max().item()
    d = (a - b).abs().max().item()
    return d / scale if scale > 0 else d


def compare(run32, run64, init_sd):
    """float32 run vs float64 run: dict of the worst relative differences per
    group and the tensor where each occurs. Parameters whose true step-1
    gradient is 0 (a conv bias followed by BN in train mode: BN removes any
    per-channel constant) are reported on their own: their stored gradient is
    rounding noise and their momentum buffer is mostly weight decay."""
    (m32, loss32, g32, mom32), (m64, loss64, g64, mom64) = run32, run64
    fsd, dsd = m32.state_dict(), m64.state_dict()
    gmax = max(v.abs().max().item() for v in g64.values())
    zero = [k for k, v in g64.items() if v.abs().max().item() < 1e-12 * gmax]
    pn = [k for k, _ in m32.named_parameters()]
    live = [k for k in pn if k not in zero]

    def worst(ks, a, b):
        if not ks:
            return (0.0, "-")
        return max((rel(a[k], b[k]), k) for k in ks)
    out = {
        "loss": max((abs(a - b) / abs(b), f"step {t + 1}")
                    for t, (a, b) in enumerate(zip(loss32, loss64))),
        "params": worst(pn, fsd, dsd),
        "running_mean": worst([k for k in fsd if k.endswith("running_mean")], fsd, dsd),
        "running_var": worst([k for k in fsd if k.endswith("running_var")], fsd, dsd),
        "momentum": worst(live, mom32, mom64),
        "grads": worst(live, g32, g64),
        "moved": worst(pn, dsd, init_sd),     # how far training moved the params
    }
    out["loss_per_step"] = [abs(a - b) / abs(b) for a, b in zip(loss32, loss64)]
    out["zero_grad"] = {k: (g32[k].abs().max().item(), g64[k].abs().max().item(),
                            rel(mom32[k], mom64[k])) for k in zero}
    return out


def make(name):
    ctor, (c, h, w), n, classes, seed, _, _ = NETWORKS[name]
    hyper = hyper_of(name)
    model0, inputs, labels = initial_model(name)
    init_sd = {k: v.detach().clone() for k, v in model0.state_dict().items()}

    run32 = train(model0, inputs, labels, torch.float32, hyper)
    run64 = train(model0, inputs, labels, torch.float64, hyper)
    m32, loss32, g32, mom32 = run32

    tensors = {f"init.{k}": v.contiguous() for k, v in init_sd.items()}
    tensors["inputs"] = inputs
    tensors["labels"] = labels.contiguous()
    tensors["hyper"] = torch.tensor(hyper, dtype=torch.float32)
    tensors["losses"] = torch.tensor(loss32, dtype=torch.float32)
    tensors.update({f"final.{k}": v.detach().clone().contiguous()
                    for k, v in m32.state_dict().items()})
    tensors.update({f"momentum.{k}": v.contiguous() for k, v in mom32.items()})
    tensors.update({f"grads.{k}": v.contiguous() for k, v in g32.items()})

    # One metadata entry only (see make_fixtures.py: several would make the
    # bytes differ from run to run).
    meta = {"source": f"Tests/Fixtures/make_train_fixtures.py network={name} "
                      f"batch={n} steps={STEPS} lr={NETWORKS[name][6]} "
                      f"momentum={MOMENTUM} weight_decay={WEIGHT_DECAY} "
                      + " ".join(f"{k}={v}" for k, v in versions().items())}
    path = os.path.join(HERE, f"{name}.train.safetensors")
    save_file(tensors, path, metadata=meta)
    os.chmod(path, 0o644)      # safetensors creates files 0600

    # ---- checks: reload, rerun from init.* in a fresh module, compare bitwise ----
    ft = load_file(path)
    assert set(ft) == set(tensors), "key mismatch after reload"
    for k, v in tensors.items():
        assert torch.equal(ft[k], v), k
    for k, v in ft.items():
        want = (torch.int64 if k.endswith("num_batches_tracked")
                else torch.int32 if k == "labels" else torch.float32)
        assert v.dtype == want, (k, v.dtype)
    fresh = ctor()
    fresh.load_state_dict({k[5:]: v for k, v in ft.items() if k.startswith("init.")},
                          strict=True)
    assert set(k[6:] for k in ft if k.startswith("final.")) == set(init_sd)
    pnames = [k for k, _ in fresh.named_parameters()]
    for g in ("momentum.", "grads."):
        assert sorted(k[len(g):] for k in ft if k.startswith(g)) == sorted(pnames), g
    mr, lossr, gr, momr = train(fresh, ft["inputs"], ft["labels"], torch.float32,
                                tuple(ft["hyper"].tolist()))
    assert torch.equal(torch.tensor(lossr, dtype=torch.float32), ft["losses"]), \
        "losses not reproducible"
    for k, v in mr.state_dict().items():
        assert torch.equal(v, ft[f"final.{k}"]), f"final.{k} not reproducible"
    for k in momr:
        assert torch.equal(momr[k], ft[f"momentum.{k}"]), k
        assert torch.equal(gr[k], ft[f"grads.{k}"]), k
    nbt = [v.item() for k, v in ft.items()
           if k.startswith("final.") and k.endswith("num_batches_tracked")]
    assert nbt and all(x == 7 + STEPS for x in nbt), nbt

    # ---- report ----
    cmp = compare(run32, run64, init_sd)
    nparams = sum(p.numel() for p in m32.parameters())
    print(f"{name}: batch {n}, input {c}x{h}x{w}, classes {classes}, seed {seed}, "
          f"{nparams} learnable params in {len(pnames)} tensors; "
          f"lr {NETWORKS[name][6]} momentum {MOMENTUM} weight_decay {WEIGHT_DECAY}")
    print(f"  labels: {labels.tolist()}")
    print(f"  losses (f32): {[round(x, 6) for x in loss32]}")
    print("  float32 vs float64 (same start, same hyper):")
    print(f"    loss, |f32 - f64| / |f64| per step: "
          f"{' '.join(f'{x:.1e}' for x in cmp['loss_per_step'])}")
    print("    per tensor max|f32 - f64| / max|f64|, worst tensor of each group:")
    for key, label in (("loss", "loss (worst step)"), ("params", "final params"),
                       ("running_mean", "final running_mean"),
                       ("running_var", "final running_var"),
                       ("momentum", "momentum buffers"), ("grads", "grads (step 1)")):
        v, where = cmp[key]
        print(f"      {label:<20} {v:.2e}  ({where})")
    for k, (a32, a64, mrel) in cmp["zero_grad"].items():
        print(f"    {k}: true gradient 0 (bias before BN): max|grads| f32 {a32:.1e}, "
              f"f64 {a64:.1e} (rounding noise); momentum buffer rel diff {mrel:.1e}")
    print(f"  training moved the params by max|final - init| / max|init| up to "
          f"{cmp['moved'][0]:.2e} ({cmp['moved'][1]})")
    if cmp["loss"][0] > 1e-5 or max(cmp[k][0] for k in
                                     ("params", "running_mean", "running_var")) > 1e-4:
        print("  WARNING: float32 vs float64 differences are close to the tolerances")
    print(f"  {os.path.basename(path)}: {os.path.getsize(path)} bytes, {len(ft)} tensors")


def robustness(name, count):
    """The float32-vs-float64 comparison for `count` other seeds (nothing is
    written): whether the chosen lr is safe in general, not only for the
    seed of the fixture."""
    hyper = hyper_of(name)
    print(f"{name}: float32 vs float64 for {count} other seeds, lr {hyper[0]:.3g}")
    print("    seed   loss    params  run_mean run_var momentum moved")
    for s in range(NETWORKS[name][4] + 1, NETWORKS[name][4] + 1 + count):
        model0, inputs, labels = initial_model(name, s)
        init_sd = {k: v.detach().clone() for k, v in model0.state_dict().items()}
        cmp = compare(train(model0, inputs, labels, torch.float32, hyper),
                      train(model0, inputs, labels, torch.float64, hyper), init_sd)
        print(f"    {s}  " + "  ".join(f"{cmp[k][0]:.1e}" for k in
              ("loss", "params", "running_mean", "running_var", "momentum", "moved")),
              flush=True)


def main(argv):
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    seeds = 0
    if argv and argv[0].startswith("--seeds="):
        seeds, argv = int(argv[0].split("=", 1)[1]), argv[1:]
    names = argv or list(NETWORKS)
    for nm in names:
        if nm not in NETWORKS:
            sys.exit(f"unknown network {nm!r}; known: {', '.join(NETWORKS)}")
    print("versions:", versions())
    for nm in names:
        if seeds:
            robustness(nm, seeds)
        else:
            make(nm)


if __name__ == "__main__":
    main(sys.argv[1:])
