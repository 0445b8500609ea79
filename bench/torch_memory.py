"""PyTorch's peak memory on CPU for the networks of BENCHMARKS.md's memory
section, beside the generated C's arena and whole-model bytes.

    /path/to/venv/bin/python bench/torch_memory.py [NET MODE BATCH]...

Each case runs in a fresh process (torch.set_num_threads(2); glibc told to
return every block of 64 KiB or more to the kernel on free, so that RSS
follows live memory):
it builds the network (bench_lib.Net.torch_model: the same layers as
resnet-compile's), makes the input, runs one step (inference under no_grad
in eval mode, or one SGD step with momentum in train mode, which also makes
the gradients and momentum buffers), then resets the kernel's peak-RSS mark
(/proc/self/clear_refs, "5") and runs a second, identical step. Printed, in
bytes:
  step_peak  VmHWM during the second step minus VmRSS just before it: what
             the step needs beyond what stays (activations, saved tensors,
             workspaces, allocator slack) -- the figure to set beside the arena;
  process    VmHWM over the whole run minus VmRSS right after `import torch`:
             the network's whole footprint (parameters, gradients, momentum,
             activations) -- beside UNAME_MODEL_BYTES_*.
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def measure(net_name, mode, batch):
    import torch
    after_import = status("VmRSS")
    torch.set_num_threads(2)
    sys.path.insert(0, HERE)
    from bench_lib import NETS
    net = NETS[net_name]
    model = net.torch_model()
    x = torch.randn(batch, *net.input)
    labels = torch.randint(0, net.classes, (batch,))
    if mode == "infer":
        model.eval()

        def step():
            with torch.no_grad():
                torch.softmax(model(x), dim=1)
    else:
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step():
            opt.zero_grad(set_to_none=False)
            loss_fn(model(x), labels).backward()
            opt.step()
    step()
    first_peak = status("VmHWM")
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    step()
    second_peak = status("VmHWM")
    step_peak = second_peak - before
    process = max(first_peak, second_peak) - after_import
    print(f"{net_name} {mode} {batch} step_peak {step_peak} process {process}")


def main():
    args = sys.argv[1:]
    if len(args) == 4 and args[0] == "--one":
        measure(args[1], args[2], int(args[3]))
        return
    cases = [args[i:i + 3] for i in range(0, len(args), 3)] or [
        ["resnet20", "infer", "1"], ["resnet20", "infer", "64"], ["resnet20", "train", "128"],
        ["resnet56", "infer", "1"], ["resnet56", "infer", "64"], ["resnet56", "train", "128"],
        ["resnet110", "infer", "1"], ["resnet110", "infer", "64"], ["resnet110", "train", "128"],
        ["resnet50", "infer", "1"], ["resnet50", "infer", "64"], ["resnet50", "train", "128"],
    ]
    for net, mode, batch in cases:
        # glibc returns every allocation of 64 KiB or more to the kernel when it
        # is freed (mmap), so RSS follows what is live, not what the heap kept.
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
        r = subprocess.run([sys.executable, __file__, "--one", net, mode, batch], capture_output=True, text=True, env=env)
        sys.stdout.write(r.stdout if r.returncode == 0 else f"{net} {mode} {batch} failed: {r.stderr[-400:]}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
