"""How the registered samplers draw an epoch: imbalanced-learn's over/under-samplers on indices,
and a class-balanced ``WeightedRandomSampler``. Each returns indices into ``labels`` (shuffled);
:mod:`strategies` registers them as components and owns the vocabulary.
"""
from __future__ import annotations

import numpy as np
import torch


class StrategyError(ValueError):
    """A strategy name, combination or setting that cannot be trained (one message for the user)."""


def _resolve_sampling_strategy(value, sampler: str, labels: np.ndarray):
    """imbalanced-learn's sampling_strategy; a float ratio also works for multi-class targets.

    imbalanced-learn accepts a float only for binary targets; for more classes we turn it
    into the equivalent per-class dict: over-sampling raises every class to at least
    ratio x majority, under-sampling lowers every class to at most minority / ratio.
    """
    if value in (None, "", "auto"):
        return "auto"
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        return value  # imbalanced-learn names such as "not majority", "all", "minority"
    if not 0.0 < ratio <= 1.0:
        raise StrategyError(f"sampling_strategy ratio must be in (0, 1], got {ratio}")
    counts = {int(c): int(n) for c, n in zip(*np.unique(labels, return_counts=True))}
    if sampler == "oversample":
        target = int(np.ceil(ratio * max(counts.values())))
        return {c: max(n, target) for c, n in counts.items()}
    target = int(np.floor(min(counts.values()) / ratio))
    return {c: min(n, target) for c, n in counts.items()}


def imblearn_draw(sampler_cls_name: str):
    def draw(labels: np.ndarray, rng: np.random.Generator, sampling_strategy) -> np.ndarray:
        import imblearn.over_sampling as over
        import imblearn.under_sampling as under

        cls = getattr(over, sampler_cls_name, None) or getattr(under, sampler_cls_name)
        kind = "oversample" if cls.__module__.startswith("imblearn.over") else "undersample"
        sampler = cls(sampling_strategy=_resolve_sampling_strategy(sampling_strategy, kind, labels),
                      random_state=int(rng.integers(2**31 - 1)))
        try:
            idx, _ = sampler.fit_resample(np.arange(len(labels)).reshape(-1, 1), labels)
        except ValueError as exc:
            raise StrategyError(f"{kind}: {exc}") from None
        return rng.permutation(idx.ravel())
    return draw


def draw_balanced(labels: np.ndarray, rng: np.random.Generator, sampling_strategy) -> np.ndarray:
    from torch.utils.data import WeightedRandomSampler

    n = len(labels)
    weights = 1.0 / np.bincount(labels)[labels]
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    return np.fromiter(WeightedRandomSampler(weights.tolist(), n, replacement=True, generator=gen), dtype=np.int64, count=n)


def expected_balanced(counts: np.ndarray, sampling_strategy) -> np.ndarray:
    present = counts > 0
    return np.where(present, counts.sum() / present.sum(), 0.0)
