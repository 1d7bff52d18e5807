"""Checkpoints: dicts of state_dicts plus plain-data metadata, written atomically, loaded safely,
and the :class:`CheckpointKeeper` that decides which to keep.

Writing serialises in memory, then goes to a temporary file in the same folder, is fsynced and
``os.replace``d, so a crash or a full disk at any moment leaves either the previous or the new
complete file (and no temporary file); the error is one clear :class:`CheckpointError`.
Loading uses ``weights_only=True``: a checkpoint can never execute code.
"""
from __future__ import annotations

import io
import os
import pickle
from typing import Callable

import torch

from balancelab.engine.core.atomic import atomic_file
from balancelab.engine.core.safe_paths import is_regular_file
from balancelab.engine.core.untrusted import is_finite_number
from balancelab.engine.train.config import INT_RANGES
from balancelab.engine.train.models import load_weights_only
from balancelab.engine.train.run_folder import BEST, HISTORY_FIELDS, LAST
from balancelab.engine.train.run_reading import class_name_ok

REQUIRED_KEYS = ("model", "model_name", "classes", "in_channels", "image_size")
MAX_IMAGE_SIZE = INT_RANGES["image_size"][1]  # what training allows: a crafted size must not build a giant model


class CheckpointError(Exception):
    """A checkpoint that cannot be used or written; the message says why."""


class CheckpointReadError(CheckpointError):
    """The checkpoint could not be read (an I/O error, a permission): not a verdict on its content."""


def save_checkpoint(state: dict, path: str) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)  # into memory: torch's own writer turns ENOSPC into an opaque RuntimeError
    try:
        with atomic_file(path, "wb", suffix=".pt") as fh:
            fh.write(buffer.getbuffer())
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        kept = "the previous checkpoint is kept" if os.path.exists(path) else "no checkpoint of this run was written"
        raise CheckpointError(f"cannot write checkpoint {path}: {reason}; {kept}") from None


def load_checkpoint(path: str) -> dict:
    """The checkpoint at ``path``, loaded without executing code and with every field readers use
    checked (:func:`checked_state`); anything else is one :class:`CheckpointError` line."""
    if os.path.islink(path):  # like every run file: BalanceLab writes them itself, never as links
        raise CheckpointError(f"checkpoint {path} is a symbolic link, not a file BalanceLab wrote")
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    if not is_regular_file(path):
        raise CheckpointError(f"checkpoint {path} is not a regular file")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"checkpoint is empty (zero bytes): {path}")
    try:
        state = load_weights_only(path)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsafe content"
        if "weights only" in first.lower() or "weights_only" in first:  # never pass on torch's 'load it unsafely' advice
            first = "unreadable, or holding objects other than tensors and plain values"
        raise CheckpointError(f"refusing to load {path}: it is not a plain weights file ({first})") from None
    except MemoryError:
        raise CheckpointError(f"checkpoint {path} claims more memory than there is: it is damaged") from None
    except OSError as exc:  # the disk, not the file: reading it again may work
        raise CheckpointReadError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # torch's unpickler meets garbage with any exception type (IndexError, KeyError, ...)
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt: {_first_sentence(exc)}") from None
    return checked_state(state, path)


def _first_sentence(exc: BaseException) -> str:
    """torch's reason in a few words: its first sentence (its messages go on with advice for
    developers, e.g. "This is an internal miniz error. If you are seeing this error, ...")."""
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    end = text.find(". ")
    text = text[:end] if end > 0 else text.rstrip(".")
    return text if len(text) <= 160 else text[:159] + "…"


