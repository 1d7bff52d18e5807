"""What every command shares: the user-error exception and the terminal progress line."""
from __future__ import annotations

import sys


class CliError(Exception):
    """A user-facing error: printed as one line on stderr, exit code 2."""


def progress_line(done: int, total: int, label: str, extra: str = "") -> None:
    if not sys.stderr.isatty():
        return
    width = 30
    filled = int(width * done / total) if total else 0
    sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {extra}   ")
    if total and done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def text_bar(count: int, largest: int, width: int = 40) -> str:
    return "█" * max(1 if count else 0, round(width * count / largest)) if largest else ""
