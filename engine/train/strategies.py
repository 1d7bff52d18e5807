"""Imbalance strategies, selectable by name and composable with ``+``.

A strategy string is parsed into a :class:`StrategyPlan` saying which sampler, which
class weighting, which loss form and which batch mixing to use. The functions here
compute exactly what each strategy changes (per-epoch sample indices, class weights,
logit offsets), so they can be tested and previewed without training.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

STRATEGIES: dict[str, str] = {
    "none": "plain cross-entropy on the data as it is",
    "oversample": "imbalanced-learn RandomOverSampler: repeat minority images each epoch (sampling_strategy exposed)",
    "undersample": "imbalanced-learn RandomUnderSampler: a fresh balanced subset of the majority classes each epoch",
    "balanced-sampler": "WeightedRandomSampler with weight 1/n_class per image, re-drawn each epoch",
    "weighted-loss": "cross-entropy weighted by inverse class frequency",
    "effective-number": "class-balanced loss weights (1-beta)/(1-beta^n), Cui et al. 2019",
    "focal": "focal loss (1-p)^gamma * CE, down-weights easy examples",
    "balanced-softmax": "logit-adjusted loss: logits + log prior during training (Ren et al. 2020, Menon et al. 2021)",
    "drw": "deferred re-weighting: plain loss first, class-balanced weights from drw_epoch on (Cao et al. 2019)",
    "mixup": "MixUp on batches (torchvision transforms.v2)",
    "cutmix": "CutMix on batches (torchvision transforms.v2)",
    "minority-augment": "stronger augmentation for images of classes below the median count",
}
SAMPLERS = ("oversample", "undersample", "balanced-sampler")
WEIGHTINGS = ("weighted-loss", "effective-number", "drw")


class StrategyError(ValueError):
    pass


@dataclass(frozen=True)
class StrategyPlan:
    name: str
    sampler: str | None = None
    weighting: str | None = None
    focal: bool = False
    balanced_softmax: bool = False
    mixup: bool = False
    cutmix: bool = False
    minority_augment: bool = False


def parse_strategy(text: str) -> StrategyPlan:
    parts = [p.strip().lower() for p in text.split("+") if p.strip()]
    if not parts:
        raise StrategyError("empty strategy; use 'none' for plain training")
    unknown = [p for p in parts if p not in STRATEGIES]
    if unknown:
        raise StrategyError(f"unknown strategy '{unknown[0]}'; choose from: {', '.join(STRATEGIES)}")
    if len(set(parts)) != len(parts):
        raise StrategyError(f"strategy '{text}' names a component twice")
    if "none" in parts and len(parts) > 1:
        raise StrategyError("'none' cannot be combined with other strategies")
    samplers = [p for p in parts if p in SAMPLERS]
    weightings = [p for p in parts if p in WEIGHTINGS]
    if len(samplers) > 1:
        raise StrategyError(f"choose one sampler, not {' and '.join(samplers)}")
    if len(weightings) > 1:
        raise StrategyError(f"choose one loss weighting, not {' and '.join(weightings)}")
    return StrategyPlan(
        name="+".join(parts),
        sampler=samplers[0] if samplers else None,
        weighting=weightings[0] if weightings else None,
        focal="focal" in parts,
        balanced_softmax="balanced-softmax" in parts,
        mixup="mixup" in parts,
        cutmix="cutmix" in parts,
        minority_augment="minority-augment" in parts,
    )


# --- samplers -----------------------------------------------------------------------------------

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


def epoch_indices(plan: StrategyPlan, labels: np.ndarray, epoch: int, seed: int,
                  sampling_strategy=None) -> np.ndarray:
    """Indices (into ``labels``) the model sees in one epoch, shuffled; re-drawn per epoch."""
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, epoch])
    n = len(labels)
    if plan.sampler in ("oversample", "undersample"):
        from imblearn.under_sampling import RandomUnderSampler
        from imblearn.over_sampling import RandomOverSampler

        cls = RandomOverSampler if plan.sampler == "oversample" else RandomUnderSampler
        sampler = cls(sampling_strategy=_resolve_sampling_strategy(sampling_strategy, plan.sampler, labels),
                      random_state=int(rng.integers(2**31 - 1)))
        try:
            idx, _ = sampler.fit_resample(np.arange(n).reshape(-1, 1), labels)
        except ValueError as exc:
            raise StrategyError(f"{plan.sampler}: {exc}") from None
        return rng.permutation(idx.ravel())
    if plan.sampler == "balanced-sampler":
        from torch.utils.data import WeightedRandomSampler

        counts = np.bincount(labels)
        weights = 1.0 / counts[labels]
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        return np.fromiter(WeightedRandomSampler(weights.tolist(), n, replacement=True, generator=gen), dtype=np.int64, count=n)
    return rng.permutation(n)


def expected_epoch_counts(plan: StrategyPlan, counts: np.ndarray, sampling_strategy=None) -> np.ndarray:
    """Expected number of images per class the model sees in one epoch (for previews and priors)."""
    counts = np.asarray(counts, dtype=np.float64)
    if plan.sampler == "balanced-sampler":
        present = counts > 0
        return np.where(present, counts.sum() / present.sum(), 0.0)
    if plan.sampler in ("oversample", "undersample"):
        labels = np.repeat(np.arange(len(counts)), counts.astype(int))
        idx = epoch_indices(plan, labels, 0, 0, sampling_strategy)
        return np.bincount(labels[idx], minlength=len(counts)).astype(np.float64)
    return counts


# --- loss weighting -----------------------------------------------------------------------------

def inverse_frequency_weights(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    w = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    return w * (np.count_nonzero(w) / w.sum())


def effective_number_weights(counts: np.ndarray, beta: float) -> np.ndarray:
    """Cui et al. 2019: w_c proportional to (1 - beta) / (1 - beta^n_c), normalised to sum to C."""
    counts = np.asarray(counts, dtype=np.float64)
    effective = 1.0 - np.power(beta, counts)
    w = np.where(counts > 0, (1.0 - beta) / np.maximum(effective, 1e-12), 0.0)
    return w * (np.count_nonzero(w) / w.sum())


def class_weights_for_epoch(plan: StrategyPlan, counts: np.ndarray, epoch: int, beta: float,
                            drw_epoch: int) -> np.ndarray | None:
    """Loss weights for ``epoch`` (0-based), or None for unweighted. ``counts`` = what the model sees."""
    if plan.weighting == "weighted-loss":
        return inverse_frequency_weights(counts)
    if plan.weighting == "effective-number":
        return effective_number_weights(counts, beta)
    if plan.weighting == "drw":
        return effective_number_weights(counts, beta) if epoch >= drw_epoch else None
    return None


def log_prior(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    prior = counts / counts.sum()
    return np.log(np.maximum(prior, 1e-12))


def minority_classes(counts: np.ndarray) -> np.ndarray:
    """Boolean mask of classes whose count is below the median class count."""
    counts = np.asarray(counts, dtype=np.float64)
    return counts < np.median(counts)


def effective_class_mix(plan: StrategyPlan, counts, beta: float = 0.999, drw_epoch: int = 0,
                        sampling_strategy=None, epoch: int | None = None) -> dict:
    """What the model 'sees' per class in an epoch: sampled images and their share of the loss."""
    seen = expected_epoch_counts(plan, np.asarray(counts), sampling_strategy)
    last_epoch = 10**6 if epoch is None else epoch
    weights = class_weights_for_epoch(plan, seen, last_epoch, beta, drw_epoch)
    mass = seen * (weights if weights is not None else 1.0)
    if plan.balanced_softmax:
        # logit adjustment equalises the effective prior: each class's gradient mass becomes uniform
        mass = np.where(seen > 0, seen.sum() / max(1, np.count_nonzero(seen)), 0.0)
    total = mass.sum() or 1.0
    return {"samples_per_epoch": seen.tolist(), "loss_share": (mass / total).tolist()}