def checked_state(state: object, path: str) -> dict:
    """``state`` when it is a BalanceLab checkpoint whose fields have the types and sizes every
    reader relies on; a crafted or damaged one raises :class:`CheckpointError` naming the field.
    A missing or null ``log_prior`` / ``train_counts`` is dropped (readers fall back to uniform)."""
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
        raise CheckpointError(f"{path} is not a BalanceLab checkpoint (missing keys)")

    def damaged(what: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {path} is damaged: {what}")

    weights = state["model"]
    if not (isinstance(weights, dict) and weights
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items())):
        raise damaged("its weights are not a table of named tensors")
    if any(v.is_complex() for v in weights.values()):  # load_state_dict would drop the imaginary part silently
        raise damaged("it holds complex-valued weights")
    if not isinstance(state["model_name"], str) or not state["model_name"]:
        raise damaged("model_name is not a name")
    classes = state["classes"]
    if not (isinstance(classes, list) and classes and all(class_name_ok(c) for c in classes)
            and len(set(classes)) == len(classes)):
        raise damaged("it does not list its classes as distinct names")
    if not _is_int(state["in_channels"]) or state["in_channels"] not in (1, 3):
        raise damaged("in_channels is not 1 or 3")
    if not _is_int(state["image_size"]) or not 1 <= state["image_size"] <= MAX_IMAGE_SIZE:
        raise damaged(f"image_size is not a whole number of pixels from 1 to {MAX_IMAGE_SIZE}")
    for key in ("mean", "std"):
        values = state.get(key)
        if values is not None and not (isinstance(values, (list, tuple)) and all(is_finite_number(v) for v in values)):
            raise damaged(f"{key} is not a list of numbers")
    if any(not v > 0 for v in state.get("std") or ()):
        raise damaged("std holds a value that is not above zero")
    for key, valid in (("log_prior", is_finite_number), ("train_counts", lambda v: _is_int(v) and v >= 0)):
        values = state.get(key)
        if values is None:
            state.pop(key, None)
        elif not (isinstance(values, list) and len(values) == len(classes) and all(valid(v) for v in values)):
            raise damaged(f"{key} is not one {'count' if key == 'train_counts' else 'number'} per class")
    if not isinstance(state.get("strategy", ""), str):
        raise damaged("strategy is not a name")
    if not isinstance(state.get("deskew", False), bool):  # older checkpoints have none: not deskewed
        raise damaged("deskew is not true or false")
    return state


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class CheckpointKeeper:
    """Owns the best/last policy (in the style of timm's ``CheckpointSaver``).

    The training loop reports each epoch's selection metric; the keeper decides whether it is
    the best so far, writes ``best.pt`` (when it is) and ``last.pt`` atomically, and counts the
    epochs without improvement for early stopping.

    ``tolerance`` is how much the metric may fall short of the best value seen and still make a
    later epoch the best: the metric's resolution on the validation split (one image of its
    smallest class, :meth:`Metric.resolution`). A split with 8 images of its rarest class moves
    balanced accuracy by 1.25 points per image, so an earlier epoch "ahead" by 0.1 point is
    noise; keeping it kept the 1st of 5 cosine epochs on long-tailed MNIST (97.2 % on test, the
    5th: 98.3 %). Early stopping still waits for a value above the best seen.
    """

    def __init__(self, run_dir: str, metric: str, patience: int = 0, tolerance: float = 0.0) -> None:
        self.best_path = os.path.join(run_dir, BEST)
        self.last_path = os.path.join(run_dir, LAST)
        self.metric = metric
        self.lower_is_better = metric == "val_loss"
        self.patience = patience
        self.patience_left = patience
        self.tolerance = max(0.0, float(tolerance))
        self.best_value: float | None = None  # the kept epoch's value
        self.peak: float | None = None  # the best value any epoch reached
        self.best_epoch = 0

    def restore(self, state: dict) -> None:
        """Continue the policy of a resumed run from its last checkpoint (untrusted: entries
        without a whole epoch number or a finite value are skipped)."""
        value = state.get("best_metric")
        self.best_value = float(value) if is_finite_number(value) else None
        raw = state.get("history")
        history = [h for h in raw if isinstance(h, dict) and _is_int(h.get("epoch"))] if isinstance(raw, list) else []
        self.best_epoch = max((h["epoch"] for h in history if h.get("is_best") is True), default=0)
        seen = [value for _, value in selection_values(history, self.metric)]
        since_peak, running = 0, None  # epochs after the last new peak: early stopping's patience spent
        for value in seen:
            if running is None or (value < running if self.lower_is_better else value > running):
                running, since_peak = value, 0
            else:
                since_peak += 1
        if self.best_value is not None:
            seen.append(self.best_value)
        self.peak = (min(seen) if self.lower_is_better else max(seen)) if seen else None
        self.patience_left = self.patience - since_peak  # a resumed run stops where an uninterrupted one would

    def improves(self, value: float) -> bool:
        """Would an epoch with ``value`` become the best: at least the best seen, or short of it by
        no more than the tolerance (the later epoch wins what the split cannot tell apart)."""
        if self.peak is None:
            return True
        return value <= self.peak + self.tolerance if self.lower_is_better else value >= self.peak - self.tolerance

    def step(self, epoch: int, value: float, make_state: Callable[[float | None], dict]) -> list[tuple[str, str]]:
        """Record ``epoch`` (1-based) with ``value``; returns the (kind, path) checkpoints written.

        ``make_state(best_value)`` builds the checkpoint dict; it is called after the decision.
        """
        is_best = self.improves(value)
        new_peak = self.peak is None or (value < self.peak if self.lower_is_better else value > self.peak)
        if new_peak:
            self.peak = value
            self.patience_left = self.patience
        else:
            self.patience_left -= 1
        if is_best:
            self.best_value, self.best_epoch = value, epoch
        state = make_state(self.best_value)
        targets = ([("best", self.best_path)] if is_best else []) + [("last", self.last_path)]
        for _, path in targets:
            save_checkpoint(state, path)
        return targets

    @property
    def exhausted(self) -> bool:
        """Early stopping: ``patience`` epochs in a row without improvement (0 = never)."""
        return bool(self.patience and self.patience_left <= 0)

    @property
    def has_best(self) -> bool:
        return os.path.exists(self.best_path)

    def load_best(self) -> dict:
        return load_checkpoint(self.best_path)


