"""CLI commands that train and use models: train, evaluate, predict, models, strategies."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from balancelab.engine.train.augment import AUGMENTATIONS
from balancelab.engine.train.config import OPTIMIZERS, SCHEDULES, SELECT_METRICS, TrainConfig
from balancelab.engine.core.events import Failed, Finished, Progress


def _fail(message: str):
    from balancelab.engine.cli.common import CliError

    raise CliError(message)


def _print_metrics_table(metrics: dict) -> None:
    print(f"\nEvaluated on: {metrics['evaluated_on']} ({metrics['n_evaluated']} images)")
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "geometric_mean"):
        print(f"  {key:<18} {metrics[key]:.4f}")
    width = max(len(c["name"]) for c in metrics["per_class"])
    print(f"\n  {'class':<{width}}  precision  recall     f1  support")
    for c in metrics["per_class"]:
        print(f"  {c['name']:<{width}}  {c['precision']:9.3f}  {c['recall']:6.3f}  {c['f1']:5.3f}  {c['support']:7d}")


def cmd_train(args: argparse.Namespace) -> int:
    from balancelab.engine.train.run_events import BatchProgress, EpochEnd, TrainStarted
    from balancelab.engine.train.run import train

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    cfg = TrainConfig(**values)
    tty = sys.stderr.isatty()
    result = None
    for event in train(cfg):
        if isinstance(event, Progress) and event.total and tty:
            sys.stderr.write(f"\r{event.phase}: {event.done}/{event.total}   ")
            sys.stderr.flush()
        elif isinstance(event, TrainStarted):
            print(f"run folder: {event.run_dir}\ndevice: {event.device}  classes: {len(event.classes)}  "
                  f"train/val/test: {event.n_train}/{event.n_val}/{event.n_test}  skipped files: {event.skipped}",
                  file=sys.stderr)
        elif isinstance(event, BatchProgress) and tty:
            width = 30
            filled = int(width * event.batch / event.batches)
            sys.stderr.write(f"\repoch {event.epoch}/{cfg.epochs} [{'#' * filled}{'.' * (width - filled)}] "
                             f"loss {event.loss:.4f} {event.images_per_second:.0f} img/s eta {event.eta_seconds:.0f}s   ")
            sys.stderr.flush()
        elif isinstance(event, EpochEnd):
            e = event.entry
            print(f"\repoch {e['epoch']}/{cfg.epochs}: train_loss {e['train_loss']:.4f}  val_loss {e['val_loss']:.4f}  "
                  f"val_bal_acc {e['val_balanced_accuracy']:.4f}  {e['images_per_second']:.0f} img/s"
                  f"{'  *best*' if event.is_best else ''}", file=sys.stderr)
        elif isinstance(event, Failed):
            if event.detail:
                print(event.detail, file=sys.stderr)
            _fail(event.message)
        elif isinstance(event, Finished):
            result = event.result
    if result is not None and "rank" in result.extra:
        return 0  # a non-zero torchrun rank: rank 0 reports
    if result is None or not result.metrics:
        _fail("training stopped before the first epoch finished; nothing was saved")
    _print_metrics_table(result.metrics)
    print(f"\nrun folder: {result.run_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from balancelab.engine.train.checkpoints import CheckpointError
    from balancelab.engine.results.inference import evaluate_run
    from balancelab.engine.train.run_folder import RunError

    try:
        metrics = evaluate_run(args.run, args.data, args.posthoc_tau, args.split, args.device)
    except (RunError, CheckpointError) as exc:
        _fail(str(exc))
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        _print_metrics_table(metrics)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from balancelab.engine.train.checkpoints import CheckpointError
    from balancelab.engine.results.inference import predict_paths
    from balancelab.engine.train.run_folder import RunError

    try:
        results = predict_paths(args.run, args.images, args.top_k, args.device, args.posthoc_tau)
    except (RunError, CheckpointError) as exc:
        _fail(str(exc))
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
    from balancelab.engine.train.strategies import STRATEGIES

    for name, text in STRATEGIES.items():
        print(f"{name:<18} {text}")
    print("\nCombine with '+', e.g. mixup+balanced-softmax or balanced-sampler+focal.")
    return 0


def _run_events(gen, label: str):
    """Drain a generator with a one-line progress display; return the Finished result."""
    result = None
    for ev in gen:
        inner = getattr(ev, "event", ev)
        if isinstance(ev, Failed):
            _fail(ev.message)
        if isinstance(ev, Finished):
            result = ev.result
        elif sys.stderr.isatty() and isinstance(inner, Progress) and inner.total:
            prefix = f"[{ev.index + 1}/{ev.total} {ev.strategy} seed {ev.seed}] " if hasattr(ev, "strategy") else ""
            sys.stderr.write(f"\r{prefix}{inner.phase}: {inner.done}/{inner.total}        ")
            sys.stderr.flush()
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    if result is None:
        _fail(f"{label} was stopped before it finished")
    return result


def _small_config(args) -> dict:
    return {"model": args.model, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
            "device": args.device, "augment": args.augment}


def cmd_compare(args: argparse.Namespace) -> int:
    from balancelab.engine.experiments.compare import compare
    from balancelab.engine.train.strategies import StrategyError

    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    seeds = list(range(args.seeds))
    try:
        result = _run_events(compare(args.data, strategies, seeds, args.out, split_seed=args.split_seed,
                                     **_small_config(args)), "the comparison")
    except StrategyError as exc:
        _fail(str(exc))
    print("\n| strategy | runs | balanced accuracy | macro-F1 | minority recall |\n|---|---|---|---|---|")
    for s in result["summary"]:
        print(f"| {s['strategy']} | {s['runs']} | {s['balanced_accuracy_mean']:.4f} ± {s['balanced_accuracy_std']:.4f} | "
              f"{s['macro_f1_mean']:.4f} ± {s['macro_f1_std']:.4f} | {s['minority_recall_mean']:.4f} ± {s['minority_recall_std']:.4f} |")
    print(f"\nwritten: {args.out}/comparison.json, {args.out}/comparison.csv")
    return 0


def cmd_label_issues(args: argparse.Namespace) -> int:
    from balancelab.engine.experiments.label_issues import find_label_issues

    config = {} if args.from_probs else _small_config(args)
    result = _run_events(find_label_issues(args.data, args.out, folds=args.folds, seed=args.seed, filter_by=args.filter,
                                           rank_by=args.rank_by, repeats=args.repeats, tta=args.tta,
                                           from_probs=args.from_probs, **config), "label-issue detection")
    flagged = [r for r in result["ranking"] if r["flagged"]]
    source = f"{result['folds']}-fold" if result["folds"] else f"probabilities from {args.from_probs}"
    print(f"{len(flagged)} likely label issue(s) out of {len(result['ranking'])} images ({source}; filter {result['filter_by']}, "
          f"ranked by {result['rank_by']}); top {args.show}:")
    for r in result["ranking"][:args.show]:
        print(f"  {r['rank']:>5}  {r['path']}  given {r['given']}, suggested {r['suggested']}, "
              f"quality {r['quality']:.4f}{'  *' if r['flagged'] else ''}")
    print(f"full ranking: {result['csv']}\nout-of-fold probabilities: {result['probs']}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from balancelab.engine.train.checkpoints import CheckpointError
    from balancelab.engine.results.export import export_balanced_dataset, export_onnx, export_torchscript
    from balancelab.engine.results.report import write_report
    from balancelab.engine.train.run_folder import RunError

    try:
        if args.format == "torchscript":
            info = export_torchscript(args.run, args.out, args.data)
        elif args.format == "onnx":
            info = export_onnx(args.run, args.out, args.data)
        elif args.format == "dataset":
            if not args.data:
                _fail("--data is needed to export the balanced dataset")
            info = export_balanced_dataset(args.run, args.data, args.out)
        else:
            info = {"path": write_report(args.run, args.out, args.data)}
    except (RunError, CheckpointError) as exc:
        _fail(str(exc))
    print(json.dumps(info, indent=2, ensure_ascii=False))
    return 0


def _add_small_training_args(p, d: TrainConfig, model: str = "tiny-2conv", epochs: int = 5) -> None:
    p.add_argument("--model", default=model)
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", dest="batch_size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--device", default=d.device)
    p.add_argument("--augment", choices=list(AUGMENTATIONS), default=d.augment)


def add_commands(sub) -> None:
    from balancelab.engine.experiments.label_ranking import (DEFAULT_FILTER, DEFAULT_RANKING, DEFAULT_REPEATS,
                                                             DEFAULT_TTA, FILTERS, LABEL_ISSUE_BATCH, LABEL_ISSUE_EPOCHS, LABEL_ISSUE_LR,
                                                             LABEL_ISSUE_MODEL, RANKINGS, TTA_MODES)

    d = TrainConfig(data="", out="")
    p = sub.add_parser("train", help="train a model and write a run folder",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--model", default=d.model, help="model name (see 'models')")
    p.add_argument("--strategy", default=d.strategy, help="imbalance strategy, '+' to combine (see 'strategies')")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", dest="batch_size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer)
    p.add_argument("--weight-decay", dest="weight_decay", type=float, default=d.weight_decay)
    p.add_argument("--schedule", choices=SCHEDULES, default=d.schedule)
    p.add_argument("--warmup-epochs", dest="warmup_epochs", type=int, default=d.warmup_epochs)
    p.add_argument("--label-smoothing", dest="label_smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--split-seed", dest="split_seed", type=int, default=d.split_seed, help="seed of the train/val hold-out (-1 = --seed)")
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--image-size", dest="image_size", type=int, default=d.image_size, help="0 = model default")
    p.add_argument("--pretrained", default=None, help="weights file, or 'imagenet' for torchvision's local cache")
    p.add_argument("--finetune", choices=("all", "head"), default=d.finetune, help="with --pretrained: train all layers or the head only")
    p.add_argument("--augment", choices=list(AUGMENTATIONS), default=d.augment)
    p.add_argument("--group-near-duplicates", dest="group_near_duplicates", action="store_true",
                   help="keep near-duplicate images (perceptual hash) on one side of the train/val hold-out; "
                        "identical images always are")
    p.add_argument("--val-fraction", dest="val_fraction", type=float, default=d.val_fraction, help="held out from train when there is no val/")
    p.add_argument("--select-metric", dest="select_metric", choices=SELECT_METRICS, default=d.select_metric, help="picks the best checkpoint (validation split)")
    p.add_argument("--early-stopping", dest="early_stopping", type=int, default=d.early_stopping, help="patience in epochs, 0 = off")
    p.add_argument("--sampling-strategy", dest="sampling_strategy", default=d.sampling_strategy, help="imbalanced-learn sampling_strategy for oversample/undersample")
    p.add_argument("--beta", type=float, default=d.beta, help="effective-number / drw beta")
    p.add_argument("--focal-gamma", dest="focal_gamma", type=float, default=d.focal_gamma)
    p.add_argument("--drw-epoch", dest="drw_epoch", type=int, default=d.drw_epoch, help="epoch where drw starts re-weighting (-1 = 2/3 of the epochs)")
    p.add_argument("--mixup-alpha", dest="mixup_alpha", type=float, default=d.mixup_alpha)
    p.add_argument("--cutmix-alpha", dest="cutmix_alpha", type=float, default=d.cutmix_alpha)
    p.add_argument("--no-amp", dest="amp", action="store_false", help="disable mixed precision on CUDA")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false", help="keep NCHW memory format on CUDA")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (long GPU runs)")
    p.add_argument("--workers", type=int, default=d.workers, help="image decode processes (0 = auto)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a run's best checkpoint on a dataset")
    p.add_argument("--run", required=True, help="run folder")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--posthoc-tau", dest="posthoc_tau", type=float, default=0.0, help="post-hoc logit adjustment strength")
    p.add_argument("--split", default=None, help="split to evaluate (default: test if present, else the run's validation images)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="classify image files with a run's best checkpoint")
    p.add_argument("--run", required=True, help="run folder")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--top-k", dest="top_k", type=int, default=3)
    p.add_argument("--posthoc-tau", dest="posthoc_tau", type=float, default=0.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("compare", help="run several strategies x seeds on identical splits and tabulate them",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--strategies", required=True, help="comma-separated, e.g. none,balanced-softmax,mixup+drw")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1)")
    p.add_argument("--out", required=True)
    p.add_argument("--split-seed", dest="split_seed", type=int, default=0)
    _add_small_training_args(p, d, model=d.model, epochs=d.epochs)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("label-issues", help="rank likely mislabeled images (k-fold cross-validation + cleanlab)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--show", type=int, default=20)
    p.add_argument("--filter", choices=FILTERS, default=DEFAULT_FILTER, help="cleanlab filter that flags issues")
    p.add_argument("--rank-by", dest="rank_by", choices=RANKINGS, default=DEFAULT_RANKING, help="cleanlab label quality score")
    p.add_argument("--tta", choices=TTA_MODES, default=DEFAULT_TTA, help="average held-out predictions over 1-pixel shifts")
    p.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="cross-validation repeats with other seeds, averaged")
    p.add_argument("--from-probs", dest="from_probs", default=None,
                   help="re-rank existing out-of-fold probabilities (oof_probs.npy or its folder) without training")
    _add_small_training_args(p, d, model=LABEL_ISSUE_MODEL, epochs=LABEL_ISSUE_EPOCHS)
    p.set_defaults(lr=LABEL_ISSUE_LR, batch_size=LABEL_ISSUE_BATCH)
    p.set_defaults(func=cmd_label_issues)

    p = sub.add_parser("export", help="export a run: torchscript, onnx, the balanced dataset, or an HTML report")
    p.add_argument("--run", required=True)
    p.add_argument("--format", required=True, choices=("torchscript", "onnx", "dataset", "report"))
    p.add_argument("--out", required=True, help="file (model, report) or empty folder (dataset)")
    p.add_argument("--data", default=None, help="dataset folder (sample images for the check; required for dataset)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("models", help="list the model names")
    p.set_defaults(func=cmd_models)
    p = sub.add_parser("strategies", help="list the imbalance strategies")
    p.set_defaults(func=cmd_strategies)
