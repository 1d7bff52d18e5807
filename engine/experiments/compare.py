"""Strategy comparison: several strategies x seeds on identical splits, one table.

The train/validation hold-out is made once (``split_seed``) and shared by every run, so the
differences come from the strategies and the training seeds, not from different data.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from balancelab.engine.train.config import TrainConfig
from balancelab.engine.data.splits import VAL_FRACTION, make_splits
from balancelab.engine.core.events import EventStream, Failed, Finished, RunStep, StopToken
from balancelab.engine.core.atomic import write_csv_atomic, write_json_atomic
from balancelab.engine.core.paths import RUN_MARKER
from balancelab.engine.core.safe_paths import lies_inside
from balancelab.engine.train.run_folder import read_state
from balancelab.engine.data.scanner import scan_for_task
from balancelab.engine.train.strategies import StrategyError, parse_strategy
from balancelab.engine.train.run import train
from balancelab.engine.core.metrics import HEADLINE
from balancelab.engine.experiments.knn_baseline import BASELINES

COMPARE_METRICS = (*HEADLINE, "minority_recall")  # the registry's metrics plus the rarest class's recall
#: The columns of a comparison table (CLI and the Compare tab), with their labels from the metric registry.
TABLE_COLUMNS = {**{k: HEADLINE[k].label for k in ("balanced_accuracy", "macro_f1")}, "minority_recall": "Rarest-class recall"}


@dataclass
class CompareStep(RunStep):
    """An event of one of the runs, tagged with which run it belongs to (label: "strategy seed N")."""

    strategy: str = ""
    seed: int = 0


def minority_recall(metrics: dict) -> float:
    """Recall of the class with the fewest training images (mean over ties)."""
    counts = np.asarray(metrics["train_counts"])
    present = counts > 0
    rarest = np.flatnonzero(present & (counts == counts[present].min()))
    return float(np.mean([metrics["per_class"][i]["recall"] for i in rarest]))


def baseline_row(name: str, metrics: dict) -> dict:
    """A baseline's row: the same metrics as a run's, no seed or run folder, and what it ran."""
    return {"strategy": name, "seed": None, "run_dir": "", **{m: metrics[m] for m in HEADLINE},
            "minority_recall": minority_recall(metrics), "evaluated_on": metrics["evaluated_on"],
            "detail": f"{metrics['features']}, k={metrics['k']} (chosen on validation)", "k": metrics["k"]}


def summarize(rows: list[dict]) -> list[dict]:
    out = []
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        sel = [r for r in rows if r["strategy"] == strategy]
        entry = {"strategy": strategy, "runs": len(sel)}
        if sel[0].get("detail"):  # a baseline says what it ran (features, chosen k)
            entry["detail"] = sel[0]["detail"]
        for m in COMPARE_METRICS:
            values = np.array([r[m] for r in sel])
            entry[f"{m}_mean"] = float(values.mean())
            entry[f"{m}_std"] = float(values.std())
        out.append(entry)
    return out


DEFAULT_SEEDS = 3  # seeds per strategy: the fewest that give a spread worth showing
#: What a comparison starts from when the user picks nothing else: no remedy, re-sampling, a loss form
DEFAULT_STRATEGIES = ("none", "balanced-sampler", "balanced-softmax")


def scored_on(rows: list[dict]) -> str:
    """One sentence on what a comparison's figures are: the split they come from, and when it is
    the validation split that also chose each run's checkpoint, that they flatter every row alike."""
    splits = sorted({r.get("evaluated_on") for r in rows if isinstance(r.get("evaluated_on"), str)})
    if not splits:
        return ""
    if splits == ["val"]:
        return ("Scores on each run's validation split, which also chose its checkpoint (the dataset has no test "
                "split): fair between rows, a little optimistic in absolute terms.")
    return f"Scores on the {' and '.join(splits)} split{'s' if len(splits) > 1 else ''}, held out from training."


