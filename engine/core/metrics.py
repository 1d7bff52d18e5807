"""Imbalance-aware metrics from scikit-learn and imbalanced-learn, in one plain dict.

:data:`HEADLINE` is the metric registry: one entry per headline metric (key in metrics.json,
label, how to format it, whether higher is better, how to compute it). metrics.json, the Results
tab, the comparison table, the HTML report, the CLI and `compare` all read it: adding a headline
metric touches this file only.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from imblearn.metrics import classification_report_imbalanced, geometric_mean_score
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score, top_k_accuracy_score

@dataclass(frozen=True)
class Metric:
    key: str  # the key in metrics.json (and, prefixed with val_, in the training history)
    label: str  # short, for column headers
    name: str  # in full, for sentences and reports
    description: str
    compute: Callable[[np.ndarray, np.ndarray, list[int]], float]  # (y_true, y_pred, labels) -> value
    higher_is_better: bool = True
    class_averaged: bool = True  # a mean over classes: one image of a small class moves it the most

    def format(self, value) -> str:
        return f"{value:.4f}" if isinstance(value, (int, float)) else "—"

    def resolution(self, class_counts) -> float:
        """How much one image can move this metric on a split with these class counts: 1 / images
        for accuracy, 1 / (classes x images of the smallest class) for a mean over classes (exact
        for balanced accuracy, about that for macro-F1 and G-mean). Two epochs closer than this
        differ by less than one image of the smallest class: noise for choosing between them."""
        counts = np.asarray([c for c in class_counts if c > 0], dtype=np.float64)
        if counts.size == 0:
            return 0.0
        return float(1.0 / (counts.size * counts.min()) if self.class_averaged else 1.0 / counts.sum())


HEADLINE: dict[str, Metric] = {m.key: m for m in (
    Metric("accuracy", "Accuracy", "accuracy", "share of images classified correctly (dominated by the large classes)",
           lambda y, p, labels: accuracy_score(y, p), class_averaged=False),
    Metric("balanced_accuracy", "Balanced acc.", "balanced accuracy", "mean recall over classes: every class counts the same",
           lambda y, p, labels: balanced_accuracy_score(y, p)),
    Metric("macro_f1", "Macro-F1", "macro-F1", "mean F1 over classes, including classes that were never predicted",
           lambda y, p, labels: f1_score(y, p, labels=labels, average="macro", zero_division=0)),
    Metric("geometric_mean", "G-mean", "G-mean", "geometric mean of per-class recall (imbalanced-learn): 0 if any class is "
           "never recognised", lambda y, p, labels: geometric_mean_score(y, p, labels=labels, average="multiclass")),
)}


#: The largest post-hoc logit adjustment accepted: tau * log-prior beyond it only pushes every
#: prediction to the rarest class.
MAX_POSTHOC_TAU = 10.0
#: The largest classifier tau-normalisation, w / ||w||^tau: 1 gives unit-norm class weights;
#: beyond 2 the rarest class wins everything.
MAX_TAU_NORM = 2.0


def adjust_probabilities(probs: np.ndarray, log_prior: np.ndarray, tau: float) -> np.ndarray:
    """Post-hoc logit adjustment (Menon et al. 2021): softmax(log p - tau * log prior)."""
    if not tau:
        return probs
    logits = np.log(np.clip(probs, 1e-12, 1.0)) - tau * np.asarray(log_prior)[None, :]
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def posthoc_log_prior(record: dict, n_classes: int) -> np.ndarray:
    """The prior post-hoc logit adjustment subtracts: the class shares of the *training data*
    (``train_counts``), whatever the run's sampler did with them.

    Menon et al. define the correction with the training label distribution. A re-sampled run
    saw every class equally often (its ``log_prior``, kept for what it trained under, is
    uniform), yet its rare classes still lose ambiguous images to the frequent ones: they are
    the same few images repeated. Measured on long-tailed MNIST (bench/long_tail.py), τ = 1 by the
    data prior lifts oversample+minority-augment from 98.32 to 98.62 % balanced accuracy. Falls
    back to ``log_prior`` (runs without counts), then to uniform; a wrong length is refused."""
    shares = _count_shares(record.get("train_counts") if isinstance(record, dict) else None, n_classes)
    if shares is not None:
        return np.log(shares)
    prior = record.get("log_prior") if isinstance(record, dict) else None
    if prior is None:
        return np.log(np.full(n_classes, 1.0 / max(1, n_classes)))
    try:
        prior = np.asarray(prior, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ValueError("the run's class prior is not a list of numbers") from None
    if prior.shape != (n_classes,):
        raise ValueError(f"the run's class prior has {prior.size} values for {n_classes} classes")
    if not np.all(np.isfinite(prior)):
        raise ValueError("the run's class prior holds values that are not finite numbers")
    return prior


def _count_shares(counts, n_classes: int) -> np.ndarray | None:
    """Class shares from recorded counts, or None when they are not ``n_classes`` finite counts >= 0
    with a positive total. A class with no image gets the smallest share of the others (not 0, whose
    log would make that class win almost every image once adjusted)."""
    if not isinstance(counts, (list, tuple)) or len(counts) != n_classes:
        return None
    if not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in counts):
        return None
    try:
        values = np.array([float(c) for c in counts], dtype=np.float64)
    except OverflowError:
        return None
    if not np.all(np.isfinite(values)) or np.any(values < 0) or not values.any():
        return None
    values = np.where(values > 0, values, values[values > 0].min())
    with np.errstate(over="ignore"):
        total = values.sum()
    return values / total if np.isfinite(total) else None


def format_mean_spread(mean: float, std: float, runs: int, digits: int = 4) -> str:
    """``mean ± std`` only when there is a spread to show (two runs or more); one run is just its value."""
    if runs >= 2:
        return f"{mean:.{digits}f} ± {std:.{digits}f}"
    return f"{mean:.{digits}f}"


def prior_is_uniform(log_prior, tolerance: float = 0.05) -> bool:
    """True when every class has (nearly) the same share: post-hoc logit adjustment then
    subtracts a constant and changes no prediction (a balanced training split)."""
    prior = np.asarray(log_prior, dtype=np.float64)
    return prior.size == 0 or float(prior.max() - prior.min()) < tolerance


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    """All metrics of the evaluated split. Classes absent from ``y_true`` still get a row."""
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    n_classes = len(classes)
    labels = list(range(n_classes))
    if len(y_true) == 0:
        raise ValueError("no images to evaluate")
    y_pred = probs.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = classification_report_imbalanced(
            y_true, y_pred, labels=labels, target_names=classes, output_dict=True, zero_division=0)
        headline = {key: float(m.compute(y_true, y_pred, labels)) for key, m in HEADLINE.items()}
    per_class = []
    for i, name in enumerate(classes):
        row = report.get(name, {})
        per_class.append({
            "name": name,
            "precision": float(row.get("pre", 0.0)),
            "recall": float(row.get("rec", 0.0)),
            "specificity": float(row.get("spe", 0.0)),
            "f1": float(row.get("f1", 0.0)),
            "geometric_mean": float(row.get("geo", 0.0)),
            "support": int(cm[i].sum()),
        })
    row_sums = cm.sum(axis=1, keepdims=True)
    normalized = np.divide(cm, row_sums, out=np.zeros_like(cm, dtype=np.float64), where=row_sums > 0)
    top_k = {}
    for k in (2, 3, 5):
        if k < n_classes:
            top_k[f"top{k}"] = float(top_k_accuracy_score(y_true, probs, k=k, labels=labels))
    return {
        **headline,
        "top_k_accuracy": top_k,
        "classes": list(classes),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "confusion_matrix_normalized": normalized.round(6).tolist(),
        "n_evaluated": int(len(y_true)),
    }
