#!/usr/bin/env python3
"""Side-by-side speed of the generated C and the CPU runtimes people use
instead: onnxruntime, OpenVINO, PyTorch eager, frozen TorchScript and
torch.compile (DESIGN.md §5; issue 7).

In one run, on this machine, for each network and each thread count, with
the same number of threads for every framework:

 1. resnet-compile generates the C for the network (resnet20: the built-in
    CIFAR ResNet-20; resnet56/110: `ResNet.cifar(depth:)`; resnet18/50:
    `ResNet.imagenet(depth:, variant: .torchvision)`, so that torchvision's
    network is the same network); gcc builds it into a shared library
    (-O3 -march=native -fopenmp -shared -fPIC), called through ctypes.
 2. Checks. The C initialises the parameters (NAME_init_params) and saves
    them (NAME_save, torchvision names); PyTorch loads exactly those weights
    (load_state_dict(strict=True)) into the same network (the CIFAR ResNet
    of Tests/Fixtures/make_fixtures.py, or torchvision.models.resnetN); the
    probabilities must agree within --tol (1e-4). Because He initialisation
    with identity batch norm saturates the softmax (which would hide
    errors), fc is then scaled so that the logits' std is 2, saved, and
    loaded into both (NAME_load); the check is repeated, and these are the
    weights every framework is timed with. Every framework's probabilities
    at every timed batch are compared with ours (column "max |Δp|"), and the
    first training step's loss too.
 3. The PyTorch model (with its softmax) is exported to ONNX (opset 17,
    TorchScript exporter, dynamo=False: the dynamo exporter needs
    onnxscript); onnxruntime (CPU provider, intra_op = threads, inter_op 1,
    all graph optimisations) and OpenVINO (CPU plugin,
    INFERENCE_PRECISION_HINT f32, INFERENCE_NUM_THREADS = threads, one
    stream, the model reshaped to each static batch) run that file.
 4. PyTorch three ways: eager (inference_mode), torch.jit.trace +
    torch.jit.freeze at each batch size (no_grad), and torch.compile
    (inductor, default mode, dynamic=False, inductor freezing for
    inference, no_grad). A framework that fails on this machine is reported
    as failed in the tables (with its error), the rest still run.
 5. Timing: every framework in a fresh process (bench/bench_worker.py) with
    OMP_NUM_THREADS = threads: --warmup calls, then samples of >= --min-time
    seconds of back-to-back calls; samples during which other processes
    used more than 5% of the CPUs are dropped (the machine may be shared);
    the median per-call time is reported. --rounds N alternates the
    frameworks N times and pools the samples. Training step (CIFAR nets;
    ours, PyTorch eager and torch.compile): batch --train-batch, SGD
    momentum 0.9, weight decay 1e-4, lr 0.05, 4 random batches cycled, the
    same initial weights.
 6. Tables: images/s, ms per call, ours ÷ each peer (> 1: ours is faster),
    GFLOP/s (2 × multiply-adds per image from `resnet-compile --emit
    summary` × images/s; a training step counts 3 × the forward pass) as a
    share of the FP32 peak measured by an FMA loop on the same threads in
    the same run (bench/fma_peak.c). --markdown FILE writes them, with the
    date, the machine (CPU model, ISA), the thread counts and the exact
    command, in a form BENCHMARKS.md can take verbatim.

    bench/setup_venv.sh                  # .venv with torch, onnxruntime, openvino, ...
    .venv/bin/python bench/bench.py --markdown out/bench.md         # everything (long)
    .venv/bin/python bench/bench.py --models resnet20 --batches 1 --min-time 0.1 \\
        --frameworks ours,ort,openvino --threads 1                  # a quick smoke run

Needs: gcc with OpenMP, the Python packages of bench/setup_venv.sh, and a
built resnet-compile (.build/release or .build/debug; --compiler).
"""

import argparse
import importlib.metadata
import json
import os
import platform
import re
import shlex
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

DEFAULT_MODELS = ("resnet20", "resnet56", "resnet110", "resnet18", "resnet50")
FW = bl.FRAMEWORKS
ONNX_USERS = ("onnxruntime", "openvino")


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------

