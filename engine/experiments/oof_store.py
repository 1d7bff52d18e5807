"""Out-of-fold probabilities on disk: ``oof_probs.npy`` (N x K float32) next to ``oof_index.json``
({"classes": [...], "paths": [...], "labels": [...], "folds": [...]}), so a ranking can be redone
with another filter without retraining, and other tools can reuse the probabilities.

Both files are read back as untrusted: no pickles, types and shapes checked, and every path
confined to the dataset root it claims to belong to.
"""
from __future__ import annotations

import os

import numpy as np

from balancelab.engine.core import untrusted
from balancelab.engine.core.atomic import atomic_file, write_json_atomic
from balancelab.engine.core.safe_paths import UnsafePathError, confined, is_regular_file
from balancelab.engine.experiments.label_ranking import LabelRankingError, check_probabilities

PROBS_FILE = "oof_probs.npy"
INDEX_FILE = "oof_index.json"
MAX_INDEX_BYTES = 512 * 1024 * 1024


class OofError(ValueError):
    """Out-of-fold files that are missing, damaged or do not belong to the dataset."""


def write_oof(folder: str, classes: list[str], paths: list[str], labels: np.ndarray, folds: np.ndarray,
              probs: np.ndarray) -> str:
    """Write both files atomically; returns the .npy path."""
    os.makedirs(folder, exist_ok=True)
    probs_path = os.path.join(folder, PROBS_FILE)
    with atomic_file(probs_path, "wb") as fh:
        np.save(fh, np.asarray(probs, dtype=np.float32), allow_pickle=False)
    write_json_atomic(os.path.join(folder, INDEX_FILE), {
        "classes": list(classes), "paths": list(paths), "labels": [int(x) for x in labels],
        "folds": [int(x) for x in folds]})
    return probs_path


def _index_path(probs_path: str) -> str:
    return os.path.join(os.path.dirname(probs_path), INDEX_FILE)


def read_oof(source: str, data_root: str | None = None) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """(classes, paths, labels, probs) from an ``oof_probs.npy`` file or the folder holding it.
    With ``data_root``, every path must resolve inside it (no absolute paths, ``..`` or links out)."""
    probs_path = os.path.join(source, PROBS_FILE) if os.path.isdir(source) else source
    index_path = _index_path(probs_path)
    for p in (probs_path, index_path):
        if not is_regular_file(p):
            raise OofError(f"no out-of-fold probabilities at {source}: expected {PROBS_FILE} and {INDEX_FILE} "
                           f"(written by label-issues), {os.path.basename(p)} is missing or not a file")
    try:
        index = untrusted.read_json(index_path, MAX_INDEX_BYTES)
    except untrusted.UntrustedFileError as exc:
        raise OofError(str(exc)) from None
    try:  # mapped, not read: a header claiming terabytes is refused by the file's real size, not by memory
        probs = np.load(probs_path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError, EOFError, MemoryError) as exc:
        raise OofError(f"{probs_path} is not a readable .npy array: {str(exc).splitlines()[0] or type(exc).__name__}") from None
    if not isinstance(index, dict):
        raise OofError(f"{index_path} is not an index object")
    classes, paths, labels = index.get("classes"), index.get("paths"), index.get("labels")
    if not (isinstance(classes, list) and all(isinstance(c, str) for c in classes) and len(set(classes)) == len(classes)):
        raise OofError(f"{index_path}: 'classes' must be a list of distinct names")
    if not (isinstance(paths, list) and all(isinstance(p, str) for p in paths)):
        raise OofError(f"{index_path}: 'paths' must be a list of strings")
    if not (isinstance(labels, list) and all(type(x) is int and 0 <= x < len(classes) for x in labels)
            and len(labels) == len(paths)):
        raise OofError(f"{index_path}: 'labels' must be one class number (0 to {len(classes) - 1}) per path")
    if probs.ndim != 2 or probs.shape[0] != len(paths):
        raise OofError(f"{probs_path} has shape {probs.shape} but the index lists {len(paths)} images")
    probs = np.array(probs)  # read into memory now that its size matches the index
    try:
        label_arr, probs = check_probabilities(np.array(labels, dtype=np.int64), probs, len(classes))
    except LabelRankingError as exc:
        raise OofError(f"{probs_path}: {exc}") from None
    if data_root is not None:
        for p in paths:
            try:
                confined(data_root, p)
            except UnsafePathError as exc:
                raise OofError(f"{index_path}: path outside the dataset: {exc}") from None
    return classes, paths, label_arr, probs