def checked_history(value: object, epochs: int) -> list[dict]:
    """The per-epoch history a resumed run goes on from (read back from ``last.pt``: untrusted):
    epochs 1, 2, … up to ``epochs``, each with every history.csv field a finite number, ending at
    the first entry that is not, so the curves, history.csv and metrics.json never receive text,
    NaN or a missing column."""
    out: list[dict] = []
    for entry in value[:epochs] if isinstance(value, list) else []:
        if not isinstance(entry, dict) or entry.get("epoch") != len(out) + 1 or isinstance(entry.get("epoch"), bool):
            break
        numbers = [entry.get(key) for key in HISTORY_FIELDS]
        if not all(is_finite_number(v) for v in numbers):
            break
        out.append({**dict(zip(HISTORY_FIELDS, numbers)), "epoch": len(out) + 1, "is_best": entry.get("is_best") is True})
    return out


def selection_values(history: list[dict], metric: str) -> list[tuple[object, float]]:
    """(epoch, value of the selection metric) of each history entry that holds a number for it
    (read back from a checkpoint or metrics.json: anything else is skipped)."""
    key = metric if metric == "val_loss" else f"val_{metric}"
    return [(h.get("epoch"), float(h[key])) for h in history if is_finite_number(h.get(key))]


def selection_sentence(metrics: dict) -> str:
    """Which epoch ``best.pt`` holds and why, in one line, from a run's metrics (read back: any field
    may be missing or wrong, then the line says less)."""
    history = [h for h in metrics.get("history") or [] if isinstance(h, dict) and isinstance(h.get("epoch"), int)]
    best, metric = metrics.get("best_epoch"), metrics.get("select_metric") or "balanced_accuracy"
    if not isinstance(best, int) or not history or not isinstance(metric, str):
        return ""
    values = dict(selection_values(history, metric))
    words = "validation " + ("loss" if metric == "val_loss" else metric.replace("_", " "))
    head = f"kept epoch {best} of {len(history)}"
    if best not in values:
        return f"{head} (selected on the {words})"
    sign = -1.0 if metric == "val_loss" else 1.0  # the best value; of equal ones the latest epoch, as the keeper
    peak = max(values, key=lambda e: (sign * values[e], e))
    tolerance = metrics.get("selection_tolerance")
    if peak == best or not isinstance(tolerance, (int, float)):
        return f"{head} (the best {words}, {values[best]:.4f})"
    return (f"{head}: {words} {values[best]:.4f}; epoch {peak}'s {values[peak]:.4f} is ahead by less than one "
            f"image of the smallest validation class ({tolerance:.4f}), so the later epoch wins")
