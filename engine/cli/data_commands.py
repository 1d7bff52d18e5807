"""Commands on a dataset folder: scan, duplicates, demo-dataset."""
from __future__ import annotations

import argparse
import sys

from balancelab.engine.cli.common import CliError, ProgressRenderer, print_json, printable, text_bar


def format_scan_table(summary: dict) -> str:
    lines = [f"Dataset: {summary['root']}  ({summary['layout']} layout)"]
    for split, classes in summary["splits"].items():
        largest = max((c["count"] for c in classes), default=0)
        name_w = max((len(c["name"]) for c in classes), default=5)
        lines.append(f"\n[{split}]")
        for c in classes:
            lines.append(f"  {printable(c['name']):<{name_w}}  {c['count']:>7}  {text_bar(c['count'], largest)}")
    lines.append(f"\nTotal readable images: {summary['total_images']}")
    lines.append(f"Classes: {len(summary['classes'])}   Imbalance ratio (largest/smallest): {_imbalance_line(summary)}")
    problems = summary["problems"]
    lines.append(f"Problems: {len(problems)}" + ("" if summary.get("deep_checked", True) else
                 "  (headers only: pixel data and duplicates not checked; run without --quick)"))
    for p in problems[:200]:
        lines.append(f"  {printable(p['path'])}: {printable(p['reason'])}")  # a reason may quote a file name
    if len(problems) > 200:
        lines.append(f"  ... and {len(problems) - 200} more (use --json for all)")
    return "\n".join(lines)


def _imbalance_line(summary: dict) -> str:
    """Training split first (what a model learns from), then the other splits, then all pooled."""
    ratios, head = summary["imbalance_ratio_per_split"], summary["training_split"]
    parts = [f"{s} {ratios[s]:.1f}:1" for s in sorted(ratios, key=lambda s: s != head)]
    if len(ratios) > 1:
        parts.append(f"all splits pooled {summary['imbalance_ratio']:.1f}:1")
    return ", ".join(parts) or "no images"


def cmd_scan(args: argparse.Namespace) -> int:
    from balancelab.engine.data.scanner import scan

    finished = ProgressRenderer().consume(scan(args.root, workers=args.workers, deep=not getattr(args, "quick", False)))
    if finished.result is None:
        raise CliError("the scan was stopped before it finished")
    summary = finished.result.to_json_dict()
    if args.json:
        print_json(summary)
    else:
        print(format_scan_table(summary))
    return 0


def cmd_demo_dataset(args: argparse.Namespace) -> int:
    from balancelab.engine.core.paths import demo_dataset_dir
    from balancelab.engine.data.demo_dataset import build_demo_dataset, rebuild_demo_dataset

    try:
        if args.force:
            path, kept = rebuild_demo_dataset(args.dir or demo_dataset_dir())
        else:
            path, kept = build_demo_dataset(args.dir), None  # an existing demo is kept as it is
    except OSError as exc:
        raise CliError(f"cannot write the demo dataset: {exc.strerror or exc}"
                       + (f" ({exc.filename})" if getattr(exc, "filename", None) else "")) from None
    if kept is not None:
        print(f"the previous demo held changes (curation, a journal or added files); it is kept in {kept}",
              file=sys.stderr)
    print(path)
    return 0


def check_embedding_run(args: argparse.Namespace) -> None:
    """Refuse a --run that cannot give embeddings before the (long) scan starts."""
    from balancelab.engine.results.inference import load_run_model
    from balancelab.engine.train.checkpoints import CheckpointError
    from balancelab.engine.train.run_folder import RunError

    if args.exact_only:
        raise CliError("--run compares embeddings of decoded images; it cannot be combined with --exact-only")
    try:
        load_run_model(args.run)
    except (RunError, CheckpointError, OSError) as exc:
        raise CliError(f"cannot use this run for embeddings: {exc}") from None


def cmd_duplicates(args: argparse.Namespace) -> int:
    from balancelab.engine.data.duplicates import find_duplicates
    from balancelab.engine.data.scanner import scan

    if getattr(args, "run", None):
        check_embedding_run(args)
    result = ProgressRenderer().consume(scan(args.root)).result
    if getattr(args, "run", None):
        from balancelab.engine.results.embeddings import find_duplicates_with_run

        work = find_duplicates_with_run(result, args.run, threshold=args.threshold, max_distance=args.max_distance)
    else:
        work = find_duplicates(result, threshold=args.threshold, near=not args.exact_only)
    groups = ProgressRenderer().consume(work).result
    if args.json:
        print_json({"groups": [g.to_dict() for g in groups], "leaking_groups": sum(g.leaks for g in groups)})
        return 0
    print(f"{len(groups)} duplicate group(s), {sum(g.leaks for g in groups)} leaking across splits, "
          f"{sum(g.conflicting for g in groups)} with conflicting labels")
    for g in groups[:100]:
        flags = ", ".join(f for f, on in (("LEAKAGE", g.leaks), ("conflicting labels", g.conflicting)) if on)
        evidence = f", hash distance <= {g.max_distance}" if g.kind == "near" else ""
        if g.max_embedding_distance is not None:
            evidence += f", embedding distance <= {g.max_embedding_distance:.4f}"
        print(f"\n[{g.grade}{evidence}] {flags}")
        for p in g.paths:
            print(f"  {printable(p)}")
    return 0
