"""Shared pieces of the side-by-side benchmark (bench/bench.py).

- NETS: the networks the benchmark knows, how to get them from resnet-compile
  and how to build the same network in PyTorch.
- FRAMEWORKS: the runtimes timed beside the generated C, their names in
  tables and on the command line.
- CModel: the generated C library (NAME_create/load/infer/train_step/...)
  called through ctypes.
- machine_info / fp32_peak: the CPU, its vector ISA and its FP32 peak, with
  the assumption stated.
- time_calls: warmup, then timed repetitions (median is what is reported).

Nothing here imports torch at module level: the "ours" timing worker must not
load PyTorch (its OpenMP runtime) into the process it measures.
"""

import ctypes
import os
import re
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures")


# --------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------

class Net:
    """kind 'cifar' (option-A shortcuts, 32×32, 10 classes) or 'imagenet'
    (projection shortcuts, torchvision variant: stride on the 3×3 conv of a
    bottleneck, 224×224, 1000 classes)."""

    def __init__(self, name, kind, depth):
        self.name, self.kind, self.depth = name, kind, depth
        if kind == "cifar":
            self.input = (3, 32, 32)
            self.classes = 10
        else:
            self.input = (3, 224, 224)
            self.classes = 1000

    def model_file_source(self):
        """Swift model file for resnet-compile, or None for the built-in
        network (the CIFAR ResNet-20, option A)."""
        if self.kind == "cifar":
            if self.depth == 20:
                return None
            return f"import ResNetDSL\nlet n = try ResNet.cifar(depth: {self.depth})\n"
        return ("import ResNetDSL\n"
                f"let n = try ResNet.imagenet(depth: {self.depth}, variant: .torchvision)\n")

    def swift_expr(self):
        if self.kind == "cifar":
            return ("built-in ResNet-20 (option A)" if self.depth == 20
                    else f"ResNet.cifar(depth: {self.depth})")
        return f"ResNet.imagenet(depth: {self.depth}, variant: .torchvision)"

    def torch_model(self):
        """The same network in PyTorch (logits out), parameters uninitialised
        (they are loaded from the C's safetensors)."""
        if self.kind == "cifar":
            if FIXTURES not in sys.path:
                sys.path.insert(0, FIXTURES)
            from make_fixtures import CifarResNet
            return CifarResNet((self.depth - 2) // 6, "A", num_classes=self.classes)
        import torchvision
        return getattr(torchvision.models, f"resnet{self.depth}")(weights=None,
                                                                 num_classes=self.classes)

    def torch_desc(self):
        if self.kind == "cifar":
            return f"Tests/Fixtures/make_fixtures.py CifarResNet({(self.depth - 2) // 6}, 'A')"
        return f"torchvision.models.resnet{self.depth}()"


NETS = {f"resnet{d}": Net(f"resnet{d}", "cifar", d) for d in (20, 32, 44, 56, 110, 1202)}
NETS.update({f"resnet{d}": Net(f"resnet{d}", "imagenet", d) for d in (18, 34, 50, 101, 152)})


# --------------------------------------------------------------------------
# Frameworks
# --------------------------------------------------------------------------

class Framework:
    def __init__(self, key, title, aliases, trains):
        self.key, self.title, self.aliases, self.trains = key, title, aliases, trains


FRAMEWORKS = {f.key: f for f in (
    Framework("ours", "ours", (), True),
    Framework("onnxruntime", "onnxruntime", ("ort",), False),
    Framework("openvino", "OpenVINO", ("ov",), False),
    Framework("pytorch", "PyTorch eager", ("eager", "torch"), True),
    Framework("torchscript", "TorchScript (frozen)", ("ts", "jit"), False),
    Framework("torch.compile", "torch.compile", ("compile", "inductor"), True),
)}


def framework_key(name):
    """'ort' → 'onnxruntime', ...; None if unknown."""
    n = name.strip().lower()
    for f in FRAMEWORKS.values():
        if n == f.key or n in f.aliases:
            return f.key
    return None


def softmax_model(net_module):
    """Wrap a logits model so that it returns probabilities, as NAME_infer does."""
    import torch.nn as nn
    return nn.Sequential(net_module, nn.Softmax(dim=1))


# --------------------------------------------------------------------------
# Inputs (identical in every process for a given seed)
# --------------------------------------------------------------------------

def make_images(n, shape, seed):
    rng = np.random.default_rng(seed)
    return np.ascontiguousarray(rng.standard_normal((n,) + tuple(shape), dtype=np.float32))


def make_labels(n, classes, seed):
    rng = np.random.default_rng(seed)
    return np.ascontiguousarray(rng.integers(0, classes, size=n, dtype=np.int32))


# --------------------------------------------------------------------------
# The generated C through ctypes
# --------------------------------------------------------------------------

class CModel:
    def __init__(self, so_path, name, max_batch):
        self.lib = lib = ctypes.CDLL(so_path)
        self.name = name
        P = ctypes.c_void_p
        fp = ctypes.POINTER(ctypes.c_float)
        ip = ctypes.POINTER(ctypes.c_int32)

        def fn(suffix, restype, argtypes):
            f = getattr(lib, f"{name}_{suffix}")
            f.restype, f.argtypes = restype, argtypes
            return f

        self._create = fn("create", P, [ctypes.c_int])
        self._destroy = fn("destroy", None, [P])
        self._init = fn("init_params", ctypes.c_int, [P, ctypes.c_uint64])
        self._load = fn("load", ctypes.c_int, [P, ctypes.c_char_p])
        self._save = fn("save", ctypes.c_int, [P, ctypes.c_char_p])
        self._infer = fn("infer", ctypes.c_int, [P, fp, ctypes.c_int, fp])
        self._train = fn("train_step", ctypes.c_int,
                         [P, fp, ip, ctypes.c_int, ctypes.c_float, fp])
        self._setopt = fn("set_optimizer", ctypes.c_int, [P, ctypes.c_float, ctypes.c_float])
        self._strerror = fn("strerror", ctypes.c_char_p, [ctypes.c_int])
        self._fp, self._ip = fp, ip
        self.max_batch = max_batch
        self.m = self._create(max_batch)
        if not self.m:
            raise RuntimeError(f"{name}_create({max_batch}) returned NULL")

    def _check(self, rc, what):
        if rc != 0:
            msg = self._strerror(rc)
            raise RuntimeError(f"{self.name}_{what}: {rc} {msg.decode() if msg else ''}")

    def init_params(self, seed):
        self._check(self._init(self.m, seed), "init_params")

    def load(self, path):
        self._check(self._load(self.m, os.fsencode(path)), "load")

    def save(self, path):
        self._check(self._save(self.m, os.fsencode(path)), "save")

    def set_optimizer(self, momentum, weight_decay):
        self._check(self._setopt(self.m, momentum, weight_decay), "set_optimizer")

    def infer_into(self, x, probs):
        """x: n×C×H×W float32 C-contiguous; probs: n×classes float32 (written)."""
        self._check(self._infer(self.m, x.ctypes.data_as(self._fp), x.shape[0],
                                probs.ctypes.data_as(self._fp)), "infer")

    def train_step(self, x, labels, lr):
        loss = ctypes.c_float(0.0)
        self._check(self._train(self.m, x.ctypes.data_as(self._fp),
                                labels.ctypes.data_as(self._ip), x.shape[0],
                                lr, ctypes.byref(loss)), "train_step")
        return loss.value

    def close(self):
        if self.m:
            self._destroy(self.m)
            self.m = None


# --------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------

def _busy_ticks_s():
    """Seconds of CPU time (all CPUs, all processes) spent non-idle since boot,
    from /proc/stat (tick resolution); None where unreadable."""
    try:
        with open("/proc/stat") as f:
            v = [int(t) for t in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(v[:8]) - v[3] - (v[4] if len(v) > 4 else 0)) / os.sysconf("SC_CLK_TCK")


def time_calls(fn, warmup, reps, max_seconds, ncpu, min_sample_s=0.5, other_limit=0.05):
    """Times fn on a machine that others may share.

    fn is called warmup times untimed. Then samples are taken: a sample is k
    back-to-back calls (k chosen so that a sample lasts about min_sample_s),
    its time per call is wall / k. During each sample the CPU time used by
    OTHER processes is measured (/proc/stat busy time minus this process's
    own CPU time, all its threads, and time stolen by the hypervisor); a
    sample during which others used more than other_limit of the machine (at
    least 3 ticks, /proc/stat's resolution) is dropped and counted. Sampling goes on until reps clean
    samples, or max_seconds with at least 3 clean ones; after 4 × max_seconds
    it stops regardless (if no sample was clean, the disturbed ones are kept
    and 'clean' is False). Returns {"times": [per-call seconds of the kept
    samples], "dropped": n, "calls_per_sample": k, "clean": bool}."""
    t_last = None
    for _ in range(warmup):
        t0 = time.perf_counter()
        fn()
        t_last = time.perf_counter() - t0
    if t_last is None:                       # no warmup: one call to size the samples
        t0 = time.perf_counter()
        fn()
        t_last = time.perf_counter() - t0
    k = max(1, int(min_sample_s / max(t_last, 1e-6) + 0.999))
    tick = 1.0 / os.sysconf("SC_CLK_TCK")
    times, disturbed, dropped = [], [], 0
    start = time.perf_counter()
    while len(times) < reps:
        b0, c0 = _busy_ticks_s(), time.process_time()
        t0 = time.perf_counter()
        for _ in range(k):
            fn()
        wall = time.perf_counter() - t0
        b1, c1 = _busy_ticks_s(), time.process_time()
        other = None if b0 is None else (b1 - b0) - (c1 - c0)
        if other is None or other <= max(other_limit * wall * ncpu, 3 * tick):
            times.append(wall / k)
        else:
            disturbed.append(wall / k)
            dropped += 1
        elapsed = time.perf_counter() - start
        if (len(times) >= 3 and elapsed > max_seconds) or elapsed > 4 * max_seconds:
            break
    clean = bool(times)
    if not times:
        times = disturbed
    return {"times": times, "dropped": dropped, "calls_per_sample": k, "clean": clean}


def summarize(t):
    times = t["times"]
    return dict(t, median_s=statistics.median(times), min_s=min(times), max_s=max(times),
                reps=len(times))


def pool(a, b):
    """Two rounds' summaries of the same configuration as one (a round with
    no clean sample is left out when the other has clean ones)."""
    if a["clean"] != b["clean"]:
        keep, left = (a, b) if a["clean"] else (b, a)
        return summarize(dict(keep, dropped=keep["dropped"] + left["dropped"] + left["reps"]))
    return summarize({"times": a["times"] + b["times"], "dropped": a["dropped"] + b["dropped"],
                      "calls_per_sample": max(a["calls_per_sample"], b["calls_per_sample"]),
                      "clean": a["clean"] and b["clean"]})


# --------------------------------------------------------------------------
# Machine
# --------------------------------------------------------------------------

def _cpuinfo():
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def _lscpu_max_mhz():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    m = re.search(r"^CPU max MHz:\s*([\d.]+)", out, re.M)
    return float(m.group(1)) if m else None


def _lscpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    m = re.search(r"^Model name:\s*(.+)$", out, re.M)
    return m.group(1).strip() if m else None


# vector ISA features worth naming in a benchmark's header, widest first
ISA_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
             "amx_tile", "amx_bf16", "amx_int8", "avx2", "fma", "avx_vnni", "asimd", "sve")


