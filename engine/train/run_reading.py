"""Reading a run folder back: every file is untrusted input (a crafted or damaged split.json,
config.json, metrics.json or predictions.csv), so each reader checks types, class names and
paths, and turns anything wrong into a one-line :class:`RunError`. Part of the format that
:mod:`run_folder` owns; import these through it."""
from __future__ import annotations

import csv
import os

import numpy as np

from balancelab.engine.core import untrusted
from balancelab.engine.core.untrusted import is_finite_number
from balancelab.engine.core.safe_paths import is_regular_file
from balancelab.engine.core.metrics import HEADLINE
from balancelab.engine.train.run_folder import (CONFIG, ENSEMBLE, MAX_MEMBERS, MEMBERS, METRICS, PREDICTIONS, SPLIT,
                                                RunError, incomplete_reason, is_run_folder, run_file)

SCORES = tuple(HEADLINE)  # every headline metric must be a number in metrics.json


def read_json(path: str):
    """A run file's JSON value (types unchecked), or a one-line RunError."""
    try:
        return untrusted.read_json(path)
    except untrusted.UntrustedFileError as exc:
        if exc.missing:
            raise RunError(f"missing {os.path.basename(path)} in {os.path.dirname(path)}") from None
        raise RunError(str(exc)) from None


def _bad(run_dir: str, name: str, what: str) -> RunError:
    return RunError(f"{os.path.join(run_dir, name)} is damaged: {what}")


def safe_relative(path) -> bool:
    """A relative path that stays inside its root lexically (no absolute path, ``..`` or NUL)."""
    if not isinstance(path, str) or not path or "\x00" in path or os.path.isabs(path) or path.startswith(("/", "\\")):
        return False
    return ".." not in path.replace("\\", "/").split("/") and not (len(path) > 1 and path[1] == ":")


def class_name_ok(name) -> bool:
    """A class name usable as a folder name: no separators, not ``.``/``..``, not empty."""
    return isinstance(name, str) and name not in ("", ".", "..") and not any(c in name for c in "/\\\x00")


def read_config(run_dir: str) -> dict:
    """config.json with the keys results readers use checked (model, strategy, seed, data)."""
    from balancelab.engine.train.strategies import StrategyError, parse_strategy

    config = read_json(run_file(run_dir, CONFIG))
    if not isinstance(config, dict):
        raise _bad(run_dir, CONFIG, "not a JSON object")
    for key, types in (("model", str), ("strategy", str), ("data", str), ("sampling_strategy", (str, type(None)))):
        if key in config and not isinstance(config[key], types):
            raise _bad(run_dir, CONFIG, f"'{key}' has the wrong type")
    if not isinstance(config.get("seed", 0), int) or isinstance(config.get("seed"), bool):
        raise _bad(run_dir, CONFIG, "'seed' is not an integer")
    try:
        parse_strategy(config.get("strategy", "none"))
    except StrategyError as exc:
        raise _bad(run_dir, CONFIG, str(exc)) from None
    return config


def read_split(run_dir: str) -> dict:
    """split.json: classes (safe folder names) and [relative path, class] lists per split."""
    split = read_json(run_file(run_dir, SPLIT))
    if not isinstance(split, dict):
        raise _bad(run_dir, SPLIT, "not a JSON object")
    classes = split.get("classes")
    if not isinstance(classes, list) or not classes or not all(class_name_ok(c) for c in classes) \
            or len(set(classes)) != len(classes):
        raise _bad(run_dir, SPLIT, "'classes' must be a list of distinct class names")
    known = set(classes)
    for name in ("train", "val", "test"):
        items = split.get(name)
        if items is None and name == "test":
            continue
        if not isinstance(items, list):
            raise _bad(run_dir, SPLIT, f"'{name}' is not a list")
        for item in items:
            if not (isinstance(item, list) and len(item) == 2 and safe_relative(item[0]) and isinstance(item[1], str)
                    and item[1] in known):  # a list or dict as the class is unhashable: checked as text first
                raise _bad(run_dir, SPLIT, f"'{name}' has an entry outside the dataset or of an unknown class: "
                                           f"{str(item)[:80]}")
    return split


