"""The command line of the commands that train and use models (train, resume, evaluate, predict, compare,
label-issues, export, models, strategies): their arguments, defaults from their one owner
(TrainConfig, the label-issue and compare defaults, the device, export and augmentation registries);
the commands themselves are in :mod:`training_commands`."""
from __future__ import annotations

import argparse

from balancelab.engine.cli import training_commands as commands
from balancelab.engine.cli.common import (device_name, float_range, int_between, number, output_folder, run_folder,
                                          whole_number)
from balancelab.engine.core.metrics import MAX_POSTHOC_TAU, MAX_TAU_NORM
from balancelab.engine.train.augment import AUGMENTATIONS
from balancelab.engine.train.config import FINETUNE, OPTIMIZERS, SCHEDULES, SELECT_METRICS, TrainConfig
from balancelab.engine.train.device import DEVICE_CHOICES

TAU_NORM_HELP = "tau-normalise the classifier weights, w_c / ||w_c||^T (Kang et al. 2020; 0 = off, 1 = unit norms)"


def _add_small_training_args(p, d: TrainConfig, model: str, epochs: int) -> None:
    p.add_argument("--model", default=model, help="model name (see 'models')")
    p.add_argument("--epochs", type=whole_number, default=epochs, help="epochs per run")
    p.add_argument("--batch-size", dest="batch_size", type=whole_number, default=d.batch_size, help="images per batch")
    p.add_argument("--lr", type=number, default=d.lr, help="learning rate")
    p.add_argument("--device", default=d.device, help=DEVICE_CHOICES)
    p.add_argument("--augment", choices=list(AUGMENTATIONS), default=d.augment, help="training augmentation")
    p.add_argument("--image-size", dest="image_size", type=whole_number, default=d.image_size,
                   help="0 = the model's default")


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
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--model", default=d.model, help="model name (see 'models')")
    p.add_argument("--strategy", default=d.strategy, help="imbalance strategy, '+' to combine (see 'strategies')")
    p.add_argument("--epochs", type=whole_number, default=d.epochs, help="training epochs")
    p.add_argument("--batch-size", dest="batch_size", type=whole_number, default=d.batch_size, help="images per batch")
    p.add_argument("--lr", type=number, default=d.lr, help="learning rate")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer, help="optimizer")
    p.add_argument("--weight-decay", dest="weight_decay", type=number, default=d.weight_decay, help="L2 weight decay")
    p.add_argument("--momentum", type=number, default=d.momentum, help="SGD momentum")
    p.add_argument("--schedule", choices=SCHEDULES, default=d.schedule,
                   help="learning-rate schedule (plateau: ReduceLROnPlateau on the validation loss, per epoch)")
    p.add_argument("--warmup-epochs", dest="warmup_epochs", type=whole_number, default=d.warmup_epochs, help="linear warm-up epochs")
    p.add_argument("--step-size", dest="step_size", type=whole_number, default=d.step_size, help="epochs between decays (step schedule)")
    p.add_argument("--step-gamma", dest="step_gamma", type=number, default=d.step_gamma, help="decay factor (step schedule)")
    p.add_argument("--label-smoothing", dest="label_smoothing", type=number, default=d.label_smoothing, help="label smoothing")
    p.add_argument("--ema-decay", dest="ema_decay", type=number, default=d.ema_decay,
                   help="keep an exponential moving average of the weights with this decay per step and evaluate, "
                        "select and save it (e.g. 0.999; 0 = off)")
    p.add_argument("--seed", type=whole_number, default=d.seed, help="training seed")
    p.add_argument("--split-seed", dest="split_seed", type=whole_number, default=d.split_seed, help="seed of the train/val hold-out (-1 = --seed)")
    p.add_argument("--device", default=d.device, help=DEVICE_CHOICES)
    p.add_argument("--image-size", dest="image_size", type=whole_number, default=d.image_size, help="0 = model default")
    p.add_argument("--pretrained", default=d.pretrained, help="weights file, or 'imagenet' for torchvision's local cache")
    p.add_argument("--finetune", choices=FINETUNE, default=d.finetune, help="with --pretrained: train all layers or the head only")
    p.add_argument("--augment", choices=list(AUGMENTATIONS), default=d.augment, help="training augmentation")
    p.add_argument("--group-near-duplicates", dest="group_near_duplicates", action="store_true",
                   default=d.group_near_duplicates,
                   help="keep near-duplicate images (perceptual hash) on one side of the train/val hold-out; "
                        "identical images always are")
    p.add_argument("--val-fraction", dest="val_fraction", type=number, default=d.val_fraction, help="held out from train when there is no val/")
    p.add_argument("--select-metric", dest="select_metric", choices=SELECT_METRICS, default=d.select_metric, help="picks the best checkpoint (validation split)")
    p.add_argument("--early-stopping", dest="early_stopping", type=whole_number, default=d.early_stopping, help="patience in epochs, 0 = off")
    p.add_argument("--sampling-strategy", dest="sampling_strategy", default=d.sampling_strategy, help="imbalanced-learn sampling_strategy for oversample/undersample: a ratio in (0, 1] or a name")
    p.add_argument("--beta", type=number, default=d.beta, help="effective-number / drw beta")
    p.add_argument("--focal-gamma", dest="focal_gamma", type=number, default=d.focal_gamma, help="focal loss gamma")
    p.add_argument("--drw-epoch", dest="drw_epoch", type=whole_number, default=d.drw_epoch, help="epoch where drw starts re-weighting (-1 = 2/3 of the epochs)")
    p.add_argument("--mixup-alpha", dest="mixup_alpha", type=number, default=d.mixup_alpha, help="MixUp Beta(alpha, alpha)")
    p.add_argument("--cutmix-alpha", dest="cutmix_alpha", type=number, default=d.cutmix_alpha, help="CutMix Beta(alpha, alpha)")
    p.add_argument("--no-amp", dest="amp", action="store_false", default=d.amp, help="disable mixed precision on CUDA")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false", default=d.channels_last, help="keep NCHW memory format on CUDA")
    p.add_argument("--compile", action="store_true", default=d.compile, help="torch.compile the model (long GPU runs)")
    p.add_argument("--workers", type=whole_number, default=d.workers, help="image decode processes (0 = auto)")
    p.add_argument("--resume", action="store_true", default=d.resume, help="continue from RUN_DIR/last.pt when it exists, else start the run there "
                   "(so one command both starts a job and restarts it after a kill); the other settings must be the "
                   "run's own: only --epochs, --early-stopping, --data's location, the device and speed options may change")
    p.add_argument("--bagging-members", dest="bagging_members", type=whole_number, default=d.bagging_members,
                   help="balanced-bagging: networks trained and averaged (k)")
    p.add_argument("--bagging-fraction", dest="bagging_fraction", type=number, default=d.bagging_fraction,
                   help="balanced-bagging: each member keeps at most this share of the largest class per class "
                        "(0 = 1/k: disjoint slices); smaller classes are kept whole")
    p.add_argument("--retrain-epochs", dest="retrain_epochs", type=whole_number, default=d.retrain_epochs,
                   help="crt strategies: epochs of training only the last layer again, on balanced features")
    p.add_argument("--retrain-lr", dest="retrain_lr", type=number, default=d.retrain_lr,
                   help="crt strategies: learning rate when only the last layer is trained again")
    p.add_argument("--remix-kappa", dest="remix_kappa", type=number, default=d.remix_kappa,
                   help="remix: class-count ratio from which the rarer image takes the label")
    p.add_argument("--remix-tau", dest="remix_tau", type=number, default=d.remix_tau,
                   help="remix: the rarer image takes the label when it covers more than 1 - tau of the mix")
    p.add_argument("--plateau-patience", dest="plateau_patience", type=whole_number, default=d.plateau_patience,
                   help="plateau schedule: epochs without a lower validation loss before the learning rate is cut")
    p.add_argument("--plateau-factor", dest="plateau_factor", type=number, default=d.plateau_factor,
                   help="plateau schedule: the learning rate is multiplied by this at each cut")
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
