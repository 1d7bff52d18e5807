"""An ensemble of finished runs: their class probabilities averaged (optionally weighted by each
run's validation balanced accuracy), written as a new run folder holding the members.

The members are copied into ``OUT/members/<name>/`` (hard links where the file system allows), so
the ensemble keeps working when a member run is deleted or resumed later, and its member
references can be confined to its own folder when read back. Members must share the class list,
the input (image size and channels, hence the preprocessing) and the evaluated images (the same
test split); anything else is refused with one sentence before a file is written.
"""
from __future__ import annotations

import os
import re
import shutil
from typing import Iterator

from balancelab.engine.core.events import EventStream, Failed, Finished, Progress, StopToken
from balancelab.engine.core.paths import mark_run_folder
from balancelab.engine.core.safe_paths import is_regular_file
from balancelab.engine.results.inference import load_usable_model
from balancelab.engine.train.checkpoints import CheckpointError
from balancelab.engine.train.ensemble_run import finish_ensemble, member_predictions
from balancelab.engine.train.run_events import RunResult
from balancelab.engine.train.run_folder import (BEST, CONFIG, HISTORY, MEMBERS, MAX_MEMBERS, METRICS, PREDICTIONS,
                                                SKIPPED, SPLIT, RunError, RunFolderWriter, discard_reservation, read_config,
                                                read_ensemble, read_metrics, read_split, require_complete)

COPIED = (CONFIG, SPLIT, METRICS, PREDICTIONS, BEST, HISTORY, SKIPPED)  # last.pt stays behind: never resumed


def validation_score(metrics: dict, run_dir: str) -> float:
    """The run's validation balanced accuracy at its best epoch: the weight of a weighted ensemble."""
    history = [h for h in metrics.get("history", []) if isinstance(h.get("val_balanced_accuracy"), (int, float))]
    best = [h for h in history if h.get("epoch") == metrics.get("best_epoch")] or history
    if not best:
        raise RunError(f"run {os.path.basename(run_dir)} has no validation scores to weight it by; "
                       "build the ensemble without --weighted")
    score = float(max(h["val_balanced_accuracy"] for h in best))
    if not 0 < score <= 1:
        raise RunError(f"run {os.path.basename(run_dir)} has a validation balanced accuracy of {score}; cannot weight by it")
    return score


def _describe(run_dir: str) -> dict:
    """What a member must agree on, read (and validated) from its folder."""
    require_complete(run_dir)
    if read_ensemble(run_dir) is not None:
        raise RunError(f"run {os.path.basename(run_dir)} is itself an ensemble; list its members instead")
    try:  # built, loaded and run once, not only read: a member whose model cannot be used is refused before writing
        _, state = load_usable_model(run_dir)
    except CheckpointError as exc:
        raise RunError(str(exc)) from None
    split = read_split(run_dir)
    return {"dir": run_dir, "config": read_config(run_dir), "metrics": read_metrics(run_dir),
            "classes": list(state["classes"]), "size": int(state["image_size"]), "channels": int(state["in_channels"]),
            "test": sorted(map(tuple, split["test"])) if split.get("test") else None}


def check_members(run_dirs: list[str]) -> list[dict]:
    """Each run described, or RunError naming the first disagreement."""
    if not run_dirs:
        raise RunError("an ensemble needs at least one run")
    if len(run_dirs) > MAX_MEMBERS:
        raise RunError(f"an ensemble takes at most {MAX_MEMBERS} runs")
    real = [os.path.realpath(d) for d in run_dirs]
    if len(set(real)) != len(real):
        raise RunError("a run is listed twice")
    described = [_describe(d) for d in run_dirs]
    ref = described[0]
    name = os.path.basename(ref["dir"].rstrip(os.sep))
    for d in described[1:]:
        other = os.path.basename(d["dir"].rstrip(os.sep))
        if d["classes"] != ref["classes"]:
            raise RunError(f"run {other} was trained on other classes than run {name}; members must share the class list")
        if (d["size"], d["channels"]) != (ref["size"], ref["channels"]):
            raise RunError(f"run {other} reads {d['size']} px images with {d['channels']} channel(s), run {name} "
                           f"{ref['size']} px with {ref['channels']}; members must share the image size and preprocessing")
        if d["test"] != ref["test"] or d["metrics"].get("evaluated_on") != ref["metrics"].get("evaluated_on"):
            raise RunError(f"run {other} was evaluated on another test split than run {name}; "
                           "members must share the test set")
    member_predictions([d["dir"] for d in described])  # the stored predictions cover the same images
    return described


