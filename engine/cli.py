"""Headless command line: ``python main.py <command>``. Calls the same engine functions as the GUI."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from .events import Failed, Finished, Progress


class CliError(Exception):
    """A user-facing error: printed as one line on stderr, exit code 2."""


def _progress_line(done: int, total: int, label: str, extra: str = "") -> None:
    if not sys.stderr.isatty():
        return
    width = 30
    filled = int(width * done / total) if total else 0
    sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {extra}   ")
    if total and done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _bar(count: int, largest: int, width: int = 40) -> str:
    return "█" * max(1 if count else 0, round(width * count / largest)) if largest else ""


def format_scan_table(summary: dict) -> str:
    lines = [f"Dataset: {summary['root']}  ({summary['layout']} layout)"]
    for split, classes in summary["splits"].items():
        largest = max((c["count"] for c in classes), default=0)
        name_w = max((len(c["name"]) for c in classes), default=5)
        lines.append(f"\n[{split}]")
        for c in classes:
            lines.append(f"  {c['name']:<{name_w}}  {c['count']:>7}  {_bar(c['count'], largest)}")
    lines.append(f"\nTotal readable images: {summary['total_images']}")
    lines.append(f"Classes: {len(summary['classes'])}   Imbalance ratio (largest/smallest): {summary['imbalance_ratio']:.2f}")
    problems = summary["problems"]
    lines.append(f"Problems: {len(problems)}")
    for p in problems[:200]:
        lines.append(f"  {p['path']}: {p['reason']}")
    if len(problems) > 200:
        lines.append(f"  ... and {len(problems) - 200} more (use --json for all)")
    return "\n".join(lines)


def cmd_scan(args: argparse.Namespace) -> int:
    from .scanner import scan

    for event in scan(args.root, workers=args.workers):
        if isinstance(event, Progress) and event.total:
            _progress_line(event.done, event.total, "Verifying")
        elif isinstance(event, Failed):
            raise CliError(event.message)
        elif isinstance(event, Finished):
            summary = event.result.to_json_dict()
            if args.json:
                print(json.dumps(summary, indent=2, ensure_ascii=False))
            else:
                print(format_scan_table(summary))
    return 0


def cmd_demo_dataset(args: argparse.Namespace) -> int:
    from .demo_dataset import build_demo_dataset

    try:
        path = build_demo_dataset(args.dir, force=args.force)
    except FileExistsError as exc:
        raise CliError(str(exc)) from None
    print(path)
    return 0


def cmd_duplicates(args: argparse.Namespace) -> int:
    from .duplicates import find_duplicates
    from .scanner import scan_sync, LayoutError

    try:
        result = scan_sync(args.root)
    except LayoutError as exc:
        raise CliError(str(exc)) from None
    groups = []
    for event in find_duplicates(result, threshold=args.threshold, near=not args.exact_only):
        if isinstance(event, Progress) and event.total:
            _progress_line(event.done, event.total, "Hashing")
        elif isinstance(event, Finished):
            groups = event.result
    if args.json:
        print(json.dumps({"groups": [g.to_dict() for g in groups],
                          "leaking_groups": sum(g.leaks for g in groups)}, indent=2, ensure_ascii=False))
        return 0
    print(f"{len(groups)} duplicate group(s), {sum(g.leaks for g in groups)} leaking across splits, "
          f"{sum(g.conflicting for g in groups)} with conflicting labels")
    for g in groups[:100]:
        flags = ", ".join(f for f, on in (("LEAKAGE", g.leaks), ("conflicting labels", g.conflicting)) if on)
        print(f"\n[{g.kind}{', distance <= ' + str(g.max_distance) if g.kind == 'near' else ''}] {flags}")
        for p in g.paths:
            print(f"  {p}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="main.py",
        description="BalanceLab: train image classifiers on imbalanced ImageFolder datasets. "
        "Run without a command to open the desktop app.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("scan", help="inspect an ImageFolder dataset: counts, imbalance, problems")
    p.add_argument("root", help="dataset folder (class sub-folders, optionally inside train/val/test)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--workers", type=int, default=None, help="decode-verification processes (default: up to 4)")
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("duplicates", help="exact and near-duplicate images, and leakage across splits")
    p.add_argument("root")
    p.add_argument("--threshold", type=int, default=10, help="max differing bits of the 256-bit dHash for near duplicates")
    p.add_argument("--exact-only", action="store_true", help="content-hash duplicates only (no decoding)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_duplicates)

    p = sub.add_parser("demo-dataset", help="write the long-tailed digits demo dataset")
    p.add_argument("dir", nargs="?", default=None, help="target folder (default: the BalanceLab data folder)")
    p.add_argument("--force", action="store_true", help="rebuild an existing demo")
    p.set_defaults(func=cmd_demo_dataset)

    from . import cli_training

    cli_training.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and similar
        return 0
