"""CLI for the baselines of knn_baseline.BASELINES: the ``knn`` command, and the ``--baselines``
argument type ``compare`` uses. Results to stdout, progress through the one ProgressRenderer."""
from __future__ import annotations

import argparse
import sys

from balancelab.engine.cli.common import CliError, ProgressRenderer, print_json, run_folder, whole_number
from balancelab.engine.core.metrics import HEADLINE
from balancelab.engine.experiments.knn_baseline import BASELINES, DEFAULT_KS, knn_baseline
from balancelab.engine.train.config import TrainConfig


def baseline_list(text: str) -> list[str]:
    """``--baselines knn``: names from the baseline registry, none twice."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    for name in names:
        if name not in BASELINES:
            raise argparse.ArgumentTypeError(f"unknown baseline {name!r}; choose one of: {', '.join(BASELINES)}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError("a baseline is listed twice")
    return names


def k_list(text: str) -> list[int]:
    try:
        ks = [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas (got {text!r})") from None
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"every k must be at least 1 (got {text!r})")
    return ks


def cmd_knn(args: argparse.Namespace) -> int:
    result = ProgressRenderer().consume(knn_baseline(
        args.data, features_from=args.features_from, ks=tuple(args.k), model=args.model, image_size=args.image_size,
        split_seed=args.split_seed)).result
    if result is None:
        raise CliError("the kNN baseline was stopped before it finished")
    if args.json:
        print_json(result)
        return 0
    print(f"kNN on {result['features']}: k={result['k']} chosen on the validation split "
          f"({', '.join(f'k={k}: {v:.4f}' for k, v in result['val_scores'].items())} balanced accuracy)")
    if result.get("ks_above_training_images"):
        print(f"note: k={','.join(map(str, result['ks_above_training_images']))} left out: more than the "
              f"{result['n_train']} training images", file=sys.stderr)
    print(f"\nEvaluated on: {result['evaluated_on']} ({result['n_evaluated']} images)")
    if result["evaluated_on"] == "val":
        print("  (the dataset has no test split: this is the split k was chosen on, so the score is optimistic)")
    for key, metric in HEADLINE.items():
        print(f"  {metric.label:<18} {metric.format(result[key])}")
    return 0


def add_commands(sub) -> None:
    d = TrainConfig(data="", out="")
    p = sub.add_parser("knn", help="k-nearest-neighbours baseline on pixels or on a run's features")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--features-from", dest="features_from", type=run_folder, default=None,
                   help="a finished run: use its penultimate-layer features and its own train/val/test split "
                        "(default: pixels)")
    p.add_argument("--k", type=k_list, default=list(DEFAULT_KS), help="candidate k, chosen on the validation split")
    p.add_argument("--model", default=d.model, help="pixels at this model's image size (see 'models')")
    p.add_argument("--image-size", dest="image_size", type=whole_number, default=d.image_size,
                   help="pixels at this size (0 = the model's default)")
    p.add_argument("--split-seed", dest="split_seed", type=whole_number, default=0,
                   help="seed of the train/val hold-out, as in compare")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=cmd_knn)
