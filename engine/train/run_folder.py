"""Run folders: the files a training run writes, and reading them back."""
from __future__ import annotations

import os
import numpy as np
from balancelab.engine.core.atomic import write_csv_atomic

import csv
import json


class RunError(Exception):
    """A run folder that cannot be used (missing, incomplete, stale)."""


def read_json(path: str):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise RunError(f"missing {os.path.basename(path)} in {os.path.dirname(path)}") from None
    except json.JSONDecodeError as exc:
        raise RunError(f"{path} is damaged: {exc}") from None


def read_predictions(run_dir: str) -> tuple:
    """(paths, classes, y_true, y_pred, probs) from predictions.csv."""
    import numpy as np

    path = os.path.join(run_dir, "predictions.csv")
    if not os.path.exists(path):
        raise RunError(f"no predictions.csv in {run_dir}")
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        classes = [h[len("p_"):] for h in header[3:]]
        rows = list(reader)
    index = {c: i for i, c in enumerate(classes)}
    paths = [r[0] for r in rows]
    y_true = np.array([index[r[1]] for r in rows], dtype=np.int64)
    y_pred = np.array([index[r[2]] for r in rows], dtype=np.int64)
    probs = np.array([[float(v) for v in r[3:]] for r in rows], dtype=np.float64).reshape(len(rows), len(classes))
    return paths, classes, y_true, y_pred, probs


def list_runs(parent: str) -> list[dict]:
    """Every finished run below ``parent`` (one level), newest first, with headline metrics."""
    runs = []
    if not os.path.isdir(parent):
        return runs
    for name in os.listdir(parent):
        folder = os.path.join(parent, name)
        metrics_path = os.path.join(folder, "metrics.json")
        if not os.path.isfile(metrics_path):
            continue
        try:
            metrics = read_json(metrics_path)
            config = read_json(os.path.join(folder, "config.json"))
        except RunError:
            continue
        runs.append({"dir": folder, "name": name, "config": config, "metrics": metrics,
                     "mtime": os.path.getmtime(metrics_path)})
    runs.sort(key=lambda r: r["mtime"], reverse=True)
    return runs


HISTORY_FIELDS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_balanced_accuracy",
                  "val_macro_f1", "val_geometric_mean", "lr", "seconds", "images_per_second"]


def write_predictions(path: str, paths: list[str], classes: list[str], y_true: np.ndarray, probs: np.ndarray) -> None:
    y_pred = probs.argmax(axis=1)
    rows = ([p, classes[t], classes[q], *(f"{v:.6f}" for v in pr)] for p, t, q, pr in zip(paths, y_true, y_pred, probs))
    write_csv_atomic(path, ["path", "true", "predicted", *(f"p_{c}" for c in classes)], rows)
