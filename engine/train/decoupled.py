"""Decoupled classifier re-training (Kang et al., ICLR 2020): keep the trained backbone, balance
its penultimate features, re-train only the final linear layer; and tau-normalisation of that
layer's weights.

Long-tailed training learns good features but a classifier biased towards the head classes
(large weight norms for frequent classes). Re-training the last layer on class-balanced features
(cRT: plain class-balanced re-sampling, or synthetic minority points from imbalanced-learn's
over-samplers in feature space) removes the bias for the cost of one forward pass over the
training split; tau-normalisation (w_c / ||w_c||^tau) removes part of it without any training.
"""
from __future__ import annotations

import math
import time
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from balancelab.engine.core.events import Progress, StopToken
from balancelab.engine.core.metrics import HEADLINE, compute_metrics
from balancelab.engine.data.image_bank import ImageBank
from balancelab.engine.train.checkpoints import save_checkpoint
from balancelab.engine.train.loop import evaluate
from balancelab.engine.train.models import ModelError, head_parameters
from balancelab.engine.train.strategies import COMPONENTS


class RetrainError(ValueError):
    """Features that cannot be balanced (e.g. too few images of a class for SMOTE's neighbours)."""


def final_linear(model: nn.Module, model_name: str) -> nn.Linear:
    """The model's classification layer: the last ``nn.Linear`` among its head parameters.

    Its input is the penultimate feature vector and its output the logits, for every registered
    model that classifies with a linear layer (not squeezenet, whose head is a 1x1 convolution).
    """
    head = {id(p) for p in head_parameters(model, model_name)}
    linears = [m for m in model.modules() if isinstance(m, nn.Linear) and id(m.weight) in head]
    if not linears:
        raise ModelError(f"{model_name} does not classify with a linear layer; classifier re-training "
                         "and tau-normalisation need one")
    return linears[-1]


def extract_features(model: nn.Module, head: nn.Linear, bank: ImageBank, device: torch.device,
                     stop: StopToken, augment=None, generator: torch.Generator | None = None,
                     batch_size: int = 512, phase: str = "features") -> Iterator:
    """Inputs of ``head`` for every image of ``bank`` (eval mode, optionally augmented first).

    Yields Progress per batch; returns the N x D float32 features, or None when stopped.
    """
    captured: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0].detach().flatten(1).float().cpu()))
    model.eval()
    n_batches = max(1, math.ceil(len(bank) / batch_size))
    try:
        with torch.inference_mode():
            for b in range(n_batches):
                if stop.requested:
                    return None
                idx = np.arange(b * batch_size, min(len(bank), (b + 1) * batch_size))
                if not len(idx):
                    break
                x, _ = bank.batch(idx, device)
                if augment is not None:
                    x = augment(x, generator)
                model(x)
                yield Progress(phase, b + 1, n_batches)
    finally:
        hook.remove()
    if not captured:
        return np.zeros((0, head.in_features), dtype=np.float32)
    return torch.cat(captured).numpy()


# --- balancing the features -----------------------------------------------------------------------

