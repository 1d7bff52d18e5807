"""The command line of the commands that train and use models (train, resume, evaluate, predict, compare,
label-issues, export, models, strategies): their arguments, defaults from their one owner
(TrainConfig, the label-issue and compare defaults, the device, export and augmentation registries);
the commands themselves are in :mod:`training_commands`."""
from __future__ import annotations

import argparse
import dataclasses

from balancelab.engine.cli import training_commands as commands
from balancelab.engine.cli.common import (device_name, float_range, int_between, number, output_folder, run_folder,
                                          whole_number)
from balancelab.engine.core.metrics import MAX_POSTHOC_TAU, MAX_TAU_NORM
from balancelab.engine.train.config import SETTING_CHOICES, SETTING_HELP, TrainConfig
from balancelab.engine.train.device import DEVICE_CHOICES

TAU_NORM_HELP = "tau-normalise the classifier weights, w_c / ||w_c||^T (Kang et al. 2020; 0 = off, 1 = unit norms)"


def _add_small_training_args(p, d: TrainConfig, model: str, epochs: int) -> None:
    p.add_argument("--model", default=model, help=SETTING_HELP["model"])
    p.add_argument("--epochs", type=whole_number, default=epochs, help="epochs per run")
    p.add_argument("--batch-size", dest="batch_size", type=whole_number, default=d.batch_size, help=SETTING_HELP["batch_size"])
    p.add_argument("--lr", type=number, default=d.lr, help=SETTING_HELP["lr"])
    p.add_argument("--device", default=d.device, help=DEVICE_CHOICES)
    p.add_argument("--augment", choices=list(SETTING_CHOICES["augment"]), default=d.augment, help=SETTING_HELP["augment"])
    p.add_argument("--image-size", dest="image_size", type=whole_number, default=d.image_size,
                   help=SETTING_HELP["image_size"])
    p.add_argument("--deskew", action="store_true", default=d.deskew, help=SETTING_HELP["deskew"])


def add_config_arguments(p, d: TrainConfig) -> None:
    """One flag per TrainConfig setting, in its order, with its help, choices and default from
    config.py (a setting added there is a flag here): ``--batch-size`` for ``batch_size``; an on/off
    setting that is on by default is turned off with ``--no-...``."""
    for f in dataclasses.fields(TrainConfig):
        if f.name == "extra":
            continue
        flag, default = "--" + f.name.replace("_", "-"), getattr(d, f.name, None)
        help_text = DEVICE_CHOICES if f.name == "device" else SETTING_HELP[f.name]
        if f.name in ("data", "out"):
            p.add_argument(flag, required=True, help=help_text)
        elif f.type == "bool":
            p.add_argument(f"--no-{flag[2:]}" if default else flag, dest=f.name, default=default,
                           action="store_false" if default else "store_true",
                           help=f"{'turn off ' if default else ''}{help_text}")
        elif f.name in SETTING_CHOICES:
            p.add_argument(flag, dest=f.name, choices=list(SETTING_CHOICES[f.name]), default=default, help=help_text)
        else:
            kind = {"int": whole_number, "float": number}.get(f.type, str)
            p.add_argument(flag, dest=f.name, type=kind, default=default, help=help_text)


def _add_scoring_args(p) -> None:
    """How a finished run scores images (evaluate, predict): post-hoc corrections and the device."""
    p.add_argument("--posthoc-tau", dest="posthoc_tau", type=float_range(0.0, MAX_POSTHOC_TAU), default=0.0,
                   help="post-hoc logit adjustment strength")
    p.add_argument("--tau-norm", dest="tau_norm", type=float_range(0.0, MAX_TAU_NORM), default=0.0, help=TAU_NORM_HELP)
    p.add_argument("--device", type=device_name, default="cpu", help=DEVICE_CHOICES)


