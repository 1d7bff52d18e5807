"""The ``ensemble`` command: average finished runs into a new run folder (Results, evaluate,
predict and export then treat it as one more run)."""
from __future__ import annotations

import argparse
import os

from balancelab.engine.cli.common import CliError, ProgressRenderer, output_folder


def run_list(text: str) -> list[str]:
    """``--runs A,B,C``: existing folders, at least one."""
    runs = [r.strip() for r in text.split(",") if r.strip()]
    if not runs:
        raise argparse.ArgumentTypeError("name at least one run folder")
    for r in runs:
        if not os.path.isdir(r):
            raise argparse.ArgumentTypeError(f"run folder does not exist: {r}" if not os.path.exists(r)
                                             else f"run folder is not a folder: {r}")
    return runs


def cmd_ensemble(args: argparse.Namespace) -> int:
    from balancelab.engine.cli.training_commands import print_metrics_table
    from balancelab.engine.results.ensemble import build_ensemble

    result = ProgressRenderer().consume(build_ensemble(args.runs, args.out, args.weighted)).result
    if not result.metrics:
        raise CliError("the ensemble was stopped before it was written")
    print_metrics_table(result.metrics)
    for m in result.metrics["ensemble"]["members"]:
        print(f"  member {m['name']}: weight {m['weight']:.3f}, balanced accuracy {m['balanced_accuracy']:.4f}")
    if args.data:  # the averaged model itself, run on the dataset: what predict and the exports will do
        from balancelab.engine.cli.training_commands import with_run
        from balancelab.engine.results.inference import evaluate_run

        again = with_run("re-evaluating", lambda: evaluate_run(result.run_dir, args.data))
        print(f"\nthe averaged model on {args.data} ({again['evaluated_on']}, {again['n_evaluated']} images): "
              f"balanced accuracy {again['balanced_accuracy']:.4f}")
    print(f"\nrun folder: {result.run_dir}")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("ensemble", help="average the class probabilities of finished runs into a new run folder")
    p.add_argument("--runs", required=True, type=run_list, help="comma-separated run folders (same classes, image size "
                                                                "and test split)")
    p.add_argument("--out", required=True, type=output_folder, help="new (or empty) folder for the ensemble run")
    p.add_argument("--weighted", action="store_true",
                   help="weight each run by its validation balanced accuracy (best epoch) instead of equally")
    p.add_argument("--data", default=None, help="dataset folder: also run the averaged model on its test split "
                                                 "(a check of the model predict and the exports use)")
    p.set_defaults(func=cmd_ensemble)