def read_metrics(run_dir: str) -> dict:
    """metrics.json with the fields every reader relies on checked."""
    metrics = read_json(run_file(run_dir, METRICS))
    if not isinstance(metrics, dict):
        raise _bad(run_dir, METRICS, "not a JSON object")
    classes = metrics.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise _bad(run_dir, METRICS, "'classes' must be a list of names")
    for key in SCORES:  # every headline metric is a share
        if not is_finite_number(metrics.get(key)) or not 0 <= metrics[key] <= 1:
            raise _bad(run_dir, METRICS, f"'{key}' is not a number from 0 to 1")
    n = len(classes)
    cm = metrics.get("confusion_matrix")
    if not (isinstance(cm, list) and len(cm) == n and all(
            isinstance(r, list) and len(r) == n and all(isinstance(v, int) and v >= 0 for v in r) for r in cm)):
        raise _bad(run_dir, METRICS, f"'confusion_matrix' is not a {n}x{n} matrix of counts")
    per_class = metrics.get("per_class")
    fields = ("precision", "recall", "f1", "support")
    if not (isinstance(per_class, list) and len(per_class) == n and all(
            isinstance(c, dict) and isinstance(c.get("name"), str) and all(is_finite_number(c.get(f)) for f in fields)
            for c in per_class)):
        raise _bad(run_dir, METRICS, "'per_class' does not match the classes")
    history = metrics.get("history", [])
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise _bad(run_dir, METRICS, "'history' is not a list of epochs")
    if not isinstance(metrics.get("evaluated_on", ""), str) or not isinstance(metrics.get("n_evaluated", 0), int):
        raise _bad(run_dir, METRICS, "'evaluated_on' or 'n_evaluated' has the wrong type")
    if metrics.get("n_evaluated", sum(map(sum, cm))) != sum(map(sum, cm)):
        raise _bad(run_dir, METRICS, "'n_evaluated' is not the number of images in the confusion matrix")
    for key in ("train_counts", "log_prior"):
        value = metrics.get(key)
        if value is not None and not (isinstance(value, list) and len(value) == n and all(is_finite_number(v) for v in value)):
            raise _bad(run_dir, METRICS, f"'{key}' does not match the classes")
    return metrics


def read_predictions(run_dir: str) -> tuple:
    """(paths, classes, y_true, y_pred, probs) from predictions.csv; every row checked."""
    path = run_file(run_dir, PREDICTIONS)
    if not os.path.lexists(path):
        raise RunError(f"no predictions.csv in {run_dir}")
    if os.path.islink(path) or not is_regular_file(path):
        raise RunError(f"{path} is not a regular file")
    try:
        with open(path, encoding="utf-8", newline="", errors="surrogateescape") as fh:  # names as written
            reader = csv.reader(fh)
            header = next(reader, None)
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise RunError(f"cannot read {path}: {exc}") from None
    if not header or header[:3] != ["path", "true", "predicted"] or len(header) < 5 \
            or not all(h.startswith("p_") for h in header[3:]):
        raise _bad(run_dir, PREDICTIONS, "unexpected header")
    if not rows:  # every run evaluates at least its validation images
        raise _bad(run_dir, PREDICTIONS, "it holds no predictions")
    classes = [h[len("p_"):] for h in header[3:]]
    index = {c: i for i, c in enumerate(classes)}
    probs = np.zeros((len(rows), len(classes)), dtype=np.float64)
    y_true, y_pred = np.zeros(len(rows), dtype=np.int64), np.zeros(len(rows), dtype=np.int64)
    for i, row in enumerate(rows):
        line = i + 2
        if len(row) != len(header) or row[1] not in index or row[2] not in index:
            raise _bad(run_dir, PREDICTIONS, f"line {line} has the wrong columns or an unknown class")
        if not safe_relative(row[0]):
            raise _bad(run_dir, PREDICTIONS, f"line {line} names a path outside the dataset: {row[0][:80]}")
        try:
            probs[i] = [float(v) for v in row[3:]]
        except ValueError:
            raise _bad(run_dir, PREDICTIONS, f"line {line} has a probability that is not a number") from None
        y_true[i], y_pred[i] = index[row[1]], index[row[2]]
    if not np.isfinite(probs).all():
        raise _bad(run_dir, PREDICTIONS, "a probability is not finite")
    return [r[0] for r in rows], classes, y_true, y_pred, probs


