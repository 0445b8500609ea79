"""PyTorch DistributedDataParallel (gloo, CPU) beside bench/dp_train.c: the
same network (the fixtures' CIFAR ResNet, option A), global batch split over
`--ranks` processes, SGD lr 0.01 momentum 0.9 weight decay 1e-4, random
inputs; 3 untimed steps, then steps for about `--seconds`. Prints one line in
dp_train.c's format (median and fastest step, images/s at the median).

    .venv/bin/python bench/ddp_train.py --ranks 2 --threads 1 --batch 128 [--sync-bn]

--sync-bn converts the batch norms to torch.nn.SyncBatchNorm (what our hook
does); torch 2.15 refuses it on CPU ("SyncBatchNorm layers only work with GPU
modules"), which the line then says. Without it each process normalises with
its own shard's statistics (DDP's default), a cheaper step than ours.
"""
import argparse
import os
import socket
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures"))
from make_fixtures import CifarResNet  # noqa: E402


def worker(rank, a, port, queue):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(a.threads)
    dist.init_process_group("gloo", rank=rank, world_size=a.ranks)
    torch.manual_seed(1)
    model = CifarResNet(a.depth_n, "A")
    note = ""
    if a.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(model)
    except (ValueError, RuntimeError) as e:  # SyncBatchNorm: "only work with GPU modules" (torch 2.15)
        if rank == 0:
            queue.put("ranks %d threads %d batch %d failed: %s" % (a.ranks, a.threads, a.batch, str(e).splitlines()[0]))
        dist.destroy_process_group()
        return
    n = a.batch // a.ranks
    g = torch.Generator().manual_seed(rank)
    x = torch.rand(n, 3, 32, 32, generator=g) * 2 - 1
    y = (torch.arange(n) + rank * n) % 10
    opt = torch.optim.SGD(ddp.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(ddp(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    try:
        for _ in range(3):
            loss = step()
    except (ValueError, RuntimeError) as e:
        if rank == 0:
            queue.put("ranks %d threads %d batch %d failed: %s" % (a.ranks, a.threads, a.batch, str(e).splitlines()[0]))
        dist.destroy_process_group()
        return
    times, start, more = [], time.perf_counter(), True
    while more:
        dist.barrier()
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
        flag = torch.tensor([1 if time.perf_counter() - start < a.seconds else 0])
        dist.broadcast(flag, 0)
        more = bool(flag.item())
    times.sort()
    if rank == 0:
        med = times[len(times) // 2]
        queue.put("ranks %d threads %d batch %d steps %d median_ms %.2f fastest_ms %.2f images_per_s %.1f loss %.6f%s"
                  % (a.ranks, a.threads, a.batch, len(times), med * 1e3, times[0] * 1e3, a.batch / med, loss, note))
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--depth-n", type=int, default=3, help="blocks per stage: 3 = ResNet-20")
    p.add_argument("--sync-bn", action="store_true")
    a = p.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(worker, args=(a, port, queue), nprocs=a.ranks, join=True)
    print(queue.get())


if __name__ == "__main__":
    main()
