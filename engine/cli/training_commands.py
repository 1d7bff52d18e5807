"""CLI commands that train and use models: train, evaluate, predict, compare, label-issues, export,
models, strategies. Training settings are judged by TrainConfig.validate (as in the GUI); progress
goes through the one ProgressRenderer on stderr, results to stdout."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from balancelab.engine.cli.common import (CliError, ProgressRenderer, device_name, int_between,
                                          float_range, number, output_folder, run_folder, whole_number)
from balancelab.engine.train.augment import AUGMENTATIONS
from balancelab.engine.train.config import (FINETUNE, OPTIMIZERS, SCHEDULES, SELECT_METRICS,
                                            ConfigError, TrainConfig)
from balancelab.engine.train.device import DEVICE_CHOICES
from balancelab.engine.core.metrics import HEADLINE, format_mean_spread

MAX_POSTHOC_TAU = 10.0  # tau * log-prior beyond this only pushes every prediction to the rarest class
MAX_TAU_NORM = 2.0  # w / ||w||^tau: 1 gives unit-norm class weights; beyond 2 the rarest class wins everything
TAU_NORM_HELP = "tau-normalise the classifier weights, w_c / ||w_c||^T (Kang et al. 2020; 0 = off, 1 = unit norms)"


def _fail(message: str):
    raise CliError(message)


def _validated(cfg: TrainConfig) -> TrainConfig:
    """The training settings judged where the GUI judges them, with the same sentence."""
    try:
        cfg.validate()
    except ConfigError as exc:
        _fail(str(exc))
    return cfg


def print_metrics_table(metrics: dict) -> None:
    print(f"\nEvaluated on: {metrics['evaluated_on']} ({metrics['n_evaluated']} images)")
    for key, metric in HEADLINE.items():
        print(f"  {metric.label:<18} {metric.format(metrics[key])}")
    width = max(len(c["name"]) for c in metrics["per_class"])
    print(f"\n  {'class':<{width}}  precision  recall     f1  support")
    for c in metrics["per_class"]:
        print(f"  {c['name']:<{width}}  {c['precision']:9.3f}  {c['recall']:6.3f}  {c['f1']:5.3f}  {c['support']:7d}")
    missing = [c["name"] for c in metrics["per_class"] if c["support"] == 0]
    if missing:
        print(f"\n  No {metrics['evaluated_on']} images for: {', '.join(missing)} (their scores are not measured)")


def cmd_train(args: argparse.Namespace) -> int:
    from balancelab.engine.train.run import train

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = _validated(TrainConfig(**{k: v for k, v in vars(args).items() if k in fields and v is not None}))
    result = ProgressRenderer().consume(train(cfg)).result
    if result is not None and "rank" in result.extra:
        return 0  # a non-zero torchrun rank: rank 0 reports
    if result is None or not result.metrics:
        _fail("training stopped before the first epoch finished; nothing was saved")
    print_metrics_table(result.metrics)
    print(f"\nrun folder: {result.run_dir}")
    return 0


def with_run(phase: str, work):
    """Work that reads a finished run: one renderer phase; a damaged run or a bad setting is one line."""
    from balancelab.engine.train.checkpoints import CheckpointError
    from balancelab.engine.train.run_folder import RunError

    try:
        return ProgressRenderer().call(phase, work)
    except (RunError, CheckpointError, ConfigError) as exc:
        _fail(str(exc))


def cmd_evaluate(args: argparse.Namespace) -> int:
    from balancelab.engine.results.inference import evaluate_run

    metrics = with_run("evaluating", lambda: evaluate_run(args.run, args.data, args.posthoc_tau, args.split, args.device,
                                                           tau_norm=args.tau_norm))
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print_metrics_table(metrics)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from balancelab.engine.results.inference import predict_paths

    results = with_run("predicting", lambda: predict_paths(args.run, args.images, args.top_k, args.device,
                                                            args.posthoc_tau, args.tau_norm))
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    else:
        for r in results:
            tops = "  ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top"])
            print(f"{r['path']}: {r.get('error') or tops}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from balancelab.engine.train.models import MODELS

    for spec in MODELS.values():
        print(f"{spec.name:<20} {spec.default_size:>4}px  {spec.description}")
    return 0


def cmd_strategies(args: argparse.Namespace) -> int:
    from balancelab.engine.train.strategies import describe_strategies

    print(describe_strategies())  # grouped by axis, with the settings each component reads
    return 0


def _small_config(args) -> dict:
    return {"model": args.model, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
            "device": args.device, "augment": args.augment}


def strategy_list(text: str) -> list[str]:
    """``--strategies a,b+c``: at least one, none twice (each is then judged by TrainConfig)."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise argparse.ArgumentTypeError("name at least one strategy, e.g. none,balanced-softmax")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(f"strategy {repeated[0]!r} is listed twice")
    return names


