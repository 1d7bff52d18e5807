"""CLI commands for one-click training: ``recommend`` (the proposed recipe) and ``search`` (find the best one)."""
from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys

from balancelab.engine.cli.common import (CliError, ProgressRenderer, device_name, float_range, int_between,
                                          output_folder, print_json, whole_number)
from balancelab.engine.core.events import Failed, Finished
from balancelab.engine.data.scanner import LayoutError, scan_sync
from balancelab.engine.experiments.recipe import RecipeError, recommend
from balancelab.engine.experiments.recipe_search import (DEFAULT_BUDGET, MAX_BUDGET, SCORE_LABEL, SearchRound,
                                                          SearchStep, search)


def cmd_recommend(args: argparse.Namespace) -> int:
    try:
        recipe = recommend(scan_sync(args.root))
    except (LayoutError, RecipeError) as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print_json(recipe.to_dict())
        return 0
    print(f"proposed recipe: {recipe.model}, strategy {recipe.strategy}, {recipe.epochs} epochs, batch "
          f"{recipe.batch_size}, {recipe.image_size} px, lr {recipe.lr:g}")
    print(f"why: {recipe.reason}")
    print("train it: main.py train --data " + shlex.quote(args.root) + " --out RUN_DIR "
          f"--model {recipe.model} --strategy {recipe.strategy} --epochs {recipe.epochs} "
          f"--batch-size {recipe.batch_size} --image-size {recipe.image_size} --lr {recipe.lr:g}")
    return 0


def _print_board(stream, ev: SearchRound, heading: str) -> None:
    print(f"\n{heading} (epochs used {ev.epochs_used} of {ev.epochs_budget}) — {SCORE_LABEL}", file=stream)
    for i, c in enumerate(ev.leaderboard, 1):
        score = f"{c.score * 100:6.2f} %" if c.score is not None else "      - "
        print(f"  {i:>2}. {c.strategy:<36} {score}  {c.epochs:>3} ep  {c.state}{'  ' + c.message if c.message else ''}",
              file=stream)


def cmd_search(args: argparse.Namespace) -> int:
    candidates = None if args.candidates is None else [c.strip() for c in args.candidates.split(",") if c.strip()]
    if candidates == []:
        raise CliError("--candidates names no strategy; leave it out for the registry's candidates")
    settings = {k: getattr(args, k) for k in ("model", "epochs", "image_size", "batch_size", "device")
                if getattr(args, k) is not None}
    out = sys.stderr if args.json else sys.stdout
    shown_round, last, result = -1, None, None
    renderer = ProgressRenderer()  # the one CLI progress renderer: bars on a terminal, lines when piped
    for ev in search(args.root, args.budget, candidates, args.seed, out=args.out, split_seed=args.split_seed,
                     **settings):
        if isinstance(ev, Failed):
            raise CliError(ev.message)
        if isinstance(ev, Finished):
            result = ev.result
        elif isinstance(ev, SearchRound):
            if ev.round > shown_round and last is not None and shown_round >= 0:
                # the next round's first board: it already marks who was dropped after this one
                _print_board(out, ev, f"after round {shown_round + 1} of {last.rounds} ({last.target_epochs} epochs)")
            if ev.round > shown_round:
                shown_round = ev.round
            last = ev
        elif isinstance(ev, SearchStep):
            renderer.render(ev.event, prefix=f"[round {ev.round + 1}] {ev.strategy}: ")
    renderer.close()
    if result is None or result.winner is None:
        raise CliError("the search was stopped before it found a winner")
    _print_board(out, last, f"final leaderboard ({len(result.plan)} rounds)")
    if args.json:
        print_json(dataclasses.asdict(result))
        return 0
    if result.skipped:
        print(f"\nnot screened within the budget: {', '.join(result.skipped)} (raise --budget to include them)")
    print(f"\nwinner: {result.winner}, trained to {result.full_epochs} epochs in {result.winner_run_dir}")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("recommend", help="propose a recipe (model, strategy, epochs, batch size) from the training split")
    p.add_argument("root", help="dataset folder")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_recommend)

    p = sub.add_parser("search", help="find the best recipe: successive halving over strategies within a budget")
    p.add_argument("root", help="dataset folder")
    p.add_argument("--budget", type=float_range(0.1, MAX_BUDGET), default=DEFAULT_BUDGET,
                   help="in full trainings of the proposed recipe (at least 1; below it the search says why)")
    p.add_argument("--candidates", default=None, help="comma-separated strategies (default: built from the registry)")
    p.add_argument("--out", default=None, type=output_folder, help="folder for the runs (default: the dataset's runs folder)")
    p.add_argument("--seed", type=whole_number, default=0, help="seed of every candidate's training")
    p.add_argument("--split-seed", dest="split_seed", type=whole_number, default=0,
                   help="seed of the train/validation hold-out shared by every candidate")
    p.add_argument("--model", default=None, help="override the proposed model (default: the proposed one)")
    p.add_argument("--epochs", type=int_between(1, 1000), default=None, help="override the proposed full length (default: the proposed one)")
    p.add_argument("--image-size", dest="image_size", type=int_between(1, 4096), default=None,
                   help="override the proposed image size (default: the proposed one)")
    p.add_argument("--batch-size", dest="batch_size", type=int_between(1, 65536), default=None,
                   help="override the proposed batch size (default: the proposed one)")
    p.add_argument("--device", default=None, type=device_name, help="auto, cpu, cuda, cuda:N or mps (default: the proposed recipe's)")
    p.add_argument("--json", action="store_true", help="print the result as JSON (leaderboards go to stderr)")
    p.set_defaults(func=cmd_search)
