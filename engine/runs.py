"""Run folders: the files a training run writes, and reading them back."""
from __future__ import annotations

import csv
import json
import os

from .atomic import atomic_file

class RunError(Exception):
    """A run folder that cannot be used (missing, incomplete, stale)."""


def write_text_atomic(path: str, text: str) -> None:
    with atomic_file(path, "w") as fh:
        fh.write(text)


def write_json_atomic(path: str, data) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False))


def write_csv_atomic(path: str, header: list[str], rows) -> None:
    import io

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


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
