"""Ensemble rows for the long-tailed MNIST table (bench/long_tail.py's setting: mnist-classic,
5 epochs, test split of /tmp/mnist_lt).

Two kinds of row, each mean ± std over 3 groups:

    # ensembles of finished runs: pairs of seeds (0+3, 1+4, 2+5) of one strategy, e.g. the runs
    # bench/long_tail.py --seeds 0 1 2 3 4 5 wrote into one folder
    python bench/ensemble_bench.py pairs --runs-dir RUNS --strategy oversample+minority-augment [--weighted]

    # balanced bagging trained here (k members, each on a capped under-sample), seeds 0 1 2
    python bench/ensemble_bench.py bagging /tmp/mnist_lt --inner oversample+minority-augment -k 4 --fraction 0.5

Compute is reported as training seconds (sum of the epochs' seconds in metrics.json, members
summed) and as a ratio to the mean single run of ``--baseline-dir``'s strategy runs when given.
Writes bench/out/ensemble_bench.json (appends rows).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

from balancelab.engine.core.events import Failed, Finished
from balancelab.engine.results.ensemble import build_ensemble
from balancelab.engine.train.config import TrainConfig
from balancelab.engine.train.run import train
from balancelab.engine.train.run_folder import METRICS, read_ensemble, read_metrics

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")


def train_seconds(run_dir: str) -> float:
    """Training seconds of a run (its epochs), or of an ensemble (its members' epochs summed)."""
    members = read_ensemble(run_dir)
    if members:
        return sum(train_seconds(m) for m, _ in members)
    return float(sum(h.get("seconds", 0.0) for h in read_metrics(run_dir).get("history", [])))


def scores(run_dir: str) -> dict:
    m = read_metrics(run_dir)
    return {"balanced_accuracy": m["balanced_accuracy"], "macro_f1": m["macro_f1"],
            "rarest_recall": m["per_class"][-1]["recall"], "train_seconds": train_seconds(run_dir), "run_dir": run_dir}


def finish(events) -> Finished:
    last = None
    for ev in events:
        if isinstance(ev, Failed):
            raise SystemExit(f"failed: {ev.message}")
        last = ev
    assert isinstance(last, Finished)
    return last


def fmt(values) -> str:
    v = np.asarray(values, dtype=np.float64) * 100
    return f"{v.mean():.2f} ± {v.std():.2f}"


def report(label: str, rows: list[dict], baseline: list[dict]) -> None:
    ratio = ""
    if baseline:
        single = np.mean([b["train_seconds"] for b in baseline])
        ratio = f" | {np.mean([r['train_seconds'] for r in rows]) / single:.2f}x"
    print(f"| {label} | {fmt([r['balanced_accuracy'] for r in rows])} | {fmt([r['macro_f1'] for r in rows])} | "
          f"{fmt([r['rarest_recall'] for r in rows])} | {np.mean([r['train_seconds'] for r in rows]):.0f} s{ratio} |")
    if baseline:
        print(f"| (baseline: mean of {len(baseline)} single runs) | {fmt([b['balanced_accuracy'] for b in baseline])} | "
              f"{fmt([b['macro_f1'] for b in baseline])} | {fmt([b['rarest_recall'] for b in baseline])} | "
              f"{np.mean([b['train_seconds'] for b in baseline]):.0f} s | 1.00x |")
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "ensemble_bench.json")
    old = json.load(open(path, encoding="utf-8")) if os.path.exists(path) else []
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(old + [{"label": label, "rows": rows, "baseline": baseline, "when": time.time()}], fh, indent=2)


def runs_of(runs_dir: str, strategy: str, seeds) -> list[str]:
    return [os.path.join(runs_dir, f"{strategy}-{s}") for s in seeds]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="kind", required=True)
    p = sub.add_parser("pairs")
    p.add_argument("--runs-dir", required=True, help="folder with STRATEGY-SEED run folders")
    p.add_argument("--strategy", default="oversample+minority-augment")
    p.add_argument("--pairs", default="0+3,1+4,2+5", help="seed groups, e.g. 0+3,1+4,2+5 or 0+1+2")
    p.add_argument("--weighted", action="store_true")
    p.add_argument("--out", default=None, help="where the ensembles go (default: a new folder under bench/out)")
    b = sub.add_parser("bagging")
    b.add_argument("root")
    b.add_argument("--inner", default="oversample+minority-augment", help="each member's own strategy")
    b.add_argument("-k", type=int, default=2)
    b.add_argument("--fraction", type=float, default=0.0)
    b.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    b.add_argument("--epochs", type=int, default=5)
    b.add_argument("--out", default=None)
    for q in (p, b):
        q.add_argument("--baseline-dir", default=None, help="folder with single STRATEGY-SEED runs for the time ratio")
        q.add_argument("--baseline-strategy", default="oversample+minority-augment")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    out = args.out or tempfile.mkdtemp(prefix=f"ens-{args.kind}-", dir=OUT)
    baseline = []
    if args.baseline_dir:
        names = sorted(n for n in os.listdir(args.baseline_dir) if n.startswith(args.baseline_strategy + "-")
                       and n[len(args.baseline_strategy) + 1:].isdigit())
        baseline = [scores(os.path.join(args.baseline_dir, n)) for n in names
                    if os.path.exists(os.path.join(args.baseline_dir, n, METRICS))]
    rows = []
    if args.kind == "pairs":
        for group in args.pairs.split(","):
            seeds = [int(s) for s in group.split("+")]
            target = os.path.join(out, f"ensemble-{group}{'-weighted' if args.weighted else ''}")
            finish(build_ensemble(runs_of(args.runs_dir, args.strategy, seeds), target, args.weighted))
            rows.append(scores(target))
            print(f"{group}: bal_acc {rows[-1]['balanced_accuracy']:.4f} rare_recall {rows[-1]['rarest_recall']:.4f}",
                  file=sys.stderr)
        label = f"ensemble of {len(seeds)} x {args.strategy}{' (weighted)' if args.weighted else ''}"
    else:
        for seed in args.seeds:
            target = os.path.join(out, f"bagging-{seed}")
            cfg = TrainConfig(data=args.root, out=target, model="mnist-classic", epochs=args.epochs, seed=seed,
                              device="cpu", strategy=f"{args.inner}+balanced-bagging", bagging_members=args.k,
                              bagging_fraction=args.fraction)
            t = time.perf_counter()
            finish(train(cfg))
            rows.append({**scores(target), "wall_seconds": time.perf_counter() - t})
            print(f"seed {seed}: bal_acc {rows[-1]['balanced_accuracy']:.4f} rare_recall {rows[-1]['rarest_recall']:.4f} "
                  f"({rows[-1]['wall_seconds']:.0f} s wall)", file=sys.stderr, flush=True)
        label = f"{args.inner}+balanced-bagging, k={args.k}, fraction {args.fraction or 1 / args.k:g}"
    print("| row | balanced accuracy % | macro-F1 % | rarest recall % | training time | vs one run |\n|---|---|---|---|---|---|")
    report(label, rows, baseline)


if __name__ == "__main__":
    main()
