"""Turn a scan into train / validation / test sample lists.

Validation comes from ``val/`` when the dataset has it, otherwise from a seeded,
stratified split of the training images in which identical images (same content
hash) stay together, so no duplicate leaks from train into validation. The test
split is only ever used for the final report, never for model selection.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .scanner import ScanResult


class SplitError(ValueError):
    pass


@dataclass
class SampleList:
    paths: list[str]  # relative to the dataset root
    labels: np.ndarray  # int64 label indices

    def __len__(self) -> int:
        return len(self.paths)

    def counts(self, n_classes: int) -> np.ndarray:
        return np.bincount(self.labels, minlength=n_classes) if len(self.labels) else np.zeros(n_classes, dtype=np.int64)

    def to_dict(self, classes: list[str]) -> list[list[str]]:
        return [[p, classes[int(y)]] for p, y in zip(self.paths, self.labels)]


@dataclass
class DataSplits:
    classes: list[str]
    train: SampleList
    val: SampleList
    test: SampleList | None
    val_source: str  # "val" (folder) or "train" (held out)

    def to_dict(self) -> dict:
        return {
            "classes": self.classes,
            "val_source": self.val_source,
            "train": self.train.to_dict(self.classes),
            "val": self.val.to_dict(self.classes),
            "test": self.test.to_dict(self.classes) if self.test else None,
        }


def _samples(result: ScanResult, split: str, index: dict[str, int]) -> SampleList:
    items = [(img.path, index[img.label]) for img in result.images if img.split == split]
    return SampleList([p for p, _ in items], np.array([y for _, y in items], dtype=np.int64))


def _stratified_holdout(samples: SampleList, digests: list[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): stratified by class, grouped by content hash, seeded."""
    from sklearn.model_selection import StratifiedGroupKFold

    labels = samples.labels
    counts = np.bincount(labels)
    # a class with a single image cannot be in both parts: keep it for training
    eligible = counts[labels] >= 2
    idx = np.flatnonzero(eligible)
    n_splits = max(2, int(round(1.0 / fraction)))
    min_count = counts[counts >= 2].min() if (counts >= 2).any() else 0
    if len(idx) < n_splits or min_count == 0:
        return np.arange(len(labels)), np.array([], dtype=np.int64)
    n_splits = min(n_splits, len(idx))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    groups = np.array([digests[i] for i in idx])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, val_local = next(splitter.split(np.zeros(len(idx)), labels[idx], groups))
    val = np.sort(idx[val_local])
    mask = np.ones(len(labels), dtype=bool)
    mask[val] = False
    return np.flatnonzero(mask), val


def make_splits(result: ScanResult, val_fraction: float = 0.15, seed: int = 0) -> DataSplits:
    classes = result.classes
    index = {c: i for i, c in enumerate(classes)}
    train_split = "train" if "train" in result.split_classes else "all"
    if train_split not in result.split_classes:
        raise SplitError("the dataset has no training images (expected a train/ folder or class folders at the top)")
    train = _samples(result, train_split, index)
    present = np.count_nonzero(train.counts(len(classes)))
    if present < 2:
        raise SplitError(f"training needs at least 2 classes with images; found {present}")
    test = _samples(result, "test", index) if "test" in result.split_classes else None
    if "val" in result.split_classes:
        val = _samples(result, "val", index)
        source = "val"
    else:
        digest = {img.path: img.digest for img in result.images}
        tr_idx, va_idx = _stratified_holdout(train, [digest[p] for p in train.paths], val_fraction, seed)
        val = SampleList([train.paths[i] for i in va_idx], train.labels[va_idx])
        train = SampleList([train.paths[i] for i in tr_idx], train.labels[tr_idx])
        source = "train"
    if len(val) == 0:
        raise SplitError("not enough images to hold out a validation set; add a val/ folder or more images")
    if test is not None and len(test) == 0:
        test = None
    return DataSplits(classes, train, val, test, source)
