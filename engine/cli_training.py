"""CLI commands that train and use models: train, evaluate, predict, models, strategies."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from .augment import AUGMENTATIONS
from .config import OPTIMIZERS, SCHEDULES, SELECT_METRICS, TrainConfig
from .events import Failed, Finished, Progress


def _fail(message: str):
    from .cli import CliError

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
    from .training import BatchProgress, EpochEnd, TrainStarted, train

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
    if result is None or not result.metrics:
        _fail("training stopped before the first epoch finished; nothing was saved")
    _print_metrics_table(result.metrics)
    print(f"\nrun folder: {result.run_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .checkpoints import CheckpointError
    from .inference import evaluate_run
    from .runs import RunError

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
    from .checkpoints import CheckpointError
    from .inference import predict_paths
    from .runs import RunError

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
    from .models import MODELS

    for spec in MODELS.values():
        print(f"{spec.name:<20} {spec.default_size:>4}px  {spec.description}")
    return 0


def cmd_strategies(args: argparse.Namespace) -> int:
    from .strategies import STRATEGIES

    for name, text in STRATEGIES.items():
        print(f"{name:<18} {text}")
    print("\nCombine with '+', e.g. mixup+balanced-softmax or balanced-sampler+focal.")
    return 0


def add_commands(sub) -> None:
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
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--image-size", dest="image_size", type=int, default=d.image_size, help="0 = model default")
    p.add_argument("--pretrained", default=None, help="weights file, or 'imagenet' for torchvision's local cache")
    p.add_argument("--finetune", choices=("all", "head"), default=d.finetune, help="with --pretrained: train all layers or the head only")
    p.add_argument("--augment", choices=list(AUGMENTATIONS), default=d.augment)
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

    p = sub.add_parser("models", help="list the model names")
    p.set_defaults(func=cmd_models)
    p = sub.add_parser("strategies", help="list the imbalance strategies")
    p.set_defaults(func=cmd_strategies)
