"""Find the best recipe: a budgeted successive-halving search over strategies on the user's data.

Every candidate trains the proposed recipe with its own strategy, on one shared train/validation
hold-out and one seed. Round 0 trains every candidate for 1 epoch, each later round keeps the best
half and continues them (resume) to twice as many epochs, and the finalists are trained to the
recipe's full length, where the best one wins. Candidates are compared on their validation balanced accuracy *at the round's
epoch* (the rung value of ASHA / Hyperband), not on an earlier peak: a candidate that is slower to
start but still climbing (minority augmentation) must not lose to another's noisy first epoch.
For the same reason the last cut is made at full length when the budget allows: two finalists,
as long as that screens at most one candidate fewer than a single finalist would, and at least
three (or every candidate there is). On long-tailed MNIST (seed 0) plain oversampling led minority augmentation after 2 of 5
epochs and fell behind it on validation at 5. Candidates run with the full-length cosine
schedule and are paused after the round's epoch, so a promoted candidate continues where it
stopped instead of starting over, and the winner's folder is one ordinary full-length run.

The budget is counted in full trainings: epochs trained by all candidates / the recipe's epochs.
When the candidates cannot all be screened within it, the first ones (in the given order; by
default the order of the MNIST-LT measurements) are kept and the rest reported as skipped.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Iterator

from balancelab.engine.core.atomic import write_json_atomic
from balancelab.engine.core.events import Event, EventStream, Failed, Finished, Progress, StopToken
from balancelab.engine.core.paths import new_run_dir
from balancelab.engine.data.scanner import scan_for_task
from balancelab.engine.data.splits import DataSplits, SplitError, make_splits
from balancelab.engine.experiments.compare import output_folder_problem
from balancelab.engine.experiments.recipe import MEASURED_MNIST_LT, RecipeError, recommend
from balancelab.engine.train.config import ConfigError, TrainConfig
from balancelab.engine.train.run import train
from balancelab.engine.train.run_events import EpochEnd
from balancelab.engine.train.strategies import StrategyError, components_on, expected_epoch_counts, parse_strategy

SCORE = "val_balanced_accuracy"
SCORE_LABEL = "validation balanced accuracy"  # how the leaderboards name SCORE


class SearchError(ValueError):
    """A search that cannot start (bad budget, no candidates); the message says what to change."""


@dataclass
class Candidate:
    """One strategy on the leaderboard. ``state``: waiting, training, kept, dropped, failed, stopped, winner."""

    strategy: str
    state: str = "waiting"
    epochs: int = 0  # epochs trained so far
    score: float | None = None  # validation balanced accuracy at its latest epoch (what a round compares)
    run_dir: str = ""
    message: str = ""


@dataclass
class SearchRound(Event):
    """The live leaderboard: sent when a round starts, when a candidate starts or ends, and at the end."""

    round: int  # 0-based
    rounds: int
    target_epochs: int  # epochs the candidates of this round are trained to
    leaderboard: list[Candidate]  # copies, best first
    epochs_used: int
    epochs_budget: int
    skipped: list[str] = field(default_factory=list)


@dataclass
class SearchStep(Event):
    """An event of one candidate's run (Progress, TrainStarted, BatchProgress, EpochEnd…)."""

    strategy: str
    round: int
    event: Event

    @property
    def urgent(self) -> bool:
        """A consumer that throttles may drop batch progress, never a run starting or an epoch ending."""
        from balancelab.engine.train.run_events import BatchProgress

        if isinstance(self.event, (BatchProgress, Progress)):
            return bool(getattr(self.event, "urgent", False))
        return True


@dataclass
class SearchResult:
    leaderboard: list[Candidate]
    winner: str | None
    winner_run_dir: str | None
    epochs_used: int
    epochs_budget: int
    full_epochs: int
    plan: list[tuple[int, int]]  # (candidates, target epochs) per round
    skipped: list[str]
    config: dict  # the shared settings (the winner's run folder has its own config.json)
    stopped: bool = False


def default_candidates() -> list[str]:
    """Plain training, every sampler, weighting and loss form of the registry, and each sampler that
    repeats minority images combined with minority-augment; ordered by the MNIST-LT measurements."""
    names = ["none"] + [c.name for axis in ("sampler", "weighting", "loss") for c in components_on(axis)]
    names += [f"{s.name}+minority-augment" for s in components_on("sampler")
              if expected_epoch_counts(parse_strategy(s.name), [100, 10])[1] > 10]
    names = [parse_strategy(n).name for n in names]
    return sorted(names, key=lambda n: -MEASURED_MNIST_LT.get(n, float("-inf")))


