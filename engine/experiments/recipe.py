"""The proposed recipe: model, strategy, epochs and batch size derived from the training split.

The rules are few and each is tied to what was measured on long-tailed MNIST (README table,
mnist-classic, 5 epochs, Adam 1e-3, batch 64, 3 seeds): re-sampling beat loss re-weighting
(``oversample`` 97.97 % balanced accuracy, ``weighted-loss`` 96.26, plain CE 91.69), and adding
stronger augmentation of the minority classes to over-sampling was the best fixed strategy
(98.46). Only the training split is read (never val/test), so the recipe cannot peek at the data
it is judged on.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from balancelab.engine.data.scanner import ScanResult
from balancelab.engine.data.splits import VAL_FRACTION, SplitError, make_splits
from balancelab.engine.train.config import TrainConfig
from balancelab.engine.train.strategies import expected_epoch_counts, parse_strategy

#: Balanced accuracy (%) of each fixed strategy on MNIST-LT, copied from the README table (the
#: evidence the rules below rest on; the search also screens candidates in this order).
MEASURED_MNIST_LT = {
    "oversample+minority-augment": 98.46, "oversample": 97.97, "balanced-sampler+minority-augment": 97.48,
    "balanced-sampler": 97.43, "balanced-softmax": 96.52, "balanced-softmax+minority-augment": 96.30,
    "mixup+balanced-softmax": 96.28, "weighted-loss": 96.26, "effective-number": 96.06, "drw": 95.63,
    "focal": 93.05, "none": 91.69, "minority-augment": 87.87, "mixup": 86.28, "undersample": 74.86,
    "cutmix": 69.54,
}
BALANCED_BELOW = 1.5  # largest:smallest class under this is treated as balanced: no re-balancing
AUGMENT_FROM_REPEATS = 4.0  # minority images repeated this often per epoch get stronger augmentation
MAX_EPOCH_GROWTH = 8.0  # over-sampling may grow an epoch this much; beyond, the balanced sampler keeps its size
MEASURED_PRESENTATIONS = 200_000  # ~5 epochs x 42.5k over-sampled MNIST-LT images: what the measured recipe saw
MIN_EPOCHS, MAX_EPOCHS = 5, 30
SMALL_IMAGE = 40  # a median side up to this is a small-image task (MNIST, CIFAR)


class RecipeError(ValueError):
    """The dataset cannot be trained at all (no training images, one class); the message says why."""


@dataclass(frozen=True)
class TrainingStats:
    """The figures of the training split a recipe is derived from."""

    counts: dict[str, int]
    median_side: int
    grayscale: bool

    @property
    def n_images(self) -> int:
        return sum(self.counts.values())

    @property
    def smallest(self) -> int:
        return min(c for c in self.counts.values() if c > 0)

    @property
    def largest(self) -> int:
        return max(self.counts.values())

    @property
    def imbalance_ratio(self) -> float:
        return self.largest / self.smallest


@dataclass(frozen=True)
class Recipe:
    """A complete set of training settings plus the one sentence that explains them."""

    model: str
    strategy: str
    epochs: int
    batch_size: int
    image_size: int
    lr: float
    reason: str
    stats: TrainingStats

    def config(self, data: str, out: str, **overrides) -> TrainConfig:
        """The TrainConfig that trains this recipe (``overrides`` win, e.g. seed or device)."""
        settings = {k: getattr(self, k) for k in ("model", "strategy", "epochs", "batch_size", "image_size", "lr")}
        return TrainConfig(data=data, out=out, **{**settings, **overrides})

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["stats"] = {"counts": self.stats.counts, "imbalance_ratio": round(self.stats.imbalance_ratio, 2),
                        "smallest_class": self.stats.smallest, "training_images": self.stats.n_images,
                        "median_side": self.stats.median_side, "grayscale": self.stats.grayscale}
        return out


def training_stats(scan_result: ScanResult, val_fraction: float = VAL_FRACTION, split_seed: int = 0) -> TrainingStats:
    """Class counts and image size of exactly the images training will use (after the val hold-out)."""
    try:
        splits = make_splits(scan_result, val_fraction, split_seed)
    except SplitError as exc:
        raise RecipeError(str(exc)) from None
    counts = splits.train.counts(len(splits.classes))
    train_paths = set(splits.train.paths)
    sides = sorted(min(i.width, i.height) for i in scan_result.images if i.path in train_paths)
    return TrainingStats({c: int(n) for c, n in zip(splits.classes, counts)}, sides[len(sides) // 2],
                         scan_result.grayscale)


def _strategy(stats: TrainingStats) -> tuple[str, str]:
    """The strategy and the words that describe it."""
    if stats.imbalance_ratio < BALANCED_BELOW:
        return "none", "no re-balancing (the classes are balanced)"
    counts = list(stats.counts.values())
    sampler = "oversample"
    seen = expected_epoch_counts(parse_strategy(sampler), counts)
    if seen.sum() > MAX_EPOCH_GROWTH * stats.n_images:  # many classes x a huge head class
        sampler = "balanced-sampler"
        seen = expected_epoch_counts(parse_strategy(sampler), counts)
    words = "oversampling" if sampler == "oversample" else "class-balanced sampling"
    repeats = float(seen[[i for i, c in enumerate(counts) if c == stats.smallest][0]]) / stats.smallest
    if repeats >= AUGMENT_FROM_REPEATS:
        return f"{sampler}+minority-augment", f"{words} with stronger augmentation of the minority classes"
    return sampler, words


def _model(stats: TrainingStats) -> tuple[str, int]:
    if stats.median_side <= SMALL_IMAGE:
        return ("mnist-classic", 28) if stats.grayscale else ("cifar-classic", 32)
    return "cifar-classic", 64  # a small CNN on downscaled images still trains in minutes on a CPU


def recipe_for(stats: TrainingStats) -> Recipe:
    """The rules, on the training split's figures alone (testable on synthetic counts)."""
    if len([c for c in stats.counts.values() if c > 0]) < 2:
        raise RecipeError("training needs at least 2 classes with images")
    strategy, words = _strategy(stats)
    model, size = _model(stats)
    seen_per_epoch = expected_epoch_counts(parse_strategy(strategy), list(stats.counts.values())).sum()
    epochs = min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(MEASURED_PRESENTATIONS / max(1.0, seen_per_epoch))))
    ratio = stats.imbalance_ratio
    shown = f"{ratio:.1f}" if ratio < 10 else f"{ratio:,.0f}"
    reason = (f"training split {shown}:1, smallest class {stats.smallest:,} images, {stats.n_images:,} images "
              f"of {stats.median_side} px: {words}, {model} at {size} px, {epochs} epochs")
    return Recipe(model, strategy, epochs, 64, size, 1e-3, reason, stats)


def recommend(scan_result: ScanResult, val_fraction: float = VAL_FRACTION, split_seed: int = 0) -> Recipe:
    """The proposed recipe for a scanned dataset (its training split only)."""
    return recipe_for(training_stats(scan_result, val_fraction, split_seed))
