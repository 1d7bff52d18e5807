"""Outliers and rare-class coverage of a dataset, seen through a trained run's embeddings.

An image whose penultimate-layer embedding is far from the centre of *every* class is one the
model cannot place: a photo of a cat in a digits folder, a blank scan, a wrong crop. A class
whose embeddings form a single tight cluster covers few of the ways it can look, which matters
most for the minority classes a balancing strategy will repeat many times. Both come from the
same vectors (engine/results/embeddings.py), computed once.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from balancelab.engine.core.events import EventStream, Failed, Finished, forward, Progress, StopToken, StreamFailed
from balancelab.engine.data.scanner import ScanResult
from balancelab.engine.results.embeddings import class_modes, embed_images, outlier_scores

# An image is flagged when its distance to the nearest class centre lies this many robust
# standard deviations (1.4826 x median absolute deviation) above the median distance.
OUTLIER_ROBUST_Z = 6.0
MIN_OUTLIER_DISTANCE = 0.05  # never flag below this cosine distance (a very tight dataset)


@dataclass
class Outlier:
    path: str
    split: str
    label: str
    nearest: str  # the class whose centre is nearest
    distance: float  # cosine distance to that centre
    flagged: bool


@dataclass
class ClassCoverage:
    label: str
    images: int  # training images of the class
    modes: int  # distinct clusters of their embeddings

    @property
    def images_per_mode(self) -> float:
        return self.images / max(1, self.modes)


@dataclass
class EmbeddingReview:
    run_dir: str
    outliers: list[Outlier]  # every embedded image, farthest first
    coverage: list[ClassCoverage]  # one per class of the training split, fewest images first
    threshold: float  # distance above which an image is flagged

    @property
    def flagged(self) -> list[Outlier]:
        return [o for o in self.outliers if o.flagged]

    def minority(self) -> set[str]:
        """Classes with fewer training images than the median class: the ones re-sampling repeats."""
        counts = [r.images for r in self.coverage if r.images]
        median = float(np.median(counts)) if counts else 0.0
        return {r.label for r in self.coverage if 0 < r.images < median}


def outlier_threshold(distances: np.ndarray) -> float:
    """Median + OUTLIER_ROBUST_Z robust standard deviations (at least MIN_OUTLIER_DISTANCE)."""
    if len(distances) == 0:
        return float("inf")
    median = float(np.median(distances))
    mad = float(np.median(np.abs(distances - median))) * 1.4826
    return max(MIN_OUTLIER_DISTANCE, median + OUTLIER_ROBUST_Z * mad)


def coverage_of(feats: np.ndarray, labels: list[str], classes: list[str]) -> list[ClassCoverage]:
    """Modes per class (engine/results/embeddings.py class_modes), fewest images first."""
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[label] for label in labels], dtype=np.int64)
    modes = class_modes(feats, y, len(classes)) if len(y) else [0] * len(classes)
    counts = np.bincount(y, minlength=len(classes))
    rows = [ClassCoverage(c, int(counts[i]), int(modes[i])) for i, c in enumerate(classes)]
    return sorted(rows, key=lambda r: (r.images, r.label))


def review_embeddings(result: ScanResult, run_dir: str, stop: StopToken | None = None,
                      device: str = "cpu") -> EventStream[EmbeddingReview | None]:
    """Yield Progress; end with Finished(EmbeddingReview), Finished(None, stopped) or Failed.
    Outliers over every split (class centres from all labelled images); coverage over the
    training split (the images a model learns from)."""
    stop = stop or StopToken()
    images = list(result.images)
    try:
        got = yield from forward(embed_images(run_dir, result.root, [img.path for img in images], stop, device,
                                              [img.label for img in images]))
    except StreamFailed as exc:
        yield Failed(str(exc))
        return
    if got is None or stop.requested:
        yield Finished(None, stopped=True)
        return
    feats, ok = got
    keep = np.flatnonzero(ok)
    if len(keep) == 0:
        yield Failed("no image of the dataset could be decoded for embeddings")
        return
    classes = result.classes
    index = {c: i for i, c in enumerate(classes)}
    kept = [images[i] for i in keep]
    labels = np.array([index[img.label] for img in kept], dtype=np.int64)
    yield Progress("outliers and coverage", 0, 2)
    dist, nearest = outlier_scores(feats[keep], labels, len(classes))
    threshold = outlier_threshold(dist)
    outliers = [Outlier(img.path, img.split, img.label, classes[int(n)], round(float(d), 6), bool(d > threshold))
                for img, d, n in zip(kept, dist, nearest)]
    outliers.sort(key=lambda o: (-o.distance, o.path))
    yield Progress("outliers and coverage", 1, 2)
    train_split = result.training_split
    train = [k for k, img in enumerate(kept) if train_split is None or img.split == train_split]
    train_classes = result.split_classes.get(train_split, classes) if train_split else classes
    coverage = coverage_of(feats[keep][train], [kept[k].label for k in train], list(train_classes))
    yield Progress("outliers and coverage", 2, 2)
    yield Finished(EmbeddingReview(run_dir, outliers, coverage, round(threshold, 6)))