def add_commands(sub) -> None:
    from balancelab.engine.experiments.compare import DEFAULT_SEEDS
    from balancelab.engine.experiments.label_ranking import (DEFAULT_FILTER, DEFAULT_FOLDS, DEFAULT_RANKING, DEFAULT_REPEATS,
                                                             DEFAULT_TTA, FILTERS, LABEL_ISSUE_BATCH, LABEL_ISSUE_EPOCHS, LABEL_ISSUE_LR,
                                                             LABEL_ISSUE_MODEL, RANKINGS, TTA_MODES)

    d = TrainConfig(data="", out="")
    p = sub.add_parser("train", help="train a model and write a run folder")
    add_config_arguments(p, d)
    p.set_defaults(func=commands.cmd_train)

    p = sub.add_parser("resume", help="continue an interrupted run with the settings it saved, or a finished one "
                                      "for more epochs")
    p.add_argument("run", type=run_folder, help="run folder")
    p.add_argument("--data", default=argparse.SUPPRESS, help="the dataset folder where it is now (default: where the run recorded it)")
    p.add_argument("--epochs", type=whole_number, default=argparse.SUPPRESS,
                   help="epochs in all, those trained included; raising it trains a finished run further, the "
                        "cosine schedule stretched over the new length (default: the run's own)")
    p.add_argument("--device", default=argparse.SUPPRESS, help=DEVICE_CHOICES + " (default: the run's own where it exists here, else auto)")
    p.add_argument("--workers", type=whole_number, default=argparse.SUPPRESS,
                   help="image decode processes, 0 = auto (default: the run's own)")
    p.set_defaults(func=commands.cmd_resume)

    p = sub.add_parser("evaluate", help="evaluate a run's best checkpoint on a dataset")
    p.add_argument("--run", required=True, type=run_folder, help="run folder")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--split", choices=("train", "val", "test", "all"), default=None,
                   help="split to evaluate: a split folder of the dataset (train, val, test), 'val' without one "
                   "(the run's validation images), or 'all' for a dataset without split folders (default: test "
                   "if present, else the run's validation images)")
    _add_scoring_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=commands.cmd_evaluate)

    p = sub.add_parser("predict", help="classify image files with a run's best checkpoint")
    p.add_argument("--run", required=True, type=run_folder, help="run folder")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--top-k", dest="top_k", type=int_between(1), default=3, help="classes shown per image")
    _add_scoring_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of one line per image")
    p.set_defaults(func=commands.cmd_predict)

    p = sub.add_parser("compare", help="run several strategies x seeds on identical splits and tabulate them")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--strategies", required=True, type=commands.strategy_list, help="comma-separated, e.g. none,balanced-softmax,mixup+drw")
    p.add_argument("--seeds", type=int_between(1, 1000), default=DEFAULT_SEEDS, help="number of seeds (0..N-1)")
    p.add_argument("--out", required=True, type=output_folder, help="folder for the runs and comparison.json/.csv")
    p.add_argument("--split-seed", dest="split_seed", type=whole_number, default=0, help="seed of the shared train/val hold-out")
    p.add_argument("--json", action="store_true", help="print one JSON object (rows and summary) instead of a table")
    _add_small_training_args(p, d, model=d.model, epochs=d.epochs)
    from balancelab.engine.cli.baseline_commands import baseline_list

    p.add_argument("--baselines", type=baseline_list, default=[],
                   help="comma-separated baselines added as rows on the same splits, e.g. knn (see 'knn --help')")
    p.add_argument("--knn-features-from", dest="knn_features_from", type=run_folder, default=None,
                   help="knn on this finished run's penultimate features instead of pixels "
                        "(the run must not have trained on this comparison's validation or test images)")
    p.set_defaults(func=commands.cmd_compare)

    p = sub.add_parser("label-issues", help="rank likely mislabeled images (k-fold cross-validation + cleanlab)")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--out", required=True, type=output_folder, help="folder for the fold runs and label_issues.csv")
    p.add_argument("--folds", type=int_between(2, 100), default=DEFAULT_FOLDS, help="cross-validation folds")
    p.add_argument("--seed", type=whole_number, default=0, help="seed of the folds and the fold trainings")
    p.add_argument("--show", type=int_between(0), default=20, help="ranked images printed")
    p.add_argument("--filter", choices=FILTERS, default=DEFAULT_FILTER, help="cleanlab filter that flags issues")
    p.add_argument("--rank-by", dest="rank_by", choices=RANKINGS, default=DEFAULT_RANKING, help="cleanlab label quality score")
    p.add_argument("--tta", choices=TTA_MODES, default=DEFAULT_TTA, help="average held-out predictions over 1-pixel shifts")
    p.add_argument("--repeats", type=int_between(1, 20), default=DEFAULT_REPEATS,
                   help="cross-validation repeats with other seeds, averaged")
    p.add_argument("--from-probs", dest="from_probs", default=None,
                   help="re-rank existing out-of-fold probabilities (oof_probs.npy or its folder) without training")
    _add_small_training_args(p, d, model=LABEL_ISSUE_MODEL, epochs=LABEL_ISSUE_EPOCHS)
    p.set_defaults(lr=LABEL_ISSUE_LR, batch_size=LABEL_ISSUE_BATCH)
    p.set_defaults(func=commands.cmd_label_issues)

    from balancelab.engine.results.export import EXPORTS

    p = sub.add_parser("export", help=f"export a finished run: {', '.join(EXPORTS)}",
                       epilog="formats: " + "; ".join(f"{k.name}: {k.help}" for k in EXPORTS.values()))
    p.add_argument("--run", required=True, type=run_folder, help="a finished run folder")
    p.add_argument("--format", required=True, choices=list(EXPORTS), help="what to export (see below)")
    p.add_argument("--out", required=True, help="a new file (model, report) or a new or empty folder (dataset); "
                                                "existing files are never overwritten")
    p.add_argument("--data", default=None, help="dataset folder (sample images for the check; required for dataset)")
    p.add_argument("--json", action="store_true", help="export always prints one JSON object; the flag is accepted for scripts "
                   "and changes nothing (default: on)")
    p.set_defaults(func=commands.cmd_export)

    p = sub.add_parser("models", help="list the model names")
    p.set_defaults(func=commands.cmd_models)
    p = sub.add_parser("strategies", help="list the imbalance strategies")
    p.set_defaults(func=commands.cmd_strategies)