def machine_info():
    info = _cpuinfo()
    model = re.search(r"^model name\s*:\s*(.*)$", info, re.M)
    flags = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", info, re.M)
    mhz = re.findall(r"^cpu MHz\s*:\s*([\d.]+)", info, re.M)
    flags = set(flags.group(1).split()) if flags else set()
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": _lscpu_model() or (model.group(1).strip() if model else "unknown"),
        "flags": flags,
        "isa": [f for f in ISA_FLAGS if f in flags],
        "cpuinfo_mhz": max(float(v) for v in mhz) if mhz else None,
        "lscpu_max_mhz": _lscpu_max_mhz(),
    }


def cpu_busy(seconds=1.0):
    """Fraction of all CPUs busy (non-idle) over `seconds`, from /proc/stat;
    None where /proc/stat cannot be read. Used to see whether something else
    runs on the machine while it is measured."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(t) for t in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)          # idle + iowait
        return sum(v[:8]), idle
    try:
        t0, i0 = sample()
        time.sleep(seconds)
        t1, i1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


class OtherLoad:
    """CPU time used by processes other than this one and its children
    between start() and stop(): /proc/stat's busy time minus our own
    (os.times, children included). Tells whether the timings shared the
    machine with something else."""

    def _busy_s(self):
        with open("/proc/stat") as f:
            v = [int(t) for t in f.readline().split()[1:]]
        hz = os.sysconf("SC_CLK_TCK")
        return (sum(v[:8]) - v[3] - (v[4] if len(v) > 4 else 0)) / hz

    def _ours_s(self):
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def start(self):
        try:
            self.b0, self.o0, self.w0 = self._busy_s(), self._ours_s(), time.time()
        except (OSError, ValueError, IndexError):
            self.b0 = None

    def stop(self, ncpu):
        """(other processes' CPU seconds, wall seconds, fraction of the machine)."""
        if self.b0 is None:
            return None
        other = max(0.0, (self._busy_s() - self.b0) - (self._ours_s() - self.o0))
        wall = time.time() - self.w0
        return other, wall, other / max(1e-9, wall * ncpu)


def fp32_peak(info, threads):
    """(GFLOP/s, assumption text) for `threads` cores."""
    flags = info["flags"]
    if "avx512f" in flags:
        per_cycle, why = 64, "AVX-512 with 2 FMA units: 2 × 16 lanes × 2 (mul+add)"
    elif "avx2" in flags and "fma" in flags:
        per_cycle, why = 32, "AVX2+FMA with 2 FMA units: 2 × 8 lanes × 2 (mul+add)"
    elif "avx" in flags:
        per_cycle, why = 16, "AVX without FMA: 8-lane add + 8-lane mul per cycle"
    else:
        per_cycle, why = 8, "SSE: 4-lane add + 4-lane mul per cycle"
    if info["lscpu_max_mhz"]:
        mhz, src = info["lscpu_max_mhz"], "lscpu 'CPU max MHz'"
    elif info["cpuinfo_mhz"]:
        mhz, src = info["cpuinfo_mhz"], "/proc/cpuinfo 'cpu MHz'"
    else:
        return None, "clock unknown: no peak"
    peak = threads * mhz / 1000.0 * per_cycle
    text = (f"{threads} core{'s' if threads != 1 else ''} × {mhz / 1000:.2f} GHz ({src}) × {per_cycle} FLOPs/cycle "
            f"({why}) = {peak:.1f} GFLOP/s FP32")
    return peak, text


def omp_link_flags(cc):
    """clang's -fopenmp links libomp, which Debian keeps under
    /usr/lib/llvm-N/lib (as the Makefile's OMP_LIBDIR); gcc needs nothing."""
    if "clang" not in os.path.basename(cc):
        return []
    import glob
    libs = sorted(glob.glob("/usr/lib/x86_64-linux-gnu/libomp.so") + glob.glob("/usr/lib/llvm-*/lib/libomp.so"))
    if not libs:
        return []
    d = os.path.dirname(libs[0])
    return [f"-L{d}", f"-Wl,-rpath,{d}"]


def measured_fma_peak(cc, work, threads, seconds=0.5):
    """Builds and runs bench/fma_peak.c (independent FMAs on every thread,
    widest vectors of -march=native, best of 5 runs of about `seconds`).
    Returns (GFLOP/s, isa) or None if it cannot be built or run."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fma_peak.c")
    exe = os.path.join(work, "fma_peak")
    try:
        if not os.path.exists(exe):
            subprocess.run([cc, "-O3", "-march=native", "-fopenmp", src, "-o", exe] + omp_link_flags(cc),
                           check=True, capture_output=True)
        out = subprocess.run([exe, str(seconds)], check=True, capture_output=True, text=True,
                             env=dict(os.environ, OMP_NUM_THREADS=str(threads))).stdout.split()
        return float(out[0]), out[3]
    except (OSError, subprocess.CalledProcessError, IndexError, ValueError):
        return None
