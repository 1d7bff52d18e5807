"""One model out of an ensemble run: the members' softmax probabilities averaged with their
weights, returned as log-probabilities (valid logits: softmax gives back the average). Predict,
Review's Grad-CAM, evaluate and the TorchScript / ONNX exports use it like any model."""
from __future__ import annotations

import math

import torch
from torch import nn

from balancelab.engine.train.checkpoints import CheckpointError


class AveragedModel(nn.Module):
    """log(sum_i w_i softmax(member_i(x))); each member normalises its own input."""

    def __init__(self, members: list[nn.Module], weights: list[float]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(())
        for i, member in enumerate(self.members):
            total = total + self.weights[i] * torch.softmax(member(x).float(), dim=1)
        return torch.log(total.clamp_min(torch.finfo(torch.float32).tiny))


def _ensemble_train_counts(run_dir: str, first: dict):
    """The training data's class counts: the ensemble's own record (balanced bagging: the whole
    split, not one member's under-sample), else its first member's."""
    from balancelab.engine.train.run_folder import RunError, read_metrics

    try:
        counts = read_metrics(run_dir).get("train_counts")
    except (RunError, OSError, ValueError):  # no or damaged metrics: the members' counts describe the data
        counts = None
    return counts if isinstance(counts, list) else first.get("train_counts")


def load_ensemble_model(run_dir: str, members: list[tuple[str, float]], device: str) -> tuple[nn.Module, dict]:
    """The averaged model and a checkpoint-like state (classes, image size, channels, prior) of an
    ensemble run; members that disagree on classes or input are refused."""
    from balancelab.engine.results.inference import load_usable_model

    models, states = [], []
    for folder, _ in members:  # each run once: a member damaged after the ensemble was built is named
        model, state = load_usable_model(folder, device)
        models.append(model)
        states.append(state)
    first = states[0]
    for folder_state in states[1:]:
        if list(folder_state["classes"]) != list(first["classes"]) or int(folder_state["in_channels"]) != int(
                first["in_channels"]) or int(folder_state["image_size"]) != int(first["image_size"]):
            raise CheckpointError(f"the members of {run_dir} disagree on classes or input size")
    weights = [w for _, w in members]
    n = len(first["classes"])
    uniform = [-math.log(n)] * n  # a member without a recorded prior (checked_state dropped it)
    prior = [sum(w * float(s.get("log_prior", uniform)[c]) for w, s in zip(weights, states)) for c in range(n)]
    names = sorted({str(s["model_name"]) for s in states})
    state = {"model_name": f"ensemble of {len(models)}: {', '.join(names)}", "classes": list(first["classes"]),
             "in_channels": int(first["in_channels"]), "image_size": int(first["image_size"]), "log_prior": prior,
             "train_counts": _ensemble_train_counts(run_dir, first),
             "strategy": "ensemble: " + ", ".join(sorted({str(s.get("strategy", "")) for s in states})),
             "members": len(models), "deskewed_members": sum(s.get("deskew") is True for s in states)}
    state["deskew"] = state["deskewed_members"] == len(models)  # each member deskews inside its own model
    model = AveragedModel(models, weights).to(next(models[0].parameters()).device).eval()
    return model, state