def _member_name(index: int, run_dir: str) -> str:
    base = re.sub(r"[^A-Za-z0-9._+-]+", "_", os.path.basename(os.path.abspath(run_dir)))[:80].strip(".") or "run"
    return f"{index + 1}-{base}"


def _copy_member(src: str, dest: str) -> None:
    os.makedirs(dest)
    for name in COPIED:
        path = os.path.join(src, name)
        if not is_regular_file(path) or os.path.islink(path):
            continue
        try:
            os.link(path, os.path.join(dest, name))  # runs are never edited in place: sharing the file is safe
        except OSError:
            shutil.copyfile(path, os.path.join(dest, name))
    mark_run_folder(dest, "complete")


def build_ensemble(run_dirs: list[str], out: str, weighted: bool = False, stop: StopToken | None = None) -> EventStream[RunResult]:
    """Generator of Progress events ending in Finished(RunResult) for the new ensemble run ``out``,
    or in Failed with one sentence (members that disagree, a damaged member, a full disk)."""
    try:
        yield from _build(run_dirs, out, weighted, stop or StopToken())
        return
    except (RunError, CheckpointError) as exc:
        message = str(exc)
    except OSError as exc:
        message = f"cannot write the ensemble {out}: {exc.strerror or exc}"
    discard_reservation(out)  # members refused before the folder was opened: the reserved folder goes
    yield Failed(message)


def _build(run_dirs: list[str], out: str, weighted: bool, stop: StopToken) -> Iterator:
    yield Progress("checking members", 0, len(run_dirs))
    described = check_members(run_dirs)
    weights = [validation_score(d["metrics"], d["dir"]) if weighted else 1.0 for d in described]
    yield Progress("checking members", len(run_dirs), len(run_dirs))
    ref = described[0]
    with RunFolderWriter(out) as folder:
        models = sorted({d["config"].get("model", "") for d in described})
        config = {**ref["config"], "out": folder.dir, "model": f"ensemble of {len(described)}: {', '.join(models)}",
                  "ensemble_of": [os.path.abspath(d["dir"]) for d in described], "weighted": weighted}
        folder.write_config(config)
        folder.write_split(read_split(ref["dir"]))
        folder.write_skipped([])
        folder.write_history([])
        names = []
        for i, d in enumerate(described):
            if stop.requested:
                yield Finished(RunResult(folder.dir, {}, stopped=True), stopped=True)
                return
            name = _member_name(i, d["dir"])
            try:
                _copy_member(d["dir"], os.path.join(folder.dir, MEMBERS, name))
            except OSError as exc:
                raise RunError(f"cannot copy run {d['dir']} into {folder.dir}: {exc.strerror or exc}") from None
            names.append(name)
            yield Progress("copying members", i + 1, len(described), name)
        strategies = sorted({d["config"].get("strategy", "none") for d in described})
        metrics = finish_ensemble(folder, names, weights, "average", weighted,
                                  [os.path.abspath(d["dir"]) for d in described], {
                                      "model": f"ensemble of {len(names)}: {', '.join(models)}",
                                      "strategy": f"ensemble of {len(names)}: {', '.join(strategies)}"
                                                  + (" (weighted)" if weighted else "")})
    yield Finished(RunResult(folder.dir, metrics))
