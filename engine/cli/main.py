"""Headless command line: ``python main.py <command>``. Calls the same engine functions as the GUI."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence
from balancelab.engine.cli.common import CliError
from balancelab.engine.cli.data_commands import cmd_demo_dataset, cmd_duplicates, cmd_scan



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

    from balancelab.engine.cli import training_commands as cli_training

    cli_training.add_commands(sub)
    from balancelab.engine.cli.recipe_commands import add_commands as add_recipe_commands; add_recipe_commands(sub)  # noqa: E702
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
