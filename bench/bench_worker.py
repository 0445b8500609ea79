"""One framework's timings for one network at one thread count, in a process
of its own (started by bench/bench.py).

    python bench/bench_worker.py CONFIG.json

Each framework runs in a fresh process so that the OpenMP runtimes and thread
pools of the others (gcc's libgomp for ours, PyTorch's bundled libgomp,
onnxruntime's and OpenVINO's own pools) are not even loaded while it is
timed. The thread count comes from the config (OMP_NUM_THREADS is set by the
parent for every worker). Every configuration (one inference batch size, the
training step) is timed on its own: one that fails (torch.compile on a
machine without a working C++ toolchain, say) is reported as
{"error": "..."} and the others still run. For each inference batch the
probabilities of the first call are saved to PROBS_PREFIX-B.npy so that the
parent can compare every framework with ours. Prints one JSON object on the
last line of stdout.
"""

import json
import os
import sys
import time
import traceback
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_lib as bl  # noqa: E402
import numpy as np  # noqa: E402

TRAIN_BATCHES = 4      # distinct training batches, cycled


def error_text(e):
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    text = f"{type(e).__name__}: {first}" if first else type(e).__name__
    return text[:300]


def guarded(fn):
    """Runs one configuration; an exception becomes {"error": ...} (the
    traceback goes to stderr, which the parent shows)."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 -- any failure is a result to report
        traceback.print_exc()
        return {"error": error_text(e)}


def timed(cfg, fn, prep_s=None, note=None):
    r = bl.summarize(bl.time_calls(fn, cfg["warmup"], cfg["reps"], cfg["max_seconds"],
                                   cfg["ncpu"], min_sample_s=cfg["min_time"]))
    if prep_s is not None:
        r["prep_s"] = prep_s
    if note:
        r["note"] = note
    return r


def save_probs(cfg, b, probs):
    np.save(f"{cfg['probs_prefix']}-{b}.npy", np.asarray(probs, dtype=np.float32))


def inputs(cfg, net, b):
    return bl.make_images(b, net.input, cfg["seed"] + b)


def train_data(cfg, net):
    b = cfg["train_batch"]
    xs = [bl.make_images(b, net.input, cfg["seed"] + 1000 + i) for i in range(TRAIN_BATCHES)]
    ys = [bl.make_labels(b, net.classes, cfg["seed"] + 2000 + i) for i in range(TRAIN_BATCHES)]
    return xs, ys


def train_result(cfg, step, state, prep_s=None, note=None):
    r = timed(cfg, step, prep_s, note)
    return dict(r, first_loss=state["losses"][0], last_loss=state["losses"][-1],
                steps=state["i"])


# --------------------------------------------------------------------------
# ours: the generated C through ctypes
# --------------------------------------------------------------------------

def run_ours(cfg, net):
    max_batch = max(cfg["batches"] + ([cfg["train_batch"]] if cfg["train"] else []))
    m = bl.CModel(cfg["so"], cfg["c_name"], max_batch)
    m.load(cfg["weights"])
    out = {"infer": {}, "train": None}
    for b in cfg["batches"]:
        def one(b=b):
            x = inputs(cfg, net, b)
            probs = np.empty((b, net.classes), dtype=np.float32)
            m.infer_into(x, probs)
            save_probs(cfg, b, probs)
            return timed(cfg, lambda: m.infer_into(x, probs))
        out["infer"][str(b)] = guarded(one)
    if cfg["train"]:
        def train():
            m.set_optimizer(cfg["momentum"], cfg["weight_decay"])
            xs, ys = train_data(cfg, net)
            state = {"i": 0, "losses": []}

            def step():
                i = state["i"] % TRAIN_BATCHES
                state["losses"].append(m.train_step(xs[i], ys[i], cfg["lr"]))
                state["i"] += 1
            return train_result(cfg, step, state)
        out["train"] = guarded(train)
    m.close()
    return out


# --------------------------------------------------------------------------
# onnxruntime and OpenVINO, from the same ONNX file
# --------------------------------------------------------------------------

def run_ort(cfg, net):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = cfg["threads"]
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(cfg["onnx"], sess_options=so,
                                providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    out = {"infer": {}, "train": None, "providers": sess.get_providers(),
           "version": ort.__version__}
    for b in cfg["batches"]:
        def one(b=b):
            x = inputs(cfg, net, b)
            save_probs(cfg, b, sess.run(None, {name: x})[0])
            return timed(cfg, lambda: sess.run(None, {name: x}))
        out["infer"][str(b)] = guarded(one)
    return out


def run_openvino(cfg, net):
    """OpenVINO's CPU plugin, f32 (INFERENCE_PRECISION_HINT: on CPUs with
    AMX or AVX512-BF16 its default is bf16), the ONNX model reshaped to a
    static batch and compiled once per batch size, one stream with
    `threads` inference threads, one synchronous infer request."""
    import openvino as ov
    core = ov.Core()
    out = {"infer": {}, "train": None, "version": ov.get_version()}
    for b in cfg["batches"]:
        def one(b=b):
            t0 = time.perf_counter()
            model = core.read_model(cfg["onnx"])
            model.reshape([b] + list(net.input))
            compiled = core.compile_model(model, "CPU", {
                "INFERENCE_PRECISION_HINT": "f32",
                "INFERENCE_NUM_THREADS": cfg["threads"],
                "NUM_STREAMS": 1,
                "PERFORMANCE_HINT": "LATENCY",
            })
            prep = time.perf_counter() - t0
            def prop(k):
                v = compiled.get_property(k)
                return v.get_type_name() if hasattr(v, "get_type_name") else str(v)
            got = {k: prop(k) for k in
                   ("INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS", "NUM_STREAMS")}
            if got["INFERENCE_PRECISION_HINT"] != "f32":
                raise RuntimeError(f"OpenVINO compiled with precision "
                                   f"{got['INFERENCE_PRECISION_HINT']}, not f32")
            req = compiled.create_infer_request()
            x = inputs(cfg, net, b)
            port = compiled.outputs[0]
            save_probs(cfg, b, req.infer({0: x}, share_inputs=True)[port])
            return timed(cfg, lambda: req.infer({0: x}, share_inputs=True), prep,
                         note=f"{got['INFERENCE_PRECISION_HINT']}, "
                              f"INFERENCE_NUM_THREADS {got['INFERENCE_NUM_THREADS']}, "
                              f"NUM_STREAMS {got['NUM_STREAMS']}")
        out["infer"][str(b)] = guarded(one)
    return out


# --------------------------------------------------------------------------
# PyTorch: eager, frozen TorchScript, torch.compile
# --------------------------------------------------------------------------

def torch_setup(cfg, net):
    import torch
    from safetensors.torch import load_file
    torch.set_num_threads(cfg["threads"])
    model = net.torch_model()
    model.load_state_dict(load_file(cfg["weights"]), strict=True)
    return torch, model


def torch_train(cfg, net, torch, model, forward, prep_note=None):
    """One SGD step per call: model.train() + forward + cross-entropy +
    backward + optimizer.step(), batches cycled. `forward` is the model or
    its torch.compile'd version; its first call (compilation) is timed as
    prep."""
    import torch.nn.functional as F
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"],
                          weight_decay=cfg["weight_decay"])
    xs, ys = train_data(cfg, net)
    xs = [torch.from_numpy(x) for x in xs]
    ys = [torch.from_numpy(y).long() for y in ys]
    state = {"i": 0, "losses": []}

    def step():
        i = state["i"] % TRAIN_BATCHES
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(forward(xs[i]), ys[i])
        loss.backward()
        opt.step()
        state["losses"].append(loss.item())
        state["i"] += 1

    prep = None
    if prep_note:
        t0 = time.perf_counter()
        step()                       # the compiling call; counts as a warmup call
        prep = time.perf_counter() - t0
    return train_result(cfg, step, state, prep)


def run_torch(cfg, net):
    torch, model = torch_setup(cfg, net)
    out = {"infer": {}, "train": None, "torch_threads": torch.get_num_threads(),
           "version": torch.__version__}
    probs_model = bl.softmax_model(model).eval()
    for b in cfg["batches"]:
        def one(b=b):
            x = torch.from_numpy(inputs(cfg, net, b))

            def infer():
                with torch.inference_mode():
                    return probs_model(x)
            save_probs(cfg, b, infer().numpy())
            return timed(cfg, infer)
        out["infer"][str(b)] = guarded(one)
    if cfg["train"]:
        out["train"] = guarded(lambda: torch_train(cfg, net, torch, model, model))
    return out


def run_torchscript(cfg, net):
    """torch.jit.trace at each batch size (the option-A shortcut's shapes are
    traced as constants), then torch.jit.freeze (folds batch norm and the
    parameters into the graph); called under torch.no_grad()."""
    torch, model = torch_setup(cfg, net)
    out = {"infer": {}, "train": None, "version": torch.__version__}
    probs_model = bl.softmax_model(model).eval()
    for b in cfg["batches"]:
        def one(b=b):
            x = torch.from_numpy(inputs(cfg, net, b))
            t0 = time.perf_counter()
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")      # tracer and deprecation warnings
                ts = torch.jit.freeze(torch.jit.trace(probs_model, x))
            prep = time.perf_counter() - t0

            def infer():
                with torch.no_grad():
                    return ts(x)
            save_probs(cfg, b, infer().numpy())
            return timed(cfg, infer, prep)
        out["infer"][str(b)] = guarded(one)
    return out


def run_compile(cfg, net):
    """torch.compile (inductor, default mode), static shapes (dynamic=False:
    one compilation per batch size); inference with inductor's freezing
    (weights folded and prepacked) under torch.no_grad(). The first call
    compiles; its time is reported as prep, not timed."""
    torch, model = torch_setup(cfg, net)
    import torch._inductor.config as inductor_config
    out = {"infer": {}, "train": None, "version": torch.__version__}
    probs_model = bl.softmax_model(model).eval()
    inductor_config.freezing = True
    compiled = torch.compile(probs_model, dynamic=False)
    for b in cfg["batches"]:
        def one(b=b):
            x = torch.from_numpy(inputs(cfg, net, b))

            def infer():
                with torch.no_grad():
                    return compiled(x)
            t0 = time.perf_counter()
            probs = infer().numpy()
            prep = time.perf_counter() - t0
            save_probs(cfg, b, probs)
            return timed(cfg, infer, prep)
        out["infer"][str(b)] = guarded(one)
    if cfg["train"]:
        def train():
            inductor_config.freezing = False
            # fresh weights: the inference model above was frozen into its graph
            _, tmodel = torch_setup(cfg, net)
            ctrain = torch.compile(tmodel, dynamic=False)
            return torch_train(cfg, net, torch, tmodel, ctrain, prep_note="compile")
        out["train"] = guarded(train)
    return out


RUNNERS = {"ours": run_ours, "onnxruntime": run_ort, "openvino": run_openvino,
           "pytorch": run_torch, "torchscript": run_torchscript, "torch.compile": run_compile}


def main():
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    net = bl.NETS[cfg["net"]]
    try:
        result = RUNNERS[cfg["framework"]](cfg, net)
    except Exception as e:  # noqa: BLE001 -- e.g. the framework is not installed
        traceback.print_exc()
        result = {"error": error_text(e)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
