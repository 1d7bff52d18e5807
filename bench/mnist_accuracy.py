"""Full MNIST as a PNG ImageFolder: the classic 2-conv net, 3 epochs on the CPU, test accuracy
for seeds 0, 1 and 2, with mean ± std.

    python bench/mnist_png.py --out /tmp/mnist_png
    python bench/mnist_accuracy.py /tmp/mnist_png [--epochs 3] [--seeds 0 1 2] [--jobs 1] [--out bench/out/mnist_classic]

Runs exactly what a user runs: `python main.py train ...` per seed (into OUT/seedN), then reads
metrics.json. ``--jobs`` trains that many seeds at once (for machines with cores to spare; the
per-seed wall times then share the CPU).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from balancelab.engine.train.run_folder import read_metrics

HERE = os.path.dirname(os.path.abspath(__file__))


def train_seed(root: str, epochs: int, out: str, seed: int) -> dict:
    cmd = [sys.executable, os.path.join(HERE, "..", "main.py"), "train", "--data", root, "--model", "mnist-classic",
           "--epochs", str(epochs), "--out", out, "--seed", str(seed), "--device", "cpu"]
    print(" ".join(cmd), flush=True)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    m = read_metrics(out)
    m["wall_seconds"] = wall
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(HERE, "out", "mnist_classic"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=1, help="seeds trained at the same time")
    args = ap.parse_args()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {s: pool.submit(train_seed, args.root, args.epochs, os.path.join(args.out, f"seed{s}"), s)
                   for s in args.seeds}
        results = {s: f.result() for s, f in futures.items()}
    print()
    for seed, m in results.items():
        print(f"seed {seed}: evaluated on {m['evaluated_on']} ({m['n_evaluated']} images): accuracy {m['accuracy']:.4f}, "
              f"balanced accuracy {m['balanced_accuracy']:.4f}; wall time {m['wall_seconds']:.0f} s; epochs "
              + ", ".join(f"{h['seconds']:.0f}s@{h['images_per_second']:.0f}img/s" for h in m["history"]))
    acc = [100 * m["accuracy"] for m in results.values()]
    spread = f" ± {statistics.pstdev(acc):.2f}" if len(acc) > 1 else ""
    print(f"\ntest accuracy over seeds {', '.join(map(str, results))}: {statistics.mean(acc):.2f}{spread} % "
          f"(min {min(acc):.2f} %)")


if __name__ == "__main__":
    main()