def int_list(text, what, p):
    try:
        vals = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        p.error(f"{what}: comma-separated integers expected, got {text!r}")
    if not vals or min(vals) < 1:
        p.error(f"{what}: positive integers expected, got {text!r}")
    return vals


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__[__doc__.index("\n\n") + 2:])
    p.add_argument("--models", default=None,
                   help=f"networks, comma-separated (default {','.join(DEFAULT_MODELS)}; "
                        f"known: {', '.join(sorted(bl.NETS, key=lambda n: (bl.NETS[n].kind, bl.NETS[n].depth)))})")
    p.add_argument("--net", action="append", default=[],
                   help="one network (may be repeated; the same as --models)")
    p.add_argument("--threads", default=None,
                   help="thread counts, comma-separated; 'all' = every core (nproc); "
                        "each count is used for every framework (default: 1,all)")
    p.add_argument("--batches", default=None,
                   help="inference batch sizes for every network, comma-separated "
                        "(default: --cifar-batches / --imagenet-batches)")
    p.add_argument("--cifar-batches", default="1,64")
    p.add_argument("--imagenet-batches", default="1,8")
    p.add_argument("--train", dest="train", action="store_true", default=True,
                   help="time a training step for the CIFAR nets (default)")
    p.add_argument("--no-train", dest="train", action="store_false")
    p.add_argument("--compile-train", dest="compile_train", action="store_true", default=True,
                   help="also time torch.compile's training step (default)")
    p.add_argument("--no-compile-train", dest="compile_train", action="store_false")
    p.add_argument("--train-batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--frameworks", default=",".join(FW),
                   help="comma-separated, any of " + ", ".join(
                       f"{k}" + (f" ({'/'.join(f.aliases)})" if f.aliases else "")
                       for k, f in FW.items()) + " (default: all; ours is always timed)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    p.add_argument("--reps", type=int, default=10,
                   help="timed samples (default 10; median reported)")
    p.add_argument("--min-time", type=float, default=0.5, metavar="SECONDS",
                   help="a sample is as many back-to-back calls as fill this (default 0.5)")
    p.add_argument("--max-seconds", type=float, default=30.0,
                   help="stop timing a configuration after this many seconds "
                        "(but never below 3 timed samples; default 30)")
    p.add_argument("--rounds", type=int, default=1,
                   help="run the frameworks' workers this many times, alternating, and pool "
                        "the samples, so that background load hits all alike")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                   help="before timing, wait up to this long for the machine to be idle "
                        "(under 10%% of the CPUs busy over one second)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--check-batch", type=int, default=4)
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--compiler", default=None,
                   help="resnet-compile binary (default: the newer of .build/release "
                        "and .build/debug)")
    p.add_argument("--cc", default="gcc")
    p.add_argument("--workdir", default=None,
                   help="keep generated C, libraries, weights, ONNX files and worker logs "
                        "here (default: a temporary directory, removed at the end)")
    p.add_argument("--json", default=None, help="also write the results as JSON here")
    p.add_argument("--markdown", default=None, metavar="FILE",
                   help="write the tables, with date, machine and command, as markdown here")
    a = p.parse_args(argv)

    names = [n for n in (a.models or "").split(",") if n.strip()] + a.net
    if not names:
        names = list(DEFAULT_MODELS)
    for n in names:
        if n not in bl.NETS:
            p.error(f"unknown network {n!r}; known: {', '.join(sorted(bl.NETS))}")
    a.models = list(dict.fromkeys(names))

    nproc = len(os.sched_getaffinity(0))
    toks = (a.threads or "1,all").split(",")
    threads = []
    for t in toks:
        t = t.strip().lower()
        if not t:
            continue
        if t in ("all", "max", "nproc"):
            threads.append(nproc)
        else:
            threads += int_list(t, "--threads", p)
    a.threads = list(dict.fromkeys(threads))

    a.batches = int_list(a.batches, "--batches", p) if a.batches else None
    a.cifar_batches = int_list(a.cifar_batches, "--cifar-batches", p)
    a.imagenet_batches = int_list(a.imagenet_batches, "--imagenet-batches", p)

    fws = []
    for f in a.frameworks.split(","):
        if not f.strip():
            continue
        k = bl.framework_key(f)
        if k is None:
            p.error(f"unknown framework {f!r}; choose from "
                    + ", ".join(list(FW) + [al for fw in FW.values() for al in fw.aliases]))
        fws.append(k)
    fws = set(fws) | {"ours"}
    a.frameworks = [k for k in FW if k in fws]       # table order
    a.argv = list(argv)
    return a


def batches_for(a, net):
    return a.batches or (a.cifar_batches if net.kind == "cifar" else a.imagenet_batches)


def trains(a, net, fw):
    return (a.train and net.kind == "cifar" and FW[fw].trains
            and (fw != "torch.compile" or a.compile_train))


# --------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------

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


def tool_version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return "unknown"


