"""An exponential moving average of a model's weights (Polyak averaging), the model a run keeps.

As timm's ``ModelEmaV3`` and torchvision's reference ``--model-ema``: after every optimizer step
the averaged copy moves a little towards the trained weights, ``ema = decay * ema + (1 - decay) *
weights``, with the decay warmed up as ``min(decay, (1 + step) / (10 + step))`` so the first steps
do not drag the random initialisation along. Validation, best-checkpoint selection, the final
evaluation and everything read from ``best.pt`` (predict, exports, Grad-CAM) use the average;
training continues on the raw weights, which the checkpoints keep too (``--resume``).

BatchNorm statistics are copied, not averaged: the run recomputes them for the averaged weights
before each evaluation (:mod:`precise_bn`), since an average of running statistics measured under
other weights describes none of them.
"""
from __future__ import annotations

import copy

import torch


class ModelEma:
    """The averaged copy of ``source`` (same class, evaluation only), following it step by step."""

    def __init__(self, source: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.source = source
        self.decay = decay
        self.steps = 0
        self.module = copy.deepcopy(source).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.steps) / (10.0 + self.steps))

    @torch.no_grad()
    def update(self) -> None:
        """One step towards the source's weights (call after each optimizer step)."""
        weight = 1.0 - self.current_decay()
        averaged = [p for p in self.module.parameters() if p.dtype.is_floating_point]
        current = [p.detach() for p in self.source.parameters() if p.dtype.is_floating_point]
        torch._foreach_lerp_(averaged, current, weight)
        for mine, theirs in zip(self.module.buffers(), self.source.buffers()):
            mine.copy_(theirs)
        self.steps += 1

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load(self, state: dict, steps: int) -> None:
        self.module.load_state_dict(state)
        self.steps = int(steps)