def class_balanced_indices(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """cRT's class-balanced re-sampling: every present class drawn as often as the largest one."""
    counts = np.bincount(labels)
    target = counts.max()
    parts = [rng.choice(np.flatnonzero(labels == c), target, replace=True) for c in np.flatnonzero(counts)]
    return rng.permutation(np.concatenate(parts))


def synthesise(feats: np.ndarray, labels: np.ndarray, sampler_name: str, seed: int,
               k_neighbors: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Balance ``feats`` with imbalanced-learn's over-sampler ``sampler_name`` (SMOTE, ADASYN, ...).

    Returns the original points followed by the synthetic ones. ``k_neighbors`` is lowered to
    fit the smallest class, so a class with a handful of images still gets new points.
    """
    import imblearn.over_sampling as over

    counts = np.bincount(labels)
    smallest = int(counts[counts > 0].min())
    if smallest < 2:
        raise RetrainError(f"{sampler_name} needs at least 2 training images per class")
    k = max(1, min(k_neighbors, smallest - 1))
    kwargs: dict = {"random_state": seed}
    if sampler_name == "ADASYN":
        kwargs["n_neighbors"] = k
    elif sampler_name in ("BorderlineSMOTE", "SVMSMOTE"):
        kwargs.update(k_neighbors=k, m_neighbors=max(k, min(10, smallest - 1)))
    elif sampler_name == "KMeansSMOTE":
        return _kmeans_smote(feats, labels, counts, smallest, k, seed)
    else:
        kwargs["k_neighbors"] = k
    return _resample(getattr(over, sampler_name)(**kwargs), sampler_name, feats, labels)


def _resample(sampler, name: str, feats: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    try:
        new_x, new_y = sampler.fit_resample(feats.astype(np.float64), labels)
    except (ValueError, RuntimeError) as exc:
        raise RetrainError(f"{name} could not balance the features: {str(exc).splitlines()[0]}") from None
    return new_x.astype(np.float32), new_y.astype(np.int64)


def _kmeans_smote(feats: np.ndarray, labels: np.ndarray, counts: np.ndarray, smallest: int, k: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """KMeansSMOTE needs a cluster holding more than k images of each class it grows: a small class
    spread over many clusters has none, so fewer clusters are tried, down to one (plain SMOTE)."""
    from imblearn.over_sampling import KMeansSMOTE
    from sklearn.cluster import MiniBatchKMeans

    n_clusters = max(1, min(len(counts) * 2, len(labels) // max(1, smallest)))
    while True:
        sampler = KMeansSMOTE(random_state=seed, k_neighbors=k, cluster_balance_threshold=0.0,
                              kmeans_estimator=MiniBatchKMeans(n_clusters=n_clusters, random_state=seed, n_init=3))
        try:
            return _resample(sampler, "KMeansSMOTE", feats, labels)
        except RetrainError as exc:
            if n_clusters == 1 or "No clusters found" not in str(exc):
                raise
        n_clusters = max(1, n_clusters // 2)


# --- re-training the last layer -------------------------------------------------------------------

def retrain_linear(head: nn.Linear, feats: np.ndarray, labels: np.ndarray, epochs: int, lr: float,
                   seed: int, balance: str | None, stop: StopToken, batch_size: int = 256) -> Iterator:
    """Train ``head`` (in place) on ``feats`` with Adam and a cosine schedule.

    ``balance="resample"`` draws a fresh class-balanced epoch each time (cRT); None uses the
    features as given (already balanced by :func:`synthesise`). Yields Progress per epoch;
    returns the last epoch's mean loss, or None when stopped (the head is then unchanged).
    """
    rng = np.random.default_rng(seed)
    x_all = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    device = head.weight.device
    work = nn.Linear(head.in_features, head.out_features, bias=head.bias is not None)
    work.load_state_dict({k: v.detach().cpu() for k, v in head.state_dict().items()})
    optimizer = torch.optim.Adam(work.parameters(), lr=lr)
    epoch_len = len(class_balanced_indices(labels, rng)) if balance == "resample" else len(labels)
    steps = max(1, epochs * math.ceil(epoch_len / batch_size))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(1.0, s / steps))))
    loss_value = math.nan
    for epoch in range(epochs):
        order = class_balanced_indices(labels, rng) if balance == "resample" else rng.permutation(len(labels))
        total, seen = 0.0, 0
        for start in range(0, len(order), batch_size):
            if stop.requested:
                return None
            idx = torch.from_numpy(order[start:start + batch_size])
            loss = F.cross_entropy(work(x_all[idx]), y_all[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        loss_value = total / max(seen, 1)
        yield Progress("re-training the classifier", epoch + 1, epochs, f"loss {loss_value:.4f}")
    with torch.no_grad():
        head.weight.copy_(work.weight.to(device))
        if head.bias is not None:
            head.bias.copy_(work.bias.to(device))
    return loss_value


# --- tau-normalisation ----------------------------------------------------------------------------

def tau_normalised(weight: torch.Tensor, tau: float) -> torch.Tensor:
    """w_c / ||w_c||^tau per class row: tau=0 is the original layer, tau=1 gives unit norms."""
    norms = weight.detach().norm(dim=1, keepdim=True).clamp_min(1e-12)
    return weight / norms.pow(float(tau))


def apply_tau_norm(model: nn.Module, model_name: str, tau: float) -> nn.Module:
    """Rescale the model's classification weights in place (the bias is kept as it is)."""
    if tau:
        head = final_linear(model, model_name)
        with torch.no_grad():
            head.weight.copy_(tau_normalised(head.weight, tau))
    return model


# --- the phase after the epochs -------------------------------------------------------------------

def retrain_classifier(model: nn.Module, model_name: str, component: str, train_bank: ImageBank,
                       device: torch.device, stop: StopToken, epochs: int, lr: float, seed: int) -> Iterator:
    """Re-train ``model``'s last linear layer (in place) on balanced features of ``train_bank``.

    ``component`` names a registered ``retrain`` strategy; its feature sampler says how the
    features are balanced. Everything but the last layer stays bit-identical. Yields Progress;
    returns a summary dict for metrics.json, or None when stopped (the model is then unchanged).
    """
    started = time.perf_counter()
    sampler = COMPONENTS[component].feature_sampler
    head = final_linear(model, model_name)
    feats = yield from extract_features(model, head, train_bank, device, stop, phase="classifier features")
    if feats is None or stop.requested:
        return None
    x, y = feats, train_bank.labels
    if sampler != "class-balanced":
        yield Progress("synthesising features", 0, 1, sampler)
        x, y = synthesise(feats, y, sampler, seed)
        yield Progress("synthesising features", 1, 1, sampler)
    # every epoch is drawn class-balanced from the (original + synthetic) points: exact balance even
    # where a sampler generates fewer points than asked (ADASYN's rounding, BorderlineSMOTE without
    # points in danger), and the synthetic points widen what the minority classes cover
    loss = yield from retrain_linear(head, x, y, epochs, lr, seed, "resample", stop)
    if loss is None:
        return None
    return {
        "strategy": component, "feature_sampler": sampler, "epochs": epochs, "lr": lr,
        "train_features": int(len(feats)), "synthetic_features": int(len(y) - len(feats)),
        "features_per_class": np.bincount(y, minlength=head.out_features).tolist(), "final_loss": float(loss),
        "seconds": time.perf_counter() - started,
    }


def retrain_phase(cfg, component: str, model: nn.Module, best_state: dict, best_path: str, train_bank: ImageBank,
                  val_bank: ImageBank, classes: list[str], device: torch.device, stop: StopToken) -> Iterator:
    """Decoupled classifier re-training of the best checkpoint; best.pt then holds the new last
    layer. Returns (summary for metrics.json or None, stopped); stopping keeps the checkpoint.
    ``cfg`` is the run's TrainConfig (retrain_epochs, retrain_lr, seed, model)."""

    before = compute_metrics(val_bank.labels, evaluate(model, val_bank, device)[0], classes)
    summary = yield from retrain_classifier(model, cfg.model, component, train_bank, device, stop,
                                            cfg.retrain_epochs, cfg.retrain_lr, cfg.seed)
    if summary is None:
        model.load_state_dict(best_state["model"])
        return None, True
    after = compute_metrics(val_bank.labels, evaluate(model, val_bank, device)[0], classes)
    summary.update({f"val_{key}_before": before[key] for key in HEADLINE})
    summary.update({f"val_{key}": after[key] for key in HEADLINE})
    save_checkpoint({**best_state, "model": model.state_dict(), "retrain": summary}, best_path)
    return summary, False