def cmd_compare(args: argparse.Namespace) -> int:
    from balancelab.engine.experiments.compare import TABLE_COLUMNS, compare

    seeds = list(range(args.seeds))
    for strategy in args.strategies:
        _validated(TrainConfig(data=args.data, out=os.path.join(args.out, "run"), strategy=strategy, seed=seeds[-1],
                               split_seed=args.split_seed, **_small_config(args)))
    options = {"features_from": args.knn_features_from} if args.knn_features_from else {}
    result = ProgressRenderer().consume(compare(args.data, args.strategies, seeds, args.out, split_seed=args.split_seed,
                                                baselines=tuple(args.baselines), baseline_options=options,
                                                **_small_config(args))).result
    if not result or not result["rows"]:
        _fail("the comparison was stopped before a run finished")
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0
    columns = list(TABLE_COLUMNS)
    print(f"\n| strategy | runs | {' | '.join(TABLE_COLUMNS.values())} |\n|---|---|{'---|' * len(columns)}")
    for s in result["summary"]:  # a spread only where there is one (two seeds or more)
        cells = " | ".join(format_mean_spread(s[f"{k}_mean"], s[f"{k}_std"], s["runs"]) for k in columns)
        name = f"{s['strategy']} ({s['detail']})" if s.get("detail") else s["strategy"]
        print(f"| {name} | {s['runs']} | {cells} |")
    print(f"\nwritten: {args.out}/comparison.json, {args.out}/comparison.csv")
    return 0


def check_folds(data: str, folds: int) -> None:
    """Every class of the cross-validated pool needs at least ``folds`` images: say so instead of
    quietly training fewer folds. A quick silent pre-scan: this is argument checking."""
    from balancelab.engine.data.scanner import LayoutError, scan_sync

    try:
        result = scan_sync(data)
    except LayoutError as exc:
        _fail(str(exc))
    split = "train" if "train" in result.split_classes else "all"
    counts = {c: n for c, n in result.class_counts(split).items() if n > 0}
    if not counts:
        _fail(f"no training images in {data}")
    rarest = min(counts, key=counts.get)
    if folds > counts[rarest]:
        _fail(f"--folds {folds} needs at least {folds} images per class, but class {rarest!r} has {counts[rarest]}; "
              f"use --folds {max(2, counts[rarest])} or fewer" if counts[rarest] >= 2 else
              f"class {rarest!r} has only {counts[rarest]} image: cross-validation needs at least 2 per class")


