"""Full MNIST as a PNG ImageFolder: the classic 2-conv net, 3 epochs on the CPU, test accuracy.

    python bench/mnist_png.py --out /tmp/mnist_png
    python bench/mnist_accuracy.py /tmp/mnist_png [--epochs 3] [--out bench/out/mnist_classic]

Runs exactly what a user runs: `python main.py train ...`, then reads metrics.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(HERE, "out", "mnist_classic"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cmd = [sys.executable, os.path.join(HERE, "..", "main.py"), "train", "--data", args.root, "--model", "mnist-classic",
           "--epochs", str(args.epochs), "--out", args.out, "--seed", str(args.seed), "--device", "cpu"]
    print(" ".join(cmd))
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t
    with open(os.path.join(args.out, "metrics.json"), encoding="utf-8") as fh:
        m = json.load(fh)
    print(f"\nevaluated on {m['evaluated_on']} ({m['n_evaluated']} images): accuracy {m['accuracy']:.4f}, "
          f"balanced accuracy {m['balanced_accuracy']:.4f}; wall time {wall:.0f} s; epochs "
          + ", ".join(f"{h['seconds']:.0f}s@{h['images_per_second']:.0f}img/s" for h in m["history"]))


if __name__ == "__main__":
    main()