def pkg_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_state(path):
    """The checkout `path` is in, its HEAD, and whether the compiler's sources
    or templates have uncommitted changes (resnet-compile reads the templates
    beside its executable at run time)."""
    d = path if os.path.isdir(path) else os.path.dirname(path)
    try:
        top = subprocess.run(["git", "-C", d, "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, check=True).stdout.strip()
        head = subprocess.run(["git", "-C", top, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", top, "status", "--porcelain", "--",
                                "Sources", "templates"],
                               capture_output=True, text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "not in a git checkout"
    dirty = [ln[3:] for ln in dirty if ln.strip()]
    where = "" if os.path.realpath(top) == os.path.realpath(bl.ROOT) else f" (checkout {top})"
    return (f"git `{head}`{where}"
            + (f" + uncommitted changes in {', '.join(dirty)}" if dirty
               else ", no uncommitted changes in Sources/ or templates/"))


def mem_gib():
    try:
        with open("/proc/meminfo") as f:
            kb = int(re.search(r"MemTotal:\s*(\d+)", f.read()).group(1))
        return kb / 1024 / 1024
    except (OSError, AttributeError, ValueError):
        return None


def threads_per_core():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        m = re.search(r"^Thread\(s\) per core:\s*(\d+)", out, re.M)
        return int(m.group(1)) if m else None
    except (OSError, subprocess.CalledProcessError):
        return None


# --------------------------------------------------------------------------
# Per network: C, library, checks, ONNX
# --------------------------------------------------------------------------

def prepare(a, net, compiler, work, torch, log):
    """Generates and builds the C, runs the correctness checks, exports ONNX.
    Returns a dict (paths, multiply-adds, check lines, ok, onnx_error)."""
    d = os.path.join(work, net.name)
    os.makedirs(os.path.join(d, "probs"), exist_ok=True)
    os.makedirs(os.path.join(d, "logs"), exist_ok=True)
    src_args = []
    model_src = net.model_file_source()
    if model_src is not None:
        model_file = os.path.join(d, "model.swift")
        with open(model_file, "w") as f:
            f.write(model_src)
        src_args = [model_file, "--network", net.name]
    cdir = os.path.join(d, "c")
    gen = [compiler] + src_args + ["-o", cdir]
    log(f"$ {shlex.join(gen)}")
    run(gen, stdout=subprocess.DEVNULL)
    summary = run([compiler] + src_args + ["--emit", "summary"],
                  capture_output=True, text=True).stdout
    m = re.search(r"total params=(\d+) macs=(\d+)", summary.strip().splitlines()[-1])
    if not m:
        sys.exit("error: no 'total params=P macs=M' line in --emit summary")
    params, macs = int(m.group(1)), int(m.group(2))
    log(f"multiply-adds per image: {macs:,} (params {params:,}; from --emit summary)")
    csrc = os.path.join(cdir, f"{net.name}.c")
    header = open(os.path.join(cdir, f"{net.name}.h")).read()
    can_train = f"{net.name}_train_step" in header
    so = os.path.join(d, f"lib{net.name}.so")
    cc = [a.cc, "-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", csrc, "-o", so, "-lm"] + bl.omp_link_flags(a.cc)
    log(f"$ {shlex.join(cc)}")
    t0 = time.perf_counter()
    run(cc)
    log(f"  built in {time.perf_counter() - t0:.1f} s")

    from safetensors.torch import load_file, save_file
    x = bl.make_images(a.check_batch, net.input, a.seed + 99)
    checks, ok = [], True

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

    def compare(ours_probs, other_probs, what):
        diff = float(np.abs(ours_probs - other_probs).max())
        good = diff <= a.tol
        checks.append(f"{what}: max |Δp| = {diff:.1e} ({'ok' if good else 'FAIL'})")
        log(f"check, {what} ({a.check_batch} images): max |probs ours - theirs| = {diff:.2e} "
            f"({'ok' if good else 'FAIL'}, tolerance {a.tol:g}); largest probability per image "
            f"{ours_probs.max(1).min():.3f}..{ours_probs.max(1).max():.3f}")
        return good

    # (a) the C's own initialisation, saved by the C, loaded by PyTorch
    raw = os.path.join(d, f"{net.name}.init.safetensors")
    cm, ours_probs = ours_infer()
    cm.save(raw)
    cm.close()
    model = net.torch_model()
    model.load_state_dict(load_file(raw), strict=True)
    pmodel = bl.softmax_model(model).eval()
    with torch.inference_mode():
        torch_probs = pmodel(torch.from_numpy(x)).numpy()
        logits = model(torch.from_numpy(x))
    log(f"weights: {net.name}_init_params(seed={a.seed}) → {net.name}_save → "
        f"{net.torch_desc()}.load_state_dict(strict=True)")
    ok &= compare(ours_probs, torch_probs,
                  f"C's initialisation → {net.name}_save → PyTorch load_state_dict(strict=True)")

    # (b) fc scaled to a logit std of 2 (an unsaturated softmax), saved,
    # loaded into both; these are the weights every framework is timed with
    scale = 2.0 / float(logits.std(dim=1).mean())
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd["fc.weight"] *= scale
    sd["fc.bias"] *= scale
    weights = os.path.join(d, f"{net.name}.safetensors")
    save_file({k: v.contiguous() for k, v in sd.items()}, weights)
    model.load_state_dict(sd, strict=True)
    with torch.inference_mode():
        torch_probs = pmodel(torch.from_numpy(x)).numpy()
    cm, ours_probs = ours_infer(weights)
    cm.close()
    log(f"weights for the timings: fc.weight and fc.bias × {scale:.3g} (logit std 2) → "
        f"save_file → {net.name}_load and load_state_dict(strict=True)")
    ok &= compare(ours_probs, torch_probs, f"fc × {scale:.3g} → {net.name}_load vs PyTorch")

    # ONNX for onnxruntime and OpenVINO
    onnx_path = os.path.join(d, f"{net.name}.onnx")
    onnx_error = None
    if any(f in a.frameworks for f in ONNX_USERS):
        try:
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
            log(f"ONNX: torch.onnx.export(opset_version=17, dynamo=False) in "
                f"{time.perf_counter() - t0:.1f} s")
        except Exception as e:  # noqa: BLE001 -- reported, the ONNX users fail
            onnx_error = f"ONNX export failed: {type(e).__name__}: {str(e).strip()[:200]}"
            log(onnx_error)
    return {"so": so, "weights": weights, "onnx": onnx_path, "onnx_error": onnx_error,
            "macs": macs, "params": params, "checks": checks, "ok": ok,
            "can_train": can_train, "dir": d}


# --------------------------------------------------------------------------
# Timing: one worker process per framework
# --------------------------------------------------------------------------

def merge(r1, r2):
    """Two rounds of one configuration as one."""
    if r1 is None or "error" in r1:
        return r2 if r2 is not None and "error" not in r2 else r1
    if r2 is None or "error" in r2:
        return r1
    return dict(r1, **bl.pool(r1, r2))


def run_worker(a, net, prep, fw, threads, ncpu, log):
    d = prep["dir"]
    train = trains(a, net, fw) and prep["can_train"]
    cfg = {"framework": fw, "net": net.name, "c_name": net.name, "so": prep["so"],
           "weights": prep["weights"], "onnx": prep["onnx"], "batches": batches_for(a, net),
           "train": train, "train_batch": a.train_batch, "lr": a.lr, "momentum": a.momentum,
           "weight_decay": a.weight_decay, "warmup": a.warmup, "reps": a.reps,
           "min_time": a.min_time, "max_seconds": a.max_seconds, "threads": threads,
           "ncpu": ncpu, "seed": a.seed,
           "probs_prefix": os.path.join(d, "probs", f"{fw}-t{threads}")}
    cfg_path = os.path.join(d, f"worker-{fw}-t{threads}.json")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    log_path = os.path.join(d, "logs", f"{fw}-t{threads}.log")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads),
               TORCHINDUCTOR_CACHE_DIR=os.path.join(d, "inductor-cache"))
    with open(log_path, "w") as errf:
        out = subprocess.run([sys.executable, os.path.join(HERE, "bench_worker.py"), cfg_path],
                             stdout=subprocess.PIPE, stderr=errf, text=True, env=env)
    res = None
    lines = out.stdout.strip().splitlines()
    if lines:
        try:
            res = json.loads(lines[-1])
        except json.JSONDecodeError:
            res = None
    failed = res is None or "error" in res or any(
        "error" in r for r in list(res.get("infer", {}).values()) + [res.get("train") or {}])
    if failed:
        tail = open(log_path, errors="replace").read().strip().splitlines()[-12:]
        log(f"  {fw} ({threads} thread{'s' if threads > 1 else ''}): something failed; last lines of its log:\n    "
            + "\n    ".join(tail))
    if res is None:
        last = next((ln for ln in reversed(open(log_path, errors="replace").read().splitlines())
                     if ln.strip()), "")
        res = {"error": f"worker exited {out.returncode}: {last.strip()[:200]}"}
    return res


def time_all(a, net, prep, threads, work, info, log):
    ncpu = os.cpu_count() or info["nproc"]
    results = {}
    for rnd in range(a.rounds):
        for fw in a.frameworks:
            if fw in ONNX_USERS and prep["onnx_error"]:
                results[fw] = {"error": prep["onnx_error"]}
                continue
            t0 = time.perf_counter()
            res = run_worker(a, net, prep, fw, threads, ncpu, log)
            log(f"  {net.name}, {threads} thread{'s' if threads > 1 else ''}, "
                f"round {rnd + 1}/{a.rounds}: {FW[fw].title} done in "
                f"{time.perf_counter() - t0:.0f} s")
            prev = results.get(fw)
            if prev is None or ("error" in prev and "error" not in res):
                results[fw] = res
                continue
            if "error" in res:
                continue                      # keep the earlier rounds
            for b, r in res.get("infer", {}).items():
                results[fw]["infer"][b] = merge(results[fw]["infer"].get(b), r)
            if res.get("train") is not None:
                results[fw]["train"] = merge(results[fw].get("train"), res["train"])
    return results


# --------------------------------------------------------------------------
# Rows and tables
# --------------------------------------------------------------------------

def build_rows(a, net, prep, threads, results, mpeak):
    """One row per (mode, batch, framework) at this thread count."""
    macs = prep["macs"]
    d = prep["dir"]
    rows = []

    def entry(fw, mode, b):
        res = results.get(fw) or {"error": "not run"}
        if "error" in res:
            return {"error": res["error"]}
        r = res["infer"].get(str(b)) if mode == "inference" else res.get("train")
        return r if r is not None else {"error": "not run"}

    configs = [("inference", b) for b in batches_for(a, net)]
    if a.train and net.kind == "cifar" and prep["can_train"]:
        configs.append(("training step", a.train_batch))
    for mode, b in configs:
        ours = entry("ours", mode, b)
        ours_ips = None if "error" in ours else b / ours["median_s"]
        ours_probs = None
        if mode == "inference" and "error" not in ours:
            ours_probs = np.load(os.path.join(d, "probs", f"ours-t{threads}-{b}.npy"))
        for fw in a.frameworks:
            if mode == "training step" and not trains(a, net, fw):
                continue
            r = entry(fw, mode, b)
            row = {"net": net.name, "threads": threads, "mode": mode, "batch": b,
                   "framework": fw, "title": FW[fw].title}
            if "error" in r:
                row["error"] = r["error"]
                rows.append(row)
                continue
            ips = b / r["median_s"]
            gflops = 2.0 * macs * (3 if mode == "training step" else 1) * ips / 1e9
            row.update(median_s=r["median_s"], min_s=r["min_s"], max_s=r["max_s"],
                       images_per_s=ips, gflops=gflops,
                       pct_measured_peak=100 * gflops / mpeak if mpeak else None,
                       ours_over_this=ours_ips / ips if ours_ips else None,
                       reps=r["reps"], calls_per_sample=r["calls_per_sample"],
                       dropped=r["dropped"], clean=r["clean"],
                       prep_s=r.get("prep_s"), note=r.get("note"))
            if mode == "inference" and fw == "ours":
                pass
            elif mode == "inference":
                pf = os.path.join(d, "probs", f"{fw}-t{threads}-{b}.npy")
                if ours_probs is not None and os.path.exists(pf):
                    row["max_dprob"] = float(np.abs(np.load(pf) - ours_probs).max())
                    row["check_ok"] = row["max_dprob"] <= a.tol
            else:
                row["first_loss"] = r.get("first_loss")
                if "error" not in ours and fw != "ours":
                    dl = abs(r["first_loss"] - ours["first_loss"])
                    row["dloss"] = dl
                    row["check_ok"] = dl <= a.tol * max(1.0, abs(ours["first_loss"]))
            rows.append(row)
    return rows


def fmt_ms(s):
    ms = 1000 * s
    return f"{ms:,.1f}" if ms >= 100 else f"{ms:.2f}" if ms >= 1 else f"{ms:.3f}"


def fmt_ratio(x):
    return "n/a" if x is None else f"{x:.2f}×"


def md_escape(s):
    return s.replace("|", "\\|").replace("\n", " ")


def detail_table(rows):
    out = ["| threads | mode | batch | framework | ms per call: median (fastest–slowest) "
           "| images/s | ours ÷ this | GFLOP/s | % of measured peak | max \\|Δp\\| vs ours "
           "| samples kept (dropped) | notes |",
           "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        head = f"| {r['threads']} | {r['mode']} | {r['batch']} | {r['title']} "
        if "error" in r:
            out.append(head + f"| failed | – | – | – | – | – | – | {md_escape(r['error'])} |")
            continue
        if "max_dprob" in r:
            chk = f"{r['max_dprob']:.1e}" + ("" if r["check_ok"] else " FAIL")
        elif r["mode"] == "training step" and r.get("first_loss") is not None:
            chk = f"loss {r['first_loss']:.6f}" + ("" if r.get("check_ok", True) else " FAIL")
        else:
            chk = "–"
        notes = []
        if r.get("prep_s") is not None:
            what = {"torch.compile": "compile", "torchscript": "trace+freeze",
                    "openvino": "compile_model", "onnxruntime": "session"}.get(r["framework"],
                                                                              "prep")
            notes.append(f"{what} {r['prep_s']:.1f} s")
        if r.get("note"):
            notes.append(r["note"])
        if not r["clean"]:
            notes.append("DISTURBED: no clean sample")
        pct = "n/a" if r["pct_measured_peak"] is None else f"{r['pct_measured_peak']:.1f}%"
        out.append(head + f"| {fmt_ms(r['median_s'])} ({fmt_ms(r['min_s'])}–{fmt_ms(r['max_s'])}) "
                   f"| {r['images_per_s']:,.1f} | {fmt_ratio(r['ours_over_this'])} "
                   f"| {r['gflops']:.1f} | {pct} | {chk} "
                   f"| {r['reps']} × {r['calls_per_sample']} ({r['dropped']}) "
                   f"| {md_escape('; '.join(notes))} |")
    return out


def summary_table(a, all_rows, peers):
    out = ["| network | mode | batch | threads | ours: images/s | ours: ms per call "
           "| ours: GFLOP/s (% of measured peak) | "
           + " | ".join(f"ours ÷ {FW[p].title}" for p in peers) + " |",
           "|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(peers)]
    keys = list(dict.fromkeys((r["net"], r["mode"], r["batch"], r["threads"]) for r in all_rows))
    net_order = {n: i for i, n in enumerate(a.models)}
    keys.sort(key=lambda k: (net_order[k[0]], k[1] != "inference", k[2], k[3]))
    by = {(r["net"], r["mode"], r["batch"], r["threads"], r["framework"]): r for r in all_rows}
    for k in keys:
        ours = by.get(k + ("ours",))
        if ours is None or "error" in ours:
            cells = "| failed | – | – |"
        else:
            pct = ("" if ours["pct_measured_peak"] is None
                   else f" ({ours['pct_measured_peak']:.1f}%)")
            cells = (f"| {ours['images_per_s']:,.1f} | {fmt_ms(ours['median_s'])} "
                     f"| {ours['gflops']:.1f}{pct} |")
        for p in peers:
            r = by.get(k + (p,))
            if r is None:
                cells += " – |"
            elif "error" in r:
                cells += " failed |"
            else:
                cells += f" {fmt_ratio(r['ours_over_this'])} |"
        out.append(f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} " + cells)
    return out


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def main(argv):
    a = parse_args(argv)
    info = bl.machine_info()
    compiler = find_compiler(a.compiler)
    own_dir = a.workdir is None
    work = tempfile.mkdtemp(prefix="resnet-bench-") if own_dir else os.path.abspath(a.workdir)
    os.makedirs(work, exist_ok=True)
    try:
        return bench(a, info, compiler, work)
    finally:
        if own_dir:
            shutil.rmtree(work, ignore_errors=True)


def bench(a, info, compiler, work):
    try:
        import torch
    except ImportError:
        sys.exit("error: torch is not importable by " + sys.executable
                 + "; run bash bench/setup_venv.sh and use .venv/bin/python")
    started = time.time()
    t_start = time.perf_counter()

    def log(msg=""):
        print(msg, flush=True)

    # the parent's own PyTorch (checks, ONNX export) on every core
    os.environ["OMP_NUM_THREADS"] = str(max(a.threads))
    torch.set_num_threads(max(a.threads))
    ncpu = os.cpu_count() or info["nproc"]
    versions = {a.cc: re.sub(r"^\S+\s+", "", tool_version([a.cc, "--version"])),
                "python": platform.python_version()}
    for pkg in ("torch", "torchvision", "onnx", "onnxruntime", "openvino", "numpy",
                "safetensors"):
        versions[pkg] = pkg_version(pkg) or "not installed"
    source = git_state(compiler)
    compiler_built = time.strftime("%Y-%m-%d %H:%M:%S",
                                   time.localtime(os.path.getmtime(compiler)))
    command = shlex.join([os.path.relpath(sys.executable) if not os.path.relpath(
        sys.executable).startswith("../..") else sys.executable,
        os.path.relpath(os.path.abspath(__file__))] + a.argv)
    tpc = threads_per_core()
    mem = mem_gib()

    log(f"# resnet-compile side-by-side benchmark: {', '.join(a.models)}")
    log(f"machine: {info['cpu_model']}, nproc={info['nproc']}"
        + (f" ({tpc} thread{'s' if tpc != 1 else ''} per core)" if tpc else "")
        + (f", {mem:.0f} GiB" if mem else "") + f"; ISA: {' '.join(info['isa']) or 'none'}")
    log(f"threads: {', '.join(map(str, a.threads))}; frameworks: "
        + ", ".join(FW[f].title for f in a.frameworks))
    log(f"compiler: {compiler} (built {compiler_built}); source {source}")
    log("versions: " + "; ".join(f"{k} {v}" for k, v in versions.items()))
    log(f"command: {command}")

    deadline = time.time() + a.wait_idle
    while a.wait_idle > 0 and time.time() < deadline:
        b = bl.cpu_busy(1.0)
        if b is None or b < 0.10:
            break
    busy = bl.cpu_busy(1.0)
    load = os.getloadavg()
    log(f"before timing: {'unknown' if busy is None else f'{100 * busy:.0f}%'} of the CPUs "
        f"busy (1 s), load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")

    other_load = bl.OtherLoad()
    other_load.start()
    sections, all_rows, ok, checks, peaks = [], [], True, {}, {}
    for name in a.models:
        net = bl.NETS[name]
        log(f"\n## {net.name}: {net.swift_expr()}, input {'×'.join(map(str, net.input))}, "
            f"{net.classes} classes")
        prep = prepare(a, net, compiler, work, torch, log)
        ok &= prep["ok"]
        checks[net.name] = prep
        net_rows, net_peaks = [], {}
        for threads in a.threads:
            mp = bl.measured_fma_peak(a.cc, work, threads, seconds=min(0.5, max(0.1, a.min_time)))
            mpeak = mp[0] if mp else None
            net_peaks[threads] = mpeak
            peaks.setdefault(threads, []).append(mpeak)
            log(f"{net.name}, {threads} thread{'s' if threads > 1 else ''}: measured FP32 peak (bench/fma_peak.c, "
                f"{mp[1] if mp else '?'}): " + (f"{mpeak:.1f} GFLOP/s" if mpeak else "unknown"))
            results = time_all(a, net, prep, threads, work, info, log)
            rows = build_rows(a, net, prep, threads, results, mpeak)
            net_rows += rows
        all_rows += net_rows
        for r in net_rows:
            if r.get("check_ok") is False:
                ok = False
        sections.append((net, prep, net_peaks, net_rows))
        log("\n".join(detail_table(net_rows)))

    other = other_load.stop(ncpu)
    elapsed = time.perf_counter() - t_start

    # ---- the document ----
    peers = [f for f in a.frameworks if f != "ours"]
    md = []
    md.append(f"### Side by side: ours vs {', '.join(FW[p].title for p in peers) or 'nothing'}"
              f" — {time.strftime('%Y-%m-%d', time.localtime(started))}")
    md.append("")
    md.append(f"- **Date**: {time.strftime('%Y-%m-%d %H:%M %Z', time.localtime(started))}; "
              f"the whole run took {elapsed / 60:.1f} min.")
    md.append(f"- **Machine**: CPU \"{info['cpu_model']}\" (lscpu 'Model name'), "
              f"`nproc` = {info['nproc']}"
              + (f", {tpc} thread{'s' if tpc != 1 else ''} per core" if tpc else "")
              + (f", {mem:.0f} GiB" if mem else "")
              + "; " + ", ".join(f"{f} {'yes' if f in info['flags'] else 'no'}"
                                 for f in ("avx512f", "avx2", "amx_tile"))
              + f" (ISA flags present: {', '.join(info['isa']) or 'none of ' + ', '.join(bl.ISA_FLAGS)})"
              + f"; {platform.system()} {platform.machine()}.")
    fma = "; ".join(
        f"{t} thread{'s' if t > 1 else ''}: "
        + ("/".join(f"{p:.0f}" for p in ps if p) or "unknown") + " GFLOP/s"
        for t, ps in peaks.items())
    md.append(f"- **Threads**: {', '.join(map(str, a.threads))} — the same for every framework "
              "(OMP_NUM_THREADS; torch.set_num_threads; onnxruntime intra_op, inter_op 1; "
              "OpenVINO INFERENCE_NUM_THREADS, 1 stream).")
    md.append(f"- **Measured FP32 peak** (bench/fma_peak.c, FMA chains on every thread, "
              f"best of 5, once per network and thread count, in network order): {fma}.")
    nominal = [bl.fp32_peak(info, t) for t in a.threads]
    md.append("- **Nominal peak** for comparison: "
              + "; ".join(txt for _, txt in nominal) + ".")
    md.append(f"- **Command**: `{command}`")
    md.append(f"- **Compiler**: `{os.path.relpath(compiler, bl.ROOT) if compiler.startswith(bl.ROOT) else compiler}`"
              f" built {compiler_built}, {source}; C built with "
              f"`{a.cc} -O3 -march=native -fopenmp -shared -fPIC`.")
    md.append("- **Versions**: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".")
    md.append(f"- **Timing**: {a.warmup} warmup call{'s' if a.warmup != 1 else ''}, then up to {a.reps} samples of ≥ "
              f"{a.min_time:g} s of back-to-back calls (at least 3; a configuration stops after "
              f"{a.max_seconds:g} s), median reported"
              + (f", {a.rounds} alternating rounds pooled" if a.rounds > 1 else "")
              + "; samples during which other processes used > 5% of the CPUs are dropped. "
              + ("Other processes used "
                 f"{other[0]:.1f} CPU-seconds in {other[1]:.0f} s ({100 * other[2]:.1f}% of the "
                 f"machine's {ncpu} CPUs) during the run." if other else ""))
    md.append("- **Frameworks**: ours: `NAME_infer` / `NAME_train_step` of the generated C "
              "through ctypes. onnxruntime: CPUExecutionProvider, ORT_ENABLE_ALL, sequential, "
              "intra_op = threads, inter_op 1. OpenVINO: CPU plugin, INFERENCE_PRECISION_HINT "
              "f32 (read back from the compiled model), INFERENCE_NUM_THREADS = threads, "
              "NUM_STREAMS 1, PERFORMANCE_HINT LATENCY, the model reshaped to each static batch, "
              "one synchronous infer request. Both run the same ONNX file "
              "(`torch.onnx.export`, opset 17, dynamo=False, softmax included). PyTorch eager: "
              "`torch.inference_mode()`. TorchScript: `torch.jit.trace` at each batch size, then "
              "`torch.jit.freeze`, under `torch.no_grad()`. torch.compile: inductor, default "
              "mode, `dynamic=False` (one compilation per batch size), inductor freezing for "
              "inference, `torch.no_grad()`; the training step compiled without freezing. "
              "Compilation (and trace/freeze, compile_model) is not timed; its duration is in "
              "the notes.")
    if a.train and any(bl.NETS[n].kind == "cifar" for n in a.models):
        md.append(f"- **Training step** (CIFAR nets): batch {a.train_batch}, SGD lr {a.lr:g} "
                  f"momentum {a.momentum:g} weight decay {a.weight_decay:g}, 4 random batches "
                  "cycled, same initial weights; ours `NAME_train_step`, PyTorch "
                  "`model.train()` + forward + cross-entropy + backward + `optimizer.step()`"
                  + (", eager and with the model torch.compile'd" if "torch.compile" in
                     a.frameworks and a.compile_train else "") + ".")
    md.append("- GFLOP/s = 2 × multiply-adds per image (`resnet-compile --emit summary`) × "
              "images/s (a training step: × 3). ours ÷ this > 1: ours is faster. max |Δp|: "
              "largest difference of that framework's probabilities from ours on the timed "
              "batch (training: the first step's loss).")
    md.append("")
    md.append("**Summary** (ours ÷ each peer, images/s over images/s):")
    md.append("")
    md += summary_table(a, all_rows, peers)
    for net, prep, net_peaks, net_rows in sections:
        md.append("")
        md.append(f"**{net.name}** ({net.swift_expr()}, input {'×'.join(map(str, net.input))}, "
                  f"{prep['macs']:,} multiply-adds per image; measured peak "
                  + ", ".join(f"{p:.1f} GFLOP/s at {t} thread{'s' if t > 1 else ''}"
                              if p else f"unknown at {t}" for t, p in net_peaks.items())
                  + "). Checks: " + "; ".join(prep["checks"])
                  + (f"; {prep['onnx_error']}" if prep["onnx_error"] else "") + ".")
        md.append("")
        md += detail_table(net_rows)
    failures = [r for r in all_rows if "error" in r]
    if failures:
        md.append("")
        md.append("**Failed on this machine** (the rest of the run went on):")
        md.append("")
        seen = set()
        for r in failures:
            k = (r["net"], r["framework"], r["error"])
            if k in seen:
                continue
            seen.add(k)
            md.append(f"- {r['title']}, {r['net']}: {r['error']}")
    bad = [r for r in all_rows if r.get("check_ok") is False]
    if bad or not all(p["ok"] for p in checks.values()):
        md.append("")
        md.append(f"**Check failures** (tolerance {a.tol:g}): "
                  + "; ".join(f"{r['title']} {r['net']} {r['mode']} batch {r['batch']} "
                              f"{r['threads']} threads" for r in bad)
                  + "; ".join(f"{n}: {'; '.join(p['checks'])}" for n, p in checks.items()
                              if not p["ok"]))
    text = "\n".join(md) + "\n"
    log("\n" + text)
    if a.markdown:
        os.makedirs(os.path.dirname(os.path.abspath(a.markdown)), exist_ok=True)
        with open(a.markdown, "w") as f:
            f.write(text)
        log(f"markdown written to {a.markdown}")
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                       "command": command, "cpu": info["cpu_model"], "isa": info["isa"],
                       "nproc": info["nproc"], "threads": a.threads, "versions": versions,
                       "source": source, "peaks": {str(t): p for t, p in peaks.items()},
                       "macs": {n: p["macs"] for n, p in checks.items()},
                       "checks": {n: p["checks"] for n, p in checks.items()},
                       "rows": all_rows}, f, indent=1)
    if not ok:
        print(f"FAIL: outputs differ by more than {a.tol:g} (see the checks)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
