"""The k-nearest-neighbours baseline (scikit-learn's KNeighborsClassifier), as the course uses it:
a floor any trained network should clear, on the same splits and with the same metrics.

Features are either the pixels of the decoded cache at the model's image size (scaled to [0, 1]),
or the penultimate-layer features of a finished run (``features_from``; results/embeddings.py).
k is chosen on the validation split (by balanced accuracy, the default selection metric, ties to
the smaller k); the test split, when there is one, is only used for the final scores.

:data:`BASELINES` is the baseline registry: ``compare --baselines`` and the ``knn`` command read it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from balancelab.engine.core.events import EventStream, Failed, Finished, Progress, StopToken, forward
from balancelab.engine.core.metrics import compute_metrics
from balancelab.engine.data.image_bank import ImageBank, decode_split
from balancelab.engine.data.scanner import LayoutError, ScanResult, scan_steps
from balancelab.engine.data.splits import VAL_FRACTION, DataSplits, SampleList, SplitError, make_splits
from balancelab.engine.train.config import INT_RANGES, ConfigError, TrainConfig

DEFAULT_KS = (1, 3, 5, 7, 9, 15, 25)
SELECT_BY = "balanced_accuracy"
MAX_PIXEL_FEATURES = 1 << 16  # a 256x256 RGB image: beyond this pixel distances mean little and cost a lot


class KnnError(ValueError):
    """A kNN baseline that cannot run; the message says why."""


@dataclass(frozen=True)
class Baseline:
    name: str
    description: str
    run: Callable[..., Iterator]  # (data, splits=..., scan_result=..., stop=..., **options) -> events


def knn_baseline(data: str, features_from: str | None = None, ks: tuple[int, ...] = DEFAULT_KS, model: str = "mnist-classic",
                 image_size: int = 0, split_seed: int = 0, val_fraction: float = VAL_FRACTION, stop: StopToken | None = None,
                 scan_result: ScanResult | None = None, splits: DataSplits | None = None, device: str = "cpu") -> EventStream[dict | None]:
    """Yield Progress; end with Finished(result) or Failed. ``result`` has the evaluation metrics
    (compute_metrics keys, ``evaluated_on``, ``train_counts``), the chosen ``k`` and ``val_scores``
    (k -> validation balanced accuracy). ``splits`` (a comparison's) overrides the hold-out."""
    stop = stop or StopToken()
    try:
        ks = _valid_ks(ks)
        result = yield from _run(data, features_from, ks, model, image_size, split_seed, val_fraction, stop,
                                 scan_result, splits, device)
    except (KnnError, ConfigError, SplitError) as exc:
        yield Failed(str(exc))
        return
    except Exception as exc:  # a damaged run folder, an unreadable file: one line, never a traceback
        from balancelab.engine.train.checkpoints import CheckpointError
        from balancelab.engine.train.run_folder import RunError

        if isinstance(exc, (RunError, CheckpointError, OSError)):
            yield Failed(str(exc))
            return
        raise
    if result is None:
        yield Finished(None, stopped=True)
        return
    yield Finished(result)


def _valid_ks(ks) -> tuple[int, ...]:
    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or ks[0] < 1:
        raise KnnError("k must be a list of whole numbers >= 1")
    return ks


def _run(data, features_from, ks, model, image_size, split_seed, val_fraction, stop, scan_result, splits, device):
    run_split = None
    if features_from:
        from balancelab.engine.train.run_reading import read_split

        run_split = read_split(features_from)
    if splits is None and run_split is not None:  # the run's own split: its validation images were never trained on
        lists = {name: _samples(run_split.get(name) or [], run_split["classes"]) for name in ("train", "val", "test")}
        classes = list(run_split["classes"])
    else:
        if splits is None:
            if scan_result is None:
                scan_result = yield from _scan(data, stop)
                if scan_result is None:
                    return None
            splits = make_splits(scan_result, val_fraction, split_seed)
        lists = {"train": splits.train, "val": splits.val, "test": splits.test}
        classes = list(splits.classes)
        if run_split is not None:
            _refuse_leak(run_split, lists, features_from)
    if not len(lists["val"]):
        raise KnnError("the kNN baseline needs validation images to choose k")
    if run_split is not None:
        banks, feats = yield from _run_features(data, features_from, lists, classes, stop, device)
    else:
        banks, feats = yield from _pixel_features(data, lists, model, image_size, scan_result, stop)
    if banks is None:
        return None
    return _fit_and_score(banks, feats, classes, ks, stop, "run features" if run_split is not None else "pixels")


def _scan(data: str, stop: StopToken):
    try:
        return (yield from scan_steps(data, stop=stop))
    except LayoutError as exc:
        raise KnnError(str(exc)) from None


def _samples(items: list, classes: list[str]) -> SampleList:
    index = {c: i for i, c in enumerate(classes)}
    return SampleList([p for p, _ in items], np.array([index[c] for _, c in items], dtype=np.int64))


def _refuse_leak(run_split: dict, lists: dict, run_dir: str) -> None:
    """A run's features of images it trained on are not a fair test of kNN: refuse them."""
    trained = {p for p, _ in run_split.get("train") or []}
    for name in ("val", "test"):
        samples = lists.get(name)
        leaked = len(trained & set(samples.paths)) if samples is not None else 0
        if leaked:
            raise KnnError(f"the run {run_dir} was trained on {leaked} image(s) of this {name} split; "
                           f"train it on the same split (same --split-seed) or use kNN on pixels")


def _decode(data, lists, channels, size, stop):
    banks = {}
    for name in ("train", "val", "test"):
        samples = lists.get(name)
        if samples is None or not len(samples):
            continue
        bank = yield from forward(decode_split(data, samples, channels, size, stop, 0, f"kNN: decoding {name}", []))
        if bank is None:
            return None
        banks[name] = bank
    if "train" not in banks or len(banks["train"]) == 0:
        raise KnnError("no readable training images for the kNN baseline")
    return banks


def _pixel_features(data, lists, model, image_size, scan_result, stop):
    low, high = INT_RANGES["image_size"]
    if isinstance(image_size, bool) or not isinstance(image_size, int) or not low <= image_size <= high:
        raise KnnError(f"image size must be {low} (the model's own) up to {high} px (got {image_size!r})")
    size = TrainConfig(data=data, out="", model=model, image_size=image_size).resolved_image_size()
    channels = 1 if scan_result is None or scan_result.grayscale else 3
    if size * size * channels > MAX_PIXEL_FEATURES:
        raise KnnError(f"kNN on pixels at {size} px x {channels} channels is {size * size * channels} features; "
                       f"use a smaller --image-size or kNN on a run's features (--features-from)")
    banks = yield from _decode(data, lists, channels, size, stop)
    if banks is None:
        return None, None
    return banks, {k: np.asarray(b.array, dtype=np.float32).reshape(len(b), -1) / 255.0 for k, b in banks.items()}


def _run_features(data, run_dir, lists, classes, stop, device):
    from balancelab.engine.results.embeddings import penultimate_features
    from balancelab.engine.results.inference import load_run_model

    model, state = load_run_model(run_dir, "best", device)
    if list(state["classes"]) != classes:
        raise KnnError(f"the run {run_dir} was trained on other classes than this dataset's")
    banks = yield from _decode(data, lists, int(state["in_channels"]), int(state["image_size"]), stop)
    if banks is None:
        return None, None
    feats = {}
    for name, bank in banks.items():
        yield Progress("kNN: features", 0, len(bank), f"penultimate features of {name} ({os.path.basename(run_dir)})")
        feats[name] = penultimate_features(model, np.asarray(bank.array))
    return banks, feats


def _vote(neighbour_labels: np.ndarray, k: int, n_classes: int) -> np.ndarray:
    """Class shares among the first k neighbours (KNeighborsClassifier's uniform predict_proba)."""
    probs = np.zeros((len(neighbour_labels), n_classes))
    for j in range(k):
        probs[np.arange(len(probs)), neighbour_labels[:, j]] += 1.0
    return probs / k


def _fit_and_score(banks: dict[str, ImageBank], feats: dict, classes: list[str], ks: tuple[int, ...],
                   stop: StopToken, kind: str):
    from sklearn.neighbors import KNeighborsClassifier

    train_y = banks["train"].labels
    too_large = [k for k in ks if k > len(train_y)]  # more neighbours than training images: said, not bent
    ks = tuple(k for k in ks if k <= len(train_y)) or (len(train_y),)
    clf = KNeighborsClassifier(n_neighbors=max(ks)).fit(feats["train"], train_y)
    # one neighbour search on validation serves every k
    nearest = clf.kneighbors(feats["val"], n_neighbors=max(ks), return_distance=False)
    labels = train_y[nearest]  # the neighbours' classes
    val_y = banks["val"].labels
    val_scores = {}
    for k in ks:
        metrics = compute_metrics(val_y, _vote(labels, k, len(classes)), classes)
        val_scores[k] = float(metrics[SELECT_BY])
    if stop.requested:
        return None
    best_k = max(ks, key=lambda k: (val_scores[k], -k))
    clf.set_params(n_neighbors=best_k)
    eval_name = "test" if "test" in banks else "val"
    proba = clf.predict_proba(feats[eval_name])
    probs = np.zeros((len(proba), len(classes)))
    probs[:, clf.classes_] = proba  # classes without training images keep probability 0
    metrics = compute_metrics(banks[eval_name].labels, probs, classes)
    metrics.update({"evaluated_on": eval_name, "k": best_k, "features": kind, "select_metric": SELECT_BY,
                    "val_scores": {str(k): v for k, v in val_scores.items()},
                    "train_counts": np.bincount(train_y, minlength=len(classes)).tolist(),
                    "n_train": int(len(train_y)), "ks_above_training_images": too_large})
    return metrics


BASELINES: dict[str, Baseline] = {b.name: b for b in (
    Baseline("knn", "k-nearest neighbours (scikit-learn) on pixels, or on a run's penultimate features; "
                    "k chosen on the validation split", knn_baseline),
)}