def survey_runs(parent: str) -> tuple[list[dict], list[tuple[str, str]]]:
    """The run folders below ``parent`` (one level), each read once: the complete, readable runs,
    newest first, with headline metrics; and the run folders left out of that list (interrupted,
    failed, still being written, damaged, an ensemble whose members are gone), each with the
    sentence saying why, sorted by name. Folders that are no run at all are in neither."""
    runs, left_out = [], []
    if not os.path.isdir(parent):
        return runs, left_out
    for name in sorted(os.listdir(parent)):
        folder = os.path.join(parent, name)
        if not os.path.isdir(folder) or os.path.islink(folder):
            continue
        reason = incomplete_reason(folder)
        if reason is None:
            try:
                metrics, config = read_metrics(folder), read_config(folder)
                read_ensemble(folder)
            except RunError as exc:
                reason = str(exc)
            else:
                runs.append({"dir": folder, "name": name, "config": config, "metrics": metrics,
                             "mtime": os.path.getmtime(run_file(folder, METRICS))})
                continue
        if is_run_folder(folder):
            left_out.append((folder, reason))
    runs.sort(key=lambda r: r["mtime"], reverse=True)
    return runs, left_out


def list_runs(parent: str) -> list[dict]:
    """Every complete, readable run below ``parent`` (one level), newest first, with headline metrics."""
    return survey_runs(parent)[0]


def list_incomplete_runs(parent: str) -> list[tuple[str, str]]:
    """The run folders below ``parent`` that :func:`list_runs` leaves out, each with why."""
    return survey_runs(parent)[1]


def read_ensemble(run_dir: str) -> list[tuple[str, float]] | None:
    """The members of an ensemble run as (member folder, weight), weights summing to 1; None for
    an ordinary run. Member references are untrusted: each must name a finished, non-ensemble run
    folder inside this run's ``members/`` (no absolute path, ``..`` or link out)."""
    path = run_file(run_dir, ENSEMBLE)
    if not os.path.lexists(path):
        return None
    data = read_json(path)
    members = data.get("members") if isinstance(data, dict) else None
    if not isinstance(members, list) or not 1 <= len(members) <= MAX_MEMBERS:
        raise _bad(run_dir, ENSEMBLE, f"'members' must be a list of 1 to {MAX_MEMBERS} runs")
    real_root = os.path.realpath(os.path.join(run_dir, MEMBERS))
    out: list[tuple[str, float]] = []
    for entry in members:
        rel = entry.get("path") if isinstance(entry, dict) else None
        weight = entry.get("weight") if isinstance(entry, dict) else None
        parts = rel.replace("\\", "/").split("/") if isinstance(rel, str) else []
        if not (safe_relative(rel) and len(parts) == 2 and parts[0] == MEMBERS and class_name_ok(parts[1])):
            raise _bad(run_dir, ENSEMBLE, f"member {str(rel)[:80]!r} is not a folder inside {MEMBERS}/")
        if not is_finite_number(weight) or weight <= 0:
            raise _bad(run_dir, ENSEMBLE, f"member {rel} has a weight that is not a positive number")
        folder = os.path.join(run_dir, MEMBERS, parts[1])
        if os.path.islink(folder) or os.path.dirname(os.path.realpath(folder)) != real_root:
            raise _bad(run_dir, ENSEMBLE, f"member {rel} is a link out of the run folder")
        if not os.path.isdir(folder):
            raise _bad(run_dir, ENSEMBLE, f"member {rel} is not there")
        reason = incomplete_reason(folder)
        if reason:  # the member's folder is at fault, not ensemble.json
            raise RunError(f"ensemble {os.path.basename(run_dir)}: member {rel} (listed in ensemble.json) is no "
                           f"finished run: {reason.replace(folder, rel)}")
        if os.path.lexists(run_file(folder, ENSEMBLE)):
            raise _bad(run_dir, ENSEMBLE, f"member {rel} is itself an ensemble")
        out.append((folder, float(weight)))
    if len({f for f, _ in out}) != len(out):
        raise _bad(run_dir, ENSEMBLE, "a member is listed twice")
    top = max(w for _, w in out)  # scaled first: two weights of 1e308 sum to infinity, and every share to 0
    total = sum(w / top for _, w in out)
    return [(f, (w / top) / total) for f, w in out]
