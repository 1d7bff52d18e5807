"""Training throughput, one epoch, same model (2 conv 5x5 16/32 ch + one linear), batch 64, Adam:

  (a) plain torchvision ImageFolder + DataLoader loop over the PNG files
  (b) the BalanceLab engine (decoded-image cache; first with a cold cache, then warm)
  (c) the same model on random in-memory tensors (pure compute)

    python bench/mnist_png.py --out /tmp/mnist_png
    python bench/train_speed.py /tmp/mnist_png [--loader-workers 0 2]
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time


import torch
from torch import nn

from balancelab.engine.train.config import TrainConfig
from balancelab.engine.core.events import Failed, Finished
from balancelab.engine.train.models import Tiny2Conv
from balancelab.engine.train.run import train


def step_loop(model, batches, n_images: int) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    t = time.perf_counter()
    for x, y in batches:
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return n_images / (time.perf_counter() - t)


def bench_imagefolder(root: str, workers: int) -> float:
    from torchvision import datasets, transforms

    ds = datasets.ImageFolder(os.path.join(root, "train"), transform=transforms.Compose(
        [transforms.Grayscale(), transforms.ToTensor()]))
    loader = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True, num_workers=workers)
    torch.manual_seed(0)
    return step_loop(Tiny2Conv(10, 1, 28), loader, len(ds))


def bench_compute(n: int) -> float:
    torch.manual_seed(0)
    x = torch.rand(n, 1, 28, 28)
    y = torch.randint(0, 10, (n,))
    perm = torch.randperm(n)
    batches = ((x[perm[i:i + 64]], y[perm[i:i + 64]]) for i in range(0, n, 64))
    return step_loop(Tiny2Conv(10, 1, 28), batches, n)


def bench_engine(root: str, home: str) -> tuple[float, float, float]:
    """(epoch img/s with cold cache, epoch img/s with warm cache, wall seconds of the cold run)."""
    os.environ["BALANCELAB_HOME"] = home
    rates, walls = [], []
    for _ in range(2):
        out = tempfile.mkdtemp(prefix="bl-bench-run-")
        cfg = TrainConfig(data=root, out=out, model="tiny-2conv", epochs=1, batch_size=64, lr=1e-3,
                          optimizer="adam", schedule="none", augment="none", strategy="none", val_fraction=0.1)
        t = time.perf_counter()
        for ev in train(cfg):
            if isinstance(ev, Failed):
                raise SystemExit(ev.message)
            if isinstance(ev, Finished):
                rates.append(ev.result.metrics["history"][0]["images_per_second"])
        walls.append(time.perf_counter() - t)
        shutil.rmtree(out)
    return rates[0], rates[1], walls[0], walls[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root", help="MNIST PNG ImageFolder from bench/mnist_png.py")
    ap.add_argument("--loader-workers", type=int, nargs="+", default=[0, 2])
    args = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}")
    home = tempfile.mkdtemp(prefix="bl-bench-home-")
    try:
        results = {}
        for w in args.loader_workers:
            results[f"a_imagefolder_w{w}"] = bench_imagefolder(args.root, w)
            print(f"(a) ImageFolder + DataLoader(num_workers={w}): {results[f'a_imagefolder_w{w}']:.0f} img/s")
        cold, warm, wall_cold, wall_warm = bench_engine(args.root, home)
        print(f"(b) BalanceLab engine epoch: {cold:.0f} img/s (first run), {warm:.0f} img/s (second run)")
        print(f"    whole run incl. scan + decode + val + test eval: {wall_cold:.1f} s first (cold cache), {wall_warm:.1f} s second (warm cache)")
        comp = bench_compute(54000)
        print(f"(c) compute only, random tensors: {comp:.0f} img/s")
        best_a = max(v for k, v in results.items())
        print(f"(b)/(a best) = {warm / best_a:.2f}x (target >= 1.8)   (b)/(c) = {warm / comp:.2f}x (target >= 0.9)")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