def halving_plan(n_candidates: int, full_epochs: int, finalists: int = 1) -> list[tuple[int, int]]:
    """(candidates, epochs) per round: n at 1 epoch, the best half at 2, 4…, the finalists at full."""
    plan, n, epochs = [], n_candidates, 1
    while n > finalists and epochs < full_epochs:
        plan.append((n, epochs))
        n, epochs = max(finalists, n // 2), min(full_epochs, epochs * 2)
    plan.append((n, full_epochs))
    return plan


def plan_cost(plan: list[tuple[int, int]]) -> int:
    """Epochs trained by a plan: promoted candidates continue, so a round adds only its new epochs."""
    done, total = 0, 0
    for n, epochs in plan:
        total += n * (epochs - done)
        done = epochs
    return total


def _below_one_training(trainings: float) -> SearchError:
    return SearchError(f"a budget of {trainings:.3g} trainings cannot train even one candidate to full length; "
                       "use at least 1")


def fit_candidates(candidates: list[str], full_epochs: int, budget_epochs: int, finalists: int = 1) -> list[str]:
    """The longest prefix of ``candidates`` whose plan fits in ``budget_epochs``."""
    if budget_epochs < full_epochs:
        raise _below_one_training(budget_epochs / full_epochs)
    k = len(candidates)
    while k > 1 and plan_cost(halving_plan(k, full_epochs, finalists)) > budget_epochs:
        k -= 1
    return candidates[:k]


def plan_search(candidates: list[str], full_epochs: int, budget_epochs: int) -> tuple[list[str], list[tuple[int, int]]]:
    """The candidates screened and the rounds: two finalists at full length where that costs at most
    one screened candidate (and still screens three, or every candidate there is), else one."""
    single = fit_candidates(candidates, full_epochs, budget_epochs)
    double = fit_candidates(candidates, full_epochs, budget_epochs, finalists=2)
    if len(double) >= min(len(candidates), max(3, len(single) - 1)):
        return double, halving_plan(len(double), full_epochs, 2)
    return single, halving_plan(len(single), full_epochs)


class _PauseToken(StopToken):
    """Stops one run when the user stops the search, or after the round's last epoch (a pause)."""

    def __init__(self, outer: StopToken) -> None:
        super().__init__()
        self._outer = outer

    @property
    def requested(self) -> bool:
        return self._outer.requested or super().requested


def _ranked(board: dict[str, Candidate]) -> list[Candidate]:
    """Furthest trained first (a score is only comparable at the same epoch), then by score: a
    candidate dropped after a good first epoch never reads above the full-length finalists."""
    order = list(board)
    rows = sorted(board.values(), key=lambda c: (c.score is None, -c.epochs, -(c.score or 0.0), order.index(c.strategy)))
    return [dataclasses.replace(c) for c in rows]


def _run_folder(root: str, out: str | None, strategy: str) -> str:
    label = strategy.replace("+", "_")
    if out is None:
        return str(new_run_dir(root, f"search-{label}"))
    path = os.path.join(out, label)
    os.makedirs(path)  # refuses an existing folder: a search never writes over an earlier run
    return path


def _train_candidate(cand: Candidate, base: TrainConfig, target: int, scan, splits: DataSplits, stop: StopToken,
                     round_no: int, used: list[int]) -> Iterator[SearchStep]:
    """Train (or continue) one candidate to ``target`` epochs; forwards its events as SearchStep."""
    cfg = dataclasses.replace(base, out=cand.run_dir, strategy=cand.strategy, resume=cand.epochs > 0)
    pause = _PauseToken(stop)
    for ev in train(cfg, pause, scan_result=scan, splits=splits):
        if isinstance(ev, Failed):
            cand.state, cand.message = "failed", ev.message
            return
        if isinstance(ev, EpochEnd):
            used[0] += 1
            cand.epochs = ev.epoch
            cand.score = ev.entry[SCORE]
            if target <= ev.epoch < cfg.epochs:
                pause.request()  # the round's last epoch: pause here, a later round resumes
        if not isinstance(ev, Finished):
            yield SearchStep(cand.strategy, round_no, ev)


#: The search's budget when none is given, counted in full trainings of the proposed recipe; the
#: CLI, the GUI's "Find the best recipe" and the bench all start from it.
DEFAULT_BUDGET = 3.0
MAX_BUDGET = 100.0


def search(root: str, budget_trainings: float = DEFAULT_BUDGET, candidates: list[str] | None = None, seed: int = 0,
           stop: StopToken | None = None, out: str | None = None, split_seed: int = 0,
           **settings) -> EventStream[SearchResult | None]:
    """Yield SearchRound / SearchStep events, then Finished(SearchResult) or Failed; a stop during
    the scan ends with a stopped Finished(None).

    ``settings`` override the proposed recipe (model, epochs, image_size, batch_size, device…).
    """
    stop = stop or StopToken()
    try:
        names = [parse_strategy(c).name for c in (candidates or default_candidates())]
        if len(set(names)) != len(names):
            raise SearchError("a candidate is listed twice")
        unknown = set(settings) - {f.name for f in dataclasses.fields(TrainConfig)}
        if unknown:
            raise SearchError(f"unknown setting {sorted(unknown)[0]!r}")
        if not budget_trainings > 0:
            raise SearchError("the budget must be a positive number of trainings")
        if budget_trainings < 1:
            raise _below_one_training(budget_trainings)
        problem = output_folder_problem(out, root, "search") if out is not None else None
        if problem:
            raise SearchError(problem)
    except (SearchError, StrategyError) as exc:
        yield Failed(str(exc))
        return
    scan = yield from scan_for_task(root, stop)
    if scan is None:
        return
    try:
        val_fraction = settings.get("val_fraction", TrainConfig.val_fraction)
        recipe = recommend(scan, val_fraction, split_seed)
        splits = make_splits(scan, val_fraction, split_seed)
        base = recipe.config(root, "", **{"seed": seed, "split_seed": split_seed, **settings})
        base.validate()
        full = base.epochs
        budget = int(budget_trainings * full + 1e-9)
        chosen, plan = plan_search(names, full, budget)
    except (RecipeError, SplitError, ConfigError, SearchError) as exc:
        yield Failed(str(exc))
        return
    skipped = names[len(chosen):]
    board = {s: Candidate(s) for s in chosen}
    used = [0]

    def board_event(r: int) -> SearchRound:
        return SearchRound(r, len(plan), plan[r][1], _ranked(board), used[0], budget, skipped)

    alive = list(chosen)
    for r, (n, target) in enumerate(plan):
        ranked = [c.strategy for c in _ranked(board) if c.strategy in alive and c.state != "failed"]
        alive = ranked[:n] if r else [s for s in alive]
        for s in ranked[n:] if r else []:
            board[s].state = "dropped"
        yield board_event(r)
        for s in alive:
            if stop.requested:
                break
            cand = board[s]
            cand.state = "training"
            if not cand.run_dir:
                try:
                    cand.run_dir = _run_folder(root, out, s)
                except OSError as exc:
                    yield Failed(f"cannot create the run folder for {s}: {exc.strerror or exc}")
                    return
            yield board_event(r)
            yield from _train_candidate(cand, base, target, scan, splits, stop, r, used)
            if cand.state != "failed":
                cand.state = "kept" if not stop.requested else "stopped"
            yield board_event(r)
        alive = [s for s in alive if board[s].state == "kept"]
        if stop.requested or not alive:
            break

    winner = None
    if alive and not stop.requested:
        winner = board[max(alive, key=lambda s: (board[s].score or 0.0, -chosen.index(s)))]
        winner.state = "winner"
    if not alive and not stop.requested:
        first = next(c for c in board.values() if c.state == "failed")
        yield Failed(f"every candidate failed; {first.strategy}: {first.message}")
        return
    result = SearchResult(_ranked(board), winner.strategy if winner else None, winner.run_dir if winner else None,
                          used[0], budget, full, plan, skipped, dataclasses.replace(base, strategy="").to_dict(),
                          stopped=stop.requested)
    yield board_event(min(r, len(plan) - 1))
    record = dataclasses.asdict(result)
    for folder in filter(None, (out, result.winner_run_dir)):
        write_json_atomic(os.path.join(folder, "search.json"), record)
    yield Finished(result, stopped=stop.requested)
