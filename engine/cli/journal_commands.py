"""Commands on a dataset's journal: journal (list), relabel, exclude, undo, recover.

The same :class:`Journal` the app uses, so the CLI and an open window can work on one dataset
at once (one change at a time; the other waits briefly or gets a one-line refusal).
"""
from __future__ import annotations

import argparse

from balancelab.engine.cli.common import CliError, one_line, print_json, printable
from balancelab.engine.data.journal import Action, Journal, JournalError


def _action_dict(action: Action) -> dict:
    return {"id": action.id, "kind": action.kind, "state": action.state, "src": action.src,
            "dst": action.dst, "time": action.time, "note": action.note}


def _action_line(action: Action) -> str:
    return f"{printable(action.id)}  {action.kind:<7}  {action.state:<11}  {printable(action.src)} -> {printable(action.dst)}"


def _open(root: str) -> Journal:
    try:
        return Journal(root)
    except JournalError as exc:
        raise CliError(str(exc)) from None


def _print_actions(args: argparse.Namespace, journal: Journal, actions: list[Action], empty: str) -> None:
    if args.json:
        print_json({"actions": [_action_dict(a) for a in actions], "problems": journal.problems})
        return
    for action in actions:
        print(_action_line(action))
    if not actions:
        print(empty)
    for problem in journal.problems:
        print(f"warning: {one_line(problem)}")


def cmd_journal(args: argparse.Namespace) -> int:
    journal = _open(args.root)
    _print_actions(args, journal, journal.actions, "the journal is empty")
    return 0


def _change(args: argparse.Namespace, change) -> int:
    journal = _open(args.root)
    try:
        result = change(journal)
    except JournalError as exc:
        raise CliError(str(exc)) from None
    actions = result if isinstance(result, list) else [result]
    _print_actions(args, journal, actions, "nothing to recover")
    return 0


def cmd_relabel(args: argparse.Namespace) -> int:
    return _change(args, lambda j: j.relabel(args.path, args.label, new_class=args.new_class))


def cmd_exclude(args: argparse.Namespace) -> int:
    return _change(args, lambda j: j.exclude(args.path))


def cmd_undo(args: argparse.Namespace) -> int:
    return _change(args, lambda j: j.undo(args.id))


def cmd_recover(args: argparse.Namespace) -> int:
    return _change(args, lambda j: j.recover())


def add_commands(sub) -> None:
    """Register the journal commands on the main parser's sub-parsers."""
    def command(name: str, help_text: str, func) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("root", help="dataset folder")
        p.set_defaults(func=func)
        return p

    p = command("journal", "list the dataset's journaled actions: id, kind, state, src -> dst", cmd_journal)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p = command("relabel", "move an image to another class folder (journaled, undoable)", cmd_relabel)
    p.add_argument("path", help="image path relative to the dataset folder")
    p.add_argument("label", metavar="CLASS", help="the new class (folder name)")
    p.add_argument("--new-class", dest="new_class", action="store_true",
                   help="create CLASS when the split has no such class folder yet")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p = command("exclude", "move an image to _excluded/ inside the dataset (journaled, undoable)", cmd_exclude)
    p.add_argument("path", help="image path relative to the dataset folder")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p = command("undo", "undo the last action, or the one with --id", cmd_undo)
    p.add_argument("--id", default=None, help="the action id, see 'journal' (default: the last undoable action)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p = command("recover", "finish or roll back actions a crash interrupted", cmd_recover)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
