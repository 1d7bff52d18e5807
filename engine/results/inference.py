"""Use a finished run: reload its model, re-evaluate it (optionally with post-hoc logit
adjustment or tau-normalised classifier weights), and predict single images. Shared by the CLI
and the GUI."""
from __future__ import annotations

import contextlib
import os

import numpy as np
import torch

from balancelab.engine.train.checkpoints import CheckpointError, load_checkpoint
from balancelab.engine.data.splits import SampleList
from balancelab.engine.core.events import EventStream, Finished, StopToken, forward
from balancelab.engine.data.imageio import ImageDecodeError, load_array
from balancelab.engine.core.metrics import adjust_probabilities, compute_metrics, posthoc_log_prior
from balancelab.engine.train.models import ModelError, build_model
from balancelab.engine.train.run_folder import (BEST, LAST, RunError, read_config, read_ensemble, read_metrics,
                                                read_split, require_complete)
from balancelab.engine.data.scanner import LayoutError, scan_sync
from balancelab.engine.data.image_bank import ImageBank, decode_split
from balancelab.engine.train.loop import evaluate
from balancelab.engine.train.device import resolve_device
from balancelab.engine.train.decoupled import apply_tau_norm, extract_features, final_linear, tau_normalised


def load_run_model(run_dir: str, which: str = "best", device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the model of a finished run from its checkpoint; clear errors for incomplete runs
    and stale or foreign files."""
    require_complete(run_dir)
    if which not in ("best", "last"):
        raise RunError(f"unknown checkpoint {which!r}: best or last")
    members = read_ensemble(run_dir)
    if members is not None:  # an ensemble run: its members' best checkpoints, averaged
        from balancelab.engine.results.ensemble_model import load_ensemble_model

        model, state = load_ensemble_model(run_dir, members, device)
        _same_classes_as_recorded(run_dir, state)
        return model, state
    state = load_checkpoint(os.path.join(run_dir, BEST if which == "best" else LAST))  # fields checked there
    _same_classes_as_recorded(run_dir, state)

    def build(device: str | None = None) -> torch.nn.Module:
        with torch.device(device) if device else contextlib.nullcontext():
            return build_model(state["model_name"], len(state["classes"]), state["in_channels"], state["image_size"],
                               None, tuple(state.get("mean") or ()), tuple(state.get("std") or ()),
                               state.get("deskew", False))

    try:
        # shapes first, on the meta device (no memory): a crafted image size or class count must
        # not allocate a model of many gigabytes before load_state_dict notices
        skeleton = {k: tuple(v.shape) for k, v in build("meta").state_dict().items()}
        stored = {k: tuple(v.shape) for k, v in state["model"].items()}
        if skeleton != stored:
            differ = sorted(set(skeleton) ^ set(stored)) or sorted(k for k in skeleton if skeleton[k] != stored[k])
            raise ValueError(f"{len(differ)} tensors differ, first {differ[0]!r}")
        model = build()
        model.load_state_dict(state["model"], strict=True)
    except (ModelError, RuntimeError, KeyError, TypeError, ValueError) as exc:
        first = str(exc).splitlines()[0][:200]
        raise CheckpointError(f"checkpoint in {run_dir} does not match its architecture: {first}") from None
    if not all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point()):
        raise CheckpointError(f"checkpoint in {run_dir} holds weights that are not numbers (NaN or infinite)")
    model.to(resolve_device(device)).eval()
    return model, state


def load_usable_model(run_dir: str, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """:func:`load_run_model`, then the model run once on a grey image: weights that are finite
    but overflow to NaN (a damaged or crafted checkpoint) are refused before anyone draws maps,
    writes an ensemble or a report from them."""
    model, state = load_run_model(run_dir, "best", device)
    size, channels = state["image_size"], state["in_channels"]
    finite_outputs(predict_arrays(model, np.full((1, size, size, channels), 128, dtype=np.uint8), device), run_dir)
    return model, state


def _same_classes_as_recorded(run_dir: str, state: dict) -> None:
    """The checkpoint's class names must be metrics.json's, in order: a swapped or foreign list
    would print every prediction under the wrong name and still exit 0."""
    if list(state["classes"]) != list(read_metrics(run_dir)["classes"]):
        raise CheckpointError(f"the checkpoint of {run_dir} names other classes than its metrics.json "
                              "(the run folder was changed after training)")


def _prior(state: dict, tau: float) -> np.ndarray:
    """What post-hoc adjustment by ``tau`` subtracts; a run that records no prior would silently
    fall back to a uniform one, which subtracts nothing: say so instead of reporting τ as applied."""
    if tau and "train_counts" not in state and "log_prior" not in state:
        raise RunError("this run's checkpoint records no class prior (train_counts or log_prior), so "
                       "--posthoc-tau has nothing to subtract")
    return posthoc_log_prior(state, len(state["classes"]))


def finite_outputs(values: np.ndarray, run_dir: str, what: str = "outputs") -> np.ndarray:
    """``values`` (the model's outputs or features) when every one is a number; weights that are
    finite but huge (a damaged or crafted checkpoint) overflow to NaN, which no metric or ranking
    may be computed from."""
    if not np.isfinite(values).all():
        raise CheckpointError(f"the model of {run_dir} gives {what} that are not numbers (NaN or infinite): "
                              "its checkpoint is damaged")
    return values


def _eval_samples(run_dir: str, data_root: str, classes: list[str], stop: StopToken, split: str | None):
    """Samples to evaluate: the dataset's test split if present, else the run's validation list."""
    try:
        result = scan_sync(data_root)
    except LayoutError as exc:
        raise RunError(str(exc)) from None
    index = {c: i for i, c in enumerate(classes)}
    chosen = split or ("test" if "test" in result.split_classes else "val")
    if chosen in result.split_classes:
        items = [(img.path, img.label) for img in result.images if img.split == chosen]
    elif chosen == "val":
        items = [tuple(x) for x in read_split(run_dir)["val"]]
        readable = {img.path for img in result.images}
        items = [it for it in items if it[0] in readable]
    else:
        raise RunError(f"the dataset has no '{chosen}' split")
    unknown = sorted({label for _, label in items if label not in index})
    if unknown:
        raise RunError(f"the dataset has classes the model was not trained on: {', '.join(unknown)}")
    if not items:
        raise RunError(f"no readable images in the '{chosen}' split")
    return chosen, SampleList([p for p, _ in items], np.array([index[l] for _, l in items], dtype=np.int64))


def evaluate_run(run_dir: str, data_root: str, posthoc_tau: float = 0.0, split: str | None = None,
                 device: str = "cpu", which: str = "best", tau_norm: float = 0.0) -> dict:
    """Metrics of a run's checkpoint on ``split``; ``posthoc_tau`` subtracts tau x log prior from
    the logits, ``tau_norm`` divides each class's weights by their norm^tau (Kang et al. 2020)."""
    stop = StopToken()
    model, state = load_run_model(run_dir, which, device)
    _tau_norm(model, state, tau_norm)
    classes = list(state["classes"])
    chosen, samples = _eval_samples(run_dir, data_root, classes, stop, split)
    skipped: list = []
    bank: ImageBank = [ev for ev in decode_split(data_root, samples, int(state["in_channels"]), int(state["image_size"]),
                                                 stop, 0, "decoding", skipped) if isinstance(ev, Finished)][-1].result
    probs, loss = evaluate(model, bank, resolve_device(device))
    finite_outputs(probs, run_dir)
    probs = adjust_probabilities(probs, _prior(state, posthoc_tau), posthoc_tau)
    metrics = compute_metrics(bank.labels, probs, classes)
    metrics.update({"evaluated_on": chosen, "posthoc_tau": posthoc_tau, "loss": loss, "skipped_files": len(skipped),
                    "model": state["model_name"], "strategy": state.get("strategy", "")})
    metrics["tau_norm"] = tau_norm
    metrics.update(_seen_by_run(run_dir, data_root, samples.paths))
    return metrics


def _seen_by_run(run_dir: str, data_root: str, paths: list[str]) -> dict:
    """How many of the evaluated images the run trained or validated on (its split.json): scores
    on those flatter the model, and ``--split all`` or ``train`` mixes them in. Unknown (no
    readable split.json) is left out rather than guessed."""
    try:
        split, recorded = read_split(run_dir), read_config(run_dir).get("data")
    except RunError:
        return {}
    if not isinstance(recorded, str) or os.path.realpath(recorded) != os.path.realpath(data_root):
        return {}  # another folder with the same layout: its files are not the run's
    evaluated = set(paths)
    return {f"n_{part}_images_of_the_run": sum(1 for p, _ in split.get(part) or [] if p in evaluated)
            for part in ("train", "val")}


def _tau_norm(model: torch.nn.Module, state: dict, tau: float) -> None:
    """tau-normalise the loaded model's classifier; a model without a linear one is a user error."""
    if tau:
        try:
            apply_tau_norm(model, state["model_name"], tau)
        except ModelError as exc:
            raise RunError(str(exc)) from None


def rescore(probs: np.ndarray, y_true: np.ndarray, classes: list[str], log_prior, tau: float) -> dict:
    """Metrics of stored predictions after post-hoc logit adjustment: no model, instant."""
    return compute_metrics(y_true, adjust_probabilities(probs, np.asarray(log_prior), tau), classes)


def predict_arrays(model: torch.nn.Module, arrays: np.ndarray, device: str = "cpu") -> np.ndarray:
    x = torch.from_numpy(arrays).permute(0, 3, 1, 2).float().div_(255.0).to(resolve_device(device))
    with torch.inference_mode():
        return torch.softmax(model(x).float(), dim=1).cpu().numpy()


def predict_paths(run_dir: str, paths: list[str], top_k: int = 3, device: str = "cpu",
                  posthoc_tau: float = 0.0, tau_norm: float = 0.0) -> list[dict]:
    """Top-k classes per image; unreadable files get an ``error`` entry instead of a crash."""
    model, state = load_run_model(run_dir, "best", device)
    _tau_norm(model, state, tau_norm)
    classes = list(state["classes"])
    channels, size = int(state["in_channels"]), int(state["image_size"])
    out: list[dict] = []
    arrays, where = [], []
    for p in paths:
        try:
            arrays.append(load_array(p, channels, size))
            where.append(len(out))
            out.append({"path": p, "top": []})
        except ImageDecodeError as exc:
            out.append({"path": p, "error": exc.reason, "top": []})
    if arrays:
        probs = finite_outputs(predict_arrays(model, np.stack(arrays), device), run_dir)
        probs = adjust_probabilities(probs, _prior(state, posthoc_tau), posthoc_tau)
        k = max(1, min(top_k, len(classes)))
        for slot, pr in zip(where, probs):
            order = np.argsort(-pr)[:k]
            out[slot]["top"] = [{"class": classes[i], "probability": float(pr[i])} for i in order]
    return out


class TauNormScorer:
    """Penultimate features of an evaluated split plus the run's classifier: metrics for any
    tau-normalisation strength without another pass through the network (the Results tab's
    slider re-scores with it instantly, as it does for logit adjustment)."""

    def __init__(self, features: np.ndarray, labels: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                 classes: list[str], paths: list[str] | None = None) -> None:
        self.features, self.labels, self.classes = features, labels, classes
        self.paths = list(paths) if paths is not None else []  # the image of each feature row
        self.weight = torch.from_numpy(np.asarray(weight, dtype=np.float32))
        self.bias = torch.from_numpy(np.asarray(bias, dtype=np.float32)) if bias is not None else None

    def probabilities(self, tau: float) -> np.ndarray:
        logits = torch.from_numpy(self.features) @ tau_normalised(self.weight, tau).T
        if self.bias is not None:
            logits = logits + self.bias
        return torch.softmax(logits, dim=1).numpy()

    def metrics(self, tau: float) -> dict:
        return compute_metrics(self.labels, self.probabilities(tau), self.classes)

    def probabilities_for(self, paths: list[str], tau: float, fallback: np.ndarray) -> tuple[np.ndarray, int]:
        """``fallback`` (a run's stored probabilities, one row per path) with each row of an image
        this scorer has features of replaced by its τ-normalised probabilities: Review then shows
        the very images the τ-normalised confusion matrix counts. Also returns how many rows kept
        their fallback (images moved or unreadable since, or of another split), for the caller to say."""
        probs = np.array(fallback, dtype=np.float64, copy=True)
        row_of = {p: i for i, p in enumerate(self.paths)}
        pairs = [(i, row_of[p]) for i, p in enumerate(paths) if p in row_of]
        if pairs:
            mine, theirs = (list(x) for x in zip(*pairs))
            probs[mine] = self.probabilities(tau)[theirs]
        return probs, len(paths) - len(pairs)


def tau_norm_scorer(run_dir: str, data_root: str, split: str | None = None, device: str = "cpu",
                    stop: StopToken | None = None) -> EventStream[TauNormScorer | None]:
    """Decode the evaluated split and take its features once (Progress events; run it on a
    worker); ends with Finished(TauNormScorer), or Finished(None, stopped=True)."""
    stop = stop or StopToken()
    model, state = load_run_model(run_dir, "best", device)
    try:
        head = final_linear(model, state["model_name"])
    except ModelError as exc:
        raise RunError(str(exc)) from None
    classes = list(state["classes"])
    _, samples = _eval_samples(run_dir, data_root, classes, stop, split)
    bank = yield from forward(decode_split(data_root, samples, int(state["in_channels"]), int(state["image_size"]),
                                           stop, 0, "decoding", []))
    feats = None if bank is None else (yield from extract_features(model, head, bank, resolve_device(device), stop))
    if feats is None:
        yield Finished(None, stopped=True)
        return
    finite_outputs(feats, run_dir, "features")  # overflowing weights: every τ would score NaN
    bias = head.bias.detach().cpu().numpy() if head.bias is not None else None
    yield Finished(TauNormScorer(feats, bank.labels, head.weight.detach().cpu().numpy(), bias, classes, bank.paths))
