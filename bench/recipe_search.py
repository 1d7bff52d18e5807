"""The proposed recipe and the budgeted recipe search on long-tailed MNIST, against the README table.

    python bench/mnist_png.py --out /tmp/mnist_lt --long-tail 100 --mnist /work/shared/data/mnist
    python bench/recipe_search.py --mnist-lt /tmp/mnist_lt [--seeds 0 1 2] [--budget 3] [--skip-search]
                                  [--search-seeds 0]

Trains the recommended recipe once per seed (``--seeds`` with no value: none) and runs the search
once per search seed (the seed of every candidate's run; the split stays the same) with the given budget,
then prints test balanced accuracy of both next to the README's best fixed strategy
(oversample+minority-augment, 98.46 +- 0.14 %), with wall times. Writes bench/out/recipe_search.json.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

from balancelab.engine.core.events import Failed, Finished
from balancelab.engine.data.scanner import scan_sync
from balancelab.engine.experiments.recipe import MEASURED_MNIST_LT, recommend
from balancelab.engine.experiments.recipe_search import DEFAULT_BUDGET, SearchRound, search
from balancelab.engine.train.run import train
from balancelab.engine.train.run_folder import read_metrics

README_BEST = ("oversample+minority-augment", MEASURED_MNIST_LT["oversample+minority-augment"], 0.14)


def finish(gen):
    for ev in gen:
        if isinstance(ev, Failed):
            raise RuntimeError(ev.message)
        if isinstance(ev, SearchRound) and ev.leaderboard:
            board = ", ".join(f"{c.strategy} {c.score * 100:.2f}" for c in ev.leaderboard if c.score is not None)
            print(f"  round {ev.round + 1}/{ev.rounds} epochs used {ev.epochs_used}/{ev.epochs_budget}: {board}",
                  flush=True)
        if isinstance(ev, Finished):
            return ev.result
    raise RuntimeError("no result")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mnist-lt", required=True, dest="root")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--search-seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--budget", type=float, default=DEFAULT_BUDGET)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-search", action="store_true")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "out"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    runs = tempfile.mkdtemp(prefix="bl-recipe-", dir=args.out)
    recipe = recommend(scan_sync(args.root))
    print(f"recipe: {recipe.model} {recipe.strategy} {recipe.epochs} epochs batch {recipe.batch_size}\n  {recipe.reason}")
    report = {"recipe": recipe.to_dict(), "recipe_runs": [], "readme_best": README_BEST}
    for seed in args.seeds:
        t = time.perf_counter()
        result = finish(train(recipe.config(args.root, os.path.join(runs, f"recipe-{seed}"), seed=seed,
                                            device=args.device)))
        row = {"seed": seed, "balanced_accuracy": result.metrics["balanced_accuracy"],
               "seconds": time.perf_counter() - t}
        report["recipe_runs"].append(row)
        print(f"recipe seed {seed}: test balanced accuracy {row['balanced_accuracy'] * 100:.2f} % ({row['seconds']:.0f} s)",
              flush=True)
    report["search"] = []
    for seed in [] if args.skip_search else args.search_seeds:
        t = time.perf_counter()
        result = finish(search(args.root, args.budget, seed=seed, out=os.path.join(runs, f"search-{seed}"),
                               device=args.device))
        seconds = time.perf_counter() - t
        winner_test = read_metrics(result.winner_run_dir)["balanced_accuracy"]
        report["search"].append({"seed": seed, "winner": result.winner, "test_balanced_accuracy": winner_test,
                                 "seconds": seconds, "epochs_used": result.epochs_used,
                                 "budget_epochs": result.epochs_budget, "skipped": result.skipped,
                                 "leaderboard": [(c.strategy, c.epochs, c.score, c.state) for c in result.leaderboard]})
        print(f"search seed {seed}: winner {result.winner}, test balanced accuracy {winner_test * 100:.2f} % "
              f"({seconds:.0f} s)", flush=True)
    with open(os.path.join(args.out, "recipe_search.json"), "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
    accs = np.array([r["balanced_accuracy"] for r in report["recipe_runs"]]) * 100
    print("\n| what | test balanced accuracy % | wall time |\n|---|---|---|")
    print(f"| README best fixed: {README_BEST[0]} (3 seeds) | {README_BEST[1]:.2f} ± {README_BEST[2]:.2f} | |")
    if len(accs):
        secs = sum(r["seconds"] for r in report["recipe_runs"]) / len(accs)
        print(f"| proposed recipe {recipe.strategy} (seeds {args.seeds}) | {accs.mean():.2f} ± {accs.std():.2f} | "
              f"{secs:.0f} s per run |")
    for s in report["search"]:
        print(f"| search winner {s['winner']} (seed {s['seed']}, budget {args.budget}, {s['epochs_used']}/"
              f"{s['budget_epochs']} epochs) | {s['test_balanced_accuracy'] * 100:.2f} | {s['seconds']:.0f} s |")


if __name__ == "__main__":
    main()
