"""Rank and flag likely label errors from out-of-fold probabilities with cleanlab.

The filtering (which images are flagged) and the ranking (which come first) are cleanlab's
``filter.find_label_issues`` and ``rank.get_label_quality_scores``; BalanceLab only feeds them
sharp out-of-fold probabilities and adds what the review needs: the suspected class (the most
probable class *other than* the given one) and the estimated noise per class pair.

Defaults were chosen on planted truth (bench/curation_quality.py, 5 % flips on 3,000 MNIST
images): ranking by self-confidence, and the ``calibrated_self_confidence`` filter, which flags
the lowest-self-confidence images, as many as cleanlab's *calibrated* noise estimate
(``num_label_issues(estimation_method="off_diagonal_calibrated")``). cleanlab's own
``low_self_confidence`` takes as many as the uncalibrated off-diagonal count, which undercounts
(126 flagged for 150 planted flips: recall .820 at precision .976); the calibrated count (159) gives
recall .967 at precision .912 on the same probabilities.
"""
from __future__ import annotations

import numpy as np

FILTERS = ("low_self_confidence", "prune_by_noise_rate", "prune_by_class", "both", "confident_learning",
           "predicted_neq_given", "low_normalized_margin", "calibrated_self_confidence")
RANKINGS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")
DEFAULT_FILTER = "calibrated_self_confidence"
DEFAULT_RANKING = "self_confidence"

# Defaults of the label-issues run (CLI, GUI, bench), measured on planted truth; kept here so
# that building the CLI parser needs no torch import.
DEFAULT_FOLDS = 5  # cross-validation folds: each image is held out once
LABEL_ISSUE_MODEL = "tiny-2conv"
LABEL_ISSUE_EPOCHS = 5
LABEL_ISSUE_LR = 3e-3  # with batch 32: OOF accuracy .958 vs .931 at 1e-3 / 64 in 5 epochs (same cost)
LABEL_ISSUE_BATCH = 32
TTA_MODES = ("none", "shift")
DEFAULT_TTA = "shift"
DEFAULT_REPEATS = 1


class LabelRankingError(ValueError):
    """Probabilities or labels that cannot be ranked (shape, range, too few images per class)."""


def check_probabilities(labels: np.ndarray, probs: np.ndarray, n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validated (labels, probs): 2-D finite non-negative probabilities, one row per label, rows
    renormalised to sum to 1 (a CSV rounded to 6 decimals sums to 1 +- 1e-5)."""
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    if probs.ndim != 2 or probs.shape[0] == 0 or probs.shape[1] < 2:
        raise LabelRankingError(f"expected an N x K probability matrix with K >= 2, got shape {probs.shape}")
    if not np.issubdtype(probs.dtype, np.floating):
        raise LabelRankingError(f"probabilities must be floating point, got {probs.dtype}")
    if n_classes is not None and probs.shape[1] != n_classes:
        raise LabelRankingError(f"{probs.shape[1]} probability columns for {n_classes} classes")
    if labels.shape != (probs.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise LabelRankingError(f"expected {probs.shape[0]} integer labels, got shape {labels.shape} ({labels.dtype})")
    if labels.min() < 0 or labels.max() >= probs.shape[1]:
        raise LabelRankingError("a label is outside the probability columns")
    probs = probs.astype(np.float64)
    if not np.isfinite(probs).all() or (probs < 0).any():
        raise LabelRankingError("probabilities must be finite and non-negative")
    sums = probs.sum(axis=1, keepdims=True)
    if (np.abs(sums - 1.0) > 1e-2).any():
        raise LabelRankingError("each row of probabilities must sum to 1")
    return labels.astype(np.int64), probs / sums


def suspected_class(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """The most probable class other than the given one: the relabel suggestion. (The given class
    is excluded here only; whether an image is flagged never depends on this.)"""
    others = probs.copy()
    others[np.arange(len(labels)), labels] = -np.inf
    return others.argmax(axis=1)


def lowest_self_confidence(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Mask of the images with the lowest probability of their given label, as many as cleanlab
    estimates from the calibrated confident joint (its per-class noise rates scaled to the class
    sizes): the count that ``low_self_confidence`` underestimates when the fold models are good."""
    from cleanlab.count import num_label_issues
    from cleanlab.rank import get_label_quality_scores

    n = int(num_label_issues(labels, probs, estimation_method="off_diagonal_calibrated"))
    order = np.argsort(get_label_quality_scores(labels, probs, method="self_confidence"), kind="stable")
    flagged = np.zeros(len(labels), dtype=bool)
    flagged[order[:n]] = True
    return flagged


def rank_label_issues(labels, probs, filter_by: str = DEFAULT_FILTER, rank_by: str = DEFAULT_RANKING,
                      require_disagreement: bool = True) -> dict:
    """Quality score per image (low = suspicious), flagged mask, suspected class, order (flagged
    first, lowest quality first) and the confident joint (estimated count per given x true class).

    ``require_disagreement``: never flag an image whose given label is the model's top prediction
    (cleanlab's quality-count filters can, when few classes are confident)."""
    from cleanlab.count import compute_confident_joint
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    if filter_by not in FILTERS:
        raise LabelRankingError(f"unknown filter '{filter_by}'; choose one of: {', '.join(FILTERS)}")
    if rank_by not in RANKINGS:
        raise LabelRankingError(f"unknown ranking '{rank_by}'; choose one of: {', '.join(RANKINGS)}")
    labels, probs = check_probabilities(labels, probs)
    k = probs.shape[1]
    counts = np.bincount(labels, minlength=k)
    if (counts == 0).any():
        raise LabelRankingError("every class needs at least one image with its label")
    quality = get_label_quality_scores(labels, probs, method=rank_by)
    if filter_by == "calibrated_self_confidence":
        flagged = lowest_self_confidence(labels, probs)
    else:
        flagged = find_label_issues(labels, probs, filter_by=filter_by, n_jobs=1)
    if require_disagreement:
        flagged &= probs.argmax(axis=1) != labels
    joint = compute_confident_joint(labels, probs, calibrate=True)
    order = np.lexsort((np.arange(len(labels)), quality, ~flagged))
    return {"quality": quality, "self_confidence": probs[np.arange(len(labels)), labels], "flagged": flagged,
            "suggested": suspected_class(labels, probs), "predicted": probs.argmax(axis=1), "order": order,
            "confident_joint": np.asarray(joint, dtype=np.int64)}
