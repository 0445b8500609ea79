#!/usr/bin/env python3
"""Side-by-side speed of the generated C, onnxruntime and PyTorch (DESIGN.md §5).

In one run, on this machine, with the same number of threads for all three:

 1. resnet-compile generates the C for the network; gcc builds it into a
    shared library (cc -O3 -march=native -fopenmp -shared -fPIC), called
    through ctypes.
 2. The C initialises the parameters (NAME_init_params) and saves them
    (NAME_save, torchvision names); PyTorch loads exactly those weights
    (load_state_dict(strict=True)) into the same network: the CIFAR ResNet of
    Tests/Fixtures/make_fixtures.py, or torchvision.models.resnetN for the
    ImageNet nets (compiled as ResNet.imagenet(depth:, variant: .torchvision),
    the stride on the 3×3 conv as torchvision has it). The probabilities of
    the two must agree within --tol (1e-4). Because He initialisation with
    identity batch norm saturates the softmax (which would hide errors),
    fc is then scaled so that the logits' std is 2, saved, and loaded into
    both (NAME_load); the check is repeated, and these weights are timed.
 3. The PyTorch model (with its softmax) is exported to ONNX (opset 17,
    TorchScript exporter: dynamo=False, because the dynamo exporter needs
    onnxscript) and run with onnxruntime's CPU provider
    (intra_op_num_threads = threads, inter_op 1, all graph optimisations).
 4. Inference is timed at each batch size, and for the CIFAR nets one SGD
    training step (momentum 0.9, weight decay 1e-4; ours NAME_train_step,
    PyTorch model.train() + forward + cross-entropy + backward + step).
    Every framework is timed in a fresh process (bench/bench_worker.py) with
    OMP_NUM_THREADS = threads and, for PyTorch, torch.set_num_threads(threads):
    warmup calls, then samples of >= 0.5 s of back-to-back calls; samples
    during which other processes used more than 5% of the CPUs are dropped
    (the machine may be shared); the median per-call time is reported.
    --rounds N alternates the frameworks N times and pools the samples.
 5. A table: images/s, ours ÷ theirs, achieved GFLOP/s (2 × multiply-adds per
    image × images/s; a training step counts 3 × the forward pass; the
    multiply-adds are those of `resnet-compile --emit summary`) and the
    percentage of the machine's FP32 peak, both the nominal one (threads ×
    GHz from lscpu/cpuinfo × FLOPs/cycle from the vector ISA; the assumption
    is printed) and the one measured by an FMA loop (bench/fma_peak.c),
    which sees the real (turbo or AVX-512) clock.

    python3 bench/bench.py                          # resnet20: batch 1, 32, 128 + training at 128
    python3 bench/bench.py --net resnet50 --batches 1,8
    python3 bench/bench.py --net resnet18 --threads 1

Needs: gcc with OpenMP, torch, torchvision, onnx, onnxruntime, safetensors,
numpy, and a built resnet-compile (.build/release or .build/debug; --compiler).
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_lib as bl  # noqa: E402
import numpy as np  # noqa: E402

FRAMEWORKS = ("ours", "onnxruntime", "pytorch")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--net", default="resnet20", choices=sorted(bl.NETS, key=lambda n: (
        bl.NETS[n].kind, bl.NETS[n].depth)))
    p.add_argument("--threads", type=int, default=None,
                   help="threads for every framework (default: all cores, nproc)")
    p.add_argument("--batches", default=None,
                   help="inference batch sizes, comma-separated "
                        "(default 1,32,128 for CIFAR nets, 1,32 for ImageNet nets)")
    p.add_argument("--train", dest="train", action="store_true", default=None,
                   help="time a training step (default: on for CIFAR nets)")
    p.add_argument("--no-train", dest="train", action="store_false")
    p.add_argument("--train-batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    p.add_argument("--reps", type=int, default=10,
                   help="timed samples (default 10; median reported); a sample is as many "
                        "back-to-back calls as fill 0.5 s")
    p.add_argument("--rounds", type=int, default=1,
                   help="run the frameworks' workers this many times, alternating "
                        "(ours, onnxruntime, pytorch, ours, ...), and pool the timed calls, "
                        "so that background load on a shared machine hits all alike")
    p.add_argument("--max-seconds", type=float, default=30.0,
                   help="stop timing a configuration after this many seconds "
                        "(but never below 3 timed calls)")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                   help="before timing, wait up to this long for the machine to be idle "
                        "(under 10%% of the CPUs busy over one second)")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--check-batch", type=int, default=4)
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--compiler", default=None,
                   help="resnet-compile binary (default: the newer of .build/release "
                        "and .build/debug)")
    p.add_argument("--cc", default="gcc")
    p.add_argument("--workdir", default=None,
                   help="keep generated C, library, weights and ONNX here "
                        "(default: a temporary directory, removed at the end)")
    p.add_argument("--json", default=None, help="also write the results as JSON here")
    a = p.parse_args(argv)
    net = bl.NETS[a.net]
    if a.batches is None:
        a.batches = [1, 32, 128] if net.kind == "cifar" else [1, 32]
    else:
        a.batches = [int(b) for b in a.batches.split(",") if b]
    if a.train is None:
        a.train = net.kind == "cifar"
    a.frameworks = [f for f in a.frameworks.split(",") if f]
    for f in a.frameworks:
        if f not in FRAMEWORKS:
            p.error(f"unknown framework {f!r}; choose from {', '.join(FRAMEWORKS)}")
    if "ours" not in a.frameworks:
        a.frameworks.insert(0, "ours")
    return a


def find_compiler(explicit):
    if explicit:
        return os.path.abspath(explicit)
    cands = [os.path.join(bl.ROOT, ".build", c, "resnet-compile") for c in ("release", "debug")]
    cands = [c for c in cands if os.path.isfile(c) and os.access(c, os.X_OK)]
    if not cands:
        sys.exit("error: no resnet-compile in .build/release or .build/debug "
                 "(swift build, or pass --compiler)")
    return max(cands, key=os.path.getmtime)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def show(cmd):
    return " ".join(cmd)


def tool_version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return "unknown"


def git_state():
    """HEAD and whether the compiler's sources or templates have uncommitted
    changes (the C is generated from the working tree's templates)."""
    try:
        head = subprocess.run(["git", "-C", bl.ROOT, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", bl.ROOT, "status", "--porcelain", "--",
                                "Sources", "templates"],
                               capture_output=True, text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    dirty = [ln[3:] for ln in dirty if ln.strip()]
    return f"git {head}" + (f" + uncommitted changes in {', '.join(dirty)}" if dirty else "")


def main(argv):
    a = parse_args(argv)
    net = bl.NETS[a.net]
    info = bl.machine_info()
    threads = a.threads or info["nproc"]
    # Before anything loads an OpenMP runtime; inherited by every worker.
    os.environ["OMP_NUM_THREADS"] = str(threads)
    peak, peak_text = bl.fp32_peak(info, threads)
    compiler = find_compiler(a.compiler)

    own_dir = a.workdir is None
    work = tempfile.mkdtemp(prefix="resnet-bench-") if own_dir else os.path.abspath(a.workdir)
    os.makedirs(work, exist_ok=True)
    try:
        return bench(a, net, info, threads, peak, peak_text, compiler, work)
    finally:
        if own_dir:
            shutil.rmtree(work, ignore_errors=True)


def bench(a, net, info, threads, peak, peak_text, compiler, work):
    import torch
    import onnxruntime as ort

    print(f"# resnet-compile benchmark: {net.name} ({net.swift_expr()}), "
          f"input {'×'.join(map(str, net.input))}, {net.classes} classes")
    print(f"machine: nproc={info['nproc']}, CPU {info['cpu_model']}, "
          f"{platform.system()} {platform.machine()}")
    print(f"threads: {threads} for every framework (OMP_NUM_THREADS={threads}, "
          f"torch.set_num_threads({threads}), onnxruntime intra_op={threads} inter_op=1)")
    print(f"FP32 peak assumption: {peak_text}")
    print(f"source: {git_state()}; compiler {os.path.relpath(compiler, bl.ROOT)} built "
          f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(os.path.getmtime(compiler)))}")
    print(f"versions: {tool_version([a.cc, '--version'])}; python {platform.python_version()}; "
          f"torch {torch.__version__}; onnxruntime {ort.__version__}; numpy {np.__version__}")

    # ---- 1. generate the C and build the shared library ----
    src_args = []
    model_src = net.model_file_source()
    if model_src is not None:
        model_file = os.path.join(work, "model.swift")
        with open(model_file, "w") as f:
            f.write(model_src)
        src_args = [model_file, "--network", net.name]
    cdir = os.path.join(work, "c")
    gen = [compiler] + src_args + ["-o", cdir]
    print(f"\n$ {show(gen)}")
    run(gen, stdout=subprocess.DEVNULL)
    summary = run([compiler] + src_args + ["--emit", "summary"],
                  capture_output=True, text=True).stdout
    m = re.search(r"total params=(\d+) macs=(\d+)", summary.strip().splitlines()[-1])
    if not m:
        sys.exit("error: no 'total params=P macs=M' line in --emit summary")
    params, macs = int(m.group(1)), int(m.group(2))
    print(f"multiply-adds per image: {macs:,} (params {params:,}; from --emit summary)")
    csrc = os.path.join(cdir, f"{net.name}.c")
    header = open(os.path.join(cdir, f"{net.name}.h")).read()
    if a.train and f"{net.name}_train_step" not in header:
        sys.exit(f"error: {net.name}.h has no {net.name}_train_step; cannot time training")
    so = os.path.join(work, f"lib{net.name}.so")
    cc = [a.cc, "-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", csrc, "-o", so, "-lm"]
    print(f"$ {show(cc)}")
    t0 = time.perf_counter()
    run(cc)
    print(f"  built in {time.perf_counter() - t0:.1f} s")

    # ---- 2. same weights in PyTorch, outputs must agree ----
    from safetensors.torch import load_file, save_file
    torch.set_num_threads(threads)
    x = bl.make_images(a.check_batch, net.input, a.seed + 99)

    def ours_infer(path=None):
        cm = bl.CModel(so, net.name, a.check_batch)
        try:
            if path is None:
                cm.init_params(a.seed)
            else:
                cm.load(path)
            probs = np.empty((a.check_batch, net.classes), dtype=np.float32)
            cm.infer_into(x, probs)
            return cm, probs
        except BaseException:
            cm.close()
            raise

    def compare(ours_probs, torch_probs, what):
        diff = float(np.abs(ours_probs - torch_probs).max())
        rel = float((np.abs(ours_probs - torch_probs) / np.maximum(torch_probs, 1e-30)).max())
        good = diff <= a.tol
        print(f"check, {what} ({a.check_batch} images): max |probs ours - PyTorch| = {diff:.2e} "
              f"({'ok' if good else 'FAIL'}, tolerance {a.tol:g}), max relative {rel:.1e}; "
              f"largest probability per image "
              f"{ours_probs.max(1).min():.3f}..{ours_probs.max(1).max():.3f}")
        return diff, good

    # (a) the C's own initialisation, saved by the C, loaded by PyTorch
    raw = os.path.join(work, f"{net.name}.init.safetensors")
    cm, ours_probs = ours_infer()
    cm.save(raw)
    cm.close()
    model = net.torch_model()
    model.load_state_dict(load_file(raw), strict=True)
    pmodel = bl.softmax_model(model).eval()
    with torch.inference_mode():
        torch_probs = pmodel(torch.from_numpy(x)).numpy()
        logits = model(torch.from_numpy(x))
    print(f"\nweights: {net.name}_init_params(seed={a.seed}) → {net.name}_save → "
          f"{net.torch_desc()}.load_state_dict(strict=True)")
    _, ok = compare(ours_probs, torch_probs, "C's initialisation")

    # (b) He initialisation with identity batch norm gives large logits, and a
    # saturated softmax hides errors: scale fc so that the logits' std over
    # the classes is 2, save, and load that into both (this also exercises
    # NAME_load). These are the weights every framework is timed with.
    scale = 2.0 / float(logits.std(dim=1).mean())
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd["fc.weight"] *= scale
    sd["fc.bias"] *= scale
    weights = os.path.join(work, f"{net.name}.safetensors")
    save_file({k: v.contiguous() for k, v in sd.items()}, weights)
    model.load_state_dict(sd, strict=True)
    with torch.inference_mode():
        torch_probs = pmodel(torch.from_numpy(x)).numpy()
    cm, ours_probs = ours_infer(weights)
    cm.close()
    print(f"weights for the timings: the same with fc.weight and fc.bias × {scale:.3g} "
          f"(logit std 2) → save_file → {net.name}_load and load_state_dict(strict=True)")
    diff_torch, ok2 = compare(ours_probs, torch_probs, "fc scaled")
    ok = ok and ok2

    # ---- 3. ONNX ----
    onnx_path = os.path.join(work, f"{net.name}.onnx")
    diff_ort = None
    if "onnxruntime" in a.frameworks:
        import onnx
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            # the TorchScript exporter's deprecation notice and tracer warnings
            # about the shape assert in make_fixtures.Block.forward
            warnings.simplefilter("ignore")
            torch.onnx.export(pmodel, (torch.from_numpy(x),), onnx_path, opset_version=17,
                              input_names=["input"], output_names=["probs"],
                              dynamic_axes={"input": {0: "n"}, "probs": {0: "n"}},
                              dynamo=False)
        onnx.checker.check_model(onnx_path)
        sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        ort_probs = sess.run(None, {"input": x})[0]
        del sess
        diff_ort = float(np.abs(ours_probs - ort_probs).max())
        print(f"ONNX: torch.onnx.export(opset_version=17, dynamo=False) in "
              f"{time.perf_counter() - t0:.1f} s; max |probs ours - onnxruntime| = {diff_ort:.2e}")
        ok = ok and diff_ort <= a.tol

    # ---- 4. timings, one process per framework ----
    print(f"\ntiming: each framework in a fresh process; {a.warmup} warmup calls, then up to "
          f"{a.reps} timed samples of >= 0.5 s each (at least 3; stops after {a.max_seconds:g} s "
          "per configuration); samples during which other processes used > 5% of the CPUs "
          "are dropped"
          + (f"; {a.rounds} alternating rounds, timed calls pooled" if a.rounds > 1 else "")
          + "; the median is reported")
    if a.train:
        print(f"training step: batch {a.train_batch}, SGD lr {a.lr:g} momentum {a.momentum:g} "
              f"weight decay {a.weight_decay:g}, 4 random batches cycled, same initial weights")

    def busy_text():
        b = bl.cpu_busy(1.0)
        return "unknown" if b is None else f"{100 * b:.0f}% of the CPUs busy"
    deadline = time.time() + a.wait_idle
    while a.wait_idle > 0 and time.time() < deadline:
        b = bl.cpu_busy(1.0)
        if b is None or b < 0.10:
            break
    load = os.getloadavg()
    print(f"before timing: {busy_text()} (1 s sample), load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    mpeak = bl.measured_fma_peak(a.cc, work, threads)
    if mpeak:
        per_cycle = 64 if "avx512f" in info["flags"] else 32
        print(f"measured FP32 peak (bench/fma_peak.c, {threads} threads, {mpeak[1]} FMAs, best of 5): "
              f"{mpeak[0]:.1f} GFLOP/s = {mpeak[0] / threads / per_cycle:.2f} GHz at "
              f"{per_cycle} FLOPs/cycle per core")
    mpeak = mpeak[0] if mpeak else None
    other_load = bl.OtherLoad()
    other_load.start()
    results = {}
    for rnd in range(a.rounds):
        for fw in a.frameworks:
            cfg = {"framework": fw, "net": net.name, "c_name": net.name, "so": so,
                   "weights": weights, "onnx": onnx_path, "batches": a.batches,
                   "train": a.train and fw != "onnxruntime", "train_batch": a.train_batch,
                   "lr": a.lr, "momentum": a.momentum, "weight_decay": a.weight_decay,
                   "warmup": a.warmup, "reps": a.reps, "max_seconds": a.max_seconds,
                   "threads": threads, "ncpu": os.cpu_count() or info["nproc"],
                   "seed": a.seed}
            cfg_path = os.path.join(work, f"worker-{fw}.json")
            with open(cfg_path, "w") as f:
                json.dump(cfg, f)
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, os.path.join(HERE, "bench_worker.py"),
                                  cfg_path], capture_output=True, text=True)
            sys.stderr.write(out.stderr)
            if out.returncode != 0:
                sys.exit(f"error: the {fw} worker failed (exit {out.returncode})")
            res = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"  round {rnd + 1}/{a.rounds} {fw}: done in {time.perf_counter() - t0:.0f} s")
            if fw not in results:
                results[fw] = res
                continue
            # pool this round's timed calls with the earlier rounds'
            for b, r in res["infer"].items():
                results[fw]["infer"][b] = bl.pool(results[fw]["infer"][b], r)
            if res.get("train"):
                t = results[fw]["train"]
                results[fw]["train"] = dict(t, **bl.pool(t, res["train"]))
    ncpu = os.cpu_count() or info["nproc"]
    other = other_load.stop(ncpu)
    if other:
        print(f"during timing: other processes used {other[0]:.1f} CPU-seconds in {other[1]:.0f} s "
              f"({100 * other[2]:.1f}% of the machine's {ncpu} CPUs)"
              + ("; the machine was shared: see the dropped samples in the table"
                 if other[2] > 0.05 else ""))

    # ---- 5. table ----
    rows = []
    for b in a.batches:
        for fw in a.frameworks:
            rows.append(("inference", b, fw, results[fw]["infer"][str(b)], 1))
    if a.train:
        for fw in a.frameworks:
            if results[fw].get("train"):
                rows.append(("training step", a.train_batch, fw, results[fw]["train"], 3))

    def ours_rate(mode, b):
        r = results["ours"]["infer"][str(b)] if mode == "inference" else results["ours"]["train"]
        return b / r["median_s"]

    print(f"\n{net.name}, {threads} threads; FP32 peak: "
          + (f"nominal {peak:.1f} GFLOP/s (formula above)" if peak else "nominal unknown")
          + (f", measured {mpeak:.1f} GFLOP/s (FMA loop)" if mpeak else ""))
    print("| mode | batch | framework | ms per call: median (fastest–slowest) | images/s "
          "| ours ÷ this | GFLOP/s | % of nominal peak | % of measured peak | samples kept (dropped) |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    table = []
    for mode, b, fw, r, factor in rows:
        ips = b / r["median_s"]
        gflops = 2.0 * macs * factor * ips / 1e9
        ratio = ours_rate(mode, b) / ips
        pct = f"{100 * gflops / peak:.1f}%" if peak else "n/a"
        pct += f" | {100 * gflops / mpeak:.1f}%" if mpeak else " | n/a"
        print(f"| {mode} | {b} | {fw} | {1000 * r['median_s']:.2f} ({1000 * r['min_s']:.2f}–"
              f"{1000 * r['max_s']:.2f}) | {ips:,.1f} | "
              f"{ratio:.2f} | {gflops:.1f} | {pct} | {r['reps']} × {r['calls_per_sample']} "
              f"({r['dropped']}){'' if r['clean'] else ' DISTURBED'} |")
        table.append({"mode": mode, "batch": b, "framework": fw, "images_per_s": ips,
                      "ratio_ours_over_this": ratio, "gflops": gflops, **r})
    print("samples kept: samples × calls per sample; dropped: samples during which other "
          "processes used more than 5% of the machine (DISTURBED: no clean sample)")
    if a.train:
        losses = {fw: results[fw]["train"]["first_loss"] for fw in a.frameworks
                  if results[fw].get("train")}
        print("\nfirst training step's loss (same weights, same batch): " +
              ", ".join(f"{fw} {v:.6f}" for fw, v in losses.items()))
    print("\nours ÷ this > 1: ours is faster. GFLOP/s = 2 × multiply-adds × images/s "
          "(training: × 3).")

    if a.json:
        with open(a.json, "w") as f:
            json.dump({"net": net.name, "threads": threads, "macs": macs, "peak_gflops": peak,
                       "peak_assumption": peak_text, "cpu": info["cpu_model"],
                       "nproc": info["nproc"], "measured_peak_gflops": mpeak, "max_diff_torch": diff_torch,
                       "max_diff_ort": diff_ort, "rows": table}, f, indent=1)
    if not ok:
        print(f"FAIL: outputs differ by more than {a.tol:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