def cmd_label_issues(args: argparse.Namespace) -> int:
    from balancelab.engine.experiments.label_issues import find_label_issues

    if args.from_probs:
        config = {}
    else:
        config = _small_config(args)
        _validated(TrainConfig(data=args.data, out=os.path.join(args.out, "fold1"), seed=args.seed, **config))
        check_folds(args.data, args.folds)
    result = ProgressRenderer().consume(find_label_issues(
        args.data, args.out, folds=args.folds, seed=args.seed, filter_by=args.filter, rank_by=args.rank_by,
        repeats=args.repeats, tta=args.tta, from_probs=args.from_probs, **config)).result
    if result is None:
        _fail("label-issue detection was stopped before it finished")
    flagged = [r for r in result["ranking"] if r["flagged"]]
    source = f"{result['folds']}-fold" if result["folds"] else f"probabilities from {args.from_probs}"
    print(f"{len(flagged)} likely label issue(s) out of {len(result['ranking'])} images ({source}; filter {result['filter_by']}, "
          f"ranked by {result['rank_by']}); top {args.show}:")
    for r in result["ranking"][:args.show]:
        print(f"  {r['rank']:>5}  {r['path']}  given {r['given']}, suggested {r['suggested']}, "
              f"quality {r['quality']:.4f}{'  *' if r['flagged'] else ''}")
    print(f"out-of-fold accuracy of the fold models: {result['oof_accuracy']:.1%}")
    if result.get("trust_warning"):
        print(f"warning: {result['trust_warning']}", file=sys.stderr)
    print(f"full ranking: {result['csv']}\nout-of-fold probabilities: {result['probs']}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import contextlib

    from balancelab.engine.results.export import export_run

    with contextlib.redirect_stdout(sys.stderr):  # exporter chatter never mixes with the JSON on stdout
        info = with_run(f"exporting {args.format}", lambda: export_run(args.format, args.run, args.out, args.data))
    print(json.dumps(info, indent=2, ensure_ascii=False))
    return 0


def _add_small_training_args(p, d: TrainConfig, model: str, epochs: int) -> None:
    p.add_argument("--model", default=model, help="model name (see 'models')")
    p.add_argument("--epochs", type=whole_number, default=epochs, help="epochs per run")
    p.add_argument("--batch-size", dest="batch_size", type=whole_number, default=d.batch_size, help="images per batch")
    p.add_argument("--lr", type=number, default=d.lr, help="learning rate")
    p.add_argument("--device", default=d.device, help=DEVICE_CHOICES)
    p.add_argument("--augment", choices=list(AUGMENTATIONS), default=d.augment, help="training augmentation")


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
    p.add_argument("--resume", action="store_true", default=d.resume, help="continue from RUN_DIR/last.pt")
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
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a run's best checkpoint on a dataset")
    p.add_argument("--run", required=True, type=run_folder, help="run folder")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--posthoc-tau", dest="posthoc_tau", type=float_range(0.0, MAX_POSTHOC_TAU), default=0.0,
                   help="post-hoc logit adjustment strength")
    p.add_argument("--split", choices=("train", "val", "test", "all"), default=None,
                   help="split to evaluate (default: test if present, else the run's validation images)")
    p.add_argument("--device", type=device_name, default="cpu", help=DEVICE_CHOICES)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--tau-norm", dest="tau_norm", type=float_range(0.0, MAX_TAU_NORM), default=0.0, help=TAU_NORM_HELP)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="classify image files with a run's best checkpoint")
    p.add_argument("--run", required=True, type=run_folder, help="run folder")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--top-k", dest="top_k", type=int_between(1), default=3, help="classes shown per image")
    p.add_argument("--posthoc-tau", dest="posthoc_tau", type=float_range(0.0, MAX_POSTHOC_TAU), default=0.0,
                   help="post-hoc logit adjustment strength")
    p.add_argument("--device", type=device_name, default="cpu", help=DEVICE_CHOICES)
    p.add_argument("--json", action="store_true", help="print JSON instead of one line per image")
    p.add_argument("--tau-norm", dest="tau_norm", type=float_range(0.0, MAX_TAU_NORM), default=0.0, help=TAU_NORM_HELP)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("compare", help="run several strategies x seeds on identical splits and tabulate them")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--strategies", required=True, type=strategy_list, help="comma-separated, e.g. none,balanced-softmax,mixup+drw")
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
    p.set_defaults(func=cmd_compare)

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
    p.set_defaults(func=cmd_label_issues)

    from balancelab.engine.results.export import EXPORTS

    p = sub.add_parser("export", help=f"export a finished run: {', '.join(EXPORTS)}",
                       epilog="formats: " + "; ".join(f"{k.name}: {k.help}" for k in EXPORTS.values()))
    p.add_argument("--run", required=True, type=run_folder, help="a finished run folder")
    p.add_argument("--format", required=True, choices=list(EXPORTS))
    p.add_argument("--out", required=True, help="a new file (model, report) or a new or empty folder (dataset); "
                                                "existing files are never overwritten")
    p.add_argument("--data", default=None, help="dataset folder (sample images for the check; required for dataset)")
    p.add_argument("--json", action="store_true", help="print only the JSON result on stdout (the default output)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("models", help="list the model names")
    p.set_defaults(func=cmd_models)
    p = sub.add_parser("strategies", help="list the imbalance strategies")
    p.set_defaults(func=cmd_strategies)
