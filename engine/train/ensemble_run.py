"""Writing an ensemble run: member runs inside ``members/``, their class probabilities averaged.

Shared by balanced bagging (members trained here) and the ensemble of existing runs (members
copied in by :mod:`balancelab.engine.results.ensemble`). The ensemble is scored exactly like a
run: predictions.csv holds the averaged probabilities, metrics.json their metrics, so Results,
Review, Predict and the exports treat it as one more run.
"""
from __future__ import annotations

import os

import numpy as np

from balancelab.engine.core.metrics import compute_metrics
from balancelab.engine.train.run_folder import MEMBERS, RunError, RunFolderWriter, read_metrics, read_predictions


def average_probabilities(probs: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """Weighted mean of the members' class probabilities (weights are normalised to sum to 1)."""
    w = np.asarray(weights, dtype=np.float64)
    if len(probs) != len(w) or not len(w) or not np.all(w > 0):
        raise ValueError("one positive weight per member is needed")
    w = w / w.sum()
    out = np.zeros_like(np.asarray(probs[0], dtype=np.float64))
    for p, wi in zip(probs, w):
        out += wi * np.asarray(p, dtype=np.float64)
    return out


def member_predictions(member_dirs: list[str]) -> tuple[list[str], list[str], np.ndarray, list[np.ndarray]]:
    """(paths, classes, y_true, probabilities per member), rows aligned on the first member's order.

    Members must have scored the same images with the same labels and classes; otherwise the
    average means nothing and the ensemble is refused with one sentence."""
    first = None
    all_probs = []
    for folder in member_dirs:
        paths, classes, y_true, _, probs = read_predictions(folder)
        if first is None:
            first = (paths, classes, y_true, {p: i for i, p in enumerate(paths)})
            all_probs.append(probs)
            continue
        ref_paths, ref_classes, ref_true, where = first
        name, ref_name = os.path.basename(folder), os.path.basename(member_dirs[0])
        if classes != ref_classes:
            raise RunError(f"run {name} predicts other classes than run {ref_name}; members must share the class list")
        if len(paths) != len(ref_paths) or set(paths) != set(where):
            raise RunError(f"run {name} was evaluated on other images than run {ref_name} (another test split or "
                           "validation hold-out); members must share the test set")
        order = np.array([where[p] for p in paths])
        aligned = np.empty_like(probs)
        aligned[order] = probs
        labels = np.empty_like(y_true)
        labels[order] = y_true
        if not np.array_equal(labels, ref_true):
            raise RunError(f"run {name} labels some test images differently than run {ref_name}; "
                           "members must share the test set")
        all_probs.append(aligned)
    assert first is not None
    return first[0], first[1], first[2], all_probs


def finish_ensemble(folder: RunFolderWriter, names: list[str], weights: list[float], kind: str, weighted: bool,
                    sources: list[str], extra: dict) -> dict:
    """Average the members already inside ``folder.dir/members/``, write predictions, ensemble.json
    and metrics.json (the run's last file). Returns the metrics."""
    member_dirs = [os.path.join(folder.dir, MEMBERS, n) for n in names]
    paths, classes, y_true, probs = member_predictions(member_dirs)
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    averaged = average_probabilities(probs, list(w))
    member_metrics = [read_metrics(d) for d in member_dirs]
    priors = [m.get("log_prior") for m in member_metrics]
    prior = np.sum([wi * np.asarray(p) for wi, p in zip(w, priors)], axis=0).tolist() if all(priors) else None
    metrics = compute_metrics(y_true, averaged, classes)
    first = member_metrics[0]
    picked = averaged[np.arange(len(y_true)), y_true] if len(y_true) else np.ones(1)
    metrics.update({  # ``extra`` may override (bagging: the whole training split's counts)
        "evaluated_on": first.get("evaluated_on", "test"), "loss": float(-np.log(np.maximum(picked, 1e-12)).mean()),
        "history": [], "best_epoch": 0, "stopped": False, "seed": first.get("seed", 0),
        "train_counts": first.get("train_counts"), "log_prior": prior, "skipped_files": first.get("skipped_files", 0),
        "ensemble": {"kind": kind, "weighted": bool(weighted), "members": [
            {"name": n, "weight": float(wi), "source": s, "balanced_accuracy": m["balanced_accuracy"]}
            for n, wi, s, m in zip(names, w, sources, member_metrics)]},
        **extra,
    })
    metrics = {k: v for k, v in metrics.items() if v is not None}
    folder.write_ensemble(list(zip(names, w.tolist())), kind, weighted, sources)
    folder.write_predictions(paths, classes, y_true, averaged)
    folder.finish(metrics)
    return metrics
