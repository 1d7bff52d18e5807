"""Full MNIST as a PNG ImageFolder: the classic 2-conv net, 3 epochs on the CPU, test accuracy
for seeds 0, 1 and 2, with mean ± std.

    python bench/mnist_png.py --out /tmp/mnist_png
    python bench/mnist_accuracy.py /tmp/mnist_png [--epochs 3] [--seeds 0 1 2] [--jobs 1] [--out bench/out/mnist_classic]
        [--batch-size 32] [--label-smoothing 0.1] [-- TRAIN OPTIONS...]

The classic recipe: batch 32 (twice the optimizer steps of TrainConfig's default 64 in the same 3
epochs) and label smoothing 0.1; ``--batch-size 64 --label-smoothing 0`` trains with the plain
defaults instead. Options after ``--`` go to every ``train`` command as they are
(``-- --ema-decay 0.999``).

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


def train_seed(root: str, epochs: int, out: str, seed: int, extra: list[str] = ()) -> dict:
    cmd = [sys.executable, os.path.join(HERE, "..", "main.py"), "train", "--data", root, "--model", "mnist-classic",
           "--epochs", str(epochs), "--out", out, "--seed", str(seed), "--device", "cpu", *extra]
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
    ap.add_argument("--batch-size", type=int, default=32, help="the classic recipe's batch (TrainConfig's default: 64)")
    ap.add_argument("--label-smoothing", type=float, default=0.1, help="the classic recipe's label smoothing (default 0)")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args, extra = ap.parse_args(argv[:cut]), argv[cut + 1:]  # after --: more options for every train command
    extra = ["--batch-size", str(args.batch_size), "--label-smoothing", str(args.label_smoothing), *extra]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {s: pool.submit(train_seed, args.root, args.epochs, os.path.join(args.out, f"seed{s}"), s, extra)
                   for s in args.seeds}
        results = {s: f.result() for s, f in futures.items()}
    print()
    for seed, m in results.items():
        print(f"seed {seed}: evaluated on {m['evaluated_on']} ({m['n_evaluated']} images): accuracy {m['accuracy']:.4f}, "
              f"balanced accuracy {m['balanced_accuracy']:.4f}; wall time {m['wall_seconds']:.0f} s; epochs "
              + ", ".join(f"{h['seconds']:.0f}s@{h['images_per_second']:.0f}img/s" for h in m["history"]))
    acc = [100 * m["accuracy"] for m in results.values()]
    spread = f" ± {statistics.pstdev(acc):.2f}" if len(acc) > 1 else ""
    print(f"\ntest accuracy over seeds {', '.join(map(str, results))} (batch {args.batch_size}, label smoothing "
          f"{args.label_smoothing:g}): {statistics.mean(acc):.2f}{spread} % (min {min(acc):.2f} %)")


if __name__ == "__main__":
    main()
