"""One framework's timings, in a process of its own (started by bench/bench.py).

    python3 bench/bench_worker.py CONFIG.json

Each framework runs in a fresh process so that the OpenMP runtimes and thread
pools of the others (gcc's libgomp for ours, PyTorch's bundled libgomp,
onnxruntime's own pool) are not even loaded while it is timed. The thread
count comes from the config (OMP_NUM_THREADS is set by the parent for every
worker). Prints one JSON object on the last line of stdout.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_lib as bl  # noqa: E402
import numpy as np  # noqa: E402

TRAIN_BATCHES = 4      # distinct training batches, cycled


def run_ours(cfg, net):
    max_batch = max(cfg["batches"] + ([cfg["train_batch"]] if cfg["train"] else []))
    m = bl.CModel(cfg["so"], cfg["c_name"], max_batch)
    m.load(cfg["weights"])
    out = {"infer": {}, "train": None}
    for b in cfg["batches"]:
        x = bl.make_images(b, net.input, cfg["seed"] + b)
        probs = np.empty((b, net.classes), dtype=np.float32)
        times = bl.time_calls(lambda: m.infer_into(x, probs), cfg["warmup"], cfg["reps"],
                              cfg["max_seconds"], cfg["ncpu"])
        out["infer"][str(b)] = bl.summarize(times)
    if cfg["train"]:
        b = cfg["train_batch"]
        m.set_optimizer(cfg["momentum"], cfg["weight_decay"])
        xs = [bl.make_images(b, net.input, cfg["seed"] + 1000 + i) for i in range(TRAIN_BATCHES)]
        ys = [bl.make_labels(b, net.classes, cfg["seed"] + 2000 + i) for i in range(TRAIN_BATCHES)]
        state = {"i": 0, "losses": []}

        def step():
            i = state["i"] % TRAIN_BATCHES
            state["losses"].append(m.train_step(xs[i], ys[i], cfg["lr"]))
            state["i"] += 1

        times = bl.time_calls(step, cfg["warmup"], cfg["reps"], cfg["max_seconds"], cfg["ncpu"])
        out["train"] = dict(bl.summarize(times), first_loss=state["losses"][0],
                            last_loss=state["losses"][-1], steps=state["i"])
    m.close()
    return out


def torch_setup(cfg, net):
    import torch
    from safetensors.torch import load_file
    torch.set_num_threads(cfg["threads"])
    model = net.torch_model()
    model.load_state_dict(load_file(cfg["weights"]), strict=True)
    return torch, model


def run_torch(cfg, net):
    torch, model = torch_setup(cfg, net)
    import torch.nn.functional as F
    out = {"infer": {}, "train": None, "torch_threads": torch.get_num_threads()}
    probs_model = bl.softmax_model(model).eval()
    for b in cfg["batches"]:
        x = torch.from_numpy(bl.make_images(b, net.input, cfg["seed"] + b))

        def infer():
            with torch.inference_mode():
                probs_model(x)

        out["infer"][str(b)] = bl.summarize(
            bl.time_calls(infer, cfg["warmup"], cfg["reps"], cfg["max_seconds"], cfg["ncpu"]))
    if cfg["train"]:
        b = cfg["train_batch"]
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"],
                              weight_decay=cfg["weight_decay"])
        xs = [torch.from_numpy(bl.make_images(b, net.input, cfg["seed"] + 1000 + i))
              for i in range(TRAIN_BATCHES)]
        ys = [torch.from_numpy(bl.make_labels(b, net.classes, cfg["seed"] + 2000 + i)).long()
              for i in range(TRAIN_BATCHES)]
        state = {"i": 0, "losses": []}

        def step():
            i = state["i"] % TRAIN_BATCHES
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xs[i]), ys[i])
            loss.backward()
            opt.step()
            state["losses"].append(loss.item())
            state["i"] += 1

        times = bl.time_calls(step, cfg["warmup"], cfg["reps"], cfg["max_seconds"], cfg["ncpu"])
        out["train"] = dict(bl.summarize(times), first_loss=state["losses"][0],
                            last_loss=state["losses"][-1], steps=state["i"])
    return out


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
    out = {"infer": {}, "train": None, "providers": sess.get_providers()}
    for b in cfg["batches"]:
        x = bl.make_images(b, net.input, cfg["seed"] + b)
        out["infer"][str(b)] = bl.summarize(
            bl.time_calls(lambda: sess.run(None, {name: x}), cfg["warmup"], cfg["reps"],
                          cfg["max_seconds"], cfg["ncpu"]))
    return out


def main():
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    net = bl.NETS[cfg["net"]]
    run = {"ours": run_ours, "pytorch": run_torch, "onnxruntime": run_ort}[cfg["framework"]]
    result = run(cfg, net)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
