"""Turn a scan into train / validation / test sample lists.

Validation comes from ``val/`` when the dataset has it, otherwise from a seeded,
stratified split of the training images in which identical images (same content
hash) stay together, so no duplicate leaks from train into validation. The test
split is only ever used for the final report, never for model selection.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from balancelab.engine.data.scanner import ScanResult, imbalance_ratio


class SplitError(ValueError):
    pass


MIN_TRAINING_IMAGES = 2  # without a val/ folder a class needs two images: one to learn from, one to validate on


@dataclass
class SampleList:
    paths: list[str]  # relative to the dataset root
    labels: np.ndarray  # int64 label indices

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, idx) -> "SampleList":
        return SampleList([self.paths[i] for i in idx], self.labels[np.asarray(idx, dtype=np.int64)])

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
    excluded: dict[str, str] = field(default_factory=dict)  # class -> why it is not trained (empty, one image)

    def to_dict(self) -> dict:
        return {
            "classes": self.classes,
            "excluded_classes": self.excluded,
            "val_source": self.val_source,
            "train": self.train.to_dict(self.classes),
            "val": self.val.to_dict(self.classes),
            "test": self.test.to_dict(self.classes) if self.test else None,
        }


def _samples(result: ScanResult, split: str, index: dict[str, int]) -> SampleList:
    items = [(img.path, index[img.label]) for img in result.images if img.split == split and img.label in index]
    return SampleList([p for p, _ in items], np.array([y for _, y in items], dtype=np.int64))


def stratified_holdout(samples: SampleList, digests: list[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): per class, whole groups of identical images go to validation until
    the class's share is reached. Seeded. (sklearn's StratifiedGroupKFold gives the same kind of
    split but takes seconds per 10k images; this is linear.)"""
    labels = samples.labels
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    for i, d in enumerate(digests):
        groups.setdefault(d, []).append(i)
    by_class: dict[int, list[list[int]]] = {}
    for members in groups.values():
        by_class.setdefault(int(labels[members[0]]), []).append(members)
    val: list[int] = []
    for label in sorted(by_class):
        class_groups = by_class[label]
        n = sum(len(g) for g in class_groups)
        if n < 2 or len(class_groups) < 2:
            continue  # a class with a single image (or one group) stays in training
        target = max(1, int(round(fraction * n)))
        taken = 0
        for k in rng.permutation(len(class_groups)):
            g = class_groups[k]
            if taken + len(g) > target and taken > 0:
                continue
            if taken + len(g) >= n:
                continue  # never move a whole class to validation
            val.extend(g)
            taken += len(g)
            if taken >= target:
                break
    val_idx = np.array(sorted(val), dtype=np.int64)
    mask = np.ones(len(labels), dtype=bool)
    mask[val_idx] = False
    return np.flatnonzero(mask), val_idx


#: The validation hold-out taken from a folder without ``val/`` when nothing else is asked for;
#: TrainConfig and every experiment read it from here.
VAL_FRACTION = 0.15


def make_splits(result: ScanResult, val_fraction: float = VAL_FRACTION, seed: int = 0,
                group_of: dict[str, str] | None = None) -> DataSplits:
    """``group_of`` maps a path to its duplicate group (default: its content hash); a group is
    never split between train and validation."""
    reason = why_not_trainable(result)
    if reason is not None:
        raise SplitError(reason)
    train_split = result.training_split
    classes, excluded = trainable_classes(result)
    index = {c: i for i, c in enumerate(classes)}
    train = _samples(result, train_split, index)
    test = _samples(result, "test", index) if "test" in result.split_classes else None
    if "val" in result.split_classes:
        val = _samples(result, "val", index)
        source = "val"
    else:
        digest = group_of or {img.path: img.digest for img in result.images}
        tr_idx, va_idx = stratified_holdout(train, [digest.get(p, p) for p in train.paths], val_fraction, seed)
        train, val = train.subset(tr_idx), train.subset(va_idx)
        source = "train"
    if len(val) == 0:
        raise SplitError("not enough images to hold out a validation set; add a val/ folder or more images")
    if test is not None and len(test) == 0:
        test = None
    return DataSplits(classes, train, val, test, source, excluded)


def why_not_trainable(result: ScanResult, trainable: tuple[list[str], dict[str, str]] | None = None) -> str | None:
    """The sentence a training of this dataset is refused with, or None when it can train: the GUI
    says it before Start instead of after a run folder was made. ``trainable``: the dataset's
    ``trainable_classes`` when the caller already has them."""
    if result.training_split is None:
        return "the dataset has no training images (expected a train/ folder or class folders at the top)"
    classes, excluded = trainable or trainable_classes(result)
    if len(classes) < 2:
        detail = f" ({'; '.join(f'{c}: {why}' for c, why in excluded.items())})" if excluded else ""
        return f"training needs at least 2 classes with enough images; found {len(classes)}{detail}"
    return None


def data_warnings(result: ScanResult) -> list[str]:
    """What a training of this dataset should be warned of: the same image in two splits (the
    test figures would flatter the model) or under two labels (one of them is wrong)."""
    kinds = {"leakage": "image(s) appear in more than one split: the test figures will flatter the model",
             "conflicting-labels": "image(s) appear under more than one class: one of the labels is wrong"}
    counts = {kind: sum(1 for p in result.problems if p.kind == kind) for kind in kinds}
    return [f"{n} {kinds[kind]} (see Dataset > Problems, or Curation > Duplicates)" for kind, n in counts.items() if n]


def trainable_classes(result: ScanResult) -> tuple[list[str], dict[str, str]]:
    """The classes a model is trained on, and the others with the reason. An empty class folder trained
    as a class would get an output it can never learn and a 0 averaged into macro-F1; a one-image class
    without a val/ folder can never be validated."""
    counts = result.class_counts(result.training_split) if result.training_split else {}
    has_val = "val" in result.split_classes
    kept, excluded = [], {}
    for name in result.classes:
        n = counts.get(name, 0)
        if n == 0:
            excluded[name] = "no training images"
        elif n < MIN_TRAINING_IMAGES and not has_val:
            excluded[name] = f"only {n} training image (at least {MIN_TRAINING_IMAGES} are needed to train and validate it)"
        else:
            kept.append(name)
    return kept, excluded


def trained_imbalance_ratio(result: ScanResult, classes: list[str]) -> float:
    """The training split's imbalance among the classes a model is trained on: a one-image class
    left out of training would otherwise set the ratio a user reads as the model's imbalance."""
    counts = result.class_counts(result.training_split) if result.training_split else {}
    return imbalance_ratio(counts.get(c, 0) for c in classes)
