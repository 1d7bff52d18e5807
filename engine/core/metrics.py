"""Imbalance-aware metrics from scikit-learn and imbalanced-learn, in one plain dict."""
from __future__ import annotations

import warnings

import numpy as np
from imblearn.metrics import classification_report_imbalanced, geometric_mean_score
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score, top_k_accuracy_score

def adjust_probabilities(probs: np.ndarray, log_prior: np.ndarray, tau: float) -> np.ndarray:
    """Post-hoc logit adjustment (Menon et al. 2021): softmax(log p - tau * log prior)."""
    if not tau:
        return probs
    logits = np.log(np.clip(probs, 1e-12, 1.0)) - tau * np.asarray(log_prior)[None, :]
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def format_mean_spread(mean: float, std: float, runs: int, digits: int = 4) -> str:
    """``mean ± std`` only when there is a spread to show (two runs or more); one run is just its value."""
    if runs >= 2:
        return f"{mean:.{digits}f} ± {std:.{digits}f}"
    return f"{mean:.{digits}f}"


def prior_is_uniform(log_prior, tolerance: float = 0.05) -> bool:
    """True when every class had (nearly) the same share of what the model saw: post-hoc logit
    adjustment then subtracts a constant and changes no prediction (e.g. after re-sampling)."""
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
        balanced = balanced_accuracy_score(y_true, y_pred)
        gmean = geometric_mean_score(y_true, y_pred, labels=labels, average="multiclass")
        macro_f1 = f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
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
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced),
        "macro_f1": float(macro_f1),
        "geometric_mean": float(gmean),
        "top_k_accuracy": top_k,
        "classes": list(classes),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "confusion_matrix_normalized": normalized.round(6).tolist(),
        "n_evaluated": int(len(y_true)),
    }
