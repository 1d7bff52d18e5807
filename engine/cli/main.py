"""Headless command line: ``python main.py <command>``. Calls the same engine functions as the GUI."""
from __future__ import annotations

import os
import sys
import traceback
from typing import Sequence
from balancelab.engine.cli.common import (CliError, OneLineParser, check_argv, float_range, int_between, one_line,
                                         run_folder)
from balancelab.engine.cli.data_commands import cmd_demo_dataset, cmd_duplicates, cmd_scan
from balancelab.engine.cli import baseline_commands, ensemble_commands, journal_commands, recipe_commands
from balancelab.engine.core.refusals import is_refusal
from balancelab.engine.data.duplicates import DEFAULT_EMBEDDING_DISTANCE, DEFAULT_THRESHOLD


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="balancelab" if os.path.basename(sys.argv[0]) == "balancelab" else "main.py",  # how it was started
        description="BalanceLab: train image classifiers on imbalanced ImageFolder datasets. "
        "Run without a command to open the desktop app.",
    )
    parser.add_argument("--debug", action="store_true", help="print the full traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")  # sub-parsers are OneLineParsers too

    p = sub.add_parser("scan", help="inspect an ImageFolder dataset: counts, imbalance, problems")
    p.add_argument("root", help="dataset folder (class sub-folders, optionally inside train/val/test)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--workers", type=int_between(1, 64), default=None, help="processes for the header look and the decode pass (default: every core)")
    p.add_argument("--quick", action="store_true", help="headers only: classes, counts and structural problems in seconds; "
                   "skips the deep check (decoding every file once, which also fills the training cache)")
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("duplicates", help="exact and near-duplicate images, and leakage across splits")
    p.add_argument("root", help="dataset folder")
    p.add_argument("--threshold", type=int_between(0, 256), default=DEFAULT_THRESHOLD,
                   help="max differing bits of the 256-bit DCT perceptual hash (also against 1-pixel shifts) for near duplicates")
    p.add_argument("--exact-only", action="store_true", help="content-hash duplicates only (no decoding)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a list")
    p.add_argument("--run", type=run_folder, default=None,
                   help="a trained run folder: also pair images whose penultimate-layer embeddings are close "
                        "(cropped or shifted copies, train/test leakage the hash misses; graded look-alike)")
    p.add_argument("--max-distance", dest="max_distance", type=float_range(0.0, 2.0), default=DEFAULT_EMBEDDING_DISTANCE,
                   help="with --run: max cosine distance of two embeddings")
    p.set_defaults(func=cmd_duplicates)

    p = sub.add_parser("demo-dataset", help="write the long-tailed digits demo dataset")
    p.add_argument("dir", nargs="?", default=None, help="target folder (default: the BalanceLab data folder)")
    p.add_argument("--force", action="store_true", help="rebuild an existing demo; one that holds changes (curation, "
                   "a journal, added files) is kept beside it under a new name, never deleted")
    p.set_defaults(func=cmd_demo_dataset)

    from balancelab.engine.cli import training_parsers

    training_parsers.add_commands(sub)
    journal_commands.add_commands(sub)
    recipe_commands.add_commands(sub)
    ensemble_commands.add_commands(sub)
    baseline_commands.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure is one ``error:`` line on stderr: exit 2 for bad input or
    an unusable file, 1 for an unexpected error (``--debug`` prints its traceback)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    debug = "--debug" in argv
    try:
        check_argv(argv)
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 0
        return int(args.func(args) or 0)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except CliError as exc:
        if debug and exc.detail:
            print(exc.detail, file=sys.stderr)
        return _error(exc, 2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and similar
        _silence_stdout()
        return 0
    except OSError as exc:  # an unreadable or unwritable path the user named
        return _error(exc, 2)
    except RecursionError:  # json and pickle readers recurse per nesting level: a crafted file
        return _error("a file it read is nested too deeply to be a BalanceLab file (damaged or crafted)", 2)
    except Exception as exc:
        if is_refusal(exc):  # a refusal some command let through unconverted: still bad input
            return _error(exc, 2)
        # a bug: still one line, the traceback on request
        if debug:
            traceback.print_exc()
        return _error(f"unexpected {exc.__class__.__name__}: {exc} (run with --debug for the traceback)", 1)


def _error(message: object, code: int) -> int:
    print(f"error: {one_line(message)}", file=sys.stderr)
    return code


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush is quiet."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
