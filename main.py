"""BalanceLab entry point: the desktop app by default, headless commands with arguments.

    python main.py              # open the app
    python main.py --help       # list the commands
    balancelab scan DIR         # the same, as the installed console command
"""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        from balancelab.gui.app import run_app

        return run_app()
    from balancelab.engine.cli.main import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
