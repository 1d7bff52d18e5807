"""CLI commands that train and use models: train, evaluate, predict, compare, label-issues, export,
models, strategies. Training settings are judged by TrainConfig.validate (as in the GUI); progress
goes through the one ProgressRenderer on stderr, results to stdout."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys

from balancelab.engine.cli.common import CliError, ProgressRenderer, one_line, print_json, printable
from balancelab.engine.train.checkpoints import selection_sentence
from balancelab.engine.train.config import ConfigError, TrainConfig
from balancelab.engine.core.metrics import HEADLINE, format_mean_spread


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
    trained, validated = metrics.get("n_train_images_of_the_run", 0), metrics.get("n_val_images_of_the_run", 0)
    if trained:
        print(f"warning: {trained} of these images are the run's training images (and {validated} its validation "
              "images): these figures flatter the model", file=sys.stderr)
    elif validated:
        print(f"note: {validated} of these images are the run's validation images, by which it chose its "
              "checkpoint: the figures flatter it a little", file=sys.stderr)
    for key, metric in HEADLINE.items():
        print(f"  {metric.label:<18} {metric.format(metrics[key])}")
    width = max(len(printable(c["name"])) for c in metrics["per_class"])
    print(f"\n  {'class':<{width}}  precision  recall     f1  support")
    for c in metrics["per_class"]:
        print(f"  {printable(c['name']):<{width}}  {c['precision']:9.3f}  {c['recall']:6.3f}  {c['f1']:5.3f}  {c['support']:7d}")
    missing = [c["name"] for c in metrics["per_class"] if c["support"] == 0]
    if missing:
        print(f"\n  No {metrics['evaluated_on']} images for: {', '.join(map(printable, missing))} (their scores are not measured)")


def cmd_train(args: argparse.Namespace) -> int:
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    return _train_and_report(_validated(TrainConfig(**{k: v for k, v in vars(args).items()
                                                       if k in fields and v is not None})))


def cmd_resume(args: argparse.Namespace) -> int:
    """The run's own settings (what the GUI's Resume uses); only where the data is now, the
    epochs, the device and the decode workers may be given."""
    from balancelab.engine.train.resume import checked_for_resume, saved_settings
    from balancelab.engine.train.run_folder import RunError

    try:
        cfg = saved_settings(args.run, finished_too=True)
        changes = {k: getattr(args, k) for k in ("data", "epochs", "device", "workers") if hasattr(args, k)}
        cfg = checked_for_resume(dataclasses.replace(cfg, **changes))
    except (RunError, ConfigError) as exc:
        _fail(str(exc))
    return _train_and_report(cfg)


def _train_and_report(cfg: TrainConfig) -> int:
    from balancelab.engine.train.run import train

    result = ProgressRenderer().consume(train(cfg)).result
    if result is not None and "rank" in result.extra:
        return 0  # a non-zero torchrun rank: rank 0 reports
    if result is None or not result.metrics:  # the run folder is closed by now: say what it holds
        kept = isinstance(cfg.out, str) and os.path.isdir(cfg.out)
        _fail("training stopped before a result; " + (
            f"the run stays as it was saved in {cfg.out}" if kept and cfg.resume else
            f"what it wrote is kept in {cfg.out} (an incomplete run)" if kept else "nothing was saved"))
    print_metrics_table(result.metrics)
    kept = selection_sentence(result.metrics)
    if kept:
        print(f"\n{kept}")
    print(f"\nrun folder: {result.run_dir}")
    return 0


@contextlib.contextmanager
def run_refusals():
    """Work on a finished run: a damaged run, a crafted checkpoint or a bad setting is one line."""
    from balancelab.engine.train.checkpoints import CheckpointError
    from balancelab.engine.train.run_folder import RunError

    try:
        yield
    except (RunError, CheckpointError, ConfigError) as exc:
        _fail(str(exc))


def with_run(phase: str, work):
    """Work that reads a finished run as one renderer phase (see :func:`run_refusals`)."""
    with run_refusals():
        return ProgressRenderer().call(phase, work)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from balancelab.engine.results.inference import evaluate_run

    metrics = with_run("evaluating", lambda: evaluate_run(args.run, args.data, args.posthoc_tau, args.split, args.device,
                                                           tau_norm=args.tau_norm))
    if args.json:
        print_json(metrics)
    else:
        print_metrics_table(metrics)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from balancelab.engine.results.inference import predict_paths

    results = with_run("predicting", lambda: predict_paths(args.run, args.images, args.top_k, args.device,
                                                            args.posthoc_tau, args.tau_norm))
    if args.json:
        print_json(results)
    else:
        for r in results:
            tops = "  ".join(f"{printable(t['class'])} {t['probability']:.3f}" for t in r["top"])
            print(f"{printable(r['path'])}: {r.get('error') or tops}")
    if results and all(r.get("error") for r in results):  # each image's reason is above; nothing was classified
        _fail(f"none of the {len(results)} image(s) could be classified")
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
            "device": args.device, "augment": args.augment, "image_size": args.image_size, "deskew": args.deskew}


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
    from balancelab.engine.experiments.compare import TABLE_COLUMNS, compare, scored_on

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
        print_json(result)
        return 0
    columns = list(TABLE_COLUMNS)
    print(f"\n{scored_on(result['rows'])}")
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
        print(f"  {r['rank']:>5}  {printable(r['path'])}  given {printable(r['given'])}, suggested {printable(r['suggested'])}, "
              f"quality {r['quality']:.4f}{'  *' if r['flagged'] else ''}")
    print(f"out-of-fold accuracy of the fold models: {result['oof_accuracy']:.1%}")
    if result.get("trust_warning"):
        print(f"warning: {result['trust_warning']}", file=sys.stderr)
    print(f"full ranking: {result['csv']}\nout-of-fold probabilities: {result['probs']}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from balancelab.engine.results.export import export_steps

    # exporter chatter never mixes with the JSON on stdout
    with contextlib.redirect_stdout(sys.stderr), run_refusals():
        info = ProgressRenderer().consume(export_steps(args.format, args.run, args.out, args.data)).result
    for why in info.get("warnings", []):
        print(f"warning: {one_line(why)}", file=sys.stderr)
    print_json(info)
    return 0