def output_folder_problem(out: str, data: str, purpose: str = "comparison") -> str | None:
    """Why ``out`` cannot take the runs and files of an experiment (a comparison, a search), or None:
    it must be a new or empty folder outside the dataset, so no file of the user's is ever replaced."""
    if lies_inside(out, data):
        return f"the {purpose} folder {out} is inside the dataset; choose a folder outside it"
    if os.path.lexists(out):
        if not os.path.isdir(out) or os.path.islink(out):
            return f"{out} exists and is not a folder"
        try:
            held = os.listdir(out)
            reserved = held == [RUN_MARKER] and read_state(out) == "reserved"  # the app's fresh folder
            if held and not reserved:
                return f"{out} already holds files; give a new or empty folder for the {purpose}"
        except OSError as exc:
            return f"cannot read {out}: {exc.strerror or exc}"
    return None


def compare(data: str, strategies: list[str], seeds: list[int], out: str, stop: StopToken | None = None,
            split_seed: int = 0, baselines: tuple[str, ...] = (), baseline_options: dict | None = None,
            **config) -> EventStream[dict]:
    """Yield CompareStep events, then Finished({"rows": [...], "summary": [...]}).

    ``baselines`` (names in knn_baseline.BASELINES) add one row each, on the same splits and with
    the same metrics; ``baseline_options`` go to them (e.g. ``features_from`` for knn)."""
    stop = stop or StopToken()
    if not (strategies or baselines) or (strategies and not seeds):
        yield Failed("a comparison needs at least one strategy and one seed")
        return
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        yield Failed(f"unknown baseline {unknown[0]!r}; choose one of: {', '.join(BASELINES)}")
        return
    try:
        for s in strategies:
            parse_strategy(s)  # fail before any training on a typo
    except StrategyError as exc:
        yield Failed(str(exc))
        return
    problem = output_folder_problem(out, data)
    if problem:
        yield Failed(problem)
        return
    result = yield from scan_for_task(data, stop)
    if result is None:
        return
    splits = make_splits(result, config.get("val_fraction", VAL_FRACTION), split_seed)
    total = len(strategies) * len(seeds) + len(baselines)
    rows = []
    for i, (strategy, seed) in enumerate((s, seed) for s in strategies for seed in seeds):
        if stop.requested:
            break
        run_dir = os.path.join(out, f"{strategy.replace('+', '_')}-seed{seed}")
        cfg = TrainConfig(data=data, out=run_dir, strategy=strategy, seed=seed, split_seed=split_seed, **config)
        metrics = None
        for ev in train(cfg, stop, scan_result=result, splits=splits):
            if isinstance(ev, Failed):
                yield Failed(f"{strategy} (seed {seed}): {ev.message}", ev.detail)
                return
            if isinstance(ev, Finished):
                metrics = ev.result.metrics
            yield CompareStep(f"{strategy} seed {seed}", i, total, ev, strategy, seed)
        if not metrics:
            break
        rows.append({"strategy": strategy, "seed": seed, "run_dir": run_dir,
                     **{m: metrics[m] for m in COMPARE_METRICS if m != "minority_recall"},
                     "minority_recall": minority_recall(metrics), "evaluated_on": metrics["evaluated_on"]})
    for j, name in enumerate(baselines):
        if stop.requested:
            break
        events = BASELINES[name].run(data, scan_result=result, splits=splits, stop=stop, model=config.get("model", "mnist-classic"),
                                     image_size=config.get("image_size", 0), **(baseline_options or {}))
        metrics = None
        for ev in events:
            if isinstance(ev, Failed):
                yield Failed(f"{name}: {ev.message}", ev.detail)
                return
            if isinstance(ev, Finished):
                metrics = ev.result
            yield CompareStep(name, len(rows) + j, total, ev, name, 0)
        if not metrics:
            break
        rows.append(baseline_row(name, metrics))
    summary = summarize(rows)
    os.makedirs(out, exist_ok=True)
    write_json_atomic(os.path.join(out, "comparison.json"), {"data": os.path.abspath(data), "split_seed": split_seed,
                                                              "config": config, "rows": rows, "summary": summary})
    header = ["strategy", "runs"] + [f"{m}_{k}" for m in COMPARE_METRICS for k in ("mean", "std")]
    write_csv_atomic(os.path.join(out, "comparison.csv"), header,
                     ([s[h] if isinstance(s[h], (int, str)) else f"{s[h]:.6f}" for h in header] for s in summary))
    yield Finished({"rows": rows, "summary": summary}, stopped=stop.requested)
